"""Explanations of a trained AutoInt: attention, combinations, attributions, what-if, correlations.

Pure functions of (model, samples, schema). Every attention matrix here comes from the
model's one forward path (`AutoInt.forward(..., return_attention=True)`), the same pass
that produced the prediction shown beside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .data import Catalog
from .encoding import FieldTensors, encode_values
from .interactions import (EXACT_MAX_FIELDS, Agreement, SampleInteractions, agreement, head_entropy, near_uniform,
                           pair_index, sample_interactions, split_interactions)
from .model import AutoInt
from .schema import UNKNOWN, Schema, SchemaError

ATTRIBUTION_METHODS = ("integrated_gradients", "feature_ablation", "shapley")
METHOD_NAMES = {"integrated_gradients": "Integrated Gradients", "feature_ablation": "Feature Ablation",
                "shapley": "Shapley Value Sampling"}


# ----------------------------------------------------------------------------- raw values <-> tensors

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
    """`Field=value` from the command line; Genre takes `A|B`, RequestTime an ISO 8601 time or seconds."""
    if "=" not in text:
        raise SchemaError(f"--set {text!r}: write Field=value, e.g. Gender=F or Genre=Action|Comedy.")
    name, raw = text.split("=", 1)
    f = schema[name.strip()]
    if f.kind == "multivalued":
        return f.name, [v.strip() for v in raw.split("|") if v.strip()]
    if f.kind == "numeric":
        return f.name, parse_time(raw)
    reverse = {shown: code for code, shown in f.display.items()}
    value = reverse.get(raw, raw)  # accept `Age=18-24` as well as `Age=18`
    if value not in f.vocab:
        shown = [f.display.get(v, v) for v in f.vocab[1:]]
        raise SchemaError(f"{f.name}={raw!r} is not a value the model knows; choose from "
                          f"{', '.join(shown[:40])}{' ...' if len(shown) > 40 else ''}.")
    return f.name, value


def parse_time(text: str | float) -> float:
    from datetime import datetime, timezone
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
    checked = check_values(schema, values)
    return encode_values(schema, {k: [v] for k, v in checked.items()})


def field_labels(schema: Schema, values: dict) -> list[str]:
    return [f.show(values[f.name]) for f in schema.fields]


def unknown_values(schema: Schema, values: dict) -> dict:
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


def _device(model: AutoInt) -> torch.device:
    return next(model.parameters()).device


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
        return out


@torch.no_grad()
def predict_with_attention(model: AutoInt, x: FieldTensors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CTR, logit and attention (B, L, H, F, F) from the same forward pass."""
    model.eval()
    logit, attention = model(x.to(_device(model)), return_attention=True)
    return torch.sigmoid(logit).cpu(), logit.cpu(), attention.cpu()


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
    found = []
    for layer in range(L):
        for m in range(F):
            for j in range(F):
                if m != j:
                    w = float(mean[layer, m, j])
                    found.append(Combination([labels[j], labels[m]], [layer + 1], w,
                                             f"<{labels[m]}, {labels[j]}>: in layer {layer + 1}, {labels[m]} "
                                             f"draws {w:.0%} of its attention from {labels[j]}"))
    for layer in range(1, L):
        chain = mean[layer - 1][None, :, :] * mean[layer][:, :, None]  # (c, b, a): alpha^l_{c,b} alpha^{l-1}_{b,a}
        for c in range(F):
            for b in range(F):
                for a in range(F):
                    if len({a, b, c}) == 3:
                        w = float(chain[c, b, a])
                        found.append(Combination(
                            [labels[a], labels[b], labels[c]], [layer, layer + 1], w,
                            f"<{labels[a]}, {labels[b]}, {labels[c]}>: {labels[b]} took in {labels[a]} in layer "
                            f"{layer} ({mean[layer - 1, b, a]:.0%}), then {labels[c]} took in {labels[b]} in layer "
                            f"{layer + 1} ({mean[layer, c, b]:.0%})"))
    # Pairs and chains compete on one scale; a chain's weight is a product, so favour the
    # pair list by taking the k strongest of each and merging them.
    pairs = sorted((c for c in found if len(c.fields) == 2), key=lambda c: -c.weight)[:k]
    chains = sorted((c for c in found if len(c.fields) == 3), key=lambda c: -c.weight)[:k]
    return pairs + chains


def explain_sample(model: AutoInt, values: dict, *, attributions: Sequence[str] = (),
                   baseline: torch.Tensor | None = None, top: int = 5, shapley_samples: int = 64,
                   seed: int = 0, interaction_baseline: torch.Tensor | None = None) -> SampleExplanation:
    """The CTR, attention, combinations and (optionally) attributions of one sample; with
    `interaction_baseline` (1, F, d) also its pairwise Shapley interactions and their agreement with attention."""
    schema = model.schema
    values = check_values(schema, values)
    x = encode_sample(schema, values)
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
    return out


# ----------------------------------------------------------------------------- attributions (Captum)

@torch.no_grad()
def mean_embedding(model: AutoInt, inputs: FieldTensors, batch_size: int = 65536) -> torch.Tensor:
    """The training-mean embedding of each field, (1, F, d): a neutral IG baseline, unlike zeros
    (a zero vector is no value any field takes, and sits far from where the model was trained)."""
    total, n = None, 0
    device = _device(model)
    for i in range(0, len(inputs), batch_size):
        e = model.embed(inputs.index(slice(i, i + batch_size)).to(device))
        total = e.sum(0) if total is None else total + e.sum(0)
        n += e.shape[0]
    return (total / max(n, 1)).unsqueeze(0).cpu()


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


def attribute(model: AutoInt, x: FieldTensors, methods: Sequence[str] = ATTRIBUTION_METHODS,
              baseline: torch.Tensor | None = None, shapley_samples: int = 64, ig_steps: int = 64,
              seed: int = 0) -> tuple[dict[str, np.ndarray], float | None]:
    """Per-field attributions of one sample's logit; returns ({method: (F,)}, IG completeness gap).

    - integrated_gradients: IG on the embedding layer's output from `baseline` (the training-mean
      embedding; pass it, or the sample's own all-`<unknown>` embedding is used). Summed over d.
    - feature_ablation: the logit drop when one field is set to its `<unknown>` slot.
    - shapley: Shapley Value Sampling with one feature group per field, `<unknown>` as absent.
    """
    from captum.attr import FeatureAblation, IntegratedGradients, ShapleyValueSampling
    unknown = set(methods) - set(ATTRIBUTION_METHODS)
    if unknown:
        raise ValueError(f"unknown attribution methods {sorted(unknown)}; choose from {ATTRIBUTION_METHODS}")
    model.eval()
    device = _device(model)
    schema = model.schema
    x = x.to(device)
    F, d = len(schema.fields), model.config.embed_dim
    with torch.no_grad():
        embedded = model.embed(x)  # (1, F, d)
        unknown_embedded = model.embed(encode_sample(schema, unknown_values(schema, {})).to(device))  # (1, F, d)
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


def what_if(model: AutoInt, values: dict, edits: dict, **explain_kwargs) -> WhatIf:
    """Explain a sample before and after editing some field values (any field, genres and time included)."""
    for name in edits:
        model.schema[name]  # unknown field names fail here, listing the fields
    before = explain_sample(model, values, **explain_kwargs)
    after = explain_sample(model, {**values, **edits}, **explain_kwargs)
    return WhatIf(before, after, dict(edits))


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


def parse_where(schema: Schema, clauses: Sequence[str]) -> dict:
    out = {}
    for clause in clauses:
        name, value = parse_edit(schema, clause)
        out[name] = value
    return out


def _slice_conditions(schema: Schema, where: dict | None) -> list[tuple]:
    """{field: value} filters as (kind, column, slot(s)) on the encoded tensors."""
    conditions = []
    for name, value in (where or {}).items():
        f = schema[name]
        if f.kind == "numeric":
            raise SchemaError(f"slicing by {name} needs a band, not a value; filter by ReleaseTime or ctr_band instead.")
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
        raise ValueError("slicing by label needs the labels")
    device = _device(model)
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
                         ctr_band: tuple[float, float] | None = None, batch_size: int = 4096) -> Correlations:
    """Mean attention over the samples that pass every filter, streamed in batches.

    where: {field: value} keeps samples with that value (a genre keeps movies that have it);
    label: 0 or 1; ctr_band: (low, high) on the predicted CTR, low inclusive.
    """
    model.eval()
    schema = model.schema
    device = _device(model)
    L, H, F = model.config.layers, model.config.heads, len(schema.fields)
    total = torch.zeros(L, H, F, F, dtype=torch.float64, device=device)
    count = 0
    conditions = _slice_conditions(schema, where)
    if label is not None and labels is None:
        raise ValueError("slicing by label needs the labels")
    for start in range(0, len(inputs), batch_size):
        x = inputs.index(slice(start, start + batch_size)).to(device)
        logit, attention = model(x, return_attention=True)  # (B,), (B, L, H, F, F)
        keep = _keep(x, conditions, labels[start:start + batch_size] if labels is not None else None, label,
                     logit, ctr_band)
        n = int(keep.sum())
        if n:
            total += attention[keep].sum(0, dtype=torch.float64)
            count += n
    per_head = (total / max(count, 1)).float().cpu().numpy()
    return Correlations(per_head, count, schema.names, describe_slice(where, label, ctr_band))


# ----------------------------------------------------------------------------- recommendations

class MovieScorer:
    """Scores every movie for a user in one batch. The movie side is encoded once per model.

    For one user and time a movie enters the model only through its fields (Genre, ReleaseTime,
    MovieID with --with-ids), and many movies share them (3,883 ML-1M movies have 1,322 distinct
    genre-set and release-bucket pairs), so each distinct input is run once and fanned out.
    """

    def __init__(self, model: AutoInt, catalog: Catalog):
        self.model, self.catalog = model, catalog
        schema = model.schema
        movie_ids = catalog.movies["movie_id"].to_list()
        self.movie_ids = np.array(movie_ids)
        template = {f.name: None for f in schema.fields}
        columns = {name: [] for name in template}
        placeholder = unknown_values(schema, {})
        for mid in movie_ids:
            movie = catalog.movie_values(mid)
            for f in schema.fields:
                columns[f.name].append(movie.get(f.name, placeholder[f.name]))
        every_movie = encode_values(schema, columns)  # user fields and time are filled per call
        rows = torch.cat([every_movie.categorical, every_movie.multivalued.flatten(1),
                          every_movie.numeric.view(torch.int32).long()], dim=1)  # exact, bit for bit
        _, self._inverse = torch.unique(rows, dim=0, return_inverse=True)  # movie -> its distinct input
        first = torch.full((int(self._inverse.max()) + 1,), len(rows), dtype=torch.long)
        first = first.scatter_reduce(0, self._inverse, torch.arange(len(rows)), reduce="amin")
        self.movie_inputs = every_movie.index(first).to(_device(model))  # (distinct, ...) one row each
        self._user_columns = [i for i, f in enumerate(schema.of_kind("categorical"))
                              if f.name in ("Gender", "Age", "Occupation", "Zipcode", "UserID")]
        self._time_column = [f.name for f in schema.of_kind("numeric")].index("RequestTime") \
            if "RequestTime" in schema.names else None

    @torch.no_grad()
    def score(self, user_id: int, timestamp: float | None = None, with_attention: bool = True):
        catalog, schema = self.catalog, self.model.schema
        timestamp = catalog.last_time if timestamp is None else catalog.check_time(timestamp)
        user = catalog.user_values(user_id)
        one = encode_sample(schema, {**unknown_values(schema, {}), **{k: v for k, v in user.items()
                                                                      if k in schema.names},
                                     "RequestTime": timestamp})
        x = self.movie_inputs
        categorical = x.categorical.clone()
        categorical[:, self._user_columns] = one.categorical[0, self._user_columns].to(categorical.device)
        numeric = x.numeric.clone()
        if self._time_column is not None:
            numeric[:, self._time_column] = one.numeric[0, self._time_column]
        batch = FieldTensors(categorical, x.multivalued, numeric)
        self.model.eval()
        if with_attention:
            logit, attention = self.model(batch, return_attention=True)
            return torch.sigmoid(logit).cpu()[self._inverse], attention.cpu()[self._inverse]
        return torch.sigmoid(self.model(batch)).cpu()[self._inverse], None


def recommend(model: AutoInt, catalog: Catalog, user_id: int, timestamp: float | None = None, top: int = 10,
              exclude_rated: bool = False, scorer: MovieScorer | None = None,
              interaction_baseline: torch.Tensor | None = None) -> list[dict]:
    """The top-N movies for a user at a time, each with its CTR and strongest attention combination; with
    `interaction_baseline` (1, F, d) also each pick's strongest measured interaction (k-SII), all picks in one batch."""
    scorer = scorer or MovieScorer(model, catalog)
    ctr, attention = scorer.score(user_id, timestamp)
    order = torch.argsort(ctr, descending=True).tolist()
    out, picked = [], []  # picked: each pick's raw values and labels, for the interactions below
    user = catalog.user_values(user_id)
    for row in order:
        movie_id = int(scorer.movie_ids[row])
        if exclude_rated and catalog.rating(user_id, movie_id):
            continue
        values = {**user, **catalog.movie_values(movie_id),
                  "RequestTime": float(timestamp if timestamp is not None else catalog.last_time)}
        labels = field_labels(model.schema, values)
        combos = top_combinations(attention[row].numpy(), labels, 1)
        movie = catalog.movie(movie_id)
        out.append({"movie_id": movie_id, "title": movie["title"], "genres": list(movie["genres"]),
                    "ctr": float(ctr[row]), "why": combos[0].text if combos else "no interacting layers",
                    "combination": combos[0].fields if combos else []})
        picked.append((values, labels))
        if len(out) == top:
            break
    if interaction_baseline is not None and out and len(model.schema.fields) <= EXACT_MAX_FIELDS:
        checked = [check_values(model.schema, values) for values, _ in picked]
        columns = {f.name: [values[f.name] for values in checked] for f in model.schema.fields}
        measured = split_interactions(model, encode_values(model.schema, columns), interaction_baseline)
        for pick, (_, labels), pairs in zip(out, picked, measured.pairs):
            strongest = int(np.argmax(np.abs(pairs)))
            i, j = pair_index(len(model.schema.fields))[strongest]
            pick["interaction"] = {"fields": [labels[i], labels[j]], "value": float(pairs[strongest])}
    return out
