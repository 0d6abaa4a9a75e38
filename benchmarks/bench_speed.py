"""Speed of training and explaining, ours against the reference layer, in ONE run (the machine is shared:
compare the ratios, measured interleaved, not absolute seconds from different runs).

    .venv/bin/python benchmarks/bench_speed.py [--data-dir ../shared/data/ml-1m-u2999] [--threads 2] [--reps 2]

Baseline ("reference"): the model as before issue 14, every interacting layer `InteractingLayer.forward` in the
(B, F, d) layout (batched matmuls for Eqs. 5-6), checked equal to ours on the same weights. Ours: the fused
layer in the column layout (`FusedInteractingLayer`, compiled when a C++ compiler works). Both use the fused
Adam of autoint/training/train.py; data, loop and batching are shared. The kernels are compiled for the epoch's batch
sizes before any clock starts (`warm_up`; the seconds are reported). Each epoch is reported with its wall
seconds (train()'s `epoch_seconds`) and its process CPU seconds (first step to the validation pass).

"floor": the step's dense matmuls alone at their shapes, allocation-free (`out=` buffers), one pass before the
epochs and one after every epoch (so between the versions and after the last); each pass is the fastest of 7
calls per shape. One pass varies by up to 1.8x between processes at one thread (NOTES.md, issue 14 attempt 8),
so the epoch's ratio, issue 14's target (<= 2), is taken against the fastest pass of the run, and the passes'
min / median / max are printed beside it. Prints a table and one JSON object per line.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch
import torch.nn.functional as F_

import autoint.training.train as train_module
from autoint.datasets.movielens import Catalog, load_movielens
from autoint.explain.explanation import dataset_correlations, explain_sample
from autoint.explain.recommend import ItemScorer
from autoint.model.autoint import AutoInt, AutoIntConfig, InteractingLayer
from autoint.model.kernels.loader import KERNELS
from autoint.training.train import TrainConfig, train

CORRELATION_ROWS = 73_902  # the full ML-1M test split's size


def reference_forward_embedded(self, embedded, return_attention=False):
    """The model as before issue 14: the layers in the (B, F, d) layout, `InteractingLayer.forward` (bmm)."""
    B, F, _ = embedded.shape
    e, attentions = embedded, []
    for layer in self.interacting:
        e, attention = InteractingLayer.forward(layer, e)  # (B, F, H*d'), (B, H, F, F)
        attentions.append(attention)
    logit = self.output(e.reshape(B, -1)).squeeze(-1)  # (B,)
    if self.dnn is not None:
        logit = logit + self.dnn(embedded.reshape(B, -1)).squeeze(-1)
    if not return_attention:
        return logit
    stacked = torch.stack(attentions, 1) if attentions else embedded.new_zeros(B, 0, self.config.heads, F, F)
    return logit, stacked


OURS_FORWARD = AutoInt.forward_embedded


VERSION_ENV = {"ours-eager": {"AUTOINT_COMPILE": "0"}, "ours-inductor": {"AUTOINT_CPU_KERNEL": "inductor"},
               "ours-cpp": {"AUTOINT_CPU_KERNEL": "cpp"}, "ours-cpp-attention": {"AUTOINT_CPU_KERNEL": "cpp-attention"}}


@contextmanager
def version(name: str):
    """"reference", "ours" (the fused layer, CPU_KERNEL's kernel), "ours-inductor" / "ours-cpp" /
    "ours-cpp-attention" (that kernel), or "ours-eager" (the fused layer with its kernels uncompiled)."""
    AutoInt.forward_embedded = reference_forward_embedded if name == "reference" else OURS_FORWARD
    env = VERSION_ENV.get(name, {})
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        AutoInt.forward_embedded = OURS_FORWARD
        for k, v in before.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def machine() -> dict:
    flags, model = set(), "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "avx2": "avx2" in flags,
            "avx512f": "avx512f" in flags, "amx_bf16": "amx_bf16" in flags, "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_tile"}),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def interleaved(fns: dict, reps: int, warmup: int = 1) -> dict:
    """{name: (median wall s, median process CPU s)}. On a shared machine the CPU time of a 1-thread run
    is the steadier figure (it leaves out the time other processes held the core)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


class MatmulFloor:
    """The training step's dense matmuls alone (projection forward, weight grad, input grad of every layer),
    timed at the step's shapes: no implementation of the step in PyTorch can beat this on this CPU.

    Allocation-free: inputs and outputs are made once and every product writes into its own `out=` buffer, so a
    pass times the matmul kernels, not the allocator (glibc returns freed multi-MB blocks to the kernel: page
    faults). One `measure()` is one pass: each shape's fastest of `reps` calls, summed over the step. The machine
    is shared and one pass varies by up to 1.8x between fresh processes (NOTES.md, issue 14 attempt 8), so
    main() takes a pass before, between and after the epochs and compares the epochs with the fastest pass."""

    def __init__(self, config: AutoIntConfig, n_fields: int, batch: int, steps: int):
        rows, width = batch * n_fields, config.heads * config.attn_dim
        self.steps, self.calls, flop = steps, [], 0
        for layer in range(config.layers):
            fan_in = config.embed_dim if layer == 0 else width
            e, w, g = torch.randn(rows, fan_in), torch.randn(4 * width, fan_in), torch.randn(rows, 4 * width)
            outs = torch.empty(rows, 4 * width), torch.empty(4 * width, fan_in), torch.empty(rows, fan_in)
            self.calls += [lambda e=e, w=w, o=outs[0]: torch.mm(e, w.T, out=o),  # W (Query, Key, Value, Res) e
                           lambda e=e, g=g, o=outs[1]: torch.mm(g.T, e, out=o),  # their weight grad
                           lambda w=w, g=g, o=outs[2]: torch.mm(g, w, out=o)]  # the input grad
            flop += 3 * 2 * rows * fan_in * 4 * width
        self.flop = flop
        self.passes_ms: list[float] = []

    def measure(self, reps: int = 7) -> float:
        """One pass; returns and records its ms a step."""
        seconds = 0.0
        for fn in self.calls:
            fn()
            seconds += min(timed(fn, reps))
        self.passes_ms.append(round(seconds * 1e3, 3))
        return self.passes_ms[-1]

    def summary(self) -> dict:
        best = min(self.passes_ms)
        return {"matmul_gflop_per_step": round(self.flop / 1e9, 3), "passes": len(self.passes_ms),
                "matmul_ms_per_step_min": best, "matmul_ms_per_step_median": round(statistics.median(self.passes_ms), 3),
                "matmul_ms_per_step_max": max(self.passes_ms), "matmul_ms_per_step_passes": self.passes_ms,
                "matmul_gflops_best": round(self.flop / best / 1e6, 1),
                "matmul_floor_epoch_s": round(best * self.steps / 1e3, 2),
                "matmul_floor_epoch_s_median": round(statistics.median(self.passes_ms) * self.steps / 1e3, 2)}


class epoch_cpu_clock:
    """Process CPU seconds of one `train()` epoch's steps: from the first training step to the first evaluation
    (the validation pass right after the epoch). On a shared machine, at one thread, the CPU time is the steadier
    figure: it leaves out the time other processes held the core."""

    def __enter__(self):
        self.start = self.end = None
        real_step, real_evaluate = train_module.TrainStep.__call__, train_module.evaluate
        self.restore = lambda: (setattr(train_module.TrainStep, "__call__", real_step),
                                setattr(train_module, "evaluate", real_evaluate))

        def step(step_self, *args, **kwargs):
            if self.start is None:
                self.start = time.process_time()
            return real_step(step_self, *args, **kwargs)

        def evaluate(*args, **kwargs):
            if self.end is None and self.start is not None:
                self.end = time.process_time()
            return real_evaluate(*args, **kwargs)

        train_module.TrainStep.__call__, train_module.evaluate = step, evaluate
        return self

    def __exit__(self, *exc):
        self.restore()

    @property
    def seconds(self) -> float:
        return float("nan") if self.start is None or self.end is None else self.end - self.start


def warm_up(name: str, dataset, config: AutoIntConfig, batches: list[int]) -> float:
    """A forward and backward at each batch size the epoch uses, so the kernels are compiled before the clocks
    start; returns the seconds compiling took (the compile is once a process)."""
    x, y = dataset.split("train")
    torch.manual_seed(0)
    model = AutoInt(config, dataset.schema).train()
    before = KERNELS.compile_seconds
    with version(name):
        for n in batches:
            F_.binary_cross_entropy_with_logits(model(x.index(slice(0, n))), y[:n]).backward()
    return round(KERNELS.compile_seconds - before, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("AUTOINT_DATA_DIR", str(REPO.parent / "shared" / "data" / "ml-1m-u2999")))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2, help="epochs timed per version, interleaved")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--with-eager", action="store_true", help="also time the fused layer uncompiled")
    parser.add_argument("--with-inductor", action="store_true",
                        help="also time the fused layer with inductor's kernel (when the default is the C++ one)")
    parser.add_argument("--with-cpp-attention", action="store_true",
                        help="also time the previous C++ kernel (torch.mm projection, then the C++ attention core; "
                             "issue 14 attempt 9) when the default is the C++ layer with its projection (attempt 12)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    info = machine()
    print(json.dumps({"command": command, "machine": info}))
    if not Path(args.data_dir).is_dir():
        print(json.dumps({"skipped": f"{args.data_dir} not found; pass --data-dir"}))
        return 0
    dataset = load_movielens(args.data_dir)
    paper = AutoIntConfig(embed_dim=16, attn_dim=32, heads=2, layers=3)
    rows = []

    # Same weights, same answers.
    x, _ = dataset.split("train")
    torch.manual_seed(0)
    model = AutoInt(paper, dataset.schema).eval()
    batch = x.index(slice(0, 512))
    with torch.no_grad():
        ours_logit, ours_att = model(batch, return_attention=True)
        with version("reference"):
            naive_logit, naive_att = model(batch, return_attention=True)
    check = {"max_abs_logit_diff": float((ours_logit - naive_logit).abs().max()),
             "max_abs_attention_diff": float((ours_att - naive_att).abs().max())}
    assert check["max_abs_logit_diff"] < 1e-4 and check["max_abs_attention_diff"] < 1e-5, check
    print(json.dumps({"equal_on_same_weights": check}))

    n_train = len(dataset.splits["train"])
    steps = math.ceil(n_train / 1024)
    floor = MatmulFloor(paper, len(dataset.schema.fields), 1024, steps)
    floor.measure()  # the first pass: before any epoch

    if not args.skip_training:  # one epoch of the paper's config, through the real train(), interleaved
        names = ("reference", "ours") + (("ours-cpp-attention",) if args.with_cpp_attention else ()) \
            + (("ours-inductor",) if args.with_inductor else ()) + (("ours-eager",) if args.with_eager else ())
        # Compile the kernels for the epoch's two batch sizes first, so that no epoch's clocks hold a compile.
        warm_compile = {name: warm_up(name, dataset, paper, [1024, n_train - (steps - 1) * 1024]) for name in names}
        epochs, cpu, aucs, compiles, kernels = ({n: [] for n in names} for _ in range(5))
        for _ in range(args.reps):
            for name in names:
                with version(name), epoch_cpu_clock() as clock:
                    result = train(dataset, paper, TrainConfig(epochs=1, batch_size=1024, device="cpu"), progress=False)
                cpu[name].append(round(clock.seconds, 3))  # process CPU s of the epoch's steps (no evaluation)
                epochs[name].append(result.metrics["epoch_seconds"][0])
                aucs[name].append(round(result.metrics["test_auc"], 5))
                compiles[name].append(result.metrics.get("compile_seconds"))
                kernels[name].append(result.metrics.get("kernels") if name != "reference" else "bmm")
                floor.measure()  # a floor pass after every epoch: between the versions and after the last
        fl = floor.summary()
        best_floor = fl["matmul_floor_epoch_s"]
        med = {k: statistics.median(v) for k, v in epochs.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        rows.append((f"paper config: one epoch of {n_train:,} samples (s)", (med["reference"], med_cpu["reference"]),
                     (med["ours"], med_cpu["ours"]), round(2 * best_floor, 2)))
        print(json.dumps({"floor": fl}))
        print(json.dumps({"epoch_seconds": epochs, "epoch_cpu_seconds": cpu, "test_auc_after_1_epoch": aucs,
                          "kernels": kernels, "compile_seconds_warm_up": warm_compile, "compile_seconds_in_train": compiles,
                          "ratio_reference_over_ours": round(med["reference"] / med["ours"], 2),
                          "over_best_floor": {k: round(v / best_floor, 2) for k, v in med.items()},
                          "over_median_floor": {k: round(v / fl["matmul_floor_epoch_s_median"], 2)
                                                for k, v in med.items()},
                          "cpu_over_best_floor": {k: round(v / best_floor, 2) for k, v in med_cpu.items()},
                          "ours_over_floor": round(med["ours"] / best_floor, 2),
                          "target_ours_over_floor": 2.0}))
    else:
        fl = floor.summary()
        print(json.dumps({"floor": fl}))

    # Inference: one sample's explanation, correlations over 73,902 samples, every movie for a user.
    catalog = Catalog(dataset.movielens)
    values = catalog.sample(int(catalog.users["user_id"][0]), int(catalog.movies["movie_id"][0]))
    corr_x = x.index(slice(0, CORRELATION_ROWS))
    scorer = ItemScorer(model, catalog)
    user = int(catalog.users["user_id"][10])

    def per_version(fn, reps, warmup=1):
        def run_reference():
            with version("reference"):
                fn()
        return interleaved({"reference": run_reference, "ours": fn}, reps, warmup)

    one = per_version(lambda: explain_sample(model, values), 30, warmup=3)
    ms = lambda pair: (pair[0] * 1e3, pair[1] * 1e3)
    rows.append(("one sample's CTR + all L x H attention (ms)", ms(one["reference"]), ms(one["ours"]), 20))
    corr = per_version(lambda: dataset_correlations(model, corr_x), 3)
    rows.append((f"correlations over {CORRELATION_ROWS:,} samples (s)", corr["reference"], corr["ours"], 3.0))
    movies = per_version(lambda: scorer.score(user), 20, warmup=3)
    rows.append((f"all {len(scorer.item_ids):,} movies scored for a user, with attention (ms)",
                 ms(movies["reference"]), ms(movies["ours"]), 50))

    print(f"\n{command}\nmachine: {info}")
    print("| figure | reference wall | ours wall | reference/ours | reference CPU | ours CPU | ratio (CPU) | target |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (naive, naive_cpu), (ours, ours_cpu), target in rows:
        print(f"| {name} | {naive:.3f} | {ours:.3f} | {naive / ours:.2f}x | {naive_cpu:.3f} | {ours_cpu:.3f} | "
              f"{naive_cpu / ours_cpu:.2f}x | <= {target} |")
        print(json.dumps({"figure": name, "reference": round(naive, 4), "ours": round(ours, 4), "reference_cpu": round(naive_cpu, 4),
                          "ours_cpu": round(ours_cpu, 4), "ratio": round(naive / ours, 2), "target": target,
                          "met_wall": ours <= target}), file=sys.stderr)
    print(f"\nmatmul floor, {fl['passes']} allocation-free passes (before the epochs and after each): "
          f"{fl['matmul_ms_per_step_min']:.2f} / {fl['matmul_ms_per_step_median']:.2f} / "
          f"{fl['matmul_ms_per_step_max']:.2f} ms a step (min / median / max), best {fl['matmul_gflops_best']} GFLOP/s, "
          f"an epoch {fl['matmul_floor_epoch_s']:.2f} s at the best pass")
    if not args.skip_training:
        for name in epochs:
            print(f"{name}: epoch {med[name]:.2f} s wall, {med_cpu[name]:.2f} s CPU (medians of {epochs[name]}, "
                  f"{cpu[name]}) = {med[name] / best_floor:.2f}x the best floor "
                  f"({med[name] / fl['matmul_floor_epoch_s_median']:.2f}x the median pass; CPU "
                  f"{med_cpu[name] / best_floor:.2f}x)")
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
