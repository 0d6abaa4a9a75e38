"""Explore: one sample (a catalogued data set such as MovieLens-1M: a user, a movie and a request time; any
other data set: a test sample picked by field values or at random); the CTR, the attention of every head, the reasons.

This reproduces the paper's Fig. 7(a) for any sample.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import attention_readings, handout, samples, state, views
from autoint.explain.explanation import METHOD_NAMES
from autoint.explain.interactions import pair_index, verdict
from autoint.explain.readings import PAPER_READING, READINGS, pairs_of
from autoint.figures import (MANY_FIELDS, agreement_bars, agreement_scatter, attention_interaction_side_by_side,
                             attribution_bars, interaction_heatmap, reading_grid, reading_heatmap)
from autoint.data.samples import random_position

DEFAULT_METHODS = list(state.EXPLORE_METHODS)  # Shapley sampling costs ~0.4 s more per sample


def pick_user_and_item() -> tuple[dict, object]:
    """A user, a movie and a request time: the sample's values, and a function that shows its real rating."""
    cat = state.catalog(str(state.data_source().folder))
    sample = samples.current_sample(cat)
    user_ids = cat.users["user_id"].to_list()
    movie_ids = cat.movies["movie_id"].to_list()
    titles = dict(zip(movie_ids, cat.movies["title"].to_list()))
    state.keep("explore_user", sample["user"])
    state.keep("explore_movie", sample["movie"])
    state.keep("explore_date", state.to_datetime(sample["time"]).date())
    state.keep("explore_time", state.to_datetime(sample["time"]).time())

    def rated_time_follows() -> None:
        """A new pair starts at the time of its real rating (or the data's last time when unrated)."""
        timestamp = samples.request_time(cat, cat.sample(st.session_state["explore_user"],
                                                       st.session_state["explore_movie"])["RequestTime"])
        st.session_state["explore_date"] = state.to_datetime(timestamp).date()
        st.session_state["explore_time"] = state.to_datetime(timestamp).time()

    user_column, movie_column, time_column = st.columns([1, 2, 1])
    with user_column:
        user = st.selectbox("User (type an id to search)", user_ids, key="explore_user",
                            on_change=rated_time_follows, format_func=lambda u: f"user {u}")
        st.caption(cat.user_caption(user))
    with movie_column:
        movie = st.selectbox("Movie (type a title to search)", movie_ids, key="explore_movie",
                             on_change=rated_time_follows, format_func=lambda m: f"{titles[m]} · #{m}")
        st.caption(cat.item_caption(movie))
    with time_column:
        first, last = state.to_datetime(cat.first_time), state.to_datetime(cat.last_time)
        day = st.date_input("Request date (UTC)", key="explore_date", min_value=first.date(), max_value=last.date())
        clock = st.time_input("Request time (UTC)", key="explore_time", step=60)
    timestamp = samples.request_time(cat, state.from_date_time(day, clock))
    st.session_state["sample"] = sample = {"user": user, "movie": movie, "time": timestamp}
    values = samples.sample_values(cat, sample)

    def real_rating(column) -> None:
        known = cat.rating(user, movie)
        if known:
            stars, rated_at = known
            column.metric("Real rating", "★" * stars + "☆" * (5 - stars),
                          help=f"rated {state.to_datetime(rated_at):%Y-%m-%d %H:%M} UTC; the paper counts 4-5 stars "
                               "as a click, 1-2 as none, and drops 3")
            column.caption({1: "a click (4-5 stars)", 0: "no click (1-2 stars)"}.get(
                cat.click_of(user, movie), "3 stars: not a sample in the paper's protocol"))
        else:
            column.metric("Real rating", "none", help="this user never rated this movie")
    return values, real_rating


def real_label(row):
    """A function that shows a data sample's real label in a column (what `pick_prepared_row` and `pick_row` give)."""
    def show(column) -> None:
        column.metric("Real label", "click" if row.label else "no click",
                      help=f"the sample's label in the data: {row.label}")
    return show


def field_filters(copy: str) -> list[tuple[str, str]]:
    """Up to four (field, value) filters: each field offers its values among the test samples that pass the filters
    before it, most frequent first (a large vocabulary is searched, not listed: it can hold a million values).
    `copy`: the prepared copy's fingerprint, or "" for a data set in memory."""
    from autoint.data.samples import filterable
    schema = model.schema
    chosen = st.multiselect("Pick a test sample by these fields", [f.name for f in filterable(schema)],
                            key="explore_filter_fields", max_selections=4,
                            help="Each field offers its values among the test samples that pass the filters before "
                                 "it, most frequent first.")
    where: list[tuple[str, str]] = []
    for name in chosen:
        f = schema[name]
        search = ""
        if state.large_vocabulary(f):  # too many values to list: search them, the most frequent first
            search_column, value_column = st.columns([1, 2])
            search = search_column.text_input(f"Search {name}", key=f"explore_search_{name}",
                                              placeholder="part of a value")
        else:  # a short list: every value the matching samples hold
            value_column = st.container()
        options = samples.field_values(key, run_path, tuple(where), name, search.strip(), state.VALUES_LISTED, copy)
        if not options:
            value_column.warning(f"No {name} value among the matching test samples holds {search!r}.")
            continue
        counts = dict(options)
        value = value_column.selectbox(
            f"{name} value", list(counts), key=f"explore_value_{name}",
            format_func=lambda v, f=f, counts=counts: f"{f.show(v).split('=', 1)[1]} · {counts[v]:,} samples",
            help=(f"the {len(counts)} most frequent {'matching ' if search else ''}values; search for others"
                  if state.large_vocabulary(f) else "every value among the matching test samples, most "
                                                    "frequent first"))
        where.append((name, value))
    return where


def pick_among(where: list[tuple[str, str]], copy: str):
    """The sample among the test samples that pass `where`: the current one if it does, else the first; a number
    input over the matches and a random pick among them. Returns the row."""
    positions = samples.matching_rows(key, run_path, tuple(where), copy)  # ascending
    if len(positions) == 0:
        st.warning("No test sample has all these values; remove a filter.")
        st.stop()
    row = samples.current_row(source, run_path)
    at = int(np.searchsorted(positions, row.position))
    if at == len(positions) or positions[at] != row.position:  # the filters changed: their first sample
        samples.choose_row(source, int(positions[0]))
        row, at = samples.current_row(source, run_path), 0
    st.session_state["explore_match"] = at + 1
    st.number_input(f"Sample (of {len(positions):,} matching test samples)", 1, len(positions), key="explore_match",
                    on_change=lambda: samples.choose_row(source, int(positions[st.session_state["explore_match"] - 1])))
    st.button("Random sample", key="explore_random", icon=":material/casino:",
              on_click=lambda: samples.choose_row(source, random_position(positions)))
    return row


def pick_prepared_row(prepared) -> tuple[dict, object]:
    """A test sample of a prepared copy (the run was trained on it): by field values (each filter reads that field's
    column of the test split, never the rows), or by its position in the split, or at random; the sample itself is
    read from its row group alone. Its values, decoded, and a function that shows its real label."""
    total = prepared.rows("test")
    if not total:
        st.warning(f"The prepared copy `{prepared.path}` has no test sample to explain: prepare the data set from "
                   f"more rows.", icon=":material/dataset:")
        st.stop()
    filter_column, pick_column = st.columns([3, 2])
    with filter_column:
        where = field_filters(prepared.fingerprint)
    with pick_column:
        if where:
            row = pick_among(where, prepared.fingerprint)
        else:
            row = samples.current_row(source, run_path)
            st.session_state["explore_position"] = row.position
            st.number_input(f"Test sample (0 to {total - 1:,})", 0, total - 1, key="explore_position",
                            on_change=lambda: samples.choose_row(source, st.session_state["explore_position"]),
                            help=f"its position among the prepared copy's {total:,} test samples, from 0 (as "
                                 "`--row N` on the command line)")
            st.button("Random sample", key="explore_random", icon=":material/casino:",
                      on_click=lambda: samples.choose_row(source, int(np.random.default_rng().integers(total))))
        st.caption(f"test sample {row.position:,} of the prepared copy (`{prepared.path}`), line {row.line:,} of the "
                   f"raw data, read from its row group alone")
    return row.values, real_label(row)


def pick_row() -> tuple[dict, object]:
    """A test sample of a data set in memory, picked by field values or at random: its values, and a function that
    shows its real label."""
    filter_column, pick_column = st.columns([3, 2])
    with filter_column:
        where = field_filters("")
    with pick_column:
        row = pick_among(where, "")
        st.caption(f"test sample {row.position:,} (row {row.index + 1:,} of the data)")
    return row.values, real_label(row)


source = state.data_source()
if source.has_catalog:  # read the files first: a broken folder shows its error instead of starting a training
    state.catalog(source.key)
run_path, model = samples.require_model()
key = folder = source.key  # what the cached loads are keyed by (DataSource.key)
st.title("Explore a prediction")
if source.has_catalog:
    st.caption("Pick a user, a movie and when the request happens. The model predicts the click-through rate (CTR); "
               "its attention shows which fields each field combined with.")
    values, show_label = pick_user_and_item()
else:
    prepared = views.prepared_for(source, run_path)
    st.caption(f"Pick a sample of {source.label}'s test split "
               + ("by its field values or its position" if prepared is not None else "by its field values")
               + ", or at random. The model predicts the click-through rate (CTR); its attention shows which fields "
                 "each field combined with.")
    values, show_label = pick_prepared_row(prepared) if prepared is not None else pick_row()

state.keep("explore_methods", DEFAULT_METHODS)  # through session state: a link may set it (app/links.py)
methods = st.multiselect("Attribution methods", list(METHOD_NAMES), key="explore_methods",
                         format_func=METHOD_NAMES.get,
                         help="Shapley Value Sampling is the slowest (64 permutations); the others are quick.")
state.keep("explore_baseline", "mean")
baseline_kind = st.session_state["explore_baseline"]
explanation = views.explanation(run_path, folder, values, tuple(methods), baseline_kind)

ctr_column, rating_column, fields_column = st.columns([1, 1, 3])
ctr_column.metric("Predicted CTR", f"{explanation.ctr:.1%}",
                  help=f"Eq. 9: σ(logit) = σ({explanation.logit:+.6f}) = {explanation.ctr:.6f}")
show_label(rating_column)
fields_column.markdown("**The sample's fields** \n" + " · ".join(f"`{label}`" for label in explanation.labels))

def verdict_box(rho: float, pairs: int, what: str) -> None:
    """The verdict of one reading of one sample, green from ρ 0.5."""
    text = verdict(rho, pairs, subject=what)
    (st.success if np.isfinite(rho) and rho >= 0.5 else st.warning)(f"**Verdict:** {text}.", icon=":material/balance:")


def compare_models(values: dict) -> None:
    """The same sample under the readable model and the paper's, side by side, each with its verdict."""
    readable, paper = state.model_pair(source)
    if readable is None or paper is None:
        missing = "paper's" if paper is None else "readable"
        st.info(f"The {missing} model is not trained on this data set yet (the first start trains it after the "
                "readable one; or train it on the Train page with its preset).", icon=":material/hourglass:")
        return
    columns = st.columns(2)
    for column, run, who in ((columns[0], readable, "Readable model"), (columns[1], paper, "The paper's model")):
        with column:
            shown = views.explanation(run["path"], folder, values, (), baseline_kind)
            scored = attention_readings.model_readings(run["path"], key)
            best = scored["default"]
            auc = run.get("metrics", {}).get("test_auc")
            st.markdown(f"**{who}** · `{run['name']}`" + (f" · test AUC {auc:.4f}" if isinstance(auc, float) else ""))
            st.metric("Predicted CTR", f"{shown.ctr:.1%}")
            readings = shown.readings
            # Half a page each: the reading and the interactions one above the other, not side by side.
            state.show_figure(reading_heatmap(readings[best].matrix, shown.labels, reading=best,
                                              unit=READINGS[best].title,
                                              title=f"{READINGS[best].title} (its best reading)"),
                              f"compare-{run['name']}-reading", f"explore_compare_reading_{who[:4]}")
            state.show_figure(interaction_heatmap(shown.interactions.matrix, shown.labels, signed=True,
                                                  title="What it combines (k-SII, logit)"),
                              f"compare-{run['name']}-interactions", f"explore_compare_ksii_{who[:4]}")
            pairs = len(shown.interactions.pairs)
            verdict_box(readings[best].agreement, pairs, f"its best reading ({READINGS[best].title})")
            verdict_box(readings[PAPER_READING].agreement, pairs, "raw α (the paper's reading)")


if model.config.layers == 0:
    st.info("This model has no interacting layer (0 layers), so there is no attention to show.")
else:
    F = len(explanation.labels)
    st.subheader("Attention of every layer and head")
    attention_readings.model_note(run_path)
    reading, scored = attention_readings.reading_choice("explore", run_path, key)
    chosen = explanation.readings[reading]
    title = READINGS[reading].title
    if st.toggle("Paper's model beside the readable model", key="explore_compare",
                 help="The same sample under both models, each with its most faithful reading and its verdict."):
        compare_models(values)
    if reading == PAPER_READING:
        st.caption(f"Row m attends to column k: each row is one field's softmax over the fields (Eq. 5), so rows sum "
                   f"to 1. Colour shows each weight against uniform attention (1/{F} = {1 / F:.3f}): red above, blue "
                   f"below, white at uniform; the hover (and, up to {MANY_FIELDS} fields, the enlarged map's cells) "
                   "gives the weight itself. Each title gives the head's entropy as a fraction of log F (1 = uniform, "
                   "0 = every row on one field). All heads share one colour scale.")
        flat = explanation.near_uniform
        if flat.all():
            st.warning(f"Every head is close to uniform here: each weight lies within 0.02 of 1/{F}. The colours "
                       "show small differences, not a pattern; this attention says almost nothing about the sample.",
                       icon=":material/blur_on:")
        elif flat.any():
            st.info(f"{int(flat.sum())} of {flat.size} heads are close to uniform (every weight within 0.02 of "
                    f"1/{F}), marked ≈ uniform: read no pattern into them.", icon=":material/blur_on:")
    else:
        flat = explanation.near_uniform
        st.caption(f"**{title}**: {READINGS[reading].definition} ({READINGS[reading].paper}). Row m receives from "
                   f"column k; colour runs from 0 (white) to the largest value in the grid, one scale for every "
                   f"head. Switch to raw α for the paper's reading.")
    named = "Attention" if reading == PAPER_READING else title  # raw α keeps the paper's word
    state.show_figure(reading_grid(chosen.per_head, explanation.labels, reading=reading, unit=title,
                                   title=f"{named} per layer and head", entropy=explanation.head_entropy,
                                   uniform=flat), f"{reading}-grid", "explore_grid")
    layers, heads = explanation.attention.shape[:2]
    pick_layer, pick_head = st.columns(2)
    layer = pick_layer.selectbox("Enlarge layer", list(range(1, layers + 1)), key="explore_layer")
    head = pick_head.selectbox("Head", list(range(1, heads + 1)), key="explore_head")
    state.show_figure(reading_heatmap(chosen.per_head[layer - 1, head - 1], explanation.labels, reading=reading,
                                      unit=title, title=(f"Layer {layer}, head {head}" if reading == PAPER_READING
                                                         else f"{title}: layer {layer}, head {head}"),
                                      entropy=float(explanation.head_entropy[layer - 1, head - 1]),
                                      uniform=bool(flat[layer - 1, head - 1])),
                      f"{reading}-layer{layer}-head{head}", "explore_enlarged")

    measured = explanation.interactions
    st.subheader("What the model really combines")
    combinations = ("every combination (2^F forwards)" if measured.method == "exact" else
                    f"{measured.budget:,} combinations sampled by KernelSHAP-IQ (2^{F} are too many to try)")
    st.caption("Pairwise Shapley interactions (k-SII): how much the prediction depends on two fields *together*, "
               f"beyond each one alone, measured by setting fields absent in {combinations} "
               f"and asking the model again. Positive raises the CTR, negative lowers it, in logit units. Left: the "
               f"attention as read by **{title}** ({'layers and heads averaged' if reading != 'rollout' else 'the last layer of the rollout'}); "
               "right: what the prediction actually depends on. Same fields, same order.")
    st.radio("An absent field becomes", list(views.INTERACTION_BASELINES), key="explore_baseline", horizontal=True,
             format_func=views.INTERACTION_BASELINES.get,
             help="The training-mean embedding is the neutral default (Integrated Gradients uses it too); the "
                  "<unknown> value is what the model gives a value it never saw.")
    state.show_figure(attention_interaction_side_by_side(chosen.matrix, measured.matrix, explanation.labels,
                                                         signed=True, main=measured.main, reading=reading, unit=title,
                                                         attention_title=f"{title} (this sample)",
                                                         title=f"{named} beside the measured interactions"),
                      "attention-vs-interactions", "explore_side_by_side")
    verdict_box(chosen.agreement, F * (F - 1) // 2, title)
    split = f" Over the test split: ρ {scored['scores'][reading]['agreement']:+.2f}, median per-sample ρ " \
            f"{scored['scores'][reading].get('median') or float('nan'):+.2f}." if scored else ""
    st.caption(f"This sample's precision@3: {chosen.precision_at_3:.2f} (how many of the 3 strongest measured pairs "
               f"{title} ranks in its own top 3).{split}")
    if chosen.agreement < 0.5 and (hint := attention_readings.faithful_preset_hint(model)):
        st.caption(hint)
    st.caption(f"Check (efficiency): the {F} main effects and {F * (F - 1) // 2} pair interactions add up to "
               f"{measured.main.sum() + measured.pairs.sum():+.4f} = logit {measured.full:+.4f} − baseline logit "
               f"{measured.empty:+.4f}; gap {measured.efficiency_gap:.1e}."
               + ("" if measured.method == "exact" else f" Estimated values: each has a standard error of about "
                  f"{float(measured.error.mean()):.1e} on average (at most {float(measured.error.max()):.1e}), "
                  f"from two independent half-budget runs (seed {measured.seed})."))
    scatter_column, bars_column = st.columns(2)
    pair_labels = [f"{explanation.labels[i].split('=')[0]} × {explanation.labels[j].split('=')[0]}"
                   for i, j in pair_index(F)]
    with scatter_column:
        state.show_figure(agreement_scatter(pairs_of(chosen.matrix), np.abs(measured.pairs), pair_labels,
                                            rho=chosen.agreement, uniform_weight=1 / F if reading == PAPER_READING
                                            else None, x_title=f"{title} between the two fields (both directions "
                                                               f"averaged)",
                                            title=f"Each field pair: {named.lower() if reading == PAPER_READING else title} vs interaction"),
                          "agreement-scatter", "explore_scatter")
    with bars_column:
        sample_scores = {READINGS[n].title: r.agreement for n, r in explanation.readings.readings.items()}
        state.show_figure(agreement_bars(sample_scores, title="This sample: agreement of each reading (Spearman ρ)"),
                          "agreement-readings", "explore_agreement")

    by_attention, by_interaction = st.columns(2)
    with by_attention:
        st.markdown("**Top combinations by raw attention** (the paper's reading)")
        for combination in explanation.combinations:
            st.markdown(f"- **{combination.weight:.0%}** · {combination.text}")
    with by_interaction:
        st.markdown("**Top pairs by measured interaction**")
        for pair in measured.ranked_pairs(explanation.labels)[:5]:
            st.markdown(f"- **{pair['value']:+.3f}** logit · {pair['fields'][0]} × {pair['fields'][1]}")

if explanation.attributions:
    st.subheader("Per-field attributions")
    st.caption("How much each field moves the logit, against a neutral baseline (training-mean embedding for "
               "Integrated Gradients; the `<unknown>` value for ablation and Shapley).")
    state.show_figure(attribution_bars(explanation.attributions, explanation.labels, method_names=METHOD_NAMES),
                      "attributions", "explore_attributions")

st.divider()
handout.download_button("explore", samples.current(), explanation, baseline_kind,
                        reading if model.config.layers else None)
