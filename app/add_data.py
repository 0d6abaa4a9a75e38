"""Add a data set: a CSV, TSV or Parquet file (uploaded, or a path on this server) becomes data/<name>/ with its
spec. The spec is inferred (autoint.datasets.infer), edited in a table, checked on the data and saved; every step
but the drawing is autoint.workspace.adding's."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import state, views
from autoint.data.schema import ROLES
from autoint.datasets.infer import EncodingError, infer_spec
from autoint.datasets.spec import KINDS
from autoint.errors import DataError
from autoint.workspace import adding

# Widgets whose values belong to one file: emptied when it is saved or given up.
FILE_KEYS = ("add_path", "add_name", "add_label", "add_spec_table", "add_replace")
FLOW_KEYS = ("add_staged", "add_inferred")
# The spec table's column widths in pixels (tests/test_browser_adding.py finds a cell by them).
TABLE_WIDTHS = {"column": 130, "kind": 110, "role": 80, "min_count": 95, "transform": 90, "left out": 80,
                "delimiter": 80, "evidence": 400}


def discard_staging() -> None:
    """Remove the staging folder held in st.session_state (one browser tab's upload), if any: the file given up,
    replaced, or cancelled."""
    staged = st.session_state.pop("add_staged", None)
    st.session_state.pop("add_inferred", None)
    if staged and staged.get("folder"):
        try:
            adding.staging_of(staged["folder"]).discard()
        except state.USER_ERRORS:  # saved or tidied away already
            pass


def start_over() -> None:
    """Cancel: the staged file removed, the inputs emptied (the uploader by a new key)."""
    discard_staging()
    for key in FILE_KEYS:
        st.session_state.pop(key, None)
    st.session_state["add_round"] = st.session_state.get("add_round", 0) + 1


st.title("Add a data set")
adding.clean_staging()  # staging folders of sessions that went away
limit = adding.upload_limit_mb()
if st.session_state.pop("add_reset", False):  # just saved: the inputs start empty
    for key in FILE_KEYS:
        st.session_state.pop(key, None)
    for key in FLOW_KEYS:
        st.session_state.pop(key, None)
    st.session_state["add_round"] = st.session_state.get("add_round", 0) + 1

saved = st.session_state.get("add_saved")
if saved:
    st.success(f"Saved **{saved['name']}** in `{saved['folder']}/` ({saved['file']} and spec.toml). It is the data "
               f"set in use now (the sidebar's).", icon=":material/check_circle:")
    for message in saved["warnings"]:
        st.warning(message, icon=":material/warning:")
    link, download = st.columns(2)
    link.page_link("app/train_page.py", label=f"Train a model on {saved['name']}", icon=":material/model_training:")
    download.download_button("Download its spec", data=saved["spec_text"], file_name=f"{saved['name']}.toml",
                             mime="application/toml", key="add_download", icon=":material/download:")
    st.divider()

st.caption(f"A CSV or TSV file (UTF-8, plain or gzipped) or a Parquet file, up to **{limit:,} MB** (set by "
           f"`{adding.UPLOAD_LIMIT_ENV}`). Its spec is guessed from its first rows; check and change it below, then "
           f"save: the file and its spec.toml go to `data/NAME/`, and the sidebar offers it from then on.")
round_ = st.session_state.get("add_round", 0)
upload = st.file_uploader("Data file", type=list(adding.UPLOAD_TYPES), key=f"add_upload_{round_}",
                          max_upload_size=limit)
path = st.text_input("… or the path of a file on this server", key="add_path",
                     placeholder="/srv/exports/clicks.csv", disabled=upload is not None)
origin = (("upload", upload.file_id, upload.name, upload.size) if upload is not None else
          ("path", path.strip()) if path.strip() else None)

staged = st.session_state.get("add_staged")
if origin is None:
    discard_staging()
    st.stop()
if staged is None or staged["origin"] != origin or (staged.get("folder") and not Path(staged["folder"]).is_dir()):
    discard_staging()
    st.session_state.pop("add_saved", None)
    for key in ("add_label", "add_spec_table", "add_replace"):
        st.session_state.pop(key, None)
    try:
        staging = adding.stage_upload(upload) if upload is not None else adding.stage_path(path)
        staged = {"origin": origin, "folder": str(staging.folder), "file": staging.file.name}
        st.session_state["add_name"] = adding.suggest_name(staging.file.name)
    except state.USER_ERRORS as exc:  # a bad name, over the limit, no such file: nothing was kept
        staged = {"origin": origin, "error": str(exc)}
    st.session_state["add_staged"] = staged
if "error" in staged:
    st.error(staged["error"], icon=":material/error:")
    st.stop()
staging = adding.staging_of(staged["folder"])

name_column, label_column, cancel_column = st.columns([2, 3, 1], vertical_alignment="bottom")
name = name_column.text_input("Name (its folder: data/NAME/)", key="add_name")
label = label_column.text_input("Label: a 0/1 column, or a rule such as rating > 3", key="add_label",
                                placeholder="empty: the one column holding two values",
                                help="Which rows are clicks. Without it, the only column holding exactly two "
                                     "numbers in every row is taken.")
cancel_column.button("Cancel", key="add_cancel", on_click=start_over, icon=":material/close:",
                     help="Give this file up: nothing of it is kept.")

token = (staged["folder"], label.strip())
inferred_state = st.session_state.get("add_inferred")
if inferred_state is None or inferred_state["token"] != token:
    st.session_state.pop("add_spec_table", None)  # edits are by row: a new table starts unedited
    try:
        inferred_state = {"token": token, "inferred": infer_spec(staging.file, label=label.strip() or None)}
    except state.USER_ERRORS as exc:
        inferred_state = {"token": token, "error": str(exc),
                          "latin1": isinstance(exc, EncodingError) and exc.latin1}
        if isinstance(exc, DataError) and not label.strip() and not inferred_state["latin1"]:
            discard_staging()  # the file itself is unusable: keep nothing of it
            st.session_state["add_staged"] = {"origin": origin, "error": str(exc)}
    st.session_state["add_inferred"] = inferred_state
if "error" in inferred_state:
    st.error(inferred_state["error"], icon=":material/error:")
    if inferred_state.get("latin1") and st.button(
            "Read it as latin-1: convert the file to UTF-8", key="add_latin1", icon=":material/translate:",
            help="Rewrites the uploaded copy (not your original) from latin-1 to UTF-8; check the preview after."):
        adding.convert_from_latin1(staging)
        st.session_state.pop("add_inferred", None)
        st.rerun()
    st.stop()
inferred = inferred_state["inferred"]

name_ok = True
try:
    adding.check_name(name)
except state.USER_ERRORS as exc:
    st.error(str(exc), icon=":material/error:")
    name_ok = False

seen = f"the first {inferred.rows:,} rows" if inferred.more_rows else f"all {inferred.rows:,} rows"
st.markdown(f"**Label:** `{inferred.label}` ({inferred.label_evidence}). Read from {seen}"
            + (f"; {inferred.separator_evidence}" if inferred.separator_evidence else "") + ".")
preview_column, table_column = st.columns([1, 2])
with preview_column:
    st.markdown(f"**The first {adding.PREVIEW_ROWS} rows** of {staging.file.name}")
    st.dataframe(adding.preview(inferred), key="add_preview", hide_index=True)
with table_column:
    st.markdown("**The spec**: one row per column (the label's aside). Change a kind, role, min count or transform, "
                "or tick *left out*; the evidence says what each guess rests on.")
    edited = st.data_editor(
        pd.DataFrame(adding.spec_rows(inferred), columns=list(adding.TABLE_COLUMNS)), key="add_spec_table",
        hide_index=True, num_rows="fixed", disabled=["column", "evidence"],
        column_config={  # fixed widths (TABLE_WIDTHS): the same layout on every screen
            "column": st.column_config.TextColumn("column", width=TABLE_WIDTHS["column"]),
            "kind": st.column_config.SelectboxColumn("kind", options=list(KINDS), required=True,
                                                     width=TABLE_WIDTHS["kind"]),
            "role": st.column_config.SelectboxColumn("role", options=list(ROLES), width=TABLE_WIDTHS["role"],
                                                     help="user, item or context; empty: none"),
            "min_count": st.column_config.NumberColumn("min count", min_value=1, step=1,
                                                       width=TABLE_WIDTHS["min_count"],
                                                       help="categorical and multi-valued: values seen fewer times "
                                                            "in training share the <unknown> slot"),
            "transform": st.column_config.SelectboxColumn("transform", options=list(adding.TABLE_TRANSFORMS),
                                                          width=TABLE_WIDTHS["transform"],
                                                          help="numeric only; bucket needs edges: write it in the "
                                                               "downloaded spec"),
            "delimiter": st.column_config.TextColumn("delimiter", width=TABLE_WIDTHS["delimiter"],
                                                     help="multi-valued: the text between values"),
            "left out": st.column_config.CheckboxColumn("left out", width=TABLE_WIDTHS["left out"]),
            "evidence": st.column_config.TextColumn("evidence", width=TABLE_WIDTHS["evidence"]),
        })

try:
    text = adding.spec_from_rows(inferred, edited, name=name if name_ok else None)
except state.USER_ERRORS as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
with st.expander("The spec as TOML"):
    st.code(text, language="toml")

st.subheader("Checks")
task = views.submit(("add-check", staged["folder"], adding.spec_digest(text)),
                    lambda progress: adding.check_spec(staging, text),
                    f"Loading {staging.file.name} by this spec and checking it")
try:
    checks = views.result_of(task)
except state.USER_ERRORS as exc:
    st.error(f"The data does not load by this spec: {exc}", icon=":material/error:")
    st.stop()
for check in checks:
    words = f"**{check.code.replace('_', ' ')}**" + (f" ({check.field})" if check.field else "") + f": {check.message}"
    (st.error if check.level == "error" else st.warning)(words, icon=":material/warning:")
if not checks:
    st.success("No warnings: balanced enough classes, few unknown values, no constant field, no field that alone "
               "predicts the label, few repeated rows.", icon=":material/check:")

replace = False
if name_ok and adding.name_taken(name):
    replace = st.checkbox(f"A data set named {name} exists (data/{name}/): replace it", key="add_replace")
if st.button("Save data set", key="add_save", type="primary", icon=":material/save:", disabled=not name_ok):
    try:
        done = adding.save_data_set(staging, name, text, replace=replace)
    except state.USER_ERRORS as exc:
        st.error(f"Not saved: {exc}", icon=":material/error:")
    else:
        st.session_state["data_key"] = adding.saved_source(done).key  # the sidebar's choice
        st.session_state["add_saved"] = {"name": name, "folder": str(done.folder), "file": staging.file.name,
                                         "spec_text": done.spec.read_text(encoding="utf-8"),
                                         "warnings": [c.message for c in done.warnings]}
        st.session_state["add_reset"] = True
        st.rerun()
