"""Recommendations by field roles: which fields come from the user, the item and the request."""
import pytest
import torch

from autoint.datasets.movielens import Catalog, read_movielens
from autoint.data.encoding import encode_sample
from autoint.model.autoint import AutoInt, AutoIntConfig
from autoint.explain.recommend import ItemScorer, RecommendError, can_recommend, recommend, request_values
from autoint.data.schema import UNKNOWN, Field, Schema


def small_schema(**roles) -> Schema:
    return Schema((
        Field("who", "categorical", (UNKNOWN, "a", "b"), role=roles.get("who", "user")),
        Field("what", "multivalued", (UNKNOWN, "x", "y"), max_len=2, role=roles.get("what", "item")),
        Field("when", "numeric", min_value=0.0, max_value=100.0, role=roles.get("when", "context"),
              format="timestamp"),
        Field("price", "numeric", min_value=1.0, max_value=9.0, role=roles.get("price")),
    ))


def test_can_recommend_needs_user_and_item_roles(synth_dataset):
    assert can_recommend(synth_dataset.schema)
    assert can_recommend(small_schema())
    assert not can_recommend(small_schema(who=None))
    assert not can_recommend(small_schema(what="context"))


def test_request_values_take_each_field_from_its_role():
    schema = small_schema()
    values = request_values(schema, {"who": "b", "what": ["y"]}, {"who": "a", "what": ["x"]}, 42.0)
    # the user's field from the user, the item's from the item, the timestamp from the request,
    # a field without a role at its <unknown> (numeric: mid-range) value
    assert values == {"who": "b", "what": ["x"], "when": 42.0, "price": 5.0}
    assert request_values(schema, {}, {}, None)["when"] == 50.0


def test_a_model_without_user_and_item_fields_refuses_recommendations():
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1), small_schema(who=None))
    with pytest.raises(RecommendError, match="user-role and item-role fields"):
        ItemScorer(model, object())


def test_scores_match_each_request_encoded_on_its_own(synth_dir, synth_dataset):
    """Every item's CTR is the model's CTR for (user fields, item fields, request time), whatever the
    fan-out of shared item inputs; the top pick is the highest of them."""
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(embed_dim=4, attn_dim=4, heads=2, layers=1), synth_dataset.schema)
    model.eval()
    catalog = Catalog(read_movielens(synth_dir))
    when = catalog.first_time + 3600
    ctr, _ = ItemScorer(model, catalog).score(5, when)
    for row, movie in enumerate(catalog.item_ids()[:20]):
        x = encode_sample(model.schema, catalog.sample(5, movie, when))
        assert float(ctr[row]) == pytest.approx(float(torch.sigmoid(model(x).detach())[0]), abs=1e-6)
    top = recommend(model, catalog, 5, when, top=3)
    assert [p["movie_id"] for p in top] == [catalog.item_ids()[i] for i in torch.argsort(ctr, descending=True)[:3]]
    assert set(top[0]) == {"movie_id", "title", "genres", "ctr", "why", "combination"}
