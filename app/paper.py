"""Paper: the reproduction of Tables 2, 4, 5 and Figures 5-6 beside the paper's numbers."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import streamlit as st

from autoint import figures
from autoint.explain.readings import READINGS
from autoint.training import paper
from autoint.training.config import MAX_BATCH, lr_for
from autoint.training.train import TrainConfig

st.title("Reproducing the paper")
st.caption("Song et al., *AutoInt*, CIKM 2019, MovieLens-1M. Our numbers come from `benchmarks/reproduce.py` "
           "(mean ± std of test AUC and logloss over seeds, each model at its best validation epoch).")


@st.cache_data(show_spinner=False)
def load(folder: str) -> dict:
    return paper.load_reproduction(folder)


folders = paper.reproduction_folders()
if not folders:
    st.info("No reproduction results yet. Run `python benchmarks/reproduce.py --data-dir DATA` "
            "and they appear here.", icon=":material/info:")
    st.stop()
folder = st.selectbox("Results", [str(f) for f in folders], key="paper_results",
                      format_func=lambda f: Path(f).name)
results = load(folder)
meta, summary = results["meta"], results["summary"]
st.warning(f"**Data: {meta['data_note']}.** The paper used the full MovieLens-1M; compare the ordering and the "
           "gaps between models, not the absolute numbers.", icon=":material/info:")
device_label = "Device of this command" if meta.get("merged_from") else "Device"
shared = TrainConfig(batch_size=MAX_BATCH, lr=lr_for(MAX_BATCH))  # the defaults on the paper's data (config.py)
first = results["runs"][0] if results["runs"] else {}
st.markdown(f"{device_label}: {meta['device']} · {meta['seeds']} seeds · Adam, batch {shared.batch_size}, "
            f"lr {shared.lr:g}, at most {first.get('epochs', shared.epochs)} epochs, early stopping on validation AUC "
            f"(patience {first.get('patience', shared.patience)}), except where a row's settings say otherwise "
            "(chosen on validation, never on test) · command: "
            f"`{meta['command']}`"
            + (f" · rows not rerun by it come from `{meta['merged_from']}` (the table's device column says where "
               "each row ran)" if meta.get("merged_from") else ""))

st.subheader("Tables 2, 4 and 5")
rows = paper.comparison_rows(summary)
st.dataframe(pl.DataFrame(rows), hide_index=True, key="paper_table",
             column_config={c: st.column_config.NumberColumn(format="%.4f") for c in rows[0]
                            if c not in ("model", "seeds", "device")} if rows else None)
settings = paper.table_settings(results["runs"])
if settings:
    st.markdown("**What each row trained with**, beyond the shared setup above:  \n"
                + "  \n".join(f"{model}: {text}" for model, text in settings.items()))
if len(rows) == len(paper.PAPER_ML1M):
    ours = [r["AUC (ours)"] for r in rows]
    holds = all(a < b for a, b in zip(ours[:3], ours[1:4])) and ours[3] <= ours[4]
    message = ("The paper's ordering LR < FM < AutoInt w/o residual < AutoInt ≤ AutoInt+ "
               + ("holds here." if holds else "does **not** fully hold here."))
    (st.success if holds else st.warning)(message)

config = figures.plotly_config(st.session_state.get("image_format", "png"), "autoint-paper")
columns = st.columns(2)
for column, (experiment, axis, title) in zip(columns, (("depth", "interacting layers L", "Figure 5: depth"),
                                                       ("embedding", "embedding size d", "Figure 6: embedding size"))):
    sweep = paper.sweep_rows(summary, experiment)
    if not sweep:
        continue
    with column:
        fig = figures.sweep_figure([r["value"] for r in sweep], [r["test_auc_mean"] for r in sweep],
                                   [r["test_auc_std"] for r in sweep], axis=axis, metric="test AUC", title=title)
        st.plotly_chart(fig, config=config, key=f"paper_{experiment}")
        st.download_button("Download CSV", figures.figure_csv(fig), f"autoint-{experiment}.csv", "text/csv",
                           key=f"paper_{experiment}_csv", icon=":material/table:")

faithfulness = paper.load_faithfulness()
st.subheader("Fig. 7(b)'s claims, checked")
if faithfulness is None:
    st.info("No attention-faithfulness results yet. Run `python benchmarks/attention_faithfulness.py --data-dir DATA` "
            "and they appear here.", icon=":material/info:")
    st.stop()
summary, meta = faithfulness["summary"], faithfulness["meta"]
st.caption("The paper reads Gender × Genre, Age × Genre and RequestTime × ReleaseTime off Fig. 7(b) as the "
           "combinations the model relies on. Here is each pair's rank among the 21 field pairs (1 = strongest) in "
           "the test split's mean attention (both directions averaged) and in the model's measured mean "
           "|pairwise Shapley interaction|, one number per seed. "
           f"Data: {meta.get('data_note', meta.get('data_dir'))}. Command: `{meta['command']}`")
claims = paper.fig7b_rows(summary, {"paper": "AutoInt", "autoint-plus": "AutoInt+"})
if claims:
    st.dataframe(claims, hide_index=True, key="paper_fig7b")
    top = lambda column: sum(int(r) <= 3 for row in claims for r in row[column].split(", ") if r.isdigit())
    total = sum(len(row["rank by attention"].split(", ")) for row in claims)
    st.markdown(f"Of these {total} pair-and-seed cases, **{top('rank by attention')}** rank in the top 3 by "
                f"attention and **{top('rank by interaction')}** by measured interaction.")

st.subheader("Which training makes attention faithful?")
st.caption("Agreement: the Spearman ρ between a model's mean attention over the test split and its mean "
           "|interaction|, over the 21 field pairs. Head entropy: each head's attention entropy as a fraction of "
           "log F, averaged over samples, layers and heads (1 = uniform). Mean ± std over seeds.")
pm = lambda stat, digits=4: f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
st.dataframe([{"variant": variant, "test AUC": pm(row["test_auc"]), "head entropy": pm(row["head_entropy"], 3),
               "agreement ρ": pm(row["agreement"], 2), "seeds": len(row["seeds"]),
               "what": meta.get("variants", {}).get(variant, {}).get("note", "")} for variant, row in summary.items()],
             hide_index=True, key="paper_faithfulness")
st.subheader("Readings of the attention, scored")
st.caption("The same attention read six ways (autoint/explain/readings.py), each scored against the model's "
           "measured interactions on a seeded sample of the test split: split ρ (Spearman over the 21 pairs between "
           "the mean reading and the mean |k-SII|), each sample's own ρ (median and quartiles), precision@3 (how many "
           "of the 3 strongest measured pairs the reading ranks in its top 3). Mean ± std over seeds. 'Shown first' "
           "counts the seeds whose model the app opens on that reading (its best).")
titles = {name: reading.title for name, reading in READINGS.items()}
scorecard = paper.scorecard_rows(summary, titles)
if scorecard:
    st.dataframe(scorecard, hide_index=True, key="paper_scorecard")
    readable = faithfulness.get("readable") or {}
    if readable.get("variants"):
        floor, goal = readable["floor"], readable["goal"]
        st.markdown(f"**A model whose attention agrees.** Floor: split ρ ≥ {floor['split_rho']} and median "
                    f"per-sample ρ ≥ {floor['median_rho']} for the reading the app shows; goal: {goal['split_rho']} "
                    f"and {goal['median_rho']}; test AUC at least the paper configuration's − "
                    f"{readable['max_auc_drop']} (3 seeds).")
        st.dataframe([{"variant": v, "reading shown": ", ".join(titles.get(n, n) for n in r["readings"]),
                       "split ρ": round(r["split_rho"], 3), "median per-sample ρ": round(r["median_rho"], 3),
                       "test AUC change": round(r["auc_change"], 4), "floor": "yes" if r["floor"] else "no",
                       "goal": "yes" if r["goal"] else "no"} for v, r in readable["variants"].items()],
                     hide_index=True, key="paper_readable")
        if readable.get("preset"):
            st.success(f"`{readable['preset']}` meets the floor and became the **readable** preset, the app's "
                       "default model.", icon=":material/visibility:")
    ranks = paper.fig7b_reading_rows(summary, {"paper": "AutoInt", "authors-code": "authors' code",
                                               "autoint-plus": "AutoInt+"}, titles)
    if ranks:
        st.markdown("**Fig. 7(b)'s pairs under every reading**: rank among the 21 pairs (1 = strongest), per seed.")
        st.dataframe(ranks, hide_index=True, key="paper_fig7b_readings")
else:
    st.info("These results predate the readings: rerun `python benchmarks/attention_faithfulness.py` to score them.",
            icon=":material/info:")

verdict = faithfulness.get("verdict")
if verdict:
    passing = verdict.get("passing", [])
    st.markdown(f"**Preset rule:** {verdict['rule']}. "
                + (f"Passing: {', '.join(passing)}; offered as a preset on the Train page." if passing else
                   "No variant passes, so the paper's configuration stays the only preset."))
