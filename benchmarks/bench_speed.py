"""Speed of training and explaining, ours against a naive reference, in ONE run (the machine is shared:
compare the ratios, measured interleaved, not absolute seconds from different runs).

    .venv/bin/python benchmarks/bench_speed.py [--data-dir ../shared/data/ml-1m-u2999] [--threads 2] [--reps 2]

Baseline ("naive"): the interacting layer as first written (permute + 4-D matmul + last-dim softmax; the code
is kept below, checked equal to ours on the same weights) and Adam's per-parameter loop. Ours: the layer in
autoint/model.py and the fused Adam of autoint/train.py. Everything else (data, loop, batching) is shared.
Prints a table and one JSON object per line.
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

import autoint.train as train_module
from autoint.datasets.movielens import Catalog, load_dataset
from autoint.explain import dataset_correlations, explain_sample
from autoint.recommend import ItemScorer
from autoint.model import AutoInt, AutoIntConfig, InteractingLayer
from autoint.train import TrainConfig, train

CORRELATION_ROWS = 73_902  # the full ML-1M test split's size


def naive_interacting_forward(self, e):
    """The layer as first written: the baseline. Same parameters, same maths."""
    B, F, _ = e.shape
    H, dh = self.heads, self.attn_dim
    projected = self.projection(e).view(B, F, -1, H, dh)  # (B, F, 3 or 4, H, d')
    query, key, value = projected[:, :, :3].permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, F, d')
    scores = query @ key.transpose(-1, -2)  # (B, H, F, F)  Eq. 5
    if self.scaled:
        scores = scores / math.sqrt(dh)
    attention = scores.softmax(dim=-1)  # (B, H, F, F)  Eq. 5
    combined = (attention @ value).transpose(1, 2).reshape(B, F, H * dh)  # Eqs. 6-7
    combined = self.dropout(combined)
    if self.residual:
        combined = combined + projected[:, :, 3].reshape(B, F, H * dh)  # Eq. 8
    return self.norm(F_.relu(combined)), attention


OURS_FORWARD = InteractingLayer.forward
OURS_OPTIMIZER = train_module.make_optimizer


def naive_optimizer(model, train_config):
    return torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)


@contextmanager
def version(name: str):
    InteractingLayer.forward = naive_interacting_forward if name == "naive" else OURS_FORWARD
    train_module.make_optimizer = naive_optimizer if name == "naive" else OURS_OPTIMIZER
    try:
        yield
    finally:
        InteractingLayer.forward, train_module.make_optimizer = OURS_FORWARD, OURS_OPTIMIZER


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
            "avx512f": "avx512f" in flags, "amx_bf16": "amx_bf16" in flags,
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


def matmul_floor(threads: int, config: AutoIntConfig, n_fields: int, batch: int, steps: int) -> dict:
    """The training step's dense matmuls alone (projection forward, weight grad, input grad of every layer),
    timed at the step's shapes: no implementation of the step in PyTorch can beat this on this CPU."""
    rows = batch * n_fields
    width = config.heads * config.attn_dim
    flop, seconds = 0, 0.0
    for layer in range(config.layers):
        fan_in = config.embed_dim if layer == 0 else width
        e, w, g = torch.randn(rows, fan_in), torch.randn(4 * width, fan_in), torch.randn(rows, 4 * width)
        shapes = [lambda: e @ w.T, lambda: g.T @ e, lambda: g @ w]
        for fn in shapes:
            fn()
            seconds += min(timed(fn, 7))
        flop += 3 * 2 * rows * fan_in * 4 * width
    return {"matmul_gflop_per_step": round(flop / 1e9, 3), "matmul_ms_per_step": round(seconds * 1e3, 2),
            "matmul_gflops": round(flop / seconds / 1e9, 1), "matmul_floor_epoch_s": round(seconds * steps, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("AUTOINT_DATA_DIR", str(REPO.parent / "shared" / "data" / "ml-1m-u2999")))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2, help="epochs timed per version, interleaved")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    info = machine()
    print(json.dumps({"command": command, "machine": info}))
    if not Path(args.data_dir).is_dir():
        print(json.dumps({"skipped": f"{args.data_dir} not found; pass --data-dir"}))
        return 0
    dataset = load_dataset(args.data_dir)
    paper = AutoIntConfig(embed_dim=16, attn_dim=32, heads=2, layers=3)
    rows = []

    # Same weights, same answers.
    x, _ = dataset.split("train")
    torch.manual_seed(0)
    model = AutoInt(paper, dataset.schema).eval()
    batch = x.index(slice(0, 512))
    with torch.no_grad():
        ours_logit, ours_att = model(batch, return_attention=True)
        with version("naive"):
            naive_logit, naive_att = model(batch, return_attention=True)
    check = {"max_abs_logit_diff": float((ours_logit - naive_logit).abs().max()),
             "max_abs_attention_diff": float((ours_att - naive_att).abs().max())}
    assert check["max_abs_logit_diff"] < 1e-4 and check["max_abs_attention_diff"] < 1e-5, check
    print(json.dumps({"equal_on_same_weights": check}))

    steps = math.ceil(len(dataset.splits["train"]) / 1024)
    floor = matmul_floor(args.threads, paper, len(dataset.schema.fields), 1024, steps)
    print(json.dumps({"floor": floor}))

    if not args.skip_training:  # one epoch of the paper's config, through the real train(), interleaved
        epochs = {"naive": [], "ours": []}
        cpu = {"naive": [], "ours": []}
        aucs = {"naive": [], "ours": []}
        for _ in range(args.reps):
            for name in ("naive", "ours"):
                with version(name):
                    c0 = time.process_time()
                    result = train(dataset, paper, TrainConfig(epochs=1, batch_size=1024, device="cpu"), progress=False)
                    cpu[name].append(round(time.process_time() - c0, 2))  # includes the val/test evaluation
                epochs[name].append(result.metrics["epoch_seconds"][0])
                aucs[name].append(round(result.metrics["test_auc"], 5))
        med = {k: statistics.median(v) for k, v in epochs.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        rows.append(("paper config: one epoch of 288,347 samples (s)", (med["naive"], med_cpu["naive"]),
                     (med["ours"], med_cpu["ours"]), 3.0))
        print(json.dumps({"epoch_seconds": epochs, "train_call_cpu_seconds": cpu, "test_auc_after_1_epoch": aucs,
                          "ratio_naive_over_ours": round(med["naive"] / med["ours"], 2)}))

    # Inference: one sample's explanation, correlations over 73,902 samples, every movie for a user.
    catalog = Catalog(dataset.movielens)
    values = catalog.sample(int(catalog.users["user_id"][0]), int(catalog.movies["movie_id"][0]))
    corr_x = x.index(slice(0, CORRELATION_ROWS))
    scorer = ItemScorer(model, catalog)
    user = int(catalog.users["user_id"][10])

    def per_version(fn, reps, warmup=1):
        def run_naive():
            with version("naive"):
                fn()
        return interleaved({"naive": run_naive, "ours": fn}, reps, warmup)

    one = per_version(lambda: explain_sample(model, values), 30, warmup=3)
    ms = lambda pair: (pair[0] * 1e3, pair[1] * 1e3)
    rows.append(("one sample's CTR + all L x H attention (ms)", ms(one["naive"]), ms(one["ours"]), 20))
    corr = per_version(lambda: dataset_correlations(model, corr_x), 3)
    rows.append((f"correlations over {CORRELATION_ROWS:,} samples (s)", corr["naive"], corr["ours"], 3.0))
    movies = per_version(lambda: scorer.score(user), 20, warmup=3)
    rows.append((f"all {len(scorer.item_ids):,} movies scored for a user, with attention (ms)",
                 ms(movies["naive"]), ms(movies["ours"]), 50))

    print(f"\n{command}\nmachine: {info}")
    print("| figure | naive wall | ours wall | naive/ours | naive CPU | ours CPU | naive/ours (CPU) | target |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (naive, naive_cpu), (ours, ours_cpu), target in rows:
        print(f"| {name} | {naive:.3f} | {ours:.3f} | {naive / ours:.2f}x | {naive_cpu:.3f} | {ours_cpu:.3f} | "
              f"{naive_cpu / ours_cpu:.2f}x | <= {target} |")
        print(json.dumps({"figure": name, "naive": round(naive, 4), "ours": round(ours, 4), "naive_cpu": round(naive_cpu, 4),
                          "ours_cpu": round(ours_cpu, 4), "ratio": round(naive / ours, 2), "target": target,
                          "met_wall": ours <= target}), file=sys.stderr)
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
