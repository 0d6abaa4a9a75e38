"""The paper's baselines, LR and FM, built on AutoInt's own field embedding (Eqs. 2-4).

Sharing `FieldEmbedding` means every model sees the seven fields encoded the same way, so
the comparison in Tables 2, 4 and 5 is about the interaction part alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn

from ..data.encoding import FieldTensors
from ..errors import ConfigError
from .autoint import LIMITS, AutoInt, AutoIntConfig, FieldEmbedding
from ..data.schema import Schema


def _check_keys(model: str, obj: dict, known: set[str]) -> None:
    unknown = set(obj) - known - {"model"}
    if unknown:
        raise ConfigError(f"unknown {model} settings {sorted(unknown)}; known: {sorted(known) or 'none'}")


@dataclass
class LRConfig:
    """Logistic regression: one weight per field value (a 1-dimensional embedding), summed."""

    name = "LR"

    def validate(self) -> None:
        pass

    def to_json(self) -> dict:
        return {"model": "LR"}

    @staticmethod
    def from_json(obj: dict) -> "LRConfig":
        _check_keys("LR", obj, set())
        return LRConfig()

    def build(self, schema: Schema) -> "LogisticRegression":
        return LogisticRegression(self, schema)


@dataclass
class FMConfig:
    """Factorization machine (Rendle 2010): LR plus all pairwise inner products of field embeddings."""

    embed_dim: int = 16
    name = "FM"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        low, high = LIMITS["embed_dim"]
        if isinstance(self.embed_dim, bool) or not isinstance(self.embed_dim, int) or not low <= self.embed_dim <= high:
            raise ConfigError(f"embed_dim={self.embed_dim!r} is out of range: choose an integer from {low} to {high}.")

    def to_json(self) -> dict:
        return {"model": "FM", **asdict(self)}

    @staticmethod
    def from_json(obj: dict) -> "FMConfig":
        _check_keys("FM", obj, {f.name for f in fields(FMConfig)})
        return FMConfig(**{k: v for k, v in obj.items() if k != "model"})

    def build(self, schema: Schema) -> "FactorizationMachine":
        return FactorizationMachine(self, schema)


class _FieldModel(nn.Module):
    """What the trainer needs from a model: `schema`, `config`, logits from `forward`, `predict_proba`."""

    def __init__(self, config, schema: Schema):
        super().__init__()
        self.config, self.schema = config, schema

    predict_proba = AutoInt.predict_proba  # batched sigmoid in eval mode: the same code for every model


class LogisticRegression(_FieldModel):
    def __init__(self, config: LRConfig, schema: Schema):
        super().__init__(config, schema)
        self.weights = FieldEmbedding(schema, 1)  # w_i per value: Eqs. 2-4 with d = 1
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: FieldTensors) -> torch.Tensor:
        return self.weights(x).sum(dim=(1, 2)) + self.bias  # (B,) sum_i w_i x_i + b


class FactorizationMachine(_FieldModel):
    def __init__(self, config: FMConfig, schema: Schema):
        super().__init__(config, schema)
        self.linear = LogisticRegression(LRConfig(), schema)
        self.embedding = FieldEmbedding(schema, config.embed_dim)

    def forward(self, x: FieldTensors) -> torch.Tensor:
        e = self.embedding(x)  # (B, F, d)
        # sum_{i<j} <e_i, e_j> = 1/2 ((sum_i e_i)^2 - sum_i e_i^2), summed over d
        pairwise = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(-1)  # (B,)
        return self.linear(x) + pairwise


# The model registry: every model a run can hold, by the name its config saves under "model". AutoInt+ is
# AutoInt with DNN widths (one config class); LR and FM are the paper's baselines on the same embedding.
MODEL_CONFIGS = {"AutoInt": AutoIntConfig, "AutoInt+": AutoIntConfig, "LR": LRConfig, "FM": FMConfig}


def config_from_json(obj: dict):
    """The model config a run or a job saved (`config.to_json()`), for any model of the registry."""
    if not isinstance(obj, dict):
        raise ConfigError(f"a model config must be a JSON object, not {type(obj).__name__}.")
    name = obj.get("model", "AutoInt")  # AutoInt configs saved before the registry carry no "model" key
    if name not in MODEL_CONFIGS:
        raise ConfigError(f"model {name!r} is unknown; known models: {', '.join(MODEL_CONFIGS)}.")
    return MODEL_CONFIGS[name].from_json(obj)


def build_model(config, schema: Schema) -> nn.Module:
    if isinstance(config, AutoIntConfig):
        return AutoInt(config, schema)
    if isinstance(config, (LRConfig, FMConfig)):
        return config.build(schema)
    raise ConfigError(f"unknown model config {type(config).__name__}")
