"""infer-spec (autoint.datasets.infer): specs guessed from generated Criteo, Avazu and KDD12 files and a hand-made
CSV load as read_spec and load_dataset take them; every bad input is refused with its file, line or column and
the fix, and nothing is written."""
from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest

from autoint.cli import main
from autoint.datasets import builtin_spec, load_dataset, read_spec
from autoint.datasets.infer import infer_spec, write_spec
from autoint.datasets.synth import generate_avazu, generate_criteo, generate_kdd12
from autoint.errors import DataError, UsageError

ROWS = 1500


def _inferred_and_builtin(folder, file, label, builtin):
    """(inferred spec, its data set, the built-in's data set) of one generated file; the spec saved beside it."""
    inferred = infer_spec(folder / file, label=label)
    path = write_spec(inferred.to_toml(spec_dir=folder), folder / "inferred.toml")
    spec = read_spec(path)
    assert [f.name for f in spec.fields] == [c.name for c in inferred.fields]
    return spec, load_dataset(spec=path), load_dataset(builtin, data_dir=folder)


def _kinds_by_column(spec, columns=None) -> dict:
    """Source column -> kind (a built-in without a header: its `columns` names, mapped to c0, c1, ... by
    position when `columns` is given)."""
    rename = {name: f"c{i}" for i, name in enumerate(columns)} if columns else {}
    return {rename.get(f.columns[0], f.columns[0]): f.kind for f in spec.fields if f.derive is None}


def test_criteo_format(tmp_path):
    folder = generate_criteo(tmp_path / "criteo", rows=ROWS, seed=2)
    spec, data, builtin = _inferred_and_builtin(folder, "train.txt", "c0", "criteo")
    assert spec.header is False and spec.separator == "\t" and spec.label.column == "c0"
    kinds = _kinds_by_column(spec)
    assert all(kinds[f"c{i}"] == "numeric" for i in range(1, 14))  # I1-I13
    assert all(kinds[f"c{i}"] == "categorical" for i in range(14, 40))  # C1-C26
    assert kinds == _kinds_by_column(builtin_spec("criteo"), builtin_spec("criteo").columns)
    assert data.frame.height == builtin.frame.height == ROWS
    assert np.array_equal(data.labels.numpy(), builtin.labels.numpy())
    # What inference cannot know: the authors' log2 transform and min_count 10.
    assert {f.transform for f in spec.fields if f.kind == "numeric"} == {"minmax"}
    assert {f.min_count for f in spec.fields if f.kind == "categorical"} == {1}


def test_avazu_format(tmp_path):
    folder = generate_avazu(tmp_path / "avazu", rows=ROWS, seed=2, file="train.csv")
    spec, data, builtin = _inferred_and_builtin(folder, "train.csv", "click", "avazu")
    inferred = infer_spec(folder / "train.csv", label="click")
    assert {c.column: c.left_out for c in inferred.left_out} == {"id": f"a row id: {ROWS:,} distinct numbers in "
                                                                       f"{ROWS:,} rows"}
    kinds, expected = _kinds_by_column(spec), _kinds_by_column(builtin_spec("avazu"))
    assert {c: kinds[c] for c in expected} == expected  # every built-in column categorical
    assert kinds["hour"] == "numeric"  # the built-in derives hour of day and weekday from it: not guessed
    assert data.frame.height == builtin.frame.height == ROWS
    assert np.array_equal(data.labels.numpy(), builtin.labels.numpy())
    roles = {f.name: f.role for f in spec.fields}
    assert roles["site_id"] == roles["hour"] == "context" and roles["C14"] is None


def test_kdd12_format(tmp_path):
    folder = generate_kdd12(tmp_path / "kdd12", rows=ROWS, seed=2)
    spec, data, builtin = _inferred_and_builtin(folder, "training.txt", "c0 > 0", "kdd12")
    assert spec.header is False and spec.label.text == "c0 > 0"
    kinds = _kinds_by_column(spec)
    columns = builtin_spec("kdd12").columns
    expected = _kinds_by_column(builtin_spec("kdd12"), columns)
    ids = ["DisplayURL", "AdID", "AdvertiserID", "QueryID", "KeywordID", "TitleID", "DescriptionID", "UserID"]
    for name in ids:
        c = f"c{columns.index(name)}"
        assert kinds[c] == expected[c] == "categorical", name
    assert kinds["c1"] == expected["c1"] == "numeric"  # Impression: 20-odd counts filling their range
    # Depth and Position hold 3 values: inference reads them as codes; the authors as numbers (log2).
    assert kinds["c5"] == kinds["c6"] == "categorical" and expected["c5"] == expected["c6"] == "numeric"
    assert data.frame.height == builtin.frame.height == ROWS
    assert np.array_equal(data.labels.numpy(), builtin.labels.numpy())


# ----------------------------------------------------------------------------- a hand-made CSV

def _mixed_csv(path, rows: int = 1000):
    """Every kind of column, seeded: a row id, a price, a city, tags, a constant, free text, a user id, a code
    column that mixes numbers and text, a score with NA, and the 0/1 label."""
    rng = np.random.default_rng(0)
    cities = ["Berlin", "Paris", "Rome", "Madrid", "Oslo"]
    tags = ["sale", "new", "eco", "kids"]
    users = rng.choice(10 ** 7, size=300, replace=False)
    lines = ["row_id,price,city,tags,constant,comment,user_id,code,score,clicked"]
    for r in range(rows):
        tag = "|".join(rng.choice(tags, size=rng.integers(1, 4), replace=False))
        comment = f"I saw this ad number {r} on my way to work and {rng.choice(['liked', 'hated'])} it"
        code = str(rng.integers(100, 200)) if r % 5 else f"X{r % 7}"
        score = "NA" if r % 10 == 0 else f"{rng.integers(0, 1000)}"
        lines.append(f"{5000 + r},{rng.uniform(1, 100):.2f},{rng.choice(cities)},{tag},x,\"{comment}\","
                     f"{users[rng.integers(0, 300)]},{code},{score},{int(rng.random() < 0.3)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_mixed_csv_kinds_and_left_out(tmp_path):
    path = _mixed_csv(tmp_path / "mixed.csv")
    inferred = infer_spec(path)  # one 0/1 column: the label without --label
    assert (inferred.separator, inferred.header, inferred.label) == (",", True, "clicked")
    fields = {c.column: c for c in inferred.fields}
    assert {c: f.kind for c, f in fields.items()} == {
        "price": "numeric", "city": "categorical", "tags": "multivalued", "user_id": "categorical",
        "code": "categorical", "score": "numeric"}
    assert fields["tags"].delimiter == "|"
    assert fields["code"].evidence.startswith("mixes numbers and text: 200 of 1,000 values are not numbers")
    assert fields["score"].missing == ("NA",)
    assert fields["user_id"].evidence.endswith("and the name says id")
    assert {c: f.role for c, f in fields.items()} == {
        "price": "item", "city": "context", "tags": None, "user_id": "user", "code": None, "score": None}
    reasons = {c.column: c.left_out for c in inferred.left_out}
    assert reasons["row_id"] == "a row id: 1,000 distinct numbers in 1,000 rows"
    assert reasons["constant"] == 'constant: "x" in every one of the 1,000 rows'
    assert reasons["comment"].startswith("free text: 1,000 distinct values")
    assert set(reasons) == {"row_id", "constant", "comment"}
    text = inferred.to_toml(spec_dir=tmp_path)
    assert '#   comment: free text: 1,000 distinct values' in text
    assert 'kind = "categorical"          # mixes numbers and text: 200 of 1,000 values are not numbers' in text
    spec_path = write_spec(text, tmp_path / "mixed.toml")
    data = load_dataset(spec=spec_path)  # as `describe --spec` and `train --spec` read it
    assert data.frame.height == 1000
    assert {f.name: f.kind for f in data.schema.fields}["tags"] == "multivalued"


def test_deterministic(tmp_path, capsys):
    path = _mixed_csv(tmp_path / "mixed.csv", rows=300)
    assert infer_spec(path).to_toml() == infer_spec(path).to_toml()
    outputs = []
    for _ in range(2):
        assert main(["infer-spec", str(path), "--label", "clicked"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("# Inferred by")


def test_sample_rows_reads_the_first_rows(tmp_path):
    path = _mixed_csv(tmp_path / "mixed.csv", rows=300)
    inferred = infer_spec(path, sample_rows=100)
    assert inferred.rows == 100 and inferred.more_rows
    assert "from the first 100 rows of mixed.csv" in inferred.to_toml()


def test_cli_writes_out_and_refuses_to_overwrite(tmp_path, capsys):
    path = _mixed_csv(tmp_path / "mixed.csv", rows=300)
    out = tmp_path / "mixed.toml"
    assert main(["infer-spec", str(path), "--out", str(out)]) == 0
    written = out.read_text()
    assert 'files = ["mixed.csv"]' in written  # beside the spec: the default data folder
    assert json.loads(capsys.readouterr().out)["spec"] == str(out)
    out.write_text("# mine\n")
    assert main(["infer-spec", str(path), "--out", str(out)]) == 2
    assert "the file exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "# mine\n"
    assert main(["infer-spec", str(path), "--out", str(out), "--force"]) == 0
    assert out.read_text() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed.csv", "mixed.toml"]  # no temporary file left


def test_spec_elsewhere_names_the_data_dir(tmp_path):
    (tmp_path / "data").mkdir()
    path = _mixed_csv(tmp_path / "data" / "mixed.csv", rows=300)
    text = infer_spec(path).to_toml(spec_dir=tmp_path / "specs")
    assert 'files = ["mixed.csv"]' in text
    assert f"# the file is in {path.parent.as_posix()}: pass --data-dir {path.parent.as_posix()}" in text


def test_gzip_and_parquet(tmp_path):
    text = _mixed_csv(tmp_path / "mixed.csv", rows=300).read_bytes()
    (tmp_path / "mixed.csv.gz").write_bytes(gzip.compress(text))
    plain = infer_spec(tmp_path / "mixed.csv")
    assert [c.kind for c in infer_spec(tmp_path / "mixed.csv.gz").choices] == [c.kind for c in plain.choices]
    pl.read_csv(tmp_path / "mixed.csv", infer_schema=False).write_parquet(tmp_path / "mixed.parquet")
    parquet = infer_spec(tmp_path / "mixed.parquet")
    assert parquet.format == "parquet" and [c.kind for c in parquet.choices] == [c.kind for c in plain.choices]
    spec = read_spec(write_spec(parquet.to_toml(spec_dir=tmp_path), tmp_path / "p.toml"))
    assert load_dataset(spec=tmp_path / "p.toml").frame.height == 300 and spec.format == "parquet"


# ----------------------------------------------------------------------------- bad input: one clear message each

def _refused(tmp_path, capsys, data: bytes, *flags, match: str) -> str:
    """Through the CLI with --out: exit 2, the message on stderr, nothing written beside the data."""
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    assert main(["infer-spec", str(path), "--out", str(tmp_path / "bad.toml"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
    return err


def test_empty_file(tmp_path, capsys):
    _refused(tmp_path, capsys, b"", match="bad.csv: the file is empty")
    with pytest.raises(DataError, match="the file is empty"):
        infer_spec(tmp_path / "bad.csv")


def test_bytes_that_are_not_utf8(tmp_path, capsys):
    err = _refused(tmp_path, capsys, b"city,clicked\nBerlin,1\nK\xf6ln,0\n", match="bad.csv, line 3, character 2: "
                   "byte 0xf6 is not UTF-8")
    assert "reads as latin-1" in err and "'ö'" in err and "iconv -f latin1 -t utf-8 bad.csv" in err
    with pytest.raises(DataError, match="not latin-1 text either"):
        (tmp_path / "bad.csv").write_bytes(b"city,clicked\nK\x81ln,0\n")
        infer_spec(tmp_path / "bad.csv")


def test_label_with_many_values_needs_a_rule(tmp_path, capsys):
    rows = "".join(f"{u},{r}\n" for u, r in zip(range(40), [1, 2, 3, 4, 5] * 8))
    err = _refused(tmp_path, capsys, ("user,rating\n" + rows).encode(), "--label", "rating",
                   match="--label rating: the column has 5 values in 40 rows (1, 2, 3, 4, 5), not two")
    assert 'give a rule that says which are clicks, e.g. --label "rating > 3"' in err
    with pytest.raises(UsageError):
        infer_spec(tmp_path / "bad.csv", label="rating")
    assert infer_spec(tmp_path / "bad.csv", label="rating > 3").label == "rating > 3"


def test_no_candidate_label(tmp_path, capsys):
    rows = "".join(f"{u},{r}\n" for u, r in zip(range(40), [1, 2, 3, 4, 5] * 8))
    _refused(tmp_path, capsys, ("user,rating\n" + rows).encode(),
             match="no column could be the label: none holds exactly two numbers in all of the first 40 rows")


def test_several_candidate_labels(tmp_path, capsys):
    rows = "".join(f"{u},{u % 2},{(u // 3) % 2 + 1}\n" for u in range(40))
    err = _refused(tmp_path, capsys, ("user,clicked,mobile\n" + rows).encode(),
                   match="2 columns could be the label")
    assert "clicked (\"0\" and \"1\"), mobile (\"1\" and \"2\")" in err and "--label clicked" in err
    inferred = infer_spec(tmp_path / "bad.csv", label="mobile")  # two values, not 0/1: a rule
    assert inferred.label == "mobile == 2"


def test_label_column_with_text_or_gaps(tmp_path):
    (tmp_path / "bad.csv").write_text("city,clicked\nBerlin,yes\nRome,no\nOslo,yes\n")
    with pytest.raises(DataError, match=r"bad.csv, line 2: the label column clicked is 'yes', not a number. It "
                                        r"holds text \('no', 'yes'\): recode it as 0/1 first"):
        infer_spec(tmp_path / "bad.csv", label="clicked")
    (tmp_path / "bad.csv").write_text("city,clicked\nBerlin,1\nRome,\nOslo,0\n")
    with pytest.raises(DataError, match="bad.csv, line 3: the label column clicked is empty"):
        infer_spec(tmp_path / "bad.csv", label="clicked")


def test_ragged_line(tmp_path, capsys):
    _refused(tmp_path, capsys, b"a,b,clicked\n1,2,0\n3,4\n5,6,1\n",
             match="bad.csv, line 3: expected 3 comma-separated columns, got 2")


def test_out_exists_is_refused_before_reading(tmp_path, capsys):
    (tmp_path / "spec.toml").write_text("mine\n")
    assert main(["infer-spec", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "spec.toml")]) == 2
    assert "--out " in capsys.readouterr().err and (tmp_path / "spec.toml").read_text() == "mine\n"
