"""What the pages share: the data set, the model in use, the current sample, cached loads, the job queue.

Heavy objects (catalog, models, encoded data, scorers) live in `st.cache_resource`, tables and
dataset-level averages in `st.cache_data`; the current choices live in `st.session_state`
under plain keys, so they survive page switches (Streamlit forgets the state of widgets that
a page does not draw). No model math happens here: everything calls `autoint/`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path

import streamlit as st
import torch

from autoint.data import Catalog, DataError, load_dataset, read_movielens, resolve_data_dir
from autoint.explain import MovieScorer, mean_embedding
from autoint.figures import FigureError, figure_csv, figure_html, plotly_config
from autoint.jobs import JobQueue
from autoint.model import AutoIntConfig, ConfigError
from autoint.runs import CheckpointError, clean_staging, list_runs, load_run
from autoint.schema import SchemaError
from autoint.steps import StepsError
from autoint.synth import GROUND_TRUTH, generate
from autoint.train import TrainConfig, pick_device

SYNTHETIC_DIR = Path("data/synthetic")
# The offline default: big enough for the planted interactions to be learnt, small enough to train in seconds.
SYNTHETIC_SIZE = dict(users=600, movies=300, ratings=40000, seed=7)
DEFAULT_MODEL = AutoIntConfig()  # the library's defaults: 3 layers, 2 heads, d=16, d'=32
FIRST_RUN_TRAINING = TrainConfig(epochs=5, patience=2)
FIRST_RUN_NAME = "default"
# Errors whose message tells a person what to do; the frame shows them with st.error.
USER_ERRORS = (DataError, ConfigError, SchemaError, CheckpointError, StepsError, FigureError)

# Exploring uses half the cores, a training job the other half (on 2 cores: one each).
CORES = os.cpu_count() or 1
APP_THREADS = max(1, CORES // 2)
JOB_THREADS = max(1, CORES - APP_THREADS)


def runs_root() -> Path:
    return Path(os.environ.get("AUTOINT_RUNS_DIR", "runs"))


# ----------------------------------------------------------------------------- data set

@dataclass(frozen=True)
class DataSource:
    folder: Path
    synthetic: bool
    requested: Path  # where ML-1M was looked for
    movielens_missing: bool  # the requested folder holds no MovieLens files


def has_movielens(folder: Path) -> bool:
    return (folder / "users.dat").is_file() and (folder / "movies.dat").is_file() and any(
        (folder / name).is_file() for name in ("ratings.dat", "ratings.dat.gz"))


def data_source() -> DataSource:
    """ML-1M from AUTOINT_DATA_DIR or data/ml-1m; without it, the synthetic data (generated once).

    A folder with only some of the MovieLens files (users but no ratings, say) is an error, not a
    reason to fall back to synthetic data quietly."""
    requested = resolve_data_dir()
    if has_movielens(requested):
        return DataSource(requested.resolve(), (requested / GROUND_TRUTH).is_file(), requested, False)
    ratings = ("ratings.dat", "ratings.dat.gz")
    if any((requested / name).is_file() for name in ("users.dat", "movies.dat", *ratings)):
        missing = [name for name in ("users.dat", "movies.dat") if not (requested / name).is_file()]
        missing += [] if any((requested / name).is_file() for name in ratings) else ["ratings.dat or ratings.dat.gz"]
        raise DataError(f"{requested}: holds part of MovieLens-1M but no {' and no '.join(missing)}. Add the "
                        f"missing files, run `python -m autoint download --data-dir {requested}`, or point "
                        f"AUTOINT_DATA_DIR elsewhere.")
    return DataSource(synthetic_folder().resolve(), True, requested, True)


@st.cache_resource(show_spinner="Generating the synthetic data set ...")
def synthetic_folder() -> Path:
    if not has_movielens(SYNTHETIC_DIR):
        generate(SYNTHETIC_DIR, **SYNTHETIC_SIZE)
    return SYNTHETIC_DIR


@st.cache_resource(show_spinner="Reading users, movies and ratings ...", max_entries=4)
def catalog(folder: str) -> Catalog:
    return Catalog(read_movielens(folder))


@st.cache_resource(show_spinner="Encoding the data set for this model ...", max_entries=4)
def dataset(folder: str, run_path: str):
    """The data encoded with the run's own vocabularies (a run carries its schema)."""
    return load_dataset(folder, schema=load_model(run_path).schema)


# ----------------------------------------------------------------------------- models and runs

def device() -> torch.device:
    return pick_device()


@st.cache_resource(show_spinner="Loading the model ...", max_entries=8)
def load_model(run_path: str):
    return load_run(run_path, device=device()).model


@st.cache_resource(max_entries=8)
def baseline(run_path: str, folder: str) -> torch.Tensor:
    """Integrated Gradients' baseline: the training-mean embedding of each field."""
    return mean_embedding(load_model(run_path), dataset(folder, run_path).split("train")[0])


@st.cache_resource(show_spinner="Encoding every movie ...", max_entries=4)
def movie_scorer(run_path: str, folder: str) -> MovieScorer:
    return MovieScorer(load_model(run_path), catalog(folder))


@st.cache_resource
def job_queue(root: str) -> JobQueue:
    """One queue per runs folder and server process: it outlives reruns and sessions."""
    clean_staging(root, older_than_s=3600)  # half-written runs of a process killed long ago
    return JobQueue(root, threads=JOB_THREADS)


def finished_runs() -> list[dict]:
    return [r for r in list_runs(runs_root()) if r.get("error") is None]


def broken_runs() -> list[dict]:
    """Run folders that do not load, with the reason (shown, never hidden)."""
    return [r for r in list_runs(runs_root()) if r.get("error") is not None]


def current_run_path() -> str | None:
    """The run the pages use: the sidebar's choice, else the newest run trained on the current data."""
    runs = finished_runs()
    paths = [r["path"] for r in runs]
    chosen = st.session_state.get("run_path")
    if chosen in paths:
        return chosen
    folder = str(data_source().folder)
    same_data = [r["path"] for r in runs if str(Path(r.get("data_dir") or "").resolve()) == folder]
    pick = (same_data or paths or [None])[0]
    st.session_state["run_path"] = pick
    return pick


def require_model():
    """(run path, model) for a page that explains; without a trained model, show the first-run training."""
    path = current_run_path()
    if path is None:
        first_run_training()
        st.stop()
    return path, load_model(path)


def exploring() -> tuple[str, Catalog, str, object, dict]:
    """What every per-sample page starts from: (data folder, catalog, run path, model, current sample)."""
    folder = str(data_source().folder)
    cat = catalog(folder)
    run_path, model = require_model()
    return folder, cat, run_path, model, current_sample(cat)


def first_run_training() -> None:
    """Train the default model in the background and show its progress; rerun when it is ready."""
    queue = job_queue(str(runs_root()))
    source = data_source()
    jobs = [j for j in queue.jobs() if j.run_name == FIRST_RUN_NAME]
    if not jobs or jobs[0].status in ("failed", "cancelled", "lost"):
        if jobs:
            st.warning(f"The last default training ended: {jobs[0].description}. Starting it again.")
        if (runs_root() / FIRST_RUN_NAME).exists():  # a default run that does not load: keep it for inspection
            st.error(f"{runs_root() / FIRST_RUN_NAME} exists but cannot be used; see the Train page's registry.")
            return
        queue.submit(DEFAULT_MODEL, FIRST_RUN_TRAINING, source.folder, run_name=FIRST_RUN_NAME)
    st.info(f"No trained model yet, so the default AutoInt ({DEFAULT_MODEL.layers} layers, {DEFAULT_MODEL.heads} "
            f"heads, d={DEFAULT_MODEL.embed_dim}) is training on {source.folder.name} for up to "
            f"{FIRST_RUN_TRAINING.epochs} epochs. The page continues by itself when it is ready.")
    _first_run_progress(queue)


@st.fragment(run_every=1.0)
def _first_run_progress(queue: JobQueue) -> None:
    job = [j for j in queue.jobs() if j.run_name == FIRST_RUN_NAME][0]
    st.progress(job.progress, text=f"Training the default model: {job.description}")
    if job.status == "finished":
        st.rerun(scope="app")
    if job.status in ("failed", "lost"):
        st.error(f"The default training {job.description}. Log: {job.folder / 'log.txt'}")


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
    sample = st.session_state.get("sample")
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
    from autoint.schema import AGE_NAMES, OCCUPATION_NAMES
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
