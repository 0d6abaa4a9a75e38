"""Attention alignment: a training term that makes one reading of the attention rank field pairs as the model's
measured interactions do (the readable preset's `attention_alignment`).

Every step, for the first ALIGNMENT_ROWS samples of the batch: the target is each field pair's |k-SII| (exact,
`shapley.game_values` and `ksii_map`, the batch-mean embedding as the absent field's value, no gradient), the
reading is alpha * ||W_Value e_k|| (Kobayashi et al. 2020; `autoint.explain.readings`' "value-norm"), layers and
heads averaged and both directions of a pair averaged. The term is the mean over those samples of 1 - Pearson's r
between the two pair vectors (scale-free: attention sums to 1 per row, interactions have the logit's scale),
times the weight. The interactions are the model's own at that step, so the term asks the attention to show what
the rest of the model computes; with a weight of 1 the model instead bent its interactions toward its attention
and lost 0.08 test AUC on planted data, at 0.1 it kept its AUC (benchmarks/results/attention-faithfulness/).

Cost: 2^F forwards a sample (F <= EXACT_MAX_FIELDS): with 7 fields and 16 samples, 2,048 forward rows a step
without gradient. With 32 samples a step cost 2.2x the step without alignment on u2999 and the first start's
quick model missed its 60 s (benchmarks/first_run.md); 16 keep the readable preset's goal
(benchmarks/results/attention-faithfulness/aligned/).
"""
from __future__ import annotations

import torch

from ..data.encoding import FieldTensors
from ..errors import ConfigError
from ..model.autoint import AutoInt
from .shapley import EXACT_MAX_FIELDS, coalitions, game_values, ksii_map, pair_index

ALIGNMENT_ROWS = 16  # samples of each batch whose interactions the reading is pulled toward


def check_alignment(model: AutoInt) -> None:
    """Alignment needs attention and exact interactions: an AutoInt with interacting layers, up to 12 fields."""
    F = len(model.schema.fields)
    if getattr(model.config, "attention_alignment", 0.0) and (F > EXACT_MAX_FIELDS or not model.config.layers):
        raise ConfigError(f"attention_alignment needs interacting layers and exact interactions (up to "
                          f"{EXACT_MAX_FIELDS} fields); this model has {model.config.layers} layers and {F} fields. "
                          "Set attention_alignment to 0.")


def value_norm_pairs(model: AutoInt, embedded: torch.Tensor) -> torch.Tensor:
    """(B, F, d) embeddings -> (B, P) the value-norm reading of each field pair, with its gradient."""
    seen = []

    def watch(layer, alpha, value):  # alpha (B, H, F, F), value (B, H, F, d')
        seen.append(alpha * value.norm(dim=-1).unsqueeze(-2))  # (B, H, F, F): alpha_mk * ||v_k||
        return alpha
    model.forward_embedded(embedded, edit=watch)
    reading = torch.stack(seen, 1).mean(dim=(1, 2))  # (B, F, F) layers and heads averaged
    return torch.stack([(reading[:, i, j] + reading[:, j, i]) / 2 for i, j in pair_index(reading.shape[-1])], -1)


def interaction_pairs(model: AutoInt, embedded: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """(B, F, d) embeddings, (1, F, d) baseline -> (B, P) |k-SII| of each pair, exact, without gradient."""
    F = embedded.shape[1]
    pairs = torch.from_numpy(ksii_map(F)[F:]).to(embedded.device, torch.float64)  # (P, 2^F)
    training = model.training
    model.eval()  # the interactions of the model as it predicts: no dropout
    try:
        values = game_values(model, embedded.detach(), baseline, coalitions(F))  # (B, 2^F) float64
    finally:
        model.train(training)
    return (values.to(embedded.device) @ pairs.T).abs().float()  # (B, P)


def pearson_gap(reading: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of 1 - Pearson's r between two (B, P) tensors (0 when each row is a positive multiple)."""
    a = reading - reading.mean(-1, keepdim=True)
    b = target - target.mean(-1, keepdim=True)
    r = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-8)
    return (1 - r).mean()


def alignment_term(model: AutoInt, x: FieldTensors) -> torch.Tensor:
    """The weighted term for one batch (0 without alignment): the model's `attention_alignment` times
    `pearson_gap(value-norm reading, |k-SII|)` over the batch's first ALIGNMENT_ROWS samples."""
    weight = model.config.attention_alignment
    if not weight:
        return torch.zeros(())
    embedded = model.embed(x)  # (B, F, d)
    with torch.no_grad():
        baseline = embedded.mean(0, keepdim=True)  # (1, F, d) the batch's mean embedding
    chosen = embedded[:ALIGNMENT_ROWS]  # (R, F, d)
    return weight * pearson_gap(value_norm_pairs(model, chosen), interaction_pairs(model, chosen, baseline))
