"""How long `autoint.training.runs.list_runs` takes over run folders with Criteo-sized vocabularies (issue 15).

The app lists the runs root on every Streamlit rerun. This builds RUNS run folders under a scratch root, each with
a vocabularies.json padded to VOCAB_MIB MiB (one field's vocabulary grown; run.json's sha256 and size updated, as
save_run would write them), then times list_runs (median of REPEATS, after one warm-up that fills the page cache)
and, for comparison, load_run's checksum read of one vocabularies file.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_list_runs.py [--runs 5] [--vocab-mib 20] [--root DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import time
from pathlib import Path

import torch

from autoint.model.reference_models import build_model
from autoint.model.autoint import AutoIntConfig
from autoint.training.runs import MANIFEST, VOCABULARIES, list_runs, read_manifest, save_run
from autoint.data.schema import Field, Schema


def make_runs(root: Path, runs: int, vocab_mib: int) -> None:
    shutil.rmtree(root, ignore_errors=True)
    schema = Schema((Field("C1", "categorical", ("<unknown>", "a", "b")), Field("I1", "numeric")))
    model = build_model(AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1), schema)
    for i in range(runs):
        path = save_run(root / f"run{i}", model, metrics={"test_auc": 0.5 + i / 100})
        entries = json.loads((path / VOCABULARIES).read_text())
        filler = [f"{i}-{j:08x}" for j in range(vocab_mib * (1 << 20) // 13)]  # about 13 bytes a value in JSON
        entries[0]["vocab"] = entries[0]["vocab"] + filler
        raw = json.dumps(entries).encode()
        (path / VOCABULARIES).write_bytes(raw)
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["vocabularies"].update(sha256=hashlib.sha256(raw).hexdigest(), bytes=len(raw))
        (path / MANIFEST).write_text(json.dumps(manifest))


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: the files are in the page cache, as on an app's second rerun
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vocab-mib", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", default="/tmp/bench-list-runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.root)
    make_runs(root, args.runs, args.vocab_mib)
    sizes = [(root / f"run{i}" / VOCABULARIES).stat().st_size for i in range(args.runs)]
    listed = list_runs(root)
    assert len(listed) == args.runs and all(r["error"] is None for r in listed), listed
    listing = median_seconds(lambda: list_runs(root), args.repeats)
    checked = median_seconds(lambda: read_manifest(root / "run0"), args.repeats)
    print(json.dumps({"runs": args.runs, "vocabularies_mib": round(statistics.mean(sizes) / (1 << 20), 1),
                      "list_runs_s": round(listing, 4), "read_manifest_one_run_s": round(checked, 4)}))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
