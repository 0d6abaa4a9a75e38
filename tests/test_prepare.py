"""`prepare`: a data set preprocessed once, streaming, into encoded Parquet row groups (autoint/datasets/prepared.py)."""
import json
import os

import numpy as np
import polars as pl
import pytest
import torch

from autoint.data.dataset import DataError
from autoint.datasets import builtin_spec, synth
from autoint.datasets.generic import build_schema, read_frame, sample_frame
from autoint.datasets.prepared import (FORMAT, MANIFEST, ROW_GROUP_ROWS, SPLITS, VOCABULARIES, Prepared, RowGroup,
                              default_dir, is_prepared, prepare, split_codes)

ROWS, GROUP, BATCH = 3000, 512, 200_000  # several batches (of bytes: ~750 lines) and row groups


@pytest.fixture(scope="module")
def criteo_dir(tmp_path_factory):
    return synth.generate_criteo(tmp_path_factory.mktemp("prep") / "criteo", rows=ROWS, seed=0)


@pytest.fixture(scope="module")
def spec():
    return builtin_spec("criteo")


@pytest.fixture(scope="module")
def prepared(criteo_dir, spec):
    return prepare(spec, criteo_dir, row_group_rows=GROUP, progress=False, batch_bytes=BATCH)


def _raw_labels(criteo_dir) -> dict[int, float]:
    lines = (criteo_dir / "train.txt").read_text().splitlines()
    return {n: float(text.split("\t")[0]) for n, text in enumerate(lines, start=1)}


def test_split_is_deterministic_with_the_shares_of_the_folds():
    rows = np.arange(200_000)
    codes = split_codes(rows, seed=2018, folds=10)
    assert np.array_equal(codes, split_codes(rows, seed=2018, folds=10))
    assert not np.array_equal(codes, split_codes(rows, seed=7, folds=10))
    shares = np.bincount(codes, minlength=3) / len(rows)
    assert abs(shares[0] - 0.8) < 0.005 and abs(shares[1] - 0.1) < 0.005 and abs(shares[2] - 0.1) < 0.005
    # A row's split depends on its number alone, not on the batch it came in.
    assert np.array_equal(np.concatenate([split_codes(rows[:777], 2018), split_codes(rows[777:], 2018)]), codes)
    five = np.bincount(split_codes(rows, seed=1, folds=5), minlength=3) / len(rows)
    assert abs(five[2] - 0.2) < 0.005 and abs(five[1] - 0.2) < 0.005


def test_prepare_writes_row_groups_labels_lines_and_the_in_memory_schema(prepared, criteo_dir, spec):
    m = prepared.manifest
    assert m["format"] == FORMAT and m["dataset"] == "criteo" and m["row_group_rows"] == GROUP
    assert prepared.path == default_dir(spec, criteo_dir)
    assert sum(prepared.rows(s) for s in SPLITS) == m["rows"] == ROWS
    raw = _raw_labels(criteo_dir)
    seen_lines = []
    for s in SPLITS:
        groups = prepared.row_groups(s)
        assert [g.rows for g in groups[:-1]] == [GROUP] * (len(groups) - 1) and 0 < groups[-1].rows <= GROUP
        assert sum(g.rows for g in groups) == prepared.rows(s)
        assert [g.first_row for g in groups] == list(np.cumsum([0] + [g.rows for g in groups[:-1]]))
        inputs, labels = prepared.read_split(s)
        assert labels.dtype == torch.float32 and inputs.categorical.dtype == torch.int64
        assert inputs.categorical.shape == (prepared.rows(s), 26) and inputs.numeric.shape == (prepared.rows(s), 13)
        assert int(labels.sum()) == prepared.positives(s)
        lines = pl.read_parquet(prepared.path / s)["line"].to_numpy()
        assert labels.tolist() == [raw[int(n)] for n in lines]
        seen_lines += lines.tolist()
        one, y = prepared.read(groups[0])
        assert torch.equal(one.categorical, inputs.categorical[:groups[0].rows]) and torch.equal(y, labels[:len(y)])
    assert sorted(seen_lines) == list(range(1, ROWS + 1))  # every line once, in one split
    # The splits are what the hash of the row number says.
    codes = split_codes(np.arange(ROWS), spec.seed, spec.folds)
    for k, s in enumerate(SPLITS):
        assert prepared.rows(s) == int((codes == k).sum())
    # The schema is the in-memory reader's for the same training rows.
    frame, files = read_frame(spec, criteo_dir)
    frame = sample_frame(spec, frame, files)
    assert prepared.schema == build_schema(spec, frame, np.flatnonzero(codes == 0))
    assert any(len(f.vocab) > 1 for f in prepared.schema.of_kind("categorical"))
    # The encoded values are the in-memory encoder's for the same lines.
    from autoint.data.encoding import encode_frame
    from autoint.data.schema import UNKNOWN
    test_lines = pl.read_parquet(prepared.path / "test")["line"].to_numpy()
    rows = frame.filter(pl.col("source_line").is_in(test_lines.tolist()))
    fill = [pl.col(f.name).fill_null(UNKNOWN) for f in prepared.schema.of_kind("categorical")]
    expected = encode_frame(prepared.schema, rows.with_columns(fill))
    got, _ = prepared.read_split("test")
    assert torch.equal(got.categorical, expected.categorical) and torch.allclose(got.numeric, expected.numeric)
    assert m["vocabularies"]["file"] == VOCABULARIES and len(m["vocabularies"]["sha256"]) == 64


def test_a_changed_vocabularies_file_is_refused_on_open(prepared, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(prepared.path, copy)
    vocab = json.loads((copy / VOCABULARIES).read_text())
    vocab[20]["vocab"].append("deadbeef")
    (copy / VOCABULARIES).write_text(json.dumps(vocab))
    with pytest.raises(DataError, match=rf"{VOCABULARIES}: its sha256 does not match .*changed after"):
        Prepared.open(copy)
    with pytest.raises(DataError, match=f"not a prepared data set \\(no {MANIFEST}\\)"):
        Prepared.open(tmp_path / "nowhere")


def test_to_dataset_trains_and_sample_is_seeded_and_decoded(prepared):
    from autoint.model.autoint import AutoIntConfig
    from autoint.training.train import TrainConfig, train
    dataset = prepared.to_dataset()
    assert {s: len(v) for s, v in dataset.splits.items()} == {s: prepared.rows(s) for s in SPLITS}
    assert dataset.frame.columns == ["label", "line"] and dataset.fingerprint == prepared.fingerprint
    assert dataset.source["prepared"] == str(prepared.path)
    x, y = dataset.split("val")
    assert torch.equal(y, prepared.read_split("val")[1])
    result = train(dataset, AutoIntConfig(embed_dim=8, attn_dim=8, heads=1, layers=1),
                   TrainConfig(epochs=1, batch_size=512, seed=0), progress=False)
    assert 0.0 <= result.metrics["test_auc"] <= 1.0 and result.metrics["samples"] == {
        s: prepared.rows(s) for s in SPLITS}
    a, b, c = prepared.sample("train", 100, seed=1), prepared.sample("train", 100, seed=1), \
        prepared.sample("train", 100, seed=2)
    assert a.frame.equals(b.frame) and not a.frame["line"].equals(c.frame["line"])
    assert a.frame.height == 100 and a.frame["C1"].dtype == pl.String and a.frame["I1"].dtype == pl.Float64
    decoded = prepared.to_dataset(decode=True).frame
    by_line = decoded.filter(pl.col("line").is_in(a.frame["line"].to_list())).sort("line")
    assert by_line.equals(a.frame.sort("line"))
    assert prepared.sample("val", 10**9).frame.height == prepared.rows("val")


def test_a_malformed_line_names_the_file_and_line_and_leaves_nothing(criteo_dir, spec, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    lines = (criteo_dir / "train.txt").read_text().splitlines(keepends=True)
    lines[1499] = lines[1499].split("\t", 1)[1]  # line 1500 (in the second batch) loses its label column
    (folder / "train.txt").write_text("".join(lines))
    with pytest.raises(DataError, match=rf"{folder / 'train.txt'}, line 1500: expected 40 tab-separated columns, "
                                        rf"got 39.*cut off"):
        prepare(spec, folder, progress=False, batch_bytes=BATCH)
    assert not (folder / "prepared").exists() or list((folder / "prepared").iterdir()) == []
    lines[1499] = "\n"
    (folder / "train.txt").write_text("".join(lines))
    with pytest.raises(DataError, match=r"line 1500: the line is blank"):
        prepare(spec, folder, progress=False, batch_bytes=BATCH)
    lines[1499] = "1\tx\t" + lines[1500].split("\t", 2)[2]  # I1 not a number: sample_frame, global line
    (folder / "train.txt").write_text("".join(lines))
    with pytest.raises(DataError, match=r"train.txt, line 1500: I1 is .x., not a finite number"):
        prepare(spec, folder, progress=False, batch_bytes=BATCH)
    assert [p.name for p in folder.rglob("*") if p.name != "train.txt"] in ([], ["prepared"])


def test_prepare_reuses_an_up_to_date_folder_and_rebuilds_a_changed_one(criteo_dir, spec, tmp_path, capsys):
    import shutil
    folder = tmp_path / "reuse"
    shutil.copytree(criteo_dir, folder)
    out = tmp_path / "out"
    first = prepare(spec, folder, out, row_group_rows=GROUP, progress=False)
    stamp = (out / MANIFEST).stat().st_mtime_ns
    assert is_prepared(out, spec, folder)
    capsys.readouterr()
    again = prepare(spec, folder, out, row_group_rows=GROUP, progress=False)
    assert "reusing" in capsys.readouterr().err and (out / MANIFEST).stat().st_mtime_ns == stamp
    assert again.fingerprint == first.fingerprint
    source = folder / "train.txt"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))  # touched
    assert not is_prepared(out, spec, folder)
    rebuilt = prepare(spec, folder, out, row_group_rows=GROUP, progress=False)
    err = capsys.readouterr().err
    assert f"rebuilding {out}: {source} changed (its modification time)" in err
    assert (out / MANIFEST).stat().st_mtime_ns != stamp and rebuilt.fingerprint != first.fingerprint
    with source.open("a") as fh:  # one line more
        fh.write(source.read_text().splitlines(keepends=True)[0])
    prepare(spec, folder, out, row_group_rows=GROUP, progress=False)
    assert "changed (its size, modification time, first or last MiB)" in capsys.readouterr().err
    assert Prepared.open(out).manifest["rows"] == ROWS + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "reuse"]  # no staging or old folder left


@pytest.mark.parametrize("name", ["avazu", "kdd12"])
def test_gzip_derived_fields_label_rule_and_join_give_the_in_memory_schema(name, tmp_path):
    """Avazu: a gzip file with a header, hour-of-day and weekday fields; KDD12: a label rule and a joined file."""
    make = {"avazu": lambda d: synth.generate_avazu(d, rows=2000, seed=0, file="train.gz"),
            "kdd12": lambda d: synth.generate_kdd12(d, rows=2000, seed=0)}[name]
    folder = make(tmp_path / name)
    spec = builtin_spec(name)
    prepared = prepare(spec, folder, row_group_rows=300, progress=False, batch_bytes=50_000)
    frame, files = read_frame(spec, folder)
    frame = sample_frame(spec, frame, files)
    codes = split_codes(np.arange(frame.height), spec.seed, spec.folds)
    assert prepared.schema == build_schema(spec, frame, np.flatnonzero(codes == 0))
    labels = torch.cat([prepared.read_split(s)[1] for s in SPLITS])
    lines = np.concatenate([pl.read_parquet(prepared.path / s)["line"].to_numpy() for s in SPLITS])
    by_line = dict(zip(frame["source_line"].to_list(), frame["label"].to_list()))
    assert labels.tolist() == [float(by_line[int(n)]) for n in lines]
    assert sorted(p.name for p in prepared.path.iterdir()) == sorted([MANIFEST, VOCABULARIES, *SPLITS])


def test_the_prepare_command(criteo_dir, tmp_path, capsys, monkeypatch):
    from autoint import cli
    from autoint.datasets import prepared as prepared_module
    out = tmp_path / "cli"
    tuned = []
    monkeypatch.setattr(prepared_module, "keep_freed_memory", lambda: tuned.append(True))
    assert cli.main(["prepare", "--dataset", "criteo", "--data-dir", str(criteo_dir), "--out", str(out),
                     "--row-group-rows", "1000"]) == 0
    assert tuned == []  # called from code, main() leaves the process's gc and malloc alone
    main = cli.main
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == ROWS and summary["prepared"] == str(out) and summary["row_group_rows"] == 1000
    assert sum(v["rows"] for v in summary["splits"].values()) == ROWS
    assert Prepared.open(out).fingerprint == summary["fingerprint"]
    assert main(["prepare", "--dataset", "criteo", "--data-dir", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["prepare", "--dataset", "criteo", "--data-dir", str(criteo_dir), "--row-group-rows", "0"]) == 2
    assert "row_group_rows 0" in capsys.readouterr().err


def test_the_command_line_process_tunes_memory_for_prepare(criteo_dir, tmp_path, monkeypatch, capsys):
    """`python -m autoint prepare` (the whole process: main() with argv None) tunes gc and malloc for one long
    prepare (`keep_freed_memory`); the behaviour, not the collector's object counts, is what is checked."""
    import sys
    from autoint import cli
    from autoint.datasets import prepared as prepared_module
    tuned = []
    monkeypatch.setattr(prepared_module, "keep_freed_memory", lambda: tuned.append(True))
    monkeypatch.setattr(sys, "argv", ["autoint", "prepare", "--dataset", "criteo", "--data-dir", str(criteo_dir),
                                      "--out", str(tmp_path / "whole"), "--row-group-rows", "1000"])
    assert cli.main() == 0
    assert tuned == [True]
    capsys.readouterr()


def test_values_the_fast_path_cannot_take_get_the_text_paths_errors(criteo_dir, spec, tmp_path):
    """The typed parse refuses nothing itself: a batch with nan, a label of 2 or an extra column is read again
    by the text path, whose errors name the file, line and fix."""
    folder = tmp_path / "odd"
    folder.mkdir()
    lines = (criteo_dir / "train.txt").read_text().splitlines(keepends=True)
    rest = lines[1500].split("\t", 2)
    for text, message in [("0\tnan\t" + rest[2], r"line 1501: I1 is 'nan', not a finite number"),
                          ("2\t" + rest[1] + "\t" + rest[2], r"line 1501: the label column label is '2', not 0 or 1"),
                          (lines[1500].rstrip("\n") + "\textra\n", r"line 1501: expected 40 tab-separated columns, "
                                                                   r"got 41")]:
        changed = list(lines)
        changed[1500] = text
        (folder / "train.txt").write_text("".join(changed))
        with pytest.raises(DataError, match=message):
            prepare(spec, folder, progress=False, batch_bytes=BATCH)
        assert [p.name for p in folder.rglob("*") if p.name != "train.txt"] in ([], ["prepared"])


def test_multivalued_join_and_derived_fields_encode_as_in_memory(tmp_path):
    """A CSV with a header, a multi-valued field, a derived weekday and a join (the text path): the schema and
    every encoded value are the in-memory reader's."""
    import importlib.util
    from autoint.datasets.spec import read_spec
    from autoint.data.encoding import encode_frame
    from autoint.data.schema import UNKNOWN
    path = os.path.join(os.path.dirname(__file__), "test_datasets.py")
    module = importlib.util.spec_from_file_location("_datasets_specs", path)
    specs = importlib.util.module_from_spec(module)
    module.loader.exec_module(specs)
    folder = synth.generate_clicks(tmp_path / "shop", rows=3000, seed=0)
    (folder / "shop.toml").write_text(specs.USER_SPEC)
    spec = read_spec(folder / "shop.toml")
    prepared = prepare(spec, folder, row_group_rows=700, progress=False, batch_bytes=40_000)
    frame, files = read_frame(spec, folder)
    frame = sample_frame(spec, frame, files)
    codes = split_codes(np.arange(frame.height), spec.seed, 10)
    assert prepared.schema == build_schema(spec, frame, np.flatnonzero(codes == 0))
    assert prepared.schema.of_kind("multivalued")
    lines = np.concatenate([pl.read_parquet(prepared.path / s)["line"].to_numpy() for s in SPLITS])
    rows = frame.join(pl.DataFrame({"source_line": lines}), on="source_line", how="right")
    fill = [pl.col(f.name).fill_null(UNKNOWN) for f in prepared.schema.of_kind("categorical")]
    expected = encode_frame(prepared.schema, rows.with_columns(fill))
    got = [prepared.read_split(s)[0] for s in SPLITS]
    for k in range(3):
        assert torch.equal(torch.cat([g[k] for g in got]), expected[k])
    # picking samples by a multi-valued field's value on the copy (its column alone) agrees with memory
    from autoint.data.samples import matching, value_counts
    memory = prepared.to_dataset()
    name = prepared.schema.of_kind("multivalued")[0].name
    top = value_counts(prepared, "test", name, limit=3)
    assert top == value_counts(memory, "test", name, limit=3) and top
    np.testing.assert_array_equal(matching(prepared, "test", {name: top[0][0]}),
                                  matching(memory, "test", {name: top[0][0]}))


@pytest.mark.parametrize("bits", [2, 12])
def test_a_count_min_sketch_full_of_collisions_loses_no_value(criteo_dir, spec, tmp_path, monkeypatch, bits):
    """With 4 counters a row every value collides with frequent ones (all are candidates, counted exactly);
    with 4096 some do: both give the in-memory schema and encoding (min_count 10 here)."""
    import autoint.datasets.prepared as prepared_module
    from autoint.data.encoding import encode_frame
    from autoint.data.schema import UNKNOWN
    monkeypatch.setattr(prepared_module, "SKETCH_BITS", bits)
    assert all(f.min_count > 1 for f in spec.fields if f.kind != "numeric")
    out = prepare(spec, criteo_dir, tmp_path / "p", row_group_rows=GROUP, progress=False, batch_bytes=BATCH)
    frame, files = read_frame(spec, criteo_dir)
    frame = sample_frame(spec, frame, files)
    codes = split_codes(np.arange(frame.height), spec.seed, spec.folds)
    assert out.schema == build_schema(spec, frame, np.flatnonzero(codes == 0))
    lines = np.concatenate([pl.read_parquet(out.path / s)["line"].to_numpy() for s in SPLITS])
    rows = frame.join(pl.DataFrame({"source_line": lines}), on="source_line", how="right")
    fill = [pl.col(f.name).fill_null(UNKNOWN) for f in out.schema.of_kind("categorical")]
    expected = encode_frame(out.schema, rows.with_columns(fill))
    got = [out.read_split(s)[0] for s in SPLITS]
    assert torch.equal(torch.cat([g.categorical for g in got]), expected.categorical)


@pytest.mark.parametrize("batch_bytes", [1, 7, 64, 5000])
def test_csv_chunks_are_whole_lines_with_quoted_line_breaks_kept_together(tmp_path, batch_bytes):
    """`_next_chunk` reads the file once, in chunks of whole lines (at most batch_bytes unless one line is
    longer), a quoted field's line break never cut, the last line without a line break kept."""
    import random
    from autoint.datasets.prepared import _next_chunk
    rng = random.Random(batch_bytes)
    for trial in range(40):
        lines = [b'a,"x\ny",' + b"z" * rng.randint(0, 50) if rng.random() < 0.1 else
                 b"" if rng.random() < 0.05 else b"q" * rng.randint(0, 80) + b",1" for _ in range(rng.randint(0, 60))]
        data = b"\n".join(lines) + (b"\n" if trial % 2 else b"")
        path = tmp_path / f"{trial}.csv"
        path.write_bytes(data)
        chunks = []
        with path.open("rb") as fh:
            while chunk := _next_chunk(fh, batch_bytes):
                chunks.append(chunk)
        assert b"".join(chunks) == data
        longest = max((len(x) + 1 for x in data.split(b"\n")), default=0)
        for chunk in chunks[:-1]:
            assert chunk.endswith(b"\n") and chunk.count(b'"') % 2 == 0
            assert b'"' in chunk or len(chunk) <= max(batch_bytes, longest)
        if b'"' not in data and batch_bytes >= longest:
            assert all(len(c) <= batch_bytes for c in chunks)


def test_prepare_imports_no_torch():
    """torch is imported only where tensors are made: `prepare`'s modules load without it (about 1 s)."""
    import subprocess
    import sys
    code = ("import sys, autoint.datasets.prepared, autoint.datasets.generic, autoint.data.encoding, autoint.data.dataset; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])})
    assert out.stdout.strip() == "False"
    # nor does the CLI's parser (it shows TrainConfig's defaults: autoint.training.config), so `python -m autoint
    # prepare` starts without torch
    code = ("import sys; from autoint.cli import build_parser; import autoint.training.config as t; "
            "build_parser().parse_args(['prepare', '--dataset', 'criteo']); t.defaults(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])})
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("transform, edges", [("log2", None), ("minmax", None), ("bucket", [0.0, 3.0, 10.0])])
def test_numeric_range_from_the_pieces_ends_equals_transforming_every_value(transform, edges):
    """numeric_range transforms only each monotone piece's ends: the same (min, max) as transforming all values,
    across the log2 transform's fold at 2 (2 -> 2 but 3 -> 1) and for negative, zero and huge values."""
    from autoint.datasets.generic import numeric_range
    from autoint.datasets.spec import FieldSpec
    from autoint.data.schema import Field
    rng = np.random.default_rng(7)
    edges = tuple(edges or ())
    f = FieldSpec(name="I1", kind="numeric", columns=("I1",), transform=transform, edges=edges)
    cases = [np.array([2.0, 3.0]), np.array([3.0, 4.0]), np.array([-2.0, 1.0, 2.0]), np.array([5.0]),
             np.array([0.0, 1e12, -7.0, 2.5]), np.floor(np.exp(rng.uniform(-1, 12, 5000))) - 3]
    for values in cases:
        every = Field("I1", "numeric", transform=transform, edges=edges).transformed(values)
        assert numeric_range(f, values) == (float(every.min()), float(every.max())), values[:6]
    assert numeric_range(f, np.array([], dtype=np.float64)) is None


def test_a_killed_prepares_leftovers_are_tidied_by_the_next_and_a_live_ones_kept(criteo_dir, spec, tmp_path):
    """Staging folders are hidden siblings (.NAME.tmp-*); the next prepare removes one untouched for
    STALE_STAGING_S (by its newest file), keeps a younger one (a prepare still running), and puts back a copy a
    kill left aside between swap_into_place's two renames (.NAME.old-*)."""
    import time
    from autoint.datasets.prepared import STALE_STAGING_S
    out = tmp_path / "prepared" / "criteo"
    out.parent.mkdir()
    dead, live = out.parent / ".criteo.tmp-dead0001", out.parent / ".criteo.tmp-live0001"
    for folder in (dead, live):
        folder.mkdir()
        (folder / ".stage-000000.arrow").write_bytes(b"x")
    old = time.time() - STALE_STAGING_S - 60
    for p in (dead, dead / ".stage-000000.arrow"):
        os.utime(p, (old, old))
    os.utime(live, (old, old))  # the folder is old, but a file in it was written just now: still running
    aside = out.parent / ".criteo.old-aside001"
    aside.mkdir()
    (aside / MANIFEST).write_text("{}")
    prepare(spec, criteo_dir, out, row_group_rows=GROUP, progress=False, batch_bytes=BATCH)
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == [".criteo.tmp-live0001", "criteo"], names  # the aside copy came back, then was replaced
    assert is_prepared(out, spec, criteo_dir)


def test_hash_table_lookups_equal_a_dict_with_collisions_zero_and_absent_keys():
    """_HashTable.lookup gives position + 1 of each key (0: absent; 0 itself, a missing value, gives 0), also when
    many keys share their first slot (keys that differ only in the low bits) and the probes wrap around."""
    from autoint.datasets.prepared import _HashTable
    rng = np.random.default_rng(3)
    crowded = (np.arange(1, 40, dtype=np.uint64) | (np.uint64(0xFF) << np.uint64(56)))  # one first slot
    for keys in (rng.integers(1, 2**63, 1000, dtype=np.uint64), crowded, np.array([], dtype=np.uint64)):
        table = _HashTable(keys)
        position = {int(k): i + 1 for i, k in enumerate(keys)}
        queries = np.concatenate([keys, rng.integers(1, 2**63, 500, dtype=np.uint64), np.zeros(3, np.uint64),
                                  crowded + np.uint64(1000)])
        got = table.lookup(queries)
        assert got.dtype == np.int32
        assert got.tolist() == [position.get(int(q), 0) for q in queries]


def test_keep_freed_memory_tunes_the_process_it_runs_in():
    """What `python -m autoint prepare` calls first (its own process only): the objects alive are frozen out of
    the collector's generations, and glibc's malloc (where there is one) keeps freed blocks; nothing raises."""
    import subprocess
    import sys
    code = ("import gc; from autoint.datasets.prepared import keep_freed_memory; before = gc.get_freeze_count(); "
            "keep_freed_memory(); print(before == 0 and gc.get_freeze_count() > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])})
    assert out.stdout.strip() == "True"
