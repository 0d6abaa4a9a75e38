"""Training faults: a NaN or infinite loss, and a process killed mid-epoch or mid-save.

Divergence is forced by writing NaN or inf into the weights from the progress callback (the
model is caught as it is built); kills are real SIGKILLs of `python -m autoint` children, plus
a forked child that dies (os._exit, which runs no cleanup, like SIGKILL) at each step of
`save_run`. Afterwards the registry must read cleanly, list no partial run, and
`clean_staging` (what the next start runs) must leave the last complete run in place.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pytest
import torch

import autoint.training.train as train_module
from autoint.cli import main
from autoint.model.autoint import AutoInt, AutoIntConfig
from autoint.training.runs import REGISTRY_LOCK, clean_staging, list_runs, load_run, save_run
from autoint.training.train import TrainConfig, TrainingDiverged, train
from conftest import REPO

SMALL = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from autoint.datasets.synth import generate_movielens
    return generate_movielens(tmp_path_factory.mktemp("tiny") / "ml", users=60, movies=40, ratings=1500, seed=5)


@pytest.fixture(scope="module")
def tiny_dataset(tiny):
    from autoint.datasets.movielens import load_movielens
    return load_movielens(tiny)


@pytest.fixture
def spy(monkeypatch):
    """Every AutoInt that train() builds, so a callback can corrupt its weights."""
    built, real_init = [], AutoInt.__init__

    def spied_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(AutoInt, "__init__", spied_init)  # however train() builds it
    return built


def corrupt(model, name, value):
    with torch.no_grad():
        dict(model.named_parameters())[name].fill_(value)


def injector(built, *, event, epoch, name="output.weight", value=float("nan"), seen=None):
    """A progress callback that corrupts the model at the given event; `seen` gets a copy of the weights then."""
    def callback(e):
        if e["event"] == event and e["epoch"] == epoch and not getattr(callback, "done", False):
            callback.done = True
            if seen is not None:
                seen.update({k: v.clone() for k, v in built[-1].state_dict().items()})
            corrupt(built[-1], name, value)
    return callback


# ----------------------------------------------------------------------------- NaN and inf losses (library)

@pytest.mark.parametrize("name,value,shown", [("output.weight", float("nan"), "nan"),
                                              ("output.bias", float("inf"), "inf")])
def test_divergence_keeps_best_weights(tiny_dataset, spy, name, value, shown):
    best = {}
    callback = injector(spy, event="epoch", epoch=1, name=name, value=value, seen=best)
    with pytest.raises(TrainingDiverged) as info:
        train(tiny_dataset, SMALL, TrainConfig(epochs=5, patience=5, batch_size=64, seed=1), callback=callback,
              progress=False)
    message = str(info.value)
    assert f"became {shown} in epoch 2" in message or "became nan in epoch 2" in message, message
    assert "kept the best weights so far (epoch 1" in message and "Lower the learning rate" in message
    result = info.value.result
    assert result is not None and result.metrics["stopped"] == "diverged" and result.metrics["best_epoch"] == 1
    state = result.model.state_dict()
    assert all(torch.equal(state[k], best[k]) for k in best), "not the weights of the best epoch"
    assert all(torch.isfinite(t).all() for t in state.values())
    assert 0.0 <= result.metrics["test_auc"] <= 1.0 and [h["epoch"] for h in result.history] == [1]


def test_divergence_before_any_epoch_keeps_nothing(tiny_dataset, spy):
    """Weights go bad inside epoch 1 (the loss of that epoch still looks finite): nothing worth keeping."""
    callback = injector(spy, event="step", epoch=1)
    with pytest.raises(TrainingDiverged, match=r"weights became NaN or infinite in epoch 1; stopped before any epoch "
                                               r"finished .* Lower the learning rate") as info:
        train(tiny_dataset, SMALL, TrainConfig(epochs=3, batch_size=64, seed=1), callback=callback, progress=False)
    assert info.value.result is None


# ----------------------------------------------------------------------------- NaN via the CLI

@pytest.fixture
def cli_injects(monkeypatch, spy):
    """Make `python -m autoint train` (in-process) meet a NaN at the given event."""
    real = train_module.train
    where = {}

    def wrapped(dataset, model_config, train_config, callback=None, progress=True):
        inject = injector(spy, **where) if where else None

        def both(event):
            if inject:
                inject(event)
            return callback(event) if callback else None
        return real(dataset, model_config, train_config, callback=both, progress=progress)

    monkeypatch.setattr(train_module, "train", wrapped)
    return where


def train_argv(data, out, *extra):
    return ["train", "--data-dir", str(data), "--layers", "1", "--embed-dim", "4", "--attn-dim", "4", "--heads", "1",
            "--batch-size", "64", "--epochs", "4", "--patience", "4", "--quiet", "--device", "cpu",
            "--out", str(out), *extra]


def test_cli_divergence_saves_best_epoch_and_exits_nonzero(tiny, tmp_path, capsys, cli_injects):
    cli_injects.update(event="epoch", epoch=2)
    out = tmp_path / "runs" / "diverged"
    assert main(train_argv(tiny, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "became nan in epoch 3" in err and f"Saved them to {out}" in err
    run = load_run(out)  # complete, finite (load_run refuses NaN weights)
    assert run.metrics["stopped"] == "diverged" and run.metrics["best_epoch"] in (1, 2)
    assert [r["name"] for r in list_runs(out.parent) if r["error"] is None] == ["diverged"]


def test_cli_divergence_without_a_good_epoch_leaves_previous_run(tiny, tmp_path, capsys, cli_injects):
    out = tmp_path / "runs" / "mine"
    assert main(train_argv(tiny, out, "--epochs", "1")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    cli_injects.update(event="step", epoch=1)
    assert main(train_argv(tiny, out)) == 2
    err = capsys.readouterr().err
    assert "no weights to keep" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the previous run was touched"
    assert sorted(p.name for p in out.parent.iterdir() if p.name != REGISTRY_LOCK) == ["mine"]


# ----------------------------------------------------------------------------- SIGKILL mid-epoch

@pytest.fixture
def runs_with_old(tiny_dataset, tmp_path):
    root = tmp_path / "runs"
    save_run(root / "old", AutoInt(SMALL, tiny_dataset.schema), metrics={"v": 1})
    return root


def assert_registry_clean(root, allowed):
    listed = list_runs(root)
    assert all(r["error"] is None for r in listed), listed
    assert {r["name"] for r in listed} <= set(allowed), listed
    for r in listed:
        load_run(r["path"])
    return {r["name"] for r in listed}


def test_sigkill_mid_epoch(tiny, runs_with_old, tmp_path):
    progress = tmp_path / "progress.jsonl"
    child = subprocess.Popen([sys.executable, "-m", "autoint", *train_argv(tiny, runs_with_old / "new", "--epochs",
                              "1000", "--patience", "1000", "--batch-size", "8", "--progress-jsonl", str(progress))],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not (progress.exists() and progress.read_text().count("\n") >= 1):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the trainer never reported progress"
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 0.5))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert json.loads(progress.read_text().splitlines()[0])["event"] in ("step", "epoch")
    assert assert_registry_clean(runs_with_old, {"old"}) == {"old"}
    assert not (runs_with_old / "new").exists()
    clean_staging(runs_with_old)
    assert sorted(p.name for p in runs_with_old.iterdir() if p.name != REGISTRY_LOCK) == ["old"]


# ----------------------------------------------------------------------------- SIGKILL mid-save

def test_sigkill_during_save_loop(runs_with_old, tiny_dataset, tmp_path):
    """A forked child saves over the same run again and again; a SIGKILL at a random moment loses nothing complete."""
    model = AutoInt(SMALL, tiny_dataset.schema)
    ready = tmp_path / "ready"
    pid = os.fork()
    if pid == 0:  # the child: save forever, never return into pytest
        try:
            for i in range(1, 10**6):
                save_run(runs_with_old / "r", model, metrics={"v": i})
                if i == 1:
                    ready.touch()
        finally:
            os._exit(1)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0), "the saver died"
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.3))
    finally:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    assert_registry_clean(runs_with_old, {"old", "r"})
    clean_staging(runs_with_old)
    assert sorted(p.name for p in runs_with_old.iterdir() if p.name != REGISTRY_LOCK) == ["old", "r"]
    assert load_run(runs_with_old / "r").metrics["v"] >= 1


def _die_in_child(fn):
    """Run `fn` in a forked child, which must end by os._exit; returns its exit code."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            fn()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("where,expect", [
    ("writing weights", 1), ("writing manifest", 1), ("first rename", 1), ("second rename", 1),
    ("removing the old copy", 2),
])
def test_killed_at_each_step_of_save(runs_with_old, tiny_dataset, where, expect):
    """Replace run `r` (v=1) by v=2 and die at `where`: afterwards `r` is complete, v=1 or v=2 as the step says."""
    import autoint.training.runs as runs
    model = AutoInt(SMALL, tiny_dataset.schema)
    save_run(runs_with_old / "r", model, metrics={"v": 1})

    def dying_save():
        real_rename, real_dump, renames = os.rename, json.dump, []
        if where == "writing weights":
            def half_save(state, filename, metadata=None):
                with open(filename, "wb") as fh:
                    fh.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"")
                os._exit(9)
            runs.save_file = half_save
        elif where == "writing manifest":
            def half_dump(obj, fh, **kwargs):
                fh.write('{"format_version": 1, "con')
                fh.flush()
                os._exit(9)
            runs.json.dump = half_dump
        elif where in ("first rename", "second rename"):
            def rename(a, b):
                renames.append((a, b))
                if len(renames) == (1 if where == "first rename" else 2):
                    os._exit(9)
                real_rename(a, b)
            runs.os.rename = rename
        else:
            runs.shutil.rmtree = lambda *a, **k: os._exit(9)
        save_run(runs_with_old / "r", model, metrics={"v": 2})

    assert _die_in_child(dying_save) == 9
    names = assert_registry_clean(runs_with_old, {"old", "r"})
    if where != "second rename":
        assert names == {"old", "r"}
    leftovers = [p.name for p in runs_with_old.iterdir() if p.name.startswith(".") and p.name != REGISTRY_LOCK]
    assert leftovers, "a kill mid-save leaves a staging or old copy for clean_staging"
    assert sorted(clean_staging(runs_with_old)) == sorted(leftovers)
    assert sorted(p.name for p in runs_with_old.iterdir() if p.name != REGISTRY_LOCK) == ["old", "r"]
    assert load_run(runs_with_old / "r").metrics["v"] == expect


def test_clean_staging_spares_a_save_in_progress(runs_with_old):
    (runs_with_old / ".r.tmp-abc123").mkdir()
    (runs_with_old / ".old.old-deadbeef").mkdir()
    assert clean_staging(runs_with_old, older_than_s=60) == []
    assert sorted(clean_staging(runs_with_old)) == [".old.old-deadbeef", ".r.tmp-abc123"]
    assert sorted(p.name for p in runs_with_old.iterdir() if p.name != REGISTRY_LOCK) == ["old"]
