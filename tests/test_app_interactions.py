"""The interaction views of the app (Explore, Dataset correlations, What-if, Learn) show the library's numbers."""
import numpy as np
import pytest

from autoint.datasets.movielens import Catalog, read_movielens
from autoint.explain.explanation import dataset_correlations, explain_sample, what_if
from autoint.explain.baselines import mean_embedding
from autoint.explain.interactions import agreement, matrix_to_pairs, split_interactions
from test_app import app_env, array, chart, finish_background, start  # noqa: F401  (app_env is a fixture)


def interaction_panel(spec: dict) -> np.ndarray:
    """The z of the side-by-side figure's right panel (the interaction map)."""
    trace = next(t for t in spec["data"] if t.get("name") == "interaction")
    return np.array([[np.nan if v is None else v for v in row] for row in array(trace["z"]).tolist()], dtype=float)


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


def markdown_text(at) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(getattr(e, "value", "") for e in at.get("alert"))


def alerts(at) -> str:
    return "\n".join(str(a.value) for kind in ("success", "warning", "info") for a in getattr(at, kind))


def test_explore_interactions_equal_the_library(app_env, trained_run, synth_dir, synth_dataset):
    at = start()
    catalog = Catalog(read_movielens(synth_dir))
    sample = at.session_state["sample"]
    values = catalog.sample(sample["user"], sample["movie"], sample["time"])
    model = trained_run.model
    baseline = mean_embedding(model, synth_dataset.split("train")[0])
    expected = explain_sample(model, values, interaction_baseline=baseline)
    shown = interaction_panel(chart(at, "Attention beside the measured interactions"))
    assert np.isnan(np.diag(shown)).all()  # the diagonal is no interaction
    np.testing.assert_allclose(off_diagonal(shown), off_diagonal(expected.interactions.matrix), atol=1e-5)
    rho = expected.agreement.overall
    assert f"ρ = {rho:+.2f} over 21 pairs" in alerts(at)
    scatter = chart(at, "Each field pair")
    points = next(t for t in scatter["data"] if t.get("mode", "").startswith("markers"))
    np.testing.assert_allclose(array(points["y"]), np.abs(expected.interactions.pairs), atol=1e-5)
    # The other baseline: the page recomputes with the <unknown> embedding.
    at.radio(key="explore_baseline").set_value("unknown").run()
    assert not at.exception
    from autoint.explain.interactions import baseline_embedding
    unknown = explain_sample(model, values, interaction_baseline=baseline_embedding(model, "unknown"))
    shown = interaction_panel(chart(at, "Attention beside the measured interactions"))
    np.testing.assert_allclose(off_diagonal(shown), off_diagonal(unknown.interactions.matrix), atol=1e-5)


def test_correlations_interactions_equal_the_library(app_env, trained_run, synth_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOINT_CACHE_DIR", str(tmp_path / "cache"))
    at = start("app/correlations.py")
    model = trained_run.model
    x, y = synth_dataset.split("test")
    measured = split_interactions(model, x, mean_embedding(model, synth_dataset.split("train")[0]))
    shown = interaction_panel(chart(at, "Fig. 7(b) beside the measured interactions"))
    np.testing.assert_allclose(off_diagonal(shown), off_diagonal(measured.matrix()), atol=1e-5)
    attention = dataset_correlations(model, x, y)
    rho = agreement(attention.per_head, measured.matrix()).overall
    assert f"ρ = {rho:+.2f} over 21 pairs" in alerts(at)
    scatter = chart(at, "The 21 field pairs")
    points = next(t for t in scatter["data"] if t.get("mode", "").startswith("markers"))
    np.testing.assert_allclose(array(points["x"]), matrix_to_pairs(attention.overall), atol=1e-5)
    np.testing.assert_allclose(array(points["y"]), matrix_to_pairs(measured.matrix()), atol=1e-5)
    # A slice: clicks only; the interaction map follows the slice.
    finish_background(at.radio(key="corr_label").set_value(1).run())
    assert not at.exception
    keep = (y == 1).numpy()
    shown = interaction_panel(chart(at, "Fig. 7(b) beside the measured interactions"))
    np.testing.assert_allclose(off_diagonal(shown), off_diagonal(measured.matrix(keep)), atol=1e-5)


def test_what_if_shows_the_change_in_interactions(app_env, trained_run, synth_dir, synth_dataset):
    at = start("app/what_if.py")
    catalog = Catalog(read_movielens(synth_dir))
    sample = at.session_state["sample"]
    values = catalog.sample(sample["user"], sample["movie"], sample["time"])
    new_gender = "F" if values["Gender"] == "M" else "M"
    at.selectbox(key="whatif_field_Gender").set_value(new_gender).run()
    assert not at.exception
    model = trained_run.model
    expected = what_if(model, values, {"Gender": new_gender},
                       interaction_baseline=mean_embedding(model, synth_dataset.split("train")[0]))
    spec = chart(at, "Change in pairwise interactions")
    z = np.array([[np.nan if v is None else v for v in row] for row in array(spec["data"][0]["z"]).tolist()], float)
    np.testing.assert_allclose(off_diagonal(z), off_diagonal(expected.interaction_change), atol=1e-5)
    assert np.abs(expected.interaction_change).max() > 0  # the edit did change something
    assert "Largest changes:" in markdown_text(at)


def test_learn_says_attention_is_not_interaction(app_env, trained_run, synth_dir, synth_dataset):
    at = start("app/learn.py")
    catalog = Catalog(read_movielens(synth_dir))
    sample = at.session_state["sample"]
    values = catalog.sample(sample["user"], sample["movie"], sample["time"])
    model = trained_run.model
    expected = explain_sample(model, values, interaction_baseline=mean_embedding(model, synth_dataset.split("train")[0]))
    text = markdown_text(at)
    assert "Attention is not interaction" in "\n".join(h.value for h in at.header)
    assert f"ρ = {expected.agreement.overall:+.2f} over 21 pairs" in text
    top = int(np.argmax(np.abs(expected.interactions.pairs)))
    assert f"{expected.interactions.pairs[top]:+.3f}" in text
