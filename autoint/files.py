"""Folders written whole or not at all: build in a staging sibling, then swap it into place."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path


def swap_into_place(staging: Path, path: Path) -> Path:
    """Rename the complete folder `staging` to `path`. An existing `path` is first renamed aside to
    `.NAME.old-XXXXXXXX` and removed after the swap, so `path` always names the old folder or the new one; a kill
    between the two renames leaves the old one under that name (runs.clean_staging renames it back)."""
    if path.exists():
        trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(path, trash)
        os.rename(staging, path)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, path)
    return path


def staging_dir(path: Path) -> Path:
    """A new hidden staging sibling of `path`, `.NAME.tmp-XXXXXXXX`, for `swap_into_place`."""
    staging = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir(mode=0o700)
    return staging


def tidy_siblings(path: Path, older_than_s: float) -> list[str]:
    """Tidy what a killed writer of `path` left beside it; returns the names removed or restored. `.NAME.tmp-*`
    untouched for `older_than_s` (a writer adds files to it as it goes, which touches it) is removed (its age: the
    newest of the folder and its files); `.NAME.old-*` is removed when NAME exists and renamed back to NAME when it
    does not (a kill between `swap_into_place`'s two renames)."""
    done = []
    if not path.parent.is_dir():
        return done
    now = time.time()
    for sibling in sorted(path.parent.glob(f".{path.name}.*-*")):
        kind = sibling.name[len(path.name) + 2:].split("-", 1)[0]
        if kind not in ("tmp", "old") or not sibling.is_dir() or sibling.is_symlink():
            continue
        try:  # its last change: the folder's or its newest file's (a long gzip copy writes one file for minutes)
            age = now - max([sibling.stat().st_mtime] + [c.stat().st_mtime for c in sibling.iterdir()])
        except FileNotFoundError:
            continue
        if kind == "tmp" and age >= older_than_s:
            shutil.rmtree(sibling, ignore_errors=True)
            done.append(sibling.name)
        elif kind == "old":
            if path.exists():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                os.rename(sibling, path)
            done.append(sibling.name)
    return done
