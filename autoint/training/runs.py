"""Run folders and the run registry.

A run folder holds exactly three files: `model.safetensors` (weights, no pickle), `vocabularies.json`
(the field schema with its vocabularies: `Schema.to_json()`) and `run.json` (format version, model
config, the vocabularies file's sha256, training config, metrics, history, data fingerprint), which
stays small however large the vocabularies grow. Runs saved before the vocabularies had their own file
carry the schema inline in run.json (key "schema"); they still load. A run is written into a temporary
sibling folder and renamed into place, so a run folder either is complete or does not exist. Loading
trusts nothing: it checks the JSON, the vocabularies' checksum, the tensor names, dtypes and shapes
against the model the JSON describes, and refuses anything that is not safetensors and JSON.

The registry (a folder of run folders, `list_runs`) holds one more entry, the hidden lock file `.registry.lock`
(`registry_lock`); listing and tidying skip it as they skip every name that starts with '.'. Listing reads
run.json alone (the vocabularies file is only checked to exist with the size run.json records), so the app can
list on every rerun however large the vocabularies; loading checks the checksum.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import AutoIntError
from ..files import swap_into_place
from ..model.reference_models import build_model, config_from_json
from ..errors import ConfigError
from ..data.schema import Schema, SchemaError

FORMAT_VERSION = 1
WEIGHTS, MANIFEST, VOCABULARIES = "model.safetensors", "run.json", "vocabularies.json"
REGISTRY_LOCK = ".registry.lock"  # in the registry folder; `registry_lock`
ALLOWED_FILES = {WEIGHTS, MANIFEST, VOCABULARIES}
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
MAX_MANIFEST_BYTES = 16 << 20  # a with-ids ML-1M manifest is about 0.3 MiB (with its schema inline, as old runs)
MAX_VOCABULARIES_BYTES = 1 << 30  # Criteo's vocabularies at min_count 10 take tens of MiB
MAX_HEADER_BYTES = 1 << 20  # a safetensors header lists a few dozen tensors
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
STALE_STAGING_S = 300.0  # a staging folder untouched this long belongs to a killed save, not a running one
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# What `save_run` leaves while it works: `.NAME.tmp-*` (being written) and `.NAME.old-*` (being replaced).
STAGED = re.compile(r"^\.(.+)\.(tmp|old)-[A-Za-z0-9_]+$")
MAX_FIELD_VALUES = 64  # slots of a multi-valued field (MovieLens has at most 6 genres)
SAFETENSORS_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


class CheckpointError(AutoIntError, ValueError):
    """A run folder that cannot be loaded; the message names the file and what is wrong."""


class RegistryBusy(AutoIntError, TimeoutError):
    """Another process held the registry's lock for longer than the wait allows."""


@dataclass
class Run:
    path: Path
    model: torch.nn.Module  # any model of the registry (baselines.MODEL_CONFIGS)
    manifest: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def schema(self) -> Schema:
        return self.model.schema

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def save_run(path: str | os.PathLike, model: torch.nn.Module, *, metrics: dict, train_config: dict | None = None,
             history: list | None = None, data_fingerprint: str = "", data_dir: str = "",
             extra: dict | None = None) -> Path:
    """Write a run folder atomically: build it beside `path`, then rename it into place."""
    path = Path(path)
    if not RUN_NAME.match(path.name):
        raise CheckpointError(f"run folder name {path.name!r}: use letters, digits, '.', '_' and '-' only.")
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": model.config.name,
        "config": model.config.to_json(),
        "train_config": train_config or {},
        "metrics": metrics,
        "history": history or [],
        "data_fingerprint": data_fingerprint,
        "data_dir": str(data_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
        with open(staging / WEIGHTS, "rb") as fh:
            os.fsync(fh.fileno())
        vocabularies = json.dumps(_json_safe(model.schema.to_json())).encode("utf-8")
        with open(staging / VOCABULARIES, "wb") as fh:
            fh.write(vocabularies)
            fh.flush()
            os.fsync(fh.fileno())
        manifest["vocabularies"] = {"file": VOCABULARIES, "sha256": hashlib.sha256(vocabularies).hexdigest(),
                                    "bytes": len(vocabularies), "fields": len(model.schema.fields)}
        with open(staging / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(_json_safe(manifest), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        with registry_lock(path.parent):  # other writers and listers wait for the swap
            swap_into_place(staging, path)  # an old run is never lost (clean_staging renames `.NAME.old-*` back)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | os.PathLike, vocabularies: bool = True) -> dict:
    """Read and check `run.json` of a run folder, and its `vocabularies.json` (checksum, field names,
    max_len), without loading weights. The schema is returned under "schema", as old runs hold it inline.

    vocabularies=False (listing): the vocabularies file is not read, only checked to be a plain file of the size
    run.json records (runs saved before the size was recorded: of at most MAX_VOCABULARIES_BYTES); "schema" is
    then absent unless run.json holds it inline. `load_run` reads it and checks its sha256."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder. Train one with `python -m autoint train --out {path}`.")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{path}: holds {', '.join(pickles)}, a pickle-style checkpoint. Pickle can run code "
                              f"when loaded, so it is never read; only {WEIGHTS} and {MANIFEST} are.")
    manifest_path = path / MANIFEST
    _check_plain_file(manifest_path)
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{manifest_path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; refusing to read it.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{manifest_path}: not valid JSON ({type(exc).__name__}: {str(exc):.200}).") from exc
    except OSError as exc:
        raise CheckpointError(f"{manifest_path}: cannot be read ({exc}).") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path}: expected a JSON object.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise CheckpointError(f"{manifest_path}: format_version {version!r} is not supported (this version reads "
                              f"{FORMAT_VERSION}); retrain the run with this version.")
    inline = "vocabularies" not in manifest and "schema" in manifest  # saved before vocabularies.json
    for key, kind in (("config", dict), ("metrics", dict)) + ((("schema", list),) if inline else ()):
        if key not in manifest:
            raise CheckpointError(f"{manifest_path}: the key {key!r} is missing.")
        if not isinstance(manifest[key], kind):
            raise CheckpointError(f"{manifest_path}: {key!r} must be a JSON {'object' if kind is dict else 'list'}.")
    for key in ("model", "created", "data_dir", "data_fingerprint"):
        if key in manifest and not isinstance(manifest[key], str):
            raise CheckpointError(f"{manifest_path}: {key!r} must be a string.")
    schema_path = manifest_path if inline else path / VOCABULARIES
    if not inline:
        if not vocabularies:
            entry, size = _check_vocabularies_file(path, manifest)
            if "bytes" in entry and size != entry["bytes"]:
                raise CheckpointError(f"{path / VOCABULARIES}: {size:,} bytes, but {MANIFEST} records "
                                      f"{entry['bytes']:,}: the file was changed after training. Restore it from "
                                      f"the run's copy, or retrain the run.")
            return manifest
        manifest["schema"] = _read_vocabularies(path, manifest)
    # Names in a manifest label things; none is ever used as a path. Refuse path-like field names anyway,
    # so that no later use (a file name for an export, say) can be steered out of its folder.
    for entry in manifest["schema"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            raise CheckpointError(f"{schema_path}: schema field name {name!r:.80} is not allowed: use a letter "
                                  f"then letters, digits or '_' (at most 64), no '/', '.' or spaces.")
        max_len = entry.get("max_len", 1)
        if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= MAX_FIELD_VALUES:
            raise CheckpointError(f"{schema_path}: field {name}: max_len {max_len!r:.40} is out of range: "
                                  f"1 to {MAX_FIELD_VALUES}.")
    return manifest


def _check_vocabularies_file(path: Path, manifest: dict) -> tuple[dict, int]:
    """(run.json's entry for `vocabularies.json`, the file's size) after checking the entry and that the file is a
    plain file within MAX_VOCABULARIES_BYTES: a stat, no read."""
    manifest_path, vocab_path = path / MANIFEST, path / VOCABULARIES
    entry = manifest.get("vocabularies")
    if entry is None:
        raise CheckpointError(f"{manifest_path}: the key 'vocabularies' is missing (and there is no inline "
                              f"'schema', as older runs have); this is not a complete run.")
    recorded = entry.get("bytes", 0) if isinstance(entry, dict) else None
    if not (isinstance(entry, dict) and entry.get("file") == VOCABULARIES and isinstance(entry.get("sha256"), str)
            and type(recorded) is int and recorded >= 0):
        raise CheckpointError(f"{manifest_path}: 'vocabularies' must be {{\"file\": \"{VOCABULARIES}\", "
                              f"\"sha256\": ..., \"bytes\": ...}}; the run folder was edited. Retrain the run.")
    _check_plain_file(vocab_path)
    size = vocab_path.stat().st_size
    if size > MAX_VOCABULARIES_BYTES:
        raise CheckpointError(f"{vocab_path}: larger than {MAX_VOCABULARIES_BYTES >> 30} GiB; refusing to read it.")
    return entry, size


def _read_vocabularies(path: Path, manifest: dict) -> list:
    """The schema list in `vocabularies.json`, after checking run.json's entry for it and its sha256."""
    vocab_path = path / VOCABULARIES
    entry, _ = _check_vocabularies_file(path, manifest)
    try:
        raw = vocab_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{vocab_path}: cannot be read ({exc}).") from exc
    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{vocab_path}: its sha256 does not match the one in {MANIFEST}: the file was changed "
                              f"after training. Restore it from the run's copy, or retrain the run.")
    try:
        schema = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{vocab_path}: not valid JSON ({type(exc).__name__}: {str(exc):.200}).") from exc
    if not isinstance(schema, list):
        raise CheckpointError(f"{vocab_path}: expected a JSON list of fields.")
    return schema


def _check_plain_file(path: Path) -> None:
    """Only regular files inside the run folder are read: no links out of it, no devices or pipes."""
    if path.is_symlink():
        raise CheckpointError(f"{path}: is a symbolic link; a run folder holds plain files only. Copy the file "
                              f"in instead of linking it.")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this is not a complete run folder.")


def read_safetensors_header(path: Path) -> dict:
    """Check the header of a safetensors file by hand before the library maps it: names, dtypes, shapes.

    Refuses a pickle or torch.save file under the safetensors name, a header larger than
    MAX_HEADER_BYTES or than the file, and offsets that do not fit the file.
    """
    _check_plain_file(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little")
        if (len(head) < 8 or n > MAX_HEADER_BYTES or n > size - 8) and \
                (head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"):  # pickle protocol 2+, or torch.save's zip
            raise CheckpointError(f"{path}: is a pickle or torch.save file named like safetensors. Pickle can run "
                                  f"code when loaded, so it is never read; save the weights with safetensors.")
        if len(head) < 8:
            raise CheckpointError(f"{path}: {size} bytes, too short for a safetensors file (truncated?).")
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise CheckpointError(f"{path}: declares a {n}-byte header, but "
                                  f"{'the limit is ' + str(MAX_HEADER_BYTES) if n > MAX_HEADER_BYTES else 'only ' + str(size - 8) + ' bytes follow'}"
                                  f"; the file is truncated or not safetensors.")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: the safetensors header is not JSON ({type(exc).__name__}).") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object.")
    data_size, tensors = size - 8 - n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(info, dict) and info.get("dtype") in SAFETENSORS_DTYPES \
            and isinstance(info.get("shape"), list) and all(type(d) is int and d >= 0 for d in info["shape"]) \
            and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2 \
            and all(type(o) is int for o in info["data_offsets"]) \
            and 0 <= info["data_offsets"][0] <= info["data_offsets"][1] <= data_size
        if not ok:
            raise CheckpointError(f"{path}: tensor {name!r:.80} has a malformed entry in the header, or data "
                                  f"beyond the end of the file (truncated?).")
        tensors[name] = (tuple(info["shape"]), SAFETENSORS_DTYPES[info["dtype"]])
    return tensors


class _ShapesOnly(TorchFunctionMode):
    """With torch.device("meta"): torch.nn.init's functions leave their tensor as it is. A meta tensor holds no
    values to initialise, and normal_'s meta kernel is Python whose first call imports torch._dynamo: 1.7 s of
    every process that loads a run (each CLI command, the app's first model)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else (kwargs or {})["tensor"]
        return func(*args, **(kwargs or {}))


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Run:
    path = Path(path)
    manifest = read_manifest(path)
    manifest_path = path / MANIFEST
    try:
        config = config_from_json({"model": manifest.get("model", "AutoInt"), **manifest["config"]})
    except (ConfigError, SchemaError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{manifest_path}: {exc}") from exc
    try:
        schema = Schema.from_json(manifest["schema"])
    except (SchemaError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / VOCABULARIES if 'vocabularies' in manifest else manifest_path}: {exc}") \
            from exc
    weights_path = path / WEIGHTS
    declared = read_safetensors_header(weights_path)
    with torch.device("meta"), _ShapesOnly():  # the model's shapes without allocating it: a tampered JSON cannot
        expected = build_model(config, schema).state_dict()  # claim memory
    _check_tensors(weights_path, {k: (tuple(v.shape), v.dtype) for k, v in expected.items()}, declared)
    try:
        state = load_file(str(weights_path))  # safetensors: raw tensors, never code
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc}).") from exc
    _check_tensors(weights_path, {k: (tuple(v.shape), v.dtype) for k, v in expected.items()},
                   {k: (tuple(v.shape), v.dtype) for k, v in state.items()})
    model = build_model(config, schema)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{weights_path}: tensor {name} holds NaN or infinite values.")
    model.load_state_dict(state)
    model.eval()
    return Run(path, model.to(device), manifest)


def _check_tensors(weights_path: Path, expected: dict, found: dict) -> None:
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights_path}: tensors do not match the model in {MANIFEST} "
                              f"(missing {missing[:5]}, unexpected {[u[:80] for u in unexpected[:5]]}).")
    for name, (shape, dtype) in found.items():
        want_shape, want_dtype = expected[name]
        if shape != want_shape or dtype != want_dtype:
            raise CheckpointError(f"{weights_path}: tensor {name} is {shape} {dtype}, but the "
                                  f"model in {MANIFEST} needs {want_shape} {want_dtype}.")


# ----------------------------------------------------------------------------- registry

class RegistryLock:
    """An exclusive `flock` on the registry's lock file, held inside `with`; see `registry_lock`."""

    POLL_S = 0.05

    def __init__(self, root: Path, timeout: float):
        self.root, self.timeout, self.path, self._fd = root, timeout, None, None

    def _open(self, inside: bool = True) -> tuple[int, Path]:
        """A descriptor of `root/.registry.lock` (created when missing; read-only when this account may not
        write it: flock needs no write access), else of the temporary folder's fallback for this root (read-only
        too when another account created it)."""
        flags = os.O_CLOEXEC | os.O_NOFOLLOW  # a planted symbolic link is not followed: the fallback is used
        key = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        fallback = Path(tempfile.gettempdir()) / f"autoint-registry-{key}.lock"
        tried = []
        for path in [self.root / REGISTRY_LOCK] * inside + [fallback]:
            for mode in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
                try:
                    return os.open(path, mode | flags, 0o666), path
                except OSError as exc:
                    tried.append(f"{path}: {exc.strerror}")
                    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ELOOP):
                        break
        raise CheckpointError(f"the run registry {self.root} cannot be locked: {'; '.join(dict.fromkeys(tried))}. "
                              f"Make {self.root / REGISTRY_LOCK} a plain file this account can open (or let it "
                              f"create one there), or free the temporary folder's {fallback}.")

    def __enter__(self) -> "RegistryLock":
        fd, self.path = self._open()
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._fd, fd = fd, None
                    return self
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RegistryBusy(f"{self.path}: another process has held the run registry's lock for "
                                           f"{self.timeout:g} s (a save or tidy of {self.root} that is stuck, e.g. "
                                           f"on a hung network file system); try again when it finishes.") from None
                    time.sleep(self.POLL_S)
                except OSError as exc:  # NFS emulates flock by POSIX locks, which a read-only descriptor cannot take
                    if exc.errno != errno.EBADF or self.path.name != REGISTRY_LOCK:
                        raise
                    os.close(fd)
                    fd = None
                    fd, self.path = self._open(inside=False)
        finally:
            if fd is not None:
                os.close(fd)

    def __exit__(self, *exc) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of this open file releases the flock


def registry_lock(root: str | os.PathLike, timeout: float = 60.0) -> RegistryLock:
    """The registry's file lock, shared by every process that writes runs under `root` (use it in `with`).

    `save_run` holds it across its renames and `clean_staging` while it tidies, so two writers of
    one name never interleave, and a lister that holds it sees no run half-way through a
    replacement. The lock file is `root/.registry.lock`, one per registry for good: it is never removed (removing
    a lock file that another process may have open would let two holders in), and a process that dies holding the
    lock releases it (flock). Inside the registry it is shared by every process that sees the folder, whatever
    their temporary folders (a systemd PrivateTmp service, a container). A registry this process may not write and
    that has no lock file yet (a read-only copy: nobody saves there) locks a file in the temporary folder instead,
    named after its path, so it can still be listed.
    """
    return RegistryLock(Path(root), timeout)


def list_runs(root: str | os.PathLike) -> list[dict]:
    """Finished runs under `root`, newest first: {name, path, model, metrics, config, created, data_dir, dataset,
    spec} (dataset and spec: None for MovieLens-1M runs, which record neither).

    Only complete folders count (staging folders start with '.'); an unreadable one is
    reported with its error rather than hidden. Listing takes no lock, so many sessions list
    at once; when it may have raced a writer (a run replaced meanwhile: a `.NAME.old-*` folder,
    or an entry that failed to read), it lists again holding the registry lock.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    out, raced = _list_runs(root)
    if raced:
        with registry_lock(root):
            out, _ = _list_runs(root)
    return out


def _list_runs(root: Path) -> tuple[list[dict], bool]:
    out, raced = [], False
    for path in sorted(root.iterdir()):
        staged = STAGED.match(path.name)
        if staged and staged.group(2) == "old":
            raced = True
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            manifest = read_manifest(path, vocabularies=False)
            out.append({"name": path.name, "path": str(path), "model": manifest.get("model"),
                        "metrics": manifest.get("metrics", {}), "config": manifest.get("config", {}),
                        "train_config": manifest.get("train_config", {}), "created": manifest.get("created", ""),
                        "data_dir": manifest.get("data_dir", ""), "dataset": manifest.get("dataset"),
                        "spec": manifest.get("spec"), "error": None})
        except (CheckpointError, OSError) as exc:
            out.append({"name": path.name, "path": str(path), "error": str(exc)})
            raced = True
    return sorted(out, key=lambda r: str(r.get("created", "")), reverse=True), raced


def clean_staging(root: str | os.PathLike, older_than_s: float = 0.0) -> list[str]:
    """Tidy what a killed `save_run` left; returns the names removed or restored.

    `.NAME.tmp-*` (a run being written) is removed. `.NAME.old-*` (a run being replaced) is
    removed when NAME exists, and renamed back to NAME when it does not: the process died
    between its two renames, and the old run is the last complete one. Entries younger than
    `older_than_s` (by their last change, which a rename counts as) are left alone, for a
    save that may still be running in another process.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    with registry_lock(root):
        return _clean_staging(root, older_than_s)


def _clean_staging(root: Path, older_than_s: float) -> list[str]:
    removed = []
    now = time.time()
    for path in sorted(root.iterdir()):
        staged = STAGED.match(path.name)
        if not staged or not path.is_dir() or path.is_symlink():
            continue
        try:
            info = path.stat()
        except FileNotFoundError:  # another process tidied it first
            continue
        if now - max(info.st_mtime, info.st_ctime) < older_than_s:
            continue
        target = root / staged.group(1)
        if staged.group(2) == "old" and RUN_NAME.match(target.name) and not target.exists():
            try:
                os.rename(path, target)
                removed.append(path.name)
                continue
            except OSError:
                pass  # someone saved NAME meanwhile: then the old copy is garbage
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed
