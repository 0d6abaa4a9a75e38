"""Computations that take more than a moment, run in a background thread with progress, once per key.

The app asks for a dataset-level view (attention averaged over a sample, a split's interactions) by a key that
names everything the result depends on (the run, the data's fingerprint, the split, the sample's size and seed,
the slice ...). `BackgroundRunner.submit(key, compute)` starts the computation unless one with that key is already
queued, running or finished, and returns its `Task`: a second session asking the same thing waits for the first
one's result, and coming back to a page finds it finished. The page polls the task (its progress, then its result)
instead of blocking the script run.

Threads, deliberately few: `workers` computations run at once (default 1), each in a daemon thread of this
process, and every one of them shares the process's torch intra-op threads (the app sets those to its share of the
cores, `app.state.APP_THREADS`): two dataset-level computations at once would only halve each other's speed. Others
wait in the queue, in the order asked. A finished task is kept (the newest `keep` of them) so that its result is
served from memory; a failed one keeps its error for `retry_after_s` seconds (shown to every session waiting on it),
after which asking again starts it afresh.

No Streamlit here (autoint/ never imports it): app/state.py draws a task's progress and result.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Hashable

from ..errors import UsageError

QUEUED, RUNNING, FINISHED, FAILED = "queued", "running", "finished", "failed"


class Task:
    """One computation: its state, progress (done of total, in the unit the computation reports) and result."""

    def __init__(self, key: Hashable, description: str):
        self.key = key
        self.description = description  # what is being computed, in words: "averaging attention over ..."
        self.status = QUEUED
        self.done_count = 0
        self.total: int | None = None
        self.note = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._result: Any = None
        self.error: BaseException | None = None
        self._event = threading.Event()

    def progress(self, done: int, total: int | None, note: str | None = None) -> None:
        """The computation's callback: `done` of `total` units (samples, rows) so far, and optionally a few words
        on where it is ("pass 1 of 2: counting values")."""
        self.done_count, self.total = int(done), None if total is None else int(total)
        if note is not None:
            self.note = note

    @property
    def fraction(self) -> float:
        if self.status == FINISHED:
            return 1.0
        return min(max(self.done_count / self.total, 0.0), 1.0) if self.total else 0.0

    @property
    def rate(self) -> float | None:
        """Units a second since it started running (None before the first progress report)."""
        if self.started_at is None or not self.done_count:
            return None
        elapsed = (self.finished_at or time.monotonic()) - self.started_at
        return self.done_count / elapsed if elapsed > 0 else None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether it ended (finished or failed) within `timeout` seconds."""
        return self._event.wait(timeout)

    def result(self):
        """The computation's value; its exception, re-raised with its traceback, when it failed."""
        if not self.done:
            raise UsageError(f"task {self.key!r} is {self.status}: wait for it first (Task.wait), then ask its result.")
        if self.error is not None:
            raise self.error
        return self._result

    def _end(self, result=None, error: BaseException | None = None) -> None:
        self._result, self.error = result, error
        self.status = FAILED if error is not None else FINISHED
        self.finished_at = time.monotonic()
        self._event.set()

    def __repr__(self) -> str:
        return f"Task({self.key!r}, {self.status}, {self.done_count}/{self.total})"


class BackgroundRunner:
    """At most `workers` computations at once, each key computed once; the newest `keep` results kept."""

    def __init__(self, workers: int = 1, keep: int = 32, retry_after_s: float = 5.0, name: str = "autoint-bg"):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)
        self._tasks: OrderedDict[Hashable, Task] = OrderedDict()
        self._lock = threading.Lock()
        self.keep = keep
        self.retry_after_s = retry_after_s
        self.runs = 0  # computations started so far (tests count them)

    def submit(self, key: Hashable, compute: Callable[[Callable[[int, int | None], None]], Any],
               description: str = "") -> Task:
        """The task for `key`: the one already queued, running or finished, else a new one running
        `compute(progress)` in the background (`progress(done, total)` reports how far it is)."""
        with self._lock:
            task = self._tasks.get(key)
            if task is not None and not (task.status == FAILED and
                                         time.monotonic() - task.finished_at >= self.retry_after_s):
                self._tasks.move_to_end(key)
                return task
            task = Task(key, description)
            self._tasks[key] = task
            self._trim()
        self._pool.submit(self._run, task, compute)
        return task

    def task(self, key: Hashable) -> Task | None:
        with self._lock:
            return self._tasks.get(key)

    def tasks(self) -> list[Task]:
        with self._lock:
            return list(self._tasks.values())

    def pending(self) -> list[Task]:
        """Tasks queued or running."""
        return [t for t in self.tasks() if not t.done]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running (tests; a clean shutdown). Whether it got there in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = self.pending()
            if not pending:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            pending[0].wait(left)

    def _run(self, task: Task, compute) -> None:
        task.started_at = time.monotonic()
        task.status = RUNNING
        with self._lock:
            self.runs += 1
        try:
            result = compute(task.progress)
        except BaseException as exc:  # kept for whoever waits on it: a person's error or a bug, shown as such
            task._end(error=exc)
        else:
            task._end(result)

    def _trim(self) -> None:
        """Keep the newest `keep` ended tasks; never drop one still queued or running."""
        ended = [k for k, t in self._tasks.items() if t.done]
        for key in ended[:max(0, len(ended) - self.keep)]:
            del self._tasks[key]
