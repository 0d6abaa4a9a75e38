"""Pairwise Shapley interactions (k-SII) and attention agreement: exactness, efficiency, planted pairs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from autoint.explain import interactions as I
from autoint.data.encoding import encode_sample
from autoint.explain.baselines import mean_embedding

shapiq = pytest.importorskip("shapiq", reason="shapiq is in requirements.txt; it is the reference for k-SII")


def table_game(values: np.ndarray, n: int):
    """A game given by its 2^n values, indexed as `coalitions` (bit f = field f)."""
    weights = 1 << np.arange(n)
    return lambda Z: values[(np.asarray(Z, dtype=bool) * weights).sum(1)]


def shapiq_ksii(game, n: int) -> np.ndarray:
    result = shapiq.ExactComputer(n_players=n, game=game)(index="k-SII", order=2)
    lookup = result.interaction_lookup
    return np.array([result.values[lookup[(i,)]] for i in range(n)]
                    + [result.values[lookup[p]] for p in I.pair_index(n)])


@pytest.mark.parametrize("n", [2, 3, 5, 7, 9])
def test_exact_map_equals_shapiq_on_random_games(n):
    rng = np.random.default_rng(n)
    for _ in range(3):
        values = rng.normal(size=2 ** n) * rng.uniform(0.1, 5)
        ours = I.ksii_map(n) @ values
        assert ours.shape == (n + n * (n - 1) // 2,)
        np.testing.assert_allclose(ours, shapiq_ksii(table_game(values, n), n), atol=1e-6, rtol=0)
        assert abs(ours.sum() - (values[-1] - values[0])) < 1e-9  # efficiency


def test_exact_map_on_known_games():
    # v(S) = [0 and 1 both in S]: a pure pair, so phi_01 = 1 and nothing else.
    n = 3
    masks = I.coalitions(n).numpy()
    phi = I.ksii_map(n) @ (masks[:, 0] & masks[:, 1]).astype(float)
    np.testing.assert_allclose(phi, [0, 0, 0, 1, 0, 0], atol=1e-12)
    # v(S) = |S|: additive, so phi_i = 1 and no interaction.
    phi = I.ksii_map(n) @ masks.sum(1).astype(float)
    np.testing.assert_allclose(phi, [1, 1, 1, 0, 0, 0], atol=1e-12)
    # v(S) = [all three in S]: the triple's Moebius coefficient goes to the pairs (1/2 each) and
    # the singletons (1/3 - 1/2 each), summing to 1.
    phi = I.ksii_map(n) @ masks.all(1).astype(float)
    np.testing.assert_allclose(phi, [-1 / 6] * 3 + [0.5] * 3, atol=1e-12)


def test_too_many_fields_for_the_exact_map():
    with pytest.raises(I.InteractionError, match="sampling estimator"):
        I.ksii_map(I.EXACT_MAX_FIELDS + 1)


def model_game(model, x, baseline):
    """The model game, evaluated coalition by coalition (no batching), for shapiq."""
    embedded = model.embed(x)

    def game(Z):
        return I.game_values(model, embedded, baseline, torch.as_tensor(np.asarray(Z, dtype=bool)))[0].numpy()
    return game


def test_sample_interactions_equal_shapiq_on_the_model_game(trained_run, synth_dataset):
    model = trained_run.model.eval()
    train_x, _ = synth_dataset.split("train")
    test_x, _ = synth_dataset.split("test")
    baseline = mean_embedding(model, train_x)
    F = len(model.schema.fields)
    for row in (0, 5, 17):
        x = test_x.index(slice(row, row + 1))
        ours = I.sample_interactions(model, x, baseline)
        reference = shapiq_ksii(model_game(model, x, baseline), F)
        np.testing.assert_allclose(np.concatenate([ours.main, ours.pairs]), reference, atol=1e-6, rtol=0)
        assert ours.efficiency_gap < 1e-4
        with torch.no_grad():
            assert ours.full == pytest.approx(float(model(x)[0]), abs=1e-5)  # v(all fields) is the prediction
        assert ours.matrix.shape == (F, F) and np.allclose(ours.matrix, ours.matrix.T)
        assert np.all(np.diag(ours.matrix) == 0)


def test_split_interactions_match_single_samples_and_are_efficient(trained_run, synth_dataset):
    model = trained_run.model.eval()
    train_x, _ = synth_dataset.split("train")
    test_x, _ = synth_dataset.split("test")
    baseline = I.baseline_embedding(model, "unknown")
    seen = []
    split = I.split_interactions(model, test_x.index(slice(0, 50)), baseline, baseline_name="unknown",
                                 samples_per_batch=7, progress=lambda done, total: seen.append((done, total)))
    assert split.main.shape == (50, 7) and split.pairs.shape == (50, 21)
    assert split.efficiency_gap < 1e-4
    assert seen[-1] == (50, 50) and len(seen) == 8  # 50 samples in batches of 7
    for row in (0, 13, 49):
        one = I.sample_interactions(model, test_x.index(slice(row, row + 1)), baseline)
        np.testing.assert_allclose(split.pairs[row], one.pairs, atol=1e-5)
        np.testing.assert_allclose(split.main[row], one.main, atol=1e-5)
    mean_abs = split.matrix()
    np.testing.assert_allclose(I.matrix_to_pairs(mean_abs), np.abs(split.pairs).mean(0), atol=1e-12)
    keep = np.zeros(50, dtype=bool)
    keep[:10] = True
    np.testing.assert_allclose(I.matrix_to_pairs(split.matrix(keep)), np.abs(split.pairs[:10]).mean(0), atol=1e-12)


def test_efficiency_on_random_inputs(trained_run):
    model = trained_run.model.eval()
    generator = torch.Generator().manual_seed(0)
    embedded = torch.randn(20, len(model.schema.fields), model.config.embed_dim, generator=generator) * 3
    baseline = torch.randn(1, *embedded.shape[1:], generator=generator)
    F = embedded.shape[1]
    values = I.game_values(model, embedded, baseline, I.coalitions(F)).numpy()  # (20, 128)
    phi = values @ I.ksii_map(F).T  # (20, 28)
    np.testing.assert_allclose(phi.sum(1), values[:, -1] - values[:, 0], atol=1e-4)


@pytest.fixture(scope="module")
def planted_model(tmp_path_factory):
    """AutoInt trained on synthetic data whose labels follow three planted field pairs (about 10 s).
    The conftest's smaller `trained_run` learns Age x Genre too weakly to rank it above the rest."""
    from autoint.datasets.movielens import load_movielens
    from autoint.model.autoint import AutoIntConfig
    from autoint.datasets.synth import generate_movielens
    from autoint.training.train import TrainConfig, train
    folder = generate_movielens(tmp_path_factory.mktemp("planted") / "ml", users=1500, movies=300, ratings=60000, seed=3)
    dataset = load_movielens(folder)
    result = train(dataset, AutoIntConfig(embed_dim=16, attn_dim=8, heads=2, layers=2),
                   TrainConfig(epochs=10, patience=3, batch_size=512, lr=0.005, seed=1), progress=False)
    return folder, dataset, result.model.eval()


def test_planted_pairs_rank_first(planted_model):
    """The synthetic labels depend only on three planted field pairs: the model's measured
    interactions must rank exactly those three first."""
    from autoint.datasets.synth import planted_pairs
    folder, dataset, model = planted_model
    planted = {frozenset(p) for p in planted_pairs(folder)}
    train_x, _ = dataset.split("train")
    test_x, _ = dataset.split("test")
    split = I.split_interactions(model, test_x, mean_embedding(model, train_x))
    ranked = split.ranked_pairs()
    assert {frozenset(p["fields"]) for p in ranked[:3]} == planted, ranked[:5]
    assert ranked[2]["strength"] > 1.5 * ranked[3]["strength"]  # clearly apart from the rest


def test_sampling_estimator_above_twelve_fields():
    """13 fields: KernelSHAP-IQ from a budget, compared with shapiq's exact k-SII of the same game."""
    from autoint.model.autoint import AutoInt, AutoIntConfig
    from autoint.data.schema import Field, Schema, UNKNOWN
    fields = tuple(Field(f"C{i}", "categorical", vocab=(UNKNOWN, "a", "b")) for i in range(13))
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1), Schema(fields)).eval()
    x = encode_sample(model.schema, {f"C{i}": "ab"[i % 2] for i in range(13)})
    baseline = I.baseline_embedding(model, "unknown")
    estimate = I.sample_interactions(model, x, baseline, budget=6000, seed=1)
    assert estimate.method == "KernelSHAPIQ" and estimate.budget == 6000 and estimate.error.shape == (13 + 78,)
    exact = shapiq_ksii(model_game(model, x, baseline), 13)
    error = np.abs(np.concatenate([estimate.main, estimate.pairs]) - exact)
    scale = np.abs(exact).max()
    assert error.max() < 0.25 * scale, (error.max(), scale)
    assert estimate.efficiency_gap < 1e-3 * max(1.0, abs(estimate.full - estimate.empty))
    again = I.sample_interactions(model, x, baseline, budget=6000, seed=1)
    np.testing.assert_allclose(again.pairs, estimate.pairs)  # seeded: the same answer
    with pytest.raises(I.InteractionError, match="budget"):
        I.sample_interactions(model, x, baseline, budget=10)


def test_spearman_and_agreement_on_a_hand_made_case():
    assert I.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert I.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks [1.5, 1.5, 3, 4] against [1, 2, 3, 4] -> rho = 0.9486832980505138 (by hand)
    assert I.spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert np.isnan(I.spearman([1, 1, 1], [1, 2, 3]))
    # 3 fields, pairs (0,1), (0,2), (1,2). Interaction strengths 3 > 2 > 1.
    interaction = I.pairs_to_matrix(np.array([3.0, 2.0, 1.0]), 3)
    # Head A agrees after symmetrising (0->1 is weak but 1->0 strong); head B ranks the reverse.
    head_a = np.array([[0.6, 0.1, 0.3], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]])  # pairs: .45, .25, .15
    head_b = np.array([[0.8, 0.1, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]])  # pairs: .10, .30, .35
    attention = np.stack([np.stack([head_a, head_b])])  # (L=1, H=2, 3, 3)
    result = I.agreement(attention, -interaction)  # the sign of an interaction does not count
    assert result.per_head == [[pytest.approx(1.0), pytest.approx(-1.0)]]
    # mean of the heads: pairs (.275, .275, .25): ranks (2.5, 2.5, 1) against (3, 2, 1) -> 0.8660254
    assert result.overall == pytest.approx(0.8660254037844386)
    assert result.per_layer == [pytest.approx(0.8660254037844386)]
    assert result.pairs == 3
    assert "much like" in result.verdict and "+0.87" in result.verdict
    assert set(result.views()) == {"overall", "layer 1", "layer 1 · head 1", "layer 1 · head 2"}
    assert "unlike" in I.verdict(-0.3, 21) and "unrelated" in I.verdict(0.1, 21)
    with pytest.raises(I.InteractionError, match="same fields"):
        I.agreement(attention, np.zeros((4, 4)))


def test_head_entropy_and_near_uniform():
    F = 7
    uniform = np.full((1, 2, F, F), 1 / F)
    one_hot = np.tile(np.eye(F), (1, 2, 1, 1))
    assert np.allclose(I.head_entropy(uniform), 1.0) and np.allclose(I.head_entropy(one_hot), 0.0)
    assert I.near_uniform(uniform).all() and not I.near_uniform(one_hot).any()
    nudged = uniform.copy()
    nudged[0, 1, 0, :2] += [0.03, -0.03]
    assert I.near_uniform(nudged).tolist() == [[True, False]]


def test_pair_ranks():
    fields = ["A", "B", "C"]
    ranks = I.pair_ranks(np.array([0.1, 0.5, 0.3]), fields, [("C", "A"), ("B", "C"), ("A", "Z")])
    assert [r["rank"] for r in ranks] == [1, 2, None] and ranks[0]["of"] == 3


def test_split_cache_round_trip_and_damage(tmp_path):
    split = I.SplitInteractions(["A", "B", "C"], np.arange(6.0).reshape(2, 3), np.ones((2, 3)), 1e-7, "mean")
    calls = []

    def compute():
        calls.append(1)
        return split
    first = I.cached_split_interactions(tmp_path, "k", compute)
    second = I.cached_split_interactions(tmp_path, "k", compute)
    assert len(calls) == 1 and second.fields == ["A", "B", "C"]
    np.testing.assert_allclose(second.main, split.main)
    assert not list(tmp_path.glob(".staging-*"))
    (tmp_path / "k.npz").write_bytes(b"not an npz")
    I.cached_split_interactions(tmp_path, "k", compute)
    assert len(calls) == 2 and first is split


# ----------------------------------------------------------------------------- the CLI and explain JSON

def last_json(capsys) -> dict:
    import json
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cli_interactions_of_a_split_and_a_slice(trained_run, synth_dir, synth_dataset, capsys, tmp_path,
                                                 monkeypatch):
    from autoint.cli import main
    from autoint.explain.explanation import slice_mask
    monkeypatch.setenv("AUTOINT_CACHE_DIR", str(tmp_path))
    args = ["interactions", str(trained_run.path), "--data-dir", str(synth_dir), "--json"]
    assert main(args) == 0
    report = last_json(capsys)
    F = len(report["fields"])
    matrix = np.array(report["matrix"])
    assert report["mode"] == "split" and report["count"] == len(synth_dataset.split("test")[1])
    assert matrix.shape == (F, F) and np.allclose(matrix, matrix.T) and (matrix >= 0).all()
    strengths = [p["strength"] for p in report["pairs"]]
    assert len(strengths) == 21 and strengths == sorted(strengths, reverse=True)
    assert set(report["agreement"]) >= {"overall", "per_layer", "per_head", "verdict"}
    assert len(report["agreement"]["per_head"]) == trained_run.model.config.layers
    assert report["efficiency_gap"] < 1e-4 and len(report["main"]) == F
    # The same numbers as the library, computed afresh (the CLI's came from its cache or its own pass).
    model = trained_run.model
    train_x, _ = synth_dataset.split("train")
    x, y = synth_dataset.split("test")
    fresh = I.split_interactions(model, x, mean_embedding(model, train_x))
    np.testing.assert_allclose(matrix, fresh.matrix(), atol=1e-5)
    assert len(list(tmp_path.glob("interactions/*.npz"))) == 1  # cached for the next request
    # A slice: women who clicked.
    assert main(args + ["--where", "Gender=F", "--label", "1"]) == 0
    sliced = last_json(capsys)
    keep = slice_mask(model, x, y, where={"Gender": "F"}, label=1)
    assert sliced["count"] == int(keep.sum()) > 0 and sliced["where"] == "Gender=F and label=1"
    np.testing.assert_allclose(np.array(sliced["matrix"]), fresh.matrix(keep), atol=1e-5)


def test_cli_interactions_of_one_sample(trained_run, synth_dir, capsys):
    from autoint.cli import main
    base = ["interactions", str(trained_run.path), "--data-dir", str(synth_dir), "--json"]
    assert main(base + ["--user", "1", "--movie", "5", "--baseline", "unknown"]) == 0
    report = last_json(capsys)
    matrix = np.array(report["matrix"])
    assert report["mode"] == "sample" and report["baseline"] == "unknown"
    assert np.allclose(matrix, matrix.T) and report["efficiency_gap"] < 1e-4
    assert abs(sum(report["main"]) + matrix[np.triu_indices(len(matrix), 1)].sum()
               - (report["logit"] - report["baseline_logit"])) < 1e-4
    assert report["labels"][0].startswith("Gender=")
    assert main(base + ["--user", "1"]) == 2
    assert "--user and --movie go together" in capsys.readouterr().err
    assert main(base + ["--user", "1", "--movie", "5", "--where", "Gender=F"]) == 2
    assert "slice a split" in capsys.readouterr().err


def test_explain_json_carries_interactions_and_agreement(trained_run, synth_dir, capsys):
    from autoint.cli import main
    assert main(["explain", str(trained_run.path), "--data-dir", str(synth_dir), "--user", "1", "--movie", "5",
                 "--no-attributions", "--json"]) == 0
    report = last_json(capsys)
    L, H = trained_run.model.config.layers, trained_run.model.config.heads
    assert np.array(report["head_entropy"]).shape == (L, H)
    assert np.array(report["near_uniform_heads"]).shape == (L, H)
    assert report["interactions"]["efficiency_gap"] < 1e-4
    assert np.array(report["agreement"]["per_head"]).shape == (L, H)
    assert report["agreement"]["verdict"].endswith("over 21 pairs)")


def test_shapley_sampling_leaves_the_process_generators_alone(trained_run, synth_dataset):
    """A shared server: one request's Shapley Value Sampling must not reseed torch's or Python's generators."""
    import random
    from autoint.explain.explanation import attribute
    model = trained_run.model
    x = synth_dataset.split("test")[0].index(slice(0, 1))
    torch.manual_seed(1234)
    random.seed(99)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    first, _ = attribute(model, x, methods=["shapley"], shapley_samples=8, seed=5)
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state
    second, _ = attribute(model, x, methods=["shapley"], shapley_samples=8, seed=5)
    np.testing.assert_allclose(first["shapley"], second["shapley"])  # the seed alone decides


def test_distinct_inputs_give_the_same_game_values(trained_run, synth_dataset):
    """Running each distinct coalition input once must not change a single value."""
    model = trained_run.model.eval()
    x = synth_dataset.split("test")[0].index(slice(0, 300))
    embedded = model.embed(x)
    baseline = I.baseline_embedding(model, "unknown")
    masks = I.coalitions(len(model.schema.fields))
    codes = I.field_codes(model.schema, x)
    assert codes.shape == (300, 7) and int(codes[:, 0].max()) == 1  # Gender: two values in the batch
    # Same codes <=> same encoded field input.
    for f, column in ((0, x.categorical[:, 0]), (6, x.numeric[:, 0])):
        same = codes[:, f].unsqueeze(0) == codes[:, f].unsqueeze(1)
        assert torch.equal(same, column.unsqueeze(0) == column.unsqueeze(1))
    fast = I.distinct_game_values(model, embedded, baseline, masks, codes, rows=97)
    plain = I.game_values(model, embedded, baseline, masks)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


def test_the_estimated_sample_size_can_be_set_for_a_slow_machine(monkeypatch):
    """AUTOINT_SAMPLED_ROWS sets how many samples a split's estimated interactions (above 12 fields) take by
    default; a value that is not a positive whole number is refused in words."""
    from autoint.errors import ConfigError
    from autoint.explain.interactions import _sampled_rows
    monkeypatch.delenv("AUTOINT_SAMPLED_ROWS", raising=False)
    assert _sampled_rows() == 64
    monkeypatch.setenv("AUTOINT_SAMPLED_ROWS", "8")
    assert _sampled_rows() == 8
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("AUTOINT_SAMPLED_ROWS", bad)
        with pytest.raises(ConfigError, match=f"AUTOINT_SAMPLED_ROWS='{bad}': give a whole number"):
            _sampled_rows()
