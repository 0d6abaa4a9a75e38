import json
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from autoint.training import paper
from conftest import REPO


@pytest.fixture(scope="module")
def repro_dir(tmp_path_factory):
    """A small MovieLens-format folder (2,500 ratings): reproduce.py trains every model of Table 2 on it, 29 times
    in the tuning test, and what these tests check is the script's bookkeeping, not the models' accuracy."""
    from autoint.datasets.synth import generate_movielens
    return generate_movielens(tmp_path_factory.mktemp("repro") / "ml", users=80, movies=50, ratings=2500, seed=3)


def test_reproduce_script_writes_tables_and_figures(repro_dir, tmp_path):
    out = tmp_path / "repro"
    subprocess.run([sys.executable, "benchmarks/reproduce.py", "--data-dir", str(repro_dir), "--seeds", "2",
                    "--epochs", "1", "--only", "table", "--device", "cpu", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=300)
    results = paper.load_reproduction(out)
    assert {r["label"] for r in results["runs"]} == set(paper.PAPER_ML1M)
    assert len(results["runs"]) == 2 * len(paper.PAPER_ML1M)
    lr = [r["test_auc"] for r in results["runs"] if r["label"] == "LR"]
    assert results["summary"]["table"]["LR"]["test_auc_mean"] == pytest.approx(sum(lr) / 2)
    assert "| AutoInt+ |" in (out / "results.md").read_text()
    grids = reproduce_module()  # without --tune every model trains with its documented, validation-chosen defaults
    for r in results["runs"]:
        expected = {**grids.TABLE_MODELS[r["label"]], **grids.TUNED_DEFAULTS[r["label"]]}
        assert r["settings"] == json.loads(json.dumps(expected))  # as results.json stores it (tuples as lists)
    assert results["meta"]["tuned"] == grids.TUNED_DEFAULTS and "the documented defaults" in (out / "results.md").read_text()


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
    trained_with = next(m.value for m in at.markdown if m.value.startswith("**What each row trained with**"))
    assert "AutoInt w/o residual: no residual, lr" in trained_with  # each row's settings, readable
    assert len(at.get("plotly_chart")) == 2
    assert any("not the full ML-1M" in w.value for w in at.warning)


def test_reproduce_tunes_each_model_on_validation_and_merges_earlier_rows(repro_dir, tmp_path):
    """`--tune` picks each rerun model's extras from its own grid by validation AUC; `--merge-from` fills the rows
    not rerun from an earlier folder and the report says where each row ran."""
    run = lambda *extra: subprocess.run(
        [sys.executable, "benchmarks/reproduce.py", "--data-dir", str(repro_dir), "--epochs", "1", "--only", "table",
         "--device", "cpu", *extra], cwd=REPO, check=True, capture_output=True, text=True, timeout=600)
    earlier, later = tmp_path / "earlier", tmp_path / "later"
    run("--seeds", "1", "--out", str(earlier))
    run("--seeds", "1", "--tune", "--tune-rounds", "1", "--models", "FM,AutoInt w/o residual",
        "--merge-from", str(earlier), "--out", str(later))
    tuning = json.loads((later / "tuning.json").read_text())
    assert set(tuning) == {"FM", "AutoInt w/o residual"}
    grids = reproduce_module()
    assert len(tuning["FM"]) == len(grids.LINEAR_GRID) == 7  # {}, weight decay, the schedule, four rates
    assert len(tuning["AutoInt w/o residual"]) == len(grids.TUNING_GRID) == 12
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
    run("--seeds", "0", "--tune", "--tune-rounds", "1", "--models", "FM", "--reuse-tuning", str(later), "--out", str(third))
    assert (third / "runs.jsonl").read_text() == ""
    again = json.loads((third / "tuning.json").read_text())["FM"]
    assert [t["extras"] for t in again] == [t["extras"] for t in tuning["FM"]]
    assert all(t["reused_from"] == str(later) for t in again)


def test_greedy_tuning_adds_one_change_per_round_and_stops_when_validation_stops_improving(monkeypatch):
    """Scripted validation AUCs, no training: round 1 picks the best single change, round 2 adds one more change that
    sets other keys, a third round runs only for a model whose second round improved, and earlier candidates are
    reused rather than trained again."""
    reproduce = reproduce_module()
    gains = {"lr": {2e-3: 0.010, 4e-3: 0.004, 8e-3: -0.002, 5e-4: -0.01}, "dropout": {0.1: 0.002, 0.2: 0.001},
             "lr_decay": {0.5: 0.003}, "weight_decay": {1e-6: -0.001}, "layer_norm": {True: -0.02},
             "scaled_attention": {True: -0.005}}
    trained = []

    def fake_run_jobs(jobs, workers, log):
        trained.extend((job["model"], job["round"], reproduce.extras_key(job["extras"])) for job in jobs)
        start = {"FM": 0.80, "AutoInt w/o residual": 0.81}
        return [{**job, "val_auc": start[job["model"]] + sum(gains[k][v] for k, v in job["extras"].items()),
                 "best_epoch": 5} for job in jobs]

    monkeypatch.setattr(reproduce, "run_jobs", fake_run_jobs)
    reused = {("FM", reproduce.extras_key({})): {"extras": {}, "val_auc": 0.80, "best_epoch": 20,
                                                  "reused_from": "earlier"}}
    report = reproduce.tune(["FM", "AutoInt w/o residual"], {}, 1, 3, reused, lambda r: None)
    assert ("FM", 1, "{}") not in trained  # reused, not retrained
    assert report["FM"][-1]["extras"] != {} and any(t.get("reused_from") == "earlier" for t in report["FM"])
    # FM: lr 2e-3 alone, then + lr_decay (+0.003 beats + weight decay); round 3 has nothing left to add that helps.
    assert report["FM"][0]["extras"] == {"lr": 2e-3, "lr_decay": 0.5}
    assert report["FM"][0]["val_auc"] == pytest.approx(0.813)
    # AutoInt w/o residual: lr 2e-3, + lr_decay, then + dropout 0.1 in round 3.
    assert report["AutoInt w/o residual"][0]["extras"] == {"lr": 2e-3, "lr_decay": 0.5, "dropout": 0.1}
    for model, tried in report.items():
        assert [t["val_auc"] for t in tried] == sorted((t["val_auc"] for t in tried), reverse=True)
        for t in tried:  # no candidate sets a key twice, and none is trained twice
            assert len([1 for m, _, k in trained if m == model and k == reproduce.extras_key(t["extras"])]) <= 1
    round2 = [json.loads(k) for m, r, k in trained if m == "FM" and r == 2]
    assert round2 == [{"lr": 2e-3, "weight_decay": 1e-6}, {"lr": 2e-3, "lr_decay": 0.5}]
    # A round that improves nothing ends that model's search: FM's round 3 adds weight decay only, then it stops.
    assert [json.loads(k) for m, r, k in trained if m == "FM" and r == 3] == [
        {"lr": 2e-3, "lr_decay": 0.5, "weight_decay": 1e-6}]
    assert max(r for m, r, _ in trained if m == "FM") == 3
    # Without a cap the search goes on until nothing helps: AutoInt w/o residual tries a 4th round, FM does not.
    trained.clear()
    uncapped = reproduce.tune(["FM", "AutoInt w/o residual"], {}, 1, None, {}, lambda r: None)
    assert uncapped["AutoInt w/o residual"][0]["extras"] == {"lr": 2e-3, "lr_decay": 0.5, "dropout": 0.1}
    assert max(r for m, r, _ in trained if m == "AutoInt w/o residual") == 4
    assert max(r for m, r, _ in trained if m == "FM") == 3
    # Round 4 trains only what round 3 did not (+ weight decay came in round 3 with the grid's "dropout + wd").
    fourth = [json.loads(k) for m, r, k in trained if m == "AutoInt w/o residual" and r == 4]
    assert fourth == [{"lr": 2e-3, "lr_decay": 0.5, "dropout": 0.1, "layer_norm": True},
                      {"lr": 2e-3, "lr_decay": 0.5, "dropout": 0.1, "scaled_attention": True}]


def test_impossible_tuning_rounds_are_refused_with_the_fix(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/reproduce.py", "--data-dir", str(tmp_path), "--tune",
                           "--tune-rounds", "0", "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "--tune-rounds 0: give 1 (each change alone) or more" in done.stderr


def test_settings_text_names_each_setting_for_people():
    assert paper.settings_text({"kind": "fm", "embed_dim": 16, "lr": 2e-3, "weight_decay": 1e-6}) == \
        "d 16, lr 0.002, weight decay 1e-06"
    assert paper.settings_text({"residual": False, "layer_norm": True, "dnn_hidden": [400, 400]}) == \
        "no residual, layer norm, DNN 400×400"
    assert paper.settings_text({}) == paper.settings_text({"kind": "lr"}) == paper.settings_text({"model": "LR"}) \
        == "defaults"
    runs = [{"experiment": "table", "label": "FM", "settings": {"kind": "fm", "embed_dim": 16}},
            {"experiment": "table", "label": "LR", "settings": {"kind": "lr", "lr": 4e-3}},
            {"experiment": "depth", "label": "L=0", "settings": {"layers": 0}}]
    assert paper.table_settings(runs) == {"LR": "lr 0.004", "FM": "d 16"}  # the table's order, table rows only
    assert list(paper.table_settings(runs)) == ["LR", "FM"]


def test_documented_defaults_are_the_committed_validation_choices():
    """TUNED_DEFAULTS is what the committed tuning chose on validation, not a hand-picked setting."""
    grids = reproduce_module()
    tuning = json.loads((REPO / "benchmarks" / "results" / "u2999-tuning-cpu" / "tuning.json").read_text())
    for model, tried in tuning.items():
        assert grids.TUNED_DEFAULTS[model] == tried[0]["extras"]
        assert tried[0]["val_auc"] == max(t["val_auc"] for t in tried)
    # The Paper page's default results ran with them (that run's record names the extras of the rows it trained).
    shown = paper.load_reproduction(paper.reproduction_folders()[0])["meta"]["tuned"]
    assert set(tuning) <= set(shown) and all(shown[model] == grids.TUNED_DEFAULTS[model] for model in shown)


def reproduce_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_page_checks_fig7b_claims_from_the_faithfulness_results(tmp_path, monkeypatch):
    """Fig. 7(b)'s three pairs with their ranks by attention and by interaction, per seed, as the benchmark found
    them; other benchmarks' results.json files are not taken for reproductions."""
    folder = tmp_path / "attention-faithfulness"
    folder.mkdir()
    ranks = lambda a, i: ({"Gender-Genre": a[0], "Age-Genre": a[1], "RequestTime-ReleaseTime": a[2]},
                          {"Gender-Genre": i[0], "Age-Genre": i[1], "RequestTime-ReleaseTime": i[2]})
    stat = lambda m: {"mean": m, "std": 0.001, "values": [m, m]}
    summary = {}
    for variant, (attention, interaction) in {"paper": ranks(([5, 6], [20, 21], [1, 2]), ([2, 3], [9, 8], [1, 1])),
                                              "autoint-plus": ranks(([4, 4], [19, 18], [3, 1]),
                                                                    ([1, 2], [7, 7], [2, 3]))}.items():
        summary[variant] = {"seeds": [0, 1], "test_auc": stat(0.826), "head_entropy": stat(0.97),
                            "agreement": stat(-0.2), "fig7b_attention_ranks": attention,
                            "fig7b_interaction_ranks": interaction}
    (folder / "results.json").write_text(json.dumps({
        "meta": {"command": "python benchmarks/attention_faithfulness.py --data-dir X", "data_note": "u2999",
                 "variants": {"paper": {"note": "the paper's default"}}},
        "summary": summary, "runs": [],
        "verdict": {"rule": "mean agreement >= 0.5 and ...", "passing": []}}))
    assert paper.reproduction_folders(tmp_path) == []  # not a reproduction
    monkeypatch.setattr(paper, "FAITHFULNESS_RESULTS", folder)
    at = AppTest.from_file(str(REPO / "app" / "paper.py"), default_timeout=60).run()
    assert not at.exception
    claims = next(d.value for d in at.dataframe if "rank by attention" in list(d.value.columns))
    rows = claims.to_dicts() if hasattr(claims, "to_dicts") else claims.to_dict("records")
    assert {"pair": "Age × Genre", "model": "AutoInt", "rank by attention": "20, 21",
            "rank by interaction": "9, 8"} in rows
    assert len(rows) == 6
    text = "\n".join(m.value for m in at.markdown)
    assert "Of these 12 pair-and-seed cases, **4** rank in the top 3 by attention and **8** by measured interaction" \
        in text
    assert "No variant passes" in text
