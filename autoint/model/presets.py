"""Named model settings for the Train page and `train --preset`: overrides of AutoIntConfig's defaults.

"paper" is the CLI's default model (for reproduction); "readable" is the app's default: its attention, under its best
reading, ranks field pairs as the measured interactions do, at the paper's test AUC or better
(benchmarks/attention_faithfulness.py, benchmarks/results/attention-faithfulness/aligned/): the authors' layer
("authors-code") trained with attention alignment (autoint/training/alignment.py).
"""
from __future__ import annotations

from ..errors import ConfigError
from .autoint import AutoIntConfig

PRESETS: dict[str, dict] = {
    "paper": {},
    "readable": {"qkv_relu": True, "projection_bias": True, "scaled_attention": True, "layer_norm": True,
                 "attention_alignment": 0.1},
    "authors-code": {"qkv_relu": True, "projection_bias": True, "scaled_attention": True, "layer_norm": True},
}
PRESET_DESCRIPTIONS: dict[str, str] = {
    "paper": "The paper's AutoInt, Eqs. 5-9 as written (the CLI's default, for reproduction).",
    "authors-code": "The authors' TensorFlow layer: ReLU and bias on Q, K, V and W_Res, scaled scores, layer norm.",
    "readable": "The app's default, a model whose attention can be read: the authors' layer, trained with attention "
                "alignment 0.1 (its alpha * ||value|| reading pulled toward the measured interactions): split rho "
                "+0.98, median per-sample rho +0.80, test AUC +0.0046 over the paper's (3 seeds, u2999, "
                "benchmarks/results/attention-faithfulness/aligned).",
}


def preset_of(config: "AutoIntConfig | dict") -> str | None:
    """The name of the preset whose settings a config has exactly (its other settings at their defaults), the
    first in PRESETS order; None for any other config."""
    settings = config.to_json() if isinstance(config, AutoIntConfig) else dict(config)
    settings = {**AutoIntConfig().to_json(), **settings}  # a run saved before a setting existed has its default
    settings.pop("model", None)
    for name, overrides in PRESETS.items():
        expected = AutoIntConfig(**overrides).to_json()
        expected.pop("model", None)
        if all(settings.get(k) == v for k, v in expected.items()):
            return name
    return None


def preset_config(name: str, **overrides) -> AutoIntConfig:
    """The preset's settings, then `overrides` on top (explicit settings win)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.")
    return AutoIntConfig(**{**PRESETS[name], **overrides})
