import math

import pytest
import torch
import torch.nn.functional as F_

from autoint.data import FieldTensors
from autoint.model import AutoInt, AutoIntConfig, ConfigError


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
