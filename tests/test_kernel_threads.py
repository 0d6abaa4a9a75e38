"""The C++ layer kernel (autoint/model/kernels/attention*.cpp, layer_forward/layer_backward) called from several Python
threads at once, as the app does (a background trainer or correlation job while the page thread explains a
sample). The kernel's operators release the GIL, so such calls do overlap; it keeps per-thread scratch buffers
between calls (thread_local, so keyed by the OS thread:
at::parallel_for's thread 0 is the calling Python thread and each caller gets its own OpenMP team); two
concurrent calls sharing one would mix their tiles. Each thread runs its own shapes and options, several times,
and must get exactly what a serial run of the same inputs gives.
"""
import threading

import pytest
import torch

import autoint.model.kernels.loader as kernel_loader
from autoint.model.autoint import AutoInt, AutoIntConfig
from conftest import layer_inputs

# (H, D, F, B, in, residual, qkv_relu, dropout, bias): different scratch sizes per thread, batches that are not
# whole 64-sample tiles, one under a tile.
CASES = [
    (2, 32, 7, 1000, 16, True, False, True, False),
    (2, 8, 16, 130, 13, False, True, False, True),
    (1, 4, 3, 70, 8, True, True, True, True),
    (3, 5, 11, 33, 40, True, False, False, False),
]


def _module():
    module = kernel_loader._Kernels().cpp_module()
    if module is None:
        pytest.skip("the C++ kernel is not built here (no compiler, or its build failed with a warning): nothing runs it, the eager and inductor "
                    "paths are tested in test_fused.py")
    return module


def _inputs(case, seed):
    H, D, F, B, C_in, residual, qkv_relu, dropout, bias = case
    return layer_inputs(H, D, F, B, C_in, residual, dropout, bias, True, torch.Generator().manual_seed(seed))


def _run(module, case, inputs):
    H, D, F, B, C_in, residual, qkv_relu, dropout, bias = case
    x, weight, b, attn_keep, head_keep, grad_out, grad_alpha = inputs
    options = (H, 0.7, residual, qkv_relu)
    out, alpha, saved = module.layer_forward(x, weight, b, attn_keep, head_keep, *options, True)
    grads = module.layer_backward(x, weight, saved, alpha, out, grad_out, grad_alpha, attn_keep, head_keep,
                                  *options, True, bias)
    return [out, alpha, saved, *(g for g in grads if g is not None)]


def _in_threads(work, n: int) -> dict:
    """work(i) for i < n, each in its own thread, all released together by a barrier: {i: its result}; an
    exception in any thread fails the test."""
    start = threading.Barrier(n)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def run(i):
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as exc:  # reported below, with its thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def _same(ours, want, exact):
    assert len(ours) == len(want)
    for a, b in zip(ours, want):
        if exact:  # per-tile results: the same tile maths whichever thread runs it
            assert torch.equal(a, b), (a - b).abs().max()
        else:  # grad_weight/grad_bias: per-thread partial sums added in a different order
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()


def test_concurrent_layer_calls_match_serial_runs():
    module = _module()
    inputs = [_inputs(case, seed) for seed, case in enumerate(CASES)]
    serial = [_run(module, case, inp) for case, inp in zip(CASES, inputs)]
    results = _in_threads(lambda i: [_run(module, CASES[i], inputs[i]) for _ in range(6)], len(CASES))
    for i, runs in results.items():
        for run in runs:
            _same(run[:3], serial[i][:3], exact=True)  # out, alpha, the kept projection
            _same(run[3:4], serial[i][3:4], exact=True)  # grad_x
            _same(run[4:], serial[i][4:], exact=False)  # grad_weight (grad_bias)


def test_concurrent_training_steps_match_serial_runs(synth_dataset):
    """The same through the model (KERNELS, FusedLayer): each thread trains a step of its own model on its own
    batch; logits and every gradient as in a serial run."""
    if not kernel_loader.KERNELS.runs_layer(torch.zeros(16, 3, 200)):
        pytest.skip(f"the model does not run the C++ layer here (mode {kernel_loader.KERNELS.mode('cpu')!r}, "
                    f"kernel {kernel_loader.cpu_kernel()!r}): test_fused.py checks the path it runs")
    x, y = synth_dataset.split("train")
    configs = [AutoIntConfig(embed_dim=16, attn_dim=32, heads=2, layers=2),
               AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2, qkv_relu=True, projection_bias=True),
               AutoIntConfig(embed_dim=8, attn_dim=8, heads=1, layers=1, residual=False)]
    models, batches = [], []
    for i, config in enumerate(configs):
        torch.manual_seed(i)
        models.append(AutoInt(config, synth_dataset.schema).eval())  # eval: no dropout, deterministic
        batches.append((x.index(slice(100 * i, 100 * i + 200 + 37 * i)), y[100 * i:100 * i + 200 + 37 * i]))

    def step(model, batch):
        model.zero_grad(set_to_none=True)
        logit = model(batch[0])
        torch.nn.functional.binary_cross_entropy_with_logits(logit, batch[1]).backward()
        return [logit.detach()] + [p.grad.clone() for p in model.parameters()]

    serial = [step(m, b) for m, b in zip(models, batches)]
    results = _in_threads(lambda i: [step(models[i], batches[i]) for _ in range(4)], len(models))
    for i, runs in results.items():
        for run in runs:
            _same(run, serial[i], exact=False)

