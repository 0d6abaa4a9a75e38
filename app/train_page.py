"""Train: new runs in the background, the registry of finished runs, and two runs side by side."""
from __future__ import annotations


import streamlit as st

from autoint.datasets import recorded_dataset
from autoint.workspace import sources
from app import attention_readings, first_start, samples, state, views
from app import compare_view
from autoint.errors import AutoIntError
from autoint.explain.readings import PAPER_READING, READINGS
from autoint.figures import field_names, reading_grid, training_curves
from autoint.training.alignment import ALIGNMENT_ROWS
from autoint.training.shapley import EXACT_MAX_FIELDS
from autoint.training.jobs import ACTIVE
from autoint.model.autoint import AutoIntConfig, ConfigError
from autoint.model.presets import PRESET_DESCRIPTIONS, PRESETS
from autoint.training.paper import readable_verdict
from autoint.training.runs import read_manifest
from autoint.training.config import MAX_BATCH, MIN_BATCH, MIN_STEPS_PER_EPOCH, PAPER_LR, SMALL_BATCH_LR
from autoint.training.train import IN_MEMORY_MAX_BYTES, TrainConfig, choose_data_path

# The form's widget for each model setting, so a preset can fill the form (AutoInt+'s widths are two widgets).
SETTING_KEYS = {"layers": "train_layers", "embed_dim": "train_embed", "heads": "train_heads",
                "attn_dim": "train_attn", "dropout": "train_dropout", "residual": "train_residual",
                "scaled_attention": "train_scaled", "layer_norm": "train_layer_norm", "qkv_relu": "train_qkv_relu",
                "projection_bias": "train_projection_bias", "attention_dropout": "train_attention_dropout",
                "attention_alignment": "train_attention_alignment"}

source = state.data_source()
queue = first_start.job_queue(str(state.runs_root()))

st.title("Train and compare")

# ----------------------------------------------------------------------------- a new run


def fill_form(preset: str) -> None:
    """Put the preset's settings (over the paper's defaults) into the form, which can then be changed."""
    config = AutoIntConfig(**PRESETS[preset])
    for setting, key in SETTING_KEYS.items():
        st.session_state[key] = getattr(config, setting)
    st.session_state["train_plus"] = bool(config.dnn_hidden)
    if config.dnn_hidden:
        st.session_state["train_hidden"] = ",".join(map(str, config.dnn_hidden))



defaults = AutoIntConfig()
for setting, key in SETTING_KEYS.items():  # starting values through session state, so presets can replace them
    state.keep(key, getattr(defaults, setting))
state.keep("train_plus", False)
state.keep("train_hidden", "400,400")
if len(PRESETS) > 1:
    state.keep("train_preset", "paper")
    st.selectbox("Preset", list(PRESETS), key="train_preset", on_change=lambda: fill_form(
        st.session_state["train_preset"]), format_func=lambda name: f"{name}: {PRESET_DESCRIPTIONS[name]}",
        help="fills the form below with named settings; change any of them before starting")
    if (line := readable_verdict()) is not None:
        st.caption(line)
else:  # a selector with one choice would say nothing: say why there is one
    st.caption("Only the paper's model is offered as a preset." + (f" {line}" if (line := readable_verdict()) else ""))



def training_data() -> tuple[object, bool]:
    """Say which data the run will read, and why: (the prepared copy or None, whether training can start). A
    source too big to parse whole in memory (views.needs_preparing, the sidebar's rule) is prepared first."""
    prepared = views.prepared_copy(source)
    if prepared is not None:
        defaults = TrainConfig()
        encoded, limit = prepared.encoded_bytes(), IN_MEMORY_MAX_BYTES
        rows = sum(prepared.rows(s) for s in ("train", "val", "test"))
        if choose_data_path(prepared, defaults) == "in-memory":
            how = (f"loaded whole into memory: its encoded tensors take {views.size_text(encoded)}, within the "
                   f"{views.size_text(limit)} up to which the in-memory path (faster) is taken")
        else:
            how = (f"streamed through shuffle buffers of {defaults.buffer_rows:,} rows: its encoded tensors would "
                   f"take {views.size_text(encoded)}, over the {views.size_text(limit)} the in-memory path takes, "
                   f"so memory is bounded by the buffers")
        st.markdown(f":material/dataset: **Data:** the prepared copy `{prepared.path}` ({rows:,} rows), {how}. "
                    f"The explaining pages then read this run's samples from the same copy.")
        return prepared, True
    if source.has_catalog:
        st.markdown(f":material/dataset: **Data:** the {source.label} files, read whole into memory (small).")
        return None, True
    size = sources.raw_bytes(source)
    if not views.needs_preparing(source):
        st.markdown(f":material/dataset: **Data:** the raw files ({views.size_text(size)}), parsed whole into "
                    f"memory: under the {views.size_text(views.PREPARE_OVER_BYTES)} from which a data set is prepared "
                    f"first.")
        return None, True
    st.warning(f"**Prepare first.** The raw files ({views.size_text(size)}) are too big to parse whole into memory "
               f"for training (over {views.size_text(views.PREPARE_OVER_BYTES)}). Prepare them once (encoded Parquet "
               f"in {source.folder.name}/prepared/); runs then train on the prepared copy, streamed when it is big.",
               icon=":material/dataset:")
    task = views.preparer().task(("prepare", source.key))
    if task is not None and not task.done:
        st.caption("Preparing: its progress is in the sidebar; training can start when it is done.")
    elif st.button("Prepare", key="train_prepare", icon=":material/dataset:"):
        views.prepare_source(source)
        st.rerun()
    return None, False


prepared_copy, can_start = training_data()
with st.form("train_form"):
    st.markdown(f"**A new run** on **{source.label}** (the data set chosen in the sidebar). It trains in a "
                f"separate process ({state.JOB_THREADS} thread(s)), so the other pages stay usable meanwhile.")
    c1, c2, c3, c4 = st.columns(4)
    layers = c1.slider("Interacting layers", 0, 6, key="train_layers")
    embed_dim = c2.slider("Embedding size d", 4, 64, key="train_embed")
    heads = c3.slider("Heads H", 1, 8, key="train_heads")
    attn_dim = c4.slider("Attention size d' (per head)", 4, 64, key="train_attn")
    c1, c2, c3, c4 = st.columns(4)
    dropout = c1.slider("Dropout", 0.0, 0.9, step=0.05, key="train_dropout",
                        help="on each head's output of Eq. 6, in training only")
    epochs = c2.number_input("Epochs", 1, 100, 5, key="train_epochs")
    residual = c3.toggle("Residual connection (Eq. 8's W_Res)", key="train_residual")
    plus = c3.toggle("AutoInt+ (add a DNN)", key="train_plus")
    hidden = c4.text_input("AutoInt+ hidden widths", key="train_hidden",
                           help="comma-separated layer widths, used when AutoInt+ is on")
    name = c4.text_input("Run name (optional)", key="train_name", placeholder="e.g. deep-narrow")
    st.caption(f"Adam, early stopping on validation AUC. Batch {MAX_BATCH} and lr {PAPER_LR:g} where the training "
               f"split has {MAX_BATCH * MIN_STEPS_PER_EPOCH:,} rows or more (the paper's data sets); on smaller "
               f"splits the batch halves, down to {MIN_BATCH}, to keep {MIN_STEPS_PER_EPOCH} steps an epoch, and at "
               f"{MIN_BATCH} the lr is {SMALL_BATCH_LR:g}. The run's run.json records what it took.")
    with st.expander("Advanced: options from the authors' TensorFlow code (all off in the paper's model)"):
        a1, a2, a3 = st.columns(3)
        scaled = a1.checkbox("Scaled attention (scores ÷ √d')", key="train_scaled")
        layer_norm = a1.checkbox("Layer norm after each layer", key="train_layer_norm")
        qkv_relu = a2.checkbox("ReLU on query, key, value and W_Res", key="train_qkv_relu",
                               help="ReLU(W e) for all four projections, as the authors' tf.layers.dense(..., "
                                    "activation=relu) did")
        projection_bias = a2.checkbox("Bias in those projections", key="train_projection_bias")
        attention_dropout = a3.slider("Attention dropout", 0.0, 0.9, step=0.05, key="train_attention_dropout",
                                      help="dropout on the attention weights before Eq. 6, in training only; "
                                           "explanations always show the undropped weights")
        attention_alignment = a3.slider("Attention alignment", 0.0, 1.0, step=0.05, key="train_attention_alignment",
                                        help="weight of a training term that pulls the α·‖value‖ reading toward "
                                             f"the measured interactions of {ALIGNMENT_ROWS} samples of each batch "
                                             f"(the readable preset: 0.1; up to {EXACT_MAX_FIELDS} fields; a "
                                             "training step takes about 1.6 times as long)")
    submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                                      disabled=not can_start)

if submitted:
    try:
        try:
            widths = tuple(int(w) for w in hidden.replace(" ", "").split(",") if w) if plus else ()
        except ValueError:
            raise ConfigError(f"AutoInt+ hidden widths {hidden!r}: give whole numbers separated by commas, "
                              "e.g. 400,400.") from None
        if plus and not widths:
            raise ConfigError("AutoInt+ needs at least one hidden width, e.g. 400,400.")
        config = AutoIntConfig(embed_dim=embed_dim, attn_dim=attn_dim, heads=heads, layers=layers,
                               residual=residual, dropout=dropout, scaled_attention=scaled, layer_norm=layer_norm,
                               qkv_relu=qkv_relu, projection_bias=projection_bias,
                               attention_dropout=attention_dropout, attention_alignment=attention_alignment,
                               dnn_hidden=widths)
        which = {"prepared": prepared_copy.path} if prepared_copy is not None else {} if source.has_catalog else \
            {"spec": source.spec} if source.spec else {"dataset": source.dataset}
        job = queue.submit(config, TrainConfig(epochs=int(epochs)), source.folder, run_name=name.strip() or None,
                           **which)
        st.session_state.setdefault("train_my_jobs", []).append(job.id)  # this session follows its own jobs
        st.success(f"Queued {job.run_name}.")
    except AutoIntError as exc:  # bad settings, a taken run name: said on the form
        st.error(f"Not started: {exc}")

# ----------------------------------------------------------------------------- jobs in progress


@st.fragment(run_every=1.0 if queue.active() else None)
def jobs_panel() -> None:
    jobs = queue.jobs()
    active = [j for j in jobs if j.status in ACTIVE]
    # A job that just finished adds a run: rerun the whole page so the registry and sidebar see it.
    previously = st.session_state.get("train_active_jobs", set())
    now = {j.id for j in active}
    st.session_state["train_active_jobs"] = now
    if previously - now:
        st.rerun(scope="app")
    # Each session follows (and may cancel) the jobs it started; other sessions' jobs are one line each,
    # so a queued job's owner sees what runs ahead of it.
    mine = set(st.session_state.get("train_my_jobs", []))
    if not active:
        st.caption("No training job is running.")
    for job in [j for j in active if j.id not in mine]:
        st.caption(f"{job.run_name}: {job.status} on {job.spec['device']}, started by another session.")
    for job in [j for j in active if j.id in mine]:
        with st.container(border=True):
            top, button = st.columns([5, 1])
            top.markdown(f"**{job.run_name}** · {job.status}")
            button.button("Cancel", key=f"cancel_{job.id}", on_click=queue.cancel, args=(job.id,),
                          icon=":material/stop:")
            st.progress(job.progress, text=job.description)
            if job.steps:
                st.plotly_chart(training_curves({job.run_name: job.history}, steps={job.run_name: job.steps},
                                                title="Live: loss and validation AUC"),
                                key=f"live_{job.id}", config=state.chart_config(job.run_name))
    ended = [j for j in jobs if j.status not in ACTIVE and j.id in mine][:5]
    if ended:
        with st.expander("Recent jobs"):
            for job in ended:
                st.markdown(f"- **{job.run_name}**: {job.description}")


st.subheader("Jobs")
jobs_panel()

# ----------------------------------------------------------------------------- registry

st.subheader("Registry")
runs = state.finished_runs()
if not runs:
    st.info("No finished run yet.")
    st.stop()


in_use = state.current_run_path()


def row(run: dict) -> dict:
    config, metrics, trained = run.get("config", {}), run.get("metrics", {}), run.get("train_config", {})
    return {"in use": run["path"] == in_use, "run": run["name"], "model": run.get("model"),
            "layers": config.get("layers"), "heads": config.get("heads"), "d": config.get("embed_dim"),
            "d'": config.get("attn_dim"), "residual": config.get("residual"),
            "test AUC": metrics.get("test_auc"), "test log loss": metrics.get("test_logloss"),
            "epochs": metrics.get("epochs_run"), "batch": trained.get("batch_size"), "lr": trained.get("lr"),
            "created": run.get("created"),
            "data set": recorded_dataset(run.get("dataset")), "data": (run.get("data_dir") or "not recorded").rsplit("/", 1)[-1]}


st.dataframe([row(r) for r in runs], hide_index=True, key="train_registry",
             column_config={"test AUC": st.column_config.NumberColumn(format="%.4f"),
                            "test log loss": st.column_config.NumberColumn(format="%.4f"),
                            "lr": st.column_config.NumberColumn(format="%g", help="the learning rate it started "
                                                                                  "at (batch and lr: the run's own, "
                                                                                  "or the rule above)")})
names = {r["path"]: r["name"] for r in state.runs_for(source)}  # a run explains the data set it was trained on
use_column, _ = st.columns([2, 3])
if names:
    pick = use_column.selectbox(f"Run for the other pages (trained on {source.dataset})", list(names),
                                format_func=names.get, key="train_pick",
                                index=list(names).index(in_use) if in_use in names else 0)
    use_column.button("Use this run", key="train_use", on_click=lambda: st.session_state.update(run_path=pick),
                      icon=":material/check:")
else:
    use_column.caption(f"No run is trained on {source.label} yet.")
for broken in state.broken_runs():
    st.warning(f"{broken['name']} is not loadable and left out: {broken['error']}")

# ----------------------------------------------------------------------------- compare

st.subheader("Compare runs")
if len(names) < 2:
    st.caption(f"Train a second run on {source.label} to compare two side by side.")
    st.stop()
state.keep("train_compare", list(names)[:2])  # through session state: a link may set it (app/links.py)
chosen = st.multiselect("Runs", list(names), max_selections=2, format_func=names.get, key="train_compare")
if len(chosen) != 2:
    st.caption("Pick two runs.")
    st.stop()
manifests = {path: read_manifest(path, vocabularies=False) for path in chosen}  # metrics and settings: no schema
metric_rows = ["model", "test_auc", "test_logloss", "val_auc", "val_logloss", "best_epoch", "epochs_run", "params"]
setting_rows = ["layers", "heads", "embed_dim", "attn_dim", "residual", "dropout", "scaled_attention", "layer_norm",
                "qkv_relu", "projection_bias", "attention_dropout"]
paper = AutoIntConfig().to_json()  # a run saved before an option existed trained with the paper's value of it
st.dataframe({"metric": metric_rows + setting_rows,
              **{names[p]: [str(m["metrics"].get(k, "")) for k in metric_rows]
                 + [str(m["config"].get(k, paper[k])) for k in setting_rows]
                 for p, m in manifests.items()}}, hide_index=True, key="train_compare_table")
state.show_figure(training_curves({names[p]: m.get("history", []) for p, m in manifests.items()},
                                  title="Loss and validation AUC per epoch"), "compare-curves", "train_curves")

now = samples.current()
values = now.values
st.markdown(f"**The same sample under both** ({now.caption}; change it on Explore)")
models = {path: state.load_model(path) for path in chosen}
readable = [path for path in chosen if models[path].config.layers]  # runs with attention to read
if readable:  # one reading for every run shown; first offered: the first such run's best
    reading, _ = attention_readings.reading_choice("train_compare", readable[0], source.key)
    title = READINGS[reading].title
for column, path in zip(st.columns(2), chosen):
    with column:
        if not models[path].config.layers:
            explanation = views.explanation(path, source.key, values)
            st.metric(f"CTR under {names[path]}", f"{explanation.ctr:.1%}")
            st.caption("0 layers: no attention.")
            continue
        explanation = views.explanation(path, source.key, values, (), "mean")
        st.metric(f"CTR under {names[path]}", f"{explanation.ctr:.1%}")
        shown = explanation.readings[reading]
        # half a page wide: rows named by field alone (the sample's values are the same under both runs), so
        # long values such as a genre list do not squeeze the maps to slivers
        state.show_figure(reading_grid(shown.per_head, field_names(explanation.labels), reading=reading, unit=title,
                                       title=f"{names[path]} · {title}", entropy=explanation.head_entropy,
                                       uniform=explanation.near_uniform),
                          f"{reading}-{names[path]}", f"compare_{names[path]}")
        text = f"**{names[path]}**, {title}: this sample ρ {shown.agreement:+.2f}"
        task = attention_readings.readings_task(path, source.key)  # this run's readings over its test split
        if task.wait(views.QUICK_S):
            scored = task.result()
            split, best = scored["scores"][reading], scored["default"]
            text += (f"; split ρ {split['agreement']:+.2f}, precision@3 {split['precision_at_3']:.2f}."
                     + ("" if best == reading else f" Its own best reading: {READINGS[best].title} (split ρ "
                                                    f"{scored['scores'][best]['agreement']:+.2f})."))
        else:  # still being scored: the other run's column is drawn meanwhile, this caption follows
            text += "."
            views.background_progress(task.key)
        st.caption(text + ("" if reading == PAPER_READING else " Raw α is the paper's reading."))

compare_view.show(names, chosen, source)  # two or more runs on what they combine, over the test split
