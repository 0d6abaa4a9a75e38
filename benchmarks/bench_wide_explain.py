"""One sample's explanation on a wide schema (generated Criteo format, 39 fields, the paper's model, untrained):

    PYTHONPATH=. .venv/bin/python benchmarks/bench_wide_explain.py [--threads 1] [--reps 3]

Prints one JSON line each:
- `top_combinations` (the pairs and 3-field chains of explain_sample; 3 layers x 39 fields is 110k chains) against
  the one-object-per-candidate loop it replaced (the baseline, same run, same answer checked);
- explain_sample alone, with the sampled k-SII interactions, and with integrated gradients, for each CPU layer:
  `AUTOINT_CPU_KERNEL=cpp` (the fused C++ layer on an AVX-512 CPU) and `inductor` (the reference layer at 39 fields).
Best of --reps after one warm-up call, ms.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def combinations_one_by_one(attention: np.ndarray, labels: list, k: int = 5) -> list:
    """The loop top_combinations was before (session 8): a Python object per candidate, then sorts."""
    L, H, F, _ = attention.shape
    mean = attention.mean(axis=1)
    found = [(float(mean[l, m, j]), [labels[j], labels[m]], [l + 1], f"<{labels[m]}, {labels[j]}>: layer {l + 1}")
             for l in range(L) for m in range(F) for j in range(F) if m != j]
    for l in range(1, L):
        found += [(float(mean[l - 1, b, a] * mean[l, c, b]), [labels[a], labels[b], labels[c]], [l, l + 1],
                   f"<{labels[a]}, {labels[b]}, {labels[c]}>: {mean[l - 1, b, a]:.0%}, {mean[l, c, b]:.0%}")
                  for c in range(F) for b in range(F) for a in range(F) if len({a, b, c}) == 3]
    pairs = sorted((f for f in found if len(f[1]) == 2), key=lambda f: -f[0])[:k]
    chains = sorted((f for f in found if len(f[1]) == 3), key=lambda f: -f[0])[:k]
    return [f[:3] for f in pairs + chains]


def best_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(min(times) * 1e3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from autoint.datasets import load_dataset
    from autoint.datasets.synth import generate_criteo
    from autoint.explain.explanation import explain_sample, top_combinations
    from autoint.explain.interactions import baseline_embedding
    from autoint.model.autoint import AutoInt, AutoIntConfig
    from autoint.model.kernels.loader import _cpu_flags
    from autoint.data.samples import split_row
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in _cpu_flags().split()]
    print(json.dumps({"command": "python benchmarks/bench_wide_explain.py " + " ".join(sys.argv[1:]),
                      "threads": torch.get_num_threads(), "cpu_flags": flags, "load_avg_1m": round(os.getloadavg()[0], 2)}))
    data = load_dataset("criteo", data_dir=generate_criteo(Path(tempfile.mkdtemp()) / "criteo", rows=3000, seed=1))
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(), data.schema).eval()
    x, _ = data.split("train")
    baseline = baseline_embedding(model, "mean", x)
    values = split_row(data, "test", 0).values

    attention = explain_sample(model, values).attention  # (L, H, F, F)
    labels = [f"{f.name}=v" for f in data.schema.fields]
    new = [(c.weight, c.fields, c.layers) for c in top_combinations(attention, labels)]
    assert new == combinations_one_by_one(attention, labels), "top_combinations differs from the loop"
    print(json.dumps({"part": "top_combinations", "fields": attention.shape[-1], "layers": attention.shape[0],
                      "loop_ms": best_ms(lambda: combinations_one_by_one(attention, labels), args.reps),
                      "vectorised_ms": best_ms(lambda: top_combinations(attention, labels), args.reps)}))
    for kernel in ("cpp", "inductor"):
        os.environ["AUTOINT_CPU_KERNEL"] = kernel
        out = {"kernel": kernel, "fused": model.uses_fused_layer(model.embed(x.index(slice(0, 2))))}
        for name, extra in (("explain", {}), ("explain+interactions", {"interaction_baseline": baseline}),
                            ("explain+integrated_gradients", {"attributions": ("integrated_gradients",)})):
            out[name + "_ms"] = best_ms(lambda: explain_sample(model, values, **extra), args.reps)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
