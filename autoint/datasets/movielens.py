"""MovieLens-1M: read the three `::` files, label and split as the paper did, build the schema, and a catalogue
of users and movies for any (user, movie, time).

Flow: files -> `read_movielens` (validated tables) -> `build_dataset` (labels, split, schema built on the
training split, encoded tensors). The MovieLens tables (age groups, occupations, genres, release buckets) live
here; nothing generic reads them. Nothing here knows about models.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import torch

from ..data.dataset import SPLIT_SEED, DataError, Dataset, file_fingerprint, split_indices
from ..data.encoding import encode_frame
from ..data.schema import UNKNOWN, Field, Schema
from .registry import MOVIELENS, files_missing, resolve_data_dir
from .dat import read_dat

YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
LAST_TIMESTAMP = 4102444799  # 2099-12-31 23:59:59 UTC

AGE_NAMES = {"1": "Under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}
OCCUPATION_NAMES = {
    "0": "other", "1": "academic/educator", "2": "artist", "3": "clerical/admin", "4": "college/grad student",
    "5": "customer service", "6": "doctor/health care", "7": "executive/managerial", "8": "farmer",
    "9": "homemaker", "10": "K-12 student", "11": "lawyer", "12": "programmer", "13": "retired",
    "14": "sales/marketing", "15": "scientist", "16": "self-employed", "17": "technician/engineer",
    "18": "tradesman/craftsman", "19": "unemployed", "20": "writer",
}
GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
MAX_GENRES = 6  # the most genres any ML-1M movie has


def release_bucket(year: int) -> str:
    """ReleaseTime as the authors bucketed it: decades up to 1969, then one bucket per year."""
    if 1919 <= year <= 1929:
        return "1919-1929"
    if 1930 <= year <= 1969:
        decade = year - year % 10
        return f"{decade}-{decade + 9}"
    if 1970 <= year <= 2000:
        return str(year)
    return UNKNOWN


RELEASE_BUCKETS = ("1919-1929", "1930-1939", "1940-1949", "1950-1959", "1960-1969") + tuple(
    str(y) for y in range(1970, 2001)
)


# ----------------------------------------------------------------------------- reading

def has_movielens_files(folder: str | os.PathLike) -> bool:
    """Whether a folder holds MovieLens-1M's files (users, movies, and ratings plain or gzipped)."""
    return not files_missing(MOVIELENS, folder)


def _ratings_path(folder: Path) -> Path:
    for name in ("ratings.dat", "ratings.dat.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no ratings.dat or ratings.dat.gz. Put the MovieLens-1M files there, "
                    f"or run `python -m autoint download --data-dir {folder}`.")


def _check_column(frame: pl.DataFrame, path: Path, column: str, allowed: set, what: str) -> None:
    bad = (~frame[column].is_in(list(allowed))).arg_true()
    if len(bad):
        n = int(bad[0])
        raise DataError(f"{path}, line {int(frame['line'][n])}: {column} {frame[column][n]!r} is not {what}.")


def _check_unique(frame: pl.DataFrame, path: Path, column: str | list[str]) -> None:
    columns = [column] if isinstance(column, str) else list(column)
    dup = frame.select(columns).is_duplicated().arg_true()
    if len(dup):
        key = frame.row(int(dup[0]), named=True)
        same = frame.filter(pl.all_horizontal(pl.col(c) == key[c] for c in columns))["line"].to_list()
        what = " ".join(f"{c} {key[c]}" for c in columns)
        raise DataError(f"{path}, line {same[1]}: {what} appears again (first on line {same[0]}); "
                        f"each must appear once. Remove the repeated line or re-download the file.")


@dataclass
class MovieLens:
    """The three validated tables of a MovieLens-1M folder."""

    folder: Path
    users: pl.DataFrame  # user_id, gender, age, occupation, zipcode
    movies: pl.DataFrame  # movie_id, title, genres (list[str]), year
    ratings: pl.DataFrame  # user_id, movie_id, rating, timestamp
    fingerprint: str


def read_movielens(folder: str | os.PathLike) -> MovieLens:
    """The folder's three tables, checked. Read once per process while the files stay as they were (the same
    paths as given, sizes, inodes and change times): the app reads a folder's catalogue and then, for a run, its
    data set, and the second read (0.7 s on u2999) would be the first's again. Tables are never changed in place."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder. Pass --data-dir, set AUTOINT_DATA_DIR, or run "
                        f"`python -m autoint download` to fetch MovieLens-1M into data/ml-1m.")
    paths = (folder / "users.dat", folder / "movies.dat", _ratings_path(folder))
    return _read_movielens(folder, paths, tuple(_file_state(path) for path in paths))


def _file_state(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None  # reading it says what is wrong
    return st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns


@functools.lru_cache(maxsize=2)
def _read_movielens(folder: Path, paths: tuple[Path, Path, Path], state: tuple) -> MovieLens:
    users_path, movies_path, ratings_path = paths

    users = read_dat(users_path, ["user_id", "gender", "age", "occupation", "zipcode"],
                     ["user_id", "age", "occupation"])
    _check_unique(users, users_path, "user_id")
    _check_column(users, users_path, "gender", {"M", "F"}, "M or F")
    _check_column(users, users_path, "age", {int(a) for a in AGE_NAMES}, f"one of {sorted(int(a) for a in AGE_NAMES)}")
    _check_column(users, users_path, "occupation", set(range(21)), "an occupation code 0-20")

    movies = read_dat(movies_path, ["movie_id", "title", "genres"], ["movie_id"], encoding="latin-1")
    _check_unique(movies, movies_path, "movie_id")
    genre_lists = movies["genres"].str.split("|")
    unknown = genre_lists.list.eval(pl.element().is_in(list(GENRES)).not_()).list.any().arg_true()
    if len(unknown):
        n = int(unknown[0])
        raise DataError(f"{movies_path}, line {int(movies['line'][n])}: genres {movies['genres'][n]!r} include one "
                        f"not in the MovieLens list ({', '.join(GENRES)}).")
    too_many = (genre_lists.list.len() > MAX_GENRES).arg_true()
    if len(too_many):
        n = int(too_many[0])
        raise DataError(f"{movies_path}, line {int(movies['line'][n])}: more than {MAX_GENRES} genres.")
    movies = movies.with_columns(
        genres=genre_lists,
        year=pl.col("title").str.extract(YEAR_IN_TITLE.pattern, 1).cast(pl.Int64, strict=False),
    )

    ratings = read_dat(ratings_path, ["user_id", "movie_id", "rating", "timestamp"],
                       ["user_id", "movie_id", "rating", "timestamp"])
    _check_column(ratings, ratings_path, "rating", {1, 2, 3, 4, 5}, "a rating 1-5")
    bad_time = (~ratings["timestamp"].is_between(0, LAST_TIMESTAMP)).arg_true()
    if len(bad_time):
        n = int(bad_time[0])
        raise DataError(f"{ratings_path}, line {int(ratings['line'][n])}: timestamp {ratings['timestamp'][n]} is not "
                        f"a Unix time from 0 to {LAST_TIMESTAMP} (1970 to 2099) in seconds.")
    _check_column(ratings, ratings_path, "user_id", set(users["user_id"].to_list()), f"a user in {users_path.name}")
    _check_column(ratings, ratings_path, "movie_id", set(movies["movie_id"].to_list()), f"a movie in {movies_path.name}")
    return MovieLens(folder, users.drop("line"), movies.drop("line"), ratings.drop("line"),
                     file_fingerprint([users_path, movies_path, ratings_path]))


# ----------------------------------------------------------------------------- labels

def click_of(rating: int | None) -> int | None:
    """The paper's label of one rating: 1 for 4-5 stars, 0 for 1-2, None for 3 stars (dropped) or no rating."""
    return None if rating is None or rating == 3 else int(rating > 3)


def label_ratings(ratings: pl.DataFrame) -> pl.DataFrame:
    """The paper's labels: rating > 3 is a click (1), rating < 3 is not (0), rating 3 is dropped."""
    return ratings.filter(pl.col("rating") != 3).with_columns(label=(pl.col("rating") > 3).cast(pl.Int8))


# ----------------------------------------------------------------------------- schema and encoding

def _vocab(values, order=None) -> tuple[str, ...]:
    seen = set(values)
    if order is not None:
        return (UNKNOWN,) + tuple(v for v in order if v in seen)
    return (UNKNOWN,) + tuple(sorted(seen, key=lambda v: (len(v), v)))


def sample_frame(ml: MovieLens) -> pl.DataFrame:
    """One row per labelled rating, joined with the user's and the movie's raw field values."""
    samples = label_ratings(ml.ratings).join(ml.users, on="user_id", how="left").join(
        ml.movies, on="movie_id", how="left")
    return samples.with_columns(
        Gender=pl.col("gender"),
        Age=pl.col("age").cast(pl.String),
        Occupation=pl.col("occupation").cast(pl.String),
        Zipcode=pl.col("zipcode"),
        Genre=pl.col("genres"),
        ReleaseTime=pl.col("year").map_elements(release_bucket, return_dtype=pl.String, skip_nulls=False)
        if samples.height else pl.lit(None, pl.String),
        RequestTime=pl.col("timestamp").cast(pl.Float64),
        UserID=pl.col("user_id").cast(pl.String),
        MovieID=pl.col("movie_id").cast(pl.String),
    )


def build_schema(train: pl.DataFrame, everything: pl.DataFrame, with_ids: bool = False) -> Schema:
    """Vocabularies come from the training split only; RequestTime scales over the whole data set."""
    fields = [
        Field("Gender", "categorical", _vocab(train["Gender"], ["M", "F"]), role="user"),
        Field("Age", "categorical", _vocab(train["Age"], list(AGE_NAMES)), display=AGE_NAMES, role="user"),
        Field("Occupation", "categorical", _vocab(train["Occupation"], list(OCCUPATION_NAMES)),
              display=OCCUPATION_NAMES, role="user"),
        Field("Zipcode", "categorical", _vocab(train["Zipcode"]), role="user"),
    ]
    if with_ids:
        fields += [Field("UserID", "categorical", _vocab(train["UserID"]), role="user"),
                   Field("MovieID", "categorical", _vocab(train["MovieID"]), role="item")]
    t_min, t_max = float(everything["RequestTime"].min()), float(everything["RequestTime"].max())
    if t_max <= t_min:
        t_max = t_min + 1.0
    fields += [
        Field("Genre", "multivalued", _vocab(train["Genre"].explode().drop_nulls(), GENRES), max_len=MAX_GENRES,
              role="item"),
        Field("ReleaseTime", "categorical", _vocab(train["ReleaseTime"].drop_nulls(), RELEASE_BUCKETS), role="item"),
        Field("RequestTime", "numeric", min_value=t_min, max_value=t_max, role="context", format="timestamp"),
    ]
    return Schema(tuple(fields))


@dataclass
class MovieLensDataset(Dataset):
    """A MovieLens-1M data set: the generic `Dataset` plus its validated tables (for a catalogue)."""

    movielens: MovieLens | None = None

    @property
    def data_dir(self) -> Path:
        return self.movielens.folder

    def describe(self) -> dict:
        return {
            "data_dir": str(self.movielens.folder),
            "samples": int(self.frame.height),
            "positives": int(self.labels.sum().item()),
            "fields": [{"name": f.name, "kind": f.kind, "vocabulary": f.size} for f in self.schema.fields],
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "fingerprint": self.fingerprint,
        }


def build_dataset(ml: MovieLens, with_ids: bool = False, seed: int = SPLIT_SEED,
                  schema: Schema | None = None) -> MovieLensDataset:
    """Label, split and encode. Pass `schema` (from a checkpoint) to encode with its vocabularies."""
    frame = sample_frame(ml)
    if frame.height < 10:
        raise DataError(f"{ml.folder}: only {frame.height} labelled ratings (ratings other than 3); "
                        f"at least 10 are needed to split 80/10/10.")
    splits = split_indices(frame.height, seed)
    if schema is None:
        schema = build_schema(frame[splits["train"]], frame, with_ids)
    inputs = encode_frame(schema, frame)
    labels = torch.from_numpy(frame["label"].to_numpy().astype(np.float32))
    return MovieLensDataset(schema, frame, inputs, labels, splits, ml.fingerprint, movielens=ml)


def load_movielens(data_dir=None, with_ids: bool = False, schema: Schema | None = None) -> MovieLensDataset:
    """MovieLens-1M from `data_dir` (default: $AUTOINT_DATA_DIR, else data/ml-1m)."""
    return build_dataset(read_movielens(resolve_data_dir(MOVIELENS, data_dir=data_dir)), with_ids=with_ids,
                         schema=schema)


# ----------------------------------------------------------------------------- catalog: users and movies by id

class Catalog:
    """Users, movies and known ratings of a MovieLens folder, to build a sample for any (user, movie, time)."""

    def __init__(self, ml: MovieLens):
        self.folder = ml.folder
        self.users = ml.users.sort("user_id")
        self.movies = ml.movies.sort("movie_id")
        self._user_row = {u: i for i, u in enumerate(self.users["user_id"].to_list())}
        self._movie_row = {m: i for i, m in enumerate(self.movies["movie_id"].to_list())}
        self._ratings = {(u, m): (r, t) for u, m, r, t in ml.ratings.select(
            "user_id", "movie_id", "rating", "timestamp").iter_rows()}
        # The times of labelled ratings (not 3 stars): the range RequestTime is scaled over (build_schema), so
        # any time in it is one a model trained on this data takes. 3-star ratings may lie outside it.
        labelled = ml.ratings.filter(pl.col("rating") != 3)["timestamp"]
        times = labelled if len(labelled) else ml.ratings["timestamp"]
        self.first_time, self.last_time = int(times.min()), int(times.max())

    def check_user(self, user_id: int) -> int:
        if user_id not in self._user_row:
            ids = self.users["user_id"]
            raise DataError(f"unknown user {user_id}: {self.folder / 'users.dat'} has users {ids.min()}-{ids.max()}.")
        return self._user_row[user_id]

    def check_movie(self, movie_id: int) -> int:
        if movie_id not in self._movie_row:
            ids = self.movies["movie_id"]
            raise DataError(f"unknown movie {movie_id}: {self.folder / 'movies.dat'} has movie ids "
                            f"{ids.min()}-{ids.max()} (not all are used).")
        return self._movie_row[movie_id]

    def check_time(self, timestamp: float) -> float:
        if not (self.first_time <= timestamp <= self.last_time):  # also refuses NaN
            def show(t):
                try:
                    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
                except (OverflowError, ValueError, OSError):
                    return f"{t!r} s"
            raise DataError(f"request time {show(timestamp)} is outside the data's range {show(self.first_time)} to "
                            f"{show(self.last_time)} (UTC, Unix seconds {self.first_time} to {self.last_time}); "
                            f"RequestTime is min-max scaled over that range, so choose a time in it.")
        return timestamp

    def user(self, user_id: int) -> dict:
        return self.users.row(self.check_user(user_id), named=True)

    def movie(self, movie_id: int) -> dict:
        return self.movies.row(self.check_movie(movie_id), named=True)

    def rating(self, user_id: int, movie_id: int) -> tuple[int, int] | None:
        """(stars, timestamp) when the user really rated the movie."""
        return self._ratings.get((user_id, movie_id))

    def user_values(self, user_id: int) -> dict:
        u = self.user(user_id)
        return {"Gender": u["gender"], "Age": str(u["age"]), "Occupation": str(u["occupation"]),
                "Zipcode": u["zipcode"], "UserID": str(user_id)}

    def item_values(self, movie_id: int) -> dict:
        """The movie's raw field values (Genre, ReleaseTime, MovieID)."""
        m = self.movie(movie_id)
        bucket = release_bucket(m["year"]) if m["year"] is not None else UNKNOWN
        return {"Genre": list(m["genres"]), "ReleaseTime": bucket, "MovieID": str(movie_id)}

    def item_ids(self) -> list[int]:
        """Every movie id, in increasing order (the order recommendations score them in)."""
        return self.movies["movie_id"].to_list()

    def item_summary(self, movie_id: int) -> dict:
        """What a recommendation shows of a movie."""
        m = self.movie(movie_id)
        return {"movie_id": movie_id, "title": m["title"], "genres": list(m["genres"])}

    def sample(self, user_id: int, movie_id: int, timestamp: float | None = None) -> dict:
        """Raw field values of one request. Without a time: the real rating's time, else the latest time."""
        if timestamp is None:
            known = self.rating(user_id, movie_id)
            timestamp = min(max(known[1], self.first_time), self.last_time) if known else self.last_time
        return {**self.user_values(user_id), **self.item_values(movie_id),
                "RequestTime": float(self.check_time(timestamp))}

    def user_caption(self, user_id: int) -> str:
        """`female, age 25-34, writer, zip 90210`: a user in words."""
        u = self.user(user_id)
        gender = {"M": "male", "F": "female"}.get(u["gender"], u["gender"])
        return (f"{gender}, age {AGE_NAMES.get(str(u['age']), u['age'])}, "
                f"{OCCUPATION_NAMES.get(str(u['occupation']), u['occupation'])}, zip {u['zipcode']}")

    def item_caption(self, movie_id: int) -> str:
        """`1995 · Animation, Children's, Comedy`: a movie in words."""
        m = self.movie(movie_id)
        return f"{m['year'] or 'year unknown'} · {', '.join(m['genres'])}"

    def click_of(self, user_id: int, movie_id: int) -> int | None:
        """The real label of a (user, movie) pair: the paper's click rule on its rating, None when unrated or 3."""
        known = self.rating(user_id, movie_id)
        return click_of(known[0] if known else None)

    def search_movies(self, text: str, limit: int = 50) -> pl.DataFrame:
        return self.movies.filter(pl.col("title").str.to_lowercase().str.contains(text.lower(), literal=True)).head(limit)
