"""Which reading of the attention a page shows: the run's readings scored in the background, the picker (its
best first, raw α one click away), and the notes on the readable and the paper's model."""
from __future__ import annotations


import streamlit as st
import numpy as np

from autoint.workspace import defaults
from autoint.workspace.background import Task
from autoint.workspace.sources import source_of

from app.state import data_source, dataset, keep, load_model, model_pair, use_run
from app.views import QUICK_S, background_progress, prepared_for, result_of, submit


def _model_readings(run_path: str, key: str, progress=None) -> dict:
    """The run's readings on its test split (`sampling.model_readings`, cached on disk): {"default": name,
    "scores": {name: {"agreement", "precision_at_3", "median", "q1", "q3"}}}. A run trained on a prepared copy is
    scored on the copy's default sample of it."""
    from autoint.explain.sampling import model_readings as readings_of
    source = source_of(key)
    prepared = prepared_for(source, run_path)
    if prepared is not None:
        from autoint.explain.sampling import prepared_sample
        data, _ = prepared_sample(prepared, "test")
    else:
        data = dataset(key, run_path)
    result = readings_of(run_path, load_model(run_path), data, "test", progress=progress)
    return {"default": result.default,
            "scores": {n: {"agreement": r.agreement, "precision_at_3": r.precision_at_3, **(r.quartiles() or {})}
                       for n, r in result.readings.items()}}


def readings_task(run_path: str, key: str) -> Task:
    """Scoring the run's readings, in the background once per run and data (then from the disk cache)."""
    from autoint.explain.sampling import READING_ROWS
    return submit(("model-readings", run_path, key), lambda progress: _model_readings(run_path, key, progress),
                  f"Scoring the six readings of this model's attention on {READING_ROWS:,} test samples")


def model_readings(run_path: str, key: str) -> dict:
    """The run's scored readings; until they are scored, a progress bar and the page stops here."""
    return result_of(readings_task(run_path, key))


def reading_label(name: str, scores: dict | None = None) -> str:
    """`|∂logit/∂α| · ρ +0.72` for a picker; raw α is named as the paper's reading."""
    from autoint.explain.readings import READINGS
    text = READINGS[name].title
    score = (scores or {}).get(name, {}).get("agreement")
    return text + (f" · split ρ {score:+.2f}" if score is not None and np.isfinite(score) else "")


def reading_choice(page: str, run_path: str, key: str, *, container=None) -> tuple[str, dict]:
    """The reading a page shows, picked per run (keyed by page and run): first the run's best by split-level
    agreement, named with its ρ; raw α, the paper's reading, is one click away. Returns (name, model_readings)."""
    from autoint.explain.readings import NAMES, PAPER_READING, READINGS
    where = container or st
    task = readings_task(run_path, key)
    if not task.wait(QUICK_S):  # the first visit for this model: raw α until the readings are scored
        where.selectbox("Reading of the attention", [PAPER_READING], key=f"{page}_reading_pending::{run_path}",
                        format_func=lambda n: READINGS[n].title, disabled=True,
                        help="The other readings appear, the best one first, once this model's are scored.")
        if container is None:
            background_progress(task.key)
        else:
            with container:
                background_progress(task.key)
        return PAPER_READING, None
    scored = task.result()
    widget = f"{page}_reading::{run_path}"
    keep(widget, scored["default"])
    name = where.selectbox("Reading of the attention", NAMES, key=widget,
                           format_func=lambda n: reading_label(n, scored["scores"]),
                           help="The same attention, read six ways (autoint/explain/readings.py). Each is scored "
                                "against the interactions the model measurably uses, over the test split "
                                "(Spearman ρ over field pairs). The first one offered is this model's best.")
    best = scored["default"]
    best_score = scored["scores"][best]
    note = (f"This model's most faithful reading is **{READINGS[best].title}**: split ρ "
            f"{best_score['agreement']:+.2f}, median per-sample ρ {best_score.get('median') or float('nan'):+.2f}, "
            f"precision@3 {best_score['precision_at_3']:.2f} ({READINGS[best].paper}).")
    if name != PAPER_READING:
        paper = scored["scores"][PAPER_READING]["agreement"]
        note += f" Raw α, the paper's reading, scores ρ {paper:+.2f}."
    where.caption(note)
    return name, scored


def model_note(run_path: str) -> None:
    """One line on which model this is: the readable default is not the paper's model, and a button opens that."""
    source = data_source()
    readable, paper = model_pair(source)
    if readable is not None and run_path == readable["path"]:
        text = ("**The readable model** (the app's default): the authors' interacting layer, trained so its "
                "attention can be read. It is not the paper's configuration.")
        if paper is not None:
            left, right = st.columns([4, 1])
            left.caption(text)
            right.button("Open the paper's model", key=f"open_paper::{run_path}", icon=":material/article:",
                         on_click=use_run, args=(paper["path"],), type="tertiary")
        else:
            st.caption(text + " The paper's model trains after it, in the background.")
    elif paper is not None and run_path == paper["path"]:
        left, right = st.columns([4, 1])
        left.caption("**The paper's model**: Eqs. 5-9 as the paper writes them. Its attention ranks field pairs "
                     "unlike the interactions it uses; compare the readable model.")
        if readable is not None:
            right.button("Open the readable model", key=f"open_readable::{run_path}", icon=":material/visibility:",
                         on_click=use_run, args=(readable["path"],), type="tertiary")


def faithful_preset_hint(model) -> str | None:
    """When attention disagrees with the interactions: the preset that trains attention you can read, unless this
    model already has its settings."""
    from autoint.model.presets import PRESET_DESCRIPTIONS, preset_of
    if preset_of(model.config) == defaults.READABLE_PRESET:
        return None
    return (f"A model whose attention you can read: the `{defaults.READABLE_PRESET}` preset (Train page). "
            f"{PRESET_DESCRIPTIONS[defaults.READABLE_PRESET]}")
