"""Where a rerun's server time goes, as the person exploring clicks: the page script against Streamlit's
gc.collect(2) after it (app/state.py settle_heap). Needs a running app, chromium, and py-spy (in .venv):

    AUTOINT_DATA_DIR=... AUTOINT_RUNS_DIR=... .venv/bin/streamlit run streamlit_app.py --server.headless true \
        --server.port 8562 --server.fileWatcherType none &
    .venv/bin/python benchmarks/bench_rerun_gc.py --port 8562 [--page ""] [--reruns 8]

Opens the page, waits until it is idle, then records the server with py-spy (100 Hz) while clicking the sidebar's
SVG/PNG export choice `--reruns` times (a full rerun of the same sample, one a second). Prints the samples spent in
script threads: in Streamlit's post-run collect, and in the rest of the run, per rerun in ms; and the browser's
click-to-idle seconds. For a baseline, run it against an app started from an older checkout (a git worktree).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8562)
    parser.add_argument("--page", default="", help="the page's url path: '' (Explore), what-if, correlations ...")
    parser.add_argument("--reruns", type=int, default=8)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    pids = subprocess.run(["pgrep", "-f", f"server.port {args.port}"], capture_output=True, text=True).stdout.split()
    if not pids:
        sys.exit(f"no app found on port {args.port}: start one first (see this file's docstring)")
    raw = Path(tempfile.mkdtemp()) / "spy.txt"
    py_spy = Path(sys.executable).parent / "py-spy"

    def idle(page) -> bool:
        return page.locator('[data-testid="stStatusWidget"]').count() == 0 and \
            page.locator('[data-testid="stSpinner"]').count() == 0

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"http://localhost:{args.port}/{args.page}")
        page.wait_for_selector("h1", timeout=120000)
        time.sleep(5)
        while not idle(page):
            time.sleep(0.2)
        time.sleep(2)
        spy = subprocess.Popen([str(py_spy), "record", "-p", pids[0], "-o", str(raw), "-f", "raw", "-r", "100",
                                "--nonblocking", "--duration", str(args.reruns * 2 + 4)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        seconds = []
        for i in range(args.reruns):
            started = time.time()
            page.get_by_text("SVG" if i % 2 == 0 else "PNG", exact=True).first.click()
            time.sleep(0.05)
            while not idle(page):
                time.sleep(0.02)
            seconds.append(round(time.time() - started, 2))
            time.sleep(1.0)
        browser.close()
    spy.wait()
    gc_samples = script_samples = 0
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        if "script_runner" not in stack:
            continue
        if "_on_script_finished" in stack:
            gc_samples += int(count)
        else:
            script_samples += int(count)
    print(json.dumps({"command": "python benchmarks/bench_rerun_gc.py " + " ".join(sys.argv[1:]),
                      "load_avg_1m": round(os.getloadavg()[0], 2), "reruns": args.reruns,
                      "script_ms_per_rerun": round(script_samples * 10 / args.reruns),
                      "post_run_gc_ms_per_rerun": round(gc_samples * 10 / args.reruns),
                      "click_to_idle_s": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
