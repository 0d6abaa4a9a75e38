"""Read any CSV, TSV or Parquet data set as its spec says: label, fields, split, vocabularies, tensors.

Flow: spec + folder -> `read_frame` (the needed columns as text, each row with its file and line) ->
`sample_frame` (the label and one raw value column per field, checked line by line) -> `split_rows`
-> `build_schema` (vocabularies from the training split, with minimum counts) -> `encode_frame`
(the same encoder as MovieLens) -> a `Dataset` that `train()` takes.

polars scans the files lazily and collects only the columns the spec reads, with its streaming engine;
it recognises gzip by its magic bytes, whatever the file is called, and decompresses it in memory (unpack a
large file first). Everything is held in memory afterwards (about 8 bytes per field per sample); files far
beyond memory are not handled here.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from ..data.dataset import DataError, Dataset, file_fingerprint, split_indices
from ..data.encoding import encode_frame
from ..data.schema import UNKNOWN, Field, Schema
from .spec import MAX_VALUES, DatasetSpec, FieldSpec, SpecError

LINE, FILE = "source_line", "source_file"  # where each sample came from, kept in the frame
REFUSED_SHOWN = 10  # the lines a refusal names; it counts them all
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# ----------------------------------------------------------------------------- files

def resolve_files(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    """Each `files` entry's first existing alternative in `data_dir`."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder. Pass --data-dir, the folder holding "
                        f"{', '.join(' or '.join(a) for a in spec.files)}.")
    out = []
    for alternatives in spec.files:
        found = next((data_dir / n for n in alternatives if (data_dir / n).is_file()), None)
        if found is None:
            names = " or ".join(alternatives)
            where = spec.about.get("source")
            raise DataError(f"{data_dir}: no {names} there ({spec.where('files')} names it). Put the file there"
                            f"{' as distributed (' + where + ')' if where else ''}, or pass --data-dir.")
        out.append(found)
    return out


def is_gzip(path: Path) -> bool:
    """gzip by its magic bytes, whatever the name says."""
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _check_field_counts(path: Path, separator: str, expected: int, skip_header: bool) -> None:
    """Every line has `expected` columns: polars pads short lines with nulls and names no line for long ones."""
    first = 2 if skip_header else 1
    lines = pl.scan_csv(path, has_header=False, separator="\x1f", quote_char=None, new_columns=["text"],
                        infer_schema=False, skip_rows=first - 1).with_row_index("n", offset=first)
    counts = pl.col("text").str.count_matches(separator, literal=True)
    # Quoted fields may hold the separator: those lines are left to the CSV reader.
    bad = lines.filter(pl.col("text").is_null() | ((counts != expected - 1)
                                                     & ~pl.col("text").str.contains('"', literal=True)))
    shown = bad.head(REFUSED_SHOWN).collect()
    if shown.height:  # counted only then: a file that loads is read once here
        total = shown.height if shown.height < REFUSED_SHOWN else int(bad.select(pl.len()).collect().item())
        error = field_count_error(path, int(shown["n"][0]), shown["text"][0], expected, separator)
        raise DataError(f"{error}{refused_lines(shown['n'].to_list(), total, 'lines')}")


def refused_lines(shown: list[int], total: int, word: str = "lines", names: list[str] | None = None) -> str:
    """" 3 lines are refused so: lines 4, 17 and 203." for a refusal found on `total` lines, `shown` the first of
    them (`names`: each one's file name, where a data set has several files); "" for one line."""
    if total <= 1:
        return ""
    where = [f"{name}:{n}" for name, n in zip(names, shown)] if names else [str(n) for n in shown]
    listed = ", ".join(where[:-1]) + f" and {where[-1]}" if total == len(where) else \
        ", ".join(where) + f" and {total - len(where):,} more"
    return f" {total:,} {word} are refused so: {word} {listed}."


def field_count_error(path: Path, n: int, text: str | None, expected: int, separator: str) -> DataError:
    """The error for line `n` of `path` (its text; None: blank) that lacks `expected` columns."""
    shown = {"\t": "tab", ",": "comma", ";": "semicolon"}.get(separator, repr(separator))
    if text is None:
        return DataError(f"{path}, line {n}: the line is blank; remove it.")
    got = text.count(separator) + 1
    return DataError(f"{path}, line {n}: expected {expected} {shown}-separated columns, got {got}: "
                     f"{text!r:.160}. Fix or remove the line{'; is the file cut off?' if got < expected else '.'}")


def _scan(path: Path, *, fmt: str, separator: str, header: bool, columns, index: int) -> pl.LazyFrame:
    """One file as text columns, with its line numbers (Parquet: row numbers) and its index in `files`."""
    if fmt == "parquet":
        try:
            lf = pl.scan_parquet(path)
            names = lf.collect_schema().names()
        except (pl.exceptions.ComputeError, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]:.160}).") from exc
        lf = lf.with_columns(pl.col(names).cast(pl.String))
        return lf.with_row_index(LINE, offset=1).with_columns(pl.lit(index, pl.Int32).alias(FILE))
    kwargs = dict(separator=separator, has_header=header, infer_schema=False, new_columns=list(columns) if columns else None)
    try:
        names = pl.scan_csv(path, **kwargs).collect_schema().names()
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty.") from None
    except pl.exceptions.ComputeError as exc:
        raise DataError(f"{path}: cannot be read as CSV ({str(exc).splitlines()[0]:.160}).") from exc
    _check_field_counts(path, separator, len(names), skip_header=header)
    lf = pl.scan_csv(path, **kwargs)
    return lf.with_row_index(LINE, offset=2 if header else 1).with_columns(pl.lit(index, pl.Int32).alias(FILE))


def _columns_of(lf: pl.LazyFrame) -> list[str]:
    return [c for c in lf.collect_schema().names() if c not in (LINE, FILE)]


def read_frame(spec: DatasetSpec, data_dir: Path) -> tuple[pl.DataFrame, list[Path]]:
    """The columns the spec reads, as text, plus each row's file index and line; joins applied."""
    files = resolve_files(spec, data_dir)
    frames = []
    for i, path in enumerate(files):
        lf = _scan(path, fmt=spec.format, separator=spec.separator, header=spec.header, columns=spec.columns,
                   index=i)
        names = _columns_of(lf)
        if frames and names != _columns_of(frames[0]):
            raise DataError(f"{path}: its columns ({', '.join(names)}) differ from {files[0].name}'s "
                            f"({', '.join(_columns_of(frames[0]))}); every file of a data set needs the same.")
        frames.append(lf)
    lf = pl.concat(frames) if len(frames) > 1 else frames[0]
    names = _columns_of(lf)
    joins, names = join_tables(spec, data_dir, files[0], names)
    for join, right, _ in joins:
        lf = lf.join(right.drop(LINE, FILE), on=join.on, how="left", maintain_order="left")
    wanted = wanted_columns(spec, names)
    try:
        frame = lf.select(wanted + [LINE, FILE]).collect(engine="streaming")
    except pl.exceptions.ComputeError as exc:
        raise DataError(f"{', '.join(map(str, files))}: cannot be read ({str(exc).splitlines()[0]:.200}).") from exc
    return frame, files + [path for _, _, path in joins]


def join_tables(spec: DatasetSpec, data_dir: Path, first: Path, names: list[str]):
    """Each `[[join]]` file, checked (its key column, no clash of names, one line per key): a list of
    (JoinSpec, LazyFrame, path), and the column names after the joins. Checks the label and field columns."""
    _need(spec, first, names, spec.label.column, "label", None)
    out = []
    for j_index, join in enumerate(spec.joins):
        path = data_dir / join.file
        if not path.is_file():
            raise DataError(f"{data_dir}: no {join.file} there ({spec.where('file', 'join', j_index)} joins it). "
                            f"Put the file there, or pass --data-dir.")
        right = _scan(path, fmt="parquet" if join.file.endswith(".parquet") else "csv", separator=join.separator,
                      header=join.header, columns=join.columns, index=-1)
        right_names = _columns_of(right)
        if join.on not in right_names:
            raise SpecError(f"{spec.where('on', 'join', j_index)}: on = {join.on!r} is not a column of {path} "
                            f"({', '.join(right_names)}).")
        _need(spec, first, names, join.on, "on", ("join", j_index))
        clash = [c for c in right_names if c != join.on and c in names]
        if clash:
            raise SpecError(f"{spec.where('columns', 'join', j_index)}: {path.name} has column {clash[0]!r}, which "
                            f"{first.name} has too; name the join's columns differently (columns = [...]).")
        dup = right.group_by(join.on).agg(pl.col(LINE).sort().alias("lines")).filter(pl.col("lines").list.len() > 1)
        dup = dup.head(1).collect()
        if dup.height:
            lines = dup["lines"][0].to_list()
            raise DataError(f"{path}, line {lines[1]}: {join.on} {dup[join.on][0]!r} appears again (first on line "
                            f"{lines[0]}); a joined file needs one line per key. Remove the repeated line.")
        out.append((join, right, path))
        names = names + [c for c in right_names if c != join.on]
    for f in spec.fields:
        for c in f.columns:
            _need(spec, first, names, c, ("column", "columns", "names", "name"), ("field", f.index))
    return out, names


def wanted_columns(spec: DatasetSpec, names: list[str]) -> list[str]:
    """The columns `sample_frame` reads, among `names` (after the joins), each once."""
    wanted = list(dict.fromkeys(spec.source_columns() + [c for j in spec.joins for c in (j.columns or ())
                                                          if c in names]))
    return [c for c in wanted if c in names]


def _need(spec: DatasetSpec, path: Path, names: list[str], column: str, key: str, table) -> None:
    if column not in names:
        import difflib
        close = difflib.get_close_matches(column, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        where = spec.where(key, *table) if table else spec.where(key)
        raise SpecError(f"{where}: column {column!r} is not in {path.name} (its columns: "
                        f"{', '.join(names[:40])}{' ...' if len(names) > 40 else ''}).{hint}")


# ----------------------------------------------------------------------------- label and fields

def _locate(frame: pl.DataFrame, files: list[Path], row: int, fmt: str) -> str:
    path = files[int(frame[FILE][row])]
    return f"{path}, {'row' if fmt == 'parquet' else 'line'} {int(frame[LINE][row])}"


def _refuse_first(bad, spec: DatasetSpec, frame: pl.DataFrame, files, message) -> None:
    """A DataError at the first of the `bad` row positions: its file and line, then `message(row)`, then how many
    rows are refused so and the first REFUSED_SHOWN of their lines."""
    if len(bad):
        n = int(bad[0])
        first = [int(i) for i in bad[:REFUSED_SHOWN]]
        names = [files[int(frame[FILE][i])].name for i in first] if len(files) > 1 else None
        more = refused_lines([int(frame[LINE][i]) for i in first], len(bad),
                             "rows" if spec.format == "parquet" else "lines", names)
        raise DataError(f"{_locate(frame, files, n, spec.format)}: {message(n)}{more}")


def labels_of(spec: DatasetSpec, frame: pl.DataFrame, files: list[Path]) -> np.ndarray:
    rule, raw = spec.label, frame[spec.label.column]
    number = _as_number(raw)
    _refuse_first((number.is_null() | number.is_nan()).arg_true(), spec, frame, files, lambda n: (
        f"the label column {rule.column} is {raw[n]!r}, not a number ({spec.where('label')}: label = "
        f"{rule.text!r}). Fix or remove the line."))
    values = number.to_numpy()
    if rule.op is None:
        _refuse_first(np.flatnonzero((values != 0) & (values != 1)), spec, frame, files, lambda n: (
            f"the label column {rule.column} is {raw[n]!r}, not 0 or 1. {spec.where('label')}: write label = "
            f"\"{rule.column} > 0\" to count any positive number as a click."))
        return values.astype(np.int8)
    compare = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal,
               "!=": np.not_equal}[rule.op]
    return compare(values, rule.threshold).astype(np.int8)


def _as_number(raw: pl.Series) -> pl.Series:
    """Text stripped and read as Float64 (null where it is no number); a column already parsed as numbers (the
    typed CSV parse of `autoint.datasets.prepared`, for columns only numeric fields or the label read) as it is."""
    if raw.dtype == pl.String:
        return raw.str.strip_chars().cast(pl.Float64, strict=False)
    return raw.cast(pl.Float64)


def _text(frame: pl.DataFrame, f: FieldSpec, column: str) -> pl.Series:
    raw = frame[column]
    if f.missing:
        raw = pl.select(pl.when(raw.is_in(list(f.missing))).then(None).otherwise(raw)).to_series()
    return raw


def _derive(spec: DatasetSpec, f: FieldSpec, frame: pl.DataFrame, files) -> pl.Series:
    raw = _text(frame, f, f.columns[0])
    mapping = {}
    for value in raw.drop_nulls().unique().to_list():
        try:
            stamp = (datetime.fromtimestamp(float(value), tz=timezone.utc) if f.time_format == "unix"
                     else datetime.strptime(value, f.time_format))
        except (ValueError, OverflowError, OSError):
            n = int((raw == value).arg_true()[0])
            raise DataError(f"{_locate(frame, files, n, spec.format)}: {f.columns[0]} {value!r} does not match "
                            f"time_format {f.time_format!r} (field {f.name}, {spec.where('time_format', 'field', f.index)})"
                            f". Fix the line or the format (Python strptime codes such as %y%m%d%H, or \"unix\" for Unix "
                            f"seconds).") from None
        mapping[value] = f"{stamp.hour:02d}" if f.derive == "hour_of_day" else WEEKDAYS[stamp.weekday()]
    return raw.replace_strict(mapping, default=None, return_dtype=pl.String)


def _numeric(spec: DatasetSpec, f: FieldSpec, frame: pl.DataFrame, files) -> pl.Series:
    raw = _text(frame, f, f.columns[0])
    number = _as_number(raw)
    bad = ((number.is_null() & raw.is_not_null()) | number.is_nan() | number.is_infinite()).arg_true()
    _refuse_first(bad, spec, frame, files, lambda n: (
        f"{f.columns[0]} is {raw[n]!r}, not a finite number, but field {f.name} is numeric "
        f"({spec.where('kind', 'field', f.index)}). Fix the line, or make the field categorical."))
    return number.fill_null(f.fill)


def _multivalued(f: FieldSpec, frame: pl.DataFrame) -> pl.Series:
    if f.delimiter is not None:
        lists = _text(frame, f, f.columns[0]).str.split(f.delimiter)
    else:
        lists = pl.select(pl.concat_list([_text(frame, f, c) for c in f.columns])).to_series()
    drop = [""] + list(f.missing)
    return lists.list.eval(pl.element().filter(pl.element().is_not_null() & ~pl.element().is_in(drop)))


def sample_frame(spec: DatasetSpec, frame: pl.DataFrame, files: list[Path]) -> pl.DataFrame:
    """One raw value column per field (text, list of text, or a filled number), the label, source and line."""
    columns = {}
    for f in spec.fields:
        if f.kind == "numeric":
            columns[f.name] = _numeric(spec, f, frame, files)
        elif f.kind == "multivalued":
            columns[f.name] = _multivalued(f, frame)
        elif f.derive is not None:
            columns[f.name] = _derive(spec, f, frame, files)
        else:
            columns[f.name] = _text(frame, f, f.columns[0])
    columns["label"] = pl.Series(labels_of(spec, frame, files))
    out = pl.DataFrame({name: s.alias(name) for name, s in columns.items()})
    return out.with_columns(frame[LINE].alias(LINE), frame[FILE].alias(FILE))


# ----------------------------------------------------------------------------- split and schema

def stratified_folds(labels: np.ndarray, folds: int = 10, seed: int = 2018) -> np.ndarray:
    """Each sample's fold 0..folds-1: each class is shuffled (seeded) and dealt round-robin, so every fold
    has the same share of clicks, as sklearn's StratifiedKFold(shuffle=True) gives (not the same rows)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        fold[rows[rng.permutation(len(rows))]] = np.arange(len(rows)) % folds
    return fold


def split_rows(spec: DatasetSpec, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The authors' protocol by default: 10 stratified folds (seed 2018), fold 1 test, fold 2 validation,
    folds 3-10 training (80/10/10). `split = "random"` is MovieLens's: a seeded random 80/10/10."""
    if len(labels) < spec.folds:
        raise DataError(f"only {len(labels)} samples; at least {spec.folds} are needed to split them.")
    if spec.split == "random":
        return split_indices(len(labels), spec.seed)
    fold = stratified_folds(labels, spec.folds, spec.seed)
    return {"train": np.flatnonzero(fold >= 2), "val": np.flatnonzero(fold == 1), "test": np.flatnonzero(fold == 0)}


def value_counts(values: pl.Series) -> pl.DataFrame:
    """Columns `value` (text) and `count` (UInt64) of the non-null values: what `vocab_of` takes; counts of
    several batches add up by `pl.concat(...).group_by("value").agg(pl.col("count").sum())`."""
    counts = values.drop_nulls().value_counts(name="count")
    return counts.select(pl.col(values.name).cast(pl.String).alias("value"), pl.col("count").cast(pl.UInt64))


def vocab_of(counts: pl.DataFrame, min_count: int) -> tuple[str, ...]:
    """`<unknown>`, then the values seen at least `min_count` times, the most frequent first (ties by value)."""
    kept = counts.filter((pl.col("count") >= min_count) & (pl.col("value") != UNKNOWN))
    kept = kept.sort(["count", "value"], descending=[True, False])
    return (UNKNOWN,) + tuple(kept["value"].to_list())


def schema_from(spec: DatasetSpec, counts: dict[str, pl.DataFrame], ranges: dict[str, tuple[float, float] | None],
                longest: dict[str, int]) -> Schema:
    """The schema from what was counted: per categorical/multi-valued field its training `counts`
    (`value_counts`), per numeric field the (min, max) of its transformed values over all samples (None: no
    samples), per multi-valued field its longest list over all samples. `build_schema` and
    `autoint.datasets.prepared` (which counts batch by batch) both end here."""
    fields = []
    for f in spec.fields:
        common = dict(display=f.display, role=f.role)
        if f.kind == "numeric":
            low, high = ranges[f.name] or (0.0, 1.0)
            if high <= low:
                high = low + 1.0
            fields.append(Field(f.name, "numeric", min_value=low, max_value=high, role=f.role, format=f.format,
                                transform=f.transform, edges=f.edges))
        elif f.kind == "multivalued":
            max_len = f.max_len or min(max(longest[f.name] or 1, 1), MAX_VALUES)
            fields.append(Field(f.name, "multivalued", vocab_of(counts[f.name], f.min_count), max_len=max_len,
                                **common))
        else:
            fields.append(Field(f.name, "categorical", vocab_of(counts[f.name], f.min_count), **common))
    return Schema(tuple(fields))


def numeric_range(spec_field: FieldSpec, values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of a numeric field's values after its transform; None for no values.

    Every transform is nondecreasing on each of its pieces (log2: the values up to 2 stay, those above become
    floor(ln(v)^2); bucket and minmax: one piece), so the transformed ends are among the transforms of each
    piece's raw min and max: four values are transformed instead of all of them (no temporaries the size of
    the column; the same answer as transforming every value, tests/test_prepare.py)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return None
    field = Field(spec_field.name, "numeric", transform=spec_field.transform, edges=spec_field.edges)
    pieces = [values > 2, values <= 2] if spec_field.transform == "log2" else [None]
    ends = []
    for piece in pieces:
        if piece is None:
            ends += [values.min(), values.max()]
        elif piece.any():
            ends += [values.min(where=piece, initial=np.inf), values.max(where=piece, initial=-np.inf)]
    t = field.transformed(np.array(ends, dtype=np.float64))
    return float(t.min()), float(t.max())


def build_schema(spec: DatasetSpec, frame: pl.DataFrame, train: np.ndarray) -> Schema:
    """Vocabularies from the training split only; numeric ranges (after the transform) over all samples."""
    rows = frame[train]
    counts, ranges, longest = {}, {}, {}
    for f in spec.fields:
        if f.kind == "numeric":
            ranges[f.name] = numeric_range(f, frame[f.name].to_numpy())
        elif f.kind == "multivalued":
            longest[f.name] = int(frame[f.name].list.len().max() or 1)
            counts[f.name] = value_counts(rows[f.name].explode())
        else:
            counts[f.name] = value_counts(rows[f.name])
    return schema_from(spec, counts, ranges, longest)


# ----------------------------------------------------------------------------- the data set

def spec_fingerprint(spec: DatasetSpec, files: list[Path]) -> str:
    """The files' bytes and what the spec says about them (not its comments or provenance notes)."""
    digest = hashlib.sha256(file_fingerprint(files).encode())
    digest.update(json.dumps(spec_settings(spec), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def spec_settings(spec: DatasetSpec) -> dict:
    """What the spec says about its files: its TOML without comments, description or provenance notes."""
    return {k: v for k, v in tomllib.loads(spec.text).items() if k not in ("about", "description")}


def load_spec_dataset(spec: DatasetSpec, data_dir: str | Path, schema: Schema | None = None) -> Dataset:
    """Read, label, split and encode. Pass `schema` (from a checkpoint) to encode with its vocabularies."""
    data_dir = Path(data_dir)
    raw, files = read_frame(spec, data_dir)
    frame = sample_frame(spec, raw, files)
    del raw
    labels = frame["label"].to_numpy()
    splits = split_rows(spec, labels)
    if schema is None:
        schema = build_schema(spec, frame, splits["train"])
    # Missing categorical values are null in the frame (shown as missing) and `<unknown>` for the model.
    fill = [pl.col(f.name).fill_null(UNKNOWN) for f in schema.fields if f.kind == "categorical"]
    inputs = encode_frame(schema, frame.with_columns(fill) if fill else frame)
    gzipped = [p.name for p in files if is_gzip(p)]
    source = {"dataset": spec.name, "spec": str(spec.path) if spec.path else None, "data_dir": str(data_dir),
              "files": [p.name for p in files], **({"gzip": gzipped} if gzipped else {}),
              "split": ("random 80/10/10, seed %d" % spec.seed) if spec.split == "random" else
                       f"{spec.folds} stratified folds, seed {spec.seed}: fold 1 test, fold 2 validation, the rest "
                       f"training",
              **({"about": spec.about} if spec.about else {})}
    import torch  # here, not at the top: `prepare` imports this module and needs no torch
    return Dataset(schema, frame, inputs, torch.from_numpy(labels.astype(np.float32)), splits,
                   spec_fingerprint(spec, files), source=source)
