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
