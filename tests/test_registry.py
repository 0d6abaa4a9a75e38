"""The run registry on big runs (issue 15): listing reads run.json alone, not the vocabularies, and the registry's
lock is one hidden file inside the registry, never a file per registry left in the temporary folder."""
import errno
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

import autoint.training.runs as runs
from autoint.model.reference_models import build_model
from autoint.model.autoint import AutoIntConfig
from autoint.training.runs import (MANIFEST, REGISTRY_LOCK, VOCABULARIES, CheckpointError, RegistryBusy, clean_staging,
                          list_runs, load_run, read_manifest, registry_lock, save_run)
from autoint.data.schema import Field, Schema
from conftest import REPO

SCHEMA = Schema((Field("C1", "categorical", ("<unknown>", "a", "b", "c")), Field("I1", "numeric")))
SMALL = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """A temporary folder of the test's own, to see what the registry leaves there."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def run(tmp_path, temp_dir):
    return save_run(tmp_path / "runs" / "r", build_model(SMALL, SCHEMA), metrics={"test_auc": 0.5})


def opened_during(fn) -> list[str]:
    """The paths `fn` opens (the open audit event)."""
    seen = []
    hook_on = [True]

    def hook(event, args):
        if hook_on[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            seen.append(os.fsdecode(args[0]))
    sys.addaudithook(hook)  # audit hooks cannot be removed: this one goes quiet after the call
    try:
        fn()
    finally:
        hook_on[0] = False
    return seen


# ----------------------------------------------------------------------------- listing reads run.json alone

def test_listing_does_not_read_the_vocabularies_and_loading_checks_them(run):
    assert json.loads((run / MANIFEST).read_text())["vocabularies"]["bytes"] == (run / VOCABULARIES).stat().st_size
    opened = opened_during(lambda: list_runs(run.parent))
    assert str(run / MANIFEST) in opened and str(run / VOCABULARIES) not in opened
    raw = (run / VOCABULARIES).read_bytes()
    (run / VOCABULARIES).write_bytes(raw.replace(b'"a"', b'"z"'))  # same size, other content
    assert [r["error"] for r in list_runs(run.parent)] == [None]
    with pytest.raises(CheckpointError, match=r"vocabularies\.json: its sha256 does not match the one in run\.json: "
                                              r"the file was changed after training"):
        load_run(run)
    with pytest.raises(CheckpointError, match="sha256"):
        read_manifest(run)  # the full check is still read_manifest's default


def test_listing_reports_a_vocabularies_file_of_another_size_or_missing(run, tmp_path):
    size = (run / VOCABULARIES).stat().st_size
    with open(run / VOCABULARIES, "ab") as fh:
        fh.write(b" ")
    (error,) = [r["error"] for r in list_runs(run.parent)]
    assert error == (f"{run / VOCABULARIES}: {size + 1:,} bytes, but run.json records {size:,}: the file was changed "
                     f"after training. Restore it from the run's copy, or retrain the run.")
    (run / VOCABULARIES).unlink()
    (error,) = [r["error"] for r in list_runs(run.parent)]
    assert error.endswith("vocabularies.json: missing; this is not a complete run folder.")


def test_a_run_saved_before_the_size_was_recorded_lists_and_loads(run):
    manifest = json.loads((run / MANIFEST).read_text())
    del manifest["vocabularies"]["bytes"]
    (run / MANIFEST).write_text(json.dumps(manifest))
    (listed,) = list_runs(run.parent)
    assert listed["error"] is None and listed["metrics"] == {"test_auc": 0.5}
    assert load_run(run).schema == SCHEMA
    manifest["vocabularies"]["bytes"] = "12"
    (run / MANIFEST).write_text(json.dumps(manifest))
    assert "'vocabularies' must be" in list_runs(run.parent)[0]["error"]


# ----------------------------------------------------------------------------- the registry's lock

def test_the_lock_is_one_hidden_file_in_the_registry_and_nothing_in_the_temp_folder(run, temp_dir):
    root = run.parent
    save_run(root / "s", build_model(SMALL, SCHEMA), metrics={})
    (root / ".s.tmp-abc").mkdir()  # what a killed save leaves
    assert clean_staging(root) == [".s.tmp-abc"]  # the lock file is not staging
    with registry_lock(root) as lock:
        assert lock.path == root / REGISTRY_LOCK
    assert sorted(p.name for p in root.iterdir()) == [REGISTRY_LOCK, "r", "s"]
    assert sorted(r["name"] for r in list_runs(root)) == ["r", "s"]  # and not a run, nor a broken one
    assert list(temp_dir.iterdir()) == []


LOCK_HOLDER = """
import sys, time
from autoint.training.runs import registry_lock
with registry_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_the_lock_excludes_another_process_and_is_freed_when_it_ends(tmp_path, temp_dir):
    root = tmp_path / "runs"
    root.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(root), "30"], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(RegistryBusy, match=r"\.registry\.lock: another process has held the run registry's "
                                               r"lock for 0\.3 s"):
            with registry_lock(root, timeout=0.3):
                pass
        assert time.monotonic() - started >= 0.3
    finally:
        holder.kill()  # killed while holding it: flock frees the lock with the process
        holder.wait(timeout=30)
    with registry_lock(root, timeout=5):
        pass
    assert list(temp_dir.iterdir()) == []


def _refuse(monkeypatch, refused: dict, suffix: str = REGISTRY_LOCK):
    """os.open refuses the lock file inside the registry (suffix ".lock": the temporary folder's too) with errno for
    the given access modes."""
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if os.fspath(path).endswith(suffix):
            for access, code in refused.items():
                if flags & (os.O_RDWR | os.O_WRONLY) == access:
                    raise OSError(code, os.strerror(code), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(runs.os, "open", fake_open)


def test_a_lock_file_this_account_may_not_write_is_locked_read_only(tmp_path, temp_dir, monkeypatch):
    """Another user's registry (its lock file theirs): the lock is taken on a read-only descriptor, the same file
    its writers lock, not a private file in the temporary folder."""
    root = tmp_path / "runs"
    root.mkdir()
    (root / REGISTRY_LOCK).touch()
    _refuse(monkeypatch, {os.O_RDWR: errno.EACCES})
    with registry_lock(root) as lock:
        assert lock.path == root / REGISTRY_LOCK
    assert list(temp_dir.iterdir()) == []


def test_a_read_only_registry_without_a_lock_file_still_lists(tmp_path, temp_dir, monkeypatch):
    """Nothing saves into a read-only copy: the temporary folder holds its lock file, one per such registry."""
    root = tmp_path / "runs"
    save_run(root / "r", build_model(SMALL, SCHEMA), metrics={})
    (root / REGISTRY_LOCK).unlink()
    (root / "broken").mkdir()  # a failed entry makes the listing take the lock
    _refuse(monkeypatch, {os.O_RDWR: errno.EROFS, os.O_RDONLY: errno.ENOENT})
    listed = {r["name"]: r["error"] for r in list_runs(root)}
    assert listed["r"] is None and "run.json: missing" in listed["broken"]
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    assert [p.name for p in temp_dir.iterdir()] == [f"autoint-registry-{key}.lock"]
    assert not (root / REGISTRY_LOCK).exists()


def test_where_a_read_only_descriptor_cannot_be_locked_the_temp_folder_is_used(tmp_path, temp_dir, monkeypatch):
    """NFS emulates flock by POSIX locks, which refuse a read-only descriptor (EBADF)."""
    import fcntl
    root = tmp_path / "runs"
    root.mkdir()
    (root / REGISTRY_LOCK).touch()
    _refuse(monkeypatch, {os.O_RDWR: errno.EACCES})
    real_flock = fcntl.flock

    def nfs_flock(fd, operation):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real_flock(fd, operation)
    monkeypatch.setattr(runs.fcntl, "flock", nfs_flock)
    with registry_lock(root) as lock:
        assert lock.path.parent == temp_dir and lock.path.name.startswith("autoint-registry-")


def test_a_temp_folder_lock_file_of_another_account_is_locked_read_only(tmp_path, temp_dir, monkeypatch):
    """A read-only registry listed by a second account: the temporary folder's lock file is the first account's
    (not writable here), so it is opened read-only instead of failing."""
    root = tmp_path / "runs"
    root.mkdir()
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    (temp_dir / f"autoint-registry-{key}.lock").touch()
    _refuse(monkeypatch, {os.O_RDWR: errno.EACCES}, ".lock")
    _refuse(monkeypatch, {os.O_RDWR: errno.EROFS, os.O_RDONLY: errno.ENOENT})
    with registry_lock(root) as lock:
        assert lock.path == temp_dir / f"autoint-registry-{key}.lock"
        import fcntl
        assert fcntl.fcntl(lock._fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY


def test_a_registry_that_cannot_be_locked_anywhere_says_which_files_and_the_fix(tmp_path, temp_dir, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    _refuse(monkeypatch, {os.O_RDWR: errno.EACCES, os.O_RDONLY: errno.EACCES}, ".lock")
    with pytest.raises(CheckpointError, match=rf"the run registry {root} cannot be locked: {root / REGISTRY_LOCK}: "
                                              rf"Permission denied; {temp_dir}/autoint-registry-.*\.lock: Permission "
                                              rf"denied\. Make {root / REGISTRY_LOCK} a plain file this account can "
                                              rf"open"):
        with registry_lock(root):
            pass
