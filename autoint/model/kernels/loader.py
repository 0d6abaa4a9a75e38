"""Which kernel runs the fused interacting layer, how it is built and loaded, and what happens when it cannot be.

The model (autoint/model/autoint.py) asks for named operations only: `fused_attention` (Eqs. 5-8 on a projection
computed by torch.mm) and `fused_layer` (the projection and Eqs. 5-8 together, the C++ kernel's layer), plus
`KERNELS.runs_layer(x)` and `runs_fused(F, device_type, dtype)` to choose between them and the reference layer.
Everything that depends on the machine lives here: environment variables, /proc/cpuinfo, the JIT build of
the C++ kernel beside this file (attention.h, attention_forward.cpp, attention_backward.cpp), its lock, and the fallbacks (C++ -> inductor -> eager, one warning each).
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import threading
import time
import warnings

import torch

from ...errors import ConfigError
from .ops import attention_backward, attention_forward

# The named operations of `_Kernels.run`.
ATTENTION_FORWARD, ATTENTION_BACKWARD = "attention_forward", "attention_backward"  # Eqs. 5-8 on the projection p
LAYER_FORWARD, LAYER_BACKWARD = "layer_forward", "layer_backward"  # the C++ layer: projection and Eqs. 5-8
OPERATIONS = (ATTENTION_FORWARD, ATTENTION_BACKWARD, LAYER_FORWARD, LAYER_BACKWARD)

# The CUDA default, the fastest correct of the three modes benchmarks/gpu_check.sh measures on a GPU:
# "eager" (kernels not compiled), "graph" (not compiled; the training step replayed as a CUDA graph,
# autoint/training/train.py) or "compiled" (inductor's Triton kernels). AUTOINT_CUDA_MODE overrides it.
CUDA_MODE = "eager"


def cuda_mode() -> str:
    mode = os.environ.get("AUTOINT_CUDA_MODE", CUDA_MODE)
    if mode not in ("eager", "graph", "compiled"):
        raise ConfigError(f"AUTOINT_CUDA_MODE={mode!r}: choose eager, graph or compiled.")
    return mode


# The CPU default for the fused layer's kernels: "cpp" (autoint/model/kernels/attention*.cpp, built once per machine
# with torch.utils.cpp_extension: `layer_forward`/`layer_backward`, the projection and Eqs. 5-8 per 64-sample
# batch tile in the thread that owns it, benchmarks/NOTES.md issue 14 attempt 12), "cpp-attention" (the
# previous default, attempt 9: the projection as one torch.mm, then the C++ kernel's `attention_forward`/
# `attention_backward`) or "inductor" (torch.mm, then torch.compile of attention_forward/attention_backward).
# AUTOINT_CPU_KERNEL overrides it. Each falls back: the C++ build failing -> inductor, compiling failing or no
# C++ compiler at all -> eager, one warning each. "cpp" is the default only where the CPU has AVX-512 (the
# layer kernel's 16-float vectors and 6 x 4 register blocks are built for its 32 zmm registers; built for AVX2
# it spills, and one layer took 62 ms where cpp-attention took 17, benchmarks/NOTES.md attempt 12 review);
# elsewhere the default is "cpp-attention".
CPU_KERNEL = "cpp"
CPU_KERNEL_WITHOUT_AVX512 = "cpp-attention"
CPU_KERNELS = ("cpp", "cpp-attention", "inductor")
_HERE = os.path.dirname(os.path.abspath(__file__))
CPP_SOURCES = tuple(os.path.join(_HERE, f)  # ninja
                    for f in ("attention_forward.cpp", "attention_backward.cpp", "layer_backward.cpp"))
CPP_HEADER = os.path.join(_HERE, "attention.h")  # compiles them side by side; each includes the kernel maths here
# The C++ kernels' field counts: templates for 1..16 fields (F vectors of accumulators in registers), the k-blocked
# wide cores (chunks of 16 fields, F at run time) above; used up to here, the widest schema measured against the
# reference (FUSED_MAX_FIELDS).
CPP_MAX_FIELDS = 64


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> str:
    """The "flags" line of /proc/cpuinfo (empty where there is none); read once (36 us a read, and `cpu_kernel`
    asks for it twice per layer call)."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return ""


def cpu_kernel() -> str:
    default = CPU_KERNEL if "avx512f" in _cpu_flags().split() else CPU_KERNEL_WITHOUT_AVX512
    choice = os.environ.get("AUTOINT_CPU_KERNEL", default)
    if choice not in CPU_KERNELS:
        raise ConfigError(f"AUTOINT_CPU_KERNEL={choice!r}: choose one of {', '.join(CPU_KERNELS)}.")
    return choice


def build_cpp_ops(name: str, cflags: list[str]):
    """The C++ kernel built as extension `name` with `cflags` (or loaded from ~/.cache/torch_extensions when built
    before): its operators, `torch.ops.<name>` (attention_forward, attention_backward, layer_forward,
    layer_backward)."""
    from torch.utils.cpp_extension import load
    with _build_lock(name):
        load(name=name, sources=list(CPP_SOURCES), extra_cflags=cflags, extra_ldflags=["-fopenmp"],
             extra_include_paths=[_HERE], is_python_module=False, verbose=False)
    return getattr(torch.ops, name)


def _build_cpp_extension():
    """The C++ kernel for this machine, compiled (-O3 -march=native) on the first call on this machine and loaded
    from ~/.cache/torch_extensions afterwards. The name carries the CPU's vector flags, so a cache shared between
    different CPUs never loads a build for the wrong instruction set, and the sources' hash and path, so
    checkouts (git worktrees, clones) keep their own builds instead of rebuilding over each other's."""
    import hashlib
    import platform
    digest = hashlib.sha1(platform.machine().encode() + _cpu_flags().encode())
    for path in (CPP_HEADER, *CPP_SOURCES):  # a changed source (another branch, an edit) builds under its own name,
        # and so does another checkout: torch rebuilds when a build's source path changes, so two checkouts sharing
        # one name would rebuild over each other in turn (46 s each time)
        with open(path, "rb") as source:
            digest.update(source.read() + path.encode())
    cflags = ["-O3", "-march=native", "-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64"):
        cflags.append("-mprefer-vector-width=512")
    return build_cpp_ops(f"autoint_attention_{digest.hexdigest()[:10]}", cflags)


@contextlib.contextmanager
def _build_lock(name: str):
    """One process at a time builds or loads extension `name`, under an OS lock that dies with its holder.

    torch's own guard is a plain file, `lock`, in the build folder (`torch.utils.file_baton.FileBaton`): a
    process killed while it builds (a cancelled training job, a test's subprocess, a stopped server) leaves
    it behind, and every later `load` of that name waits on it forever. Holding the OS lock, no other process
    of this code is building `name`, so a `lock` file found there is such a leftover and is removed."""
    from filelock import FileLock
    from torch.utils.cpp_extension import _get_build_directory
    folder = _get_build_directory(name, verbose=False)  # creates the folder
    with FileLock(os.path.join(folder, "autoint-build.lock")):
        leftover = os.path.join(folder, "lock")
        if os.path.exists(leftover):
            warnings.warn(f"AutoInt: removing {leftover}, left by a build that was stopped before it ended.",
                          RuntimeWarning, stacklevel=3)
            try:
                os.remove(leftover)
            except FileNotFoundError:
                pass
        yield


class _Kernels:
    """`attention_forward`/`attention_backward` on the CPU as the C++ kernel or compiled by inductor, or eager.

    A call with arguments not seen before (device, shapes, options) may compile; such calls take a lock (the
    app calls from several threads), their time is added to `compile_seconds`, and if compiling fails the
    device type falls back to eager for the rest of the process with one warning. The C++ kernel (float32 CPU
    tensors, up to CPP_MAX_FIELDS fields; with CPU_KERNEL "cpp" it runs the whole layer, projection included:
    `runs_layer`, `FusedLayer`) is built on its first use, under the same lock and clock; if the build fails,
    inductor takes over, with one warning. Batches under `MIN_COMPILED_BATCH` samples run eagerly: there
    a kernel gains nothing worth its seconds (one sample's explanation takes ~2 ms either way, and the app's
    first click would wait for a compile).
    """

    MIN_COMPILED_BATCH = 64

    def __init__(self):
        self.lock = threading.Lock()
        self.compiled: dict[str, tuple] = {}  # device type -> (forward, backward) compiled
        self.eager_reason: dict[str, str] = {}  # device type -> why it runs eagerly
        self.seen: set = set()
        self.compile_seconds = 0.0
        self.warned = False
        self.cpp = None  # the built C++ extension module
        self.cpp_problem: str | None = None  # why the C++ kernel is not used (set once, with its warning)

    def wants_compile(self, device_type: str) -> bool:
        setting = os.environ.get("AUTOINT_COMPILE", "auto")
        if setting == "0":
            return False
        if setting == "1":
            return True
        return device_type == "cpu" or (device_type == "cuda" and cuda_mode() == "compiled")

    def mode(self, device_type: str) -> str:
        """'cpp', 'compiled' or 'eager', as the next call on this device type runs (float32, F <= CPP_MAX_FIELDS)."""
        if not self.wants_compile(device_type) or device_type in self.eager_reason:
            return "eager"
        if device_type == "cpu" and device_type not in self.compiled and self.cpp is None:
            problem = _compiler_problem()
            if problem:
                self.fall_back(device_type, problem)
                return "eager"
        if device_type == "cpu" and cpu_kernel() != "inductor" and self.cpp_problem is None:
            return "cpp"
        return "compiled"

    def fall_back(self, device_type: str, reason: str) -> None:
        self.eager_reason[device_type] = reason
        if not self.warned:
            self.warned = True
            warnings.warn(f"AutoInt: the fused interacting layer runs uncompiled on {device_type} ({reason}); "
                          "results are the same, training is slower. Install a C++ compiler (g++) for the fast "
                          "path, or set AUTOINT_COMPILE=0 to choose eager and silence this.", RuntimeWarning,
                          stacklevel=4)

    def cpp_module(self):
        """The built C++ extension, or None once its build failed (then inductor runs, after one warning)."""
        if self.cpp is not None or self.cpp_problem is not None:
            return self.cpp
        with self.lock:
            if self.cpp is None and self.cpp_problem is None:
                started = time.perf_counter()
                try:
                    self.cpp = _build_cpp_extension()
                except Exception as exc:  # no ninja, a compiler error, an unsupported flag: inductor instead
                    self.cpp_problem = f"{type(exc).__name__}: {str(exc)[-300:]}"
                    warnings.warn(f"AutoInt: the C++ attention kernel did not build ({self.cpp_problem}); the fused "
                                  "layer uses torch.compile's kernel instead (same results, slower). Set "
                                  "AUTOINT_CPU_KERNEL=inductor to skip the build and silence this.", RuntimeWarning,
                                  stacklevel=5)
                self.compile_seconds += time.perf_counter() - started
        return self.cpp

    def runs_layer(self, x: torch.Tensor) -> bool:
        """Whether the C++ kernel's layer_forward/layer_backward (projection included) run a layer on x (in, F,
        B): the CPU kernel "cpp", float32, up to CPP_MAX_FIELDS fields, at least MIN_COMPILED_BATCH samples."""
        return (x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[1] <= CPP_MAX_FIELDS
                and x.shape[2] >= self.MIN_COMPILED_BATCH and cpu_kernel() == "cpp" and self.mode("cpu") == "cpp"
                and self.cpp_module() is not None)

    def run(self, op: str, device_type: str, key: tuple, *args):
        """One of OPERATIONS: ATTENTION_FORWARD/BACKWARD (C++, compiled or eager), LAYER_FORWARD/BACKWARD (C++)."""
        if op in (LAYER_FORWARD, LAYER_BACKWARD):
            tensors = [a.contiguous() if isinstance(a, torch.Tensor) else a for a in args]
            return tuple(getattr(self.cpp_module(), op)(*tensors))
        which = (ATTENTION_FORWARD, ATTENTION_BACKWARD).index(op)  # the compiled pair's index
        eager = (attention_forward, attention_backward)[which]
        p = args[0]
        if p.shape[-1] < self.MIN_COMPILED_BATCH:  # p: (.., B)
            return eager(*args)
        mode = self.mode(device_type)
        if mode == "eager":
            return eager(*args)
        if mode == "cpp" and p.dtype == torch.float32 and p.shape[3] <= CPP_MAX_FIELDS:
            module = self.cpp_module()
            if module is not None:
                tensors = [a.contiguous() if isinstance(a, torch.Tensor) else a for a in args]
                if op == ATTENTION_FORWARD:
                    return tuple(module.attention_forward(*tensors))
                return module.attention_backward(*tensors)
        if device_type not in self.compiled:
            self.compiled[device_type] = (torch.compile(attention_forward), torch.compile(attention_backward))
        compiled = self.compiled[device_type][which]
        key = (op, device_type) + key
        if key in self.seen:
            return compiled(*args)
        with self.lock:
            started = time.perf_counter()
            try:
                out = compiled(*args)
            except Exception as exc:  # inductor could not build the kernel: same maths, eagerly
                self.fall_back(device_type, f"compiling failed: {type(exc).__name__}: {str(exc)[:200]}")
                return eager(*args)
            self.compile_seconds += time.perf_counter() - started
            self.seen.add(key)
            return out


@functools.lru_cache(maxsize=1)
def _compiler_problem() -> str | None:
    """None when a C++ compiler runs ($CXX, else g++ or clang++: the ones inductor and the extension build would
    take), else why not. Asks the compiler for its version (a few ms), without importing inductor: that import
    (torch._dynamo, sympy) took 2.2 s of the app's first chart."""
    name = os.environ.get("CXX") or next((c for c in ("g++", "clang++") if shutil.which(c)), "g++")
    path = shutil.which(name)
    if path is None:
        return f"no working C++ compiler: {name!r} (not found)"
    try:
        subprocess.run([path, "--version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no working C++ compiler: {name!r} ({type(exc).__name__})"
    return None


KERNELS = _Kernels()


def _signature(*tensors) -> tuple:
    return tuple(None if t is None else (tuple(t.shape), t.dtype) for t in tensors)


class FusedAttention(torch.autograd.Function):
    """Eqs. 5-8 of one layer as one autograd node: forward and hand-derived backward, each one kernel."""

    @staticmethod
    def forward(ctx, p, attn_keep, head_keep, scale: float, residual: bool, qkv_relu: bool):
        options = (scale, residual, qkv_relu)
        key = _signature(p, attn_keep, head_keep) + options
        out, alpha = KERNELS.run(ATTENTION_FORWARD, p.device.type, key, p, attn_keep, head_keep, *options)
        ctx.save_for_backward(p, alpha, out, attn_keep, head_keep)
        ctx.options = options
        ctx.set_materialize_grads(False)
        return out, alpha

    @staticmethod
    def backward(ctx, grad_out, grad_alpha):
        p, alpha, out, attn_keep, head_keep = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        key = _signature(p, grad_alpha, attn_keep, head_keep) + ctx.options
        grad_p = KERNELS.run(ATTENTION_BACKWARD, p.device.type, key, p, alpha, out, grad_out, grad_alpha, attn_keep, head_keep,
                             *ctx.options)
        return grad_p, None, None, None, None, None


class FusedLayer(torch.autograd.Function):
    """Eqs. 5-8 with their projection (W_Query, W_Key, W_Value and W_Res of every head) as one autograd node: the
    C++ kernel's layer_forward/layer_backward, which compute each 64-sample batch tile's projection, attention
    and gradients in the thread that owns the tile, so p and grad_p never leave its L2 (benchmarks/NOTES.md,
    issue 14 attempt 12). The forward keeps the raw projection, tile by tile, for the backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, attn_keep, head_keep, heads: int, scale: float, residual: bool,
                qkv_relu: bool, save: bool):
        options = (heads, scale, residual, qkv_relu)
        out, alpha, saved = KERNELS.run(LAYER_FORWARD, "cpu", (), x, weight, bias, attn_keep, head_keep, *options, save)
        ctx.save_for_backward(x, weight, saved, alpha, out, attn_keep, head_keep)
        ctx.options, ctx.has_bias = options, bias is not None
        ctx.set_materialize_grads(False)
        return out, alpha

    @staticmethod
    def backward(ctx, grad_out, grad_alpha):
        x, weight, saved, alpha, out, attn_keep, head_keep = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        grad_x, grad_weight, grad_bias = KERNELS.run(
            LAYER_BACKWARD, "cpu", (), x, weight, saved, alpha, out, grad_out, grad_alpha, attn_keep, head_keep, *ctx.options,
            ctx.needs_input_grad[0], ctx.has_bias and ctx.needs_input_grad[2])
        return grad_x, grad_weight, grad_bias, None, None, None, None, None, None, None


def keep_mask(shape: tuple, p: float, like: torch.Tensor) -> torch.Tensor:
    """Inverted dropout's multiplier: 0 with probability p, else 1/(1-p)."""
    return torch.empty(shape, device=like.device, dtype=like.dtype).bernoulli_(1 - p).div_(1 - p)


# Inductor's fused kernel vectorises each contraction over the batch only, so past ~16 fields it is slower than
# the reference's batched matmuls (fused/reference 1.28 at F=22, 1.40 at F=39, benchmarks/NOTES.md attempt 6), and
# so is eager's: up to FUSED_MAX_FIELDS every path uses the fused layer. The C++ kernels' wide cores (k-blocked, F
# at run time) are faster than the reference: one layer's fwd + bwd with its projection, B=1024, d'=32, H=2,
# in=64, 1 thread: reference/C++ layer 2.06 at F=17, 1.99 at F=22, 2.19 at F=39 (NOTES.md attempt 14), and
# torch.mm + the C++ attention core ("cpp-attention") 1.42 at F=39. Built for AVX2 (8-float vectors) both are
# slower than the reference at F=22 and F=39 (0.32-0.88, attempt 14's AVX2 check). So wider schemas, up to
# CPP_MAX_FIELDS, use the fused layer where a C++ kernel runs on an AVX-512 CPU (float32), and the reference layer
# in the (B, F, d) layout elsewhere (AVX2 only, no C++ build, inductor, CUDA: same weights, same maths).
FUSED_MAX_FIELDS = 16


def runs_fused(fields: int, device_type: str, dtype: torch.dtype = torch.float32) -> bool:
    """Whether a model of `fields` fields runs the column layout and the fused layer on that device: up to
    FUSED_MAX_FIELDS fields on every path, up to CPP_MAX_FIELDS where a C++ kernel runs on an AVX-512 CPU
    (float32); else the reference layer in the (B, F, d) layout."""
    if fields <= FUSED_MAX_FIELDS:
        return True
    return (fields <= CPP_MAX_FIELDS and device_type == "cpu" and dtype == torch.float32
            and "avx512f" in _cpu_flags().split() and KERNELS.mode("cpu") == "cpp"
            and KERNELS.cpp_module() is not None)
