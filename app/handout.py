"""The "Download handout" button of Explore and What-if: the page's sample (with What-if's edits) as one
self-contained HTML file (autoint.workspace.report.sample_report), built only when the button is clicked."""
from __future__ import annotations

import re

import streamlit as st

from app.samples import Current


def about(now: Current) -> dict:
    """What the sample is, as `explain --json` says it: the user and the movie, or the test split's row."""
    if now.catalog is not None:
        user, movie = now.sample["user"], now.sample["movie"]
        return {"user": user, "movie": movie, "title": now.catalog.movie(movie)["title"],
                "rating": (now.catalog.rating(user, movie) or [None])[0]}
    return {"split": "test", "row": now.sample["row"], "label": now.label}


def file_name(now: Current, what_if: bool) -> str:
    sample = "-".join(f"{k}{v}" for k, v in now.sample.items() if k != "time")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"handout-{sample}{'-what-if' if what_if else ''}") + ".html"


def download_button(page: str, now: Current, explained, baseline: str, reading: str | None) -> None:
    """The button: `explained` (the page's SampleExplanation, or its WhatIf) with the reading the page shows. The
    file is written when someone clicks (Streamlit calls the function then), so a rerun costs nothing."""
    from autoint.explain.explanation import WhatIf
    from autoint.workspace.report import sample_report
    sample, run_path = about(now), now.run_path

    def build() -> str:
        return sample_report(run_path, explained, about=sample, interaction_baseline=baseline, reading=reading)

    st.download_button("Download handout", data=build, file_name=file_name(now, isinstance(explained, WhatIf)),
                       mime="text/html", key=f"{page}_handout", on_click="ignore", icon=":material/description:",
                       help="Everything on this page as one HTML file that opens anywhere, offline: the model card, "
                            "the CTR, every layer and head of the attention, the interactions and the verdict, the "
                            "attributions" + (" and the edits" if isinstance(explained, WhatIf) else "") + ". Charts "
                            "stay interactive, with PNG and SVG export.")
