"""Any CTR data set: field roles, formats and transforms; dataset specs; the Criteo, Avazu and KDD12 loaders."""
import json
import math

import numpy as np
import pytest

from autoint.schema import UNKNOWN, Field, Schema, SchemaError, log2_transform


# ----------------------------------------------------------------------------- schema: role, format, transform

def test_log2_transform_is_the_authors_floor_of_squared_natural_log():
    values = [-3, 0, 1, 2, 3, 10, 100, 1000]
    # v > 2: floor(ln(v)^2); ln 3 = 1.0986 -> 1.2069 -> 1; ln 10 = 2.3026 -> 5.3019 -> 5; ln 100 -> 21.21;
    # ln 1000 -> 47.72
    assert log2_transform(np.array(values)).tolist() == [-3, 0, 1, 2, 1, 5, 21, 47]
    assert log2_transform(3) == 1.0 and isinstance(log2_transform(3), float)
    for v in range(3, 5000):
        assert log2_transform(v) == math.floor(math.log(v) ** 2)


def test_numeric_transforms_then_minmax():
    f = Field("I1", "numeric", min_value=0.0, max_value=47.0, transform="log2")
    assert f.scale(1000) == 1.0 and f.scale(10) == 5 / 47 and f.scale(2) == 2 / 47
    assert f.transformed(np.array([1.0, 100.0])).tolist() == [1.0, 21.0]
    assert log2_transform(f.unscale(21 / 47)) == 21  # unscale gives a raw value of that transformed value
    b = Field("Price", "numeric", min_value=0.0, max_value=3.0, transform="bucket", edges=(0.0, 10.0, 100.0))
    assert b.transformed(np.array([-5.0, 0.0, 5.0, 10.0, 99.9, 1000.0])).tolist() == [0, 1, 1, 2, 2, 3]
    assert b.scale(50.0) == 2 / 3 and b.unscale(2 / 3) == 10.0 and b.unscale(0.0) == -1.0
    m = Field("X", "numeric", min_value=2.0, max_value=6.0)
    assert m.transform == "minmax" and m.scale(3.0) == 0.25 and m.unscale(0.25) == 3.0


def test_field_refuses_bad_role_format_transform():
    with pytest.raises(SchemaError, match="role 'buyer'"):
        Field("A", "categorical", (UNKNOWN, "a"), role="buyer")
    with pytest.raises(SchemaError, match="format 'timestamp'.*numeric"):
        Field("A", "categorical", (UNKNOWN, "a"), format="timestamp")
    with pytest.raises(SchemaError, match="transform 'log2'.*numeric"):
        Field("A", "categorical", (UNKNOWN, "a"), transform="log2")
    with pytest.raises(SchemaError, match="transform 'sqrt'"):
        Field("A", "numeric", transform="sqrt")
    with pytest.raises(SchemaError, match="increasing edges"):
        Field("A", "numeric", transform="bucket", edges=(5.0, 1.0))
    with pytest.raises(SchemaError, match="increasing edges"):
        Field("A", "numeric", transform="bucket")


def test_timestamp_format_shows_a_utc_time_and_any_other_numeric_a_number():
    t = Field("When", "numeric", min_value=0.0, max_value=2e9, format="timestamp", role="context")
    assert t.show(978300760) == "When=2000-12-31 22:12"
    assert Field("RequestTime", "numeric", min_value=0.0, max_value=2e9).show(978300760) == "RequestTime=9.78301e+08"  # no name check: a number
    from autoint.explain import _shown
    assert _shown(t, 978300760.0) == "2000-12-31 22:12 UTC (978300760)"
    assert _shown(Field("I1", "numeric", max_value=50.0, transform="log2"), 12.0) == "12"


def test_schema_json_round_trip_keeps_role_format_transform_edges():
    schema = Schema((
        Field("C1", "categorical", (UNKNOWN, "a", "b"), role="item"),
        Field("I1", "numeric", min_value=-3.0, max_value=47.0, transform="log2"),
        Field("P", "numeric", min_value=0.0, max_value=2.0, transform="bucket", edges=(1.0, 2.5)),
        Field("T", "numeric", min_value=0.0, max_value=10.0, format="timestamp", role="context"),
    ))
    back = Schema.from_json(json.loads(json.dumps(schema.to_json())))
    assert back == schema
    assert [f.role for f in back.fields] == ["item", None, None, "context"]
    assert back["I1"].transform == "log2" and back["P"].edges == (1.0, 2.5) and back["T"].format == "timestamp"
    assert back.of_role("context") == [back["T"]]


def test_old_run_json_schema_loads_as_movielens_roles_and_timestamp():
    """run.json files written before roles and formats existed hold MovieLens fields only."""
    old = [{"name": "Gender", "kind": "categorical", "vocab": [UNKNOWN, "M", "F"], "display": {}, "max_len": 1},
           {"name": "Genre", "kind": "multivalued", "vocab": [UNKNOWN, "Action"], "display": {}, "max_len": 6},
           {"name": "RequestTime", "kind": "numeric", "min_value": 956703932.0, "max_value": 1046454590.0}]
    schema = Schema.from_json(old)
    assert [f.role for f in schema.fields] == ["user", "item", "context"]
    assert schema["RequestTime"].format == "timestamp" and schema["RequestTime"].transform == "minmax"
    assert schema["RequestTime"].show(978300760) == "RequestTime=2000-12-31 22:12"
    # A new run's fields say their role, even when it is none: no MovieLens guess then.
    new = [{**old[2], "role": None, "format": None}]
    assert Schema.from_json(new)["RequestTime"].format is None


def test_movielens_fields_have_roles(synth_dataset):
    roles = {f.name: f.role for f in synth_dataset.schema.fields}
    assert roles == {"Gender": "user", "Age": "user", "Occupation": "user", "Zipcode": "user", "Genre": "item",
                     "ReleaseTime": "item", "RequestTime": "context"}
    assert synth_dataset.schema["RequestTime"].format == "timestamp"


def test_check_values_refuses_a_log2_value_outside_the_transformed_range():
    from autoint.explain import check_values
    schema = Schema((Field("I1", "numeric", min_value=0.0, max_value=21.0, transform="log2"),))
    assert check_values(schema, {"I1": 100}) == {"I1": 100.0}  # 100 -> 21
    with pytest.raises(SchemaError, match=r"I1=1000 becomes 47 by the log2 transform.*0 to 21"):
        check_values(schema, {"I1": 1000})
