"""What a first start trains and which run the app opens on.

A first start (no run yet on the default data) queues two background jobs:
  1. the readable preset (`READABLE_PRESET`) to convergence as READABLE_RUN, saving its best weights after
     FIRST_RUN_EPOCHS epochs as QUICK_RUN on the way, so the pages explain something early;
  2. then the paper's configuration to convergence as PAPER_RUN, for the "paper's model / readable model" toggle.
The app opens on the readable model: READABLE_RUN once it lands, QUICK_RUN before (`default_run`). The paper's
configuration stays the CLI's default (`train --preset paper`), for reproduction.
"""
from __future__ import annotations

from pathlib import Path

from ..training.config import TrainConfig

READABLE_PRESET = "readable"
PAPER_PRESET = "paper"
QUICK_RUN = "default"  # the readable preset after FIRST_RUN_EPOCHS epochs
READABLE_RUN = "readable"  # the readable preset to convergence: the app's default model
PAPER_RUN = "paper"  # the paper's configuration to convergence
LEGACY_RUNS = ("default-converged",)  # what earlier first starts trained (the paper's configuration)
FIRST_RUN_EPOCHS = 2  # the quick model: the first chart within 60 s on u2999, 2 cores (benchmarks/first_run.md)
# Adam at lr 4e-3, halved after each epoch without a better validation AUC: about half the epochs of lr 1e-3 for
# the same test AUC on u2999 (benchmarks/first_run.md).
FIRST_RUN_TRAINING = TrainConfig(epochs=30, patience=2, lr=4e-3, lr_decay=0.5)
ATTENTION_MODELS = ("AutoInt", "AutoInt+")  # the models with interacting layers


def first_run_plan(quick_epochs: int = FIRST_RUN_EPOCHS) -> list[dict]:
    """The first start's jobs, in order: {preset, run_name, snapshot (epochs, run name) or None}."""
    return [{"preset": READABLE_PRESET, "run_name": READABLE_RUN, "snapshot": (quick_epochs, QUICK_RUN)},
            {"preset": PAPER_PRESET, "run_name": PAPER_RUN, "snapshot": None}]


def default_run(runs: list[dict], folder: str | Path | None = None) -> dict | None:
    """The run the app opens on among `runs` (one data set's finished runs, newest first): the readable model
    (READABLE_RUN, else QUICK_RUN before it lands), else the newest run trained on `folder`, else the newest."""
    by_name = {r["name"]: r for r in runs}
    for name in (READABLE_RUN, QUICK_RUN):
        if name in by_name:
            return by_name[name]
    if folder is not None:
        folder = str(Path(folder).resolve())
        same = [r for r in runs if str(Path(r.get("data_dir") or "").resolve()) == folder]
        if same:
            return same[0]
    return runs[0] if runs else None


def paper_run(runs: list[dict]) -> dict | None:
    """The paper's configuration among `runs`: PAPER_RUN, else an earlier first start's, else the newest run
    whose settings are the paper preset's."""
    from ..model.presets import preset_of
    by_name = {r["name"]: r for r in runs}
    for name in (PAPER_RUN, *LEGACY_RUNS):
        if name in by_name:
            return by_name[name]
    return next((r for r in runs if r.get("model") == "AutoInt" and preset_of(r.get("config") or {}) == PAPER_PRESET),
                None)


def readable_run(runs: list[dict]) -> dict | None:
    """The readable model among `runs`: READABLE_RUN, else QUICK_RUN, else the newest readable-preset run."""
    from ..model.presets import preset_of
    by_name = {r["name"]: r for r in runs}
    for name in (READABLE_RUN, QUICK_RUN):
        if name in by_name:
            return by_name[name]
    return next((r for r in runs if preset_of(r.get("config") or {}) == READABLE_PRESET), None)
