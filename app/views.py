"""Computations that take more than a moment (dataset-level views, prepared copies, explanations), run once per
key in the background with a progress bar, and the caches of their results."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
import torch

from autoint.errors import AutoIntError
from autoint.explain.baselines import BASELINES, mean_embedding
from autoint.workspace.background import QUEUED, BackgroundRunner, Task
from autoint.workspace.sources import PREPARE_OVER_BYTES, DataSource, raw_bytes, source_of, source_spec

from app.state import VALUES_LISTED, dataset, load_model


@st.cache_resource(max_entries=8, show_spinner="Averaging the training embeddings ...")
def baseline(run_path: str, folder: str) -> torch.Tensor:
    """Integrated Gradients' baseline: the training-mean embedding of each field, over the training split in
    memory, or for a run trained on the prepared copy over a seeded sample of its training split read from a few
    row groups (`sampling.spread_positions`), so the data set is never loaded whole."""
    prepared = prepared_for(source_of(folder), run_path)
    if prepared is not None:
        from autoint.explain.sampling import spread_positions
        return mean_embedding(load_model(run_path), prepared.read_rows("train", spread_positions(prepared))[0])
    return mean_embedding(load_model(run_path), dataset(folder, run_path).split("train")[0])


POLL_S = 1.0  # how often a page waiting on a background computation looks again (each look costs a gc.collect)


QUICK_S = 0.5  # a computation that ends within this is drawn in the same script run, without a progress bar


@st.cache_resource
def background() -> BackgroundRunner:
    """The server's background computations (autoint.workspace.background): one at a time, since each uses this process's
    APP_THREADS torch threads and a second at once would only halve both; each key computed once for every session,
    the newest results kept in memory."""
    return BackgroundRunner(workers=1, keep=32)


@st.cache_resource
def preparer() -> BackgroundRunner:
    """Preparing a data set (autoint.datasets.prepared.prepare, minutes on a big file) runs apart from the views, one at a
    time: polars parses with its own thread pool, so a second at once would only share the same cores."""
    return BackgroundRunner(workers=1, keep=8, name="autoint-prepare")


RUNNERS = {"views": background, "prepare": preparer}


def submit(key: tuple, compute, description: str) -> Task:
    """Start `compute(progress)` in the background unless `key` is already queued, running or done."""
    return background().submit(key, compute, description)


def result_of(task: Task, runner: str = "views"):
    """The task's result. Until it ends, a progress bar that refreshes every POLL_S seconds, and the script run stops
    here (the page draws the rest when it is done). Its error is raised here: a person's error (USER_ERRORS) shows
    as one, a bug as a bug, like any other error of the page."""
    if not task.wait(QUICK_S):
        background_progress(task.key, runner)
        st.stop()
    return task.result()


def progress_text(task: Task, unit: str = "samples") -> str:
    if task.status == QUEUED:
        return f"{task.description}: waiting for another computation to finish first ..."
    if task.note:
        return f"{task.description}: {task.note}"
    if not task.total:
        return f"{task.description} ..."
    text = f"{task.description}: {task.done_count:,} of {task.total:,} {unit}"
    rate = task.rate
    if rate:
        text += f" · {rate:,.0f} {unit}/s, about {max(task.total - task.done_count, 0) / rate:,.0f} s left"
    return text + " (then cached)"


@st.fragment(run_every=POLL_S)
def background_progress(key: tuple, runner: str = "views") -> None:
    task = RUNNERS[runner]().task(key)
    if task is None or task.done:
        st.rerun(scope="app")  # ended (or dropped): the page draws its result, or asks again
    st.progress(task.fraction, text=progress_text(task))


def size_text(n_bytes: int) -> str:
    """A size as every page gives it, in binary units (PREPARE_OVER_BYTES is 200 MiB): MiB below 1 GiB, else GiB;
    whole numbers from 10 up, one decimal below."""
    value, unit = (n_bytes / 2 ** 30, "GiB") if n_bytes >= 2 ** 30 else (n_bytes / 2 ** 20, "MiB")
    return f"{value:,.0f} {unit}" if value >= 10 else f"{value:,.1f} {unit}"


def needs_preparing(source: DataSource) -> bool:
    """Too big to parse whole in memory on every load (raw files over PREPARE_OVER_BYTES) and not prepared yet:
    the sidebar offers to prepare it, and the Train page prepares it before training."""
    return raw_bytes(source) > PREPARE_OVER_BYTES and prepared_copy(source) is None


def prepared_copy(source: DataSource):
    """The data source's prepared copy (autoint.datasets.prepared) when it is up to date, else None. The freshness check
    (the manifest read, each source's fingerprint) runs once per state of the files: its answer is kept per
    (source, the size and mtime of each raw file, of the spec file and of the copy's manifest), so a rerun only
    stats the files.

    Stale only when a file changes and keeps its size and mtime to the nanosecond (content copied in with its old
    time kept: `is_prepared` would see the first or last MiB differ), or when the copy's part or vocabularies files
    change without its manifest (`prepare` rewrites the manifest with them; a part file edited by hand is refused
    when its row group is read, the vocabularies when the copy is opened again)."""
    if source.has_catalog:
        return None
    from autoint.datasets.prepared import MANIFEST, default_dir, source_paths
    try:
        spec = source_spec(source)
        out = default_dir(spec, source.folder)
        files = [*source_paths(spec, source.folder), *([Path(source.spec)] if source.spec else []), out / MANIFEST]
        stamp = tuple((str(path), *_stat(path)) for path in files)
    except (AutoIntError, OSError):
        return None
    return _fresh_copy(source.key, str(out), stamp)


def _stat(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return -1, -1
    return info.st_size, info.st_mtime_ns


@st.cache_resource(max_entries=8, show_spinner=False)
def _fresh_copy(key: str, out: str, stamp: tuple):
    """The copy at `out`, opened, when it is up to date for the files as `stamp` saw them (prepared.is_prepared)."""
    from autoint.datasets.prepared import Prepared, is_prepared
    source = source_of(key)
    try:
        return Prepared.open(out) if is_prepared(out, source_spec(source), source.folder) else None
    except (AutoIntError, OSError):
        return None


def prepared_for(source: DataSource, run_path: str):
    """The prepared copy when the pages read this run's samples from it (the run was trained on the copy: the same
    schema, hence the same encoding), else None (they read the data set in memory). One decision for every view:
    the copy's freshness is `prepared_copy`'s, the schema comparison is made once per run and copy."""
    prepared = prepared_copy(source)
    if prepared is None or not _same_schema(run_path, str(prepared.path), prepared.fingerprint, _prepared=prepared):
        return None
    return prepared


@st.cache_resource(max_entries=16, show_spinner=False)
def _same_schema(run_path: str, path: str, fingerprint: str, _prepared=None) -> bool:
    return load_model(run_path).schema == _prepared.schema


def prepare_source(source: DataSource) -> Task:
    """Prepare a data source in the background (`autoint.datasets.prepared.prepare`), once: its task, with progress."""
    from autoint.datasets.prepared import prepare
    spec = source_spec(source)

    def compute(progress):
        def callback(event: dict) -> None:
            rate, rows, total = event.get("rows_per_second") or 0, event["rows"], event.get("total")
            words = "pass 1 of 2, counting values" if event["pass"] == 1 else "pass 2 of 2, encoding"
            note = f"{words}: {rows:,} rows" + (f" of {total:,}" if total else "") + f" · {rate:,.0f} rows/s"
            if total and rate:
                note += f", about {max(total - rows, 0) / rate:,.0f} s left"
            progress(rows if event["pass"] == 2 else 0, total, note)
        return prepare(spec, source.folder, progress=False, callback=callback)
    return preparer().submit(("prepare", source.key), compute, f"Preparing {source.label}")


def views_data(source: DataSource, run_path: str, split: str, size: int, seed: int):
    """(Dataset, SplitSample) for the dataset-level views: a seeded sample of the split, read from the prepared copy
    when the run was trained on it (`prepared_for`: only the row groups it needs), else from the data in memory. A
    prepared sample is read in the background, with progress."""
    prepared = prepared_for(source, run_path)
    if prepared is not None:
        from autoint.explain.sampling import prepared_sample
        task = submit(("prepared-sample", str(prepared.path), prepared.fingerprint, split, size, seed),
                      lambda progress: prepared_sample(prepared, split, size, seed),
                      f"Reading {size:,} {split} samples of the prepared copy")
        return result_of(task)
    return dataset(source.key, run_path), split_sample(source.key, run_path, split, size, seed)


def split_total(source: DataSource, run_path: str, split: str) -> int:
    """How many samples a split holds: the prepared copy's count when the views read it, else the data's."""
    prepared = prepared_for(source, run_path)
    if prepared is not None:
        return prepared.rows(split)
    return len(dataset(source.key, run_path).splits[split])


@st.cache_data(max_entries=32, show_spinner=False)
def sample_keep(run_path: str, data_id: str, split: str, where: tuple, label: int | None, _data=None):
    """(N,) bool over the split of `_data` (identified by `data_id`, its fingerprint): the slice's samples."""
    from autoint.explain.explanation import slice_mask
    inputs, labels = _data.split(split)
    return slice_mask(load_model(run_path), inputs, labels, where=dict(where), label=label)


@st.cache_data(max_entries=256, show_spinner=False)
def sample_field_values(run_path: str, data_id: str, split: str, size: int, seed: int, name: str, search: str,
                  limit: int = VALUES_LISTED, _data=None, _sample=None):
    """A field's values among a sample's rows, most frequent first (`samples.value_counts`), at most `limit`."""
    from autoint.data.samples import value_counts
    return value_counts(_data, split, name, _sample.positions, search=search, limit=limit)


@st.cache_resource(max_entries=16)
def split_sample(key: str, run_path: str, split: str, size: int, seed: int):
    """A seeded sample of a split (autoint.explain.sampling.split_sample): the same rows for the same size and seed, and a
    bigger sample holds a smaller one."""
    from autoint.explain.sampling import split_sample as sample_of
    return sample_of(dataset(key, run_path), split, size, seed)


INTERACTION_BASELINES = dict(zip(BASELINES, ("training-mean embedding", "the <unknown> value")))


@st.cache_data(max_entries=64, show_spinner=False)
def explanation(run_path: str, folder: str, values: dict, attributions: tuple[str, ...] = (),
                interaction_kind: str | None = None):
    """`explain_sample` of a run on raw values, with Integrated Gradients' training-mean baseline and, given
    `interaction_kind`, the sample's Shapley interactions; cached per (run, data source, values, options) for every
    session. A rerun that keeps the sample (a head picked, an export format, What-if's unchanged side) skips it:
    on Criteo's 39 fields the sampled interactions alone take ~0.4 s. A run's folder never changes its weights (a
    new run is a new folder), as `load_model` assumes too."""
    from autoint.explain.explanation import explain_sample
    return explain_sample(load_model(run_path), values, attributions=attributions,
                          baseline=baseline(run_path, folder) if attributions else None,
                          interaction_baseline=interaction_baseline(run_path, folder, interaction_kind)
                          if interaction_kind else None)


@st.cache_resource(max_entries=8)
def interaction_baseline(run_path: str, folder: str, kind: str) -> torch.Tensor:
    """(1, F, d): what an absent field becomes in the interaction game (the IG baseline for "mean")."""
    from autoint.explain.interactions import baseline_embedding
    return baseline(run_path, folder) if kind == "mean" else baseline_embedding(load_model(run_path), kind)
