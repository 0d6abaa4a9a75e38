"""Dataset correlations: attention averaged over a seeded sample of the test split (the paper's Fig. 7(b)) beside
the interactions the model really uses, with their agreement, sliced at will.

Both views run on one seeded sample of the split (autoint.explain.sampling: the whole split up to 20,000 samples), whose
size and seed the page shows and takes; they are computed in the background with a progress bar and kept per run,
data, sample and slice (app/state.py `submit`), so another visit, or another session, finds them done."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import attention_readings, samples, state, views
from autoint.explain.explanation import describe_slice
from autoint.figures import (agreement_bars, agreement_scatter, attention_grid, attention_interaction_side_by_side,
                             correlation_cells_written, correlation_figure)
from autoint.explain.interactions import (DEFAULT_BUDGET, EXACT_MAX_FIELDS, agreement, head_entropy, matrix_to_pairs,
                                          near_uniform, pair_index, strength_ranks, verdict)
from autoint.explain.readings import PAPER_READING, READINGS, pairs_of
from autoint.explain.sampling import (DEFAULT_SEED, READING_ROWS, correlations_of_sample, default_interaction_rows,
                                      default_size, interactions_of_sample, readings_of_interactions)
from autoint.data.schema import UNKNOWN

ANY = "(any)"
SPLIT = "test"
ESTIMATED_MAX_ROWS = 2048  # samples the estimator may measure (about 0.4 s each at 39 fields)

source = state.data_source()
run_path, model = samples.require_model()
schema = model.schema
total = views.split_total(source, run_path, SPLIT)  # the prepared copy's, when the views read it
F = len(schema.fields)
exact = F <= EXACT_MAX_FIELDS

st.title("Dataset correlations")
st.caption("The mean attention weight between every pair of fields over a sample of the test split (the paper's "
           "Fig. 7(b)). Slice by the label or by a field value to see which combinations the model relies on there.")
if model.config.layers == 0:
    st.info("This model has no interacting layer (0 layers), so there is no attention to average.")
    st.stop()


def sample_size_changed() -> None:
    """A new sample size: the interactions go back to their default share of it."""
    st.session_state.pop("corr_sample_rows", None)


if st.session_state.get("corr_sample_size", 0) > total:  # another data set's, or another model's data
    st.session_state["corr_sample_size"] = total
state.keep("corr_sample_size", default_size(total))
state.keep("corr_sample_seed", DEFAULT_SEED)
size_column, seed_column, about_column = st.columns([2, 1, 3])
size = size_column.number_input(f"Samples (of {total:,} test samples)", 1, total, key="corr_sample_size",
                                step=max(1, min(total, 1000)), on_change=sample_size_changed,
                                help="Every number on this page comes from this many samples of the test split: the "
                                     "first of a seeded shuffle, so a bigger sample holds a smaller one. More samples, "
                                     "steadier averages, longer to compute (in the background, once; then kept).")
seed = seed_column.number_input("Seed", 0, 2 ** 31 - 1, key="corr_sample_seed", help="Another seed, other samples.")
data, sample = views.views_data(source, run_path, SPLIT, int(size), int(seed))
data_id = data.fingerprint
about_column.caption(f"The numbers below come from **{sample.describe()}**"
                     + ("." if sample.whole else ": the first of a seeded shuffle of the split."))

stars = source.has_catalog  # MovieLens's clicks are 4-5 star ratings
labels = {None: "all samples", 1: "clicks only" + (" (4-5 stars)" if stars else " (label 1)"),
          0: "non-clicks only" + (" (1-2 stars)" if stars else " (label 0)")}
label_column, field_column, value_column = st.columns(3)
label = label_column.radio("Label", list(labels), format_func=labels.get, key="corr_label")
sliceable = [f for f in schema.fields if f.kind != "numeric"]
field_name = field_column.selectbox("Field", [ANY, *(f.name for f in sliceable)], key="corr_field")
where = ()
if field_name != ANY:
    f = schema[field_name]
    if not state.large_vocabulary(f):  # every value, in the vocabulary's order
        options = [v for v in f.vocab if v != UNKNOWN]
    else:  # a large vocabulary: the sample's most frequent values, or those a search finds
        search = value_column.text_input(f"Search {field_name}", key=f"corr_search_{field_name}",
                                         placeholder="part of a value")
        found = views.sample_field_values(run_path, data_id, SPLIT, len(sample), sample.seed, field_name,
                                          search.strip(), _data=data, _sample=sample)
        options = [v for v, _ in found if v != UNKNOWN]
    if not options:
        value_column.warning(f"No {field_name} value of the {len(sample):,} samples holds that text.")
        st.stop()
    value = value_column.selectbox("Value", options, key=f"corr_value_{field_name}",
                                   format_func=lambda v: f.display.get(v, v))
    where = ((field_name, value),)

# Everything computed below is kept per (run, data, split, sample size, seed, ...): coming back is instant.
data_key = (run_path, data.fingerprint, SPLIT, len(sample), sample.seed)
slice_words = f" ({describe_slice(dict(where), label, None)})" if where or label is not None else ""
attention_task = views.submit(
    ("correlations", *data_key, where, label),
    lambda progress: correlations_of_sample(model, data, sample, where=dict(where), label=label, progress=progress),
    f"Averaging attention over {len(sample):,} test samples{slice_words}")
result = views.result_of(attention_task)
if result.count == 0:
    st.warning(f"None of the {len(sample):,} samples has {result.description}; choose another slice"
               + ("." if sample.whole else " or a bigger sample."))
    st.stop()

fields = result.fields
layer_entropy = head_entropy(result.per_layer)  # (L,) of each layer's head-averaged mean
overall_entropy = float(head_entropy(result.overall))
flat = near_uniform(result.per_head)  # (L, H)
if flat.all():
    st.warning(f"Averaged over these {result.count:,} samples, every head is close to uniform: each weight lies "
               f"within 0.02 of 1/{F} = {1 / F:.3f}. The colours below show small differences, not a pattern.",
               icon=":material/blur_on:")
state.show_figure(correlation_figure(result.per_layer, fields, count=result.count, description=result.description,
                                     entropy=np.concatenate([[overall_entropy], layer_entropy]),
                                     uniform=np.concatenate([[near_uniform(result.overall)],
                                                             near_uniform(result.per_layer)])),
                  "dataset-correlations", "corr_layers")
st.caption((f"Averaged over {sample.describe()}. " if result.count == len(sample) else
            f"Averaged over the {result.count:,} samples with {result.description} among {sample.describe()}. ")
           + f"Colour: each weight against uniform attention (1/{F} = {1 / F:.3f}); "
           + ("the cells give the weight itself. " if correlation_cells_written(len(result.per_layer), F)
              else "the hover gives the weight itself. ")
           + "Titles give the entropy as a fraction of log F (1 = uniform).")

st.subheader("Attention beside the interactions the model really uses")
default_rows = default_interaction_rows(F, len(sample))
most = min(len(sample), ESTIMATED_MAX_ROWS) if not exact else len(sample)
if st.session_state.get("corr_sample_rows", 0) > most:
    st.session_state["corr_sample_rows"] = most
state.keep("corr_sample_rows", min(default_rows, most))
rows = default_rows
if not exact or default_rows < len(sample):  # measuring every sample of the sample costs too much by default
    rows = int(st.number_input(
        f"Samples to measure the interactions on (the first of the {len(sample):,})", 1, most,
        key="corr_sample_rows", step=8,
        help=(f"With {F} fields the interactions are estimated (KernelSHAP-IQ, {DEFAULT_BUDGET:,} coalitions a "
              "sample, about 0.4 s a sample)" if not exact else
              f"Exact values take 2^{F} = {2 ** F:,} forwards a sample") +
             "; they are measured on the first samples of the same seeded shuffle, so on part of the sample above. "
             "More samples, smaller standard errors."))
st.caption("Right: the mean |pairwise Shapley interaction| (k-SII) over the same samples: how much the prediction "
           "depends on two fields together, beyond each alone, in logit units. An absent field takes its "
           "training-mean embedding. "
           + (f"Computed exactly (all 2^{F} coalitions) for each sample" if exact else
              f"With {F} fields, estimated for each sample from {DEFAULT_BUDGET:,} sampled coalitions (KernelSHAP-IQ)")
           + ", once per model and sample, then cached.")
measured_sample = sample.prefix(rows)
interaction_task = views.submit(
    ("interactions", *data_key, len(measured_sample), "mean"),
    lambda progress: interactions_of_sample(run_path, model, data, sample, rows=len(measured_sample),
                                            progress=progress),
    f"Measuring the model's interactions on {len(measured_sample):,} test samples")
measured = views.result_of(interaction_task)
keep = views.sample_keep(run_path, data_id, SPLIT, where, label, _data=data)
strength = measured.matrix(keep)  # (F, F) mean |phi_ij| over the slice
measured_count = measured.count(keep)
if measured.sampled:
    error = measured.standard_error(keep)
    upper = np.triu_indices(len(fields), 1)
    spread = (f"{np.mean(error[upper]):.2g} on average against a mean strength of {strength[upper].mean():.2g}"
              if measured_count >= 2 else "too few samples in this slice to say")
    st.caption(f"Measured on {measured_count:,} samples: the slice's share of {measured_sample.describe()}. "
               f"Standard error of each pair's mean: {spread}.")
    if measured_count == 0:
        st.warning("None of the measured samples is in this slice; widen it or measure more samples.")
match = agreement(result.per_head, strength)
attention_readings.model_note(run_path)
reading, scored = attention_readings.reading_choice("corr", run_path, source.key)
title = READINGS[reading].title
if measured_count == 0:
    st.stop()
reading_rows = min(READING_ROWS, measured_count)
readings = views.result_of(views.submit(
    ("readings", *data_key, len(measured_sample), "mean", where, label, reading_rows),
    lambda progress: readings_of_interactions(model, data, SPLIT, measured, keep=keep, rows=reading_rows,
                                              progress=progress),
    f"Reading the attention six ways on {reading_rows:,} of the measured samples"))
chosen = readings[reading]
# Raw alpha is Fig. 7(b) itself, averaged over every sample of the slice; any other reading over the measured rows.
shown, rho = (result.overall, match.overall) if reading == PAPER_READING else (chosen.matrix, chosen.agreement)
state.show_figure(attention_interaction_side_by_side(shown, strength, fields, signed=False,
                                                     main=measured.main_strength(keep), reading=reading, unit=title,
                                                     attention_title=f"{title} (mean over the samples)",
                                                     title=f"{'Fig. 7(b)' if reading == PAPER_READING else title} "
                                                           f"beside the measured interactions "
                                                           f"({result.description}, {measured_count:,} samples)",
                                                     interaction_title="Mean |interaction| (k-SII, logit)"),
                  "attention-vs-interactions", "corr_side_by_side")
(st.success if np.isfinite(rho) and rho >= 0.5 else st.warning)(
    f"**Verdict:** {verdict(rho, F * (F - 1) // 2, subject=title)}.", icon=":material/balance:")
if rho < 0.5 and (hint := attention_readings.faithful_preset_hint(model)):
    st.caption(hint)
st.markdown("**Every reading of this slice, scored against the interactions**")
st.dataframe([{"reading": READINGS[n].title,
               "split ρ": round(r.agreement, 3) if np.isfinite(r.agreement) else None,
               "median per-sample ρ": (r.quartiles() or {}).get("median"),
               "quartiles": (f"{r.quartiles()['q1']:+.2f} to {r.quartiles()['q3']:+.2f}"
                             if (r.quartiles() or {}).get("q1") is not None else ""),
               "precision@3": round(r.precision_at_3, 2), "paper": READINGS[n].paper}
              for n, r in readings.readings.items()], hide_index=True, key="corr_readings")
st.caption(f"Readings of {reading_rows:,} measured samples of the slice (each sample's own maps, then their mean). "
           "Split ρ: Spearman over the field pairs between the mean reading and the mean |k-SII|. Per-sample ρ: each "
           "sample's reading against its own interactions. Precision@3: how many of the 3 strongest measured pairs "
           "the reading ranks in its top 3.")
scatter_column, bars_column = st.columns(2)
with scatter_column:
    state.show_figure(agreement_scatter(pairs_of(shown), matrix_to_pairs(strength),
                                        [f"{fields[i]} × {fields[j]}" for i, j in pair_index(F)], rho=rho,
                                        uniform_weight=1 / F if reading == PAPER_READING else None,
                                        x_title=f"{title} between the two fields (both directions averaged)",
                                        title=f"The {F * (F - 1) // 2} field pairs"),
                      "agreement-scatter", "corr_scatter")
with bars_column:
    views = match.views() if reading == PAPER_READING else agreement(chosen.per_head, strength).views()
    state.show_figure(agreement_bars(views, title=f"{title}: agreement per layer and head (Spearman ρ)"),
                      "agreement-bars", "corr_agreement")

st.subheader("Strongest field pairs")
st.caption("Attention: the mean weight in both directions, averaged over layers and heads (self-attention left out). "
           "Interaction: the mean |k-SII| over the same samples. Rank 1 is the strongest of the "
           f"{F * (F - 1) // 2} pairs.")
attention_pairs, interaction_pairs = matrix_to_pairs(result.overall), matrix_to_pairs(strength)
reading_pairs = pairs_of(shown)
attention_rank, interaction_rank = strength_ranks(attention_pairs), strength_ranks(interaction_pairs)
reading_rank = strength_ranks(reading_pairs)
rows = [{"pair": f"{fields[i]} ↔ {fields[j]}", "mean attention": round(float(attention_pairs[p]), 4),
         "rank by attention": int(attention_rank[p]),
         **({f"rank by {title}": int(reading_rank[p])} if reading != PAPER_READING else {}),
         "mean |interaction|": round(float(interaction_pairs[p]), 4),
         "rank by interaction": int(interaction_rank[p]),
         **({"± standard error": round(float(error[i, j]), 4)} if measured.sampled else {}),
         "first attends to second": round(float(result.overall[i, j]), 4),
         "second attends to first": round(float(result.overall[j, i]), 4)}
        for p, (i, j) in enumerate(pair_index(F))]
st.dataframe(sorted(rows, key=lambda r: r["rank by interaction"]), hide_index=True, key="corr_pairs")

with st.expander("Every layer and head"):
    state.show_figure(attention_grid(result.per_head, result.fields, title="Mean attention per layer and head",
                                     show_values=len(result.fields) <= 8, entropy=head_entropy(result.per_head),
                                     uniform=flat), "dataset-correlations-heads", "corr_heads")
