"""The fused interacting layer (issue 14) against the reference layer, compiled and eager, and its fallbacks.

`InteractingLayer.forward` is the layer as written before issue 14, in the (B, F, d) layout: the reference.
The model runs `FusedInteractingLayer.forward_columns` (column layout, `FusedAttention` with a hand-derived
backward), on the CPU through the C++ kernel (autoint/model/kernels/attention*.cpp), inductor's or eagerly. All must
give the same logits, attention and gradients to 1e-5.
"""
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F_

import autoint.model.autoint as model_module
import autoint.model.kernels.ops as kernel_ops
import autoint.model.kernels.loader as kernel_loader
from autoint.model.autoint import AutoInt, AutoIntConfig, InteractingLayer
from autoint.model.kernels.loader import _Kernels
from conftest import layer_inputs

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {
    "paper": dict(embed_dim=16, attn_dim=32, heads=2, layers=3),
    "deepctr-shape": dict(embed_dim=16, attn_dim=8, heads=2, layers=3),
    "authors-code": dict(embed_dim=8, attn_dim=4, heads=2, layers=2, qkv_relu=True, projection_bias=True,
                         scaled_attention=True, layer_norm=True),
    "no-residual": dict(embed_dim=8, attn_dim=4, heads=1, layers=1, residual=False),
    "autoint+": dict(embed_dim=8, attn_dim=8, heads=2, layers=2, dnn_hidden=(16,)),
}


def reference(model: AutoInt, x):
    """Logits and attention (B, L, H, F, F) through the reference layer, same weights."""
    e = model.embed(x)
    B = e.shape[0]
    attentions = []
    for layer in model.interacting:
        e, attention = InteractingLayer.forward(layer, e)  # (B, F, H*d'), (B, H, F, F)
        attentions.append(attention)
    logit = model.output(e.reshape(B, -1)).squeeze(-1)
    if model.dnn is not None:
        logit = logit + model.dnn(model.embed(x).reshape(B, -1)).squeeze(-1)
    return logit, torch.stack(attentions, 1)


def losses_and_grads(model, x, y, forward, with_attention):
    model.zero_grad(set_to_none=True)
    logit, attention = forward(model, x)
    loss = F_.binary_cross_entropy_with_logits(logit, y)
    if with_attention:  # the gradient that flows back through alpha too
        weights = torch.linspace(-1, 1, attention[0].numel()).view_as(attention[0])
        loss = loss + (attention * weights).sum() / len(y)
    loss.backward()
    return logit.detach(), attention.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["cpp", "cpp-attention", "compiled", "eager"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_layer_matches_the_reference(synth_dataset, monkeypatch, mode, name):
    """cpp: the C++ layer_forward/backward (projection per batch tile); cpp-attention: torch.mm, then the C++
    attention core; compiled: torch.mm, then inductor's; eager: torch.mm, then the functions uncompiled."""
    _matches_the_reference(synth_dataset, monkeypatch, mode, name)


@pytest.fixture(scope="module")
def criteo_dataset(tmp_path_factory):
    """39 fields (generated Criteo format): past 16 the C++ kernels run their k-blocked wide cores."""
    from autoint.datasets import load_dataset
    from autoint.datasets.synth import generate_criteo
    folder = generate_criteo(tmp_path_factory.mktemp("wide") / "criteo", rows=300, seed=5)
    return load_dataset("criteo", data_dir=folder)


@pytest.mark.parametrize("mode", ["cpp", "cpp-attention", "eager"])
@pytest.mark.parametrize("name", ["paper", "authors-code"])
def test_wide_schema_fused_layer_matches_the_reference(criteo_dataset, monkeypatch, mode, name):
    """Criteo's 39 fields: the fused layer (the C++ kernels' wide cores, 16 + 16 + 7 fields a block) against the
    reference, logits, attention and every gradient."""
    assert len(criteo_dataset.schema.fields) == 39
    _matches_the_reference(criteo_dataset, monkeypatch, mode, name)


def _matches_the_reference(dataset, monkeypatch, mode, name):
    monkeypatch.setenv("AUTOINT_COMPILE", "0" if mode == "eager" else "1")
    monkeypatch.setenv("AUTOINT_CPU_KERNEL", {"compiled": "inductor", "eager": "cpp"}.get(mode, mode))
    if mode != "eager" and kernel_loader.KERNELS.mode("cpu") != mode.split("-")[0]:
        pytest.skip(f"no working C++ compiler or kernel build here ({kernel_loader.KERNELS.mode('cpu')}): "
                    "the eager case checks the same layer")
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(**CONFIGS[name]), dataset.schema).train()
    wide = len(dataset.schema.fields) > kernel_loader.FUSED_MAX_FIELDS  # fused there only with the C++ kernel
    if wide:  # which the model takes only on an AVX-512 CPU: claimed here, so that every CPU checks these cores
        monkeypatch.setattr(kernel_loader, "_cpu_flags", lambda: "flags\t\t: fpu avx2 avx512f")
    assert model.uses_fused_layer(model.embed(dataset.split("train")[0].index(slice(0, 2)))) == \
        (not wide or mode in ("cpp", "cpp-attention"))
    with torch.no_grad():  # a nonzero bias, so that the authors' code case checks it
        for layer in model.interacting:
            if layer.projection.bias is not None:
                layer.projection.bias.normal_(std=0.1)
    x, y = dataset.split("train")
    x, y = x.index(slice(0, 96)), y[:96]  # 96: a whole 64-sample tile of the C++ kernel and a part of one
    with_attention = name in ("paper", "authors-code")
    runs = []
    real = kernel_loader.KERNELS.run
    monkeypatch.setattr(kernel_loader.KERNELS, "run", lambda op, *a: runs.append(op) or real(op, *a))
    fused = losses_and_grads(model, x, y, lambda m, b: m(b, return_attention=True), with_attention)
    layers = model.config.layers
    if wide and mode not in ("cpp", "cpp-attention"):
        assert runs == [], runs  # the reference layer: no fused kernel call
    else:
        expected = ["layer_forward", "layer_backward"] if mode == "cpp" else ["attention_forward", "attention_backward"]
        assert runs == [expected[0]] * layers + [expected[1]] * layers, runs
    ref = losses_and_grads(model, x, y, reference, with_attention)
    assert torch.allclose(fused[0], ref[0], atol=1e-5, rtol=0), (fused[0] - ref[0]).abs().max()
    assert torch.allclose(fused[1], ref[1], atol=1e-5, rtol=0), (fused[1] - ref[1]).abs().max()
    for param in ref[2]:
        assert torch.allclose(fused[2][param], ref[2][param], atol=1e-5, rtol=1e-5), \
            (param, (fused[2][param] - ref[2][param]).abs().max())


def test_compiled_once_per_process(synth_dataset, monkeypatch):
    """A second call with the same shapes compiles nothing (the app's reruns pay nothing)."""
    monkeypatch.delenv("AUTOINT_COMPILE", raising=False)
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=8, heads=2, layers=2), synth_dataset.schema).eval()
    x, _ = synth_dataset.split("test")
    with torch.no_grad():
        first = model(x.index(slice(0, 100)))
        spent = kernel_loader.KERNELS.compile_seconds
        again = model(x.index(slice(0, 100)))
        one = model(x.index(slice(0, 1)))  # one sample's explanation runs eagerly: nothing to compile
    assert kernel_loader.KERNELS.compile_seconds == spent
    assert torch.equal(first, again) and torch.allclose(one, first[:1], atol=1e-6)


def test_without_a_compiler_the_layer_runs_eager_with_one_warning(synth_dataset, monkeypatch):
    kernels = _Kernels()
    monkeypatch.setattr(kernel_loader, "KERNELS", kernels)
    monkeypatch.setattr(kernel_loader, "_compiler_problem", lambda: "no working C++ compiler: 'g++' (simulated)")
    monkeypatch.delenv("AUTOINT_COMPILE", raising=False)
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2), synth_dataset.schema).train()
    x, y = synth_dataset.split("train")
    x, y = x.index(slice(0, 64)), y[:64]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            fused = losses_and_grads(model, x, y, lambda m, b: m(b, return_attention=True), False)
    ours = [w for w in caught if "fused interacting layer" in str(w.message)]
    assert len(ours) == 1 and "simulated" in str(ours[0].message), [str(w.message) for w in caught]
    assert kernels.mode("cpu") == "eager" and kernels.compile_seconds == 0
    ref = losses_and_grads(model, x, y, reference, False)
    assert torch.allclose(fused[0], ref[0], atol=1e-5)
    assert all(torch.allclose(fused[2][p], ref[2][p], atol=1e-5) for p in ref[2])


def test_a_failing_compile_falls_back_to_eager_with_one_warning(synth_dataset, monkeypatch):
    """Compiling can also fail later than the compiler probe (inductor, Triton): same fallback."""
    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("simulated inductor failure")
        return run

    kernels = _Kernels()
    monkeypatch.setattr(kernel_loader, "KERNELS", kernels)
    monkeypatch.setattr(kernel_loader, "_compiler_problem", lambda: None)
    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setenv("AUTOINT_COMPILE", "1")
    monkeypatch.setenv("AUTOINT_CPU_KERNEL", "inductor")
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2), synth_dataset.schema).eval()
    x, _ = synth_dataset.split("test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            logits = [model(x.index(slice(0, n))) for n in (100, 120, 100)]
    ours = [w for w in caught if "fused interacting layer" in str(w.message)]
    assert len(ours) == 1 and "simulated inductor failure" in str(ours[0].message)
    with torch.no_grad():
        assert torch.allclose(logits[0], reference(model, x.index(slice(0, 100)))[0], atol=1e-5)


def test_a_missing_compiler_in_a_fresh_process(tmp_path):
    """CXX names a compiler that does not exist and the inductor cache is empty, as on a machine without
    g++: training still works, with exactly one warning that says why and what to do."""
    script = textwrap.dedent("""
        import warnings, torch
        torch.set_num_threads(1)
        from autoint.datasets.synth import generate_movielens
        from autoint.datasets.movielens import load_movielens
        from autoint.model.autoint import AutoIntConfig
        from autoint.model.kernels.loader import KERNELS
        from autoint.training.train import TrainConfig, train
        data = load_movielens(generate_movielens(%r, users=60, movies=40, ratings=1500, seed=3))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train(data, AutoIntConfig(embed_dim=4, attn_dim=4, layers=1),
                           TrainConfig(epochs=1, batch_size=256, device="cpu"), progress=False)
        ours = [str(w.message) for w in caught if "fused interacting layer" in str(w.message)]
        print(len(ours), KERNELS.mode("cpu"), result.metrics["kernels"], round(result.metrics["test_auc"], 3))
        print(ours[0] if ours else "")
    """ % str(tmp_path / "ml"))
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind"),
           "PYTHONPATH": str(REPO)}
    env.pop("AUTOINT_COMPILE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    first, message = done.stdout.strip().splitlines()[-2:]
    count, mode, reported, _ = first.split()
    assert (count, mode, reported) == ("1", "eager", "eager"), done.stdout
    assert "no-such-compiler" in message and "AUTOINT_COMPILE=0" in message


def test_training_reports_compile_time_apart(synth_dataset):
    from autoint.training.train import TrainConfig, train
    result = train(synth_dataset, AutoIntConfig(embed_dim=4, attn_dim=4, layers=1),
                   TrainConfig(epochs=1, batch_size=256, device="cpu"), progress=False)
    assert result.metrics["kernels"] in ("cpp", "compiled", "eager")
    assert result.metrics["compile_seconds"] >= 0 and result.metrics["epoch_seconds"][0] > 0


def test_wide_schemas_run_the_reference_layer(synth_dataset, monkeypatch):
    """Past FUSED_MAX_FIELDS fields the fused layer runs only where a C++ kernel does on an AVX-512 CPU (up to
    CPP_MAX_FIELDS); elsewhere the batched-matmul layout is faster (NOTES.md attempts 6, 14): same weights, same
    answers."""
    config = AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2)
    torch.manual_seed(0)
    model = AutoInt(config, synth_dataset.schema).eval()
    x, _ = synth_dataset.split("test")
    x = x.index(slice(0, 100))
    e = model.embed(x)
    assert model.uses_fused_layer(e)  # 7 fields: every path
    with torch.no_grad():
        narrow = model(x, return_attention=True)
    monkeypatch.setattr(kernel_loader, "FUSED_MAX_FIELDS", 3)
    monkeypatch.setattr(kernel_loader, "CPP_MAX_FIELDS", 3)  # past both: the reference layer on every path
    assert not model.uses_fused_layer(e)
    with torch.no_grad():
        wide = model(x, return_attention=True)
    assert torch.allclose(wide[0], narrow[0], atol=1e-5) and torch.allclose(wide[1], narrow[1], atol=1e-6)
    monkeypatch.setattr(kernel_loader, "CPP_MAX_FIELDS", 64)  # past FUSED_MAX_FIELDS, within the C++ kernel's
    builds = kernel_loader.KERNELS.mode("cpu") == "cpp" and kernel_loader.KERNELS.cpp_module() is not None
    for kernel in ("cpp", "cpp-attention"):
        monkeypatch.setenv("AUTOINT_CPU_KERNEL", kernel)
        monkeypatch.setattr(kernel_loader, "_cpu_flags", lambda: "flags\t\t: fpu avx2 avx512f avx512bw")
        assert model.uses_fused_layer(e) == builds
        assert not model.uses_fused_layer(e.double())  # the C++ kernel is float32 only
        monkeypatch.setattr(kernel_loader, "_cpu_flags", lambda: "flags\t\t: fpu sse2 avx avx2 fma")
        assert not model.uses_fused_layer(e)  # built for AVX2 both C++ paths are slower than the reference here
    monkeypatch.setattr(kernel_loader, "_cpu_flags", lambda: "flags\t\t: fpu avx2 avx512f avx512bw")
    monkeypatch.setenv("AUTOINT_CPU_KERNEL", "inductor")  # no C++ kernel: inductor is slower than the reference here
    assert not model.uses_fused_layer(e)


def _core_inputs(H, D, F, B, residual, dropout, grad_alpha, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(4 if residual else 3, H, D, F, B, generator=g)
    attn_keep = (torch.rand(H, F, F, B, generator=g) > 0.3).float() / 0.7 if dropout else None
    head_keep = (torch.rand(H, D, F, B, generator=g) > 0.2).float() / 0.8 if dropout else None
    grad_out = torch.randn(H, D, F, B, generator=g)
    extra = torch.randn(H, F, F, B, generator=g) if grad_alpha else None
    return p, attn_keep, head_keep, grad_out, extra


@pytest.mark.parametrize("shape", [(2, 32, 7, 1024), (1, 4, 3, 70), (2, 8, 16, 130), (3, 5, 1, 17), (2, 32, 39, 70),
                                   (1, 4, 17, 64)])
def test_cpp_kernel_matches_attention_forward_and_backward(shape):
    """The C++ kernel against the functions it replaces, every option: dropout masks, residual or not, ReLU on
    the projection, scaling, a gradient through alpha; batches that are not a multiple of its 64-sample tile."""
    module = kernel_loader._Kernels().cpp_module()
    if module is None:
        pytest.skip("the C++ kernel does not build here: the eager and inductor cases check the layer")
    for residual in (True, False):
        for qkv_relu in (False, True):
            for dropout, grad_alpha, scale in ((False, False, 1.0), (True, True, 0.3), (True, False, 1.0)):
                p, attn_keep, head_keep, grad_out, extra = _core_inputs(*shape, residual, dropout, grad_alpha)
                options = (scale, residual, qkv_relu)
                out, alpha = kernel_ops.attention_forward(p, attn_keep, head_keep, *options)
                out2, alpha2 = module.attention_forward(p, attn_keep, head_keep, *options)
                grad = kernel_ops.attention_backward(p, alpha, out, grad_out, extra, attn_keep, head_keep, *options)
                grad2 = module.attention_backward(p, alpha, out, grad_out, extra, attn_keep, head_keep, *options)
                case = (shape, residual, qkv_relu, dropout, grad_alpha, scale)
                assert torch.allclose(out2, out, atol=2e-5, rtol=1e-5), (case, (out2 - out).abs().max())
                assert torch.allclose(alpha2, alpha, atol=1e-6, rtol=1e-5), (case, (alpha2 - alpha).abs().max())
                assert torch.allclose(grad2, grad, atol=2e-5, rtol=1e-5), (case, (grad2 - grad).abs().max())


def _untile(saved: torch.Tensor, D: int, B: int) -> torch.Tensor:
    """layer_forward's kept projection, (T, H, kept * D, 4 * F * 16) by tile, as p (kept, H, D, F, B)."""
    T, H, rows, cols = saved.shape
    F, kept = cols // 64, rows // D
    tiles = saved.view(T, H, kept, D, 4, F, 16).permute(2, 1, 3, 5, 0, 4, 6)  # (kept, H, D, F, T, 4, 16)
    return tiles.reshape(kept, H, D, F, T * 64)[..., :B]


@pytest.mark.parametrize("shape", [(2, 32, 7, 1024, 64), (2, 32, 7, 200, 16), (1, 4, 3, 70, 8), (2, 8, 16, 130, 13),
                                   (3, 5, 1, 17, 5), (2, 3, 2, 1, 17), (2, 32, 39, 130, 16), (1, 4, 17, 70, 8)])
def test_cpp_layer_matches_the_projection_and_attention(shape):
    """layer_forward/layer_backward (the projection inside the C++ kernel, per batch tile) against the projection
    in float64 and attention_forward/attention_backward under autograd, in float64 from the same float32
    projection (so that a ReLU's mask cannot flip on a rounding): p, out, alpha, grad_x, grad_weight, grad_bias,
    for every option (dropout masks, residual, ReLU on the projection, scaling, bias, a gradient through alpha)
    and batches that are not a multiple of the 64-sample tile."""
    module = kernel_loader._Kernels().cpp_module()
    if module is None:
        pytest.skip("the C++ kernel does not build here: the eager and inductor cases check the layer")
    H, D, F, B, C_in = shape
    g = torch.Generator().manual_seed(1)
    close = lambda ours, want: (ours.double() - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()))
    for residual in (True, False):
        for qkv_relu in (False, True):
            for dropout, grad_alpha, scale, bias in ((False, False, 1.0, False), (True, True, 0.3, True),
                                                     (False, True, 1.0, True)):
                parts = 4 if residual else 3
                x, weight, b, attn_keep, head_keep, grad_out, extra = layer_inputs(
                    H, D, F, B, C_in, residual, dropout, bias, grad_alpha, g)
                out, alpha, saved = module.layer_forward(x, weight, b, attn_keep, head_keep, H, scale, residual,
                                                         qkv_relu, True)
                grad_x, grad_weight, grad_bias = module.layer_backward(
                    x, weight, saved, alpha, out, grad_out, extra, attn_keep, head_keep, H, scale, residual,
                    qkv_relu, True, bias)
                case = (shape, residual, qkv_relu, dropout, grad_alpha, scale, bias)
                flat = x.double().reshape(C_in, F * B)
                projected = weight.double() @ flat + (b.double()[:, None] if bias else 0)
                kept = _untile(saved, D, B).double()  # query, key, value (and W_Res e with qkv_relu)
                assert len(kept) == (parts if qkv_relu else 3), case
                projected = projected.view(parts, H, D, F, B)
                assert close(kept, projected[:len(kept)]), case
                p = torch.cat([kept, projected[len(kept):]]).requires_grad_()
                d = lambda t: None if t is None else t.double()
                out64, alpha64 = kernel_ops.attention_forward(p, d(attn_keep), d(head_keep), scale, residual,
                                                                qkv_relu)
                ((out64 * d(grad_out)).sum() + ((alpha64 * d(extra)).sum() if grad_alpha else 0)).backward()
                grad_p = p.grad.reshape(-1, F * B)
                want = {"out": out64, "alpha": alpha64, "grad_x": (weight.double().t() @ grad_p).view(x.shape),
                        "grad_weight": grad_p @ flat.t()}
                ours = {"out": out, "alpha": alpha, "grad_x": grad_x, "grad_weight": grad_weight}
                if bias:
                    want["grad_bias"], ours["grad_bias"] = grad_p.sum(1), grad_bias
                else:
                    assert grad_bias is None
                for name in want:
                    assert close(ours[name], want[name].detach()), (case, name,
                                                                   (ours[name].double() - want[name]).abs().max())
                _, _, kept = module.layer_forward(x, weight, b, None, None, H, scale, residual, qkv_relu, False)
                assert kept.numel() == 0  # nothing kept for a backward that will not come (inference)


def test_a_failing_cpp_build_falls_back_to_inductor_with_one_warning(synth_dataset, monkeypatch):
    """The C++ build failing (no ninja, a compiler error) leaves inductor's kernel, after one warning."""
    def broken_build():
        raise RuntimeError("simulated C++ build failure")

    kernels = _Kernels()
    monkeypatch.setattr(kernel_loader, "KERNELS", kernels)
    monkeypatch.setattr(kernel_loader, "_build_cpp_extension", broken_build)
    monkeypatch.delenv("AUTOINT_COMPILE", raising=False)
    monkeypatch.setenv("AUTOINT_CPU_KERNEL", "cpp")
    if kernel_loader._compiler_problem() is not None:
        pytest.skip("no C++ compiler here: the eager fallback has its own tests")
    assert kernels.mode("cpu") == "cpp"
    torch.manual_seed(0)
    model = AutoInt(AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=2), synth_dataset.schema).train()
    x, y = synth_dataset.split("train")
    x, y = x.index(slice(0, 96)), y[:96]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = [losses_and_grads(model, x, y, lambda m, b: m(b, return_attention=True), True) for _ in range(2)][-1]
    ours = [str(w.message) for w in caught if "AutoInt" in str(w.message)]
    assert len(ours) == 1 and "simulated C++ build failure" in ours[0] and "torch.compile" in ours[0], ours
    assert kernels.mode("cpu") == "compiled"
    ref = losses_and_grads(model, x, y, reference, True)
    assert torch.allclose(fused[0], ref[0], atol=1e-5) and torch.allclose(fused[1], ref[1], atol=1e-5)
    assert all(torch.allclose(fused[2][p], ref[2][p], atol=1e-5) for p in ref[2])


def test_the_cpu_kernel_setting_is_checked(monkeypatch):
    monkeypatch.setenv("AUTOINT_CPU_KERNEL", "fortran")
    with pytest.raises(model_module.ConfigError, match="AUTOINT_CPU_KERNEL.*cpp-attention"):
        kernel_loader.cpu_kernel()


def test_cpp_layer_backward_reaches_a_trainable_bias_alone():
    """A projection bias that trains while x and the projection weight do not (a frozen layer but its bias):
    the C++ layer must keep its projection for the backward then too, and give the bias the reference's
    gradient (it raised 'saved does not match x and weight' when `save` looked at x and W only)."""
    kernels = kernel_loader.KERNELS
    if kernels.mode("cpu") != "cpp" or kernels.cpp_module() is None or kernel_loader.cpu_kernel() != "cpp":
        pytest.skip(f"the C++ layer does not run here (mode {kernels.mode('cpu')!r}, kernel "
                    f"{kernel_loader.cpu_kernel()!r}): nothing keeps a projection")
    torch.manual_seed(0)
    layer = model_module.FusedInteractingLayer(8, AutoIntConfig(embed_dim=8, attn_dim=4, heads=2, layers=1,
                                                                projection_bias=True)).eval()
    layer.projection.weight.requires_grad_(False)
    x = torch.randn(8, 5, 100)  # (in, F, B), no gradient wanted
    assert kernels.runs_layer(x)
    out, alpha = layer.forward_columns(x)
    (out.sum() + alpha.square().sum()).backward()
    ours = layer.projection.bias.grad.clone()
    layer.projection.bias.grad = None
    e = x.permute(2, 1, 0)  # (B, F, d)
    out_ref, alpha_ref = InteractingLayer.forward(layer, e)
    (out_ref.sum() + alpha_ref.square().sum()).backward()
    assert torch.allclose(ours, layer.projection.bias.grad, atol=1e-4, rtol=1e-5), \
        (ours - layer.projection.bias.grad).abs().max()


def test_the_cpu_kernel_default_needs_avx512(monkeypatch):
    """The C++ layer kernel is the default only on CPUs with AVX-512: built for AVX2 its 16-float vectors spill
    (one layer 62 ms against 17 ms for cpp-attention, benchmarks/NOTES.md); AUTOINT_CPU_KERNEL still chooses."""
    monkeypatch.delenv("AUTOINT_CPU_KERNEL", raising=False)
    monkeypatch.setattr(kernel_loader, "_cpu_flags", lambda: "flags\t\t: fpu sse2 avx avx2 fma")
    assert kernel_loader.cpu_kernel() == "cpp-attention"
    monkeypatch.setattr(kernel_loader, "_cpu_flags", lambda: "")  # no /proc/cpuinfo
    assert kernel_loader.cpu_kernel() == "cpp-attention"
    monkeypatch.setattr(kernel_loader, "_cpu_flags", lambda: "flags\t\t: fpu avx2 avx512f avx512bw")
    assert kernel_loader.cpu_kernel() == "cpp"
    monkeypatch.setattr(kernel_loader, "_cpu_flags", lambda: "flags\t\t: fpu sse2 avx avx2 fma")
    monkeypatch.setenv("AUTOINT_CPU_KERNEL", "cpp")
    assert kernel_loader.cpu_kernel() == "cpp"


def test_a_build_stopped_midway_does_not_block_the_next_one(tmp_path, monkeypatch):
    """torch's build guard is a plain `lock` file; a process killed while building leaves it, and torch's next
    `load` of that name would wait on it forever (a CI run hung there). Under our OS lock the leftover is removed
    with one warning; a second holder of the OS lock waits instead of building beside the first."""
    import threading
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    folder = tmp_path / "autoint_attention_test"
    folder.mkdir()
    (folder / "lock").write_text("")  # what a killed build leaves
    with pytest.warns(RuntimeWarning, match="left by a build that was stopped"):
        with kernel_loader._build_lock("autoint_attention_test"):
            assert not (folder / "lock").exists()
            entered = threading.Event()

            def second():
                with kernel_loader._build_lock("autoint_attention_test"):
                    entered.set()
            other = threading.Thread(target=second)
            other.start()
            assert not entered.wait(0.3)  # the second waits while the first holds the lock
    other.join(5)
    assert entered.is_set()
