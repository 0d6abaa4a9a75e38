"""benchmarks/attention_faithfulness.py: the per-run measurement on a small trained model, and the preset rule."""
import importlib.util
import sys

import numpy as np
import pytest
import torch

from autoint.explain.interactions import head_entropy, pair_index
from autoint.training.train import evaluate
from conftest import REPO


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("attention_faithfulness",
                                                  REPO / "benchmarks" / "attention_faithfulness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_gives_every_number_in_its_range(bench, trained_run, synth_dataset):
    model = trained_run.model
    L, H, F = model.config.layers, model.config.heads, len(synth_dataset.schema.fields)
    numbers = bench.measure(model, synth_dataset, "test")
    x, y = synth_dataset.split("test")
    expected = evaluate(model, x, y)
    assert numbers["samples"] == len(x)
    assert numbers["test_auc"] == pytest.approx(expected["auc"]) and numbers["test_logloss"] == pytest.approx(
        expected["logloss"])
    # Entropy: of each sample's attention, then averaged; by concavity at most the mean attention's entropy.
    with torch.no_grad():
        _, attention = model(x, return_attention=True)  # (N, L, H, F, F)
    per_sample = head_entropy(attention.numpy())  # (N, L, H)
    assert np.array(numbers["head_entropy_per_head"]).shape == (L, H)
    assert numbers["head_entropy"] == pytest.approx(per_sample.mean(), abs=1e-9)
    assert 0.0 <= numbers["head_entropy"] <= head_entropy(attention.numpy().mean(0)).mean() + 1e-9 <= 1.0 + 1e-9
    # Agreement: a rank correlation overall, per layer and per head.
    assert -1.0 <= numbers["agreement"] <= 1.0
    assert len(numbers["agreement_per_layer"]) == L and np.array(numbers["agreement_per_head"]).shape == (L, H)
    strength = np.array(numbers["interaction_strength"])
    assert strength.shape == (F, F) and np.allclose(strength, strength.T) and (strength >= 0).all()
    assert np.array(numbers["mean_attention"]).shape == (F, F)
    assert numbers["efficiency_gap"] < 1e-6  # the exact index adds up to the prediction
    # Fig. 7(b): every pair present in the schema, ranked among all pairs.
    for kind in ("attention", "interaction"):
        ranks = numbers[f"fig7b_{kind}_ranks"]
        assert [tuple(r["pair"]) for r in ranks] == list(bench.FIG7B_PAIRS)
        assert all(1 <= r["rank"] <= len(pair_index(F)) == r["of"] for r in ranks)
    # The interaction rank is the pair's place by mean |interaction|.
    fields = synth_dataset.schema.names
    i, j = fields.index("Gender"), fields.index("Genre")
    stronger = sum(strength[a, b] > strength[i, j] for a, b in pair_index(F))
    assert numbers["fig7b_interaction_ranks"][0]["rank"] == stronger + 1


def _summary(auc: float, rho: float) -> dict:
    return {"test_auc": {"mean": auc, "std": 0.0}, "agreement": {"mean": rho, "std": 0.0}}


def test_preset_rule_as_written(bench):
    summary = {"paper": _summary(0.8260, -0.20),
               "authors-code": _summary(0.8241, 0.50),  # 0.0019 below, agreement exactly 0.5: passes
               "attention-dropout-0.1": _summary(0.8239, 0.90),  # 0.0021 below: fails however faithful
               "attention-dropout-0.3": _summary(0.8300, 0.49),  # better AUC, agreement short of 0.5: fails
               "autoint-plus": _summary(0.8400, 0.95)}  # not a candidate: never a preset
    verdict = bench.preset_verdict(summary)
    assert verdict["passing"] == ["authors-code"]
    rows = verdict["candidates"]
    assert set(rows) == {"authors-code", "attention-dropout-0.1", "attention-dropout-0.3"}
    assert (rows["attention-dropout-0.1"]["agrees"], rows["attention-dropout-0.1"]["accurate"]) == (True, False)
    assert (rows["attention-dropout-0.3"]["agrees"], rows["attention-dropout-0.3"]["accurate"]) == (False, True)
    assert rows["authors-code"]["auc_change"] == pytest.approx(-0.0019)
    summary["authors-code"] = _summary(0.8300, 0.45)
    assert bench.preset_verdict(summary)["passing"] == []
    with pytest.raises(ValueError, match="'paper', which has no runs"):
        bench.preset_verdict({"authors-code": _summary(0.83, 0.9)})


def test_summary_is_mean_and_std_over_seeds_and_the_report_states_the_verdict(bench, tmp_path):
    def run(variant, seed, auc, rho):
        ranks = [{"pair": list(p), "rank": seed + 1} for p in bench.FIG7B_PAIRS]
        return {"variant": variant, "seed": seed, "test_auc": auc, "test_logloss": 0.4, "best_epoch": 10 + seed,
                "head_entropy": 0.99, "agreement": rho, "agreement_per_layer": [rho, rho],
                "fig7b_attention_ranks": ranks, "fig7b_interaction_ranks": ranks}
    runs = [run("paper", 0, 0.82, -0.2), run("paper", 1, 0.83, -0.3),
            run("authors-code", 0, 0.825, 0.6), run("authors-code", 1, 0.826, 0.7)]
    summary = bench.summarise(runs)
    assert list(summary) == ["paper", "authors-code"]
    assert summary["paper"]["test_auc"]["mean"] == pytest.approx(0.825)
    assert summary["paper"]["test_auc"]["std"] == pytest.approx(np.std([0.82, 0.83], ddof=1))
    assert summary["paper"]["fig7b_attention_ranks"]["Gender-Genre"] == [1, 2]
    verdict = bench.preset_verdict(summary)
    assert verdict["passing"] == ["authors-code"]
    meta = {"data_note": "synthetic", "test_samples": 10, "seeds": 2, "cpu": "test", "torch": torch.__version__,
            "command": "python benchmarks/attention_faithfulness.py"}
    bench.write_report(tmp_path, {"meta": meta, "summary": summary, "verdict": verdict})
    text = (tmp_path / "results.md").read_text()
    assert "| authors-code | 0.8255 ± 0.0007 |" in text
    assert "**Verdict: authors-code passes the rule.**" in text
