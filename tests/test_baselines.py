import itertools

import torch

from autoint.baselines import FMConfig, LRConfig, build_model
from autoint.model import AutoInt, AutoIntConfig
from autoint.train import TrainConfig, train


def test_lr_is_a_sum_of_field_weights(synth_dataset):
    torch.manual_seed(0)
    model = build_model(LRConfig(), synth_dataset.schema)
    x, _ = synth_dataset.split("test")
    x = x.index(slice(0, 16))
    per_field = model.weights(x)  # (B, F, 1)
    assert torch.allclose(model(x), per_field.sum((1, 2)) + model.bias, atol=1e-6)


def test_fm_pairwise_term_equals_explicit_pairs(synth_dataset):
    torch.manual_seed(0)
    model = build_model(FMConfig(embed_dim=4), synth_dataset.schema)
    x, _ = synth_dataset.split("test")
    x = x.index(slice(0, 16))
    e = model.embedding(x)
    pairs = sum((e[:, i] * e[:, j]).sum(-1) for i, j in itertools.combinations(range(e.shape[1]), 2))
    assert torch.allclose(model(x), model.linear(x) + pairs, atol=1e-5)


def test_build_model_dispatches_and_baselines_train(synth_dataset):
    assert isinstance(build_model(AutoIntConfig(layers=1), synth_dataset.schema), AutoInt)
    result = train(synth_dataset, FMConfig(embed_dim=4), TrainConfig(epochs=1, seed=0), progress=False)
    assert result.metrics["model"] == "FM" and 0.0 < result.metrics["test_auc"] < 1.0
