"""The readings of the attention (autoint/explain/readings.py): what one sample and one split cost.

    PYTHONPATH=. python benchmarks/bench_readings.py --run RUN --data-dir ../shared/data/ml-1m-u2999 \
        [--threads 2] [--reps 7] [--criteo-rows 20000] [--split-cold]

Three figures, each against the issue's target, in one process:
  1. every reading of one sample, 7 fields (the run on MovieLens): median and max over `--reps` samples (<= 20 ms);
  2. every reading of one sample, 39 fields (a paper-configuration AutoInt with seeded random weights on a generated
     Criteo-format file: the cost does not depend on what the weights learnt): median and max (<= 1 s);
  3. what the Dataset correlations page computes for the readings of the test split, on its default sample
     (`sampling.model_readings`: the interactions of READING_ROWS samples, then the six readings of them), at
     `--threads` threads, from an empty cache (<= 90 s); `--split-cold` also times the page's attention average
     and interactions over its default sample of the split (what a first visit computes besides the readings).
Each line of output is one JSON object; the CPU flags and load are printed first.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    return " ".join(sorted({f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in text}))


def one_sample(model, x, reps: int) -> dict:
    from autoint.explain.readings import read_batch
    read_batch(model, x.index(slice(0, 1)))  # warm-up: first calls allocate
    times = []
    for i in range(reps):
        started = time.perf_counter()
        read_batch(model, x.index(slice(i + 1, i + 2)))
        times.append((time.perf_counter() - started) * 1e3)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1), "reps": reps}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run trained on --data-dir (MovieLens format)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--criteo-rows", type=int, default=20000)
    parser.add_argument("--split-cold", action="store_true")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from autoint.datasets import load_dataset
    from autoint.datasets.movielens import load_movielens
    from autoint.datasets.synth import generate_criteo
    from autoint.explain.sampling import READING_ROWS, correlations_of_sample, interactions_of_sample, \
        model_readings, split_sample
    from autoint.model.autoint import AutoInt, AutoIntConfig
    from autoint.training.runs import load_run
    print(json.dumps({"cpu_flags": cpu_flags(), "threads": args.threads, "torch": torch.__version__,
                      "load_before": os.getloadavg()[0],
                      "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                               text=True).stdout.strip()}), flush=True)
    run = load_run(args.run)
    data = load_movielens(args.data_dir, schema=run.schema)
    x, _ = data.split("test")
    print(json.dumps({"figure": "one sample, every reading, 7 fields", "target_ms": 20,
                      **one_sample(run.model, x, args.reps)}), flush=True)

    with tempfile.TemporaryDirectory() as work:
        folder = generate_criteo(Path(work) / "criteo", rows=args.criteo_rows, seed=5)
        criteo = load_dataset("criteo", data_dir=folder)
        torch.manual_seed(0)
        wide = AutoInt(AutoIntConfig(), criteo.schema).eval()
        cx, _ = criteo.split("test")
        print(json.dumps({"figure": "one sample, every reading, 39 fields", "target_ms": 1000,
                          **one_sample(wide, cx, args.reps)}), flush=True)

        cache = Path(work) / "cache"
        started = time.perf_counter()
        result = model_readings(args.run, run.model, data, "test", cache_dir=cache)
        seconds = time.perf_counter() - started
        print(json.dumps({"figure": "readings of the test split (model_readings, empty cache)", "target_s": 90,
                          "seconds": round(seconds, 1), "rows": READING_ROWS, "default": result.default,
                          "split_rho": {n: round(r.agreement, 3) for n, r in result.readings.items()}}), flush=True)
        started = time.perf_counter()
        model_readings(args.run, run.model, data, "test", cache_dir=cache)
        print(json.dumps({"figure": "the same, cached", "seconds": round(time.perf_counter() - started, 3)}),
              flush=True)
        if args.split_cold:
            sample = split_sample(data, "test")
            started = time.perf_counter()
            correlations_of_sample(run.model, data, sample)
            attention = time.perf_counter() - started
            started = time.perf_counter()
            interactions_of_sample(args.run, run.model, data, sample, cache_dir=Path(work) / "cache2")
            print(json.dumps({"figure": "the page's first visit besides the readings", "sample": len(sample),
                              "attention_s": round(attention, 1),
                              "interactions_s": round(time.perf_counter() - started, 1)}), flush=True)
    print(json.dumps({"load_after": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
