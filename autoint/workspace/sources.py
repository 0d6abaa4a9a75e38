"""Which data sets are on offer, which data a run explains, and how it is read: one rule for the CLI and the app.

A data source is a folder with a data set's files: a built-in data set's files as distributed (MovieLens-1M's
`::` files, Criteo's train.txt ...), or a user's spec (*.toml) beside its files. The default source is the folder
AUTOINT_DATA_DIR names (else the default data set's folder); without data there, a synthetic copy of it; then each
data set found in a folder of data/. A run explains the data set it was trained on (its fields and vocabularies are
that data set's), read with the run's own vocabularies (`load_for_run`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..datasets import (BUILTIN_SPECS, CATALOGUED, DATASETS, DEFAULT_DATASET, SPEC_DIR, builtin_spec, dataset_files,
                        files_missing, has_catalogue, read_spec, recorded_dataset, resolve_data_dir)
from ..datasets.registry import SYNTH_DEFAULTS
from ..errors import AutoIntError, DataError

DATA_ROOT = Path("data")  # one folder per data set; the app's sidebar offers each one found
SYNTHETIC_DIR = DATA_ROOT / "synthetic"  # the offline default, generated once with SYNTH_DEFAULTS
GROUND_TRUTH = "planted_interactions.json"  # autoint.datasets.synth's record of the pairs it planted
PREPARE_OVER_BYTES = 200 * 2 ** 20  # raw files bigger than this are prepared once (out of core) before use


def runs_root() -> Path:
    """The runs folder: $AUTOINT_RUNS_DIR, else runs/."""
    return Path(os.environ.get("AUTOINT_RUNS_DIR", "runs"))


@dataclass(frozen=True)
class DataSource:
    folder: Path
    synthetic: bool
    requested: Path  # where the default data was looked for, else the folder
    default_missing: bool  # the requested folder holds no data set (the synthetic one stands in)
    dataset: str = DEFAULT_DATASET  # a built-in data set's name, or a user's spec's name
    spec: str | None = None  # a user's spec file (a built-in's ships with the code)

    @property
    def has_catalog(self) -> bool:
        """Whether the data set comes with a catalogue of users and items (and its own reader)."""
        return has_catalogue(self.dataset, self.spec)

    @property
    def key(self) -> str:
        """What cached loads and session choices are keyed by: a catalogue data set's folder path, else the data
        set, its spec and its folder."""
        if self.has_catalog:
            return str(self.folder)
        return f"{self.dataset}::{self.spec or ''}::{self.folder}"

    @property
    def label(self) -> str:
        if self.has_catalog:
            title = CATALOGUED[self.dataset]
            return f"{f'synthetic ({title} format)' if self.synthetic else title} · {self.folder.name}"
        kind = " (spec)" if self.spec else " (generated)" if self.synthetic else ""
        return f"{self.dataset}{kind} · {self.folder.name}"


def found_in(folder: Path) -> list[DataSource]:
    """The data sets a folder holds: a built-in data set's files as distributed, or a spec file (*.toml) for files
    beside it."""
    if not folder.is_dir():
        return []
    out = []
    generated = (folder / GROUND_TRUTH).is_file()
    for name in DATASETS:
        if not files_missing(name, folder):
            out.append(DataSource(folder.resolve(), generated, folder, False, dataset=name))
    for path in sorted(folder.glob("*.toml")):
        try:
            name = read_spec(path).name
        except AutoIntError:  # a broken spec: offered under its file name, its error shown when chosen
            name = path.stem
        out.append(DataSource(folder.resolve(), generated, folder, False, dataset=name, spec=str(path.resolve())))
    return out


def default_source(generate: bool = True) -> DataSource:
    """The default data source: what AUTOINT_DATA_DIR (else the default data set's folder) holds, else a synthetic
    copy of the default data set (generated once when `generate`). A folder with only some of the default data
    set's files is an error, not a reason to fall back quietly."""
    requested = resolve_data_dir()
    first = found_in(requested)
    if first:
        return first[0]
    missing = files_missing(DEFAULT_DATASET, requested)
    if len(missing) < len(dataset_files(DEFAULT_DATASET)):
        raise DataError(f"{requested}: holds part of {CATALOGUED.get(DEFAULT_DATASET, DEFAULT_DATASET)} but no "
                        f"{' and no '.join(missing)}. Add the missing files, run `python -m autoint download "
                        f"--data-dir {requested}`, or point AUTOINT_DATA_DIR elsewhere.")
    if generate and files_missing(DEFAULT_DATASET, SYNTHETIC_DIR):
        from ..datasets import generate_synthetic
        generate_synthetic(SYNTHETIC_DIR, **SYNTH_DEFAULTS)
    return DataSource(SYNTHETIC_DIR.resolve(), True, requested, True)


def data_sources(generate: bool = True) -> list[DataSource]:
    """Every data set on offer, the default first, then each one found in a folder of data/."""
    first = default_source(generate)
    out, seen = [first], {first.key}
    folders = sorted(p for p in DATA_ROOT.iterdir() if p.is_dir() and p.name != "cache"
                     and not p.name.startswith(".")) if DATA_ROOT.is_dir() else []  # hidden: a data set being added
    for folder in folders:
        for found in found_in(folder):
            if found.key not in seen:
                out.append(found)
                seen.add(found.key)
    return out


def source_of(key: str) -> DataSource:
    """The data source a key names (`DataSource.key`)."""
    if "::" not in key:
        folder = Path(key)
        return DataSource(folder, (folder / GROUND_TRUTH).is_file(), folder, False)
    name, spec, folder = key.split("::", 2)
    return DataSource(Path(folder), (Path(folder) / GROUND_TRUTH).is_file(), Path(folder), False, dataset=name,
                      spec=spec or None)


def source_spec(source: DataSource):
    """The spec of a data source without a reader of its own (a built-in's, or the user's file)."""
    return read_spec(source.spec) if source.spec else builtin_spec(source.dataset)


def raw_bytes(source: DataSource) -> int:
    """The size of a spec data source's raw files (0 for a data set with its own reader, which is small)."""
    if source.has_catalog:
        return 0
    from ..datasets.generic import resolve_files
    try:
        return sum(p.stat().st_size for p in resolve_files(source_spec(source), source.folder))
    except (AutoIntError, OSError):  # a broken spec or a missing file: the page that reads it says why
        return 0


# ----------------------------------------------------------------------------- runs and their data

def trained_on(manifest: dict) -> tuple[str, str | None]:
    """(data set name, spec file or None for a built-in) a run was trained on, from its run.json; runs saved
    before data sets were recorded are the default data set's (`recorded_dataset`)."""
    name, spec = recorded_dataset(manifest.get("dataset")), manifest.get("spec")
    if name in BUILTIN_SPECS and (spec is None or Path(spec).resolve().parent == SPEC_DIR):
        spec = None  # a built-in data set's spec ships with the code
    return name, spec


def run_explains(run: dict, source: DataSource) -> bool:
    """Whether a listed run (training.runs.list_runs) was trained on this data source's data set."""
    return recorded_dataset(run.get("dataset")) == source.dataset


def runs_on_default_data(runs: list[dict]) -> list[dict]:
    """The listed runs that explain the default data source (generating nothing)."""
    source = default_source(generate=False)
    return [r for r in runs if run_explains(r, source)]


def data_set_for(run_label: str, manifest: dict, dataset: str | None = None,
                 spec: str | None = None) -> tuple[str, str | None]:
    """Which data set to read for a run: `dataset` or `spec` when given (refused when the run was trained on
    another), else the run's own built-in data set. A user's spec is never taken from run.json (a run folder from
    elsewhere must not choose which files get read): it has to be given again."""
    name, trained_spec = trained_on(manifest)
    asked = dataset if dataset is not None else read_spec(spec).name if spec else None
    how = f"--spec FILE (the spec it was trained with: {trained_spec})" if trained_spec else f"--dataset {name}"
    if asked is not None and asked != name:
        raise DataError(f"{run_label} was trained on {name}, not {asked}: its fields and vocabularies are that data "
                        f"set's. Pass {how}, with --data-dir naming that data set's folder.")
    if spec:
        return name, spec
    if trained_spec is not None:
        raise DataError(f"{run_label} was trained on {name}, a data set read by a spec of its own; pass {how} and "
                        f"--data-dir.")
    return dataset or name, None


def load_for_run(name: str, spec: str | None, folder: str | os.PathLike | None, schema, run_label: str = "the run",
                 need_dataset: bool = True):
    """(catalogue or None, data set or None): the data set `name` (or `spec`) read from `folder`, encoded with a
    run's `schema` (its vocabularies), and its catalogue when it has one; refused when a spec's fields are not the
    run's."""
    from ..datasets import open_dataset
    if spec is not None or name in BUILTIN_SPECS:
        parsed = read_spec(spec) if spec else builtin_spec(name)
        fields = [f.name for f in parsed.fields]
        if fields != schema.names:
            raise DataError(f"{spec or name}: its fields ({', '.join(fields[:12])}{' ...' if len(fields) > 12 else ''})"
                            f" are not the ones {run_label} was trained on ({', '.join(schema.names[:12])}"
                            f"{' ...' if len(schema.names) > 12 else ''}); pass the spec it was trained with.")
    # a user's spec names its data set itself: load_dataset takes a name or a spec, not both
    return open_dataset(None if spec else name, spec=spec, data_dir=folder, schema=schema, need_dataset=need_dataset)
