"""Dataset correlations: attention averaged over the test split, the paper's Fig. 7(b), sliced at will."""
from __future__ import annotations

import streamlit as st

from app import state
from autoint.explain import Correlations, dataset_correlations
from autoint.figures import attention_grid, correlation_figure
from autoint.schema import UNKNOWN

ANY = "(any)"
LABELS = {None: "all samples", 1: "clicks only (4-5 stars)", 0: "non-clicks only (1-2 stars)"}


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

label_column, field_column, value_column = st.columns(3)
label = label_column.radio("Label", list(LABELS), format_func=LABELS.get, key="corr_label")
sliceable = [f for f in schema.fields if f.kind != "numeric"]
field_name = field_column.selectbox("Field", [ANY, *(f.name for f in sliceable)], key="corr_field")
where = ()
if field_name != ANY:
    f = schema[field_name]
    value = value_column.selectbox("Value", [v for v in f.vocab if v != UNKNOWN], key=f"corr_value_{field_name}",
                                   format_func=lambda v: f.display.get(v, v))
    where = ((field_name, value),)

result = correlations(run_path, str(source.folder), where, label)
if result.count == 0:
    st.warning(f"No test sample has {result.description}; choose another slice.")
    st.stop()

state.show_figure(correlation_figure(result.per_layer, result.fields, count=result.count,
                                     description=result.description), "dataset-correlations", "corr_layers")

st.subheader("Strongest field pairs")
st.caption("Mean attention in both directions, averaged over layers and heads (self-attention left out).")
st.dataframe([{"pair": f"{p['fields'][0]} ↔ {p['fields'][1]}", "mean weight": round(p["weight"], 4),
               "first attends to second": round(p["forward"], 4), "second attends to first": round(p["backward"], 4)}
              for p in result.strongest_pairs(10)], hide_index=True, key="corr_pairs")

with st.expander("Every layer and head"):
    state.show_figure(attention_grid(result.per_head, result.fields, title="Mean attention per layer and head",
                                     show_values=len(result.fields) <= 8), "dataset-correlations-heads", "corr_heads")
