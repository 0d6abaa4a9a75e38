"""The `::`-separated `.dat` files of MovieLens (plain or gzipped): read with polars, every line checked.

Errors name the file, the line and the fix (`DataError`).
"""
from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path

import polars as pl

from ..data.dataset import DataError


def _gunzip(path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        # Decompress what can be, to say where the damage starts.
        partial, inflater = [], zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            for start in range(0, len(raw), 1 << 16):
                partial.append(inflater.decompress(raw[start:start + (1 << 16)]))
        except zlib.error:
            pass
        lines = b"".join(partial).count(b"\n")
        what = "is cut off" if isinstance(exc, EOFError) else "is damaged"
        raise DataError(f"{path}, line {lines + 1}: the gzip data {what} there, after {lines} complete lines "
                        f"({exc}). Download the file again (`python -m autoint download`).") from exc


def _read_text(path: Path, encoding: str) -> str:
    """Decode a data file. `latin-1` files (movies.dat) may also be UTF-8: a re-saved copy reads the same."""
    if not path.is_file():
        raise DataError(f"{path}: file not found. A MovieLens-1M folder holds users.dat, movies.dat and "
                        f"ratings.dat (or ratings.dat.gz); `python -m autoint download` fetches them.")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = _gunzip(path, raw)
    if encoding == "latin-1":  # every byte is latin-1, so only a valid UTF-8 file is read otherwise
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}, line {line}: bytes that are not {encoding} ({raw[exc.start:exc.end]!r}). "
                        f"MovieLens files are {encoding}; re-download the file.") from exc


# C0 controls but tab and newline, DEL and C1 controls: no MovieLens file has them (as latin-1, neither).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SEPARATOR_HINTS = (("\t", "tabs"), (",", "commas"), (";", "semicolons"), ("|", "'|'"), (":", "single colons"))


def read_dat(path: Path, columns: list[str], int_columns: list[str], encoding: str = "utf-8") -> pl.DataFrame:
    """Parse a `::`-separated file with polars, checking every line; errors name the line.

    polars reads one-byte separators only, so `::` becomes the unit separator first.
    """
    text = _read_text(path, encoding).replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected lines of the form {'::'.join(columns)}.")
    if text.startswith("\ufeff"):  # a byte-order mark from an editor
        text = text[1:]
    control = CONTROL.search(text)
    if control:
        line = text.count("\n", 0, control.start()) + 1
        column = control.start() - (text.rfind("\n", 0, control.start()) + 1) + 1
        raise DataError(f"{path}, line {line}, character {column}: control character {ord(control.group()):#04x}, "
                        f"which no MovieLens file has; the file is garbled (binary data, or text in another "
                        f"encoding). Re-download it.")
    lines = pl.Series("line", text.split("\n"))
    separators = lines.str.count_matches("::", literal=True)
    bad = (separators != len(columns) - 1).arg_true()
    if len(bad):
        n = int(bad[0])
        line = lines[n]
        hint = "the line is blank; remove it." if not line.strip() else "each line needs exactly these columns."
        if int(separators[n]) == 0:
            for char, name in SEPARATOR_HINTS:
                if line.count(char) == len(columns) - 1:
                    hint = f"the file seems to separate columns with {name}; MovieLens files use '::'."
                    break
        raise DataError(f"{path}, line {n + 1}: expected {len(columns)} '::'-separated columns "
                        f"({'::'.join(columns)}), got {int(separators[n]) + 1}: {line!r:.120}; {hint}")
    frame = pl.read_csv(io.BytesIO(text.replace("::", "\x1f").encode("utf-8")), separator="\x1f",
                        has_header=False, new_columns=columns, quote_char=None,
                        schema={c: pl.String for c in columns})
    for column in columns:  # polars reads an empty field as null
        empty = frame[column].is_null().arg_true()
        if len(empty):
            raise DataError(f"{path}, line {int(empty[0]) + 1}: column {column} is empty; "
                            f"every line needs {'::'.join(columns)}.")
    for column in int_columns:
        as_int = frame[column].cast(pl.Int64, strict=False)
        bad = as_int.is_null().arg_true()
        if len(bad):
            n = int(bad[0])
            raise DataError(f"{path}, line {n + 1}: column {column} must be an integer, got {frame[column][n]!r}.")
        frame = frame.with_columns(as_int.alias(column))
    return frame.with_row_index("line", offset=1)
