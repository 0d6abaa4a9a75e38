import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from autoint.datasets.movielens import Catalog, read_movielens
from autoint.data.encoding import encode_sample, parse_edit, unknown_values
from autoint.explain.explanation import (ATTRIBUTION_METHODS, attribute, dataset_correlations, explain_sample, top_combinations, what_if)
from autoint.explain.baselines import mean_embedding
from autoint.explain.recommend import recommend
from autoint.data.schema import SchemaError
from conftest import REPO


@pytest.fixture(scope="module")
def catalog(synth_dir):
    return Catalog(read_movielens(synth_dir))


@pytest.fixture(scope="module")
def baseline(trained_run, synth_dataset):
    x, _ = synth_dataset.split("train")
    return mean_embedding(trained_run.model, x)


def test_explanation_matches_model_forward(trained_run, catalog):
    values = catalog.sample(1, 2)
    e = explain_sample(trained_run.model, values)
    logit, attention = trained_run.model(encode_sample(trained_run.schema, values), return_attention=True)
    assert e.ctr == pytest.approx(torch.sigmoid(logit).item(), abs=1e-7)
    assert np.array_equal(e.attention, attention[0].detach().numpy())
    assert e.labels[0].startswith("Gender=") and e.labels[4].startswith("Genre=")


def test_combinations_are_ranked_and_in_words(trained_run, catalog):
    e = explain_sample(trained_run.model, catalog.sample(3, 4), top=4)
    pairs = [c for c in e.combinations if len(c.fields) == 2]
    chains = [c for c in e.combinations if len(c.fields) == 3]
    assert len(pairs) == 4 and len(chains) == 4
    assert [c.weight for c in pairs] == sorted((c.weight for c in pairs), reverse=True)
    top = pairs[0]
    layer = top.layers[0] - 1
    m, k = e.labels.index(top.fields[1]), e.labels.index(top.fields[0])
    assert top.weight == pytest.approx(float(e.attention[layer, :, m, k].mean()), abs=1e-6)
    assert top.fields[0] in top.text and top.fields[1] in top.text


def test_chain_weight_is_product_across_layers():
    att = np.zeros((2, 1, 3, 3))
    att[0, 0] = [[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1]]  # layer 1: field b=1 takes in a=0
    att[1, 0] = [[1, 0, 0], [0, 1, 0], [0, 0.8, 0.2]]  # layer 2: field c=2 takes in b=1
    chains = [c for c in top_combinations(att, ["a", "b", "c"], k=1) if len(c.fields) == 3]
    assert chains[0].fields == ["a", "b", "c"] and chains[0].weight == pytest.approx(0.72)


def _combinations_one_by_one(attention, labels, k):
    """top_combinations as first written: every candidate a (weight, fields, layers) in loop order, a stable sort."""
    L, H, F, _ = attention.shape
    mean = attention.mean(axis=1)
    found = [(float(mean[l, m, j]), [labels[j], labels[m]], [l + 1])
             for l in range(L) for m in range(F) for j in range(F) if m != j]
    for l in range(1, L):
        found += [(float(mean[l - 1, b, a] * mean[l, c, b]), [labels[a], labels[b], labels[c]], [l, l + 1])
                  for c in range(F) for b in range(F) for a in range(F) if len({a, b, c}) == 3]
    pairs = sorted((f for f in found if len(f[1]) == 2), key=lambda f: -f[0])[:k]
    chains = sorted((f for f in found if len(f[1]) == 3), key=lambda f: -f[0])[:k]
    return pairs + chains


@pytest.mark.parametrize("L, H, F, k", [(1, 2, 7, 5), (3, 2, 7, 5), (3, 1, 12, 40), (2, 2, 1, 5), (2, 2, 2, 5),
                                        (4, 2, 5, 1000), (2, 1, 6, 0), (2, 2, 6, 1)])
def test_top_combinations_match_the_loop_they_replace(L, H, F, k):
    """Vectorised (39 fields, 3 layers: 110k chains took ~1 s as objects): the same weights, fields, layers and
    order as one object per candidate, ties included (rounded attention makes many), k past the count too."""
    rng = np.random.default_rng(F * 10 + L)
    attention = rng.dirichlet(np.ones(F), size=(L, H, F)).astype(np.float32).round(1)  # (L, H, F, F), ties
    labels = [f"f{i}=v" for i in range(F)]
    got = top_combinations(attention, labels, k=k)
    want = _combinations_one_by_one(attention, labels, k)
    assert [(c.weight, c.fields, c.layers) for c in got] == want
    assert all(c.fields[0] in c.text and c.fields[-1] in c.text for c in got)


def test_ig_completeness(trained_run, catalog, baseline):
    x = encode_sample(trained_run.schema, catalog.sample(2, 3))
    scores, gap = attribute(trained_run.model, x, methods=["integrated_gradients"], baseline=baseline)
    with torch.no_grad():
        difference = (trained_run.model(x) - trained_run.model.forward_embedded(baseline)).item()
    assert abs(scores["integrated_gradients"].sum() - difference) < 1e-2
    assert gap < 1e-2


def test_feature_ablation_is_unknown_slot_drop(trained_run, catalog):
    values = catalog.sample(4, 5)
    schema = trained_run.schema
    scores, _ = attribute(trained_run.model, encode_sample(schema, values), methods=["feature_ablation"])
    unknown = unknown_values(schema, values)
    with torch.no_grad():
        full = trained_run.model(encode_sample(schema, values)).item()
        for i, name in enumerate(schema.names):
            ablated = trained_run.model(encode_sample(schema, {**values, name: unknown[name]})).item()
            assert scores["feature_ablation"][i] == pytest.approx(full - ablated, abs=1e-5)


def test_shapley_sums_to_total_effect(trained_run, catalog):
    values = catalog.sample(5, 6)
    schema = trained_run.schema
    scores, _ = attribute(trained_run.model, encode_sample(schema, values), methods=["shapley"], shapley_samples=16)
    with torch.no_grad():
        full = trained_run.model(encode_sample(schema, values)).item()
        empty = trained_run.model(encode_sample(schema, unknown_values(schema, values))).item()
    assert scores["shapley"].sum() == pytest.approx(full - empty, abs=1e-4)  # efficiency holds per permutation


def test_deleting_top_attributed_field_moves_ctr_more_than_random(trained_run, synth_dataset, baseline):
    """Over 40 test samples: |CTR change| when the top-|IG| field is set to <unknown>, against a random field."""
    model, schema = trained_run.model, trained_run.schema
    frame = synth_dataset.frame[synth_dataset.splits["test"][:40]]
    rng = np.random.default_rng(0)
    top_moves, random_moves = [], []
    for row in frame.iter_rows(named=True):
        values = {f.name: row[f.name] for f in schema.fields}
        x = encode_sample(schema, values)
        scores, _ = attribute(model, x, methods=["integrated_gradients"], baseline=baseline)
        unknown = unknown_values(schema, values)
        ctr = lambda v: torch.sigmoid(model(encode_sample(schema, v))).item()
        with torch.no_grad():
            base = ctr(values)
            top = schema.names[int(np.abs(scores["integrated_gradients"]).argmax())]
            other = schema.names[int(rng.integers(len(schema.names)))]
            top_moves.append(abs(ctr({**values, top: unknown[top]}) - base))
            random_moves.append(abs(ctr({**values, other: unknown[other]}) - base))
    assert np.mean(top_moves) > 1.5 * np.mean(random_moves), (np.mean(top_moves), np.mean(random_moves))


def test_explanations_are_deterministic(trained_run, catalog, baseline):
    values = catalog.sample(6, 7)
    a = explain_sample(trained_run.model, values, attributions=ATTRIBUTION_METHODS, baseline=baseline)
    b = explain_sample(trained_run.model, values, attributions=ATTRIBUTION_METHODS, baseline=baseline)
    assert a.ctr == b.ctr and np.array_equal(a.attention, b.attention)
    assert all(np.array_equal(a.attributions[m], b.attributions[m]) for m in ATTRIBUTION_METHODS)


def test_what_if_reports_new_ctr_and_deltas(trained_run, catalog, baseline):
    values = catalog.sample(1, 2)
    edits = {"Gender": "F" if values["Gender"] == "M" else "M", "Genre": ["Romance", "Comedy"],
             "RequestTime": catalog.first_time}
    result = what_if(trained_run.model, values, edits, attributions=ATTRIBUTION_METHODS, baseline=baseline)
    direct = explain_sample(trained_run.model, {**values, **edits})
    assert result.after.ctr == pytest.approx(direct.ctr) and result.before.ctr != result.after.ctr
    assert np.allclose(result.attention_change, direct.attention - result.before.attention)
    assert set(result.attribution_change) == set(ATTRIBUTION_METHODS)
    assert result.after.labels[4] == "Genre=Romance|Comedy"


def test_what_if_refuses_unknown_values(trained_run, catalog):
    with pytest.raises(SchemaError, match="'Cartoons' not in the vocabulary; choose from Action"):
        what_if(trained_run.model, catalog.sample(1, 2), {"Genre": ["Cartoons"]})
    with pytest.raises(SchemaError, match="unknown field 'Colour'"):
        what_if(trained_run.model, catalog.sample(1, 2), {"Colour": "red"})
    with pytest.raises(SchemaError, match="Age='17' is not a value the model knows"):
        parse_edit(trained_run.schema, "Age=17")


def test_what_if_takes_the_explain_function_it_is_given(trained_run, catalog):
    """The app passes its cached explanation: called for the sample and for the edited sample, in that order;
    unknown fields are refused before it runs."""
    model, values = trained_run.model, catalog.sample(1, 2)
    seen = []
    result = what_if(model, values, {"Genre": ["Comedy"]},
                     explain=lambda sample: seen.append(sample) or explain_sample(model, sample))
    assert seen == [values, {**values, "Genre": ["Comedy"]}]
    plain = what_if(model, values, {"Genre": ["Comedy"]})
    assert result.ctr_change == plain.ctr_change and np.array_equal(result.attention_change, plain.attention_change)
    with pytest.raises(SchemaError, match="unknown field 'Colour'"):
        what_if(model, values, {"Colour": "red"}, explain=lambda sample: pytest.fail("explained an unknown field"))


def test_correlations_equal_mean_of_masked_attention(trained_run, synth_dataset):
    model = trained_run.model
    x, y = synth_dataset.split("test")
    _, attention = model(x, return_attention=True)
    everything = dataset_correlations(model, x, y, batch_size=1000)  # several batches
    assert everything.count == len(x)
    assert np.allclose(everything.per_head, attention.mean(0).detach().numpy(), atol=1e-5)
    female = dataset_correlations(model, x, y, where={"Gender": "F"}, label=1, batch_size=777)
    mask = (x.categorical[:, 0] == trained_run.schema["Gender"].index("F")) & (y == 1)
    assert female.count == int(mask.sum())
    assert np.allclose(female.per_head, attention[mask].mean(0).detach().numpy(), atol=1e-5)
    drama = dataset_correlations(model, x, y, where={"Genre": "Drama"})
    assert drama.count == int((x.multivalued[:, 0] == trained_run.schema["Genre"].index("Drama")).any(-1).sum())
    band = dataset_correlations(model, x, y, ctr_band=(0.5, 1.01))
    assert band.count == int((model.predict_proba(x) >= 0.5).sum())
    assert np.allclose(everything.overall.sum(-1), 1.0, atol=1e-5)


def test_planted_pairs_lead_dataset_attention(tmp_path):
    """Labels that depend only on three planted field pairs: averaged first-layer attention ranks them first."""
    from autoint.datasets.movielens import load_movielens
    from autoint.model.autoint import AutoIntConfig
    from autoint.datasets.synth import generate_movielens, planted_pairs
    from autoint.training.train import TrainConfig, train
    folder = generate_movielens(tmp_path / "planted", users=400, movies=200, ratings=40000, seed=5)
    dataset = load_movielens(folder)
    result = train(dataset, AutoIntConfig(embed_dim=16, attn_dim=16, heads=2, layers=2),
                   TrainConfig(epochs=15, patience=3, batch_size=256, lr=0.005, seed=1), progress=False)
    x, y = dataset.split("test")
    first_layer = dataset_correlations(result.model, x, y).per_layer[0]
    names = dataset.schema.names
    symmetric = first_layer + first_layer.T
    ranked = sorted(((symmetric[i, j], {names[i], names[j]}) for i in range(len(names))
                     for j in range(i + 1, len(names))), key=lambda p: -p[0])
    planted = [set(p) for p in planted_pairs(folder)]
    assert all(pair in planted for _, pair in ranked[:len(planted)]), ranked[:5]


def test_recommend_ranks_all_movies_by_ctr(trained_run, catalog):
    items = recommend(trained_run.model, catalog, 7, top=5)
    assert len(items) == 5 and [i["ctr"] for i in items] == sorted((i["ctr"] for i in items), reverse=True)
    for item in items:
        direct = explain_sample(trained_run.model, catalog.sample(7, item["movie_id"], catalog.last_time))
        assert item["ctr"] == pytest.approx(direct.ctr, abs=1e-6)
    everything = recommend(trained_run.model, catalog, 7, top=10000)
    assert len(everything) == catalog.movies.height
    assert items[0]["ctr"] == everything[0]["ctr"]


def test_explain_cli_json(trained_run, synth_dir):
    cmd = [sys.executable, "-m", "autoint", "explain", str(trained_run.path), "--data-dir", str(synth_dir),
           "--user", "2", "--movie", "3", "--set", "Genre=Drama|Comedy", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    config = trained_run.model.config
    F = len(trained_run.schema.fields)
    assert np.array(report["attention"]).shape == (config.layers, config.heads, F, F)
    assert set(report["attributions"]) == set(ATTRIBUTION_METHODS)
    assert report["labels"][4] == "Genre=Drama|Comedy" and 0 < report["ctr"] < 1


def test_correlations_and_recommend_cli(trained_run, synth_dir):
    out = subprocess.run([sys.executable, "-m", "autoint", "correlations", str(trained_run.path), "--data-dir",
                          str(synth_dir), "--where", "Gender=F", "--json"], capture_output=True, text=True,
                         cwd=REPO, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["where"] == "Gender=F" and report["count"] > 0
    assert np.array(report["overall"]).shape == (7, 7)
    out = subprocess.run([sys.executable, "-m", "autoint", "recommend", str(trained_run.path), "--data-dir",
                          str(synth_dir), "--user", "3", "--top", "4", "--json"], capture_output=True, text=True,
                         cwd=REPO, check=True)
    recs = json.loads(out.stdout.strip().splitlines()[-1])["recommendations"]
    assert len(recs) == 4 and all("why" in r for r in recs)


def test_item_scorer_runs_each_distinct_input_once_and_fans_out(trained_run, catalog):
    """Movies with the same fields share one forward; every movie still gets exactly its own CTR."""
    from autoint.explain.recommend import ItemScorer
    scorer = ItemScorer(trained_run.model, catalog)
    assert len(scorer.item_inputs) <= catalog.movies.height
    ctr, attention = scorer.score(9, catalog.last_time)
    columns = {f.name: [] for f in trained_run.schema.fields}
    for movie_id in catalog.movies["movie_id"].to_list():
        for name, value in catalog.sample(9, movie_id, catalog.last_time).items():
            if name in columns:
                columns[name].append(value)
    from autoint.data.encoding import encode_values
    logit, full_attention = trained_run.model(encode_values(trained_run.schema, columns), return_attention=True)
    assert ctr.shape == (catalog.movies.height,)
    assert torch.allclose(ctr, torch.sigmoid(logit).detach(), atol=1e-6)
    assert torch.allclose(attention, full_attention.detach(), atol=1e-6)


def test_recommend_names_each_picks_strongest_measured_interaction(trained_run, catalog, synth_dataset):
    from autoint.explain.interactions import sample_interactions
    model = trained_run.model
    baseline = mean_embedding(model, synth_dataset.split("train")[0])
    items = recommend(model, catalog, 7, top=4, interaction_baseline=baseline)
    assert all("_values" not in item and "labels" not in item for item in items)
    for item in items:
        values = catalog.sample(7, item["movie_id"], catalog.last_time)
        one = sample_interactions(model, encode_sample(model.schema, values), baseline)
        strongest = max(one.ranked_pairs(explain_sample(model, values).labels), key=lambda p: p["strength"])
        assert item["interaction"]["fields"] == strongest["fields"]
        assert item["interaction"]["value"] == pytest.approx(strongest["value"], abs=1e-5)
