"""Raw field values <-> tensors: the one place where samples are checked, parsed and encoded.

`FieldTensors` is what the model, the trainer and the explanation engine take; `encode_values` encodes
a few samples from plain lists (explanations, what-if), `encode_frame` a whole polars frame (data sets).
`check_values` refuses raw values a model cannot take, `parse_edit`/`parse_where` read `Field=value` from the
command line, `encode_sample` checks and encodes one sample. Imports only the schema: no data set reader,
no model.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np
import polars as pl

if TYPE_CHECKING:  # torch is imported where tensors are made, so `prepare` starts without it
    import torch

from .schema import UNKNOWN, Schema, SchemaError


class FieldTensors(NamedTuple):
    """A batch of encoded samples, split by field kind (columns follow the schema's order within a kind)."""

    categorical: torch.Tensor  # (N, n_categorical) int64 vocabulary slots
    multivalued: torch.Tensor  # (N, n_multivalued, max_len) int64 slots, -1 = padding
    numeric: torch.Tensor  # (N, n_numeric) float32, min-max scaled

    def __len__(self) -> int:
        return self.categorical.shape[0]

    def index(self, rows) -> "FieldTensors":
        return FieldTensors(*(t[rows] for t in self))

    def to(self, device) -> "FieldTensors":
        return FieldTensors(*(t.to(device) for t in self))



def encode_values(schema: Schema, columns: dict[str, list]) -> FieldTensors:
    """Encode raw field values (one list per field name) into tensors; unseen values become `<unknown>`.

    The few-sample twin of `encode_frame` (explanations, what-if, the movie catalogue): plain dict
    lookups take microseconds where building a polars frame costs about 8 ms a call.
    """
    import torch
    n = len(next(iter(columns.values())))
    categorical = np.zeros((n, len(schema.of_kind("categorical"))), dtype=np.int64)
    for j, f in enumerate(schema.of_kind("categorical")):
        lookup = f._lookup
        categorical[:, j] = [lookup.get(v, 0) for v in columns[f.name]]
    multi_fields = schema.of_kind("multivalued")
    max_len = max((f.max_len for f in multi_fields), default=1)
    multivalued = np.full((n, len(multi_fields), max_len), -1, dtype=np.int64)
    for j, f in enumerate(multi_fields):
        lookup = f._lookup
        for i, values in enumerate(columns[f.name]):
            slots = [lookup.get(v, 0) for v in (values or [])][:f.max_len] or [0]
            multivalued[i, j, :len(slots)] = slots
    numeric = np.zeros((n, len(schema.of_kind("numeric"))), dtype=np.float32)
    for j, f in enumerate(schema.of_kind("numeric")):
        numeric[:, j] = [f.scale(v) for v in columns[f.name]]
    return FieldTensors(torch.from_numpy(categorical), torch.from_numpy(multivalued), torch.from_numpy(numeric))


def encode_frame(schema: Schema, frame: pl.DataFrame) -> FieldTensors:
    """Vectorised `encode_values` for a whole sample frame (a column per field)."""
    import torch
    n = frame.height
    cats = []
    for f in schema.of_kind("categorical"):
        mapping = {v: i for i, v in enumerate(f.vocab) if i}
        cats.append(frame[f.name].cast(pl.String).replace_strict(mapping, default=0, return_dtype=pl.Int64)
                    .to_numpy())
    categorical = np.stack(cats, axis=1) if cats else np.zeros((n, 0), dtype=np.int64)
    multi_fields = schema.of_kind("multivalued")
    max_len = max((f.max_len for f in multi_fields), default=1)
    multivalued = np.full((n, len(multi_fields), max_len), -1, dtype=np.int64)
    for j, f in enumerate(multi_fields):
        mapping = {v: i for i, v in enumerate(f.vocab) if i}
        heads = frame[f.name].list.head(f.max_len)
        # A sample with no value at all gets the `<unknown>` slot, so every row has at least one.
        lists = pl.select(pl.when(heads.list.len().fill_null(0) > 0).then(heads)
                          .otherwise(pl.lit([UNKNOWN], dtype=pl.List(pl.String)))).to_series()
        lengths = lists.list.len().to_numpy().astype(np.int64)
        flat = lists.explode().replace_strict(mapping, default=0, return_dtype=pl.Int64).to_numpy()
        rows = np.repeat(np.arange(n), lengths)
        cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position in its list
        multivalued[rows, j, cols] = flat
    numeric = np.zeros((n, len(schema.of_kind("numeric"))), dtype=np.float32)
    for j, f in enumerate(schema.of_kind("numeric")):
        numeric[:, j] = (f.transformed(frame[f.name].cast(pl.Float64).to_numpy()) - f.min_value) / (
            f.max_value - f.min_value)
    return FieldTensors(torch.from_numpy(categorical), torch.from_numpy(multivalued), torch.from_numpy(numeric))


# ----------------------------------------------------------------------------- one sample's raw values

def check_values(schema: Schema, values: dict) -> dict:
    """Refuse values the model cannot take, naming the field and what it accepts."""
    out = {}
    for f in schema.fields:
        if f.name not in values:
            raise SchemaError(f"no value for field {f.name}; the model needs {', '.join(schema.names)}.")
        value = values[f.name]
        if f.kind == "numeric":
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise SchemaError(f"{f.name}={value!r} is not a number.") from None
            if not math.isfinite(number):
                raise SchemaError(f"{f.name}={value!r} is not a finite number.")
            if f.transform != "minmax":  # the scaling range is of transformed values
                t = f.transformed(number)
                if not f.min_value <= t <= f.max_value:
                    raise SchemaError(f"{f.name}={number:g} becomes {t:g} by the {f.transform} transform, outside "
                                      f"the range the model was trained on ({f.min_value:g} to {f.max_value:g} "
                                      f"after the transform); choose a value that maps into it.")
            elif not f.min_value <= number <= f.max_value:  # the model never saw values outside its scaling range
                raise SchemaError(f"{f.name}={_shown(f, number)} is outside the range the model was trained on: "
                                  f"choose from {_shown(f, f.min_value)} to {_shown(f, f.max_value)}.")
            out[f.name] = number
        elif f.kind == "multivalued":
            items = [value] if isinstance(value, str) else list(value)
            if not items:
                raise SchemaError(f"{f.name} needs at least one value; choose from {', '.join(f.vocab[1:])}.")
            if len(items) > f.max_len:
                raise SchemaError(f"{f.name} takes at most {f.max_len} values, got {len(items)}.")
            unknown = [v for v in items if v != UNKNOWN and v not in f.vocab]
            if unknown:
                raise SchemaError(f"{f.name}: {', '.join(map(repr, unknown))} not in the vocabulary; choose from "
                                  f"{', '.join(f.vocab[1:])}.")
            out[f.name] = items
        else:
            out[f.name] = str(value)
    return out


def _shown(f, number: float) -> str:
    """A numeric value as a person reads it (a timestamp as a UTC time), whatever its size."""
    try:
        shown = f.show(number).split("=", 1)[1]
    except (OverflowError, ValueError, OSError):
        return f"{number:g}"
    return f"{shown} UTC ({number:.0f})" if f.format == "timestamp" else shown


def parse_edit(schema: Schema, text: str) -> tuple[str, object]:
    """`Field=value` from the command line: a multi-valued field takes `A|B`, a timestamp field an ISO 8601
    time or Unix seconds, another numeric field a number, a categorical field a value or its display name."""
    if "=" not in text:
        raise SchemaError(f"--set {text!r}: write Field=value, with Field one of {', '.join(schema.names)}.")
    name, raw = text.split("=", 1)
    f = schema[name.strip()]
    if f.kind == "multivalued":
        return f.name, [v.strip() for v in raw.split("|") if v.strip()]
    if f.kind == "numeric":
        return f.name, parse_time(raw) if f.format == "timestamp" else parse_number(f.name, raw)
    reverse = {shown: code for code, shown in f.display.items()}
    value = reverse.get(raw, raw)  # accept `Age=18-24` as well as `Age=18`
    if value not in f.vocab:
        shown = [f.display.get(v, v) for v in f.vocab[1:]]
        raise SchemaError(f"{f.name}={raw!r} is not a value the model knows; choose from "
                          f"{', '.join(shown[:40])}{' ...' if len(shown) > 40 else ''}.")
    return f.name, value


def parse_number(name: str, text: str | float) -> float:
    """A plain numeric field's value from the command line."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise SchemaError(f"{name}={text!r} is not a number.") from None


def parse_time(text: str | float) -> float:
    """A time as ISO 8601 (UTC unless it says otherwise) or Unix seconds, as Unix seconds."""
    try:
        return float(text)
    except (TypeError, ValueError):
        pass
    try:
        stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise SchemaError(f"time {text!r}: give ISO 8601 (2000-12-31T22:12) or Unix seconds.") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def encode_sample(schema: Schema, values: dict) -> FieldTensors:
    """Check one sample's raw values (`check_values`) and encode them: a batch of one."""
    return encode_checked(schema, check_values(schema, values))


def encode_checked(schema: Schema, checked: dict) -> FieldTensors:
    """Encode one sample's values that `check_values` returned (so they are checked once, not again)."""
    return encode_values(schema, {f.name: [checked[f.name]] for f in schema.fields})


def field_labels(schema: Schema, values: dict) -> list[str]:
    """`Field=value` for each field, as a person reads it (`Field.show`)."""
    return [f.show(values[f.name]) for f in schema.fields]


def unknown_values(schema: Schema, values: dict | None = None) -> dict:
    """The `<unknown>` slot for every field; a numeric field gets its mid-range value."""
    out = {}
    for f in schema.fields:
        if f.kind == "numeric":
            out[f.name] = f.unscale(0.5)
        elif f.kind == "multivalued":
            out[f.name] = [UNKNOWN]
        else:
            out[f.name] = UNKNOWN
    return out


def parse_where(schema: Schema, clauses: Sequence[str]) -> dict:
    """`Field=value` filters (`--where`) as {field: value}."""
    out = {}
    for clause in clauses:
        name, value = parse_edit(schema, clause)
        out[name] = value
    return out
