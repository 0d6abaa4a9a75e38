"""Load: N concurrent browser sessions explore the app for S seconds each; errors, time-to-chart, server memory.

One headless chromium (Debian's /usr/bin/chromium, driven by Playwright) opens N browser
contexts (N independent Streamlit sessions) against a `streamlit run` server that this
script starts on 127.0.0.1 on a free port, with small synthetic data and a small model
trained here. Each session loads the Explore page, then loops until its S seconds are up
(or `--max-steps`): pick another user or movie in the selectboxes and wait for the page's
script run to end with its charts drawn. The time-to-chart of a step runs from the click on
the option to that moment. Traffic goes to 127.0.0.1 only; everything stops by itself (per
step timeouts, a bounded loop, an overall deadline), and the server is stopped at the end.

Memory: the server's RSS (from /proc) is sampled every 0.25 s: idle, with 1 session ready,
with all N ready, and the peak. The models and data live in `st.cache_resource`, shared by
every session; Streamlit's /_stcore/metrics endpoint counts the cached entries, which stay at
one model however many sessions there are.

    .venv/bin/python benchmarks/bench_load.py                       # 20 sessions x 60 s, prints JSON
    .venv/bin/python benchmarks/bench_load.py --sessions 3 --seconds 10
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # Many pages in one browser: keep every one painting, not only the newest (no occlusion,
                 # no background throttling), or the charts of the others never draw.
                 "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                 "--disable-backgrounding-occluded-windows",
                 "--disable-features=CalculateNativeWinOcclusion,IntensiveWakeUpThrottling"]
# What the page shows for the current sample: the attention grid's values (the first Plotly chart) and the
# predicted CTR. A pick is done when the script run has ended and this has changed, i.e. the new sample's
# charts are drawn. (Counting the run-state attribute's flips instead missed runs under load: React batches
# the "running" and "not running" updates into one render when both messages arrive in one task.)
SIGNATURE = """() => {
  const grid = document.querySelector('.js-plotly-plot');
  const ctr = document.querySelector('[data-testid="stMetricValue"]');
  return JSON.stringify([grid && grid.data ? grid.data.map(t => t.z) : null, ctr ? ctr.innerText : null]);
}"""
READY = """charts => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSkeleton"]')
    && document.querySelectorAll('.js-plotly-plot .main-svg').length >= charts;
}"""
PAGE_STATE = """([label, before]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const box = [...document.querySelectorAll('[data-testid="stSelectbox"]')].find(e => e.innerText.includes(label));
  return {script_state: app && app.getAttribute('data-test-script-state'),
          sample_changed: before !== null && (""" + SIGNATURE + """)() !== before,
          selected: box ? [...box.querySelectorAll('input')].map(i => i.value).join(' ') : null,
          charts: document.querySelectorAll('.js-plotly-plot .main-svg').length,
          skeletons: document.querySelectorAll('[data-testid="stSkeleton"]').length};
}"""
CHARTS = 3  # the Explore page: attention grid, enlarged head, attributions


# ----------------------------------------------------------------------------- set-up

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(workdir: Path, users: int, movies: int, ratings: int, footprint: bool = True) -> tuple[Path, Path, dict]:
    """Synthetic data and a small AutoInt trained on it, saved as the only run."""
    import torch
    torch.set_num_threads(1)
    from autoint.datasets.movielens import load_movielens
    from autoint.model.autoint import AutoIntConfig
    from autoint.training.runs import save_run
    from autoint.datasets.synth import generate_movielens
    from autoint.training.train import TrainConfig, train
    data = generate_movielens(workdir / "ml", users=users, movies=movies, ratings=ratings, seed=5)
    dataset = load_movielens(data)
    result = train(dataset, AutoIntConfig(embed_dim=16, attn_dim=16, heads=2, layers=2),
                   TrainConfig(epochs=1, batch_size=256, lr=0.005, seed=1), progress=False)
    runs = workdir / "runs"
    save_run(runs / "small", result.model, metrics=result.metrics, data_fingerprint=dataset.fingerprint,
             data_dir=str(data))
    params = sum(p.numel() * p.element_size() for p in result.model.parameters())
    return data, runs, {"users": users, "movies": movies, "ratings": ratings, "model_params_bytes": params,
                        "cached_state_mib": cached_state_mib(data, runs / "small") if footprint else None}


FOOTPRINT = """
import sys, torch
torch.set_num_threads(1)
from app import state
from autoint.datasets.movielens import Catalog, load_movielens, read_movielens
from autoint.explain.baselines import mean_embedding
from autoint.explain.recommend import ItemScorer
from autoint.training.runs import load_run
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024
folder, run = sys.argv[1], sys.argv[2]
def load():
    model = load_run(run).model
    cat = Catalog(read_movielens(folder))
    data = load_movielens(folder, schema=model.schema)
    return model, cat, data, mean_embedding(model, data.split('train')[0]), ItemScorer(model, cat)
first = load()  # the libraries' one-off start-up costs
before = rss()
second = load()  # what each further copy would cost
print(rss() - before)
"""


def cached_state_mib(data: Path, run: Path) -> float:
    """What one more copy of the state the app caches would cost: the RSS growth of a process that loads the
    model, the catalog, the encoded data, the IG baseline and the movie scorer (what `st.cache_resource`
    holds) a second time, after a first load has paid the libraries' start-up costs."""
    out = subprocess.run([sys.executable, "-c", FOOTPRINT, str(data), str(run)], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def start_server(data: Path, runs: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "AUTOINT_DATA_DIR": str(data), "AUTOINT_RUNS_DIR": str(runs), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    log = open(log_path, "w")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                               "--server.address", "127.0.0.1", "--server.port", str(port),
                               "--server.headless", "true", "--browser.gatherUsageStats", "false",
                               "--server.fileWatcherType", "none"], cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return server, url
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu() -> dict[int, tuple[str, float]]:
    """Every process's name (/proc/PID/comm) and CPU seconds so far."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as fh:
                    out[int(entry)] = (fh.read().strip(), cpu_seconds(int(entry)))
            except (OSError, ValueError, IndexError):
                pass
    return out


class MemorySampler(threading.Thread):
    """The server's RSS every `every` s; and, once a second, the CPU seconds of every process (by name), so the
    run can say where the cores went: the server, chromium (browser, renderers, GPU and utility processes), the
    Playwright driver, this harness, or something else on the machine. A process's last reading is kept after
    it exits; `mark()` sets the zero."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.samples = pid, every, 0.0, []
        self.zero, self.latest = {}, {}
        self.halt = threading.Event()

    def sample_cpu(self) -> None:
        self.latest.update(process_cpu())

    def mark(self) -> None:
        self.zero = process_cpu()

    def cpu_by_name(self) -> dict[str, float]:
        totals = {}
        for pid, (name, seconds) in self.latest.items():
            before = self.zero.get(pid)
            used = seconds - before[1] if before and before[0] == name else seconds
            label = "server (streamlit)" if pid == self.pid else "harness (python)" if pid == os.getpid() else name
            totals[label] = totals.get(label, 0.0) + used
        return {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v >= 0.1}

    def run(self) -> None:
        ticks = 0
        while not self.halt.is_set():
            try:
                value = rss_mib(self.pid)
                if ticks % max(1, round(1 / self.every)) == 0:
                    self.sample_cpu()
            except OSError:
                return
            ticks += 1
            self.peak = max(self.peak, value)
            self.samples.append((time.monotonic(), value))
            self.halt.wait(self.every)


def cache_entries(url: str) -> dict:
    """Entries per cached function, from Streamlit's metrics endpoint (counts, not bytes, by default)."""
    try:
        text = urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=10).read().decode()
    except OSError as exc:
        return {"unavailable": str(exc)}
    out = {}
    for line in text.splitlines():
        match = re.match(r'cache_memory_bytes\{cache_type="([^"]+)",cache="([^"]+)"\} (\S+)', line)
        if match:
            name = match.group(2).rsplit(".", 1)[-1]
            out[f"{match.group(1)}:{name}"] = out.get(f"{match.group(1)}:{name}", 0) + float(match.group(3))
        elif line.startswith("session_"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


# ----------------------------------------------------------------------------- one session

async def settle(page, before: str | None, timeout_ms: float) -> None:
    """Wait for the end of a script run with the charts drawn; after a pick (`before`: the page's SIGNATURE at the
    click), charts that show the new sample."""
    await page.wait_for_function(f"([charts, before]) => ({READY})(charts) && (before === null || ({SIGNATURE})() "
                                 "!== before)", arg=[CHARTS, before], timeout=timeout_ms, polling=100)


async def choose(page, label: str, typed: str, option: str, timeout_ms: float, shot: str = "retry"
                 ) -> tuple[float | None, bool]:
    """Choose `option` in the selectbox labelled `label` by typing `typed` into it. Returns the perf_counter time of
    the click and whether the typing had to be retried; (None, False) when `option` is already chosen, since no
    rerun would follow. With BENCH_LOAD_SHOTS set, a retry leaves a screenshot named `shot` there."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label)
    # The chosen option sits in the box's <input>, which innerText leaves out.
    shown = await box.evaluate("e => e.innerText + ' ' + [...e.querySelectorAll('input')].map(i => i.value).join(' ')")
    if option in shown:
        return None, False
    await box.locator("input").click()
    await page.get_by_role("option").first.wait_for(timeout=timeout_ms)  # the list is open
    await page.keyboard.type(typed)
    choice = page.get_by_role("option", name=option, exact=True).first
    retried = False
    try:
        await choice.wait_for(timeout=15_000)
    except Exception:  # the dropdown missed the typing (a harness hiccup, not the app's): once more
        retried = True
        if os.environ.get("BENCH_LOAD_SHOTS"):
            await page.screenshot(path=f"{os.environ['BENCH_LOAD_SHOTS']}/{shot}.png")
        await page.keyboard.press("Escape")
        await box.locator("input").click()
        await page.get_by_role("option").first.wait_for(timeout=timeout_ms)
        await page.keyboard.press("Control+A")
        await page.keyboard.type(typed)
        await choice.wait_for(timeout=timeout_ms)
    clicked = time.perf_counter()
    await choice.click()
    return clicked, retried


async def page_errors(page) -> list[str]:
    found = await page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').all_inner_texts()
    return [text[:300] for text in found]


async def explore(index: int, browser, url: str, seconds: float, max_steps: int, users: list[int],
                  titles: dict[int, str], step_timeout_s: float, result: dict, first_ready: asyncio.Event | None,
                  go: asyncio.Event) -> None:
    rng = random.Random(index)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    record = {"session": index, "first_load_s": None, "steps": 0, "charts": 0, "times": [], "errors": [], "retries": 0,
              "page_states": []}
    result["sessions"].append(record)
    try:
        page = await context.new_page()
        started = time.perf_counter()
        await page.goto(url, timeout=step_timeout_s * 1000)
        await settle(page, None, step_timeout_s * 1000)
        record["first_load_s"] = time.perf_counter() - started
        record["charts"] += 1
        record["errors"] += [f"first load: {e}" for e in await page_errors(page)]
        if first_ready is not None:
            first_ready.set()
        await go.wait()
        end = time.monotonic() + seconds
        user, movie = None, None
        while time.monotonic() < end and record["steps"] < max_steps:
            record["steps"] += 1
            label, before, option = "", None, ""
            try:
                before = await page.evaluate(SIGNATURE)
                if record["steps"] % 2:
                    user = rng.choice([u for u in users if u != user])
                    label, typed, option = "User", str(user), f"user {user}"
                else:
                    movie = rng.choice([m for m in titles if m != movie])
                    label, typed, option = "Movie", f"#{movie}", f"{titles[movie]} · #{movie}"
                clicked, retried = await choose(page, label, typed, option, step_timeout_s * 1000,
                                                shot=f"retry-{index}-{record['steps']}")
                record["retries"] += retried
                if clicked is None:
                    continue  # already chosen: no rerun would follow
                await settle(page, before, step_timeout_s * 1000)
                record["times"].append(time.perf_counter() - clicked)
                record["charts"] += 1
                errors = await page_errors(page)
                record["errors"] += [f"step {record['steps']}: {e}" for e in errors]
            except Exception as exc:  # a timeout or a lost page: counted, then the session starts over
                record["errors"].append(f"step {record['steps']}: {type(exc).__name__}: {str(exc)[:300]}")
                try:  # what the page showed when the step gave up: did the pick take, did a run end, any charts?
                    shown_state = await page.evaluate(PAGE_STATE, [label, before])
                    record["page_states"].append({"step": record["steps"], "wanted": option, **shown_state})
                except Exception:
                    pass
                try:
                    shown = await page_errors(page)
                    record["errors"] += [f"step {record['steps']} (on the page): {e}" for e in shown]
                    if os.environ.get("BENCH_LOAD_SHOTS"):
                        await page.screenshot(path=f"{os.environ['BENCH_LOAD_SHOTS']}/error-{index}-{record['steps']}.png")
                except Exception:
                    pass
                try:
                    await page.goto(url, timeout=step_timeout_s * 1000)
                    await settle(page, None, step_timeout_s * 1000)
                except Exception as again:
                    record["errors"].append(f"reload: {type(again).__name__}: {str(again)[:200]}")
                    break
    except Exception as exc:
        record["errors"].append(f"session: {type(exc).__name__}: {str(exc)[:300]}")
        if os.environ.get("BENCH_LOAD_SHOTS"):
            try:
                await page.screenshot(path=f"{os.environ['BENCH_LOAD_SHOTS']}/session-{index}.png")
            except Exception:
                pass
        if first_ready is not None:
            first_ready.set()
    finally:
        await context.close()


async def drive(url: str, server_pid: int, sessions: int, seconds: float, max_steps: int, users: list[int],
                titles: dict[int, str], step_timeout_s: float, sampler: MemorySampler, ramp_s: float) -> dict:
    from playwright.async_api import async_playwright
    result = {"sessions": [], "rss_mib": {"idle": rss_mib(server_pid)}}
    sampler.mark()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        browser_started = time.monotonic()
        try:
            go, first_ready = asyncio.Event(), asyncio.Event()
            # One session first, to measure the server with one session; then the rest join it.
            tasks = [asyncio.create_task(explore(0, browser, url, seconds, max_steps, users, titles,
                                                 step_timeout_s, result, first_ready, go))]
            await asyncio.wait_for(first_ready.wait(), step_timeout_s * 2)
            await asyncio.sleep(2.0)
            result["rss_mib"]["one_session"] = rss_mib(server_pid)
            result["cache_one_session"] = await asyncio.to_thread(cache_entries, url)
            for i in range(1, sessions):  # the others join `ramp_s` apart, as people arrive, not in one instant
                tasks.append(asyncio.create_task(explore(i, browser, url, seconds, max_steps, users, titles,
                                                         step_timeout_s, result, None, go)))
                await asyncio.sleep(ramp_s)
            while sum(r["first_load_s"] is not None or bool(r["errors"]) for r in result["sessions"]) < sessions:
                await asyncio.sleep(0.2)  # every session has loaded (or failed to)
                if all(t.done() for t in tasks):
                    break
            result["rss_mib"]["all_sessions_loaded"] = rss_mib(server_pid)
            result["cache_all_sessions"] = await asyncio.to_thread(cache_entries, url)
            started = time.monotonic()
            go.set()
            await asyncio.wait_for(asyncio.gather(*tasks), seconds + 4 * step_timeout_s)
            result["explore_wall_s"] = time.monotonic() - started
            result["rss_mib"]["after"] = rss_mib(server_pid)
            sampler.sample_cpu()
            result["browser_wall_s"] = time.monotonic() - browser_started
        finally:
            await browser.close()
    result["rss_mib"]["peak"] = sampler.peak
    return result


# ----------------------------------------------------------------------------- the benchmark

def run(sessions: int = 20, seconds: float = 60.0, max_steps: int = 400, step_timeout_s: float = 60.0,
        users: int = 200, movies: int = 100, ratings: int = 6000, workdir: Path | None = None,
        footprint: bool = True, ramp_s: float = 2.0) -> dict:
    from autoint.datasets.movielens import read_movielens
    own = tempfile.TemporaryDirectory(prefix="bench-load-") if workdir is None else None
    workdir = Path(own.name) if own else Path(workdir)
    try:
        load_before = os.getloadavg()
        data, runs, setup = prepare(workdir, users, movies, ratings, footprint)
        ml = read_movielens(data)
        user_ids = ml.users["user_id"].to_list()
        titles = dict(zip(ml.movies["movie_id"].to_list(), ml.movies["title"].to_list()))
        log_path = workdir / "streamlit.log"
        server, url = start_server(data, runs, log_path)
        sampler = MemorySampler(server.pid)
        sampler.start()
        try:
            result = asyncio.run(drive(url, server.pid, sessions, seconds, max_steps, user_ids, titles,
                                       step_timeout_s, sampler, ramp_s))
        finally:
            sampler.halt.set()
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log = log_path.read_text(errors="replace")
        times = sorted(t for r in result["sessions"] for t in r["times"])
        errors = [f"session {r['session']}: {e}" for r in result["sessions"] for e in r["errors"]]
        if "Traceback" in log:
            errors.append("the server logged a traceback: " + log[log.index("Traceback"):][:500])
        rss = result["rss_mib"]
        summary = {
            "sessions": sessions, "seconds": seconds, "ramp_s": ramp_s, "setup": setup,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
            "steps": len(times), "errors": len(errors), "harness_retries": sum(r["retries"] for r in result["sessions"]), "error_samples": errors[:40],
            "page_state_at_errors": [{"session": r["session"], **state} for r in result["sessions"]
                                     for state in r["page_states"]][:20],
            "sessions_with_charts": sum(r["charts"] > 0 for r in result["sessions"]),
            "picks_per_session": [len(r["times"]) for r in sorted(result["sessions"], key=lambda r: r["session"])],
            "charts_per_session": [r["charts"] for r in sorted(result["sessions"], key=lambda r: r["session"])],
            "first_load_s": {"median": _q([r["first_load_s"] for r in result["sessions"] if r["first_load_s"]], 0.5),
                             "max": max([r["first_load_s"] for r in result["sessions"] if r["first_load_s"]],
                                        default=None)},
            "time_to_chart_s": {"p50": _q(times, 0.5), "p95": _q(times, 0.95), "max": times[-1] if times else None},
            "throughput_steps_per_s": round(len(times) / result["explore_wall_s"], 2)
            if result.get("explore_wall_s") else None,
            "server_rss_mib": {k: round(v, 1) for k, v in rss.items()},
            "rss_growth_per_extra_session_mib": round((rss["all_sessions_loaded"] - rss["one_session"])
                                                      / max(sessions - 1, 1), 2),
            "rss_growth_vs_cached_state": round((rss["all_sessions_loaded"] - rss["one_session"])
                                                / max(sessions - 1, 1) / setup["cached_state_mib"], 3)
            if setup["cached_state_mib"] else None,
            "browser_part_wall_s": round(result.get("browser_wall_s", 0), 1),
            "cpu_seconds_while_browsing": sampler.cpu_by_name(),
            "cache_entries_one_session": result.get("cache_one_session"),
            "cache_entries_all_sessions": result.get("cache_all_sessions"),
        }
        return summary
    finally:
        if own:
            own.cleanup()


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="exploring time of each session")
    parser.add_argument("--max-steps", type=int, default=400, help="at most this many picks per session")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="seconds a step may take before it counts "
                                                                         "as an error")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--movies", type=int, default=100)
    parser.add_argument("--ratings", type=int, default=6000)
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds between two sessions' arrivals")
    parser.add_argument("--out", help="also write the JSON summary here")
    args = parser.parse_args()
    summary = run(args.sessions, args.seconds, args.max_steps, args.step_timeout, args.users, args.movies,
                  args.ratings, ramp_s=args.ramp)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
