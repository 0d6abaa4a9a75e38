import json
import math
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from autoint.model.autoint import AutoIntConfig, ConfigError
from autoint.training.runs import CheckpointError, list_runs, load_run, save_run, clean_staging
from autoint.training.metrics import roc_auc
from autoint.training.config import batch_size_for, lr_for
from autoint.training.train import TrainConfig, train
from conftest import REPO


def test_roc_auc_matches_pair_counting():
    torch.manual_seed(0)
    labels = (torch.rand(300) < 0.4).float()
    scores = torch.round(torch.rand(300) * 10) / 10  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    assert roc_auc(labels, scores) == pytest.approx(pairs.mean().item(), abs=1e-9)


def test_trained_model_beats_constant_predictor(trained_run, synth_dataset):
    """A constant predictor has AUC 0.5 and the base rate's entropy as logloss; demand a clear margin."""
    m = trained_run.metrics
    p = synth_dataset.labels[torch.from_numpy(synth_dataset.splits["test"])].mean().item()
    constant_logloss = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert m["test_auc"] >= 0.60, m
    assert m["test_logloss"] <= constant_logloss - 0.02, (m, constant_logloss)


def test_training_is_deterministic_on_cpu(synth_dataset):
    config = AutoIntConfig(embed_dim=4, attn_dim=4, layers=1)
    tc = TrainConfig(epochs=1, batch_size=1024, seed=11, device="cpu")
    a = train(synth_dataset, config, tc, progress=False)
    b = train(synth_dataset, config, tc, progress=False)
    assert a.metrics["test_auc"] == b.metrics["test_auc"]
    assert all(torch.equal(a.model.state_dict()[k], b.model.state_dict()[k]) for k in a.model.state_dict())


def test_early_stopping_restores_best_epoch(synth_dataset):
    r = train(synth_dataset, AutoIntConfig(embed_dim=4, attn_dim=4, layers=1), TrainConfig(epochs=3, patience=1,
              lr=0.05, seed=3), progress=False)
    best = max(r.history, key=lambda h: h["val_auc"])
    assert r.metrics["best_epoch"] == best["epoch"]
    assert r.metrics["val_auc"] == pytest.approx(best["val_auc"], abs=1e-9)


def test_lr_decay_halves_the_rate_after_each_epoch_without_a_better_validation_auc(synth_dataset, monkeypatch):
    import autoint.training.train as training
    real_evaluate, val_aucs = training.evaluate, iter([0.60, 0.70, 0.65, 0.66, 0.80, 0.79])

    def scripted(model, x, y):  # validation AUCs as scripted (the test split is evaluated for real at the end)
        metrics = real_evaluate(model, x, y)
        return {**metrics, "auc": next(val_aucs, metrics["auc"])}

    monkeypatch.setattr(training, "evaluate", scripted)
    r = train(synth_dataset, AutoIntConfig(embed_dim=4, attn_dim=4, layers=1),
              TrainConfig(epochs=6, patience=6, lr=0.01, lr_decay=0.5, seed=3, device="cpu"), progress=False)
    # epochs 3 and 4 do not beat 0.70 and epoch 6 does not beat 0.80: the rate halves after each of them
    assert [h["lr"] for h in r.history] == pytest.approx([0.01, 0.01, 0.01, 0.005, 0.0025, 0.0025])
    assert r.metrics["best_epoch"] == 5
    constant = train(synth_dataset, AutoIntConfig(embed_dim=4, attn_dim=4, layers=1),
                     TrainConfig(epochs=3, patience=3, lr=0.01, seed=3, device="cpu"), progress=False)
    assert [h["lr"] for h in constant.history] == [0.01] * 3


def test_callback_sees_progress_and_can_cancel(synth_dataset):
    from autoint.training.train import TrainingCancelled
    events = []

    def callback(event):
        events.append(event)
        return event["event"] != "epoch"

    with pytest.raises(TrainingCancelled):
        train(synth_dataset, AutoIntConfig(embed_dim=4, attn_dim=4, layers=1), TrainConfig(epochs=5, seed=1),
              callback=callback, progress=False)
    assert events[-1]["event"] == "epoch" and events[-1]["epoch"] == 1
    assert any(e["event"] == "step" for e in events)


def test_checkpoint_round_trip_predicts_identically(trained_run, synth_dataset, tmp_path):
    x, _ = synth_dataset.split("test")
    again = load_run(save_run(tmp_path / "copy", trained_run.model, metrics=trained_run.metrics))
    assert torch.equal(trained_run.model.predict_proba(x), again.model.predict_proba(x))
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["model.safetensors", "run.json",
                                                                   "vocabularies.json"]
    assert again.schema == trained_run.schema


def test_checkpoint_refuses_wrong_shapes(trained_run, tmp_path):
    path = save_run(tmp_path / "r", trained_run.model, metrics={})
    manifest = json.loads((path / "run.json").read_text())
    manifest["config"]["embed_dim"] = 12
    (path / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"tensor .* needs"):
        load_run(path)


def test_checkpoint_refuses_unknown_version(trained_run, tmp_path):
    path = save_run(tmp_path / "r", trained_run.model, metrics={})
    manifest = json.loads((path / "run.json").read_text())
    manifest["format_version"] = 99
    (path / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        load_run(path)


def test_checkpoint_refuses_missing_tensor(trained_run, tmp_path):
    path = save_run(tmp_path / "r", trained_run.model, metrics={})
    state = load_file(path / "model.safetensors")
    state.pop("output.bias")
    save_file(state, path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing \['output.bias'\]"):
        load_run(path)


def test_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    run = tmp_path / "evil"
    run.mkdir()
    (run / "model.pt").write_bytes(pickle.dumps(Exploit()))
    (run / "run.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_run(run)
    assert not marker.exists()


def test_registry_lists_only_complete_runs(trained_run, tmp_path):
    save_run(tmp_path / "done", trained_run.model, metrics={"test_auc": 0.7})
    (tmp_path / ".half.tmp-abc").mkdir()  # what a killed save leaves behind
    names = [r["name"] for r in list_runs(tmp_path)]
    assert names == ["done"]
    assert clean_staging(tmp_path) == [".half.tmp-abc"]


def test_impossible_training_settings():
    for kwargs, message in [({"lr": float("nan")}, "lr=nan"), ({"batch_size": 0}, "batch_size=0"),
                            ({"epochs": 0}, "epochs=0"), ({"lr_decay": 0.0}, "lr_decay=0.0"),
                            ({"lr_decay": 1.5}, "lr_decay=1.5")]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(**kwargs)


def test_train_and_evaluate_cli(synth_dir, tmp_path):
    run = tmp_path / "cli-run"
    cmd = [sys.executable, "-m", "autoint", "train", "--data-dir", str(synth_dir), "--layers", "1", "--embed-dim",
           "4", "--attn-dim", "4", "--epochs", "1", "--quiet", "--device", "cpu", "--out", str(run)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("test_auc", "test_logloss", "val_auc", "best_epoch", "epoch_seconds", "samples", "fields", "params",
                "device"):
        assert key in metrics
    assert metrics["device"] == "cpu" and len(metrics["epoch_seconds"]) == 1
    out = subprocess.run([sys.executable, "-m", "autoint", "evaluate", str(run), "--data-dir", str(synth_dir)],
                         capture_output=True, text=True, cwd=REPO, check=True)
    again = json.loads(out.stdout.strip().splitlines()[-1])
    assert again["test_auc"] == pytest.approx(metrics["test_auc"], abs=1e-9)
    # no --batch-size, no --lr: the batch the training split's size chose, and the lr that batch chose, are what
    # run.json records (the synthetic split is small: an epoch at 1024 would be a handful of steps)
    recorded = json.loads((run / "run.json").read_text())["train_config"]
    assert recorded["batch_size"] == batch_size_for(metrics["samples"]["train"]) < 1024
    assert recorded["lr"] == lr_for(recorded["batch_size"])


def test_the_default_batch_size_gives_every_epoch_enough_steps():
    from autoint.training.config import MIN_STEPS_PER_EPOCH
    assert batch_size_for(288_347) == 1024  # u2999's training split: the paper's setting, unchanged
    assert batch_size_for(1024 * MIN_STEPS_PER_EPOCH) == 1024
    assert batch_size_for(1024 * MIN_STEPS_PER_EPOCH - 1) == 512
    assert batch_size_for(24_000) == 64  # 375 steps an epoch, not 24
    assert batch_size_for(100) == 64  # never below MIN_BATCH
    for rows in (5_000, 24_000, 80_000, 200_000):
        size = batch_size_for(rows)
        assert rows / size >= MIN_STEPS_PER_EPOCH or size == 64
        assert size == 1024 or rows / (2 * size) < MIN_STEPS_PER_EPOCH  # the largest size that keeps the steps
    assert TrainConfig(batch_size=300).for_split(24_000).batch_size == 300  # a batch size given is kept
    assert TrainConfig().for_split(24_000).batch_size == 64 and TrainConfig().batch_size is None


def test_the_default_learning_rate_follows_the_batch():
    # the paper's 1e-3 on the paper's data, 3e-3 where the split is small enough for the smallest batch
    assert TrainConfig().for_split(288_347).lr == 1e-3 and TrainConfig().lr is None
    assert TrainConfig().for_split(32_768).lr == 1e-3 and TrainConfig().for_split(32_768).batch_size == 128
    small = TrainConfig().for_split(32_767)
    assert (small.batch_size, small.lr) == (64, 3e-3)
    assert TrainConfig(lr=5e-4).for_split(8_000).lr == 5e-4  # a learning rate given is kept
    assert TrainConfig(batch_size=1024).for_split(8_000).lr == 1e-3  # it follows the batch taken, not the split
    assert TrainConfig(batch_size=32).for_split(10**6).lr == 3e-3
    resolved = TrainConfig(batch_size=256, lr=0.01)
    assert resolved.for_split(10) is resolved
    with pytest.raises(ConfigError, match="lr=True is out of range"):
        TrainConfig(lr=True)


def test_cli_refuses_impossible_hyperparameters(synth_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "autoint", "train", "--data-dir", str(synth_dir), "--embed-dim", "0",
                          "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "embed_dim=0 is out of range" in out.stderr
    assert not (tmp_path / "x").exists()
