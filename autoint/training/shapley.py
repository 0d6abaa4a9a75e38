"""The exact pairwise Shapley interaction index (k-SII, order 2) as a linear map of a model's coalition values.

For one sample, v(S) is the model's logit when every field outside the coalition S is replaced by a baseline
embedding. Up to EXACT_MAX_FIELDS fields every one of the 2^F coalitions is evaluated in batched forwards
(`game_values`), and the index is a fixed linear map of those values (`ksii_map`). In terms of the Moebius
transform m(T) of v:

    phi_ij = sum_{T >= {i,j}} m(T) / (|T| - 1)
    phi_i  = m({i}) + sum_{T > {i}} m(T) (1/|T| - 1/2)

Here, below the explanation layer, because training uses it too: the readable preset's alignment term
(autoint/training/alignment.py) measures the interactions of a few samples of each batch. The explanation engine
(autoint/explain/interactions.py) builds on it: samples, splits, the sampling estimator above 12 fields, caching.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..errors import AutoIntError
from ..model.autoint import AutoInt

EXACT_MAX_FIELDS = 12  # 2^12 = 4,096 coalitions a sample


class InteractionError(AutoIntError, ValueError):
    """An interaction request that cannot be met (a baseline without its data, too many fields for exact values);
    the message says what to pass instead."""


def pair_index(n_fields: int) -> list[tuple[int, int]]:
    """Field pairs (i < j) in row-major order: the order of every `pairs` array here."""
    return [(i, j) for i in range(n_fields) for j in range(i + 1, n_fields)]


def coalitions(n_fields: int) -> torch.Tensor:
    """(2^F, F) bool: row c holds field f iff bit f of c is set (row 0 is the empty coalition)."""
    codes = torch.arange(2 ** n_fields).unsqueeze(1)  # (C, 1)
    return (codes >> torch.arange(n_fields)) & 1 == 1  # (C, F)


@lru_cache(maxsize=16)
def ksii_map(n_fields: int) -> np.ndarray:
    """(F + P, 2^F) float64 A such that [phi_1..phi_F, phi_pairs...] = A @ v, v indexed as `coalitions`.

    A = W M, with M the Moebius transform (m = M v) and W the weights above. A's rows are built as
    M^T w: a signed superset sum, one butterfly pass per field (F * 2^F work a row, not 4^F).
    """
    if not 1 <= n_fields <= EXACT_MAX_FIELDS:
        raise InteractionError(f"exact interactions take 1 to {EXACT_MAX_FIELDS} fields, not {n_fields}; "
                               f"use the sampling estimator above that.")
    F, C = n_fields, 2 ** n_fields
    members = coalitions(F).numpy()  # (C, F)
    size = members.sum(1)  # (C,) |T|
    rows = []
    for i in range(F):  # phi_i: m({i}) + sum over larger T holding i of m(T) (1/|T| - 1/2)
        w = np.where(members[:, i] & (size >= 2), 1.0 / np.maximum(size, 1) - 0.5, 0.0)
        w[1 << i] = 1.0
        rows.append(w)
    for i, j in pair_index(F):  # phi_ij: sum over T holding i and j of m(T) / (|T| - 1)
        rows.append(np.where(members[:, i] & members[:, j], 1.0 / np.maximum(size - 1, 1), 0.0))
    weights = np.stack(rows)  # (F + P, C) w(T)
    # (M^T w)[L] = sum_{T >= L} (-1)^{|T| - |L|} w[T]: for each field f, g[L] -= g[L + f] where f is not in L.
    out = weights.reshape((len(rows),) + (2,) * F).copy()  # axis 1 + (F - 1 - f) is bit f
    for f in range(F):
        axis = 1 + (F - 1 - f)
        without, with_ = np.take(out, 0, axis=axis), np.take(out, 1, axis=axis)
        out = np.stack([without - with_, with_], axis=axis)
    return out.reshape(len(rows), C)


@torch.no_grad()
def game_values(model: AutoInt, embedded: torch.Tensor, baseline: torch.Tensor, masks: torch.Tensor,
                rows: int = 1024) -> torch.Tensor:
    """v(S) for every sample and coalition: (N, F, d) embeddings, (1, F, d) baseline, (C, F) bool masks
    -> (N, C) float64 logits, evaluated `rows` sample-coalitions a forward."""
    N, F, d = embedded.shape
    C = masks.shape[0]
    device = embedded.device
    masks = masks.to(device).view(1, C, F, 1)  # (1, C, F, 1)
    base = baseline.to(device).view(1, 1, F, d)  # (1, 1, F, d)
    per_chunk = max(1, rows // C)
    out = torch.empty(N, C, dtype=torch.float64)
    for start in range(0, N, per_chunk):
        e = embedded[start:start + per_chunk].unsqueeze(1)  # (n, 1, F, d)
        mixed = torch.where(masks, e, base)  # (n, C, F, d) fields outside S at the baseline
        logits = model.forward_embedded(mixed.reshape(-1, F, d))  # (n * C,)
        out[start:start + per_chunk] = logits.view(-1, C).double().cpu()
    return out
