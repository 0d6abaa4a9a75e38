"""Explanations of a trained AutoInt: attention, combinations, attributions, what-if, correlations.

Pure functions of (model, samples, schema). Every attention matrix here comes from the
model's one forward path (`AutoInt.forward(..., return_attention=True)`), the same pass
that produced the prediction shown beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import UsageError
from ..data.encoding import FieldTensors, check_values, encode_checked, field_labels
from .baselines import device_of, unknown_embedding
from .readings import Readings, has_attention, score_sample
from .interactions import Agreement, SampleInteractions, agreement, head_entropy, near_uniform, sample_interactions
from ..model.autoint import AutoInt
from ..data.schema import Schema, SchemaError

ATTRIBUTION_METHODS = ("integrated_gradients", "feature_ablation", "shapley")
METHOD_NAMES = {"integrated_gradients": "Integrated Gradients", "feature_ablation": "Feature Ablation",
                "shapley": "Shapley Value Sampling"}


# ----------------------------------------------------------------------------- one sample

@dataclass
class Combination:
    fields: list[str]  # labels, in the order the information flows
    layers: list[int]  # 1-based layers whose attention forms the combination
    weight: float
    text: str


@dataclass
class SampleExplanation:
    values: dict
    labels: list[str]
    ctr: float
    logit: float
    attention: np.ndarray  # (L, H, F, F): row m = query field, column k = field it attends to
    combinations: list[Combination] = field(default_factory=list)
    attributions: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (F,) logit units
    completeness_gap: float | None = None
    interactions: SampleInteractions | None = None  # the model's measured pairwise interactions (k-SII)
    readings: Readings | None = None  # every reading of the attention, scored against `interactions`

    @property
    def head_entropy(self) -> np.ndarray:
        return head_entropy(self.attention)  # (L, H) fraction of log F

    @property
    def near_uniform(self) -> np.ndarray:
        return near_uniform(self.attention)  # (L, H) every weight within 0.02 of 1/F

    @property
    def agreement(self) -> Agreement | None:
        """Attention against the sample's |interaction| over field pairs; None without interactions."""
        if self.interactions is None or self.attention.shape[0] == 0:
            return None
        return agreement(self.attention, self.interactions.matrix)

    def to_json(self) -> dict:
        out = {
            "ctr": self.ctr, "logit": self.logit, "labels": self.labels,
            "attention": self.attention.tolist(),
            "head_entropy": self.head_entropy.tolist(), "near_uniform_heads": self.near_uniform.tolist(),
            "combinations": [c.__dict__ for c in self.combinations],
            "attributions": {m: dict(zip(self.labels, map(float, v))) for m, v in self.attributions.items()},
            "attribution_units": "logit",
            "ig_completeness_gap": self.completeness_gap,
        }
        if self.interactions is not None:
            out["interactions"] = self.interactions.to_json(self.labels)
            out["agreement"] = self.agreement.to_json() if self.agreement is not None else None
        if self.readings is not None:
            out.update(self.readings.to_json())
        return out


@torch.no_grad()
def predict_with_attention(model: AutoInt, x: FieldTensors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CTR, logit and attention (B, L, H, F, F) from the same forward pass."""
    model.eval()
    logit, attention = model(x.to(device_of(model)), return_attention=True)
    return torch.sigmoid(logit).cpu(), logit.cpu(), attention.cpu()


def _strongest(weights: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest weights, largest first, ties in index order: a stable sort's first k, in O(n)."""
    if k >= len(weights):
        return np.argsort(-weights, kind="stable")
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    threshold = np.partition(weights, len(weights) - k)[len(weights) - k]  # the k-th largest
    candidates = np.flatnonzero(weights >= threshold)  # every weight above it and each tie, in index order
    return candidates[np.argsort(-weights[candidates], kind="stable")][:k]


def top_combinations(attention: np.ndarray, labels: Sequence[str], k: int = 5) -> list[Combination]:
    """Ranked combinatorial features: strong attention pairs, and chains across layers.

    A pair (m <- k) at layer l weighs alpha_{m,k} averaged over heads. A chain
    a -> b -> c says that at layer l-1 field b absorbed a, and at layer l field c absorbed b,
    so c's representation holds the 3rd-order combination <a, b, c>; it weighs the product.
    Self-attention (m = k) is left out: it combines nothing.
    """
    L, H, F, _ = attention.shape
    if L == 0:
        return []
    mean = attention.mean(axis=1)  # (L, F, F) averaged over heads
    # Every candidate's weight in one array, in the order (layer, m, j) / (layer, c, b, a), and a stable sort, so ties
    # keep that order; only the k kept become objects (39 fields, 3 layers: 110k chains, ~1 s as objects).
    layer_, m_, j_ = np.nonzero(np.broadcast_to(~np.eye(F, dtype=bool), (L, F, F)))  # each (L*F*(F-1),)
    weights = mean[layer_, m_, j_]  # (L*F*(F-1),)
    pairs = []
    for n in _strongest(weights, k):
        layer, m, j, w = int(layer_[n]), int(m_[n]), int(j_[n]), float(weights[n])
        pairs.append(Combination([labels[j], labels[m]], [layer + 1], w,
                                 f"<{labels[m]}, {labels[j]}>: in layer {layer + 1}, {labels[m]} "
                                 f"draws {w:.0%} of its attention from {labels[j]}"))
    if L < 2:
        return pairs
    # (L-1, c, b, a): alpha^l_{c,b} alpha^{l-1}_{b,a} for l = 1..L-1
    chain = mean[:-1, None, :, :] * mean[1:, :, :, None]  # (L-1, F, F, F)
    idx = np.arange(F)
    distinct = (idx[:, None, None] != idx[None, :, None]) & (idx[None, :, None] != idx[None, None, :]) \
        & (idx[:, None, None] != idx[None, None, :])  # (F, F, F): a, b and c all differ
    layer_, c_, b_, a_ = np.nonzero(np.broadcast_to(distinct, chain.shape))  # each (n,)
    weights = chain[layer_, c_, b_, a_]  # (n,)
    chains = []
    for n in _strongest(weights, k):
        layer, c, b, a, w = int(layer_[n]) + 1, int(c_[n]), int(b_[n]), int(a_[n]), float(weights[n])
        chains.append(Combination(
            [labels[a], labels[b], labels[c]], [layer, layer + 1], w,
            f"<{labels[a]}, {labels[b]}, {labels[c]}>: {labels[b]} took in {labels[a]} in layer "
            f"{layer} ({mean[layer - 1, b, a]:.0%}), then {labels[c]} took in {labels[b]} in layer "
            f"{layer + 1} ({mean[layer, c, b]:.0%})"))
    # Pairs and chains compete on one scale; a chain's weight is a product, so favour the
    # pair list by taking the k strongest of each and merging them.
    return pairs + chains


def explain_sample(model: AutoInt, values: dict, *, attributions: Sequence[str] = (),
                   baseline: torch.Tensor | None = None, top: int = 5, shapley_samples: int = 64,
                   seed: int = 0, interaction_baseline: torch.Tensor | None = None,
                   readings: Sequence[str] | None = None, reading: str | None = None) -> SampleExplanation:
    """The CTR, attention, combinations and (optionally) attributions of one sample; with
    `interaction_baseline` (1, F, d) also its pairwise Shapley interactions, and every reading of the attention
    (`readings`: names, default all; none for a model without attention) scored against them. `reading`: the name
    shown first (the model's own default, `sampling.model_readings`); None: the sample's best."""
    schema = model.schema
    values = check_values(schema, values)  # once: the encoding and the labels take the checked values
    x = encode_checked(schema, values)
    ctr, logit, attention = predict_with_attention(model, x)
    labels = field_labels(schema, values)
    attention_np = attention[0].numpy()
    out = SampleExplanation(values, labels, float(ctr[0]), float(logit[0]), attention_np,
                            top_combinations(attention_np, labels, top))
    if attributions:
        scores, gap = attribute(model, x, methods=attributions, baseline=baseline, shapley_samples=shapley_samples,
                                seed=seed)
        out.attributions, out.completeness_gap = scores, gap
    if interaction_baseline is not None:
        out.interactions = sample_interactions(model, x, interaction_baseline, seed=seed)
        if has_attention(model):
            out.readings = score_sample(model, x, out.interactions.pairs, readings, default=reading)
    return out


# ----------------------------------------------------------------------------- attributions (Captum)

def seeded_permutations(seed: int):
    """Captum's permutation source for Shapley Value Sampling, drawn from a generator of its own.

    Captum draws with `torch.randperm` from torch's process-wide generator, so seeding it per request
    (as this module once did) reseeded every other session of a shared server mid-computation. This
    local generator makes one request's permutations depend on its seed alone."""
    generator = torch.Generator().manual_seed(seed)

    def permutations(num_features: int, num_samples: int):
        for _ in range(num_samples):
            yield torch.randperm(num_features, generator=generator).tolist()
    return permutations


def attribution_methods() -> tuple[type, type, type]:
    """Captum's FeatureAblation, IntegratedGradients and ShapleyValueSampling. Imported on first use (captum.attr
    takes 0.4-0.5 s to import, matplotlib included), so commands that attribute nothing never pay for it; the app
    calls this while its first model trains, so the page that explains it does not wait for the import."""
    from captum.attr import FeatureAblation, IntegratedGradients, ShapleyValueSampling
    return FeatureAblation, IntegratedGradients, ShapleyValueSampling


def attribute(model: AutoInt, x: FieldTensors, methods: Sequence[str] = ATTRIBUTION_METHODS,
              baseline: torch.Tensor | None = None, shapley_samples: int = 64, ig_steps: int = 64,
              seed: int = 0) -> tuple[dict[str, np.ndarray], float | None]:
    """Per-field attributions of one sample's logit; returns ({method: (F,)}, IG completeness gap).

    - integrated_gradients: IG on the embedding layer's output from `baseline` (the training-mean
      embedding; pass it, or the sample's own all-`<unknown>` embedding is used). Summed over d.
    - feature_ablation: the logit drop when one field is set to its `<unknown>` slot.
    - shapley: Shapley Value Sampling with one feature group per field, `<unknown>` as absent.
    """
    FeatureAblation, IntegratedGradients, ShapleyValueSampling = attribution_methods()
    unknown = set(methods) - set(ATTRIBUTION_METHODS)
    if unknown:
        raise UsageError(f"unknown attribution methods {sorted(unknown)}; choose from {ATTRIBUTION_METHODS}")
    model.eval()
    device = device_of(model)
    schema = model.schema
    x = x.to(device)
    F, d = len(schema.fields), model.config.embed_dim
    with torch.no_grad():
        embedded = model.embed(x)  # (1, F, d)
        unknown_embedded = unknown_embedding(model).to(device)  # (1, F, d)
    forward = lambda e: model.forward_embedded(e)  # logit
    mask = torch.arange(F, device=device).view(1, F, 1).expand(1, F, d).contiguous()  # one group per field
    out, gap = {}, None
    if "integrated_gradients" in methods:
        base = (baseline if baseline is not None else unknown_embedded).to(device)
        ig = IntegratedGradients(forward)
        attr, delta = ig.attribute(embedded, baselines=base, n_steps=ig_steps, method="gausslegendre",
                                   internal_batch_size=ig_steps, return_convergence_delta=True)
        out["integrated_gradients"] = attr.sum(-1)[0].detach().cpu().numpy()
        gap = float(delta.abs().item())
    if "feature_ablation" in methods:
        attr = FeatureAblation(forward).attribute(embedded, baselines=unknown_embedded, feature_mask=mask,
                                                  perturbations_per_eval=F)
        out["feature_ablation"] = attr[0, :, 0].detach().cpu().numpy()
    if "shapley" in methods:
        sampler = ShapleyValueSampling(forward)
        sampler.permutation_generator = seeded_permutations(seed)  # never the process-wide generators
        attr = sampler.attribute(embedded, baselines=unknown_embedded, feature_mask=mask,
                                 n_samples=shapley_samples, perturbations_per_eval=F)
        out["shapley"] = attr[0, :, 0].detach().cpu().numpy()
    return out, gap


# ----------------------------------------------------------------------------- what-if

@dataclass
class WhatIf:
    before: SampleExplanation
    after: SampleExplanation
    edits: dict

    @property
    def ctr_change(self) -> float:
        return self.after.ctr - self.before.ctr

    @property
    def attention_change(self) -> np.ndarray:
        return self.after.attention - self.before.attention  # (L, H, F, F)

    @property
    def interaction_change(self) -> np.ndarray | None:
        """(F, F) signed after - before pairwise interactions, when both were measured."""
        if self.before.interactions is None or self.after.interactions is None:
            return None
        return self.after.interactions.matrix - self.before.interactions.matrix

    @property
    def attribution_change(self) -> dict[str, np.ndarray]:
        return {m: self.after.attributions[m] - self.before.attributions[m] for m in self.before.attributions}

    def to_json(self) -> dict:
        return {"edits": self.edits, "ctr_before": self.before.ctr, "ctr_after": self.after.ctr,
                "ctr_change": self.ctr_change, "labels_before": self.before.labels, "labels_after": self.after.labels,
                "attention_change": self.attention_change.tolist(),
                "attribution_change": {m: v.tolist() for m, v in self.attribution_change.items()},
                **({"interaction_change": self.interaction_change.tolist()}
                   if self.interaction_change is not None else {})}


def what_if(model: AutoInt, values: dict, edits: dict, *,
            explain: Callable[[dict], SampleExplanation] | None = None, **explain_kwargs) -> WhatIf:
    """Explain a sample before and after editing some field values (any field, genres and time included).
    `explain` (values -> explanation) replaces `explain_sample(model, values, **explain_kwargs)`: the app passes
    its cached one."""
    for name in edits:
        model.schema[name]  # unknown field names fail here, listing the fields
    explain = explain or (lambda sample: explain_sample(model, sample, **explain_kwargs))
    return WhatIf(explain(values), explain({**values, **edits}), dict(edits))


# ----------------------------------------------------------------------------- dataset level

@dataclass
class Correlations:
    """Attention averaged over a set of samples: the paper's Fig. 7(b)."""

    per_head: np.ndarray  # (L, H, F, F)
    count: int
    fields: list[str]
    description: str

    @property
    def per_layer(self) -> np.ndarray:
        return self.per_head.mean(axis=1)  # (L, F, F)

    @property
    def overall(self) -> np.ndarray:
        return self.per_head.mean(axis=(0, 1)) if self.per_head.shape[0] else np.zeros((len(self.fields),) * 2)

    def strongest_pairs(self, k: int = 10) -> list[dict]:
        """Off-diagonal field pairs by their mean attention in both directions."""
        o = self.overall
        F = len(self.fields)
        pairs = [{"fields": [self.fields[i], self.fields[j]], "weight": float((o[i, j] + o[j, i]) / 2),
                  "forward": float(o[i, j]), "backward": float(o[j, i])}
                 for i in range(F) for j in range(i + 1, F)]
        return sorted(pairs, key=lambda p: -p["weight"])[:k]

    def to_json(self) -> dict:
        return {"fields": self.fields, "count": self.count, "where": self.description,
                "per_head": self.per_head.tolist(), "per_layer": self.per_layer.tolist(),
                "overall": self.overall.tolist(), "strongest_pairs": self.strongest_pairs()}


def _slice_conditions(schema: Schema, where: dict | None) -> list[tuple]:
    """{field: value} filters as (kind, column, slot(s)) on the encoded tensors."""
    conditions = []
    for name, value in (where or {}).items():
        f = schema[name]
        if f.kind == "numeric":
            raise SchemaError(f"slicing by {name} needs a band, not a value: filter by a categorical or multi-valued "
                              f"field, or by a CTR band, instead.")
        column = [g.name for g in schema.of_kind(f.kind)].index(name)
        if f.kind == "multivalued":
            conditions.append(("multivalued", column, [f.index(v) for v in (value if isinstance(value, list) else [value])]))
        else:
            conditions.append(("categorical", column, f.index(value)))
    return conditions


def _keep(x: FieldTensors, conditions: list[tuple], labels: torch.Tensor | None, label: int | None,
          logit: torch.Tensor | None, ctr_band: tuple[float, float] | None) -> torch.Tensor:
    """(B,) bool: the batch's samples that pass every filter."""
    keep = torch.ones(len(x), dtype=torch.bool, device=x.categorical.device)
    for kind, column, slot in conditions:
        if kind == "categorical":
            keep &= x.categorical[:, column] == slot
        else:
            for s in slot:
                keep &= (x.multivalued[:, column] == s).any(-1)
    if label is not None:
        keep &= labels.to(keep.device) == label
    if ctr_band is not None:
        ctr = torch.sigmoid(logit)
        keep &= (ctr >= ctr_band[0]) & (ctr < ctr_band[1])
    return keep


def describe_slice(where: dict | None, label: int | None, ctr_band: tuple[float, float] | None) -> str:
    described = [f"{k}={v}" for k, v in (where or {}).items()]
    if label is not None:
        described.append(f"label={label}")
    if ctr_band is not None:
        described.append(f"{ctr_band[0]:.2f}<=CTR<{ctr_band[1]:.2f}")
    return " and ".join(described) or "all samples"


@torch.no_grad()
def slice_mask(model: AutoInt, inputs: FieldTensors, labels: torch.Tensor | None = None, *, where: dict | None = None,
               label: int | None = None, ctr_band: tuple[float, float] | None = None,
               batch_size: int = 65536) -> np.ndarray:
    """(N,) bool: which samples pass the same filters as `dataset_correlations` (for interactions of a slice)."""
    conditions = _slice_conditions(model.schema, where)
    if label is not None and labels is None:
        raise UsageError("slicing by label needs the labels")
    device = device_of(model)
    model.eval()
    out = []
    for start in range(0, len(inputs), batch_size):
        x = inputs.index(slice(start, start + batch_size)).to(device)
        logit = model(x) if ctr_band is not None else None
        out.append(_keep(x, conditions, labels[start:start + batch_size] if labels is not None else None, label,
                         logit, ctr_band).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=bool)


@torch.no_grad()
def dataset_correlations(model: AutoInt, inputs: FieldTensors, labels: torch.Tensor | None = None, *,
                         where: dict | None = None, label: int | None = None,
                         ctr_band: tuple[float, float] | None = None, batch_size: int = 4096,
                         progress: Callable[[int, int], None] | None = None) -> Correlations:
    """Mean attention over the samples that pass every filter, streamed in batches.

    where: {field: value} keeps samples with that value (a genre keeps movies that have it);
    label: 0 or 1; ctr_band: (low, high) on the predicted CTR, low inclusive.
    progress(done, total) is called after each batch with the samples read so far.
    """
    model.eval()
    schema = model.schema
    device = device_of(model)
    L, H, F = model.config.layers, model.config.heads, len(schema.fields)
    total = torch.zeros(L, H, F, F, dtype=torch.float64, device=device)
    count = 0
    conditions = _slice_conditions(schema, where)
    if label is not None and labels is None:
        raise UsageError("slicing by label needs the labels")
    for start in range(0, len(inputs), batch_size):
        x = inputs.index(slice(start, start + batch_size)).to(device)
        logit, attention = model(x, return_attention=True)  # (B,), (B, L, H, F, F)
        keep = _keep(x, conditions, labels[start:start + batch_size] if labels is not None else None, label,
                     logit, ctr_band)
        n = int(keep.sum())
        if n:
            total += attention[keep].sum(0, dtype=torch.float64)
            count += n
        if progress is not None:
            progress(min(start + batch_size, len(inputs)), len(inputs))
    per_head = (total / max(count, 1)).float().cpu().numpy()
    return Correlations(per_head, count, schema.names, describe_slice(where, label, ctr_band))
