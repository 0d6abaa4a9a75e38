import json
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from autoint import paper
from conftest import REPO


def test_reproduce_script_writes_tables_and_figures(synth_dir, tmp_path):
    out = tmp_path / "repro"
    subprocess.run([sys.executable, "benchmarks/reproduce.py", "--data-dir", str(synth_dir), "--seeds", "2",
                    "--epochs", "1", "--only", "table", "--device", "cpu", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=300)
    results = paper.load_reproduction(out)
    assert {r["label"] for r in results["runs"]} == set(paper.PAPER_ML1M)
    assert len(results["runs"]) == 2 * len(paper.PAPER_ML1M)
    lr = [r["test_auc"] for r in results["runs"] if r["label"] == "LR"]
    assert results["summary"]["table"]["LR"]["test_auc_mean"] == pytest.approx(sum(lr) / 2)
    assert "| AutoInt+ |" in (out / "results.md").read_text()


def test_paper_page_shows_committed_results_beside_the_paper():
    folders = paper.reproduction_folders()
    assert folders, "benchmarks/results holds the committed reproduction"
    at = AppTest.from_file(str(REPO / "app" / "paper.py"), default_timeout=60).run()
    assert not at.exception
    shown = at.dataframe[0].value
    summary = paper.load_reproduction(folders[0])["summary"]["table"]
    for row in shown.to_dicts() if hasattr(shown, "to_dicts") else shown.to_dict("records"):
        assert row["AUC (ours)"] == pytest.approx(summary[row["model"]]["test_auc_mean"])
        assert row["AUC (paper)"] == paper.PAPER_ML1M[row["model"]][0]
    assert len(at.get("plotly_chart")) == 2
    assert any("not the full ML-1M" in w.value for w in at.warning)


def test_reproduce_tunes_each_model_on_validation_and_merges_earlier_rows(synth_dir, tmp_path):
    """`--tune` picks each rerun model's extras from its own grid by validation AUC; `--merge-from` fills the rows
    not rerun from an earlier folder and the report says where each row ran."""
    run = lambda *extra: subprocess.run(
        [sys.executable, "benchmarks/reproduce.py", "--data-dir", str(synth_dir), "--epochs", "1", "--only", "table",
         "--device", "cpu", *extra], cwd=REPO, check=True, capture_output=True, text=True, timeout=600)
    earlier, later = tmp_path / "earlier", tmp_path / "later"
    run("--seeds", "1", "--out", str(earlier))
    run("--seeds", "1", "--tune", "--models", "FM,AutoInt w/o residual", "--merge-from", str(earlier),
        "--out", str(later))
    tuning = json.loads((later / "tuning.json").read_text())
    assert set(tuning) == {"FM", "AutoInt w/o residual"}
    grids = reproduce_module()
    assert len(tuning["FM"]) == len(grids.LINEAR_GRID) == 5  # {}, weight decay, the schedule, two rates
    assert len(tuning["AutoInt w/o residual"]) == len(grids.TUNING_GRID) == 10
    for model, tried in tuning.items():
        assert tried[0]["val_auc"] == max(t["val_auc"] for t in tried)  # the best on validation comes first
    results = paper.load_reproduction(later)
    assert results["meta"]["tuned"]["FM"] == tuning["FM"][0]["extras"]
    assert results["meta"]["tuned"]["AutoInt w/o residual"] == tuning["AutoInt w/o residual"][0]["extras"]
    by_label = {r["label"]: r for r in results["runs"]}
    assert set(by_label) == set(paper.PAPER_ML1M)
    old = {r["label"]: r for r in paper.load_reproduction(earlier)["runs"]}
    for label in ("LR", "AutoInt", "AutoInt+"):  # taken over unchanged, with the command that produced them
        assert by_label[label]["test_auc"] == old[label]["test_auc"]
        assert "--tune" not in by_label[label]["command"]
    assert "--tune" in by_label["FM"]["command"]
    w_o = results["summary"]["table"]["AutoInt w/o residual"]
    assert w_o["device"] == "cpu" and "--merge-from" in w_o["command"]
    assert f"come from `{earlier}`" in (later / "results.md").read_text()
    # Tuning again with the earlier candidates reused trains nothing new and picks the same extras.
    third = tmp_path / "third"
    run("--seeds", "0", "--tune", "--models", "FM", "--reuse-tuning", str(later), "--out", str(third))
    assert (third / "runs.jsonl").read_text() == ""
    again = json.loads((third / "tuning.json").read_text())["FM"]
    assert [t["extras"] for t in again] == [t["extras"] for t in tuning["FM"]]
    assert all(t["reused_from"] == str(later) for t in again)


def reproduce_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
