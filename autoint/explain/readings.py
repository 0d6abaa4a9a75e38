"""Readings of the attention: six ways to turn one forward pass into field x field maps, each scored against the
interactions the model measurably uses (k-SII, autoint/explain/interactions.py).

The paper reads alpha itself (Fig. 7). On the paper's model that reading ranks field pairs *against* the measured
interactions (benchmarks/results/attention-faithfulness/), so the app shows every reading with its agreement and
lets the data say which one to trust for a model. Every reading gives, per sample, a map per layer and head,
(L, H, F, F), row m = the field that receives, column k = the field it receives from:

  raw                   alpha^(l,h)_{m,k} itself (Eq. 5): the paper's reading.
  rollout               Abnar & Zuidema (2020): A^_l = 0.5 * alpha_l + 0.5 * I (the residual as identity), chained
                        through the layers, R_l = A^_{l,h} R_{l-1} with R_0 = I (heads averaged in R_{l-1}).
                        Its summary is the last layer's head mean, R_L = A^_L ... A^_1.
  value-norm            Kobayashi et al. (2020): alpha_{m,k} * ||W_Value e_k|| of the head: a weight on a
                        vector that is nearly zero moves nothing.
  gradient              |d logit / d alpha_{m,k}|: how much the prediction would move per unit of that weight
                        (the total derivative, later layers' attention following; Chefer et al. 2021's gradient).
  attention-x-gradient  |alpha_{m,k} * d logit / d alpha_{m,k}|: the first-order share of the logit that flows
                        through the edge (Chefer et al. 2021, Hao et al. 2021's attention attribution).
  value-zeroing         Mohebbi et al. (2023): |logit - logit'| where, in that layer and head only, field m stops
                        receiving field k's value (alpha_{m,k} W_Value e_k removed from Eq. 6); the change
                        follows the edge through the residual, the ReLU, later layers and Eq. 9 to the logit.
                        It costs one pass per edge through the layers from the edge's own on (H * F^2 copies a
                        layer: 98 at 7 fields, 3,042 at 39; the earlier layers are computed once); a split reading
                        zeroes at most READING_ROWS samples (autoint.explain.sampling, a seeded prefix).

A reading's summary over layers and heads is their mean (rollout: R_L). Agreement with the interactions compares
the summary's field pairs (both directions averaged, the diagonal left out) with |k-SII|: Spearman rho over the
pairs, and precision@3, how many of the 3 strongest measured pairs the reading ranks in its own top 3.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..data.encoding import FieldTensors
from ..errors import AutoIntError
from .baselines import device_of
from .interactions import matrix_to_pairs, spearman


class ReadingError(AutoIntError, ValueError):
    """A reading that does not exist, or that a model cannot give (no attention); the message says which."""


@dataclass(frozen=True)
class Reading:
    name: str
    title: str
    definition: str
    paper: str


READINGS: dict[str, Reading] = {r.name: r for r in (
    Reading("raw", "raw α (the paper's reading)", "the attention weight α_{m,k} of Eq. 5",
            "Song et al., CIKM 2019"),
    Reading("rollout", "attention rollout", "0.5·α + 0.5·I, multiplied through the layers",
            "Abnar & Zuidema, ACL 2020"),
    Reading("value-norm", "α · ‖value‖", "α_{m,k} times the length of the head's value vector W_Value e_k",
            "Kobayashi et al., EMNLP 2020"),
    Reading("gradient", "|∂logit/∂α|", "how far the logit moves per unit of the weight α_{m,k}",
            "Chefer et al., ICCV 2021"),
    Reading("attention-x-gradient", "|α · ∂logit/∂α|", "the first-order share of the logit through the edge",
            "Hao et al., AAAI 2021"),
    Reading("value-zeroing", "value zeroing", "|Δlogit| when field m stops receiving field k's value in that "
            "layer and head", "Mohebbi et al., EACL 2023"),
)}
NAMES = tuple(READINGS)
PAPER_READING = "raw"
TOP_K = 3  # precision@3


def check_names(names: Sequence[str] | None) -> tuple[str, ...]:
    """The readings asked for, in NAMES order; an unknown name is refused with the list."""
    if names is None:
        return NAMES
    unknown = [n for n in names if n not in READINGS]
    if unknown:
        raise ReadingError(f"unknown reading {unknown[0]!r}; choose from {', '.join(NAMES)}.")
    return tuple(n for n in NAMES if n in names)


def has_attention(model) -> bool:
    return getattr(getattr(model, "config", None), "layers", 0) > 0 and hasattr(model, "interacting")


def require_attention(model) -> None:
    if not has_attention(model):
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise ReadingError(f"{name} has no attention (no interacting layer), so there is nothing to read; "
                           "the interactions still apply to it.")


# ----------------------------------------------------------------------------- maps of a batch

def _rollout(raw: np.ndarray) -> np.ndarray:
    """raw (B, L, H, F, F) -> (B, L, H, F, F): head h of layer l is (0.5 alpha_{l,h} + 0.5 I) R_{l-1}."""
    B, L, H, F, _ = raw.shape
    eye = np.eye(F)
    out = np.empty_like(raw, dtype=np.float64)
    previous = np.broadcast_to(eye, (B, F, F))  # R_0 = I
    for l in range(L):
        step = 0.5 * raw[:, l] + 0.5 * eye  # (B, H, F, F)
        out[:, l] = step @ previous[:, None]  # (B, H, F, F)
        previous = out[:, l].mean(1)  # (B, F, F) R_l, heads averaged
    return out


ZEROING_ELEMENTS = 1 << 23  # attention weights held by one batch of value-zeroing copies (about 32 MiB)
# What a split's value zeroing may cost, in copies x fields: 2,000 samples at 7 fields (294 copies each). A wider
# schema zeroes fewer samples (39 fields: 27,378 copies of 39 fields a sample, so 11), a prefix of the rows read.
ZEROING_BUDGET = 2_000 * 3 * 2 * 7 ** 3


def zeroing_rows(model, rows: int) -> int:
    """How many of `rows` samples a split's value zeroing reads (at least 1): ZEROING_BUDGET's share."""
    L, H, F = model.config.layers, model.config.heads, len(model.schema.fields)
    return max(1, min(rows, ZEROING_BUDGET // max(1, L * H * F ** 3)))


def _value_zeroing(model, embedded: torch.Tensor) -> np.ndarray:
    """(B, L, H, F, F) |logit change| with one edge (l, h, m, k) removed from Eq. 6: one copy of a sample per edge
    of layer l, run from layer l's input on (`AutoInt.forward_from`: the layers before it are the same for every
    copy), batched over (sample, edge) so that a batch holds about ZEROING_ELEMENTS attention weights."""
    from ..model.autoint import InteractingLayer
    B, F, _ = embedded.shape
    L, H = model.config.layers, model.config.heads
    edges = H * F * F  # edges of one layer
    device = embedded.device
    edge = torch.arange(edges, device=device)
    edge_h, edge_m, edge_k = edge // (F * F), edge // F % F, edge % F  # (E,) head, receiving field m, field k
    inputs, e = [], embedded
    for layer in model.interacting:  # each layer's input, (B, F, in)
        inputs.append(e)
        e, _ = InteractingLayer.forward(layer, e)
    base = model.output(e.reshape(B, -1)).squeeze(-1)  # (B,) Eq. 9 without AutoInt+'s DNN (which no edit changes)
    chunk = max(1, ZEROING_ELEMENTS // (H * F * F))  # copies per batch
    change = torch.empty(L, B * edges, dtype=torch.float64)  # (L, sample-major copies)
    for l in range(L):
        for start in range(0, B * edges, chunk):
            copy = torch.arange(start, min(start + chunk, B * edges), device=device)  # (c,)
            sample, which = copy // edges, copy % edges  # (c,), (c,)

            def zero_edge(layer, alpha, value):  # alpha (c, H, F, F): each copy's edge zeroed in layer l only
                if layer != l:
                    return alpha
                weights = alpha.clone()
                weights[torch.arange(len(which), device=device), edge_h[which], edge_m[which], edge_k[which]] = 0.0
                return weights

            zeroed = model.forward_from(l, inputs[l][sample], edit=zero_edge)  # (c,)
            change[l, start:start + len(copy)] = (zeroed - base[sample]).abs().double().cpu()
    return change.view(L, B, H, F, F).permute(1, 0, 2, 3, 4).numpy()


def read_batch(model, x: FieldTensors, names: Sequence[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The readings of a batch: logits (B,) and {name: (B, L, H, F, F)}, from the same weights in eval mode."""
    names = check_names(names)
    require_attention(model)
    model.eval()
    device = device_of(model)
    with torch.no_grad():
        embedded = model.embed(x.to(device))  # (B, F, d)
    L = model.config.layers
    seen_alpha, seen_value, zeros = [None] * L, [None] * L, [None] * L

    def watch(l, alpha, value):  # alpha (B, H, F, F), value (B, H, F, d')
        seen_alpha[l], seen_value[l] = alpha.detach(), value.detach()
        zeros[l] = torch.zeros_like(alpha, requires_grad=True)  # d logit / d zeros = d logit / d alpha, total
        return alpha + zeros[l]

    wants_gradient = any(n in names for n in ("gradient", "attention-x-gradient"))
    with torch.enable_grad():
        logit = model.forward_embedded(embedded, edit=watch)  # (B,)
        if wants_gradient:
            gradients = torch.autograd.grad(logit.sum(), zeros)  # each (B, H, F, F)
    raw = torch.stack(seen_alpha, 1).double().cpu().numpy()  # (B, L, H, F, F)
    out: dict[str, np.ndarray] = {}
    if "raw" in names:
        out["raw"] = raw
    if "rollout" in names:
        out["rollout"] = _rollout(raw)
    if "value-norm" in names:
        norms = torch.stack(seen_value, 1).norm(dim=-1).double().cpu().numpy()  # (B, L, H, F_k)
        out["value-norm"] = raw * norms[..., None, :]
    if wants_gradient:
        grad = torch.stack(gradients, 1).double().cpu().numpy()  # (B, L, H, F, F)
        if "gradient" in names:
            out["gradient"] = np.abs(grad)
        if "attention-x-gradient" in names:
            out["attention-x-gradient"] = np.abs(raw * grad)
    if "value-zeroing" in names:
        with torch.no_grad():
            out["value-zeroing"] = _value_zeroing(model, embedded)
    return logit.detach().cpu().numpy(), {n: out[n] for n in names}


def summarise(name: str, maps: np.ndarray) -> np.ndarray:
    """(..., L, H, F, F) -> (..., F, F): layers and heads averaged; rollout: the last layer's head mean (R_L)."""
    if name == "rollout":
        return maps[..., -1, :, :, :].mean(-3)
    return maps.mean(axis=(-4, -3))


def pairs_of(matrix: np.ndarray) -> np.ndarray:
    """(..., F, F) -> (..., P): both directions of each pair averaged, diagonal left out."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim == 2:
        return matrix_to_pairs(matrix)
    return np.stack([matrix_to_pairs(m) for m in matrix.reshape(-1, *matrix.shape[-2:])]).reshape(
        *matrix.shape[:-2], -1)


def precision_at(reading_pairs: np.ndarray, measured_pairs: np.ndarray, k: int = TOP_K) -> float:
    """How many of the k strongest measured pairs (by |value|) are among the reading's k strongest, over k."""
    k = min(k, len(measured_pairs))
    if k == 0:
        return float("nan")
    top_measured = set(np.argsort(-np.abs(measured_pairs), kind="stable")[:k].tolist())
    top_reading = set(np.argsort(-np.asarray(reading_pairs), kind="stable")[:k].tolist())
    return len(top_measured & top_reading) / k


# ----------------------------------------------------------------------------- scored readings

@dataclass
class ScoredReading:
    """One reading of one sample or a split, with its agreement against the same samples' |k-SII|."""

    name: str
    matrix: np.ndarray  # (F, F) the summary (a split: the mean over its samples)
    per_head: np.ndarray  # (L, H, F, F) the same before the summary
    agreement: float  # Spearman rho over the pairs
    precision_at_3: float
    per_sample: np.ndarray | None = None  # (n,) each sample's own rho (a split)

    def quartiles(self) -> dict | None:
        if self.per_sample is None:
            return None
        finite = self.per_sample[np.isfinite(self.per_sample)]
        if len(finite) == 0:
            return {"median": None, "q1": None, "q3": None, "samples": 0}
        q1, median, q3 = np.quantile(finite, [0.25, 0.5, 0.75])
        return {"median": float(median), "q1": float(q1), "q3": float(q3), "samples": int(len(finite))}

    def to_json(self) -> dict:
        reading = READINGS[self.name]
        out = {"title": reading.title, "definition": reading.definition, "paper": reading.paper,
               "matrix": self.matrix.tolist(), "agreement": _finite(self.agreement),
               "precision_at_3": _finite(self.precision_at_3)}
        if self.per_sample is not None:
            out["per_sample_agreement"] = self.quartiles()
        return out


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


@dataclass
class Readings:
    """Every reading asked for, scored; `default` is the one to show first (the highest agreement, ties to the
    earlier name in NAMES, unless the caller fixed it)."""

    readings: dict[str, ScoredReading]
    default: str
    fields: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> ScoredReading:
        if name not in self.readings:
            raise ReadingError(f"reading {name!r} was not computed; computed: {', '.join(self.readings)}.")
        return self.readings[name]

    def to_json(self) -> dict:
        return {"readings": {n: r.to_json() for n, r in self.readings.items()}, "reading": self.default}


def best_reading(scores: dict[str, float]) -> str:
    """The name with the highest finite agreement; raw alpha when none is finite."""
    finite = {n: s for n, s in scores.items() if s is not None and np.isfinite(s)}
    if not finite:
        return PAPER_READING
    return max(finite, key=lambda n: (finite[n], -NAMES.index(n)))


def score_sample(model, x: FieldTensors, interaction_pairs: np.ndarray, names: Sequence[str] | None = None,
                 default: str | None = None) -> Readings:
    """The readings of one sample (x holds one row) against its own signed k-SII pairs (P,)."""
    if len(x) != 1:
        raise ReadingError(f"score_sample reads one sample; got {len(x)}.")
    _, maps = read_batch(model, x, names)
    measured = np.abs(np.asarray(interaction_pairs, dtype=np.float64))
    scored = {}
    for name, m in maps.items():
        per_head = m[0]  # (L, H, F, F)
        matrix = summarise(name, per_head)
        pairs = pairs_of(matrix)
        scored[name] = ScoredReading(name, matrix, per_head, spearman(pairs, measured), precision_at(pairs, measured))
    chosen = default if default in scored else best_reading({n: r.agreement for n, r in scored.items()})
    return Readings(scored, chosen, list(model.schema.names))


def score_split(model, inputs: FieldTensors, interaction_pairs: np.ndarray, names: Sequence[str] | None = None,
                *, batch_size: int = 512, max_rows: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> Readings:
    """The readings of a set of samples against their k-SII: `interaction_pairs` (N, P) signed, row i the
    k-SII of inputs row i. The split's matrix is the mean of the samples' maps, scored against the mean |k-SII|;
    every sample is also scored alone (`per_sample`). `max_rows`: read only the first rows (a seeded sample's
    prefix keeps the sample seeded). Value zeroing reads only the first `zeroing_rows` of them (its budget); its
    per-sample scores of the others are NaN, and its split matrix is the mean over those it read."""
    names = check_names(names)
    require_attention(model)
    n = len(inputs) if max_rows is None else min(len(inputs), max_rows)
    measured = np.abs(np.asarray(interaction_pairs, dtype=np.float64))[:n]  # (n, P)
    if len(measured) != n:
        raise ReadingError(f"{n} samples but {len(measured)} rows of interactions; they must be the same samples.")
    L, H, F = model.config.layers, model.config.heads, len(model.schema.fields)
    sums = {name: np.zeros((L, H, F, F)) for name in names}
    per_sample = {name: np.full(n, np.nan) for name in names}
    counts = {name: n for name in names}
    if "value-zeroing" in names:
        counts["value-zeroing"] = zeroing_rows(model, n)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        wanted = [name for name in names if start < counts[name]]
        _, maps = read_batch(model, inputs.index(slice(start, min(stop, max(counts[w] for w in wanted)))), wanted)
        for name, m in maps.items():
            m = m[:max(0, counts[name] - start)]
            sums[name] += m.sum(0)
            sample_pairs = pairs_of(summarise(name, m))  # (b, P)
            per_sample[name][start:start + len(m)] = [spearman(p, q) for p, q in zip(sample_pairs, measured[start:])]
        if progress is not None:
            progress(stop, n)
    scored = {}
    for name in names:
        per_head = sums[name] / max(counts[name], 1)
        matrix = summarise(name, per_head)
        pairs = pairs_of(matrix)
        strength = measured[:counts[name]].mean(0) if n else np.zeros(F * (F - 1) // 2)  # (P,) mean |k-SII|
        scored[name] = ScoredReading(name, matrix, per_head, spearman(pairs, strength), precision_at(pairs, strength),
                                     per_sample[name])
    return Readings(scored, best_reading({k: r.agreement for k, r in scored.items()}), list(model.schema.names))
