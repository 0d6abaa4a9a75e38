"""Handouts (autoint.workspace.report, `python -m autoint report`): one self-contained HTML file of a prediction or
of a split, that carries the same numbers as the command line's JSON, opens offline with every figure drawn, holds
plotly.js once and no path or user name of the machine that wrote it."""
import contextlib
import getpass
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from autoint.cli import main
from conftest import tiny_criteo_run
from test_app import app_env  # noqa: F401 (a fixture: the app on the synthetic data with one run)
from test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS

SAMPLE = ["--user", "1", "--movie", "5", "--set", "Gender=M"]  # a what-if: before, after, and everything else
MOVIELENS_MAX_BYTES = 5_000_000
CRITEO_MAX_BYTES = 15_000_000


def quiet(argv) -> tuple[int, str]:
    """main(argv) with its stdout and stderr caught (a module fixture has no capsys): (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    return code, out.getvalue()


def embedded(text: str, element_id: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', text, re.S)
    assert found, f"no JSON block #{element_id}"
    return json.loads(found.group(1))


def figures(text: str) -> int:
    return int(re.search(r'<meta name="autoint-figures" content="(\d+)">', text).group(1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_run):
    """The trained run under a folder of the test's own, so the handout's paths are known and checked."""
    folder = tmp_path_factory.mktemp("handout-runs")
    shutil.copytree(trained_run.path, folder / "small")
    return folder


@pytest.fixture(scope="module")
def handout(runs, synth_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("handout") / "handout.html"
    code, stdout = quiet(["report", str(runs / "small"), "--data-dir", str(synth_dir), *SAMPLE, "--out", str(out)])
    assert code == 0 and json.loads(stdout.strip().splitlines()[-1])["report"] == str(out)
    return out


def test_the_handout_holds_what_explain_json_prints(handout, runs, synth_dir, capsys):
    text = handout.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["explain", str(runs / "small"), "--data-dir", str(synth_dir), *SAMPLE, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert embedded(text, "explanation") == printed
    assert printed["what_if"]["edits"] == {"Gender": "M"} and printed["title"]
    card = embedded(text, "model-card")
    manifest = json.loads((runs / "small" / "run.json").read_text())
    assert card["run"] == "small" and card["model"] == "AutoInt" and card["dataset"] == "movielens-1m"
    assert card["data_fingerprint"] == manifest["data_fingerprint"] and card["created"] == manifest["created"]
    assert card["test_auc"] == manifest["metrics"]["test_auc"] and card["seed"] == 1
    assert card["settings"]["model"]["heads"] == 2 and re.fullmatch(r"(git [0-9a-f]+|autoint .+)", card["code_version"])
    # the verdicts the page states: this model's reading shown first and raw α, and the what-if's CTRs
    assert text.count('class="verdict ') == (2 if printed["reading"] != "raw" else 1)
    assert f"{printed['what_if']['ctr_before']:.1%}" in text and f"{printed['what_if']['ctr_after']:.1%}" in text


def test_the_handout_is_one_file_without_the_machine_in_it(handout, runs, synth_dir, tmp_path):
    from plotly.offline import get_plotlyjs
    text = handout.read_text(encoding="utf-8")
    assert handout.stat().st_size <= MOVIELENS_MAX_BYTES, f"{handout.stat().st_size:,} bytes for 7 fields"
    plotly_js = get_plotlyjs()
    assert text.count(plotly_js) == 1 and text.count("<script") == text.count("</script>")
    assert len(re.findall(r"\bPlotly\.newPlot\(", text.replace(plotly_js, ""))) == figures(text) >= 8
    rest = text.replace(plotly_js, "")  # the library is a verbatim copy: what this code wrote is the rest
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", rest), "a resource from a URL"
    assert "MathJax.js" not in rest and "cdn.plot.ly" not in rest and "@import" not in rest
    assert 'http-equiv="Content-Security-Policy" content="default-src \'none\'' in rest
    assert len(re.findall(r'"displaylogo": false, "toImageButtonOptions": \{"format": "png"', rest)) == figures(text)
    for secret in {str(runs), str(synth_dir), str(handout.parent), str(tmp_path.parent.parent), os.path.expanduser("~"),
                   str(Path.cwd())}:
        assert secret not in rest, f"{secret} is in the handout"
    user = getpass.getuser()
    assert len(user) < 3 or user not in rest, f"the user name {user!r} is in the handout"
    assert not list(handout.parent.glob(".*tmp*")), "a temporary file was left beside the handout"


@pytest.mark.browser
def test_the_handout_opens_offline_and_draws_every_figure(handout):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    url = handout.resolve().as_uri()
    requested, aborted, errors = [], [], []

    def route(request_route):
        if request_route.request.url == url:
            request_route.continue_()
        else:
            aborted.append(request_route.request.url)
            request_route.abort()

    count = figures(handout.read_text(encoding="utf-8"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport={"width": 1200, "height": 900})
            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(url)
            drawn = "() => [...document.querySelectorAll('.js-plotly-plot')].filter(e => e.querySelector('.main-svg'))"
            page.wait_for_function(f"{drawn}.length >= {count}", timeout=30_000)
            assert page.evaluate(f"{drawn}.length") == count
            assert page.locator(".js-plotly-plot .main-svg").count() >= count
            assert page.locator(".js-plotly-plot .modebar-btn[data-title^='Download plot']").count() == count
            page.select_option("#export-format", "svg")  # every chart's camera button now saves SVG
            page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].every("
                                   "e => e._context.toImageButtonOptions.format === 'svg')", timeout=10_000)
            # the whole page: grow the window to it first (a full-page capture resizes a responsive plotly chart
            # mid-draw, and its axis labels lose their margins in the picture, not in the file)
            height = page.evaluate("() => document.documentElement.scrollHeight")
            page.set_viewport_size({"width": 1200, "height": min(height, 16000)})
            page.wait_for_timeout(800)
            page.screenshot(path=str(SHOTS / "handout.png"))
        finally:
            chromium.close()
    assert [u for u in requested if u != url] == [] and aborted == [], "the handout asked the network"
    assert errors == []


def test_a_split_handout_holds_correlations_and_interactions(runs, synth_dir, tmp_path):
    from plotly.offline import get_plotlyjs
    out = tmp_path / "split.html"
    where = ["--where", "Gender=F"]
    code, _ = quiet(["report", str(runs / "small"), "--data-dir", str(synth_dir), "--split", "test", *where,
                     "--out", str(out)])
    assert code == 0
    text = out.read_text(encoding="utf-8")
    _, printed = quiet(["correlations", str(runs / "small"), "--data-dir", str(synth_dir), *where, "--json"])
    assert embedded(text, "correlations") == json.loads(printed.strip().splitlines()[-1])
    interactions = embedded(text, "interactions")
    _, printed = quiet(["interactions", str(runs / "small"), "--data-dir", str(synth_dir), *where, "--json"])
    assert interactions == json.loads(printed.strip().splitlines()[-1])
    assert interactions["mode"] == "split" and interactions["where"] == "Gender=F"
    assert interactions["count"] == embedded(text, "correlations")["count"] > 0
    assert text.count(get_plotlyjs()) == 1 and out.stat().st_size <= MOVIELENS_MAX_BYTES
    assert figures(text) >= 5 and "Strongest field pairs" in text and str(tmp_path) not in text


@pytest.mark.parametrize("argv, message", [
    (["report", "no-such-run", "--user", "1", "--movie", "1"], "no such run folder"),
    (["report", "RUN", "--row", "100000"], "choose a row from 0 to"),
    (["report", "RUN", "--user", "1"], "--user and --movie go together"),
    (["report", "RUN"], "report needs a sample"),
    (["report", "RUN", "--split", "test", "--set", "Gender=M"], "--set and --time change one sample"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(argv, message, runs, synth_dir, tmp_path, capsys):
    out = tmp_path / "handout.html"
    argv = [str(runs / "small") if a == "RUN" else a for a in argv]
    capsys.readouterr()
    assert main([*argv, "--data-dir", str(synth_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_39_field_handout_stays_under_15_mb(tmp_path_factory):
    folder, run = tiny_criteo_run(tmp_path_factory, "handout-criteo", 600, 128)
    out = tmp_path_factory.mktemp("handout-criteo-out") / "criteo.html"
    code, _ = quiet(["report", str(run), "--data-dir", str(folder), "--row", "0", "--reading", "raw",
                     "--out", str(out)])
    assert code == 0
    text = out.read_text(encoding="utf-8")
    report = embedded(text, "explanation")
    assert len(report["labels"]) == 39 and report["interactions"]["method"] == "KernelSHAPIQ"
    assert out.stat().st_size <= CRITEO_MAX_BYTES, f"{out.stat().st_size:,} bytes for 39 fields"
    assert str(folder) not in text and str(run) not in text


def shown_reading(at) -> str:
    boxes = [box.value for box in at.selectbox if box.label == "Reading of the attention"]
    assert boxes, "the page shows no reading selector"
    return boxes[0]


def test_explore_and_what_if_offer_the_pages_handout(app_env, monkeypatch):
    """Each page draws a "Download handout" button whose file, built only when asked, holds the page's sample, its
    CTR and (What-if) its edits."""
    import streamlit
    from test_app import exact, metric, start
    built = {}
    original = streamlit.download_button

    def download_button(label, data, *args, **kwargs):  # keep the handout's callable; nothing is built here
        if str(kwargs.get("key", "")).endswith("_handout"):
            assert callable(data) and kwargs.get("on_click") == "ignore"
            built[kwargs["key"]] = (label, data, kwargs.get("file_name"))
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", download_button)
    at = start(reading=None)
    label, build, name = built["explore_handout"]
    assert label == "Download handout" and name.endswith(".html")
    text = build()
    report = embedded(text, "explanation")
    assert report["ctr"] == pytest.approx(exact(metric(at, "Predicted CTR")), abs=1e-6)
    assert report["user"] == at.session_state["sample"]["user"] and "what_if" not in report
    assert report["reading"] == shown_reading(at)  # the reading the page shows, not the sample's own best
    assert figures(text) >= 5 and str(app_env) not in text
    at.switch_page("app/what_if.py").run()
    gender = at.selectbox(key="whatif_field_Gender")
    other = "F" if gender.value == "M" else "M"
    gender.set_value(other).run()
    assert not at.exception, at.exception
    text = built["whatif_handout"][1]()
    report = embedded(text, "explanation")
    assert report["what_if"]["edits"] == {"Gender": other}
    assert report["what_if"]["ctr_after"] == pytest.approx(exact(metric(at, "CTR after")), abs=1e-6)
    assert report["reading"] == shown_reading(at) and figures(text) >= 8
