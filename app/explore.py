"""Explore: one user, one movie, one request time; the CTR, the attention of every head, the reasons.

This reproduces the paper's Fig. 7(a) for any sample.
"""
from __future__ import annotations

import streamlit as st

from app import state
from autoint.explain import METHOD_NAMES, explain_sample
from autoint.figures import attention_grid, attention_heatmap, attribution_bars

DEFAULT_METHODS = ["integrated_gradients", "feature_ablation"]  # Shapley sampling costs ~0.4 s more per sample

folder, cat, run_path, model, sample = state.exploring()

st.title("Explore a prediction")
st.caption("Pick a user, a movie and when the request happens. The model predicts the click-through rate (CTR); "
           "its attention shows which fields each field combined with.")

user_ids = cat.users["user_id"].to_list()
movie_ids = cat.movies["movie_id"].to_list()
titles = dict(zip(movie_ids, cat.movies["title"].to_list()))
state.keep("explore_user", sample["user"])
state.keep("explore_movie", sample["movie"])
state.keep("explore_date", state.to_datetime(sample["time"]).date())
state.keep("explore_time", state.to_datetime(sample["time"]).time())


def rated_time_follows() -> None:
    """A new pair starts at the time of its real rating (or the data's last time when unrated)."""
    timestamp = state.request_time(cat, cat.sample(st.session_state["explore_user"],
                                                   st.session_state["explore_movie"])["RequestTime"])
    st.session_state["explore_date"] = state.to_datetime(timestamp).date()
    st.session_state["explore_time"] = state.to_datetime(timestamp).time()


user_column, movie_column, time_column = st.columns([1, 2, 1])
with user_column:
    user = st.selectbox("User (type an id to search)", user_ids, key="explore_user", on_change=rated_time_follows,
                        format_func=lambda u: f"user {u}")
    st.caption(state.user_caption(cat, user))
with movie_column:
    movie = st.selectbox("Movie (type a title to search)", movie_ids, key="explore_movie",
                         on_change=rated_time_follows, format_func=lambda m: f"{titles[m]} · #{m}")
    st.caption(state.movie_caption(cat, movie))
with time_column:
    first, last = state.to_datetime(cat.first_time), state.to_datetime(cat.last_time)
    day = st.date_input("Request date (UTC)", key="explore_date", min_value=first.date(), max_value=last.date())
    clock = st.time_input("Request time (UTC)", key="explore_time", step=60)
timestamp = state.request_time(cat, state.from_date_time(day, clock))
st.session_state["sample"] = sample = {"user": user, "movie": movie, "time": timestamp}
values = state.sample_values(cat, sample)

methods = st.multiselect("Attribution methods", list(METHOD_NAMES), default=DEFAULT_METHODS, key="explore_methods",
                         format_func=METHOD_NAMES.get,
                         help="Shapley Value Sampling is the slowest (64 permutations); the others are quick.")
explanation = explain_sample(model, values, attributions=methods,
                             baseline=state.baseline(run_path, folder) if methods else None)

ctr_column, rating_column, fields_column = st.columns([1, 1, 3])
ctr_column.metric("Predicted CTR", f"{explanation.ctr:.1%}",
                  help=f"Eq. 9: σ(logit) = σ({explanation.logit:+.6f}) = {explanation.ctr:.6f}")
known = cat.rating(user, movie)
if known:
    stars, rated_at = known
    rating_column.metric("Real rating", "★" * stars + "☆" * (5 - stars),
                         help=f"rated {state.to_datetime(rated_at):%Y-%m-%d %H:%M} UTC; the paper counts 4-5 stars "
                              "as a click, 1-2 as none, and drops 3")
    rating_column.caption("a click (4-5 stars)" if stars > 3 else "no click (1-2 stars)" if stars < 3
                          else "3 stars: not a sample in the paper's protocol")
else:
    rating_column.metric("Real rating", "none", help="this user never rated this movie")
fields_column.markdown("**The sample's fields** \n" + " · ".join(f"`{label}`" for label in explanation.labels))

if model.config.layers == 0:
    st.info("This model has no interacting layer (0 layers), so there is no attention to show.")
else:
    st.subheader("Attention of every layer and head")
    st.caption("Row m attends to column k: each row is one field's softmax over the fields (Eq. 5), so rows sum to 1. "
               "All heads share one colour scale.")
    state.show_figure(attention_grid(explanation.attention, explanation.labels), "attention-grid", "explore_grid")
    layers, heads = explanation.attention.shape[:2]
    pick_layer, pick_head = st.columns(2)
    layer = pick_layer.selectbox("Enlarge layer", list(range(1, layers + 1)), key="explore_layer")
    head = pick_head.selectbox("Head", list(range(1, heads + 1)), key="explore_head")
    state.show_figure(attention_heatmap(explanation.attention[layer - 1, head - 1], explanation.labels,
                                        title=f"Layer {layer}, head {head}"),
                      f"attention-layer{layer}-head{head}", "explore_enlarged")

    st.subheader("Top combinatorial features")
    for combination in explanation.combinations:
        st.markdown(f"- **{combination.weight:.0%}** · {combination.text}")

if explanation.attributions:
    st.subheader("Per-field attributions")
    st.caption("How much each field moves the logit, against a neutral baseline (training-mean embedding for "
               "Integrated Gradients; the `<unknown>` value for ablation and Shapley).")
    state.show_figure(attribution_bars(explanation.attributions, explanation.labels, method_names=METHOD_NAMES),
                      "attributions", "explore_attributions")
