"""AutoInt (Song et al., CIKM 2019) and AutoInt+, in one file.

Equations 2-9 of the paper appear below as named lines:
  Eq. 2  e_i = V_i x_i                       categorical field embedding
  Eq. 3  e_i = (1/q) V_i x_i                 multi-valued field: mean of its values' embeddings
  Eq. 4  e_m = v_m x_m                       numeric field: one vector scaled by the value
  Eq. 5  alpha^(h)_{m,k} = softmax_k(<W_Query e_m, W_Key e_k>)
  Eq. 6  e~^(h)_m = sum_k alpha^(h)_{m,k} W_Value e_k
  Eq. 7  e~_m = e~^(1)_m (+) ... (+) e~^(H)_m    heads concatenated
  Eq. 8  e^Res_m = ReLU(e~_m + W_Res e_m)
  Eq. 9  y^ = sigmoid(w^T (e^Res_1 (+) ... (+) e^Res_M) + b)
Shapes: B batch, F fields, d embed_dim, H heads, d' attn_dim.

The model runs the interacting layers in a column layout, (width, F, B): every sample is one column, the batch
innermost. There one matmul projects every field of every sample (Eqs. 5-8's W), and Eqs. 5-8 on top of it are
one fused kernel with no layout copy in between (`FusedAttention`: `torch.compile`'s, when a C++ compiler works). On
the CPU the hand-written C++ kernel autoint/kernels/attention.cpp computes the projection and Eqs. 5-8 together,
per 64-sample batch tile (`FusedLayer`). `InteractingLayer.forward`, the layer as first written in the (B, F, d) layout, is kept as the
reference the tests compare it with (benchmarks/NOTES.md, issue 14).

Options beyond the paper's equations, all off by default (the default is the paper's model, bit for bit), taken
from the authors' TensorFlow code (github.com/shichence/AutoInt, model.py, `multihead_attention`):
  qkv_relu           ReLU(W_Query e), ReLU(W_Key e), ReLU(W_Value e) and ReLU(W_Res e): the code builds each of the
                     four with `tf.layers.dense(..., activation=tf.nn.relu)`
  projection_bias    a bias in those four projections (`tf.layers.dense` has one by default)
  scaled_attention   Eq. 5's scores divided by sqrt(d') (the code divides by the per-head width)
  attention_dropout  dropout on alpha after the softmax, before Eq. 6 (the code's `dropout_keep_prob[0]`)
  layer_norm         layer norm of each layer's output after Eq. 8's ReLU (the code's `normalize`)
"""
from __future__ import annotations

import functools
import math
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F_

from .encoding import FieldTensors
from .errors import AutoIntError
from .schema import Schema

PREDICT_ELEMENTS = 1 << 24  # attention weights per inference batch (predict_proba): about 64 MiB of them
LIMITS = {"embed_dim": (1, 256), "attn_dim": (1, 256), "heads": (1, 16), "layers": (0, 12)}


class ConfigError(AutoIntError, ValueError):
    """A hyperparameter outside what the model can be built with; the message names it and its range."""


@dataclass
class AutoIntConfig:
    embed_dim: int = 16  # d
    attn_dim: int = 32  # d', per head
    heads: int = 2  # H
    layers: int = 3  # L interacting layers; 0 leaves Eq. 9 as a weighted sum of the raw embeddings
    residual: bool = True  # Eq. 8's W_Res e term (Table 4 turns it off)
    dropout: float = 0.0  # on Eq. 6's output (each head's e~), in training only
    scaled_attention: bool = False  # divide Eq. 5's scores by sqrt(d') (authors' code)
    layer_norm: bool = False  # normalise each layer's output (authors' code)
    qkv_relu: bool = False  # ReLU on W_Query e, W_Key e, W_Value e and W_Res e (authors' code)
    projection_bias: bool = False  # a bias in those projections (authors' code: tf.layers.dense)
    attention_dropout: float = 0.0  # dropout on alpha before Eq. 6, in training only (authors' code)
    dnn_hidden: tuple[int, ...] = ()  # empty: AutoInt; e.g. (400, 400): AutoInt+
    dnn_dropout: float = 0.0

    def __post_init__(self):
        self.dnn_hidden = tuple(self.dnn_hidden)
        self.validate()

    def validate(self) -> None:
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name}={value!r} is out of range: choose an integer from {low} to {high}.")
        for name in ("dropout", "dnn_dropout", "attention_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}={value!r} is out of range: choose a number in [0, 1).")
        for name in ("residual", "scaled_attention", "layer_norm", "qkv_relu", "projection_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose true or false.")
        if len(self.dnn_hidden) > 8 or any(isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 4096
                                           for h in self.dnn_hidden):
            raise ConfigError(f"dnn_hidden={self.dnn_hidden!r}: give up to 8 layer widths, each from 1 to 4096 "
                              f"(e.g. 400,400), or none for plain AutoInt.")

    @property
    def name(self) -> str:
        return "AutoInt+" if self.dnn_hidden else "AutoInt"

    def to_json(self) -> dict:
        out = {"model": self.name, **asdict(self)}
        out["dnn_hidden"] = list(self.dnn_hidden)
        return out

    @staticmethod
    def from_json(obj: dict) -> "AutoIntConfig":
        obj = {k: v for k, v in obj.items() if k != "model"}  # the name follows from dnn_hidden
        known = {f.name for f in fields(AutoIntConfig)}
        unknown = set(obj) - known
        if unknown:
            raise ConfigError(f"unknown model settings {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(obj.get("dnn_hidden"), list):
            obj["dnn_hidden"] = tuple(obj["dnn_hidden"])
        return AutoIntConfig(**obj)


# Named settings for the Train page and `train --preset`: overrides of AutoIntConfig's defaults. "paper" is the
# default model. A variant joins only if benchmarks/attention_faithfulness.py shows it explains itself better
# (attention ranks field pairs as the measured interactions do, Spearman >= 0.5) at the paper's test AUC (within
# 0.002); benchmarks/results/attention-faithfulness/ holds the measurements.
PRESETS: dict[str, dict] = {
    "paper": {},
    "authors-code": {"qkv_relu": True, "projection_bias": True, "scaled_attention": True, "layer_norm": True},
}
PRESET_DESCRIPTIONS: dict[str, str] = {
    "paper": "The paper's AutoInt, Eqs. 5-9 as written (the default).",
    "authors-code": "The authors' TensorFlow layer (ReLU and bias on Q, K, V and W_Res, scaled scores, layer norm): "
                    "on ml-1m-u2999 its attention ranks field pairs like the measured interactions (Spearman "
                    "+0.68 vs -0.26) at +0.003 test AUC.",
}


def preset_config(name: str, **overrides) -> AutoIntConfig:
    """The preset's settings, then `overrides` on top (explicit settings win)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.")
    return AutoIntConfig(**{**PRESETS[name], **overrides})


class FieldEmbedding(nn.Module):
    """Eqs. 2-4: every field, whatever its kind, becomes one d-dimensional vector."""

    def __init__(self, schema: Schema, embed_dim: int):
        super().__init__()
        categorical, multivalued, numeric = (schema.of_kind(k) for k in ("categorical", "multivalued", "numeric"))
        # All one-hot fields share one table, each at its own row offset: one lookup per batch.
        self.categorical = nn.Embedding(max(sum(f.size for f in categorical), 1), embed_dim)
        self.multivalued = nn.Embedding(max(sum(f.size for f in multivalued), 1), embed_dim)
        self.numeric = nn.Parameter(torch.empty(len(numeric), embed_dim))  # one v_m per numeric field
        for weight in (self.categorical.weight, self.multivalued.weight, self.numeric):
            nn.init.normal_(weight, std=0.05)
        offsets = lambda fs: torch.tensor([0] + [f.size for f in fs][:-1], dtype=torch.long).cumsum(0)
        self.register_buffer("categorical_offsets", offsets(categorical), persistent=False)
        self.register_buffer("multivalued_offsets", offsets(multivalued), persistent=False)
        # The embeddings come out grouped by kind; this permutation puts them back in schema order.
        grouped = [f.name for f in categorical + multivalued + numeric]
        self.register_buffer("field_order", torch.tensor([grouped.index(n) for n in schema.names]), persistent=False)

    def forward(self, x: FieldTensors) -> torch.Tensor:
        categorical = self.categorical(x.categorical + self.categorical_offsets)  # (B, C, d)  Eq. 2
        present = x.multivalued >= 0  # (B, M, K) padding slots are -1
        values = self.multivalued(x.multivalued.clamp(min=0) + self.multivalued_offsets[:, None])  # (B, M, K, d)
        counts = present.sum(-1, keepdim=True).clamp(min=1)  # (B, M, 1) q, the number of values
        multivalued = (values * present.unsqueeze(-1)).sum(2) / counts  # (B, M, d)  Eq. 3
        numeric = self.numeric * x.numeric.unsqueeze(-1)  # (B, N, d)  Eq. 4
        grouped = torch.cat([categorical, multivalued, numeric], dim=1)  # (B, F, d) by kind
        return grouped[:, self.field_order]  # (B, F, d) schema order


class InteractingLayer(nn.Module):
    """Eqs. 5-8: multi-head self-attention over fields with a residual connection.

    The authors' code options (module docstring) change it so: `qkv_relu` applies ReLU to the whole fused
    projection, i.e. to W_Query e, W_Key e, W_Value e and W_Res e alike, before Eq. 5; `projection_bias` adds a
    bias to that projection; `attention_dropout` drops entries of alpha (and rescales the rest by 1/(1-p)) for
    Eq. 6 in training mode only. The attention returned is always the softmax's alpha, never the dropped one.
    """

    def __init__(self, in_dim: int, config: AutoIntConfig):
        super().__init__()
        self.heads, self.attn_dim = config.heads, config.attn_dim
        self.residual, self.scaled, self.qkv_relu = config.residual, config.scaled_attention, config.qkv_relu
        width = config.heads * config.attn_dim
        # W_Query, W_Key, W_Value of every head (each d' x d) and W_Res, fused into one matmul.
        self.projection = nn.Linear(in_dim, (4 if config.residual else 3) * width, bias=config.projection_bias)
        self.dropout = nn.Dropout(config.dropout)
        self.attention_dropout = nn.Dropout(config.attention_dropout) if config.attention_dropout else None
        self.norm = nn.LayerNorm(width) if config.layer_norm else nn.Identity()

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, F, _ = e.shape
        H, dh = self.heads, self.attn_dim
        # Layout, chosen by profiling on CPU (benchmarks/NOTES.md): one matmul for W_Query, W_Key, W_Value and
        # W_Res; one copy makes every (part, head) block of Q, K, V contiguous and head-major, so Eqs. 5 and 6
        # are ONE batched matmul each over (head, sample); the softmax runs over a k-outermost copy of the
        # scores (vectorised over the batch, not over 7 fields); W_Res e stays where the matmul wrote it.
        projected = self.projection(e).view(B, F, -1, H, dh)  # (B, F, 3 or 4, H, d')
        if self.qkv_relu:
            projected = F_.relu(projected)  # (B, F, 3 or 4, H, d')  authors' code: ReLU(W e) for Q, K, V and Res
        qkv, res = projected.split([3, projected.shape[2] - 3], dim=2)  # split: its backward is one cat
        query, key, value = qkv.permute(2, 3, 0, 1, 4).reshape(3, H * B, F, dh).unbind(0)  # each (H*B, F, d')
        scores = torch.bmm(query, key.transpose(1, 2))  # (H*B, F, F)  Eq. 5: psi = inner product
        if self.scaled:
            scores = scores / math.sqrt(dh)
        alpha = scores.permute(2, 0, 1).contiguous().softmax(dim=0)  # (F_k, H*B, F_m)  Eq. 5: softmax over k
        attention = alpha.permute(1, 2, 0)  # (H*B, F, F) a view: alpha[(h, b), m, k]
        weights = attention  # what Eq. 6 sums with; `attention`, returned for explanations, is never dropped
        if self.attention_dropout is not None and self.training:
            weights = self.attention_dropout(attention)  # (H*B, F, F) authors' code: dropout on alpha
        combined = torch.bmm(weights, value)  # (H*B, F, d')  Eq. 6: sum_k alpha_{m,k} W_Value e_k
        combined = self.dropout(combined).view(H, B, F, dh).permute(1, 2, 0, 3)  # (B, F, H, d')  Eq. 7 (a view)
        if self.residual:
            combined = res.squeeze(2) + combined  # (B, F, H, d')  Eq. 8: + W_Res e_m; res first keeps its order
        else:
            combined = combined.contiguous()
        out = F_.relu(combined).view(B, F, H * dh)  # (B, F, H*d')  Eq. 8: ReLU; Eq. 7: heads concatenated
        return self.norm(out), attention.view(H, B, F, F).transpose(0, 1)  # (B, F, H*d'), (B, H, F, F)


# ---- The fused interacting layer (issue 14) ------------------------------------------------------------------
# Eqs. 5-8 in the column layout: p is the projection of every field of every sample, (3 or 4, H, d', F, B);
# alpha is (H, F_m, F_k, B). Written as broadcast products and sums over a non-innermost dimension, so that
# inductor turns each contraction into one vectorised loop over the batch with no (H, d', F, F, B) temporary
# and fuses the softmax, the residual and the ReLU into the same kernel. The backward is derived by hand, so
# inductor compiles two plain functions (no autograd tracing) and the gradient of the whole projection comes
# out as one tensor (no cat of dQ, dK, dV, dRes).

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


# The CUDA default, the fastest correct of the three modes benchmarks/gpu_check.sh measures on a GPU:
# "eager" (kernels not compiled), "graph" (not compiled; the training step replayed as a CUDA graph,
# autoint/train.py) or "compiled" (inductor's Triton kernels). AUTOINT_CUDA_MODE overrides it.
CUDA_MODE = "eager"


def cuda_mode() -> str:
    mode = os.environ.get("AUTOINT_CUDA_MODE", CUDA_MODE)
    if mode not in ("eager", "graph", "compiled"):
        raise ConfigError(f"AUTOINT_CUDA_MODE={mode!r}: choose eager, graph or compiled.")
    return mode


# The CPU default for the fused layer's kernels: "cpp" (autoint/kernels/attention.cpp, built once per machine
# with torch.utils.cpp_extension: `layer_forward`/`layer_backward`, the projection and Eqs. 5-8 per 64-sample
# batch tile in the thread that owns it, benchmarks/NOTES.md issue 14 attempt 12), "cpp-attention" (the
# previous default, attempt 9: the projection as one torch.mm, then the C++ kernel's `attention_forward`/
# `attention_backward`) or "inductor" (torch.mm, then torch.compile of attention_forward/attention_backward).
# AUTOINT_CPU_KERNEL overrides it. Each falls back: the C++ build failing -> inductor, compiling failing or no
# C++ compiler at all -> eager, one warning each. "cpp" is the default only where the CPU has AVX-512 (the
# layer kernel's 16-float vectors and 6 x 4 register blocks are built for its 32 zmm registers; built for AVX2
# it spills, and one layer took 62 ms where cpp-attention took 17, benchmarks/NOTES.md attempt 12 review);
# elsewhere the default is "cpp-attention".
CPU_KERNEL = "cpp"
CPU_KERNEL_WITHOUT_AVX512 = "cpp-attention"
CPU_KERNELS = ("cpp", "cpp-attention", "inductor")
CPP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "attention.cpp")
# The C++ kernels' field counts: templates for 1..16 fields (F vectors of accumulators in registers), the k-blocked
# wide cores (chunks of 16 fields, F at run time) above; used up to here, the widest schema measured against the
# reference (FUSED_MAX_FIELDS).
CPP_MAX_FIELDS = 64


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> str:
    """The "flags" line of /proc/cpuinfo (empty where there is none); read once (36 us a read, and `cpu_kernel`
    asks for it twice per layer call)."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return ""


def cpu_kernel() -> str:
    default = CPU_KERNEL if "avx512f" in _cpu_flags().split() else CPU_KERNEL_WITHOUT_AVX512
    choice = os.environ.get("AUTOINT_CPU_KERNEL", default)
    if choice not in CPU_KERNELS:
        raise ConfigError(f"AUTOINT_CPU_KERNEL={choice!r}: choose one of {', '.join(CPU_KERNELS)}.")
    return choice


def _build_cpp_extension():
    """autoint/kernels/attention.cpp as a Python module, compiled (-O3 -march=native) on the first call on this
    machine and loaded from ~/.cache/torch_extensions afterwards. The name carries the CPU's vector flags, so a
    cache shared between different CPUs never loads a build for the wrong instruction set, and the source's
    hash, so checkouts with different sources (git worktrees) keep their own builds instead of rebuilding over
    each other's."""
    import hashlib
    import platform
    from torch.utils.cpp_extension import load
    with open(CPP_SOURCE, "rb") as source:  # a changed source (another branch, an edit) builds under its own name
        tag = hashlib.sha1(platform.machine().encode() + _cpu_flags().encode() + source.read()).hexdigest()[:10]
    cflags = ["-O3", "-march=native", "-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64"):
        cflags.append("-mprefer-vector-width=512")
    return load(name=f"autoint_attention_{tag}", sources=[CPP_SOURCE], extra_cflags=cflags,
                extra_ldflags=["-fopenmp"], verbose=False)


class _Kernels:
    """`attention_forward`/`attention_backward` on the CPU as the C++ kernel or compiled by inductor, or eager.

    A call with arguments not seen before (device, shapes, options) may compile; such calls take a lock (the
    app calls from several threads), their time is added to `compile_seconds`, and if compiling fails the
    device type falls back to eager for the rest of the process with one warning. The C++ kernel (float32 CPU
    tensors, up to CPP_MAX_FIELDS fields; with CPU_KERNEL "cpp" it runs the whole layer, projection included:
    `runs_layer`, `FusedLayer`) is built on its first use, under the same lock and clock; if the build fails,
    inductor takes over, with one warning. Batches under `MIN_COMPILED_BATCH` samples run eagerly: there
    a kernel gains nothing worth its seconds (one sample's explanation takes ~2 ms either way, and the app's
    first click would wait for a compile).
    """

    MIN_COMPILED_BATCH = 64

    def __init__(self):
        self.lock = threading.Lock()
        self.compiled: dict[str, tuple] = {}  # device type -> (forward, backward) compiled
        self.eager_reason: dict[str, str] = {}  # device type -> why it runs eagerly
        self.seen: set = set()
        self.compile_seconds = 0.0
        self.warned = False
        self.cpp = None  # the built C++ extension module
        self.cpp_problem: str | None = None  # why the C++ kernel is not used (set once, with its warning)

    def wants_compile(self, device_type: str) -> bool:
        setting = os.environ.get("AUTOINT_COMPILE", "auto")
        if setting == "0":
            return False
        if setting == "1":
            return True
        return device_type == "cpu" or (device_type == "cuda" and cuda_mode() == "compiled")

    def mode(self, device_type: str) -> str:
        """'cpp', 'compiled' or 'eager', as the next call on this device type runs (float32, F <= CPP_MAX_FIELDS)."""
        if not self.wants_compile(device_type) or device_type in self.eager_reason:
            return "eager"
        if device_type == "cpu" and device_type not in self.compiled and self.cpp is None:
            problem = _compiler_problem()
            if problem:
                self.fall_back(device_type, problem)
                return "eager"
        if device_type == "cpu" and cpu_kernel() != "inductor" and self.cpp_problem is None:
            return "cpp"
        return "compiled"

    def fall_back(self, device_type: str, reason: str) -> None:
        self.eager_reason[device_type] = reason
        if not self.warned:
            self.warned = True
            warnings.warn(f"AutoInt: the fused interacting layer runs uncompiled on {device_type} ({reason}); "
                          "results are the same, training is slower. Install a C++ compiler (g++) for the fast "
                          "path, or set AUTOINT_COMPILE=0 to choose eager and silence this.", RuntimeWarning,
                          stacklevel=4)

    def cpp_module(self):
        """The built C++ extension, or None once its build failed (then inductor runs, after one warning)."""
        if self.cpp is not None or self.cpp_problem is not None:
            return self.cpp
        with self.lock:
            if self.cpp is None and self.cpp_problem is None:
                started = time.perf_counter()
                try:
                    self.cpp = _build_cpp_extension()
                except Exception as exc:  # no ninja, a compiler error, an unsupported flag: inductor instead
                    self.cpp_problem = f"{type(exc).__name__}: {str(exc)[-300:]}"
                    warnings.warn(f"AutoInt: the C++ attention kernel did not build ({self.cpp_problem}); the fused "
                                  "layer uses torch.compile's kernel instead (same results, slower). Set "
                                  "AUTOINT_CPU_KERNEL=inductor to skip the build and silence this.", RuntimeWarning,
                                  stacklevel=5)
                self.compile_seconds += time.perf_counter() - started
        return self.cpp

    def runs_layer(self, x: torch.Tensor) -> bool:
        """Whether the C++ kernel's layer_forward/layer_backward (projection included) run a layer on x (in, F,
        B): the CPU kernel "cpp", float32, up to CPP_MAX_FIELDS fields, at least MIN_COMPILED_BATCH samples."""
        return (x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[1] <= CPP_MAX_FIELDS
                and x.shape[2] >= self.MIN_COMPILED_BATCH and cpu_kernel() == "cpp" and self.mode("cpu") == "cpp"
                and self.cpp_module() is not None)

    def run(self, which: int, device_type: str, key: tuple, *args):
        """which: 0/1 attention_forward/backward (C++, compiled or eager), 2/3 the C++ layer_forward/backward."""
        if which >= 2:
            tensors = [a.contiguous() if isinstance(a, torch.Tensor) else a for a in args]
            return tuple(self.cpp_module().layer_forward(*tensors) if which == 2
                         else self.cpp_module().layer_backward(*tensors))
        eager = (attention_forward, attention_backward)[which]
        p = args[0]
        if p.shape[-1] < self.MIN_COMPILED_BATCH:  # p: (.., B)
            return eager(*args)
        mode = self.mode(device_type)
        if mode == "eager":
            return eager(*args)
        if mode == "cpp" and p.dtype == torch.float32 and p.shape[3] <= CPP_MAX_FIELDS:
            module = self.cpp_module()
            if module is not None:
                tensors = [a.contiguous() if isinstance(a, torch.Tensor) else a for a in args]
                if which == 0:
                    return tuple(module.attention_forward(*tensors))
                return module.attention_backward(*tensors)
        if device_type not in self.compiled:
            self.compiled[device_type] = (torch.compile(attention_forward), torch.compile(attention_backward))
        compiled = self.compiled[device_type][which]
        key = (which, device_type) + key
        if key in self.seen:
            return compiled(*args)
        with self.lock:
            started = time.perf_counter()
            try:
                out = compiled(*args)
            except Exception as exc:  # inductor could not build the kernel: same maths, eagerly
                self.fall_back(device_type, f"compiling failed: {type(exc).__name__}: {str(exc)[:200]}")
                return eager(*args)
            self.compile_seconds += time.perf_counter() - started
            self.seen.add(key)
            return out


def _compiler_problem() -> str | None:
    """None when inductor finds a working C++ compiler, else why not (checked without compiling anything)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler, or an inductor without this function
        name = os.environ.get("CXX", "g++")
        return f"no working C++ compiler: {name!r} ({type(exc).__name__})"
    return None


KERNELS = _Kernels()


def _signature(*tensors) -> tuple:
    return tuple(None if t is None else (tuple(t.shape), t.dtype) for t in tensors)


class FusedAttention(torch.autograd.Function):
    """Eqs. 5-8 of one layer as one autograd node: forward and hand-derived backward, each one kernel."""

    @staticmethod
    def forward(ctx, p, attn_keep, head_keep, scale: float, residual: bool, qkv_relu: bool):
        options = (scale, residual, qkv_relu)
        key = _signature(p, attn_keep, head_keep) + options
        out, alpha = KERNELS.run(0, p.device.type, key, p, attn_keep, head_keep, *options)
        ctx.save_for_backward(p, alpha, out, attn_keep, head_keep)
        ctx.options = options
        ctx.set_materialize_grads(False)
        return out, alpha

    @staticmethod
    def backward(ctx, grad_out, grad_alpha):
        p, alpha, out, attn_keep, head_keep = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        key = _signature(p, grad_alpha, attn_keep, head_keep) + ctx.options
        grad_p = KERNELS.run(1, p.device.type, key, p, alpha, out, grad_out, grad_alpha, attn_keep, head_keep,
                             *ctx.options)
        return grad_p, None, None, None, None, None


class FusedLayer(torch.autograd.Function):
    """Eqs. 5-8 with their projection (W_Query, W_Key, W_Value and W_Res of every head) as one autograd node: the
    C++ kernel's layer_forward/layer_backward, which compute each 64-sample batch tile's projection, attention
    and gradients in the thread that owns the tile, so p and grad_p never leave its L2 (benchmarks/NOTES.md,
    issue 14 attempt 12). The forward keeps the raw projection, tile by tile, for the backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, attn_keep, head_keep, heads: int, scale: float, residual: bool,
                qkv_relu: bool, save: bool):
        options = (heads, scale, residual, qkv_relu)
        out, alpha, saved = KERNELS.run(2, "cpu", (), x, weight, bias, attn_keep, head_keep, *options, save)
        ctx.save_for_backward(x, weight, saved, alpha, out, attn_keep, head_keep)
        ctx.options, ctx.has_bias = options, bias is not None
        ctx.set_materialize_grads(False)
        return out, alpha

    @staticmethod
    def backward(ctx, grad_out, grad_alpha):
        x, weight, saved, alpha, out, attn_keep, head_keep = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        grad_x, grad_weight, grad_bias = KERNELS.run(
            3, "cpu", (), x, weight, saved, alpha, out, grad_out, grad_alpha, attn_keep, head_keep, *ctx.options,
            ctx.needs_input_grad[0], ctx.has_bias and ctx.needs_input_grad[2])
        return grad_x, grad_weight, grad_bias, None, None, None, None, None, None, None


class FusedInteractingLayer(InteractingLayer):
    """Eqs. 5-8 in the column layout: the same parameters and maths as `InteractingLayer` (its forward is the
    reference), one matmul for W_Query, W_Key, W_Value and W_Res of every head, then `FusedAttention`."""

    def forward_columns(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (in, F, B) -> the layer's output (H*d', F, B) and alpha (H, F_m, F_k, B)."""
        C_in, F, B = x.shape
        H, dh = self.heads, self.attn_dim
        W, bias = self.projection.weight, self.projection.bias
        attn_keep = head_keep = None
        if self.training and self.attention_dropout is not None:
            attn_keep = _keep_mask((H, F, F, B), self.attention_dropout.p, x)  # (H, F_m, F_k, B)
        if self.training and self.dropout.p > 0:
            head_keep = _keep_mask((H, dh, F, B), self.dropout.p, x)  # (H, d', F, B)
        scale = 1.0 / math.sqrt(dh) if self.scaled else 1.0
        if KERNELS.runs_layer(x):  # the projection and Eqs. 5-8 per batch tile, in C++
            save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, W, bias))
            out, alpha = FusedLayer.apply(x, W, bias, attn_keep, head_keep, H, scale, self.residual, self.qkv_relu,
                                          save)
        else:
            flat = x.reshape(C_in, F * B)  # (in, F*B) a view
            projected = torch.mm(W, flat) if bias is None else torch.addmm(bias.unsqueeze(1), W, flat)  # (4*H*d', F*B)
            p = projected.view(-1, H, dh, F, B)  # (3 or 4, H, d', F, B)  W_Query e, W_Key e, W_Value e, W_Res e
            out, alpha = FusedAttention.apply(p, attn_keep, head_keep, scale, self.residual, self.qkv_relu)
        out = out.view(H * dh, F, B)  # (H*d', F, B)  Eqs. 7-8
        if isinstance(self.norm, nn.LayerNorm):  # authors' code: layer norm over each field's H*d' values
            mean = out.mean(0)  # (F, B)
            var = (out - mean).square().mean(0)  # (F, B)
            out = (out - mean) * torch.rsqrt(var + self.norm.eps)  # (H*d', F, B)
            out = out * self.norm.weight[:, None, None] + self.norm.bias[:, None, None]  # (H*d', F, B)
        return out, alpha

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same interface as the reference: e (B, F, d) -> (B, F, H*d'), (B, H, F, F)."""
        out, alpha = self.forward_columns(e.permute(2, 1, 0).contiguous())  # (H*d', F, B), (H, F, F, B)
        return out.permute(2, 1, 0).contiguous(), alpha.permute(3, 0, 1, 2).contiguous()


def _keep_mask(shape: tuple, p: float, like: torch.Tensor) -> torch.Tensor:
    """Inverted dropout's multiplier: 0 with probability p, else 1/(1-p)."""
    return torch.empty(shape, device=like.device, dtype=like.dtype).bernoulli_(1 - p).div_(1 - p)



# Inductor's fused kernel vectorises each contraction over the batch only, so past ~16 fields it is slower than
# the reference's batched matmuls (fused/reference 1.28 at F=22, 1.40 at F=39, benchmarks/NOTES.md attempt 6), and
# so is eager's: up to FUSED_MAX_FIELDS every path uses the fused layer. The C++ kernels' wide cores (k-blocked, F
# at run time) are faster than the reference: one layer's fwd + bwd with its projection, B=1024, d'=32, H=2,
# in=64, 1 thread: reference/C++ layer 2.06 at F=17, 1.99 at F=22, 2.19 at F=39 (NOTES.md attempt 14), and
# torch.mm + the C++ attention core ("cpp-attention") 1.42 at F=39. Built for AVX2 (8-float vectors) both are
# slower than the reference at F=22 and F=39 (0.32-0.88, attempt 14's AVX2 check). So wider schemas, up to
# CPP_MAX_FIELDS, use the fused layer where a C++ kernel runs on an AVX-512 CPU (float32), and the reference layer
# in the (B, F, d) layout elsewhere (AVX2 only, no C++ build, inductor, CUDA: same weights, same maths).
FUSED_MAX_FIELDS = 16


class AutoInt(nn.Module):
    def __init__(self, config: AutoIntConfig, schema: Schema):
        super().__init__()
        config.validate()
        self.config, self.schema = config, schema
        n_fields = len(schema.fields)
        self.embedding = FieldEmbedding(schema, config.embed_dim)
        widths = [config.embed_dim] + [config.heads * config.attn_dim] * config.layers
        self.interacting = nn.ModuleList(FusedInteractingLayer(widths[i], config) for i in range(config.layers))
        self.output = nn.Linear(n_fields * widths[-1], 1)  # Eq. 9: w and b
        if config.dnn_hidden:  # AutoInt+: a feed-forward network over the same embeddings, trained jointly
            sizes = [n_fields * config.embed_dim, *config.dnn_hidden]
            blocks = []
            for a, b in zip(sizes, sizes[1:]):
                blocks += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(config.dnn_dropout)]
            self.dnn = nn.Sequential(*blocks, nn.Linear(sizes[-1], 1))
        else:
            self.dnn = None

    def embed(self, x: FieldTensors) -> torch.Tensor:
        return self.embedding(x)  # (B, F, d)

    def forward_embedded(self, embedded: torch.Tensor, return_attention: bool = False):
        """Everything after Eqs. 2-4; attribution methods enter here with edited embeddings."""
        B, F, d = embedded.shape
        if not self.uses_fused_layer(embedded):
            return self._forward_rows(embedded, return_attention)
        e = embedded.permute(2, 1, 0).contiguous()  # (d, F, B) the column layout: one column per sample
        attentions = []
        for layer in self.interacting:
            e, alpha = layer.forward_columns(e)  # (H*d', F, B), (H, F_m, F_k, B)
            attentions.append(alpha)
        C = e.shape[0]
        w = self.output.weight.view(F, C).t().reshape(1, C * F)  # (1, C*F) Eq. 9's w in the column order
        logit = torch.mm(w, e.view(C * F, B)).squeeze(0) + self.output.bias  # (B,)  Eq. 9 before the sigmoid
        if self.dnn is not None:
            logit = logit + self.dnn(embedded.reshape(B, -1)).squeeze(-1)  # (B,) AutoInt+ sums the logits
        if not return_attention:
            return logit
        if attentions:
            stacked = torch.stack(attentions).permute(4, 0, 1, 2, 3).contiguous()  # (B, L, H, F, F)
        else:
            stacked = embedded.new_zeros(B, 0, self.config.heads, F, F)
        return logit, stacked

    def runs_fused(self, device_type: str, dtype: torch.dtype = torch.float32) -> bool:
        """Whether this model's forward takes the column layout and the fused layer on that device: up to
        FUSED_MAX_FIELDS fields on every path, up to CPP_MAX_FIELDS where a C++ kernel runs on an AVX-512 CPU
        (float32; see FUSED_MAX_FIELDS); else the reference layer."""
        F = len(self.schema.fields)
        if F <= FUSED_MAX_FIELDS:
            return True
        return (F <= CPP_MAX_FIELDS and device_type == "cpu" and dtype == torch.float32
                and "avx512f" in _cpu_flags().split() and KERNELS.mode("cpu") == "cpp"
                and KERNELS.cpp_module() is not None)

    def uses_fused_layer(self, embedded: torch.Tensor) -> bool:
        """`runs_fused` for these embeddings (B, F, d): their device and dtype."""
        return self.runs_fused(embedded.device.type, embedded.dtype)

    def _forward_rows(self, embedded: torch.Tensor, return_attention: bool):
        """Schemas the fused layer does not take (`uses_fused_layer`): the reference layer, (B, F, d) layout."""
        B, F, _ = embedded.shape
        e, attentions = embedded, []
        for layer in self.interacting:
            e, attention = InteractingLayer.forward(layer, e)  # (B, F, H*d'), (B, H, F, F)
            attentions.append(attention)
        logit = self.output(e.reshape(B, -1)).squeeze(-1)  # (B,)  Eq. 9 before the sigmoid
        if self.dnn is not None:
            logit = logit + self.dnn(embedded.reshape(B, -1)).squeeze(-1)  # (B,) AutoInt+ sums the logits
        if not return_attention:
            return logit
        if attentions:
            return logit, torch.stack(attentions, dim=1)  # (B, L, H, F, F)
        return logit, embedded.new_zeros(B, 0, self.config.heads, F, F)

    def forward(self, x: FieldTensors, return_attention: bool = False):
        """Logits (B,); with `return_attention` also the weights (B, L, H, F, F) of that same pass."""
        return self.forward_embedded(self.embed(x), return_attention)

    @torch.no_grad()
    def predict_proba(self, x: FieldTensors, batch_size: int | None = None) -> torch.Tensor:
        """Eq. 9's sigmoid, in eval mode, batched. The default batch holds about PREDICT_ELEMENTS attention
        weights: 65,536 samples for ML-1M's 7 fields, 5,515 for Criteo's 39 (at 65,536 a 39-field forward
        peaked at 6.7 GB and ran slower)."""
        if batch_size is None:
            per_sample = len(self.schema.fields) ** 2 * getattr(self.config, "heads", 1)
            batch_size = max(256, min(65536, PREDICT_ELEMENTS // max(per_sample, 1)))
        was_training = self.training
        self.eval()
        try:
            out = [torch.sigmoid(self(x.index(slice(i, i + batch_size))))
                   for i in range(0, max(len(x), 1), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)
