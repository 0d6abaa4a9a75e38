"""What the pages share: the data set, the model in use, the current sample, cached loads, the job queue.

Heavy objects (catalog, models, encoded data, scorers) live in `st.cache_resource`, tables and
dataset-level averages in `st.cache_data`; the current choices live in `st.session_state`
under plain keys, so they survive page switches (Streamlit forgets the state of widgets that
a page does not draw). No model math happens here: everything calls `autoint/`.
"""
from __future__ import annotations

import gc
import itertools
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path

import streamlit as st
import numpy as np
import torch

from autoint.data.samples import Row
from autoint.datasets.movielens import Catalog, read_movielens
from autoint.errors import AutoIntError, DataError
from autoint.explain.baselines import BASELINES, mean_embedding
from autoint.explain.recommend import ItemScorer
from autoint.figures import figure_csv, figure_html, plotly_config
from autoint.model.autoint import preset_config
from autoint.training import jobs
from autoint.training.jobs import ACTIVE, Job, JobQueue
from autoint.training.metrics import pick_device
from autoint.training.runs import CheckpointError, clean_staging, list_runs, load_run
from autoint.workspace import defaults, sources
from autoint.workspace.background import QUEUED, BackgroundRunner, Task
from autoint.workspace.defaults import ATTENTION_MODELS, FIRST_RUN_EPOCHS, FIRST_RUN_TRAINING, QUICK_RUN, READABLE_RUN
from autoint.workspace.sources import (PREPARE_OVER_BYTES, DataSource, found_in, raw_bytes, runs_root, source_of,
                                       source_spec)

# Errors a person can act on (bad input, data, settings or files) are shown as such; anything else is a bug.
USER_ERRORS = (AutoIntError,)

# Exploring uses half the cores, a training job the other half (on 2 cores: one each).
CORES = os.cpu_count() or 1
APP_THREADS = max(1, CORES // 2)
JOB_THREADS = max(1, CORES - APP_THREADS)


# ----------------------------------------------------------------------------- the collector

# Streamlit ends every script run (and fragment run) with gc.collect(2), which walks every object the collector
# tracks: ~460k after the imports (torch, plotly, streamlit, captum, shapiq), ~580k with a model loaded, 0.3 s on
# the 2-core machine, more than the Explore page's own rerun. Objects alive when a run starts are nearly all
# long-lived (modules, cached models and data, sessions), so `settle_heap` takes them out of the collector's
# generations (gc.freeze) and the collect walks only what the run made. Every HEAP_RESCAN_RUNS runs it puts
# them back instead (gc.unfreeze), so that run's collect also finds any that have become unreachable cycles
# since (an evicted cache entry, a closed session): what one frozen stretch can hold back is bounded.
HEAP_RESCAN_RUNS = 50
_script_runs = itertools.count()


def settle_heap() -> None:
    """Called as a script run starts: freeze the objects alive now, or every HEAP_RESCAN_RUNS-th run unfreeze
    everything so that this run's collect walks the whole heap once."""
    if next(_script_runs) % HEAP_RESCAN_RUNS == HEAP_RESCAN_RUNS - 1:
        gc.unfreeze()
    else:
        gc.freeze()


# ----------------------------------------------------------------------------- data sets (autoint.workspace.sources)

def data_sources() -> list[DataSource]:
    """Every data set on offer, the default first (`sources.data_sources`); the synthetic one generated once when
    it stands in for the default."""
    found = sources.data_sources(generate=False)
    if found[0].default_missing:
        synthetic_folder()
    return found


@st.cache_resource(show_spinner="Generating the synthetic data set ...")
def synthetic_folder() -> Path:
    return sources.default_source(generate=True).folder


def data_source() -> DataSource:
    """The data set chosen in the sidebar (this session's), else the default."""
    found = data_sources()
    chosen = st.session_state.get("data_key")
    return next((s for s in found if s.key == chosen), found[0])


def offers_recommendations(source: DataSource) -> bool:
    """Recommend needs user-role and item-role fields and a catalogue of users and items (MovieLens has one)."""
    return source.has_catalog


@st.cache_resource(show_spinner="Reading users, movies and ratings ...", max_entries=4)
def catalog(folder: str) -> Catalog:
    return Catalog(read_movielens(folder))


@st.cache_resource(show_spinner="Encoding the data set for this model ...", max_entries=4)
def dataset(folder: str, run_path: str):
    """The data encoded with the run's own vocabularies (a run carries its schema), read as the CLI reads it
    (`sources.load_for_run`). `folder` is a data source's key (`DataSource.key`)."""
    source = source_of(folder)
    return sources.load_for_run(source.dataset, source.spec, source.folder, load_model(run_path).schema,
                                Path(run_path).name)[1]


# ----------------------------------------------------------------------------- models and runs

def device() -> torch.device:
    return pick_device()


@st.cache_resource(show_spinner="Loading the model ...", max_entries=8)
def load_model(run_path: str):
    return load_run(run_path, device=device()).model


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


@st.cache_resource(show_spinner="Encoding every movie ...", max_entries=4)
def movie_scorer(run_path: str, folder: str) -> ItemScorer:
    return ItemScorer(load_model(run_path), catalog(folder))


@st.cache_resource
def job_queue(root: str) -> JobQueue:
    """One queue per runs folder and server process: it outlives reruns and sessions."""
    clean_staging(root, older_than_s=3600)  # half-written runs of a process killed long ago
    # A trainer takes every core while nobody explores (the activity file is old), its share otherwise.
    return JobQueue(root, threads=JOB_THREADS, idle_threads=CORES)


def mark_activity() -> None:
    """Someone is exploring: a background trainer gives the app its cores back (autoint.training.jobs.ThreadPacer)."""
    try:
        jobs.mark_activity(runs_root())
    except OSError:  # a read-only runs folder: nothing trains there either
        pass


def finished_runs() -> list[dict]:
    """Runs the pages can explain: AutoInt and AutoInt+ (LR and FM runs load too, but have no attention)."""
    return [r for r in list_runs(runs_root()) if r.get("error") is None and r.get("model") in ATTENTION_MODELS]


def runs_for(source: DataSource) -> list[dict]:
    """The finished runs of this data set, newest first: the model picker's choices."""
    return [r for r in finished_runs() if sources.run_explains(r, source)]


def broken_runs() -> list[dict]:
    """Run folders that do not load, with the reason (shown, never hidden)."""
    return [r for r in list_runs(runs_root()) if r.get("error") is not None]


def current_run_path() -> str | None:
    """The run the pages use: the one chosen in the sidebar or on the Train page, else this session's default
    pick (`defaults.default_run`: the readable model, kept for the session). A default pick of the quick model
    moves to the converged readable one when that lands, and the page says so once (`take_swap_message`)."""
    source = data_source()
    runs = runs_for(source)  # a model explains the data set it was trained on
    paths = [r["path"] for r in runs]
    chosen = st.session_state.get("run_path")  # set only by a person's choice
    if chosen in paths:
        return chosen
    by_name = {r["name"]: r for r in runs}
    quick, converged = by_name.get(QUICK_RUN), by_name.get(READABLE_RUN)
    pick = st.session_state.get("run_auto")
    if pick not in paths:
        found = defaults.default_run(runs, source.folder)
        pick = found["path"] if found else None
    elif quick and converged and pick == quick["path"]:
        pick = converged["path"]
        st.session_state["run_swap_message"] = swap_message(quick, converged)
    st.session_state["run_auto"] = pick
    return pick


def model_pair(source: DataSource) -> tuple[dict | None, dict | None]:
    """(the readable model, the paper's model) among this data set's runs, for the toggle and the notes."""
    runs = runs_for(source)
    return defaults.readable_run(runs), defaults.paper_run(runs)


def use_run(path: str) -> None:
    """Make a run the one every page explains (a person's choice, as the sidebar's)."""
    st.session_state["run_path"] = path


def swap_message(quick: dict, converged: dict) -> str:
    before, after = quick["metrics"].get("test_auc"), converged["metrics"].get("test_auc")
    aucs = f" (test AUC {before:.4f} → {after:.4f})" if isinstance(before, float) and isinstance(after, float) else ""
    return (f"The readable model finished training to convergence{aucs} and is now in use; the quick model "
            f"(`{QUICK_RUN}`) stays selectable in the sidebar.")


def take_swap_message() -> str | None:
    """The message of a swap to the converged default that happened in this script run, once."""
    return st.session_state.pop("run_swap_message", None)


def require_model():
    """(run path, model) for a page that explains; without a trained model, show the first-run training
    (MovieLens), or say where to train one (any other data set: its size is unknown, so nothing starts by itself)."""
    path = current_run_path()
    if path is None:
        source = data_source()
        if not source.has_catalog:
            st.info(f"No model is trained on **{source.label}** yet. Train one on the Train page (a run explains "
                    f"the data set it was trained on).", icon=":material/model_training:")
            st.page_link("app/train_page.py", label="Train a model", icon=":material/model_training:")
            st.stop()
        first_run_training()
        st.stop()
    return path, load_model(path)


def exploring() -> tuple[str, Catalog, str, object, dict]:
    """What the MovieLens per-sample pages start from: (data folder, catalog, run path, model, current sample)."""
    folder = str(data_source().folder)
    cat = catalog(folder)
    run_path, model = require_model()
    return folder, cat, run_path, model, current_sample(cat)


@dataclass
class Current:
    """What every per-sample page starts from, on any data set: the data, the run, the sample being explained."""

    source: DataSource
    key: str  # the data source's key, for the cached loads below
    run_path: str
    model: object
    sample: dict  # MovieLens: {"user", "movie", "time"}; any other data set: {"row"}, a test-split position
    values: dict  # the sample's raw field values
    caption: str  # the sample in words: "user 12 and *Toy Story (1995)*", "test sample 17"
    catalog: Catalog | None = None  # MovieLens only
    label: int | None = None  # the sample's real label, when it is a sample of the data


def current() -> Current:
    source = data_source()
    cat = catalog(str(source.folder)) if source.has_catalog else None  # a broken folder: its error, no training
    run_path, model = require_model()
    if cat is not None:
        sample = current_sample(cat)
        return Current(source, source.key, run_path, model, sample, sample_values(cat, sample),
                       f"user {sample['user']} and *{cat.movie(sample['movie'])['title']}*", cat,
                       cat.click_of(sample["user"], sample["movie"]))
    row = current_row(source, run_path)
    return Current(source, source.key, run_path, model, {"row": row.position}, row.values,
                   f"test sample {row.position:,}", label=row.label)


def current_row(source: DataSource, run_path: str):
    """This session's sample of a data set other than MovieLens: a position in its test split (the first
    sample to begin with), kept per data set. For a run trained on the prepared copy it is read from the copy (one
    row group: `prepared_row`), else from the data set in memory."""
    from autoint.data.samples import SampleError, split_row
    rows = st.session_state.setdefault("rows", {})
    prepared = prepared_for(source, run_path)
    if prepared is not None:
        position = int(rows.get(source.key, 0))
        if not 0 <= position < prepared.rows("test"):  # another copy's, of another size: start again
            position = rows[source.key] = 0
        return prepared_row(str(prepared.path), prepared.fingerprint, "test", position, _prepared=prepared)
    data = dataset(source.key, run_path)
    try:
        return split_row(data, "test", int(rows.get(source.key, 0)))
    except SampleError:  # another model's data of another size: start again
        rows[source.key] = 0
        return split_row(data, "test", 0)


@dataclass(frozen=True)
class PreparedRow(Row):
    """A sample read from a prepared copy: `index` is its row in the copy's split, `line` its line in the raw file
    (the copy's `line` column; a Parquet source's row from 1)."""

    line: int = 0


@st.cache_data(max_entries=64, show_spinner="Reading the sample from the prepared copy ...")
def prepared_row(path: str, fingerprint: str, split: str, position: int, _prepared=None) -> PreparedRow:
    """The `position`-th sample of a prepared split, decoded (`Prepared.take`: its raw values, label and line)."""
    from autoint.data.samples import raw_values
    data = _prepared.take(split, [position])
    record = data.frame.row(0, named=True)
    return PreparedRow(split, position, position, raw_values(data.schema, record), int(record["label"]),
                       line=int(record["line"]))


def choose_row(source: DataSource, position: int) -> None:
    st.session_state.setdefault("rows", {})[source.key] = int(position)


def _pickable(key: str, run_path: str):
    """What samples are picked from: the prepared copy the run was trained on (filters read only their fields'
    columns), else the data set in memory."""
    prepared = prepared_for(source_of(key), run_path)
    return prepared if prepared is not None else dataset(key, run_path)


@st.cache_data(max_entries=64, show_spinner="Finding the matching test samples ...")
def matching_rows(key: str, run_path: str, where: tuple, copy: str = ""):
    """Test-split positions (ascending) of the samples with these (field, value) pairs; `copy` is the prepared
    copy's fingerprint, when there is one, so that a rebuilt copy is read again."""
    from autoint.data.samples import matching
    return matching(_pickable(key, run_path), "test", dict(where))


# A picker lists a field's values in a selectbox up to this many; a bigger vocabulary gets a search box instead, and
# the selectbox lists the most frequent values that hold the text typed (never every value: a vocabulary can hold a
# million). One threshold for every page (Explore's filters, What-if's edits, Dataset correlations' slice).
VALUES_LISTED = 200


def large_vocabulary(f) -> bool:
    """Whether a field's picker searches its vocabulary instead of listing it."""
    return len(f.vocab) > VALUES_LISTED


@st.cache_data(max_entries=256, show_spinner=False)
def field_values(key: str, run_path: str, where: tuple, name: str, search: str, limit: int = VALUES_LISTED,
                 copy: str = ""):
    """A field's values among the test samples that pass `where`, most frequent first, with their counts;
    `search` keeps those whose text holds it. At most `limit`: a vocabulary can hold a million values. `copy`: as
    for `matching_rows`."""
    from autoint.data.samples import value_counts
    positions = matching_rows(key, run_path, where, copy) if where else None
    return value_counts(_pickable(key, run_path), "test", name, positions, search=search, limit=limit)


@st.cache_data(max_entries=256, show_spinner=False)
def vocabulary_matches(run_path: str, name: str, search: str, limit: int = VALUES_LISTED) -> list[str]:
    """The values of a field's vocabulary (the model's) that hold `search`, in the vocabulary's order (most frequent
    in training first, for a spec data set), at most `limit`."""
    from autoint.data.samples import search_vocabulary
    return search_vocabulary(load_model(run_path).schema[name], search, limit)


# ----------------------------------------------------------------------------- dataset-level views, in the background

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


# ----------------------------------------------------------------------------- prepared data sets

PREPARE_OVER_BYTES = 200 * 2 ** 20  # raw files bigger than this: the sidebar offers to prepare the data set once


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


def default_job(queue: JobQueue) -> Job | None:
    """The newest job training the readable default model (it saves the quick run on the way)."""
    return next((j for j in queue.jobs() if j.run_name in (READABLE_RUN, QUICK_RUN)), None)


# Settings laid over the presets of a first start (none: the presets as they are; tests make the models tiny).
FIRST_RUN_OVERRIDES: dict = {}


def first_run_plan() -> list[dict]:
    return defaults.first_run_plan(FIRST_RUN_EPOCHS)


def _submit_default(queue: JobQueue, plan: dict, data_dir, snapshot: bool = True) -> Job:
    return queue.submit(preset_config(plan["preset"], **FIRST_RUN_OVERRIDES), FIRST_RUN_TRAINING, data_dir,
                        run_name=plan["run_name"], snapshot=plan["snapshot"] if snapshot else None)


def first_run_training() -> None:
    """No run yet: train the readable model in the background (`defaults.first_run_plan`), show its progress,
    rerun at the quick run. The paper's model follows it (`paper_job`)."""
    queue = job_queue(str(runs_root()))
    source = data_source()
    job = default_job(queue)
    readable = first_run_plan()[0]
    if job is None or job.status not in ACTIVE:  # none yet, or it ended without leaving a run
        if job is not None and job.status != "finished":
            st.warning(f"The last default training ended: {job.description}. Starting it again.")
        for name in (QUICK_RUN, READABLE_RUN):
            if (runs_root() / name).exists():  # a default run that does not load: keep it for inspection
                st.error(f"{runs_root() / name} exists but cannot be used; see the Train page's registry.")
                return
        _submit_default(queue, readable, source.folder)
    config = preset_config(readable["preset"])
    st.info(f"No trained model yet, so the app trains its default: AutoInt with the **readable** preset "
            f"({config.layers} layers, {config.heads} heads, d={config.embed_dim}; the authors' layer, whose "
            f"attention can be read), on {source.folder.name}. The page continues by itself with a quick model "
            f"after {FIRST_RUN_EPOCHS} epochs; training goes on in the background to convergence (up to "
            f"{FIRST_RUN_TRAINING.epochs} epochs, early stopping on validation AUC), then the paper's own "
            f"configuration trains, for comparison.")
    _first_run_progress(queue)


# Every fragment run ends with Streamlit's gc.collect(2) (cheap while `settle_heap` keeps the heap frozen, but a
# rescan run's walks everything): poll gently.
@st.fragment(run_every=2.0)
def _first_run_progress(queue: JobQueue) -> None:
    job = default_job(queue)
    if job is None:  # its folder was removed meanwhile: start again
        st.rerun(scope="app")
    if (job.snapshot is not None or job.status == "finished") and finished_runs():
        st.rerun(scope="app")  # a run to explain: the page continues
    last = job.latest
    text = job.description if last is None or job.status not in ACTIVE else \
        f"epoch {last['epoch']} of the {FIRST_RUN_EPOCHS} before the first model" + \
        (f", batch {last['step']}/{last['steps']}" if last["event"] == "step" else ", done")
    st.progress(job.progress_to(FIRST_RUN_EPOCHS), text=f"Training the readable model: {text}")
    if job.status in ("failed", "lost"):
        st.error(f"The default training {job.description}. Log: {job.folder / 'log.txt'}")


def converging_default() -> Job | None:
    """The job training the readable model to convergence, until its run lands. A job whose process ended
    without a word (lost: the machine restarted, the worker was killed) is started again; a cancelled or
    failed one is not (the quick run stays in use)."""
    queue = job_queue(str(runs_root()))
    job = default_job(queue)
    if job is None or job.run_name != READABLE_RUN or (runs_root() / READABLE_RUN).is_dir():
        return None
    if job.status == "lost" and (runs_root() / QUICK_RUN).is_dir():
        try:
            job = _submit_default(queue, first_run_plan()[0], job.spec["data_dir"], snapshot=False)
        except CheckpointError:  # another session started it again first
            job = default_job(queue)
    return job


def paper_job() -> Job | None:
    """The job training the paper's configuration to convergence, queued once the readable model has landed (one
    trainer at a time); None before that, or once its run exists."""
    plan = first_run_plan()[1]
    if not (runs_root() / READABLE_RUN).is_dir() or (runs_root() / plan["run_name"]).is_dir():
        return None
    queue = job_queue(str(runs_root()))
    job = next((j for j in queue.jobs() if j.run_name == plan["run_name"]), None)
    if job is None or job.status == "lost":
        readable = default_job(queue)
        data_dir = readable.spec["data_dir"] if readable is not None else data_source().folder
        try:
            job = _submit_default(queue, plan, data_dir)
        except CheckpointError:  # another session queued it first
            job = next((j for j in queue.jobs() if j.run_name == plan["run_name"]), None)
    return job


# ----------------------------------------------------------------------------- the current sample

def _first_rated(cat: Catalog, user: int) -> dict:
    """A user's first movie that they really rated, at the rating's time (so a real rating shows)."""
    movie = next((m for m in cat.movies["movie_id"].to_list() if cat.rating(user, m)), int(cat.movies["movie_id"][0]))
    return {"user": user, "movie": movie, "time": request_time(cat, cat.sample(user, movie)["RequestTime"])}


def request_time(cat: Catalog, timestamp: float) -> float:
    """Request times are chosen to the minute (the time widget's precision), inside the data's time range
    (RequestTime is min-max scaled over it, and the model refuses times outside)."""
    return float(min(max(int(timestamp) // 60 * 60, cat.first_time), cat.last_time))


def current_sample(cat: Catalog) -> dict:
    sample = st.session_state.get("sample")  # a MovieLens sample; "rows" holds other data sets' (current_row)
    if sample is None or not _valid(cat, sample):
        sample = _first_rated(cat, int(cat.users["user_id"][0]))
        st.session_state["sample"] = sample
    return sample


def _valid(cat: Catalog, sample: dict) -> bool:
    try:
        cat.check_user(sample["user"]), cat.check_movie(sample["movie"]), cat.check_time(sample["time"])
        return True
    except DataError:
        return False


def sample_values(cat: Catalog, sample: dict) -> dict:
    return cat.sample(sample["user"], sample["movie"], sample["time"])


def to_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def from_date_time(day: date, clock: time) -> float:
    return datetime.combine(day, clock.replace(second=0, microsecond=0), tzinfo=timezone.utc).timestamp()


def keep(key: str, initial) -> None:
    """Give a widget its starting value through session state, once (so no `value=` clashes)."""
    if key not in st.session_state:
        st.session_state[key] = initial


def user_caption(cat, user_id: int) -> str:
    return cat.user_caption(user_id)


def movie_caption(cat, movie_id: int) -> str:
    return cat.item_caption(movie_id)


# ----------------------------------------------------------------------------- figures

def chart_config(name: str) -> dict:
    """The shared toolbar, saving images in the format chosen in the sidebar."""
    return plotly_config(st.session_state.get("image_format", "png"), filename=name)


def show_figure(fig, name: str, key: str) -> None:
    """A chart with the shared toolbar (PNG/SVG export) and HTML/CSV downloads built only on click."""
    st.plotly_chart(fig, config=chart_config(name), key=f"chart_{key}")
    html, csv = st.columns(2)
    html.download_button("Download HTML", data=lambda: figure_html(fig), file_name=f"{name}.html", mime="text/html",
                         key=f"html_{key}", type="tertiary", icon=":material/download:")
    csv.download_button("Download CSV", data=lambda: figure_csv(fig), file_name=f"{name}.csv", mime="text/csv",
                        key=f"csv_{key}", type="tertiary", icon=":material/table:")


# ----------------------------------------------------------------------------- interactions

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


# ----------------------------------------------------------------------------- readings of the attention

def _model_readings(run_path: str, key: str, progress=None) -> dict:
    """The run's readings on its test split (`sampling.model_readings`, cached on disk): {"default": name,
    "scores": {name: {"agreement", "precision_at_3", "median", "q1", "q3"}}}. A run trained on a prepared copy is
    scored on the copy's default sample of it."""
    from autoint.explain.sampling import model_readings as readings_of
    source = source_of(key)
    prepared = prepared_for(source, run_path)
    if prepared is not None:
        from autoint.explain.sampling import prepared_sample
        data, _ = prepared_sample(prepared, "test")
    else:
        data = dataset(key, run_path)
    result = readings_of(run_path, load_model(run_path), data, "test", progress=progress)
    return {"default": result.default,
            "scores": {n: {"agreement": r.agreement, "precision_at_3": r.precision_at_3, **(r.quartiles() or {})}
                       for n, r in result.readings.items()}}


def readings_task(run_path: str, key: str) -> Task:
    """Scoring the run's readings, in the background once per run and data (then from the disk cache)."""
    from autoint.explain.sampling import READING_ROWS
    return submit(("model-readings", run_path, key), lambda progress: _model_readings(run_path, key, progress),
                  f"Scoring the six readings of this model's attention on {READING_ROWS:,} test samples")


def model_readings(run_path: str, key: str) -> dict:
    """The run's scored readings; until they are scored, a progress bar and the page stops here."""
    return result_of(readings_task(run_path, key))


def reading_label(name: str, scores: dict | None = None) -> str:
    """`|∂logit/∂α| · ρ +0.72` for a picker; raw α is named as the paper's reading."""
    from autoint.explain.readings import READINGS
    text = READINGS[name].title
    score = (scores or {}).get(name, {}).get("agreement")
    return text + (f" · split ρ {score:+.2f}" if score is not None and np.isfinite(score) else "")


def reading_choice(page: str, run_path: str, key: str, *, container=None) -> tuple[str, dict]:
    """The reading a page shows, picked per run (keyed by page and run): first the run's best by split-level
    agreement, named with its ρ; raw α, the paper's reading, is one click away. Returns (name, model_readings)."""
    from autoint.explain.readings import NAMES, PAPER_READING, READINGS
    where = container or st
    task = readings_task(run_path, key)
    if not task.wait(QUICK_S):  # the first visit for this model: raw α until the readings are scored
        where.selectbox("Reading of the attention", [PAPER_READING], key=f"{page}_reading_pending::{run_path}",
                        format_func=lambda n: READINGS[n].title, disabled=True,
                        help="The other readings appear, the best one first, once this model's are scored.")
        with where:
            background_progress(task.key)
        return PAPER_READING, None
    scored = task.result()
    widget = f"{page}_reading::{run_path}"
    keep(widget, scored["default"])
    name = where.selectbox("Reading of the attention", NAMES, key=widget,
                           format_func=lambda n: reading_label(n, scored["scores"]),
                           help="The same attention, read six ways (autoint/explain/readings.py). Each is scored "
                                "against the interactions the model measurably uses, over the test split "
                                "(Spearman ρ over field pairs). The first one offered is this model's best.")
    best = scored["default"]
    best_score = scored["scores"][best]
    note = (f"This model's most faithful reading is **{READINGS[best].title}**: split ρ "
            f"{best_score['agreement']:+.2f}, median per-sample ρ {best_score.get('median') or float('nan'):+.2f}, "
            f"precision@3 {best_score['precision_at_3']:.2f} ({READINGS[best].paper}).")
    if name != PAPER_READING:
        paper = scored["scores"][PAPER_READING]["agreement"]
        note += f" Raw α, the paper's reading, scores ρ {paper:+.2f}."
    where.caption(note)
    return name, scored


def model_note(run_path: str) -> None:
    """One line on which model this is: the readable default is not the paper's model, and a button opens that."""
    source = data_source()
    readable, paper = model_pair(source)
    if readable is not None and run_path == readable["path"]:
        text = ("**The readable model** (the app's default): the authors' interacting layer, trained so its "
                "attention can be read. It is not the paper's configuration.")
        if paper is not None:
            left, right = st.columns([4, 1])
            left.caption(text)
            right.button("Open the paper's model", key=f"open_paper::{run_path}", icon=":material/article:",
                         on_click=use_run, args=(paper["path"],), type="tertiary")
        else:
            st.caption(text + " The paper's model trains after it, in the background.")
    elif paper is not None and run_path == paper["path"]:
        left, right = st.columns([4, 1])
        left.caption("**The paper's model**: Eqs. 5-9 as the paper writes them. Its attention ranks field pairs "
                     "unlike the interactions it uses; compare the readable model.")
        if readable is not None:
            right.button("Open the readable model", key=f"open_readable::{run_path}", icon=":material/visibility:",
                         on_click=use_run, args=(readable["path"],), type="tertiary")


def faithful_preset_hint(model) -> str | None:
    """When attention disagrees with the interactions: the preset that trains attention you can read, unless this
    model already has its settings."""
    from autoint.model.autoint import PRESET_DESCRIPTIONS, preset_of
    if preset_of(model.config) == defaults.READABLE_PRESET:
        return None
    return (f"A model whose attention you can read: the `{defaults.READABLE_PRESET}` preset (Train page). "
            f"{PRESET_DESCRIPTIONS[defaults.READABLE_PRESET]}")
