"""Every page that shows attention offers the reading as a choice: first the model's best reading by split-level
agreement (named with its ρ), raw α, the paper's reading, one click away. Driven by Streamlit's AppTest and checked
against the library's own numbers (autoint.explain.readings, autoint.explain.sampling.model_readings)."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from autoint.datasets.movielens import Catalog, load_movielens, read_movielens
from autoint.explain.baselines import mean_embedding
from autoint.explain.explanation import explain_sample
from autoint.explain.interactions import verdict
from autoint.explain.readings import NAMES, PAPER_READING, READINGS
from autoint.explain.sampling import model_readings
from autoint.training.runs import load_run
from test_app import APP, TIMEOUT, array, chart, finish_background
from streamlit.testing.v1 import AppTest

LABEL = "Reading of the attention"
PAIRS = 21  # 7 fields of the synthetic MovieLens


@pytest.fixture(scope="module")
def readings_of(synth_dir, tmp_path_factory):
    """name -> the run's `model_readings`, computed directly (its own cache folder, not the app's), once per run."""
    cache, found = tmp_path_factory.mktemp("direct-readings"), {}

    def of(run_path) -> object:
        run = load_run(run_path)
        key = str(Path(run_path).name)
        if key not in found:
            found[key] = model_readings(run_path, run.model, load_movielens(synth_dir, schema=run.schema), "test",
                                        cache_dir=cache)
        return found[key]
    return of


@pytest.fixture(scope="module")
def model_pair(synth_dir, tmp_path_factory):
    """A folder holding "readable" (preset readable) and "paper" (preset paper), one epoch each on the synthetic
    data through the CLI, small (1 layer, 2 heads, d = 4) so that scoring their readings on the test split takes
    about a second (the presets' own sizes take 15 s)."""
    from autoint import cli
    runs = tmp_path_factory.mktemp("pair-runs")
    for name in ("readable", "paper"):
        assert cli.main(["train", "--data-dir", str(synth_dir), "--out", str(runs / name), "--epochs", "1",
                         "--preset", name, "--layers", "1", "--heads", "2", "--embed-dim", "4", "--attn-dim", "4",
                         "--quiet", "--device", "cpu", "--seed", "1"]) == 0
    return runs


@pytest.fixture
def env(monkeypatch, tmp_path, synth_dir):
    """The app on the synthetic data, a fresh runs folder (the test fills it) and a cache folder of its own."""
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(synth_dir))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    return runs


@pytest.fixture
def small_env(env, trained_run):
    shutil.copytree(trained_run.path, env / "small")
    return env


@pytest.fixture
def pair_env(env, model_pair):
    for name in ("readable", "paper"):
        shutil.copytree(model_pair / name, env / name)
    return env


def start(page=None) -> AppTest:
    """The app run once (on `page` if given), on the reading each page opens on; no error shown."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page).run()
    finish_background(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def reading_box(at):
    boxes = [s for s in at.selectbox if s.label == LABEL]
    assert len(boxes) == 1, [s.label for s in at.selectbox]
    return boxes[0]


def assert_best_first(at, expected) -> None:
    """The picker starts on the model's best reading, its option named with the split ρ, and the caption says so."""
    box = reading_box(at)
    best = expected.default
    assert box.value == best
    rho = expected.readings[best].agreement
    assert f"split ρ {rho:+.2f}" in box.options[NAMES.index(best)]
    assert list(box.options)[NAMES.index(PAPER_READING)].startswith(READINGS[PAPER_READING].title)  # one click away
    assert any(f"most faithful reading is **{READINGS[best].title}**: split ρ {rho:+.2f}" in c.value for c in at.caption)


def sample_values(at, synth_dir) -> dict:
    sample = at.session_state["sample"]
    return Catalog(read_movielens(synth_dir)).sample(sample["user"], sample["movie"], sample["time"])


def alerts(at) -> list[str]:
    return [str(a.value) for kind in ("success", "warning") for a in getattr(at, kind)]


def enlarged(at, name: str) -> np.ndarray:
    """The (F, F) values of Explore's enlarged map under reading `name` (raw α: the weights, not the colour)."""
    trace = chart(at, "Layer 1, head 1" if name == PAPER_READING else f"{READINGS[name].title}: layer 1, head 1")["data"][0]
    return array(trace["customdata"])[..., 0] if name == PAPER_READING else array(trace["z"])


def test_explore_starts_on_the_best_reading_and_another_redraws_the_librarys_values(
        small_env, trained_run, synth_dir, synth_dataset, readings_of):
    at = start()
    expected = readings_of(small_env / "small")
    assert_best_first(at, expected)
    model = trained_run.model
    values = sample_values(at, synth_dir)
    library = explain_sample(model, values, interaction_baseline=mean_embedding(model, synth_dataset.split("train")[0]))

    def shown(name: str) -> np.ndarray:
        """The enlarged map, equal to the library's reading; the verdict and the split ρ are that reading's."""
        values = enlarged(at, name)
        np.testing.assert_allclose(values, library.readings[name].per_head[0, 0], atol=1e-6)
        rho = library.readings[name].agreement
        assert any(text.startswith(f"**Verdict:** {READINGS[name].title} ") and
                   f"(ρ = {rho:+.2f} over {PAIRS} pairs)" in text for text in alerts(at)), alerts(at)
        assert any(f"Over the test split: ρ {expected.readings[name].agreement:+.2f}" in c.value for c in at.caption)
        return values

    first = shown(expected.default)
    other = next(n for n in ("gradient", "value-norm", PAPER_READING) if n != expected.default)
    reading_box(at).set_value(other).run()
    assert not at.exception, at.exception
    assert reading_box(at).value == other
    second = shown(other)
    assert not np.allclose(first, second)


def test_explore_compare_shows_both_models_ctr_and_two_verdicts_each(pair_env, synth_dir, synth_dataset,
                                                                      readings_of):
    at = start()
    finish_background(at.toggle(key="explore_compare").set_value(True).run())  # the paper's model's readings
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    values = sample_values(at, synth_dir)
    ctrs = [m.value for m in at.metric if m.label == "Predicted CTR"]
    assert len(ctrs) == 3  # the model in use, then the readable model and the paper's side by side
    texts = alerts(at)
    for name, shown in zip(("readable", "paper"), ctrs[1:]):
        model = load_run(pair_env / name).model
        library = explain_sample(model, values,
                                 interaction_baseline=mean_embedding(model, synth_dataset.split("train")[0]))
        assert shown == f"{library.ctr:.1%}"
        best = readings_of(pair_env / name).default
        for rho, subject in ((library.readings[best].agreement, f"its best reading ({READINGS[best].title})"),
                             (library.readings[PAPER_READING].agreement, "raw α (the paper's reading)")):
            assert f"**Verdict:** {verdict(rho, PAIRS, subject=subject)}." in texts, (subject, texts)
    assert len([t for t in texts if t.startswith("**Verdict:**")]) == 1 + 2 * 2  # the sample's, then 2 per model


def test_what_if_offers_the_reading_and_its_verdicts_follow_it(small_env, trained_run, synth_dir, synth_dataset,
                                                                readings_of):
    at = start("app/what_if.py")
    expected = readings_of(small_env / "small")
    assert_best_first(at, expected)
    model = trained_run.model
    values = sample_values(at, synth_dir)
    library = explain_sample(model, values, interaction_baseline=mean_embedding(model, synth_dataset.split("train")[0]))
    other = next(n for n in ("value-norm", "gradient") if n != expected.default)
    for name in (other, PAPER_READING):
        reading_box(at).set_value(name).run()
        assert not at.exception, at.exception
        text = "\n".join(m.value for m in at.markdown)
        line = verdict(library.readings[name].agreement, PAIRS, subject=READINGS[name].title)
        assert f"**Before:** {line}." in text and f"**After:** {line}." in text  # no edit yet: after = before
    both = chart(at, "Attention before and after · layer 1")
    np.testing.assert_allclose(array(both["data"][0]["customdata"])[..., 0], library.attention[0].mean(0), atol=1e-6)
    reading_box(at).set_value(other).run()
    before = chart(at, f"{READINGS[other].title} before the edit · layer 1")
    np.testing.assert_allclose(array(before["data"][0]["z"]), library.readings[other].per_head[0].mean(0), atol=1e-6)


def test_learn_offers_the_reading_for_does_attention_explain(small_env, trained_run, synth_dir, synth_dataset,
                                                             readings_of):
    at = start("app/learn.py")
    expected = readings_of(small_env / "small")
    assert_best_first(at, expected)
    model = trained_run.model
    library = explain_sample(model, sample_values(at, synth_dir),
                             interaction_baseline=mean_embedding(model, synth_dataset.split("train")[0]))
    other = next(n for n in ("gradient", "value-norm") if n != expected.default)
    reading_box(at).set_value(other).run()
    assert not at.exception, at.exception
    title = READINGS[other].title
    scatter = chart(at, f"This sample's field pairs: {title}")
    points = next(t for t in scatter["data"] if t.get("mode", "").startswith("markers"))
    from autoint.explain.readings import pairs_of
    np.testing.assert_allclose(array(points["x"]), pairs_of(library.readings[other].matrix), atol=1e-6)
    np.testing.assert_allclose(array(points["y"]), np.abs(library.interactions.pairs), atol=1e-6)
    rho = library.readings[other].agreement
    assert any(f"**Verdict:** {verdict(rho, PAIRS, subject=title)}." == t for t in alerts(at)), alerts(at)
    text = "\n".join(m.value for m in at.markdown)
    assert "the paper's reading" in text
    assert f"ρ = {library.readings[PAPER_READING].agreement:+.2f} over {PAIRS} pairs" in text  # raw α, beside it


def test_train_compare_offers_one_reading_for_both_runs_starting_on_the_first_runs_best(pair_env, readings_of):
    at = start("app/train_page.py")
    chosen = at.multiselect(key="train_compare").value
    assert len(chosen) == 2
    first = readings_of(chosen[0])
    assert_best_first(at, first)

    def grids_follow(name: str) -> None:
        title = READINGS[name].title
        for path in chosen:
            run = Path(path).name
            assert chart(at, f"{run} · {title}")
            rho = readings_of(path).readings[name].agreement
            assert any(c.value.startswith(f"**{run}**, {title}: this sample ρ") and f"; split ρ {rho:+.2f}," in c.value
                       for c in at.caption)

    grids_follow(first.default)
    other = next(n for n in ("value-zeroing", PAPER_READING) if n != first.default)
    reading_box(at).set_value(other).run()
    assert not at.exception, at.exception
    grids_follow(other)


def test_the_readable_verdict_line_survives_any_results_file(tmp_path):
    """The Train page's line on the readable preset (autoint.training.paper.readable_verdict): the committed results
    give the measured figures; a results file missing, broken or in another shape gives nothing, never an error."""
    import json
    from autoint.training.paper import READABLE_RESULTS, readable_verdict
    committed = json.loads((READABLE_RESULTS / "results.json").read_text())["readable"]
    row = committed["variants"][committed["preset"]]
    line = readable_verdict()
    assert f"split ρ {row['split_rho']:+.2f}, median per-sample ρ {row['median_rho']:+.2f}" in line
    assert f"test AUC {row['auc_change']:+.4f}" in line and ("goal" in line) and "aligned" in line
    good = {"readable": {"preset": "v", "baseline": "paper", "goal": {"split_rho": 0.8, "median_rho": 0.5},
                         "variants": {"v": {"readings": ["value-norm"] * 2 + ["raw"], "split_rho": 0.9,
                                            "median_rho": 0.6, "auc_change": 0.002, "goal": True},
                                      "paper": {"split_rho": 0.3, "median_rho": 0.1}}}}
    shapes = [None, "not json", [], {"readable": None}, {"readable": {"variants": [], "preset": "v"}},
              {"readable": {"variants": {"v": {"split_rho": "x", "median_rho": 0.1}}, "preset": "v"}},
              {"readable": {"variants": {"v": {"split_rho": 0.1}}, "preset": "w"}}, good]
    lines = []
    for index, shape in enumerate(shapes):
        folder = tmp_path / f"results-{index}"
        folder.mkdir()
        if shape is not None:
            (folder / "results.json").write_text(shape if isinstance(shape, str) else json.dumps(shape))
        lines.append(readable_verdict(folder))
    assert lines[:-1] == [None] * (len(shapes) - 1)
    assert lines[-1] == ("The readable preset (v) shows value-norm: split ρ +0.90, median per-sample ρ +0.60, test AUC "
                         "+0.0020 against the paper's configuration; goal (split ρ ≥ 0.8, median ≥ 0.5) met (the "
                         "paper's configuration: +0.30 and +0.10), 3 seeds. benchmarks/results/attention-faithfulness/"
                         "aligned")


def test_a_models_first_visit_shows_raw_attention_while_its_readings_are_scored(pair_env, monkeypatch, readings_of):
    """Before a model's readings are scored (in the background, once), the page draws raw α with the picker
    disabled and a progress bar, no error; then it opens on the best reading."""
    import threading
    import app.views as views
    from autoint.explain import sampling
    gate, real = threading.Event(), sampling.model_readings

    def held(*args, **kwargs):  # the scoring waits until the test lets it go
        gate.wait(60)
        return real(*args, **kwargs)
    monkeypatch.setattr(sampling, "model_readings", held)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    box = next(b for b in at.selectbox if b.label == "Reading of the attention")
    assert box.disabled and box.value == "raw" and box.options == [READINGS["raw"].title]
    assert any("Scoring the six readings" in p.proto.text for p in at.get("progress"))
    assert chart(at, "Attention per layer and head")["data"]  # raw α drawn meanwhile
    gate.set()
    assert views.background().wait_idle(120)
    at.run()
    box = reading_box(at)
    assert not box.disabled and box.value == readings_of(pair_env / "readable").default
