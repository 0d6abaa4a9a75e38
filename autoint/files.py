"""Folders written whole or not at all: build in a staging sibling, then swap it into place."""
from __future__ import annotations

import os
import shutil
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
