"""Small MovieLens-1M-, Criteo-, Avazu- and KDD12-format files whose labels follow planted field interactions.

Each writer produces the real format (MovieLens's three `::` files; Criteo's headerless TSV with empty
missing values and 8-hex-digit hashed categories; Avazu's 24-column CSV with a header, plain or gzipped;
KDD12's headerless TSV plus its user profile file) and `planted_interactions.json` beside it. The labels have
no main effects, so the planted pairs are the ground truth an explanation should find. For the spec-read
formats: every value of a planted field gets a random side (+1 or -1, half each), a numeric field's
side is its scaled value 2 s - 1, and the logit is the sum of weight x side x side over the planted pairs.
Values the model cannot tell apart (missing, or too rare to get their own id) have side 0.

Nothing written here is committed: the files are test data, generated on demand.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import swap_into_place
from ..data.schema import log2_transform
from .movielens import AGE_NAMES, GENRES
from .registry import SYNTH_DEFAULTS

GROUND_TRUTH = "planted_interactions.json"


def _hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct 32-bit hashes as 8 hex digits, as Criteo and Avazu write their categories."""
    values = rng.choice(2 ** 32, size=n, replace=False)
    return np.array([f"{v:08x}" for v in values])


class _Category:
    """A categorical column: a pool of values drawn with skewed frequencies, each with a side; optional rare
    values (each used once: below any minimum count) and missing values."""

    def __init__(self, rng, rows: int, pool, rare: float = 0.0, missing: float = 0.0, fresh=None):
        pool = np.asarray(pool)
        weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.5
        self.values = pool[rng.choice(len(pool), size=rows, p=weights / weights.sum())].astype(object)
        signs = np.where(rng.permutation(len(pool)) % 2 == 0, 1.0, -1.0)
        side_of = dict(zip(pool.tolist(), signs))
        self.side = np.array([side_of[v] for v in self.values])
        odd = rng.random(rows)
        rare_rows = np.flatnonzero(odd < rare)
        if len(rare_rows):  # values of the same form as the pool's (`fresh(n)`), each used once
            pooled = set(pool.tolist())
            fresh_values = [v for v in fresh(len(rare_rows) + 16) if v not in pooled][:len(rare_rows)]
            self.values[rare_rows] = fresh_values
            self.side[rare_rows] = 0.0
        missing_rows = np.flatnonzero((odd >= rare) & (odd < rare + missing))
        self.values[missing_rows] = None
        self.side[missing_rows] = 0.0


def _labels(rng, logit: np.ndarray) -> np.ndarray:
    return (rng.random(len(logit)) < 1 / (1 + np.exp(-logit))).astype(np.int64)


def _numeric_side(values: np.ndarray, transform: str = "log2") -> np.ndarray:
    """2 s - 1 for s the loader's min-max scaled value (its range is over the whole file, as here)."""
    t = log2_transform(values) if transform == "log2" else values.astype(np.float64)
    return 2 * (t - t.min()) / max(t.max() - t.min(), 1.0) - 1


def _stage(out: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent if out.parent.exists() else None))


def _publish(staging: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    if staging.parent.resolve() != out.parent.resolve():  # staged elsewhere (no folder yet): move it beside first
        staging = Path(shutil.move(str(staging), out.parent / staging.name))
    return swap_into_place(staging, out)


def _write(path: Path, lines, compress: bool = False) -> None:
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        fh.writelines(lines)


def _truth(staging: Path, fmt: str, rows: int, seed: int, planted: list[dict], files: list[str], **extra) -> None:
    truth = {"format": fmt, "rows": rows, "seed": seed, "planted": planted, "files": files, **extra,
             "note": "labels depend only on these field pairs; no field has a main effect"}
    (staging / GROUND_TRUTH).write_text(json.dumps(truth, indent=1))


def _cell(value) -> str:
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------- MovieLens-1M

FIRST_TIMESTAMP, LAST_TIMESTAMP = 956703932, 1046454590  # the span of the real ML-1M ratings
# Each interaction multiplies a +-1 "side" of one field by a +-1 side of another.
ACTION_SIDE = {"Action": 1, "Sci-Fi": 1, "Thriller": 1, "War": 1, "Western": 1, "Crime": 1, "Horror": 1,
               "Adventure": 1, "Romance": -1, "Drama": -1, "Musical": -1, "Children's": -1, "Animation": -1,
               "Comedy": -1, "Documentary": -1, "Fantasy": -1, "Film-Noir": 1, "Mystery": 1}
YOUTH_SIDE = {"Animation": 1, "Children's": 1, "Comedy": 1, "Fantasy": 1, "Musical": 1, "Adventure": 1,
              "Sci-Fi": 1, "Horror": 1, "Documentary": -1, "Drama": -1, "War": -1, "Western": -1, "Film-Noir": -1,
              "Mystery": -1, "Crime": -1, "Romance": -1, "Action": 1, "Thriller": -1}
MOVIELENS_PLANTED = [
    {"fields": ["Gender", "Genre"], "weight": 1.6,
     "rule": "men click action-side genres, women the others (Gender side x mean genre side)"},
    {"fields": ["Age", "Genre"], "weight": 1.2,
     "rule": "under-35s click youth-side genres, older users the others"},
    {"fields": ["RequestTime", "ReleaseTime"], "weight": 1.4,
     "rule": "late requests click releases from 1990 on, early requests older films"},
]


def generate_movielens(out: str | os.PathLike, users: int = SYNTH_DEFAULTS["users"],
                       movies: int = SYNTH_DEFAULTS["movies"], ratings: int = SYNTH_DEFAULTS["ratings"],
                       seed: int = SYNTH_DEFAULTS["seed"]) -> Path:
    """Write users.dat, movies.dat, ratings.dat (MovieLens-1M's format) and the ground truth into `out`,
    atomically. The labels have no main effects: only the planted pairs (`MOVIELENS_PLANTED`) say anything."""
    if users < 2 or movies < 2 or ratings < 10:
        raise UsageError("synthetic data needs at least 2 users, 2 movies and 10 ratings")
    if ratings > users * movies:
        raise UsageError(f"{ratings} ratings cannot be unique (user, movie) pairs among {users} users and "
                         f"{movies} movies; ask for at most {users * movies}.")
    rng = np.random.default_rng(seed)
    out = Path(out)

    ages = np.array([int(a) for a in AGE_NAMES])
    user_gender = rng.choice(["M", "F"], size=users)
    user_age = rng.choice(ages, size=users)
    user_occupation = rng.integers(0, 21, size=users)
    zip_pool = [f"{z:05d}" for z in rng.choice(100000, size=max(users // 4, 2), replace=False)]
    user_zip = rng.choice(zip_pool, size=users)

    movie_year = rng.integers(1940, 2001, size=movies)
    movie_genres = [list(rng.choice(GENRES, size=rng.integers(1, 4), replace=False)) for _ in range(movies)]

    pairs = rng.choice(users * movies, size=ratings, replace=False)
    rating_user, rating_movie = pairs // movies, pairs % movies
    timestamps = rng.integers(FIRST_TIMESTAMP, LAST_TIMESTAMP + 1, size=ratings)

    gender_side = np.where(user_gender == "M", 1.0, -1.0)
    age_side = np.where(user_age < 35, 1.0, -1.0)
    action_side = np.array([np.mean([ACTION_SIDE[g] for g in gs]) for gs in movie_genres])
    youth_side = np.array([np.mean([YOUTH_SIDE[g] for g in gs]) for gs in movie_genres])
    release_side = np.where(movie_year >= 1990, 1.0, -1.0)
    request_side = (timestamps - FIRST_TIMESTAMP) / (LAST_TIMESTAMP - FIRST_TIMESTAMP) * 2 - 1

    logit = (MOVIELENS_PLANTED[0]["weight"] * gender_side[rating_user] * action_side[rating_movie]
             + MOVIELENS_PLANTED[1]["weight"] * age_side[rating_user] * youth_side[rating_movie]
             + MOVIELENS_PLANTED[2]["weight"] * 2 * request_side * release_side[rating_movie])
    label = rng.random(ratings) < 1 / (1 + np.exp(-logit))
    stars = np.where(label, rng.choice([4, 5], size=ratings), rng.choice([1, 2], size=ratings))
    stars[rng.random(ratings) < 0.08] = 3  # dropped by the paper's protocol, as in the real data

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent if out.parent.exists() else None))
    try:
        with open(staging / "users.dat", "w", encoding="utf-8") as fh:
            for i in range(users):
                fh.write(f"{i + 1}::{user_gender[i]}::{user_age[i]}::{user_occupation[i]}::{user_zip[i]}\n")
        with open(staging / "movies.dat", "w", encoding="latin-1") as fh:
            for i in range(movies):
                fh.write(f"{i + 1}::Synthetic Movie {i + 1} ({movie_year[i]})::{'|'.join(movie_genres[i])}\n")
        with open(staging / "ratings.dat", "w", encoding="utf-8") as fh:
            fh.writelines(f"{u + 1}::{m + 1}::{s}::{t}\n"
                          for u, m, s, t in zip(rating_user, rating_movie, stars, timestamps))
        truth = {"seed": seed, "users": users, "movies": movies, "ratings": ratings, "planted": MOVIELENS_PLANTED,
                 "note": "labels depend only on these field pairs; no field has a main effect"}
        (staging / GROUND_TRUTH).write_text(json.dumps(truth, indent=1))
        (staging / "README").write_text("Synthetic MovieLens-format data written by `python -m autoint synth`.\n"
                                        "Not real ratings. See planted_interactions.json.\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staging), out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


# ----------------------------------------------------------------------------- Criteo

CRITEO_PLANTED = [
    {"fields": ["C1", "C2"], "weight": 3.0, "rule": "C1's side x C2's side"},
    {"fields": ["I1", "C3"], "weight": 4.0, "rule": "I1's scaled log2 value (2 s - 1) x C3's side"},
]


def generate_criteo(out: str | os.PathLike, rows: int = 20000, seed: int = 0, pool: int = 12,
                    rare: float = 0.03, missing: float = 0.05) -> Path:
    """`out/train.txt`: label, I1-I13, C1-C26, tab-separated, no header, empty = missing."""
    rng, out = np.random.default_rng(seed), Path(out)
    ints = []
    for i in range(13):
        # Integers spread over the log2 transform's range: floor(ln(v)^2) of exp(sqrt(u)) is about u. I1, planted,
        # is low or high (u in 0-5 or 30-36), so its side 2 s - 1 is near -1 or +1; I2 has negatives, as Criteo's.
        u = rng.uniform(0, 36, size=rows) if i else np.where(rng.random(rows) < 0.5, rng.uniform(0, 5, size=rows),
                                                              rng.uniform(30, 36, size=rows))
        values = np.round(np.exp(np.sqrt(u))).astype(np.int64) - (2 if i == 1 else 0)
        column = values.astype(object)
        if i > 0:  # I1 is planted: complete; the others miss values as Criteo's do
            column[rng.random(rows) < missing] = None
        ints.append(column)
    cats = [_Category(rng, rows, _hashes(rng, pool), rare=rare, missing=missing if j >= 3 else 0.0,
                      fresh=lambda n: _hashes(rng, n)) for j in range(26)]
    i1_side = _numeric_side(ints[0].astype(np.int64))
    logit = (CRITEO_PLANTED[0]["weight"] * cats[0].side * cats[1].side
             + CRITEO_PLANTED[1]["weight"] * i1_side * cats[2].side)
    label = _labels(rng, logit)
    staging = _stage(out)
    try:
        _write(staging / "train.txt", ("\t".join([str(label[r])] + [_cell(c[r]) for c in ints]
                                                 + [_cell(c.values[r]) for c in cats]) + "\n" for r in range(rows)))
        _truth(staging, "criteo", rows, seed, CRITEO_PLANTED, ["train.txt"])
        return _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- Avazu

AVAZU_COLUMNS = ["id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
                 "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type",
                 "device_conn_type"] + [f"C{i}" for i in range(14, 22)]
AVAZU_PLANTED = [
    {"fields": ["hour_of_day", "site_category"], "weight": 3.0,
     "rule": "hours 00-11 on one side, 12-23 on the other, x site_category's side"},
    {"fields": ["device_model", "app_id"], "weight": 3.0, "rule": "device_model's side x app_id's side"},
]
FIRST_HOUR = np.datetime64("2014-10-21T00")  # Avazu's train covers 10 days from 21 October 2014


def generate_avazu(out: str | os.PathLike, rows: int = 20000, seed: int = 0, file: str = "train", pool: int = 12,
                   rare: float = 0.03) -> Path:
    """`out/<file>`: Avazu's 24 columns with a header, comma-separated; gzipped when `file` ends in .gz."""
    rng, out = np.random.default_rng(seed), Path(out)
    hours = FIRST_HOUR + rng.integers(0, 240, size=rows).astype("timedelta64[h]")
    hour_text = np.array([str(h).replace("-", "").replace("T", "")[2:10] for h in hours])  # YYMMDDHH
    hour_of_day = hours.astype("datetime64[h]").astype(np.int64) % 24
    columns = {"id": np.array([str(v) for v in rng.choice(10 ** 18, size=rows, replace=False) + 10 ** 18]),
               "hour": hour_text}
    sides = {}
    for name in AVAZU_COLUMNS[3:]:
        if name in ("C1", "banner_pos", "device_type", "device_conn_type"):
            values = [str(v) for v in rng.choice(np.arange(8) + (1000 if name == "C1" else 0), size=4, replace=False)]
        elif name.startswith("C"):
            values = [str(v) for v in rng.choice(100000, size=pool, replace=False)]
        else:
            values = _hashes(rng, pool)
        cat = _Category(rng, rows, values, rare=rare if name in ("site_id", "device_ip", "app_id") else 0.0,
                        fresh=lambda n: _hashes(rng, n))
        columns[name], sides[name] = cat.values, cat.side
    hour_side = np.where(hour_of_day < 12, 1.0, -1.0)
    logit = (AVAZU_PLANTED[0]["weight"] * hour_side * sides["site_category"]
             + AVAZU_PLANTED[1]["weight"] * sides["device_model"] * sides["app_id"])
    columns["click"] = _labels(rng, logit)
    staging = _stage(out)
    try:
        lines = [",".join(AVAZU_COLUMNS) + "\n"]
        lines += (",".join(_cell(columns[c][r]) for c in AVAZU_COLUMNS) + "\n" for r in range(rows))
        _write(staging / file, lines, compress=file.endswith(".gz"))
        _truth(staging, "avazu", rows, seed, AVAZU_PLANTED, [file])
        return _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- KDD Cup 2012 track 2

KDD12_COLUMNS = ["Click", "Impression", "DisplayURL", "AdID", "AdvertiserID", "Depth", "Position", "QueryID",
                 "KeywordID", "TitleID", "DescriptionID", "UserID"]
KDD12_PLANTED = [
    {"fields": ["Gender", "AdvertiserID"], "weight": 3.0,
     "rule": "the user's profile gender (1 or 2) x AdvertiserID's side; users without a profile: 0"},
    {"fields": ["Position", "KeywordID"], "weight": 3.0,
     "rule": "Position's scaled log2 value (2 s - 1: positions 1 and 3 both give -1) x KeywordID's side"},
]


def generate_kdd12(out: str | os.PathLike, rows: int = 20000, seed: int = 0, users: int = 4000, pool: int = 12,
                   rare: float = 0.03) -> Path:
    """`out/training.txt` (12 tab-separated columns, no header) and `out/userid_profile.txt` (UserID, Gender,
    Age). Click counts clicks (label: Click > 0); UserID 0 is no user; a tenth of the users have no profile."""
    rng, out = np.random.default_rng(seed), Path(out)
    user_ids = rng.choice(np.arange(1, 10 ** 7), size=users, replace=False)
    gender = rng.choice(["1", "2"], size=users)
    age = rng.choice([str(a) for a in range(1, 7)], size=users)
    profiled = rng.random(users) >= 0.1
    row_user = rng.integers(0, users, size=rows)
    no_user = rng.random(rows) < 0.05
    user_column = np.where(no_user, "0", user_ids[row_user].astype(str))
    gender_side = np.where(gender == "1", 1.0, -1.0)[row_user] * (profiled[row_user] & ~no_user)
    depth = rng.integers(1, 4, size=rows)
    position = np.minimum(rng.integers(1, 4, size=rows), depth)
    columns = {"Depth": depth.astype(str), "Position": position.astype(str), "UserID": user_column}
    sides = {}
    for name in ("DisplayURL", "AdID", "AdvertiserID", "QueryID", "KeywordID", "TitleID", "DescriptionID"):
        cat = _Category(rng, rows, [str(v) for v in rng.choice(10 ** 6, size=pool, replace=False)],
                        rare=rare if name in ("AdID", "QueryID") else 0.0,
                        fresh=lambda n: [str(v) for v in rng.choice(10 ** 7, size=n, replace=False)])
        columns[name], sides[name] = cat.values, cat.side
    logit = (KDD12_PLANTED[0]["weight"] * gender_side * sides["AdvertiserID"]
             + KDD12_PLANTED[1]["weight"] * _numeric_side(position) * sides["KeywordID"])
    label = _labels(rng, logit)
    clicks = np.where(label == 1, rng.integers(1, 4, size=rows), 0)
    columns["Click"] = clicks.astype(str)
    columns["Impression"] = (clicks + rng.geometric(0.3, size=rows)).astype(str)
    staging = _stage(out)
    try:
        _write(staging / "training.txt", ("\t".join(_cell(columns[c][r]) for c in KDD12_COLUMNS) + "\n"
                                          for r in range(rows)))
        _write(staging / "userid_profile.txt", (f"{user_ids[u]}\t{gender[u]}\t{age[u]}\n"
                                                for u in range(users) if profiled[u]))
        _truth(staging, "kdd12", rows, seed, KDD12_PLANTED, ["training.txt", "userid_profile.txt"])
        return _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- a data set none of the above

CLICKS_COLUMNS = ["impression_id", "country", "device", "ad_category", "price", "tags", "shown_at", "clicked"]
CLICKS_PLANTED = [
    {"fields": ["country", "category"], "weight": 3.0, "rule": "country's side x ad_category's side"},
    {"fields": ["price", "device"], "weight": 4.0, "rule": "price's min-max scaled value (2 s - 1) x device's side"},
]
COUNTRIES = ("DE", "FR", "IT", "ES", "NL", "PL", "SE", "AT")
TAGS = ("sale", "new", "eco", "kids", "premium", "bundle")


def generate_clicks(out: str | os.PathLike, rows: int = 8000, seed: int = 0) -> Path:
    """`out/impressions.csv`: a shop's ad impressions, as a user might export them: semicolon-separated, a header,
    quoted text, tags as `a|b` (often none), a Unix time. Its spec is the user's to write
    (no code of ours names it); the ground truth names the fields as that spec in tests/ does."""
    rng, out = np.random.default_rng(seed), Path(out)
    country = _Category(rng, rows, np.array(COUNTRIES))
    device = _Category(rng, rows, np.array(["phone", "tablet", "desktop", "tv"]))
    category = _Category(rng, rows, np.array(["shoes", "books", "garden", "toys", "music", "tools"]))
    # Cheap or dear (1-30 or 150-200), so that price's side 2 s - 1 is mostly near -1 or +1.
    cheap = rng.random(rows) < 0.5
    price = np.round(np.where(cheap, rng.uniform(1, 30, size=rows), rng.uniform(150, 200, size=rows)), 2)
    price_side = _numeric_side(price, transform="minmax")
    logit = (CLICKS_PLANTED[0]["weight"] * country.side * category.side
             + CLICKS_PLANTED[1]["weight"] * price_side * device.side)
    clicked = _labels(rng, logit)
    shown = 1_600_000_000 + rng.integers(0, 30 * 86400, size=rows)
    tags = ["|".join(rng.choice(TAGS, size=rng.integers(0, 3), replace=False)) for _ in range(rows)]
    staging = _stage(out)
    try:
        lines = [";".join(CLICKS_COLUMNS) + "\n"]
        lines += (f'{100000 + r};{country.values[r]};"{device.values[r]}";{category.values[r]};{price[r]:.2f};'
                  f'{tags[r]};{shown[r]};{clicked[r]}\n' for r in range(rows))
        _write(staging / "impressions.csv", lines)
        _truth(staging, "clicks", rows, seed, CLICKS_PLANTED, ["impressions.csv"])
        return _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def planted_pairs(folder: str | os.PathLike) -> list[tuple[str, str]]:
    truth = json.loads((Path(folder) / GROUND_TRUTH).read_text())
    return [tuple(p["fields"]) for p in truth["planted"]]
