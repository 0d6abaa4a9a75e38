"""AutoInt Explorer: the frame. Navigation, the sidebar (device, model, data set), first-run help.

`make run` starts it; the pages live in app/ and call autoint/ for every number they show.
"""
from __future__ import annotations

import logging
import traceback

import streamlit as st
import torch

from autoint.workspace import sources
from app import first_start, heap, links, state, views
from autoint.datasets.download import DownloadError, download_ml1m
from autoint.training.jobs import ACTIVE

st.set_page_config(page_title="AutoInt Explorer", page_icon=":material/hub:", layout="wide")
torch.set_num_threads(state.APP_THREADS)  # the other cores are for a background training job

RECOMMEND = st.Page("app/recommend.py", title="Recommend", icon=":material/movie:", url_path="recommend")
PAGES = [
    st.Page("app/explore.py", title="Explore", icon=":material/search:", default=True),
    st.Page("app/what_if.py", title="What-if", icon=":material/tune:", url_path="what-if"),
    st.Page("app/correlations.py", title="Dataset correlations", icon=":material/grid_on:", url_path="correlations"),
    st.Page("app/train_page.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("app/add_data.py", title="Add a data set", icon=":material/upload_file:", url_path="add-data"),
    RECOMMEND,  # only for a data set with users and items (state.offers_recommendations)
    st.Page("app/learn.py", title="Learn", icon=":material/school:", url_path="learn"),
    st.Page("app/paper.py", title="Paper", icon=":material/article:", url_path="paper"),
]


def offer_download(source: state.DataSource) -> None:
    """Without ML-1M: say so, offer the download, and explain that the synthetic data stands in."""
    st.warning(f"**Synthetic data.** MovieLens-1M was not found in `{source.requested}`, so the app runs on "
               f"synthetic ratings whose clicks follow planted field pairs (`{source.folder}`). Download "
               f"MovieLens-1M below, or set `AUTOINT_DATA_DIR` to a folder that holds it.",
               icon=":material/science:")
    if st.button("Download MovieLens-1M (about 6 MiB)", key="download_ml1m", icon=":material/download:"):
        bar = st.progress(0.0, text="Connecting to files.grouplens.org ...")

        def progress(received: int, total: int | None) -> None:
            fraction = received / total if total else 0.0
            bar.progress(min(fraction, 1.0), text=f"Downloaded {views.size_text(received)}"
                         + (f" of {views.size_text(total)}" if total else ""))
        try:
            download_ml1m(source.requested, progress=progress)
        except DownloadError as exc:
            bar.empty()
            st.error(f"The download failed: {exc} The app stays on the synthetic data.")
            return
        st.cache_resource.clear()
        st.rerun()


def sidebar(source: state.DataSource) -> None:
    with st.sidebar:
        dev = state.device()
        name = f"CUDA · {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else \
            f"CPU · {torch.get_num_threads()} thread(s) for exploring"
        st.markdown(f"**Device** \n{name}")
        choose_data_set(source)
        offer_prepare(source)
        runs = state.runs_for(source)
        chosen = state.current_run_path()
        if runs:
            paths = [r["path"] for r in runs]
            by_path = {r["path"]: r for r in runs}
            st.session_state["sidebar_run"] = chosen
            st.selectbox("**Model in use**", paths, key="sidebar_run",
                         format_func=lambda p: by_path[p]["name"],
                         on_change=lambda: st.session_state.update(run_path=st.session_state["sidebar_run"]),
                         help="Every page explains this run; the runs listed are those trained on this data "
                              "set. Train more on the Train page.")
            run = by_path[chosen]
            config, metrics = run.get("config", {}), run.get("metrics", {})
            auc = metrics.get("test_auc")
            st.caption(f"{run.get('model')} · {config.get('layers')} layers × {config.get('heads')} heads · "
                       f"d={config.get('embed_dim')}, d'={config.get('attn_dim')}"
                       + (f" · test AUC {auc:.4f}" if isinstance(auc, float) else ""))
        else:
            st.markdown("**Model in use** \nnone yet on this data set")
        if source.has_catalog:
            background_training(runs)
        st.radio("Chart export format", ["png", "svg"], key="image_format", horizontal=True,
                 format_func=str.upper, help="What the camera button in each chart's toolbar saves.")


def choose_data_set(source: state.DataSource) -> None:
    """The data sets found (AUTOINT_DATA_DIR's, then each folder of data/): a switch when there is a choice."""
    sources = state.data_sources()
    if len(sources) == 1:
        st.markdown(f"**Data set** \n{source.label}")
        return
    labels = [s.label for s in sources]  # the widget tells options apart by their text: two folders of one name
    shown = {s.key: s.label if labels.count(s.label) == 1 else f"{s.label} ({s.folder})" for s in sources}
    st.session_state["sidebar_data"] = source.key
    st.selectbox("**Data set**", list(shown), key="sidebar_data", format_func=shown.get,
                 on_change=lambda: st.session_state.update(data_key=st.session_state["sidebar_data"]),
                 help="The data sets found under data/ (one folder each; see data/README.md) and in "
                      "AUTOINT_DATA_DIR. Each has its own models.")


def offer_prepare(source: state.DataSource) -> None:
    """A big data set (raw files over views.PREPARE_OVER_BYTES) not prepared yet: a button that prepares it once in
    the background (autoint.datasets.prepared), with its progress; new runs then train on the copy, and the pages read the
    samples of a run trained on it from the copy."""
    size = sources.raw_bytes(source)
    if size <= views.PREPARE_OVER_BYTES:
        return
    if views.prepared_copy(source) is not None:
        st.caption(f"Prepared copy: new runs train on it, and the pages read the samples of a run trained on it "
                   f"from it, not from the {views.size_text(size)} of raw files.")
        return
    task = views.preparer().task(("prepare", source.key))
    if task is not None and not task.done:
        views.background_progress(task.key, "prepare")
        return
    if task is not None and task.error is not None:
        if isinstance(task.error, state.USER_ERRORS):
            st.error(f"Preparing failed: {task.error}", icon=":material/error:")
        else:
            logging.getLogger("autoint.app").error("preparing failed\n%s", "".join(
                traceback.format_exception(task.error)))
            st.error(f"Preparing failed ({type(task.error).__name__}: {task.error}). The details are in the server "
                     "log.", icon=":material/bug_report:")
    st.caption(f"**Not prepared yet.** {views.size_text(size)} of raw files are parsed whole on every load. Prepare "
               f"them once (encoded Parquet in {source.folder.name}/prepared/): new runs train on the copy, and the "
               f"pages read the samples of a run trained on it from the copy.")
    if st.button("Prepare", key="prepare_data", icon=":material/dataset:"):
        views.prepare_source(source)
        st.rerun()


def background_training(runs: list[dict]) -> None:
    """While the readable model trains on to convergence, say so: a better model is coming. Then the paper's
    configuration trains (queued once the readable model has landed), for the paper's/readable toggle."""
    job = first_start.converging_default()
    if job is None:
        paper = first_start.paper_job()
        if paper is not None and paper.status in ACTIVE:
            converging_progress(paper.id, "The paper's model trains in the background, for comparison with the "
                                          "readable one (Explore's toggle)")
        return
    if not any(r["name"] == state.QUICK_RUN for r in runs):
        return  # still before the quick run (the page itself shows that progress)
    if job.status in ACTIVE:
        converging_progress(job.id, "**A better model is coming.** The readable model trains on in the background "
                                    "until validation AUC stops improving")
    else:
        st.caption(f"The readable model's training to convergence {job.description}; the quick model stays.")


@st.fragment(run_every=5.0)  # an epoch takes 10 s or more; each fragment run costs a gc.collect (app/state.py)
def converging_progress(job_id: str, words: str) -> None:
    job = first_start.job_queue(str(state.runs_root())).job(job_id)
    if job.status not in ACTIVE:
        st.rerun(scope="app")  # the converged run landed (or the job ended): swap to it on a full run
    epochs, quick = job.history, job.snapshot
    text = f"epoch {epochs[-1]['epoch']} of up to {job.spec['epochs']}, validation AUC " \
           f"{max(e['val_auc'] for e in epochs):.4f}" if epochs else job.description
    if quick is not None:
        text += f" (quick model: {quick['val_auc']:.4f})"
    threads = job.thread_switches
    if threads:
        text += f" · {threads[-1]['threads']} thread(s)"
    st.progress(job.progress, text=f"{words}: {text}.")


def main() -> None:
    heap.settle_heap()  # Streamlit's collect after this run walks only what the run makes (app/state.py)
    opened = links.opened()  # a link opened (not the URL this session wrote): its state goes in first (app/links.py)
    notes = links.restore_data() if opened else []
    try:
        source, problem = state.data_source(), None
    except state.USER_ERRORS as exc:  # shown below, in the frame, once the navigation exists
        source, problem = None, exc
    navigation = st.navigation([page for page in PAGES if page is not RECOMMEND
                                or (source is not None and state.offers_recommendations(source))])
    first_start.mark_activity()  # someone is exploring: a background trainer leaves the app its cores
    slot = None
    try:
        if problem is not None:
            raise problem
        if opened:
            notes += links.restore(navigation.url_path)
        sidebar(source)
        slot = st.sidebar.empty()  # the link to this view, once the page has drawn
        links.warn(notes)
        swapped = state.take_swap_message()
        if swapped:
            st.toast(swapped, icon=":material/upgrade:")
            st.success(swapped, icon=":material/upgrade:")
        if source.default_missing:
            offer_download(source)
        elif source.synthetic:
            st.info(f"**Synthetic data** (`{source.folder}`): not real {'ratings' if source.has_catalog else 'data'}"
                    "; clicks follow planted field pairs listed in its planted_interactions.json.",
                    icon=":material/science:")
        links.publish(navigation.url_path, slot, source, write_url=False)  # the link as the run starts, in the
        # sidebar only: a page that ends early (st.stop) still shows one; the URL is written once the page drew
        navigation.run()
    except state.USER_ERRORS as exc:
        st.error(str(exc), icon=":material/error:")
    except Exception as exc:  # a bug: say what happened, keep the page usable, log the trace for us
        logging.getLogger("autoint.app").error("unexpected error\n%s", traceback.format_exc())
        st.error(f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the server log.",
                 icon=":material/bug_report:")
    finally:
        first_start.mark_activity()  # and the end of this run: a long computation counts as exploring too
        if problem is None:  # the state as the page left it (after an st.stop(), drawing raises again: kept as it was)
            links.publish(navigation.url_path, slot, source)  # the state into the URL, the link into the sidebar


main()
