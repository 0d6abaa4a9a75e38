"""Reproduce the paper's MovieLens-1M experiments: Tables 2, 4, 5 and Figures 5-6.

    python benchmarks/reproduce.py --data-dir ../shared/data/ml-1m-u2999 [--seeds 5] [--workers 1]

Trains every model over several seeds on one fixed 80/10/10 split, writes
`results.json` (every run), `results.md` (mean +- std of test AUC and logloss beside the
paper's numbers) and Plotly figures (`depth.html`, `embedding.html`) into --out. Each
model is picked at its best validation epoch (early stopping on validation AUC); the test
split is only ever read for the final figures. Each model trains with its documented defaults
(`TUNED_DEFAULTS`, chosen on ml-1m-u2999's validation split), unless `--tune` first picks each model's extras on
validation (seed 0) from that model's grid (dropout / layer norm / scaling for the AutoInt variants;
weight decay, a learning-rate schedule and four other rates for all), by greedy forward selection: the
best single change, then the best change to add to it, and so on until none helps (`--tune-rounds` caps the
rounds); the sweeps use AutoInt's. `--seeds 0`
stops after tuning, `--reuse-tuning` skips candidates an earlier tuning run trained. `--models` reruns some
of Table 2's rows and `--merge-from` takes every other row from an earlier results folder, saying per row
where and how it ran.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from autoint.training.paper import PAPER_ML1M as PAPER  # noqa: E402  (the path must be set first)

TUNING_GRID = [  # candidates the issue names; chosen on validation AUC only
    {}, {"dropout": 0.1}, {"dropout": 0.2}, {"layer_norm": True}, {"scaled_attention": True},
    {"weight_decay": 1e-6}, {"dropout": 0.1, "weight_decay": 1e-6}, {"lr_decay": 0.5},
    {"lr": 5e-4}, {"lr": 2e-3}, {"lr": 4e-3}, {"lr": 8e-3},
]
# LR and FM have no attention and no dropout: regularisation and the learning rate only
LINEAR_GRID = [{}, {"weight_decay": 1e-6}, {"lr_decay": 0.5}, {"lr": 5e-4}, {"lr": 2e-3}, {"lr": 4e-3}, {"lr": 8e-3}]
TABLE_MODELS = {  # Tables 2, 4 and 5, before any tuned extras
    "LR": {"model": "LR"},
    "FM": {"model": "FM", "embed_dim": 16},
    "AutoInt w/o residual": {"residual": False},
    "AutoInt": {},
    "AutoInt+": {"dnn_hidden": (400, 400)},
}
# The documented defaults: the extras `--tune` chose on ml-1m-u2999's validation split (seed 0), for LR, FM and
# AutoInt w/o residual in benchmarks/results/u2999-tuning-cpu/, for AutoInt and AutoInt+ in u2999-h100/. A run
# without --tune trains with these; --tune chooses afresh on the data it is given.
TUNED_DEFAULTS = {
    "LR": {"lr": 4e-3, "lr_decay": 0.5, "weight_decay": 1e-6},
    "FM": {"lr": 2e-3, "weight_decay": 1e-6, "lr_decay": 0.5},
    "AutoInt w/o residual": {"lr": 4e-3, "lr_decay": 0.5},
    "AutoInt": {},
    "AutoInt+": {},
}


def grid_for(model: str) -> list[dict]:
    return LINEAR_GRID if TABLE_MODELS[model].get("model") in ("LR", "FM") else TUNING_GRID

_dataset = None


def _load(data_dir: str):
    global _dataset
    if _dataset is None:
        from autoint.datasets.movielens import load_movielens
        _dataset = load_movielens(data_dir)
    return _dataset


def run_one(job: dict) -> dict:
    """Train one (model, seed) in this process; returns the job with its metrics."""
    import torch
    from dataclasses import fields
    from autoint.model.reference_models import config_from_json
    from autoint.training.train import TrainConfig, train
    torch.set_num_threads(job["threads"])
    dataset = _load(job["data_dir"])
    settings = dict(job["settings"])
    train_settings = {k: settings.pop(k) for k in list(settings) if k in {f.name for f in fields(TrainConfig)}}
    kind = settings.pop("kind", None)  # results written before the model registry: "lr", "fm" or "autoint"
    if kind is not None:
        settings["model"] = {"lr": "LR", "fm": "FM"}.get(kind, "AutoInt")
    config = config_from_json(settings)  # the model registry: LR, FM, AutoInt, AutoInt+
    tc = TrainConfig(epochs=job["epochs"], patience=job["patience"], seed=job["seed"], device=job["device"],
                     **train_settings)
    started = time.perf_counter()
    result = train(dataset, config, tc, progress=False)
    m = result.metrics
    return {**job, "test_auc": m["test_auc"], "test_logloss": m["test_logloss"], "val_auc": m["val_auc"],
            "best_epoch": m["best_epoch"], "epoch_seconds": m["epoch_seconds"], "params": m["params"],
            "device": m["device"], "seconds": round(time.perf_counter() - started, 1)}


def experiments(tuned: dict[str, dict], models: list[str]) -> list[tuple[str, str, dict]]:
    """(experiment, label, settings). Each model of the table gets its own tuned extras; the sweeps vary the
    default AutoInt (d=16, d'=32, H=2, L=3 plus AutoInt's extras)."""
    rows = [("table", model, {**TABLE_MODELS[model], **tuned.get(model, {})}) for model in models]
    autoint = tuned.get("AutoInt", {})
    rows += [("depth", f"L={layers}", {**autoint, "layers": layers}) for layers in (0, 1, 2, 4)]
    rows += [("embedding", f"d={d}", {**autoint, "embed_dim": d}) for d in (8, 24, 32)]
    return rows


def earlier_results(folder: str) -> tuple[dict, list[dict]]:
    """An earlier results folder's per-model tuned extras and runs. Folders written before per-model tuning
    hold one `tuned` dict that every AutoInt variant used."""
    saved = json.loads((Path(folder) / "results.json").read_text())
    tuned = saved["meta"].get("tuned") or {}
    if not tuned or not set(tuned) <= set(TABLE_MODELS):
        tuned = {model: tuned for model in TABLE_MODELS if model not in ("LR", "FM")}
    for run in saved["runs"]:
        run.setdefault("command", saved["meta"]["command"])
    return tuned, saved["runs"]


def run_jobs(jobs: list[dict], workers: int, log, worker=run_one) -> list[dict]:
    """`worker(job)` for every job in `workers` processes (started in job order), logging each result."""
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(worker(job))
            log(results[-1])
        return results
    import multiprocessing
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(worker, job) for job in jobs]):
            results.append(future.result())
            log(results[-1])
    return results


def tune(models: list[str], base: dict, workers: int, rounds: int | None, done: dict, log
         ) -> dict[str, list[dict]]:
    """Greedy forward selection on validation AUC, seed 0. Round 1 tries each change of the model's grid alone.
    Each later round adds one more change to the best so far (a change whose keys the best does not already set,
    so the learning rate is never set twice) and a model stops once a round finds nothing better on validation,
    which also ends it once its grid is used up; `rounds` caps the rounds (None: no cap).
    `done` maps (model, extras key) to a candidate trained earlier, which is reused instead of trained again.
    Returns, per model, every candidate tried, best first."""
    tried: dict[str, dict[str, dict]] = {model: {} for model in models}
    best: dict[str, dict | None] = {model: None for model in models}
    active, round_ = list(models), 0
    while active and (rounds is None or round_ < rounds):
        round_ += 1
        jobs = []
        for model in active:
            if best[model] is None:
                candidates = grid_for(model)
            else:
                settled = best[model]["extras"]
                candidates = [{**settled, **change} for change in grid_for(model)
                              if change and not set(change) & set(settled)]
            for extras in candidates:
                key = extras_key(extras)
                if key in tried[model]:
                    continue
                if (model, key) in done:
                    tried[model][key] = {**done[(model, key)], "round": round_}
                    continue
                tried[model][key] = None  # claimed, so a duplicate candidate is trained once
                jobs.append({**base, "experiment": "tune", "label": f"{model} {json.dumps(extras)}", "model": model,
                             "settings": {**TABLE_MODELS[model], **extras}, "extras": extras, "seed": 0,
                             "round": round_})
        for r in run_jobs(jobs, workers, log):
            tried[r["model"]][extras_key(r["extras"])] = {"extras": r["extras"], "val_auc": r["val_auc"],
                                                          "best_epoch": r["best_epoch"], "round": round_}
        improved = []
        for model in active:
            top = max(tried[model].values(), key=lambda t: t["val_auc"])
            if best[model] is None or top["val_auc"] > best[model]["val_auc"]:
                best[model] = top
                improved.append(model)
            print(f"{model}: round {round_}: best on validation {json.dumps(best[model]['extras'])} "
                  f"(val AUC {best[model]['val_auc']:.4f})", flush=True)
        active = improved
    return {model: sorted(tried[model].values(), key=lambda t: -t["val_auc"]) for model in models}


def extras_key(extras: dict) -> str:
    return json.dumps(extras, sort_keys=True)


def summarise(results: list[dict]) -> dict:
    groups = {}
    for r in results:
        groups.setdefault((r["experiment"], r["label"]), []).append(r)
    # The default AutoInt doubles as L=3 in the depth sweep and d=16 in the embedding sweep.
    if ("table", "AutoInt") in groups:
        groups.setdefault(("depth", "L=3"), groups[("table", "AutoInt")])
        groups.setdefault(("embedding", "d=16"), groups[("table", "AutoInt")])
    out = {}
    for (experiment, label), runs in groups.items():
        auc, loss = [r["test_auc"] for r in runs], [r["test_logloss"] for r in runs]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
        out.setdefault(experiment, {})[label] = {
            "test_auc_mean": statistics.mean(auc), "test_auc_std": sd(auc),
            "test_logloss_mean": statistics.mean(loss), "test_logloss_std": sd(loss),
            "val_auc_mean": statistics.mean(r["val_auc"] for r in runs), "seeds": len(runs),
            "best_epochs": [r["best_epoch"] for r in runs],
            "device": " / ".join(sorted({r["device"] for r in runs})),
            "command": " / ".join(sorted({r["command"] for r in runs if r.get("command")})),
        }
    return out


def write_report(out: Path, summary: dict, meta: dict) -> None:
    lines = [f"# Reproduction on {meta['data_note']}", "",
             f"Command: `{meta['command']}`  ", f"Device: {meta['device']}; {meta['seeds']} seeds; "
             f"{meta['wall_seconds']:.0f} s wall. Extras per model "
             f"({'chosen on this data' if meta.get('tuned_here', True) else 'the documented defaults, chosen on ml-1m-u2999'}"
             f"'s validation split, seed 0): `{json.dumps(meta['tuned'])}`."]
    if meta.get("merged_from"):
        lines.append(f"Rows not rerun by this command come from `{meta['merged_from']}`; the table says where "
                     "each row ran.")
    lines += ["", "## Tables 2, 4 and 5 (test AUC / logloss, mean +- std over seeds)", "",
              "| model | AUC (ours) | logloss (ours) | AUC (paper, full ML-1M) | logloss (paper) | device |",
              "| --- | --- | --- | --- | --- | --- |"]
    for label, (paper_auc, paper_loss) in PAPER.items():
        s = summary.get("table", {}).get(label)
        if s:
            lines.append(f"| {label} | {s['test_auc_mean']:.4f} +- {s['test_auc_std']:.4f} | "
                         f"{s['test_logloss_mean']:.4f} +- {s['test_logloss_std']:.4f} | {paper_auc} | {paper_loss} | "
                         f"{s.get('device', meta['device'])} |")
    for experiment, title in (("depth", "Figure 5: interacting layers"), ("embedding", "Figure 6: embedding size")):
        rows = summary.get(experiment, {})
        if not rows:
            continue
        lines += ["", f"## {title}", "", "| setting | AUC | logloss |", "| --- | --- | --- |"]
        for label in sorted(rows, key=lambda s: int(s.split("=")[1])):
            s = rows[label]
            lines.append(f"| {label} | {s['test_auc_mean']:.4f} +- {s['test_auc_std']:.4f} | "
                         f"{s['test_logloss_mean']:.4f} +- {s['test_logloss_std']:.4f} |")
    table = summary.get("table", {})
    order = [label for label in PAPER if label in table]
    if len(order) == len(PAPER):
        means = [table[label]["test_auc_mean"] for label in order]
        holds = all(a < b for a, b in zip(means[:3], means[1:4])) and means[3] <= means[4]
        lines += ["", f"Paper's ordering LR < FM < AutoInt w/o residual < AutoInt <= AutoInt+ holds: "
                      f"**{'yes' if holds else 'no'}**."]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def write_figures(out: Path, summary: dict, meta: dict) -> None:
    try:
        import plotly.graph_objects as go
    except ImportError:  # e.g. a GPU box without plotly: `--report-only` redraws them from results.json
        print("plotly is missing: figures skipped; rerun with --report-only to draw them", file=sys.stderr)
        return
    for experiment, axis, name in (("depth", "interacting layers L", "depth"),
                                   ("embedding", "embedding size d", "embedding")):
        rows = summary.get(experiment, {})
        if not rows:
            continue
        labels = sorted(rows, key=lambda s: int(s.split("=")[1]))
        x = [int(s.split("=")[1]) for s in labels]
        fig = go.Figure()
        for metric, title in (("test_auc", "test AUC"), ("test_logloss", "test logloss")):
            fig.add_trace(go.Scatter(
                x=x, y=[rows[s][f"{metric}_mean"] for s in labels], name=title, mode="lines+markers",
                yaxis="y" if metric == "test_auc" else "y2",
                error_y={"type": "data", "array": [rows[s][f"{metric}_std"] for s in labels]}))
        fig.update_layout(title=f"{axis} ({meta['data_note']})", xaxis_title=axis,
                          yaxis={"title": "test AUC"}, yaxis2={"title": "test logloss", "overlaying": "y",
                                                               "side": "right"}, template="plotly_white")
        fig.write_html(out / f"{name}.html", include_plotlyjs="cdn")


def data_note(data_dir: str, info: dict) -> str:
    note = f"{Path(data_dir).name} ({info['samples']:,} samples, {info['positives']:,} positive"
    if info["samples"] != 739012:
        note += "; not the full ML-1M" + (": the ratings of users 1-2999 only" if "u2999" in data_dir else "")
    return note + ")"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="parallel training processes")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--tune", action="store_true", help="pick each model's extras on validation first")
    parser.add_argument("--tune-rounds", type=int, default=None,
                        help="cap on the greedy rounds (1 tries each grid change alone, each further round adds one "
                             "more change); by default tuning goes on until no change improves validation AUC")
    parser.add_argument("--only", default="table,depth,embedding", help="experiments to run")
    parser.add_argument("--models", default=",".join(TABLE_MODELS), help="Table 2 rows to (re)run, comma-separated")
    parser.add_argument("--reuse-tuning", help="a folder whose tuning.json holds candidates already trained (same "
                                               "data, epochs and patience): only the others are trained")
    parser.add_argument("--merge-from", help="an earlier results folder: every row (table or sweep) not rerun here "
                                             "comes from it, and AutoInt's tuned extras for the sweeps unless "
                                             "AutoInt is retuned here")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--report-only", action="store_true", help="redraw results.md and figures from results.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        saved = json.loads((out / "results.json").read_text())
        write_report(out, saved["summary"], saved["meta"])
        write_figures(out, saved["summary"], saved["meta"])
        return 0
    cores = os.cpu_count() or 1
    threads = max(1, cores // max(args.workers, 1))
    base = {"data_dir": args.data_dir, "epochs": args.epochs, "patience": args.patience, "device": args.device,
            "threads": threads}
    started = time.perf_counter()
    log_file = open(out / "runs.jsonl", "a")

    def log(result):
        line = json.dumps(result, default=list)
        log_file.write(line + "\n")
        log_file.flush()
        print(f"{result['experiment']:>9} {result['label']:<22} seed {result['seed']}  test AUC "
              f"{result['test_auc']:.4f}  logloss {result['test_logloss']:.4f}  val AUC {result['val_auc']:.4f}  "
              f"best epoch {result['best_epoch']}  {result['seconds']} s", flush=True)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.tune_rounds is not None and args.tune_rounds < 1:
        parser.error(f"--tune-rounds {args.tune_rounds}: give 1 (each change alone) or more")
    unknown = [m for m in models if m not in TABLE_MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(TABLE_MODELS)}")
    earlier_tuned, merged_runs = earlier_results(args.merge_from) if args.merge_from else ({}, [])
    # Rows taken over keep the extras they ran with; rerun rows get the documented defaults unless --tune chooses.
    tuned = {**TUNED_DEFAULTS, **{model: e for model, e in earlier_tuned.items() if model not in models}}
    if args.tune:
        # Candidates an earlier tuning run (same data, epochs, patience, seed 0) already trained are not retrained.
        earlier = json.loads((Path(args.reuse_tuning) / "tuning.json").read_text()) if args.reuse_tuning else {}
        done = {(model, extras_key(t["extras"])): {**t, "reused_from": t.get("reused_from", args.reuse_tuning)}
                for model, tried in earlier.items() for t in tried}
        report = tune(models, base, args.workers, args.tune_rounds, done, log)
        tuned.update({model: tried[0]["extras"] for model, tried in report.items()})
        (out / "tuning.json").write_text(json.dumps(report, indent=1))
    if args.seeds == 0:
        return 0
    wanted = set(args.only.split(","))
    jobs = [{**base, "experiment": e, "label": label, "settings": settings, "seed": seed}
            for seed in range(args.seeds) for e, label, settings in experiments(tuned, models) if e in wanted]
    results = run_jobs(jobs, args.workers, log)
    command = shlex.join(["python", "benchmarks/reproduce.py", *(sys.argv[1:] if argv is None else argv)])
    for r in results:
        r["command"] = command
    rerun = {(r["experiment"], r["label"]) for r in results}
    results += [r for r in merged_runs if (r["experiment"], r["label"]) not in rerun]
    summary = summarise(results)
    from autoint.datasets.movielens import load_movielens
    info = _load(args.data_dir).describe()
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name(0)})"
    meta = {"command": command, "data_dir": args.data_dir, "data_note": data_note(args.data_dir, info),
            "device": device, "seeds": args.seeds, "tuned": tuned, "tuned_here": args.tune, "wall_seconds": time.perf_counter() - started,
            "paper": PAPER, "merged_from": args.merge_from}
    (out / "results.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": results}, indent=1,
                                                 default=list))
    write_report(out, summary, meta)
    write_figures(out, summary, meta)
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
