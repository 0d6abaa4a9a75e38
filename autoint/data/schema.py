"""The field schema: which fields a sample has, their kind, vocabulary and display names.

The schema is data. The model sizes its embeddings from it, the explanations label
their axes with it, and the app builds its widgets from it. It travels inside every
checkpoint so a run can be explained without the data it was trained on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, Sequence

import numpy as np
from ..errors import AutoIntError

FieldKind = Literal["categorical", "multivalued", "numeric"]
FieldRole = Literal["user", "item", "context"]
ROLES = ("user", "item", "context")
FORMATS = ("timestamp",)  # how a numeric value is shown: "timestamp" = Unix seconds shown as a UTC time
TRANSFORMS = ("minmax", "log2", "bucket")  # applied to a numeric value before Eq. 4's min-max scaling
UNKNOWN = "<unknown>"  # index 0 of every vocabulary: values unseen in training land here


class SchemaError(AutoIntError, ValueError):
    """A value or a schema that does not fit; the message names the field and the fix."""


def log2_transform(value):
    """The authors' Criteo/KDD12 transform of an integer feature: v > 2 becomes floor(ln(v)^2), others stay.

    Takes a number or a numpy array (element-wise). Despite the name (the authors' `scale`), the log is natural.
    """
    v = np.asarray(value, dtype=np.float64)
    out = np.where(v > 2, np.floor(np.log(np.where(v > 2, v, 3.0)) ** 2), v)
    return float(out) if out.ndim == 0 else out


# Runs saved before fields had roles and formats were all MovieLens runs: these are their fields' roles.
LEGACY_ROLES = {"Gender": "user", "Age": "user", "Occupation": "user", "Zipcode": "user", "UserID": "user",
                "Genre": "item", "ReleaseTime": "item", "MovieID": "item", "RequestTime": "context"}


@dataclass(frozen=True)
class Field:
    """One input field. `vocab[0]` is always `<unknown>` for categorical and multi-valued fields.

    `display` maps a raw value (as stored in the data) to the words a person reads; raw
    values without an entry are shown as they are. Numeric fields carry the min and max used
    for min-max scaling instead of a vocabulary; with a `transform` other than "minmax", those
    are the range of the *transformed* values ("log2": v > 2 becomes floor(ln(v)^2); "bucket":
    the number of `edges` at or below v), so Eq. 4's scalar is (t(v) - min) / (max - min).
    `role` says whose attribute the field is (user, item or context of the request), for pages
    such as recommendations; `format` says how to show a numeric value ("timestamp": a UTC time).
    """

    name: str
    kind: FieldKind
    vocab: tuple[str, ...] = ()
    display: dict[str, str] = field(default_factory=dict)
    min_value: float = 0.0
    max_value: float = 1.0
    max_len: int = 1  # slots per sample for a multi-valued field
    role: FieldRole | None = None
    format: str | None = None
    transform: str = "minmax"
    edges: tuple[float, ...] = ()  # the bucket transform's edges, increasing

    def __post_init__(self):
        if self.kind not in ("categorical", "multivalued", "numeric"):
            raise SchemaError(f"field {self.name!r}: kind {self.kind!r} is not categorical, multivalued or numeric")
        if self.role is not None and self.role not in ROLES:
            raise SchemaError(f"field {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)} (or none)")
        if self.format is not None and (self.format not in FORMATS or self.kind != "numeric"):
            raise SchemaError(f"field {self.name!r}: format {self.format!r} is not one of {', '.join(FORMATS)} "
                              f"for a numeric field (or none)")
        if self.transform not in TRANSFORMS or (self.transform != "minmax" and self.kind != "numeric"):
            raise SchemaError(f"field {self.name!r}: transform {self.transform!r} is not one of "
                              f"{', '.join(TRANSFORMS)} for a numeric field")
        if self.transform == "bucket" and (not self.edges or any(not math.isfinite(e) for e in self.edges)
                                           or any(b <= a for a, b in zip(self.edges, self.edges[1:]))):
            raise SchemaError(f"field {self.name!r}: the bucket transform needs finite, increasing edges, "
                              f"got {list(self.edges)}")
        if self.kind != "numeric" and (not self.vocab or self.vocab[0] != UNKNOWN):
            raise SchemaError(f"field {self.name!r}: its vocabulary must start with {UNKNOWN!r}")
        if self.kind == "numeric" and not (math.isfinite(self.min_value) and math.isfinite(self.max_value)
                                           and self.max_value > self.min_value):
            raise SchemaError(f"field {self.name!r}: numeric range [{self.min_value}, {self.max_value}] is empty")

    @property
    def size(self) -> int:
        """Rows this field needs in an embedding table (1 for a numeric field's single vector)."""
        return len(self.vocab) if self.kind != "numeric" else 1

    def index(self, value: str) -> int:
        """The vocabulary slot of a raw value; unseen values map to `<unknown>` (slot 0)."""
        return self._lookup.get(value, 0)

    @property
    def _lookup(self) -> dict[str, int]:
        cached = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {v: i for i, v in enumerate(self.vocab)}
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    def transformed(self, value):
        """The numeric transform of a raw value (a number or a numpy array); "minmax" leaves it as it is."""
        if self.transform == "log2":
            return log2_transform(value)
        if self.transform == "bucket":
            out = np.searchsorted(np.asarray(self.edges, dtype=np.float64), value, side="right").astype(np.float64)
            return float(out) if out.ndim == 0 else out
        return float(value) if np.ndim(value) == 0 else np.asarray(value, dtype=np.float64)

    def scale(self, value: float) -> float:
        """Transform, then min-max scale a numeric value to [0, 1] (Eq. 4 multiplies the field vector by it)."""
        return (self.transformed(value) - self.min_value) / (self.max_value - self.min_value)

    def unscale(self, scaled: float) -> float:
        """A raw value whose scaled value is (about) `scaled`: exact for min-max; for log2 and bucket the
        transform loses information, so this is one raw value of that transformed value (a bucket's lower edge)."""
        t = self.min_value + float(scaled) * (self.max_value - self.min_value)
        if self.transform == "log2":
            return t if t <= 2 else math.exp(math.sqrt(t))
        if self.transform == "bucket":
            k = min(max(int(round(t)), 0), len(self.edges))
            return self.edges[k - 1] if k else self.edges[0] - 1.0
        return t

    def show(self, raw: str | float | Sequence[str]) -> str:
        """`Gender=M`, `Age=18-24`, `Genre=Action|Thriller`, `RequestTime=2000-12-31 22:12`."""
        if self.kind == "numeric":
            if self.format == "timestamp":
                stamp = datetime.fromtimestamp(float(raw), tz=timezone.utc)
                return f"{self.name}={stamp:%Y-%m-%d %H:%M}"
            return f"{self.name}={float(raw):g}"
        if self.kind == "multivalued":
            values = [raw] if isinstance(raw, str) else list(raw)
            return f"{self.name}=" + "|".join(self.display.get(v, v) for v in values)
        return f"{self.name}={self.display.get(str(raw), str(raw))}"

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            out.update(min_value=self.min_value, max_value=self.max_value)
        else:
            out.update(vocab=list(self.vocab), display=dict(self.display), max_len=self.max_len)
        out.update(role=self.role, format=self.format)
        if self.kind == "numeric":
            out["transform"] = self.transform
            if self.transform == "bucket":
                out["edges"] = list(self.edges)
        return out

    @staticmethod
    def from_json(obj: dict) -> "Field":
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            raise SchemaError(f"field entry {obj!r:.80} has no name")
        vocab = obj.get("vocab", [])
        if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
            raise SchemaError(f"field {obj['name']!r}: vocab must be a list of strings")
        legacy = "role" not in obj and "format" not in obj  # saved before fields had roles: a MovieLens run
        role = LEGACY_ROLES.get(obj["name"]) if legacy else obj.get("role")
        fmt = obj.get("format")
        if legacy and obj["name"] == "RequestTime" and obj.get("kind") == "numeric":
            fmt = "timestamp"
        edges = obj.get("edges", [])
        if not isinstance(edges, list) or not all(isinstance(e, (int, float)) and not isinstance(e, bool)
                                                  for e in edges):
            raise SchemaError(f"field {obj['name']!r}: edges must be a list of numbers")
        return Field(
            name=obj["name"], kind=obj.get("kind"), vocab=tuple(vocab), display=dict(obj.get("display", {})),
            min_value=float(obj.get("min_value", 0.0)), max_value=float(obj.get("max_value", 1.0)),
            max_len=int(obj.get("max_len", 1)), role=role, format=fmt, transform=obj.get("transform", "minmax"),
            edges=tuple(float(e) for e in edges),
        )


@dataclass(frozen=True)
class Schema:
    fields: tuple[Field, ...]

    def __post_init__(self):
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise SchemaError(f"field names repeat: {names}")
        if not self.fields:
            raise SchemaError("a schema needs at least one field")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise SchemaError(f"unknown field {name!r}; the fields are {', '.join(self.names)}")

    def of_kind(self, kind: FieldKind) -> list[Field]:
        return [f for f in self.fields if f.kind == kind]

    def of_role(self, role: FieldRole) -> list[Field]:
        return [f for f in self.fields if f.role == role]

    def to_json(self) -> list[dict]:
        return [f.to_json() for f in self.fields]

    @staticmethod
    def from_json(obj) -> "Schema":
        if not isinstance(obj, list):
            raise SchemaError("the schema must be a list of fields")
        return Schema(tuple(Field.from_json(f) for f in obj))
