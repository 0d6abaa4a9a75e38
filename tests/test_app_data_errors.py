"""Bad data in the app: an error box that names the file and the line, never a traceback, nothing written.

The library's messages are tested in test_reliability_data.py; here each broken folder goes
through the whole app (AppTest) with AUTOINT_DATA_DIR pointing at it.
"""
import re

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO

APP = str(REPO / "streamlit_app.py")
USERS = ["1::F::1::10::48067", "2::M::25::12::70072", "3::M::56::16::55117"]
MOVIES = ["1::Toy Story (1995)::Animation|Children's|Comedy", "2::Heat (1995)::Action|Crime|Thriller",
          "3::Late (1969)::Western"]
RATINGS = [f"{u}::{m}::{(u + m) % 5 + 1}::{978300000 + 1000 * (u * 7 + m)}" for u in (1, 2, 3) for m in (1, 2, 3)]


def lines(rows) -> bytes:
    return ("\n".join(rows) + "\n").encode()


CASES = {  # name: (files written, None = left out; what the error box must say)
    "truncated ratings": ({"ratings.dat": lines(RATINGS[:-1])[:-1] + b"\n3::3"},
                          r"ratings\.dat, line 9: expected 4 '::'-separated columns .* got 2"),
    "wrong separator": ({"ratings.dat": lines(r.replace("::", "\t") for r in RATINGS)},
                        r"ratings\.dat, line 1: expected 4 '::'-separated columns .*separate columns with tabs"),
    "empty ratings file": ({"ratings.dat": b""}, r"ratings\.dat: the file is empty"),
    "garbled title": ({"movies.dat": lines(MOVIES[:2]) + b"3::Late \x00(1969)::Western\n"},
                      r"movies\.dat, line 3, character 9: control character 0x00"),
    "users but no ratings": ({"movies.dat": None, "ratings.dat": None}, r"no movies\.dat and no ratings\.dat"),
}


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", list(CASES))
def test_broken_data_folder_shows_an_error_box_naming_file_and_line(monkeypatch, tmp_path, case):
    files, pattern = CASES[case]
    folder = tmp_path / "ml"
    folder.mkdir()
    for name, data in {"users.dat": lines(USERS), "movies.dat": lines(MOVIES), "ratings.dat": lines(RATINGS),
                       **files}.items():
        if data is not None:
            (folder / name).write_bytes(data)
    before = snapshot(folder)
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(folder))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(tmp_path / "runs"))

    at = AppTest.from_file(APP, default_timeout=120).run()

    assert not at.exception, at.exception  # no traceback element
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert str(folder) in errors[0] and re.search(pattern, errors[0]), errors[0]
    assert "Traceback" not in errors[0] and "Something went wrong" not in errors[0]  # a user error, not a bug
    assert snapshot(folder) == before, "the app wrote into the data folder"
    assert not (tmp_path / "runs" / ".jobs").exists(), "a training job was started on broken data"
    assert not at.get("plotly_chart")
