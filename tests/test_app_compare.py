"""The Train page's "what they combine" view (app/compare_view.py) shows the library's comparison
(autoint/explain/compare.py) of the runs picked: the difference map, the rank-agreement table, seed stability."""
import shutil

import numpy as np
import pytest

import autoint.explain.sampling
from autoint.explain.compare import compare, measure_run
from autoint.training.runs import load_run
import test_compare
from test_app import array, chart, start

seed_runs = test_compare.seed_runs  # the fixture: two tiny runs of one configuration, seeds 1 and 2


@pytest.fixture
def pair_env(monkeypatch, tmp_path, synth_dir, seed_runs):
    """The app on the synthetic data with the two seed runs, their readings and maps on 200 test samples."""
    runs = tmp_path / "runs"
    for path in seed_runs[:2]:
        shutil.copytree(path, runs / path.name)
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(synth_dir))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    monkeypatch.setattr(autoint.explain.sampling, "READING_ROWS", 200)
    return runs


def test_train_page_compares_what_two_seeds_combine(pair_env, synth_dataset):
    at = start("app/train_page.py")
    picked = sorted(at.multiselect(key="train_combine_runs").value)  # the view compares them by name: s1, then s2
    assert picked == [str(pair_env / name) for name in ("s1", "s2")]
    expected = compare([measure_run(load_run(path), synth_dataset, name=load_run(path).name) for path in picked])
    (pair,) = expected.pairs
    figure = chart(at, f"Mean |interaction|: {pair.b} − {pair.a}")
    shown = array(figure["data"][0]["z"]).astype(float)
    off = ~np.eye(len(expected.fields), dtype=bool)
    np.testing.assert_allclose(shown[off], pair.difference[off], atol=1e-9)
    assert figure["layout"]["coloraxis"]["cmid"] == 0 and figure["layout"]["coloraxis"]["colorscale"]
    table = next(d.value for d in at.dataframe if "interactions ρ" in d.value.columns)
    assert list(table["run A"]) == [pair.a] and list(table["run B"]) == [pair.b]
    assert table["interactions ρ"][0] == pytest.approx(pair.interactions_rho)
    assert table["attention ρ"][0] == pytest.approx(pair.attention_rho)
    assert table["largest change of mean |k-SII| (B − A)"][0] == expected.change_text(pair)
    text = "\n".join(m.value for m in at.markdown)
    assert "Seed stability." in text and expected.stability[0].text in text
    # the picked runs ride in the page's link, and a new session opening it compares the same runs
    link = at.query_params["combine"]
    assert sorted((link[0] if isinstance(link, list) else link).split(",")) == ["s1", "s2"]
    again = start("app/train_page.py")
    again.query_params["combine"] = "s2"
    again.run()
    assert again.multiselect(key="train_combine_runs").value == [str(pair_env / "s2")]
    assert any("Pick two or more runs." in c.value for c in again.caption)
