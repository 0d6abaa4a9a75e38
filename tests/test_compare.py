"""Comparing runs on what they combine (autoint/explain/compare.py, `python -m autoint compare`): the arithmetic on
hand-made maps, checked exactly, then the command on two tiny runs of one configuration, and its refusals."""
import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest

import autoint.explain.sampling
from autoint.cli import main
from autoint.errors import AutoIntError
from autoint.explain.compare import (CompareError, RunPairs, check_comparable, compare, difference_map,
                                     rank_agreement, seed_groups, symmetrised)
from autoint.explain.interactions import pairs_to_matrix
from autoint.figures import interaction_difference_heatmap
from autoint.training.runs import load_run

FIELDS = ["Gender", "Age", "Genre"]  # pairs in pair_index order: Gender×Age, Gender×Genre, Age×Genre


def pairs(*values) -> np.ndarray:
    return pairs_to_matrix(np.array(values, dtype=float), len(FIELDS))  # (3, 3) symmetric, zero diagonal


def made(name, interactions, attention=None, *, configuration="paper", seed=0, model="AutoInt") -> RunPairs:
    return RunPairs(name, model, FIELDS, interactions, attention, configuration, seed)


def test_difference_and_rank_agreement_of_hand_made_maps():
    a = made("a", pairs(0.10, 0.20, 0.30), pairs(0.30, 0.20, 0.10))
    b = made("b", pairs(0.30, 0.20, 0.10), pairs(0.30, 0.20, 0.10))
    c = made("c", pairs(0.10, 0.30, 0.20), None, model="AutoInt", configuration="other")
    result = compare([a, b, c])
    assert [(p.a, p.b) for p in result.pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    ab, ac, bc = result.pairs
    np.testing.assert_allclose(ab.difference, pairs(0.20, 0.0, -0.20), atol=1e-12)  # B - A
    assert ab.largest_change[:2] == (0, 1) and ab.largest_change[2] == pytest.approx(0.20)  # ties: the first pair
    assert result.change_text(ab) == "Gender × Age +0.200 logit"
    assert ab.interactions_rho == pytest.approx(-1.0)  # ranks 1,2,3 against 3,2,1
    assert ab.attention_rho == pytest.approx(1.0)  # the same attention
    # ranks (1, 2, 3) against (1, 3, 2): sum d^2 = 2, rho = 1 - 6 * 2 / (3 * (9 - 1)) = 0.5
    assert ac.interactions_rho == pytest.approx(0.5)
    assert np.isnan(ac.attention_rho) and np.isnan(bc.attention_rho)  # c has no attention
    assert bc.interactions_rho == pytest.approx(-0.5)
    assert result.stability == []  # a and b share a configuration and a seed: no seed group
    report = json.loads(json.dumps(result.to_json()))  # plain JSON, NaN as null
    assert report["pairs"][1]["attention_rho"] is None
    assert report["pairs"][0]["largest_change"] == {"fields": ["Gender", "Age"], "value": pytest.approx(0.20)}
    assert report["runs"][2]["attention"] is None and "no attention" in report["runs"][2]["notes"][0]


def test_seed_stability_is_the_mean_pairwise_rho_of_one_configuration():
    s0 = made("s0", pairs(0.1, 0.2, 0.3), pairs(0.1, 0.2, 0.3), seed=0)
    s1 = made("s1", pairs(0.1, 0.3, 0.2), pairs(0.3, 0.2, 0.1), seed=1)
    s2 = made("s2", pairs(0.1, 0.2, 0.3), pairs(0.1, 0.2, 0.3), seed=2)
    other = made("wide", pairs(0.3, 0.2, 0.1), pairs(0.3, 0.2, 0.1), configuration="wide", seed=0)
    assert [[r.name for r in g] for g in seed_groups([s0, other, s1, s2])] == [["s0", "s1", "s2"]]
    result = compare([s0, other, s1, s2])
    (group,) = result.stability
    assert group.runs == ["s0", "s1", "s2"] and group.seeds == [0, 1, 2]
    assert group.interactions == pytest.approx((0.5 + 1.0 + 0.5) / 3)  # s0-s1, s0-s2, s1-s2
    assert group.attention == pytest.approx((-1.0 + 1.0 - 1.0) / 3)
    assert "3 seeds of one configuration" in group.text and "+0.67" in group.text and "-0.33" in group.text


def test_symmetrised_attention_and_a_model_without_maps():
    alpha = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])
    np.testing.assert_allclose(symmetrised(alpha), pairs(0.2, 0.3, 0.35))  # (0.3+0.1)/2, (0.2+0.4)/2, (0.3+0.4)/2
    lr = made("lr", None, None, model="LR", configuration="lr")
    a = made("a", pairs(0.1, 0.2, 0.3), pairs(0.1, 0.2, 0.3))
    assert difference_map(a, lr) is None
    (pair,) = compare([a, lr]).pairs
    assert pair.difference is None and np.isnan(pair.interactions_rho) and np.isnan(pair.attention_rho)
    assert len(lr.notes) == 2 and "LR" in lr.notes[0]


def test_refusals_of_the_arithmetic():
    a = made("a", pairs(0.1, 0.2, 0.3))
    with pytest.raises(CompareError, match="two or more runs"):
        compare([a])
    with pytest.raises(CompareError, match="named alike"):
        compare([a, made("a", pairs(0.3, 0.2, 0.1))])
    with pytest.raises(CompareError, match="same fields"):
        rank_agreement(np.zeros((3, 3)), np.zeros((4, 4)))
    assert np.isnan(rank_agreement(pairs(0.1, 0.1, 0.1), pairs(0.1, 0.2, 0.3)))  # a constant map ranks nothing


def test_difference_figure_is_diverging_and_centred_at_zero():
    a, b = pairs(0.10, 0.20, 0.30), pairs(0.30, 0.20, 0.05)
    fig = interaction_difference_heatmap(a, b, FIELDS, names=("s0", "s1"))
    axis = fig.layout.coloraxis
    assert axis.cmid == 0 and axis.cmin == -axis.cmax == pytest.approx(-0.25)
    z = np.array(fig.data[0].z, dtype=float)
    assert np.isnan(np.diag(z)).all() and z[0, 1] == pytest.approx(0.20)
    assert list(fig.data[0].x) == FIELDS and "s1 − s0" in fig.layout.title.text
    assert "(s1 − s0)" in fig.data[0].customdata[0][1]


# ----------------------------------------------------------------------------- two tiny runs, end to end

@pytest.fixture(scope="module")
def seed_runs(synth_dataset, tmp_path_factory):
    """Two AutoInts of one configuration, seeds 1 and 2, trained one epoch each on the synthetic data (a second
    each), and two copies of the first that claim other training data: other files, another data set."""
    from autoint.model.autoint import AutoIntConfig
    from autoint.training.runs import save_run
    from autoint.training.train import TrainConfig, train
    root = tmp_path_factory.mktemp("compare-runs")
    paths = []
    for seed in (1, 2):
        train_config = TrainConfig(epochs=1, batch_size=256, lr=0.01, seed=seed)
        result = train(synth_dataset, AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1), train_config,
                       progress=False)
        paths.append(save_run(root / f"s{seed}", result.model, metrics=result.metrics,
                              train_config=asdict(train_config), history=result.history,
                              data_fingerprint=synth_dataset.fingerprint))
    copies = []
    for name, change in (("other-data", {"data_fingerprint": "0123456789abcdef"}), ("criteo", {"dataset": "criteo"})):
        copy = root / name
        shutil.copytree(paths[0], copy)
        manifest = json.loads((copy / "run.json").read_text())
        (copy / "run.json").write_text(json.dumps({**manifest, **change}))
        copies.append(copy)
    return paths[0], paths[1], *copies


@pytest.fixture
def few_reading_rows(monkeypatch):
    """The readings (and the compared maps) on 200 test samples instead of 2,000: what is checked is the plumbing."""
    monkeypatch.setattr(autoint.explain.sampling, "READING_ROWS", 200)


def test_cli_compare_two_runs_of_one_configuration(seed_runs, synth_dir, synth_dataset, capsys, few_reading_rows):
    s1, s2, _, _ = seed_runs
    assert main(["compare", str(s1), str(s2), "--data-dir", str(synth_dir)]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["split"] == "test" and report["sample"]["rows"] == 200 and report["sample"]["split"] == "test"
    assert [r["name"] for r in report["runs"]] == ["s1", "s2"] and [r["seed"] for r in report["runs"]] == [1, 2]
    F = len(report["fields"])
    (pair,) = report["pairs"]
    a, b = (np.array(r["interactions"]) for r in report["runs"])
    assert a.shape == (F, F) and np.allclose(a, a.T) and (np.diag(a) == 0).all()
    np.testing.assert_allclose(np.array(pair["difference"]), b - a)
    assert -1 <= pair["interactions_rho"] <= 1 and -1 <= pair["attention_rho"] <= 1
    (group,) = report["seed_stability"]
    assert group["runs"] == ["s1", "s2"] and group["interactions_rho"] == pytest.approx(pair["interactions_rho"])
    # the attention compared is the readings' raw alpha of the same samples, both directions averaged
    raw = autoint.explain.sampling.model_readings(s1, load_run(s1).model, synth_dataset, "test")["raw"].matrix
    np.testing.assert_allclose(np.array(report["runs"][0]["attention"]), symmetrised(raw), atol=1e-9)
    assert "interactions ρ" in out.err and "seed stability: 2 seeds of one configuration" in out.err


def test_cli_compare_refuses_what_it_cannot_compare(seed_runs, synth_dir, capsys, tmp_path):
    s1, s2, other, criteo = seed_runs
    cases = [([str(s1)], "two or more runs"),
             ([str(s1), str(tmp_path / "no-such-run")], "no such run folder"),
             ([str(s1), str(other)], "trained on other data"),
             ([str(s1), str(s2), str(criteo)], "was trained on criteo")]
    for runs, message in cases:
        assert main(["compare", *runs, "--data-dir", str(synth_dir)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    with pytest.raises(AutoIntError, match="trained on other data"):
        check_comparable([load_run(s1), load_run(other)])
