"""How fast the interaction engine is, against the issue's targets, in ONE run on this machine.

    .venv/bin/python benchmarks/bench_interactions.py --data-dir ../shared/data/ml-1m-u2999 [--run RUN] [--threads 2]
        [--out benchmarks/results/interactions]

Targets ("Explanations that hold"):
  - one sample's exact interactions, 7 fields (128 coalitions): at most 50 ms;
  - the whole u2999 test split (36,044 samples), exact: at most 60 s at 2 threads (then cached);
  - with ids (9 fields, 512 coalitions), exact: at most 100 ms a sample;
  - a 39-field sample (Criteo's 13 numeric + 26 categorical fields) with the sampling estimator at a budget of
    2,000 coalitions: at most 1 s.
The model is the paper's configuration (d=16, d'=32, H=2, L=3). Its weights do not change the cost: without
--run it is a seeded random initialisation; the 39-field model is one on a generated Criteo-shaped schema.
The sampling estimator's accuracy is measured too, on a 12-field model where the exact answer is known.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np
import torch

from autoint.explain import interactions as I
from autoint.datasets.movielens import load_movielens
from autoint.data.encoding import encode_sample
from autoint.explain.baselines import mean_embedding
from autoint.model.autoint import AutoInt, AutoIntConfig
from autoint.data.schema import UNKNOWN, Field, Schema

TARGETS = {"sample_ms": 50.0, "split_s": 60.0, "ids_sample_ms": 100.0, "criteo_sample_s": 1.0}


def cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return " ".join(sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}))


def median_ms(fn, rows, warmup: int = 3) -> float:
    for row in rows[:warmup]:
        fn(row)
    times = []
    for row in rows:
        started = time.perf_counter()
        fn(row)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def model_for(schema: Schema, run: str | None, seed: int = 0) -> AutoInt:
    if run:
        from autoint.training.runs import load_run
        return load_run(run).model.eval()
    torch.manual_seed(seed)
    return AutoInt(AutoIntConfig(), schema).eval()


def criteo_schema(categories: int = 1000) -> Schema:
    """Criteo's 39 fields: I1-I13 numeric, C1-C26 categorical (here `categories` values each)."""
    numeric = tuple(Field(f"I{i}", "numeric", min_value=0.0, max_value=20.0) for i in range(1, 14))
    categorical = tuple(Field(f"C{i}", "categorical", vocab=(UNKNOWN,) + tuple(f"v{k}" for k in range(categories)))
                        for i in range(1, 27))
    return Schema(numeric + categorical)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--run", help="a trained run on this data (default: a seeded random paper-config model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=50, help="samples timed one by one")
    parser.add_argument("--out", help="folder for results.json and results.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cpu_flags": cpu_flags(),
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "targets": TARGETS}

    dataset = load_movielens(args.data_dir)
    model = model_for(dataset.schema, args.run)
    train_x, _ = dataset.split("train")
    test_x, _ = dataset.split("test")
    baseline = mean_embedding(model, train_x)
    rows = [test_x.index(slice(i, i + 1)) for i in range(args.samples)]
    report["sample_ms"] = median_ms(lambda x: I.sample_interactions(model, x, baseline), rows)
    print(f"one sample, 7 fields, exact: {report['sample_ms']:.1f} ms (median of {len(rows)})", flush=True)

    started = time.perf_counter()
    split = I.split_interactions(model, test_x, baseline)
    report["split_s"] = time.perf_counter() - started
    report["split_samples"] = len(split)
    report["split_efficiency_gap"] = split.efficiency_gap
    print(f"test split, {len(split):,} samples, exact: {report['split_s']:.1f} s "
          f"({len(split) / report['split_s']:,.0f} samples/s), largest efficiency gap {split.efficiency_gap:.1e}",
          flush=True)
    cache = Path("/tmp/bench-interactions-cache")
    split.save(cache / "split.npz")
    started = time.perf_counter()
    I.SplitInteractions.load(cache / "split.npz")
    report["split_cached_s"] = time.perf_counter() - started

    with_ids = load_movielens(args.data_dir, with_ids=True)
    ids_model = model_for(with_ids.schema, None)
    ids_x, _ = with_ids.split("test")
    ids_baseline = mean_embedding(ids_model, with_ids.split("train")[0])
    rows = [ids_x.index(slice(i, i + 1)) for i in range(args.samples)]
    report["ids_fields"] = len(with_ids.schema.fields)
    report["ids_sample_ms"] = median_ms(lambda x: I.sample_interactions(ids_model, x, ids_baseline), rows)
    print(f"one sample, {report['ids_fields']} fields (with ids), exact: {report['ids_sample_ms']:.1f} ms", flush=True)

    started = time.perf_counter()
    import shapiq  # noqa: F401  (its import is paid once per process, not per sample)
    report["shapiq_import_s"] = time.perf_counter() - started
    schema = criteo_schema()
    criteo = model_for(schema, None)
    generator = np.random.default_rng(0)
    samples = [encode_sample(schema, {**{f"I{i}": float(generator.uniform(0, 20)) for i in range(1, 14)},
                                      **{f"C{i}": f"v{generator.integers(1000)}" for i in range(1, 27)}})
               for _ in range(5)]
    criteo_baseline = I.baseline_embedding(criteo, "unknown")
    times, errors, gaps = [], [], []
    for seed, x in enumerate(samples):
        started = time.perf_counter()
        result = I.sample_interactions(criteo, x, criteo_baseline, budget=I.DEFAULT_BUDGET, seed=seed)
        times.append(time.perf_counter() - started)
        errors.append(float(result.error.mean()))
        gaps.append(result.efficiency_gap)
    report["criteo_sample_s"] = statistics.median(times)
    report["criteo_standard_error_mean"] = statistics.mean(errors)
    report["criteo_efficiency_gap_max"] = max(gaps)
    print(f"one sample, 39 fields, KernelSHAP-IQ at {I.DEFAULT_BUDGET} coalitions: {report['criteo_sample_s']:.2f} s "
          f"(median of 5; shapiq import {report['shapiq_import_s']:.1f} s once), mean estimated standard error "
          f"{report['criteo_standard_error_mean']:.2e} logit", flush=True)

    # Accuracy of the estimator where the truth is known: 12 fields, exact by the linear map.
    small = Schema(tuple(Field(f"C{i}", "categorical", vocab=(UNKNOWN, "a", "b", "c")) for i in range(12)))
    small_model = model_for(small, None, seed=1)
    small_baseline = I.baseline_embedding(small_model, "unknown")
    exact_errors, estimated = [], []
    for seed in range(5):
        x = encode_sample(small, {f"C{i}": "abc"[(i + seed) % 3] for i in range(12)})
        exact = I.sample_interactions(small_model, x, small_baseline)
        estimate = I._sampled(small_model, small_model.embed(x), small_baseline, I.DEFAULT_BUDGET, seed)
        truth = np.concatenate([exact.main, exact.pairs])
        approx = np.concatenate([estimate.main, estimate.pairs])
        exact_errors.append(float(np.abs(approx - truth).mean() / np.abs(truth).mean()))
        estimated.append(float(estimate.error.mean() / np.abs(truth).mean()))
    report["estimator_relative_error_12_fields"] = statistics.mean(exact_errors)
    report["estimator_estimated_relative_error_12_fields"] = statistics.mean(estimated)
    print(f"estimator at {I.DEFAULT_BUDGET} coalitions on 12 fields: mean |error| {report['estimator_relative_error_12_fields']:.1%} "
          f"of the mean |value| (its own estimate: {report['estimator_estimated_relative_error_12_fields']:.1%})",
          flush=True)

    report["met"] = {key: report[key] <= limit for key, limit in TARGETS.items()}
    print(json.dumps(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "interactions.json").write_text(json.dumps(report, indent=1))
        lines = [f"# Interaction engine speed ({report['date']})", "", f"Command: `{report['command']}`  ",
                 f"CPU flags: {report['cpu_flags']}; torch {report['torch']}; {report['threads']} threads.", "",
                 "| measurement | measured | target | met |", "| --- | --- | --- | --- |",
                 f"| one sample, 7 fields, exact | {report['sample_ms']:.1f} ms | 50 ms | {report['met']['sample_ms']} |",
                 f"| test split ({report['split_samples']:,} samples), exact | {report['split_s']:.1f} s | 60 s | "
                 f"{report['met']['split_s']} |",
                 f"| the same, from the cache | {report['split_cached_s'] * 1000:.0f} ms | | |",
                 f"| one sample, {report['ids_fields']} fields (ids), exact | {report['ids_sample_ms']:.1f} ms | 100 ms | "
                 f"{report['met']['ids_sample_ms']} |",
                 f"| one sample, 39 fields, KernelSHAP-IQ, 2,000 coalitions | {report['criteo_sample_s']:.2f} s | 1 s | "
                 f"{report['met']['criteo_sample_s']} |", "",
                 f"shapiq's import: {report['shapiq_import_s']:.1f} s, once per process (only above 12 fields).  ",
                 f"Estimator accuracy on 12 fields (exact known), 2,000 coalitions: mean |error| "
                 f"{report['estimator_relative_error_12_fields']:.1%} of the mean |value|; its split-half estimate "
                 f"says {report['estimator_estimated_relative_error_12_fields']:.1%}.  ",
                 f"Largest efficiency gap over the test split: {report['split_efficiency_gap']:.1e}."]
        (out / "interactions.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
