import math

import pytest
import torch
import torch.nn.functional as F_

from autoint.data.encoding import FieldTensors
from autoint.model.autoint import AutoInt, AutoIntConfig, ConfigError


def batch(dataset, n=64):
    x, _ = dataset.split("train")
    return x.index(slice(0, n))


def model_for(dataset, **kw):
    torch.manual_seed(0)
    return AutoInt(AutoIntConfig(**kw), dataset.schema).eval()


def test_attention_shape_and_rows_sum_to_one(synth_dataset):
    model = model_for(synth_dataset, layers=3, heads=2)
    _, attention = model(batch(synth_dataset), return_attention=True)
    F = len(synth_dataset.schema.fields)
    assert attention.shape == (64, 3, 2, F, F)
    assert torch.allclose(attention.sum(-1), torch.ones(64, 3, 2, F), atol=1e-6)
    assert (attention >= 0).all()


def test_attention_forward_equals_plain_forward(synth_dataset):
    model = model_for(synth_dataset, dnn_hidden=(32,))
    x = batch(synth_dataset)
    logits, _ = model(x, return_attention=True)
    assert torch.equal(logits, model(x))


def test_genre_mean_ignores_padding(synth_dataset):
    model = model_for(synth_dataset)
    x = batch(synth_dataset, 1)
    genre_pos = synth_dataset.schema.names.index("Genre")
    slots = x.multivalued[0, 0]
    present = slots[slots >= 0]
    table, offset = model.embedding.multivalued.weight, model.embedding.multivalued_offsets[0]
    expected = table[present + offset].mean(0)  # Eq. 3: (1/q) V x
    embedded = model.embed(x)
    assert torch.allclose(embedded[0, genre_pos], expected, atol=1e-6)
    # Changing what a padding slot would point at changes nothing.
    poked = x.multivalued.clone()
    poked[poked < 0] = -1
    assert torch.equal(model.embed(FieldTensors(x.categorical, poked, x.numeric)), embedded)


def test_numeric_field_scales_one_vector(synth_dataset):
    model = model_for(synth_dataset)
    x = batch(synth_dataset, 4)
    pos = synth_dataset.schema.names.index("RequestTime")
    embedded = model.embed(x)
    for i in range(4):  # Eq. 4: e_m = v_m x_m
        assert torch.allclose(embedded[i, pos], model.embedding.numeric[0] * x.numeric[i, 0])


def test_residual_off_is_relu_of_attention_only(synth_dataset):
    model = model_for(synth_dataset, layers=1, heads=2, attn_dim=4, residual=False)
    layer = model.interacting[0]
    assert layer.projection.out_features == 3 * 2 * 4  # no W_Res
    e = model.embed(batch(synth_dataset, 8))
    out, attention = layer(e)
    W = layer.projection.weight  # rows: [query heads | key heads | value heads]
    q, k, v = (e @ W[i * 8:(i + 1) * 8].T for i in range(3))  # (B, F, H*d')
    heads = []
    for h in range(2):
        qh, kh, vh = (t[..., h * 4:(h + 1) * 4] for t in (q, k, v))
        alpha = torch.softmax(qh @ kh.transpose(1, 2), dim=-1)
        assert torch.allclose(alpha, attention[:, h], atol=1e-6)
        heads.append(alpha @ vh)
    assert torch.allclose(out, F_.relu(torch.cat(heads, -1)), atol=1e-5)


def test_residual_on_adds_w_res(synth_dataset):
    model = model_for(synth_dataset, layers=1, heads=1, attn_dim=4, residual=True)
    layer = model.interacting[0]
    e = model.embed(batch(synth_dataset, 8))
    out, attention = layer(e)
    W = layer.projection.weight
    q, k, v, res = (e @ W[i * 4:(i + 1) * 4].T for i in range(4))
    expected = F_.relu(torch.softmax(q @ k.transpose(1, 2), -1) @ v + res)  # Eq. 8
    assert torch.allclose(out, expected, atol=1e-5)


def test_zero_layers_is_a_weighted_sum_of_embeddings(synth_dataset):
    model = model_for(synth_dataset, layers=0)
    x = batch(synth_dataset, 8)
    logits, attention = model(x, return_attention=True)
    assert attention.shape[1] == 0
    e = model.embed(x).reshape(8, -1)
    assert torch.allclose(logits, e @ model.output.weight[0] + model.output.bias, atol=1e-6)  # Eq. 9 with L=0


def test_autoint_plus_sums_logits(synth_dataset):
    model = model_for(synth_dataset, dnn_hidden=(16, 16))
    x = batch(synth_dataset, 8)
    e = model.embed(x)
    model_dnn = model.dnn
    model.dnn = None
    attention_only = model.forward_embedded(e)
    model.dnn = model_dnn
    assert torch.allclose(model(x), attention_only + model.dnn(e.reshape(8, -1)).squeeze(-1), atol=1e-6)
    assert model.config.name == "AutoInt+"


def test_scaled_attention_option(synth_dataset):
    plain, scaled = model_for(synth_dataset, layers=1), model_for(synth_dataset, layers=1, scaled_attention=True)
    x = batch(synth_dataset, 8)
    assert not torch.allclose(plain(x, return_attention=True)[1], scaled(x, return_attention=True)[1])


@pytest.mark.parametrize("kwargs,message", [
    ({"layers": 100}, "layers=100 is out of range"),
    ({"embed_dim": 0}, "embed_dim=0 is out of range"),
    ({"heads": 0}, "heads=0 is out of range"),
    ({"dropout": 1.5}, r"dropout=1.5 is out of range"),
    ({"dropout": math.nan}, "dropout=nan is out of range"),
    ({"dnn_hidden": (400, 0)}, "dnn_hidden"),
])
def test_impossible_hyperparameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AutoIntConfig(**kwargs)


# ----------------------------------------------------------------------------- the authors' code options


def test_new_options_are_off_by_default_and_old_run_configs_still_load(trained_run, synth_dataset, tmp_path):
    import json
    import shutil
    from autoint.training.runs import load_run
    config = AutoIntConfig()
    assert (config.qkv_relu, config.projection_bias, config.attention_dropout) == (False, False, 0.0)
    # A run.json written before these options existed has none of their keys.
    folder = tmp_path / "old"
    shutil.copytree(trained_run.path, folder)
    manifest = json.loads((folder / "run.json").read_text())
    for key in ("qkv_relu", "projection_bias", "attention_dropout"):
        manifest["config"].pop(key, None)
    (folder / "run.json").write_text(json.dumps(manifest))
    old = load_run(folder)
    assert old.model.config == trained_run.model.config
    assert all(layer.projection.bias is None for layer in old.model.interacting)  # the paper's W have no bias
    x = batch(synth_dataset, 16)
    assert torch.equal(old.model(x), trained_run.model(x))


def test_qkv_relu_and_bias_follow_the_authors_code(synth_dataset):
    """ReLU(W e + b) for query, key, value and W_Res alike, then Eqs. 5-8 unchanged."""
    model = model_for(synth_dataset, layers=1, heads=1, attn_dim=4, qkv_relu=True, projection_bias=True)
    layer = model.interacting[0]
    assert layer.projection.bias is not None and layer.projection.bias.shape == (16,)
    with torch.no_grad():
        layer.projection.bias.normal_()
    e = model.embed(batch(synth_dataset, 8))
    out, attention = layer(e)
    W, b = layer.projection.weight, layer.projection.bias
    q, k, v, res = (F_.relu(e @ W[i * 4:(i + 1) * 4].T + b[i * 4:(i + 1) * 4]) for i in range(4))
    alpha = torch.softmax(q @ k.transpose(1, 2), -1)
    assert torch.allclose(attention[:, 0], alpha, atol=1e-6)
    assert torch.allclose(out, F_.relu(alpha @ v + res), atol=1e-5)


def test_qkv_relu_without_residual_has_three_projections(synth_dataset):
    model = model_for(synth_dataset, layers=1, heads=2, attn_dim=4, qkv_relu=True, residual=False)
    layer = model.interacting[0]
    e = model.embed(batch(synth_dataset, 8))
    out, attention = layer(e)
    W = layer.projection.weight
    q, k, v = (F_.relu(e @ W[i * 8:(i + 1) * 8].T) for i in range(3))
    for h in range(2):
        qh, kh = q[..., h * 4:(h + 1) * 4], k[..., h * 4:(h + 1) * 4]
        assert torch.allclose(attention[:, h], torch.softmax(qh @ kh.transpose(1, 2), -1), atol=1e-6)


def test_attention_dropout_drops_alpha_in_training_only_and_returns_it_undropped(synth_dataset):
    plain = model_for(synth_dataset, layers=1, heads=2, attn_dim=4)
    dropped = model_for(synth_dataset, layers=1, heads=2, attn_dim=4, attention_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())  # same weights: only the dropout differs
    x = batch(synth_dataset, 32)
    # Eval: no dropout at all, so the two models agree exactly.
    assert torch.equal(plain(x), dropped(x))
    plain.train(), dropped.train()
    torch.manual_seed(1)
    logits, attention = dropped(x, return_attention=True)
    reference_logits, reference_attention = plain(x, return_attention=True)
    # explanations see the softmax's alpha (to rounding: the compiled kernel with a dropout mask is another loop)
    assert torch.allclose(attention, reference_attention, atol=1e-6, rtol=0)
    assert torch.allclose(attention.sum(-1), torch.ones_like(attention.sum(-1)), atol=1e-6)
    assert not torch.allclose(logits, reference_logits)  # Eq. 6 used the dropped weights
    # Eq. 6 by hand, the dropout mask drawn from the same seed as the fused layer draws it: one keep mask
    # (0 or 1/(1-p)) over alpha in the column layout (H, F_m, F_k, B). Expected: ReLU(dropout(alpha) W_V e + W_Res e).
    layer = dropped.interacting[0]
    e = dropped.embed(x)
    torch.manual_seed(1)
    out, alpha = layer(e)  # (B, F, H*d'), (B, H, F, F)
    B, H, F, _ = alpha.shape
    W = layer.projection.weight
    q, k, v, res = (e @ W[i * 8:(i + 1) * 8].T for i in range(4))
    torch.manual_seed(1)
    keep = torch.empty(H, F, F, B).bernoulli_(0.5).div_(0.5)  # (H, F_m, F_k, B)
    kept = keep.permute(3, 0, 1, 2) * alpha  # (B, H, F, F)
    assert ((kept == 0) | torch.isclose(kept, 2 * alpha)).all() and (kept == 0).any()
    heads = [kept[:, h] @ v[..., h * 4:(h + 1) * 4] for h in range(H)]
    assert torch.allclose(out, F_.relu(torch.cat(heads, -1) + res), atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"attention_dropout": 1.0}, "attention_dropout=1.0 is out of range"),
    ({"attention_dropout": -0.1}, "attention_dropout=-0.1 is out of range"),
    ({"qkv_relu": "yes"}, "qkv_relu='yes': choose true or false"),
])
def test_impossible_new_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AutoIntConfig(**kwargs)


# ----------------------------------------------------------------------------- presets and the CLI


def test_paper_preset_is_the_default_and_unknown_presets_list_the_names():
    from autoint.model.presets import PRESET_DESCRIPTIONS, PRESETS, preset_config
    assert PRESETS["paper"] == {} and preset_config("paper") == AutoIntConfig()
    assert set(PRESET_DESCRIPTIONS) == set(PRESETS)
    for name in PRESETS:
        preset_config(name)  # every preset builds
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose one of: paper, readable, authors-code."):
        preset_config("fast")


def test_authors_code_preset_is_the_benchmarked_variant():
    """The preset exists because benchmarks/attention_faithfulness.py measured exactly these settings."""
    import json
    from conftest import REPO
    from autoint.model.presets import PRESETS
    results = json.loads((REPO / "benchmarks" / "results" / "attention-faithfulness" / "results.json").read_text())
    assert PRESETS["authors-code"] == results["meta"]["variants"]["authors-code"]["model"]
    assert "authors-code" in results["verdict"]["passing"]
    # "readable", the app's default, is the variant the readable rule picked in the alignment run (the paper's model
    # measured beside it): its best reading meets the goal (split rho >= 0.8, median per-sample rho >= 0.5) at no
    # more than 0.001 test AUC below the paper's
    aligned = json.loads((REPO / "benchmarks" / "results" / "attention-faithfulness" / "aligned" /
                          "results.json").read_text())
    readable = aligned["readable"]
    chosen = readable["variants"][readable["preset"]]
    assert readable["preset"] == "authors-code-aligned"
    assert PRESETS["readable"] == aligned["meta"]["variants"][readable["preset"]]["model"]
    assert chosen["split_rho"] >= 0.8 and chosen["median_rho"] >= 0.5 and chosen["auc_change"] >= -0.001


def test_cli_preset_then_explicit_flags():
    from autoint.cli import build_parser, main, model_config_from
    parse = lambda *flags: model_config_from(build_parser().parse_args(["train", "--out", "x", *flags]))
    assert parse() == AutoIntConfig()
    authors = AutoIntConfig(qkv_relu=True, projection_bias=True, scaled_attention=True, layer_norm=True)
    assert parse("--preset", "authors-code") == authors
    assert parse("--preset", "authors-code", "--no-layer-norm", "--layers", "2", "--attention-dropout", "0.1") == \
        AutoIntConfig(qkv_relu=True, projection_bias=True, scaled_attention=True, layers=2, attention_dropout=0.1)
    assert parse("--no-residual").residual is False  # the flag Table 4's runs were trained with still works
    with pytest.raises(ConfigError, match="unknown preset 'nope'; choose one of: paper, readable, authors-code."):
        parse("--preset", "nope")
    assert main(["train", "--out", "x", "--preset", "nope"]) == 2


def test_sparsemax_is_the_projection_onto_the_simplex():
    """Sparsemax (the sparse-attention remedy): weights >= 0 summing to 1, the closest such point to z (checked
    against a brute-force search over supports), many exactly 0; a model with it gives such attention rows."""
    import itertools
    from autoint.model.kernels.ops import sparsemax
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 2
    p = sparsemax(z, 1)
    for row, out in zip(z, p):
        best = None
        for size in range(1, 6):
            for support in itertools.combinations(range(5), size):
                idx = list(support)
                tau = (row[idx].sum() - 1) / size
                candidate = torch.zeros(5, dtype=torch.float64)
                candidate[idx] = row[idx] - tau
                if (candidate >= 0).all() and (best is None or (candidate - row).norm() < (best - row).norm()):
                    best = candidate
        torch.testing.assert_close(out, best, atol=1e-9, rtol=0)
    assert (p == 0).any()
    torch.testing.assert_close(sparsemax(z.T, 0), p.T)


def test_a_sparse_attention_model_trains_and_reads_exact_zeros(synth_dataset):
    from autoint.training.train import TrainConfig, train
    config = AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2, sparse_attention=True)
    result = train(synth_dataset, config, TrainConfig(epochs=1, batch_size=256, seed=1), progress=False)
    x, _ = synth_dataset.split("test")
    with torch.no_grad():
        _, attention = result.model(x.index(slice(0, 64)), return_attention=True)  # (B, L, H, F, F)
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]), atol=1e-4, rtol=0)
    assert not result.model.runs_fused("cpu")  # sparsemax runs on the reference layer
    with torch.no_grad():  # larger scores: sparsemax leaves most fields at exactly 0 (softmax never does)
        for layer in result.model.interacting:
            layer.projection.weight.mul_(20)
        _, attention = result.model(x.index(slice(0, 64)), return_attention=True)
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]), atol=1e-4, rtol=0)
    assert (attention == 0).float().mean() > 0.2
