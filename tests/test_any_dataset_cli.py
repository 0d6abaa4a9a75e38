"""The command line on a data set other than MovieLens: a generated Criteo-format set (39 fields), a tiny model
trained one epoch, and `--row N`, the sampled split interactions, and a run that remembers its data set."""
import json

import numpy as np
import pytest

from autoint.cli import main

ROWS = 3000
TEST = 301  # the test fold of 10 stratified folds of ROWS samples


@pytest.fixture(scope="module")
def criteo_dir(tmp_path_factory):
    from autoint.datasets.synth import generate_criteo
    return generate_criteo(tmp_path_factory.mktemp("criteo") / "criteo", rows=ROWS, seed=5)


@pytest.fixture(scope="module")
def criteo_run(criteo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", "--dataset", "criteo", "--data-dir", str(criteo_dir), "--epochs", "1", "--layers", "1",
                 "--heads", "1", "--embed-dim", "4", "--attn-dim", "4", "--batch-size", "256", "--quiet",
                 "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def criteo_data(criteo_dir, criteo_run):
    from autoint.datasets import load_dataset
    from autoint.training.runs import load_run
    return load_dataset("criteo", data_dir=criteo_dir, schema=load_run(criteo_run).schema)


def run_json(capsys, argv) -> dict:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


def run_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def test_the_run_remembers_its_data_set(criteo_run):
    manifest = json.loads((criteo_run / "run.json").read_text())
    assert manifest["dataset"] == "criteo"


def test_split_row_gives_the_nth_test_sample_with_its_real_label(criteo_data):
    from autoint.data.samples import SampleError, split_row
    row = split_row(criteo_data, "test", 7)
    index = int(criteo_data.splits["test"][7])
    assert row.index == index and row.label == int(criteo_data.labels[index].item())
    assert set(row.values) == set(criteo_data.schema.names) and len(row.values) == 39
    record = criteo_data.frame.row(index, named=True)
    for name in ("I5", "C3"):
        assert row.values[name] == (record[name] if record[name] is not None else "<unknown>")
    with pytest.raises(SampleError, match="choose a row from 0 to"):
        split_row(criteo_data, "test", len(criteo_data.splits["test"]))


def test_samples_are_picked_by_field_values_most_frequent_first(criteo_data):
    from autoint.data.samples import SampleError, matching, random_position, value_counts
    counts = value_counts(criteo_data, "test", "C3")
    assert counts and [c for _, c in counts] == sorted((c for _, c in counts), reverse=True)
    value, count = counts[0]
    positions = matching(criteo_data, "test", {"C3": value})
    assert len(positions) == count
    j = criteo_data.schema.of_kind("categorical").index(criteo_data.schema["C3"])
    rows = criteo_data.splits["test"][positions]
    assert (criteo_data.inputs.categorical[rows, j] == criteo_data.schema["C3"].index(value)).all()
    both = matching(criteo_data, "test", {"C3": value, "C1": value_counts(criteo_data, "test", "C1", positions)[0][0]})
    assert 0 < len(both) <= len(positions) and set(both) <= set(positions)
    assert value_counts(criteo_data, "test", "C3", search=value[2:6].upper())[0][0] == value  # any case
    assert random_position(positions, seed=1) in positions
    with pytest.raises(SampleError, match="not a value the model knows"):
        matching(criteo_data, "test", {"C3": "nope"})


def test_explain_row_on_criteo(capsys, criteo_dir, criteo_run, criteo_data, few_estimated_rows):
    report = run_json(capsys, ["explain", str(criteo_run), "--dataset", "criteo", "--data-dir", str(criteo_dir),
                               "--row", "3", "--no-attributions", "--json"])
    assert report["row"] == 3 and report["split"] == "test"
    index = int(criteo_data.splits["test"][3])
    assert report["label"] == int(criteo_data.labels[index].item())
    assert len(report["labels"]) == 39
    assert report["labels"][0].startswith("I1=") and report["labels"][13].startswith("C1=")
    assert np.asarray(report["attention"]).shape == (1, 1, 39, 39)
    assert 0.0 < report["ctr"] < 1.0
    assert report["interactions"]["method"] == "KernelSHAPIQ"
    assert np.asarray(report["interactions"]["matrix"]).shape == (39, 39)
    # without --dataset, the run's own data set is read
    again = run_json(capsys, ["explain", str(criteo_run), "--data-dir", str(criteo_dir), "--row", "3",
                              "--no-attributions", "--json"])
    assert again["ctr"] == pytest.approx(report["ctr"], abs=1e-7)


def test_interactions_row_and_sampled_split_on_criteo(capsys, criteo_dir, criteo_run, tmp_path, monkeypatch,
                                                     few_estimated_rows):
    monkeypatch.setenv("AUTOINT_CACHE_DIR", str(tmp_path / "cache"))
    one = run_json(capsys, ["interactions", str(criteo_run), "--dataset", "criteo", "--data-dir", str(criteo_dir),
                            "--row", "0", "--json"])
    assert one["mode"] == "sample" and one["row"] == 0 and one["label"] in (0, 1)
    assert np.asarray(one["matrix"]).shape == (39, 39) and len(one["pairs"]) == 39 * 38 // 2
    assert one["method"] == "KernelSHAPIQ" and one["standard_error"]["max"] >= 0
    split = run_json(capsys, ["interactions", str(criteo_run), "--dataset", "criteo", "--data-dir", str(criteo_dir),
                              "--sample-rows", "6", "--budget", "400", "--json"])
    assert split["mode"] == "split" and split["method"] == "KernelSHAPIQ"
    assert split["rows"] == 6 and split["of"] == TEST and split["budget"] == 400
    assert np.asarray(split["matrix"]).shape == (39, 39)
    assert np.asarray(split["standard_error"]).shape == (39, 39)
    assert all(np.isfinite(split["standard_error"][0][1:]))


def test_correlations_and_evaluate_on_criteo(capsys, criteo_dir, criteo_run):
    report = run_json(capsys, ["correlations", str(criteo_run), "--dataset", "criteo", "--data-dir", str(criteo_dir),
                               "--no-interactions", "--json"])
    assert report["count"] == TEST and len(report["fields"]) == 39
    assert np.asarray(report["overall"]).shape == (39, 39)
    metrics = run_json(capsys, ["evaluate", str(criteo_run), "--dataset", "criteo", "--data-dir", str(criteo_dir)])
    assert metrics["samples"]["test"] == TEST and 0 <= metrics["test_auc"] <= 1


def test_a_data_set_the_run_was_not_trained_on_is_an_actionable_error(capsys, criteo_dir, criteo_run, synth_dir):
    err = run_error(capsys, ["explain", str(criteo_run), "--dataset", "movielens-1m", "--data-dir", str(synth_dir),
                             "--user", "1", "--movie", "1"])
    assert "trained on criteo" in err and "--dataset criteo" in err
    err = run_error(capsys, ["explain", str(criteo_run), "--data-dir", str(criteo_dir), "--user", "1", "--movie", "1"])
    assert "--user and --movie" in err and "--row" in err
    err = run_error(capsys, ["interactions", str(criteo_run), "--data-dir", str(criteo_dir), "--row", "100000"])
    assert "choose a row from 0 to 300" in err
    err = run_error(capsys, ["recommend", str(criteo_run), "--data-dir", str(criteo_dir), "--user", "1"])
    assert "user" in err and "item" in err


def test_sampled_split_interactions_keep_masks_standard_errors_and_cache(criteo_run, criteo_data, tmp_path):
    from autoint.explain.baselines import mean_embedding
    from autoint.explain.interactions import SplitInteractions, sampled_split_interactions
    from autoint.training.runs import load_run
    model = load_run(criteo_run).model
    x, _ = criteo_data.split("test")
    base = mean_embedding(model, criteo_data.split("train")[0])
    seen = []
    split = sampled_split_interactions(model, x, base, rows=5, budget=300, seed=2,
                                       progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, 5) and split.method == "KernelSHAPIQ" and split.total == len(x)
    assert split.main.shape == (5, 39) and split.pairs.shape == (5, 39 * 38 // 2)
    assert list(split.rows) == sorted(set(split.rows)) and split.rows.max() < len(x)
    again = sampled_split_interactions(model, x, base, rows=5, budget=300, seed=2)
    np.testing.assert_array_equal(again.rows, split.rows)
    np.testing.assert_allclose(again.pairs, split.pairs)  # seeded: the same rows and estimates
    keep = np.zeros(len(x), dtype=bool)
    keep[split.rows[:3]] = True  # a mask over the whole split keeps the subsample's rows it holds
    assert split.count(keep) == 3 and split.count() == 5
    expected = np.abs(split.pairs[:3]).mean(0)
    assert split.matrix(keep)[0, 1] == pytest.approx(expected[0])
    error = split.standard_error()
    assert error.shape == (39, 39) and error[0, 1] == pytest.approx(np.abs(split.pairs[:, 0]).std(ddof=1) / np.sqrt(5))
    assert split.describe() == {"method": "KernelSHAPIQ", "rows": 5, "of": len(x), "budget": 300, "seed": 2}
    loaded = SplitInteractions.load(split.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(loaded.rows, split.rows)
    assert loaded.describe() == split.describe() and loaded.count(keep) == 3


def test_sampled_split_on_few_fields_is_the_exact_values_of_its_rows(trained_run, synth_dataset):
    from autoint.explain.baselines import mean_embedding
    from autoint.explain.interactions import sampled_split_interactions, split_interactions
    model = trained_run.model
    x, _ = synth_dataset.split("test")
    base = mean_embedding(model, synth_dataset.split("train")[0])
    sampled = sampled_split_interactions(model, x, base, rows=4, seed=0)
    exact = split_interactions(model, x.index(torch_rows(sampled.rows)), base)
    assert sampled.method == "exact" and sampled.budget is None
    np.testing.assert_allclose(sampled.pairs, exact.pairs, atol=1e-5)  # float32 forwards, batched differently
    assert not exact.sampled and np.all(exact.standard_error() == 0)


def torch_rows(rows):
    import torch
    return torch.from_numpy(np.asarray(rows))
