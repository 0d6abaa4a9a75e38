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
the CPU the hand-written C++ kernel autoint/model/kernels/attention*.cpp computes the projection and Eqs. 5-8 together,
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

import itertools
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F_

from ..data.encoding import FieldTensors
from ..data.schema import Schema
from ..errors import ConfigError
from .kernels import loader as kernels
from .kernels.ops import sparsemax

PREDICT_ELEMENTS = 1 << 24  # attention weights per inference batch (predict_proba): about 64 MiB of them
LIMITS = {"embed_dim": (1, 256), "attn_dim": (1, 256), "heads": (1, 16), "layers": (0, 12)}


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
    sparse_attention: bool = False  # sparsemax in place of Eq. 5's softmax (a remedy tried for readable attention)
    # Training only: the weight of a term pulling the alpha * ||value|| reading toward the measured pairwise
    # interactions of a few samples of each batch (autoint/training/alignment.py); 0 leaves the paper's loss alone.
    attention_alignment: float = 0.0
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
        value = self.attention_alignment
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0.0 <= value <= 10.0:
            raise ConfigError(f"attention_alignment={value!r} is out of range: choose a weight in [0, 10] "
                              "(0: off; the readable preset's is 0.1).")
        for name in ("residual", "scaled_attention", "layer_norm", "qkv_relu", "projection_bias", "sparse_attention"):
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
        # each field's first row; summed in Python: a cumsum on the meta device (load_run checks shapes there) runs
        # a Python meta kernel whose first call imports torch._dynamo, 1.4 s of every process that loads a model
        offsets = lambda fs: torch.tensor(list(itertools.accumulate([0] + [f.size for f in fs][:-1])), dtype=torch.long)
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
        self.sparse = config.sparse_attention
        width = config.heads * config.attn_dim
        # W_Query, W_Key, W_Value of every head (each d' x d) and W_Res, fused into one matmul.
        self.projection = nn.Linear(in_dim, (4 if config.residual else 3) * width, bias=config.projection_bias)
        self.dropout = nn.Dropout(config.dropout)
        self.attention_dropout = nn.Dropout(config.attention_dropout) if config.attention_dropout else None
        self.norm = nn.LayerNorm(width) if config.layer_norm else nn.Identity()

    def forward(self, e: torch.Tensor, edit=None) -> tuple[torch.Tensor, torch.Tensor]:
        """e (B, F, d) -> (B, F, H*d'), alpha (B, H, F, F). `edit(alpha, value)`, for explanations only
        (autoint/explain/readings.py): alpha (B, H, F, F) and W_Value e (B, H, F, d') in, the weights Eq. 6 sums
        with out (B, H, F, F); the returned alpha stays the softmax's."""
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
        scores = scores.permute(2, 0, 1).contiguous()  # (F_k, H*B, F_m)
        alpha = sparsemax(scores, 0) if self.sparse else scores.softmax(dim=0)  # (F_k, H*B, F_m)  Eq. 5 over k
        attention = alpha.permute(1, 2, 0)  # (H*B, F, F) a view: alpha[(h, b), m, k]
        weights = attention  # what Eq. 6 sums with; `attention`, returned for explanations, is never dropped
        if self.attention_dropout is not None and self.training:
            weights = self.attention_dropout(attention)  # (H*B, F, F) authors' code: dropout on alpha
        if edit is not None:
            weights = edit(attention.view(H, B, F, F).transpose(0, 1), value.view(H, B, F, dh).transpose(0, 1))
            weights = weights.transpose(0, 1).reshape(H * B, F, F)  # (H*B, F, F) the edited Eq. 6 weights
        combined = torch.bmm(weights, value)  # (H*B, F, d')  Eq. 6: sum_k alpha_{m,k} W_Value e_k
        combined = self.dropout(combined).view(H, B, F, dh).permute(1, 2, 0, 3)  # (B, F, H, d')  Eq. 7 (a view)
        if self.residual:
            combined = res.squeeze(2) + combined  # (B, F, H, d')  Eq. 8: + W_Res e_m; res first keeps its order
        else:
            combined = combined.contiguous()
        out = F_.relu(combined).view(B, F, H * dh)  # (B, F, H*d')  Eq. 8: ReLU; Eq. 7: heads concatenated
        return self.norm(out), attention.view(H, B, F, F).transpose(0, 1)  # (B, F, H*d'), (B, H, F, F)


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
            attn_keep = kernels.keep_mask((H, F, F, B), self.attention_dropout.p, x)  # (H, F_m, F_k, B)
        if self.training and self.dropout.p > 0:
            head_keep = kernels.keep_mask((H, dh, F, B), self.dropout.p, x)  # (H, d', F, B)
        scale = 1.0 / math.sqrt(dh) if self.scaled else 1.0
        if kernels.KERNELS.runs_layer(x):  # the projection and Eqs. 5-8 per batch tile, in C++
            save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, W, bias))
            out, alpha = kernels.FusedLayer.apply(x, W, bias, attn_keep, head_keep, H, scale, self.residual, self.qkv_relu,
                                          save)
        else:
            flat = x.reshape(C_in, F * B)  # (in, F*B) a view
            projected = torch.mm(W, flat) if bias is None else torch.addmm(bias.unsqueeze(1), W, flat)  # (4*H*d', F*B)
            p = projected.view(-1, H, dh, F, B)  # (3 or 4, H, d', F, B)  W_Query e, W_Key e, W_Value e, W_Res e
            out, alpha = kernels.FusedAttention.apply(p, attn_keep, head_keep, scale, self.residual, self.qkv_relu)
        out = out.view(H * dh, F, B)  # (H*d', F, B)  Eqs. 7-8
        if isinstance(self.norm, nn.LayerNorm):  # authors' code: layer norm over each field's H*d' values
            mean = out.mean(0)  # (F, B)
            out = out - mean  # (H*d', F, B)
            inv = torch.rsqrt(out.square().mean(0) + self.norm.eps)  # (F, B)  1 / std
            weight, bias = self.norm.weight[:, None, None], self.norm.bias[:, None, None]  # (H*d', 1, 1) each
            if out.requires_grad:
                out = out * inv * weight + bias  # (H*d', F, B)
            else:  # the same values in place: no gradient to keep (explanations, the alignment's 2^F games)
                out.mul_(inv).mul_(weight).add_(bias)  # (H*d', F, B)
        return out, alpha

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same interface as the reference: e (B, F, d) -> (B, F, H*d'), (B, H, F, F)."""
        out, alpha = self.forward_columns(e.permute(2, 1, 0).contiguous())  # (H*d', F, B), (H, F, F, B)
        return out.permute(2, 1, 0).contiguous(), alpha.permute(3, 0, 1, 2).contiguous()


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

    def forward_embedded(self, embedded: torch.Tensor, return_attention: bool = False, edit=None):
        """Everything after Eqs. 2-4; attribution methods enter here with edited embeddings. `edit(layer, alpha,
        value)` -> Eq. 6's weights: the readings of the attention (autoint/explain/readings.py) change or watch
        them; it runs the reference layer."""
        B, F, d = embedded.shape
        if edit is not None or not self.uses_fused_layer(embedded):
            return self._forward_rows(embedded, return_attention, edit)
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
        """Whether this model's forward takes the column layout and the fused layer on that device
        (`kernels.runs_fused`: up to FUSED_MAX_FIELDS fields everywhere, wider where the C++ kernel runs)."""
        return not self.config.sparse_attention and kernels.runs_fused(len(self.schema.fields), device_type, dtype)

    def uses_fused_layer(self, embedded: torch.Tensor) -> bool:
        """`runs_fused` for these embeddings (B, F, d): their device and dtype."""
        return self.runs_fused(embedded.device.type, embedded.dtype)

    def _forward_rows(self, embedded: torch.Tensor, return_attention: bool, edit=None):
        """Schemas the fused layer does not take (`uses_fused_layer`), and edited passes: the reference layer,
        (B, F, d) layout."""
        B, F, _ = embedded.shape
        e, attentions = embedded, []
        for l, layer in enumerate(self.interacting):
            layer_edit = None if edit is None else (lambda alpha, value, l=l: edit(l, alpha, value))
            e, attention = InteractingLayer.forward(layer, e, layer_edit)  # (B, F, H*d'), (B, H, F, F)
            attentions.append(attention)
        logit = self.output(e.reshape(B, -1)).squeeze(-1)  # (B,)  Eq. 9 before the sigmoid
        if self.dnn is not None:
            logit = logit + self.dnn(embedded.reshape(B, -1)).squeeze(-1)  # (B,) AutoInt+ sums the logits
        if not return_attention:
            return logit
        if attentions:
            return logit, torch.stack(attentions, dim=1)  # (B, L, H, F, F)
        return logit, embedded.new_zeros(B, 0, self.config.heads, F, F)

    def forward_from(self, start: int, e: torch.Tensor, edit=None) -> torch.Tensor:
        """Eq. 9's logit (B,) from layer `start`'s input e (B, F, in), on the reference layer, without AutoInt+'s DNN
        term: an explanation that changes one layer (value zeroing) reruns only what follows it."""
        for l, layer in enumerate(self.interacting[start:], start):
            layer_edit = None if edit is None else (lambda alpha, value, l=l: edit(l, alpha, value))
            e, _ = InteractingLayer.forward(layer, e, layer_edit)  # (B, F, H*d'), (B, H, F, F)
        return self.output(e.reshape(e.shape[0], -1)).squeeze(-1)  # (B,)  Eq. 9 before the sigmoid

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
