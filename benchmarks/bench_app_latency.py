"""Server time of the Explore page's rerun after the movie changes (target: under 300 ms on CPU).

Drives the real app with Streamlit's AppTest, so a rerun includes everything the server does:
the frame and sidebar, the explanation (prediction, attention, Integrated Gradients and
Feature Ablation, the page's default), building the Plotly figures and serialising them.
AppTest adds its own parsing of the result, so these times are an upper bound. The model is
the default AutoInt (3 layers, 2 heads, d=16, d'=32); its weights are freshly initialised,
which costs the same time as trained ones.

    .venv/bin/python benchmarks/bench_app_latency.py                      # synthetic data (the offline default)
    .venv/bin/python benchmarks/bench_app_latency.py --data-dir /path/to/ml-1m --out benchmarks/app_latency.md
    .venv/bin/python benchmarks/bench_app_latency.py --repo /tmp/links-base   # the app of another checkout

The run's readings are scored in the background on the first visit; the reruns are timed once that is done (it
would otherwise share the cores with them).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if "--repo" in sys.argv:  # time another checkout's app (its own app/ and autoint/)
    REPO = Path(sys.argv[sys.argv.index("--repo") + 1]).resolve()
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="a MovieLens-1M folder (default: fresh synthetic data)")
    parser.add_argument("--movies", type=int, default=20, help="movie changes to time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, as the app uses on 2 cores")
    parser.add_argument("--out", help="append a Markdown result row to this file")
    parser.add_argument("--repo", help="the checkout whose app is timed (default: this one)")
    parser.add_argument("--time-links", action="store_true", help="also time the link's own work in each rerun "
                                                                 "(app/links.py: reading and writing the URL)")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from streamlit.testing.v1 import AppTest

    from app.views import background
    from autoint.datasets.movielens import load_movielens
    from autoint.model.autoint import AutoInt, AutoIntConfig
    from autoint.training.runs import save_run
    from autoint.datasets.synth import generate_movielens

    work = Path(tempfile.mkdtemp(prefix="bench-app-"))
    data_dir = Path(args.data_dir) if args.data_dir else generate_movielens(work / "synthetic", users=600, movies=300,
                                                                   ratings=40000, seed=7)
    dataset = load_movielens(data_dir)
    torch.manual_seed(0)
    save_run(work / "runs" / "default", AutoInt(AutoIntConfig(), dataset.schema), metrics={},
             data_fingerprint=dataset.fingerprint, data_dir=str(data_dir.resolve()))
    os.environ.update(AUTOINT_DATA_DIR=str(data_dir), AUTOINT_RUNS_DIR=str(work / "runs"),
                      AUTOINT_CACHE_DIR=str(work / "cache"))

    links_ms: list[float] = []
    if args.time_links:  # the frame calls these once a run (AppTest runs the script in this process)
        from app import links

        def timed(function):
            def wrapper(*a, **k):
                started = time.perf_counter()
                try:
                    return function(*a, **k)
                finally:
                    links_ms.append((time.perf_counter() - started) * 1000)
            return wrapper
        links.opened, links.publish = timed(links.opened), timed(links.publish)
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    started = time.perf_counter()
    at.run()
    first = time.perf_counter() - started
    assert not at.exception, at.exception
    assert background().wait_idle(600)  # the readings scored: the reruns below have the cores
    at.run()
    movies = dataset.movielens.movies["movie_id"].to_list()
    timings = []
    links_ms.clear()
    for movie in movies[1:args.movies + 1]:
        at.selectbox(key="explore_movie").set_value(movie)
        started = time.perf_counter()
        at.run()
        timings.append((time.perf_counter() - started) * 1000)
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    timings.sort()
    median, p90 = statistics.median(timings), timings[int(0.9 * (len(timings) - 1))]
    row = (f"| {'synthetic' if not args.data_dir else data_dir.name} ({len(movies)} movies) | {platform.processor() or platform.machine()} "
           f"| {args.threads} | {len(timings)} | {median:.0f} | {p90:.0f} | {max(timings):.0f} | {first:.1f} s |")
    print("| data | CPU | threads | reruns | median ms | p90 ms | max ms | first load |")
    print(row)
    if args.time_links:  # opened() and publish() of each rerun, summed per rerun
        per_run = sorted(a + b for a, b in zip(links_ms[::2], links_ms[1::2]))
        print(f"the link's work per rerun: median {statistics.median(per_run):.2f} ms, max {max(per_run):.2f} ms "
              f"({len(per_run)} reruns)")
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(row + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
