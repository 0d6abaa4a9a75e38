"""The paper's MovieLens-1M numbers and this project's reproduction of them (benchmarks/reproduce.py)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import AutoIntError

# Song et al., CIKM 2019, Tables 2, 4 and 5 on MovieLens-1M: (test AUC, test logloss)
PAPER_ML1M = {
    "LR": (0.7716, 0.4424), "FM": (0.8252, 0.3998), "AutoInt w/o residual": (0.8299, 0.3959),
    "AutoInt": (0.8456, 0.3797), "AutoInt+": (0.8488, 0.3753),
}
RESULTS_ROOT = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


FAITHFULNESS_RESULTS = RESULTS_ROOT / "attention-faithfulness"
READABLE_RESULTS = FAITHFULNESS_RESULTS / "aligned"  # the run that chose the readable preset (its `readable` verdict)
# The paper's Fig. 7(b) reads these three pairs off MovieLens-1M's averaged attention as the strong ones.
FIG7B_PAIRS = (("Gender", "Genre"), ("Age", "Genre"), ("RequestTime", "ReleaseTime"))
REPRODUCTION_EXPERIMENTS = ("table", "depth", "embedding")


class ResultsError(AutoIntError, ValueError):
    """A committed results file that cannot be read; the message names it and the benchmark that rewrites it."""


def reproduction_folders(root: str | Path = RESULTS_ROOT) -> list[Path]:
    """Folders written by benchmarks/reproduce.py (other benchmarks' results.json are left out)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.glob("*/results.json")):
        try:
            summary = json.loads(path.read_text()).get("summary", {})
        except (OSError, json.JSONDecodeError, AttributeError):
            out.append(path.parent)  # unreadable: listed, so that the page says what is wrong with it
            continue
        if any(experiment in summary for experiment in REPRODUCTION_EXPERIMENTS):
            out.append(path.parent)
    return out


def load_faithfulness(folder: str | Path | None = None) -> dict | None:
    """benchmarks/attention_faithfulness.py's results.json ({"meta", "summary", "verdict", "runs"}), or None."""
    path = Path(folder if folder is not None else FAITHFULNESS_RESULTS) / "results.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read the faithfulness results ({exc}); rerun "
                         f"benchmarks/attention_faithfulness.py.") from exc
    for key in ("meta", "summary"):
        if key not in data:
            raise ResultsError(f"{path}: the key {key!r} is missing; rerun benchmarks/attention_faithfulness.py.")
    return data


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value else None


def readable_verdict(folder: str | Path | None = None) -> str | None:
    """One line on the readable preset from the faithfulness benchmark's `readable` verdict (READABLE_RESULTS:
    the reading it shows, its split and median per-sample ρ, its test AUC against the paper's configuration, the
    goal met or not, and the paper's configuration beside it); None when the file is missing, unreadable or
    shaped otherwise: nothing on a page needs it."""
    try:
        verdict = json.loads((Path(folder if folder is not None else READABLE_RESULTS) / "results.json")
                             .read_text()).get("readable")
        variants, chosen = verdict["variants"], verdict["preset"]
        row, goal = variants[chosen], verdict.get("goal") or {}
        split, median = _number(row["split_rho"]), _number(row["median_rho"])
        readings = [r for r in row.get("readings") or [] if isinstance(r, str)]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
    if split is None or median is None:
        return None
    shown = max(set(readings), key=readings.count) if readings else "its best reading"
    line = f"The readable preset ({chosen}) shows {shown}: split ρ {split:+.2f}, median per-sample ρ {median:+.2f}"
    if (auc := _number(row.get("auc_change"))) is not None:
        line += f", test AUC {auc:+.4f} against the paper's configuration"
    if _number(goal.get("split_rho")) is not None and _number(goal.get("median_rho")) is not None:
        line += (f"; goal (split ρ ≥ {goal['split_rho']}, median ≥ {goal['median_rho']}) "
                 f"{'met' if row.get('goal') is True else 'not met'}")
    paper = variants.get(verdict.get("baseline")) if isinstance(verdict.get("baseline"), str) else None
    if isinstance(paper, dict) and _number(paper.get("split_rho")) is not None \
            and _number(paper.get("median_rho")) is not None:
        line += f" (the paper's configuration: {paper['split_rho']:+.2f} and {paper['median_rho']:+.2f})"
    seeds = len(readings)
    return line + (f", {seeds} seeds" if seeds else "") + ". benchmarks/results/attention-faithfulness/aligned"


def fig7b_rows(summary: dict, variants: dict[str, str]) -> list[dict]:
    """For each of Fig. 7(b)'s pairs and each model ({variant key: name}): its rank among the field pairs by
    attention and by measured interaction, per seed, as the benchmark found them."""
    rows = []
    for a, b in FIG7B_PAIRS:
        for variant, name in variants.items():
            row = summary.get(variant)
            if not row:
                continue
            attention, interaction = row.get("fig7b_attention_ranks", {}), row.get("fig7b_interaction_ranks", {})
            key = next((k for k in (f"{a}-{b}", f"{b}-{a}") if k in attention), None)
            if key is None:
                continue
            rows.append({"pair": f"{a} × {b}", "model": name,
                         "rank by attention": ", ".join(str(r) for r in attention[key]),
                         "rank by interaction": ", ".join(str(r) for r in interaction.get(key, []))})
    return rows


def _stat(stat: dict | None, digits: int = 2, signed: bool = True) -> str:
    if not stat or stat.get("mean") is None or stat["mean"] != stat["mean"]:
        return "-"
    sign = "+" if signed else ""
    return f"{stat['mean']:{sign}.{digits}f} ± {stat['std']:.{digits}f}"


def scorecard_rows(summary: dict, titles: dict[str, str]) -> list[dict]:
    """Every reading x every variant of the faithfulness benchmark (`titles`: reading name -> words): split-level
    rho, median per-sample rho with its quartiles, precision@3 (mean ± std over seeds), with the variant's test AUC
    and head entropy; a mark on the reading each seed's model shows first (its best)."""
    rows = []
    for variant, row in summary.items():
        readings = row.get("readings") or {}
        app = readings.get("_app", {}).get("readings", [])
        for name, title in titles.items():
            r = readings.get(name)
            if not r:
                continue
            rows.append({"variant": variant, "reading": title, "split ρ": _stat(r.get("split_rho")),
                         "median per-sample ρ": _stat(r.get("median")),
                         "quartiles (mean)": f"{r['q1']['mean']:+.2f} to {r['q3']['mean']:+.2f}"
                         if r.get("q1", {}).get("mean") is not None else "-",
                         "precision@3": _stat(r.get("precision_at_3"), signed=False),
                         "shown first (seeds)": app.count(name),
                         "test AUC": _stat(row.get("test_auc"), 4, signed=False),
                         "head entropy": _stat(row.get("head_entropy"), 3, signed=False)})
    return rows


def fig7b_reading_rows(summary: dict, variants: dict[str, str], titles: dict[str, str]) -> list[dict]:
    """Fig. 7(b)'s pairs: their rank among the field pairs (1 = strongest) under every reading and under the
    measured interactions, per seed, for each model ({variant key: name})."""
    rows = []
    for a, b in FIG7B_PAIRS:
        for variant, name in variants.items():
            row = summary.get(variant) or {}
            readings = row.get("readings") or {}
            interaction = row.get("fig7b_interaction_ranks", {})
            key = next((k for k in (f"{a}-{b}", f"{b}-{a}") if k in interaction), None)
            if key is None:
                continue
            out = {"pair": f"{a} × {b}", "model": name}
            for reading, title in titles.items():
                ranks = (readings.get(reading) or {}).get("fig7b_ranks", {})
                found = ranks.get(key) or ranks.get("-".join(reversed(key.split("-"))))
                out[title] = ", ".join(str(r) for r in found) if found else "-"
            out["k-SII"] = ", ".join(str(r) for r in interaction.get(key, []))
            rows.append(out)
    return rows


def load_reproduction(folder: str | Path) -> dict:
    """`results.json` written by benchmarks/reproduce.py: {"meta", "summary", "runs"}."""
    path = Path(folder) / "results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read the reproduction results ({exc}); rerun benchmarks/reproduce.py.") from exc
    for key in ("meta", "summary", "runs"):
        if key not in data:
            raise ResultsError(f"{path}: the key {key!r} is missing; rerun benchmarks/reproduce.py.")
    return data


SETTING_NAMES = {"lr": "lr", "lr_decay": "lr schedule", "weight_decay": "weight decay", "dropout": "dropout",
                 "layer_norm": "layer norm", "scaled_attention": "scaled attention", "residual": "residual",
                 "embed_dim": "d", "layers": "L", "dnn_hidden": "DNN"}


def settings_text(settings: dict) -> str:
    """A run's settings beyond the model's defaults, for people: `no residual, lr 0.004, lr schedule 0.5`."""
    parts = []
    for key, value in settings.items():
        if key in ("kind", "model"):  # which model: the row says it ("kind" in results before the registry)
            continue
        name = SETTING_NAMES.get(key, key)
        if isinstance(value, bool):
            parts.append(name if value else f"no {name}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{name} " + "×".join(str(v) for v in value))
        else:
            parts.append(f"{name} {value:g}" if isinstance(value, (int, float)) else f"{name} {value}")
    return ", ".join(parts) or "defaults"


def table_settings(runs: list[dict]) -> dict[str, str]:
    """What each model of Tables 2/4/5 trained with, in words, from results.json's runs, in the table's order."""
    settings = {r["label"]: settings_text(r["settings"]) for r in runs if r.get("experiment") == "table"}
    return {model: settings[model] for model in PAPER_ML1M if model in settings}


def comparison_rows(summary: dict) -> list[dict]:
    """One row per model of Tables 2/4/5: ours (mean, std over seeds) beside the paper's."""
    rows = []
    for model, (paper_auc, paper_loss) in PAPER_ML1M.items():
        ours = summary.get("table", {}).get(model)
        if ours:
            rows.append({"model": model, "AUC (ours)": ours["test_auc_mean"], "AUC std": ours["test_auc_std"],
                         "AUC (paper)": paper_auc, "logloss (ours)": ours["test_logloss_mean"],
                         "logloss std": ours["test_logloss_std"], "logloss (paper)": paper_loss,
                         "seeds": ours["seeds"], "device": ours.get("device", "")})
    return rows


def sweep_rows(summary: dict, experiment: str) -> list[dict]:
    """Figure 5 (experiment "depth", L=0..4) or Figure 6 ("embedding", d=8..32), ordered by the setting."""
    rows = summary.get(experiment, {})
    return [{"setting": label, "value": int(label.split("=")[1]), **rows[label]}
            for label in sorted(rows, key=lambda s: int(s.split("=")[1]))]
