"""What the pages share: the data set, the model in use, the current sample, cached loads, the job queue.

Heavy objects (catalog, models, encoded data, scorers) live in `st.cache_resource`, tables and
dataset-level averages in `st.cache_data`; the current choices live in `st.session_state`
under plain keys, so they survive page switches (Streamlit forgets the state of widgets that
a page does not draw). No model math happens here: everything calls `autoint/`.
"""
from __future__ import annotations

import os
from datetime import date, datetime, time, timezone
from pathlib import Path

import streamlit as st
import torch

from autoint.datasets import Catalog, catalogue
from autoint.errors import AutoIntError
from autoint.explain.recommend import ItemScorer
from autoint.figures import figure_csv, figure_html, plotly_config
from autoint.training.metrics import pick_device
from autoint.training.runs import list_runs, load_run
from autoint.workspace import defaults, sources
from autoint.workspace.defaults import ATTENTION_MODELS, QUICK_RUN, READABLE_RUN
from autoint.workspace.sources import DataSource, runs_root, source_of

# Errors a person can act on (bad input, data, settings or files) are shown as such; anything else is a bug.
USER_ERRORS = (AutoIntError,)

# Exploring uses half the cores, a training job the other half (on 2 cores: one each).
CORES = os.cpu_count() or 1
APP_THREADS = max(1, CORES // 2)
JOB_THREADS = max(1, CORES - APP_THREADS)


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
    """Recommend needs user-role and item-role fields and a catalogue of users and items
    (`autoint.datasets.has_catalogue`)."""
    return source.has_catalog


@st.cache_resource(show_spinner="Reading users, movies and ratings ...", max_entries=4)
def catalog(folder: str) -> Catalog:
    return catalogue(folder)


@st.cache_resource(show_spinner="Encoding the data set for this model ...", max_entries=4)
def dataset(folder: str, run_path: str):
    """The data encoded with the run's own vocabularies (a run carries its schema), read as the CLI reads it
    (`sources.load_for_run`). `folder` is a data source's key (`DataSource.key`)."""
    source = source_of(folder)
    return sources.load_for_run(source.dataset, source.spec, source.folder, load_model(run_path).schema,
                                Path(run_path).name)[1]


def device() -> torch.device:
    return pick_device()


@st.cache_resource(show_spinner="Loading the model ...", max_entries=8)
def load_model(run_path: str):
    return load_run(run_path, device=device()).model


@st.cache_resource(show_spinner="Encoding every movie ...", max_entries=4)
def movie_scorer(run_path: str, folder: str) -> ItemScorer:
    return ItemScorer(load_model(run_path), catalog(folder))


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


# A picker lists a field's values in a selectbox up to this many; a bigger vocabulary gets a search box instead, and
# the selectbox lists the most frequent values that hold the text typed (never every value: a vocabulary can hold a
# million). One threshold for every page (Explore's filters, What-if's edits, Dataset correlations' slice).
VALUES_LISTED = 200


# Explore's attribution methods to begin with (Shapley sampling costs ~0.4 s more per sample); a link names others.
EXPLORE_METHODS = ("integrated_gradients", "feature_ablation")


def large_vocabulary(f) -> bool:
    """Whether a field's picker searches its vocabulary instead of listing it."""
    return len(f.vocab) > VALUES_LISTED


def to_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def from_date_time(day: date, clock: time) -> float:
    return datetime.combine(day, clock.replace(second=0, microsecond=0), tzinfo=timezone.utc).timestamp()


def keep(key: str, initial) -> None:
    """Give a widget its starting value through session state, once (so no `value=` clashes)."""
    if key not in st.session_state:
        st.session_state[key] = initial


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
