"""Background training jobs: subprocesses that queue per device, report progress, and can be cancelled."""
import os
import time

import pytest

from autoint.training.jobs import SETTINGS, JobQueue, read_events
from autoint.model.autoint import AutoIntConfig, ConfigError
from autoint.training.runs import CheckpointError, list_runs
from autoint.training.train import TrainConfig

TINY = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)


def _job_settings(tmp_path, model_config, train_config, **submit):
    """Submit a job whose worker does nothing (`python` is /bin/true), then read back what its trainer
    would train with: its command line parsed by the CLI, and `--config` read as the trainer reads it."""
    import json
    from autoint.cli import build_parser, settings_from
    queue = JobQueue(tmp_path / "runs", python="/bin/true")
    job = queue.submit(model_config, train_config, tmp_path / "data", **submit)
    command = json.loads((queue.folder / job.id / "job.json").read_text())["command"]
    assert command[1:4] == ["-m", "autoint", "train"]
    args = build_parser().parse_args(command[3:])
    return args, settings_from(args)


def test_every_setting_survives_the_job_and_the_cli(tmp_path):
    """A job hands its trainer one JSON file (`train --config`): every field of both configs must arrive,
    each set to a value other than its default (lr_decay was once dropped when jobs re-spelled flags)."""
    from dataclasses import fields
    model = AutoIntConfig(embed_dim=8, attn_dim=4, heads=3, layers=2, residual=False, dropout=0.1,
                          scaled_attention=True, layer_norm=True, qkv_relu=True, projection_bias=True,
                          attention_dropout=0.3, sparse_attention=True, attention_alignment=0.2, dnn_hidden=(16, 8),
                          dnn_dropout=0.2)
    training = TrainConfig(epochs=3, patience=4, batch_size=512, lr=0.004, weight_decay=1e-6, lr_decay=0.5,
                           seed=7, device="cpu", data_path="streamed", buffer_rows=4096, virtual_shards=4,
                           loader_workers=1)
    for config, default in ((model, AutoIntConfig()), (training, TrainConfig())):
        same = [f.name for f in fields(config) if getattr(config, f.name) == getattr(default, f.name)]
        assert same == [], f"set {same} to a non-default value so this test checks them"
    args, (model_back, training_back) = _job_settings(tmp_path, model, training)
    assert model_back == model and training_back == training
    assert args.config.endswith(SETTINGS) and args.dataset is None
    # The paper's defaults come back as themselves, whatever a preset would say.
    _, back = _job_settings(tmp_path, AutoIntConfig(), TrainConfig(device="cpu"))
    assert back == (AutoIntConfig(), TrainConfig(device="cpu"))


def test_a_job_names_its_data_set(tmp_path):
    _, _ = _job_settings(tmp_path, TINY, TrainConfig(device="cpu"))
    args, _ = _job_settings(tmp_path, TINY, TrainConfig(device="cpu"), dataset="criteo")
    assert args.dataset == "criteo" and args.spec is None
    args, _ = _job_settings(tmp_path, TINY, TrainConfig(device="cpu"), spec=tmp_path / "mine.toml")
    assert args.spec == str((tmp_path / "mine.toml").resolve())
    args, _ = _job_settings(tmp_path, TINY, TrainConfig(device="cpu"), prepared=tmp_path / "copy")
    assert args.prepared == str((tmp_path / "copy").resolve()) and args.dataset is None and args.spec is None


def test_a_prepared_copy_and_a_raw_data_set_are_not_both_taken(tmp_path):
    """The copy names its data set and spec itself: naming them too would be silently ignored, so it is refused."""
    from autoint.errors import UsageError
    queue = JobQueue(tmp_path / "runs", python="/bin/true")
    with pytest.raises(UsageError, match=r"prepared=.*copy' names its data set and spec itself; pass "
                                         r"dataset='criteo' and spec=None only without it"):
        queue.submit(TINY, TrainConfig(device="cpu"), tmp_path, dataset="criteo", prepared=tmp_path / "copy")
    assert queue.jobs() == []


def test_train_config_and_flags_do_not_mix(tmp_path):
    import json
    from autoint.cli import build_parser, main, settings_from
    from autoint.model.reference_models import FMConfig
    from autoint.training.train import settings_to_json
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings_to_json(FMConfig(embed_dim=4), TrainConfig(epochs=2))))
    args = build_parser().parse_args(["train", "--out", "x", "--config", str(path), "--device", "cpu"])
    assert settings_from(args) == (FMConfig(embed_dim=4), TrainConfig(epochs=2, device="cpu"))  # --device may join
    for extra in (["--lr", "0.1"], ["--layers", "2"], ["--preset", "authors-code"], ["--model", "lr"]):
        args = build_parser().parse_args(["train", "--out", "x", "--config", str(path), *extra])
        with pytest.raises(ConfigError, match=f"holds every setting of the run; leave out {extra[0]}"):
            settings_from(args)
    path.write_text(json.dumps({"model": {"model": "FM", "embed_dim": 4}, "train": {"epochs": 2, "lr_schedule": 1}}))
    with pytest.raises(ConfigError, match=r"settings.json: unknown training settings \['lr_schedule'\]"):
        settings_from(build_parser().parse_args(["train", "--out", "x", "--config", str(path)]))
    path.write_text("{not json")
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(path)]) == 2


def test_cli_flags_build_lr_and_fm(tmp_path):
    from autoint.cli import build_parser, settings_from
    from autoint.model.reference_models import FMConfig, LRConfig
    parse = lambda *a: settings_from(build_parser().parse_args(["train", "--out", "x", *a]))  # noqa: E731
    assert parse("--model", "lr", "--epochs", "2")[0] == LRConfig()
    assert parse("--model", "fm", "--embed-dim", "8") == (FMConfig(embed_dim=8), TrainConfig())
    with pytest.raises(ConfigError, match="--model fm takes only --embed-dim"):
        parse("--model", "fm", "--heads", "3")


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
