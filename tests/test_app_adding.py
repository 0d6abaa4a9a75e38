"""The "Add a data set" page (app/add_data.py) under AppTest: upload, one kind edited in the table, save; the new
data set is in data/, offered by sources.data_sources and chosen in the sidebar; every bad input is an error box
with the library's message, never a traceback, and leaves nothing behind. Each test runs in a temporary working
directory, so the page's data/ is a temporary folder."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from autoint.datasets.infer import infer_spec, write_spec
from autoint.datasets.spec import read_spec
from autoint.datasets.synth import generate_clicks
from autoint.workspace import adding, sources
from conftest import REPO
from test_app import finish_background

APP = str(REPO / "streamlit_app.py")
PAGE = "app/add_data.py"


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> bytes:
    folder = generate_clicks(tmp_path_factory.mktemp("add-clicks") / "clicks", rows=800, seed=4)
    return (folder / "impressions.csv").read_bytes()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The app's default data set: a small spec data set (no catalogue: nothing trains by itself)."""
    folder = generate_clicks(tmp_path_factory.mktemp("add-base") / "base", rows=300, seed=1)
    write_spec(infer_spec(folder / "impressions.csv").to_toml(spec_dir=folder), folder / "base.toml")
    return folder


@pytest.fixture
def work(tmp_path, monkeypatch, base) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(base))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv(adding.UPLOAD_LIMIT_ENV, raising=False)
    return work


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    finish_background(at, 60)
    assert not at.exception, at.exception  # never a traceback
    return at


def upload(at: AppTest, content: bytes, name: str = "impressions.csv") -> AppTest:
    (uploader,) = at.file_uploader  # keyed add_upload_N: a new key after each save or cancel empties it
    uploader.set_value((name, content, "text/csv"))
    return run(at)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def staging_folders() -> list[str]:
    return sorted(p.name for p in Path("data").glob(".staging-*")) if Path("data").is_dir() else []


def test_upload_edit_a_kind_save_and_the_sidebar_offers_it(work, clicks):
    at = upload(open_page(), clicks)
    assert errors(at) == [] and len(staging_folders()) == 1
    assert at.text_input(key="add_name").value == "impressions"
    assert any(f"up to **{adding.UPLOAD_LIMIT_MB} MB**" in c.value for c in at.caption)
    editor = at.data_editor[0]
    assert editor.key == "add_spec_table"
    table = editor.value.to_dict("records")
    assert [r["column"] for r in table] == ["impression_id", "country", "device", "ad_category", "price", "tags",
                                            "shown_at"]
    preview = next(d for d in at.dataframe if d.editing_mode == "read_only").value
    assert preview.shape == (20, 8)

    at.text_input(key="add_name").set_value("my-clicks")
    at.session_state["add_spec_table"] = {"edited_rows": {4: {"kind": "categorical"}}, "added_rows": [],
                                          "deleted_rows": []}  # price as codes
    run(at)
    assert errors(at) == [], errors(at)
    spec_text = next(c.value for c in at.code)
    assert 'name = "my-clicks"' in spec_text and "set by hand (inferred numeric" in spec_text
    at.button(key="add_save").click()
    run(at)
    assert errors(at) == [], errors(at)
    assert any("Saved **my-clicks**" in s.value for s in at.success)

    folder = Path("data/my-clicks")
    assert sorted(p.name for p in folder.iterdir()) == ["impressions.csv", "spec.toml"] and staging_folders() == []
    assert (folder / "impressions.csv").read_bytes() == clicks
    spec = read_spec(folder / "spec.toml")  # the saved spec is the edited table
    expected = {r["column"]: r for r in table if not r["left out"]}
    expected["price"]["kind"] = "categorical"
    assert {f.columns[0]: (f.kind, f.role, f.min_count) for f in spec.fields} == \
        {c: (r["kind"], r["role"] if isinstance(r["role"], str) else None, 1) for c, r in expected.items()}
    offered = [s for s in sources.data_sources(generate=False) if s.dataset == "my-clicks"]
    assert len(offered) == 1 and at.session_state["data_key"] == offered[0].key
    switcher = at.sidebar.selectbox(key="sidebar_data")
    assert switcher.value == offered[0].key and switcher.options == ["impressions (spec) · base",
                                                                    "my-clicks (spec) · my-clicks"]
    assert at.get("download_button") and at.get("page_link")
    assert [u.key for u in at.file_uploader] == ["add_upload_1"] and not at.data_editor  # the inputs start empty


def test_an_existing_name_is_refused_unless_replace_is_ticked(work, clicks):
    at = upload(open_page(), clicks)
    at.button(key="add_save").click()
    run(at)
    at = upload(at, clicks[:20000].rsplit(b"\n", 1)[0] + b"\n")  # the uploader's next key
    assert not at.checkbox(key="add_replace").value
    at.button(key="add_save").click()
    run(at)
    assert errors(at) == ["Not saved: a data set named 'impressions' exists (data/impressions/); choose another "
                          "name, or tick 'replace it' to put this one in its place."]
    assert Path("data/impressions/impressions.csv").read_bytes() == clicks
    at.checkbox(key="add_replace").check()
    at.button(key="add_save").click()
    run(at)
    assert errors(at) == [] and Path("data/impressions/impressions.csv").stat().st_size < 20000
    assert staging_folders() == []


def test_a_bad_name_and_a_spec_edit_naming_a_missing_column(work, clicks):
    at = upload(open_page(), clicks)
    at.text_input(key="add_name").set_value("../x")
    run(at)
    assert any(e.startswith("data set name '../x': a name is lower-case letters") for e in errors(at))
    assert at.button(key="add_save").disabled
    at.text_input(key="add_name").set_value("ok")
    at.session_state["add_spec_table"] = {"edited_rows": {0: {"column": "nope"}}, "added_rows": [],
                                          "deleted_rows": []}
    run(at)
    assert errors(at) == ["row 1 of the table (column 'nope'): impressions.csv has no such column; its columns: "
                          "impression_id, country, device, ad_category, price, tags, shown_at."]
    assert not [b for b in at.button if b.key == "add_save"]  # nothing to save
    at.button(key="add_cancel").click()
    run(at)
    assert staging_folders() == [] and not Path("data/ok").exists() and not Path("x").exists()


def test_a_label_is_asked_for_when_none_is_found_and_needs_a_rule_for_three_values(work):
    rows = "\n".join(f"{i % 5 + 1},{'abcdefg'[i % 7]},{i % 13}" for i in range(200))
    at = upload(open_page(), f"rating,genre,hour\n{rows}\n".encode(), "ratings.csv")
    assert len(errors(at)) == 1 and "no column could be the label" in errors(at)[0], errors(at)
    assert "Give a 0/1 column (--label COLUMN) or a rule" in errors(at)[0]
    at.text_input(key="add_label").set_value("rating")
    run(at)
    assert len(errors(at)) == 1 and "the column has 5 values in 200 rows" in errors(at)[0]
    assert 'give a rule that says which are clicks, e.g. --label "rating > 3"' in errors(at)[0]
    at.text_input(key="add_label").set_value("rating > 3")
    run(at)
    assert errors(at) == [] and at.data_editor[0].value["column"].tolist() == ["genre", "hour"]


@pytest.mark.parametrize("case", ["over the limit", "not UTF-8 nor latin-1", "empty", "bad file name"])
def test_a_bad_file_is_an_error_box_and_nothing_is_kept(work, monkeypatch, case):
    name, content = "clicks.csv", b"a,clicked\n" + b"x,1\ny,0\n" * 40
    if case == "over the limit":
        monkeypatch.setenv(adding.UPLOAD_LIMIT_ENV, "1")
        content = b"a,clicked\n" + b"x,1\n" * (300 * 1024)
        expected = "clicks.csv: 1.2 MB is over the limit of 1 MB"
    elif case == "not UTF-8 nor latin-1":
        content = b"a,clicked\nx,1\ncaf\x85,0\n"
        expected = "line 3, character 4: byte 0x85 is not UTF-8. It is not latin-1 text either"
    elif case == "empty":
        content, expected = b"", "the file is empty"
    else:
        name, expected = "../../clicks.csv", "file name '../../clicks.csv': give a name of letters"
    at = upload(open_page(), content, name)
    assert len(errors(at)) == 1 and expected in errors(at)[0], errors(at)
    assert "Traceback" not in errors(at)[0] and "Something went wrong" not in errors(at)[0]
    assert staging_folders() == [] and not at.data_editor
    assert sorted(p.name for p in work.rglob("*") if ".staging-" not in str(p)) in ([], ["data"])
    if case == "over the limit":
        assert "up to **1 MB**" in " ".join(c.value for c in at.caption)


def test_a_latin1_file_is_offered_a_conversion_and_then_reads(work):
    """Bytes that are not UTF-8 but read as latin-1: the error names the line, the staged copy is kept, and a button
    converts it; the spec and preview then read the text as latin-1 meant it."""
    rows = b"".join(b"caf\xe9,%d\n" % (i % 2) if i % 3 == 0 else b"th\xe9,%d\n" % (i % 2) for i in range(60))
    at = upload(open_page(), b"drink,clicked\n" + rows, "cafes.csv")
    assert len(errors(at)) == 1 and "line 2, character 4: byte 0xe9 is not UTF-8. It reads as latin-1" in errors(at)[0]
    assert len(staging_folders()) == 1 and not at.data_editor
    at.button(key="add_latin1").click()
    run(at)
    assert errors(at) == [] and at.data_editor[0].value["column"].tolist() == ["drink"]
    preview = next(d for d in at.dataframe if d.editing_mode == "read_only").value
    assert set(preview["drink"]) == {"café", "thé"}
    staged = next(p for p in work.rglob("cafes.csv"))
    assert staged.read_bytes().decode("utf-8").splitlines()[1] == "café,0"


def test_a_path_on_the_server(work, clicks, tmp_path):
    source = tmp_path / "exports" / "impressions.csv"
    source.parent.mkdir()
    source.write_bytes(clicks)
    at = open_page()
    at.text_input(key="add_path").set_value(str(tmp_path / "exports" / "nope.csv"))
    run(at)
    assert len(errors(at)) == 1 and "nope.csv: no such file" in errors(at)[0]
    at.text_input(key="add_path").set_value(str(source))
    run(at)
    assert errors(at) == [] and len(staging_folders()) == 1 and at.data_editor
    at.text_input(key="add_path").set_value("")
    run(at)
    assert staging_folders() == []  # the file given up: its staging folder removed
