"""Background training jobs: subprocesses that queue per device, report progress, and can be cancelled."""
import os
import time

import pytest

from autoint.jobs import JobQueue, read_events, train_arguments
from autoint.model import AutoIntConfig, ConfigError
from autoint.runs import CheckpointError, list_runs
from autoint.train import TrainConfig

TINY = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)


def test_train_arguments_round_trip_through_the_cli_parser():
    from autoint.__main__ import build_parser, model_config_from
    config = AutoIntConfig(embed_dim=8, attn_dim=4, heads=3, layers=2, residual=False, dropout=0.1,
                           dnn_hidden=(16, 8))
    args = build_parser().parse_args(["train", "--out", "x", *train_arguments(config, TrainConfig(epochs=3))])
    assert model_config_from(args) == config and args.epochs == 3


def test_bad_settings_are_refused_before_a_process_starts(tmp_path):
    queue = JobQueue(tmp_path)
    with pytest.raises(ConfigError, match="heads"):
        queue.submit(_unchecked(heads=99), TrainConfig(), tmp_path)
    with pytest.raises(CheckpointError, match="letters, digits"):
        queue.submit(TINY, TrainConfig(), tmp_path, run_name="no spaces please")
    assert queue.jobs() == []


def _unchecked(**changes) -> AutoIntConfig:
    config = AutoIntConfig()
    for name, value in changes.items():
        setattr(config, name, value)  # bypasses __post_init__, as a form would before validation
    return config


def test_a_job_reports_progress_and_its_run_joins_the_registry(tmp_path, synth_dir):
    queue = JobQueue(tmp_path / "runs")
    job = queue.submit(TINY, TrainConfig(epochs=1, batch_size=512), synth_dir, run_name="quick")
    assert job.status in ("queued", "running")
    job = queue.wait(job.id, timeout=180)
    assert job.status == "finished", job.description
    assert job.progress == 1.0 and job.history[-1]["epoch"] == 1 and job.steps
    (run,) = list_runs(tmp_path / "runs")
    assert run["name"] == "quick" and run["metrics"]["threads"] == 1  # the trainer got the thread count it was given


def test_cancel_stops_the_trainer_and_leaves_no_run_while_the_next_job_waits_its_turn(tmp_path, synth_dir):
    queue = JobQueue(tmp_path / "runs")
    long = queue.submit(TINY, TrainConfig(epochs=200, batch_size=32, patience=200), synth_dir, run_name="long")
    deadline = time.monotonic() + 120
    while not queue.job(long.id).events:  # training has really started
        assert time.monotonic() < deadline, queue.job(long.id).description
        time.sleep(0.2)
    waiting = queue.submit(TINY, TrainConfig(epochs=1, batch_size=512), synth_dir, run_name="next")
    time.sleep(2.0)  # long enough for its worker to start and find the device taken
    assert queue.job(waiting.id).status == "queued"  # one job per device at a time
    queue.cancel(long.id)
    assert queue.job(long.id).status == "cancelled"
    assert queue.wait(waiting.id, timeout=180).status == "finished"
    assert [r["name"] for r in list_runs(tmp_path / "runs")] == ["next"]
    assert not (tmp_path / "runs" / "long").exists()


def test_a_worker_killed_mid_way_is_reported_lost_and_writes_no_run(tmp_path, synth_dir):
    queue = JobQueue(tmp_path / "runs")
    job = queue.submit(TINY, TrainConfig(epochs=200, batch_size=32, patience=200), synth_dir, run_name="killed")
    deadline = time.monotonic() + 120
    while not queue.job(job.id).events:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(queue._children[job.id].pid, 9)  # the worker dies; its trainer follows (PR_SET_PDEATHSIG)
    queue._children[job.id].wait()
    time.sleep(1.0)
    assert queue.job(job.id).status == "lost"
    assert not (tmp_path / "runs" / "killed").exists()
    events = len(read_events(job.folder / "progress.jsonl"))
    time.sleep(1.5)
    assert len(read_events(job.folder / "progress.jsonl")) == events  # nothing is training any more
