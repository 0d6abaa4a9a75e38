"""Recommend: the movies the model rates highest for a user, each with the combination behind it."""
from __future__ import annotations

import streamlit as st

from app import samples, state, views
from autoint.explain.recommend import recommend

folder, cat, run_path, model, sample = samples.exploring()

st.title("Recommend")
st.caption("Every movie is scored for the user at the request time in one batch. Beside each pick: the strongest "
           "pair (or chain) in that prediction's attention, the paper's reading, and the strongest pairwise "
           "interaction the model really uses for it (k-SII, measured; positive raises the CTR).")

state.keep("recommend_user", sample["user"])
state.keep("recommend_date", state.to_datetime(sample["time"]).date())
state.keep("recommend_time", state.to_datetime(sample["time"]).time())
c1, c2, c3, c4 = st.columns([1, 1, 1, 1])
user = c1.selectbox("User (type an id to search)", cat.users["user_id"].to_list(), key="recommend_user",
                    format_func=lambda u: f"user {u}")
c1.caption(cat.user_caption(user))
day = c2.date_input("Request date (UTC)", key="recommend_date", min_value=state.to_datetime(cat.first_time).date(),
                    max_value=state.to_datetime(cat.last_time).date())
clock = c2.time_input("Request time (UTC)", key="recommend_time", step=60)
state.keep("recommend_top", 10)  # through session state: a link may set these (app/links.py)
state.keep("recommend_exclude", True)
top = c3.slider("How many", 5, 50, key="recommend_top")
exclude = c4.toggle("Leave out movies the user rated", key="recommend_exclude")
timestamp = samples.request_time(cat, state.from_date_time(day, clock))

picks = recommend(model, cat, user, timestamp, top=top, exclude_rated=exclude,
                  scorer=state.movie_scorer(run_path, folder),
                  interaction_baseline=views.interaction_baseline(run_path, folder, "mean"))
interaction = lambda p: (f"{' × '.join(p['interaction']['fields'])} ({p['interaction']['value']:+.2f} logit)"
                         if "interaction" in p else "")
st.dataframe([{"rank": i + 1, "movie": p["title"], "genres": ", ".join(p["genres"]), "CTR": p["ctr"],
               "strongest attention combination": " × ".join(p["combination"]),
               "strongest measured interaction": interaction(p)} for i, p in enumerate(picks)],
             hide_index=True, key="recommend_table",
             column_config={"CTR": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)})
st.subheader("Why, in words")
for i, p in enumerate(picks):
    st.markdown(f"{i + 1}. **{p['title']}** ({p['ctr']:.1%}): by attention, {p['why']}"
                + (f"; measured, the model leans most on {interaction(p)}" if "interaction" in p else ""))
