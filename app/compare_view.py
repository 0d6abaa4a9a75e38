"""The Train page's "what they combine" view: two or more runs read on the same test samples (autoint.explain.compare),
drawn. Each run's maps are measured once in the background, with progress (then cached on disk and in the runner);
this module draws them and computes nothing of its own."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from autoint.errors import AutoIntError
from autoint.explain.compare import check_comparable, compare, measure_run, measured_sample
from autoint.explain.sampling import READING_ROWS, prepared_sample
from autoint.figures import interaction_difference_heatmap
from autoint.training.runs import Run, read_manifest
from autoint.workspace.background import Task
from autoint.workspace.sources import DataSource, source_of

from app.state import dataset, keep, load_model, show_figure
from app.views import prepared_for, result_of, submit

SPLIT = "test"


def _run(run_path: str) -> Run:
    """The run as the library takes it: the app's loaded model and the folder's run.json."""
    return Run(Path(run_path), load_model(run_path), read_manifest(run_path, vocabularies=False))


def _data(run_path: str, key: str):
    """What the run's readings are scored on: the data in memory, or the prepared copy's default test sample when the
    run was trained on the copy (as app.attention_readings reads it)."""
    prepared = prepared_for(source_of(key), run_path)
    return prepared_sample(prepared, SPLIT)[0] if prepared is not None else dataset(key, run_path)


def measure_task(run_path: str, key: str, name: str) -> Task:
    """The run's mean |k-SII| and raw attention per field pair on the test samples its readings read, in the
    background once per run and data."""
    return submit(("compare-run", run_path, key),
                  lambda progress: measure_run(_run(run_path), _data(run_path, key), SPLIT, name=name,
                                               progress=progress),
                  f"Measuring what {name} combines on up to {READING_ROWS:,} test samples")


def _rho(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def show(names: dict[str, str], chosen: list[str], source: DataSource) -> None:
    """The view, under the side-by-side comparison: pick two or more runs (starting on `chosen`)."""
    st.markdown("#### What they combine, over the test split")
    st.caption("Each run's field interactions (mean |k-SII|) and raw attention α (mean of layers and heads, both "
               "directions of a pair averaged) on the same test samples; ρ is the Spearman rank correlation of two "
               "runs' maps over the field pairs: +1 when they rank the pairs alike.")
    if [p for p in st.session_state.get("train_combine_runs", []) if p not in names]:
        del st.session_state["train_combine_runs"]  # a run gone since: start again from the runs above
    keep("train_combine_runs", chosen)  # through session state: a link may set it (app/links.py)
    picked = st.multiselect("Runs to compare on what they combine", list(names), format_func=names.get,
                            key="train_combine_runs")
    if len(picked) < 2:
        st.caption("Pick two or more runs.")
        return
    try:
        check_comparable([_run(path) for path in picked])
    except AutoIntError as exc:
        st.error(str(exc), icon=":material/compare_arrows:")
        return
    picked = sorted(picked, key=names.get)  # A before B by name: seeds read s0, s1, s2 whatever the picking order
    tasks = [measure_task(path, source.key, names[path]) for path in picked]  # all queued before waiting on one
    measured = [result_of(task) for task in tasks]
    fields = measured[0].fields
    result = compare(measured, measured_sample(_data(picked[0], source.key), SPLIT, len(fields)))
    sample = result.sample
    st.caption(f"Measured on {sample['rows']:,} of {sample['of']:,} test samples (seed {sample['seed']}), the samples "
               f"each run's readings are scored on.")

    for group in result.stability:
        st.markdown(f":material/shuffle: **Seed stability.** {group.text}.")
    if not result.stability:
        st.caption("Seed stability needs two or more of these runs with one configuration, differing only in seed.")
    for note in (note for run in measured for note in run.notes):
        st.caption(f"{note}.")

    st.dataframe([{"run A": p.a, "run B": p.b, "interactions ρ": _rho(p.interactions_rho),
                   "attention ρ": _rho(p.attention_rho), "largest change of mean |k-SII| (B − A)":
                   result.change_text(p) or "-"} for p in result.pairs], hide_index=True,
                 key="train_combine_agreement",
                 column_config={"interactions ρ": st.column_config.NumberColumn(
                                    format="%+.2f", help="Spearman ρ of the two runs' mean |k-SII| over field pairs"),
                                "attention ρ": st.column_config.NumberColumn(
                                    format="%+.2f", help="Spearman ρ of the two runs' raw attention over field pairs")})

    drawable = [p for p in result.pairs if p.difference is not None]
    if not drawable:
        return
    pair = drawable[0]
    if len(drawable) > 1:
        labels = {f"{p.b} − {p.a}": p for p in drawable}
        pair = labels[st.selectbox("Difference map", list(labels), key="train_combine_pair",
                                   help="run B − run A of mean |k-SII|: red where B combines the pair more")]
    by_name = {run.name: run for run in measured}
    show_figure(interaction_difference_heatmap(by_name[pair.a].interactions, by_name[pair.b].interactions, fields,
                                               names=(pair.a, pair.b)),
                f"interactions-{pair.b}-minus-{pair.a}", "train_combine_difference")
