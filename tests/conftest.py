import os
from pathlib import Path

import pytest
import torch

# Tests share two cores with nothing else; one intra-op thread per test process keeps
# timings steady and leaves a core for the browser tests' Streamlit server.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("AUTOINT_SHARED_DATA", REPO.parent / "shared" / "data"))
U2999 = SHARED_DATA / "ml-1m-u2999"
RECOVERED = SHARED_DATA / "ml-1m-recovered"


@pytest.fixture(scope="session", autouse=True)
def kernel_built_beside():
    """The C++ kernel's one-time build (25-45 s on a fresh checkout) starts in a process of its own as the session
    starts, so the tests before the first one that trains overlap it; that test then waits on the build's OS lock
    and loads what it built (autoint/model/kernels/loader.py). Nothing starts where the kernel is not the CPU's."""
    import subprocess
    import sys
    from autoint.model.kernels import loader
    if loader.cpu_kernel() == "inductor" or loader._compiler_problem() is not None:
        yield None
        return
    build = subprocess.Popen([sys.executable, "-c", "from autoint.model.kernels.loader import _build_cpp_extension; "
                              "_build_cpp_extension()"], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    yield build
    build.wait(timeout=600)


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory):
    """One interactions-and-readings cache (AUTOINT_CACHE_DIR) for the whole run, outside the checkout. Its keys
    name the run's weights (a digest), the data's fingerprint and every setting of the computation, so tests that
    copy the same run onto the same data share what one of them computed, as one server's sessions do: the 39-field
    readings (64 estimated k-SII rows, about 30 s) are computed once per run instead of once per test. A test that
    checks computing itself sets a folder of its own."""
    folder = tmp_path_factory.mktemp("autoint-cache")
    before = os.environ.get("AUTOINT_CACHE_DIR")
    os.environ["AUTOINT_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("AUTOINT_CACHE_DIR", None)
    else:
        os.environ["AUTOINT_CACHE_DIR"] = before


@pytest.fixture
def few_estimated_rows(monkeypatch):
    """Above 12 fields the interactions are estimated (KernelSHAP-IQ, about 0.5 s a sample at 39 fields) on
    SAMPLED_ROWS = 64 samples by default, and the app scores a run's readings on them as soon as a page shows
    attention: half a minute a run. The 39-field app tests measure 8 instead (what is checked is what the pages
    do with the numbers, not how many there are); a page's own sample size still comes from its widget."""
    import autoint.explain.sampling
    monkeypatch.setattr(autoint.explain.sampling, "SAMPLED_ROWS", 8)


def need_shared(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is absent: the recovered MovieLens-1M copies live in ../shared/data "
                    f"(see its README); this check needs them")
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    from autoint.datasets.synth import generate_movielens
    return generate_movielens(tmp_path_factory.mktemp("synth") / "ml", users=300, movies=150, ratings=12000, seed=3)


@pytest.fixture(scope="session")
def synth_dataset(synth_dir):
    from autoint.datasets.movielens import load_movielens
    return load_movielens(synth_dir)


@pytest.fixture(scope="session")
def trained_run(synth_dataset, tmp_path_factory):
    """A small AutoInt trained for a few epochs on the synthetic data, saved as a run folder."""
    from dataclasses import asdict
    from autoint.model.autoint import AutoIntConfig
    from autoint.training.runs import load_run, save_run
    from autoint.training.train import TrainConfig, train
    config = AutoIntConfig(embed_dim=8, attn_dim=8, heads=2, layers=2)
    train_config = TrainConfig(epochs=8, patience=3, batch_size=256, lr=0.005, seed=1)
    result = train(synth_dataset, config, train_config, progress=False)
    path = save_run(tmp_path_factory.mktemp("runs") / "small", result.model, metrics=result.metrics,
                    train_config=asdict(train_config), history=result.history,
                    data_fingerprint=synth_dataset.fingerprint)
    return load_run(path)


def tiny_criteo_run(tmp_path_factory, name: str, rows: int, batch_size: int, **generate) -> tuple[Path, Path]:
    """(data folder, run folder): `rows` generated Criteo-format rows (synth.generate_criteo, seed 5 and `generate`)
    and an AutoInt of 1 layer, 1 head, d=4 trained one epoch on them through the CLI."""
    from autoint.cli import main as cli
    from autoint.datasets.synth import generate_criteo
    folder = generate_criteo(tmp_path_factory.mktemp(name) / "criteo", rows=rows, seed=5, **generate)
    run = tmp_path_factory.mktemp(f"{name}-runs") / f"criteo-{name}"
    assert cli(["train", "--dataset", "criteo", "--data-dir", str(folder), "--epochs", "1", "--layers", "1",
                "--heads", "1", "--embed-dim", "4", "--attn-dim", "4", "--batch-size", str(batch_size), "--quiet",
                "--out", str(run)]) == 0
    return folder, run


def prepared_criteo(tmp_path_factory, name: str, rows: int, seed: int, row_group_rows: int):
    """A Prepared copy (autoint.datasets.prepared) of `rows` generated Criteo-format rows (synth.generate_criteo, `seed`), in
    row groups of `row_group_rows` rows: raw files in `name`*/raw, the copy in `name`*/prepared."""
    from autoint.datasets import builtin_spec
    from autoint.datasets.synth import generate_criteo
    from autoint.datasets.prepared import prepare
    root = tmp_path_factory.mktemp(name)
    generate_criteo(root / "raw", rows=rows, seed=seed)
    return prepare(builtin_spec("criteo"), root / "raw", root / "prepared", row_group_rows=row_group_rows,
                   progress=False)


def layer_inputs(H, D, F, B, C_in, residual, dropout, bias, grad_alpha, g):
    """Random inputs of one C++ layer call (test_fused, test_kernel_threads), drawn from generator g in one order:
    x (in, F, B), weight, bias, the dropout masks, the output's gradient and (grad_alpha) the attention's."""
    parts = 4 if residual else 3
    x = torch.randn(C_in, F, B, generator=g) * 0.3
    weight = torch.randn(parts * H * D, C_in, generator=g) * 0.3
    b = torch.randn(parts * H * D, generator=g) * 0.1 if bias else None
    attn_keep = (torch.rand(H, F, F, B, generator=g) > 0.3).float() / 0.7 if dropout else None
    head_keep = (torch.rand(H, D, F, B, generator=g) > 0.2).float() / 0.8 if dropout else None
    grad_out = torch.randn(H, D, F, B, generator=g)
    extra = torch.randn(H, F, F, B, generator=g) if grad_alpha else None
    return x, weight, b, attn_keep, head_keep, grad_out, extra


def read_raw(at):
    """The attention pages open on the model's best reading of the attention; a test about raw attention picks raw
    α, the paper's reading, on every reading selector of the page, and runs the page again."""
    boxes = [box for box in at.selectbox if box.label == "Reading of the attention"]
    for box in boxes:
        box.set_value("raw")
    if boxes:
        at.run()
    return at
