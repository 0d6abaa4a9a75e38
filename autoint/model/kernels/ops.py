"""Eqs. 5-8 of one layer in the column layout, written for inductor and as the eager reference of the C++ kernel.

Eqs. 5-8 in the column layout: p is the projection of every field of every sample, (3 or 4, H, d', F, B);
alpha is (H, F_m, F_k, B). Written as broadcast products and sums over a non-innermost dimension, so that
inductor turns each contraction into one vectorised loop over the batch with no (H, d', F, F, B) temporary
and fuses the softmax, the residual and the ReLU into the same kernel. The backward is derived by hand, so
inductor compiles two plain functions (no autograd tracing) and the gradient of the whole projection comes
out as one tensor (no cat of dQ, dK, dV, dRes).
"""
from __future__ import annotations

import torch

AXES = "hcmkb"  # head, d' channel, field m, field k, batch: the axes of the broadcast form, in this order


def _einsum(spec: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch.einsum over AXES. Compiled: a broadcast product and a sum, which inductor fuses into one loop over
    the batch with no 5-D temporary; eager: torch.einsum itself (there the broadcast temporary would be
    (H, d', F, F, B), hundreds of MB for a big inference batch)."""
    if not torch.compiler.is_compiling():
        return torch.einsum(spec, a, b).contiguous()  # einsum may return a permuted view
    inputs, output = spec.split("->")
    a_axes, b_axes = inputs.split(",")
    full = lambda t, axes: t.reshape([t.shape[axes.index(x)] if x in axes else 1 for x in AXES])  # a view
    return (full(a, a_axes) * full(b, b_axes)).sum([i for i, x in enumerate(AXES) if x not in output])


def attention_forward(p, attn_keep, head_keep, scale: float, residual: bool, qkv_relu: bool):
    """Eqs. 5-8 on the projection p (3 or 4, H, d', F, B); returns the layer's output (H, d', F, B), i.e.
    (H*d', F, B), and alpha (H, F_m, F_k, B). `attn_keep`/`head_keep`: dropout masks (already scaled) or None."""
    if qkv_relu:
        p = torch.relu(p)  # (3 or 4, H, d', F, B)  authors' code: ReLU(W e)
    query, key, value = p[0], p[1], p[2]  # each (H, d', F, B)
    scores = _einsum("hcmb,hckb->hmkb", query, key) * scale  # (H, F_m, F_k, B)  Eq. 5: psi
    scores = scores - scores.amax(2, keepdim=True)  # (H, F_m, F_k, B)
    exp = scores.exp()  # (H, F_m, F_k, B)
    alpha = exp / exp.sum(2, keepdim=True)  # (H, F_m, F_k, B)  Eq. 5: softmax over k
    weights = alpha if attn_keep is None else alpha * attn_keep  # (H, F_m, F_k, B) authors' code: dropout
    combined = _einsum("hmkb,hckb->hcmb", weights, value)  # (H, d', F_m, B)  Eq. 6
    if head_keep is not None:
        combined = combined * head_keep  # (H, d', F, B) dropout on each head's e~
    if residual:
        combined = combined + p[3]  # (H, d', F, B)  Eq. 8: + W_Res e_m
    return torch.relu(combined), alpha  # (H, d', F, B) Eq. 8's ReLU (Eq. 7: heads stacked), (H, F, F, B)


def attention_backward(p, alpha, out, grad_out, grad_alpha, attn_keep, head_keep, scale: float, residual: bool,
                       qkv_relu: bool):
    """The gradient of `attention_forward` with respect to p, (3 or 4, H, d', F, B), by hand."""
    pr = torch.relu(p) if qkv_relu else p  # (3 or 4, H, d', F, B)
    query, key, value = pr[0], pr[1], pr[2]  # each (H, d', F, B)
    grad_pre = torch.where(out > 0, grad_out, 0.0)  # (H, d', F, B) through Eq. 8's ReLU
    grad_combined = grad_pre if head_keep is None else grad_pre * head_keep  # (H, d', F, B)
    weights = alpha if attn_keep is None else alpha * attn_keep  # (H, F_m, F_k, B)
    grad_weights = _einsum("hcmb,hckb->hmkb", grad_combined, value)  # (H, F_m, F_k, B)
    grad_value = _einsum("hmkb,hcmb->hckb", weights, grad_combined)  # (H, d', F_k, B)
    grad_alpha_total = grad_weights if attn_keep is None else grad_weights * attn_keep  # (H, F_m, F_k, B)
    if grad_alpha is not None:
        grad_alpha_total = grad_alpha_total + grad_alpha  # (H, F_m, F_k, B) the returned alpha's own gradient
    grad_scores = alpha * (grad_alpha_total - (alpha * grad_alpha_total).sum(2, keepdim=True)) * scale  # softmax
    grad_query = _einsum("hmkb,hckb->hcmb", grad_scores, key)  # (H, d', F_m, B)
    grad_key = _einsum("hmkb,hcmb->hckb", grad_scores, query)  # (H, d', F_k, B)
    parts = [grad_query, grad_key, grad_value] + ([grad_pre] if residual else [])
    grad_p = torch.stack(parts)  # (3 or 4, H, d', F, B) one tensor: the projection's gradient
    if qkv_relu:
        grad_p = torch.where(p > 0, grad_p, 0.0)  # (3 or 4, H, d', F, B)
    return grad_p


def sparsemax(z: torch.Tensor, dim: int) -> torch.Tensor:
    """Sparsemax (Martins & Astudillo, ICML 2016): the Euclidean projection of z onto the simplex along `dim`;
    like softmax its weights are >= 0 and sum to 1, unlike it most of them are exactly 0."""
    z_sorted = z.sort(dim=dim, descending=True).values
    shape = [1] * z.dim()
    shape[dim] = z.shape[dim]
    k = torch.arange(1, z.shape[dim] + 1, device=z.device, dtype=z.dtype).view(shape)
    cumulative = z_sorted.cumsum(dim) - 1
    support = (k * z_sorted > cumulative).sum(dim, keepdim=True)  # how many weights stay above 0
    tau = cumulative.gather(dim, support - 1) / support.to(z.dtype)
    return (z - tau).clamp(min=0)
