"""Untrusted checkpoints: only safetensors and JSON are read, and every tampered run is refused by name.

A run folder may come from anyone (a download, a shared disk). Loading it must never run code,
never read a file outside the folder, never allocate what a tampered JSON claims, and fail
with a CheckpointError that names the file and what is wrong. `list_runs` must stay readable
whatever a folder holds.
"""
import hashlib
import json
import os
import pickle
import re
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import autoint.training.runs as runs
from autoint.model.autoint import AutoInt, AutoIntConfig
from autoint.training.runs import CheckpointError, list_runs, load_run, read_manifest, save_run

SMALL = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1)


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    from autoint.datasets.movielens import load_movielens
    from autoint.datasets.synth import generate_movielens
    return load_movielens(generate_movielens(tmp_path_factory.mktemp("tiny") / "ml", users=30, movies=20, ratings=300,
                                 seed=2)).schema


@pytest.fixture
def run(schema, tmp_path):
    torch.manual_seed(0)
    return save_run(tmp_path / "runs" / "good", AutoInt(SMALL, schema), metrics={"test_auc": 0.5})


def edit_manifest(path, change):
    manifest = json.loads((path / "run.json").read_text())
    change(manifest)
    (path / "run.json").write_text(json.dumps(manifest))


def edit_vocabularies(path, change, checksum=True):
    """Change the schema in vocabularies.json; `checksum`: write its new sha256 and size into run.json too, as a
    deliberate forger would, so that the checks behind the checksum are reached."""
    schema = json.loads((path / "vocabularies.json").read_text())
    change(schema)
    raw = json.dumps(schema).encode()
    (path / "vocabularies.json").write_bytes(raw)
    if checksum:
        edit_manifest(path, lambda m: m["vocabularies"].update(sha256=hashlib.sha256(raw).hexdigest(),
                                                               bytes=len(raw)))


def make_old(path):
    """Turn a run folder into one saved before vocabularies.json: the schema inline in run.json."""
    schema = json.loads((path / "vocabularies.json").read_text())
    (path / "vocabularies.json").unlink()
    edit_manifest(path, lambda m: (m.pop("vocabularies"), m.update(schema=schema)))


class Exploit:
    """Unpickling this creates the marker file: proof that code ran."""
    marker = None

    def __reduce__(self):
        return (open, (str(Exploit.marker), "w"))


# Audit hooks cannot be removed, so one hook for the session records while `AUDIT` is on.
AUDIT = {"on": False, "events": []}


def _hook(event, args):
    if AUDIT["on"] and event in ("open", "pickle.find_class", "os.listdir", "os.scandir", "exec", "os.system",
                                 "subprocess.Popen"):
        AUDIT["events"].append((event, args))


sys.addaudithook(_hook)


def audited(fn, *args):
    AUDIT["events"].clear()
    AUDIT["on"] = True
    try:
        return fn(*args)
    finally:
        AUDIT["on"] = False


def opened_under(folder):
    out = set()
    for event, args in AUDIT["events"]:
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path.startswith(os.path.realpath(folder)):
                out.add(os.path.relpath(path, folder))
    return out


# ----------------------------------------------------------------------------- only safetensors and JSON

def test_loading_reads_only_the_two_files_and_runs_no_code(run, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load (pickle) was called"))
    load_run(run)  # once unwatched, so that torch's lazy imports (which exec module code) are done
    loaded = audited(load_run, run)  # any unpickling would raise the `pickle.find_class` audit event
    assert loaded.metrics["test_auc"] == 0.5
    assert opened_under(run.parent.parent) <= {"runs/good/run.json", "runs/good/model.safetensors",
                                               "runs/good/vocabularies.json"}
    assert not [e for e in AUDIT["events"] if e[0] in ("pickle.find_class", "exec", "os.system", "subprocess.Popen")]


@pytest.mark.parametrize("how", ["pickle protocol 4", "pickle protocol 2", "pickle protocol 0", "torch.save zip"])
def test_pickle_named_safetensors_is_never_unpickled(run, tmp_path, how):
    marker = tmp_path / "pwned"
    Exploit.marker = marker
    target = run / "model.safetensors"
    if how == "torch.save zip":
        torch.save({"w": Exploit()}, target)
    else:
        target.write_bytes(pickle.dumps(Exploit(), protocol=int(how[-1])))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: (is a pickle or torch\.save file|declares a)"):
        audited(load_run, run)
    assert not marker.exists()
    assert not [e for e in AUDIT["events"] if e[0] == "pickle.find_class"]
    assert list_runs(run.parent)[0]["error"] is None  # the manifest alone is fine; loading is what refuses


def test_pickle_beside_the_run_is_refused_without_loading(run, tmp_path):
    marker = tmp_path / "pwned"
    Exploit.marker = marker
    (run / "optimizer.ckpt").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match=r"holds optimizer\.ckpt, a pickle-style checkpoint"):
        load_run(run)
    assert "pickle" in list_runs(run.parent)[0]["error"] and not marker.exists()


# ----------------------------------------------------------------------------- tampered JSON

@pytest.mark.parametrize("change,pattern", [
    (lambda m: m.update(format_version=2), r"format_version 2 is not supported .* retrain"),
    (lambda m: m.update(format_version="1"), r"format_version '1' is not supported"),
    (lambda m: m.update(format_version=True), r"format_version True is not supported"),
    (lambda m: m.pop("format_version"), r"format_version None is not supported"),
    (lambda m: m.pop("vocabularies"), r"the key 'vocabularies' is missing"),
    (lambda m: m["vocabularies"].update(file="../x.json"), r"'vocabularies' must be"),
    (lambda m: m.update(config=[1, 2]), r"'config' must be a JSON object"),
    (lambda m: m.update(metrics="good"), r"'metrics' must be a JSON object"),
    (lambda m: m.update(created=12), r"'created' must be a string"),
    (lambda m: m.update(data_dir=["/etc"]), r"'data_dir' must be a string"),
    (lambda m: m["config"].update(layers=100), r"layers=100 is out of range: choose an integer from 0 to 12"),
    (lambda m: m["config"].update(evil="x"), r"unknown model settings \['evil'\]"),
])
def test_tampered_manifest(run, change, pattern):
    edit_manifest(run, change)
    with pytest.raises(CheckpointError, match=r"run\.json: " + pattern):
        load_run(run)


SCHEMA_EDITS = [
    (lambda s: s[0].update(kind="pickle"), r"field 'Gender': kind 'pickle' is not"),
    (lambda s: s[4].update(max_len=10**9), r"field Genre: max_len 1000000000 is out of range: 1 to 64"),
]


@pytest.mark.parametrize("change,pattern", SCHEMA_EDITS)
def test_tampered_vocabularies(run, change, pattern):
    """A changed vocabularies.json is refused by its checksum; with the checksum forged, by the old checks."""
    edit_vocabularies(run, change, checksum=False)
    with pytest.raises(CheckpointError, match=r"vocabularies\.json: its sha256 does not match the one in run\.json: "
                                              r"the file was changed after training"):
        load_run(run)
    # listing reads run.json alone: the file's size, not its checksum, shows the change there
    assert re.search(r"vocabularies\.json: [\d,]+ bytes, but run\.json records [\d,]+: the file was changed after "
                     r"training", list_runs(run.parent)[0]["error"])
    edit_vocabularies(run, lambda s: None)  # the same edit, now with its checksum in run.json
    with pytest.raises(CheckpointError, match=r"vocabularies\.json: " + pattern):
        load_run(run)


@pytest.mark.parametrize("change,pattern", SCHEMA_EDITS)
def test_an_old_run_with_the_schema_inline_loads_and_is_checked_as_before(run, change, pattern):
    before = load_run(run).schema
    make_old(run)
    assert load_run(run).schema == before and sorted(os.listdir(run)) == ["model.safetensors", "run.json"]
    edit_manifest(run, lambda m: change(m["schema"]))
    with pytest.raises(CheckpointError, match=r"run\.json: " + pattern):
        load_run(run)


def test_run_json_stays_small_and_the_vocabularies_file_has_its_own_cap(run):
    manifest = json.loads((run / "run.json").read_text())
    assert "schema" not in manifest and manifest["vocabularies"]["fields"] == len(load_run(run).schema.fields)
    assert sorted(os.listdir(run)) == sorted(runs.ALLOWED_FILES)
    with open(run / "vocabularies.json", "r+b") as fh:
        fh.truncate(runs.MAX_VOCABULARIES_BYTES + 1)  # sparse
    with pytest.raises(CheckpointError, match=r"vocabularies\.json: larger than 1 GiB; refusing to read it"):
        load_run(run)
    (run / "vocabularies.json").unlink()
    with pytest.raises(CheckpointError, match=r"vocabularies\.json: missing; this is not a complete run folder"):
        load_run(run)


@pytest.mark.parametrize("name", ["../../etc/passwd", "../x", "a/b", "/abs", "Genre\x00", "..", "C:\\evil",
                                  "x" * 65, ""])
def test_path_like_field_names_are_refused(run, name):
    edit_vocabularies(run, lambda s: s[1].update(name=name))
    with pytest.raises(CheckpointError, match=r"vocabularies\.json: schema field name .* is not allowed"):
        load_run(run)
    # with its checksum and size forged in run.json the change shows when the run loads, not when it is listed
    assert list_runs(run.parent)[0]["error"] is None


def test_manifest_values_are_never_opened(run, tmp_path):
    """`data_dir` and the rest are labels: loading and listing open nothing they name."""
    secret = tmp_path / "secret"
    secret.mkdir()
    for name in ("users.dat", "movies.dat", "ratings.dat"):
        (secret / name).write_text("private\n")
    edit_manifest(run, lambda m: m.update(data_dir="../../secret", model="../../secret/users.dat",
                                          data_fingerprint="/etc/passwd"))
    audited(lambda: (load_run(run), list_runs(run.parent)))
    assert not opened_under(secret)
    assert opened_under(run.parent.parent) <= {"runs/good/run.json", "runs/good/model.safetensors",
                                               "runs/good/vocabularies.json"}


def test_wrong_shapes_are_refused_before_reading_the_weights(run, monkeypatch):
    edit_vocabularies(run, lambda s: s[0]["vocab"].append("Z"))  # Gender gets a third value
    monkeypatch.setattr(runs, "load_file", lambda *a, **k: pytest.fail("the tensors were read"))
    with pytest.raises(CheckpointError, match=r"tensor embedding\.categorical\.weight is \(\d+, 4\) torch\.float32, "
                                              r"but the model in run\.json needs"):
        load_run(run)


def test_extra_layers_in_manifest(run):
    edit_manifest(run, lambda m: m["config"].update(dnn_hidden=[8]))
    with pytest.raises(CheckpointError, match=r"tensors do not match the model in run\.json \(missing \['dnn"):
        load_run(run)


def test_a_huge_vocabulary_allocates_nothing(run, monkeypatch):
    """A manifest claiming a million-row embedding must be refused by shape, before allocating it."""
    edit_vocabularies(run, lambda s: s[3].update(vocab=["<unknown>"] + [str(i) for i in range(1_000_000)]))
    real_init = torch.nn.Embedding.__init__

    def watched(self, num, dim, *args, **kwargs):
        assert num * dim < 10**6 or kwargs.get("device") == "meta" or torch.empty(0).device.type == "meta", \
            "a full-size embedding was allocated"
        real_init(self, num, dim, *args, **kwargs)
    monkeypatch.setattr(torch.nn.Embedding, "__init__", watched)
    with pytest.raises(CheckpointError, match=r"needs \(1000\d+, 4\)"):
        load_run(run)


def test_oversized_or_deep_manifest(run):
    with open(run / "run.json", "r+b") as fh:
        fh.truncate(runs.MAX_MANIFEST_BYTES + 1)  # sparse: nothing is written, the size is what counts
    with pytest.raises(CheckpointError, match=r"larger than 16 MiB; refusing to read it"):
        load_run(run)
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"run\.json: (not valid JSON|expected a JSON object)"):
        load_run(run)


def test_linked_manifest_is_refused(run, tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text((run / "run.json").read_text())
    (run / "run.json").unlink()
    (run / "run.json").symlink_to(elsewhere)
    with pytest.raises(CheckpointError, match=r"run\.json: is a symbolic link"):
        load_run(run)


# ----------------------------------------------------------------------------- damaged safetensors

def test_truncated_safetensors(run):
    data = (run / "model.safetensors").read_bytes()
    for cut, pattern in [(5, r"5 bytes, too short for a safetensors file"),
                         (40, r"declares a \d+-byte header, but only 32 bytes follow"),
                         (len(data) - 7, r"data beyond the end of the file \(truncated\?\)")]:
        (run / "model.safetensors").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"model\.safetensors: .*" + pattern):
            load_run(run)


def test_huge_declared_header(run):
    (run / "model.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match=r"declares a 4611686018427387904-byte header, but the limit is "
                                              r"1048576"):
        load_run(run)


@pytest.mark.parametrize("header,pattern", [
    (b"not json", r"the safetensors header is not JSON"),
    (b"[1, 2, 3]", r"the safetensors header is not a JSON object"),
    (b'{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', r"tensor 'w' has a malformed entry"),
    (b'{"w": {"dtype": "OBJECT", "shape": [1], "data_offsets": [0, 4]}}', r"tensor 'w' has a malformed entry"),
    (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4000000]}}', r"data beyond the end of the file"),
])
def test_malformed_header(run, header, pattern):
    (run / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    with pytest.raises(CheckpointError, match=pattern):
        load_run(run)


def test_nan_and_wrong_dtype_weights(run):
    state = load_file(run / "model.safetensors")
    state["output.bias"] = torch.tensor([float("nan")])
    save_file(state, run / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor output\.bias holds NaN or infinite values"):
        load_run(run)
    state["output.bias"] = torch.zeros(1, dtype=torch.float64)
    save_file(state, run / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor output\.bias is \(1,\) torch\.float64, but the model in "
                                              r"run\.json needs \(1,\) torch\.float32"):
        load_run(run)


# ----------------------------------------------------------------------------- the registry survives all of it

def test_registry_lists_every_tampered_folder_without_failing(run, schema):
    root = run.parent
    save_run(root / "also-good", AutoInt(SMALL, schema), metrics={})
    for name, content in [("no-json", None), ("bad-json", "{"), ("list-json", "[]"), ("int-created", None)]:
        (root / name).mkdir()
        if content is not None:
            (root / name / "run.json").write_text(content)
    (root / "int-created" / "run.json").write_text(json.dumps({**read_manifest(run), "created": 5}))
    (root / "stray-file.txt").write_text("not a run")
    listed = {r["name"]: r for r in list_runs(root)}
    assert set(listed) == {"good", "also-good", "no-json", "bad-json", "list-json", "int-created"}
    assert listed["good"]["error"] is None and listed["also-good"]["error"] is None
    for name in ("no-json", "bad-json", "list-json", "int-created"):
        assert "run.json" in listed[name]["error"], listed[name]
