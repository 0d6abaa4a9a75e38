"""The field interactions a model really uses, and how far its attention agrees with them.

The game. For one sample, v(S) is the model's logit when every field outside the coalition S is
replaced by a baseline embedding (the training-mean embedding by default, or the `<unknown>` slot):
v(all fields) is the prediction, v(no field) the baseline's. The index is the pairwise Shapley
interaction of order 2, k-SII (Bordt & von Luxburg 2023; Lundberg et al. 2020's SHAP interaction
values are its pairwise part): first-order values phi_i and pair values phi_ij that add up exactly to
v(all) - v(none) (efficiency). In terms of the Moebius transform m(T) of v:

    phi_ij = sum_{T >= {i,j}} m(T) / (|T| - 1)
    phi_i  = m({i}) + sum_{T > {i}} m(T) (1/|T| - 1/2)

Exact where cheap: up to EXACT_MAX_FIELDS fields every one of the 2^F coalitions is evaluated, in large
batched forwards, and the index is a fixed linear map of those 2^F values (`ksii_map`), so a data set's
worth is one matrix product. Above that, shapiq's KernelSHAP-IQ estimates it from a budget of sampled
coalitions, with a seed, and the error is estimated from two independent half-budget runs. A split of such
a data set is measured on a seeded subsample of its rows (`sampled_split_interactions`), with the standard
error of each mean.

Agreement: the Spearman rank correlation, over the F(F-1)/2 field pairs, between attention
(symmetrised per pair, as `Correlations.strongest_pairs` does) and interaction strength |phi_ij|.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..data.encoding import FieldTensors
from ..errors import ConfigError
from ..model.autoint import AutoInt
from ..training.runs import WEIGHTS
from ..training.shapley import EXACT_MAX_FIELDS, InteractionError, coalitions, game_values, ksii_map, pair_index
from .baselines import BASELINES, baseline_embedding, device_of

DEFAULT_BUDGET = 2000  # coalitions a sample for the sampling estimator


def _sampled_rows(default: int = 64) -> int:
    """AUTOINT_SAMPLED_ROWS, else `default`: a slow machine trades the half minute a 39-field model's readings take
    on a first visit (64 estimated samples) for fewer samples; every page says how many it measured."""
    value = os.environ.get("AUTOINT_SAMPLED_ROWS")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"AUTOINT_SAMPLED_ROWS={value!r}: give a whole number of samples, at least 1 (default "
                          f"{default}).")
    return int(value)


SAMPLED_ROWS = _sampled_rows()  # samples of a split measured by the estimator when exact values of all are out of reach
UNIFORM_TOLERANCE = 0.02  # a head whose every weight is within this of 1/F is "close to uniform"
CACHE_VERSION = 1


# ----------------------------------------------------------------------------- pairs (the exact map and the game: training/shapley.py)

def pairs_to_matrix(pairs: np.ndarray, n_fields: int) -> np.ndarray:
    """(..., P) pair values -> (..., F, F) symmetric matrices with a zero diagonal."""
    pairs = np.asarray(pairs)
    out = np.zeros(pairs.shape[:-1] + (n_fields, n_fields), dtype=pairs.dtype)
    for p, (i, j) in enumerate(pair_index(n_fields)):
        out[..., i, j] = out[..., j, i] = pairs[..., p]
    return out


def matrix_to_pairs(matrix: np.ndarray) -> np.ndarray:
    """(..., F, F) -> (..., P): each pair's mean of both directions (attention is not symmetric)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    F = matrix.shape[-1]
    return np.stack([(matrix[..., i, j] + matrix[..., j, i]) / 2 for i, j in pair_index(F)], axis=-1)


# ----------------------------------------------------------------------------- the game

def field_codes(schema, x: FieldTensors) -> torch.Tensor:
    """(n, F) int64: each sample's value of each field as a dense code 0..k_f-1 within this batch (schema order).
    Two samples share a code exactly when the field's encoded input is the same."""
    columns = {"categorical": list(x.categorical.T), "multivalued": list(x.multivalued.unbind(1)),
               "numeric": list(x.numeric.T.contiguous().view(torch.int32))}  # a float's bits, so equal means equal
    taken = {kind: 0 for kind in columns}
    codes = []
    for f in schema.fields:
        column = columns[f.kind][taken[f.kind]]
        taken[f.kind] += 1
        _, code = torch.unique(column, dim=0 if column.dim() > 1 else None, return_inverse=True)
        codes.append(code.view(-1))
    return torch.stack(codes, dim=1)  # (n, F)


@torch.no_grad()
def distinct_game_values(model: AutoInt, embedded: torch.Tensor, baseline: torch.Tensor, masks: torch.Tensor,
                         codes: torch.Tensor, rows: int = 1024) -> torch.Tensor:
    """`game_values`, but each distinct model input is run once: a coalition input depends only on the values of
    the fields inside it, so small coalitions repeat across samples (Gender alone has two inputs in any batch).
    On the u2999 test split, batches of 2,048 samples hold 72% distinct inputs. Falls back to `game_values` when
    the batch's value codes cannot form one 63-bit key per input."""
    N, F, d = embedded.shape
    C = masks.shape[0]
    sizes = (codes.max(0).values + 2).tolist()  # per field: its codes, plus one for "absent"
    if math.prod(sizes) >= 2 ** 62:
        return game_values(model, embedded, baseline, masks, rows)
    device = embedded.device
    keyed = torch.where(masks.to(device).view(1, C, F), codes.to(device).view(N, 1, F) + 1, 0)  # (N, C, F) 0 = absent
    key = torch.zeros(N, C, dtype=torch.int64, device=device)
    for f in range(F):  # mixed radix: one exact integer per (sample, coalition) input
        key = key * sizes[f] + keyed[:, :, f]
    distinct, inverse = torch.unique(key.view(-1), return_inverse=True)  # (U,), (N * C,)
    first = torch.full((len(distinct),), N * C, dtype=torch.long, device=device)
    first = first.scatter_reduce(0, inverse, torch.arange(N * C, device=device), reduce="amin")  # (U,) a row of each
    sample, coalition = first // C, first % C  # (U,), (U,)
    masks_d, base = masks.to(device), baseline.to(device).view(1, F, d)
    values = torch.empty(len(distinct), dtype=torch.float64)
    for start in range(0, len(distinct), rows):
        s, c = sample[start:start + rows], coalition[start:start + rows]
        mixed = torch.where(masks_d[c].unsqueeze(-1), embedded[s], base)  # (u, F, d) fields outside S at the baseline
        values[start:start + rows] = model.forward_embedded(mixed).double().cpu()  # (u,)
    return values[inverse.cpu()].view(N, C)  # (N, C)


# ----------------------------------------------------------------------------- one sample

@dataclass
class SampleInteractions:
    """One sample's k-SII: signed values in logit units."""

    fields: list[str]
    main: np.ndarray  # (F,) first-order values
    pairs: np.ndarray  # (P,) pair values, `pair_index` order
    full: float  # v(all fields): the model's logit
    empty: float  # v(no field): the baseline's logit
    method: str = "exact"  # or "KernelSHAPIQ"
    budget: int | None = None  # coalitions evaluated
    seed: int | None = None
    error: np.ndarray | None = None  # (F + P,) estimated standard error of each value (sampling only)

    @property
    def matrix(self) -> np.ndarray:
        return pairs_to_matrix(self.pairs, len(self.fields))  # (F, F) signed, zero diagonal

    @property
    def efficiency_gap(self) -> float:
        """|sum of all values - (v(all) - v(none))|: 0 up to rounding for the exact index."""
        return float(abs(self.main.sum() + self.pairs.sum() - (self.full - self.empty)))

    def ranked_pairs(self, labels: Sequence[str] | None = None) -> list[dict]:
        return _ranked(self.pairs, labels or self.fields, signed=True)

    def to_json(self, labels: Sequence[str] | None = None) -> dict:
        out = {"fields": self.fields, "labels": list(labels or self.fields), "matrix": self.matrix.tolist(),
               "main": self.main.tolist(), "pairs": self.ranked_pairs(labels), "logit": self.full,
               "baseline_logit": self.empty, "efficiency_gap": self.efficiency_gap,
               "method": self.method, "units": "logit"}
        if self.method != "exact":
            out.update(budget=self.budget, seed=self.seed,
                       standard_error={"mean": float(self.error.mean()), "max": float(self.error.max())})
        return out


def _ranked(pairs: np.ndarray, labels: Sequence[str], signed: bool) -> list[dict]:
    F = len(labels)
    rows = []
    for p, (i, j) in enumerate(pair_index(F)):
        row = {"fields": [labels[i], labels[j]], "strength": float(abs(pairs[p]))}
        if signed:
            row["value"] = float(pairs[p])
        rows.append(row)
    return sorted(rows, key=lambda r: -r["strength"])


@torch.no_grad()
def sample_interactions(model: AutoInt, x: FieldTensors, baseline: torch.Tensor, *, budget: int = DEFAULT_BUDGET,
                        seed: int = 0) -> SampleInteractions:
    """k-SII of one sample (x holds one row): exact up to EXACT_MAX_FIELDS fields, sampled above."""
    if len(x) != 1:
        raise InteractionError(f"sample_interactions explains one sample; got {len(x)}.")
    model.eval()
    F = len(model.schema.fields)
    embedded = model.embed(x.to(device_of(model)))  # (1, F, d)
    if F <= EXACT_MAX_FIELDS:
        values = game_values(model, embedded, baseline, coalitions(F))[0].numpy()  # (C,)
        phi = ksii_map(F) @ values  # (F + P,)
        return SampleInteractions(model.schema.names, phi[:F], phi[F:], float(values[-1]), float(values[0]))
    return _sampled(model, embedded, baseline, budget, seed)


def _sampled(model: AutoInt, embedded: torch.Tensor, baseline: torch.Tensor, budget: int,
             seed: int) -> SampleInteractions:
    """KernelSHAP-IQ (shapiq) for k-SII, as the mean of two independent half-budget runs, whose
    difference gives each value's standard error."""
    try:
        from shapiq.approximator import KernelSHAPIQ
    except ImportError as exc:  # pragma: no cover - shapiq is in requirements.txt
        raise InteractionError(f"more than {EXACT_MAX_FIELDS} fields need the shapiq package "
                               f"(pip install shapiq): {exc}") from exc
    F = embedded.shape[1]
    if budget < 4 * (F + 1):
        raise InteractionError(f"a budget of {budget} coalitions is too small for {F} fields; give at least "
                               f"{4 * (F + 1)} (the default is {DEFAULT_BUDGET}).")
    index = pair_index(F)

    def game(coalition_matrix: np.ndarray) -> np.ndarray:  # (n, F) bool -> (n,) logits
        masks = torch.as_tensor(np.asarray(coalition_matrix, dtype=bool))
        return game_values(model, embedded, baseline, masks)[0].numpy()

    empty = game(np.zeros((1, F), dtype=bool))[0]  # v(no field)
    full = game(np.ones((1, F), dtype=bool))[0]  # v(all fields)
    runs = []
    for half in range(2):
        approximator = KernelSHAPIQ(n=F, max_order=2, index="k-SII", random_state=seed * 2 + half)
        result = approximator.approximate(budget // 2, game)
        lookup, found = result.interaction_lookup, result.values  # `values` copies the array on every access
        runs.append(np.array([found[lookup[(i,)]] for i in range(F)] + [found[lookup[pair]] for pair in index]))
    phi = (runs[0] + runs[1]) / 2  # (F + P,)
    error = np.abs(runs[0] - runs[1]) / 2  # the standard error of a mean of two, from their spread
    return SampleInteractions(model.schema.names, phi[:F], phi[F:], float(full), float(empty),
                              method="KernelSHAPIQ", budget=budget, seed=seed, error=error)


# ----------------------------------------------------------------------------- a split

@dataclass
class SplitInteractions:
    """k-SII over a split (or any set of inputs): every sample's exact values, or, for many fields, the sampling
    estimator's on a seeded subsample of the rows (`rows`: their indices in the split; `method` "KernelSHAPIQ").

    `keep` masks passed to the methods below are over the whole split either way; a subsample keeps its rows
    that the mask keeps, and `standard_error` says how far the mean over them may be from the split's."""

    fields: list[str]
    main: np.ndarray  # (N, F), or (n, F) for a subsample
    pairs: np.ndarray  # (N, P), or (n, P)
    efficiency_gap: float  # the largest over the samples
    baseline: str = "mean"
    method: str = "exact"  # or "KernelSHAPIQ": a subsample of rows, each estimated from `budget` coalitions
    rows: np.ndarray | None = None  # (n,) the subsample's indices in the split; None: every sample
    total: int | None = None  # samples in the split (a subsample's population)
    budget: int | None = None
    seed: int | None = None

    def __len__(self) -> int:
        return len(self.main)

    @property
    def sampled(self) -> bool:
        return self.rows is not None

    def _kept(self, values: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
        if keep is None:
            return values
        keep = np.asarray(keep, dtype=bool)
        return values[keep[self.rows] if self.rows is not None else keep]

    def count(self, keep: np.ndarray | None = None) -> int:
        """How many samples the means below average over (a subsample's rows that `keep` keeps)."""
        return len(self._kept(self.pairs, keep))

    def matrix(self, keep: np.ndarray | None = None) -> np.ndarray:
        """(F, F) mean |phi_ij| over the kept samples: how strongly the model combines each pair."""
        pairs = self._kept(self.pairs, keep)
        if len(pairs) == 0:
            return np.zeros((len(self.fields),) * 2)
        return pairs_to_matrix(np.abs(pairs).mean(0), len(self.fields))

    def standard_error(self, keep: np.ndarray | None = None) -> np.ndarray:
        """(F, F) the standard error of `matrix(keep)`: 0 for exact values of every sample; for a subsample, the
        spread of |phi_ij| over its rows / sqrt(rows), which holds both the choice of rows and each row's
        estimation noise (independent across rows). NaN with fewer than two rows."""
        F = len(self.fields)
        if not self.sampled:
            return np.zeros((F, F))
        pairs = np.abs(self._kept(self.pairs, keep))
        if len(pairs) < 2:
            return np.full((F, F), np.nan)
        return pairs_to_matrix(pairs.std(0, ddof=1) / np.sqrt(len(pairs)), F)

    def signed_matrix(self, keep: np.ndarray | None = None) -> np.ndarray:
        """(F, F) mean signed phi_ij: whether a pair raises or lowers the CTR on average."""
        pairs = self._kept(self.pairs, keep)
        return pairs_to_matrix(pairs.mean(0) if len(pairs) else np.zeros(self.pairs.shape[1]), len(self.fields))

    def main_strength(self, keep: np.ndarray | None = None) -> np.ndarray:
        main = self._kept(self.main, keep)
        return np.abs(main).mean(0) if len(main) else np.zeros(len(self.fields))

    def describe(self) -> dict:
        """How the values were obtained, for a report: the method, and a subsample's rows, budget and seed."""
        if not self.sampled:
            return {"method": self.method, "rows": len(self), "of": len(self)}
        return {"method": self.method, "rows": len(self), "of": self.total, "budget": self.budget, "seed": self.seed}

    def ranked_pairs(self, keep: np.ndarray | None = None) -> list[dict]:
        return _ranked(matrix_to_pairs(self.matrix(keep)), self.fields, signed=False)

    def save(self, path: str | os.PathLike) -> Path:
        """An .npz written to a temporary name and renamed, so a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=path.parent, prefix=".staging-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as fh:
                sampled = {"rows": self.rows.astype(np.int64)} if self.sampled else {}
                np.savez(fh, main=self.main.astype(np.float32), pairs=self.pairs.astype(np.float32), **sampled,
                         meta=np.array(json.dumps({"fields": self.fields, "efficiency_gap": self.efficiency_gap,
                                                   "baseline": self.baseline, "version": CACHE_VERSION,
                                                   "method": self.method, "total": self.total,
                                                   "budget": self.budget, "seed": self.seed})))
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        return path

    @staticmethod
    def load(path: str | os.PathLike) -> "SplitInteractions":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("version") != CACHE_VERSION:
                raise InteractionError(f"{path}: cache version {meta.get('version')}, expected {CACHE_VERSION}")
            return SplitInteractions(meta["fields"], data["main"].astype(np.float64),
                                     data["pairs"].astype(np.float64), meta["efficiency_gap"], meta["baseline"],
                                     method=meta.get("method", "exact"),
                                     rows=data["rows"].astype(np.int64) if "rows" in data.files else None,
                                     total=meta.get("total"), budget=meta.get("budget"), seed=meta.get("seed"))


@torch.no_grad()
def split_interactions(model: AutoInt, inputs: FieldTensors, baseline: torch.Tensor, *, baseline_name: str = "mean",
                       samples_per_batch: int | None = None,
                       progress: Callable[[int, int], None] | None = None) -> SplitInteractions:
    """Exact k-SII of every sample: (N * 2^F) forwards in large batches, then one matrix product.

    progress(done, total) is called after each batch of samples."""
    model.eval()
    F = len(model.schema.fields)
    if F > EXACT_MAX_FIELDS:
        raise InteractionError(f"{F} fields: split-level interactions are exact only up to {EXACT_MAX_FIELDS} "
                               f"fields; use sampled_split_interactions (a subsample of rows, each estimated) above that.")
    masks = coalitions(F)  # (C, F)
    C = masks.shape[0]
    A = torch.from_numpy(ksii_map(F)).T.contiguous()  # (C, F + P) float64
    n = len(inputs)
    step = samples_per_batch or max(1, 262144 // C)  # 2,048 samples a batch at 7 fields: more repeats to skip
    device = device_of(model)
    phi = torch.empty(n, A.shape[1], dtype=torch.float64)
    gap = 0.0
    for start in range(0, n, step):
        x = inputs.index(slice(start, start + step)).to(device)
        values = distinct_game_values(model, model.embed(x), baseline, masks, field_codes(model.schema, x))  # (n, C)
        chunk = values @ A  # (n, F + P)
        phi[start:start + len(x)] = chunk
        gap = max(gap, float((chunk.sum(1) - (values[:, -1] - values[:, 0])).abs().max()))
        if progress is not None:
            progress(min(start + step, n), n)
    phi_np = phi.numpy()
    return SplitInteractions(model.schema.names, phi_np[:, :F], phi_np[:, F:], gap, baseline_name)


@torch.no_grad()
def sampled_split_interactions(model: AutoInt, inputs: FieldTensors, baseline: torch.Tensor, *,
                               rows: int = SAMPLED_ROWS, budget: int = DEFAULT_BUDGET, seed: int = 0,
                               baseline_name: str = "mean", positions: np.ndarray | None = None,
                               progress: Callable[[int, int], None] | None = None) -> SplitInteractions:
    """k-SII of a seeded random subsample of `rows` samples, each by `sample_interactions` (KernelSHAP-IQ from
    `budget` coalitions above EXACT_MAX_FIELDS fields, exact below): a split's interactions where 2^F forwards
    a sample are out of reach. `standard_error` of the result says how far its means may be from the split's.
    `positions` (indices into `inputs`) gives the subsample instead (`rows` is then ignored): the app's seeded
    sample of a split (`autoint.explain.sampling`), where row k's estimator seed depends on k alone, so a bigger prefix
    of the same sample repeats the smaller one's values.

    progress(done, total) is called after each row."""
    n = len(inputs)
    if n == 0:
        raise InteractionError("no samples to measure interactions on.")
    if positions is None:
        if rows < 1:
            raise InteractionError(f"a subsample of {rows} rows: give at least 1 (the default is {SAMPLED_ROWS}).")
        chosen = np.sort(np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False))
    else:
        chosen = np.asarray(positions, dtype=np.int64)
        if len(chosen) == 0 or chosen.min() < 0 or chosen.max() >= n:
            raise InteractionError(f"positions must be 1 or more indices from 0 to {n - 1:,} of the split.")
    model.eval()
    main, pairs, gap = [], [], 0.0
    for k, row in enumerate(chosen):
        one = sample_interactions(model, inputs.index(slice(int(row), int(row) + 1)), baseline, budget=budget,
                                  seed=seed * 100_003 + k)  # every row its own estimator seeds
        main.append(one.main)
        pairs.append(one.pairs)
        gap = max(gap, one.efficiency_gap)
        if progress is not None:
            progress(k + 1, len(chosen))
    method = "KernelSHAPIQ" if len(model.schema.fields) > EXACT_MAX_FIELDS else "exact"
    return SplitInteractions(model.schema.names, np.stack(main), np.stack(pairs), gap, baseline_name,
                             method=method, rows=chosen, total=n, budget=budget if method != "exact" else None,
                             seed=seed)


def cache_key(*parts) -> str:
    """A short stable name for a cached split: hash of the run's weights, data fingerprint, split, baseline."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def weights_digest(run_path: str | os.PathLike) -> str:
    """The run's identity for caching: its weights file's SHA-256 (a retrained run under the same name differs)."""
    digest = hashlib.sha256()
    with open(Path(run_path) / WEIGHTS, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Where split interactions are cached: $AUTOINT_CACHE_DIR, else data/cache (git-ignored), /interactions."""
    return Path(os.environ.get("AUTOINT_CACHE_DIR") or "data/cache") / "interactions"


def interactions_of_split(run_path: str | os.PathLike, model: AutoInt, dataset, split: str = "test", *,
                          baseline: str = "mean", progress: Callable[[int, int], None] | None = None,
                          cache_dir: str | os.PathLike | None = None, sampled: bool | None = None,
                          rows: int = SAMPLED_ROWS, budget: int = DEFAULT_BUDGET,
                          seed: int = 0) -> SplitInteractions:
    """A split's interactions for a saved run, cached by the run's weights, the data, the split and the baseline
    (the first request on the u2999 test split computes for about a minute; later ones load in milliseconds).

    Up to EXACT_MAX_FIELDS fields: exact, every sample. Above (or with `sampled=True`): a seeded subsample of
    `rows` samples, each estimated from `budget` coalitions (`sampled_split_interactions`)."""
    if baseline not in BASELINES:
        raise InteractionError(f"baseline {baseline!r}: choose one of {', '.join(BASELINES)}.")
    if sampled is None:
        sampled = len(model.schema.fields) > EXACT_MAX_FIELDS
    parts = [weights_digest(run_path), dataset.fingerprint, split, baseline, CACHE_VERSION]
    key = cache_key(*parts, "sampled", rows, budget, seed) if sampled else cache_key(*parts)

    def compute() -> SplitInteractions:
        train_x, _ = dataset.split("train")
        inputs, _ = dataset.split(split)
        base = baseline_embedding(model, baseline, train_x)
        if sampled:
            return sampled_split_interactions(model, inputs, base, rows=rows, budget=budget, seed=seed,
                                              baseline_name=baseline, progress=progress)
        return split_interactions(model, inputs, base, baseline_name=baseline, progress=progress)
    return cached_split_interactions(cache_dir or default_cache_dir(), key, compute)


def cached_split_interactions(cache_dir: str | os.PathLike, key: str,
                              compute: Callable[[], SplitInteractions]) -> SplitInteractions:
    """Load `<cache_dir>/<key>.npz`, or compute and save it. A damaged cache file is recomputed."""
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        try:
            return SplitInteractions.load(path)
        except (OSError, ValueError, KeyError, InteractionError):
            pass
    result = compute()
    try:
        result.save(path)
    except OSError:
        pass  # a read-only cache folder costs the next request the computation, nothing else
    return result


# ----------------------------------------------------------------------------- attention, read honestly

def head_entropy(attention: np.ndarray) -> np.ndarray:
    """(..., F, F) attention -> (...): each head's mean row entropy as a fraction of log F
    (1 = uniform over the fields, 0 = every row on one field)."""
    attention = np.asarray(attention, dtype=np.float64)
    F = attention.shape[-1]
    if F < 2:
        return np.zeros(attention.shape[:-2])
    p = np.clip(attention, 1e-12, 1.0)
    return (-(attention * np.log(p)).sum(-1)).mean(-1) / np.log(F)


def near_uniform(attention: np.ndarray, tolerance: float = UNIFORM_TOLERANCE) -> np.ndarray:
    """(..., F, F) -> (...) bool: every weight of the head lies within `tolerance` of 1/F."""
    attention = np.asarray(attention, dtype=np.float64)
    return (np.abs(attention - 1.0 / attention.shape[-1]) <= tolerance).all(axis=(-1, -2))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation, ties given their average rank; NaN when either side is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InteractionError(f"spearman needs two equal-length vectors; got shapes {a.shape} and {b.shape}.")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):  # ties share their average rank
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


@dataclass
class Agreement:
    """Spearman rho between attention and interaction strength over the field pairs."""

    overall: float  # attention averaged over layers and heads
    per_layer: list[float]  # attention averaged over each layer's heads
    per_head: list[list[float]]  # [layer][head]
    pairs: int

    def views(self) -> dict[str, float]:
        """{"overall": rho, "layer 1": rho, "layer 1 · head 1": rho, ...} for a bar chart."""
        out = {"overall": self.overall}
        for l, rho in enumerate(self.per_layer):
            out[f"layer {l + 1}"] = rho
        for l, heads in enumerate(self.per_head):
            for h, rho in enumerate(heads):
                out[f"layer {l + 1} · head {h + 1}"] = rho
        return out

    @property
    def verdict(self) -> str:
        return verdict(self.overall, self.pairs)

    def to_json(self) -> dict:
        return {"overall": _finite(self.overall), "per_layer": [_finite(r) for r in self.per_layer],
                "per_head": [[_finite(r) for r in heads] for heads in self.per_head], "pairs": self.pairs,
                "verdict": self.verdict, "method": "Spearman rank correlation over field pairs between attention "
                "(both directions averaged) and |pairwise Shapley interaction|"}


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def agreement(attention: np.ndarray, interaction: np.ndarray) -> Agreement:
    """attention (L, H, F, F), interaction strength (F, F) (|signed| for a sample, mean |.| for a split)."""
    attention = np.asarray(attention, dtype=np.float64)
    interaction = np.abs(np.asarray(interaction, dtype=np.float64))
    if attention.ndim != 4 or attention.shape[-2:] != interaction.shape or interaction.shape[0] != interaction.shape[1]:
        raise InteractionError(f"agreement needs attention (L, H, F, F) and interaction (F, F) over the same "
                               f"fields; got {attention.shape} and {interaction.shape}.")
    strength = matrix_to_pairs(interaction)  # (P,)
    L, H = attention.shape[:2]
    if L == 0:
        return Agreement(float("nan"), [], [], len(strength))
    overall = spearman(matrix_to_pairs(attention.mean(axis=(0, 1))), strength)
    per_layer = [spearman(matrix_to_pairs(attention[l].mean(0)), strength) for l in range(L)]
    per_head = [[spearman(matrix_to_pairs(attention[l, h]), strength) for h in range(H)] for l in range(L)]
    return Agreement(overall, per_layer, per_head, len(strength))


def verdict(rho: float, pairs: int, subject: str = "attention") -> str:
    """One plain sentence on how attention's ranking of field pairs (or a reading of it: `subject`) compares with
    the model's interactions."""
    if not np.isfinite(rho):
        return f"{subject} is the same for every pair here, so it ranks nothing (ρ undefined)"
    if rho >= 0.5:
        words = f"{subject} ranks pairs much like the model's interactions"
    elif rho >= 0.2:
        words = f"{subject} ranks pairs only loosely like the model's interactions"
    elif rho > -0.2:
        words = f"{subject}: its ranking of pairs is unrelated to the model's interactions"
    else:
        words = f"{subject} ranks pairs unlike the model's interactions"
    return f"{words} (ρ = {rho:+.2f} over {pairs} pairs)"


def strength_ranks(values: Sequence[float]) -> np.ndarray:
    """(P,) -> (P,) each pair's rank by strength, 1 = strongest; ties keep the pairs' order."""
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def pair_ranks(strength_pairs: np.ndarray, fields: Sequence[str], wanted: Sequence[tuple[str, str]]) -> list[dict]:
    """The rank (1 = strongest) of each wanted pair among all pairs by `strength_pairs` (P,)."""
    index = {frozenset((fields[i], fields[j])): p for p, (i, j) in enumerate(pair_index(len(fields)))}
    rank_of = strength_ranks(strength_pairs)
    out = []
    for a, b in wanted:
        p = index.get(frozenset((a, b)))
        out.append({"pair": [a, b], "rank": int(rank_of[p]) if p is not None else None, "of": len(strength_pairs),
                    "value": float(strength_pairs[p]) if p is not None else None})
    return out
