"""What one browser session costs the client and the server: CPU seconds per page load and per pick.

Explains benchmarks/load.md: when the 20 load-test browsers share the server's cores, whose CPU is it?
One server on small synthetic data (as in bench_load.py), one chromium; a first page load in a fresh
context, a second one in another fresh context (server caches warm), then `--picks` user picks in the first
page. For each: chromium's CPU seconds (every chromium process), the server's, and the wall time.

    .venv/bin/python benchmarks/bench_client_cost.py --picks 8
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_load as load  # noqa: E402  (the harness's server, browser flags and page conditions)


def chromium_cpu() -> float:
    return sum(seconds for name, seconds in load.process_cpu().values() if name == "chromium")


async def measure(url: str, server_pid: int, users: list[int], picks: int) -> dict:
    from playwright.async_api import async_playwright
    out = {}

    def clock():
        return time.perf_counter(), chromium_cpu(), load.cpu_seconds(server_pid)

    def cost(before, per=1):
        wall, client, server = (b - a for a, b in zip(before, clock()))
        return {"wall_s": round(wall / per, 3), "chromium_cpu_s": round(client / per, 3),
                "server_cpu_s": round(server / per, 3)}

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=load.CHROMIUM, args=load.CHROMIUM_ARGS)
        pages = []
        for name in ("first_load", "second_load"):
            started = clock()
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            await page.goto(url, timeout=120_000)
            await load.settle(page, None, 120_000)
            out[name] = cost(started)
            pages.append(page)
        await pages[1].context.close()
        page, rng, user, done = pages[0], random.Random(0), None, 0
        started = clock()
        while done < picks:
            before = await page.evaluate(load.SIGNATURE)
            user = rng.choice([u for u in users if u != user])
            clicked, _ = await load.choose(page, "User", str(user), f"user {user}", 120_000)
            if clicked is None:  # the user already shown: no rerun follows, so it is no pick
                continue
            await load.settle(page, before, 120_000)
            done += 1
        out["per_pick"] = cost(started, picks)
        await browser.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--picks", type=int, default=8)
    args = parser.parse_args()
    from autoint.datasets.movielens import read_movielens
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        work = Path(tmp)
        data, runs, _ = load.prepare(work, 200, 100, 6000, footprint=False)
        users = read_movielens(data).users["user_id"].to_list()
        server, url = load.start_server(data, runs, work / "streamlit.log")
        try:
            result = asyncio.run(measure(url, server.pid, users, args.picks))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps({"picks": args.picks, **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
