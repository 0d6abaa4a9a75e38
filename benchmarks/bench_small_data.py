"""Do the default training settings converge on small data as well as large? (issue 24, part 3)

For generated files in Criteo's format and in MovieLens-1M's (autoint.datasets.synth: planted pairs drive the
clicks) of 10k, 30k and 300k rows, train the paper's AutoInt with the defaults (batch size from the training
split and learning rate from the batch, `batch_size_for` and `lr_for` in autoint.training.config; early stopping)
and on a small grid of batch size x learning rate, all in one process, one seed unless --seeds lists more. Target: the default within 0.01 test AUC of the grid's best point.
The grid of the 300k files is smaller (batch 256 and 1024 at lr 1e-3): a point there takes many minutes on one
core.

    python benchmarks/bench_small_data.py --out benchmarks/results/small-data [--threads 1]

Each finished training is appended to results.jsonl (a rerun skips what is there); results.md is written from it.
Rows whose point is "default-v1" were the rule's first version (batch down to 32, lr 1e-3 always), kept for the
comparison; they are not rerun.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = (10_000, 30_000, 300_000)
GRID = {"small": ((64, 256, 1024), (1e-3, 3e-3, 1e-2)), "large": ((256, 1024), (1e-3,))}


def generate(kind: str, rows: int, folder: Path) -> Path:
    from autoint.datasets.synth import generate_criteo, generate_movielens
    if (folder / "planted_interactions.json").is_file():
        return folder
    if kind == "criteo":
        return generate_criteo(folder, rows=rows, seed=1)
    users, movies = max(rows // 40, 50), max(rows // 80, 30)  # about 40 ratings a user, as MovieLens-1M has 165
    return generate_movielens(folder, users=users, movies=movies, ratings=rows, seed=1)


def load(kind: str, folder: Path):
    from autoint.datasets import load_dataset
    return load_dataset("criteo", data_dir=folder) if kind == "criteo" else load_dataset(data_dir=folder)


def train_point(dataset, batch_size, lr, seed) -> dict:
    from autoint.model.autoint import AutoIntConfig
    from autoint.training.train import TrainConfig, train
    started = time.perf_counter()
    result = train(dataset, AutoIntConfig(), TrainConfig(batch_size=batch_size, lr=lr, seed=seed, device="cpu"),
                   progress=False)
    m = result.metrics
    return {"batch_size": result.train_config.batch_size, "lr": result.train_config.lr, "test_auc": m["test_auc"], "val_auc": m["val_auc"],
            "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"], "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/small-data")
    parser.add_argument("--data", default="data/bench-small-data", help="where the generated files go (git-ignored)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--kinds", default="criteo,movielens")
    parser.add_argument("--seeds", default="2019", help="training seeds, comma-separated (the report averages them)")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    done = {(r["kind"], r["rows"], r["point"], r.get("seed", 2019))
            for r in map(json.loads, log.read_text().splitlines())} if log.is_file() else set()
    for kind in args.kinds.split(","):
        for rows in map(int, args.sizes.split(",")):
            folder = generate(kind, rows, Path(args.data) / f"{kind}-{rows}")
            dataset = load(kind, folder)
            batches, rates = GRID["large" if rows >= 100_000 else "small"]
            points = [("default", None, None)] + [(f"{b}x{lr:g}", b, lr) for b in batches for lr in rates]
            for (point, batch_size, lr), seed in itertools.product(points, map(int, args.seeds.split(","))):
                if (kind, rows, point, seed) in done:
                    continue
                row = {"kind": kind, "rows": rows, "train_rows": len(dataset.splits["train"]), "point": point,
                       "seed": seed, **train_point(dataset, batch_size, lr, seed)}
                print(json.dumps(row), flush=True)
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    write_report(out, log, args.threads)


def write_report(out: Path, log: Path, threads: int) -> None:
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    rows = []  # one row per (kind, size, point): test AUC averaged over its seeds
    for key in dict.fromkeys((r["kind"], r["rows"], r["point"]) for r in runs):
        same = [r for r in runs if (r["kind"], r["rows"], r["point"]) == key]
        rows.append({**same[0], "test_auc": sum(r["test_auc"] for r in same) / len(same), "seeds": len(same),
                     "seconds": sum(r["seconds"] for r in same) / len(same)})
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    shown = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"# Default training on small data ({datetime.now(timezone.utc):%Y-%m-%d}, commit {commit})", "",
             f"`python benchmarks/bench_small_data.py --threads {threads}`; {platform.processor() or platform.machine()}, "
             f"flags {shown}; the paper's AutoInt (3 layers, 2 heads, d=16), Adam, early stopping (patience 2), "
             "test AUC per point, the mean over its seeds (2019, and 1 and 2 where a size lists 3 seeds: "
             "`--seeds 2019,1,2`); the default is batch `batch_size_for(train rows)`, lr `lr_for(batch)`; "
             "default-v1, the rule's first version, was batch down to 32 and lr 1e-3.", ""]
    for kind, size in sorted({(r["kind"], r["rows"]) for r in rows}, key=lambda k: (k[0], k[1])):
        group = [r for r in rows if r["kind"] == kind and r["rows"] == size]
        default = next((r for r in group if r["point"] == "default"), None)
        first = next((r for r in group if r["point"] == "default-v1"), None)
        grid = [r for r in group if not r["point"].startswith("default")]
        if default is None or not grid:
            continue
        best = max(grid, key=lambda r: r["test_auc"])
        gap = best["test_auc"] - default["test_auc"]
        lines += [f"## {kind}, {size:,} rows ({default['train_rows']:,} training)", "",
                  f"Default: batch {default['batch_size']}, lr {default['lr']:g}: test AUC **{default['test_auc']:.4f}** "
                  f"({default['seeds']} seed{'s' if default['seeds'] > 1 else ''}; seed 2019: best epoch "
                  f"{default['best_epoch']} of {default['epochs_run']}, {default['seconds']:.0f} s). "
                  f"Grid's best: {best['point']} at {best['test_auc']:.4f}; gap {gap:+.4f} "
                  f"({'within' if gap <= 0.01 else 'NOT within'} 0.01)."
                  + (f" default-v1 (batch {first['batch_size']}, lr {first['lr']:g}): {first['test_auc']:.4f} "
                     f"({first['seeds']} seed{'s' if first['seeds'] > 1 else ''}), gap "
                     f"{best['test_auc'] - first['test_auc']:+.4f}." if first else ""), "",
                  "| batch \\ lr | " + " | ".join(f"{lr:g}" for lr in sorted({r['lr'] for r in grid})) + " |",
                  "| --- |" + " --- |" * len({r['lr'] for r in grid})]
        for b in sorted({r["batch_size"] for r in grid}):
            cells = []
            for lr in sorted({r["lr"] for r in grid}):
                r = next((r for r in grid if r["batch_size"] == b and r["lr"] == lr), None)
                cells.append("-" if r is None else f"{r['test_auc']:.4f}" + (f" ({r['seeds']} seeds)" if r["seeds"] > 1
                                                                             else f" (ep {r['best_epoch']}/{r['epochs_run']})"))
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
