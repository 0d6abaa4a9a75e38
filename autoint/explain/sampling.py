"""Dataset-level views on a seeded sample of a split: attention averaged over it (the paper's Fig. 7(b)) and the
interactions the model uses, measured on it, so that a split of millions of rows answers in seconds.

The sample. `split_sample(dataset, split, size, seed)` takes the first `size` positions of one seeded permutation of
the split's positions. So the same (split, size, seed) always gives the same rows, and samples nest: a bigger sample
holds a smaller one (moving the size adds or drops rows at the end of the permutation and reshuffles nothing). By
default (`default_size`) a split of up to DEFAULT_SAMPLE_ROWS samples is used whole, a bigger one through a sample of
that size. Interactions cost 2^F forwards a sample below EXACT_MAX_FIELDS fields and an estimate of DEFAULT_BUDGET
coalitions above, so they take their own, smaller default (`default_interaction_rows`): a prefix of the same
permutation, hence a subset of the attention's sample.

A prepared data set (`autoint.datasets.prepared`) gives the same sample without loading its split: `prepared_sample` reads
only the row groups that hold a sampled row.

The computations take a progress callback (done, total) for the app's progress bars; interactions are cached on disk
as `autoint.explain.interactions.interactions_of_split` caches them (the run's weights, the data's fingerprint, the split,
the sample's size and seed, the baseline).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UsageError
from .explanation import Correlations, dataset_correlations
from .interactions import (BASELINES, CACHE_VERSION, DEFAULT_BUDGET, EXACT_MAX_FIELDS, SAMPLED_ROWS, InteractionError,
                           SplitInteractions, baseline_embedding, cache_key, cached_split_interactions,
                           default_cache_dir, sampled_split_interactions, split_interactions, weights_digest)

DEFAULT_SAMPLE_ROWS = 20_000  # a split up to this size is used whole; a bigger one through a sample of this size
DEFAULT_SEED = 0
# Exact interactions: the default sample holds at most this many game evaluations (rows x 2^F); at 7 fields that is
# 20,000 rows (about 16 s on 2 cores), at 12 fields 625. Above EXACT_MAX_FIELDS the estimator takes SAMPLED_ROWS.
EXACT_FORWARDS = 2_560_000
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SplitSample:
    """`order`: the first rows of a seeded permutation of the split's positions (0-based within the split)."""

    split: str
    seed: int
    total: int  # the split's samples
    order: np.ndarray  # (size,) int64, in permutation order

    def __len__(self) -> int:
        return len(self.order)

    @property
    def positions(self) -> np.ndarray:
        """(size,) the sample's positions in the split, increasing."""
        return np.sort(self.order)

    @property
    def whole(self) -> bool:
        return len(self) == self.total

    def prefix(self, rows: int) -> "SplitSample":
        """The first `rows` of the same permutation: a subset of this sample."""
        return SplitSample(self.split, self.seed, self.total, self.order[:max(1, min(int(rows), len(self)))])

    def describe(self) -> str:
        """'5,000 of 4,584,061 test samples, seed 0', or '1,200 of 1,200 test samples (the whole split)'."""
        return f"{len(self):,} of {self.total:,} {self.split} samples" + (
            " (the whole split)" if self.whole else f", seed {self.seed}")

    def to_json(self) -> dict:
        return {"split": self.split, "rows": len(self), "of": self.total, "seed": self.seed}


def default_size(total: int) -> int:
    """The whole split when it is small, else a sample of DEFAULT_SAMPLE_ROWS."""
    return min(total, DEFAULT_SAMPLE_ROWS)


def default_interaction_rows(n_fields: int, size: int) -> int:
    """How many of the sample's rows the interactions are measured on by default (a prefix of the sample)."""
    if n_fields > EXACT_MAX_FIELDS:
        return max(1, min(size, SAMPLED_ROWS))
    return max(1, min(size, max(SAMPLED_ROWS, EXACT_FORWARDS // 2 ** n_fields)))


def sample_size(total: int, size: int | None, split: str) -> int:
    """The rows a sample of `split` (described in words) takes: `default_size` when None, at most the split."""
    if total == 0:
        raise UsageError(f"{split} has no samples: choose another split.")
    size = default_size(total) if size is None else int(size)
    if size < 1:
        raise UsageError(f"a sample of {size} rows: give at least 1 ({split} has {total:,}).")
    return min(size, total)


def permutation_prefix(total: int, size: int, seed: int) -> np.ndarray:
    """The first `size` of a seeded permutation of range(total): nested in `size`, fixed by `seed`."""
    return np.random.default_rng(seed).permutation(total)[:size].astype(np.int64)


def split_sample(dataset, split: str = "test", size: int | None = None, seed: int = DEFAULT_SEED) -> SplitSample:
    """A seeded sample of `size` of a split's samples (default `default_size`); the whole split when `size` is at
    least its length."""
    if split not in dataset.splits:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(dataset.splits)}.")
    total = len(dataset.splits[split])
    size = sample_size(total, size, f"the {split} split")
    order = np.arange(total, dtype=np.int64) if size == total else permutation_prefix(total, size, seed)
    return SplitSample(split, int(seed), total, order)


def sample_inputs(dataset, sample: SplitSample):
    """(FieldTensors, labels) of the sample's rows, in split order."""
    rows = torch.from_numpy(dataset.splits[sample.split][sample.positions])
    return dataset.inputs.index(rows), dataset.labels[rows]


def correlations_of_sample(model, dataset, sample: SplitSample, *, where: dict | None = None,
                           label: int | None = None, progress: Progress | None = None) -> Correlations:
    """Attention averaged over the sample's rows that pass the slice (`explain.dataset_correlations`)."""
    inputs, labels = sample_inputs(dataset, sample)
    return dataset_correlations(model, inputs, labels, where=where, label=label, progress=progress)


def interactions_of_sample(run_path: str | os.PathLike, model, dataset, sample: SplitSample, *,
                           rows: int | None = None, baseline: str = "mean", budget: int = DEFAULT_BUDGET,
                           progress: Progress | None = None,
                           cache_dir: str | os.PathLike | None = None) -> SplitInteractions:
    """k-SII on the first `rows` of the sample (default `default_interaction_rows`): exact up to EXACT_MAX_FIELDS
    fields, else KernelSHAP-IQ from `budget` coalitions a row. Rows are positions in the split, so a slice mask
    over the whole split applies (`SplitInteractions.matrix(keep)`); the whole split gives exact values of every
    sample, as `interactions_of_split` does. Cached on disk by the run's weights, the data, the split, the sample's
    size and seed, the baseline (and the budget when estimated)."""
    if baseline not in BASELINES:
        raise InteractionError(f"baseline {baseline!r}: choose one of {', '.join(BASELINES)}.")
    F = len(model.schema.fields)
    measured = sample.prefix(rows if rows is not None else default_interaction_rows(F, len(sample)))
    exact = F <= EXACT_MAX_FIELDS
    parts = [weights_digest(run_path), dataset.fingerprint, sample.split, baseline, CACHE_VERSION]
    if exact and measured.whole:
        key = cache_key(*parts)  # the same file as interactions_of_split's
    else:
        key = cache_key(*parts, "sample", measured.total, len(measured), measured.seed, *([] if exact else [budget]))

    def compute() -> SplitInteractions:
        base = baseline_embedding(model, baseline, dataset.split("train")[0])
        inputs, _ = dataset.split(sample.split)
        if not exact:
            return sampled_split_interactions(model, inputs, base, budget=budget, seed=measured.seed,
                                              baseline_name=baseline, positions=measured.order, progress=progress)
        if measured.whole:
            return split_interactions(model, inputs, base, baseline_name=baseline, progress=progress)
        positions = measured.positions
        result = split_interactions(model, inputs.index(torch.from_numpy(positions)), base, baseline_name=baseline,
                                    progress=progress)
        result.rows, result.total, result.seed = positions, measured.total, measured.seed
        return result
    return cached_split_interactions(cache_dir or default_cache_dir(), key, compute)


def prepared_sample(prepared, split: str = "test", size: int | None = None, seed: int = DEFAULT_SEED):
    """(Dataset, SplitSample): the same seeded sample as `split_sample`, read from a prepared data set
    (`autoint.datasets.prepared.Prepared`) without loading its split: only the row groups holding a sampled row are read.
    The Dataset holds the sample, in permutation order, as its `split`; the SplitSample indexes it (`order`
    0..size-1) and still counts the whole split (`total`), so it reads '5,000 of 4,584,061 test samples' and its
    prefixes are the permutation's. Beside it, as "train", a seeded sample of DEFAULT_SAMPLE_ROWS training rows
    (all of them when fewer): what the interactions' training-mean baseline embedding is averaged over."""
    from ..data.dataset import Dataset
    import polars as pl
    total = prepared.rows(split)
    size = sample_size(total, size, f"the {split} split of {prepared.path}")
    inputs, y = prepared.read_rows(split, permutation_prefix(total, size, seed))
    splits = {split: np.arange(size, dtype=np.int64)}
    train_rows = prepared.rows("train") if split != "train" else 0
    if train_rows:
        n = default_size(train_rows)
        tx, ty = prepared.read_rows("train", permutation_prefix(train_rows, n, seed))
        inputs = type(inputs)(*(torch.cat([a, b]) for a, b in zip(inputs, tx)))
        y = torch.cat([y, ty])
        splits["train"] = np.arange(size, size + n, dtype=np.int64)
    source = {"prepared": str(prepared.path), "dataset": prepared.manifest.get("dataset"),
              "sample": {"split": split, "rows": size, "of": total, "seed": int(seed)}}
    data = Dataset(prepared.schema, pl.DataFrame({"label": y.numpy()}), inputs, y, splits,
                   f"{prepared.fingerprint}:sample:{split}:{size}:{seed}", source=source)
    return data, SplitSample(split, int(seed), total, np.arange(size, dtype=np.int64))


def spread_positions(prepared, split: str = "train", rows: int = DEFAULT_SAMPLE_ROWS, groups: int = 8,
                     seed: int = DEFAULT_SEED) -> np.ndarray:
    """Up to `rows` positions of a prepared split, seeded, drawn from `groups` row groups spread evenly over it
    (rows in file order follow time in a log such as Criteo's): reading them reads `groups` row groups, where a
    uniform sample of 20,000 rows of a 36M-row split reads every one of its ~550. What the app averages the
    training-mean baseline embedding over for a run trained on a prepared copy."""
    chosen = prepared.row_groups(split)
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    chosen = [chosen[i] for i in np.unique(np.linspace(0, len(chosen) - 1, min(groups, len(chosen))).round()
                                           .astype(np.int64))]
    rng = np.random.default_rng(seed)
    shares = int(rows) // len(chosen) + (np.arange(len(chosen)) < int(rows) % len(chosen))  # they sum to `rows`
    parts = [g.first_row + np.sort(rng.choice(g.rows, size=min(int(share), g.rows), replace=False))
             for g, share in zip(chosen, shares)]
    return np.concatenate(parts).astype(np.int64)


# ----------------------------------------------------------------------------- the readings of a split

READING_ROWS = 2_000  # samples a split's readings are computed on (value zeroing: L*H*F^2 forwards each)


def readings_of_interactions(model, dataset, split: str, interactions: SplitInteractions, *,
                             keep: np.ndarray | None = None, rows: int = READING_ROWS,
                             names=None, progress: Progress | None = None):
    """Every reading of the attention (autoint.explain.readings) on up to `rows` of the samples whose k-SII
    `interactions` holds (those the slice mask `keep`, over the whole split, keeps), scored against them: the
    split-level rho of the mean maps, each sample's own rho, precision@3."""
    from .readings import score_split
    positions = interactions.rows if interactions.sampled else np.arange(len(interactions), dtype=np.int64)
    chosen = np.arange(len(positions))
    if keep is not None:
        chosen = chosen[np.asarray(keep, dtype=bool)[positions]]
    if len(chosen) > rows:  # a seeded uniform subset (positions are in split order, which may follow users or time)
        chosen = np.sort(np.random.default_rng(DEFAULT_SEED).permutation(chosen)[:rows])
    inputs, _ = dataset.split(split)
    x = inputs.index(torch.from_numpy(positions[chosen]))
    return score_split(model, x, interactions.pairs[chosen], names, progress=progress)


def reading_rows(n_fields: int, sample: SplitSample) -> int:
    """How many of the sample's first rows a split's readings (and their k-SII) are measured on: READING_ROWS, fewer
    when the interactions' own default takes fewer (`default_interaction_rows`)."""
    return min(READING_ROWS, default_interaction_rows(n_fields, len(sample)))


def model_readings(run_path: str | os.PathLike, model, dataset, split: str = "test", *,
                   progress: Progress | None = None, cache_dir: str | os.PathLike | None = None):
    """The readings of the run on the first READING_ROWS samples of the default sample of `split` (a seeded
    permutation's prefix) against their exact (or estimated) k-SII, cached on disk beside the interactions as JSON: what a page names as the model's default reading (the highest
    split-level agreement, `Readings.default`) before anything else is computed."""
    import json
    from .readings import READINGS, Readings, ScoredReading
    sample = split_sample(dataset, split)
    folder = Path(cache_dir or default_cache_dir())
    key = cache_key(weights_digest(run_path), dataset.fingerprint, split, "readings", len(sample), sample.seed,
                    READING_ROWS, CACHE_VERSION, *READINGS)
    path = folder / f"{key}.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            return Readings({n: ScoredReading(n, np.array(r["matrix"]), np.array(r["per_head"]),
                                              float("nan") if r["agreement"] is None else r["agreement"],
                                              float("nan") if r["precision_at_3"] is None else r["precision_at_3"],
                                              np.array([np.nan if v is None else v for v in r["per_sample"]]))
                             for n, r in saved["readings"].items()}, saved["reading"], saved["fields"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    rows = reading_rows(len(model.schema.fields), sample)
    interactions = interactions_of_sample(run_path, model, dataset, sample, rows=rows, cache_dir=cache_dir)
    result = readings_of_interactions(model, dataset, split, interactions, progress=progress)
    payload = {"reading": result.default, "fields": result.fields,
               "readings": {n: {"matrix": r.matrix.tolist(), "per_head": r.per_head.tolist(),
                                "agreement": None if not np.isfinite(r.agreement) else r.agreement,
                                "precision_at_3": None if not np.isfinite(r.precision_at_3) else r.precision_at_3,
                                "per_sample": [None if not np.isfinite(v) else v for v in r.per_sample]}
                            for n, r in result.readings.items()}}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".staging-{key}-{os.getpid()}.json"
        staging.write_text(json.dumps(payload))
        os.replace(staging, path)
    except OSError:
        pass  # a read-only cache costs the next request the computation, nothing else
    return result
