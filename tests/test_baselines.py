import itertools

import torch

from autoint.model.reference_models import FMConfig, LRConfig, build_model
from autoint.model.autoint import AutoInt, AutoIntConfig
from autoint.training.train import TrainConfig, train


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


def test_every_model_of_the_registry_saves_and_loads(synth_dataset, synth_dir, tmp_path):
    """LR, FM, AutoInt and AutoInt+ runs all come back from their folders with the same weights and logits;
    the CLI trains the baselines too (`train --model lr|fm`)."""
    import json
    from autoint.cli import main
    from autoint.model.reference_models import MODEL_CONFIGS, config_from_json
    from autoint.training.runs import load_run, save_run
    configs = [LRConfig(), FMConfig(embed_dim=4), AutoIntConfig(embed_dim=4, attn_dim=4, layers=1),
               AutoIntConfig(embed_dim=4, attn_dim=4, layers=1, dnn_hidden=(8,))]
    assert sorted({c.name for c in configs}) == sorted(MODEL_CONFIGS)
    x, _ = synth_dataset.split("test")
    x = x.index(slice(0, 32))
    for config in configs:
        torch.manual_seed(0)
        model = build_model(config, synth_dataset.schema).eval()
        path = save_run(tmp_path / config.name.replace("+", "plus"), model, metrics={})
        run = load_run(path)
        assert type(run.model) is type(model) and run.model.config == config
        assert config_from_json(json.loads((path / "run.json").read_text())["config"]) == config
        assert torch.equal(run.model(x), model(x))
    for kind, name in (("lr", "LR"), ("fm", "FM")):
        out = tmp_path / f"cli-{kind}"
        assert main(["train", "--data-dir", str(synth_dir), "--model", kind, "--epochs", "1", "--quiet",
                     "--device", "cpu", "--out", str(out)]) == 0
        run = load_run(out)
        assert run.manifest["model"] == name and run.model.config.name == name
