"""MovieLens-1M: read the three `::` files, label and split as the paper did, encode fields.

Flow: files -> `read_movielens` (validated tables) -> `build_dataset` (labels, split,
schema built on the training split, encoded tensors). Nothing here knows about models.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .errors import AutoIntError
from .encoding import FieldTensors, encode_frame, encode_values  # noqa: F401 (re-exported)
from .schema import (AGE_NAMES, GENRES, MAX_GENRES, OCCUPATION_NAMES, RELEASE_BUCKETS, UNKNOWN, Field, Schema,
                     release_bucket)

DEFAULT_DATA_DIR = Path("data/ml-1m")
SPLIT_SEED = 2019
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
LAST_TIMESTAMP = 4102444799  # 2099-12-31 23:59:59 UTC


class DataError(AutoIntError, ValueError):
    """A data file that cannot be used; the message names the file, the line and the fix."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`--data-dir`, else `$AUTOINT_DATA_DIR`, else `data/ml-1m`."""
    if data_dir:
        return Path(data_dir)
    if os.environ.get("AUTOINT_DATA_DIR"):
        return Path(os.environ["AUTOINT_DATA_DIR"])
    return DEFAULT_DATA_DIR


# ----------------------------------------------------------------------------- reading

def _ratings_path(folder: Path) -> Path:
    for name in ("ratings.dat", "ratings.dat.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no ratings.dat or ratings.dat.gz. Put the MovieLens-1M files there, "
                    f"or run `python -m autoint download --data-dir {folder}`.")


def _gunzip(path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        # Decompress what can be, to say where the damage starts.
        partial, inflater = [], zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            for start in range(0, len(raw), 1 << 16):
                partial.append(inflater.decompress(raw[start:start + (1 << 16)]))
        except zlib.error:
            pass
        lines = b"".join(partial).count(b"\n")
        what = "is cut off" if isinstance(exc, EOFError) else "is damaged"
        raise DataError(f"{path}, line {lines + 1}: the gzip data {what} there, after {lines} complete lines "
                        f"({exc}). Download the file again (`python -m autoint download`).") from exc


def _read_text(path: Path, encoding: str) -> str:
    """Decode a data file. `latin-1` files (movies.dat) may also be UTF-8: a re-saved copy reads the same."""
    if not path.is_file():
        raise DataError(f"{path}: file not found. A MovieLens-1M folder holds users.dat, movies.dat and "
                        f"ratings.dat (or ratings.dat.gz); `python -m autoint download` fetches them.")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = _gunzip(path, raw)
    if encoding == "latin-1":  # every byte is latin-1, so only a valid UTF-8 file is read otherwise
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}, line {line}: bytes that are not {encoding} ({raw[exc.start:exc.end]!r}). "
                        f"MovieLens files are {encoding}; re-download the file.") from exc


# C0 controls but tab and newline, DEL and C1 controls: no MovieLens file has them (as latin-1, neither).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SEPARATOR_HINTS = (("\t", "tabs"), (",", "commas"), (";", "semicolons"), ("|", "'|'"), (":", "single colons"))


def read_dat(path: Path, columns: list[str], int_columns: list[str], encoding: str = "utf-8") -> pl.DataFrame:
    """Parse a `::`-separated file with polars, checking every line; errors name the line.

    polars reads one-byte separators only, so `::` becomes the unit separator first.
    """
    text = _read_text(path, encoding).replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected lines of the form {'::'.join(columns)}.")
    if text.startswith("\ufeff"):  # a byte-order mark from an editor
        text = text[1:]
    control = CONTROL.search(text)
    if control:
        line = text.count("\n", 0, control.start()) + 1
        column = control.start() - (text.rfind("\n", 0, control.start()) + 1) + 1
        raise DataError(f"{path}, line {line}, character {column}: control character {ord(control.group()):#04x}, "
                        f"which no MovieLens file has; the file is garbled (binary data, or text in another "
                        f"encoding). Re-download it.")
    lines = pl.Series("line", text.split("\n"))
    separators = lines.str.count_matches("::", literal=True)
    bad = (separators != len(columns) - 1).arg_true()
    if len(bad):
        n = int(bad[0])
        line = lines[n]
        hint = "the line is blank; remove it." if not line.strip() else "each line needs exactly these columns."
        if int(separators[n]) == 0:
            for char, name in SEPARATOR_HINTS:
                if line.count(char) == len(columns) - 1:
                    hint = f"the file seems to separate columns with {name}; MovieLens files use '::'."
                    break
        raise DataError(f"{path}, line {n + 1}: expected {len(columns)} '::'-separated columns "
                        f"({'::'.join(columns)}), got {int(separators[n]) + 1}: {line!r:.120}; {hint}")
    frame = pl.read_csv(io.BytesIO(text.replace("::", "\x1f").encode("utf-8")), separator="\x1f",
                        has_header=False, new_columns=columns, quote_char=None,
                        schema={c: pl.String for c in columns})
    for column in columns:  # polars reads an empty field as null
        empty = frame[column].is_null().arg_true()
        if len(empty):
            raise DataError(f"{path}, line {int(empty[0]) + 1}: column {column} is empty; "
                            f"every line needs {'::'.join(columns)}.")
    for column in int_columns:
        as_int = frame[column].cast(pl.Int64, strict=False)
        bad = as_int.is_null().arg_true()
        if len(bad):
            n = int(bad[0])
            raise DataError(f"{path}, line {n + 1}: column {column} must be an integer, got {frame[column][n]!r}.")
        frame = frame.with_columns(as_int.alias(column))
    return frame.with_row_index("line", offset=1)


def _check_values(frame: pl.DataFrame, path: Path, column: str, allowed: set, what: str) -> None:
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


def file_fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def read_movielens(folder: str | os.PathLike) -> MovieLens:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder. Pass --data-dir, set AUTOINT_DATA_DIR, or run "
                        f"`python -m autoint download` to fetch MovieLens-1M into data/ml-1m.")
    users_path, movies_path, ratings_path = folder / "users.dat", folder / "movies.dat", _ratings_path(folder)

    users = read_dat(users_path, ["user_id", "gender", "age", "occupation", "zipcode"],
                     ["user_id", "age", "occupation"])
    _check_unique(users, users_path, "user_id")
    _check_values(users, users_path, "gender", {"M", "F"}, "M or F")
    _check_values(users, users_path, "age", {int(a) for a in AGE_NAMES}, f"one of {sorted(int(a) for a in AGE_NAMES)}")
    _check_values(users, users_path, "occupation", set(range(21)), "an occupation code 0-20")

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
    _check_values(ratings, ratings_path, "rating", {1, 2, 3, 4, 5}, "a rating 1-5")
    bad_time = (~ratings["timestamp"].is_between(0, LAST_TIMESTAMP)).arg_true()
    if len(bad_time):
        n = int(bad_time[0])
        raise DataError(f"{ratings_path}, line {int(ratings['line'][n])}: timestamp {ratings['timestamp'][n]} is not "
                        f"a Unix time from 0 to {LAST_TIMESTAMP} (1970 to 2099) in seconds.")
    _check_values(ratings, ratings_path, "user_id", set(users["user_id"].to_list()), f"a user in {users_path.name}")
    _check_values(ratings, ratings_path, "movie_id", set(movies["movie_id"].to_list()), f"a movie in {movies_path.name}")
    return MovieLens(folder, users.drop("line"), movies.drop("line"), ratings.drop("line"),
                     file_fingerprint([users_path, movies_path, ratings_path]))


# ----------------------------------------------------------------------------- labels and split

def label_ratings(ratings: pl.DataFrame) -> pl.DataFrame:
    """The paper's labels: rating > 3 is a click (1), rating < 3 is not (0), rating 3 is dropped."""
    return ratings.filter(pl.col("rating") != 3).with_columns(label=(pl.col("rating") > 3).cast(pl.Int8))


def split_indices(n: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """A random 80/10/10 train/validation/test split, fixed by `seed`."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(SPLIT_FRACTIONS[0] * n), int(SPLIT_FRACTIONS[1] * n)
    return {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
            "test": np.sort(order[n_train + n_val:])}


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
class Dataset:
    """Encoded samples with their split; `frame` keeps the raw values for display.

    `movielens` is set for MovieLens-1M (its catalogue of users and movies); a data set read from a spec
    (autoint.datasets) has none and says where it came from in `source` instead.
    """

    schema: Schema
    frame: pl.DataFrame
    inputs: FieldTensors
    labels: torch.Tensor  # (N,) float32
    splits: dict[str, np.ndarray]
    fingerprint: str
    movielens: MovieLens | None = None
    source: dict | None = None  # dataset, spec, data_dir, files, split, about

    @property
    def data_dir(self) -> Path:
        return self.movielens.folder if self.movielens is not None else Path(self.source["data_dir"])

    def split(self, name: str) -> tuple[FieldTensors, torch.Tensor]:
        if name not in self.splits:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(self.splits)}")
        rows = torch.from_numpy(self.splits[name])
        return self.inputs.index(rows), self.labels[rows]

    def describe(self) -> dict:
        if self.movielens is None:
            return self._describe_spec()
        return {
            "data_dir": str(self.movielens.folder),
            "samples": int(self.frame.height),
            "positives": int(self.labels.sum().item()),
            "fields": [{"name": f.name, "kind": f.kind, "vocabulary": f.size} for f in self.schema.fields],
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "fingerprint": self.fingerprint,
        }


    def _describe_spec(self) -> dict:
        fields, columns = [], {kind: 0 for kind in ("categorical", "multivalued", "numeric")}
        for f in self.schema.fields:
            entry = {"name": f.name, "kind": f.kind, "vocabulary": f.size, "role": f.role}
            j = columns[f.kind]
            columns[f.kind] += 1
            if f.kind == "numeric":
                entry.update(transform=f.transform, range=[f.min_value, f.max_value])
            else:  # the share of samples whose value is `<unknown>` (missing, rare or unseen in training)
                slots = self.inputs.categorical[:, j] if f.kind == "categorical" else self.inputs.multivalued[:, j, 0]
                entry["unknown_share"] = round(float((slots == 0).float().mean()), 6) if len(slots) else 0.0
            fields.append(entry)
        return {**self.source, "samples": int(self.frame.height), "positives": int(self.labels.sum().item()),
                "fields": fields, "splits": {k: int(len(v)) for k, v in self.splits.items()},
                "fingerprint": self.fingerprint}


def build_dataset(ml: MovieLens, with_ids: bool = False, seed: int = SPLIT_SEED, schema: Schema | None = None) -> Dataset:
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
    return Dataset(schema, frame, inputs, labels, splits, ml.fingerprint, ml)


def load_dataset(data_dir=None, with_ids: bool = False, schema: Schema | None = None) -> Dataset:
    return build_dataset(read_movielens(resolve_data_dir(data_dir)), with_ids=with_ids, schema=schema)


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
            from datetime import datetime, timezone

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

    def movie_values(self, movie_id: int) -> dict:
        m = self.movie(movie_id)
        bucket = release_bucket(m["year"]) if m["year"] is not None else UNKNOWN
        return {"Genre": list(m["genres"]), "ReleaseTime": bucket, "MovieID": str(movie_id)}

    def sample(self, user_id: int, movie_id: int, timestamp: float | None = None) -> dict:
        """Raw field values of one request. Without a time: the real rating's time, else the latest time."""
        if timestamp is None:
            known = self.rating(user_id, movie_id)
            timestamp = min(max(known[1], self.first_time), self.last_time) if known else self.last_time
        return {**self.user_values(user_id), **self.movie_values(movie_id),
                "RequestTime": float(self.check_time(timestamp))}

    def search_movies(self, text: str, limit: int = 50) -> pl.DataFrame:
        return self.movies.filter(pl.col("title").str.to_lowercase().str.contains(text.lower(), literal=True)).head(limit)
