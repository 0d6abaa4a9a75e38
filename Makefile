# Two commands do all set-up on a fresh clone: `make run` (the app) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8501
# Torch would otherwise spin as many threads as cores in every process; the app
# shares the cores between exploring and a background training job (see app/state.py).
export PYTHONUNBUFFERED=1

.PHONY: run test bench clean
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# No file watcher: Streamlit would watch the checkout recursively, .venv included (~4,900 folders), and
# watchdog's inotify queue then overflows over and over, a core busy for as long as the app runs
# (benchmarks/first_run.md). Restart the app after editing its code.
run: $(VENV)/.installed
	$(PY) -m streamlit run streamlit_app.py --server.address $(HOST) --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false --server.fileWatcherType none

test: $(VENV)/.installed
	$(PY) -m pytest -q -ra --durations=25 tests

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_speed.py

clean:
	rm -rf $(VENV) .pytest_cache test-output
