"""A data set prepared once: encoded Parquet row groups read back without parsing text (issue 15, part 1).

    prepared = prepare(read_spec("my.toml"), "data/my")          # or: python -m autoint prepare --spec my.toml
    inputs, labels = prepared.read(prepared.row_groups("train")[0])
    dataset = prepared.to_dataset()                              # the in-memory path, as load_dataset gives

The directory (default `DATA_DIR/prepared/NAME`):

    prepared.json       the manifest: format, data set, spec settings hash, source files with fingerprints,
                        row_group_rows, per split its rows, positives and files (rows and row groups of each),
                        the vocabularies file and its sha256, the split rule in words, timings
    vocabularies.json   the schema (`Schema.to_json()`: vocabularies, numeric ranges); its sha256 is in the manifest
    train/part-00000.parquet, val/..., test/...
                        columns `label` (float32), `line` (int64: the source line; Parquet sources: the row from 1),
                        then per field in schema order: categorical -> int32 slot; multivalued -> fixed-size list
                        of int32 slots (-1 padding, as `FieldTensors`); numeric -> float32 scaled as the model
                        takes it, plus `raw:NAME` (float64: the raw value, missing filled, for display; float64 so
                        Unix times stay exact). Row groups hold exactly `row_group_rows` rows; the last one of a
                        split may be shorter. A part file holds at most GROUPS_PER_FILE row groups.

`prepare` reads the raw files in batches: a CSV file as blocks of at most `batch_bytes` cut at line ends
(`_next_chunk`: one copy from the file each; read and parsed in a worker thread, one batch ahead); a Parquet file
by pyarrow's iterator, `batch_rows` rows at a time. The raw file is never whole in memory. A CSV batch without
quotes first takes a fast path: one polars parse with the columns only numeric fields (and the label) read typed
as Float64, exact when the batch's separator count is lines * (columns - 1) and polars, which refuses a line with
too many columns, parses it; values the text path would refuse (nan, inf, a label not 0/1) send the batch to the
text path too. The text path checks each line's column count with numpy and parses the batch as text, so its
errors name the file, line and fix.
Each batch goes through the same `generic.sample_frame` as the in-memory reader. Pass 1 parses each batch once:
categorical and multi-valued values become 64-bit hashes (`_Hashes`: polars' hash, a fixed seed), the training
rows' hashes are counted per batch and go into a fixed-size count-min sketch (SKETCH_ROWS x 2^SKETCH_BITS
uint64 counters, 128 MiB, shared by all fields); the text of a value is kept only once its estimate reaches its
field's min_count (the sketch never underestimates, so no value that reaches min_count is missed); the numeric
ranges and longest lists are kept, and the hashed batch and its per-batch counts are staged as Arrow IPC in the
staging folder. After pass 1 the candidates are counted exactly from the staged per-batch counts, so memory
follows the candidates (about the vocabulary), not the long tail of rare values; a field with min_count 1
keeps every training value, and memory grows with its vocabulary. A 64-bit collision (two values of a field
with one hash) is negligible: about n^2 / 2^65 for n distinct values. The schema comes from
`generic.schema_from`, the function `generic.build_schema` ends in, so both give the same schema for the same
training rows. Pass 2 reads the staged batches back (no text, no checks), maps hashes to vocabulary slots by a
hash-table lookup per field (what `encoding.encode_frame` gives; tests compare them), writes the row groups
(lz4, in a writer thread) and deletes each staged file.

Measured (benchmarks/README.md, "prepare", attempt 7; generated Criteo-format file, 2 cores): 1M rows 6.4 s
wall, 929 MiB peak RSS; 10M rows 42.8 s wall (233,501 rows/s), 932 MiB (before the sketch: 1,574 MiB, growing
with the distinct values). The 300,000 rows/s target is not reached. torch is imported only where tensors are
made, so `prepare` itself runs without it (the CLI still imports it for `train`'s help texts).

The split is stream-friendly: row r (0-based, in file order over all files) goes to a fold
splitmix64(r + splitmix64(seed)) % folds (`split = "random"`: % 10); fold 0 is the test split, fold 1
validation, the rest training. The shares are those of the in-memory reader (80/10/10 with 10 folds) but the
rows are not: that reader permutes all rows (and stratifies the folds by label), which streaming cannot.

Everything is written into `.DIR.tmp-XXXX` beside the directory and renamed into place, so the directory is
complete or absent (a killed prepare's staging folder is removed by the next one once it is STALE_STAGING_S
old); gzip sources are decompressed (streaming) into that staging folder first. A directory is
reused while it is up to date: same spec settings and the same source files, by fingerprint: each file's
name, size, mtime_ns and the sha256 of its first and last MiB (not its whole content: a change in the middle
of a file that keeps its size and modification time goes unseen; touch the file to force a rebuild).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import mmap
import os
import shutil
import sys
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.dataset import DataError, Dataset
from ..data.encoding import FieldTensors
from ..errors import UsageError
from ..files import staging_dir, swap_into_place, tidy_siblings
from ..data.schema import Schema, SchemaError

if TYPE_CHECKING:  # imported where tensors are made: `prepare` runs without torch (about 1 s of start-up)
    import torch

FORMAT = "autoint-prepared/1"
MANIFEST = "prepared.json"
VOCABULARIES = "vocabularies.json"
SPLITS = ("train", "val", "test")
ROW_GROUP_ROWS = 65536  # rows of each row group (the last of a split may be shorter)
BATCH_ROWS = 131072  # rows of a Parquet source read at once
ENCODE_THREADS = 2  # threads encoding a row group's fields in pass 2
BATCH_BYTES = 32 << 20  # bytes of a CSV source read at once (Criteo: about 125,000 lines)
COMPRESSION = "lz4"  # of the part files: zstd wrote 10% smaller files 30% slower (benchmarks/README.md)
GROUPS_PER_FILE = 64  # row groups of a part file before the next part starts
WRITES_AHEAD = 2  # encoded row groups waiting for the writer thread, per split
STALE_STAGING_S = 600.0  # a staging folder untouched this long belongs to a killed prepare (a live one adds files)
EDGE_BYTES = 1 << 20  # a source's fingerprint hashes its first and last MiB
LABEL, LINE = "label", "line"
SPLIT = ":split"  # the staged batches' split code column (0 train, 1 val, 2 test)
RAW = "raw:"  # prefix of a numeric field's raw value column
MAX_MANIFEST_BYTES = 64 << 20
HASH_SEED = 0x5EED_AB1E  # polars' hash seed for categorical values (any fixed number: one run hashes alike)
SKETCH_BITS = 23  # each count-min sketch row has 2^23 counters (uint64: 64 MiB a row)
SKETCH_ROWS = 2  # rows of the sketch (a value's estimate is the least of its SKETCH_ROWS counters)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of uint64 values (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_codes(rows: np.ndarray, seed: int, folds: int = 10) -> np.ndarray:
    """Each row number's split as an index into SPLITS (0 train, 1 val, 2 test): its fold is
    splitmix64(row + splitmix64(seed)) % folds; fold 0 is test, fold 1 validation, the rest training."""
    key = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        fold = _splitmix64(np.asarray(rows, dtype=np.uint64) + key) % np.uint64(folds)
    return np.where(fold == 0, 2, np.where(fold == 1, 1, 0)).astype(np.int8)


def split_rule(spec) -> tuple[int, str]:
    folds = spec.folds if spec.split == "folds" else 10
    return folds, (f"{folds} folds by a splitmix64 hash of (seed {spec.seed}, row number): fold 0 test, fold 1 "
                   f"validation, the rest training ({100 - 200 // folds}/{100 // folds}/{100 // folds} in "
                   f"expectation). Streamed: not stratified, and not the rows the in-memory reader picks "
                   f"(it permutes all rows).")


def default_dir(spec, data_dir) -> Path:
    return Path(data_dir) / "prepared" / spec.name


# ----------------------------------------------------------------------------- fingerprints

def source_fingerprint(path: Path) -> dict:
    """name, size, mtime_ns and the sha256 of the first and last MiB: cheap for a file of any size."""
    info = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        digest.update(fh.read(EDGE_BYTES))
        if info.st_size > EDGE_BYTES:
            fh.seek(max(EDGE_BYTES, info.st_size - EDGE_BYTES))
            digest.update(fh.read(EDGE_BYTES))
    return {"name": path.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns, "edges_sha256": digest.hexdigest()}


def _settings_hash(spec) -> str:
    from .generic import spec_settings
    return hashlib.sha256(json.dumps(spec_settings(spec), sort_keys=True).encode()).hexdigest()


def source_paths(spec, data_dir) -> list[Path]:
    """The raw files a prepared copy is made from and checked against (`is_prepared`): the spec's main files and
    the join files present."""
    from .generic import resolve_files
    data_dir = Path(data_dir)
    return resolve_files(spec, data_dir) + [data_dir / j.file for j in spec.joins if (data_dir / j.file).is_file()]


def _stale(out: Path, spec, data_dir: Path) -> str | None:
    """None when `out` is up to date for the spec and its files; else why not ("missing" when absent)."""
    if not (out / MANIFEST).is_file():
        return "missing"
    try:
        manifest = _read_json(out / MANIFEST, MAX_MANIFEST_BYTES)
    except DataError as exc:
        return f"its {MANIFEST} cannot be read ({exc})"
    if manifest.get("format") != FORMAT:
        return f"it is format {manifest.get('format')!r}, this version writes {FORMAT}"
    if manifest.get("spec_settings") != _settings_hash(spec):
        return "the spec's settings changed"
    old = {s.get("name"): s for s in manifest.get("sources", []) if isinstance(s, dict)}
    paths = source_paths(spec, data_dir)
    for path in paths:
        if path.name not in old:
            return f"{path.name} is new"
        now = source_fingerprint(path)
        if now != old[path.name]:
            what = [k for k in ("size", "mtime_ns", "edges_sha256") if now[k] != old[path.name].get(k)]
            words = {"size": "size", "mtime_ns": "modification time", "edges_sha256": "first or last MiB"}
            return f"{path} changed (its {', '.join(words[k] for k in what)})"
    gone = sorted(set(old) - {p.name for p in paths})
    if gone:
        return f"{', '.join(gone)} is no longer a source"
    return None


def is_prepared(out, spec, data_dir) -> bool:
    """The manifest exists and its spec settings and source fingerprints match the files now."""
    return _stale(Path(out), spec, Path(data_dir)) is None


def _read_json(path: Path, limit: int, sha256: str | None = None):
    """The JSON in `path` (at most `limit` bytes), read once; with `sha256`, its bytes must have that digest."""
    try:
        if path.stat().st_size > limit:
            raise DataError(f"{path}: larger than {limit >> 20} MiB; refusing to read it. Prepare the data set "
                            f"again.")
        raw = path.read_bytes()
        if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
            raise DataError(f"{path}: its sha256 does not match the one in {MANIFEST}: the file was changed after "
                            f"it was prepared. Restore it, or run `python -m autoint prepare` again (it rebuilds "
                            f"{path.parent}).")
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(f"{path}: not valid JSON ({type(exc).__name__}); prepare the data set again.") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc}).") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- reading

def _complete(manifest: dict) -> bool:
    """The manifest has what reading needs: the vocabularies' checksum, a fingerprint, each split's files."""
    def files_ok(split) -> bool:
        return isinstance(split, dict) and isinstance(split.get("rows"), int) and isinstance(split.get("files"), list) \
            and all(isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("row_groups"), list)
                    for f in split["files"])
    splits, vocab = manifest.get("splits"), manifest.get("vocabularies")
    return isinstance(splits, dict) and all(files_ok(splits.get(s)) for s in SPLITS) and isinstance(vocab, dict) \
        and isinstance(vocab.get("sha256"), str) and isinstance(manifest.get("fingerprint"), str)


@dataclass(frozen=True)
class RowGroup:
    split: str
    file: Path
    index: int  # within the file
    rows: int
    first_row: int  # position of its first row within the split


class Prepared:
    """A prepared directory, checked on `open`: its format and the vocabularies' checksum."""

    def __init__(self, path: Path, manifest: dict, schema: Schema):
        self.path, self.manifest, self.schema = path, manifest, schema
        self.fingerprint: str = manifest["fingerprint"]

    @staticmethod
    def open(path) -> "Prepared":
        path = Path(path)
        fix = f"run `python -m autoint prepare` again (it rebuilds {path})"
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"{path}: not a prepared data set (no {MANIFEST}); prepare it with `python -m autoint "
                            f"prepare --spec FILE --out {path}`.")
        manifest = _read_json(manifest_path, MAX_MANIFEST_BYTES)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise DataError(f"{manifest_path}: format {found!r} is not {FORMAT}; {fix}.")
        if not _complete(manifest):
            raise DataError(f"{manifest_path}: incomplete (no vocabularies, splits or fingerprint); {fix}.")
        vocab = manifest["vocabularies"]
        vocab_path = path / VOCABULARIES
        if not vocab_path.is_file():
            raise DataError(f"{vocab_path}: missing; {fix}.")
        schema_json = _read_json(vocab_path, 1 << 30, sha256=vocab["sha256"])  # read once: checked, then parsed
        try:
            schema = Schema.from_json(schema_json)
        except (SchemaError, TypeError, ValueError) as exc:
            raise DataError(f"{vocab_path}: {exc}; {fix}.") from exc
        return Prepared(path, manifest, schema)

    def _split(self, split: str) -> dict:
        if split not in SPLITS:
            raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
        return self.manifest["splits"][split]

    def rows(self, split: str) -> int:
        return int(self._split(split)["rows"])

    def positives(self, split: str) -> int:
        return int(self._split(split)["positives"])

    def row_groups(self, split: str) -> list[RowGroup]:
        out, first = [], 0
        for entry in self._split(split)["files"]:
            for i, n in enumerate(entry["row_groups"]):
                out.append(RowGroup(split, self.path / entry["name"], i, int(n), first))
                first += int(n)
        return out

    def _table(self, group: RowGroup, columns: list[str] | None = None) -> pa.Table:
        """One row group, checked against the manifest; only `columns` when given."""
        try:
            table = pq.ParquetFile(group.file).read_row_group(group.index, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{group.file}: row group {group.index} cannot be read ({str(exc):.200}); run "
                            f"`python -m autoint prepare` again.") from exc
        if table.num_rows != group.rows:
            raise DataError(f"{group.file}: row group {group.index} has {table.num_rows} rows, {MANIFEST} says "
                            f"{group.rows}; the file was changed after it was prepared. Prepare it again.")
        return table

    def encoded_bytes(self) -> int:
        """The bytes `_tensors` gives for all splits in memory: int64 slots, float32 numbers and labels."""
        multi = self.schema.of_kind("multivalued")
        per_row = 8 * len(self.schema.of_kind("categorical")) \
            + 8 * len(multi) * max((f.max_len for f in multi), default=1) + 4 * len(self.schema.of_kind("numeric")) + 4
        return per_row * sum(self.rows(split) for split in SPLITS)

    def _tensors(self, table: pa.Table) -> tuple[FieldTensors, torch.Tensor]:
        import torch
        n = table.num_rows
        cats = [table.column(f.name).to_numpy() for f in self.schema.of_kind("categorical")]
        categorical = np.stack(cats, axis=1).astype(np.int64) if cats else np.zeros((n, 0), dtype=np.int64)
        multi = self.schema.of_kind("multivalued")
        width = max((f.max_len for f in multi), default=1)
        multivalued = np.full((n, len(multi), width), -1, dtype=np.int64)
        for j, f in enumerate(multi):
            values = table.column(f.name).combine_chunks().flatten().to_numpy()
            multivalued[:, j, :] = values.reshape(n, width)
        nums = [table.column(f.name).to_numpy() for f in self.schema.of_kind("numeric")]
        numeric = np.stack(nums, axis=1).astype(np.float32) if nums else np.zeros((n, 0), dtype=np.float32)
        labels = torch.from_numpy(table.column(LABEL).to_numpy().astype(np.float32))
        return (FieldTensors(torch.from_numpy(categorical), torch.from_numpy(multivalued),
                             torch.from_numpy(numeric)), labels)

    def read(self, group: RowGroup) -> tuple[FieldTensors, torch.Tensor]:
        """One row group's encoded inputs (int64 slots, float32 values, as the model takes them) and labels."""
        return self._tensors(self._table(group))

    def _rows_table(self, split: str, positions) -> pa.Table:
        """The rows at `positions` (0-based within the split, any order, repeats allowed) as one table in that
        order, reading only the row groups that hold one of them."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        total = self.rows(split)
        outside = positions[(positions < 0) | (positions >= total)]
        if outside.size:
            choose = f"choose a row from 0 to {total - 1:,}" if total else \
                "it is empty: prepare the data set from more rows, or use another split"
            raise UsageError(f"row {int(outside[0])}: the {split} split of {self.path} has {total:,} rows; {choose}.")
        by_position = np.argsort(positions, kind="stable")
        picked = positions[by_position]
        tables = []
        for g in self.row_groups(split):
            lo, hi = np.searchsorted(picked, [g.first_row, g.first_row + g.rows])
            if hi > lo:
                tables.append(self._table(g).take(pa.array(picked[lo:hi] - g.first_row)))
        table = pa.concat_tables(tables) if tables else self._empty_table()
        if np.any(by_position != np.arange(len(positions))):  # back from split order to the order asked for
            table = table.take(pa.array(np.argsort(by_position, kind="stable")))
        return table

    def field_slots(self, split: str, name: str) -> np.ndarray:
        """One categorical or multi-valued field's vocabulary slots over a whole split, in split order: (n,) int32,
        or (n, max_len) with -1 pads. Only that column is read (a test split of 1M rows: 4 MB a categorical field),
        never the rows: what picking a sample by field values needs."""
        f = self.schema[name]
        if f.kind == "numeric":
            raise UsageError(f"{name} is numeric: it has no vocabulary slots.")
        parts = []
        for g in self.row_groups(split):
            column = self._table(g, [name]).column(name)
            if f.kind == "multivalued":
                parts.append(column.combine_chunks().flatten().to_numpy().reshape(g.rows, f.max_len))
            else:
                parts.append(column.to_numpy())
        if not parts:
            return np.zeros((0, f.max_len) if f.kind == "multivalued" else (0,), dtype=np.int32)
        return np.concatenate(parts)

    def read_rows(self, split: str, positions) -> tuple[FieldTensors, torch.Tensor]:
        """The encoded inputs and labels of a split's rows at `positions` (any order), in that order; only the
        row groups that hold one are read."""
        return self._tensors(self._rows_table(split, positions))

    def take(self, split: str, positions) -> Dataset:
        """A split's rows at `positions` (any order) as a Dataset of those rows, in that order, decoded: its frame
        holds each field's raw value (`_decode`), the label and the source `line`; its `split` indexes them all.
        Only the row groups that hold one are read (Explore's one sample reads one row group)."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        table = self._rows_table(split, positions)
        inputs, labels = self._tensors(table)
        return Dataset(self.schema, self._decode(table), inputs, labels, {split: np.arange(len(positions))},
                       self.fingerprint, source=self._source())

    def read_split(self, split: str) -> tuple[FieldTensors, torch.Tensor]:
        import torch
        parts = [self.read(g) for g in self.row_groups(split)]
        if not parts:
            empty = self._tensors(self._empty_table())
            return empty
        return (FieldTensors(*(torch.cat([p[0][k] for p in parts]) for k in range(3))),
                torch.cat([p[1] for p in parts]))

    def _empty_table(self) -> pa.Table:
        return _arrow_schema(self.schema).empty_table()

    def _decode(self, table: pa.Table) -> pl.DataFrame:
        """Raw values per field: categorical slot -> vocabulary value, multivalued -> list of values,
        numeric -> the raw (filled) value; then label and line."""
        columns = {}
        for f in self.schema.fields:
            if f.kind == "numeric":
                columns[f.name] = pl.Series(f.name, table.column(RAW + f.name).to_numpy().astype(np.float64))
            elif f.kind == "categorical":
                vocab = pl.Series(f.name, f.vocab, dtype=pl.String)
                columns[f.name] = vocab.gather(table.column(f.name).to_numpy().astype(np.int64))
            else:
                n = table.num_rows
                slots = table.column(f.name).combine_chunks().flatten().to_numpy().reshape(n, -1)
                keep = slots >= 0
                offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
                values = pa.array(np.asarray(f.vocab, dtype=object)[slots[keep]].tolist(), type=pa.string())
                columns[f.name] = pl.Series(f.name, pl.from_arrow(pa.ListArray.from_arrays(offsets, values)))
        columns[LABEL] = pl.Series(LABEL, table.column(LABEL).to_numpy().astype(np.int8))
        columns[LINE] = pl.Series(LINE, table.column(LINE).to_numpy())
        return pl.DataFrame(columns)

    def _source(self) -> dict:
        m = self.manifest
        return {"dataset": m["dataset"], "spec": m.get("spec"), "data_dir": m.get("data_dir", ""),
                "files": [s["name"] for s in m.get("sources", [])], "split": m.get("split", ""),
                "prepared": str(self.path)}

    def to_dataset(self, decode: bool = False) -> Dataset:
        """All three splits in one in-memory Dataset (train, then val, then test rows; `splits` index them).
        decode=False: the frame holds only label and line (enough for training); True: raw values too."""
        import torch
        inputs, labels, frames, splits, start = [], [], [], {}, 0
        for s in SPLITS:
            tables = [self._table(g) for g in self.row_groups(s)] or [self._empty_table()]
            table = pa.concat_tables(tables)
            x, y = self._tensors(table)
            inputs.append(x)
            labels.append(y)
            frames.append(self._decode(table) if decode else
                          pl.DataFrame({LABEL: table.column(LABEL).to_numpy().astype(np.int8),
                                        LINE: table.column(LINE).to_numpy()}))
            splits[s] = np.arange(start, start + len(y))
            start += len(y)
        return Dataset(self.schema, pl.concat(frames), FieldTensors(*(torch.cat([x[k] for x in inputs])
                                                                      for k in range(3))),
                       torch.cat(labels), splits, self.fingerprint, source=self._source())

    def sample(self, split: str, rows: int, seed: int = 0) -> Dataset:
        """A seeded sample of up to `rows` rows of `split`, in split order, decoded (for dataset-level views)."""
        total = self.rows(split)
        k = max(0, min(int(rows), total))
        picked = np.sort(np.random.default_rng(seed).choice(total, size=k, replace=False)) if k else \
            np.zeros(0, dtype=np.int64)
        data = self.take(split, picked)
        data.source = {**data.source, "sample": {"split": split, "rows": k, "of": total, "seed": seed}}
        return data

    def summary(self) -> dict:
        m = self.manifest
        return {"prepared": str(self.path), "dataset": m["dataset"], "rows": m.get("rows"),
                "splits": {s: {"rows": self.rows(s), "positives": self.positives(s),
                               "row_groups": len(self.row_groups(s))} for s in SPLITS},
                "fields": len(self.schema.fields), "row_group_rows": m.get("row_group_rows"),
                "fingerprint": self.fingerprint, "split": m.get("split"), "seconds": m.get("seconds"),
                "rows_per_second": m.get("rows_per_second")}


# ----------------------------------------------------------------------------- reading raw files in batches

class _Source:
    """One main file: where it is read from (a gzip file: its decompressed copy) and the name errors give."""

    def __init__(self, shown: Path, path: Path, index: int):
        self.shown, self.path, self.index = shown, path, index


def _check_lines(source: _Source, chunk: bytes, first_line: int, expected: int, separator: str) -> int:
    """Refuse the first line of `chunk` without `expected` columns (a blank line too); returns its line count.
    Lines holding a quote are left to the CSV reader, as `generic._check_field_counts` does."""
    from .generic import field_count_error
    buf = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(chunk) and chunk[-1:] != b"\n":
        ends = np.append(ends, len(chunk))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    sep = separator.encode("utf-8")
    if len(sep) == 1:  # separators per line, summed in place (each segment is a line and its line break)
        counts = np.add.reduceat(buf == sep[0], starts, dtype=np.int64) if len(starts) else starts
    else:
        counts = np.array([chunk[a:b].count(sep) for a, b in zip(starts, ends)], dtype=np.int64)
    length = ends - starts
    cr = np.zeros(len(ends), dtype=bool)
    nonempty = length > 0
    cr[nonempty] = buf[ends[nonempty] - 1] == 13
    blank = (length - cr) == 0
    bad = blank | (counts != expected - 1)
    if bad.any() and b'"' in chunk:
        quotes = np.flatnonzero(buf == 34)
        bad &= blank | ((np.searchsorted(quotes, ends) - np.searchsorted(quotes, starts)) == 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        text = None if blank[i] else chunk[starts[i]:ends[i]].decode("utf-8", "replace").rstrip("\r")
        raise field_count_error(source.shown, first_line + i, text, expected, separator)
    return len(ends)


def _ahead(batches):
    """The items of the generator `batches`, each made in a worker thread while the one before is used (polars
    and numpy release the GIL): at most one waits. An exception comes where its item would have; when the
    consumer stops early, the worker stops after its current item."""
    items: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            items.put((None, exc))

    thread = threading.Thread(target=work, name="prepare-read", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = items.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)
        batches.close()


def _typed_columns(spec, names: list[str], wanted: list[str]) -> dict:
    """Columns the fast path parses as Float64: those read only by numeric fields without `missing` values, and
    the label column when no field reads it. None without joins' string keys or a multi-byte separator."""
    if spec.format == "parquet" or spec.joins or len(spec.separator.encode("utf-8")) != 1:
        return {}
    uses: dict[str, list] = {}
    for f in spec.fields:
        for c in f.columns:
            uses.setdefault(c, []).append(f)
    typed = {c: pl.Float64 for c, fields in uses.items() if c in wanted and c != spec.label.column
             and all(f.kind == "numeric" and not f.missing and f.derive is None for f in fields)}
    if spec.label.column in names and spec.label.column not in uses:
        typed[spec.label.column] = pl.Float64
    return typed


_scratch = threading.local()


def _count_byte(buf: np.ndarray, byte: int) -> int:
    """How many times `byte` occurs in `buf`, through a comparison buffer kept per thread: a fresh 32 MiB
    temporary per count would be 8,192 page faults, dear on this kind of VM (benchmarks/README.md)."""
    mask = getattr(_scratch, "mask", None)
    if mask is None or len(mask) < len(buf):
        mask = _scratch.mask = np.empty(max(len(buf), BATCH_BYTES + (1 << 20)), dtype=bool)
    np.equal(buf, byte, out=mask[:len(buf)])
    return int(np.count_nonzero(mask[:len(buf)]))


def _typed_frame(spec, chunk: bytes, names: list[str], typed: dict) -> pl.DataFrame | None:
    """The fast path: `chunk` parsed once with the `typed` columns as Float64, when that is exact, else None.

    Exact when the chunk holds no quote, its separators number lines * (columns - 1) and polars parses it
    without error (polars refuses a line with more columns than `names`, so none has fewer either; a blank line
    has none and so fails the count), and the typed values are what the text path accepts: finite numbers, a
    label that is a number (0 or 1 without a label rule). Otherwise the batch takes the text path, whose checks
    name the file, line and fix as before."""
    if b'"' in chunk:
        return None
    buf = np.frombuffer(chunk, dtype=np.uint8)
    lines = _count_byte(buf, 10) + (chunk[-1:] != b"\n")
    if _count_byte(buf, spec.separator.encode("utf-8")[0]) != lines * (len(names) - 1):
        return None
    try:
        frame = pl.read_csv(chunk, has_header=False, separator=spec.separator, new_columns=names, infer_schema=False,
                            schema_overrides=typed, quote_char=None)
    except pl.exceptions.PolarsError:
        return None
    if frame.height != lines:
        return None
    checks = [(pl.col(c).is_nan() | pl.col(c).is_infinite()).any() for c in typed if c != spec.label.column]
    label = spec.label.column
    if label in typed:
        bad = pl.col(label).is_null() | pl.col(label).is_nan()
        if spec.label.op is None:
            bad = bad | ~pl.col(label).is_in([0.0, 1.0])
        checks.append(bad.any())
    if checks and any(frame.select(checks).row(0)):
        return None
    return frame


def _next_chunk(fh, batch_bytes: int) -> bytes:
    """The next whole lines of `fh` (at a line start), about `batch_bytes`, read into one new bytes object.

    The cut is found first (the last line break before `batch_bytes`, looked for in windows of 1 MiB read from
    the end backwards; none: the next one after), then exactly the lines up to it are read, so the block is
    copied once from the file (reading a whole block, joining the previous block's tail and cutting cost two
    more 32 MiB copies and their page faults: 0.65 s against 0.08 s per 255 MiB). A quoted field may hold a
    line break: while the lines hold an odd number of quotes, the cut is inside one, and lines are added.
    At the end of the file the rest is the last chunk, line break or not; b"" after it."""
    start = fh.tell()
    fd, size = fh.fileno(), os.fstat(fh.fileno()).st_size
    end = start + batch_bytes
    if end < size:
        cut, probe = -1, end
        while cut < 0 and probe > start:
            low = max(start, probe - (1 << 20))
            found = os.pread(fd, probe - low, low).rfind(b"\n")
            cut, probe = (low + found + 1 if found >= 0 else -1), low
        if cut < 0:  # no line break within batch_bytes: up to the next one
            fh.seek(end)
            cut = end + len(fh.readline())
        fh.seek(start)
        chunk = fh.read(cut - start)
    else:
        chunk = fh.read()
    while b'"' in chunk and chunk.count(b'"') % 2:
        more = fh.readline()
        if not more:
            break
        chunk += more
    return chunk


def _csv_batches(spec, source: _Source, names: list[str], wanted: list[str], batch_bytes: int, on_bytes,
                 typed: dict | None = None):
    """Batches of whole lines, about `batch_bytes` each, of one CSV file: the wanted columns (as text; the
    `typed` ones as Float64 when `_typed_frame` applies), with LINE and FILE."""
    from .generic import FILE, LINE as SOURCE_LINE
    indices = [names.index(c) for c in wanted]
    with source.path.open("rb") as fh:
        line = 1
        if spec.header:
            head = fh.readline()
            on_bytes(len(head))
            line = 2
        ramp = 3  # the first blocks are 1/8, 1/4, 1/2 of batch_bytes: the pipeline fills sooner (benchmarks/README.md)
        while True:
            chunk = _next_chunk(fh, max(1, batch_bytes >> ramp))
            ramp = max(0, ramp - 1)
            if not chunk:
                return
            on_bytes(len(chunk))
            frame = _typed_frame(spec, chunk, names, typed) if typed else None
            if frame is not None:
                lines = frame.height
            else:
                lines = _check_lines(source, chunk, line, len(names), spec.separator)
                try:
                    frame = pl.read_csv(chunk, has_header=False, separator=spec.separator, infer_schema=False,
                                        new_columns=names, columns=indices)
                except pl.exceptions.PolarsError as exc:
                    raise DataError(f"{source.shown}, lines {line}-{line + lines - 1}: cannot be read as CSV "
                                    f"({str(exc).splitlines()[0]:.200}).") from exc
            del chunk
            # A quoted field holding a line break makes a row of several lines: rows are then counted, not lines.
            frame = frame.select(wanted).with_columns(
                pl.Series(SOURCE_LINE, np.arange(line, line + frame.height, dtype=np.int64)),
                pl.lit(source.index, pl.Int32).alias(FILE))
            line += lines
            yield frame


def _parquet_batches(source: _Source, wanted: list[str], batch_rows: int, on_bytes):
    from .generic import FILE, LINE as SOURCE_LINE
    try:
        handle = pq.ParquetFile(source.path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{source.shown}: not a readable Parquet file ({str(exc).splitlines()[0]:.160}).") from exc
    total, size, row = max(handle.metadata.num_rows, 1), source.path.stat().st_size, 1
    for batch in handle.iter_batches(batch_size=batch_rows, columns=wanted):
        frame = pl.from_arrow(batch).with_columns(pl.col(wanted).cast(pl.String))
        frame = frame.with_columns(pl.Series(SOURCE_LINE, np.arange(row, row + frame.height, dtype=np.int64)),
                                   pl.lit(source.index, pl.Int32).alias(FILE))
        row += frame.height
        on_bytes(int(size * frame.height / total))
        yield frame


def _column_names(spec, source: _Source) -> list[str]:
    if spec.format == "parquet":
        try:
            return pq.ParquetFile(source.path).schema_arrow.names
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{source.shown}: not a readable Parquet file ({str(exc).splitlines()[0]:.160}).") \
                from exc
    with source.path.open("rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise DataError(f"{source.shown}: the file is empty." if not first else
                        f"{source.shown}, line 1: the line is blank; remove it.")
    if not spec.header:
        return list(spec.columns)
    try:
        return pl.read_csv(first, has_header=True, separator=spec.separator, infer_schema=False, n_rows=0).columns
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{source.shown}: cannot be read as CSV ({str(exc).splitlines()[0]:.160}).") from exc


class _Reader:
    """The main files in batches, joins applied: what `generic.read_frame` gives, a batch at a time."""

    def __init__(self, spec, data_dir: Path, sources: list[_Source], batch_rows: int, batch_bytes: int):
        from .generic import join_tables
        self.spec, self.sources, self.batch_rows, self.batch_bytes = spec, sources, batch_rows, batch_bytes
        self.names = _column_names(spec, sources[0])
        for s in sources[1:]:
            names = _column_names(spec, s)
            if names != self.names:
                raise DataError(f"{s.shown}: its columns ({', '.join(names)}) differ from {sources[0].shown.name}'s "
                                f"({', '.join(self.names)}); every file of a data set needs the same.")
        from .generic import wanted_columns, LINE as SOURCE_LINE, FILE
        joins, after = join_tables(spec, data_dir, sources[0].shown, self.names)
        self.joins = [(j, right.drop(SOURCE_LINE, FILE).collect()) for j, right, _ in joins]
        self.join_files = [path for _, _, path in joins]
        wanted = wanted_columns(spec, after)
        self.main = [c for c in wanted if c in self.names]
        self.wanted = wanted
        self.typed = _typed_columns(spec, self.names, self.main)
        self.total_bytes = sum(s.path.stat().st_size for s in sources)

    def batches(self, on_bytes):
        from .generic import FILE, LINE as SOURCE_LINE
        for s in self.sources:
            if self.spec.format == "parquet":
                it = _parquet_batches(s, self.main, self.batch_rows, on_bytes)
            else:
                it = _csv_batches(self.spec, s, self.names, self.main, self.batch_bytes, on_bytes, self.typed)
            for frame in it:
                for join, right in self.joins:
                    frame = frame.join(right, on=join.on, how="left", maintain_order="left")
                yield frame.select(self.wanted + [SOURCE_LINE, FILE])


# ----------------------------------------------------------------------------- writing

def _arrow_schema(schema: Schema) -> pa.Schema:
    width = max((f.max_len for f in schema.of_kind("multivalued")), default=1)
    columns = [pa.field(LABEL, pa.float32()), pa.field(LINE, pa.int64())]
    for f in schema.fields:
        if f.kind == "categorical":
            columns.append(pa.field(f.name, pa.int32()))
        elif f.kind == "multivalued":
            columns.append(pa.field(f.name, pa.list_(pa.int32(), width)))
        else:
            columns.append(pa.field(f.name, pa.float32()))
    columns += [pa.field(RAW + f.name, pa.float64()) for f in schema.of_kind("numeric")]
    return pa.schema(columns)


class _SplitWriter:
    """Appends a split's rows (staged, coded frames) in row groups of exactly `group_rows`, each encoded by
    `encode` as it is written, rolling to a new part file every GROUPS_PER_FILE groups."""

    def __init__(self, root: Path, split: str, arrow_schema: pa.Schema, group_rows: int, encode,
                 pool: ThreadPoolExecutor):
        self.dir, self.split, self.schema, self.group_rows = root / split, split, arrow_schema, group_rows
        self.encode, self.pool = encode, pool
        self.dir.mkdir()
        self.pending: list[pl.DataFrame] = []
        self.pending_rows = 0
        self.writer = None
        self.files: list[dict] = []
        self._futures = []

    def add(self, frame: pl.DataFrame) -> None:
        if not frame.height:
            return
        self.pending.append(frame)
        self.pending_rows += frame.height
        if self.pending_rows >= self.group_rows:
            whole = pl.concat(self.pending, rechunk=False)
            full = whole.height - whole.height % self.group_rows
            for start in range(0, full, self.group_rows):
                self._write(whole.slice(start, self.group_rows))
            rest = whole.slice(full)
            self.pending, self.pending_rows = ([rest] if rest.height else []), rest.height

    def _write(self, frame: pl.DataFrame) -> None:
        table = self.encode(frame)
        if self.writer is None or len(self.files[-1]["row_groups"]) >= GROUPS_PER_FILE:
            if self.writer is not None:
                self._submit(self.writer.close)
            name = f"{self.split}/part-{len(self.files):05d}.parquet"
            self.writer = pq.ParquetWriter(self.dir.parent / name, self.schema, compression=COMPRESSION,
                                           use_dictionary=[c for c in self.schema.names if c != LINE])
            self.files.append({"name": name, "rows": 0, "row_groups": []})
        self._submit(self.writer.write_table, table, row_group_size=table.num_rows)
        self.files[-1]["rows"] += table.num_rows
        self.files[-1]["row_groups"].append(table.num_rows)

    def _submit(self, fn, *args, **kwargs) -> None:
        """Parquet work runs in `pool`'s one thread, in order (pyarrow releases the GIL), overlapping the next
        batch's encoding; at most WRITES_AHEAD calls wait, so memory stays bounded."""
        self._futures.append(self.pool.submit(fn, *args, **kwargs))
        while len(self._futures) > WRITES_AHEAD:
            self._futures.pop(0).result()

    def close(self) -> list[dict]:
        if self.pending_rows:
            self._write(pl.concat(self.pending, rechunk=False))
            self.pending, self.pending_rows = [], 0
        if self.writer is not None:
            self._submit(self.writer.close)
        while self._futures:
            self._futures.pop(0).result()
        return self.files


class _HashTable:
    """Distinct nonzero uint64 keys -> their positions + 1, by open addressing (linear probing) in numpy arrays
    of a power-of-two size at most a quarter full (a missed key mostly lands on an empty slot at once); `lookup`
    looks many keys up at once (0: absent). An empty slot holds key 0 and value 0, so looking up 0 (a missing
    value's staged hash) gives 0 with no special case; a key that is itself 0 cannot be stored (a value hashing
    to 0, a chance of 2^-64, counts as missing, as `_Hashes` says)."""

    def __init__(self, keys: np.ndarray):
        keys = np.asarray(keys, dtype=np.uint64)
        bits = max(4, int(4 * len(keys)).bit_length())
        self.shift, self.mask = np.uint64(64 - bits), (1 << bits) - 1
        self.keys = np.zeros(1 << bits, dtype=np.uint64)
        self.values = np.zeros(1 << bits, dtype=np.int32)
        pos = (keys >> self.shift).astype(np.int64)
        pending = np.flatnonzero(keys != 0)
        while len(pending):
            slot = pos[pending]
            free = self.keys[slot] == 0
            taken, first = np.unique(slot[free], return_index=True)  # one key per free slot and round
            won = pending[free][first]
            self.keys[taken], self.values[taken] = keys[won], won + 1
            placed = np.zeros(len(keys), dtype=bool)
            placed[won] = True
            pending = pending[~placed[pending]]
            pos[pending] = (pos[pending] + 1) & self.mask

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Positions + 1 of `hashes` (int32; 0: absent). The first probe is done for all keys in whole-array
        passes (most end there); only keys that met another key probe on. 2-3x faster than the version that
        stored keys | 1 and returned positions (65,536 lookups: 0.7-1.2 against 2.0-2.9 ms, benchmarks/README.md)."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        pos = (hashes >> self.shift).view(np.int64)  # < 2^bits: the same numbers as int64, no copy
        key = self.keys[pos]
        out = self.values[pos]  # right where the key matches or the slot is empty (0); the rest below
        rows = np.flatnonzero(key != hashes)
        if len(rows):
            rows = rows[key[rows] != 0]  # met another key: probe on
            out[rows] = 0
            while len(rows):
                at = (pos[rows] + 1) & self.mask
                pos[rows] = at
                key = self.keys[at]
                hit = key == hashes[rows]
                out[rows[hit]] = self.values[at[hit]]
                rows = rows[~hit & (key != 0)]
        return out


def _zeros_in_huge_pages(shape: tuple, dtype) -> np.ndarray:
    """np.zeros(shape, dtype) in anonymous memory advised as transparent huge pages where the system has them: the
    sketch's counters are updated at random places, and with 4 KiB pages most updates miss the TLB (and its
    128 MiB take 32,768 page faults to fill). Without MADV_HUGEPAGE (not Linux): plain np.zeros."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None:
        return np.zeros(shape, dtype=dtype)
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        memory.madvise(advice)
    except OSError:  # huge pages off in this kernel: 4 KiB pages, still zeroed
        pass
    return np.frombuffer(memory, dtype=dtype).reshape(shape)


def keep_freed_memory() -> None:
    """Tunes the *process* for one long `prepare` (the CLI calls it; the app's process keeps the defaults):

    - glibc's malloc keeps freed blocks of up to 128 MiB in its heap (M_MMAP_THRESHOLD) and does not hand the
      heap's top back below 2 GiB (M_TRIM_THRESHOLD). By default each 32 MiB CSV block, parse buffer and
      numpy temporary is a fresh mmap, and its pages fault in again every batch (about 6 us a page on this VM:
      a 1M-row run took ~290,000 faults). Peak RSS stays bounded by the largest working set.
    - gc.freeze(): the objects alive now (torch's, imported by the CLI) leave the collector's generations, so
      the full collections that prepare's allocations trigger do not walk them again.
    A C library without mallopt (not glibc) is left alone. Measured in benchmarks/README.md (prepare)."""
    import ctypes
    import ctypes.util
    import gc
    gc.freeze()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 128 << 20)
    mallopt(M_TRIM_THRESHOLD, (2 << 30) - 1)


class _Hashes:
    """Categorical and multi-valued values as 64-bit hashes, so that memory does not grow with the long tail of
    values seen fewer than `min_count` times.

    Pass 1 (`stage`): each value is hashed (polars `hash`, seed HASH_SEED: the same value hashes the same in
    every batch of a run; a missing value stays null). The staged batch holds the hashes instead of the text.
    The training rows' hashes are counted per batch (a polars group-by: distinct hash, count, one value), and
    those batch counts are staged too (small: one row per distinct value of the batch). The counts go into a
    count-min sketch shared by all fields, SKETCH_ROWS rows of 2^SKETCH_BITS uint64 counters indexed by
    independent bits of splitmix64(hash ^ the field's salt): a value's estimate, the least of its counters,
    is at least its count so far and never less. After the batch, each value of the batch whose estimate
    reaches its field's min_count becomes a *candidate*: its (hash, text) is kept, once. A value that reaches
    min_count in the training rows has its estimate >= min_count in the batch of its last training occurrence,
    so it is a candidate: no kept value is lost. Memory: the sketch (fixed) and the candidates (about the
    vocabulary, plus values that collide with frequent ones in every sketch row).
    Fields with min_count 1 keep every training value: the sketch cannot help there, every value is a
    candidate, and memory grows with their vocabulary (which the model embeds anyway).

    `value_counts` then counts the candidates exactly from the staged batch counts (a hash-table lookup and
    np.bincount) and gives `generic.value_counts`'s frames of the values that may be kept (every value with a
    count >= min_count is among them, with its exact count), so `schema_from` builds the same vocabularies
    (most frequent first, ties by value). Pass 2 (`slots`) maps each hash to its vocabulary slot by a lookup in
    the field's hash table; a hash not in the vocabulary, or a missing value, gets slot 0 (`<unknown>`).

    Two distinct values of one field with the same 64-bit hash would count as one: with n distinct values the
    chance of any such pair is about n^2 / 2^65 (3e-4 for 10^8 values of one field); it would merge two
    values' counts, nothing else. A missing categorical value is staged as hash 0: a value whose own hash is 0
    (a chance of 2^-64 each) would count as missing."""

    def __init__(self, spec, staging: Path):
        self.staging = staging
        self.fields = [f for f in spec.fields if f.kind != "numeric"]
        self.salts = {f.name: _splitmix64(np.array([i + 1], dtype=np.uint64))[0] for i, f in enumerate(self.fields)}
        self.sketch = _zeros_in_huge_pages((SKETCH_ROWS, 1 << SKETCH_BITS), np.uint64) \
            if any(f.min_count > 1 for f in self.fields) else None
        self.candidates = {f.name: [] for f in self.fields}  # frames (hash, value), distinct hashes per frame
        self.candidate_rows = {f.name: 0 for f in self.fields}
        self.compacted = {f.name: 0 for f in self.fields}
        self.counted: list[Path] = []  # staged batch counts
        self.tables: dict[str, _HashTable] = {}

    def _cells(self, name: str, hashes: np.ndarray) -> list[np.ndarray]:
        with np.errstate(over="ignore"):
            mixed = _splitmix64(hashes ^ self.salts[name])
        full = np.uint64((1 << SKETCH_BITS) - 1)
        return [((mixed >> np.uint64(64 - SKETCH_BITS * (r + 1))) & full).astype(np.int64)
                for r in range(SKETCH_ROWS)]

    def stage(self, sample: pl.DataFrame, train: np.ndarray, batch: int) -> pl.DataFrame:
        """The sample frame with each categorical column as UInt64 hashes (multi-valued: lists of them, a missing
        list null; a missing categorical value: 0, so pass 2 has no nulls to fill); the training rows' values
        counted (sketch, candidates, staged batch counts).

        One group-by per field gives each distinct training hash its count and the position of its first row;
        the text is gathered from those positions only for the values that become candidates (a string filter
        of the whole column and a second pass over it per field cost more than the counting)."""
        hashed = sample.with_columns([
            (pl.col(f.name).list.eval(pl.element().hash(HASH_SEED)) if f.kind == "multivalued" else
             pl.when(pl.col(f.name).is_null()).then(pl.lit(0, pl.UInt64))
             .otherwise(pl.col(f.name).hash(HASH_SEED))).alias(f.name)
            for f in self.fields])
        rows = pl.Series("row", np.flatnonzero(train).astype(np.uint32))
        counts, cells = [], {}
        for i, f in enumerate(self.fields):
            hashes = hashed[f.name].gather(rows)
            values = sample[f.name]
            if f.kind == "multivalued":  # positions into the exploded training lists
                hashes, values = hashes.explode(), values.gather(rows).explode()
                rows_of = None
            else:
                rows_of = rows
            per = (pl.DataFrame({"hash": hashes}).with_row_index("at").filter(pl.col("hash").is_not_null()
                                                                             & (pl.col("hash") != 0))
                   .group_by("hash").agg(pl.len().alias("count"), pl.col("at").first()))
            counts.append(per.select(pl.lit(i, pl.UInt16).alias("field"), "hash", "count"))
            if f.min_count > 1:
                at = self._cells(f.name, per["hash"].to_numpy())
                for r, a in enumerate(at):
                    np.add.at(self.sketch[r], a, per["count"].to_numpy().astype(np.uint64))
                cells[f.name] = (per, at, values, rows_of)
            else:
                self._candidates(f, self._pairs(per, values, rows_of))
        for f in self.fields:
            if f.name in cells:  # the text of the batch's values whose estimate reaches min_count, once each
                per, at, values, rows_of = cells[f.name]
                if not per.height:
                    continue
                estimate = np.minimum.reduce([self.sketch[r][a] for r, a in enumerate(at)])
                reached = per.filter(pl.Series(estimate >= f.min_count))
                if reached.height:
                    self._candidates(f, self._pairs(reached, values, rows_of))
        if counts:
            path = self.staging / f".counts-{batch:06d}.arrow"
            pl.concat(counts).write_ipc(path, compression="uncompressed")
            self.counted.append(path)
        return hashed

    @staticmethod
    def _pairs(per: pl.DataFrame, values: pl.Series, rows_of: pl.Series | None) -> pl.DataFrame:
        """(hash, value) of `per`'s distinct hashes: the text at each one's first position ("at": a position
        among the training rows, `rows_of` maps it to the sample's row; None: `values` is already indexed so)."""
        at = per["at"] if rows_of is None else rows_of.gather(per["at"])
        return pl.DataFrame({"hash": per["hash"], "value": values.gather(at)})

    def _candidates(self, f, frame: pl.DataFrame) -> None:
        """Keeps `frame`'s (hash, value) pairs, each hash once (merged when the kept rows double)."""
        if not frame.height:
            return
        self.candidates[f.name].append(frame)
        self.candidate_rows[f.name] += frame.height
        if self.candidate_rows[f.name] > 2 * self.compacted[f.name] + 65536:
            merged = pl.concat(self.candidates[f.name]).unique("hash", keep="first")
            self.candidates[f.name], self.candidate_rows[f.name] = [merged], merged.height
            self.compacted[f.name] = merged.height

    def value_counts(self) -> dict[str, pl.DataFrame]:
        """Per field `generic.value_counts`'s frame of its candidates with their exact training counts: every
        value counted min_count times or more is there, so `vocab_of` keeps what it keeps from all values."""
        chosen, tables, totals = {}, {}, {}
        for i, f in enumerate(self.fields):
            frames = self.candidates.pop(f.name)
            merged = pl.concat(frames).unique("hash", keep="first") if frames else \
                pl.DataFrame({"hash": [], "value": []}, schema={"hash": pl.UInt64, "value": pl.String})
            if f.min_count > 1 and merged.height:  # the final estimates: fewer candidates than along the way
                at = self._cells(f.name, merged["hash"].to_numpy())
                estimate = np.minimum.reduce([self.sketch[r][a] for r, a in enumerate(at)])
                merged = merged.filter(pl.Series(estimate >= f.min_count))
            chosen[f.name] = merged
            tables[i] = _HashTable(merged["hash"].to_numpy())
            totals[i] = np.zeros(merged.height, dtype=np.int64)
        self.sketch = None
        for path in self.counted:
            counts = pl.read_ipc(path)
            path.unlink()
            for i, part in counts.partition_by("field", as_dict=True, include_key=False).items():
                at = tables[i[0]].lookup(part["hash"].to_numpy())  # position + 1, 0: not a candidate
                totals[i[0]] += np.bincount(at, weights=part["count"].to_numpy(),
                                            minlength=len(totals[i[0]]) + 1)[1:].astype(np.int64)
        self.counted = []
        return {f.name: pl.DataFrame({"value": chosen[f.name]["value"].cast(pl.String),
                                      "count": pl.Series(totals[i], dtype=pl.UInt64)})
                for i, f in enumerate(self.fields)}

    def build_lookups(self, schema: Schema) -> None:
        """hash -> slot per field: a hash table of the vocabulary's hashes (values not in it: slot 0)."""
        for f in self.fields:
            field = schema[f.name]
            vocab = pl.Series(list(field.vocab[1:]), dtype=pl.String)
            self.tables[f.name] = _HashTable(vocab.hash(HASH_SEED).to_numpy())  # position + 1 = the slot

    def slots(self, f, column: pl.Series, width: int) -> pa.Array:
        """A hashed column's slots as `encode_frame` gives them: categorical int32 (missing: 0); multi-valued a
        fixed-size list of `width` int32 (the first max_len values, -1 padding, a row without values: slot 0
        alone)."""
        table = self.tables[f.name]
        if f.kind != "multivalued":  # missing values are staged as hash 0: slot 0, no nulls to fill
            return pa.array(table.lookup(column.to_numpy()))
        n = len(column)
        heads = column.list.head(f.max_len)
        lengths = heads.list.len().fill_null(0).to_numpy().astype(np.int64)
        flat = heads.to_arrow().flatten().to_numpy(zero_copy_only=False).astype(np.uint64)
        out = np.full((n, width), -1, dtype=np.int32)
        rows = np.repeat(np.arange(n), lengths)
        cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, cols] = table.lookup(flat)
        out[lengths == 0, 0] = 0
        return pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1)), width)


def _encoded_codes(schema: Schema, coded: pl.DataFrame, codes: "_Hashes", arrow_schema: pa.Schema,
                   pool: ThreadPoolExecutor | None = None) -> pa.Table:
    """A staged batch (`_Hashes.stage` of the sample frame) encoded as `encode_frame` would the sample frame.
    With `pool`, the fields are encoded in its threads (numpy's lookups release the GIL)."""
    from .generic import LINE as SOURCE_LINE
    width = max((f.max_len for f in schema.of_kind("multivalued")), default=1)
    columns = [pa.array(coded[LABEL].to_numpy().astype(np.float32)), pa.array(coded[SOURCE_LINE].to_numpy())]

    def field_column(f):
        if f.kind == "numeric":
            raw = coded[f.name].cast(pl.Float64).to_numpy()
            return pa.array(((f.transformed(raw) - f.min_value) / (f.max_value - f.min_value)).astype(np.float32))
        return codes.slots(f, coded[f.name], width)

    columns += list(pool.map(field_column, schema.fields) if pool is not None else map(field_column, schema.fields))
    columns += [pa.array(coded[f.name].cast(pl.Float64).to_numpy()) for f in schema.of_kind("numeric")]
    return pa.Table.from_arrays(columns, schema=arrow_schema)


# ----------------------------------------------------------------------------- prepare

class _Progress:
    """A tqdm bar and the app's callback for one pass."""

    def __init__(self, number: int, total: int | None, unit: str, show: bool, callback, total_rows=None):
        from tqdm.auto import tqdm
        self.number, self.callback, self.total_rows = number, callback, total_rows
        self.start, self.rows = time.perf_counter(), 0
        desc = "prepare, pass 1: counting" if number == 1 else "prepare, pass 2: encoding"
        self.bar = tqdm(total=total, unit=unit, unit_scale=True, desc=desc, disable=not show, file=sys.stderr)

    def advance(self, amount: int) -> None:
        self.bar.update(amount)

    def rows_done(self, rows: int) -> None:
        self.rows += rows
        rate = self.rows / max(time.perf_counter() - self.start, 1e-9)
        if self.number == 1:
            self.bar.set_postfix(rows=self.rows, rows_per_s=f"{rate:,.0f}", refresh=False)
        if self.callback is not None:
            self.callback({"pass": self.number, "rows": self.rows, "total": self.total_rows,
                           "rows_per_second": rate})

    def close(self) -> None:
        self.bar.close()


def prepare(spec, data_dir, out=None, *, row_group_rows: int = ROW_GROUP_ROWS, progress: bool = True,
            callback=None, batch_rows: int = BATCH_ROWS, batch_bytes: int = BATCH_BYTES) -> Prepared:
    """Prepare `spec`'s files in `data_dir` into `out` (default `data_dir/prepared/NAME`), or reuse it."""
    from .generic import is_gzip, numeric_range, resolve_files, sample_frame, schema_from
    if isinstance(row_group_rows, bool) or not isinstance(row_group_rows, int) or row_group_rows < 1:
        raise UsageError(f"row_group_rows {row_group_rows!r}: give a whole number of rows, at least 1.")
    for name, value in (("batch_rows", batch_rows), ("batch_bytes", batch_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} {value!r}: give a whole number, at least 1.")
    data_dir = Path(data_dir)
    out = Path(out) if out is not None else default_dir(spec, data_dir)
    files = resolve_files(spec, data_dir)
    reason = _stale(out, spec, data_dir)
    if reason is None:
        print(f"reusing {out}: prepared from the same files and spec settings", file=sys.stderr)
        return Prepared.open(out)
    if reason != "missing":
        print(f"rebuilding {out}: {reason}", file=sys.stderr)
    clash = [f.name for f in spec.fields if f.name in (LABEL, LINE) or f.name.startswith(RAW)]
    if clash:
        raise DataError(f"{spec.where('name', 'field', next(f.index for f in spec.fields if f.name == clash[0]))}: "
                        f"field {clash[0]!r} has the name of a prepared column ({LABEL}, {LINE}); rename the field.")
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tidy_siblings(out, STALE_STAGING_S)  # what a killed prepare left (its staging folder, or the old copy aside)
    staging = staging_dir(out)
    try:
        sources = []
        for i, path in enumerate(files):
            read_from = path
            if is_gzip(path):  # streamed into the staging folder, never whole in memory
                read_from = staging / f".source-{i}"
                with gzip.open(path, "rb") as src, read_from.open("wb") as dst:
                    try:
                        shutil.copyfileobj(src, dst, 8 << 20)
                    except (OSError, EOFError) as exc:
                        raise DataError(f"{path}: not a complete gzip file ({exc}); download it again.") from exc
            sources.append(_Source(path, read_from, i))
        reader = _Reader(spec, data_dir, sources, batch_rows, batch_bytes)
        shown = [s.shown for s in sources]
        folds, rule = split_rule(spec)
        fingerprints = [source_fingerprint(p) for p in files + reader.join_files]

        # Pass 1: parse and check each batch once; count the training rows' values, the numeric ranges and
        # longest lists over all rows; stage the batch (values as categorical codes) for pass 2.
        codes = _Hashes(spec, staging)
        ranges = {f.name: None for f in spec.fields if f.kind == "numeric"}
        longest = {f.name: 0 for f in spec.fields if f.kind == "multivalued"}
        rows = {s: 0 for s in SPLITS}
        positives = {s: 0 for s in SPLITS}
        bar = _Progress(1, reader.total_bytes, "B", progress, callback)
        row, staged = 0, []
        from .generic import FILE

        def checked(batches):
            """Each batch as its sample frame and split codes, with the split counts, numeric ranges and longest
            lists updated: run inside `_ahead`'s worker with the parse, so the main thread only counts and stages
            (it is the slower of the two; the worker waited for it)."""
            nonlocal row
            for frame in batches:
                sample = sample_frame(spec, frame, shown).drop(FILE)
                del frame
                n = sample.height
                split = split_codes(np.arange(row, row + n), spec.seed, folds)
                row += n
                labels = sample[LABEL].to_numpy()
                for k, s in enumerate(SPLITS):
                    rows[s] += int((split == k).sum())
                    positives[s] += int(labels[split == k].sum())
                for f in spec.fields:
                    if f.kind == "numeric":
                        r, old = numeric_range(f, sample[f.name].to_numpy()), ranges[f.name]
                        if r is not None:
                            ranges[f.name] = r if old is None else (min(old[0], r[0]), max(old[1], r[1]))
                    elif f.kind == "multivalued":
                        longest[f.name] = max(longest[f.name], int(sample[f.name].list.len().max() or 0))
                yield sample, split

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-stage") as stager:
            writes = []
            for b, (sample, split) in enumerate(_ahead(checked(reader.batches(bar.advance)))):
                coded = codes.stage(sample, split == 0, b).with_columns(pl.Series(SPLIT, split))
                bar.rows_done(sample.height)
                del sample
                staged.append(staging / f".stage-{b:06d}.arrow")
                # written by the stager thread (IPC writes release the GIL), at most two waiting
                writes.append(stager.submit(coded.write_ipc, staged[-1], compression="uncompressed"))
                del coded
                while len(writes) > 2:
                    writes.pop(0).result()
            for w in writes:
                w.result()
        bar.close()
        for s in sources:
            if s.path != s.shown:
                s.path.unlink()
        if row < folds:
            raise DataError(f"{', '.join(map(str, shown))}: only {row} samples; at least {folds} are needed to "
                            f"split them.")
        schema = schema_from(spec, codes.value_counts(), ranges, longest)
        vocab_path = staging / VOCABULARIES
        with vocab_path.open("w", encoding="utf-8") as fh:
            json.dump(schema.to_json(), fh)

        # Pass 2: read the staged batches back, encode and write the row groups; drop each staged file.
        codes.build_lookups(schema)
        arrow_schema = _arrow_schema(schema)
        bar = _Progress(2, row, "row", progress, callback, total_rows=row)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-write") as pool, \
                ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="prepare-encode") as fields_pool:
            def encode(frame):
                return _encoded_codes(schema, frame, codes, arrow_schema, fields_pool)

            writers = {s: _SplitWriter(staging, s, arrow_schema, row_group_rows, encode, pool) for s in SPLITS}
            for path in staged:
                coded = pl.read_ipc(path)
                path.unlink()
                for k, s in enumerate(SPLITS):
                    writers[s].add(coded.filter(pl.col(SPLIT) == k))
                bar.advance(coded.height)
                bar.rows_done(coded.height)
                del coded
            split_files = {s: w.close() for s, w in writers.items()}
        bar.close()
        seconds = time.perf_counter() - started
        settings = _settings_hash(spec)
        manifest = {
            "format": FORMAT, "dataset": spec.name, "spec": str(spec.path) if spec.path else None,
            "spec_settings": settings, "data_dir": str(data_dir), "sources": fingerprints,
            "fingerprint": hashlib.sha256(json.dumps([fingerprints, settings], sort_keys=True)
                                          .encode()).hexdigest()[:16],
            "rows": row, "row_group_rows": row_group_rows,
            "splits": {s: {"rows": rows[s], "positives": positives[s], "files": split_files[s]} for s in SPLITS},
            "vocabularies": {"file": VOCABULARIES, "sha256": _sha256(vocab_path)},
            "split": rule, "fields": len(schema.fields),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 3), "rows_per_second": round(row / max(seconds, 1e-9), 1),
        }
        with (staging / MANIFEST).open("w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Prepared.open(out)
