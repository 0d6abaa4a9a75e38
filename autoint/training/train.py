"""Training: Adam, logloss, early stopping on validation AUC, the best weights restored.

One loop trains from a batch source, one of two data paths (`TrainConfig.data_path`):

- **in-memory** (`InMemoryBatches`): the split lives on the device as tensors and is batched by index, so the
  loop holds no per-sample Python. A `Dataset` always takes it; a prepared directory (autoint.datasets.prepared) can.
- **streamed** (`autoint.training.stream.StreamedBatches`): a prepared directory's row groups are read through seeded
  shuffle buffers, so host memory is bounded by `buffer_rows`, not by the data set; validation and test stream too
  (batched predictions, the exact AUC over the whole split). Under torchrun (autoint.training.distributed) each process
  streams its own virtual shards and DDP averages the gradients.

"auto" keeps a prepared set in memory when its encoded tensors are small (`IN_MEMORY_MAX_BYTES`) and it is one
process, and streams otherwise. The run's metrics say which path it used ("data_path", "buffer_rows",
"virtual_shards", "world_size"). Progress goes to a tqdm bar and to an optional callback (the app's progress bar
and cancel button).
"""
from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F_
from tqdm.auto import tqdm

from . import distributed
from .alignment import alignment_term, check_alignment
from .metrics import metrics, pick_device
from ..errors import AutoIntError, TrainingCancelled  # noqa: F401  (re-exported)
from ..data.dataset import Dataset
from ..data.encoding import FieldTensors
from ..model.reference_models import build_model, config_from_json
from ..errors import ConfigError
from ..model.autoint import AutoInt, AutoIntConfig
from ..model.kernels.loader import KERNELS, cuda_mode
from .config import IN_MEMORY_MAX_BYTES, TrainConfig  # noqa: F401  (re-exported)


class TrainingDiverged(AutoIntError, RuntimeError):
    """The loss became NaN or infinite; the best weights so far are kept.

    `result` holds the model with the best weights so far and their metrics (`stopped`:
    "diverged"), or None when no epoch finished with finite numbers.
    """

    def __init__(self, message: str, result: "TrainResult | None" = None):
        super().__init__(message)
        self.result = result


# A run's settings as one JSON object, {"model": {...}, "train": {...}}: what a job hands its trainer
# (`train --config FILE`) and what a run folder records. The dataclasses above and in model.py/baselines.py
# are the only place a setting, its default and its range are written down.
def settings_to_json(model_config, train_config: TrainConfig) -> dict:
    model_config.validate()
    train_config.validate()
    return {"model": model_config.to_json(), "train": train_config.to_json()}


def settings_from_json(obj: dict, where: str = "settings") -> tuple:
    """(model config, TrainConfig) from `settings_to_json`'s object; `where` names its file in errors."""
    if not isinstance(obj, dict) or set(obj) != {"model", "train"}:
        raise ConfigError(f"{where}: expected a JSON object with the keys \"model\" and \"train\" "
                          f"(as `settings_to_json` writes), got {sorted(obj) if isinstance(obj, dict) else type(obj).__name__}.")
    try:
        return config_from_json(obj["model"]), TrainConfig.from_json(obj["train"])
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


@torch.no_grad()
def evaluate(model: AutoInt, inputs: FieldTensors, labels: torch.Tensor) -> dict:
    device = next(model.parameters()).device
    return metrics(labels, model.predict_proba(inputs.to(device)).cpu())


@dataclass
class TrainResult:
    model: AutoInt
    metrics: dict
    history: list[dict] = field(default_factory=list)
    train_config: TrainConfig | None = None  # the settings as run: the batch size chosen for the split included


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def make_optimizer(model: torch.nn.Module, train_config: TrainConfig) -> torch.optim.Optimizer:
    """Adam with its fused kernel (CPU since torch 2.4, CUDA): one kernel for every parameter instead of a
    Python loop of small ops per parameter, about 10x cheaper per step here (benchmarks/NOTES.md). On CUDA
    it is also capturable, so `TrainStep` can record it in a CUDA graph."""
    on_cuda = any(p.is_cuda for p in model.parameters())
    try:
        return torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay,
                                fused=True, capturable=on_cuda)
    except (RuntimeError, TypeError):  # an older torch without a fused kernel for this device
        return torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)


class TrainStep:
    """One optimisation step on a batch; returns the loss as a device tensor (nothing is read back).

    On CUDA in the "graph" mode (autoint.model.kernels.loader.CUDA_MODE, or AUTOINT_CUDA_GRAPH=1) the full-size step is
    recorded once as a CUDA graph after `WARMUP` eager steps and then replayed, so each batch costs a few
    copies into static buffers and one launch instead of a few hundred; a shorter last batch runs eagerly.
    The graph records exactly `eager`, the code CPU runs, so CPU tests cover the step itself.
    benchmarks/gpu_check.sh times the CUDA modes; a capture that fails falls back to eager steps.
    """

    WARMUP = 3

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device):
        self.model, self.optimizer = model, optimizer
        # the readable preset's attention alignment (autoint/training/alignment.py): a second term of the loss
        self.aligned = bool(getattr(getattr(model, "config", None), "attention_alignment", 0.0))
        graph = os.environ.get("AUTOINT_CUDA_GRAPH")  # "1"/"0" overrides the CUDA mode
        self.use_graph = device.type == "cuda" and (graph == "1" if graph else cuda_mode() == "graph") \
            and distributed.world() == 1 and not self.aligned  # DDP's all-reduce hooks are not recorded
        self.graph, self.eager_full_steps, self.full_batch = None, 0, None

    def eager(self, x: FieldTensors, y: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """scale None: the batch's mean loss; else the sum of its rows' losses times `scale` (several processes:
        world size / rows of the global batch, so DDP's average is the global batch's mean; 0 for a dummy row)."""
        if scale is None:
            loss = F_.binary_cross_entropy_with_logits(self.model(x), y)
        else:
            loss = F_.binary_cross_entropy_with_logits(self.model(x), y, reduction="sum") * scale
        self.optimizer.zero_grad(set_to_none=True)
        (loss + alignment_term(self.model, x) if self.aligned else loss).backward()
        self.optimizer.step()
        return loss.detach()  # the click loss: what validation and the progress report compare

    def scale_lr(self, factor: float) -> None:
        """Multiply the learning rate; a recorded graph holds the old rate, so it is recorded again."""
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
        self.graph, self.eager_full_steps = None, 0

    def __call__(self, x: FieldTensors, y: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        if not self.use_graph or scale is not None:
            return self.eager(x, y, scale)
        if self.full_batch is None:
            self.full_batch = len(y)
        if len(y) != self.full_batch:
            return self.eager(x, y)
        if self.graph is None:
            if self.eager_full_steps < self.WARMUP:  # on a side stream, as torch.cuda.graphs asks
                self.eager_full_steps += 1
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    loss = self.eager(x, y)
                torch.cuda.current_stream().wait_stream(side)
                return loss
            try:
                self._capture(x, y)
            except RuntimeError as exc:  # e.g. an op that cannot be captured: stay eager, say why once
                warnings.warn(f"CUDA graph capture failed ({exc}); training continues with eager steps")
                self.use_graph, self.graph = False, None
                return self.eager(x, y)
        for static, batch in zip(self.static_x, x):
            static.copy_(batch)
        self.static_y.copy_(y)
        self.graph.replay()
        return self.static_loss.clone()

    def _capture(self, x: FieldTensors, y: torch.Tensor) -> None:
        self.static_x = FieldTensors(*(t.clone() for t in x))
        self.static_y = y.clone()
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.static_loss = self.eager(self.static_x, self.static_y)


class InMemoryBatches:
    """The in-memory path's batch source: the training split on the device, one seeded permutation an epoch (a
    torch.Generator seeded with the seed, one randperm(n) per epoch), batches as views. With several processes
    each takes its slice of every global batch, its loss scaled as autoint.training.stream's are."""

    path = "in-memory"

    def __init__(self, dataset: Dataset, device: torch.device, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1):
        self.dataset, self.device, self.batch_size, self.rank, self.world = dataset, device, batch_size, rank, world
        self.train_x, self.train_y = (t.to(device) for t in dataset.split("train"))
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def describe(self) -> dict:
        return {"data_path": self.path, "world_size": self.world}

    def samples(self) -> dict:
        return {k: int(len(v)) for k, v in self.dataset.splits.items()}

    def steps(self, epoch: int) -> int:
        return math.ceil(len(self.train_y) / self.batch_size)

    def batches(self, epoch: int):
        n, bs = len(self.train_y), self.batch_size
        # One gather per epoch puts the shuffled split in contiguous memory; batches are then views.
        order = torch.randperm(n, generator=self.generator).to(self.device)
        shuffled_x, shuffled_y = self.train_x.index(order), self.train_y[order]
        for step in range(self.steps(epoch)):
            batch = slice(step * bs, (step + 1) * bs)
            x, y = shuffled_x.index(batch), shuffled_y[batch]
            if self.world == 1:
                yield x, y, None
                continue
            mine = torch.tensor_split(torch.arange(len(y), device=self.device), self.world)[self.rank]
            if len(mine):
                yield x.index(mine), y[mine], self.world / len(y)
            else:  # fewer rows than processes in the last batch: a zero-weighted row joins the all-reduce
                from .stream import dummy_batch
                dx, dy = dummy_batch(x, y)
                yield dx.to(self.device), dy.to(self.device), 0.0

    def evaluate(self, model: AutoInt, split: str) -> dict:
        return evaluate(model, *self.dataset.split(split))


def choose_data_path(data, train_config: TrainConfig, world: int = 1) -> str:
    """"in-memory" or "streamed" for this data (a Dataset or a prepared directory) and these settings."""
    if isinstance(data, Dataset):
        if train_config.data_path == "streamed":
            raise ConfigError("data_path='streamed' reads a prepared directory; prepare the data set first "
                              "(python -m autoint prepare ...) and train with --prepared DIR, or choose in-memory.")
        return "in-memory"
    if train_config.data_path != "auto":
        return train_config.data_path
    return "in-memory" if world == 1 and data.encoded_bytes() <= IN_MEMORY_MAX_BYTES else "streamed"


def batch_source(data, train_config: TrainConfig, device: torch.device, rank: int = 0, world: int = 1):
    """The batch source `train` loops over: `InMemoryBatches` or `autoint.training.stream.StreamedBatches`."""
    path = choose_data_path(data, train_config, world)
    if path == "in-memory":
        dataset = data if isinstance(data, Dataset) else data.to_dataset()
        return InMemoryBatches(dataset, device, train_config.batch_size, train_config.seed, rank, world)
    from .stream import StreamedBatches
    return StreamedBatches(data, device, batch_size=train_config.batch_size, shards=train_config.virtual_shards,
                           buffer_rows=train_config.buffer_rows, seed=train_config.seed,
                           workers=train_config.loader_workers, rank=rank, world=world)


def train_rows(data) -> int:
    """The training split's size of a `Dataset` or a prepared directory."""
    return len(data.splits["train"]) if isinstance(data, Dataset) else data.rows("train")


def train(data, model_config: AutoIntConfig, train_config: TrainConfig,
          callback: Callable[[dict], bool | None] | None = None, progress: bool = True,
          snapshot: tuple[int, Callable[[TrainResult], None]] | None = None) -> TrainResult:
    """Train one model; returns it with the best validation weights and its test metrics.

    `data` is a `Dataset` (the in-memory path) or a prepared directory (`autoint.datasets.prepared.Prepared`: in memory
    or streamed, `TrainConfig.data_path`). In a torchrun job (autoint.training.distributed started) every process calls
    it; they train one DDP model and compute the same metrics.

    `callback(event)` gets {"event": "step" | "epoch", ...}; returning False cancels
    (TrainingCancelled is raised). A NaN or infinite loss raises TrainingDiverged after restoring the best
    weights; its `result` carries them. `snapshot=(epoch, save)` calls `save(result)` once, after that
    epoch, with a copy of the best weights so far and their metrics (a quick model while training goes on).
    """
    model_config.validate()
    train_config = train_config.for_split(train_rows(data))
    rank, world = distributed.rank(), distributed.world()
    device = distributed.started_device() or pick_device(train_config.device)  # torchrun: cuda:LOCAL_RANK
    if world > 1 and device.type == "cuda" and device.index is None:  # a process group started elsewhere
        device = torch.device("cuda", torch.cuda.current_device())
    seed_everything(train_config.seed)
    model = build_model(model_config, data.schema).to(device)
    if getattr(model_config, "attention_alignment", 0.0):
        check_alignment(model)
        if world > 1:
            raise ConfigError("attention_alignment trains in one process; run it without torchrun.")
    optimizer = make_optimizer(model, train_config)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_step = TrainStep(net, optimizer, device)
    source = batch_source(data, train_config, device, rank, world)
    progress = progress and rank == 0

    best_auc, best_epoch, best_state, stale = -1.0, 0, None, 0
    history, epoch_seconds, diverged = [], [], None
    compile_seconds = 0.0  # torch.compile of the fused layer (autoint.model.kernels.loader.KERNELS): once a process, timed apart

    def summary(net: AutoInt, best_epoch: int) -> dict:
        """A run's metrics: these weights (the best epoch's) on validation and test, and how training went so far.
        Validation was measured for exactly these weights after their epoch (history), so it is not read again:
        on a big split that is a whole pass (and every process's scores gathered to rank 0) for the same numbers."""
        best = history[best_epoch - 1] if best_epoch else None
        val = {"auc": best["val_auc"], "logloss": best["val_logloss"]} if best else source.evaluate(net, "val")
        test = source.evaluate(net, "test")
        return {
            "model": model_config.name, "test_auc": test["auc"], "test_logloss": test["logloss"],
            "val_auc": val["auc"], "val_logloss": val["logloss"], "best_epoch": best_epoch,
            "epochs_run": len(history), "epoch_seconds": list(epoch_seconds),
            "samples": source.samples(),
            "fields": data.schema.names, "params": sum(p.numel() for p in net.parameters()),
            "device": str(device), "threads": torch.get_num_threads(),
            "compile_seconds": round(compile_seconds, 2),
            # schemas the fused layer does not take here (AutoInt.runs_fused) run the reference layer; the
            # baselines (LR, FM) have none
            "kernels": KERNELS.mode(device.type) if hasattr(net, "runs_fused") and net.runs_fused(device.type)
            else "reference",
            **source.describe(),
        }

    def agreed(loss_sum: torch.Tensor, stop: bool) -> tuple[float, bool]:
        """(the loss summed over processes' shares, whether any process stops): one all-reduce for both, so every
        process takes the same decisions; with one process, the numbers themselves."""
        if world == 1:
            return loss_sum.item(), stop
        both = distributed.all_reduce_sum(torch.stack([loss_sum.detach().double(),
                                                       torch.tensor(float(stop), device=loss_sum.device,
                                                                    dtype=torch.float64)]))
        return both[0].item() / world, both[1].item() > 0

    for epoch in range(1, train_config.epochs + 1):
        started, compiled_before = time.perf_counter(), KERNELS.compile_seconds
        model.train()
        steps = source.steps(epoch)
        loss_sum = torch.zeros((), device=device)
        total = None  # the loss summed over every process's batches so far, as last agreed
        bar = tqdm(total=steps, desc=f"epoch {epoch}", unit="batch", disable=not progress, leave=False)
        for step, (x, y, scale) in enumerate(source.batches(epoch)):
            loss_sum += train_step(x, y, scale)
            bar.update(1)
            total = None
            if (step + 1) % 50 == 0 or step + 1 == steps:  # one host sync per 50 batches, not per batch
                total, _ = agreed(loss_sum, False)
                mean_loss = total / (step + 1)
                if not math.isfinite(mean_loss):
                    break  # diverged: no point finishing the epoch
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                cancel = callback is not None and callback({"event": "step", "epoch": epoch, "step": step + 1,
                                                            "steps": steps, "loss": mean_loss}) is False
                if world > 1:
                    cancel = agreed(torch.zeros((), device=device), cancel)[1]
                if cancel:
                    _restore(model, best_state)
                    raise TrainingCancelled(f"cancelled in epoch {epoch}")
        bar.close()
        if total is None:  # the last step (or a break) agreed the sum already: that one all-reduce is the epoch's
            total = agreed(loss_sum, False)[0]
        train_loss = total / max(steps, 1)
        compiling = KERNELS.compile_seconds - compiled_before  # the first steps' compile, reported apart
        compile_seconds += compiling
        epoch_seconds.append(round(time.perf_counter() - started - compiling, 3))
        if not math.isfinite(train_loss):
            diverged = f"the training loss became {train_loss} in epoch {epoch}"
            break
        if not torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all().item():
            diverged = f"the weights became NaN or infinite in epoch {epoch}"  # the loss did not show it yet
            break
        val = source.evaluate(model, "val")
        if not math.isfinite(val["logloss"]):
            diverged = f"the validation logloss became {val['logloss']} after epoch {epoch}"
            break
        record = {"epoch": epoch, "train_loss": train_loss, "val_auc": val["auc"], "val_logloss": val["logloss"],
                  "seconds": epoch_seconds[-1], "lr": optimizer.param_groups[0]["lr"]}
        history.append(record)
        if progress:
            tqdm.write(f"epoch {epoch}: loss {train_loss:.4f}  val AUC {val['auc']:.4f}  "
                       f"val logloss {val['logloss']:.4f}  ({epoch_seconds[-1]:.1f} s"
                       + (f", compiling the fused layer took {compiling:.1f} s more)" if compiling else ")"))
        if val["auc"] > best_auc:
            best_auc, best_epoch, stale = val["auc"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if train_config.lr_decay != 1.0:
                train_step.scale_lr(train_config.lr_decay)
        cancel = callback is not None and callback({"event": "epoch", **record, "epochs": train_config.epochs}) is False
        if world > 1:
            cancel = agreed(torch.zeros((), device=device), cancel)[1]
        if cancel:
            _restore(model, best_state)
            raise TrainingCancelled(f"cancelled after epoch {epoch}")
        if snapshot is not None and epoch == snapshot[0]:
            quick = copy.deepcopy(model).eval()
            _restore(quick, best_state)
            snapshot[1](TrainResult(quick, summary(quick, best_epoch), list(history), train_config))
        if stale >= train_config.patience:
            break
    _restore(model, best_state)
    model.eval()
    if diverged is not None and best_state is None:
        raise TrainingDiverged(f"{diverged}; stopped before any epoch finished with finite numbers, so there "
                               f"are no weights to keep. Lower the learning rate (now {train_config.lr}).")
    metrics = summary(model, best_epoch)
    if diverged is not None:
        metrics["stopped"] = "diverged"
        raise TrainingDiverged(f"{diverged}; stopped and kept the best weights so far (epoch {best_epoch}, "
                               f"validation AUC {best_auc:.4f}). Lower the learning rate (now {train_config.lr}).",
                               TrainResult(model, metrics, history, train_config))
    return TrainResult(model, metrics, history, train_config)


def _restore(model: AutoInt, state: dict | None) -> None:
    if state is not None:
        model.load_state_dict(state)
