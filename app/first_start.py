"""The first start: the background jobs that train the readable model, then the paper's, and their progress."""
from __future__ import annotations


import streamlit as st

from autoint.explain.explanation import attribution_methods
from autoint.model.presets import preset_config
from autoint.training import jobs
from autoint.training.jobs import ACTIVE, Job, JobQueue
from autoint.training.runs import MANIFEST, CheckpointError, clean_staging
from autoint.workspace import defaults
from autoint.workspace.defaults import FIRST_RUN_EPOCHS, FIRST_RUN_TRAINING, QUICK_RUN, READABLE_RUN
from autoint.workspace.sources import runs_root

from app.state import CORES, JOB_THREADS, data_source, finished_runs


@st.cache_resource
def job_queue(root: str) -> JobQueue:
    """One queue per runs folder and server process: it outlives reruns and sessions."""
    clean_staging(root, older_than_s=3600)  # half-written runs of a process killed long ago
    # A trainer takes every core while nobody explores (the activity file is old), its share otherwise.
    return JobQueue(root, threads=JOB_THREADS, idle_threads=CORES)


def mark_activity() -> None:
    """Someone is exploring: a background trainer gives the app its cores back (autoint.training.jobs.ThreadPacer).
    Not before the first run lands: a first start's page only waits, so its trainer keeps every core."""
    root = runs_root()
    try:
        if any(root.glob(f"*/{MANIFEST}")):
            jobs.mark_activity(root)
    except OSError:  # a read-only runs folder: nothing trains there either
        pass


def default_job(queue: JobQueue) -> Job | None:
    """The newest job training the readable default model (it saves the quick run on the way)."""
    return next((j for j in queue.jobs() if j.run_name in (READABLE_RUN, QUICK_RUN)), None)


# Settings laid over the presets of a first start (none: the presets as they are; tests make the models tiny).
FIRST_RUN_OVERRIDES: dict = {}


def first_run_plan() -> list[dict]:
    return defaults.first_run_plan(FIRST_RUN_EPOCHS)


def _submit_default(queue: JobQueue, plan: dict, data_dir, snapshot: bool = True) -> Job:
    return queue.submit(preset_config(plan["preset"], **FIRST_RUN_OVERRIDES), FIRST_RUN_TRAINING, data_dir,
                        run_name=plan["run_name"], snapshot=plan["snapshot"] if snapshot else None)


def first_run_training() -> None:
    """No run yet: train the readable model in the background (`defaults.first_run_plan`), show its progress,
    rerun at the quick run. The paper's model follows it (`paper_job`)."""
    queue = job_queue(str(runs_root()))
    source = data_source()
    job = default_job(queue)
    readable = first_run_plan()[0]
    if job is None or job.status not in ACTIVE:  # none yet, or it ended without leaving a run
        if job is not None and job.status != "finished":
            st.warning(f"The last default training ended: {job.description}. Starting it again.")
        for name in (QUICK_RUN, READABLE_RUN):
            if (runs_root() / name).exists():  # a default run that does not load: keep it for inspection
                st.error(f"{runs_root() / name} exists but cannot be used; see the Train page's registry.")
                return
        _submit_default(queue, readable, source.folder)
    config = preset_config(readable["preset"])
    st.info(f"No trained model yet, so the app trains its default: AutoInt with the **readable** preset "
            f"({config.layers} layers, {config.heads} heads, d={config.embed_dim}; the authors' layer, whose "
            f"attention can be read), on {source.folder.name}. The page continues by itself with a quick model "
            f"after {FIRST_RUN_EPOCHS} epochs; training goes on in the background to convergence (up to "
            f"{FIRST_RUN_TRAINING.epochs} epochs, early stopping on validation AUC), then the paper's own "
            f"configuration trains, for comparison.")
    _first_run_progress(queue)
    attribution_methods()  # imported now, while waiting, not after the quick run lands (0.4-0.5 s)


# Every fragment run ends with Streamlit's gc.collect(2) (cheap while `settle_heap` keeps the heap frozen, but a
# rescan run's walks everything): poll gently.
@st.fragment(run_every=2.0)
def _first_run_progress(queue: JobQueue) -> None:
    job = default_job(queue)
    if job is None:  # its folder was removed meanwhile: start again
        st.rerun(scope="app")
    if (job.snapshot is not None or job.status == "finished") and finished_runs():
        st.rerun(scope="app")  # a run to explain: the page continues
    last = job.latest
    text = job.description if last is None or job.status not in ACTIVE else \
        f"epoch {last['epoch']} of the {FIRST_RUN_EPOCHS} before the first model" + \
        (f", batch {last['step']}/{last['steps']}" if last["event"] == "step" else ", done")
    st.progress(job.progress_to(FIRST_RUN_EPOCHS), text=f"Training the readable model: {text}")
    if job.status in ("failed", "lost"):
        st.error(f"The default training {job.description}. Log: {job.folder / 'log.txt'}")


def converging_default() -> Job | None:
    """The job training the readable model to convergence, until its run lands. A job whose process ended
    without a word (lost: the machine restarted, the worker was killed) is started again; a cancelled or
    failed one is not (the quick run stays in use)."""
    queue = job_queue(str(runs_root()))
    job = default_job(queue)
    if job is None or job.run_name != READABLE_RUN or (runs_root() / READABLE_RUN).is_dir():
        return None
    if job.status == "lost" and (runs_root() / QUICK_RUN).is_dir():
        try:
            job = _submit_default(queue, first_run_plan()[0], job.spec["data_dir"], snapshot=False)
        except CheckpointError:  # another session started it again first
            job = default_job(queue)
    return job


def paper_job() -> Job | None:
    """The job training the paper's configuration to convergence, queued once the readable model has landed (one
    trainer at a time); None before that, or once its run exists."""
    plan = first_run_plan()[1]
    if not (runs_root() / READABLE_RUN).is_dir() or (runs_root() / plan["run_name"]).is_dir():
        return None
    queue = job_queue(str(runs_root()))
    job = next((j for j in queue.jobs() if j.run_name == plan["run_name"]), None)
    if job is None or job.status == "lost":
        readable = default_job(queue)
        data_dir = readable.spec["data_dir"] if readable is not None else data_source().folder
        try:
            job = _submit_default(queue, plan, data_dir)
        except CheckpointError:  # another session queued it first
            job = next((j for j in queue.jobs() if j.run_name == plan["run_name"]), None)
    return job
