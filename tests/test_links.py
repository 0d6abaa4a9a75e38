"""A link to any view (app/links.py), driven by Streamlit's AppTest: a page's state goes into the URL's query
parameters and comes back from them in a new session; a bad link names its bad value and the page shows its default,
never a traceback."""
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from conftest import tiny_criteo_run
import test_app
from test_app import APP, TIMEOUT, finish_background

DEFAULT_LAYER = DEFAULT_HEAD = 1
app_env = test_app.app_env  # the fixture: the app on the small synthetic data, one run (`small`: 2 layers, 2 heads)


def opened(params: dict, page: str | None = None, settle: bool = True) -> AppTest:
    """A new session opening a link: the query parameters set before the first run. On another `page`, AppTest
    needs a first run on Explore (it finds a page by its url_path only then): the link is then opened in that
    session, as the browser's back button does."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if page:
        at.run()
        at.query_params.clear()
        at.switch_page(page)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    if settle:
        finish_background(at)
    assert not at.exception, at.exception
    return at


def warnings(at) -> list[str]:
    """The link's warnings (the pages' verdicts are warnings too)."""
    return [str(w.value) for w in at.warning if "link" in str(w.value)]


def params(at) -> dict:
    """The URL's query parameters after the run, each a list of values."""
    return {name: value if isinstance(value, list) else [value] for name, value in at.query_params.items()}


def ctr(at) -> str:
    return next(m.value for m in at.metric if m.label == "Predicted CTR")


def test_explore_round_trip_state_params_state(app_env):
    """Choices made on Explore land in the URL; a new session opening that URL has the same state and numbers."""
    at = opened({})
    assert params(at)["run"] == ["small"] and {"user", "movie", "time", "layer", "head", "reading"} <= set(params(at))
    at.selectbox(key="explore_movie").set_value(7)
    at.run()
    at.selectbox(key="explore_layer").set_value(2)
    at.selectbox(key="explore_head").set_value(2)
    reading_key = f"explore_reading::{at.session_state['sidebar_run']}"
    at.selectbox(key=reading_key).set_value("value-norm")
    at.radio(key="explore_baseline").set_value("unknown")
    at.run()
    link = params(at)
    assert link["movie"] == ["7"] and link["layer"] == ["2"] and link["head"] == ["2"]
    assert link["reading"] == ["value-norm"] and link["baseline"] == ["unknown"]
    assert any(c.value.startswith("http") or c.value.startswith(".?") for c in at.code), [c.value for c in at.code]
    again = opened({name: values if len(values) > 1 else values[0] for name, values in link.items()})
    assert not warnings(again) and not again.error
    for key in ("sample", "explore_layer", "explore_head", "explore_baseline", reading_key):
        assert again.session_state[key] == at.session_state[key], key
    assert ctr(again) == ctr(at)
    assert params(again) == link


@pytest.mark.parametrize("name, value, key, default", [
    ("layer", "9", "explore_layer", DEFAULT_LAYER),
    ("layer", "two", "explore_layer", DEFAULT_LAYER),
    ("head", "0", "explore_head", DEFAULT_HEAD),
    ("reading", "tea-leaves", None, None),
    ("time", "yesterday-ish", None, None),
    ("time", "1900-01-01T00:00", None, None),
    ("user", "99999", None, None),
    ("movie", "abc", None, None),
    ("baseline", "zero", "explore_baseline", "mean"),
    ("frobnicate", "1", None, None),
])
def test_a_bad_value_is_named_and_the_page_shows_its_default(app_env, name, value, key, default):
    at = opened({"user": "2", name: value} if name != "user" else {name: value})
    assert any((name if name == "frobnicate" else value) in w for w in warnings(at)), warnings(at)
    assert not at.error, [e.value for e in at.error]
    if key:
        assert at.session_state[key] == default
    if name == "reading":  # the model's best, as without a link
        plain = opened({})
        reading_key = f"explore_reading::{plain.session_state['sidebar_run']}"
        assert at.session_state[reading_key] == plain.session_state[reading_key]
    if name in ("time", "movie"):  # the rest of the link still applies: user 2
        assert at.session_state["sample"]["user"] == 2 or name == "movie"
    assert not at.exception


def test_a_missing_run_or_data_set_is_named_and_the_default_shown(app_env):
    at = opened({"run": "gone-run", "layer": "2"})
    assert any("gone-run" in w for w in warnings(at)), warnings(at)
    assert at.session_state["sidebar_run"].endswith("small")  # the default model
    assert at.session_state["explore_layer"] == 2  # the rest of the link applies to it
    assert params(at)["run"] == ["small"]  # and the URL now says what is shown
    at = opened({"data": "no-such-folder"})
    assert any("no-such-folder" in w for w in warnings(at)), warnings(at)
    assert ctr(at).endswith("%")


def test_what_if_edits_and_learn_fields_round_trip(app_env):
    edits = ["Age:25", "Genre:Drama|Comedy", "RequestTime:2001-01-01T10:30"]
    at = opened({"user": "3", "movie": "5", "set": edits, "layer": "2", "head": "mean"}, page="app/what_if.py")
    assert not warnings(at), warnings(at)
    assert at.session_state["whatif_edits"]["Age"] == "25"
    assert sorted(at.session_state["whatif_edits"]["Genre"]) == ["Comedy", "Drama"]
    link = params(at)
    assert link["head"] == ["mean"] and link["user"] == ["3"] and link["layer"] == ["2"]
    assert sorted(link["set"]) == sorted(edits)
    again = opened({name: values if len(values) > 1 else values[0] for name, values in link.items()},
                   page="app/what_if.py")
    assert again.session_state["whatif_edits"] == at.session_state["whatif_edits"]
    assert [m.value for m in again.metric] == [m.value for m in at.metric]  # CTR before and after
    at = opened({"set": ["Nope:1"], "head": "3"}, page="app/what_if.py")
    assert any("Nope" in w for w in warnings(at)) and any("head 3" in w for w in warnings(at)), warnings(at)
    at = opened({"query": "Gender", "key": "Zip"}, page="app/learn.py")
    assert any("Zip" in w for w in warnings(at)), warnings(at)
    assert params(at)["query"] == ["Gender"]


@pytest.fixture(scope="module")
def criteo(tmp_path_factory):
    return tiny_criteo_run(tmp_path_factory, "links", rows=600, batch_size=128)


@pytest.fixture
def criteo_env(monkeypatch, tmp_path, criteo):
    folder, run = criteo
    runs = tmp_path / "runs"
    shutil.copytree(run, runs / run.name)
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(folder))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    return run


def test_rows_and_field_filters_of_any_data_set(criteo_env, few_estimated_rows):
    at = opened({"row": "5"})
    assert not warnings(at), warnings(at)
    assert params(at)["row"] == ["5"] and "test sample 5 " in " ".join(c.value for c in at.caption)
    at = opened({"row": "999999"})
    assert any("999999" in w and "out of range" in w for w in warnings(at)), warnings(at)
    assert params(at).get("row", ["0"]) == ["0"]  # the first test sample, the default
    at = opened({"where": "Nofield:3"})
    assert any("Nofield" in w for w in warnings(at)), warnings(at)
    assert at.session_state["explore_filter_fields"] == []
    at = opened({"user": "1"})  # a sample of users and items on a data set without them
    assert any("user" in w for w in warnings(at)), warnings(at)


def test_correlations_recommend_train_and_paper_pages_round_trip(app_env, trained_run):
    link = {"size": "500", "seed": "3", "label": "click", "slice": "Gender:F", "reading": "raw"}
    at = opened(link, page="app/correlations.py")
    assert not warnings(at), warnings(at)
    assert (at.session_state["corr_sample_size"], at.session_state["corr_sample_seed"]) == (500, 3)
    assert at.session_state["corr_label"] == 1 and at.session_state["corr_value_Gender"] == "F"
    assert {name: params(at)[name] for name in link} == {name: [value] for name, value in link.items()}
    at = opened({"size": "0", "label": "maybe", "slice": "Gender:X"}, page="app/correlations.py")
    named = " ".join(warnings(at))
    assert "sample size 0" in named and "'maybe'" in named and "'X'" in named, named
    assert at.session_state["corr_label"] is None and at.session_state["corr_field"] == "(any)"

    at = opened({"user": "4", "time": "2002-01-01T08:30", "top": "7", "rated": "include"}, page="app/recommend.py")
    assert not warnings(at), warnings(at)
    assert at.session_state["recommend_user"] == 4 and at.session_state["recommend_top"] == 7
    assert params(at)["time"] == ["2002-01-01T08:30"] and params(at)["rated"] == ["include"]
    at = opened({"top": "500"}, page="app/recommend.py")
    assert any("top 500" in w for w in warnings(at)) and at.session_state["recommend_top"] == 10

    at = opened({"runs": "small,ghost"}, page="app/train_page.py")
    assert any("ghost" in w for w in warnings(at)), warnings(at)
    at = opened({"combine": "ghost,small"}, page="app/train_page.py")
    assert any("run **ghost** is not on this server; comparing the runs above" in w for w in warnings(at))
    at = opened({"results": "nowhere"}, page="app/paper.py")
    assert not at.exception  # no results on this server: the page says so, the link's folder is named
    assert any("nowhere" in w for w in warnings(at)), warnings(at)


def test_a_page_that_stops_early_still_shows_its_link(app_env):
    """The Train page with one run ends early (st.stop: nothing to compare); the sidebar still has the link."""
    at = opened({}, page="app/train_page.py")
    codes = [c.value for c in at.sidebar.code]
    assert len(codes) == 1 and "run=small" in codes[0] and "train" in codes[0], codes


@pytest.mark.parametrize("url, page, expected", [
    ("http://127.0.0.1:8501/train", "train", "http://127.0.0.1:8501/train?run=small"),
    ("http://127.0.0.1:8501/", "", "http://127.0.0.1:8501?run=small"),
    ("http://host/base/what-if", "what-if", "http://host/base/what-if?run=small"),
    (None, "train", "/train?run=small")])
def test_the_link_names_the_page_once(monkeypatch, url, page, expected):
    """The browser's address already ends in the page's path on every page but Explore: the link names it once."""
    from unittest import mock
    import app.links as links
    monkeypatch.setattr(links.st, "context", mock.Mock(url=url))
    assert links.link(page, {"run": ["small"]}) == expected
