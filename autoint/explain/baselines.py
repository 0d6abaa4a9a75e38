"""Baselines: the embedding a field takes when it is "absent", for Integrated Gradients and the interaction game.

"mean" is each field's training-mean embedding (a neutral point where the model was trained; a zero vector is no
value any field takes); "unknown" is every field at its `<unknown>` slot (a numeric field at mid-range).
"""
from __future__ import annotations

import torch

from ..data.encoding import FieldTensors, encode_sample, unknown_values
from ..model.autoint import AutoInt
from ..training.shapley import InteractionError
from . import BASELINES


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def mean_embedding(model: AutoInt, inputs: FieldTensors, batch_size: int = 65536) -> torch.Tensor:
    """The training-mean embedding of each field, (1, F, d)."""
    total, n = None, 0
    device = device_of(model)
    for i in range(0, len(inputs), batch_size):
        e = model.embed(inputs.index(slice(i, i + batch_size)).to(device))  # (b, F, d)
        total = e.sum(0) if total is None else total + e.sum(0)  # (F, d)
        n += e.shape[0]
    return (total / max(n, 1)).unsqueeze(0).cpu()  # (1, F, d)


@torch.no_grad()
def unknown_embedding(model: AutoInt) -> torch.Tensor:
    """Every field at its `<unknown>` slot, (1, F, d)."""
    model.eval()
    return model.embed(encode_sample(model.schema, unknown_values(model.schema, {})).to(device_of(model))).cpu()


def baseline_embedding(model: AutoInt, kind: str, train_inputs: FieldTensors | None = None) -> torch.Tensor:
    """The baseline named `kind` (one of BASELINES), (1, F, d); "mean" needs the training split's inputs."""
    if kind == "mean":
        if train_inputs is None:
            raise InteractionError("the mean baseline needs the training split's inputs.")
        return mean_embedding(model, train_inputs)
    if kind == "unknown":
        return unknown_embedding(model)
    raise InteractionError(f"baseline {kind!r}: choose one of {', '.join(BASELINES)}.")
