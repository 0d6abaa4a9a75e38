"""A link to a view (app/links.py) opened in a fresh browser context: the page shows the linked user, movie, layer,
head and reading, and the numbers `python -m autoint explain --json` gives for the same sample.

Screenshot: test-output/screenshots/link-explore.png.
"""
import json
import subprocess
import sys

import pytest

from conftest import REPO
import test_browser
from test_browser import SHOWN, settle, shoot

browser, server = test_browser.browser, test_browser.server  # the browser and the app's server (fixtures)

pytestmark = pytest.mark.browser
LINK = {"run": "small", "user": "3", "movie": "5", "time": "2001-06-01T12:00", "layer": "2", "head": "2",
        "reading": "value-norm"}


def shown(tab, label: str) -> str:
    """What a selectbox labelled `label` shows (its label and its value)."""
    return tab.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.evaluate(f"e => {SHOWN}")


class TestALink:
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
