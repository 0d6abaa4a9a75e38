"""Data sets: MovieLens-1M, the paper's Criteo, Avazu and KDD12, and any CSV/TSV/Parquet by spec.

    load_dataset("criteo", data_dir="data/criteo")        # a built-in spec: criteo.toml beside this file
    load_dataset(spec="my.toml")                          # the user's own; files are read from its folder
    load_dataset()                                        # MovieLens-1M (movielens.load_dataset)

Every built-in except MovieLens is a spec file here (its comments say where the files come from, their size,
row count and licence). One module per reader: `generic` (any spec), `movielens` (its `::` files, joins,
release buckets and catalogue of users and movies) with `dat` (the `::` reader) and `download` (the GroupLens
archive); `synth` writes small files of each format with planted interactions. Every reader returns an
`autoint.data.dataset.Dataset`.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .registry import (BUILTIN_SPECS, CATALOGUED, DATASETS, DEFAULT_DATASET, MOVIELENS, MOVIELENS_DIR, SPEC_DIR,
                       builtin_spec, dataset_files, files_missing, has_catalogue, recorded_dataset,
                       resolve_data_dir)

if TYPE_CHECKING:  # importing the readers pulls in polars and torch: the CLI's parser only needs the names
    from ..data.dataset import Dataset
    from ..data.schema import Schema
    from .movielens import Catalog
    from .spec import DatasetSpec

__all__ = ["BUILTIN_SPECS", "CATALOGUED", "DATASETS", "DEFAULT_DATASET", "MOVIELENS", "MOVIELENS_DIR", "SPEC_DIR",
           "Catalog", "DatasetSpec", "SpecError", "builtin_spec", "catalogue", "dataset_files", "files_missing", "generate_synthetic",
           "has_catalogue", "load_dataset", "open_dataset", "parse_spec", "read_spec", "recorded_dataset",
           "resolve_data_dir"]


def __getattr__(name: str):
    if name in ("DatasetSpec", "SpecError", "parse_spec", "read_spec"):
        from . import spec
        return getattr(spec, name)
    if name == "Catalog":  # the catalogue type of the catalogued data set (only MovieLens-1M's so far)
        from .movielens import Catalog
        return Catalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def catalogue(folder: str | os.PathLike, dataset: str = DEFAULT_DATASET) -> Catalog:
    """The catalogue of users and items of a catalogued data set's folder (`has_catalogue`), its files checked."""
    if not has_catalogue(dataset):
        from ..data.dataset import DataError
        raise DataError(f"{dataset} has no catalogue of users and items; its samples are picked by row.")
    from .movielens import Catalog, read_movielens
    return Catalog(read_movielens(folder))


def generate_synthetic(folder: str | os.PathLike, dataset: str = DEFAULT_DATASET, **sizes):
    """Write a small synthetic copy of a data set, in its files' format, with planted interactions
    (autoint.datasets.synth; MovieLens's sizes default to SYNTH_DEFAULTS): the app's offline stand-in for the
    default data set."""
    from . import synth
    writers = {MOVIELENS: synth.generate_movielens, "criteo": synth.generate_criteo, "avazu": synth.generate_avazu,
               "kdd12": synth.generate_kdd12}
    if dataset not in writers:
        from ..errors import UsageError
        raise UsageError(f"no generator for {dataset!r}; choose one of {', '.join(writers)}.")
    return writers[dataset](folder, **sizes)


def open_dataset(dataset: str | None = None, *, spec: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, schema: Schema | None = None, need_dataset: bool = True):
    """(catalogue or None, Dataset or None): the data set as `load_dataset` reads it and its catalogue of users and
    items when it has one (MovieLens-1M's `movielens.Catalog`), read once. `need_dataset=False` skips the data set
    only where a catalogue stands in for it (samples are then asked for by user and item, not by row)."""
    dataset = dataset or DEFAULT_DATASET
    if has_catalogue(dataset, spec):
        from .movielens import Catalog, build_dataset, read_movielens
        movielens = read_movielens(resolve_data_dir(dataset, None, data_dir))
        return Catalog(movielens), build_dataset(movielens, schema=schema) if need_dataset else None
    return None, load_dataset(dataset, spec=spec, data_dir=data_dir, schema=schema)


def load_dataset(dataset: str | None = None, *, spec: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, with_ids: bool = False,
                 schema: Schema | None = None) -> Dataset:
    """A built-in data set by name (default MovieLens-1M) or a spec file, read from `data_dir`."""
    from ..data.dataset import DataError
    from .spec import read_spec
    if spec is not None and dataset not in (None, DEFAULT_DATASET):
        raise DataError(f"give a data set name ({dataset!r}) or a spec file ({spec}), not both.")
    dataset = dataset or DEFAULT_DATASET
    folder = resolve_data_dir(dataset, spec, data_dir)
    if has_catalogue(dataset, spec):
        from .movielens import load_movielens
        return load_movielens(folder, with_ids=with_ids, schema=schema)
    if with_ids:
        raise DataError("--with-ids adds MovieLens's UserID and MovieID; a spec declares its own fields.")
    from .generic import load_spec_dataset
    parsed = read_spec(spec) if spec is not None else builtin_spec(dataset)
    return load_spec_dataset(parsed, folder, schema=schema)
