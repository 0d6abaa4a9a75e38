"""Resident memory of the C++ layer kernel (autoint/model/kernels/attention*.cpp, layer_forward/layer_backward) on a
big inference batch and over repeated calls: its per-thread scratch buffers are kept between calls (sized by the
layer's shape and the 64-sample tile, not by the batch), so RSS must not grow from call to call, and a no-grad
forward keeps nothing for a backward. Compares with AUTOINT_CPU_KERNEL=cpp-attention (torch.mm + C++ core).

    PYTHONPATH=. .venv/bin/python benchmarks/rss_layer_kernel.py [--batch 100000] [--fields 16] [--kernel cpp]

Prints one JSON line per phase: RSS now and peak (MiB) after it.
"""
import argparse
import json
import os
import resource

import torch


def rss_mib() -> tuple[float, float]:
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return round(now, 1), round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--fields", type=int, default=16)
    parser.add_argument("--kernel", default="cpp", choices=["cpp", "cpp-attention"])
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    os.environ["AUTOINT_CPU_KERNEL"] = args.kernel
    from autoint.model.autoint import AutoIntConfig, FusedInteractingLayer
    from autoint.model.kernels.loader import KERNELS
    torch.manual_seed(0)
    layer = FusedInteractingLayer(16, AutoIntConfig(embed_dim=16, attn_dim=32, heads=2, layers=1)).eval()
    x = torch.randn(16, args.fields, args.batch)
    assert KERNELS.mode("cpu") == "cpp"
    print(json.dumps({"phase": "start", "kernel": args.kernel, "batch": args.batch, "F": args.fields,
                      "threads": torch.get_num_threads(), "rss_peak_mib": rss_mib()}), flush=True)
    for phase, grad in (("no_grad", False), ("grad", True)):
        for i in range(args.calls):
            with torch.set_grad_enabled(grad):
                out, alpha = layer.forward_columns(x)
                if grad:
                    (out.sum() + alpha.sum()).backward()
                del out, alpha
            print(json.dumps({"phase": f"{phase} call {i + 1}", "rss_peak_mib": rss_mib()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
