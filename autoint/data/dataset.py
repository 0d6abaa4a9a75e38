"""The generic data set: encoded samples, their labels and split, and where they came from.

Every reader (autoint.datasets: MovieLens-1M's own, any CSV/TSV/Parquet by spec) returns a `Dataset`;
the trainer and the explanation engine take nothing else. Nothing here knows a particular data set or a model.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:  # imported where tensors are made, so `prepare` starts without torch
    import torch

from .encoding import FieldTensors
from ..errors import DataError  # noqa: F401  (the data layer's error; defined with the others)
from .schema import Schema

SPLIT_SEED = 2019
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def file_fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def split_indices(n: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """A random 80/10/10 train/validation/test split, fixed by `seed`."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(SPLIT_FRACTIONS[0] * n), int(SPLIT_FRACTIONS[1] * n)
    return {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
            "test": np.sort(order[n_train + n_val:])}


@dataclass
class Dataset:
    """Encoded samples with their split; `frame` keeps the raw values for display, `source` says where they
    came from (the data set, the spec, the folder and files, the split). A reader with more to offer
    subclasses it (MovieLens-1M: `autoint.datasets.movielens.MovieLensDataset`, with its tables)."""

    schema: Schema
    frame: pl.DataFrame
    inputs: FieldTensors
    labels: torch.Tensor  # (N,) float32
    splits: dict[str, np.ndarray]
    fingerprint: str
    source: dict | None = None  # dataset, spec, data_dir, files, split, about

    @property
    def data_dir(self) -> Path:
        return Path(self.source["data_dir"])

    def split(self, name: str) -> tuple[FieldTensors, torch.Tensor]:
        if name not in self.splits:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(self.splits)}")
        import torch
        rows = torch.from_numpy(self.splits[name])
        return self.inputs.index(rows), self.labels[rows]

    def describe(self) -> dict:
        fields, columns = [], {kind: 0 for kind in ("categorical", "multivalued", "numeric")}
        for f in self.schema.fields:
            entry = {"name": f.name, "kind": f.kind, "vocabulary": f.size, "role": f.role}
            j = columns[f.kind]
            columns[f.kind] += 1
            if f.kind == "numeric":
                entry.update(transform=f.transform, range=[f.min_value, f.max_value])
            else:  # the share of samples whose value is `<unknown>` (missing, rare or unseen in training)
                slots = self.inputs.categorical[:, j] if f.kind == "categorical" else self.inputs.multivalued[:, j, 0]
                entry["unknown_share"] = round(float((slots == 0).float().mean()), 6) if len(slots) else 0.0
            fields.append(entry)
        return {**self.source, "samples": int(self.frame.height), "positives": int(self.labels.sum().item()),
                "fields": fields, "splits": {k: int(len(v)) for k, v in self.splits.items()},
                "fingerprint": self.fingerprint}
