"""Streamed training from prepared row groups (autoint.training.stream): every row once an epoch across ranks and workers,
seeded orders, bounded buffers, and the same metrics as the in-memory path where the design allows it."""
import pytest
import torch

from autoint.model.autoint import AutoIntConfig, ConfigError
from autoint.training.stream import EpochPlan, SplitStream, StreamedBatches
from autoint.training.train import TrainConfig, choose_data_path, train
from conftest import prepared_criteo

TINY = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A generated Criteo-format set, 12,000 rows, prepared in row groups of 512 rows (19 train groups)."""
    return prepared_criteo(tmp_path_factory, "stream", rows=12000, seed=4, row_group_rows=512)


class RowIds(SplitStream):
    """The stream with each row's label replaced by its position in the split, to follow rows."""

    def _pieces(self, groups):
        for group in groups:
            x, _ = self.prepared.read(group)
            yield x, torch.arange(group.first_row, group.first_row + group.rows, dtype=torch.float64)


def steps_of(stream) -> list[list[tuple[int, list[int]]]]:
    """Per step, (shard, row ids of its local batch) in shard order."""
    return [[(v, got[1].long().tolist()) for v, got in item if got is not None] for item in stream]


def global_batches(prepared, world, *, epoch=1, seed=3, shards=8, buffer_rows=1500, batch_size=256):
    """The global batches of an epoch put together from every rank's stream: per step, row ids by shard order."""
    per_rank = []
    for rank in range(world):
        stream = RowIds(prepared, "train", batch_size=batch_size, shards=shards, buffer_rows=buffer_rows, seed=seed,
                        rank=rank, world=world)
        stream.set_epoch(epoch)
        per_rank.append(steps_of(stream))
    assert len({len(s) for s in per_rank}) == 1  # every rank runs the same number of steps
    return [[row for _, rows in sorted(part for rank in per_rank for part in rank[step]) for row in rows]
            for step in range(len(per_rank[0]))]


def test_every_row_once_an_epoch_and_the_same_batches_for_any_number_of_ranks(prepared):
    n = prepared.rows("train")
    one = global_batches(prepared, 1)
    assert sorted(row for batch in one for row in batch) == list(range(n))
    for world in (2, 4, 8):
        assert global_batches(prepared, world) == one  # each rank reads its own shards, the sum is the same
    plan = EpochPlan.of(prepared.row_groups("train"), shards=8, batch_size=256, buffer_rows=1500, seed=3, epoch=1)
    assert [len(b) for b in one] == [plan.global_rows(j) for j in range(plan.steps)]
    assert sum(plan.batch) == 256 and all(len(b) == 256 for b in one[:-2])  # full batches until shards run dry
    # Each rank read only its own row groups: the shards' groups are disjoint and cover the split.
    dealt = [g.first_row for shard in plan.groups for g in shard]
    assert sorted(dealt) == [g.first_row for g in prepared.row_groups("train")]


def test_orders_are_seeded(prepared):
    first = global_batches(prepared, 1, epoch=1, seed=3)
    assert global_batches(prepared, 2, epoch=1, seed=3) == first
    assert global_batches(prepared, 1, epoch=2, seed=3) != first
    assert global_batches(prepared, 1, epoch=1, seed=4) != first
    assert sorted(r for b in global_batches(prepared, 1, epoch=2) for r in b) == sorted(r for b in first for r in b)


def test_dataloader_workers_give_the_same_batches(prepared):
    config = dict(batch_size=256, shards=8, buffer_rows=1500, seed=3)
    plain = StreamedBatches(prepared, torch.device("cpu"), workers=0, **config)
    plain.stream = RowIds(prepared, "train", **config)
    workers = StreamedBatches(prepared, torch.device("cpu"), workers=2, **config)
    workers.stream = RowIds(prepared, "train", **config)
    a = [y.long().tolist() for _, y, _ in plain.batches(1)]
    b = [y.long().tolist() for _, y, _ in workers.batches(1)]
    assert a == b and sorted(r for batch in a for r in batch) == list(range(prepared.rows("train")))


def test_buffers_hold_at_most_their_share_and_one_row_group(prepared):
    group = max(g.rows for g in prepared.row_groups("train"))
    one = RowIds(prepared, "train", batch_size=256, shards=1, buffer_rows=2000, seed=1)
    steps_of(one)
    assert 2000 <= one.max_held <= 2000 + group  # one shard: buffer_rows plus one row group
    eight = RowIds(prepared, "train", batch_size=256, shards=8, buffer_rows=2000, seed=1)
    steps_of(eight)
    share = 2000 // 8
    assert all(share <= held <= share + group for held in eight.shard_max_held().values())
    assert eight.max_held <= 2000 + 8 * group  # each shard its share plus one group


def test_a_rank_without_rows_joins_with_a_zero_weighted_row(prepared):
    """Fewer row groups than shards: some ranks have no rows; they still yield one row a step, weighted 0, and
    the weights of a step add up to world / global rows for every real row."""
    small = type("Few", (), {})()
    groups = prepared.row_groups("train")[:3]
    small.row_groups, small.read, small.path = (lambda split: groups), prepared.read, prepared.path
    world = 4
    sources = [StreamedBatches(small, torch.device("cpu"), batch_size=64, shards=8, buffer_rows=4096, seed=0,
                               rank=r, world=world) for r in range(world)]
    for source in sources:
        source.template = lambda: prepared.read(groups[0])
    per_rank = [list(s.batches(1)) for s in sources]
    assert len({len(p) for p in per_rank}) == 1
    for step in zip(*per_rank):
        real = sum(len(y) for _, y, scale in step if scale)
        assert real > 0 and all(scale == pytest.approx(world / real) for _, y, scale in step if scale)
        assert any(scale == 0.0 and len(y) == 1 for _, y, scale in step)
    assert sum(len(y) for p in per_rank for _, y, scale in p if scale) == sum(g.rows for g in groups)


def test_each_rank_predicts_the_rows_the_gather_expects(prepared, monkeypatch):
    """Under torchrun rank 0 gathers a split's predictions with lengths taken from the manifest (`rows_by_rank`),
    not exchanged: each rank's own predictions must have exactly that length (also 0, for a rank without a row
    group), and together they are the split. The gather itself is left out here (one process, no group):
    tests/test_distributed.py runs it."""
    from autoint.training import distributed
    from autoint.model.reference_models import build_model
    seen = []
    monkeypatch.setattr(distributed, "gather_rows",
                        lambda scores, labels, counts: (seen.append(counts), (scores, labels))[1])
    model = build_model(TINY, prepared.schema).eval()
    whole = StreamedBatches(prepared, torch.device("cpu"), batch_size=256, shards=8, buffer_rows=1500, seed=0)
    every_score, every_label = whole.predictions(model, "val")
    assert len(every_score) == prepared.rows("val") and not seen  # one process: no gather
    groups = len(prepared.row_groups("val"))
    for world in (2, 4, 8):
        ranks = [StreamedBatches(prepared, torch.device("cpu"), batch_size=256, shards=8, buffer_rows=1500, seed=0,
                                 rank=r, world=world) for r in range(world)]
        counts = ranks[0].rows_by_rank("val")
        held = [source.predictions(model, "val") for source in ranks]
        assert [len(scores) for scores, _ in held] == [len(labels) for _, labels in held] == counts
        assert seen[-world:] == [counts] * world and sum(counts) == prepared.rows("val")
        assert (0 in counts) == (world > groups)
        joined = torch.cat([scores for scores, _ in held])  # rank order, as gather_rows joins them
        assert sorted(joined.tolist()) == pytest.approx(sorted(every_score.tolist()), abs=1e-6)


def test_virtual_shards_must_divide_among_the_ranks(prepared):
    with pytest.raises(ConfigError, match="virtual_shards=8 is not a multiple of the 3 processes"):
        SplitStream(prepared, "train", batch_size=64, shards=8, buffer_rows=100, seed=0, rank=0, world=3)


def test_streamed_equals_in_memory_with_one_shard_and_a_whole_buffer(prepared):
    """One virtual shard whose buffer holds the split: the in-memory path's batches, so its metrics."""
    base = dict(epochs=2, batch_size=256, lr=0.01, seed=5, device="cpu")
    memory = train(prepared, TINY, TrainConfig(data_path="in-memory", **base), progress=False)
    streamed = train(prepared, TINY, TrainConfig(data_path="streamed", virtual_shards=1, buffer_rows=1 << 20, **base),
                     progress=False)
    assert memory.metrics["data_path"] == "in-memory" and streamed.metrics["data_path"] == "streamed"
    assert streamed.metrics["virtual_shards"] == 1 and streamed.metrics["world_size"] == 1
    for key in ("test_auc", "test_logloss", "val_auc", "val_logloss"):
        assert streamed.metrics[key] == pytest.approx(memory.metrics[key], abs=1e-6), key
    assert [h["train_loss"] for h in streamed.history] == pytest.approx([h["train_loss"] for h in memory.history],
                                                                        abs=1e-6)


def test_streamed_with_shards_and_small_buffers_stays_close_to_in_memory(prepared):
    """Eight shards and buffers of 1,500 rows shuffle otherwise than the in-memory path: the metrics differ, by
    less than 0.02 test AUC on this learnable set (both learn it: test AUC above 0.8)."""
    base = dict(epochs=4, batch_size=256, lr=0.03, seed=5, device="cpu")
    memory = train(prepared, TINY, TrainConfig(data_path="in-memory", **base), progress=False)
    streamed = train(prepared, TINY, TrainConfig(data_path="streamed", virtual_shards=8, buffer_rows=1500, **base),
                     progress=False)
    assert memory.metrics["test_auc"] > 0.8 and streamed.metrics["test_auc"] > 0.8
    assert streamed.metrics["test_auc"] != memory.metrics["test_auc"]
    assert abs(streamed.metrics["test_auc"] - memory.metrics["test_auc"]) < 0.02
    assert streamed.metrics["buffer_rows"] == 1500 and streamed.metrics["virtual_shards"] == 8


def test_the_data_path_rule(prepared, synth_dataset):
    assert choose_data_path(prepared, TrainConfig()) == "in-memory"  # small: in memory
    assert choose_data_path(prepared, TrainConfig(), world=2) == "streamed"  # each process its own shards
    assert choose_data_path(prepared, TrainConfig(data_path="streamed")) == "streamed"
    assert choose_data_path(synth_dataset, TrainConfig()) == "in-memory"
    with pytest.raises(ConfigError, match="prepare the data set first"):
        choose_data_path(synth_dataset, TrainConfig(data_path="streamed"))
    with pytest.raises(ConfigError, match="data_path='disk'"):
        TrainConfig(data_path="disk")
