"""Adding a data set from a file: everything the app's "Add a data set" page does that is not drawing.

    staging = stage_upload(uploaded, uploaded.name)         # or stage_path("/srv/exports/clicks.csv")
    inferred = infer_spec(staging.file, label=None)         # autoint.datasets.infer: kinds, roles, left out
    rows = spec_rows(inferred)                              # the editable table, one row per column
    text = spec_from_rows(inferred, rows, name="clicks")    # TOML that read_spec takes (refuses a bad edit)
    saved = save_data_set(staging, "clicks", text)          # data/clicks/{clicks.csv, spec.toml}; saved.checks
    staging.discard()                                       # a cancelled flow (save moves the folder away)

Every write stays inside `sources.DATA_ROOT` (data/, relative to the working directory): the file is kept in a hidden
staging folder `data/.staging-<name>-<random>/` (never listed as a data set: `sources.data_sources` skips hidden
folders) and renamed to `data/<name>/` whole when saved, so a data set folder is complete or absent. Names are plain
slugs; a file's name keeps one extension of EXTENSIONS; a path that would resolve outside data/ is refused. An upload
over the limit (UPLOAD_LIMIT_MB, or $AUTOINT_UPLOAD_LIMIT_MB) is refused before anything is kept.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import re
import shutil
import time
import uuid
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..data.schema import ROLES
from ..datasets.checks import Check, check_data
from ..datasets.generic import is_gzip, load_spec_dataset
from ..datasets.infer import ColumnChoice, InferredSpec, write_spec
from ..datasets.spec import KINDS, parse_spec
from ..errors import DataError, UsageError
from ..files import swap_into_place
from . import sources

UPLOAD_LIMIT_MB = 200  # the largest file the page takes (uploaded or copied from a server path)
UPLOAD_LIMIT_ENV = "AUTOINT_UPLOAD_LIMIT_MB"
EXTENSIONS = (".csv", ".tsv", ".txt", ".parquet")  # each also gzipped (".csv.gz"), except Parquet
UPLOAD_TYPES = ("csv", "tsv", "txt", "parquet", "gz")  # st.file_uploader's `type` (the last extension only)
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
FILE_NAME = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]{0,63})(\.(?:csv|tsv|txt)(?:\.gz)?|\.parquet)", re.IGNORECASE)
RESERVED = ("cache", "synthetic", "prepared")  # folders of data/ the program writes itself
SPEC_FILE = "spec.toml"
STAGING_PREFIX = ".staging-"
STALE_STAGING_S = 24 * 3600  # a staging folder untouched this long was left by a session that went away
CHUNK = 1 << 20
PREVIEW_ROWS = 20
TABLE_TRANSFORMS = ("minmax", "log2")  # "bucket" needs edges: written by hand in the spec
TABLE_COLUMNS = ("column", "kind", "role", "min_count", "transform", "left out", "delimiter", "evidence")
DELIMITER_CHOICES = ("|", ";", ",")


# ----------------------------------------------------------------------------- names and limits

def check_name(name: str) -> str:
    """A data set's name: a plain slug (lower-case letters, digits, '-' and '_', at most 48, starting with a letter
    or digit), the name of its folder in data/."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED:
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        why = (f"data/{name}/ is the program's own folder" if name in RESERVED else
               "a name is lower-case letters, digits, '-' and '_' (at most 48, starting with a letter or digit; no "
               "'/', '..' or spaces)")
        raise UsageError(f"data set name {shown}: {why}, e.g. {suggest_name(name if isinstance(name, str) else '')!r}."
                         f" It names the folder data/NAME/.")
    return name


def suggest_name(file_name: str) -> str:
    """A valid name from a file's name: its stem, lower case, other characters as '-' ("My Clicks.csv.gz" ->
    "my-clicks")."""
    stem = Path(str(file_name).replace("\\", "/")).name.split(".")[0].lower()
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem).strip("-_")[:48].strip("-_")
    return slug if slug and slug not in RESERVED else f"{slug or 'my'}-data"


def check_file_name(file_name: str) -> str:
    """The name a data file is kept under: letters, digits, '-' and '_', then one extension of EXTENSIONS (plain
    text ones optionally gzipped); no folder, no '..'."""
    if not isinstance(file_name, str) or not FILE_NAME.fullmatch(file_name):
        stem = suggest_name(file_name if isinstance(file_name, str) else "")
        raise UsageError(f"file name {file_name!r}: give a name of letters, digits, '-' and '_' with one extension of "
                         f"{', '.join(EXTENSIONS)} (text ones may end in .gz), no folder and no '..', e.g. "
                         f"{stem}.csv. Rename the file and give it again.")
    return file_name


def upload_limit_mb() -> int:
    """The largest file taken, in MB (2**20 bytes): $AUTOINT_UPLOAD_LIMIT_MB, else UPLOAD_LIMIT_MB."""
    raw = os.environ.get(UPLOAD_LIMIT_ENV)
    if raw is None or not raw.strip():
        return UPLOAD_LIMIT_MB
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{UPLOAD_LIMIT_ENV}={raw!r}: give a whole number of megabytes, at least 1 (default "
                         f"{UPLOAD_LIMIT_MB}).")
    return value


def _over_limit(file_name: str, size: int, limit_mb: int) -> UsageError:
    return UsageError(f"{file_name}: {size / 2 ** 20:,.1f} MB is over the limit of {limit_mb:,} MB a file may have "
                      f"here (${UPLOAD_LIMIT_ENV} sets it); nothing was kept. For a bigger file, put it in "
                      f"data/NAME/ and write its spec there with `python -m autoint infer-spec FILE --out "
                      f"data/NAME/spec.toml`.")


# ----------------------------------------------------------------------------- staging

def _root() -> Path:
    return Path(sources.DATA_ROOT)


def inside_data(path: str | os.PathLike) -> Path:
    """`path`, refused unless it resolves to a place inside data/ (not data/ itself)."""
    root, resolved = _root().resolve(), Path(path).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise UsageError(f"{path}: outside {_root()}/; the app writes data sets only into folders of {_root()}/.")
    return resolved


@dataclass(frozen=True)
class Staging:
    """A data file kept in a hidden folder of data/ until it is saved as a data set (or discarded)."""

    folder: Path
    file: Path

    def discard(self) -> None:
        """Remove the staging folder (a cancelled or failed flow); a folder already saved or gone is left."""
        if self.folder.name.startswith(STAGING_PREFIX) and self.folder.is_dir():
            inside_data(self.folder)
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def exists(self) -> bool:
        return self.file.is_file()


def _new_staging(file_name: str) -> Staging:
    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{STAGING_PREFIX}{suggest_name(file_name)}-{uuid.uuid4().hex[:8]}"
    inside_data(folder)
    folder.mkdir(mode=0o700)
    file = folder / file_name
    inside_data(file)
    return Staging(folder, file)


def _copy_into(source, staging: Staging, file_name: str, limit_mb: int) -> Staging:
    """Stream `source` (a binary file object) into the staging file in chunks; over the limit or on any failure
    the staging folder is removed."""
    limit, written = limit_mb * 2 ** 20, 0
    try:
        with open(staging.file, "xb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > limit:
                    raise _over_limit(file_name, written, limit_mb)
                out.write(chunk)
        return staging
    except BaseException:
        staging.discard()
        raise


def stage_upload(upload, file_name: str | None = None, size: int | None = None) -> Staging:
    """Keep an uploaded file (Streamlit's UploadedFile, or any binary file object) in a new staging folder,
    streamed in chunks. Its name (`file_name`, else `upload.name`) is checked; a size over the limit (`size`, else
    `upload.size` when known) is refused before anything is written."""
    file_name = check_file_name(file_name if file_name is not None else getattr(upload, "name", ""))
    limit_mb = upload_limit_mb()
    size = size if size is not None else getattr(upload, "size", None)
    if size is not None and size > limit_mb * 2 ** 20:
        raise _over_limit(file_name, size, limit_mb)
    if getattr(upload, "seekable", lambda: False)():
        upload.seek(0)  # Streamlit hands the same UploadedFile to every rerun
    return _copy_into(upload, _new_staging(file_name), file_name, limit_mb)


def stage_path(path: str | os.PathLike) -> Staging:
    """Copy a file on this server into a new staging folder (the file itself is only read)."""
    text = str(path).strip()
    if not text:
        raise UsageError("give the path of a CSV, TSV or Parquet file on this server.")
    source = Path(text).expanduser()
    if not source.is_file():
        raise DataError(f"{source}: no such file{' (it is a folder)' if source.is_dir() else ''}. Give the path of a "
                        f"CSV, TSV or Parquet file on this server.")
    file_name = check_file_name(source.name)
    limit_mb = upload_limit_mb()
    size = source.stat().st_size
    if size > limit_mb * 2 ** 20:
        raise _over_limit(file_name, size, limit_mb)
    with open(source, "rb") as fh:
        return _copy_into(fh, _new_staging(file_name), file_name, limit_mb)


def convert_from_latin1(staging: Staging) -> Staging:
    """Rewrite the staged file from latin-1 to UTF-8 (gzipped stays gzipped), streamed, through a temporary file
    renamed over it: the page's offer for a file `infer_spec` refused with an EncodingError whose line reads as
    latin-1. Every byte decodes in latin-1, so only a file of another encoding comes out wrong: the preview shows it."""
    if not staging.exists:
        raise UsageError(f"{staging.file}: the staged file is gone; give the file again.")
    packed = is_gzip(staging.file)
    temporary = staging.file.with_name(f".{staging.file.name}.utf8")
    inside_data(temporary)
    opener = gzip.open if packed else open
    try:
        with opener(staging.file, "rb") as source, opener(temporary, "wb") as out:
            while chunk := source.read(CHUNK):
                out.write(chunk.decode("latin-1").encode("utf-8"))
        os.replace(temporary, staging.file)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return staging


def staging_of(folder: str | os.PathLike) -> Staging:
    """The Staging of an existing staging folder (its one data file)."""
    folder = inside_data(folder)
    if not folder.name.startswith(STAGING_PREFIX) or not folder.is_dir():
        raise UsageError(f"{folder}: not a staging folder of {_root()}/ (it was saved, discarded or tidied away); "
                         f"give the file again.")
    files = [p for p in folder.iterdir() if p.is_file() and p.name != SPEC_FILE and not p.name.startswith(".")]
    if len(files) != 1:
        raise UsageError(f"{folder}: holds {len(files)} data files, not one; give the file again.")
    return Staging(Path(sources.DATA_ROOT) / folder.name, Path(sources.DATA_ROOT) / folder.name / files[0].name)


def clean_staging(older_than_s: float = STALE_STAGING_S) -> list[str]:
    """Remove staging folders of data/ untouched for `older_than_s` (their newest file's time); their names."""
    root, removed, now = _root(), [], time.time()
    if not root.is_dir():
        return removed
    for folder in sorted(root.glob(f"{STAGING_PREFIX}*")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            age = now - max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
        except FileNotFoundError:
            continue
        if age >= older_than_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


# ----------------------------------------------------------------------------- preview

def preview(inferred: InferredSpec, rows: int = PREVIEW_ROWS) -> pl.DataFrame:
    """The file's first `rows` rows as text, its columns named as `infer_spec` named them (only those lines are
    read, also from a gzipped file)."""
    path = inferred.path
    if inferred.format == "parquet":
        return pl.scan_parquet(path).head(rows).collect().with_columns(pl.all().cast(pl.String))
    lines = []
    with (gzip.open if is_gzip(path) else open)(path, "rb") as fh:
        for raw in fh:
            lines.append(raw)
            if len(lines) > rows:
                break
    text = b"".join(lines).decode("utf-8").removeprefix("\ufeff")
    frame = pl.read_csv(io.StringIO(text), separator=inferred.separator, has_header=inferred.header,
                        infer_schema=False, n_rows=rows, truncate_ragged_lines=True)
    return frame.rename(dict(zip(frame.columns, inferred.columns)))


# ----------------------------------------------------------------------------- the editable spec

def spec_rows(inferred: InferredSpec) -> list[dict]:
    """One row per column but the label's, as the page's table shows it: kind, role, min_count (categorical and
    multi-valued), transform (numeric), delimiter (multi-valued), left out, and the evidence (read-only). A column
    left out is offered as categorical when it is taken back."""
    out = []
    for c in inferred.choices:
        kind = c.kind or "categorical"
        out.append({"column": c.column, "kind": kind, "role": c.role,
                    "min_count": c.min_count or 1 if kind != "numeric" else None,
                    "transform": c.transform or "minmax" if kind == "numeric" else None,
                    "left out": c.kind is None, "delimiter": c.delimiter,
                    "evidence": f"left out: {c.left_out}" if c.kind is None else c.evidence})
    return out


def _empty(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str)
                                                                                 and not value.strip())


def _text(value) -> str | None:
    return None if _empty(value) else str(value).strip()


def _row_error(number: int, row: dict, message: str) -> UsageError:
    return UsageError(f"row {number} of the table (column {row.get('column')!r}): {message}")


def spec_from_rows(inferred: InferredSpec, rows, name: str | None = None) -> str:
    """The spec TOML for `inferred` as the table's `rows` say (any order; a column without a row is left out), named
    `name` (default: the inferred one), its files entry relative to the file's folder: what `read_spec` takes.
    Refused (UsageError naming the row and the allowed values): a column the file lacks or the label's, a column
    twice, an unknown kind, role or transform, a min_count that is not a whole number of at least 1, a multi-valued
    field without a delimiter, a transform or min_count on a field of the other kind, and no field at all."""
    if hasattr(rows, "to_dict"):  # a pandas DataFrame from st.data_editor
        rows = rows.to_dict("records")
    by_column = {c.column: c for c in inferred.choices}
    label_column = next((c for c in inferred.columns if c not in by_column), None)
    edited: dict[str, ColumnChoice] = {}
    for number, row in enumerate(rows, start=1):
        column = _text(row.get("column"))
        if column not in by_column:
            if column is not None and column == label_column:
                raise _row_error(number, row, f"{column!r} is the label ({inferred.label}); it cannot be a field.")
            raise _row_error(number, row, f"{inferred.path.name} has no such column; its columns: "
                                          f"{', '.join(by_column)}.")
        if column in edited:
            raise _row_error(number, row, f"the column {column!r} has a row already.")
        edited[column] = _edited_choice(number, row, by_column[column])
    choices = tuple(edited[c.column] if c.column in edited else
                    dataclasses.replace(c, kind=None, left_out=c.left_out or "left out by hand")
                    for c in inferred.choices)
    if not any(c.kind is not None for c in choices):
        raise UsageError("every column is left out: keep at least one as a field (untick 'left out').")
    spec = dataclasses.replace(inferred, choices=choices,
                               name=check_name(name) if name is not None else inferred.name)
    return spec.to_toml(spec_dir=inferred.path.parent)


def _edited_choice(number: int, row: dict, choice: ColumnChoice) -> ColumnChoice:
    """The choice as the row says; its evidence says what was changed by hand and what was inferred."""
    left_out = row.get("left out")
    left_out = False if _empty(left_out) else bool(left_out)
    kind = _text(row.get("kind"))
    if kind not in KINDS:
        raise _row_error(number, row, f"kind {kind!r} is not one of {', '.join(KINDS)}.")
    role = _text(row.get("role"))
    if role is not None and role not in ROLES:
        raise _row_error(number, row, f"role {role!r} is not one of {', '.join(ROLES)} (or empty: none).")
    transform = _text(row.get("transform"))
    if transform is not None and transform not in TABLE_TRANSFORMS:
        bucket = " (bucket needs edges: write it in the downloaded spec by hand)" if transform == "bucket" else ""
        raise _row_error(number, row, f"transform {transform!r} is not one of {', '.join(TABLE_TRANSFORMS)} (or "
                                      f"empty: minmax){bucket}.")
    if transform not in (None, "minmax") and kind != "numeric":
        raise _row_error(number, row, f"transform {transform!r} is for numeric fields; this one is {kind}. Empty "
                                      f"the transform or make the kind numeric.")
    raw_min = row.get("min_count")
    min_count = None
    if not _empty(raw_min):
        try:
            number_value = float(raw_min)
        except (TypeError, ValueError):
            number_value = math.nan
        if not number_value.is_integer() or number_value < 1:
            raise _row_error(number, row, f"min_count {raw_min!r} must be a whole number of at least 1 (values "
                                          f"seen fewer times in training share the <unknown> slot).")
        min_count = int(number_value)
        if kind == "numeric" and min_count > 1:
            raise _row_error(number, row, "min_count is for categorical and multi-valued fields; a numeric field "
                                          "has no vocabulary. Empty it or make the kind categorical.")
    delimiter = _text(row.get("delimiter")) if kind == "multivalued" else None
    if kind == "multivalued" and delimiter is None:
        raise _row_error(number, row, f"a multivalued field needs a delimiter, the text between its values in one "
                                      f"cell: one of {' '.join(DELIMITER_CHOICES)} (or another).")
    if left_out:
        if choice.kind is None:
            return choice
        return dataclasses.replace(choice, kind=None, left_out="left out by hand")
    same = (kind == choice.kind and role == choice.role and delimiter == choice.delimiter
            and transform in (None, "minmax") and (min_count or 1) == 1)
    if same:
        return choice
    inferred = f"left out: {choice.left_out}" if choice.kind is None else f"{choice.kind}: {choice.evidence}"
    fmt = choice.format if kind == "numeric" and transform in (None, "minmax") else None
    return dataclasses.replace(choice, kind=kind, evidence=f"set by hand (inferred {inferred})", left_out=None,
                   role=role, role_evidence="set by hand" if role != choice.role else choice.role_evidence,
                   delimiter=delimiter, format=fmt,
                   transform=transform if transform not in (None, "minmax") else None,
                   min_count=min_count if kind != "numeric" and min_count and min_count > 1 else None)


# ----------------------------------------------------------------------------- checking and saving

def check_spec(staging: Staging | str | os.PathLike, toml_text: str) -> list[Check]:
    """Parse the spec, load the staged file by it (the generic loader, as training will) and run the data checks.
    A spec or data error is raised (SpecError names the spec's line, DataError the file's); the checks' warnings
    are returned."""
    staging = staging if isinstance(staging, Staging) else staging_of(staging)
    spec = parse_spec(toml_text, Path(SPEC_FILE))
    for file in [f for alternatives in spec.files for f in alternatives] + [j.file for j in spec.joins]:
        inside_data(staging.folder / file)
    dataset = load_spec_dataset(spec, staging.folder)
    return check_data(dataset, spec=spec)


def spec_digest(toml_text: str) -> str:
    """A short digest of a spec's text (what a cached check is keyed by)."""
    return hashlib.sha256(toml_text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Saved:
    """A data set saved by `save_data_set`: its folder, its spec file and the checks' warnings to show."""

    folder: Path
    spec: Path
    checks: list[Check]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.level == "warning"]


def target_of(name: str) -> Path:
    """data/<name>, the folder a data set of that name is saved in (the name checked)."""
    target = _root() / check_name(name)
    inside_data(target)
    return target


def name_taken(name: str) -> bool:
    return target_of(name).exists()


def save_data_set(staging: Staging | str | os.PathLike, name: str, toml_text: str, replace: bool = False) -> Saved:
    """Check the spec on the staged file (`check_spec`: a spec or data error, or a check of level "error", stops
    here and nothing is written), write it as spec.toml beside the file, and rename the staging folder to
    data/<name>/ whole. An existing data/<name>/ is refused unless `replace` (then the old folder is renamed aside,
    the new one renamed in, the old one removed)."""
    staging = staging if isinstance(staging, Staging) else staging_of(staging)
    target = target_of(name)
    inside_data(staging.folder)
    if target.exists() and not replace:
        raise UsageError(f"a data set named {name!r} exists ({target}/); choose another name, or tick 'replace it' "
                         f"to put this one in its place.")
    if parse_spec(toml_text, Path(SPEC_FILE)).name != name:  # the folder's name is the data set's
        toml_text = re.sub(r'(?m)^name\s*=\s*"[^"\n]*"', f'name = "{name}"', toml_text, count=1)
        if parse_spec(toml_text, Path(SPEC_FILE)).name != name:
            raise UsageError(f"the spec's name is not {name!r}: write name = \"{name}\" at its top.")
    checks = check_spec(staging, toml_text)
    errors = [c for c in checks if c.level == "error"]
    if errors:
        raise DataError("; ".join(c.message for c in errors))
    write_spec(toml_text, staging.folder / SPEC_FILE, force=True)
    if target.exists():
        swap_into_place(staging.folder, target)
    else:
        try:
            os.rename(staging.folder, target)
        except OSError as exc:  # made meanwhile by another session
            raise UsageError(f"a data set named {name!r} appeared meanwhile ({target}/): {exc.strerror}. Choose "
                             f"another name, or tick 'replace it'.") from None
    return Saved(target, target / SPEC_FILE, checks)


def saved_source(saved: Saved) -> sources.DataSource:
    """The data source a saved data set is offered as (`sources.found_in`: its key is the sidebar's choice)."""
    spec = str(saved.spec.resolve())
    return next(s for s in sources.found_in(saved.folder) if s.spec == spec)
