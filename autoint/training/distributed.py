"""Multi-process training under torchrun: DistributedDataParallel, NCCL on CUDA, gloo on CPU.

`torchrun --nproc-per-node N -m autoint train --prepared DIR ...` starts N copies of the CLI; torchrun sets
WORLD_SIZE, RANK and LOCAL_RANK in each one's environment, which is how a process knows it is one of several
(`launch_from_env`). Without those variables nothing here runs and training is as before.

- Each rank streams its own virtual shards (autoint.training.stream), DDP averages the gradients, and each rank predicts its
  share of the validation and test row groups. Rank 0 alone gathers every rank's scores and labels (`gather_rows`,
  lengths known from the manifest, so one `dist.gather`), computes the exact AUC and logloss of the whole split and
  broadcasts the two numbers (`broadcast_floats`): the same numbers, hence the same early-stopping decisions, on
  every rank, while the other ranks hold only their own rows. gloo and NCCL both have `gather` (torch's backend
  table marks it for NCCL on GPU from 2.3, the oldest torch requirements.txt allows), so there is no all_gather
  fallback.
- On CUDA each process trains on the GPU of its LOCAL_RANK, `cuda:LOCAL_RANK` (`rank_device`): model, batches
  and collectives; choose which GPUs a node offers with CUDA_VISIBLE_DEVICES.
- Rank 0 alone writes the run folder (autoint.training.runs.save_run, atomic as ever).
- A killed rank: torchrun stops the others and exits non-zero naming the failed rank; a survivor blocked in a
  collective gets an error from the backend (`PEER_TIMEOUT_S` bounds the wait), which `peer_failure` turns into
  an error naming this rank. No run folder is written or replaced unless training finished.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import AutoIntError, UsageError

ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
PEER_TIMEOUT_S = 120  # the longest a collective waits for a peer before failing


class PeerFailure(AutoIntError, RuntimeError):
    """Another process of a torchrun job stopped (killed, crashed, unreachable) while this one waited for it."""


@dataclass(frozen=True)
class Launch:
    rank: int
    world: int
    local_rank: int


def launch_from_env(environ=None) -> Launch | None:
    """torchrun's process coordinates from the environment, or None outside torchrun (one process)."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    try:
        values = {name: int(environ.get(name, "0")) for name in ENV}
    except ValueError:
        raise UsageError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them); got "
                         f"{ {name: environ.get(name) for name in ENV} }. Start the job with torchrun.") from None
    launch = Launch(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if launch.world < 1 or not 0 <= launch.rank < launch.world:
        raise UsageError(f"RANK={launch.rank} of WORLD_SIZE={launch.world}: a rank runs from 0 to WORLD_SIZE - 1. "
                         "Start the job with torchrun.")
    return launch


_started_device: torch.device | None = None  # set by `start`, for `train` (`started_device`)


def rank_device(launch: Launch, requested: str | None = None, gpus: int | None = None) -> torch.device:
    """This process's device in a torchrun job: `cuda:LOCAL_RANK` when it trains on CUDA (asked for with
    "cuda", or present when nothing is asked), else the CPU. `gpus`: the CUDA devices this process sees
    (torch.cuda.device_count() unless given). "cuda:N" is refused unless N is LOCAL_RANK: N processes of a node
    on one GPU would make NCCL fail; CUDA_VISIBLE_DEVICES chooses a node's GPUs instead."""
    from .metrics import pick_device
    gpus = torch.cuda.device_count() if gpus is None else gpus
    device = pick_device(requested, cuda_available=gpus > 0)
    if device.type != "cuda":
        return device
    if device.index is not None and device.index != launch.local_rank:
        raise UsageError(f"--device {requested}: under torchrun each process trains on the GPU of its LOCAL_RANK "
                         f"(this one, LOCAL_RANK={launch.local_rank}: cuda:{launch.local_rank}). Pass --device cuda "
                         f"and choose a node's GPUs with CUDA_VISIBLE_DEVICES.")
    if launch.local_rank >= gpus:
        raise UsageError(f"LOCAL_RANK={launch.local_rank}, but this process sees {gpus} CUDA GPU"
                         f"{'s' if gpus != 1 else ''}: start at most {gpus} process{'es' if gpus != 1 else ''} per "
                         f"node (torchrun --nproc-per-node {gpus}), or train on the CPU with --device cpu.")
    return torch.device("cuda", launch.local_rank)


def start(launch: Launch, device_request: str | None = None) -> torch.device:
    """Join the job's process group: NCCL on CUDA (this process on `rank_device`, cuda:LOCAL_RANK, made the
    current CUDA device), gloo on CPU; returns the device, which `train` then uses (`started_device`)."""
    global _started_device
    device = rank_device(launch, device_request)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":  # device_id binds the communicator to this GPU (no guess from the rank)
            dist.init_process_group("nccl", timeout=timedelta(seconds=PEER_TIMEOUT_S), device_id=device)
        else:
            dist.init_process_group("gloo", timeout=timedelta(seconds=PEER_TIMEOUT_S))
    _started_device = device
    return device


def started_device() -> torch.device | None:
    """The device `start` chose for this process (None outside a torchrun job): where `train` puts the model."""
    return _started_device if dist.is_initialized() else None


def stop() -> None:
    global _started_device
    _started_device = None
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def _collective_device() -> torch.device:
    """Where a collective's tensors must be: this process's GPU with NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(*tensors: torch.Tensor, counts: list[int], dst: int = 0):
    """Every rank's 1-D tensors, concatenated in rank order, on rank `dst` only (on the CPU); every other rank gets
    its own tensors back as given, and holds no other rank's rows. In one process: the tensors as given, where
    they are, with no collective.

    `counts[r]`: the rows rank r holds, known to every rank beforehand (a split's row-group sizes), so no lengths
    are exchanged: each rank pads its rows to max(counts) and one `dist.gather` per dtype moves them (a split's
    scores and labels, of one dtype, travel together). A tuple comes back for several tensors."""
    if not tensors or len({len(t) for t in tensors}) != 1 or any(t.dim() != 1 for t in tensors):
        raise UsageError(f"gather_rows takes 1-D tensors of one length; got shapes "
                         f"{[tuple(t.shape) for t in tensors]}.")
    if len(counts) != world() or counts[rank()] != len(tensors[0]):
        raise UsageError(f"gather_rows on rank {rank()} of {world()}: counts={list(counts)} must give every rank's "
                         f"rows, this rank's being {len(tensors[0])}; compute them from the same manifest on "
                         f"every rank.")
    if world() == 1:
        return tensors[0] if len(tensors) == 1 else tensors
    device, receiving = _collective_device(), rank() == dst
    width = max(max(counts), 1)  # a split with no rows still gathers a (padding) column
    groups = [list(tensors)] if len({t.dtype for t in tensors}) == 1 else [[t] for t in tensors]
    out = []
    for group in groups:
        padded = torch.zeros((len(group), width), dtype=group[0].dtype, device=device)
        for row, t in zip(padded, group):
            row[:len(t)] = t.to(device)
        gathered = [torch.empty_like(padded) for _ in range(world())] if receiving else None
        dist.gather(padded, gathered, dst=dst)
        if receiving:
            joined = torch.cat([g[:, :count] for g, count in zip(gathered, counts)], dim=1).cpu()
            out += list(joined.unbind(0))
    if not receiving:
        return tensors[0] if len(tensors) == 1 else tensors
    return out[0] if len(out) == 1 else tuple(out)


def broadcast_floats(values: list[float] | None, n: int, src: int = 0) -> list[float]:
    """`n` floats computed on rank `src` (`values`; None on the others), on every rank: one small broadcast, exact
    (float64). In one process: `values` as given."""
    if world() == 1:
        return list(values)
    if rank() == src and (values is None or len(values) != n):
        raise UsageError(f"broadcast_floats on rank {src}: expected {n} values, got {values!r}.")
    t = torch.tensor(values if rank() == src else [0.0] * n, dtype=torch.float64, device=_collective_device())
    dist.broadcast(t, src=src)
    return t.cpu().tolist()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a small tensor (in place, and returned); itself with one process."""
    if world() > 1:
        dist.all_reduce(t)
    return t


def peer_failure(exc: BaseException) -> PeerFailure | None:
    """The error to report when a collective failed because another process of the job went away."""
    if world() == 1 and not dist.is_initialized():
        return None
    backend_error = getattr(dist, "DistBackendError", ())
    text = str(exc)
    if isinstance(exc, backend_error) or any(s in text for s in ("Connection closed by peer", "Connection reset",
                                                                 "Broken pipe", "timed out", "NCCL")):
        return PeerFailure(f"rank {rank()} of {world()}: another process of this torchrun job stopped while this one "
                           f"waited for it ({text.splitlines()[0] if text else type(exc).__name__}); no run folder "
                           f"was written. torchrun's summary names the rank that failed first.")
    return None
