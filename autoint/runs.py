"""Run folders and the run registry.

A run folder holds exactly two files: `model.safetensors` (weights, no pickle) and `run.json`
(format version, model config, field schema with vocabularies, training config, metrics,
history, data fingerprint). A run is written into a temporary sibling folder and renamed
into place, so a run folder either is complete or does not exist. Loading trusts nothing:
it checks the JSON, the tensor names, dtypes and shapes against the model the JSON
describes, and refuses anything that is not safetensors and JSON.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .model import AutoInt, AutoIntConfig, ConfigError
from .schema import Schema, SchemaError

FORMAT_VERSION = 1
WEIGHTS, MANIFEST = "model.safetensors", "run.json"
ALLOWED_FILES = {WEIGHTS, MANIFEST}
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
MAX_MANIFEST_BYTES = 64 << 20
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class CheckpointError(ValueError):
    """A run folder that cannot be loaded; the message names the file and what is wrong."""


@dataclass
class Run:
    path: Path
    model: AutoInt
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


def save_run(path: str | os.PathLike, model: AutoInt, *, metrics: dict, train_config: dict | None = None,
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
        "schema": model.schema.to_json(),
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
        with open(staging / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(_json_safe(manifest), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            # Replace an old run without a moment where neither exists under a readable name.
            trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, trash)
            os.rename(staging, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check `run.json` of a run folder without loading weights."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder. Train one with `python -m autoint train --out {path}`.")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{path}: holds {', '.join(pickles)}, a pickle-style checkpoint. Pickle can run code "
                              f"when loaded, so it is never read; only {WEIGHTS} and {MANIFEST} are.")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{manifest_path}: missing; this is not a complete run folder.")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{manifest_path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; refusing to read it.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{manifest_path}: not valid JSON ({exc}).") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path}: expected a JSON object.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{manifest_path}: format_version {version!r} is not supported (this version reads "
                              f"{FORMAT_VERSION}); retrain the run with this version.")
    for key in ("config", "schema", "metrics"):
        if key not in manifest:
            raise CheckpointError(f"{manifest_path}: the key {key!r} is missing.")
    return manifest


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Run:
    path = Path(path)
    manifest = read_manifest(path)
    manifest_path = path / MANIFEST
    try:
        config = AutoIntConfig.from_json(manifest["config"])
        schema = Schema.from_json(manifest["schema"])
    except (ConfigError, SchemaError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{manifest_path}: {exc}") from exc
    model = AutoInt(config, schema)
    weights_path = path / WEIGHTS
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing; the run folder is incomplete.")
    try:
        state = load_file(str(weights_path))  # safetensors: raw tensors, never code
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc}).") from exc
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights_path}: tensors do not match the model in {MANIFEST} "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]}).")
    for name, tensor in state.items():
        want = expected[name]
        if tensor.shape != want.shape or tensor.dtype != want.dtype:
            raise CheckpointError(f"{weights_path}: tensor {name} is {tuple(tensor.shape)} {tensor.dtype}, but the "
                                  f"model in {MANIFEST} needs {tuple(want.shape)} {want.dtype}.")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{weights_path}: tensor {name} holds NaN or infinite values.")
    model.load_state_dict(state)
    model.eval()
    return Run(path, model.to(device), manifest)


# ----------------------------------------------------------------------------- registry

def list_runs(root: str | os.PathLike) -> list[dict]:
    """Finished runs under `root`, newest first: {name, path, model, metrics, config, created}.

    Only complete folders count (staging folders start with '.'); an unreadable one is
    reported with its error rather than hidden.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            manifest = read_manifest(path)
            out.append({"name": path.name, "path": str(path), "model": manifest.get("model"),
                        "metrics": manifest.get("metrics", {}), "config": manifest.get("config", {}),
                        "train_config": manifest.get("train_config", {}), "created": manifest.get("created", ""),
                        "data_dir": manifest.get("data_dir", ""), "error": None})
        except CheckpointError as exc:
            out.append({"name": path.name, "path": str(path), "error": str(exc)})
    return sorted(out, key=lambda r: r.get("created", ""), reverse=True)


def clean_staging(root: str | os.PathLike, older_than_s: float = 0.0) -> list[str]:
    """Remove half-written run folders left by a killed process; returns their names."""
    root = Path(root)
    removed = []
    if not root.is_dir():
        return removed
    now = time.time()
    for path in root.iterdir():
        if path.name.startswith(".") and (".tmp-" in path.name or ".old-" in path.name) and path.is_dir():
            if now - path.stat().st_mtime >= older_than_s:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    return removed
