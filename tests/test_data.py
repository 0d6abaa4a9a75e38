import gzip
import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch

from autoint.data.dataset import DataError, split_indices
from autoint.datasets.movielens import build_dataset, label_ratings, load_movielens, read_movielens, release_bucket
from autoint.data.schema import UNKNOWN
from conftest import RECOVERED, REPO, U2999, need_shared


def write_ml(folder, users=None, movies=None, ratings=None, movies_bytes=None):
    folder.mkdir(parents=True, exist_ok=True)
    users = users if users is not None else ["1::F::1::10::48067", "2::M::25::12::70072", "3::M::56::16::55117"]
    (folder / "users.dat").write_text("\n".join(users) + "\n")
    if movies_bytes is None:
        movies = movies if movies is not None else [
            "1::Toy Story (1995)::Animation|Children's|Comedy",
            "2::Misérables, Les (1929)::Drama",
            "3::Six Pack (1930)::Action|Adventure|Comedy|Crime|Sci-Fi|Thriller",
            "4::Late (1969)::Western", "5::Early (1970)::Horror", "6::Last (2000)::Romance",
        ]
        movies_bytes = ("\n".join(movies) + "\n").encode("latin-1")
    (folder / "movies.dat").write_bytes(movies_bytes)
    ratings = ratings if ratings is not None else [
        f"{u}::{m}::{r}::{978300000 + 1000 * (u * 7 + m)}" for u in (1, 2, 3) for m in range(1, 7)
        for r in [(u + m) % 5 + 1]]
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n")
    return folder


def test_latin1_title_and_six_genres(tmp_path):
    ml = read_movielens(write_ml(tmp_path / "ml"))
    titles = dict(zip(ml.movies["movie_id"], ml.movies["title"]))
    assert titles[2] == "Misérables, Les (1929)"
    genres = dict(zip(ml.movies["movie_id"], ml.movies["genres"].to_list()))
    assert genres[3] == ["Action", "Adventure", "Comedy", "Crime", "Sci-Fi", "Thriller"]


def test_a_folder_is_read_once_while_its_files_stay_and_again_when_one_changes(tmp_path):
    folder = write_ml(tmp_path / "ml")
    first = read_movielens(folder)
    assert read_movielens(folder) is first  # the app's catalogue and then its data set: one read
    ratings = (folder / "ratings.dat").read_text().replace("1::1::3::", "1::1::5::")  # same size, other content
    (folder / "ratings.dat").write_text(ratings)
    changed = read_movielens(folder)
    assert changed is not first and changed.fingerprint != first.fingerprint
    rating = changed.ratings.filter((pl.col("user_id") == 1) & (pl.col("movie_id") == 1))["rating"].item()
    assert rating == 5
    (folder / "users.dat").write_text("1::X::1::10::48067\n")
    with pytest.raises(DataError, match="users.dat, line 1"):
        read_movielens(folder)
    write_ml(folder)  # fixed: an error is never kept
    assert read_movielens(folder).users["user_id"].to_list() == [1, 2, 3]


def test_six_genre_movie_encodes_all_six(tmp_path):
    ds = load_movielens(write_ml(tmp_path / "ml", ratings=[f"{u}::3::5::97830{u}000" for u in (1, 2, 3)] * 5))
    genre = ds.schema["Genre"]
    slots = ds.inputs.multivalued[0, 0].tolist()
    assert [genre.vocab[s] for s in slots] == ["Action", "Adventure", "Comedy", "Crime", "Sci-Fi", "Thriller"]


@pytest.mark.parametrize("year,bucket", [(1919, "1919-1929"), (1929, "1919-1929"), (1930, "1930-1939"),
                                         (1969, "1960-1969"), (1970, "1970"), (2000, "2000"), (1918, UNKNOWN)])
def test_release_buckets(year, bucket):
    assert release_bucket(year) == bucket


def test_buckets_from_titles(tmp_path):
    ml = read_movielens(write_ml(tmp_path / "ml"))
    from autoint.datasets.movielens import sample_frame
    frame = sample_frame(ml)
    by_movie = dict(zip(frame["movie_id"], frame["ReleaseTime"]))
    assert by_movie[2] == "1919-1929" and by_movie[3] == "1930-1939" and by_movie[4] == "1960-1969"
    assert by_movie[5] == "1970" and by_movie[6] == "2000"


def test_labels_drop_rating_three():
    ratings = pl.DataFrame({"rating": [1, 2, 3, 4, 5]})
    assert label_ratings(ratings)["label"].to_list() == [0, 0, 1, 1]


def test_split_is_80_10_10_fixed_and_disjoint():
    a, b = split_indices(1000, seed=5), split_indices(1000, seed=5)
    assert [len(a[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(np.intersect1d(a["train"], a["test"])) == 0 and len(np.union1d(np.union1d(a["train"], a["val"]),
                                                                              a["test"])) == 1000


def test_unseen_value_maps_to_unknown(synth_dataset):
    from autoint.data.encoding import encode_values
    schema = synth_dataset.schema
    columns = {f.name: ["never-seen"] for f in schema.fields if f.kind == "categorical"}
    columns["Genre"] = [["Action", "NotAGenre"]]
    columns["RequestTime"] = [schema["RequestTime"].min_value]
    x = encode_values(schema, columns)
    assert x.categorical.tolist() == [[0] * x.categorical.shape[1]]
    assert x.multivalued[0, 0, :2].tolist() == [schema["Genre"].index("Action"), 0]
    assert x.numeric.item() == 0.0


def test_with_ids_adds_two_fields(synth_dir):
    plain, with_ids = load_movielens(synth_dir), load_movielens(synth_dir, with_ids=True)
    assert len(with_ids.schema.fields) == len(plain.schema.fields) + 2
    assert {"UserID", "MovieID"} <= set(with_ids.schema.names)


def test_display_names(synth_dataset):
    s = synth_dataset.schema
    assert s["Gender"].show("M") == "Gender=M"
    assert s["Age"].show("18") == "Age=18-24"
    assert s["Occupation"].show("12") == "Occupation=programmer"
    assert s["Genre"].show(["Action", "Thriller"]) == "Genre=Action|Thriller"
    assert s["RequestTime"].show(978300760) == "RequestTime=2000-12-31 22:12"


def test_counts_on_u2999():
    ds = load_movielens(need_shared(U2999))
    d = ds.describe()
    assert (d["samples"], d["positives"]) == (360434, 279124)
    assert d["splits"] == {"train": 288347, "val": 36043, "test": 36044}
    assert [f["name"] for f in d["fields"]] == ["Gender", "Age", "Occupation", "Zipcode", "Genre", "ReleaseTime",
                                                "RequestTime"]


def test_label_counts_on_full_ml1m():
    ratings = pl.read_csv(need_shared(RECOVERED) / "ratings.csv.gz")
    labelled = label_ratings(ratings)
    assert labelled.height == 739012 and int(labelled["label"].sum()) == 575281
    assert len(split_indices(labelled.height)["test"]) == 73902


def test_reads_gzipped_ratings(tmp_path):
    folder = write_ml(tmp_path / "ml")
    plain = read_movielens(folder).ratings
    (folder / "ratings.dat.gz").write_bytes(gzip.compress((folder / "ratings.dat").read_bytes()))
    (folder / "ratings.dat").unlink()
    assert read_movielens(folder).ratings.equals(plain)


# ------------------------------------------------------------------ bad input: each its own message

def test_missing_file(tmp_path):
    folder = write_ml(tmp_path / "ml")
    (folder / "users.dat").unlink()
    with pytest.raises(DataError, match=r"users\.dat: file not found"):
        read_movielens(folder)


def test_missing_ratings(tmp_path):
    folder = write_ml(tmp_path / "ml")
    (folder / "ratings.dat").unlink()
    with pytest.raises(DataError, match="no ratings.dat or ratings.dat.gz"):
        read_movielens(folder)


def test_malformed_line_names_file_and_line(tmp_path):
    folder = write_ml(tmp_path / "ml", ratings=["1::1::5::978300760", "1::2::5", "1::3::4::978300761"])
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: expected 4 '::'-separated columns"):
        read_movielens(folder)


def test_non_integer_column(tmp_path):
    folder = write_ml(tmp_path / "ml", ratings=["1::1::5::978300760", "1::2::five::978300760"])
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: column rating must be an integer"):
        read_movielens(folder)


def test_unknown_field_value(tmp_path):
    folder = write_ml(tmp_path / "ml", users=["1::F::1::10::48067", "2::X::25::12::70072"])
    with pytest.raises(DataError, match=r"users\.dat, line 2: gender 'X' is not M or F"):
        read_movielens(folder)


def test_unknown_genre(tmp_path):
    folder = write_ml(tmp_path / "ml", movies=["1::A (1995)::Comedy", "2::B (1996)::Cartoons"])
    with pytest.raises(DataError, match=r"movies\.dat, line 2: genres 'Cartoons'"):
        read_movielens(folder)


def test_rating_for_unknown_movie(tmp_path):
    folder = write_ml(tmp_path / "ml", ratings=["1::1::5::978300760", "1::99::5::978300760"])
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: movie_id 99 is not a movie in movies\.dat"):
        read_movielens(folder)


def test_empty_file(tmp_path):
    folder = write_ml(tmp_path / "ml")
    (folder / "ratings.dat").write_text("")
    with pytest.raises(DataError, match=r"ratings\.dat: the file is empty"):
        read_movielens(folder)


def test_non_utf8_users(tmp_path):
    folder = write_ml(tmp_path / "ml")
    (folder / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::25::12::7\xff072\n")
    with pytest.raises(DataError, match=r"users\.dat, line 2: bytes that are not utf-8"):
        read_movielens(folder)


def test_describe_cli(synth_dir):
    out = subprocess.run([sys.executable, "-m", "autoint", "describe", "--data-dir", str(synth_dir)],
                         capture_output=True, text=True, cwd=REPO, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["samples"] == sum(info["splits"].values())
    assert {f["name"]: f["kind"] for f in info["fields"]}["Genre"] == "multivalued"
    assert info["positives"] < info["samples"]


def test_cli_bad_folder_exits_nonzero_with_message(tmp_path):
    out = subprocess.run([sys.executable, "-m", "autoint", "describe", "--data-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "no such folder" in out.stderr and "Traceback" not in out.stderr


def test_both_encoders_agree(synth_dataset):
    """`encode_values` (a few samples) and `encode_frame` (whole data sets) give the same tensors."""
    from autoint.data.encoding import encode_frame, encode_values
    schema, frame = synth_dataset.schema, synth_dataset.frame.head(50)
    columns = {f.name: frame[f.name].to_list() for f in schema.fields}
    columns["Genre"][0] = []  # no value at all: the <unknown> slot, in both
    few = encode_values(schema, columns)
    edited = frame.with_columns(pl.Series("Genre", columns["Genre"], dtype=pl.List(pl.String)))
    whole = encode_frame(schema, edited)
    assert all(torch.equal(a, b) for a, b in zip(few, whole))
    assert few.multivalued[0, 0].tolist()[:2] == [0, -1]
    assert all(torch.equal(a, b[:50]) for a, b in zip(encode_frame(schema, frame), synth_dataset.inputs))
