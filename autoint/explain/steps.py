"""One interacting layer, one sample, step by step: the intermediate tensors of Eqs. 5-8.

For teaching (the app's Learn page). Every step is computed with the model's own modules
(its embedding, its fused W_Query/W_Key/W_Value/W_Res projection, its layer norm), in the
order `InteractingLayer.forward` applies them, and the result is checked against that
forward pass, so the numbers shown are the numbers the model uses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F_

from ..data.encoding import encode_sample, field_labels
from ..errors import AutoIntError
from ..model.autoint import AutoInt


@dataclass
class LayerSteps:
    layer: int  # 1-based
    labels: list[str]  # one per field
    inputs: np.ndarray  # (F, d_in): e_m entering the layer (the embeddings for layer 1)
    query: np.ndarray  # (H, F, d'): W_Query^(h) e_m
    key: np.ndarray  # (H, F, d'): W_Key^(h) e_k
    value: np.ndarray  # (H, F, d'): W_Value^(h) e_k
    scores: np.ndarray  # (H, F, F): psi^(h)(e_m, e_k) = <q_m, k_k> (divided by sqrt(d') when scaled)
    attention: np.ndarray  # (H, F, F): alpha^(h)_{m,k}, softmax over k
    weighted: np.ndarray  # (H, F, d'): e~^(h)_m = sum_k alpha^(h)_{m,k} W_Value^(h) e_k
    concatenated: np.ndarray  # (F, H*d'): e~_m, the heads side by side
    residual: np.ndarray | None  # (F, H*d'): W_Res e_m, None when the model has no residual
    pre_activation: np.ndarray  # (F, H*d'): e~_m + W_Res e_m
    output: np.ndarray  # (F, H*d'): ReLU(...) (then layer norm when the model uses it)
    scaled: bool
    layer_norm: bool


class StepsError(AutoIntError, ValueError):
    """A layer the model does not have; the message says which layers it has."""


@torch.no_grad()
def layer_steps(model: AutoInt, values: dict, layer: int) -> LayerSteps:
    """The intermediate tensors of interacting layer `layer` (1-based) for one sample's raw values."""
    n_layers = model.config.layers
    if not 1 <= layer <= n_layers:
        raise StepsError(f"layer {layer}: this model has {n_layers} interacting layer(s)"
                         + (f"; choose 1 to {n_layers}." if n_layers else "; train one with at least 1 layer."))
    model.eval()
    device = next(model.parameters()).device
    x = encode_sample(model.schema, values).to(device)
    e = model.embed(x)  # (1, F, d)  Eqs. 2-4
    for earlier in model.interacting[:layer - 1]:
        e, _ = earlier(e)
    module = model.interacting[layer - 1]
    B, F, _ = e.shape
    H, dh = module.heads, module.attn_dim
    projected = module.projection(e).view(B, F, -1, H, dh)  # (1, F, 3 or 4, H, d')
    if module.qkv_relu:  # the authors' code (the readable preset): ReLU(W e + b) for Q, K, V and W_Res
        projected = F_.relu(projected)  # (1, F, 3 or 4, H, d')
    query, key, value = projected[:, :, :3].permute(2, 0, 3, 1, 4).unbind(0)  # each (1, H, F, d')
    scores = query @ key.transpose(-1, -2)  # (1, H, F, F)  Eq. 5
    if module.scaled:
        scores = scores / math.sqrt(dh)
    attention = scores.softmax(dim=-1)  # Eq. 5
    weighted = attention @ value  # (1, H, F, d')  Eq. 6
    concatenated = weighted.transpose(1, 2).reshape(B, F, H * dh)  # Eq. 7
    residual = projected[:, :, 3].reshape(B, F, H * dh) if module.residual else None
    pre_activation = concatenated + residual if residual is not None else concatenated  # Eq. 8
    output = module.norm(F_.relu(pre_activation))  # Eq. 8
    expected, expected_attention = module(e)
    if not (torch.allclose(output, expected, atol=1e-5) and torch.allclose(attention, expected_attention, atol=1e-6)):
        raise AssertionError("layer_steps drifted from InteractingLayer.forward; update it to match the model.")
    numpy = lambda t: t[0].cpu().numpy()
    return LayerSteps(layer, field_labels(model.schema, values), numpy(e), numpy(query), numpy(key), numpy(value),
                      numpy(scores), numpy(attention), numpy(weighted), numpy(concatenated),
                      numpy(residual) if residual is not None else None, numpy(pre_activation), numpy(output),
                      module.scaled, not isinstance(module.norm, torch.nn.Identity))
