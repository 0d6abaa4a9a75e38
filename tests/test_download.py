import hashlib
import time
import zipfile

import pytest

from autoint.datasets.download import DownloadError, download_ml1m, git_blob_id, verify_and_unpack


def make_zip(tmp_path, files):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"ml-1m/{name}", data)
    return archive


FILES = {"users.dat": b"1::F::1::10::48067\n", "movies.dat": b"1::Toy Story (1995)::Comedy\n",
         "ratings.dat": b"1::1::5::978300760\n", "README": b"readme\n"}


def test_verify_and_unpack(tmp_path):
    archive = make_zip(tmp_path, FILES)
    data = archive.read_bytes()
    target = verify_and_unpack(archive, tmp_path / "data" / "ml-1m", md5=hashlib.md5(data).hexdigest(),
                               sha256=hashlib.sha256(data).hexdigest(),
                               blobs={k: git_blob_id(v) for k, v in FILES.items()})
    assert sorted(p.name for p in target.iterdir()) == ["README", "movies.dat", "ratings.dat", "users.dat"]
    assert (target / "ratings.dat").read_bytes() == FILES["ratings.dat"]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_checksum_mismatch_leaves_nothing(tmp_path):
    archive = make_zip(tmp_path, FILES)
    with pytest.raises(DownloadError, match="MD5 .* does not match"):
        verify_and_unpack(archive, tmp_path / "data" / "ml-1m")
    assert not (tmp_path / "data" / "ml-1m").exists()


def test_archive_without_ratings(tmp_path):
    files = dict(FILES)
    files.pop("ratings.dat")
    archive = make_zip(tmp_path, files)
    data = archive.read_bytes()
    with pytest.raises(DownloadError, match="has no ratings.dat"):
        verify_and_unpack(archive, tmp_path / "t", md5=hashlib.md5(data).hexdigest(), sha256=None, blobs=None)
    assert not (tmp_path / "t").exists()


def test_offline_fails_fast_with_instructions(tmp_path):
    started = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        download_ml1m(tmp_path / "ml-1m", url="http://127.0.0.1:9/ml-1m.zip", timeout=3)
    assert time.perf_counter() - started < 5
    assert "http://127.0.0.1:9/ml-1m.zip" in str(info.value) and str(tmp_path / "ml-1m") in str(info.value)
    assert not (tmp_path / "ml-1m").exists()
