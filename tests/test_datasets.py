"""Any CTR data set: field roles, formats and transforms; dataset specs; the Criteo, Avazu and KDD12 loaders."""
import json
import math

import numpy as np
import pytest

from autoint.data.schema import UNKNOWN, Field, Schema, SchemaError, log2_transform


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
    from autoint.data.encoding import _shown
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


def test_a_run_saved_before_roles_existed_still_loads(tmp_path, synth_dataset):
    """run.json files from before this change have no role, format or transform keys."""
    from autoint.model.autoint import AutoInt, AutoIntConfig
    from autoint.training.runs import load_run, save_run
    model = AutoInt(AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1), synth_dataset.schema)
    path = save_run(tmp_path / "old", model, metrics={})
    manifest = json.loads((path / "run.json").read_text())
    # Such runs also held the schema inline in run.json, before vocabularies.json.
    manifest["schema"] = json.loads((path / manifest.pop("vocabularies")["file"]).read_text())
    (path / "vocabularies.json").unlink()
    for entry in manifest["schema"]:
        for key in ("role", "format", "transform"):
            entry.pop(key, None)
    (path / "run.json").write_text(json.dumps(manifest))
    run = load_run(path)
    assert run.schema == synth_dataset.schema  # the MovieLens roles and RequestTime's format come back
    assert run.schema["RequestTime"].show(978300760) == "RequestTime=2000-12-31 22:12"


def test_movielens_fields_have_roles(synth_dataset):
    roles = {f.name: f.role for f in synth_dataset.schema.fields}
    assert roles == {"Gender": "user", "Age": "user", "Occupation": "user", "Zipcode": "user", "Genre": "item",
                     "ReleaseTime": "item", "RequestTime": "context"}
    assert synth_dataset.schema["RequestTime"].format == "timestamp"


def test_check_values_refuses_a_log2_value_outside_the_transformed_range():
    from autoint.data.encoding import check_values
    schema = Schema((Field("I1", "numeric", min_value=0.0, max_value=21.0, transform="log2"),))
    assert check_values(schema, {"I1": 100}) == {"I1": 100.0}  # 100 -> 21
    with pytest.raises(SchemaError, match=r"I1=1000 becomes 47 by the log2 transform.*0 to 21"):
        check_values(schema, {"I1": 1000})


# ----------------------------------------------------------------------------- specs

import csv
import gzip
import io
import subprocess
import sys
from collections import Counter
from contextlib import redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

import torch

from autoint.data.dataset import DataError
from autoint.datasets import DATASETS, builtin_spec, load_dataset, synth
from autoint.datasets.generic import stratified_folds
from autoint.datasets.spec import SpecError, parse_spec

USER_SPEC = '''\
# My shop's ad impressions, exported from the ad server (semicolon-separated, with a header).
name = "shop-clicks"
files = ["impressions.csv"]
separator = ";"
label = "clicked"
min_count = 3
split = "random"
seed = 7

[[field]]
names = ["country", "device"]
kind = "categorical"
role = "user"

[[field]]
name = "category"
column = "ad_category"
kind = "categorical"
role = "item"

[[field]]
name = "price"
kind = "numeric"
role = "item"

[[field]]
name = "tags"
kind = "multivalued"
delimiter = "|"
max_len = 3
role = "item"

[[field]]
name = "shown_at"
kind = "numeric"
format = "timestamp"
role = "context"

[[field]]
name = "weekday"
column = "shown_at"
kind = "categorical"
derive = "weekday"
time_format = "unix"
role = "context"
'''


def _line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


@pytest.mark.parametrize("edit, line_start, message", [
    (('separator = ";"', 'seperator = ";"'), "seperator", r"unknown key 'seperator'; did you mean 'separator'\?"),
    (('kind = "numeric"\nrole = "item"', 'kind = "number"\nrole = "item"'), 'kind = "number"',
     r"kind = 'number' is not one of 'categorical', 'multivalued', 'numeric'"),
    (('name = "price"\nkind = "numeric"', 'name = "price"\nkind = "numeric"\ntransform = "log10"'), "transform",
     r"transform = 'log10' is not one of 'minmax', 'log2', 'bucket'"),
    (('role = "user"', 'role = "buyer"'), 'role = "buyer"', r"role = 'buyer' is not one of"),
    (('label = "clicked"', 'label = "clicked >> 0"'), "label", r"label = 'clicked >> 0': write a 0/1 column .* or a rule"),
    (('name = "price"', 'name = "country"'), 'name = "country"', r"field 'country' is declared twice \(first in "
                                                                  r"the \[\[field\]\] on line 10\)"),
    (('name = "price"', 'name = "clicked"'), 'name = "clicked"', r"field clicked reads the label column 'clicked'"),
    (('delimiter = "|"', 'delimiter = "|"\nmin_count = 0'), "min_count = 0", r"min_count must be a whole number "
                                                                              r"at least 1, got 0"),
    (('time_format = "unix"', 'time_format = "unix"\nfill = 1'), "fill", r"fill is for numeric fields"),
    (('name = "price"', 'name = price'), 'name = price', r"not valid TOML"),
    (('separator = ";"', 'separator = ";"\nheader = false'), "header", r"header = false needs the column names"),
])
def test_a_spec_error_names_the_spec_line_and_the_fix(edit, line_start, message):
    old, new = edit
    assert old in USER_SPEC
    text = USER_SPEC.replace(old, new, 1)
    with pytest.raises(SpecError, match=rf"^my\.toml, line {_line_of(text, line_start)}: {message}"):
        parse_spec(text, Path("my.toml"))


def test_a_spec_names_columns_it_cannot_find_with_their_line(tmp_path):
    folder = synth.generate_clicks(tmp_path / "shop", rows=200)
    text = USER_SPEC.replace('column = "ad_category"', 'column = "ad_categroy"')
    (folder / "my.toml").write_text(text)
    with pytest.raises(SpecError, match=rf"my\.toml, line {_line_of(text, 'column = ')}: column 'ad_categroy' "
                                        rf"is not in impressions\.csv .* Did you mean 'ad_category'\?"):
        load_dataset(spec=folder / "my.toml")
    (folder / "my.toml").write_text(USER_SPEC.replace('files = ["impressions.csv"]', 'files = ["clicks.csv"]'))
    with pytest.raises(DataError, match=r"no clicks.csv there \(.*my\.toml, line 3 names it\)"):
        load_dataset(spec=folder / "my.toml")


def test_the_builtin_specs_say_what_the_authors_did():
    criteo, avazu, kdd12 = (builtin_spec(n) for n in ("criteo", "avazu", "kdd12"))
    assert DATASETS == ("movielens-1m", "criteo", "avazu", "kdd12")
    assert [f.name for f in criteo.fields] == [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
    assert {(f.kind, f.transform) for f in criteo.fields[:13]} == {("numeric", "log2")}
    assert {(f.kind, f.min_count) for f in criteo.fields[13:]} == {("categorical", 10)}
    assert (criteo.separator, criteo.header, criteo.label.column, criteo.about["rows"]) == ("\t", False, "label",
                                                                                            "45,840,617")
    assert len(avazu.fields) == 23 and {f.min_count for f in avazu.fields} == {5} and avazu.header
    assert "id" not in avazu.source_columns() and avazu.files == (("train", "train.csv", "train.gz", "train.csv.gz"),)
    assert [(f.name, f.derive) for f in avazu.fields[-2:]] == [("hour_of_day", "hour_of_day"), ("weekday", "weekday")]
    assert (kdd12.label.column, kdd12.label.op, kdd12.label.threshold) == ("Click", ">", 0.0)
    assert [f.name for f in kdd12.fields if f.kind == "numeric"] == ["Impression", "Depth", "Position"]
    assert kdd12.joins[0].file == "userid_profile.txt" and kdd12.joins[0].on == "UserID"
    for spec in (criteo, avazu, kdd12):
        assert (spec.split, spec.seed, spec.folds) == ("folds", 2018, 10)
        assert {"source", "rows", "size", "licence"} <= set(spec.about)


# ----------------------------------------------------------------------------- loaders read the real formats

@pytest.fixture(scope="module")
def criteo_dir(tmp_path_factory):
    return synth.generate_criteo(tmp_path_factory.mktemp("criteo") / "criteo", rows=20000, seed=0)


@pytest.fixture(scope="module")
def criteo(criteo_dir):
    return load_dataset("criteo", data_dir=criteo_dir)


@pytest.fixture(scope="module")
def avazu_dir(tmp_path_factory):
    return synth.generate_avazu(tmp_path_factory.mktemp("avazu") / "avazu", rows=20000, seed=0, file="train.gz")


@pytest.fixture(scope="module")
def kdd12_dir(tmp_path_factory):
    return synth.generate_kdd12(tmp_path_factory.mktemp("kdd12") / "kdd12", rows=20000, seed=0)


@pytest.fixture(scope="module")
def clicks_dir(tmp_path_factory):
    folder = synth.generate_clicks(tmp_path_factory.mktemp("clicks") / "shop", rows=8000, seed=0)
    (folder / "shop.toml").write_text(USER_SPEC)
    return folder


def _rows(path: Path, separator: str, header: bool) -> list[list[str]]:
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=separator))
    return rows[1:] if header else rows


def _log2(v: float) -> float:
    return math.floor(math.log(v) ** 2) if v > 2 else v


def test_criteo_format_read_exactly(criteo_dir, criteo):
    lines = (criteo_dir / "train.txt").read_text().splitlines()
    rows = [line.split("\t") for line in lines]
    assert all(len(r) == 40 for r in rows) and not lines[0].startswith("label")  # no header, 40 columns
    assert any(r[5] == "" for r in rows) and any(r[20] == "" for r in rows)  # missing integers and categories
    assert len(criteo.frame) == len(rows) == 20000
    assert criteo.labels.tolist() == [float(r[0]) for r in rows]
    # Integers: missing is 0, then floor(ln(v)^2) for v > 2, then min-max over the data.
    for j in (0, 1, 4):
        t = np.array([_log2(float(r[1 + j] or 0)) for r in rows])
        f = criteo.schema[f"I{j + 1}"]
        assert (f.min_value, f.max_value) == (t.min(), t.max())
        assert np.allclose(criteo.inputs.numeric[:, j].numpy(), (t - t.min()) / (t.max() - t.min()), atol=1e-7)
    assert criteo.schema["I2"].min_value == -1.0  # a negative integer passes the transform unchanged
    # Categories: a hashed value keeps its own slot when seen at least 10 times in the training split.
    train = set(criteo.splits["train"].tolist())
    for j in (0, 7, 25):
        column = [r[14 + j] for r in rows]
        counts = Counter(v for i, v in enumerate(column) if i in train and v)
        f = criteo.schema[f"C{j + 1}"]
        assert set(f.vocab[1:]) == {v for v, c in counts.items() if c >= 10}
        assert all(len(v) == 8 and int(v, 16) >= 0 for v in f.vocab[1:])
        assert len(counts) > len(f.vocab) - 1  # rare values exist and were left out
        slots = criteo.inputs.categorical[:, j].numpy()
        expected = [f.index(v) if v and counts.get(v, 0) >= 10 else 0 for v in column]
        assert slots.tolist() == expected
        assert (slots[[i for i, v in enumerate(column) if not v]] == 0).all()  # missing: <unknown>


def test_avazu_format_gzip_header_hour_fields_and_min_count_5(avazu_dir, tmp_path):
    raw = (avazu_dir / "train.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    ds = load_dataset("avazu", data_dir=avazu_dir)
    rows = _rows(avazu_dir / "train.gz", ",", header=True)
    header = gzip.decompress(raw).decode().split("\n", 1)[0].split(",")
    assert header == synth.AVAZU_COLUMNS and len(header) == 24
    assert ds.describe()["gzip"] == ["train.gz"] and "id" not in ds.schema.names and len(ds.schema.fields) == 23
    stamps = [datetime.strptime(r[2], "%y%m%d%H") for r in rows]
    assert ds.frame["hour_of_day"].to_list() == [f"{s.hour:02d}" for s in stamps]
    assert ds.frame["weekday"].to_list() == [s.strftime("%a") for s in stamps]
    assert set(ds.schema["weekday"].vocab[1:]) <= {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
    train = set(ds.splits["train"].tolist())
    site = [r[header.index("site_id")] for r in rows]
    counts = Counter(v for i, v in enumerate(site) if i in train)
    assert set(ds.schema["site_id"].vocab[1:]) == {v for v, c in counts.items() if c >= 5}
    assert any(c < 5 for c in counts.values())
    # The same bytes, unpacked as `train` (Kaggle's name) or as train.csv, read the same.
    for name in ("train", "train.csv"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_bytes(gzip.decompress(raw))
        same = load_dataset("avazu", data_dir=folder)
        assert "gzip" not in same.describe()
        assert all(torch.equal(a, b) for a, b in zip(same.inputs, ds.inputs))
        assert same.schema == ds.schema
    # Gzipped data named without .gz is recognised by its bytes.
    (tmp_path / "plain-name").mkdir()
    (tmp_path / "plain-name" / "train").write_bytes(raw)
    assert load_dataset("avazu", data_dir=tmp_path / "plain-name").describe()["gzip"] == ["train"]


def test_kdd12_format_label_rule_profile_join_and_numeric_transform(kdd12_dir):
    ds = load_dataset("kdd12", data_dir=kdd12_dir)
    rows = _rows(kdd12_dir / "training.txt", "\t", header=False)
    profile = {r[0]: (r[1], r[2]) for r in _rows(kdd12_dir / "userid_profile.txt", "\t", header=False)}
    assert all(len(r) == 12 for r in rows)
    assert max(int(r[0]) for r in rows) > 1  # Click counts clicks: the label is Click > 0
    assert ds.labels.tolist() == [float(int(r[0]) > 0) for r in rows]
    assert ds.frame["Gender"].to_list() == [profile.get(r[11], (None, None))[0] for r in rows]
    assert ds.frame["Age"].to_list() == [profile.get(r[11], (None, None))[1] for r in rows]
    no_profile = [i for i, r in enumerate(rows) if r[11] not in profile]
    gender = [f.name for f in ds.schema.of_kind("categorical")].index("Gender")
    assert no_profile and (ds.inputs.categorical[no_profile, gender] == 0).all()
    no_user = [i for i, r in enumerate(rows) if r[11] == "0"]
    assert no_user and ds.frame["UserID"][no_user].null_count() == len(no_user)  # UserID 0 means no user
    # Position 1, 2, 3 -> floor(ln(v)^2) for v > 2: 1, 2, 1; scaled over [1, 2].
    position = ds.schema["Position"]
    assert (position.min_value, position.max_value) == (1.0, 2.0)
    numeric = [f.name for f in ds.schema.of_kind("numeric")].index("Position")
    expected = [{"1": 0.0, "2": 1.0, "3": 0.0}[r[6]] for r in rows]
    assert ds.inputs.numeric[:, numeric].tolist() == expected


def test_stratified_folds_split_80_10_10_with_equal_click_shares_and_fixed_by_the_seed(criteo, criteo_dir):
    splits = criteo.splits
    n = len(criteo.frame)
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(n))
    positives = int(criteo.labels.sum())
    # Fold 1 (test) and fold 2 (validation) hold a tenth of each class, rounded up or down.
    for name in ("test", "val"):
        in_split = criteo.labels[splits[name]]
        assert abs(int(in_split.sum()) - positives / 10) <= 1
        assert abs(len(in_split) - n / 10) <= 2
    assert len(splits["train"]) == n - len(splits["test"]) - len(splits["val"])
    again = load_dataset("criteo", data_dir=criteo_dir)
    assert all(np.array_equal(again.splits[k], splits[k]) for k in splits)
    assert all(torch.equal(a, b) for a, b in zip(again.inputs, criteo.inputs))
    assert again.fingerprint == criteo.fingerprint
    labels = criteo.labels.numpy().astype(np.int64)
    assert not np.array_equal(stratified_folds(labels, 10, 2018), stratified_folds(labels, 10, 2019))
    assert np.bincount(stratified_folds(labels, 10, 2018)).tolist() == [n // 10] * 10


def test_data_errors_name_the_file_and_line(tmp_path, criteo_dir):
    lines = (criteo_dir / "train.txt").read_text().splitlines()[:50]
    cases = {
        "short": (6, lambda r: r[:-2]), "word": (9, lambda r: r[:3] + ["many"] + r[4:]),
        "label": (12, lambda r: ["2"] + r[1:]),
    }
    expected = {
        "short": r"train\.txt, line 7: expected 40 tab-separated columns, got 38: .* is the file cut off\?",
        "word": r"train\.txt, line 10: I3 is 'many', not a finite number, but field I3 is numeric \(.*criteo\.toml, "
                r"line \d+\)",
        "label": r"train\.txt, line 13: the label column label is '2', not 0 or 1\. .*criteo\.toml, line \d+: write "
                 r"label = \"label > 0\"",
    }
    for name, (n, change) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        rows = [line.split("\t") for line in lines]
        rows[n] = change(rows[n])
        (folder / "train.txt").write_text("\n".join("\t".join(r) for r in rows) + "\n")
        with pytest.raises(DataError, match=expected[name]):
            load_dataset("criteo", data_dir=folder)
    with pytest.raises(DataError, match=r"no train\.txt or train\.txt\.gz there \(.*criteo\.toml, line \d+ names "
                                        r"it\)\. Put the file there as distributed"):
        load_dataset("criteo", data_dir=tmp_path)


def test_a_refusal_counts_every_refused_line_and_names_the_first_ten(tmp_path, criteo_dir):
    """One bad line or many: the error starts at the first, then counts them all and lists up to ten line numbers."""
    lines = (criteo_dir / "train.txt").read_text().splitlines()[:60]
    cases = {"word": ([9, 19, 29], lambda r: r[:3] + ["many"] + r[4:],
                      r"line 10: I3 is 'many'.* 3 lines are refused so: lines 10, 20 and 30\.$"),
             "short": (list(range(3, 45, 3)), lambda r: r[:-2],
                       r"line 4: expected 40 tab-separated columns.* 14 lines are refused so: lines 4, 7, 10, 13, 16, "
                       r"19, 22, 25, 28, 31 and 4 more\.$"),
             "one": ([5], lambda r: ["2"] + r[1:], r"line 6: the label column label is '2', not 0 or 1\. .*a click\.$")}
    for name, (bad, change, expected) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        rows = [line.split("\t") for line in lines]
        for n in bad:
            rows[n] = change(rows[n])
        (folder / "train.txt").write_text("\n".join("\t".join(r) for r in rows) + "\n")
        with pytest.raises(DataError, match=expected):
            load_dataset("criteo", data_dir=folder)


def test_describe_a_new_csv_data_set_from_a_spec_alone(clicks_dir):
    """Adding a data set none of our code names is one spec file: describe reads it from the CLI."""
    from autoint.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["describe", "--spec", str(clicks_dir / "shop.toml")]) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    rows = _rows(clicks_dir / "impressions.csv", ";", header=True)
    assert report["dataset"] == "shop-clicks" and report["samples"] == len(rows) == 8000
    assert report["positives"] == sum(int(r[-1]) for r in rows)
    assert report["splits"] == {"train": 6400, "val": 800, "test": 800}  # split = "random": 80/10/10
    fields = {f["name"]: f for f in report["fields"]}
    assert list(fields) == ["country", "device", "category", "price", "tags", "shown_at", "weekday"]
    assert fields["country"] == {"name": "country", "kind": "categorical", "vocabulary": 9, "role": "user",
                                 "unknown_share": 0.0}
    assert fields["price"]["range"] == [min(float(r[4]) for r in rows), max(float(r[4]) for r in rows)]
    assert fields["tags"]["kind"] == "multivalued" and fields["tags"]["vocabulary"] == 1 + len(synth.TAGS)
    assert fields["tags"]["unknown_share"] == round(sum(r[5] == "" for r in rows) / len(rows), 6)
    ds = load_dataset(spec=clicks_dir / "shop.toml")
    assert ds.frame["device"][0] == rows[0][2]  # quoted in the file, unquoted here
    assert ds.schema["shown_at"].show(float(rows[0][6])).startswith("shown_at=2020-")
    stamp = datetime.fromtimestamp(int(rows[0][6]), tz=timezone.utc)
    assert ds.frame["weekday"][0] == stamp.strftime("%a")


def test_movielens_through_the_datasets_package_is_the_same(synth_dir, synth_dataset):
    ds = load_dataset("movielens-1m", data_dir=synth_dir)
    assert all(torch.equal(a, b) for a, b in zip(ds.inputs, synth_dataset.inputs))
    assert ds.describe() == synth_dataset.describe() and ds.movielens is not None
    with pytest.raises(DataError, match="--with-ids adds MovieLens"):
        load_dataset("criteo", data_dir=synth_dir, with_ids=True)


# ----------------------------------------------------------------------------- a model finds the planted pairs

SMALL = dict(embed_dim=16, attn_dim=8, heads=2, layers=2)


def _train(dataset, epochs=14):
    from autoint.model.autoint import AutoIntConfig
    from autoint.training.train import TrainConfig, train
    config = TrainConfig(epochs=epochs, patience=3, batch_size=256, lr=0.005, seed=0)
    return train(dataset, AutoIntConfig(**SMALL), config, progress=False).model


def _top_pairs(model, dataset, count: int, samples: int) -> list[set]:
    """The `count` strongest field pairs by mean |k-SII| over test samples: exact over the whole split up to
    12 fields (split_interactions); above, KernelSHAP-IQ per sample (split_interactions refuses them)."""
    from autoint.explain.interactions import (EXACT_MAX_FIELDS, baseline_embedding, pair_index, sample_interactions,
                                      split_interactions)
    x, _ = dataset.split("test")
    baseline = baseline_embedding(model, "mean", dataset.split("train")[0])
    names = dataset.schema.names
    if len(names) <= EXACT_MAX_FIELDS:
        return [set(p["fields"]) for p in split_interactions(model, x, baseline).ranked_pairs()[:count]]
    strength = np.zeros(len(pair_index(len(names))))
    for i in range(samples):
        strength += np.abs(sample_interactions(model, x.index(slice(i, i + 1)), baseline, seed=i).pairs)
    order = np.argsort(-strength)[:count]
    return [{names[a], names[b]} for a, b in (pair_index(len(names))[p] for p in order)]


@pytest.mark.parametrize("name", ["criteo", "avazu", "kdd12", "shop"])
def test_a_small_model_finds_the_planted_pairs(name, request):
    folder = request.getfixturevalue({"shop": "clicks_dir"}.get(name, f"{name}_dir"))
    dataset = (load_dataset(spec=folder / "shop.toml") if name == "shop"
               else load_dataset(name, data_dir=folder))
    planted = [set(p) for p in synth.planted_pairs(folder)]
    model = _train(dataset)
    top = _top_pairs(model, dataset, len(planted), samples=12)
    assert sorted(map(sorted, top)) == sorted(map(sorted, planted)), (name, top)


# ----------------------------------------------------------------------------- more of what a spec can say

def test_parquet_bucket_missing_display_several_columns_and_a_join_with_a_header(tmp_path):
    import polars as pl
    folder = tmp_path / "own"
    folder.mkdir()
    pl.DataFrame({
        "clicks": [0, 3, 1, 0, 0, 2, 0, 1, 0, 5, 0, 0],
        "age": [15.0, 22.0, None, 40.0, 67.0, 33.0, 18.0, 25.0, 51.0, 29.0, 70.0, 12.0],
        "tag1": ["a", "b", None, "a", "c", "a", "b", "b", "a", "c", "a", "b"],
        "tag2": ["b", None, None, "n/a", "a", "c", "a", "a", "b", "a", "c", "a"],
        "shop": ["s1", "s2", "s1", "s3", "s2", "s1", "s9", "s2", "s1", "s3", "s2", "s1"],
    }).write_parquet(folder / "log.parquet")
    (folder / "shops.csv").write_text("shop,region\ns1,north\ns2,south\ns3,north\n")
    (folder / "own.toml").write_text('''\
name = "own"
files = ["log.parquet"]
label = "clicks >= 1"
split = "random"
seed = 3

[[join]]
file = "shops.csv"
on = "shop"

[[field]]
name = "age"
kind = "numeric"
transform = "bucket"
edges = [18, 30, 50]
fill = 30

[[field]]
name = "tags"
columns = ["tag1", "tag2"]
kind = "multivalued"
missing = ["n/a"]

[[field]]
name = "region"
kind = "categorical"
display = { north = "North", south = "South" }
role = "item"
''')
    ds = load_dataset(spec=folder / "own.toml")
    assert ds.labels.tolist() == [0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 0]
    # Buckets: below 18 -> 0, [18, 30) -> 1, [30, 50) -> 2, 50 and above -> 3; missing -> fill 30 -> 2.
    age = ds.schema["age"]
    assert (age.transform, age.edges, age.min_value, age.max_value) == ("bucket", (18.0, 30.0, 50.0), 0.0, 3.0)
    assert (ds.inputs.numeric[:, 0] * 3).round().tolist() == [0, 1, 2, 2, 3, 2, 1, 1, 3, 1, 3, 0]
    assert ds.frame["tags"].to_list()[:4] == [["a", "b"], ["b"], [], ["a"]]  # nulls and "n/a" dropped
    assert ds.frame["region"].to_list() == ["north", "south", "north", "north", "south", "north", None, "south",
                                            "north", "north", "south", "north"]  # s9 is not in shops.csv
    assert ds.schema["region"].show("north") == "region=North" and ds.schema["region"].role == "item"
    assert ds.describe()["files"] == ["log.parquet", "shops.csv"]
    assert ds.describe()["split"] == "random 80/10/10, seed 3"
    (folder / "shops.csv").write_text("shop,region\ns1,north\ns2,south\ns1,east\n")
    with pytest.raises(DataError, match=r"shops\.csv, line 4: shop 's1' appears again \(first on line 2\)"):
        load_dataset(spec=folder / "own.toml")


def test_train_from_the_command_line_on_a_builtin_format(tmp_path):
    from autoint.cli import main
    from autoint.training.runs import load_run
    folder = synth.generate_kdd12(tmp_path / "kdd12", rows=1500, users=300, seed=4)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["train", "--dataset", "kdd12", "--data-dir", str(folder), "--epochs", "1", "--embed-dim", "4",
                     "--attn-dim", "4", "--layers", "1", "--quiet", "--device", "cpu", "--out",
                     str(tmp_path / "run")]) == 0
    metrics = json.loads(out.getvalue().splitlines()[-1])
    assert metrics["fields"] == [f.name for f in builtin_spec("kdd12").fields]
    assert sum(metrics["samples"].values()) == 1500 and 0.0 <= metrics["test_auc"] <= 1.0
    run = load_run(tmp_path / "run")
    assert run.manifest["data_dir"] == str(folder) and run.manifest["dataset"] == "kdd12"
    assert run.schema["Position"].transform == "log2" and run.schema["UserID"].role == "user"
    assert run.manifest["data_fingerprint"] == load_dataset("kdd12", data_dir=folder).fingerprint


def test_builtin_specs_are_parsed_once_and_unknown_names_still_refused():
    """The app's sidebar asks for every built-in spec on each rerun: one parse per process, the same object after."""
    from autoint.datasets import BUILTIN_SPECS
    for name in BUILTIN_SPECS:
        first = builtin_spec(name)
        assert builtin_spec(name) is first and first.name == name
    with pytest.raises(DataError, match="unknown data set 'criteo2'; choose one of"):
        builtin_spec("criteo2")
