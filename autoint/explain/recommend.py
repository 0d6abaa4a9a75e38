"""Recommendations: every item of a catalogue scored for one user at one time, each pick with the reason.

It applies to a schema whose fields include user-role and item-role ones (`can_recommend`): a request takes
its user-role fields from the user, its item-role fields from each candidate item, and its context fields
from the request itself (a timestamp-format field gets the request time). A field without a role, or a
context field that the request does not set, takes its `<unknown>` slot (a numeric one its mid-range value).

The catalogue is the data set's own (MovieLens-1M: `autoint.datasets.movielens.Catalog`); it needs only
the methods of `ItemCatalog`.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..data.encoding import FieldTensors, check_values, encode_sample, encode_values, field_labels, unknown_values
from ..errors import AutoIntError
from .explanation import top_combinations
from .interactions import EXACT_MAX_FIELDS, pair_index, split_interactions
from ..model.autoint import AutoInt
from ..data.schema import Schema


class RecommendError(AutoIntError, ValueError):
    """Recommendations asked of a model whose fields do not say which are the user's and which the item's."""


class ItemCatalog(Protocol):
    """What recommendations need of a data set's users and items."""

    last_time: float  # the default request time

    def item_ids(self) -> list: ...

    def user_values(self, user) -> dict: ...  # raw values of the user's fields, by field name

    def item_values(self, item) -> dict: ...  # raw values of the item's fields, by field name

    def item_summary(self, item) -> dict: ...  # what a person reads about the item (its id, title, ...)

    def rating(self, user, item): ...  # truthy when the user already rated (clicked, saw) the item

    def check_time(self, timestamp: float) -> float: ...  # refuses a time outside the data's range


def can_recommend(schema: Schema) -> bool:
    """True when the schema has user-role and item-role fields: the Recommend page and command apply."""
    return bool(schema.of_role("user")) and bool(schema.of_role("item"))


def _check_schema(schema: Schema) -> None:
    if not can_recommend(schema):
        roles = ", ".join(f"{f.name} ({f.role or 'no role'})" for f in schema.fields)
        raise RecommendError(f"recommendations need user-role and item-role fields; this model's fields are "
                             f"{roles}. Give the fields roles in the data set's spec.")


def request_values(schema: Schema, user_values: dict, item_values: dict, timestamp: float | None) -> dict:
    """One request's raw values: user-role fields from the user, item-role fields from the item, timestamp
    context fields from the request time; any other field its `<unknown>` value."""
    values = unknown_values(schema)
    for f in schema.fields:
        if f.role == "user" and f.name in user_values:
            values[f.name] = user_values[f.name]
        elif f.role == "item" and f.name in item_values:
            values[f.name] = item_values[f.name]
        elif f.role == "context" and f.format == "timestamp" and timestamp is not None:
            values[f.name] = float(timestamp)
    return values


class ItemScorer:
    """Scores every item for a user in one batch. The item side is encoded once per model.

    For one user and time an item enters the model only through its item-role fields (MovieLens: Genre,
    ReleaseTime, MovieID with --with-ids), and many items share them (3,883 ML-1M movies have 1,322 distinct
    genre-set and release-bucket pairs), so each distinct input is run once and fanned out.
    """

    def __init__(self, model: AutoInt, catalog: ItemCatalog):
        schema = model.schema
        _check_schema(schema)
        self.model, self.catalog = model, catalog
        self.item_ids = np.array(catalog.item_ids())
        columns = {f.name: [] for f in schema.fields}
        for item in self.item_ids.tolist():
            values = request_values(schema, {}, catalog.item_values(item), None)
            for f in schema.fields:
                columns[f.name].append(values[f.name])
        every_item = encode_values(schema, columns)  # the user's fields and the context are filled per call
        rows = torch.cat([every_item.categorical, every_item.multivalued.flatten(1),
                          every_item.numeric.view(torch.int32).long()], dim=1)  # exact, bit for bit
        _, self._inverse = torch.unique(rows, dim=0, return_inverse=True)  # item -> its distinct input
        first = torch.full((int(self._inverse.max()) + 1,), len(rows), dtype=torch.long)
        first = first.scatter_reduce(0, self._inverse, torch.arange(len(rows)), reduce="amin")
        self.item_inputs = every_item.index(first).to(next(model.parameters()).device)  # (distinct, ...)
        # Per kind, the columns a request sets: the user's fields and the context.
        per_request = lambda kind: [j for j, f in enumerate(schema.of_kind(kind)) if f.role in ("user", "context")]
        self._request_columns = {kind: per_request(kind) for kind in ("categorical", "multivalued", "numeric")}

    def request_time(self, timestamp: float | None) -> float:
        return self.catalog.last_time if timestamp is None else self.catalog.check_time(timestamp)

    @torch.no_grad()
    def score(self, user, timestamp: float | None = None, with_attention: bool = True):
        """(CTR of every item (N,), attention (N, L, H, F, F) or None), in `item_ids`' order."""
        schema = self.model.schema
        one = encode_sample(schema, request_values(schema, self.catalog.user_values(user), {},
                                                   self.request_time(timestamp)))
        x = self.item_inputs
        parts = []
        for kind, column in zip(("categorical", "multivalued", "numeric"), range(3)):
            tensor, columns = x[column], self._request_columns[kind]
            if columns:
                tensor = tensor.clone()
                tensor[:, columns] = one[column][0, columns].to(tensor.device)
            parts.append(tensor)
        batch = FieldTensors(*parts)
        self.model.eval()
        if with_attention:
            logit, attention = self.model(batch, return_attention=True)
            return torch.sigmoid(logit).cpu()[self._inverse], attention.cpu()[self._inverse]
        return torch.sigmoid(self.model(batch)).cpu()[self._inverse], None


def recommend(model: AutoInt, catalog: ItemCatalog, user, timestamp: float | None = None, top: int = 10,
              exclude_rated: bool = False, scorer: ItemScorer | None = None,
              interaction_baseline: torch.Tensor | None = None) -> list[dict]:
    """The top-N items for a user at a time, each with its CTR and strongest attention combination; with
    `interaction_baseline` (1, F, d) also each pick's strongest measured interaction (k-SII), all picks in one
    batch. Each pick is the catalogue's `item_summary` (MovieLens: movie_id, title, genres) plus ctr, why and
    combination."""
    scorer = scorer or ItemScorer(model, catalog)
    schema = model.schema
    ctr, attention = scorer.score(user, timestamp)
    when = scorer.request_time(timestamp)
    order = torch.argsort(ctr, descending=True).tolist()
    out, picked = [], []  # picked: each pick's raw values and labels, for the interactions below
    user_values = catalog.user_values(user)
    for row in order:
        item = scorer.item_ids[row].item()
        if exclude_rated and catalog.rating(user, item):
            continue
        values = request_values(schema, user_values, catalog.item_values(item), when)
        labels = field_labels(schema, values)
        combos = top_combinations(attention[row].numpy(), labels, 1)
        out.append({**catalog.item_summary(item), "ctr": float(ctr[row]),
                    "why": combos[0].text if combos else "no interacting layers",
                    "combination": combos[0].fields if combos else []})
        picked.append((values, labels))
        if len(out) == top:
            break
    if interaction_baseline is not None and out and len(schema.fields) <= EXACT_MAX_FIELDS:
        checked = [check_values(schema, values) for values, _ in picked]
        columns = {f.name: [values[f.name] for values in checked] for f in schema.fields}
        measured = split_interactions(model, encode_values(schema, columns), interaction_baseline)
        for pick, (_, labels), pairs in zip(out, picked, measured.pairs):
            strongest = int(np.argmax(np.abs(pairs)))
            i, j = pair_index(len(schema.fields))[strongest]
            pick["interaction"] = {"fields": [labels[i], labels[j]], "value": float(pairs[strongest])}
    return out
