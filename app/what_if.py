"""What-if: start from the explored sample, change any field value, see what the model does differently."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import attention_readings, handout, samples, state, views
from autoint.explain.explanation import METHOD_NAMES, what_if
from autoint.explain.interactions import matrix_to_pairs, near_uniform, pair_index, pair_ranks, verdict
from autoint.explain.readings import PAPER_READING, READINGS
from autoint.figures import (attention_before_after, attribution_bars, difference_heatmap, interaction_change_heatmap,
                             reading_heatmap, transition_labels)
from autoint.data.schema import UNKNOWN

now = samples.current()
folder, cat, run_path, model, sample = now.key, now.catalog, now.run_path, now.model, now.sample
schema = model.schema
values = now.values
# Edits belong to one base sample: exploring another sample (or another model, or data set) starts afresh.
base = (run_path, folder, *sorted(sample.items()))
if st.session_state.get("whatif_base") != base:
    st.session_state["whatif_base"] = base
    st.session_state["whatif_edits"] = {}
edits: dict = st.session_state["whatif_edits"]


def widget_key(name: str) -> str:
    return f"whatif_field_{name}"


def reset() -> None:
    st.session_state["whatif_edits"] = {}
    for f in schema.fields:
        for suffix in ("", "_date", "_time"):
            st.session_state.pop(widget_key(f.name) + suffix, None)


st.title("What if ...?")
st.caption(f"Start: {now.caption} (from Explore). Change any field below; the model is asked again and the "
           "pictures show what changed.")

columns = st.columns(4)
for i, f in enumerate(schema.fields):
    key, current = widget_key(f.name), edits.get(f.name, values[f.name])
    with columns[i % 4]:
        if f.kind == "numeric" and f.format == "timestamp" and cat is not None:  # MovieLens's request time
            stamp = state.to_datetime(current)
            state.keep(key + "_date", stamp.date())
            state.keep(key + "_time", stamp.time())
            day = st.date_input(f"{f.name} date (UTC)", key=key + "_date",
                                min_value=state.to_datetime(cat.first_time).date(),
                                max_value=state.to_datetime(cat.last_time).date())
            clock = st.time_input(f"{f.name} (UTC)", key=key + "_time", step=60)
            new = samples.request_time(cat, state.from_date_time(day, clock))
            changed = new != samples.request_time(cat, values[f.name])
        elif f.kind == "numeric":
            state.keep(key, float(current))
            new = st.number_input(f.name, key=key)
            changed = new != values[f.name]
        elif f.kind == "multivalued":
            state.keep(key, [v for v in current if v != UNKNOWN and v in f._lookup])
            if state.large_vocabulary(f):  # the values found by a search, beside those chosen
                search = st.text_input(f"Search {f.name}", key=key + "_search", placeholder="part of a value")
                found = [v for v in samples.vocabulary_matches(run_path, f.name, search.strip()) if v != UNKNOWN]
                options = list(dict.fromkeys([*st.session_state[key], *found]))
            else:
                options = list(f.vocab[1:])
            new = st.multiselect(f.name, options, key=key, max_selections=f.max_len,
                                 format_func=lambda v, f=f: f.display.get(v, v))
            changed = sorted(new) != sorted(values[f.name])
        else:
            if state.large_vocabulary(f):  # search the vocabulary (most frequent first) instead of listing it
                search = st.text_input(f"Search {f.name}", key=key + "_search", placeholder="part of a value")
                options = list(samples.vocabulary_matches(run_path, f.name, search.strip()))
            else:
                options = list(f.vocab)
            options = options if current in options else [current, *options]
            if st.session_state.get(key) not in (None, *options):  # a value chosen before the search changed
                options.append(st.session_state[key])
            state.keep(key, current)
            new = st.selectbox(f.name, options, key=key, format_func=lambda v, f=f: f.display.get(v, v),
                               help=f"{UNKNOWN} is the slot for values the model never saw in training")
            changed = new != values[f.name]
        if changed:
            edits[f.name] = new
        else:
            edits.pop(f.name, None)

st.button("Reset to the explored sample", on_click=reset, icon=":material/restart_alt:", key="whatif_reset",
          disabled=not edits)
emptied = [name for name, value in edits.items() if schema[name].kind == "multivalued" and not value]
if emptied:
    st.error(f"{emptied[0]} needs at least one value; pick one or reset.")
    st.stop()

result = what_if(model, values, edits,
                 explain=lambda sample: views.explanation(run_path, folder, sample, ("integrated_gradients",), "mean"))
before, after = result.before, result.after

old, new, change = st.columns(3)
old.metric("CTR before", f"{before.ctr:.1%}", help=f"σ({before.logit:+.6f}) = {before.ctr:.6f}")
new.metric("CTR after", f"{after.ctr:.1%}", delta=f"{result.ctr_change:+.1%}" if edits else None,
           help=f"σ({after.logit:+.6f}) = {after.ctr:.6f}")
change.markdown("**Edits** \n" + (" · ".join(f"`{schema[k].show(v)}`" for k, v in edits.items()) or "none yet"))

if model.config.layers:
    st.subheader("What changed in the attention")
    attention_readings.model_note(run_path)
    reading, scored = attention_readings.reading_choice("what_if", run_path, folder)
    title = READINGS[reading].title
    layers, heads = before.attention.shape[:2]
    pick_layer, pick_head = st.columns(2)
    layer = pick_layer.selectbox("Layer", list(range(1, layers + 1)), key="whatif_layer")
    head = pick_head.selectbox("Head", ["mean of heads", *range(1, heads + 1)], key="whatif_head")

    def view(maps: np.ndarray) -> np.ndarray:
        """(L, H, F, F) -> the (F, F) map of the chosen layer and head (or the mean of its heads)."""
        chosen = maps[layer - 1]
        return chosen.mean(axis=0) if head == "mean of heads" else chosen[head - 1]

    where = f"layer {layer}, {head if head == 'mean of heads' else f'head {head}'}"
    labels = transition_labels(before.labels, after.labels)
    if reading == PAPER_READING:
        flat = lambda e: bool(near_uniform(view(e.attention)))  # every weight of the view within 0.02 of 1/F
        state.show_figure(attention_before_after(view(before.attention), view(after.attention), labels,
                                                 title=f"Attention before and after · {where}",
                                                 uniform=(flat(before), flat(after))),
                          "attention-before-after", "whatif_before_after")
        state.show_figure(difference_heatmap(view(result.attention_change), labels,
                                             title=f"Change in attention (after − before) · {where}"),
                          "attention-change", "whatif_difference")
    else:
        maps = {side: view(e.readings[reading].per_head) for side, e in (("before", before), ("after", after))}
        top = max(float(m.max()) for m in maps.values())  # one colour scale for both sides
        st.caption(f"**{title}**: {READINGS[reading].definition} ({READINGS[reading].paper}). Row m receives from "
                   f"column k; both maps share one colour scale, from 0 (white) to the larger map's largest value. "
                   f"Switch to raw α for the paper's reading.")
        sides = st.columns(2)
        for column, side in zip(sides, ("before", "after")):
            figure = reading_heatmap(maps[side], labels, reading=reading, unit=title,
                                     title=f"{title} {side} the edit · {where}")
            if top > 0:
                figure.update_coloraxes(cmax=top)
            with column:
                state.show_figure(figure, f"{reading}-{side}", f"whatif_reading_{side}")
        state.show_figure(difference_heatmap(maps["after"] - maps["before"], labels, value_name=f"change in {title}",
                                             title=f"Change in {title} (after − before) · {where}"),
                          f"{reading}-change", "whatif_reading_difference")

st.subheader("What changed in the interactions the model uses")
st.caption("Pairwise Shapley interactions (k-SII, logit units; an absent field takes its training-mean embedding) "
           "after the edit minus before: red pairs now push the CTR up more (or down less), blue the reverse. Unlike "
           "the attention above, these are what the prediction depends on.")
labels = transition_labels(before.labels, after.labels)
state.show_figure(interaction_change_heatmap(before.interactions.matrix, after.interactions.matrix, labels,
                                             title="Change in pairwise interactions (after − before)"),
                  "interaction-change", "whatif_interactions")
if model.config.layers:
    pairs = len(labels) * (len(labels) - 1) // 2
    st.markdown(f"**Before:** {verdict(before.readings[reading].agreement, pairs, subject=title)}.  \n"
                f"**After:** {verdict(after.readings[reading].agreement, pairs, subject=title)}.")
    if reading != PAPER_READING:
        st.caption(f"Raw α, the paper's reading: ρ {before.readings[PAPER_READING].agreement:+.2f} before, "
                   f"{after.readings[PAPER_READING].agreement:+.2f} after.")
if edits:  # the library ranks the pairs by |change| (`pair_ranks`), the page names the first three
    fields = before.interactions.fields
    every_pair = [(fields[i], fields[j]) for i, j in pair_index(len(fields))]
    changes = matrix_to_pairs(result.interaction_change)  # (P,) signed, pair_index order
    ranked = sorted((r for r in pair_ranks(np.abs(changes), fields, every_pair) if r["rank"] <= 3),
                    key=lambda r: r["rank"])
    st.markdown("**Largest changes:** " + " · ".join(
        f"{a} × {b} {changes[every_pair.index((a, b))]:+.3f}" for a, b in (r["pair"] for r in ranked)))

state.show_figure(attribution_bars({"before": before.attributions["integrated_gradients"],
                                    "after": after.attributions["integrated_gradients"]},
                                   transition_labels(before.labels, after.labels),
                                   title=f"{METHOD_NAMES['integrated_gradients']}: each field's contribution, "
                                         "before and after"),
                  "attributions-change", "whatif_attributions")

st.divider()
handout.download_button("whatif", now, result, "mean", reading if model.config.layers else None)
