"""The sample a page explains: the model in use, the current sample (a user and an item, or a test row), and the
pickers that choose it by field values."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from autoint.data.samples import Row
from autoint.datasets import Catalog
from autoint.errors import DataError
from autoint.workspace.sources import DataSource, source_of

from app.state import VALUES_LISTED, catalog, current_run_path, data_source, dataset, load_model
from app.views import prepared_for
from app.first_start import first_run_training


def require_model():
    """(run path, model) for a page that explains; without a trained model, show the first-run training
    (a data set with a catalogue), or say where to train one (any other data set: its size is unknown, so nothing starts by itself)."""
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
    """What the per-sample pages of a catalogued data set start from: (data folder, catalog, run path, model, current sample)."""
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
    sample: dict  # a catalogued data set: {"user", "movie", "time"}; any other: {"row"}, a test-split position
    values: dict  # the sample's raw field values
    caption: str  # the sample in words: "user 12 and *Toy Story (1995)*", "test sample 17"
    catalog: Catalog | None = None  # a catalogued data set only (autoint.datasets.has_catalogue)
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
    """This browser session's sample of a data set without a catalogue: a position in its test split (the first
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


def _first_rated(cat: Catalog, user: int) -> dict:
    """A user's first movie that they really rated, at the rating's time (so a real rating shows)."""
    movie = next((m for m in cat.movies["movie_id"].to_list() if cat.rating(user, m)), int(cat.movies["movie_id"][0]))
    return {"user": user, "movie": movie, "time": request_time(cat, cat.sample(user, movie)["RequestTime"])}


def request_time(cat: Catalog, timestamp: float) -> float:
    """Request times are chosen to the minute (the time widget's precision), inside the data's time range
    (RequestTime is min-max scaled over it, and the model refuses times outside)."""
    return float(min(max(int(timestamp) // 60 * 60, cat.first_time), cat.last_time))


def current_sample(cat: Catalog) -> dict:
    sample = st.session_state.get("sample")  # a catalogued data set's sample; "rows" holds other data sets' (current_row)
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
