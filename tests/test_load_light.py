"""A light version of benchmarks/bench_load.py: 3 browser sessions explore for 6 s against one server.

Every session loads the Explore page and gets charts after its picks, with no error, and the
server holds one cached model for all of them (no model copy per session). The full run
(20 sessions x 60 s) is a benchmark, not a test: see benchmarks/load.md.
"""
import importlib.util
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.browser


def bench():
    spec = importlib.util.spec_from_file_location("bench_load", REPO / "benchmarks" / "bench_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_sessions_explore_at_once_without_errors(tmp_path):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    result = bench().run(sessions=3, seconds=6, max_steps=20, step_timeout_s=45, workdir=tmp_path, footprint=False,
                         ramp_s=0.5)
    print(result)
    assert result["errors"] == 0, result["error_samples"]
    assert result["sessions_with_charts"] == 3
    assert all(picks >= 1 for picks in result["picks_per_session"]), result["picks_per_session"]
    cache = result["cache_entries_all_sessions"]
    if "unavailable" not in cache:  # Streamlit's metrics endpoint: one entry per cached model, shared by all
        assert cache["st_cache_resource:load_model"] == 1 and cache['session_events_total{type="connect"}'] >= 3
