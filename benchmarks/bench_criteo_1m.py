"""A 1-million-row Criteo-format file, end to end from the command line: generate, describe, train one epoch,
explain a test sample, and measure its pairwise interactions; each step's wall time and peak RSS.

    .venv/bin/python benchmarks/bench_criteo_1m.py                     # 1,000,000 rows, in /tmp/autoint-criteo-1m
    .venv/bin/python benchmarks/bench_criteo_1m.py --rows 20000 --out /tmp/c20k   # a quick try of the same steps

Each step is its own process (`python -m autoint ...`), so its peak RSS (the kernel's ru_maxrss of that child,
from os.wait4) is that step's alone: reading and encoding 1M x 39 fields, training, explaining. The file is
written by autoint.datasets.synth.generate_criteo (Criteo's exact format: label, I1-I13, C1-C26 as 8-hex-digit
hashes, tab-separated, empty = missing, no header) with two planted pairs; the data set is read through the
built-in `criteo` spec (min count 10, log2 transform of the integers, the authors' 10 stratified folds).
Prints one JSON object a line and writes results.json beside the data (not committed: the figures go to
benchmarks/README.md by hand, with this command).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags) or "none of avx2/avx512"


def step(name: str, command: list[str], threads: int) -> dict:
    """Run one command as a child; its wall seconds, peak RSS (MiB) and the last line it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=out_file, stderr=err_file, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # reaps it with its own rusage (Popen.wait would not give it)
        child.returncode = code = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out_file.seek(0), err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    result = {"step": name, "seconds": round(seconds, 1), "returncode": code,
              "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
              "command": " ".join(command[1:]) if command[0] == sys.executable else " ".join(command)}
    last = (out.strip().splitlines() or [""])[-1]
    try:
        result["output"] = json.loads(last)
    except json.JSONDecodeError:
        result["output"] = last[-300:]
    if code != 0:
        result["stderr"] = err[-2000:]
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default="/tmp/autoint-criteo-1m", help="folder for the data and the run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-data", action="store_true", help="reuse a file this script generated before")
    args = parser.parse_args()
    out = Path(args.out)
    data, run = out / "criteo", out / "run"
    py = sys.executable
    print(json.dumps({"step": "machine", "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
                      "python": platform.python_version(), "load_average": os.getloadavg(), "rows": args.rows,
                      "threads": args.threads, "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}),
          flush=True)
    results = []
    if not (args.keep_data and (data / "train.txt").is_file()):
        results.append(step("generate", [py, "-c", "import sys; from autoint.datasets.synth import generate_criteo; "
                                                   f"generate_criteo(sys.argv[1], rows={args.rows}, seed=0)",
                                         str(data)], args.threads))
    common = ["--dataset", "criteo", "--data-dir", str(data)]
    results.append(step("describe", [py, "-m", "autoint", "describe", *common], args.threads))
    results.append(step("train one epoch (d=16, d'=32, H=2, L=3, batch 1024)",
                        [py, "-m", "autoint", "train", *common, "--epochs", "1", "--patience", "1", "--quiet",
                         "--device", "cpu", "--out", str(run)], args.threads))
    results.append(step("explain test sample 0 (CTR, attention, attributions)",
                        [py, "-m", "autoint", "explain", str(run), *common, "--row", "0", "--json"], args.threads))
    results.append(step("interactions of test sample 0 (39 fields: KernelSHAP-IQ)",
                        [py, "-m", "autoint", "interactions", str(run), *common, "--row", "0", "--json"],
                        args.threads))
    size = (data / "train.txt").stat().st_size if (data / "train.txt").is_file() else None
    summary = {"rows": args.rows, "file_bytes": size, "cpu_flags": cpu_flags(), "threads": args.threads,
               "steps": [{k: r[k] for k in ("step", "seconds", "peak_rss_mib", "returncode")} for r in results]}
    train = next((r for r in results if r["step"].startswith("train")), None)
    if train and isinstance(train.get("output"), dict):
        summary["test_auc"] = train["output"].get("test_auc")
        summary["epoch_seconds"] = train["output"].get("epoch_seconds")
    (out / "results.json").write_text(json.dumps({"summary": summary, "steps": results}, indent=1))
    print(json.dumps({"step": "summary", **summary}))
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
