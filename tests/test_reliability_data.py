"""Bad data: every damaged MovieLens folder gives a DataError that names the file and the line.

Each case also goes through the CLI (`python -m autoint describe`): exit code 2, `error: ...`
on stderr, no traceback. A failed load writes nothing into the data folder (there is no data
cache: parsing ML-1M takes about 1 s and encoding 3 s, see the report in issue 7).
"""
import gzip
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from autoint.cli import main
from autoint.data.dataset import DataError
from autoint.datasets.movielens import load_movielens, read_movielens
from conftest import REPO

USERS = ["1::F::1::10::48067", "2::M::25::12::70072", "3::M::56::16::55117"]
MOVIES = ["1::Toy Story (1995)::Animation|Children's|Comedy", "2::Misérables, Les (1929)::Drama",
          "3::Heat (1995)::Action|Crime|Thriller", "4::Late (1969)::Western", "5::Early (1970)::Horror",
          "6::Last (2000)::Romance"]
RATINGS = [f"{u}::{m}::{(u + m) % 5 + 1}::{978300000 + 1000 * (u * 7 + m)}" for u in (1, 2, 3) for m in range(1, 7)]


def write(folder, users=USERS, movies=MOVIES, ratings=RATINGS, *, raw=None):
    """A small valid MovieLens folder; `raw` maps a file name to bytes that replace it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"users.dat": ("\n".join(users) + "\n").encode("utf-8"),
             "movies.dat": ("\n".join(movies) + "\n").encode("latin-1"),
             "ratings.dat": ("\n".join(ratings) + "\n").encode("utf-8")}
    files.update(raw or {})
    for name, data in files.items():
        if data is None:
            (folder / name).unlink(missing_ok=True)
        else:
            (folder / name).write_bytes(data)
    return folder


def snapshot(folder):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def refuse(folder, pattern, capsys=None):
    """The library raises DataError matching `pattern`, the CLI exits 2 with the same text, nothing is written."""
    before = snapshot(folder)
    with pytest.raises(DataError, match=pattern) as info:
        load_movielens(folder)
    assert snapshot(folder) == before, "a failed load left files behind"
    if capsys is not None:
        capsys.readouterr()
        assert main(["describe", "--data-dir", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and re.search(pattern, err) and "Traceback" not in err, err
        assert snapshot(folder) == before
    return str(info.value)


# ----------------------------------------------------------------------------- truncated and garbled ratings

@pytest.mark.parametrize("cut,pattern", [
    ("3::6", r"ratings\.dat, line 18: expected 4 '::'-separated columns .* got 2"),
    ("3::6::", r"ratings\.dat, line 18: expected 4 '::'-separated columns .* got 3"),
    ("3::6::2::", r"ratings\.dat, line 18: column timestamp is empty"),
])
def test_truncated_ratings(tmp_path, capsys, cut, pattern):
    text = ("\n".join(RATINGS[:-1]) + "\n" + cut).encode()  # the file ends mid-line, without a newline
    refuse(write(tmp_path / "ml", raw={"ratings.dat": text}), pattern, capsys)


def test_truncated_gzip_names_the_line_where_it_stops(tmp_path, capsys):
    lines = RATINGS * 1  # 18 lines, compressed, then cut
    packed = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    folder = write(tmp_path / "ml", raw={"ratings.dat": None, "ratings.dat.gz": packed[:len(packed) - 12]})
    message = refuse(folder, r"ratings\.dat\.gz, line \d+: the gzip data is cut off there", capsys)
    assert "Download the file again" in message


def test_garbled_gzip(tmp_path, capsys):
    packed = bytearray(gzip.compress(("\n".join(RATINGS * 50) + "\n").encode(), mtime=0))
    packed[40:60] = bytes(range(200, 220))  # overwrite part of the deflate stream
    folder = write(tmp_path / "ml", raw={"ratings.dat": None, "ratings.dat.gz": bytes(packed)})
    refuse(folder, r"ratings\.dat\.gz, line \d+: the gzip data (is damaged|is cut off)", capsys)


def test_not_gzip_at_all(tmp_path):
    folder = write(tmp_path / "ml", raw={"ratings.dat": None, "ratings.dat.gz": b"1::1::5::978300760\n"})
    refuse(folder, r"ratings\.dat\.gz, line 1: the gzip data is damaged")


def test_binary_garbage_in_ratings(tmp_path, capsys):
    lines = list(RATINGS)
    lines[4] = "2::\x00\x00\x07::5::978300760"
    refuse(write(tmp_path / "ml", ratings=lines), r"ratings\.dat, line 5, character 4: control character 0x00",
           capsys)


def test_non_utf8_in_ratings(tmp_path):
    text = ("\n".join(RATINGS[:6]) + "\n").encode() + b"2::1::\xff\xfe::978300760\n"
    refuse(write(tmp_path / "ml", raw={"ratings.dat": text}), r"ratings\.dat, line 7: bytes that are not utf-8")


def test_timestamp_out_of_range(tmp_path):
    lines = list(RATINGS)
    lines[2] = "1::3::4::99999999999999"
    refuse(write(tmp_path / "ml", ratings=lines), r"ratings\.dat, line 3: timestamp 99999999999999 is not a Unix "
                                                  r"time from 0 to 4102444799")


# ----------------------------------------------------------------------------- separators and columns

@pytest.mark.parametrize("separator,name", [("\t", "tabs"), (":", "single colons"), (",", "commas")])
def test_wrong_separator_says_which(tmp_path, capsys, separator, name):
    lines = [line.replace("::", separator) for line in RATINGS]
    message = refuse(write(tmp_path / "ml", ratings=lines), r"ratings\.dat, line 1: expected 4 '::'-separated "
                                                             r"columns", capsys)
    assert f"separate columns with {name}" in message


def test_csv_header_line(tmp_path):
    lines = ["userId,movieId,rating,timestamp"] + [line.replace("::", ",") for line in RATINGS]
    assert "commas" in refuse(write(tmp_path / "ml", ratings=lines), r"ratings\.dat, line 1:")


@pytest.mark.parametrize("file,lines,pattern", [
    ("ratings", [r.rsplit("::", 1)[0] for r in RATINGS], r"ratings\.dat, line 1: expected 4 .* got 3"),
    ("users", [u.rsplit("::", 1)[0] for u in USERS], r"users\.dat, line 1: expected 5 .* got 4"),
    ("movies", MOVIES[:2] + ["3::Heat (1995)"] + MOVIES[3:], r"movies\.dat, line 3: expected 3 .* got 2"),
    ("ratings", RATINGS[:3] + ["1::4::5::978300760::extra"] + RATINGS[4:], r"ratings\.dat, line 4: expected 4 .* got 5"),
])
def test_missing_or_extra_columns(tmp_path, capsys, file, lines, pattern):
    refuse(write(tmp_path / "ml", **{file: lines}), pattern, capsys)


@pytest.mark.parametrize("users,pattern", [
    (USERS[:2] + ["3::M::56::16::"], r"users\.dat, line 3: column zipcode is empty"),  # was a TypeError later on
    (USERS[:1] + ["2::::25::12::70072"] + USERS[2:], r"users\.dat, line 2: column gender is empty"),  # passed before
])
def test_empty_fields(tmp_path, users, pattern):
    refuse(write(tmp_path / "ml", users=users), pattern)


def test_blank_line_in_the_middle(tmp_path):
    message = refuse(write(tmp_path / "ml", ratings=RATINGS[:5] + [""] + RATINGS[5:]), r"ratings\.dat, line 6:")
    assert "blank" in message


# ----------------------------------------------------------------------------- titles (movies.dat is latin-1)

def test_titles_read_as_latin1_or_utf8(tmp_path):
    """Every byte is latin-1, so bytes alone cannot be 'wrong'; a UTF-8 re-save must give the same titles."""
    latin = read_movielens(write(tmp_path / "latin")).movies
    utf8 = read_movielens(write(tmp_path / "utf8", raw={"movies.dat": ("\n".join(MOVIES) + "\n").encode()})).movies
    assert latin["title"][1] == utf8["title"][1] == "Misérables, Les (1929)"


@pytest.mark.parametrize("byte", [b"\x00", b"\x1a", b"\x93", b"\x7f"])
def test_garbled_title_bytes(tmp_path, capsys, byte):
    """Garbled = bytes that decode to control characters (C0, DEL, C1): binary junk, or cp1252 quotes."""
    data = ("\n".join(MOVIES[:3]) + "\n").encode("latin-1") + b"4::Late " + byte + b"(1969)::Western\n" + \
        ("\n".join(MOVIES[4:]) + "\n").encode("latin-1")
    refuse(write(tmp_path / "ml", raw={"movies.dat": data}),
           rf"movies\.dat, line 4, character 9: control character {ord(byte):#04x}", capsys)


def test_byte_order_mark_is_ignored(tmp_path):
    folder = write(tmp_path / "ml", raw={"users.dat": ("\ufeff" + "\n".join(USERS) + "\n").encode()})
    assert read_movielens(folder).users["user_id"].to_list() == [1, 2, 3]


# ----------------------------------------------------------------------------- empty files, missing ratings, duplicates

@pytest.mark.parametrize("name,data", [("users.dat", b""), ("movies.dat", b"\n\n  \n"),
                                       ("ratings.dat", b"\r\n")])
def test_empty_files(tmp_path, capsys, name, data):
    refuse(write(tmp_path / "ml", raw={name: data}), rf"{re.escape(name)}: the file is empty", capsys)


def test_empty_gzip(tmp_path):
    folder = write(tmp_path / "ml", raw={"ratings.dat": None, "ratings.dat.gz": gzip.compress(b"")})
    refuse(folder, r"ratings\.dat\.gz: the file is empty")


def test_users_but_no_ratings(tmp_path, capsys):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "users.dat").write_text("\n".join(USERS) + "\n")
    message = refuse(folder, r"no ratings\.dat or ratings\.dat\.gz", capsys)
    assert "python -m autoint download" in message


def test_ratings_without_labels(tmp_path):
    """Every rating is 3 stars, which the paper's protocol drops: nothing to train on."""
    lines = [r.rsplit("::", 2)[0] + "::3::978300760" for r in RATINGS]
    refuse(write(tmp_path / "ml", ratings=lines), r"only 0 labelled ratings")


def test_duplicate_user_ids(tmp_path, capsys):
    users = USERS + ["1::M::18::4::12345"]
    refuse(write(tmp_path / "ml", users=users), r"users\.dat, line 4: user_id 1 appears again \(first on line 1\)",
           capsys)


def test_duplicate_movie_ids(tmp_path):
    refuse(write(tmp_path / "ml", movies=MOVIES + ["2::Again (1990)::Drama"]),
           r"movies\.dat, line 7: movie_id 2 appears again \(first on line 2\)")


def test_cli_subprocess_has_no_traceback(tmp_path):
    """The real entry point, once: exit 2, one `error:` line naming file and line."""
    folder = write(tmp_path / "ml", ratings=[r.replace("::", "\t") for r in RATINGS])
    out = subprocess.run([sys.executable, "-m", "autoint", "describe", "--data-dir", str(folder)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: ") and "ratings.dat, line 1:" in out.stderr and "tabs" in out.stderr
    assert "Traceback" not in out.stderr


# ----------------------------------------------------------------------------- property: garbage lines

GARBAGE = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=40),
    st.lists(st.one_of(st.integers(-10, 10).map(str), st.integers(0, 2**70).map(str),
                       st.sampled_from(["", " ", "x", "3.5", "+1", "1e3", "\t", "::", "\x00", "é"])),
             min_size=1, max_size=6).map("::".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inserts=st.lists(st.tuples(st.integers(0, len(RATINGS)), GARBAGE), min_size=1, max_size=3))
def test_garbage_lines_give_dataerror_at_an_inserted_line_or_parse(tmp_path, inserts):
    lines, inserted = list(RATINGS), []
    for position, garbage in inserts:
        lines.insert(position, garbage)
        inserted = [n + 1 if n >= position + 1 else n for n in inserted] + [position + 1]
    folder = write(tmp_path / "ml", ratings=lines)
    try:
        ml = read_movielens(folder)
    except DataError as exc:
        found = re.search(r"ratings\.dat, line (\d+)", str(exc))
        assert found, f"no line named: {exc}"
        assert int(found.group(1)) in inserted, (str(exc), inserted, lines)
    else:  # accepted: then each line really was a valid rating
        assert ml.ratings.height == len(lines)
