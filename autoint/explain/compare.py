"""Compare models on what they combine: two or more runs of one data set, read on the same samples of one split.

For each run, two (F, F) maps over the field pairs, both symmetric with a zero diagonal:

  interactions  mean |k-SII| (autoint/explain/interactions.py) over the first `sampling.reading_rows` samples of
                the split's default sample: the samples, and the cached values, against which
                `sampling.model_readings` scores the readings of the attention (each page's and command's default
                reading of a run: `explain`, `interactions`, the Explore page).
  attention     raw alpha (Eq. 5) averaged over the same samples, the layers and the heads, both directions of a
                pair averaged: the readings' "raw" map.

An LR or FM run has no attention, and no embedded forward pass for the interaction game to put a field's baseline
embedding into: its maps are None, it says so, and every comparison with it is NaN (the other runs still compare).

For each pair of runs (A, B), in the order given:

  difference    B - A of the interaction maps, (F, F) logit: where B combines a pair more (+) or less (-) than A
                (None when either run has no interactions).
  agreement     Spearman rho over the F(F-1)/2 field pairs between A's and B's interactions, and between their
                attention (NaN when either run lacks that map).

Seed stability: runs of one configuration (the same model settings and training settings but the seed) form a
group; its stability is the mean of the pairwise rho of its runs, for the interactions and for the attention.
Close to 1: the seeds rank the field pairs alike; near 0: which pairs a model of that configuration combines (or
attends to) is down to its seed.

`measure_run` does the expensive part (cached on disk by `sampling`); `compare` is plain arithmetic on its results,
so hand-made arrays check it exactly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable, Sequence

import numpy as np

from ..datasets.registry import recorded_dataset
from ..errors import UsageError
from ..training.runs import Run
from .interactions import matrix_to_pairs, pairs_to_matrix, spearman
from .readings import PAPER_READING, has_attention
from .sampling import interactions_of_sample, model_readings, reading_rows, split_sample

Progress = Callable[[int, int], None]
# Training settings that do not change which model a configuration trains: a seed group may differ in them.
NOT_CONFIGURATION = ("seed", "device", "loader_workers")


class CompareError(UsageError):
    """Runs that cannot be compared (fewer than two, other data, other fields); the message says which and why."""


@dataclass
class RunPairs:
    """One run's field-pair maps on the compared samples."""

    name: str  # the run folder's name
    model: str  # AutoInt, LR, FM
    fields: list[str]
    interactions: np.ndarray | None  # (F, F) mean |k-SII| in logit, symmetric, zero diagonal; None: no game (LR, FM)
    attention: np.ndarray | None  # (F, F) raw alpha, symmetrised, zero diagonal; None: the model has no attention
    configuration: str = ""  # JSON of the settings but the seed: runs with equal strings form a seed group
    seed: int | None = None

    @property
    def notes(self) -> list[str]:
        """What this run lacks, in words: its comparisons that need it are NaN."""
        out = []
        if self.interactions is None:
            out.append(f"{self.name} is {self.model}, which has no embedded forward pass for the interaction game: its "
                       "interactions are not measured")
        if self.attention is None:
            out.append(f"{self.name} is {self.model}, which has no attention: there is none to compare")
        return out

    def to_json(self) -> dict:
        return {"name": self.name, "model": self.model, "seed": self.seed,
                "interactions": None if self.interactions is None else self.interactions.tolist(),
                "attention": None if self.attention is None else self.attention.tolist(), "notes": self.notes}


@dataclass
class PairComparison:
    """Run B against run A."""

    a: str
    b: str
    difference: np.ndarray | None  # (F, F) B - A of mean |k-SII|; None when either has no interactions
    interactions_rho: float  # Spearman rho over field pairs of the two interaction maps; NaN when either has none
    attention_rho: float  # the same of the two attention maps; NaN when either has none

    @property
    def largest_change(self) -> tuple[int, int, float] | None:
        """(i, j, B - A) of the field pair (i < j) whose mean |k-SII| changed most; None without a difference map."""
        if self.difference is None:
            return None
        i, j = divmod(int(np.triu(np.abs(self.difference), 1).argmax()), len(self.difference))
        return i, j, float(self.difference[i, j])

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "difference": None if self.difference is None else self.difference.tolist(),
                "interactions_rho": _finite(self.interactions_rho), "attention_rho": _finite(self.attention_rho)}


@dataclass
class SeedStability:
    """Runs of one configuration, differing only in seed: the mean pairwise rho."""

    runs: list[str]
    seeds: list[int | None]
    interactions: float  # mean pairwise rho of the interaction maps
    attention: float  # mean pairwise rho of the attention maps; NaN without attention

    def to_json(self) -> dict:
        return {"runs": self.runs, "seeds": self.seeds, "interactions_rho": _finite(self.interactions),
                "attention_rho": _finite(self.attention)}

    @property
    def text(self) -> str:
        """'3 seeds of one configuration: interactions ρ +0.91, attention ρ +0.45 (mean over the 3 pairs)'."""
        pairs = len(self.runs) * (len(self.runs) - 1) // 2
        return (f"{len(self.runs)} seeds of one configuration: interactions ρ {_rho(self.interactions)}, attention "
                f"ρ {_rho(self.attention)} (mean over the {pairs} pair{'s' if pairs > 1 else ''} of runs)")


@dataclass
class Comparison:
    fields: list[str]
    runs: list[RunPairs]
    pairs: list[PairComparison]  # every pair of runs (i < j, in the order given), B = the later
    stability: list[SeedStability]  # one per group of 2 or more runs of one configuration
    sample: dict = field(default_factory=dict)  # which samples: SplitSample.to_json of those measured

    def change_text(self, pair: PairComparison) -> str | None:
        """'Zipcode × Genre +0.103 logit': the pair's largest change of mean |k-SII| (B - A); None without one."""
        change = pair.largest_change
        if change is None:
            return None
        i, j, value = change
        return f"{self.fields[i]} × {self.fields[j]} {value:+.3f} logit"

    def to_json(self) -> dict:
        pairs = []
        for pair in self.pairs:
            change = pair.largest_change
            pairs.append({**pair.to_json(), "largest_change": None if change is None else
                          {"fields": [self.fields[change[0]], self.fields[change[1]]], "value": change[2]}})
        return {"fields": self.fields, "sample": self.sample, "runs": [r.to_json() for r in self.runs],
                "pairs": pairs, "seed_stability": [s.to_json() for s in self.stability],
                "method": "mean |k-SII| and raw attention (mean of samples, layers and heads, both directions of "
                          "a pair averaged) per field pair on the same samples; difference = B - A of mean |k-SII|; "
                          "rho = Spearman rank correlation over field pairs"}


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _rho(value: float) -> str:
    return "undefined" if not np.isfinite(value) else f"{value:+.2f}"


# ----------------------------------------------------------------------------- which runs go together

def configuration_of(run: Run) -> str:
    """The run's model settings (its loaded config, so defaults are filled in) and training settings but the seed,
    as one JSON string: two runs with the same string differ only in seed."""
    train = {k: v for k, v in (run.manifest.get("train_config") or {}).items() if k not in NOT_CONFIGURATION}
    return json.dumps({"model": run.model.config.to_json(), "train": train}, sort_keys=True)


def check_comparable(runs: Sequence[Run]) -> None:
    """Two or more runs trained on one data set, with the same fields and vocabularies (so one encoding of the
    samples fits them all); otherwise a CompareError naming the run that differs."""
    if len(runs) < 2:
        raise CompareError(f"compare needs two or more runs; got {len(runs)}. Name another run folder trained on "
                           "the same data set (python -m autoint runs lists them).")
    first = runs[0]
    for run in runs[1:]:
        if recorded_dataset(run.manifest.get("dataset")) != recorded_dataset(first.manifest.get("dataset")):
            raise CompareError(f"{run.path} was trained on {recorded_dataset(run.manifest.get('dataset'))}, "
                               f"{first.path} on {recorded_dataset(first.manifest.get('dataset'))}: compare reads "
                               "every run on the same samples of one data set. Compare runs of one data set.")
        if run.manifest.get("data_fingerprint") != first.manifest.get("data_fingerprint"):
            raise CompareError(f"{run.path} was trained on other data (fingerprint "
                               f"{run.manifest.get('data_fingerprint')}) than {first.path} "
                               f"({first.manifest.get('data_fingerprint')}): compare reads every run on the same "
                               "samples of one data set. Compare runs trained on the same files.")
        if run.schema != first.schema:
            raise CompareError(f"{run.path} and {first.path} have other fields or vocabularies "
                               f"({', '.join(run.schema.names)} against {', '.join(first.schema.names)}): "
                               "one encoding of the samples cannot fit both. Compare runs of one data set.")


# ----------------------------------------------------------------------------- measuring a run

def symmetrised(matrix: np.ndarray) -> np.ndarray:
    """(F, F) -> (F, F): each pair's mean of both directions, on both sides; zero diagonal."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return pairs_to_matrix(matrix_to_pairs(matrix), matrix.shape[-1])


def has_game(model) -> bool:
    """Whether the interaction game applies: AutoInt's embedded forward pass, into which the game puts a field's
    baseline embedding (LR and FM have none)."""
    return hasattr(model, "embed") and hasattr(model, "forward_embedded")


def measure_run(run: Run, dataset, split: str = "test", *, name: str | None = None, progress: Progress | None = None,
                cache_dir=None) -> RunPairs:
    """The run's mean |k-SII| and raw attention per field pair on the first `reading_rows` samples of the split's
    default sample, the samples `model_readings` reads, from its cache when they were computed before. `name`: how
    the run is named (default its folder's name)."""
    model = run.model
    sample = split_sample(dataset, split)
    rows = reading_rows(len(model.schema.fields), sample)
    interactions = attention = None
    if has_game(model):
        interactions = interactions_of_sample(run.path, model, dataset, sample, rows=rows, progress=progress,
                                              cache_dir=cache_dir).matrix()  # (F, F)
    if has_attention(model):
        readings = model_readings(run.path, model, dataset, split, progress=progress, cache_dir=cache_dir)
        attention = symmetrised(readings[PAPER_READING].matrix)  # (F, F)
    seed = (run.manifest.get("train_config") or {}).get("seed")
    return RunPairs(name or run.name, model.config.name, list(model.schema.names), interactions, attention,
                    configuration_of(run), seed)


def measured_sample(dataset, split: str, n_fields: int) -> dict:
    """Which samples `measure_run` reads, as words for a report: {"split", "rows", "of", "seed"}."""
    sample = split_sample(dataset, split)
    return sample.prefix(reading_rows(n_fields, sample)).to_json()


# ----------------------------------------------------------------------------- comparing

def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho over the field pairs between two (F, F) maps (each pair's two directions averaged)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise CompareError(f"rank agreement needs two (F, F) maps over the same fields; got {a.shape} and {b.shape}.")
    return spearman(matrix_to_pairs(a), matrix_to_pairs(b))


def difference_map(a: RunPairs, b: RunPairs) -> np.ndarray | None:
    """(F, F) B - A of mean |k-SII|: + where B combines the pair more than A; None when either has none."""
    if a.interactions is None or b.interactions is None:
        return None
    return np.asarray(b.interactions, dtype=np.float64) - np.asarray(a.interactions, dtype=np.float64)


def _agreement(a: np.ndarray | None, b: np.ndarray | None) -> float:
    return float("nan") if a is None or b is None else rank_agreement(a, b)


def compare_pair(a: RunPairs, b: RunPairs) -> PairComparison:
    return PairComparison(a.name, b.name, difference_map(a, b), _agreement(a.interactions, b.interactions),
                          _agreement(a.attention, b.attention))


def seed_groups(runs: Sequence[RunPairs]) -> list[list[RunPairs]]:
    """Runs of one configuration with different seeds, 2 or more a group, in the order given."""
    groups: dict[str, list[RunPairs]] = {}
    for run in runs:
        groups.setdefault(run.configuration, []).append(run)
    return [g for g in groups.values() if len(g) >= 2 and len({r.seed for r in g}) == len(g)]


def seed_stability(group: Sequence[RunPairs], pairs: Sequence[PairComparison] | None = None) -> SeedStability:
    """The mean pairwise rho of the group's interaction maps and of its attention maps (NaN when a run has no
    attention); `pairs` already compared are reused."""
    done = {(p.a, p.b): p for p in pairs or ()}
    compared = [done.get((a.name, b.name)) or compare_pair(a, b) for a, b in combinations(group, 2)]
    return SeedStability([r.name for r in group], [r.seed for r in group],
                         float(np.mean([p.interactions_rho for p in compared])),
                         float(np.mean([p.attention_rho for p in compared])))


def compare(runs: Sequence[RunPairs], sample: dict | None = None) -> Comparison:
    """Every pair of the measured runs (A earlier, B later in the order given) and each seed group's stability."""
    if len(runs) < 2:
        raise CompareError(f"compare needs two or more runs; got {len(runs)}.")
    fields = runs[0].fields
    for run in runs[1:]:
        if run.fields != fields:
            raise CompareError(f"{run.name} has fields {', '.join(run.fields)}, {runs[0].name} "
                               f"{', '.join(fields)}: compare runs of one data set.")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise CompareError(f"two runs are named alike ({', '.join(names)}): name each run once.")
    pairs = [compare_pair(a, b) for a, b in combinations(runs, 2)]
    return Comparison(list(fields), list(runs), pairs, [seed_stability(g, pairs) for g in seed_groups(runs)],
                      dict(sample or {}))
