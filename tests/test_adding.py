"""Adding a data set (autoint.workspace.adding): names, the upload limit, staging inside data/ only, the editable
spec table and saving whole or not at all. Every test runs in a temporary working directory, so data/ is a temporary
folder (sources.DATA_ROOT is the relative Path("data"))."""
import gzip
import io
import os
import time
from pathlib import Path

import pytest

from autoint.datasets.infer import infer_spec
from autoint.datasets.spec import read_spec
from autoint.datasets.synth import generate_clicks
from autoint.errors import DataError, UsageError
from autoint.workspace import adding, sources

ROWS = 600


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> bytes:
    """A small impressions.csv (synth.generate_clicks): label clicked, a row id, text, price, tags, a time."""
    folder = generate_clicks(tmp_path_factory.mktemp("clicks") / "clicks", rows=ROWS, seed=2)
    return (folder / "impressions.csv").read_bytes()


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A working directory of its own: data/ is work/data; tmp_path/outside is a folder nothing may touch."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "kept.txt").write_text("mine")
    monkeypatch.chdir(work)
    monkeypatch.delenv(adding.UPLOAD_LIMIT_ENV, raising=False)
    return work


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def staged(clicks: bytes, name: str = "impressions.csv") -> adding.Staging:
    return adding.stage_upload(io.BytesIO(clicks), name)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["clicks", "my-clicks_2", "a", "0" * 48])
def test_a_plain_slug_is_a_name(name):
    assert adding.check_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "..", ".", "", "Clicks", "a b", "a.b", "-a", "x" * 49,
                                  "a\\b", "cache", "synthetic", "é"])
def test_other_names_are_refused_saying_what_is_allowed(name):
    with pytest.raises(UsageError, match=r"data set name .*(lower-case letters, digits, '-' and '_'|program's own)"):
        adding.check_name(name)


@pytest.mark.parametrize("file_name", ["clicks.csv", "Train.TXT", "x_1.tsv", "data.csv.gz", "part-0.parquet"])
def test_a_file_name_keeps_one_extension(file_name):
    assert adding.check_file_name(file_name) == file_name


@pytest.mark.parametrize("file_name", ["../x.csv", "a/b.csv", "/tmp/x.csv", "x..csv", "..csv", "x.csv.exe", "x",
                                       ".csv", "x.parquet.gz", "x.2024.csv", "my data.csv", "x.json", "a\\b.csv"])
def test_other_file_names_are_refused(file_name):
    with pytest.raises(UsageError, match=r"file name .*one extension of \.csv, \.tsv, \.txt, \.parquet"):
        adding.check_file_name(file_name)


def test_suggested_names_are_valid():
    for file_name in ("My Clicks.csv.gz", "../../etc/passwd", "Ünïcode.csv", "cache.csv", "", "-_-.csv"):
        assert adding.check_name(adding.suggest_name(file_name))
    assert adding.suggest_name("My Clicks.csv.gz") == "my-clicks"


# ----------------------------------------------------------------------------- nothing outside data/


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "..", "../outside", str(Path("/tmp") / "abs-x")])
def test_nothing_is_written_outside_data(work, clicks, name, tmp_path):
    """Bad data set names and file names are refused before anything is written; a staging folder that is a
    link to outside data/ is refused too."""
    before = tree(tmp_path)
    file_name = name.rstrip("/").rsplit("/", 1)[-1] + ".csv" if "/" in name else f"{name}.csv"
    for bad_file in (f"{name}.csv", f"../{file_name}", f"/tmp/{file_name}"):
        with pytest.raises(UsageError):
            adding.stage_upload(io.BytesIO(clicks), bad_file)
    assert tree(tmp_path) == before  # not even data/ was made
    staging = staged(clicks)
    text = infer_spec(staging.file).to_toml(spec_dir=staging.folder)
    with pytest.raises(UsageError, match="data set name"):
        adding.save_data_set(staging, name, text)
    assert staging.exists
    staging.discard()
    assert tree(work / "data") == []
    outside = tmp_path / "outside"
    assert tree(outside) == ["kept.txt"] and not Path("/tmp/abs-x").exists() and not (tmp_path / "x").exists()


def test_a_staging_folder_linked_outside_is_refused(work, clicks, tmp_path):
    outside = tmp_path / "outside"
    (outside / "impressions.csv").write_bytes(clicks)
    Path("data").mkdir()
    os.symlink(outside, Path("data") / ".staging-evil")
    with pytest.raises(UsageError, match="outside data/"):
        adding.staging_of("data/.staging-evil")
    text = infer_spec(outside / "impressions.csv").to_toml(spec_dir=outside)
    with pytest.raises(UsageError, match="outside data/"):
        adding.save_data_set("data/.staging-evil", "evil", text)
    assert tree(outside) == ["impressions.csv", "kept.txt"] and not Path("data/evil").exists()
    with pytest.raises(UsageError, match="outside data/"):
        adding.inside_data("data/../x")
    with pytest.raises(UsageError, match="outside data/"):
        adding.inside_data("data")


# ----------------------------------------------------------------------------- the limit and staging


def test_an_upload_over_the_limit_is_refused_before_anything_is_kept(work, monkeypatch):
    monkeypatch.setenv(adding.UPLOAD_LIMIT_ENV, "1")
    big = b"a,clicked\n" + b"x,1\n" * (300 * 1024)  # 1.2 MB
    with pytest.raises(UsageError, match=r"big\.csv: 1\.2 MB is over the limit of 1 MB"):
        adding.stage_upload(io.BytesIO(big), "big.csv", size=len(big))
    assert not Path("data").exists()

    class Stream(io.RawIOBase):  # a size not known ahead: refused midway, the staging folder removed
        def __init__(self):
            self.data = io.BytesIO(big)

        def read(self, n=-1):
            return self.data.read(n)

    with pytest.raises(UsageError, match="over the limit of 1 MB"):
        adding.stage_upload(Stream(), "big.csv")
    assert tree(Path("data")) == []
    monkeypatch.setenv(adding.UPLOAD_LIMIT_ENV, "many")
    with pytest.raises(UsageError, match="AUTOINT_UPLOAD_LIMIT_MB='many': give a whole number"):
        adding.upload_limit_mb()
    monkeypatch.delenv(adding.UPLOAD_LIMIT_ENV)
    assert adding.upload_limit_mb() == adding.UPLOAD_LIMIT_MB == 200


def test_a_server_path_is_copied_into_staging_and_discarded(work, clicks, tmp_path, monkeypatch):
    source = tmp_path / "outside" / "impressions.csv"
    source.write_bytes(clicks)
    staging = adding.stage_path(str(source))
    assert staging.folder.parent == Path("data") and staging.folder.name.startswith(".staging-impressions-")
    assert staging.file.read_bytes() == clicks and source.read_bytes() == clicks
    assert sources.data_sources(generate=False)[1:] == []  # a staging folder is never offered
    staging.discard()
    assert tree(Path("data")) == []
    with pytest.raises(DataError, match="no such file"):
        adding.stage_path(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"no such file \(it is a folder\)"):
        adding.stage_path(tmp_path / "outside")
    with pytest.raises(UsageError, match="file name 'kept.txt.bak'"):
        (tmp_path / "kept.txt.bak").write_text("x")
        adding.stage_path(tmp_path / "kept.txt.bak")
    monkeypatch.setenv(adding.UPLOAD_LIMIT_ENV, "1")
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (2 * 2 ** 20))
    with pytest.raises(UsageError, match="2.0 MB is over the limit of 1 MB"):
        adding.stage_path(big)
    assert tree(Path("data")) == []


def test_stale_staging_folders_are_tidied(work, clicks):
    old, new = staged(clicks), staged(clicks)
    past = time.time() - adding.STALE_STAGING_S - 10
    os.utime(old.file, (past, past))
    os.utime(old.folder, (past, past))
    assert adding.clean_staging() == [old.folder.name]
    assert not old.folder.exists() and new.exists


def test_preview_reads_the_first_rows_of_a_gzipped_file(work, clicks):
    staging = adding.stage_upload(io.BytesIO(gzip.compress(clicks)), "impressions.csv.gz")
    inferred = infer_spec(staging.file)
    frame = adding.preview(inferred)
    assert frame.shape == (adding.PREVIEW_ROWS, 8) and frame.columns == list(inferred.columns)
    assert frame["impression_id"][0] == "100000"


# ----------------------------------------------------------------------------- the table


@pytest.mark.parametrize("packed", [False, True])
def test_a_latin1_file_converts_to_utf8_in_place(work, packed):
    """infer_spec refuses latin-1 bytes with an EncodingError that says latin-1 reads the line; converting the staged
    copy (gzipped stays gzipped, nothing else left in its folder) makes it read, with the letters latin-1 meant."""
    from autoint.datasets.infer import EncodingError
    text = b"drink,clicked\n" + b"".join(b"caf\xe9,%d\nth\xe9,%d\n" % (i % 2, 1 - i % 2) for i in range(40))
    name = "cafes.csv.gz" if packed else "cafes.csv"
    staging = adding.stage_upload(io.BytesIO(gzip.compress(text) if packed else text), name)
    with pytest.raises(EncodingError, match="line 2, character 4: byte 0xe9 is not UTF-8. It reads as latin-1") as info:
        infer_spec(staging.file)
    assert info.value.line == 2 and info.value.latin1
    adding.convert_from_latin1(staging)
    assert sorted(p.name for p in staging.folder.iterdir()) == [name]
    raw = staging.file.read_bytes()
    assert (gzip.decompress(raw) if packed else raw) == text.decode("latin-1").encode("utf-8")
    assert infer_spec(staging.file).label == "clicked"
    assert set(adding.preview(infer_spec(staging.file))["drink"]) == {"café", "thé"}


def test_the_unedited_table_gives_the_inferred_spec(work, clicks):
    staging = staged(clicks)
    inferred = infer_spec(staging.file)
    rows = adding.spec_rows(inferred)
    assert [r["column"] for r in rows] == [c.column for c in inferred.choices]
    assert list(rows[0]) == list(adding.TABLE_COLUMNS)
    by_column = {r["column"]: r for r in rows}
    assert by_column["impression_id"]["left out"] and by_column["impression_id"]["evidence"].startswith("left out:")
    assert by_column["price"]["transform"] == "minmax" and by_column["price"]["min_count"] is None
    assert by_column["tags"]["delimiter"] == "|" and by_column["country"]["min_count"] == 1
    from dataclasses import replace
    assert adding.spec_from_rows(inferred, rows, name="clicks") == \
        replace(inferred, name="clicks").to_toml(spec_dir=staging.folder)


def test_an_edited_table_gives_a_spec_that_says_so(work, clicks):
    staging = staged(clicks)
    inferred = infer_spec(staging.file)
    rows = adding.spec_rows(inferred)
    by_column = {r["column"]: r for r in rows}
    by_column["price"].update(kind="categorical", transform=None, min_count=3.0)  # a float, as pandas gives it
    by_column["shown_at"].update(transform="log2")
    by_column["device"].update(role=float("nan"))  # an emptied cell
    by_column["country"].update({"left out": True})
    by_column["impression_id"].update({"left out": False, "kind": "categorical"})
    text = adding.spec_from_rows(inferred, list(reversed(rows)), name="edited")
    Path("spec.toml").write_text(text)
    spec = read_spec("spec.toml")
    fields = {f.name: f for f in spec.fields}
    assert spec.name == "edited" and "country" not in fields
    assert (fields["price"].kind, fields["price"].min_count, fields["price"].role) == ("categorical", 3, "item")
    assert (fields["shown_at"].transform, fields["shown_at"].format) == ("log2", None)  # a time is shown as minmax
    assert fields["device"].role is None and fields["impression_id"].kind == "categorical"
    assert "set by hand (inferred numeric: " in text and "left out by hand" in text
    assert "set by hand (inferred left out: a row id" in text


BAD_EDITS = {  # column: (the edit, what the message says)
    "nope": ({"column": "nope"}, r"row \d+ of the table \(column 'nope'\): impressions\.csv has no such column; "
                                 r"its columns: impression_id, country"),
    "label": ({"column": "clicked"}, r"'clicked' is the label \(clicked\); it cannot be a field"),
    "kind": ({"kind": "text"}, r"kind 'text' is not one of categorical, multivalued, numeric"),
    "role": ({"role": "buyer"}, r"role 'buyer' is not one of user, item, context"),
    "transform": ({"transform": "sqrt"}, r"transform 'sqrt' is not one of minmax, log2"),
    "bucket": ({"transform": "bucket"}, r"bucket needs edges"),
    "min_count": ({"min_count": 0}, r"min_count 0 must be a whole number of at least 1"),
    "half": ({"min_count": 2.5}, r"min_count 2.5 must be a whole number"),
    "log2 on text": ({"transform": "log2"}, r"transform 'log2' is for numeric fields; this one is categorical"),
    "multi": ({"kind": "multivalued", "delimiter": None}, r"a multivalued field needs a delimiter"),
}


@pytest.mark.parametrize("case", list(BAD_EDITS))
def test_a_bad_edit_is_refused_naming_the_row_and_the_allowed_values(work, clicks, case):
    staging = staged(clicks)
    inferred = infer_spec(staging.file)
    rows = adding.spec_rows(inferred)
    edit, message = BAD_EDITS[case]
    rows[1].update(edit)  # country, a categorical field
    with pytest.raises(UsageError, match=r"row 2 of the table .*" + message if case not in ("nope", "label")
                       else message):
        adding.spec_from_rows(inferred, rows)


def test_a_column_twice_or_every_column_left_out_is_refused(work, clicks):
    staging = staged(clicks)
    inferred = infer_spec(staging.file)
    rows = adding.spec_rows(inferred)
    with pytest.raises(UsageError, match=r"row 8 .*'country' has a row already"):
        adding.spec_from_rows(inferred, rows + [dict(rows[1])])
    with pytest.raises(UsageError, match="every column is left out"):
        adding.spec_from_rows(inferred, [{**r, "left out": True} for r in rows])
    with pytest.raises(UsageError, match="data set name '../x'"):
        adding.spec_from_rows(inferred, rows, name="../x")
    assert "[[field]]" in adding.spec_from_rows(inferred, rows[1:2])  # a column without a row: left out


# ----------------------------------------------------------------------------- saving


def test_save_renames_the_staging_folder_into_place_and_the_data_set_is_offered(work, clicks):
    staging = staged(clicks)
    inferred = infer_spec(staging.file)
    rows = adding.spec_rows(inferred)
    rows[4]["kind"], rows[4]["transform"] = "categorical", None  # price as codes
    text = adding.spec_from_rows(inferred, rows, name="clicks")
    saved = adding.save_data_set(staging, "clicks", text)
    assert saved.folder == Path("data/clicks") and tree(Path("data")) == ["clicks", "clicks/impressions.csv",
                                                                         "clicks/spec.toml"]
    assert saved.spec.read_text() == text and all(c.level == "warning" for c in saved.checks)
    spec = read_spec(saved.spec)
    assert {f.name: f.kind for f in spec.fields}["price"] == "categorical"
    offered = adding.saved_source(saved)
    assert offered.dataset == "clicks" and offered.key in [s.key for s in sources.data_sources(generate=False)]

    # the same name again: refused, nothing changed; with replace: swapped whole
    again = staged(clicks[:len(clicks) // 2].rsplit(b"\n", 1)[0] + b"\n")
    text = infer_spec(again.file).to_toml(spec_dir=again.folder)
    with pytest.raises(UsageError, match=r"a data set named 'clicks' exists \(data/clicks/\); choose another name, "
                                         r"or tick 'replace it'"):
        adding.save_data_set(again, "clicks", text)
    assert saved.spec.read_text() != text and again.exists
    replaced = adding.save_data_set(again, "clicks", text, replace=True)  # named by its folder, not the file
    assert read_spec(replaced.spec).name == "clicks"
    assert (Path("data/clicks/impressions.csv").stat().st_size < len(clicks)
            and tree(Path("data")) == ["clicks", "clicks/impressions.csv", "clicks/spec.toml"])


def test_a_spec_that_does_not_load_stops_the_save_and_nothing_is_written(work, clicks):
    staging = staged(clicks)
    inferred = infer_spec(staging.file)
    rows = adding.spec_rows(inferred)
    rows[1]["kind"] = "numeric"  # country holds text
    text = adding.spec_from_rows(inferred, rows, name="clicks")
    with pytest.raises(DataError, match=r"impressions\.csv, line 2: country is '\w+', not a finite number, but "
                                        r"field country is numeric \(spec\.toml, line \d+\)"):
        adding.save_data_set(staging, "clicks", text)
    assert not Path("data/clicks").exists() and tree(staging.folder) == ["impressions.csv"]
    with pytest.raises(DataError, match=r"spec\.toml, line 1: not valid TOML"):
        adding.save_data_set(staging, "clicks", "name = \n")
    assert not Path("data/clicks").exists()


def test_checks_warn_of_a_leak(work, clicks):
    lines = clicks.decode().splitlines()
    leaky = [lines[0] + ";copy"] + [f"{line};{line.rsplit(';', 1)[1]}x" for line in lines[1:]]
    staging = adding.stage_upload(io.BytesIO(("\n".join(leaky) + "\n").encode()), "leaky.csv")
    text = infer_spec(staging.file, label="clicked").to_toml(spec_dir=staging.folder)
    saved = adding.save_data_set(staging, "leaky", text)
    assert [c.code for c in saved.warnings] == ["possible_leak"] and saved.warnings[0].field == "copy"


def test_a_saved_data_set_is_read_for_a_run_as_the_app_reads_it(work, clicks):
    """What Explore does with a run trained on the new data set (sources.load_for_run with its spec): it was
    refused as 'a data set name or a spec file, not both'."""
    from autoint.datasets.generic import load_spec_dataset
    staging = staged(clicks)
    saved = adding.save_data_set(staging, "clicks", infer_spec(staging.file).to_toml(spec_dir=staging.folder))
    source = adding.saved_source(saved)
    schema = load_spec_dataset(read_spec(saved.spec), saved.folder).schema  # as a run trained on it records
    catalog, data = sources.load_for_run(source.dataset, source.spec, source.folder, schema)
    assert catalog is None and len(data.labels) == ROWS and data.schema.names == schema.names
