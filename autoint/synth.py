"""Synthetic MovieLens-format data whose labels follow planted field interactions.

The labels have no main effects: a field on its own says nothing, only its pairing with
another does. That makes the planted pairs the ground truth an explanation should find.
The planted pairs are written to `planted_interactions.json` beside the data.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .schema import AGE_NAMES, GENRES

GROUND_TRUTH = "planted_interactions.json"
FIRST_TIMESTAMP, LAST_TIMESTAMP = 956703932, 1046454590  # the span of the real ML-1M ratings
# Each interaction multiplies a +-1 "side" of one field by a +-1 side of another.
ACTION_SIDE = {"Action": 1, "Sci-Fi": 1, "Thriller": 1, "War": 1, "Western": 1, "Crime": 1, "Horror": 1,
               "Adventure": 1, "Romance": -1, "Drama": -1, "Musical": -1, "Children's": -1, "Animation": -1,
               "Comedy": -1, "Documentary": -1, "Fantasy": -1, "Film-Noir": 1, "Mystery": 1}
YOUTH_SIDE = {"Animation": 1, "Children's": 1, "Comedy": 1, "Fantasy": 1, "Musical": 1, "Adventure": 1,
              "Sci-Fi": 1, "Horror": 1, "Documentary": -1, "Drama": -1, "War": -1, "Western": -1, "Film-Noir": -1,
              "Mystery": -1, "Crime": -1, "Romance": -1, "Action": 1, "Thriller": -1}
PLANTED = [
    {"fields": ["Gender", "Genre"], "weight": 1.6,
     "rule": "men click action-side genres, women the others (Gender side x mean genre side)"},
    {"fields": ["Age", "Genre"], "weight": 1.2,
     "rule": "under-35s click youth-side genres, older users the others"},
    {"fields": ["RequestTime", "ReleaseTime"], "weight": 1.4,
     "rule": "late requests click releases from 1990 on, early requests older films"},
]


def generate(out: str | os.PathLike, users: int = 600, movies: int = 300, ratings: int = 40000,
             seed: int = 7) -> Path:
    """Write users.dat, movies.dat, ratings.dat and the ground truth into `out`, atomically."""
    if users < 2 or movies < 2 or ratings < 10:
        raise ValueError("synthetic data needs at least 2 users, 2 movies and 10 ratings")
    if ratings > users * movies:
        raise ValueError(f"{ratings} ratings cannot be unique (user, movie) pairs among {users} users and "
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

    logit = (PLANTED[0]["weight"] * gender_side[rating_user] * action_side[rating_movie]
             + PLANTED[1]["weight"] * age_side[rating_user] * youth_side[rating_movie]
             + PLANTED[2]["weight"] * 2 * request_side * release_side[rating_movie])
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
        truth = {"seed": seed, "users": users, "movies": movies, "ratings": ratings, "planted": PLANTED,
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


def planted_pairs(folder: str | os.PathLike) -> list[tuple[str, str]]:
    truth = json.loads((Path(folder) / GROUND_TRUTH).read_text())
    return [tuple(p["fields"]) for p in truth["planted"]]
