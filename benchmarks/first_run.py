"""First start of the app: time to the first attention chart, then the converged default, with the browser idle.

Starts the app as `make run` does (the same `streamlit run` command and flags, PYTHONUNBUFFERED=1, no thread
settings) with AUTOINT_DATA_DIR=--data-dir and an empty AUTOINT_RUNS_DIR, opens it in headless chromium
(Debian's /usr/bin/chromium driven by Playwright), and records, in seconds from the server's start:

- when the first attention chart is drawn on the Explore page (the first Plotly chart, the attention grid);
- when the quick run lands (the trainer's "snapshot" event) and its test AUC;
- then, the browser left idle: each epoch of the background training (when the harness saw it, validation
  AUC, epoch seconds), the trainer's thread switches (its "threads" events), the cores it kept busy (its CPU
  seconds per interval, from /proc), when the converged run lands with its test AUC, and when the page shows
  the swap message.

Run it alone on the machine (another training would share the cores):

    flock /tmp/autoint-cpu.lock .venv/bin/python benchmarks/first_run.py            # prints JSON
    flock /tmp/autoint-cpu.lock .venv/bin/python benchmarks/first_run.py --json benchmarks/results/first_run/attempt2.json

Everything stops by itself: a deadline (default 900 s), then the job is cancelled and the server stopped.

`--curve` instead trains the default model in this process and prints each epoch's validation and test AUC
(the test AUC of every epoch's weights, which training itself never looks at), to compare settings:

    flock /tmp/autoint-cpu.lock .venv/bin/python benchmarks/first_run.py --curve --lr 4e-3 --lr-decay 0.5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.bench_load import CHROMIUM, CHROMIUM_ARGS, cpu_seconds, free_port  # noqa: E402
from autoint.workspace.defaults import READABLE_RUN  # noqa: E402

FIRST_CHART = "() => document.querySelectorAll('.js-plotly-plot .main-svg').length > 0"
SWAP_TEXT = "finished training to convergence"
FIRST_CHART_TARGET_S, CONVERGED_TARGET_S, AUC_TARGET = 60.0, 600.0, 0.825  # issue 22: first chart <= 60 s


def cpu_flags() -> list[str]:
    flags = set(Path("/proc/cpuinfo").read_text().split())
    return sorted(f for f in ("avx2", "avx512f", "amx_tile") if f in flags)


def make_run_command(port: int) -> list[str]:
    """The `streamlit run` command of `make run` (from `make -n`, so it stays the Makefile's), on this port."""
    printed = subprocess.run(["make", "-s", "-n", "run", f"PORT={port}", "HOST=127.0.0.1"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.replace("\\\n", " ")
    (line,) = [line for line in printed.splitlines() if "-m streamlit run" in line]
    return shlex.split(line)


def start_app(data: Path, runs: Path, log_path: Path) -> tuple[subprocess.Popen, str, float, list[str]]:
    """`make run`'s command on a free port; returns (process, url, the wall time it was started, the command)."""
    port = free_port()
    command = make_run_command(port)
    env = {**os.environ, "AUTOINT_DATA_DIR": str(data), "AUTOINT_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # make run sets none
        env.pop(name, None)
    started = time.time()
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    return server, f"http://127.0.0.1:{port}", started, command


def trainer_pid(worker: int) -> int | None:
    try:
        children = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def curve(args) -> dict:
    """Train the default model (the app's, with these Adam settings); each epoch's val and test AUC and time."""
    import torch
    import autoint.training.train as trainer
    from autoint.datasets.movielens import load_movielens
    from autoint.model.presets import preset_config
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    dataset = load_movielens(args.data_dir)
    loaded = time.perf_counter() - t0
    test_x, test_y = dataset.split("test")
    models = []
    build = trainer.build_model
    trainer.build_model = lambda *a, **k: models.append(build(*a, **k)) or models[-1]  # keep a handle on it
    epochs = []

    def callback(event):
        if event["event"] == "epoch":
            model = models[0].eval()
            test = trainer.evaluate(model, test_x, test_y)["auc"]
            model.train()
            epochs.append({"epoch": event["epoch"], "val_auc": round(event["val_auc"], 4), "test_auc": round(test, 4),
                           "seconds": event["seconds"], "since_start_s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)

    config = trainer.TrainConfig(epochs=args.epochs, patience=args.patience, lr=args.lr, lr_decay=args.lr_decay,
                                 batch_size=args.batch_size, seed=args.seed)
    result = trainer.train(dataset, preset_config(args.preset), config, callback=callback, progress=False)
    return {"mode": "curve", "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "cpu_flags": cpu_flags(), "threads": args.threads, "train_config": vars(config), "load_s": round(loaded, 1),
            "epochs": epochs, "total_s": round(time.perf_counter() - t0, 1),
            "final": {k: result.metrics[k] for k in ("test_auc", "val_auc", "best_epoch", "epochs_run")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "ml-1m-u2999"))
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds from the server's start")
    parser.add_argument("--cpu-every", type=float, default=10.0, help="seconds per trainer CPU sample")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--curve", action="store_true", help="train in this process, print the AUC per epoch")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="--curve: torch threads")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-decay", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--preset", default="readable", help="--curve: the model preset (the app's first start: readable)")
    args = parser.parse_args()
    if args.curve:
        text = json.dumps(curve(args), indent=1)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")
        return 0
    from playwright.sync_api import sync_playwright
    from autoint.training.jobs import JobQueue

    work = Path(tempfile.mkdtemp(prefix="first-run-"))
    runs = work / "runs"
    runs.mkdir()
    result = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "cpu_flags": cpu_flags(),
              "load_at_start": os.getloadavg(), "data_dir": args.data_dir, "runs_dir": str(runs)}
    server, url, t0, result["app_command"] = start_app(Path(args.data_dir), runs, work / "streamlit.log")
    rel = lambda t: round(t - t0, 1)  # noqa: E731
    queue = JobQueue(runs)
    job = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            while True:  # the server's health endpoint
                try:
                    page.goto(url, timeout=5000)
                    break
                except Exception:
                    if server.poll() is not None or time.time() - t0 > 120:
                        raise RuntimeError((work / "streamlit.log").read_text()[-3000:])
                    time.sleep(0.3)
            result["page_opened_s"] = rel(time.time())
            seen_epochs, cpu_samples, last_cpu, swap_seen = set(), [], None, None
            last_server = (time.time(), cpu_seconds(server.pid))
            result["epochs"] = []
            while time.time() - t0 < args.deadline:
                now = time.time()
                jobs = [j for j in queue.jobs() if j.run_name == READABLE_RUN]  # the paper's job follows it
                job = jobs[0] if jobs else None
                if "first_chart_s" not in result and page.evaluate(FIRST_CHART):
                    result["first_chart_s"] = rel(time.time())
                    page.screenshot(path=str(work / "first_chart.png"))
                if job is not None and (job.folder / "pid.json").is_file():
                    for event in job.history:
                        if event["epoch"] not in seen_epochs:
                            seen_epochs.add(event["epoch"])
                            result["epochs"].append({"seen_s": rel(now), "epoch": event["epoch"],
                                                     "val_auc": round(event["val_auc"], 4),
                                                     "seconds": event["seconds"]})
                    if job.snapshot is not None and "quick" not in result:
                        result["quick"] = {"seen_s": rel(now), "test_auc": round(job.snapshot["test_auc"], 4),
                                           "epoch": job.snapshot["epoch"]}
                    worker = json.loads((job.folder / "pid.json").read_text())["pid"]
                    trainer = trainer_pid(worker)
                    if trainer is not None:
                        try:
                            reading = (now, cpu_seconds(trainer))
                        except OSError:
                            reading = None
                        if reading and last_cpu and reading[0] - last_cpu[0] >= args.cpu_every:
                            server_now = (reading[0], cpu_seconds(server.pid))
                            cpu_samples.append({"at_s": rel(reading[0]), "trainer_cores": round(
                                (reading[1] - last_cpu[1]) / (reading[0] - last_cpu[0]), 2), "server_cores": round(
                                (server_now[1] - last_server[1]) / (server_now[0] - last_server[0]), 2)})
                            last_cpu, last_server = reading, server_now
                        elif reading and last_cpu is None:
                            last_cpu = reading
                    if job.status == "finished" and "converged" not in result:
                        metrics = json.loads((job.run_path / "run.json").read_text())["metrics"]
                        result["converged"] = {"seen_s": rel(now), "test_auc": round(metrics["test_auc"], 4),
                                               "best_epoch": metrics["best_epoch"],
                                               "epochs_run": metrics["epochs_run"]}
                if swap_seen is None and page.get_by_text(SWAP_TEXT).count():
                    swap_seen = rel(time.time())
                    page.screenshot(path=str(work / "swapped.png"))
                if swap_seen is not None and "converged" in result:
                    break
                if job is not None and job.status not in ("queued", "running", "finished"):
                    result["job_ended"] = job.description
                    break
                time.sleep(0.5)
            result["swap_message_s"] = swap_seen
            result["cores_used"] = cpu_samples
            browser.close()
        if job is not None:
            job = queue.job(job.id)
            result["thread_switches"] = [{"at_s": rel(e["time"]), "threads": e["threads"], "idle_s": e.get("idle_s"),
                                          "free_cores": e.get("free_cores"), "epoch": e.get("epoch"),
                                          "step": e.get("step")} for e in job.thread_switches]
            result["job_spec"] = {k: job.spec[k] for k in ("epochs", "threads", "idle_threads", "snapshot")}
            result["job_command"] = job.spec["command"][3:]
    finally:
        for active in queue.active():  # stopped early: leave no trainer behind
            queue.cancel(active.id)
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    result["load_at_end"] = os.getloadavg()
    log = (work / "streamlit.log").read_text(errors="replace")
    result["server_log"] = {"tracebacks": log.count("Traceback"), "inotify_overflows": log.count("overflowed")}
    converged = result.get("converged", {})
    result["targets"] = {
        f"first_chart_s <= {FIRST_CHART_TARGET_S:g}": result.get("first_chart_s", float("inf")) <= FIRST_CHART_TARGET_S,
        "converged test AUC >= 0.825 within 600 s": converged.get("test_auc", 0) >= AUC_TARGET
        and converged.get("seen_s", float("inf")) <= CONVERGED_TARGET_S}
    result["screenshots"] = [str(work / "first_chart.png"), str(work / "swapped.png")]
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
