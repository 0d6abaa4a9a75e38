"""Streamed training against the in-memory path (issue 15, part 2): samples per second and peak RSS.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_stream.py speed --prepared /tmp/bench-prepare/prepared-1000000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_stream.py rss --prepared /tmp/bench-prepare/prepared-10000000

`speed`: the training loop of `autoint.training.train.train` (the same batch sources, TrainStep and loss) for `--steps`
batches of each path after `--warmup` batches (`--steps 0 --warmup 0`: one whole epoch), in one process, on one prepared directory (bench_prepare.py writes
one from a generated Criteo-format file); the in-memory path's time to load the splits is reported apart. Also the
streamed source alone (batches, no training) to show the data path's own cost.
`rss`: each path in its own subprocess, `--steps` training batches, peak RSS of that process (ru_maxrss).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def run_steps(path: str, prepared_dir: str, steps: int, warmup: int, model: str, buffer_rows: int,
              shards: int, workers: int, train_only: bool = True) -> dict:
    from autoint.model.reference_models import build_model
    from autoint.model.autoint import AutoIntConfig
    from autoint.model.presets import preset_config
    from autoint.datasets.prepared import Prepared
    from autoint.training.train import TrainConfig, TrainStep, batch_source, make_optimizer, seed_everything
    prepared = Prepared.open(prepared_dir)
    config = TrainConfig(data_path=path, buffer_rows=buffer_rows, virtual_shards=shards, loader_workers=workers,
                         device="cpu", seed=1)
    seed_everything(1)
    net = build_model(preset_config("paper") if model == "paper" else AutoIntConfig(embed_dim=4, attn_dim=4, heads=1,
                                                                                     layers=1), prepared.schema)
    step = TrainStep(net, make_optimizer(net, config), torch.device("cpu"))
    started = time.perf_counter()
    source = batch_source(prepared, config, torch.device("cpu"))
    setup = time.perf_counter() - started
    rows, t0 = 0, time.perf_counter()  # --warmup 0 --steps 0: the whole epoch, its first reads included
    for i, (x, y, scale) in enumerate(source.batches(1)):
        if i == warmup:
            t0 = time.perf_counter()
        if i >= warmup:
            rows += len(y)
        if train_only:
            step(x, y, scale)
        if steps and i + 1 == warmup + steps:
            break
    seconds = time.perf_counter() - t0
    return {"path": path, "model": model, "train": train_only, "steps": steps, "rows": rows,
            "seconds": round(seconds, 2), "samples_per_second": round(rows / seconds),
            "setup_seconds": round(setup, 2), "threads": torch.get_num_threads(),
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["speed", "rss", "child"])
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--model", default="paper", choices=["paper", "tiny"])
    parser.add_argument("--buffer-rows", type=int, default=262144)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--path", default="streamed")
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()
    common = dict(steps=args.steps, warmup=args.warmup, model=args.model, buffer_rows=args.buffer_rows,
                  shards=args.shards, workers=args.workers)
    if args.mode == "child":
        print(json.dumps(run_steps(args.path, args.prepared, train_only=not args.no_train, **common)))
        return
    if args.mode == "speed":
        results = [run_steps(p, args.prepared, **common) for p in ("in-memory", "streamed")]
        results.append(run_steps("streamed", args.prepared, train_only=False, **common))
        ratio = results[1]["samples_per_second"] / results[0]["samples_per_second"]
        print(json.dumps({"results": results, "streamed_over_in_memory": round(ratio, 3)}, indent=1))
        return
    out = []
    for path in ("streamed",):
        child = subprocess.run([sys.executable, __file__, "child", "--prepared", args.prepared, "--path", path,
                                *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in common.items()), [])],
                               capture_output=True, text=True, check=True, env={**os.environ})
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
        out.append(result)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
