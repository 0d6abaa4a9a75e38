"""The built-in data sets by name, their spec files and where their files are read from (no reader imported:
the CLI's parser needs only the names)."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:
    from .spec import DatasetSpec

MOVIELENS = "movielens-1m"
MOVIELENS_DIR = Path("data/ml-1m")  # MovieLens-1M's folder without --data-dir or $AUTOINT_DATA_DIR
# MovieLens-1M's files as GroupLens distributes them (alternatives in an inner list), as a spec's `files` reads.
MOVIELENS_FILES = (("users.dat",), ("movies.dat",), ("ratings.dat", "ratings.dat.gz"))
SPEC_DIR = Path(__file__).resolve().parent
BUILTIN_SPECS = {"criteo": "criteo.toml", "avazu": "avazu.toml", "kdd12": "kdd12.toml"}
DATASETS = (MOVIELENS,) + tuple(BUILTIN_SPECS)
# What a command without --dataset, the app's first start and a run saved before runs recorded their data set mean.
DEFAULT_DATASET = MOVIELENS
# Data sets read by their own reader, with a catalogue of users and items that samples are picked from (by user,
# item and time instead of by row): `catalogue(folder)` reads it. Every other data set is a spec.
CATALOGUED = {MOVIELENS: "MovieLens-1M"}  # name -> title
# `synth` and the app's offline data: big enough for the planted interactions to be learnt, small enough to train
# in seconds.
SYNTH_DEFAULTS = {"users": 600, "movies": 300, "ratings": 40000, "seed": 7}

def has_catalogue(dataset: str, spec: str | os.PathLike | None = None) -> bool:
    """Whether a data set (a name, with no user's spec) comes with its own reader and a catalogue of users and
    items."""
    return spec is None and dataset in CATALOGUED


def recorded_dataset(name: str | None) -> str:
    """The data set a run's record names: runs saved before runs recorded one were trained on DEFAULT_DATASET."""
    return name or DEFAULT_DATASET


def dataset_files(name: str) -> tuple[tuple[str, ...], ...]:
    """A built-in data set's files, each with its alternatives (a plain and a gzipped name)."""
    if name == MOVIELENS:
        return MOVIELENS_FILES
    return tuple(tuple(a) for a in builtin_spec(name).files)


def files_missing(name: str, folder: str | os.PathLike) -> list[str]:
    """The files of built-in data set `name` that `folder` lacks ("ratings.dat or ratings.dat.gz"); [] when it
    holds them all."""
    folder = Path(folder)
    return [" or ".join(alternatives) for alternatives in dataset_files(name)
            if not any((folder / n).is_file() for n in alternatives)]


def builtin_spec(name: str) -> DatasetSpec:
    """A built-in data set's spec (autoint/datasets/specs/), parsed once per process: the app's sidebar asks for
    each one on every rerun (17 ms for the three)."""
    if name not in BUILTIN_SPECS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}, or give --spec FILE.")
    return _read_builtin_spec(name)


@functools.lru_cache(maxsize=None)
def _read_builtin_spec(name: str) -> DatasetSpec:
    from .spec import read_spec
    return read_spec(SPEC_DIR / BUILTIN_SPECS[name])


def resolve_data_dir(dataset: str = DEFAULT_DATASET, spec: str | os.PathLike | None = None,
                     data_dir: str | os.PathLike | None = None) -> Path:
    """`--data-dir` first; else a spec's own folder; else MovieLens's rule ($AUTOINT_DATA_DIR, data/ml-1m);
    else `data/<name>` for Criteo, Avazu and KDD12."""
    if data_dir:
        return Path(data_dir)
    if spec is not None:
        return Path(spec).resolve().parent
    if dataset == MOVIELENS:
        return Path(os.environ["AUTOINT_DATA_DIR"]) if os.environ.get("AUTOINT_DATA_DIR") else MOVIELENS_DIR
    return Path("data") / dataset


