"""What a person should know about a loaded data set before training on it: warnings, never a stop.

    for check in check_data(dataset, spec=spec):          # `describe` adds them to its JSON as "checks"
        print(check.level, check.code, check.field, check.message, check.numbers)

The checks (thresholds are this module's constants):

- class_balance: the share of positive samples, below `RARE_CLASS` or above 1 - `RARE_CLASS` (1%).
- unknown_share: per categorical or multi-valued field, the share of its values that fall to `<unknown>` (missing,
  seen fewer than the field's min_count times in the training split, or not seen there), above `MOSTLY_UNKNOWN`.
- constant_field: a field whose encoded value is the same in every sample (all `<unknown>`: unknown_share says so).
- possible_leak: a field that alone predicts the label on the validation split with AUC above `LEAK_AUC`: its
  score is the mean label of its value on the training split (a value not seen there: the training split's mean);
  a numeric field is also scored by its value itself, either way round. The AUC comes from ranks (numpy).
- duplicate_rows: the share of samples whose encoded fields repeat an earlier sample's, above `DUPLICATES`.

Rows a spec refuses never reach a data set: `autoint.datasets.generic` raises a DataError naming the first bad line
(its file, line and the fix), how many lines are refused so and the first ten of their numbers, so `describe` and
the add-a-data-set page stop with that message and these checks see only data that loaded.
A Check's level is "warning" here; "error" names what already stops a load, for callers that report both.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field as dataclass_field

import numpy as np
import polars as pl

from ..data.dataset import Dataset
from ..data.schema import UNKNOWN
from .spec import DatasetSpec

RARE_CLASS = 0.01
MOSTLY_UNKNOWN = 0.5
LEAK_AUC = 0.99
DUPLICATES = 0.1


@dataclass(frozen=True)
class Check:
    level: str  # "warning" or "error"
    code: str  # class_balance, unknown_share, constant_field, possible_leak, duplicate_rows
    field: str | None
    message: str  # what was found and what to do about it
    numbers: dict = dataclass_field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def check_data(dataset: Dataset, spec: DatasetSpec | None = None) -> list[Check]:
    """Every warning about `dataset`, in the order above; `spec` (when it was read by one) names min counts and
    spec lines in the messages."""
    columns = field_columns(dataset)
    labels = dataset.labels.numpy().astype(np.int64)
    checks = _class_balance(labels, spec)
    for f in dataset.schema.fields:
        if f.kind != "numeric":
            checks += _unknown_share(dataset, f.name, columns[f.name], spec)
    for f in dataset.schema.fields:
        checks += _constant(dataset, f.name, f.kind, columns[f.name], spec)
    for f in dataset.schema.fields:
        checks += _leak(dataset, f.name, f.kind, columns[f.name], labels)
    return checks + _duplicates(columns, labels)


def field_columns(dataset: Dataset) -> dict[str, np.ndarray]:
    """Each field's encoded values, (N, k): a categorical slot, a multi-valued field's slots (-1: padding), a
    numeric field's scaled value."""
    inputs, out, index = dataset.inputs, {}, {"categorical": 0, "multivalued": 0, "numeric": 0}
    for f in dataset.schema.fields:
        j = index[f.kind]
        index[f.kind] += 1
        if f.kind == "categorical":
            out[f.name] = inputs.categorical[:, j:j + 1].numpy()
        elif f.kind == "multivalued":
            out[f.name] = inputs.multivalued[:, j, :].numpy()
        else:
            out[f.name] = inputs.numeric[:, j:j + 1].numpy()
    return out


def _field_spec(spec: DatasetSpec | None, name: str):
    return next((f for f in spec.fields if f.name == name), None) if spec is not None else None


def _where(spec: DatasetSpec | None, name: str, key: str) -> str:
    f = _field_spec(spec, name)
    return f" ({spec.where(key, 'field', f.index)})" if f is not None else ""


# ----------------------------------------------------------------------------- the checks

def _class_balance(labels: np.ndarray, spec: DatasetSpec | None) -> list[Check]:
    samples, positives = len(labels), int(labels.sum())
    share = positives / samples if samples else 0.0
    if RARE_CLASS <= share <= 1 - RARE_CLASS:
        return []
    which = "positive" if share < RARE_CLASS else "negative"
    count = positives if share < RARE_CLASS else samples - positives
    where = f" ({spec.where('label')}: label = {spec.label.text!r})" if spec is not None else ""
    return [Check("warning", "class_balance", None,
                  f"only {count:,} of the {samples:,} samples ({min(share, 1 - share):.2%}) are {which}: the "
                  f"metrics rest on few of them and the model may learn to predict the other class for all. "
                  f"Check the label rule{where}; if it is right, more data helps.",
                  {"positives": positives, "samples": samples, "share": share})]


def _unknown_share(dataset: Dataset, name: str, slots: np.ndarray, spec: DatasetSpec | None) -> list[Check]:
    values = slots[slots >= 0]  # a multi-valued field's padding left out; an empty list is one <unknown> slot
    unknown = int((values == 0).sum())
    share = unknown / len(values) if len(values) else 0.0
    if share <= MOSTLY_UNKNOWN:
        return []
    missing = _missing(dataset, name)
    f = _field_spec(spec, name)
    min_count = f"{f.min_count}" if f is not None else "its min_count"
    rare = unknown - missing if missing is not None else None
    split = (f": {missing:,} missing, {rare:,} seen fewer than {min_count} times in the training split or not "
             f"at all there" if missing is not None else "")
    return [Check("warning", "unknown_share", name,
                  f"{share:.1%} of {name}'s values ({unknown:,} of {len(values):,}) fall to {UNKNOWN}{split}. "
                  f"The field tells the model little: lower its min_count{_where(spec, name, 'min_count')}, or "
                  f"leave it out.",
                  {"unknown": unknown, "values": int(len(values)), "share": share,
                   **({"missing": missing} if missing is not None else {})})]


def _missing(dataset: Dataset, name: str) -> int | None:
    """Samples whose raw value is missing (a multi-valued field: no value), where the frame holds the field."""
    if name not in dataset.frame.columns:
        return None
    raw = dataset.frame[name]
    if raw.dtype == pl.List(pl.String):
        return int((raw.list.len().fill_null(0) == 0).sum())
    return int(raw.is_null().sum())


def _constant(dataset: Dataset, name: str, kind: str, values: np.ndarray, spec: DatasetSpec | None) -> list[Check]:
    """Every sample encoded alike; a field all `<unknown>` is left to the unknown_share check."""
    if len(values) == 0 or not (values == values[0]).all() or (kind != "numeric" and (values[0] <= 0).all()):
        return []
    raw = dataset.frame[name] if name in dataset.frame.columns else None
    shown = f" ({raw[0]!r})" if raw is not None and raw.dtype != pl.List(pl.String) and raw.n_unique() == 1 else ""
    return [Check("warning", "constant_field", name,
                  f"{name} has the same value{shown} in every one of the {len(values):,} samples: it cannot tell "
                  f"samples apart. Leave it out of the spec{_where(spec, name, 'kind')}.",
                  {"samples": int(len(values))})]


def _leak(dataset: Dataset, name: str, kind: str, values: np.ndarray, labels: np.ndarray) -> list[Check]:
    train, val = dataset.splits.get("train"), dataset.splits.get("val")
    if train is None or val is None or not len(train) or not len(val):
        return []
    keys = _row_keys(values)
    score = _value_means(keys[train], labels[train], keys[val])
    aucs = [auc(score, labels[val])]
    if kind == "numeric":
        direct = auc(values[val, 0].astype(np.float64), labels[val])
        aucs += [direct, 1 - direct] if direct is not None else []
    best = max((a for a in aucs if a is not None), default=None)
    if best is None or best <= LEAK_AUC:
        return []
    return [Check("warning", "possible_leak", name,
                  f"{name} alone predicts the label on the validation split with AUC {best:.4f}: it may be known "
                  f"only after the click (a copy of the label, a later outcome). Leave it out unless it is truly "
                  f"known when the ad is shown.",
                  {"val_auc": best, "val_samples": int(len(val))})]


def _duplicates(columns: dict[str, np.ndarray], labels: np.ndarray) -> list[Check]:
    """Samples whose encoded fields equal an earlier sample's (hashed rows: polars' 64-bit row hash)."""
    parts = [(a.view(np.int32) if a.dtype == np.float32 else a).astype(np.int64) for a in columns.values()]
    matrix = np.concatenate(parts, axis=1) if parts else np.zeros((len(labels), 0), dtype=np.int64)
    samples = len(matrix)
    if samples == 0 or matrix.shape[1] == 0:
        return []
    hashes = pl.DataFrame(matrix).hash_rows(seed=0)
    duplicates = samples - hashes.n_unique()
    share = duplicates / samples
    if share <= DUPLICATES:
        return []
    return [Check("warning", "duplicate_rows", None,
                  f"{duplicates:,} of the {samples:,} samples ({share:.1%}) repeat an earlier sample's fields "
                  f"exactly: the same rows in training and test make the test AUC look better than it is, and "
                  f"repeats with both labels are noise. With few fields this can be the data's nature; otherwise "
                  f"remove repeated lines from the file.",
                  {"duplicates": duplicates, "samples": samples, "share": share})]


# ----------------------------------------------------------------------------- numpy helpers

def _row_keys(values: np.ndarray) -> np.ndarray:
    """An integer per sample, equal for equal rows of `values` (N, k); a categorical slot is one already."""
    if values.shape[1] == 1 and values.dtype.kind == "i":
        return values[:, 0]
    rows = np.ascontiguousarray(values)
    if rows.shape[1] > 1:
        rows = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))
    return np.unique(rows.ravel(), return_inverse=True)[1].ravel()


def _value_means(train_keys: np.ndarray, train_labels: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each of `keys`, the mean training label of its value; the overall training mean for unseen values."""
    size = int(max(train_keys.max(initial=0), keys.max(initial=0))) + 1
    sums = np.bincount(train_keys, weights=train_labels, minlength=size)
    counts = np.bincount(train_keys, minlength=size)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), train_labels.mean())
    return means[keys]


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC by ranks (Mann-Whitney U, ties sharing their average rank); None when one class is absent."""
    positive = labels == 1
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse.ravel()]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
