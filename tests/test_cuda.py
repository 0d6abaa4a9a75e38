"""Checks that need a CUDA GPU. CI has none, so these skip there; run them on a GPU machine
(benchmarks/gpu_session.sh does, and its output is recorded in benchmarks/README.md)."""
import warnings

import pytest
import torch

from autoint.model.autoint import AutoIntConfig
from autoint.training.metrics import pick_device
from autoint.training.train import TrainConfig, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_default_device_follows_cuda_availability():
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


@cuda
def test_training_on_cuda_matches_cpu_quality_and_predictions(synth_dataset):
    config = AutoIntConfig(embed_dim=8, attn_dim=8, layers=2)
    result = train(synth_dataset, config, TrainConfig(epochs=2, batch_size=256, seed=1, device="cuda"),
                   progress=False)
    assert result.metrics["device"].startswith("cuda") and result.metrics["test_auc"] > 0.55
    x, _ = synth_dataset.split("test")
    on_gpu = result.model.predict_proba(x.to("cuda")).cpu()
    on_cpu = result.model.cpu().predict_proba(x)
    assert torch.allclose(on_gpu, on_cpu, atol=1e-5)


def count_syncs(dataset, batch_size: int) -> int:
    """Host-device synchronisations in one epoch (plus its evaluations), counted by sync debug mode."""
    config = AutoIntConfig(embed_dim=8, attn_dim=8, layers=2)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(dataset, config, TrainConfig(epochs=1, batch_size=batch_size, seed=1, device="cuda"),
                  progress=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


@cuda
def test_cuda_training_does_not_sync_per_batch(synth_dataset):
    """Halving the batch doubles the batches; the evaluations' fixed syncs cancel in the difference,
    so a sync per batch would add about one per extra batch. The loop reads back once per 50."""
    extra_batches = -(-len(synth_dataset.splits["train"]) // 32) - -(-len(synth_dataset.splits["train"]) // 64)
    added = count_syncs(synth_dataset, 32) - count_syncs(synth_dataset, 64)
    assert extra_batches > 100 and added <= extra_batches / 25, (added, extra_batches)


@pytest.fixture(scope="module")
def prepared_criteo(tmp_path_factory):
    """A generated Criteo-format set, 12,000 rows, prepared in row groups of 512 rows."""
    from autoint.datasets import builtin_spec
    from autoint.datasets.synth import generate_criteo
    from autoint.datasets.prepared import prepare
    root = tmp_path_factory.mktemp("cuda-stream")
    generate_criteo(root / "raw", rows=12000, seed=4)
    return prepare(builtin_spec("criteo"), root / "raw", root / "prepared", row_group_rows=512, progress=False)


def streamed_syncs(prepared, batch_size: int) -> tuple[int, dict]:
    """Host-device synchronisations of one streamed epoch (and its evaluations) on CUDA, and the run's metrics."""
    config = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train(prepared, config, TrainConfig(epochs=1, batch_size=batch_size, seed=1, device="cuda",
                                                         data_path="streamed"), progress=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught), result.metrics


@cuda
def test_streamed_cuda_training_copies_pinned_batches_without_a_sync_per_batch(prepared_criteo):
    """Issue 15: pinned host batches, non-blocking copies: no host-device copy blocks a batch. As above, halving
    the batch doubles the batches; a blocking copy per batch would add about one sync per extra batch."""
    rows = prepared_criteo.rows("train")
    extra_batches = -(-rows // 32) - -(-rows // 64)
    syncs_32, metrics = streamed_syncs(prepared_criteo, 32)
    syncs_64, _ = streamed_syncs(prepared_criteo, 64)
    assert metrics["data_path"] == "streamed" and metrics["device"].startswith("cuda")
    assert extra_batches > 100 and syncs_32 - syncs_64 <= extra_batches / 25, (syncs_32, syncs_64, extra_batches)
