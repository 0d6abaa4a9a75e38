"""Training settings: `TrainConfig`, the one place a training setting, its default and its range are written.

Apart from autoint/training/train.py (which re-exports these names) so that reading the defaults imports no torch: the
CLI's parser shows them in its help, and `python -m autoint prepare` then starts without torch (about 1.3 s).
Checking a config (`validate`) imports autoint.model.autoint for its error class, and torch when a device is named.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields

from ..errors import ConfigError


DATA_PATHS = ("auto", "in-memory", "streamed")
# "auto" keeps a prepared set in memory up to this many bytes of encoded tensors (all splits), one process only.
IN_MEMORY_MAX_BYTES = 1 << 30


# The default batch size follows the training split (`batch_size_for`): the paper's 1024 where an epoch still has
# MIN_STEPS_PER_EPOCH steps at that size (MovieLens-1M, u2999's 288,347 training rows, Criteo, Avazu, KDD12), else
# the largest power of two, down to MIN_BATCH, that gives every epoch that many steps. With 24,000 training rows
# an epoch at 1024 is 24 steps and early stopping ends the run after about 170 Adam steps, before the model learns
# a planted pair (test AUC 0.589 against 0.789 at 128; benchmarks/bench_small_data.py measures the rule).
MAX_BATCH, MIN_BATCH, MIN_STEPS_PER_EPOCH = 1024, 64, 256
# The default learning rate follows the batch (`lr_for`): the paper's 1e-3, and SMALL_BATCH_LR at MIN_BATCH or
# below, which the rule gives splits under MIN_BATCH * 2 * MIN_STEPS_PER_EPOCH = 32,768 training rows. On the
# four small files of bench_small_data.py (10k and 30k rows, Criteo's and MovieLens' formats) batch 64 at 3e-3 came
# within 0.001 of the best point of the batch x lr grid; at 1e-3 it was 0.022 short on the Criteo-format 10k, and
# batch 32 at 1e-3 (this rule's first version) 0.011 short on the MovieLens-format 10k.
PAPER_LR, SMALL_BATCH_LR = 1e-3, 3e-3


def batch_size_for(train_rows: int) -> int:
    """The default batch size for a training split of `train_rows` samples (the rule above)."""
    size = MAX_BATCH
    while size > MIN_BATCH and train_rows < size * MIN_STEPS_PER_EPOCH:
        size //= 2
    return size


def lr_for(batch_size: int) -> float:
    """The default learning rate at `batch_size` (the rule above)."""
    return SMALL_BATCH_LR if batch_size <= MIN_BATCH else PAPER_LR


@dataclass
class TrainConfig:
    epochs: int = 20
    patience: int = 2  # epochs without a better validation AUC before stopping
    batch_size: int | None = None  # None: scaled to the training split, `batch_size_for` (1024 on the paper's data)
    lr: float | None = None  # None: follows the batch size, `lr_for` (1e-3 on the paper's data)
    weight_decay: float = 0.0
    lr_decay: float = 1.0  # the learning rate is multiplied by this after each epoch without a better val AUC
    seed: int = 2019
    device: str | None = None  # None: CUDA when present, else CPU
    # How a prepared directory's rows reach the model (module docstring): "auto", "in-memory" or "streamed".
    data_path: str = "auto"
    buffer_rows: int = 262144  # streamed: rows in the shuffle buffers, all virtual shards together
    virtual_shards: int = 8  # streamed: the split's row groups are dealt to this many shards (autoint.training.stream)
    loader_workers: int = 0  # streamed: DataLoader worker processes reading row groups (0: the training process)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        checks = [
            ("epochs", self.epochs, 1, 1000), ("patience", self.patience, 1, 1000),
            ("seed", self.seed, 0, 2**63 - 1),
            ("buffer_rows", self.buffer_rows, 1, 1 << 31), ("virtual_shards", self.virtual_shards, 1, 1024),
            ("loader_workers", self.loader_workers, 0, 64),
        ]
        if self.batch_size is not None:
            checks.append(("batch_size", self.batch_size, 1, 1 << 20))
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name}={value!r} is out of range: choose an integer from {low} to {high}.")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or not math.isfinite(self.lr) or not 0 < self.lr <= 1):
            raise ConfigError(f"lr={self.lr!r} is out of range: choose a learning rate in (0, 1], e.g. 0.001.")
        if not isinstance(self.weight_decay, (int, float)) or not math.isfinite(self.weight_decay) \
                or not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight_decay={self.weight_decay!r} is out of range: choose a number in [0, 1).")
        if isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, (int, float)) \
                or not math.isfinite(self.lr_decay) or not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay={self.lr_decay!r} is out of range: choose a factor in (0, 1], e.g. 0.5; "
                              "1 keeps the learning rate constant.")
        if self.data_path not in DATA_PATHS:
            raise ConfigError(f"data_path={self.data_path!r}: choose one of {', '.join(DATA_PATHS)} (auto: in memory "
                              "when a prepared set is small, else streamed).")
        if self.device is not None:
            from .metrics import pick_device  # torch: only when a device is named
            pick_device(self.device)


    def for_split(self, train_rows: int) -> "TrainConfig":
        """These settings as a run on `train_rows` training samples takes them: the batch size and learning rate
        set, else `batch_size_for(train_rows)` and `lr_for` that batch. What a run's run.json records."""
        batch_size = self.batch_size if self.batch_size is not None else batch_size_for(train_rows)
        lr = self.lr if self.lr is not None else lr_for(batch_size)
        if (batch_size, lr) == (self.batch_size, self.lr):
            return self
        return TrainConfig(**{**asdict(self), "batch_size": batch_size, "lr": lr})

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(obj: dict) -> "TrainConfig":
        if not isinstance(obj, dict):
            raise ConfigError(f"training settings must be a JSON object, not {type(obj).__name__}.")
        known = {f.name for f in fields(TrainConfig)}
        unknown = set(obj) - known
        if unknown:
            raise ConfigError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
        return TrainConfig(**obj)


def defaults() -> dict:
    """Each setting's default, without building (and so checking) a TrainConfig: no torch import."""
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
