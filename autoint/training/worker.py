"""The job worker: `python -m autoint.training.worker JOB_DIR` waits for the device's lock, runs the job's trainer
command and records its exit code (autoint/training/jobs.py starts it). It imports nothing but the standard library
and filelock, so it starts in a few hundred ms rather than the ~2 s of importing torch: the first start's quick
model waits on it (benchmarks/first_run.md)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

TRAINER_NICE = 10  # a background trainer yields the CPU to the app's sessions when they want it


def write_json(path: Path, obj) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(obj, indent=1))
    os.replace(staging, path)


def _die_with_parent() -> None:
    """Linux: the trainer gets SIGTERM when the worker dies, even by SIGKILL, so a killed job
    never finishes behind the queue's back and writes a run nobody asked to keep. It also runs
    at a lower priority (nice), so that exploring stays responsive on a machine with few cores."""
    try:
        os.nice(TRAINER_NICE)
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def run_worker(folder: Path) -> int:
    """Wait for the device, run the trainer, record its exit code. Runs in its own process."""
    spec = json.loads((folder / "job.json").read_text())
    lock = FileLock(str(folder.parent / f"device-{spec['device'].replace(':', '-')}.lock"))
    with lock:
        if (folder / "cancelled").exists():
            return 1
        (folder / "started").touch()
        with open(folder / "log.txt", "w") as log:
            trainer = subprocess.Popen(spec["command"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       preexec_fn=_die_with_parent)
            # SIGTERM (cancel) reaches the whole process group; the trainer ends before the lock is let go. The
            # handler only passes the signal on: waiting in it would deadlock on Popen.wait's lock, held by
            # the wait below.
            stopped = []
            signal.signal(signal.SIGTERM, lambda *_: (stopped.append(True), trainer.terminate()))
            code = trainer.wait()
        if stopped:
            return 143  # no exit.json: cancelled (its marker) or stopped, never finished
        write_json(folder / "exit.json", {"returncode": code})
    return code


if __name__ == "__main__":
    sys.exit(run_worker(Path(sys.argv[1])))
