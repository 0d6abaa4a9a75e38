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
import torch

from autoint.data.dataset import DataError
from autoint.datasets import BUILTIN_SPECS, MOVIELENS, builtin_spec, read_spec, resolve_data_dir
from autoint.datasets.movielens import AGE_NAMES, OCCUPATION_NAMES, Catalog, load_movielens, read_movielens
from autoint.datasets.synth import GROUND_TRUTH, generate_movielens
from autoint.errors import AutoIntError
from autoint.explain.baselines import mean_embedding
from autoint.figures import figure_csv, figure_html, plotly_config
from autoint.training import jobs
from autoint.workspace.background import QUEUED, BackgroundRunner, Task
from autoint.training.jobs import ACTIVE, Job, JobQueue
from autoint.model.autoint import AutoIntConfig
from autoint.explain.recommend import ItemScorer
from autoint.training.runs import CheckpointError, clean_staging, list_runs, load_run
from autoint.data.samples import Row
from autoint.training.metrics import pick_device
from autoint.training.train import TrainConfig

SYNTHETIC_DIR = Path("data/synthetic")
# The offline default: big enough for the planted interactions to be learnt, small enough to train in seconds.
SYNTHETIC_SIZE = dict(users=600, movies=300, ratings=40000, seed=7)
DEFAULT_MODEL = AutoIntConfig()  # the library's defaults: 3 layers, 2 heads, d=16, d'=32
# On first start one background job trains the default model to convergence (early stopping on validation
# AUC restores the best weights) and, on the way, saves a quick run after FIRST_RUN_EPOCHS epochs so the
# pages can explain something within a couple of minutes. Sessions that use the quick run move to the
# converged one when it lands (`current_run_path`). Adam at lr 4e-3, halved after each epoch without a better
# validation AUC, converges in about half the epochs of lr 1e-3 and higher (u2999: 11 epochs, test AUC 0.831,
# vs 22 and 0.828); benchmarks/first_run.md has the measurements.
FIRST_RUN_EPOCHS = 5
FIRST_RUN_TRAINING = TrainConfig(epochs=30, patience=2, lr=4e-3, lr_decay=0.5)
FIRST_RUN_NAME = "default"  # the quick run
CONVERGED_RUN_NAME = "default-converged"
# Errors whose message tells a person what to do; the frame shows them with st.error.
# Errors a person can act on (bad input, data, settings or files) are shown as such; anything else is a bug.
USER_ERRORS = (AutoIntError,)
ATTENTION_MODELS = ("AutoInt", "AutoInt+")  # the models of the registry with interacting layers

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


def runs_root() -> Path:
    return Path(os.environ.get("AUTOINT_RUNS_DIR", "runs"))


# ----------------------------------------------------------------------------- data sets

DATA_ROOT = Path("data")  # one folder per data set (data/README.md); the sidebar offers each one found


@dataclass(frozen=True)
class DataSource:
    folder: Path
    synthetic: bool
    requested: Path  # where ML-1M was looked for (MovieLens), else the folder
    movielens_missing: bool  # the requested folder holds no MovieLens files
    dataset: str = MOVIELENS  # a built-in data set's name, or a user's spec's name
    spec: str | None = None  # a user's spec file (a built-in's ships with the code)

    @property
    def is_movielens(self) -> bool:
        return self.dataset == MOVIELENS and self.spec is None

    @property
    def key(self) -> str:
        """What cached loads and session choices are keyed by: a MovieLens folder's path (as before data sets
        other than MovieLens), else the data set, its spec and its folder."""
        if self.is_movielens:
            return str(self.folder)
        return f"{self.dataset}::{self.spec or ''}::{self.folder}"

    @property
    def label(self) -> str:
        if self.is_movielens:
            return f"{'synthetic (MovieLens format)' if self.synthetic else 'MovieLens-1M'} · {self.folder.name}"
        kind = " (spec)" if self.spec else " (generated)" if self.synthetic else ""
        return f"{self.dataset}{kind} · {self.folder.name}"


def has_movielens(folder: Path) -> bool:
    return (folder / "users.dat").is_file() and (folder / "movies.dat").is_file() and any(
        (folder / name).is_file() for name in ("ratings.dat", "ratings.dat.gz"))


def found_in(folder: Path) -> list[DataSource]:
    """The data sets a folder holds: MovieLens files, a built-in data set's files as distributed (Criteo's
    train.txt, Avazu's train, KDD12's training.txt), or a spec file (*.toml) for files beside it."""
    if not folder.is_dir():
        return []
    out = []
    if has_movielens(folder):
        out.append(DataSource(folder.resolve(), (folder / GROUND_TRUTH).is_file(), folder, False))
    generated = (folder / GROUND_TRUTH).is_file()  # autoint.datasets.synth's files, with their planted pairs
    for name in BUILTIN_SPECS:
        if all(any((folder / n).is_file() for n in alternatives) for alternatives in builtin_spec(name).files):
            out.append(DataSource(folder.resolve(), generated, folder, False, dataset=name))
    for path in sorted(folder.glob("*.toml")):
        try:
            name = read_spec(path).name
        except AutoIntError:  # a broken spec: offered under its file name, its error shown when chosen
            name = path.stem
        out.append(DataSource(folder.resolve(), generated, folder, False, dataset=name, spec=str(path.resolve())))
    return out


def data_sources() -> list[DataSource]:
    """Every data set on offer, the default first: the one AUTOINT_DATA_DIR names (else ML-1M in data/ml-1m;
    without it, the synthetic data, generated once), then each one found in a folder of data/.

    A folder with only some of the MovieLens files (users but no ratings, say) is an error, not a
    reason to fall back to synthetic data quietly."""
    requested = resolve_data_dir()
    first = found_in(requested)
    if not first:
        ratings = ("ratings.dat", "ratings.dat.gz")
        if any((requested / name).is_file() for name in ("users.dat", "movies.dat", *ratings)):
            missing = [name for name in ("users.dat", "movies.dat") if not (requested / name).is_file()]
            missing += [] if any((requested / name).is_file() for name in ratings) else \
                ["ratings.dat or ratings.dat.gz"]
            raise DataError(f"{requested}: holds part of MovieLens-1M but no {' and no '.join(missing)}. Add the "
                            f"missing files, run `python -m autoint download --data-dir {requested}`, or point "
                            f"AUTOINT_DATA_DIR elsewhere.")
        first = [DataSource(synthetic_folder().resolve(), True, requested, True)]
    out, seen = list(first), {s.key for s in first}
    folders = sorted(p for p in DATA_ROOT.iterdir() if p.is_dir() and p.name != "cache") if DATA_ROOT.is_dir() else []
    for folder in folders:
        for found in found_in(folder):
            if found.key not in seen:
                out.append(found)
                seen.add(found.key)
    return out


def data_source() -> DataSource:
    """The data set chosen in the sidebar (this session's), else the default."""
    sources = data_sources()
    chosen = st.session_state.get("data_key")
    return next((s for s in sources if s.key == chosen), sources[0])


def source_of(key: str) -> DataSource:
    """The data source a cache key names (`DataSource.key`)."""
    if "::" not in key:
        folder = Path(key)
        return DataSource(folder, (folder / GROUND_TRUTH).is_file(), folder, False)
    name, spec, folder = key.split("::", 2)
    return DataSource(Path(folder), (Path(folder) / GROUND_TRUTH).is_file(), Path(folder), False, dataset=name,
                      spec=spec or None)


def can_recommend(source: DataSource) -> bool:
    """Recommend needs user-role and item-role fields and a catalogue of users and items: MovieLens here."""
    return source.is_movielens


@st.cache_resource(show_spinner="Generating the synthetic data set ...")
def synthetic_folder() -> Path:
    if not has_movielens(SYNTHETIC_DIR):
        generate_movielens(SYNTHETIC_DIR, **SYNTHETIC_SIZE)
    return SYNTHETIC_DIR


@st.cache_resource(show_spinner="Reading users, movies and ratings ...", max_entries=4)
def catalog(folder: str) -> Catalog:
    return Catalog(read_movielens(folder))


@st.cache_resource(show_spinner="Encoding the data set for this model ...", max_entries=4)
def dataset(folder: str, run_path: str):
    """The data encoded with the run's own vocabularies (a run carries its schema). `folder` is a data source's
    key: a MovieLens folder, or a data set read by its spec (`DataSource.key`)."""
    source = source_of(folder)
    if source.is_movielens:
        return load_movielens(folder, schema=load_model(run_path).schema)
    from autoint.datasets import load_dataset as load_any
    return load_any(source.dataset, spec=source.spec, data_dir=source.folder, schema=load_model(run_path).schema)


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


def trained_on(run: dict, source: DataSource) -> bool:
    """Whether a listed run was trained on this data set (its fields and vocabularies are that data set's).
    MovieLens runs record no data set name; any MovieLens folder takes them (the current folder's come first)."""
    return (run.get("dataset") or MOVIELENS) == source.dataset


def runs_for(source: DataSource) -> list[dict]:
    """The finished runs of this data set, newest first: the model picker's choices."""
    return [r for r in finished_runs() if trained_on(r, source)]


def broken_runs() -> list[dict]:
    """Run folders that do not load, with the reason (shown, never hidden)."""
    return [r for r in list_runs(runs_root()) if r.get("error") is not None]


def current_run_path() -> str | None:
    """The run the pages use: the one chosen in the sidebar or on the Train page, else this session's default
    pick (the newest run on the current data, kept for the session). A default pick of the quick first-run
    model moves to the converged one when that lands, and the page says so once (`take_swap_message`)."""
    source = data_source()
    runs = runs_for(source)  # a model explains the data set it was trained on
    paths = [r["path"] for r in runs]
    chosen = st.session_state.get("run_path")  # set only by a person's choice
    if chosen in paths:
        return chosen
    by_name = {r["name"]: r for r in runs}
    quick, converged = by_name.get(FIRST_RUN_NAME), by_name.get(CONVERGED_RUN_NAME)
    pick = st.session_state.get("run_auto")
    if pick not in paths:
        folder = str(source.folder)
        same_data = [r["path"] for r in runs if str(Path(r.get("data_dir") or "").resolve()) == folder]
        pick = (same_data or paths or [None])[0]
        if quick and converged and pick == quick["path"]:  # both landed before this session started
            pick = converged["path"]
    elif quick and converged and pick == quick["path"]:
        pick = converged["path"]
        st.session_state["run_swap_message"] = swap_message(quick, converged)
    st.session_state["run_auto"] = pick
    return pick


def swap_message(quick: dict, converged: dict) -> str:
    before, after = quick["metrics"].get("test_auc"), converged["metrics"].get("test_auc")
    aucs = f" (test AUC {before:.4f} → {after:.4f})" if isinstance(before, float) and isinstance(after, float) else ""
    return (f"The default model finished training to convergence{aucs} and is now in use; the quick model "
            f"(`{FIRST_RUN_NAME}`) stays selectable in the sidebar.")


def take_swap_message() -> str | None:
    """The message of a swap to the converged default that happened in this script run, once."""
    return st.session_state.pop("run_swap_message", None)


def require_model():
    """(run path, model) for a page that explains; without a trained model, show the first-run training
    (MovieLens), or say where to train one (any other data set: its size is unknown, so nothing starts by itself)."""
    path = current_run_path()
    if path is None:
        source = data_source()
        if not source.is_movielens:
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
    cat = catalog(str(source.folder)) if source.is_movielens else None  # a broken folder: its error, no training
    run_path, model = require_model()
    if cat is not None:
        sample = current_sample(cat)
        known = cat.rating(sample["user"], sample["movie"])
        return Current(source, source.key, run_path, model, sample, sample_values(cat, sample),
                       f"user {sample['user']} and *{cat.movie(sample['movie'])['title']}*", cat,
                       None if known is None or known[0] == 3 else int(known[0] > 3))
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


def source_spec(source: DataSource):
    """The spec of a data source other than MovieLens (a built-in's, or the user's file)."""
    return read_spec(source.spec) if source.spec else builtin_spec(source.dataset)


def raw_bytes(source: DataSource) -> int:
    """The size of a data source's raw files (0 for MovieLens, which is small and has no spec)."""
    if source.is_movielens:
        return 0
    from autoint.datasets.generic import resolve_files
    try:
        return sum(p.stat().st_size for p in resolve_files(source_spec(source), source.folder))
    except (AutoIntError, OSError):  # a broken spec or a missing file: the page that reads it says why
        return 0


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
    if source.is_movielens:
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
    """The newest job training the default model (a first-run one is named after the converged run)."""
    return next((j for j in queue.jobs() if j.run_name in (CONVERGED_RUN_NAME, FIRST_RUN_NAME)), None)


def first_run_training() -> None:
    """No run yet: train the default model in the background, show its progress, rerun at the quick run."""
    queue = job_queue(str(runs_root()))
    source = data_source()
    job = default_job(queue)
    if job is None or job.status not in ACTIVE:  # none yet, or it ended without leaving a run
        if job is not None and job.status != "finished":
            st.warning(f"The last default training ended: {job.description}. Starting it again.")
        for name in (FIRST_RUN_NAME, CONVERGED_RUN_NAME):
            if (runs_root() / name).exists():  # a default run that does not load: keep it for inspection
                st.error(f"{runs_root() / name} exists but cannot be used; see the Train page's registry.")
                return
        queue.submit(DEFAULT_MODEL, FIRST_RUN_TRAINING, source.folder, run_name=CONVERGED_RUN_NAME,
                     snapshot=(FIRST_RUN_EPOCHS, FIRST_RUN_NAME))
    st.info(f"No trained model yet, so the default AutoInt ({DEFAULT_MODEL.layers} layers, {DEFAULT_MODEL.heads} "
            f"heads, d={DEFAULT_MODEL.embed_dim}) is training on {source.folder.name}. The page continues by "
            f"itself with a quick model after {FIRST_RUN_EPOCHS} epochs; training goes on in the background to "
            f"convergence (up to {FIRST_RUN_TRAINING.epochs} epochs, early stopping on validation AUC), and the "
            f"pages move to that better model when it is ready.")
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
    st.progress(job.progress_to(FIRST_RUN_EPOCHS), text=f"Training the default model: {text}")
    if job.status in ("failed", "lost"):
        st.error(f"The default training {job.description}. Log: {job.folder / 'log.txt'}")


def converging_default() -> Job | None:
    """The job training the default model to convergence, until its run lands. A job whose process ended
    without a word (lost: the machine restarted, the worker was killed) is started again; a cancelled or
    failed one is not (the quick run stays in use)."""
    queue = job_queue(str(runs_root()))
    job = default_job(queue)
    if job is None or job.run_name != CONVERGED_RUN_NAME or (runs_root() / CONVERGED_RUN_NAME).is_dir():
        return None
    if job.status == "lost" and (runs_root() / FIRST_RUN_NAME).is_dir():
        try:
            job = queue.submit(DEFAULT_MODEL, FIRST_RUN_TRAINING, job.spec["data_dir"], run_name=CONVERGED_RUN_NAME)
        except CheckpointError:  # another session started it again first
            job = default_job(queue)
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


def user_caption(cat: Catalog, user_id: int) -> str:
    u = cat.user(user_id)
    gender = {"M": "male", "F": "female"}.get(u["gender"], u["gender"])
    return (f"{gender}, age {AGE_NAMES.get(str(u['age']), u['age'])}, "
            f"{OCCUPATION_NAMES.get(str(u['occupation']), u['occupation'])}, zip {u['zipcode']}")


def movie_caption(cat: Catalog, movie_id: int) -> str:
    m = cat.movie(movie_id)
    return f"{m['year'] or 'year unknown'} · {', '.join(m['genres'])}"


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

INTERACTION_BASELINES = {"mean": "training-mean embedding", "unknown": "the <unknown> value"}


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


def faithful_preset_hint(model) -> str | None:
    """When attention disagrees with the interactions: which preset trains attention that agrees (from the
    faithfulness benchmark), unless this model already is one."""
    from autoint.model.autoint import PRESET_DESCRIPTIONS, PRESETS
    others = {name: overrides for name, overrides in PRESETS.items() if overrides}
    if not others or any(all(getattr(model.config, k) == v for k, v in overrides.items())
                         for overrides in others.values()):
        return None
    return "A model whose attention you can read: " + " ".join(
        f"the `{name}` preset on the Train page. {PRESET_DESCRIPTIONS.get(name, '')}" for name in others)
