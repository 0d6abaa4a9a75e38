"""Streaming a prepared split (autoint.datasets.prepared) into training batches, with host memory bounded by a buffer.

The design makes the batch sequence independent of how many processes train:

- **Virtual shards.** A split's row groups are dealt to V virtual shards (`TrainConfig.virtual_shards`, recorded
  in the run) by a seeded permutation drawn anew each epoch: shard v takes the permuted groups v, v + V, ...
  A process of rank r of W (W divides V) runs the shards v with v % W == r, and DataLoader worker k of K within it
  every K-th of those: each process reads only its own row groups.
- **Shuffle buffer per shard.** Each shard reads its groups in turn into a buffer of up to buffer_rows / V rows
  (`ShardBuffer`), permutes the buffer with its own seeded generator and hands out rows from its head; it reads
  the next group when it falls below that share. A shard's buffer never holds more than its share plus one row
  group (`ShardBuffer.max_held`; `SplitStream.max_held` is the total over a process's shards).
- **Global batches.** Each shard's local batch is its share of the global batch B, in proportion to its rows
  (largest remainders; at least one row for a shard with rows), so all shards run dry at about the same step.
  Global batch j is the concatenation over v = 0..V-1 of shard v's local batch j. The number of steps and each
  step's global batch size follow from the manifest's row-group sizes alone (`EpochPlan`), with no communication.
- **Gradients.** With W processes each one's loss is (sum of its rows' losses) / (rows of the global batch) * W,
  so DDP's gradient average is the gradient of the global batch's mean loss, whatever W is, even in the last steps
  where shards run dry unevenly. A process with no row in a step joins the all-reduce with one zero-weighted dummy
  row (`dummy_batch`).

**Same as the in-memory path when it can be.** With one virtual shard and a buffer that holds the whole split, the
shard reads the groups in file order (the split's row order) and draws its permutation from the same generator
sequence as `train`'s in-memory loop (torch.Generator seeded with the seed, one randperm(n) per epoch): the batches
are the in-memory path's batches, bit for bit, and so are the metrics (tests/test_stream.py). Otherwise the order
differs and so do the metrics, within a bound tested on a learnable generated set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..data.encoding import FieldTensors
from ..errors import ConfigError


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: different tuples give unrelated streams)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _shares(total: int, sizes: list[int]) -> list[int]:
    """`total` split in proportion to `sizes` by largest remainders; at least 1 for every non-zero size."""
    n = sum(sizes)
    if n == 0:
        return [0] * len(sizes)
    exact = [total * s / n for s in sizes]
    shares = [int(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[:total - sum(shares)]:
        shares[i] += 1
    return [max(share, 1) if size else 0 for share, size in zip(shares, sizes)]


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's dealing of a split's row groups to the virtual shards, and the batches it gives."""

    groups: tuple[tuple, ...]  # per shard, its RowGroups in reading order
    rows: tuple[int, ...]  # per shard
    batch: tuple[int, ...]  # per shard: its rows in each global batch
    exact: bool  # one shard holding the whole split in its buffer: the in-memory path's batches

    @property
    def steps(self) -> int:
        return max((math.ceil(n / b) for n, b in zip(self.rows, self.batch) if n), default=0)

    def local_rows(self, shard: int, step: int) -> int:
        return max(0, min(self.batch[shard], self.rows[shard] - step * self.batch[shard]))

    def global_rows(self, step: int) -> int:
        return sum(self.local_rows(v, step) for v in range(len(self.rows)))

    @staticmethod
    def of(groups: list, *, shards: int, batch_size: int, buffer_rows: int, seed: int, epoch: int) -> "EpochPlan":
        n = sum(g.rows for g in groups)
        order = np.random.default_rng(_seed(seed, epoch, 1)).permutation(len(groups))
        dealt = [[groups[i] for i in order[v::shards]] for v in range(shards)]
        exact = shards == 1 and n <= buffer_rows
        if exact:  # the whole split in one buffer: read in file order, permuted once as the in-memory path does
            dealt = [list(groups)]
        rows = [sum(g.rows for g in d) for d in dealt]
        return EpochPlan(tuple(tuple(d) for d in dealt), tuple(rows), tuple(_shares(batch_size, rows)), exact)


def shards_of(rank: int, world: int, shards: int) -> list[int]:
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} of {world} processes: a rank runs from 0 to WORLD_SIZE - 1.")
    if shards % world:
        raise ConfigError(f"virtual_shards={shards} is not a multiple of the {world} processes; choose a "
                          f"multiple of {world} (e.g. {world * math.ceil(8 / world)}) so every process runs as "
                          "many shards.")
    return list(range(rank, shards, world))


def _cat(parts: list[tuple[FieldTensors, torch.Tensor]], pin: bool = False) -> tuple[FieldTensors, torch.Tensor]:
    """Row-wise concatenation of (inputs, labels) pieces, into pinned memory when `pin`."""
    if len(parts) == 1 and not pin:
        return parts[0]
    columns = [[p[0][k] for p in parts] for k in range(3)] + [[p[1] for p in parts]]
    out = []
    for pieces in columns:
        shape = (sum(len(p) for p in pieces), *pieces[0].shape[1:])
        target = torch.empty(shape, dtype=pieces[0].dtype, pin_memory=pin)
        torch.cat(pieces, out=target)
        out.append(target)
    return FieldTensors(*out[:3]), out[3]


def _to(x: FieldTensors, device: torch.device, non_blocking: bool) -> FieldTensors:
    return FieldTensors(*(t.to(device, non_blocking=non_blocking) for t in x))


def _take(x: FieldTensors, y: torch.Tensor, rows) -> tuple[FieldTensors, torch.Tensor]:
    return x.index(rows), y[rows]


def empty_like(x: FieldTensors, y: torch.Tensor) -> tuple[FieldTensors, torch.Tensor]:
    return _take(x, y, slice(0, 0))


def dummy_batch(x: FieldTensors, y: torch.Tensor) -> tuple[FieldTensors, torch.Tensor]:
    """One row every model takes (every field `<unknown>`, numeric 0): a process with no row of its own in a step
    still runs forward and backward with it, weighted 0, so it joins the gradient all-reduce."""
    multivalued = torch.full((1, *x.multivalued.shape[1:]), -1, dtype=x.multivalued.dtype)
    if multivalued.shape[1] and multivalued.shape[2]:
        multivalued[:, :, 0] = 0
    return FieldTensors(torch.zeros((1, *x.categorical.shape[1:]), dtype=x.categorical.dtype), multivalued,
                        torch.zeros((1, *x.numeric.shape[1:]), dtype=x.numeric.dtype)), torch.zeros(1, dtype=y.dtype)


class ShardBuffer:
    """A virtual shard's shuffle buffer: reads its row groups in turn, hands out rows in a seeded random order.

    Holds at most `capacity` rows plus one row group (`max_held` records the most it held). `take(b)` first reads
    groups while fewer than max(capacity, b) rows are held, permutes the buffer if rows came in since its last
    permutation, then hands out the first b rows.
    """

    def __init__(self, pieces: Iterator[tuple[FieldTensors, torch.Tensor]], capacity: int,
                 generator: torch.Generator, on_read=None):
        self.pieces, self.capacity, self.generator, self.on_read = pieces, capacity, generator, on_read
        self.x: FieldTensors | None = None
        self.y: torch.Tensor | None = None
        self.shuffled, self.exhausted, self.max_held = True, False, 0

    @property
    def held(self) -> int:
        return 0 if self.y is None else len(self.y)

    def _read(self) -> None:
        try:
            x, y = next(self.pieces)
        except StopIteration:
            self.exhausted = True
            return
        if self.y is None or not len(self.y):
            self.x, self.y = x, y
        else:
            self.x, self.y = _cat([(self.x, self.y), (x, y)])
        self.shuffled = False
        self.max_held = max(self.max_held, self.held)
        if self.on_read is not None:
            self.on_read()

    def take(self, rows: int) -> tuple[FieldTensors, torch.Tensor] | None:
        while not self.exhausted and self.held < max(self.capacity, rows):
            self._read()
        if self.y is None:
            return None
        if not self.shuffled:
            self.x, self.y = _take(self.x, self.y, torch.randperm(self.held, generator=self.generator))
            self.shuffled = True
        out = _take(self.x, self.y, slice(0, rows))
        self.x, self.y = _take(self.x, self.y, slice(rows, None))
        return out


class SplitStream(IterableDataset):
    """A prepared split's training batches for one process (rank of world) of one epoch (`set_epoch`).

    Iterating yields one item a step: a list of (shard, inputs, labels), this process's (or DataLoader worker's)
    local batch of each of its shards, in shard order (a shard run dry gives 0 rows). `StreamedBatches` joins
    the items of a step (one per worker) into the process's batch. Every worker yields `plan().steps` items.
    """

    def __init__(self, prepared, split: str, *, batch_size: int, shards: int, buffer_rows: int, seed: int,
                 rank: int = 0, world: int = 1):
        self.path, self.split = Path(prepared.path), split
        self._prepared = prepared
        self.groups = prepared.row_groups(split)
        self.batch_size, self.shards, self.buffer_rows, self.seed = batch_size, shards, buffer_rows, seed
        self.rank, self.world, self.epoch = rank, world, 1
        self.mine = shards_of(rank, world, shards)
        self.buffers: dict[int, ShardBuffer] = {}
        self.max_held = 0  # the most rows this process's shard buffers held at once, in total

    def __getstate__(self):  # a DataLoader worker opens the prepared directory itself
        state = dict(self.__dict__)
        state["_prepared"], state["buffers"] = None, {}
        return state

    @property
    def prepared(self):
        if self._prepared is None:
            from ..datasets.prepared import Prepared
            self._prepared = Prepared.open(self.path)
        return self._prepared

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self) -> EpochPlan:
        return EpochPlan.of(self.groups, shards=self.shards, batch_size=self.batch_size,
                            buffer_rows=self.buffer_rows, seed=self.seed, epoch=self.epoch)

    def capacity(self) -> int:
        return max(1, self.buffer_rows // self.shards)

    def _generator(self, plan: EpochPlan, shard: int) -> torch.Generator:
        if plan.exact:  # the in-memory loop's generator: one randperm(n) per epoch from the seed
            generator = torch.Generator().manual_seed(self.seed)
            for _ in range(self.epoch - 1):
                torch.randperm(plan.rows[0], generator=generator)
            return generator
        return torch.Generator().manual_seed(_seed(self.seed, self.epoch, 2, shard))

    def _pieces(self, groups) -> Iterator[tuple[FieldTensors, torch.Tensor]]:
        for group in groups:
            yield self.prepared.read(group)

    def __iter__(self):
        plan = self.plan()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = self.mine[worker::workers]
        self.buffers = {v: ShardBuffer(self._pieces(plan.groups[v]), self.capacity(), self._generator(plan, v),
                                       on_read=self._note) for v in mine}
        for step in range(plan.steps):
            item = []
            for v in mine:
                want = plan.local_rows(v, step)
                item.append((v, self.buffers[v].take(want) if want else None))
            yield item

    def _note(self) -> None:
        self.max_held = max(self.max_held, sum(b.held for b in self.buffers.values()))

    def shard_max_held(self) -> dict[int, int]:
        return {v: b.max_held for v, b in self.buffers.items()}


class StreamedBatches:
    """The streamed path's batch source for `train`: one process's batches of each epoch on the device."""

    path = "streamed"

    def __init__(self, prepared, device: torch.device, *, batch_size: int, shards: int, buffer_rows: int,
                 seed: int, workers: int = 0, rank: int = 0, world: int = 1):
        self.prepared, self.device, self.rank, self.world, self.workers = prepared, device, rank, world, workers
        self.stream = SplitStream(prepared, "train", batch_size=batch_size, shards=shards, buffer_rows=buffer_rows,
                                  seed=seed, rank=rank, world=world)
        self.pin = device.type == "cuda"
        self._template = None

    def describe(self) -> dict:
        return {"data_path": self.path, "buffer_rows": self.stream.buffer_rows,
                "virtual_shards": self.stream.shards, "world_size": self.world, "loader_workers": self.workers}

    def samples(self) -> dict:
        return {split: int(self.prepared.rows(split)) for split in ("train", "val", "test")}

    def steps(self, epoch: int) -> int:
        self.stream.set_epoch(epoch)
        return self.stream.plan().steps

    def _items(self):
        if self.workers == 0:
            yield from ([item] for item in self.stream)
            return
        loader = torch.utils.data.DataLoader(self.stream, batch_size=None, num_workers=self.workers,
                                             collate_fn=lambda item: item)
        group = []
        for item in loader:  # workers take turns, one item a step each: a step is `workers` items in a row
            group.append(item)
            if len(group) == self.workers:
                yield group
                group = []

    def template(self) -> tuple[FieldTensors, torch.Tensor]:
        if self._template is None:
            groups = self.prepared.row_groups("train")
            self._template = empty_like(*self.prepared.read(groups[0]))
        return self._template

    def batches(self, epoch: int):
        """(inputs, labels, loss scale) on the device for each step: scale None means the batch mean (one
        process); else (sum of the rows' losses) * scale, scale = world / global batch rows (0: a dummy row)."""
        self.stream.set_epoch(epoch)
        plan = self.stream.plan()
        for step, items in enumerate(self._items()):
            parts = sorted(((v, got) for item in items for v, got in item if got is not None and len(got[1])),
                           key=lambda part: part[0])
            if parts:
                x, y = _cat([got for _, got in parts], pin=self.pin)
                scale = None if self.world == 1 else self.world / plan.global_rows(step)
            else:
                x, y = dummy_batch(*self.template())
                scale = 0.0
            yield _to(x, self.device, self.pin), y.to(self.device, non_blocking=self.pin), scale

    def evaluate(self, model, split: str) -> dict:
        """The split's AUC and logloss over all its rows: with several processes rank 0 computes them from every
        process's predictions (gathered to it alone) and broadcasts the two numbers to the others."""
        from . import distributed
        from .metrics import metrics
        probabilities, labels = self.predictions(model, split)
        if self.world == 1:
            return metrics(labels, probabilities)
        found = metrics(labels, probabilities) if self.rank == 0 else None
        auc, logloss = distributed.broadcast_floats(None if found is None else [found["auc"], found["logloss"]], 2)
        return {"auc": auc, "logloss": logloss}

    def rows_by_rank(self, split: str) -> list[int]:
        """The rows each process predicts of a split (its row groups i with i % world == rank), from the manifest."""
        groups = self.prepared.row_groups(split)
        return [sum(g.rows for g in groups[r::self.world]) for r in range(self.world)]

    @torch.no_grad()
    def predictions(self, model, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, labels), row groups read one at a time: this process predicts the groups i with
        i % world == rank. One process: the whole split. Several: rank 0 gets the whole split (every process's
        rows gathered to it, in rank order), every other rank only its own rows."""
        from . import distributed
        scores, labels = [], []
        for group in self.prepared.row_groups(split)[self.rank::self.world]:
            x, y = self.prepared.read(group)
            if self.pin:
                x, y = FieldTensors(*(t.pin_memory() for t in x)), y
            scores.append(model.predict_proba(_to(x, self.device, self.pin)).float().cpu())
            labels.append(y)
        scores = torch.cat(scores) if scores else torch.zeros(0)
        labels = torch.cat(labels) if labels else torch.zeros(0)
        if self.world > 1:  # one gather to rank 0 for both; the others keep their own rows
            scores, labels = distributed.gather_rows(scores, labels, counts=self.rows_by_rank(split))
        return scores, labels
