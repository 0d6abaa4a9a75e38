"""Fetch the GroupLens MovieLens-1M archive, verify it, and unpack it atomically."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from ..errors import AutoIntError

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"  # published by GroupLens beside the archive
ML1M_SHA256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
ML1M_FILES = ("users.dat", "movies.dat", "ratings.dat")
# git blob ids of the extracted files (`git hash-object`), a second check after unpacking
ML1M_BLOBS = {"ratings.dat": "77a7c4b150f588c23bb9e1f068aa996c0b413695",
              "users.dat": "2f86be06c70946984c0d5d56f9fcaa658eef139e",
              "movies.dat": "9a735435722829dad68446ef1c30d001d5d00c1d"}


class DownloadError(AutoIntError, RuntimeError):
    """The archive could not be fetched or verified; the message says what to do instead."""


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch(url: str, dest: Path, timeout: float = 10.0,
          progress: Callable[[int, int | None], None] | None = None) -> int:
    """Stream `url` to `dest`; checks the received size against Content-Length. Returns the byte count."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"could not reach {url} ({getattr(exc, 'reason', exc)}).") from exc
    with response, open(dest, "wb") as fh:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        received = 0
        while True:
            try:
                chunk = response.read(1 << 16)
            except OSError as exc:
                raise DownloadError(f"the download of {url} broke off after {received} bytes ({exc}).") from exc
            if not chunk:
                break
            fh.write(chunk)
            received += len(chunk)
            if progress:
                progress(received, total)
    if total is not None and received != total:
        raise DownloadError(f"{url}: received {received} bytes, the server announced {total}; try again.")
    return received


def verify_and_unpack(archive: Path, target: Path, md5: str = ML1M_MD5, sha256: str | None = ML1M_SHA256,
                      blobs: dict[str, str] | None = ML1M_BLOBS) -> Path:
    """Check the archive's checksums, unpack its MovieLens files into `target` atomically.

    MD5 is what GroupLens publishes, so it decides; the SHA-256 (from a third party) must
    agree too. The files land in a staging folder first and are renamed into place.
    """
    data_md5, data_sha = hashlib.md5(), hashlib.sha256()
    with open(archive, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            data_md5.update(chunk)
            data_sha.update(chunk)
    if data_md5.hexdigest() != md5:
        raise DownloadError(f"{archive}: MD5 {data_md5.hexdigest()} does not match the published {md5}; the "
                            f"download is corrupt or not the MovieLens-1M archive. Delete it and try again.")
    if sha256 and data_sha.hexdigest() != sha256:
        raise DownloadError(f"{archive}: SHA-256 {data_sha.hexdigest()} does not match {sha256}.")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
            for name in ML1M_FILES:
                if name not in members:
                    raise DownloadError(f"{archive}: has no {name}; it is not the MovieLens-1M archive.")
            for name, info in members.items():
                if name in ML1M_FILES or name == "README":
                    data = zf.read(info)  # names come from our list, never from the archive's paths
                    if blobs and name in blobs and git_blob_id(data) != blobs[name]:
                        raise DownloadError(f"{archive}: {name} differs from the published MovieLens-1M file.")
                    (staging / name).write_bytes(data)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive}: not a valid zip archive ({exc}).") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def download_ml1m(target: str | os.PathLike = "data/ml-1m", url: str = ML1M_URL, timeout: float = 10.0,
                  progress: Callable[[int, int | None], None] | None = None) -> Path:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        archive = Path(tmp) / "ml-1m.zip"
        try:
            fetch(url, archive, timeout=timeout, progress=progress)
        except DownloadError as exc:
            raise DownloadError(f"{exc} Without network access, download {url} elsewhere and unzip it so that "
                                f"{target}/users.dat, movies.dat and ratings.dat exist, or pass --data-dir.") from exc
        return verify_and_unpack(archive, target)
