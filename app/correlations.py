"""Dataset correlations: attention averaged over the test split (the paper's Fig. 7(b)) beside the interactions the
model really uses, with their agreement, sliced at will."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import state
from autoint.explain import Correlations, dataset_correlations
from autoint.figures import (agreement_bars, agreement_scatter, attention_grid, attention_interaction_side_by_side,
                             correlation_figure)
from autoint.interactions import (DEFAULT_BUDGET, EXACT_MAX_FIELDS, SAMPLED_ROWS, agreement, head_entropy,
                                  matrix_to_pairs, near_uniform, pair_index)
from autoint.schema import UNKNOWN

ANY = "(any)"
VALUES_LISTED = 200  # a field's values offered at once: the most frequent, or those a search finds


@st.cache_data(show_spinner="Averaging attention over the test split ...", max_entries=32)
def correlations(run_path: str, folder: str, where: tuple, label: int | None) -> Correlations:
    inputs, labels = state.dataset(folder, run_path).split("test")
    return dataset_correlations(state.load_model(run_path), inputs, labels, where=dict(where), label=label)


source = state.data_source()
run_path, model = state.require_model()
schema = model.schema

st.title("Dataset correlations")
st.caption("The mean attention weight between every pair of fields over the test split (the paper's Fig. 7(b)). "
           "Slice by the label or by a field value to see which combinations the model relies on there.")
if model.config.layers == 0:
    st.info("This model has no interacting layer (0 layers), so there is no attention to average.")
    st.stop()

stars = source.is_movielens  # MovieLens's clicks are 4-5 star ratings
labels = {None: "all samples", 1: "clicks only" + (" (4-5 stars)" if stars else " (label 1)"),
          0: "non-clicks only" + (" (1-2 stars)" if stars else " (label 0)")}
label_column, field_column, value_column = st.columns(3)
label = label_column.radio("Label", list(labels), format_func=labels.get, key="corr_label")
sliceable = [f for f in schema.fields if f.kind != "numeric"]
field_name = field_column.selectbox("Field", [ANY, *(f.name for f in sliceable)], key="corr_field")
where = ()
if field_name != ANY:
    f = schema[field_name]
    if len(f.vocab) <= VALUES_LISTED:  # every value, in the vocabulary's order
        options = [v for v in f.vocab if v != UNKNOWN]
    else:  # a large vocabulary: the test split's most frequent values, or those a search finds
        search = value_column.text_input(f"Search {field_name}", key=f"corr_search_{field_name}",
                                         placeholder="part of a value")
        options = [v for v, _ in state.field_values(source.key, run_path, (), field_name, search.strip(),
                                                    VALUES_LISTED) if v != UNKNOWN]
    if not options:
        value_column.warning(f"No {field_name} value of the test split holds that text.")
        st.stop()
    value = value_column.selectbox("Value", options, key=f"corr_value_{field_name}",
                                   format_func=lambda v: f.display.get(v, v))
    where = ((field_name, value),)

result = correlations(run_path, source.key, where, label)
if result.count == 0:
    st.warning(f"No test sample has {result.description}; choose another slice.")
    st.stop()

fields = result.fields
F = len(fields)
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
st.caption(f"Colour: each weight against uniform attention (1/{F} = {1 / F:.3f}); the cells give the weight itself. "
           "Titles give the entropy as a fraction of log F (1 = uniform).")

st.subheader("Attention beside the interactions the model really uses")
exact = len(fields) <= EXACT_MAX_FIELDS
sample_rows = None
if not exact:  # 2^F coalitions a sample are out of reach: a subsample of the split, each sample estimated
    sample_rows = st.number_input("Test samples to measure", 8, 2048, SAMPLED_ROWS, step=8, key="corr_sample_rows",
                           help=f"With {len(fields)} fields the interactions are estimated (KernelSHAP-IQ, "
                                f"{DEFAULT_BUDGET:,} coalitions a sample) on a seeded random subsample of the test "
                                f"split; more samples, smaller standard errors (about 0.4 s a sample).")
st.caption("Right: the mean |pairwise Shapley interaction| (k-SII) over the same samples: how much the prediction "
           "depends on two fields together, beyond each alone, in logit units. An absent field takes its "
           "training-mean embedding. "
           + ("Computed exactly for every test sample, once per model, then cached." if exact else
              f"With {len(fields)} fields, estimated on a seeded random subsample of the test split, each sample "
              f"from {DEFAULT_BUDGET:,} sampled coalitions (KernelSHAP-IQ), once per model, then cached."))
measured = state.split_interactions(run_path, source.key, "test", "mean", rows=sample_rows)
keep = state.slice_keep(run_path, source.key, "test", where, label)
strength = measured.matrix(keep)  # (F, F) mean |phi_ij| over the slice
measured_count = measured.count(keep)
if measured.sampled:
    error = measured.standard_error(keep)
    upper = np.triu_indices(len(fields), 1)
    spread = (f"{np.mean(error[upper]):.2g} on average against a mean strength of {strength[upper].mean():.2g}"
              if measured_count >= 2 else "too few samples in this slice to say")
    st.caption(f"Measured on {measured_count:,} of the slice's {int(keep.sum()):,} test samples (a seeded subsample "
               f"of {len(measured):,} of the split's {measured.total:,}). Standard error of each pair's mean: "
               f"{spread}.")
    if measured_count == 0:
        st.warning("None of the measured samples is in this slice; widen it or measure more samples.")
match = agreement(result.per_head, strength)
state.show_figure(attention_interaction_side_by_side(result.overall, strength, fields, signed=False,
                                                     main=measured.main_strength(keep),
                                                     title=f"Fig. 7(b) beside the measured interactions "
                                                           f"({result.description}, {measured_count:,} samples)",
                                                     interaction_title="Mean |interaction| (k-SII, logit)"),
                  "attention-vs-interactions", "corr_side_by_side")
(st.success if match.overall >= 0.5 else st.warning)(f"**Verdict:** {match.verdict}.", icon=":material/balance:")
if match.overall < 0.5 and (hint := state.faithful_preset_hint(model)):
    st.caption(hint)
scatter_column, bars_column = st.columns(2)
with scatter_column:
    state.show_figure(agreement_scatter(matrix_to_pairs(result.overall), matrix_to_pairs(strength),
                                        [f"{fields[i]} × {fields[j]}" for i, j in pair_index(F)], rho=match.overall,
                                        uniform_weight=1 / F, title=f"The {F * (F - 1) // 2} field pairs"),
                      "agreement-scatter", "corr_scatter")
with bars_column:
    state.show_figure(agreement_bars(match.views(), title="Agreement per layer and head (Spearman ρ)"),
                      "agreement-bars", "corr_agreement")

st.subheader("Strongest field pairs")
st.caption("Attention: the mean weight in both directions, averaged over layers and heads (self-attention left out). "
           "Interaction: the mean |k-SII| over the same samples. Rank 1 is the strongest of the "
           f"{F * (F - 1) // 2} pairs.")
attention_pairs, interaction_pairs = matrix_to_pairs(result.overall), matrix_to_pairs(strength)
attention_rank = {p: r + 1 for r, p in enumerate(np.argsort(-attention_pairs, kind="stable"))}
interaction_rank = {p: r + 1 for r, p in enumerate(np.argsort(-interaction_pairs, kind="stable"))}
rows = [{"pair": f"{fields[i]} ↔ {fields[j]}", "mean attention": round(float(attention_pairs[p]), 4),
         "rank by attention": attention_rank[p], "mean |interaction|": round(float(interaction_pairs[p]), 4),
         "rank by interaction": interaction_rank[p],
         **({"± standard error": round(float(error[i, j]), 4)} if measured.sampled else {}),
         "first attends to second": round(float(result.overall[i, j]), 4),
         "second attends to first": round(float(result.overall[j, i]), 4)}
        for p, (i, j) in enumerate(pair_index(F))]
st.dataframe(sorted(rows, key=lambda r: r["rank by interaction"]), hide_index=True, key="corr_pairs")

with st.expander("Every layer and head"):
    state.show_figure(attention_grid(result.per_head, result.fields, title="Mean attention per layer and head",
                                     show_values=len(result.fields) <= 8, entropy=head_entropy(result.per_head),
                                     uniform=flat), "dataset-correlations-heads", "corr_heads")
