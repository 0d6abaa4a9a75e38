"""Data sets: MovieLens-1M, the paper's Criteo, Avazu and KDD12, and any CSV/TSV/Parquet by spec.

    load_dataset("criteo", data_dir="data/criteo")        # a built-in spec: criteo.toml beside this file
    load_dataset(spec="my.toml")                          # the user's own; files are read from its folder
    load_dataset()                                        # MovieLens-1M (movielens.load_dataset)

Every built-in except MovieLens is a spec file here (its comments say where the files come from, their size,
row count and licence). One module per reader: `generic` (any spec), `movielens` (its `::` files, joins,
release buckets and catalogue of users and movies) with `dat` (the `::` reader) and `download` (the GroupLens
archive); `synth` writes small files of each format with planted interactions. Every reader returns an
`autoint.data.Dataset`.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the readers pulls in polars and torch: the CLI's parser only needs the names
    from ..data import Dataset
    from ..schema import Schema
    from .spec import DatasetSpec

MOVIELENS = "movielens-1m"
MOVIELENS_DIR = Path("data/ml-1m")  # MovieLens-1M's folder without --data-dir or $AUTOINT_DATA_DIR
SPEC_DIR = Path(__file__).resolve().parent
BUILTIN_SPECS = {"criteo": "criteo.toml", "avazu": "avazu.toml", "kdd12": "kdd12.toml"}
DATASETS = (MOVIELENS,) + tuple(BUILTIN_SPECS)

__all__ = ["DATASETS", "MOVIELENS", "DatasetSpec", "SpecError", "builtin_spec", "load_dataset", "parse_spec",
           "read_spec", "resolve_data_dir"]


def __getattr__(name: str):
    if name in ("DatasetSpec", "SpecError", "parse_spec", "read_spec"):
        from . import spec
        return getattr(spec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def builtin_spec(name: str) -> DatasetSpec:
    """A built-in data set's spec (autoint/datasets/specs/), parsed once per process: the app's sidebar asks for
    each one on every rerun (17 ms for the three)."""
    from ..data import DataError
    if name not in BUILTIN_SPECS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}, or give --spec FILE.")
    return _read_builtin_spec(name)


@functools.lru_cache(maxsize=None)
def _read_builtin_spec(name: str) -> DatasetSpec:
    from .spec import read_spec
    return read_spec(SPEC_DIR / BUILTIN_SPECS[name])


def resolve_data_dir(dataset: str = MOVIELENS, spec: str | os.PathLike | None = None,
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


def load_dataset(dataset: str | None = None, *, spec: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, with_ids: bool = False,
                 schema: Schema | None = None) -> Dataset:
    """A built-in data set by name (default MovieLens-1M) or a spec file, read from `data_dir`."""
    from ..data import DataError
    from .spec import read_spec
    if spec is not None and dataset not in (None, MOVIELENS):
        raise DataError(f"give a data set name ({dataset!r}) or a spec file ({spec}), not both.")
    dataset = dataset or MOVIELENS
    folder = resolve_data_dir(dataset, spec, data_dir)
    if spec is None and dataset == MOVIELENS:
        from .movielens import load_dataset as load_movielens
        return load_movielens(folder, with_ids=with_ids, schema=schema)
    if with_ids:
        raise DataError("--with-ids adds MovieLens's UserID and MovieID; a spec declares its own fields.")
    from .generic import load_spec_dataset
    parsed = read_spec(spec) if spec is not None else builtin_spec(dataset)
    return load_spec_dataset(parsed, folder, schema=schema)
