"""The app on a data set other than MovieLens: a generated Criteo-format set (39 fields) with a tiny model trained
one epoch. Explore picks a test sample by field values and shows its real label; Dataset correlations averages
attention and measures the interactions on a subsample; every label comes from the schema."""
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from conftest import tiny_criteo_run
from test_app import array, chart, start as start_app  # the app tests' helpers

TIMEOUT = 180
MOVIELENS_WORDS = ("Gender", "Genre", "Age", "Occupation", "Zipcode", "ReleaseTime", "RequestTime", "movie", "Movie")


@pytest.fixture(scope="module")
def criteo(tmp_path_factory):
    """(data folder, run folder): 3,000 Criteo-format rows and an AutoInt (1 layer, 1 head, d=4) trained one epoch."""
    return tiny_criteo_run(tmp_path_factory, "tiny", 3000, 256)


@pytest.fixture
def criteo_app(monkeypatch, tmp_path, criteo, trained_run, few_estimated_rows):
    """The app on the Criteo-format folder; the runs folder also holds a MovieLens run, which must not be offered."""
    folder, run = criteo
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(run, runs / run.name)
    shutil.copytree(trained_run.path, runs / "movielens-small")
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(folder))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    return folder, runs / run.name


def start(page=None, **session) -> AppTest:
    return start_app(page, timeout=TIMEOUT, **session)  # 39 fields: slower first runs


def shown_text(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [s.label for s in at.selectbox] + [h.value for h in at.subheader]
    return "\n".join(parts)


def test_explore_picks_a_test_sample_by_field_values_and_shows_its_real_label(criteo_app):
    from autoint.datasets import load_dataset
    from autoint.explain.explanation import explain_sample
    from autoint.training.runs import load_run
    from autoint.data.samples import split_row, value_counts
    folder, run_path = criteo_app
    run = load_run(run_path)
    data = load_dataset("criteo", data_dir=folder, schema=run.schema)
    at = start()
    # the sidebar offers the Criteo run only, and no Recommend page (no users and items)
    assert at.sidebar.selectbox(key="sidebar_run").options == ["criteo-tiny"]  # not the MovieLens run
    pickers = {s.key: s for s in at.sidebar.selectbox}
    if "sidebar_data" in pickers:  # other data sets under data/: AUTOINT_DATA_DIR's comes first, chosen
        assert pickers["sidebar_data"].value.startswith("criteo::")
        assert pickers["sidebar_data"].options[0] == "criteo (generated) · criteo"
    else:
        assert "criteo (generated) · criteo" in at.sidebar.markdown[1].value
    first = split_row(data, "test", 0)
    expected = explain_sample(run.model, first.values)
    ctr = next(m for m in at.metric if m.label == "Predicted CTR")
    assert ctr.value == f"{expected.ctr:.1%}"
    label = next(m for m in at.metric if m.label == "Real label")
    assert label.value == ("click" if first.label else "no click")
    grid = chart(at, "Attention per layer and head")
    assert grid["data"][0]["y"] == expected.labels and len(expected.labels) == 39
    assert expected.labels[4].startswith("I5=") and expected.labels[15].startswith("C3=")

    # filter by C3's most frequent value: the sample shown has it, and its real label is the data's
    value, count = value_counts(data, "test", "C3")[0]
    at.multiselect(key="explore_filter_fields").set_value(["C3"]).run()
    at.selectbox(key="explore_value_C3").set_value(value).run()
    assert not at.exception and not at.error
    assert at.number_input(key="explore_match").label.endswith(f"of {count:,} matching test samples)")
    at.button(key="explore_random").click().run()
    shown = split_row(data, "test", at.session_state["rows"][next(iter(at.session_state["rows"]))])
    assert shown.values["C3"] == value
    assert next(m for m in at.metric if m.label == "Real label").value == ("click" if shown.label else "no click")
    labels = chart(at, "Attention per layer and head")["data"][0]["y"]
    assert f"C3={value}" in labels
    # C3's vocabulary is small (13 values): every value listed, no search box (tests/test_app_big_data.py has one)
    assert not [t for t in at.text_input if t.key == "explore_search_C3"]
    assert len(at.selectbox(key="explore_value_C3").options) == len(value_counts(data, "test", "C3", limit=10**6))
    side = chart(at, "Attention beside the measured interactions")
    assert side["data"][0]["y"] == labels  # the interaction map is there, over the same fields
    text = shown_text(at)
    for word in MOVIELENS_WORDS:
        assert word not in text, word


def test_recommend_is_not_offered_without_users_and_items(criteo_app):
    at = start()
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not registered: not offered
        at.switch_page("app/recommend.py")


def test_dataset_correlations_on_criteo_average_attention_and_measure_a_subsample(criteo_app):
    from autoint.datasets import load_dataset
    from autoint.explain.explanation import dataset_correlations
    from autoint.training.runs import load_run
    folder, run_path = criteo_app
    run = load_run(run_path)
    data = load_dataset("criteo", data_dir=folder, schema=run.schema)
    at = start("app/correlations.py", corr_sample_rows=8)
    x, y = data.split("test")
    expected = dataset_correlations(run.model, x, y)
    side = chart(at, "Fig. 7(b) beside the measured interactions")
    assert side["data"][0]["x"] == run.schema.names  # I1 ... C26, from the schema
    assert "8 samples" in side["layout"]["title"]["text"]
    assert [array(trace["z"]).shape for trace in side["data"][:2]] == [(39, 39), (39, 39)]  # attention, interactions
    total = len(x)
    assert any(f"Measured on 8 samples: the slice's share of 8 of {total:,} test samples, seed 0" in c.value
               for c in at.caption), [c.value for c in at.caption]
    assert any(f"{total:,} of {total:,} test samples (the whole split)" in c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "pair" in d.value.columns)
    assert len(table) == 39 * 38 // 2 and "± standard error" in table.columns
    assert expected.count == len(x)
    text = shown_text(at)
    assert "(4-5 stars)" not in text and "clicks only (label 1)" in [o for o in at.radio(key="corr_label").options]
    # slice by a field value, found by search in the test split's values
    at.selectbox(key="corr_field").set_value("C3").run()
    assert not at.exception and not at.error
    options = at.selectbox(key="corr_value_C3").options
    assert options and all(o and o != "<unknown>" for o in options)
    for word in MOVIELENS_WORDS:
        assert word not in shown_text(at), word


def test_what_if_learn_and_train_work_on_any_schema(criteo_app):
    folder, run_path = criteo_app
    at = start("app/what_if.py")
    assert any("test sample 0" in c.value for c in at.caption)
    at.number_input(key="whatif_field_I5").set_value(1.0).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "`I5=1`" in next(m.value for m in at.markdown if m.value.startswith("**Edits**"))
    for page in ("app/learn.py", "app/train_page.py"):
        at.switch_page(page).run()
        assert not at.exception and not at.error, (page, [e.value for e in at.error])
        for word in MOVIELENS_WORDS:
            assert word not in shown_text(at), (page, word)
