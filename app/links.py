"""A link to any view: the URL's query parameters carry the whole state of a page.

Each page declares here, in order, the parameters that make up its state (`PAGES`, by the page's url_path). Each
parameter reads its value from the URL into this session's state (the keys of the page's widgets, set before they
are drawn) and writes it back from that state; a value this server cannot show (a missing run or data set, an
unknown field or reading, a row, layer or head out of range, a malformed time) is refused with a sentence that names
it, and the page shows its default instead. The frame (streamlit_app.py) calls `restore_data` and `restore` when the
URL is not the one this session wrote last (a link opened in a new session, the browser's back button), and
`publish` after the page drew: the URL follows every click, and the sidebar shows the link to copy. The pages only
draw; docs/links.md lists the parameters.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from app import state
from autoint.errors import AutoIntError

WRITTEN = "links_written"  # the parameters this session wrote last: a URL that differs was opened, so it is read


class BadLink(ValueError):
    """A value of a link that this server cannot show; the message names it and what the page shows instead."""


class View:
    """What a page's parameters read and check against, loaded on demand (every load is cached by the pages)."""

    def __init__(self, page: str, drawn: bool = False, source=None):
        self.page = page
        self.drawn = drawn  # after the page drew: the sidebar has resolved the run in use (no second listing)
        if source is not None:  # the frame's, of this run (no second scan of the data sets)
            self.source = source

    @cached_property
    def source(self):
        return state.data_source()

    @cached_property
    def run_path(self) -> str | None:
        if self.drawn and "sidebar_run" in st.session_state:
            return st.session_state["sidebar_run"]
        return state.current_run_path()

    @cached_property
    def model(self):
        if self.run_path is None:
            raise BadLink("no model is trained on this data set yet")
        return state.load_model(self.run_path)

    @cached_property
    def catalog(self):
        return state.catalog(self.source.key) if self.source.has_catalog else None


@dataclass(frozen=True)
class Param:
    """One piece of a page's state: its query parameters (`names`), how the URL's values (`read`: {name: [values]})
    go into the session state (raising BadLink), and how the session state goes into the URL (`write`: {name: value
    or [values]}, without the names the state does not hold yet)."""

    names: tuple[str, ...]
    read: Callable[[View, dict], None]
    write: Callable[[View], dict]


def widget(name: str, key: str | Callable[[View], str], parse: Callable[[View, str], object],
           show: Callable[[View, object], str] = lambda view, value: str(value), default=None) -> Param:
    """A parameter that is one widget's value (`key`, or a function of the view giving it); `default` is left out of
    the URL."""
    key_of = key if callable(key) else (lambda view: key)

    def read(view: View, given: dict) -> None:
        st.session_state[key_of(view)] = parse(view, given[name][-1])

    def write(view: View) -> dict:
        value = st.session_state.get(key_of(view), default)
        return {} if value is None or value == default else {name: show(view, value)}
    return Param((name,), read, write)


def whole(text: str, what: str, low: int, high: int) -> int:
    """`text` as an integer from `low` to `high`, else BadLink naming it."""
    try:
        number = int(text)
    except ValueError:
        raise BadLink(f"{what} {text!r} is not a whole number") from None
    if not low <= number <= high:
        raise BadLink(f"{what} {number} is out of range ({low} to {high:,})")
    return number


def minute(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M")


def parse_time(text: str) -> float:
    from autoint.data.encoding import parse_time as parse
    try:
        return parse(text)
    except AutoIntError:
        raise BadLink(f"time {text!r} is not a time (2000-12-31T22:12, UTC, or Unix seconds)") from None


def pair(text: str, what: str) -> tuple[str, str]:
    """`Field:value` -> (field, value)."""
    name, colon, value = text.partition(":")
    if not colon:
        raise BadLink(f"{what} {text!r} is not FIELD:VALUE")
    return name, value


def field_of(view: View, name: str, fields: list, what: str):
    by_name = {f.name: f for f in fields}
    if name not in by_name:
        raise BadLink(f"{what}: unknown field {name!r} (this model's are {', '.join(by_name)})")
    return by_name[name]


def known_value(f, value: str, what: str) -> str:
    if value not in f._lookup:
        raise BadLink(f"{what}: {f.name} has no value {value!r} in this model's vocabulary")
    return value


# ----------------------------------------------------------------------------- the run and the sample


def read_run(view: View, given: dict) -> None:
    name = given["run"][-1]
    runs = {r["name"]: r["path"] for r in state.runs_for(view.source)}
    if name not in runs:
        raise BadLink(f"run **{name}** is not on this server (for {view.source.label}); showing the default "
                      "model instead")
    state.use_run(runs[name])
    view.__dict__.pop("run_path", None)


RUN = Param(("run",), read_run, lambda view: {"run": Path(view.run_path).name} if view.run_path else {})


def read_sample(view: View, given: dict) -> None:
    """user, movie and time of a catalogued data set (a time left out: the time of the pair's real rating). A bad
    one is named, the others still apply."""
    from app import samples
    cat = view.catalog
    if cat is None:
        raise BadLink(f"user, movie and time pick a sample of a data set of users and items; {view.source.label} "
                      "has none (give row=N)")
    sample, bad = dict(samples.current_sample(cat)), []
    for name, check in (("user", cat.check_user), ("movie", cat.check_movie)):
        if name in given:
            text = given[name][-1]
            try:
                check(int(text))
                sample[name] = int(text)
            except ValueError:
                bad.append(f"{name} {text!r} is not an id")
            except AutoIntError as exc:
                bad.append(f"{name} {text!r}: {str(exc).rstrip('.')}")
    stamp = cat.sample(sample["user"], sample["movie"])["RequestTime"]  # the real rating's time, else the last
    if "time" in given:
        try:
            stamp = cat.check_time(parse_time(given["time"][-1]))
        except BadLink as exc:
            bad.append(str(exc))
        except AutoIntError as exc:
            bad.append(f"time {given['time'][-1]!r}: {str(exc).rstrip('.')}")
    sample["time"] = samples.request_time(cat, stamp)
    st.session_state["sample"] = sample
    when = state.to_datetime(sample["time"])
    for page in ("explore", "recommend"):
        st.session_state[f"{page}_date"], st.session_state[f"{page}_time"] = when.date(), when.time()
    st.session_state["explore_user"] = st.session_state["recommend_user"] = sample["user"]
    st.session_state["explore_movie"] = sample["movie"]
    if bad:
        raise BadLink("; ".join(bad) + "; the page shows its default there")


def write_sample(view: View) -> dict:
    sample = st.session_state.get("sample")
    if not sample or not view.source.has_catalog:
        return {}
    return {"user": str(sample["user"]), "movie": str(sample["movie"]), "time": minute(sample["time"])}


SAMPLE = Param(("user", "movie", "time"), read_sample, write_sample)


def read_row(view: View, given: dict) -> None:
    from app import samples, views
    if view.run_path is None:
        raise BadLink("row: no model is trained on this data set yet")
    total = views.split_total(view.source, view.run_path, "test")
    samples.choose_row(view.source, whole(given["row"][-1], "row", 0, total - 1))


def write_row(view: View) -> dict:
    rows = st.session_state.get("rows", {})
    return {"row": str(rows[view.source.key])} if view.source.key in rows and not view.source.has_catalog else {}


ROW = Param(("row",), read_row, write_row)


def read_where(view: View, given: dict) -> None:
    """Explore's filters of a data set without a catalogue: where=FIELD:VALUE, up to four."""
    from autoint.data.samples import filterable
    chosen = {}
    for text in given["where"][:4]:
        name, value = pair(text, "where")
        f = field_of(view, name, filterable(view.model.schema), "where")
        chosen[name] = known_value(f, value, "where")
    st.session_state["explore_filter_fields"] = list(chosen)
    for name, value in chosen.items():
        st.session_state[f"explore_value_{name}"] = value
        if state.large_vocabulary(view.model.schema[name]):  # its picker lists what a search finds
            st.session_state[f"explore_search_{name}"] = value


def write_where(view: View) -> dict:
    names = st.session_state.get("explore_filter_fields") or []
    chosen = [f"{n}:{st.session_state[f'explore_value_{n}']}" for n in names if f"explore_value_{n}" in
              st.session_state]
    return {"where": chosen} if chosen else {}


WHERE = Param(("where",), read_where, write_where)


# ----------------------------------------------------------------------------- the attention


def layer(page: str) -> Param:
    def parse(view: View, text: str) -> int:
        layers = view.model.config.layers
        if not layers:
            raise BadLink(f"layer {text}: this model has no interacting layer")
        return whole(text, "layer", 1, layers)
    return widget("layer", f"{page}_layer", parse)


def head(page: str, mean: bool = False) -> Param:
    """A head, from 1; on What-if also `mean` (the mean of the heads)."""
    def parse(view: View, text: str):
        if mean and text == "mean":
            return "mean of heads"
        return whole(text, "head", 1, view.model.config.heads)
    return widget("head", f"{page}_head", parse, lambda view, h: "mean" if h == "mean of heads" else str(h))


def reading(page: str) -> Param:
    """The attention reading shown (attention_readings.reading_choice keeps it per page and run)."""
    def parse(view: View, text: str) -> str:
        from autoint.explain.readings import NAMES
        if text not in NAMES:
            raise BadLink(f"unknown reading {text!r} (the readings: {', '.join(NAMES)}); showing the model's best")
        return text
    return widget("reading", lambda view: f"{page}_reading::{view.run_path}", parse)


def choice(name: str, key: str, options: dict, default=None) -> Param:
    """A widget whose values have names in the URL: `options` {url name: widget value}."""
    names = {value: text for text, value in options.items()}

    def parse(view: View, text: str):
        if text not in options:
            raise BadLink(f"{name} {text!r} is not one of {', '.join(options)}")
        return options[text]
    return widget(name, key, parse, lambda view, value: names[value], default)


def read_methods(view: View, given: dict) -> None:
    from autoint.explain.explanation import METHOD_NAMES
    methods = [m for m in given["methods"][-1].split(",") if m]
    for m in methods:
        if m not in METHOD_NAMES:
            raise BadLink(f"unknown attribution method {m!r} (the methods: {', '.join(METHOD_NAMES)})")
    st.session_state["explore_methods"] = methods


def write_methods(view: View) -> dict:
    methods = st.session_state.get("explore_methods")
    return {} if methods is None or list(methods) == list(state.EXPLORE_METHODS) else {"methods": ",".join(methods)}


METHODS = Param(("methods",), read_methods, write_methods)
BASELINE = choice("baseline", "explore_baseline", {"mean": "mean", "unknown": "unknown"}, default="mean")
COMPARE = choice("compare", "explore_compare", {"1": True, "0": False}, default=False)


# ----------------------------------------------------------------------------- What-if's edits


def read_edits(view: View, given: dict) -> None:
    """set=FIELD:VALUE, as `--set` on the command line: a multi-valued field's values joined by |, a time as ISO."""
    schema = view.model.schema
    for text in given["set"]:
        name, value = pair(text, "set")
        f = field_of(view, name, schema.fields, "set")
        key = f"whatif_field_{name}"  # What-if's widget of the field
        if f.kind == "numeric" and f.format == "timestamp" and view.catalog is not None:
            stamp = parse_time(value)
            try:
                view.catalog.check_time(stamp)
            except AutoIntError as exc:
                raise BadLink(f"set {name}:{value}: {str(exc).rstrip('.')}") from None
            when = state.to_datetime(stamp)
            st.session_state[key + "_date"], st.session_state[key + "_time"] = when.date(), when.time()
        elif f.kind == "numeric":
            try:
                st.session_state[key] = float(value)
            except ValueError:
                raise BadLink(f"set {name}: {value!r} is not a number") from None
        elif f.kind == "multivalued":
            st.session_state[key] = [known_value(f, v, "set") for v in value.split("|") if v]
        else:
            st.session_state[key] = known_value(f, value, "set")


def write_edits(view: View) -> dict:
    edits = st.session_state.get("whatif_edits") or {}
    if not edits or view.run_path is None:
        return {}
    schema, out = view.model.schema, []
    for name, value in edits.items():
        f = schema[name]
        if f.kind == "numeric" and f.format == "timestamp" and view.source.has_catalog:
            value = minute(value)
        elif f.kind == "multivalued":
            value = "|".join(value)
        out.append(f"{name}:{value}")
    return {"set": out}


EDITS = Param(("set",), read_edits, write_edits)


# ----------------------------------------------------------------------------- the other pages


def read_slice(view: View, given: dict) -> None:
    name, value = pair(given["slice"][-1], "slice")
    f = field_of(view, name, [f for f in view.model.schema.fields if f.kind != "numeric"], "slice")
    st.session_state[f"corr_value_{name}"] = known_value(f, value, "slice")
    st.session_state["corr_field"] = name
    if state.large_vocabulary(f):
        st.session_state[f"corr_search_{name}"] = value


def write_slice(view: View) -> dict:
    name = st.session_state.get("corr_field")
    value = st.session_state.get(f"corr_value_{name}")
    return {"slice": f"{name}:{value}"} if name and name != "(any)" and value is not None else {}


SLICE = Param(("slice",), read_slice, write_slice)


def split_size(view: View) -> int:
    from app import views
    if view.run_path is None:
        raise BadLink("no model is trained on this data set yet")
    return views.split_total(view.source, view.run_path, "test")


SIZE = widget("size", "corr_sample_size", lambda view, text: whole(text, "sample size", 1, split_size(view)))
SEED = widget("seed", "corr_sample_seed", lambda view, text: whole(text, "seed", 0, 2 ** 31 - 1))
MEASURED = widget("measured", "corr_sample_rows", lambda view, text: whole(text, "measured samples", 1,
                                                                         split_size(view)))
LABEL = choice("label", "corr_label", {"all": None, "click": 1, "no-click": 0})


def recommend_time(view: View, given: dict) -> None:
    cat = view.catalog
    stamp = parse_time(given["time"][-1])
    try:
        cat.check_time(stamp)
    except AutoIntError as exc:
        raise BadLink(f"time {given['time'][-1]!r}: {str(exc).rstrip('.')}; showing the default time") from None
    when = state.to_datetime(stamp)
    st.session_state["recommend_date"], st.session_state["recommend_time"] = when.date(), when.time()


def write_recommend_time(view: View) -> dict:
    day, clock = st.session_state.get("recommend_date"), st.session_state.get("recommend_time")
    return {} if day is None or clock is None else {"time": minute(state.from_date_time(day, clock))}


def recommend_user(view: View, text: str) -> int:
    try:
        user = int(text)
        view.catalog.check_user(user)
    except ValueError:
        raise BadLink(f"user {text!r} is not an id") from None
    except AutoIntError as exc:
        raise BadLink(f"user {text!r}: {str(exc).rstrip('.')}; showing the default user") from None
    return user


def field_index(what: str) -> Callable[[View, str], int]:
    """Learn's worked example names a field; its widget holds the field's position."""
    def parse(view: View, text: str) -> int:
        names = [f.name for f in view.model.schema.fields]
        if text not in names:
            raise BadLink(f"{what}: unknown field {text!r} (this model's are {', '.join(names)})")
        return names.index(text)
    return parse


def field_name(view: View, position: int) -> str:
    return view.model.schema.fields[position].name


def run_list(name: str, key: str, most: int | None, fallback: str) -> Param:
    """Runs picked in a multiselect (`key`), as comma-separated run names; a name not on this server is refused."""
    def read(view: View, given: dict) -> None:
        runs = {r["name"]: r["path"] for r in state.runs_for(view.source)}
        names = [n for n in given[name][-1].split(",") if n]
        missing = [n for n in names if n not in runs]
        if missing:
            raise BadLink(f"run **{missing[0]}** is not on this server; {fallback}")
        st.session_state[key] = [runs[n] for n in names[:most]]

    def write(view: View) -> dict:
        chosen = st.session_state.get(key)
        return {name: ",".join(Path(p).name for p in chosen)} if chosen else {}
    return Param((name,), read, write)


RUNS = run_list("runs", "train_compare", 2, "comparing the default runs")  # Compare runs: side by side
COMBINE = run_list("combine", "train_combine_runs", None, "comparing the runs above")  # what they combine


def results_folder(view: View, text: str) -> str:
    from autoint.training import paper
    folders = {Path(f).name: str(f) for f in paper.reproduction_folders()}
    if text not in folders:
        raise BadLink(f"results **{text}** are not on this server (found: "
                      f"{', '.join(folders) or 'none'})")
    return folders[text]


PAGES: dict[str, list[Param]] = {  # url_path -> its parameters, in the order they are read
    "": [RUN, SAMPLE, WHERE, ROW, METHODS, layer("explore"), head("explore"), reading("explore"), BASELINE,
         COMPARE],
    "what-if": [RUN, SAMPLE, ROW, EDITS, layer("whatif"), head("whatif", mean=True), reading("what_if")],
    "correlations": [RUN, SIZE, SEED, LABEL, SLICE, MEASURED, reading("corr")],
    "train": [RUN, RUNS, COMBINE],
    "recommend": [RUN, widget("user", "recommend_user", recommend_user),
                  Param(("time",), recommend_time, write_recommend_time),
                  widget("top", "recommend_top", lambda view, text: whole(text, "top", 5, 50), default=10),
                  choice("rated", "recommend_exclude", {"exclude": True, "include": False}, default=True)],
    "learn": [RUN, SAMPLE, ROW, layer("learn"), head("learn"),
              widget("query", "learn_query", field_index("query"), field_name),
              widget("key", "learn_key", field_index("key"), field_name), reading("learn")],
    "paper": [widget("results", "paper_results", results_folder, lambda view, f: Path(f).name)],
    "add-data": [],
}
COMMON = ("data",)  # read by restore_data, before the pages are listed (a data set decides which pages there are)


def current_params() -> dict[str, list[str]]:
    return {name: st.query_params.get_all(name) for name in st.query_params}


def opened() -> bool:
    """Whether the URL holds parameters this session did not write (a link opened, the back button)."""
    params = current_params()
    return bool(params) and params != st.session_state.get(WRITTEN)


def restore_data() -> list[str]:
    """The link's data set (data=FOLDER) chosen for this session, before anything reads it; the sentences of what
    could not be."""
    given = st.query_params.get_all("data")
    if not given:
        return []
    found = state.data_sources()
    match = [s for s in found if given[-1] in (s.folder.name, s.key)]
    if not match:
        return [f"data set **{given[-1]}** is not on this server; showing {found[0].label} instead."]
    st.session_state["data_key"] = match[0].key
    return []


def restore(page: str) -> list[str]:
    """The link's state of `page` put into this session's state, parameter by parameter, before the page draws its
    widgets; returns a sentence for each value that could not be (named; the page shows its default there)."""
    params, view, notes = current_params(), View(page), []
    declared = PAGES.get(page, [])
    known = {*COMMON, *(name for param in declared for name in param.names)}
    for name in params:
        if name not in known:
            notes.append(f"this page has no parameter **{name}**; it is left out.")
    for param in declared:
        given = {name: params[name] for name in param.names if name in params}
        if not given:
            continue
        try:
            param.read(view, given)
        except BadLink as exc:
            text = str(exc).rstrip(".")
            said = "default" in text or "showing" in text  # what the page shows instead
            notes.append(text + ("." if said else "; the page shows its default there."))
        except (AutoIntError, LookupError, TypeError, ValueError) as exc:
            notes.append(f"{', '.join(f'{n}={v[-1]}' for n, v in given.items())} cannot be shown here ({exc}); the "
                         "page shows its default there.")
    return notes


def warn(notes: list[str]) -> None:
    """What a link asked for and this server cannot show, in one warning at the top of the page."""
    if notes:
        st.warning("**This link:** " + (notes[0] if len(notes) == 1 else "\n" + "\n".join(f"- {n}" for n in notes)),
                   icon=":material/link_off:")


def params_of(page: str, source=None) -> dict[str, list[str]]:
    """The page's state as query parameters (each a list of values), from this session's state; `source`: the data
    set this run shows, when known."""
    view, out = View(page, drawn=True, source=source), {}
    if st.session_state.get("data_key") == view.source.key:  # a data set chosen (the default one is left out)
        if view.source.key != state.data_sources()[0].key:
            out["data"] = [view.source.folder.name]
    for param in PAGES.get(page, []):
        try:
            written = param.write(view)
        except (AutoIntError, LookupError, TypeError, ValueError, BadLink):
            continue  # not drawn yet: left out
        out.update({name: value if isinstance(value, list) else [value] for name, value in written.items()})
    return out


def link(page: str, params: dict[str, list[str]]) -> str:
    """The view's address: the app's own (as the browser reached it) when known, else relative to the app."""
    parts = urlsplit(st.context.url or "")
    root = parts.path.rstrip("/")
    if page and (root == page or root.endswith(f"/{page}")):  # the browser's address is this page's already
        root = root[:len(root) - len(page)].rstrip("/")
    base = urlunsplit((parts.scheme, parts.netloc, root, "", "")) if parts.netloc else root
    path = f"{base}/{page}" if page else (base or ".")
    return f"{path}?{urlencode(params, doseq=True, safe=':,|')}" if params else path


def publish(page: str, slot=None, source=None, write_url: bool = True) -> None:
    """Write the page's state into the URL (when it changed; not with `write_url` False) and show the link to copy
    in `slot`. A bug here is logged, never shown in place of the page. `source`: the data set this run shows."""
    try:
        _publish(page, slot, source, write_url)
    except Exception:
        logging.getLogger("autoint.app").error("writing the link failed\n%s", traceback.format_exc())


def _publish(page: str, slot, source, write_url: bool = True) -> None:
    params = params_of(page, source)
    if write_url:
        if params != current_params():
            st.query_params.from_dict(params)
        st.session_state[WRITTEN] = params
    if slot is not None:
        with slot.container():
            st.markdown("**Link to this view**", help="Opens this page with the same run, sample and choices in "
                                                      "any browser that reaches this server (the copy button is "
                                                      "at the code block's right).")
            st.code(link(page, params), language=None, wrap_lines=True)
