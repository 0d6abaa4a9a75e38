"""The app in a real browser: Debian's chromium, driven by Playwright, against `streamlit run` on 127.0.0.1.

Screenshots land in test-output/screenshots/ for a person to look at.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-output" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = [  # (sidebar link, url path, charts and tables the page draws when ready)
    ("Explore", "", 6, 0),  # attention grid, one head, attention beside interactions, pair scatter, agreement bars,
    ("What-if", "what-if", 4, 0),  # attributions; what-if adds the change in interactions
    ("Dataset correlations", "correlations", 4, 1),
    ("Train", "train", 0, 1),
    ("Recommend", "recommend", 0, 1),
    ("Learn", "learn", 9, 0),
    ("Paper", "paper", 2, 1),
]


# What a selectbox shows: its label and, in an <input> that innerText leaves out, the selected value.
SHOWN = "(e.innerText + ' ' + [...e.querySelectorAll('input')].map(i => i.value).join(' '))"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _streamlit(tmp_path_factory, env: dict, log_name: str, cwd: Path = REPO):
    """Start the app with `env` in `cwd` (where its data/ is), yield its URL once healthy, stop it after; no
    traceback may reach its log."""
    port = free_port()
    log = open(tmp_path_factory.mktemp(log_name) / "streamlit.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"),
                                "--server.address", "127.0.0.1", "--server.port", str(port),
                                "--server.headless", "true", "--browser.gatherUsageStats", "false",
                                "--server.fileWatcherType", "none"], cwd=cwd, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"streamlit did not start:\n{log.read()[-3000:]}")
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=20)
    log.seek(0)
    assert "Traceback" not in log.read(), "the server logged a traceback"


# Each server lives as long as its class of tests: a server left running beside the next one keeps scoring in the
# background (the 39-field readings take half a minute of a core) and slowed the next class's pages fivefold.
@pytest.fixture(scope="class")
def server(tmp_path_factory, synth_dir, trained_run):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    runs = tmp_path_factory.mktemp("browser") / "runs"
    shutil.copytree(trained_run.path, runs / "small")
    env = {**os.environ, "AUTOINT_DATA_DIR": str(synth_dir), "AUTOINT_RUNS_DIR": str(runs),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    yield from _streamlit(tmp_path_factory, env, "log")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="class")
def page(browser):
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(60_000)
    yield tab
    tab.close()


def settle(tab, charts: int, tables: int = 0) -> None:
    """Wait until the script has finished and the page's charts and tables have drawn."""
    tab.wait_for_selector('[data-testid="stMain"]')
    tab.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"] button')"
                          " && !document.querySelector('[data-testid=\"stSkeleton\"]')")
    if charts:
        tab.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}")
    if tables:
        tab.wait_for_function(f"() => document.querySelectorAll('[data-testid=\"stDataFrame\"]').length >= {tables}")
    assert tab.locator('[data-testid="stException"]').count() == 0
    errors = tab.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, errors.all_inner_texts()


def shoot(tab, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the window to fit it first."""
    size = tab.viewport_size
    height = tab.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    tab.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 8000)})
    tab.wait_for_timeout(400)  # plotly redraws on resize
    tab.screenshot(path=str(SHOTS / f"{name}.png"))
    tab.set_viewport_size(size)


def go(tab, server, link: str) -> None:
    if tab.url.startswith(server):
        tab.locator('[data-testid="stSidebarNav"]').get_by_text(link, exact=True).click()
    else:
        tab.goto(server)


def at_page(tab, server: str, path: str) -> None:
    """Wait until the tab shows the page at `path` of `server`, whatever the query: each page writes its state into
    the URL's query (app/links.py) once it has drawn, so the whole URL is not known in advance."""
    from urllib.parse import urlsplit
    want = urlsplit(f"{server}/{path}")
    tab.wait_for_url(lambda url: urlsplit(url)[:3] == want[:3])


LINK = {"run": "small", "user": "3", "movie": "5", "time": "2001-06-01T12:00", "layer": "2", "head": "2",
        "reading": "value-norm"}


def shown(tab, label: str) -> str:
    """What a selectbox labelled `label` shows (its label and its value)."""
    return tab.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.evaluate(f"e => {SHOWN}")


class TestTheSyntheticData:
    def test_every_page_renders_its_charts(self, page, server):
        page.goto(server)
        for link, path, charts, tables in PAGES:
            go(page, server, link)
            at_page(page, server, path)
            settle(page, charts, tables)
            assert page.get_by_role("heading").first.is_visible()
            shoot(page, f"page-{path or 'explore'}")

    def test_explore_then_what_if(self, page, server):
        page.goto(server)
        settle(page, 3)
        movie = page.locator('[data-testid="stSelectbox"]').filter(has_text="Movie")
        movie.locator("input").click()
        page.keyboard.type("Movie 42 (")  # searching by title
        page.get_by_role("option").filter(has_text="Synthetic Movie 42 (").first.click()
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stSelectbox\"]')]"
                               ".some(e => shown(e).includes('Synthetic Movie 42 ('))".replace("shown(e)", SHOWN))
        settle(page, 3)
        ctr = page.locator('[data-testid="stMetric"]').filter(has_text="Predicted CTR")
        assert ctr.locator('[data-testid="stMetricValue"]').inner_text().endswith("%")
        shoot(page, "flow-1-explore")

        go(page, server, "What-if")
        settle(page, 4)
        assert "Synthetic Movie 42" in page.locator('[data-testid="stMain"]').inner_text()
        gender = page.locator('[data-testid="stSelectbox"]').filter(has_text="Gender")
        current = gender.evaluate(f"e => {SHOWN}").split()[-1]  # the selected value: M or F
        gender.locator("input").click()
        page.get_by_role("option", name="M" if current == "F" else "F", exact=True).click()
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stMetricDelta\"]')]"
                               ".some(e => e.innerText.trim().length > 0)")
        settle(page, 4)
        assert "Gender=" in page.locator('[data-testid="stMain"]').inner_text()
        shoot(page, "flow-2-what-if")

    # A link to a view (app/links.py) opened in a fresh browser context: the page shows the linked user, movie, layer,
    # head and reading, and the numbers `python -m autoint explain --json` gives for the same sample. Here, so the
    # links share this class's server. Screenshots: link-explore.png, link-bad.png.
    def test_a_link_opens_the_same_view_with_the_clis_numbers(self, browser, server, trained_run, synth_dir):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})  # a new session: nothing kept
        tab = context.new_page()
        tab.set_default_timeout(120_000)
        query = "&".join(f"{k}={v}" for k, v in LINK.items())
        tab.goto(f"{server}/?{query}")
        ready = ("() => [...document.querySelectorAll('[data-testid=\"stSelectbox\"]')].some(e => "
                 "e.innerText.includes('Reading of the attention') && !e.querySelector('input[disabled]'))")
        tab.wait_for_function(ready)  # the readings are scored: the linked one is shown
        settle(tab, 5)
        main = tab.locator('[data-testid="stMain"]')
        text = main.inner_text()
        assert "This link" not in text  # nothing refused
        assert "user 3" in shown(tab, "User")
        assert "#5" in shown(tab, "Movie")
        assert shown(tab, "Enlarge layer").split()[-1] == "2" and shown(tab, "Head").split()[-1] == "2"
        assert "α · ‖value‖" in shown(tab, "Reading of the attention")
        tab.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot text')].some(t => "  # the
                              "t.textContent.includes('α · ‖value‖: layer 2, head 2'))")  # enlarged map's title

        cli = subprocess.run([sys.executable, "-m", "autoint", "explain", str(trained_run.path), "--data-dir",
                              str(synth_dir), "--user", LINK["user"], "--movie", LINK["movie"], "--time",
                              LINK["time"], "--reading", LINK["reading"], "--no-attributions", "--json"],
                             capture_output=True, text=True, cwd=REPO, check=True)
        report = json.loads(cli.stdout.strip().splitlines()[-1])
        ctr = tab.locator('[data-testid="stMetric"]').filter(has_text="Predicted CTR")
        assert ctr.locator('[data-testid="stMetricValue"]').inner_text() == f"{report['ctr']:.1%}"
        rho = report["readings"][LINK["reading"]]["agreement"]
        verdicts = [v for v in main.locator('[data-testid="stAlert"]').all_inner_texts() if "Verdict" in v]
        assert any(f"ρ = {rho:+.2f}" in v and "α · ‖value‖" in v for v in verdicts), (rho, verdicts)

        for name, value in LINK.items():  # the URL and the link to copy still say the same
            assert f"{name}={value}" in tab.url
        copy = tab.locator('[data-testid="stSidebar"] [data-testid="stCode"]').inner_text()
        assert copy.startswith(server) and "layer=2" in copy and "reading=value-norm" in copy
        shoot(tab, "link-explore")
        context.close()

    def test_a_bad_link_names_what_it_cannot_show_and_the_page_its_default(self, browser, server):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        tab = context.new_page()
        tab.set_default_timeout(120_000)
        tab.goto(f"{server}/?run=ghost&user=3&layer=9&reading=tea-leaves&time=soon")
        tab.wait_for_function("() => document.querySelector('[data-testid=\"stMain\"]').innerText"
                              ".includes('This link')")
        settle(tab, 3)
        alerts = " ".join(tab.locator('[data-testid="stAlert"]').all_inner_texts())
        for named in ("ghost", "layer 9", "tea-leaves", "'soon'"):
            assert named in alerts, (named, alerts)
        assert "user 3" in shown(tab, "User")  # the rest of the link applies
        tab.wait_for_function("() => location.search.includes('run=small') && location.search.includes('layer=1')")
        shoot(tab, "link-bad")
        context.close()


@pytest.fixture(scope="class")
def criteo_server(tmp_path_factory):
    """The app on a generated Criteo-format folder (39 fields, 12,000 rows) with a small model (3 epochs)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from autoint.cli import main as cli
    from autoint.datasets.synth import generate_criteo
    folder = generate_criteo(tmp_path_factory.mktemp("criteo") / "criteo", rows=12000, seed=5)
    runs = tmp_path_factory.mktemp("criteo-browser") / "runs"  # enough data and epochs to learn the planted pairs
    assert cli(["train", "--dataset", "criteo", "--data-dir", str(folder), "--epochs", "3", "--layers", "2",
                "--heads", "2", "--embed-dim", "8", "--attn-dim", "8", "--batch-size", "256", "--lr", "0.005",
                "--quiet", "--out", str(runs / "criteo-small")]) == 0
    env = {**os.environ, "AUTOINT_DATA_DIR": str(folder), "AUTOINT_RUNS_DIR": str(runs),
           "AUTOINT_CACHE_DIR": str(tmp_path_factory.mktemp("criteo-cache")), "OMP_NUM_THREADS": "1",
           "AUTOINT_SAMPLED_ROWS": "8",  # the 39-field readings on 8 estimated samples, not 64 (half a minute)
           "PYTHONPATH": str(REPO)}
    yield from _streamlit(tmp_path_factory, env, "criteo-log")


class TestACriteoFormatFolder:
    def test_criteo_format_explore_and_correlations(self, page, criteo_server):
        """Any data set: Explore picks a test sample by a field's value and shows its real label; Dataset
        correlations measures the interactions of 39 fields on a subsample (about a minute on one thread)."""
        page.set_default_timeout(240_000)
        page.goto(criteo_server)
        settle(page, 6)
        main = page.locator('[data-testid="stMain"]')
        assert "Real label" in main.inner_text() and "C3=" in main.inner_text()
        assert page.locator('[data-testid="stSidebarNav"]').get_by_text("Recommend", exact=True).count() == 0
        fields = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Pick a test sample")
        fields.locator("input").click()
        page.keyboard.type("C3")
        page.get_by_role("option", name="C3", exact=True).click()
        page.keyboard.press("Escape")
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stSelectbox\"]')]"
                               ".some(e => e.innerText.includes('C3 value'))")
        picked = page.locator('[data-testid="stSelectbox"]').filter(has_text="C3 value")
        value = picked.evaluate(f"e => {SHOWN}").split("C3 value", 1)[1].split("·")[0].split()[-1]
        page.wait_for_function(f"() => document.querySelector('[data-testid=\"stMain\"]').innerText"
                               f".includes('C3={value}')")  # the sample shown is one with the value picked
        settle(page, 6)
        assert f"C3={value}" in main.inner_text()
        shoot(page, "criteo-explore")
        go(page, criteo_server, "Dataset correlations")
        at_page(page, criteo_server, "correlations")
        settle(page, 4, 1)
        assert "Measured on" in main.inner_text()
        shoot(page, "criteo-correlations")


@pytest.fixture(scope="class")
def pair_server(tmp_path_factory, synth_dir):
    """The app with the two models of a first start: `readable` (the readable preset) and `paper` (tiny, 2 epochs)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from autoint.cli import main as cli
    runs = tmp_path_factory.mktemp("pair-browser") / "runs"
    for name in ("paper", "readable"):
        assert cli(["train", "--data-dir", str(synth_dir), "--preset", name, "--epochs", "2", "--layers", "2",
                    "--embed-dim", "8", "--attn-dim", "8", "--batch-size", "256", "--lr", "0.005", "--quiet",
                    "--out", str(runs / name)]) == 0
    env = {**os.environ, "AUTOINT_DATA_DIR": str(synth_dir), "AUTOINT_RUNS_DIR": str(runs),
           "AUTOINT_CACHE_DIR": str(tmp_path_factory.mktemp("pair-cache")), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    yield from _streamlit(tmp_path_factory, env, "pair-log")


class TestTheReadableAndThePapersModel:
    def test_explore_toggle_shows_the_readable_and_the_papers_model(self, page, pair_server):
        """The app opens on the readable model, says so, offers its best reading; the toggle puts the paper's model
        beside it for the same sample, each with its CTR and verdicts. Screenshot: explore-toggle.png."""
        page.goto(pair_server)
        settle(page, 3)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stSelectbox\"]')]"
                               ".some(e => e.innerText.includes('Reading of the attention') && !e.querySelector('input[disabled]'))")
        settle(page, 3)
        main = page.locator('[data-testid="stMain"]')
        assert "The readable model" in main.inner_text()
        page.get_by_text("Paper's model beside the readable model").click()
        page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stMetric\"]').length >= 4")
        settle(page, 5)
        text = main.inner_text()
        assert "Readable model" in text and "The paper's model" in text
        assert text.count("Verdict:") >= 5  # the sample's, then two for each model
        ctrs = page.locator('[data-testid="stMetric"]').filter(has_text="Predicted CTR")
        assert ctrs.count() == 3 and all(v.endswith("%") for v in
                                         ctrs.locator('[data-testid="stMetricValue"]').all_inner_texts())
        shoot(page, "explore-toggle")
