"""Multi-process training under torchrun: DistributedDataParallel, NCCL on CUDA, gloo on CPU.

`torchrun --nproc-per-node N -m autoint train --prepared DIR ...` starts N copies of the CLI; torchrun sets
WORLD_SIZE, RANK and LOCAL_RANK in each one's environment, which is how a process knows it is one of several
(`launch_from_env`). Without those variables nothing here runs and training is as before.

- Each rank streams its own virtual shards (autoint.stream), DDP averages the gradients, and validation and test
  scores are gathered from every rank (`all_gather_rows`) so each computes the exact AUC of the whole split: the
  same number, hence the same early-stopping decisions, on every rank.
- Rank 0 alone writes the run folder (autoint.runs.save_run, atomic as ever).
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

from .errors import AutoIntError, UsageError

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


def start(launch: Launch, device_request: str | None = None) -> torch.device:
    """Join the job's process group: NCCL on CUDA (one GPU per process, LOCAL_RANK), gloo on CPU; the device."""
    from .train import pick_device
    device = pick_device(device_request)
    if device.type == "cuda":
        device = torch.device("cuda", launch.local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=PEER_TIMEOUT_S))
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's 1-D tensor, concatenated in rank order (lengths may differ), on every rank."""
    if world() == 1:
        return t
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    n = torch.tensor([len(t)], device=device)
    sizes = [torch.zeros_like(n) for _ in range(world())]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=t.dtype, device=device)
    padded[:len(t)] = t.to(device)
    out = [torch.zeros_like(padded) for _ in range(world())]
    dist.all_gather(out, padded)
    return torch.cat([o[:int(s.item())] for o, s in zip(out, sizes)]).cpu()


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
