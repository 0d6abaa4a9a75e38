"""A data set spec: one TOML file says how to turn CSV, TSV or Parquet files into AutoInt fields.

    name = "my-clicks"
    files = ["clicks.csv"]              # in --data-dir (default: the spec's folder); a list inside the
                                        # list names alternatives, the first found is read: [["train", "train.gz"]]
    separator = ","                     # one character; "\\t" for TSV. Not for Parquet
    header = true                       # false: give `columns = [...]`, the names in file order
    label = "clicked"                   # a 0/1 column, or a rule: "clicks > 0" (> >= < <= == !=)
    min_count = 5                       # categorical values seen fewer times in the training split share
                                        # the field's <unknown> slot (default 1: every value seen in training)
    split = "folds"                     # "folds": 10 stratified folds, fold 1 test, fold 2 validation
    seed = 2018                         # (the authors' protocol); "random": 80/10/10 at random

    [[field]]
    name = "Price"                      # or names = ["A", "B", ...]: several fields, same settings
    column = "price"                    # the source column (default: the name)
    kind = "numeric"                    # categorical, multivalued or numeric
    transform = "log2"                  # numeric: minmax (default), log2, bucket (with edges = [...])
    fill = 0                            # numeric: the value of a missing entry (default 0, as the authors)
    role = "item"                       # user, item or context (optional)

    [[join]]                            # a left join of another file on a key column (e.g. a user profile)
    file = "profile.tsv"
    separator = "\\t"
    header = false
    columns = ["user", "gender", "age"]
    on = "user"

    [about]                             # provenance, shown by `describe`: source, licence, rows, size
    source = "..."

Other field keys: `min_count` (categorical, multivalued), `missing = ["0"]` (raw values meaning "no value"),
`display = {"1" = "male"}` (words shown for raw values), `format = "timestamp"` (a numeric Unix time shown as
UTC), `columns = [...]` or `delimiter = "|"` and `max_len` (multivalued), and `derive = "hour_of_day"` or
`"weekday"` with `time_format = "%y%m%d%H"` (Python strptime codes) or `"unix"` (seconds since 1970, UTC): a
categorical field computed from a time column.

tomllib gives no line numbers for values, so every error finds its key's line in the text and names
`spec.toml, line N`, with what to write instead.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..data.dataset import DataError
from ..data.schema import FORMATS, ROLES, TRANSFORMS

FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")  # as runs.py requires of a saved schema
LABEL_RULE = re.compile(r"^\s*([^\s<>=!]+)\s*(?:(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?))?\s*$")
KINDS = ("categorical", "multivalued", "numeric")
DERIVED = ("hour_of_day", "weekday")
SPLITS = ("folds", "random")
TOP_KEYS = ("name", "description", "files", "format", "separator", "header", "columns", "label", "min_count",
            "split", "seed", "folds", "field", "join", "about")
FIELD_KEYS = ("name", "names", "column", "columns", "kind", "transform", "edges", "fill", "min_count", "role",
              "format", "missing", "display", "delimiter", "max_len", "derive", "time_format")
JOIN_KEYS = ("file", "separator", "header", "columns", "on")
ABOUT_KEYS = ("source", "licence", "rows", "size", "notes")
MAX_VALUES = 64  # the most values a multi-valued field keeps per sample (runs.py's limit)


class SpecError(DataError):
    """A spec that cannot be used; the message names the spec file, the line and the fix."""


@dataclass(frozen=True)
class LabelRule:
    column: str
    op: str | None = None  # None: the column itself holds 0/1
    threshold: float | None = None
    text: str = ""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str
    columns: tuple[str, ...]
    line: int | None = None  # the line of its [[field]] header
    index: int = 0  # which [[field]] table declares it
    transform: str = "minmax"
    edges: tuple[float, ...] = ()
    fill: float = 0.0
    min_count: int = 1
    role: str | None = None
    format: str | None = None
    missing: tuple[str, ...] = ()
    display: dict = field(default_factory=dict)
    delimiter: str | None = None
    max_len: int | None = None
    derive: str | None = None
    time_format: str | None = None


@dataclass(frozen=True)
class JoinSpec:
    file: str
    columns: tuple[str, ...] | None
    on: str
    separator: str = ","
    header: bool = True
    line: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    path: Path | None
    name: str
    files: tuple[tuple[str, ...], ...]
    label: LabelRule
    fields: tuple[FieldSpec, ...]
    format: str = "csv"
    separator: str = ","
    header: bool = True
    columns: tuple[str, ...] | None = None
    split: str = "folds"
    seed: int = 2018
    folds: int = 10
    joins: tuple[JoinSpec, ...] = ()
    about: dict = field(default_factory=dict)
    description: str = ""
    text: str = ""

    def where(self, key: str, table: str | None = None, index: int = 0) -> str:
        """`spec.toml, line N` for a key (top level, or in the index-th `[[table]]`)."""
        return _where(self.path, self.text, key, table, index)

    def source_columns(self) -> list[str]:
        """Every column the spec reads from the main files, the label's first, each once."""
        joined = {c for j in self.joins for c in (j.columns or ()) if c != j.on}
        out = [self.label.column]
        for f in self.fields:
            out += [c for c in f.columns if c not in out and c not in joined]
        for j in self.joins:
            if j.on not in out:
                out.append(j.on)
        return out


# ----------------------------------------------------------------------------- where a key is

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _key_lines(text: str) -> dict:
    """(table, index, key) -> line number, and (table, index, None) -> the table header's line."""
    lines, table, index, counts = {}, None, 0, {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = header.group(2)
            if header.group(1) == "[[":
                index = counts.get(table, 0)
                counts[table] = index + 1
            else:
                index = 0
            lines.setdefault((table, index, None), number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((table, index, key.group(1)), number)
    return lines


def _where(path, text: str, key, table: str | None = None, index: int = 0) -> str:
    """`key` may be a tuple: the first of those keys found in the table; else the table's header line."""
    name = str(path) if path is not None else "the spec"
    lines = _key_lines(text)
    keys = key if isinstance(key, tuple) else (key,)
    number = next((lines[(table, index, k)] for k in keys if (table, index, k) in lines), None) \
        or lines.get((table, index, None))
    return f"{name}, line {number}" if number else name


# ----------------------------------------------------------------------------- parsing

def read_spec(path: str | Path) -> DatasetSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file. Give the path of a TOML data set spec "
                        f"(see autoint/datasets/spec.py for what one holds).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot be read as UTF-8 text ({exc}).") from exc
    return parse_spec(text, path)


def parse_spec(text: str, path: Path | None = None) -> DatasetSpec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends with "(at line N, column M)"
        line = re.search(r"at line (\d+)", str(exc))
        where = f"{path or 'the spec'}{', line ' + line.group(1) if line else ''}"
        raise SpecError(f"{where}: not valid TOML: {exc}. Check the quotes (text values need them), '=' and "
                        f"brackets on that line.") from None
    p = _Parser(raw, text, path)
    return p.spec()


class _Parser:
    def __init__(self, raw: dict, text: str, path: Path | None):
        self.raw, self.text, self.path = raw, text, path

    def fail(self, key, message, table=None, index=0):
        raise SpecError(f"{_where(self.path, self.text, key, table, index)}: {message}")

    def unknown_keys(self, obj: dict, allowed, table=None, index=0):
        for key in obj:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(allowed)}."
                self.fail(key, f"unknown key {key!r}; {hint}", table, index)

    def string(self, obj, key, table=None, index=0, default=None, required=False, choices=None):
        if key not in obj:
            if required:
                where = _where(self.path, self.text, None, table, index)
                raise SpecError(f"{where}: the key {key!r} is missing"
                                f"{' from this [[' + table + ']]' if table else ''}; add {key} = \"...\".")
            return default
        value = obj[key]
        if not isinstance(value, str):
            self.fail(key, f"{key} must be a string in quotes, got {value!r}.", table, index)
        if choices is not None and value not in choices:
            self.fail(key, f"{key} = {value!r} is not one of {', '.join(map(repr, choices))}.", table, index)
        return value

    def boolean(self, obj, key, default, table=None, index=0):
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"{key} must be true or false, got {value!r}.", table, index)
        return value

    def integer(self, obj, key, default, low, high=None, table=None, index=0):
        value = obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            bound = f"from {low} to {high}" if high else f"at least {low}"
            self.fail(key, f"{key} must be a whole number {bound}, got {value!r}.", table, index)
        return value

    def strings(self, obj, key, table=None, index=0):
        value = obj[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"{key} must be a list of non-empty strings, e.g. {key} = [\"a\", \"b\"]; "
                           f"got {value!r:.80}.", table, index)
        if len(set(value)) != len(value):
            repeated = next(v for v in value if value.count(v) > 1)
            self.fail(key, f"{key} names {repeated!r} twice.", table, index)
        return tuple(value)

    def separator(self, obj, key, table=None, index=0):
        sep = self.string(obj, key, table, index, default=",")
        if len(sep) != 1 or sep in "\n\r\"":
            self.fail(key, f"separator must be one character such as \",\" or \"\\t\" (tab), got {sep!r}.",
                      table, index)
        return sep

    def spec(self) -> DatasetSpec:
        raw = self.raw
        self.unknown_keys(raw, TOP_KEYS)
        name = self.string(raw, "name", required=True)
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$", name):
            self.fail("name", f"name {name!r} must be letters, digits, '-', '_' or '.' (at most 64), e.g. "
                              f"\"my-clicks\".")
        files = self.files(raw)
        fmt = self.string(raw, "format", choices=("csv", "parquet"),
                          default="parquet" if files[0][0].endswith(".parquet") else "csv")
        if fmt == "parquet" and ("separator" in raw or "header" in raw or "columns" in raw):
            key = next(k for k in ("separator", "header", "columns") if k in raw)
            self.fail(key, f"{key} is for CSV files; a Parquet file names its own columns. Remove it.")
        separator = self.separator(raw, "separator")
        header = self.boolean(raw, "header", True)
        columns = self.strings(raw, "columns") if "columns" in raw else None
        if fmt == "csv" and not header and columns is None:
            self.fail("header", "header = false needs the column names: add columns = [\"label\", \"a\", ...] "
                                "in file order.")
        if header and columns is not None:
            self.fail("columns", "columns names the columns of a file without a header; with header = true "
                                 "the file's first line names them. Remove columns or set header = false.")
        label = self.label(raw)
        default_min = self.integer(raw, "min_count", 1, 1)
        split = self.string(raw, "split", default="folds", choices=SPLITS)
        seed = self.integer(raw, "seed", 2018, 0)
        folds = self.integer(raw, "folds", 10, 3, 100)
        joins = self.joins(raw)
        fields = self.fields(raw, default_min)
        about = raw.get("about", {})
        if not isinstance(about, dict):
            self.fail("about", "about must be a table: [about] with source, licence, rows, size.")
        self.unknown_keys(about, ABOUT_KEYS, "about")
        spec = DatasetSpec(path=self.path, name=name, files=files, label=label, fields=fields, format=fmt,
                           separator=separator, header=header, columns=columns, split=split, seed=seed,
                           folds=folds, joins=joins, about=dict(about),
                           description=self.string(raw, "description", default=""), text=self.text)
        self.check_columns(spec)
        return spec

    def files(self, raw):
        if "files" not in raw:
            raise SpecError(f"{self.path or 'the spec'}: the key 'files' is missing; add files = [\"data.csv\"] "
                            f"(names in the data folder).")
        value = raw["files"]
        if not isinstance(value, list) or not value:
            self.fail("files", "files must be a list such as [\"train.csv\"].")
        out = []
        for entry in value:
            names = [entry] if isinstance(entry, str) else entry
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                self.fail("files", f"each entry of files is a file name or a list of alternative names, "
                                   f"got {entry!r:.80}.")
            for n in names:
                if Path(n).is_absolute() or ".." in Path(n).parts:
                    self.fail("files", f"{n!r}: file names are relative to the data folder (no '..', no "
                                       f"absolute path); pass the folder with --data-dir.")
            out.append(tuple(names))
        return tuple(out)

    def label(self, raw):
        text = self.string(raw, "label", required=True)
        match = LABEL_RULE.match(text)
        if not match:
            self.fail("label", f"label = {text!r}: write a 0/1 column (label = \"click\") or a rule "
                               f"(label = \"clicks > 0\"; one of > >= < <= == != and a number).")
        column, op, number = match.groups()
        return LabelRule(column, op, float(number) if number is not None else None, text)

    def joins(self, raw):
        value = raw.get("join", [])
        if not isinstance(value, list):
            self.fail("join", "join is an array of tables: write [[join]] above each one.")
        out = []
        for i, obj in enumerate(value):
            self.unknown_keys(obj, JOIN_KEYS, "join", i)
            file = self.string(obj, "file", "join", i, required=True)
            header = self.boolean(obj, "header", True, "join", i)
            columns = self.strings(obj, "columns", "join", i) if "columns" in obj else None
            if not header and columns is None:
                self.fail("header", "a join file without a header needs columns = [...] in file order.", "join", i)
            on = self.string(obj, "on", "join", i, required=True)
            if columns is not None and on not in columns:
                self.fail("on", f"on = {on!r} is not among this join's columns ({', '.join(columns)}).", "join", i)
            out.append(JoinSpec(file, columns, on, self.separator(obj, "separator", "join", i), header,
                                _key_lines(self.text).get(("join", i, None))))
        return tuple(out)

    def fields(self, raw, default_min):
        value = raw.get("field")
        if not isinstance(value, list) or not value:
            raise SpecError(f"{self.path or 'the spec'}: no fields. Add one [[field]] table per field (or per group "
                            f"of fields with names = [...]), each with a kind.")
        out, seen = [], {}
        for i, obj in enumerate(value):
            t = ("field", i)
            self.unknown_keys(obj, FIELD_KEYS, *t)
            if ("name" in obj) == ("names" in obj):
                where = _where(self.path, self.text, None, *t)
                raise SpecError(f"{where}: a [[field]] needs name = \"...\" (one field) or names = [...] (several "
                                f"with the same settings), not {'both' if 'name' in obj else 'neither'}.")
            names = (self.string(obj, "name", *t),) if "name" in obj else self.strings(obj, "names", *t)
            kind = self.string(obj, "kind", *t, required=True, choices=KINDS)
            for n in names:
                if not FIELD_NAME.match(n):
                    self.fail("name" if "name" in obj else "names", f"field name {n!r} must start with a letter, "
                              f"then letters, digits or '_' (at most 64).", *t)
                if n in seen:
                    self.fail("name" if "name" in obj else "names", f"field {n!r} is declared twice (first in "
                              f"the [[field]] on line {seen[n]}).", *t)
                seen[n] = _key_lines(self.text).get(("field", i, None))
            numeric_only = [k for k in ("transform", "edges", "fill", "format") if k in obj]
            if kind != "numeric" and numeric_only:
                self.fail(numeric_only[0], f"{numeric_only[0]} is for numeric fields; this one is {kind}.", *t)
            if kind == "numeric" and "min_count" in obj:
                self.fail("min_count", "min_count is for categorical and multi-valued fields; a numeric field "
                                       "has no vocabulary.", *t)
            multi_only = [k for k in ("delimiter", "max_len") if k in obj]
            if kind != "multivalued" and multi_only:
                self.fail(multi_only[0], f"{multi_only[0]} is for multi-valued fields; this one is {kind}.", *t)
            if "column" in obj and "columns" in obj:
                self.fail("columns", "give column (one source column) or columns (several, for a multi-valued "
                                     "field), not both.", *t)
            if "columns" in obj:
                if kind != "multivalued" or len(names) > 1:
                    self.fail("columns", "columns (several source columns) makes one multi-valued field; for "
                                         "another kind give column = \"...\".", *t)
                sources = [self.strings(obj, "columns", *t)]
            elif "column" in obj:
                if len(names) > 1:
                    self.fail("column", "with names = [...] each field reads the column of its own name; give "
                                        "one [[field]] per field to read other columns.", *t)
                sources = [(self.string(obj, "column", *t),)]
            else:
                sources = [(n,) for n in names]
            transform = self.string(obj, "transform", *t, default="minmax", choices=TRANSFORMS)
            edges = obj.get("edges", [])
            if transform == "bucket":
                if (not isinstance(edges, list) or not edges
                        or not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)
                        or any(b <= a for a, b in zip(edges, edges[1:]))):
                    self.fail("edges" if "edges" in obj else "transform", "transform = \"bucket\" needs "
                              "edges = [...], increasing numbers: a value v falls in the bucket of the edges "
                              "at or below it.", *t)
            elif "edges" in obj:
                self.fail("edges", "edges are for transform = \"bucket\".", *t)
            fill = obj.get("fill", 0)
            if isinstance(fill, bool) or not isinstance(fill, (int, float)):
                self.fail("fill", f"fill must be a number (the value of a missing entry), got {fill!r}.", *t)
            role = self.string(obj, "role", *t, choices=ROLES)
            fmt = self.string(obj, "format", *t, choices=FORMATS)
            if fmt is not None and transform != "minmax":
                self.fail("format", f"format = {fmt!r} shows the raw value as a time; use it with the default "
                                    f"minmax transform.", *t)
            missing = self.strings(obj, "missing", *t) if "missing" in obj else ()
            display = obj.get("display", {})
            if not isinstance(display, dict) or not all(isinstance(v, str) for v in display.values()):
                self.fail("display", "display maps raw values to words: display = {\"1\" = \"male\"}.", *t)
            delimiter = self.string(obj, "delimiter", *t)
            if delimiter is not None and (not delimiter or len(sources[0]) > 1):
                self.fail("delimiter", "delimiter splits one column's text into values; give a non-empty "
                                       "string and one column.", *t)
            if kind == "multivalued" and delimiter is None and len(sources[0]) < 2:
                self.fail("kind", "a multi-valued field needs delimiter = \"|\" (its values in one column) or "
                                  "columns = [...] (one value per column).", *t)
            max_len = self.integer(obj, "max_len", MAX_VALUES, 1, MAX_VALUES, *t) if "max_len" in obj else None
            derive = self.string(obj, "derive", *t, choices=DERIVED)
            time_format = self.string(obj, "time_format", *t)
            if derive is not None and (kind != "categorical" or time_format is None):
                self.fail("derive", "derive makes a categorical field from a time column: add kind = "
                                    "\"categorical\" and time_format = \"%y%m%d%H\" (Python strptime codes) or \"unix\".", *t)
            if time_format is not None and derive is None:
                self.fail("time_format", "time_format goes with derive = \"hour_of_day\" or \"weekday\".", *t)
            min_count = self.integer(obj, "min_count", default_min, 1, table="field", index=i) \
                if kind != "numeric" else 1
            line = _key_lines(self.text).get(("field", i, None))
            for n, cols in zip(names, sources):
                out.append(FieldSpec(
                    name=n, kind=kind, columns=cols, line=line, index=i,
                    transform=transform, edges=tuple(float(e) for e in edges), fill=float(fill),
                    min_count=min_count, role=role, format=fmt, missing=missing, display=dict(display),
                    delimiter=delimiter, max_len=max_len, derive=derive, time_format=time_format))
        return tuple(out)

    def check_columns(self, spec: DatasetSpec) -> None:
        """Columns named by the label and the fields exist, when the spec lists them (header = false)."""
        joined = {c for j in spec.joins for c in (j.columns or ())}
        for f in spec.fields:
            if spec.label.column in f.columns:
                key = next(k for k in ("column", "columns", "names", "name") if k in self.raw["field"][f.index])
                self.fail(key, f"field {f.name} reads the label column {spec.label.column!r}: the model would see "
                               f"the answer. Leave it out.", "field", f.index)
        if spec.columns is None:
            return  # checked against the file's header when it is read
        if spec.label.column not in spec.columns:
            self.fail("label", f"label column {spec.label.column!r} is not in columns ({', '.join(spec.columns)}).")
        for f in spec.fields:
            for c in f.columns:
                if c not in spec.columns and c not in joined:
                    i = f.index
                    key = next((k for k in ("column", "columns", "names", "name") if k in self.raw["field"][i]))
                    close = difflib.get_close_matches(c, spec.columns, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    self.fail(key, f"field {f.name} reads column {c!r}, which is not in columns (line "
                                   f"{_key_lines(self.text).get((None, 0, 'columns'))}) nor in a join.{hint}",
                              "field", i)
