"""The device a run trains on, and a split's metrics (AUC, logloss): shared by the trainer, its config checks,
torchrun and the streamed path."""
from __future__ import annotations

import torch
import torch.nn.functional as F_

from ..errors import ConfigError


def pick_device(requested: str | None = None, cuda_available: bool | None = None) -> torch.device:
    """The device a name asks for (None, "" or "auto": CUDA when present, else the CPU), checked against this
    machine (`cuda_available`: torch.cuda.is_available() unless given). Under torchrun,
    autoint.training.distributed.rank_device turns "cuda" into each process's cuda:LOCAL_RANK."""
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if requested in (None, "", "auto"):
        return torch.device("cuda" if cuda_available else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ConfigError(f"device={requested!r} is not a device name; use cpu, cuda or cuda:N.") from exc
    if device.type == "cuda" and not cuda_available:
        raise ConfigError(f"device={requested!r} asked for CUDA, but this machine has no CUDA GPU; use --device cpu.")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={requested!r}: only cpu and cuda are supported.")
    return device


def roc_auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """Area under the ROC curve by the rank-sum formula, ties given their average rank."""
    labels, scores = labels.double().cpu(), scores.double().cpu()
    n_pos = labels.sum().item()
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average_rank = (ends - (counts.double() - 1) / 2)[inverse]  # 1-based ranks, ties averaged
    rank_sum = (average_rank * labels[order]).sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def log_loss(labels: torch.Tensor, probabilities: torch.Tensor) -> float:
    p = probabilities.double().clamp(1e-7, 1 - 1e-7)
    return float(F_.binary_cross_entropy(p, labels.double()).item())


def metrics(labels: torch.Tensor, probabilities: torch.Tensor) -> dict:
    """A split's AUC and logloss from all its labels and predicted probabilities."""
    return {"auc": roc_auc(labels, probabilities), "logloss": log_loss(labels, probabilities)}
