"""One CUDA mode of the fused interacting layer (issue 14): correctness against the reference layer, then the
epoch time of the paper's config. benchmarks/gpu_check.sh runs it once per mode, each in a fresh process:

    python benchmarks/gpu_modes.py --mode eager|graph|compiled [--data-dir DIR] [--epochs 3]

Modes (autoint.model.kernels.loader.CUDA_MODE): "eager" (the fused layer's kernels uncompiled), "graph" (uncompiled, the
training step replayed as a CUDA graph, autoint/training/train.py) and "compiled" (inductor's Triton kernels).
Prints one JSON object per line; without CUDA it prints a "skipped" line and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def correctness(device: str) -> dict:
    """Fused (this process's mode) vs the reference layer on the same weights, on `device`: logits,
    attention and every parameter's gradient, max absolute difference."""
    import torch
    import torch.nn.functional as F_
    from autoint.datasets.synth import generate_movielens
    from autoint.datasets.movielens import load_movielens
    from autoint.model.autoint import AutoInt, AutoIntConfig, InteractingLayer
    import tempfile
    data = load_movielens(generate_movielens(Path(tempfile.mkdtemp()) / "ml", users=200, movies=100, ratings=6000,
                                           seed=3))
    out = {}
    for name, kw in (("paper", dict(embed_dim=16, attn_dim=32, heads=2, layers=3)),
                     ("authors-code", dict(qkv_relu=True, projection_bias=True, scaled_attention=True,
                                           layer_norm=True))):
        torch.manual_seed(0)
        model = AutoInt(AutoIntConfig(**kw), data.schema).to(device).train()
        x, y = data.split("train")
        x, y = x.index(slice(0, 1024)).to(device), y[:1024].to(device)

        def run(reference: bool):
            model.zero_grad(set_to_none=True)
            if reference:
                e, atts = model.embed(x), []
                for layer in model.interacting:
                    e, a = InteractingLayer.forward(layer, e)
                    atts.append(a)
                logit, att = model.output(e.reshape(len(y), -1)).squeeze(-1), torch.stack(atts, 1)
            else:
                logit, att = model(x, return_attention=True)
            (F_.binary_cross_entropy_with_logits(logit, y) + att.square().mean()).backward()
            return logit.detach(), att.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

        fused, ref = run(False), run(True)
        out[name] = {"logit": float((fused[0] - ref[0]).abs().max()), "attention": float((fused[1] - ref[1]).abs().max()),
                     "grad": max(float((fused[2][n] - ref[2][n]).abs().max()) for n in ref[2])}
    out["ok"] = all(v[k] <= 1e-5 for v in out.values() if isinstance(v, dict) for k in v)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("eager", "graph", "compiled"), required=True)
    parser.add_argument("--data-dir", default=str(REPO / ".devdata" / "ml-1m-u2999"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only to test this script")
    args = parser.parse_args(argv)
    os.environ["AUTOINT_CUDA_MODE"] = args.mode
    os.environ.pop("AUTOINT_CUDA_GRAPH", None)
    os.environ.pop("AUTOINT_COMPILE", None)
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"step": "mode", "mode": args.mode, "skipped": "no CUDA device"}))
        return 0
    from autoint.model import autoint as model_module
    from autoint.model.kernels import loader as kernel_loader
    from autoint.model.autoint import AutoIntConfig
    from autoint.training.train import TrainConfig, train
    device = torch.device(args.device)
    started = time.perf_counter()
    check = correctness(args.device)
    print(json.dumps({"step": "correctness", "mode": args.mode, **check,
                      "kernels": kernel_loader.KERNELS.mode(device.type),
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    if not Path(args.data_dir).is_dir():
        print(json.dumps({"step": "epoch", "mode": args.mode, "skipped": f"{args.data_dir} not found"}))
        return 0
    from autoint.datasets.movielens import load_movielens
    dataset = load_movielens(args.data_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        started = time.perf_counter()
        result = train(dataset, AutoIntConfig(embed_dim=16, attn_dim=32, heads=2, layers=3),
                       TrainConfig(epochs=args.epochs, patience=args.epochs, batch_size=1024, device=args.device),
                       progress=False)
        total = time.perf_counter() - started
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    m = result.metrics
    n_sync = sum("synchroniz" in str(w.message) for w in caught)
    others = sorted({str(w.message)[:160] for w in caught if "synchroniz" not in str(w.message)})
    print(json.dumps({"step": "epoch", "mode": args.mode, "correct": check["ok"],
                      "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                      "epoch_seconds": m["epoch_seconds"], "steady_epoch_s": min(m["epoch_seconds"][1:] or m["epoch_seconds"]),
                      "compile_seconds": m["compile_seconds"], "kernels": m["kernels"],
                      "test_auc": round(m["test_auc"], 4), "syncs_in_run": n_sync, "warnings": others,
                      "run_seconds_with_eval": round(total, 1), "target_epoch_s": 0.5}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
