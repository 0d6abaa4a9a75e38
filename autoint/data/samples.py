"""Samples of a data set's splits, for explaining one on any data set: the N-th test sample's raw values and real
label, samples picked by field values, and the values a field takes in a split (most frequent first, searchable,
for vocabularies of a million values).

Everything works on a `Dataset` (autoint.data.dataset; any data set of autoint.datasets) encoded with a run's schema: the
frame holds the raw values shown to a person, the encoded inputs are what filters compare, so a filter on
`C3=68fd1e64` keeps exactly the samples the model sees with that value (a value too rare for its own slot is
`<unknown>` to the model, and filters as such).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import AutoIntError
from .schema import UNKNOWN, Field, Schema


class SampleError(AutoIntError, ValueError):
    """A sample that does not exist (a row past the split's end, a filter no sample passes); the message says
    what exists instead."""


@dataclass(frozen=True)
class Row:
    """One sample of a split: where it is, its raw field values (as `explain_sample` takes them) and its label."""

    split: str
    position: int  # 0-based within the split
    index: int  # 0-based among all samples of the data set (the frame's row)
    values: dict
    label: int


def _split_rows(dataset, split: str) -> np.ndarray:
    if split not in dataset.splits:
        raise SampleError(f"unknown split {split!r}; choose one of {', '.join(dataset.splits)}.")
    return dataset.splits[split]


def raw_values(schema: Schema, record: dict) -> dict:
    """A frame row's values as the model takes them: a missing category is `<unknown>`, an empty multi-valued
    field `[<unknown>]`, a number a float."""
    out = {}
    for f in schema.fields:
        value = record.get(f.name)
        if f.kind == "numeric":
            out[f.name] = float(value) if value is not None else f.unscale(0.5)
        elif f.kind == "multivalued":
            items = [str(v) for v in (value or []) if v is not None]
            out[f.name] = items[:f.max_len] or [UNKNOWN]
        else:
            out[f.name] = UNKNOWN if value is None else str(value)
    return out


def split_row(dataset, split: str, position: int) -> Row:
    """The `position`-th sample (0-based) of a split: `--row N` on the command line."""
    rows = _split_rows(dataset, split)
    if not 0 <= position < len(rows):
        raise SampleError(f"row {position}: the {split} split has {len(rows):,} samples, so choose a row from 0 to "
                          f"{len(rows) - 1:,}.")
    index = int(rows[position])
    record = dataset.frame.row(index, named=True)
    return Row(split, position, index, raw_values(dataset.schema, record), int(dataset.labels[index].item()))


def _column(dataset, f: Field) -> tuple[str, int]:
    kinds = [g.name for g in dataset.schema.of_kind(f.kind)]
    return f.kind, kinds.index(f.name)


def filterable(schema: Schema) -> list[Field]:
    """The fields a sample can be picked by: categorical and multi-valued (numbers have no values to pick)."""
    return [f for f in schema.fields if f.kind != "numeric"]


def _split_slots(data, split: str, f: Field) -> np.ndarray:
    """(n,) or (n, max_len) vocabulary slots of a categorical or multi-valued field over a split: from a data set in
    memory, or read from a prepared copy (`Prepared.field_slots`: that column alone)."""
    if hasattr(data, "field_slots"):
        return data.field_slots(split, f.name)
    rows = torch.from_numpy(_split_rows(data, split))
    kind, j = _column(data, f)
    return (data.inputs.categorical if kind == "categorical" else data.inputs.multivalued)[rows, j].numpy()


def _split_size(data, split: str) -> int:
    return data.rows(split) if hasattr(data, "field_slots") else len(_split_rows(data, split))


def matching(data, split: str, where: dict | None = None) -> np.ndarray:
    """(n,) int64, ascending: the positions in the split of the samples whose every field in `where` has that value
    (a multi-valued field: holds that value). Values are raw vocabulary entries, `<unknown>` included. `data` is a
    data set in memory or a prepared copy (which reads only the filtered fields' columns)."""
    keep = np.ones(_split_size(data, split), dtype=bool)
    for name, value in (where or {}).items():
        f = data.schema[name]
        if f.kind == "numeric":
            raise SampleError(f"{name} is numeric: pick samples by a categorical field's value instead.")
        if value != UNKNOWN and value not in f._lookup:
            raise SampleError(f"{f.show(value)} is not a value the model knows, so no sample has it.")
        slots, slot = _split_slots(data, split, f), f.index(value)
        keep &= slots == slot if slots.ndim == 1 else (slots == slot).any(-1)
    return np.flatnonzero(keep).astype(np.int64)


def value_counts(data, split: str, name: str, positions: np.ndarray | None = None,
                 search: str = "", limit: int = 100) -> list[tuple[str, int]]:
    """A field's values among a split's samples (or the given positions in it), most frequent first (ties: in
    vocabulary order), each with its count; `search` keeps values whose raw or displayed text holds it (any case).
    At most `limit`. `data` is a data set in memory or a prepared copy (which reads only this field's column)."""
    f = data.schema[name]
    if f.kind == "numeric":
        raise SampleError(f"{name} is numeric: it has no values to list.")
    slots = _split_slots(data, split, f)
    if positions is not None:
        slots = slots[np.asarray(positions, dtype=np.int64)]
    flat = slots[slots >= 0] if slots.ndim == 2 else slots.reshape(-1)  # every value a sample holds (-1 pads)
    if len(flat) == 0:
        return []
    unique, counts = np.unique(flat, return_counts=True)
    text = search.strip().lower()
    out = []
    for k in np.argsort(-counts, kind="stable").tolist():
        value = f.vocab[int(unique[k])]
        if text and text not in value.lower() and text not in f.display.get(value, value).lower():
            continue
        out.append((value, int(counts[k])))
        if len(out) >= limit:
            break
    return out


def search_vocabulary(f: Field, search: str = "", limit: int = 200) -> list[str]:
    """The values of a field's vocabulary whose raw or displayed text holds `search` (any case), in the vocabulary's
    order (a spec data set's: most frequent in training first; `<unknown>` first), at most `limit`: what a picker
    offers for a vocabulary too large to list."""
    if f.kind == "numeric":
        raise SampleError(f"{f.name} is numeric: it has no values to list.")
    text = search.strip().lower()
    if not text:
        return list(f.vocab[:limit])
    out = []
    for value in f.vocab:
        if text in value.lower() or text in f.display.get(value, value).lower():
            out.append(value)
            if len(out) >= limit:
                break
    return out


def random_position(positions: np.ndarray, seed: int | None = None) -> int:
    """One of `positions`, at random (seeded when `seed` is given)."""
    if len(positions) == 0:
        raise SampleError("no sample matches these filters; remove one.")
    return int(positions[np.random.default_rng(seed).integers(len(positions))])
