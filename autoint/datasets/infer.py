"""Guess a data set spec from a CSV, TSV or Parquet file: every choice written down with what it rests on.

    inferred = infer_spec("clicks.csv", label="clicked")    # or label="rating > 3", or None: the one candidate
    text = inferred.to_toml(spec_dir=Path("."))             # TOML that `spec.read_spec` takes as it is

Only the first `sample_rows` rows are read (polars parses them as text, then each column is read as numbers where
it can be), so the answer is the same on every run and says how many rows it saw. The rules, in order:

- separator: of tab, comma, semicolon and pipe, one that splits the first line and most of the first 100
  (quotes respected) into the same number of columns, more than one; the most columns wins, pipe only when no
  other fits. Every line read must then have that many columns (a quoted value spanning lines is refused).
- header: the first line is names when none of its cells is empty or a number and either a later line has numbers
  in a column, or no first-line cell recurs in its column. A file without one gets `columns = ["c0", "c1", ...]`.
- label: `label=` a column (0/1; two other numbers: a rule `col == larger`) or a rule in the spec's `label`
  syntax ("rating > 3"). Without it, the columns holding exactly two numbers in every row are the candidates:
  exactly one is taken, several or none are refused, naming them.
- left out: empty or constant columns; free text (most values have a space, at least 20 characters on average,
  at least half distinct); row ids (a distinct value in at least 95% of the rows, not a time and not
  fractional numbers).
- kind (one [[field]] per column, named as the column where it is a valid field name): multivalued when at
  least a quarter of the text values hold `|`, `;` or `,` (not the separator; a comma
  inside quoted values) and the pieces recur; numeric for numbers with fractions, for whole numbers named like a
  time, and for other whole numbers with more than `FEW_CODES` distinct values that fill their range (distinct
  values between the 1st and 99th percentile over the width of that range, at least `SPARSE_CODES`); categorical
  otherwise: text, few distinct whole numbers, whole numbers named like an id, codes spread thin, or a column
  mixing mostly numbers with text. Text values that only say "missing" (NA, null, ...) beside numbers become
  `missing`. Empty cells are missing values (a numeric field's `fill`, 0).
- role: from the column's name only (user, item or context words, `ROLE_WORDS`); a file without a header gets none.

Transforms (log2, buckets), minimum counts, derived time fields and joins are not guessed: add them by hand.
Encodings other than UTF-8 are refused (naming the line, and whether latin-1 reads it): the loader reads UTF-8.
"""
from __future__ import annotations

import csv
import difflib
import gzip
import io
import json
import os
import re
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from ..errors import DataError, UsageError
from .generic import field_count_error, is_gzip
from .spec import FIELD_NAME, KINDS, LABEL_RULE, parse_spec

SEPARATORS = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
DELIMITERS = ("|", ";", ",")  # inside a value: a multi-valued field's
SNIFF_LINES = 100
FEW_CODES = 10  # at most this many distinct whole numbers: codes (categorical), not quantities
SPARSE_CODES = 0.05  # distinct whole numbers over the width of their 1st-99th percentile range: below, codes
ROW_ID_SHARE = 0.95
MULTI_SHARE = 0.25
FREE_TEXT_LENGTH = 20
MISSING_MARKERS = ("", "-", "?", "N/A", "NA", "NaN", "None", "NULL", "n/a", "na", "nan", "none", "null")
UNIX_TIME = (1e9, 2.2e9)  # Unix seconds from 2001 to 2039: a time-named column in this range is shown as a time
ROLE_WORDS = {
    "user": ("user", "users", "userid", "uid", "customer", "client", "member", "visitor", "account", "person",
             "gender", "sex", "age", "occupation", "zipcode", "zip"),
    "item": ("item", "itemid", "movie", "movieid", "film", "ad", "ads", "adid", "advertiser", "product",
             "productid", "sku", "article", "song", "track", "book", "title", "genre", "brand", "campaign",
             "creative", "keyword", "description", "displayurl", "price"),
    "context": ("hour", "time", "timestamp", "date", "day", "weekday", "week", "month", "shown", "device", "site",
                "app", "page", "position", "pos", "depth", "query", "session", "country", "city", "region",
                "location", "geo", "os", "browser", "platform", "banner", "slot", "placement", "conn", "network"),
}
ID_WORDS = ("id", "ids", "uid", "userid", "itemid", "movieid", "adid", "productid", "key", "code", "hash")
TIME_WORDS = ("hour", "time", "timestamp", "date", "ts", "at", "epoch")


@dataclass(frozen=True)
class ColumnChoice:
    """What became of one source column: a field of `kind` (None: left out, `left_out` says why)."""

    column: str
    name: str  # the field's name: the column's, made a valid field name
    kind: str | None
    evidence: str
    left_out: str | None = None
    role: str | None = None
    role_evidence: str = ""
    delimiter: str | None = None
    missing: tuple[str, ...] = ()
    format: str | None = None
    transform: str | None = None  # never guessed: set by hand (autoint.workspace.adding's table); None: minmax
    min_count: int | None = None  # never guessed: set by hand; None: the spec's default


@dataclass(frozen=True)
class InferredSpec:
    """The choices `infer_spec` made about a file, each with its evidence; `to_toml` writes them as a spec."""

    path: Path
    name: str
    format: str  # "csv" or "parquet"
    separator: str | None
    separator_evidence: str
    header: bool
    header_evidence: str
    columns: tuple[str, ...]  # every column, in file order (generated names without a header)
    label: str  # the spec's `label`: a column or a rule
    label_evidence: str
    rows: int  # rows read
    more_rows: bool  # the file has rows beyond those
    choices: tuple[ColumnChoice, ...]  # every column but the label's

    @property
    def fields(self) -> tuple[ColumnChoice, ...]:
        return tuple(c for c in self.choices if c.kind is not None)

    @property
    def left_out(self) -> tuple[ColumnChoice, ...]:
        return tuple(c for c in self.choices if c.kind is None)

    def to_toml(self, spec_dir: str | os.PathLike | None = None) -> str:
        """The spec as TOML, every choice commented. `spec_dir`: the folder the spec will be saved in (the
        default data folder): the file is named relative to it when inside it; otherwise (or None) by its bare
        name, with a comment to pass --data-dir."""
        return render_toml(self, spec_dir)


# ----------------------------------------------------------------------------- inference

def infer_spec(path: str | os.PathLike, label: str | None = None, *, sample_rows: int = 50_000) -> InferredSpec:
    """Read the first `sample_rows` rows of `path` and choose separator, header, label and each column's fate.
    Raises DataError (an empty, binary or non-UTF-8 file, a ragged line) or UsageError (no label, or several
    candidates, or a label column that needs a rule), each naming the file, line or column and the fix."""
    path = Path(path)
    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 10:
        raise UsageError(f"--sample-rows {sample_rows!r}: give a whole number of at least 10.")
    if not path.is_file():
        raise DataError(f"{path}: no such file. Give the path of a CSV, TSV or Parquet file.")
    if _is_parquet(path):
        frame, more = _read_parquet(path, sample_rows)
        sep, sep_evidence, header, header_evidence = None, "", True, ""
    else:
        lines, more = _read_lines(path, sample_rows + 1)
        sep, sep_evidence = _separator(path, lines)
        header, header_evidence, frame = _frame(path, lines, sep)
        more = more or frame.height > sample_rows  # one line more than `sample_rows` was read
        frame = frame.head(sample_rows)
    if frame.height == 0:
        raise DataError(f"{path}: no rows of data, only column names ({_listed(frame.columns, 10)}).")
    first_line = 2 if header and sep is not None else 1
    label_column, label_text, label_evidence = _label(path, frame, label, first_line)
    names = _field_names([c for c in frame.columns if c != label_column])
    choices = tuple(_choose(frame[c], names[c], frame.height, named=header) for c in frame.columns
                    if c != label_column)
    return InferredSpec(path=path, name=_spec_name(path), format="parquet" if sep is None else "csv", separator=sep,
                        separator_evidence=sep_evidence, header=header, header_evidence=header_evidence,
                        columns=tuple(frame.columns), label=label_text, label_evidence=label_evidence,
                        rows=frame.height, more_rows=more, choices=choices)


# ----------------------------------------------------------------------------- reading the sample

def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def _read_parquet(path: Path, rows: int) -> tuple[pl.DataFrame, bool]:
    try:
        lf = pl.scan_parquet(path)
        frame = lf.head(rows + 1).collect()
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]:.160}).") from exc
    return frame.head(rows).with_columns(pl.all().cast(pl.String)), frame.height > rows


def _read_lines(path: Path, limit: int) -> tuple[list[str], bool]:
    """The first `limit` lines as text (line ends stripped, trailing blank lines dropped) and whether more follow.
    Refuses an empty file, a binary one, and bytes that are not UTF-8 (naming the line)."""
    lines, more = [], False
    with (gzip.open if is_gzip(path) else open)(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number > limit:
                more = True
                break
            if b"\0" in raw:
                raise DataError(f"{path}, line {number}: a NUL byte: this is not a text file. infer-spec reads "
                                f"CSV or TSV text (plain or gzipped) and Parquet.")
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as exc:
                raise _encoding_error(path, number, raw, exc) from None
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: the file is empty{' (only blank lines)' if path.stat().st_size else ''}. Give a "
                        f"CSV or TSV file with a label column and at least one more column.")
    return lines, more


class EncodingError(DataError):
    """Bytes that are not UTF-8: `line` (1-based) holds the first; `latin1` says whether that line reads as
    printable latin-1 text (the add-a-data-set page then offers to convert the file: adding.convert_from_latin1)."""

    def __init__(self, message: str, line: int, latin1: bool):
        super().__init__(message)
        self.line, self.latin1 = line, latin1


def _encoding_error(path: Path, number: int, raw: bytes, exc: UnicodeDecodeError) -> EncodingError:
    """Which byte of which line is not UTF-8, what it would be in latin-1, and the fix."""
    byte = raw[exc.start]
    as_latin1 = raw.decode("latin-1").rstrip("\r\n")
    printable = all(ch.isprintable() or ch == "\t" for ch in as_latin1)
    column = len(raw[:exc.start].decode("utf-8", errors="replace")) + 1
    if printable:
        latin = (f"It reads as latin-1 (byte 0x{byte:02x} is {chr(byte)!r} there: {as_latin1!r:.80}). Specs read "
                 f"UTF-8 only: convert the file, e.g. iconv -f latin1 -t utf-8 {path.name} > "
                 f"{path.stem}-utf8{path.suffix}, and run infer-spec on the copy.")
    else:
        latin = (f"It is not latin-1 text either (byte 0x{byte:02x} is a control character there): is it the "
                 f"file you meant? Convert it to UTF-8 from its real encoding (iconv -f ENCODING -t utf-8).")
    return EncodingError(f"{path}, line {number}, character {column}: byte 0x{byte:02x} is not UTF-8. {latin}",
                         number, printable)


def _split_counts(lines: list[str], sep: str) -> list[int]:
    return [len(row) for row in csv.reader(lines, delimiter=sep, quotechar='"')]


def _separator(path: Path, lines: list[str]) -> tuple[str, str]:
    """The separator that splits the first line and most of the next ones into the same number (> 1) of
    columns, and why (a line that differs is then refused by `_check_counts`, naming it)."""
    head = lines[:SNIFF_LINES]
    fits = {}
    for sep in SEPARATORS:
        counts = _split_counts(head, sep)
        agree = sum(c == counts[0] for c in counts)
        if counts[0] > 1 and agree > len(counts) / 2:
            fits[sep] = (counts[0], agree)
    if not fits:
        shown = ", ".join(SEPARATORS.values())
        raise DataError(f"{path}: no separator found: none of {shown} splits the first line and most of the next "
                        f"{len(head) - 1} into the same number of columns (line 1: {head[0]!r:.120}). A data set "
                        f"needs a label column and at least one more.")
    usual = {s: n for s, n in fits.items() if s != "|"} or fits
    sep = max(usual, key=lambda s: (usual[s], -list(SEPARATORS).index(s)))
    columns, agree = usual[sep]
    lines_said = f"each of the first {len(head):,} lines" if agree == len(head) else \
        f"{agree:,} of the first {len(head):,} lines"
    return sep, f"{columns} {SEPARATORS[sep]}-separated columns on {lines_said}"


def _is_number(text: str | None) -> bool:
    try:
        return text is not None and abs(float(text)) != float("inf")
    except ValueError:
        return False


def _frame(path: Path, lines: list[str], sep: str) -> tuple[bool, str, pl.DataFrame]:
    """(header?, why, the rows as text columns): parsed by polars, every line checked for its column count."""
    expected = len(next(csv.reader(lines[:1], delimiter=sep)))
    _check_counts(path, lines, sep, expected)
    try:
        raw = pl.read_csv(io.BytesIO("\n".join(lines).encode()), separator=sep, has_header=False, infer_schema=False,
                          new_columns=[f"c{i}" for i in range(expected)])
    except pl.exceptions.ComputeError as exc:  # e.g. a quote left open
        raise DataError(f"{path}: cannot be read as CSV ({str(exc).splitlines()[0]:.160}). Check its quotes.") from exc
    first = [raw[c][0] for c in raw.columns]
    header, evidence = _has_header(raw, first)
    if not header:
        return False, evidence, raw
    for i, name in enumerate(first):
        if name in first[:i]:
            raise DataError(f"{path}, line 1: the header names {name!r} twice (columns {first.index(name) + 1} "
                            f"and {i + 1}); give each column its own name.")
    return True, evidence, raw.slice(1).rename(dict(zip(raw.columns, first)))


def _check_counts(path: Path, lines: list[str], sep: str, expected: int) -> None:
    """Every line of the sample has `expected` columns (lines with quotes: by the CSV reader), as generic.py
    checks the whole file when it is loaded."""
    counts = pl.Series(lines).str.count_matches(sep, literal=True).to_list()
    for number, (line, count) in enumerate(zip(lines, counts), start=1):
        if not line.strip():
            raise field_count_error(path, number, None, expected, sep)
        if count != expected - 1 and ('"' not in line or _split_counts([line], sep)[0] != expected):
            raise field_count_error(path, number, line, expected, sep)


def _has_header(raw: pl.DataFrame, first: list) -> tuple[bool, str]:
    shown = ", ".join(_show(v) for v in first[:4]) + (", ..." if len(first) > 4 else "")
    numbers = [i for i, v in enumerate(first) if v is None or _is_number(v)]
    if numbers:
        what = "empty" if first[numbers[0]] is None else f"the number {_show(first[numbers[0]])}"
        return False, f"no header: the first line's column {numbers[0] + 1} is {what}"
    if raw.height == 1:
        return True, f"the first line is names ({shown}) and there is no other line"
    rest = raw.slice(1)
    numeric = [c for c in raw.columns if _mostly_numbers(rest[c].drop_nulls())]
    if numeric:
        names = ", ".join(first[raw.columns.index(c)] for c in numeric[:3])
        return True, f"the first line is names ({shown}); later lines have numbers in {names}"
    if not any(rest[c].is_in([v]).any() for c, v in zip(raw.columns, first)):
        return True, f"the first line is names ({shown}): none of its cells recurs in its column"
    return False, "no header: the first line's cells recur in later lines as values"


def _mostly_numbers(values: pl.Series) -> bool:
    """At least 90% of the (non-empty) values are numbers."""
    return values.len() > 0 and _numbers(values).len() >= 0.9 * values.len()


def _numbers(values: pl.Series) -> pl.Series:
    """The values that are finite numbers, as Float64."""
    parsed = values.str.strip_chars().cast(pl.Float64, strict=False)
    return parsed.filter(parsed.is_not_null() & parsed.is_finite())


# ----------------------------------------------------------------------------- the label

def _label(path: Path, frame: pl.DataFrame, given: str | None, first_line: int) -> tuple[str, str, str]:
    """(label column, the spec's label text, evidence)."""
    rows = frame.height
    if given is None:
        candidates = [c for c in frame.columns if _two_numbers(frame[c])]
        if len(candidates) == 1:
            column, text, evidence = _label_column(path, frame, candidates[0], first_line)
            return column, text, f"the only column with two values: {evidence}"
        if candidates:
            listed = ", ".join(f"{c} ({' and '.join(_show(v) for v in _values(frame[c]))})" for c in candidates)
            raise UsageError(f"{path}: {len(candidates)} columns could be the label, each holding exactly two "
                             f"values in {rows:,} rows: {listed}. Choose one: --label {candidates[0]} (or a rule "
                             f"such as --label \"{candidates[0]} == 1\").")
        numeric = [c for c in frame.columns if frame[c].null_count() == 0 and _mostly_numbers(frame[c])]
        example = (f"{numeric[0]} > {_numbers(frame[numeric[0]]).min():g}" if numeric else "rating > 3")
        raise UsageError(f"{path}: no column could be the label: none holds exactly two numbers in all of the first "
                         f"{rows:,} rows (its columns: {_listed(frame.columns)}). Give a 0/1 column (--label "
                         f"COLUMN) or a rule that says which rows are clicks, e.g. --label \"{example}\".")
    match = LABEL_RULE.match(given)
    if not match:
        raise UsageError(f"--label {given!r}: give a 0/1 column (--label clicked) or a rule (--label \"rating > 3\": "
                         f"a column, one of > >= < <= == != and a number).")
    column, op, number = match.groups()
    if column not in frame.columns:
        close = difflib.get_close_matches(column, frame.columns, n=1)
        raise UsageError(f"--label {given!r}: {path} has no column {column!r}"
                         f"{'; did you mean ' + repr(close[0]) + '?' if close else ''} Its columns: "
                         f"{_listed(frame.columns)}.")
    if op is None:
        return _label_column(path, frame, column, first_line)
    values = _label_numbers(path, frame, column, first_line)
    text = f"{column} {op} {number}"
    positives = int(pl.select(_compare(pl.lit(values), op, float(number))).to_series().sum())
    return column, text, f"given; true in {positives:,} of {rows:,} rows ({positives / rows:.1%})"


def _compare(expr: pl.Expr, op: str, threshold: float) -> pl.Expr:
    return {">": expr > threshold, ">=": expr >= threshold, "<": expr < threshold, "<=": expr <= threshold,
            "==": expr == threshold, "!=": expr != threshold}[op]


def _label_column(path: Path, frame: pl.DataFrame, column: str, first_line: int) -> tuple[str, str, str]:
    """A label given (or found) as a column: 0/1 as it is; two other numbers: `column == larger`."""
    if not _name_ok(column):
        raise UsageError(f"label column {column!r}: a spec's label cannot name a column with spaces or < > = !; "
                         f"rename the column in the file.")
    values = _label_numbers(path, frame, column, first_line)
    distinct = sorted(values.unique().to_list())
    rows = frame.height
    if len(distinct) > 2:
        middle = values.median()
        raise UsageError(f"--label {column}: the column has {len(distinct):,} values in {rows:,} rows "
                         f"({', '.join(f'{v:g}' for v in distinct[:6])}{', ...' if len(distinct) > 6 else ''}), "
                         f"not two: give a rule that says which are clicks, e.g. --label \"{column} > {middle:g}\".")
    if distinct == [0.0, 1.0] or distinct in ([0.0], [1.0]):
        ones = int((values == 1).sum())
        return column, column, f"0 and 1, 1 in {ones:,} of {rows:,} rows ({ones / rows:.1%})"
    if len(distinct) == 1:
        raise UsageError(f"--label {column}: every one of the {rows:,} rows holds {distinct[0]:g}: a label needs "
                         f"clicks and non-clicks. Give a rule, e.g. --label \"{column} > {distinct[0]:g}\", or "
                         f"another column.")
    high = distinct[1]
    text = f"{column} == {high:g}"
    ones = int((values == high).sum())
    return column, text, (f"{distinct[0]:g} and {high:g}, the larger counted as a click: in {ones:,} of {rows:,} "
                          f"rows ({ones / rows:.1%})")


def _label_numbers(path: Path, frame: pl.DataFrame, column: str, first_line: int) -> pl.Series:
    """The label column as numbers; refuses an empty cell or text, naming the line."""
    raw = frame[column]
    values = raw.str.strip_chars().cast(pl.Float64, strict=False)
    bad = (values.is_null() | values.is_nan() | values.is_infinite()).arg_true()
    if len(bad):
        n = int(bad[0])
        what = "empty" if raw[n] is None else f"{raw[n]!r}, not a number"
        text_values = raw.filter(values.is_null()).drop_nulls().unique().sort().to_list()
        hint = (f" It holds text ({', '.join(map(repr, text_values[:4]))}): recode it as 0/1 first."
                if len(text_values) >= 2 else " Fix or remove the line, or choose another --label.")
        raise DataError(f"{path}, line {n + first_line}: the label column {column} is {what}.{hint}")
    return values


def _two_numbers(column: pl.Series) -> bool:
    return column.null_count() == 0 and len(_values(column)) == 2 and _numbers(column).len() == column.len()


def _values(column: pl.Series) -> list[str]:
    return sorted(column.drop_nulls().unique().to_list())


# ----------------------------------------------------------------------------- each column

def _words(name: str) -> list[str]:
    """A column name's words, lower case: "UserID" -> user, id; "site_category" -> site, category."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


def _role(column: str, named: bool) -> tuple[str | None, str]:
    if not named:
        return None, ""
    for word in _words(column):
        for role, words in ROLE_WORDS.items():
            if word in words:
                return role, f"the name has {word!r}"
    return None, ""


def _choose(raw: pl.Series, name: str, rows: int, named: bool) -> ColumnChoice:
    """One column's kind or why it is left out, with the evidence; its role from its name."""
    column = raw.name
    choice = _kind(raw, name, rows, named)
    if choice.kind is None:
        return choice
    role, why = _role(column, named)
    return replace(choice, role=role, role_evidence=why)


def _left_out(column: str, name: str, why: str) -> ColumnChoice:
    return ColumnChoice(column, name, None, why, left_out=why)


def _kind(raw: pl.Series, name: str, rows: int, named: bool) -> ColumnChoice:
    """Left out (empty, constant), or by what its values are: numbers, numbers and text, or text."""
    column, values = raw.name, raw.drop_nulls()
    n, distinct, empty = values.len(), values.n_unique(), raw.null_count()
    if n == 0:
        return _left_out(column, name, f"empty in all {rows:,} rows")
    if distinct == 1 and empty == 0:
        return _left_out(column, name, f"constant: {_show(values[0])} in every one of the {rows:,} rows")
    of = f"{distinct:,} distinct values in {rows:,} rows" + (f" ({empty:,} empty)" if empty else "")
    numbers = _numbers(values)
    parsed = values.str.strip_chars().cast(pl.Float64, strict=False)
    text = values.filter(parsed.is_null() | ~parsed.is_finite())
    markers = sorted(set(text.unique().to_list()))
    if numbers.len() and markers and all(m.strip() in MISSING_MARKERS for m in markers):
        said = f"; {text.len():,} say missing ({', '.join(map(_show, markers))})"
        return _numeric_kind(column, name, numbers, rows, named, said, tuple(markers))
    if numbers.len() == n:
        return _numeric_kind(column, name, numbers, rows, named, "", ())
    if numbers.len() >= 0.5 * n:
        if distinct >= ROW_ID_SHARE * rows:
            return _left_out(column, name, f"a row id: {of}")
        return ColumnChoice(column, name, "categorical", f"mixes numbers and text: {text.len():,} of {n:,} values "
                                                         f"are not numbers; {of}")
    if numbers.len():  # mostly text: a few values that read as numbers ("12e45678" among hex hashes)
        of += f"; {numbers.len():,} read as numbers"
    return _text_kind(column, name, values, rows, of)


def _text_kind(column: str, name: str, values: pl.Series, rows: int, of: str) -> ColumnChoice:
    """Free text (left out), several values in one (multivalued), a row id (left out), or categorical."""
    n, distinct = values.len(), values.n_unique()
    lengths = values.str.len_chars()
    spaced = values.str.contains(" ", literal=True).sum()
    if spaced >= 0.5 * n and lengths.mean() >= FREE_TEXT_LENGTH and distinct >= 0.5 * n:
        return _left_out(column, name, f"free text: {distinct:,} distinct values, {lengths.mean():.0f} characters "
                                       f"on average, {spaced / n:.0%} with spaces")
    for delimiter in DELIMITERS:
        holding = values.str.contains(delimiter, literal=True).sum()
        if holding >= MULTI_SHARE * n:
            pieces = values.str.split(delimiter).explode().str.strip_chars()
            pieces = pieces.filter(pieces != "")
            if pieces.n_unique() < distinct:
                return ColumnChoice(column, name, "multivalued", f"{_show(delimiter)} inside {holding:,} of {n:,} "
                                    f"values ({holding / n:.0%}); {pieces.n_unique():,} distinct values after "
                                    f"splitting", delimiter=delimiter)
    if distinct >= ROW_ID_SHARE * rows:
        return _left_out(column, name, f"a row id: {of}")
    return ColumnChoice(column, name, "categorical", f"text: {of}")


def _numeric_kind(column: str, name: str, numbers: pl.Series, rows: int, named: bool, said: str,
                  missing: tuple[str, ...]) -> ColumnChoice:
    """A column of numbers (beside empty cells or missing markers): numeric, categorical codes, or a row id."""
    distinct = numbers.n_unique()
    low, high = numbers.min(), numbers.max()
    words = set(_words(column)) if named else set()
    of = f"{distinct:,} distinct numbers in {rows:,} rows{said}"

    def keep(kind: str, evidence: str, **extra) -> ColumnChoice:
        return ColumnChoice(column, name, kind, evidence, missing=missing, **extra)

    if not (numbers == numbers.floor()).all():
        return keep("numeric", f"{of}, from {_number(low)} to {_number(high)}, not all whole")
    if words & set(TIME_WORDS):
        stamp = UNIX_TIME[0] <= low and high <= UNIX_TIME[1]
        return keep("numeric", f"{of}, whole, and the name says time"
                               f"{': Unix seconds from 2001 to 2039, shown as times' if stamp else ''}",
                    format="timestamp" if stamp else None)
    if distinct >= ROW_ID_SHARE * rows:
        return _left_out(column, name, f"a row id: {of}")
    if distinct <= FEW_CODES:
        return keep("categorical", f"{of}: at most {FEW_CODES} whole numbers are read as codes")
    if words & set(ID_WORDS):
        return keep("categorical", f"{of}, whole, and the name says id")
    p1, p99 = numbers.quantile(0.01, "nearest"), numbers.quantile(0.99, "nearest")
    inside = numbers.filter((numbers >= p1) & (numbers <= p99)).n_unique()
    fill = inside / (p99 - p1 + 1)
    if fill < SPARSE_CODES:
        return keep("categorical", f"{of}: codes, {inside:,} distinct whole numbers spread over {_number(p1)} to "
                                   f"{_number(p99)} (1st to 99th percentile), {_share(fill)} of that range")
    return keep("numeric", f"{of}, whole, from {_number(low)} to {_number(high)}")


def _field_names(columns: list[str]) -> dict[str, str]:
    """Each column's field name: itself when it is a valid one, else made one (letters, digits, _), unique."""
    out, taken = {}, set()
    for column in columns:
        name = column if FIELD_NAME.match(column) else re.sub(r"[^A-Za-z0-9_]", "_", column).strip("_")
        if not name or not name[0].isalpha():
            name = f"f_{name}"
        name, base, i = name[:64], name[:60], 2
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        out[column] = name
    return out


def _spec_name(path: Path) -> str:
    stem = path.name.split(".")[0] or "data"
    name = re.sub(r"[^A-Za-z0-9_.\-]", "-", stem).strip("-_.")[:64]
    return name if name and name[0].isalnum() else f"data-{name}".rstrip("-")


def _name_ok(column: str) -> bool:
    return bool(re.fullmatch(r"[^\s<>=!]+", column))


def _show(value) -> str:
    """A value for a comment: quoted, one line, at most 30 characters."""
    text = json.dumps(str(value), ensure_ascii=False)
    return text if len(text) <= 32 else text[:29] + '..."'


def _number(x: float) -> str:
    return f"{int(x):,}" if x == int(x) else f"{x:,.6g}"


def _share(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 else f"{x * 100:.2g}%"


def _listed(names, most: int = 20) -> str:
    return ", ".join(names[:most]) + (f" ... ({len(names)} in all)" if len(names) > most else "")


# ----------------------------------------------------------------------------- the TOML

def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _comment_text(text: str) -> str:
    """Text on one comment line: no line breaks or control characters (JSON escapes them)."""
    return json.dumps(" ".join(text.split()), ensure_ascii=False)[1:-1]


def _line(assignment: str, comment: str = "") -> str:
    return f"{assignment:<28}  # {' '.join(comment.split())}" if comment else assignment


def _files_entry(inferred: InferredSpec, spec_dir) -> tuple[str, str]:
    """(the `files` entry, a comment): relative to the spec's folder when the file is inside it, else the bare
    name and the --data-dir to pass."""
    if spec_dir is not None:
        try:
            relative = inferred.path.resolve().relative_to(Path(spec_dir).resolve())
            return relative.as_posix(), "read from the spec's folder (or --data-dir)"
        except ValueError:
            pass
    folder = inferred.path.parent.as_posix()
    if spec_dir is None and folder == ".":
        return inferred.path.name, "read from the spec's folder: save the spec beside the file"
    return inferred.path.name, f"the file is in {folder}: pass --data-dir {folder}"


HEADER = """\
# Inferred by `python -m autoint infer-spec` from {seen} of {file}.
# Each choice says what it rests on; check them against what you know of the data. Roles come from the column
# names only. Transforms (log2), min_count, derived time fields and joins are not guessed. Then:
# python -m autoint describe --spec THIS_FILE (its "checks" list what looks wrong: class balance, rare values,
# leaks, duplicates)."""


def render_toml(inferred: InferredSpec, spec_dir=None) -> str:
    """The spec text (see `InferredSpec.to_toml`); checked by `spec.parse_spec` before it is returned."""
    seen = f"the first {inferred.rows:,} rows" if inferred.more_rows else f"all {inferred.rows:,} rows"
    file_name, where = _files_entry(inferred, spec_dir)
    lines = [HEADER.format(seen=seen, file=_comment_text(inferred.path.name)),
             f"name = {_string(inferred.name)}",
             _line(f"files = [{_string(file_name)}]", where)]
    if inferred.format == "parquet":
        lines.append(_line('format = "parquet"', "the file starts with Parquet's magic bytes"))
    else:
        lines.append(_line(f"separator = {_string(inferred.separator)}", inferred.separator_evidence))
        lines.append(_line(f"header = {'true' if inferred.header else 'false'}", inferred.header_evidence))
        if not inferred.header:
            lines.append(f"columns = [{', '.join(_string(c) for c in inferred.columns)}]")
    lines.append(_line(f"label = {_string(inferred.label)}", inferred.label_evidence))
    for choice in inferred.fields:
        lines += ["", "[[field]]", f"name = {_string(choice.name)}"]
        if choice.column != choice.name:
            lines.append(f"column = {_string(choice.column)}")
        lines.append(_line(f"kind = {_string(choice.kind)}", choice.evidence))
        if choice.transform is not None:
            lines.append(f"transform = {_string(choice.transform)}")
        if choice.min_count is not None:
            lines.append(f"min_count = {choice.min_count}")
        if choice.delimiter is not None:
            lines.append(f"delimiter = {_string(choice.delimiter)}")
        if choice.missing:
            lines.append(_line(f"missing = [{', '.join(_string(m) for m in choice.missing)}]",
                               "text that means no value"))
        if choice.format is not None:
            lines.append(f"format = {_string(choice.format)}")
        if choice.role is not None:
            lines.append(_line(f"role = {_string(choice.role)}", choice.role_evidence))
    if inferred.left_out:
        lines += ["", "# Left out (write a [[field]] for one to use it after all):"]
        lines += [f"#   {_comment_text(c.column)}: {c.left_out}" for c in inferred.left_out]
    text = "\n".join(lines) + "\n"
    assert all(c.kind in KINDS for c in inferred.fields)
    parse_spec(text)  # what read_spec will say of it; a SpecError here is a bug of this module
    return text


def refuse_existing(out: str | os.PathLike, force: bool) -> Path:
    """`out`, unless it exists and `force` is not given (the CLI asks before reading the data file)."""
    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"--out {out}: the file exists; pass --force to replace it, or choose another path.")
    return out


def write_spec(text: str, out: str | os.PathLike, force: bool = False) -> Path:
    """Write `text` to `out` whole or not at all (a temporary file beside it, then os.replace); an existing
    `out` is refused unless `force`."""
    out = refuse_existing(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
