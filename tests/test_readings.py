"""The readings of the attention (autoint/explain/readings.py) against an independent numpy forward of a small
hand-set model: raw alpha, rollout, alpha * ||value||, the gradient (and finite differences), value zeroing."""
import numpy as np
import pytest
import torch

from autoint.data.encoding import encode_sample
from autoint.data.schema import UNKNOWN, Field, Schema
from autoint.explain.readings import (NAMES, READINGS, ReadingError, best_reading, check_names, pairs_of,
                                      precision_at, read_batch, score_sample, score_split, summarise)
from autoint.model.autoint import AutoInt, AutoIntConfig
from autoint.model.reference_models import FMConfig, LRConfig, build_model

FIELDS = ("A", "B", "C")


@pytest.fixture(scope="module")
def tiny():
    """3 categorical fields, d = 2, one head of d' = 2, two layers, residual on: every weight set by a seed."""
    schema = Schema([Field(name, "categorical", (UNKNOWN, "x", "y")) for name in FIELDS])
    model = AutoInt(AutoIntConfig(embed_dim=2, attn_dim=2, heads=1, layers=2), schema).double().eval()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.8)
    x = encode_sample(schema, {"A": "x", "B": "y", "C": "x"})
    with torch.no_grad():
        e0 = model.embed(x)[0].numpy()  # (F, d)
    weights = [layer.projection.weight.detach().numpy() for layer in model.interacting]  # each (4*d', in)
    w_out = model.output.weight.detach().numpy()[0]
    b_out = float(model.output.bias.detach()[0])
    return model, x, e0, weights, w_out, b_out


def numpy_forward(e0, weights, w_out, b_out, alpha_edit=None, zero=None):
    """Eqs. 5-9 by hand for one head: returns (logit, [alpha per layer], [value per layer]).
    alpha_edit(l, alpha) -> the weights Eq. 6 uses; zero=(l, m, k) removes field k's value from field m."""
    e, alphas, values = e0, [], []
    for l, W in enumerate(weights):
        q, k, v, r = (e @ W[i * 2:(i + 1) * 2].T for i in range(4))  # each (F, d')
        scores = q @ k.T  # (F, F)
        alpha = np.exp(scores - scores.max(1, keepdims=True))
        alpha /= alpha.sum(1, keepdims=True)
        alphas.append(alpha)
        values.append(v)
        used = alpha.copy() if alpha_edit is None else alpha_edit(l, alpha.copy())
        if zero is not None and zero[0] == l:
            used[zero[1], zero[2]] = 0.0
        e = np.maximum(used @ v + r, 0.0)  # Eq. 6, Eq. 8
    return float(e.reshape(-1) @ w_out + b_out), alphas, values


def test_raw_value_norm_and_rollout_by_hand(tiny):
    model, x, e0, weights, w_out, b_out = tiny
    logit, maps = read_batch(model, x)
    expected_logit, alphas, values = numpy_forward(e0, weights, w_out, b_out)
    assert logit[0] == pytest.approx(expected_logit, abs=1e-9)
    for l in range(2):
        np.testing.assert_allclose(maps["raw"][0, l, 0], alphas[l], atol=1e-9)
        np.testing.assert_allclose(maps["value-norm"][0, l, 0], alphas[l] * np.linalg.norm(values[l], axis=1)[None],
                                   atol=1e-9)
    step = [0.5 * a + 0.5 * np.eye(3) for a in alphas]
    np.testing.assert_allclose(maps["rollout"][0, 0, 0], step[0], atol=1e-9)
    np.testing.assert_allclose(maps["rollout"][0, 1, 0], step[1] @ step[0], atol=1e-9)
    # the rollout's summary is the product of the layers' matrices
    np.testing.assert_allclose(summarise("rollout", maps["rollout"][0]), step[1] @ step[0], atol=1e-9)
    np.testing.assert_allclose(summarise("raw", maps["raw"][0]), (alphas[0] + alphas[1]) / 2, atol=1e-9)


def test_rollout_is_the_product_of_the_layers_with_heads(synth_dataset):
    torch.manual_seed(3)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=3), synth_dataset.schema).eval()
    x, _ = synth_dataset.split("test")
    _, maps = read_batch(model, x.index(slice(0, 4)), ["raw", "rollout"])
    F = len(synth_dataset.schema.fields)
    for b in range(4):
        product = np.eye(F)
        for l in range(3):
            product = (0.5 * maps["raw"][b, l].mean(0) + 0.5 * np.eye(F)) @ product
        np.testing.assert_allclose(summarise("rollout", maps["rollout"][b]), product, atol=1e-6)


def test_the_gradient_reading_equals_finite_differences(tiny):
    model, x, e0, weights, w_out, b_out = tiny
    _, maps = read_batch(model, x, ["raw", "gradient", "attention-x-gradient"])
    eps = 1e-6
    for l in range(2):
        for m in range(3):
            for k in range(3):
                def bump(sign):
                    def edit(layer, alpha):
                        if layer == l:
                            alpha[m, k] += sign * eps
                        return alpha
                    return numpy_forward(e0, weights, w_out, b_out, alpha_edit=edit)[0]
                derivative = (bump(1) - bump(-1)) / (2 * eps)
                assert maps["gradient"][0, l, 0, m, k] == pytest.approx(abs(derivative), abs=1e-4)
                assert maps["attention-x-gradient"][0, l, 0, m, k] == pytest.approx(
                    abs(maps["raw"][0, l, 0, m, k] * derivative), abs=1e-4)


def test_value_zeroing_by_hand(tiny):
    model, x, e0, weights, w_out, b_out = tiny
    logit, maps = read_batch(model, x, ["value-zeroing"])
    for l in range(2):
        for m in range(3):
            for k in range(3):
                zeroed = numpy_forward(e0, weights, w_out, b_out, zero=(l, m, k))[0]
                assert maps["value-zeroing"][0, l, 0, m, k] == pytest.approx(abs(zeroed - logit[0]), abs=1e-9)


def test_value_zeroing_batches_many_samples_the_same_as_one(synth_dataset, monkeypatch):
    import autoint.explain.readings as readings
    torch.manual_seed(1)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2), synth_dataset.schema).eval()
    x, _ = synth_dataset.split("test")
    _, whole = read_batch(model, x.index(slice(0, 5)), ["value-zeroing"])
    monkeypatch.setattr(readings, "ZEROING_ELEMENTS", 1000)  # many small batches that split samples
    _, chunked = read_batch(model, x.index(slice(0, 5)), ["value-zeroing"])
    np.testing.assert_allclose(whole["value-zeroing"], chunked["value-zeroing"], atol=1e-5)
    _, alone = read_batch(model, x.index(slice(3, 4)), ["value-zeroing"])
    np.testing.assert_allclose(whole["value-zeroing"][3], alone["value-zeroing"][0], atol=1e-5)


def test_scores_precision_and_the_default():
    measured = np.array([0.9, 0.1, 0.5, 0.05, 0.7, 0.0])  # top 3: pairs 0, 4, 2
    assert precision_at(np.array([1.0, 0.0, 0.8, 0.1, 0.9, 0.2]), measured) == 1.0
    assert precision_at(np.array([0.0, 1.0, 0.8, 0.9, 0.1, 0.2]), measured) == pytest.approx(1 / 3)
    assert precision_at(np.array([0.0, 1.0, 0.1, 0.9, 0.1, 0.8]), -measured) == 0.0  # by |value|
    assert best_reading({"raw": -0.5, "gradient": 0.7, "value-zeroing": 0.7}) == "gradient"  # ties: NAMES order
    assert best_reading({"raw": float("nan")}) == "raw"
    np.testing.assert_allclose(pairs_of(np.array([[0, 1, 2], [3, 0, 4], [5, 6, 0]])), [2, 3.5, 5])


def test_a_sample_and_a_split_are_scored_against_their_interactions(synth_dataset):
    from autoint.explain.baselines import mean_embedding
    from autoint.explain.interactions import sample_interactions, split_interactions
    torch.manual_seed(2)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2), synth_dataset.schema).eval()
    x, _ = synth_dataset.split("test")
    x = x.index(slice(0, 40))
    base = mean_embedding(model, synth_dataset.split("train")[0])
    split = split_interactions(model, x, base)
    readings = score_split(model, x, split.pairs)
    assert set(readings.readings) == set(NAMES)
    one = score_sample(model, x.index(slice(5, 6)), sample_interactions(model, x.index(slice(5, 6)), base).pairs)
    for name in NAMES:
        scored = readings[name]
        assert scored.matrix.shape == (7, 7) and scored.per_sample.shape == (40,)
        assert scored.per_sample[5] == pytest.approx(one[name].agreement, abs=1e-6)
        from autoint.explain.interactions import spearman
        assert scored.agreement == pytest.approx(spearman(pairs_of(scored.matrix), np.abs(split.pairs).mean(0)))
        quart = scored.quartiles()
        assert quart["q1"] <= quart["median"] <= quart["q3"]
    assert readings.default == best_reading({n: r.agreement for n, r in readings.readings.items()})
    payload = readings.to_json()
    assert payload["reading"] == readings.default
    assert set(payload["readings"]["gradient"]) >= {"matrix", "agreement", "precision_at_3", "per_sample_agreement"}


def test_bad_names_and_models_without_attention(synth_dataset):
    with pytest.raises(ReadingError, match="unknown reading 'saliency'.*raw, rollout, value-norm"):
        check_names(["saliency"])
    assert check_names(["value-zeroing", "raw"]) == ("raw", "value-zeroing")
    x, _ = synth_dataset.split("test")
    for config in (LRConfig(), FMConfig(embed_dim=4), AutoIntConfig(layers=0)):
        model = build_model(config, synth_dataset.schema)
        with pytest.raises(ReadingError, match="no attention"):
            read_batch(model, x.index(slice(0, 1)))
    assert all(READINGS[n].paper and READINGS[n].definition for n in NAMES)


def test_the_cli_carries_readings_and_refuses_what_it_cannot_read(tmp_path, synth_dir, capsys, monkeypatch):
    """explain/correlations/interactions JSON carry `readings` and `reading`; an unknown --reading is refused with
    the names; an LR run says it has no attention; `runs --json` marks the app's default run."""
    import json
    from autoint import cli
    monkeypatch.setenv("AUTOINT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(synth_dir))
    runs = tmp_path / "runs"
    for name, extra in (("paper", []), ("readable", ["--preset", "readable"]), ("lr", ["--model", "lr"])):
        assert cli.main(["train", "--data-dir", str(synth_dir), "--out", str(runs / name), "--epochs", "1",
                         "--batch-size", "512", "--quiet", "--device", "cpu", *extra]) == 0
    capsys.readouterr()
    assert cli.main(["explain", str(runs / "paper"), "--data-dir", str(synth_dir), "--user", "1", "--movie", "1",
                     "--json", "--no-attributions"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["readings"]) == set(NAMES) and report["reading"] in NAMES
    from autoint.explain.sampling import model_readings
    from autoint.training.runs import load_run
    from autoint.datasets.movielens import load_movielens
    run = load_run(runs / "paper")
    assert report["reading"] == model_readings(runs / "paper", run.model,
                                               load_movielens(synth_dir, schema=run.schema)).default
    assert cli.main(["correlations", str(runs / "paper"), "--data-dir", str(synth_dir), "--json",
                     "--reading", "gradient"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reading"] == "gradient"
    gradient = report["readings"]["gradient"]
    assert len(gradient["matrix"]) == 7 and gradient["per_sample_agreement"]["samples"] > 0
    assert cli.main(["explain", str(runs / "paper"), "--data-dir", str(synth_dir), "--user", "1", "--movie", "1",
                     "--reading", "attention"]) == 2
    assert "unknown reading 'attention'; choose from raw, rollout, value-norm" in capsys.readouterr().err
    assert cli.main(["interactions", str(runs / "lr"), "--data-dir", str(synth_dir), "--json"]) == 2
    assert "LR, which has no attention" in capsys.readouterr().err
    assert cli.main(["runs", "--runs-dir", str(runs), "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert listed["readable"]["default"] and not listed["paper"]["default"] and not listed["lr"]["default"]
    assert listed["readable"]["preset"] == "readable" and listed["paper"]["preset"] == "paper"
    assert listed["lr"]["preset"] is None and isinstance(listed["paper"]["test_auc"], float)


def test_a_splits_value_zeroing_reads_its_budget_of_samples(synth_dataset, monkeypatch):
    import autoint.explain.readings as readings
    from autoint.explain.readings import read_batch, score_split
    torch.manual_seed(4)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2), synth_dataset.schema).eval()
    x, _ = synth_dataset.split("test")
    x = x.index(slice(0, 30))
    pairs = np.random.default_rng(0).normal(size=(30, 21))
    monkeypatch.setattr(readings, "ZEROING_BUDGET", 2 * 2 * 7 ** 3 * 12)  # 12 samples of this model
    assert readings.zeroing_rows(model, 30) == 12
    scored = score_split(model, x, pairs, batch_size=8)
    zeroing = scored["value-zeroing"]
    assert np.isfinite(zeroing.per_sample[:12]).all() and np.isnan(zeroing.per_sample[12:]).all()
    assert zeroing.quartiles()["samples"] == 12 and np.isfinite(scored["gradient"].per_sample).all()
    _, maps = read_batch(model, x.index(slice(0, 12)), ["value-zeroing"])
    np.testing.assert_allclose(zeroing.per_head, maps["value-zeroing"].mean(0), atol=1e-9)


def test_the_learn_pages_steps_follow_every_preset(synth_dataset):
    """layer_steps recomputes one layer by hand and checks it against the model's own forward: for the paper's
    layer and for the readable preset's (ReLU and bias on the projections, scaled scores, layer norm) alike."""
    from autoint.datasets.movielens import Catalog, read_movielens
    from autoint.explain.steps import layer_steps
    from autoint.model.presets import preset_config
    values = Catalog(read_movielens(synth_dataset.data_dir)).sample(1, 2)
    for preset in ("paper", "readable"):
        torch.manual_seed(0)
        model = AutoInt(preset_config(preset, embed_dim=8, attn_dim=4, heads=2, layers=2), synth_dataset.schema)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(std=0.3)
        steps = layer_steps(model, values, 2)
        assert steps.output.shape == (7, 8) and np.allclose(steps.attention.sum(-1), 1, atol=1e-5)
        if preset == "readable":
            assert (steps.query >= 0).all() and (steps.value >= 0).all()  # ReLU(W e + b)
