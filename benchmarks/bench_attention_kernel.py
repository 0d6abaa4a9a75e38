"""The attention core of one interacting layer alone (Eqs. 5-8 forward, then the hand-derived backward), in the
column layout, for each CPU kernel of autoint/model/autoint.py: the C++ kernel (autoint/model/kernels/attention*.cpp),
inductor's (torch.compile of attention_forward/attention_backward) and eager. Interleaved, medians.

    .venv/bin/python benchmarks/bench_attention_kernel.py [--batch 1024] [--fields 7] [--heads 2] [--attn-dim 32]
        [--threads 1] [--reps 40]

Prints one JSON line per kernel and direction (ms) and the ratios inductor / C++.

With --layer: the whole layer with its projection instead (x (in, F, B) -> out, alpha; backward to grad_x and
grad_W): "mm+cpp" (torch.mm, then the C++ attention core; the backward's two mm; issue 14 attempt 9) against
"layer" (the C++ kernel's layer_forward / layer_backward, the projection per batch tile; attempt 12) and
"reference" (`InteractingLayer.forward`, the (B, F, d) layout and batched matmuls, autograd's backward: what
the model runs above FUSED_MAX_FIELDS fields), the paper's options (unscaled, residual, no ReLU, no bias).
Past 16 fields the C++ kernels run their k-blocked wide cores (issue 14/15 follow-up). --avx2-build: the C++
kernels built as an AVX2-only CPU builds them (measured on this CPU).

    .venv/bin/python benchmarks/bench_attention_kernel.py --layer [--in-dim 64] [--fields 39] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import autoint.model.autoint as model_module
import autoint.model.kernels.ops as kernel_ops
import autoint.model.kernels.loader as kernel_loader


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--fields", type=int, default=7)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--attn-dim", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--with-eager", action="store_true")
    parser.add_argument("--layer", action="store_true", help="the layer with its projection: mm + C++ core vs C++ layer")
    parser.add_argument("--in-dim", type=int, default=64, help="with --layer: the layer's input width (d or H*d')")
    parser.add_argument("--avx2-build", action="store_true",
                        help="build the C++ kernels for AVX2 (-march=haswell -mno-avx512f, under their own name): "
                             "what an AVX2-only CPU runs, measured on this one")
    args = parser.parse_args(argv)
    if args.avx2_build:
        kernel_loader._build_cpp_extension = _avx2_build
    torch.set_num_threads(args.threads)
    print(json.dumps({"command": "python benchmarks/bench_attention_kernel.py " + " ".join(sys.argv[1:]),
                      "threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2)}))
    torch.manual_seed(0)
    H, D, F, B = args.heads, args.attn_dim, args.fields, args.batch
    if args.layer:
        return layer(args)
    p = torch.randn(4, H, D, F, B)
    options = (1.0, True, False)  # the paper: unscaled, residual, no ReLU on the projection
    out, alpha = kernel_ops.attention_forward(p, None, None, *options)
    grad_out = torch.randn_like(out)
    cpp = kernel_loader._Kernels().cpp_module()
    forward_c, backward_c = torch.compile(kernel_ops.attention_forward), torch.compile(kernel_ops.attention_backward)
    kernels = {"inductor": (lambda: forward_c(p, None, None, *options),
                            lambda: backward_c(p, alpha, out, grad_out, None, None, None, *options))}
    if cpp is not None:
        kernels["cpp"] = (lambda: cpp.attention_forward(p, None, None, *options),
                          lambda: cpp.attention_backward(p, alpha, out, grad_out, None, None, None, *options))
    if args.with_eager:
        kernels["eager"] = (lambda: kernel_ops.attention_forward(p, None, None, *options),
                            lambda: kernel_ops.attention_backward(p, alpha, out, grad_out, None, None, None, *options))
    times, med = _interleaved(kernels, args.reps)
    for (name, direction), ms in med.items():
        print(json.dumps({"kernel": name, "direction": direction, "median_ms": round(ms, 3),
                          "min_ms": round(min(times[(name, direction)]) * 1e3, 3)}))
    if "cpp" in kernels:
        total = {k: med[(k, "forward")] + med[(k, "backward")] for k in kernels}
        print(json.dumps({"inductor_over_cpp": {d: round(med[("inductor", d)] / med[("cpp", d)], 2)
                                                for d in ("forward", "backward")},
                          "total_ms": {k: round(v, 3) for k, v in total.items()},
                          "load_avg_1m_after": round(os.getloadavg()[0], 2)}))
    return 0


def _avx2_build():
    return kernel_loader.build_cpp_ops("autoint_attention_avx2_probe", ["-O3", "-march=haswell", "-mno-avx512f", "-fopenmp"])


def _interleaved(kernels: dict, reps: int) -> tuple[dict, dict]:
    """Each kernel's (forward, backward) warmed 3 times (compile, build, caches), then timed `reps` times, the
    kernels interleaved: (the times in s per (name, direction), their medians in ms)."""
    for forward, backward in kernels.values():
        for _ in range(3):
            forward(), backward()
    times = {(k, d): [] for k in kernels for d in ("forward", "backward")}
    for _ in range(reps):
        for name, (forward, backward) in kernels.items():
            for direction, fn in (("forward", forward), ("backward", backward)):
                started = time.perf_counter()
                fn()
                times[(name, direction)].append(time.perf_counter() - started)
    return times, {key: statistics.median(v) * 1e3 for key, v in times.items()}


def layer(args) -> int:
    H, D, F, B, C = args.heads, args.attn_dim, args.fields, args.batch, args.in_dim
    cpp = kernel_loader._Kernels().cpp_module()
    if cpp is None:
        print(json.dumps({"skipped": "the C++ kernel does not build here"}))
        return 0
    x, weight = torch.randn(C, F, B) * 0.3, torch.randn(4 * H * D, C) * 0.1
    options = (1.0, True, False)  # the paper: unscaled, residual, no ReLU on the projection
    flat = x.view(C, F * B)
    p = torch.mm(weight, flat).view(4, H, D, F, B)
    out, alpha = cpp.attention_forward(p, None, None, *options)
    grad_out = torch.randn_like(out)
    _, _, kept = cpp.layer_forward(x, weight, None, None, None, H, *options, True)

    def mm_backward():
        grad_p = cpp.attention_backward(p, alpha, out, grad_out, None, None, None, *options).view(-1, F * B)
        return torch.mm(weight.t(), grad_p), torch.mm(grad_p, flat.t())

    config = model_module.AutoIntConfig(heads=H, attn_dim=D, residual=True, scaled_attention=False,
                                        qkv_relu=False, projection_bias=False, dropout=0.0, attention_dropout=0.0,
                                        layer_norm=False)
    reference = model_module.InteractingLayer(C, config)
    with torch.no_grad():
        reference.projection.weight.copy_(weight)
    rows = x.permute(2, 1, 0).contiguous().requires_grad_(True)  # (B, F, in)
    grad_rows = grad_out.view(H * D, F, B).permute(2, 1, 0).contiguous()  # (B, F, H*d')
    graph = {}

    def reference_forward():
        graph["out"] = reference(rows)[0]

    def reference_backward():
        return torch.autograd.grad(graph.pop("out"), (rows, reference.projection.weight), grad_rows)

    kernels = {"mm+cpp": (lambda: cpp.attention_forward(torch.mm(weight, flat).view(4, H, D, F, B), None, None,
                                                         *options), mm_backward),
               "layer": (lambda: cpp.layer_forward(x, weight, None, None, None, H, *options, True),
                         lambda: cpp.layer_backward(x, weight, kept, alpha, out, grad_out, None, None, None, H,
                                                    *options, True, False)),
               "reference": (reference_forward, reference_backward)}
    times, med = _interleaved(kernels, args.reps)
    for (name, direction), ms in med.items():
        print(json.dumps({"kernel": name, "in_dim": C, "direction": direction, "median_ms": round(ms, 3),
                          "min_ms": round(min(times[(name, direction)]) * 1e3, 3)}))
    total = {k: med[(k, "forward")] + med[(k, "backward")] for k in kernels}
    print(json.dumps({"total_ms": {k: round(v, 3) for k, v in total.items()},
                      "mm_cpp_over_layer": round(total["mm+cpp"] / total["layer"], 2),
                      "reference_over_layer": round(total["reference"] / total["layer"], 2),
                      "load_avg_1m_after": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
