"""Attention alignment (autoint/training/alignment.py): its target is the explanation engine's exact k-SII, its
reading is the value-norm reading the app scores, it pulls through the attention, and on planted data the
readable preset trained with it ranks the planted pairs first under the reading the app shows for it."""
import numpy as np
import pytest
import torch

from autoint.errors import ConfigError
from autoint.explain.baselines import mean_embedding
from autoint.explain.interactions import split_interactions
from autoint.explain.readings import pairs_of, read_batch, summarise
from autoint.model.autoint import AutoInt, AutoIntConfig
from autoint.training.alignment import (ALIGNMENT_ROWS, alignment_term, interaction_pairs, pearson_gap,
                                        value_norm_pairs)


def test_pearson_gap_is_zero_for_the_same_ranking_by_scale_and_two_for_the_reverse():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert pearson_gap(a * 0.01 + 5, a).item() == pytest.approx(0.0, abs=1e-6)
    assert pearson_gap(-a, a).item() == pytest.approx(2.0, abs=1e-6)


def test_target_and_reading_are_the_explanation_engines_own(synth_dataset):
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2, qkv_relu=True, projection_bias=True,
                                  layer_norm=True, scaled_attention=True), synth_dataset.schema).eval()
    x, _ = synth_dataset.split("test")
    rows = x.index(torch.arange(12))
    base = mean_embedding(model, synth_dataset.split("train")[0])  # (1, F, d)
    with torch.no_grad():
        embedded = model.embed(rows)
    measured = split_interactions(model, rows, base)
    np.testing.assert_allclose(interaction_pairs(model, embedded, base).numpy(), np.abs(measured.pairs), atol=1e-5)
    _, maps = read_batch(model, rows, ["value-norm"])
    expected = pairs_of(summarise("value-norm", maps["value-norm"]))  # (12, P)
    np.testing.assert_allclose(value_norm_pairs(model, embedded).detach().numpy(), expected, atol=1e-5)


def test_the_term_pulls_through_the_attention_and_is_off_at_zero(synth_dataset):
    torch.manual_seed(0)
    x, _ = synth_dataset.split("train")
    batch = x.index(torch.arange(2 * ALIGNMENT_ROWS))
    off = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=1), synth_dataset.schema)
    assert alignment_term(off, batch).item() == 0.0
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=1, attention_alignment=0.5),
                    synth_dataset.schema)
    term = alignment_term(model, batch)
    assert 0.0 < term.item() <= 0.5 * 2  # the weight times a gap in [0, 2]
    term.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["interacting.0.projection.weight"].abs().sum() > 0  # W_Query, W_Key, W_Value, W_Res (Eqs. 5-8)
    assert grads["output.weight"] is None or not grads["output.weight"].any()  # Eq. 9 is not what it moves


def test_settings_that_cannot_align_are_refused(synth_dataset, tmp_path):
    from autoint.datasets.synth import generate_criteo
    from autoint.datasets import load_dataset
    from autoint.training.train import TrainConfig, train
    with pytest.raises(ConfigError, match=r"attention_alignment=-1 is out of range"):
        AutoIntConfig(attention_alignment=-1)
    with pytest.raises(ConfigError, match="needs interacting layers"):
        train(synth_dataset, AutoIntConfig(layers=0, attention_alignment=0.1), TrainConfig(epochs=1), progress=False)
    wide = load_dataset("criteo", data_dir=generate_criteo(tmp_path / "c", rows=300, seed=1))
    with pytest.raises(ConfigError, match="up to 12 fields.*this model has 3 layers and 39 fields"):
        train(wide, AutoIntConfig(attention_alignment=0.1), TrainConfig(epochs=1), progress=False)
@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from autoint.datasets.movielens import load_movielens
    from autoint.datasets.synth import generate_movielens, planted_pairs
    folder = generate_movielens(tmp_path_factory.mktemp("planted") / "ml", users=1500, movies=300, ratings=60000,
                                seed=3)
    return load_movielens(folder), {frozenset(p) for p in planted_pairs(folder)}


def test_the_readable_preset_ranks_the_planted_pairs_first_under_its_default_reading(planted):
    """The issue's check: on data whose clicks follow three planted pairs, the readable preset (its training's
    alignment included), the reading the app shows by default for it (the best by split-level agreement) ranks
    exactly the planted pairs as its top 3. The faithfulness benchmark's planted check
    (benchmarks/results/attention-faithfulness/aligned/) finds it on 3 of seeds 0-2 (with 32 alignment samples a
    batch, 2 of 3); this test trains one of them, seed 1, to keep the whole path (preset, alignment, readings, the
    default rule) working; without the alignment no reading did on any seed."""
    from autoint.explain.interactions import pair_index
    from autoint.explain.readings import score_split
    from autoint.model.presets import preset_config
    from autoint.training.train import TrainConfig, train
    dataset, pairs = planted
    config = preset_config("readable", embed_dim=16, attn_dim=8)
    assert config.attention_alignment > 0
    model = train(dataset, config, TrainConfig(epochs=10, patience=3, batch_size=512, lr=0.005, seed=1),
                  progress=False).model.eval()
    x, _ = dataset.split("test")
    measured = split_interactions(model, x, mean_embedding(model, dataset.split("train")[0]))
    scored = score_split(model, x, measured.pairs, max_rows=2000)
    names = dataset.schema.names
    reading = scored.readings[scored.default]
    top = np.argsort(-pairs_of(reading.matrix), kind="stable")[:3]
    assert {frozenset((names[i], names[j])) for i, j in (pair_index(len(names))[k] for k in top)} == pairs, \
        (scored.default, reading.agreement)
    assert reading.agreement >= 0.8
