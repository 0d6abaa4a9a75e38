"""The seeded sample of a split behind the app's dataset-level views (autoint.explain.sampling), and the background runner
that computes them (autoint.workspace.background)."""
import threading

import numpy as np
import pytest
import torch

from autoint.workspace.background import FAILED, FINISHED, QUEUED, RUNNING, BackgroundRunner
from autoint.data.dataset import DataError
from autoint.errors import UsageError
from autoint.explain.sampling import (DEFAULT_SAMPLE_ROWS, correlations_of_sample, default_interaction_rows, default_size,
                              interactions_of_sample, split_sample)


class Splits:
    """A stand-in with only what split_sample reads."""

    def __init__(self, n: int):
        self.splits = {"test": np.arange(1000, 1000 + n), "train": np.arange(1000)}


def test_the_same_seed_gives_the_same_rows_samples_nest_and_another_seed_differs():
    data = Splits(5000)
    small, again, big = (split_sample(data, "test", n, seed=3) for n in (100, 100, 700))
    np.testing.assert_array_equal(small.positions, again.positions)
    assert set(small.positions) < set(big.positions)  # a bigger sample holds the smaller one
    np.testing.assert_array_equal(big.order[:100], small.order)  # the same permutation's prefix
    assert np.all(np.diff(small.positions) > 0) and small.positions.max() < 5000
    other = split_sample(data, "test", 100, seed=4)
    assert len(set(other.positions) & set(small.positions)) < 50  # another seed, other rows
    np.testing.assert_array_equal(big.prefix(100).order, small.order)
    assert small.describe() == "100 of 5,000 test samples, seed 3"


def test_default_size_the_whole_split_when_small_and_errors():
    assert default_size(1200) == 1200 and default_size(4_584_061) == DEFAULT_SAMPLE_ROWS
    whole = split_sample(Splits(1200), "test")
    assert whole.whole and len(whole) == 1200 and whole.describe() == "1,200 of 1,200 test samples (the whole split)"
    assert len(split_sample(Splits(50), "test", 80)) == 50  # more than the split: all of it
    assert default_interaction_rows(7, 50_000) == 20_000 and default_interaction_rows(12, 50_000) == 625
    assert default_interaction_rows(39, 50_000) == 64 and default_interaction_rows(39, 10) == 10
    with pytest.raises(UsageError, match="at least 1"):
        split_sample(Splits(50), "test", 0)
    with pytest.raises(UsageError, match="unknown split 'dev'"):
        split_sample(Splits(50), "dev", 10)


def test_views_of_a_sample_equal_the_library_on_those_rows(trained_run, synth_dataset, tmp_path):
    from autoint.explain.explanation import dataset_correlations
    from autoint.explain.baselines import mean_embedding
    from autoint.explain.interactions import split_interactions
    model = trained_run.model
    sample = split_sample(synth_dataset, "test", 150, seed=1)
    x, y = synth_dataset.split("test")
    rows = torch.from_numpy(sample.positions)
    seen = []
    result = correlations_of_sample(model, synth_dataset, sample, label=1, progress=lambda d, t: seen.append((d, t)))
    expected = dataset_correlations(model, x.index(rows), y[rows], label=1)
    assert result.count == expected.count > 0 and seen[-1] == (150, 150)
    np.testing.assert_allclose(result.per_head, expected.per_head, atol=1e-6)
    measured = interactions_of_sample(trained_run.path, model, synth_dataset, sample, rows=40, cache_dir=tmp_path)
    first = sample.prefix(40).positions
    base = mean_embedding(model, synth_dataset.split("train")[0])
    exact = split_interactions(model, x.index(torch.from_numpy(first)), base)
    np.testing.assert_array_equal(measured.rows, first)
    np.testing.assert_allclose(measured.pairs, exact.pairs, atol=1e-6)
    assert measured.total == len(x) and measured.sampled and measured.describe()["rows"] == 40
    keep = np.zeros(len(x), dtype=bool)
    keep[first[:10]] = True  # a slice mask over the whole split keeps the measured rows it holds
    assert measured.count(keep) == 10
    assert len(list(tmp_path.glob("*.npz"))) == 1  # cached by run, data, split, sample size and seed


def test_background_runner_progress_result_error_and_one_run_per_key():
    runner = BackgroundRunner(workers=1, keep=2, retry_after_s=0.0)
    gate, calls = threading.Event(), []

    def slow(progress):
        calls.append("slow")
        progress(3, 10)
        gate.wait(10)
        progress(10, 10)
        return 42

    task = runner.submit("a", slow, "counting")
    assert runner.submit("a", slow) is task  # a second session asking the same thing waits for the first
    waiting = runner.submit("b", lambda progress: "b done", "another")
    for _ in range(200):
        if task.done_count == 3:
            break
        task.wait(0.01)
    assert task.status == RUNNING and task.fraction == pytest.approx(0.3) and not task.done
    assert waiting.status == QUEUED  # one computation at a time
    with pytest.raises(UsageError, match="wait for it first"):
        task.result()
    gate.set()
    assert runner.wait_idle(10)
    assert task.status == FINISHED and task.result() == 42 and task.fraction == 1.0 and task.rate > 0
    assert waiting.result() == "b done"
    assert runner.submit("a", slow).result() == 42 and calls == ["slow"] and runner.runs == 2  # kept, not rerun

    def broken(progress):
        raise DataError("data.csv, line 3: not a number; fix the line")
    failed = runner.submit("c", broken)
    assert failed.wait(10) and failed.status == FAILED
    with pytest.raises(DataError, match="line 3"):
        failed.result()  # re-raised where the page asks for it
    assert runner.submit("c", lambda progress: "fixed").wait(10)  # a failed key is tried again when asked again
    assert runner.task("c").result() == "fixed"
    runner.submit("d", lambda progress: "d").wait(10)
    assert runner.task("b") is None and runner.task("a") is not None  # keep=2: the least recently asked made room


def test_a_prepared_sample_is_the_same_permutation_prefix_read_from_its_row_groups(tmp_path):
    from autoint.datasets import builtin_spec
    from autoint.datasets.synth import generate_criteo
    from autoint.datasets.prepared import prepare
    from autoint.explain.sampling import permutation_prefix, prepared_sample
    folder = generate_criteo(tmp_path / "criteo", rows=3000, seed=2)
    prepared = prepare(builtin_spec("criteo"), folder, row_group_rows=64, progress=False)
    x, y = prepared.read_split("test")
    total = len(y)
    data, sample = prepared_sample(prepared, "test", 50, seed=4)
    assert sample.describe() == f"50 of {total:,} test samples, seed 4" and sample.total == total
    order = torch.from_numpy(permutation_prefix(total, 50, 4))  # the rows, in permutation order
    sx, sy = data.split("test")
    np.testing.assert_array_equal(sy.numpy(), y[order].numpy())
    np.testing.assert_array_equal(sx.categorical.numpy(), x.categorical[order].numpy())
    np.testing.assert_array_equal(sx.numeric.numpy(), x.numeric[order].numpy())
    bigger, _ = prepared_sample(prepared, "test", 80, seed=4)
    np.testing.assert_array_equal(bigger.split("test")[1][:50].numpy(), sy.numpy())  # nested: a prefix
    np.testing.assert_array_equal(data.split("test")[0].categorical[sample.prefix(10).positions].numpy(),
                                  x.categorical[order[:10]].numpy())
