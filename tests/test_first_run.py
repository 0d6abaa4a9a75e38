"""A converged default on first run: a quick run first, the converged one later, the swap, every core when idle.

- `trainer_threads` / `ThreadPacer`: every core while the activity file is old (or absent), the trainer's
  share while it is fresh; each switch is a "threads" event.
- A job with a snapshot saves the quick run on the way and the converged run at the end; its trainer
  takes every core while nobody explores and gives them back when someone does.
- The app: a first start submits that one job, the page continues on the quick run; a session on the
  quick default moves to the converged run when it lands and says so once; a session that chose a run
  keeps it; a lost converging job is started again, a cancelled one is not.
"""
import os
import shutil
import signal
import time
from dataclasses import asdict

import pytest
import torch
from streamlit.testing.v1 import AppTest

from autoint.datasets.movielens import load_movielens
from autoint.training.jobs import ACTIVE, JobQueue, ThreadPacer, activity_file, mark_activity, trainer_threads
from autoint.model.autoint import AutoIntConfig
from autoint.training.runs import list_runs, load_run, save_run
from autoint.training.train import TrainConfig, evaluate, train
from conftest import REPO
from app import first_start  # the app module whose names the tests patch or call

APP = str(REPO / "streamlit_app.py")
TINY = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)
# Slow enough per epoch (batch 32: ~270 steps, a pacer check every 50) that a test sees each phase.
SLOW = TrainConfig(epochs=4, patience=4, batch_size=32, lr=0.005, seed=1)


def wait_for(condition, what: str, timeout: float = 120.0, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


# ----------------------------------------------------------------------------- the thread decision

def test_every_core_only_while_nobody_explored_for_a_while_and_only_the_free_ones():
    now = 1000.0
    assert trainer_threads(None, now, busy=1, idle=8) == 8  # nobody ever explored
    assert trainer_threads(now - 2.0, now, busy=1, idle=8, idle_after=10.0) == 1  # someone explored 2 s ago
    assert trainer_threads(now - 10.0, now, busy=1, idle=8, idle_after=10.0) == 8
    assert trainer_threads(now - 60.0, now, busy=3, idle=4, idle_after=10.0) == 4
    # Nobody explores, but other processes use cores: only the free ones, never below the share.
    assert trainer_threads(None, now, busy=1, idle=2, free_cores=1.7) == 2
    assert trainer_threads(None, now, busy=1, idle=2, free_cores=1.2) == 1
    assert trainer_threads(None, now, busy=1, idle=8, free_cores=5.6) == 6
    assert trainer_threads(None, now, busy=2, idle=8, free_cores=0.3) == 2
    assert trainer_threads(now - 1.0, now, busy=1, idle=2, free_cores=2.0) == 1  # exploring wins


def test_the_pacer_switches_threads_as_the_activity_file_ages_and_reports_each_switch(tmp_path):
    marker = activity_file(tmp_path)
    clock = [2000.0]
    pacer = ThreadPacer(marker, busy=1, idle=2, idle_after=10.0, clock=lambda: clock[0], cpu=lambda: None)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        switched = pacer.check()  # no activity file: nobody explores
        assert switched["threads"] == 2 and switched["idle_s"] is None and torch.get_num_threads() == 2
        assert pacer.check() is None  # no change, no event

        mark_activity(tmp_path)
        os.utime(marker, (clock[0] - 3.0, clock[0] - 3.0))  # someone explored 3 s ago
        switched = pacer.check()
        assert switched == {"event": "threads", "threads": 1, "time": 2000.0, "idle_s": 3.0, "free_cores": None}
        assert torch.get_num_threads() == 1

        clock[0] += 7.5  # 10.5 s since: idle again
        assert pacer.check()["threads"] == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_the_pacer_takes_only_the_cores_other_processes_leave_free(tmp_path):
    """Machine-wide and own CPU seconds as /proc gives them: the others' share is what the pacer leaves."""
    clock, readings = [100.0], [(0.0, 0.0)]
    pacer = ThreadPacer(activity_file(tmp_path), busy=1, idle=2, clock=lambda: clock[0], cpu=lambda: readings[-1],
                        cores=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        clock[0], readings[-1] = 102.0, (2.2, 2.0)  # 2 s: this process 1 core, the others 0.1 core
        switched = pacer.check()
        assert switched["threads"] == 2 and switched["free_cores"] == pytest.approx(1.9)
        clock[0], readings[-1] = 104.0, (6.0, 4.2)  # the others now take 0.8 core (a busy server, say)
        switched = pacer.check()
        assert switched["threads"] == 1 and switched["free_cores"] == pytest.approx(1.2)
        clock[0], readings[-1] = 106.0, (8.0, 6.0)  # free again
        assert pacer.check()["threads"] == 2
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- snapshot and pacing in a real job

def test_a_job_saves_the_quick_run_first_then_the_converged_one_and_paces_its_threads(tmp_path, synth_dir):
    runs = tmp_path / "runs"
    queue = JobQueue(runs, threads=1, idle_threads=2)
    job = queue.submit(TINY, SLOW, synth_dir, run_name="conv", snapshot=(1, "quick"))
    assert job.spec["snapshot"]["run_name"] == "quick" and "--snapshot-epoch" in job.spec["command"]
    assert job.spec["snapshot"]["epoch"] == 1
    # Nobody has explored (no activity file): the trainer takes both threads ...
    wait_for(lambda: [e for e in queue.job(job.id).thread_switches if e["threads"] == 2], "2 threads")
    # ... the quick run lands while training goes on ...
    snapshot = wait_for(lambda: queue.job(job.id).snapshot, "the quick run")
    assert (runs / "quick").is_dir()
    assert queue.job(job.id).status == "running" and not (runs / "conv").exists()
    # ... someone explores: back to one thread within a pacer check (50 batches).
    seen = wait_for(lambda: (mark_activity(runs), [e for e in queue.job(job.id).thread_switches
                                                   if e["threads"] == 1 and e["idle_s"] is not None])[1],
                    "the switch back to 1 thread")
    assert seen[0]["idle_s"] < 10.0
    job = queue.wait(job.id, timeout=180)
    assert job.status == "finished", job.description

    by_name = {r["name"]: r for r in list_runs(runs)}
    quick, conv = by_name["quick"], by_name["conv"]
    assert quick["metrics"]["epochs_run"] == 1 and quick["metrics"]["best_epoch"] == 1
    assert conv["metrics"]["epochs_run"] == SLOW.epochs
    assert snapshot["test_auc"] == pytest.approx(quick["metrics"]["test_auc"])
    # The quick run holds the epoch-1 weights: its saved test AUC is what they score, and not the final one.
    dataset = load_movielens(synth_dir)
    rescored = evaluate(load_run(runs / "quick").model, *dataset.split("test"))["auc"]
    assert rescored == pytest.approx(quick["metrics"]["test_auc"], abs=1e-6)
    assert conv["metrics"]["test_auc"] != pytest.approx(quick["metrics"]["test_auc"], abs=1e-6)
    kinds = [e["event"] for e in job.events]
    assert kinds.index("snapshot") < len(kinds) - 1 - kinds[::-1].index("epoch")  # before the last epoch


def test_training_that_stops_before_the_snapshot_epoch_still_leaves_the_quick_run(tmp_path, synth_dir):
    from autoint.cli import main
    out, quick = tmp_path / "conv", tmp_path / "quick"
    code = main(["train", "--data-dir", str(synth_dir), "--out", str(out), "--snapshot-epoch", "5",
                 "--snapshot-out", str(quick), "--epochs", "1", "--quiet", "--layers", "1", "--heads", "1",
                 "--embed-dim", "4", "--attn-dim", "4", "--batch-size", "512"])
    assert code == 0
    assert load_run(quick).metrics["test_auc"] == pytest.approx(load_run(out).metrics["test_auc"])
    assert main(["train", "--data-dir", str(synth_dir), "--out", str(out), "--snapshot-out", str(quick)]) == 2


# ----------------------------------------------------------------------------- the app

@pytest.fixture
def app_env(monkeypatch, tmp_path, synth_dir):
    import app.state as state
    import app.first_start as first_start
    runs = tmp_path / "runs"
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(synth_dir))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    monkeypatch.setattr(first_start, "FIRST_RUN_OVERRIDES", {"embed_dim": 4, "attn_dim": 4, "heads": 1, "layers": 1})
    monkeypatch.setattr(first_start, "FIRST_RUN_EPOCHS", 1)
    monkeypatch.setattr(first_start, "FIRST_RUN_TRAINING", SLOW)
    return runs


def run_in_use(at) -> str:
    return os.path.basename(at.sidebar.selectbox(key="sidebar_run").value)


def swap_messages(at) -> list[str]:
    return [s.value for s in at.success if "finished training to convergence" in s.value]


def progress_texts(at) -> list[str]:
    return [e.proto.text for e in at.get("progress")]


def test_first_start_shows_the_quick_run_then_swaps_to_the_converged_one_once(app_env):
    import app.state as state
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("No trained model yet" in i.value for i in at.info)
    queue = first_start.job_queue(str(app_env))
    (job,) = queue.jobs()
    assert job.run_name == state.READABLE_RUN and job.spec["snapshot"]["run_name"] == state.QUICK_RUN
    wait_for(lambda: queue.job(job.id).snapshot, "the quick run", poll=0.02)
    os.killpg(queue._children[job.id].pid, signal.SIGSTOP)  # hold the converging trainer here
    try:
        assert queue.job(job.id).status == "running" and not (app_env / state.READABLE_RUN).exists()
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert run_in_use(at) == state.QUICK_RUN and not swap_messages(at)
        coming = [t for t in progress_texts(at) if "A better model is coming" in t]
        assert coming and f"of up to {SLOW.epochs}" in coming[0], progress_texts(at)
        other = AppTest.from_file(APP, default_timeout=120).run()  # a second session chooses the quick run
        other.switch_page("app/train_page.py").run()
        other.button(key="train_use").click().run()  # "Use this run", the registry's pick: the one in use
        assert other.session_state["run_path"] == str(app_env / state.QUICK_RUN)
    finally:
        os.killpg(queue._children[job.id].pid, signal.SIGCONT)
    assert queue.wait(job.id, timeout=180).status == "finished"

    at.run()  # the next rerun: the quick default gives way to the converged one, said once
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert run_in_use(at) == state.READABLE_RUN
    by_name = {r["name"]: r for r in list_runs(app_env)}
    (message,) = swap_messages(at)
    assert (f"{by_name[state.QUICK_RUN]['metrics']['test_auc']:.4f} → "
            f"{by_name[state.READABLE_RUN]['metrics']['test_auc']:.4f}") in message
    assert any("finished training to convergence" in t.value for t in at.toast)
    assert not [t for t in progress_texts(at) if "A better model is coming" in t]
    at.run()
    assert run_in_use(at) == state.READABLE_RUN and not swap_messages(at)

    other.run()  # the session that chose the quick run keeps it, without a message
    assert run_in_use(other) == state.QUICK_RUN and not swap_messages(other)
    fresh = AppTest.from_file(APP, default_timeout=120).run()  # a new session starts on the converged run
    assert run_in_use(fresh) == state.READABLE_RUN and not swap_messages(fresh)

    # Then the paper's configuration trains, for the toggle; the app stays on the readable model.
    paper = next(j for j in queue.jobs() if j.run_name == "paper")
    assert paper.spec["snapshot"] is None and paper.status in ACTIVE + ("finished",)
    assert queue.wait(paper.id, timeout=180).status == "finished"
    by_name = {r["name"]: r for r in list_runs(app_env)}
    assert by_name["paper"]["config"]["qkv_relu"] is False and by_name[state.READABLE_RUN]["config"]["qkv_relu"] is True
    fresh.run()
    assert run_in_use(fresh) == state.READABLE_RUN


def test_a_lost_converging_job_is_started_again_and_a_cancelled_one_leaves_the_quick_run(app_env, synth_dir,
                                                                                         monkeypatch):
    import app.state as state
    monkeypatch.setattr(first_start, "FIRST_RUN_TRAINING", TrainConfig(epochs=200, patience=200, batch_size=32))
    dataset = load_movielens(synth_dir)
    result = train(dataset, TINY, TrainConfig(epochs=1, batch_size=512), progress=False)
    save_run(app_env / state.QUICK_RUN, result.model, metrics=result.metrics, train_config=asdict(SLOW),
             data_fingerprint=dataset.fingerprint, data_dir=str(synth_dir))
    queue = JobQueue(app_env)  # a job of an earlier app process, whose worker then died
    lost = queue.submit(TINY, TrainConfig(epochs=200, patience=200, batch_size=32), synth_dir,
                        run_name=state.READABLE_RUN)
    wait_for(lambda: queue.job(lost.id).events, "the first job's training")
    os.kill(queue._children[lost.id].pid, signal.SIGKILL)
    queue._children[lost.id].wait()
    wait_for(lambda: queue.job(lost.id).status == "lost", "the job to be lost")

    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert run_in_use(at) == state.QUICK_RUN
    app_queue = first_start.job_queue(str(app_env))
    again = first_start.default_job(app_queue)
    assert again.id != lost.id and again.run_name == state.READABLE_RUN and again.status in ACTIVE
    assert again.spec["snapshot"] is None  # the quick run is there already
    assert any("A better model is coming" in t for t in progress_texts(at))

    app_queue.cancel(again.id)
    at.run()
    assert not at.exception and not at.error
    assert first_start.default_job(app_queue).id == again.id  # a cancelled job is not started again
    captions = [c.value for c in at.sidebar.caption]
    assert any("convergence cancelled; the quick model stays" in c for c in captions), captions
    assert run_in_use(at) == state.QUICK_RUN and not (app_env / state.READABLE_RUN).exists()


def test_the_app_marks_activity_only_once_a_run_can_be_explored(tmp_path, monkeypatch):
    """A first start's page only waits for the quick model: it leaves the activity file alone, so the trainer takes
    every core from its first step; once a run exists, each script run marks it."""
    from app import first_start
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(tmp_path / "runs"))
    first_start.mark_activity()
    assert not activity_file(tmp_path / "runs").exists()
    (tmp_path / "runs" / "default").mkdir(parents=True)
    (tmp_path / "runs" / "default" / "run.json").write_text("{}")
    first_start.mark_activity()
    assert activity_file(tmp_path / "runs").exists()
