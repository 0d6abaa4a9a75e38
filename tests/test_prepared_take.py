"""`Prepared.take` and `Prepared.read_rows`: given rows of a prepared split, read from the row groups holding them
(what Explore reads for one sample, and `Prepared.sample` and `sampling.prepared_sample` read for theirs)."""
import numpy as np
import polars as pl
import pytest
import torch

from autoint.datasets import builtin_spec, synth
from autoint.errors import UsageError
from autoint.datasets.prepared import prepare
from autoint.data.schema import UNKNOWN


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = synth.generate_criteo(tmp_path_factory.mktemp("take") / "criteo", rows=3000, seed=0)
    return prepare(builtin_spec("criteo"), folder, row_group_rows=256, progress=False)


def test_take_reads_given_rows_in_the_order_asked_decoded_as_the_raw_line(prepared):
    test_rows = prepared.rows("test")
    positions = [test_rows - 1, 0, 257, 3, 257]  # any order, repeats, across row groups
    data = prepared.take("test", positions)
    x, y = prepared.read_split("test")
    index = torch.tensor(positions)
    assert torch.equal(data.inputs.categorical, x.categorical[index]) and torch.equal(data.labels, y[index])
    assert torch.equal(data.inputs.numeric, x.numeric[index])
    got_x, got_y = prepared.read_rows("test", positions)
    assert torch.equal(got_x.categorical, x.categorical[index]) and torch.equal(got_y, y[index])
    assert data.splits == {"test": pytest.approx(np.arange(5))} and data.fingerprint == prepared.fingerprint
    # decoded: each value is the raw file's, on the line the copy records (a value too rare for a slot: <unknown>)
    lines = (prepared.path.parent.parent / "train.txt").read_text().splitlines()
    columns = builtin_spec("criteo").columns
    for record in data.frame.iter_rows(named=True):
        raw = lines[record["line"] - 1].split("\t")
        assert record["label"] == int(raw[0])
        for f in prepared.schema.fields:
            text = raw[columns.index(f.name)]
            if f.kind == "numeric":
                if text:
                    assert record[f.name] == float(text)
            else:
                assert record[f.name] == (text if text in f._lookup else UNKNOWN)


def test_a_row_outside_the_split_is_refused_with_the_rows_it_has(prepared):
    rows = prepared.rows("val")
    with pytest.raises(UsageError, match=rf"row {rows}: the val split of .* has {rows:,} rows; choose a row from 0 "
                                         rf"to {rows - 1:,}"):
        prepared.take("val", [0, rows])
    with pytest.raises(UsageError, match="row -1"):
        prepared.read_rows("val", [-1])
    empty = prepared.take("val", [])
    assert empty.frame.height == 0 and len(empty.labels) == 0
    # an empty split says so, not "choose a row from 0 to -1"
    from autoint.datasets.prepared import Prepared
    splits = {**prepared.manifest["splits"], "val": {"rows": 0, "positives": 0, "files": []}}
    no_val = Prepared(prepared.path, {**prepared.manifest, "splits": splits}, prepared.schema)
    with pytest.raises(UsageError, match=r"row 0: the val split of .* has 0 rows; it is empty: prepare the data set "
                                         r"from more rows, or use another split"):
        no_val.take("val", [0])


def test_sample_is_take_of_a_seeded_choice_and_prepared_sample_reads_the_same_rows(prepared):
    from autoint.explain.sampling import permutation_prefix, prepared_sample
    sample = prepared.sample("train", 50, seed=4)
    picked = np.sort(np.random.default_rng(4).choice(prepared.rows("train"), size=50, replace=False))
    assert sample.frame.equals(prepared.take("train", picked).frame)
    assert sample.source["sample"] == {"split": "train", "rows": 50, "of": prepared.rows("train"), "seed": 4}
    data, order = prepared_sample(prepared, "test", 40, seed=1)
    x, y = prepared.read_split("test")
    rows = torch.from_numpy(permutation_prefix(prepared.rows("test"), 40, 1))
    test_x, test_y = data.split("test")
    assert torch.equal(test_x.categorical, x.categorical[rows]) and torch.equal(test_y, y[rows])
    assert isinstance(data.frame, pl.DataFrame) and len(order) == 40


def test_spread_positions_read_a_few_row_groups_spread_over_the_split(prepared):
    from autoint.explain.sampling import spread_positions
    groups = prepared.row_groups("train")
    assert len(groups) > 8
    positions = spread_positions(prepared, "train", rows=400, groups=4, seed=0)
    assert len(positions) == 400 and len(set(positions.tolist())) == 400
    touched = {next(i for i, g in enumerate(groups) if g.first_row <= p < g.first_row + g.rows) for p in positions}
    assert touched == {0, len(groups) - 1} | set(np.linspace(0, len(groups) - 1, 4).round().astype(int).tolist())
    assert np.array_equal(positions, spread_positions(prepared, "train", rows=400, groups=4, seed=0))
    assert len(spread_positions(prepared, "train", rows=10**9, groups=2)) == groups[0].rows + groups[-1].rows
    uneven = spread_positions(prepared, "train", rows=10, groups=3, seed=0)  # never more than asked for
    assert len(uneven) == 10 and len(set(uneven.tolist())) == 10


def test_picking_by_field_values_on_a_copy_reads_only_columns_and_agrees_with_memory(prepared, monkeypatch):
    """samples.value_counts and samples.matching on the copy (Explore's filters over a prepared copy) give what they
    give on the same data in memory, reading each filtered field's column, never a row group's rows."""
    from autoint.data.samples import SampleError, matching, value_counts
    memory = prepared.to_dataset()
    whole = type(prepared)._table
    monkeypatch.setattr(type(prepared), "_table", lambda self, group, columns=None: whole(self, group, columns)
                        if columns else pytest.fail("read a whole row group"))
    top = value_counts(prepared, "test", "C3", limit=5)
    assert top == value_counts(memory, "test", "C3", limit=5) and len(top) == 5
    assert [n for _, n in top] == sorted((n for _, n in top), reverse=True)
    value = next(v for v, _ in top if v != UNKNOWN)
    one = matching(prepared, "test", {"C3": value})
    np.testing.assert_array_equal(one, matching(memory, "test", {"C3": value}))
    assert len(one) == dict(top)[value] and np.all(np.diff(one) > 0)
    second = value_counts(prepared, "test", "C1", one)
    assert second == value_counts(memory, "test", "C1", one) and sum(n for _, n in second) == len(one)
    both = matching(prepared, "test", {"C3": value, "C1": second[0][0]})
    np.testing.assert_array_equal(both, matching(memory, "test", {"C3": value, "C1": second[0][0]}))
    assert len(both) == second[0][1]
    assert value_counts(prepared, "test", "C3", search=value[2:6]) == value_counts(memory, "test", "C3",
                                                                                   search=value[2:6])
    np.testing.assert_array_equal(matching(prepared, "test"), np.arange(prepared.rows("test")))
    with pytest.raises(SampleError, match="is not a value the model knows"):
        matching(prepared, "test", {"C3": "not-a-value"})
    with pytest.raises(SampleError, match="I1 is numeric"):
        value_counts(prepared, "test", "I1")
    monkeypatch.undo()
    picked = prepared.take("test", both).frame
    assert set(picked["C3"].to_list()) == {value} and set(picked["C1"].to_list()) == {second[0][0]}
