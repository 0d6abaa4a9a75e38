"""Background training jobs: each one a subprocess running `python -m autoint train`.

A job lives in a folder under `<runs root>/.jobs/<id>/`:
  job.json        the trainer's command line, the run name, the device, the data set
  settings.json   every setting of the run, {"model": ..., "train": ...} (`train --config`; settings_to_json)
  progress.jsonl  the trainer's progress events (`--progress-jsonl`), one JSON object a line
  log.txt         the trainer's stderr, for the error message when it fails
  exit.json       written by the worker when the trainer ends: its return code
  cancelled       present when someone cancelled the job
`<runs root>/.activity` is touched by the app on every script run of any session: a trainer
started with an idle thread count uses every core while nobody explored for IDLE_AFTER_S seconds,
and its own share of the cores otherwise (`ThreadPacer`, checked every 50 batches).
The worker (`python -m autoint.training.worker JOB_DIR`, autoint/training/worker.py) holds a file lock per device while the trainer
runs, so jobs queue: one trains on each device at a time, the rest wait for the lock. The
trainer writes its run folder atomically only when training finished, so a job killed on
the way leaves no run in the registry. Nothing here needs the app: jobs outlive reruns,
and a restarted app finds them again on disk.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path


from ..errors import UsageError
from ..model.autoint import AutoIntConfig
from .runs import RUN_NAME, CheckpointError
from .metrics import pick_device
from .train import TrainConfig, settings_to_json
from .worker import write_json as _write_json

JOBS_DIR = ".jobs"
SETTINGS = "settings.json"
STATUSES = ("queued", "running", "finished", "failed", "cancelled", "lost")
ACTIVE = ("queued", "running")


@dataclass
class Job:
    id: str
    folder: Path
    spec: dict
    status: str
    events: list[dict] = field(default_factory=list)
    error: str = ""

    @property
    def run_name(self) -> str:
        return self.spec["run_name"]

    @property
    def run_path(self) -> Path:
        return Path(self.spec["run_path"])

    @property
    def history(self) -> list[dict]:
        """The finished epochs, as the trainer reports them."""
        return [e for e in self.events if e.get("event") == "epoch"]

    @property
    def steps(self) -> list[dict]:
        return [e for e in self.events if e.get("event") == "step"]

    @property
    def snapshot(self) -> dict | None:
        """The trainer's "snapshot" event: the quick run it saved on the way (`submit(snapshot=...)`), if yet."""
        return next((e for e in self.events if e.get("event") == "snapshot"), None)

    @property
    def thread_switches(self) -> list[dict]:
        """When the trainer changed its thread count (`ThreadPacer`): {"threads", "idle_s", "time", ...}."""
        return [e for e in self.events if e.get("event") == "threads"]

    @property
    def latest(self) -> dict | None:
        """The latest "step" or "epoch" event."""
        return next((e for e in reversed(self.events) if e.get("event") in ("step", "epoch")), None)

    @property
    def progress(self) -> float:
        """Fraction of the planned epochs done, from the latest event (early stopping may end it sooner)."""
        return 1.0 if self.status == "finished" else self.progress_to(self.spec["epochs"])

    def progress_to(self, epochs: int) -> float:
        """Fraction of the first `epochs` epochs done."""
        last = self.latest
        if last is None:
            return 0.0
        if last.get("event") == "epoch":
            return min(last["epoch"] / epochs, 1.0)
        return min((last["epoch"] - 1 + last["step"] / last["steps"]) / epochs, 1.0)

    @property
    def description(self) -> str:
        last = self.latest
        if self.status == "queued":
            return "waiting for the device"
        if self.status == "running" and last is None:
            return "loading the data"
        if self.status == "running" and last.get("event") == "step":
            return f"epoch {last['epoch']}/{self.spec['epochs']}, batch {last['step']}/{last['steps']}, loss {last['loss']:.4f}"
        if self.status == "running":
            return f"epoch {last['epoch']}/{self.spec['epochs']} done, validation AUC {last['val_auc']:.4f}"
        return {"finished": "finished", "failed": f"failed: {self.error}", "cancelled": "cancelled",
                "lost": "stopped without finishing (the process ended)"}[self.status]


class JobQueue:
    """Submit, follow and cancel training jobs whose runs land in `runs_root`."""

    def __init__(self, runs_root: str | os.PathLike, threads: int = 1, python: str = sys.executable,
                 idle_threads: int | None = None):
        self.runs_root = Path(runs_root)
        self.folder = self.runs_root / JOBS_DIR
        self.threads = threads  # torch threads of each trainer, so it leaves the app its own core
        # ... and while nobody explores (the activity file is old), this many: None keeps `threads` throughout.
        self.idle_threads = idle_threads
        self.python = python
        self._children: dict[str, subprocess.Popen] = {}  # reaped here; a restarted app checks pids instead

    def submit(self, model_config: AutoIntConfig, train_config: TrainConfig, data_dir: str | os.PathLike,
               run_name: str | None = None, snapshot: tuple[int, str] | None = None,
               dataset: str | None = None, spec: str | os.PathLike | None = None,
               prepared: str | os.PathLike | None = None) -> Job:
        """Queue a training job; bad settings raise ConfigError here, before any process starts.

        `prepared`: a prepared copy of the data in `data_dir` (autoint.datasets.prepared) to train on (`train --prepared`,
        in memory or streamed as `train_config.data_path` says) instead of reading the raw files (`dataset`, `spec`).

        `snapshot=(epoch, name)` also saves the best weights after that epoch as the run `name` while
        training goes on to `run_name` (a quick model to use now, a converged one later)."""
        if prepared is not None and (dataset is not None or spec is not None):
            raise UsageError(f"submit: prepared={str(prepared)!r} names its data set and spec itself; pass "
                             f"dataset={dataset!r} and spec={spec!r} only without it (to read the raw files).")
        device = str(pick_device(train_config.device))
        settings = settings_to_json(model_config, replace(train_config, device=device))  # validates both
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        run_name = run_name or f"{model_config.name.replace('+', 'plus')}-L{model_config.layers}-" \
                               f"H{model_config.heads}-d{model_config.embed_dim}-{job_id}"
        names = [run_name] + ([snapshot[1]] if snapshot else [])
        busy = {name for j in self.active() for name in (j.run_name, (j.spec.get("snapshot") or {}).get("run_name"))}
        for name in names:
            if not RUN_NAME.match(name):
                raise CheckpointError(f"run name {name!r}: use letters, digits, '.', '_' and '-' only.")
            if (self.runs_root / name).exists() or name in busy:
                raise CheckpointError(f"a run named {name!r} exists or is being trained; choose another name.")
        run_path, extra = self.runs_root / run_name, []
        if snapshot is not None:
            snapshot = {"epoch": int(snapshot[0]), "run_name": snapshot[1],
                        "run_path": str((self.runs_root / snapshot[1]).resolve())}
            extra += ["--snapshot-epoch", str(snapshot["epoch"]), "--snapshot-out", snapshot["run_path"]]
        if self.idle_threads is not None and self.idle_threads != self.threads:
            extra += ["--activity-file", str(activity_file(self.runs_root).resolve()),
                      "--idle-threads", str(self.idle_threads)]
        folder = self.folder / job_id
        folder.mkdir(parents=True)
        _write_json(folder / SETTINGS, settings)  # the trainer reads every setting from here: `train --config`
        data = ["--data-dir", str(Path(data_dir).resolve())]
        if dataset is not None:
            data += ["--dataset", dataset]
        if spec is not None:
            data += ["--spec", str(Path(spec).resolve())]
        if prepared is not None:  # the copy names its data set and spec itself
            data = ["--prepared", str(Path(prepared).resolve())]
        spec = {"id": job_id, "run_name": run_name, "run_path": str(run_path.resolve()), "device": device,
                "data_dir": str(Path(data_dir).resolve()), "epochs": train_config.epochs,
                "model_config": model_config.to_json(), "threads": self.threads, "idle_threads": self.idle_threads,
                "snapshot": snapshot,
                "dataset": dataset, "spec": str(Path(spec).resolve()) if spec is not None else None,
                "prepared": str(Path(prepared).resolve()) if prepared is not None else None,
                "command": [self.python, "-m", "autoint", "train", *data, "--config", str(folder / SETTINGS),
                            "--quiet", "--progress-jsonl", str(folder / "progress.jsonl"),
                            "--out", str(run_path.resolve()), *extra],
                "submitted": time.time()}
        _write_json(folder / "job.json", spec)
        environment = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
                       "PYTHONUNBUFFERED": "1"}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                  environment.get("PYTHONPATH")]))
        # A session of its own, so cancel can end the worker and its trainer together.
        child = subprocess.Popen([self.python, "-m", "autoint.training.worker", str(folder)], env=environment,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=open(folder / "worker.log", "w"), start_new_session=True)
        self._children[job_id] = child
        _write_json(folder / "pid.json", {"pid": child.pid})
        return self.job(job_id)

    def jobs(self) -> list[Job]:
        """Every job on disk, newest first."""
        if not self.folder.is_dir():
            return []
        return [self.job(p.name) for p in sorted(self.folder.iterdir(), reverse=True) if (p / "job.json").is_file()]

    def active(self) -> list[Job]:
        return [j for j in self.jobs() if j.status in ACTIVE]

    def job(self, job_id: str) -> Job:
        folder = self.folder / job_id
        spec = json.loads((folder / "job.json").read_text())
        events = read_events(folder / "progress.jsonl")
        status, error = self._status(job_id, folder, spec, events)
        return Job(job_id, folder, spec, status, events, error)

    def cancel(self, job_id: str) -> None:
        """Stop a queued or running job; its trainer dies before writing a run folder."""
        folder = self.folder / job_id
        (folder / "cancelled").touch()
        pid = _read_pid(folder)
        if pid is not None and self._alive(job_id, pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        child = self._children.get(job_id)
        if child is not None:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
                child.wait()

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.2) -> Job:
        """Block until the job leaves the queue (tests and scripts; the app polls instead)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.status not in ACTIVE:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f} s: {job.description}")
            time.sleep(poll)

    def _alive(self, job_id: str, pid: int) -> bool:
        child = self._children.get(job_id)
        if child is not None:
            return child.poll() is None
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
        except (FileNotFoundError, IndexError):
            try:
                os.kill(pid, 0)
                return True
            except (ProcessLookupError, PermissionError):
                return False

    def _status(self, job_id: str, folder: Path, spec: dict, events: list[dict]) -> tuple[str, str]:
        if (folder / "cancelled").exists():
            return "cancelled", ""
        if (folder / "exit.json").is_file():
            code = json.loads((folder / "exit.json").read_text())["returncode"]
            if code == 0 and Path(spec["run_path"]).is_dir():
                return "finished", ""
            return "failed", _last_error(folder / "log.txt", code)
        pid = _read_pid(folder)
        if pid is None:  # submit writes the pid just after starting the worker
            return "queued", ""
        if not self._alive(job_id, pid):
            return "lost", ""
        return ("running" if (folder / "started").exists() else "queued"), ""


def read_events(path: Path) -> list[dict]:
    """The JSON lines written so far; a line still being written is skipped until it is complete."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return events


def _last_error(log: Path, code: int) -> str:
    lines = [l for l in log.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()] \
        if log.is_file() else []
    errors = [l for l in lines if l.startswith("error:")]
    return (errors[-1][len("error:"):].strip() if errors else lines[-1] if lines else "") or f"exit code {code}"


def _read_pid(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "pid.json").read_text())["pid"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None



# ----------------------------------------------------------------------------- every core while nobody explores

ACTIVITY_FILE = ".activity"  # a dot name: the registry skips it
IDLE_AFTER_S = 10.0  # nobody explored for this long: a trainer may take every core


def activity_file(runs_root: str | os.PathLike) -> Path:
    return Path(runs_root) / ACTIVITY_FILE


def mark_activity(runs_root: str | os.PathLike) -> None:
    """Someone is exploring now (the app calls this on each script run of any session)."""
    path = activity_file(runs_root)
    try:
        os.utime(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def trainer_threads(last_activity: float | None, now: float, busy: int, idle: int,
                    idle_after: float = IDLE_AFTER_S, free_cores: float | None = None) -> int:
    """A trainer's thread count: `busy` (its share, leaving the app the rest) when someone explored in the
    last `idle_after` seconds; otherwise `idle` (every core), or as many as `free_cores` says are not used by
    other processes, if fewer, but never below `busy`. A nice-10 trainer with more threads than free cores
    gets slower, not faster: its threads wait for each other at every parallel op."""
    if last_activity is not None and now - last_activity < idle_after:
        return busy
    if free_cores is None:
        return idle
    return max(busy, min(idle, int(free_cores + 0.5)))


def cpu_seconds_now() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, of this process) since boot, from /proc; None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fh.readline().split()[1:9])
        with open("/proc/self/stat") as fh:
            mine = fh.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, (int(mine[11]) + int(mine[12])) / tick


class ThreadPacer:
    """Switches the trainer's torch threads between its share and every core as the activity file ages and
    as other processes leave cores free (`trainer_threads`).

    `check()` is cheap (a stat and two reads of /proc); the trainer calls it every 50 batches. It returns a
    "threads" event when it switched, for the progress file, else None."""

    def __init__(self, path: str | os.PathLike, busy: int, idle: int, idle_after: float = IDLE_AFTER_S,
                 clock=time.time, cpu=cpu_seconds_now, cores: int | None = None):
        self.path, self.busy, self.idle, self.idle_after, self.clock = Path(path), busy, idle, idle_after, clock
        self.cpu, self.cores = cpu, cores or os.cpu_count() or 1
        self.last_cpu = (clock(), cpu())

    def free_cores(self, now: float) -> float | None:
        """Cores that other processes left unused since the last check (None: not measurable here)."""
        (then, before), after = self.last_cpu, self.cpu()
        self.last_cpu = (now, after)
        if before is None or after is None or now - then < 0.2:
            return None
        others = ((after[0] - before[0]) - (after[1] - before[1])) / (now - then)
        return self.cores - max(others, 0.0)

    def check(self) -> dict | None:
        import torch
        now = self.clock()
        try:
            last = self.path.stat().st_mtime
        except FileNotFoundError:
            last = None
        free = self.free_cores(now)
        threads = trainer_threads(last, now, self.busy, self.idle, self.idle_after, free)
        if threads == torch.get_num_threads():
            return None
        torch.set_num_threads(threads)
        return {"event": "threads", "threads": threads, "time": now,
                "idle_s": None if last is None else round(now - last, 1),
                "free_cores": None if free is None else round(free, 2)}
