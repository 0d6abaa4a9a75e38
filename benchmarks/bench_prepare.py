"""`prepare` at 1M and 10M rows of a generated Criteo-format file: rows per second and peak RSS.

    PYTHONPATH=. python benchmarks/bench_prepare.py --rows 1000000 10000000 [--work /tmp/bench-prepare]

The 1M-row file is `synth.generate_criteo(rows=1_000_000, seed=0)`. The 10M-row file is ten such files
(seeds 0..9, so every line is fresh: other values, other category pools) written one after the other. Each
`prepare` runs in a child process (`python -m autoint prepare`), so its peak RSS is the child's own
(the child prints its `resource.getrusage(RUSAGE_SELF).ru_maxrss` as it exits); wall time and rows/s
are the child's, start-up included. Results are printed as one JSON line per size.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MILLION = 1_000_000


def criteo_file(work: Path, rows: int) -> Path:
    """work/criteo-N/train.txt with `rows` lines (a multiple of 1M above 1M: files of seeds 0.. appended)."""
    from autoint.datasets.synth import generate_criteo
    folder = work / f"criteo-{rows}"
    if (folder / "train.txt").is_file():
        return folder
    parts = max(1, rows // MILLION)
    chunk = rows if rows <= MILLION else MILLION
    pieces = []
    for seed in range(parts):
        piece = work / f"piece-{chunk}-{seed}"
        if not (piece / "train.txt").is_file():
            generate_criteo(piece, rows=chunk, seed=seed)
        pieces.append(piece / "train.txt")
    staging = work / f".criteo-{rows}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with open(staging / "train.txt", "wb") as out:
        for p in pieces:
            with open(p, "rb") as fh:
                shutil.copyfileobj(fh, out, 16 << 20)
    os.rename(staging, folder)
    return folder


CHILD = ("import resource, runpy, sys\n"
         "try:\n"
         "    runpy.run_module('autoint', run_name='__main__')\n"
         "finally:\n"
         "    print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def run(folder: Path, out: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "prepare", "--dataset", "criteo", "--data-dir",
                           str(folder), "--out", str(out), *extra], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    peak = int(proc.stderr.rsplit("peak_rss_kib", 1)[1].split()[0])  # the child's own maximum, KiB
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"rows": summary["rows"], "wall_s": round(wall, 1), "rows_per_s": round(summary["rows"] / wall),
            "prepare_s": summary["seconds"], "peak_rss_mib": round(peak / 1024),
            "file_mib": round((folder / "train.txt").stat().st_size / 2**20),
            "out_mib": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[MILLION, 10 * MILLION])
    parser.add_argument("--work", default="/tmp/bench-prepare")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `prepare` flags")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        folder = criteo_file(work, rows)
        print(json.dumps({"threads": os.cpu_count(), **run(folder, work / f"prepared-{rows}", args.extra)}),
              flush=True)


if __name__ == "__main__":
    main()
