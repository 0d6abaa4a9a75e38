"""autoint.training.distributed on CPU (issue 15): the device each torchrun process takes, and the collectives an epoch costs
(the epoch's loss agreed once, a split's scores and labels gathered to rank 0 alone in one exchange and its metrics
broadcast, validation not predicted again for the final metrics). tests/test_torchrun.py runs whole torchrun jobs."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from autoint.training import distributed
from autoint.training.distributed import Launch, rank_device
from autoint.errors import UsageError
from autoint.model.autoint import AutoIntConfig, ConfigError
from autoint.datasets.prepared import Prepared
from autoint.training.train import InMemoryBatches, TrainConfig, train
from conftest import REPO, prepared_criteo

TINY = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)


@pytest.mark.parametrize("local_rank,requested,gpus,expected", [
    (1, None, 2, "cuda:1"), (3, "cuda", 4, "cuda:3"), (0, "auto", 1, "cuda:0"), (1, "cuda:1", 2, "cuda:1"),
    (1, None, 0, "cpu"), (1, "cpu", 2, "cpu"),
])
def test_each_process_takes_the_gpu_of_its_local_rank(local_rank, requested, gpus, expected):
    assert rank_device(Launch(rank=local_rank + 4, world=8, local_rank=local_rank), requested, gpus=gpus) \
        == torch.device(expected)


def test_devices_that_cannot_work_under_torchrun_are_refused():
    with pytest.raises(UsageError, match=r"--device cuda:0: under torchrun each process trains on the GPU of its "
                                         r"LOCAL_RANK \(this one, LOCAL_RANK=1: cuda:1\)\. Pass --device cuda"):
        rank_device(Launch(1, 2, 1), "cuda:0", gpus=2)
    with pytest.raises(UsageError, match=r"LOCAL_RANK=2, but this process sees 2 CUDA GPUs: start at most 2 "
                                         r"processes per node \(torchrun --nproc-per-node 2\)"):
        rank_device(Launch(2, 3, 2), "cuda", gpus=2)
    with pytest.raises(ConfigError, match=r"device='cuda' asked for CUDA, but this machine has no CUDA GPU"):
        rank_device(Launch(0, 2, 0), "cuda", gpus=0)


def test_start_binds_nccl_and_the_current_device_to_local_rank(monkeypatch):
    """What `start` asks of torch on a 2-GPU node for the process of LOCAL_RANK 1 (faked: no GPU here)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend, **kwargs: calls.append(("init", backend, kwargs.get("device_id"))))
    try:
        device = distributed.start(Launch(rank=3, world=4, local_rank=1), None)
    finally:
        distributed.stop()
    assert device == torch.device("cuda", 1)
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl", torch.device("cuda", 1))]


def test_final_metrics_reuse_the_best_epochs_validation(synth_dataset, monkeypatch):
    """Validation is predicted once an epoch and not again for the summary: the best epoch's numbers are those of
    the restored weights, as a fresh evaluation shows."""
    evaluated = []
    real = InMemoryBatches.evaluate
    monkeypatch.setattr(InMemoryBatches, "evaluate",
                        lambda self, model, split: (evaluated.append(split), real(self, model, split))[1])
    result = train(synth_dataset, TINY, TrainConfig(epochs=3, patience=5, batch_size=512, lr=0.01, seed=3),
                   progress=False)
    assert evaluated == ["val", "val", "val", "test"]
    best = result.history[result.metrics["best_epoch"] - 1]
    fresh = real(InMemoryBatches(synth_dataset, torch.device("cpu"), 512, 3), result.model, "val")
    assert result.metrics["val_auc"] == best["val_auc"] == fresh["auc"]
    assert result.metrics["val_logloss"] == best["val_logloss"] == fresh["logloss"]


def test_one_process_gathers_and_broadcasts_nothing():
    """Outside torchrun the tensors and numbers come back as given (no process group: a collective would fail),
    and counts that do not match this rank's rows are refused."""
    a, b = torch.arange(3.0), torch.ones(3)
    got = distributed.gather_rows(a, b, counts=[3])
    assert got[0] is a and got[1] is b and distributed.gather_rows(a, counts=[3]) is a
    assert distributed.broadcast_floats([0.75, 0.5], 2) == [0.75, 0.5]
    with pytest.raises(UsageError, match=r"counts=\[2\] must give every rank's rows, this rank's being 3"):
        distributed.gather_rows(a, counts=[2])


RANK = """
import json, sys
import torch
import torch.distributed as dist
from autoint.training import distributed
from autoint.model.autoint import AutoIntConfig
from autoint.datasets.prepared import Prepared
from autoint.training.stream import StreamedBatches
from autoint.training.train import TrainConfig, train
torch.set_num_threads(1)
counts = {"all_reduce": 0, "all_gather": 0, "gather": 0, "broadcast": 0}
for name in counts:
    real = getattr(dist, name)
    def counted(*args, _real=real, _name=name, **kwargs):
        counts[_name] += 1
        return _real(*args, **kwargs)
    setattr(dist, name, counted)
held = []  # per evaluation: (split, rows of the scores, rows of the labels) this rank holds
real_predictions = StreamedBatches.predictions
def predictions(self, model, split):
    scores, labels = real_predictions(self, model, split)
    held.append([split, len(scores), len(labels)])
    return scores, labels
StreamedBatches.predictions = predictions
launch = distributed.launch_from_env()
device = distributed.start(launch, "cpu")
try:
    # rows of other lengths on each rank, two dtypes, then two of one dtype: gathered in rank order on rank 0
    r = launch.rank
    a, b = torch.arange(r + 2, dtype=torch.float32) + 10 * r, torch.full((r + 2,), r, dtype=torch.int64)
    mixed = [t.tolist() for t in distributed.gather_rows(a, b, counts=[2, 3])]
    mixed_cost = counts["gather"]
    same = [t.tolist() for t in distributed.gather_rows(a, b.float(), counts=[2, 3])]
    same_cost = counts["gather"] - mixed_cost
    shared = distributed.broadcast_floats([0.25, float("nan")] if r == 0 else None, 2)
    counts = {name: 0 for name in counts}
    result = train(Prepared.open(sys.argv[1]), AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1),
                   TrainConfig(epochs=3, patience=5, batch_size=256, lr=0.01, seed=2, data_path="streamed",
                               buffer_rows=1024), progress=False)
    print(json.dumps({"device": str(device), "mixed": mixed, "mixed_cost": mixed_cost, "same": same,
                      "same_cost": same_cost, "shared": repr(shared), "counts": counts, "held": held,
                      "metrics": {k: result.metrics[k] for k in ("val_auc", "val_logloss", "test_auc", "best_epoch",
                                                                 "epochs_run", "device")},
                      "history": result.history}))
finally:
    distributed.stop()
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_criteo(tmp_path_factory, "distributed", rows=3000, seed=6, row_group_rows=256).path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree_with_one_exchange_per_need(prepared):
    """Two gloo processes (as torchrun starts them): an epoch of fewer than 50 steps costs three all-reduces (the
    loss and any cancel at the last step, any cancel after the epoch; the epoch's loss is not reduced again) and
    validation one gather to rank 0 (scores and labels together, lengths known from the manifest) and one broadcast
    of its AUC and logloss; no all_gather at all. The final metrics gather the test split only. Rank 0 alone holds a
    whole split's predictions; rank 1 holds only its own row groups' rows, and gets the same numbers."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", RANK, str(prepared)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2",
                                   "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": str(port)}) for rank in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    zero, one = reports
    assert zero["mixed"] == [[0.0, 1.0, 10.0, 11.0, 12.0], [0, 0, 1, 1, 1]] and zero["mixed_cost"] == 2
    assert zero["same"] == [[0.0, 1.0, 10.0, 11.0, 12.0], [0.0, 0.0, 1.0, 1.0, 1.0]] and zero["same_cost"] == 1
    assert one["mixed"] == [[10.0, 11.0, 12.0], [1, 1, 1]] and one["same"] == [[10.0, 11.0, 12.0], [1.0, 1.0, 1.0]]
    assert zero["shared"] == one["shared"] == "[0.25, nan]"
    epochs = zero["metrics"]["epochs_run"]
    assert epochs == 3 and zero["device"] == "cpu" and zero["metrics"]["device"] == "cpu"
    for report in reports:
        assert report["counts"] == {"all_reduce": 3 * epochs, "all_gather": 0, "gather": epochs + 1,
                                    "broadcast": epochs + 1}, report["counts"]
    groups = {split: Prepared.open(prepared).row_groups(split) for split in ("val", "test")}
    splits = ["val"] * epochs + ["test"]
    whole = {split: sum(g.rows for g in groups[split]) for split in groups}
    own = {split: sum(g.rows for g in groups[split][1::2]) for split in groups}
    assert all(0 < own[split] < whole[split] for split in groups)
    assert zero["held"] == [[split, whole[split], whole[split]] for split in splits]
    assert one["held"] == [[split, own[split], own[split]] for split in splits]  # its own rows, no more
    decisions = [[{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]] for r in reports]
    assert zero["metrics"] == one["metrics"] and decisions[0] == decisions[1]  # the same numbers on every rank
    best = zero["history"][zero["metrics"]["best_epoch"] - 1]
    assert zero["metrics"]["val_auc"] == best["val_auc"] and zero["metrics"]["test_auc"] > 0.5
