"""Every page of the app, driven by Streamlit's AppTest, checked against the library's own numbers."""
import base64
import json
import shutil
from datetime import datetime, timezone

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from autoint.training.config import lr_for
from autoint.datasets.movielens import Catalog, read_movielens
from autoint.explain.explanation import dataset_correlations, explain_sample, what_if
from autoint.explain.baselines import mean_embedding
from autoint.explain.recommend import recommend
from autoint.explain.steps import layer_steps
from conftest import REPO, read_raw
from app import first_start, heap, views  # the app modules whose names the tests patch or call

APP = str(REPO / "streamlit_app.py")
TIMEOUT = 120


@pytest.fixture
def app_env(monkeypatch, tmp_path, synth_dir, trained_run):
    """The app on the small synthetic data, with one trained run in a fresh runs folder."""
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(trained_run.path, runs / "small")
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(synth_dir))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    return runs


@pytest.fixture(scope="module")
def catalog(synth_dir):
    return Catalog(read_movielens(synth_dir))


def start(page=None, timeout: float = TIMEOUT, reading: str | None = "raw", **session) -> AppTest:
    """The app run once (on `page` if given), with `session` preset in its session state; no error shown. The
    attention pages open on the model's best reading; these tests of raw attention pick `reading` (raw α, the
    paper's reading; None keeps the page's default)."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    finish_background(at, timeout)
    if reading == "raw":
        finish_background(read_raw(at), timeout)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def finish_background(at, timeout: float = TIMEOUT) -> AppTest:
    """What a browser's poll does (app/state.py `result_of`): while the page shows a background computation's
    progress, wait for it to end and run the script again, until the page is drawn."""
    from app.views import background
    for _ in range(8):
        if not background().pending() and not at.progress:
            return at
        assert background().wait_idle(timeout), background().pending()
        at.run()
    raise AssertionError(f"the page still waits on {background().pending()}")


def charts(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def array(value) -> np.ndarray:
    """Plotly sends numpy data as typed arrays ({dtype, bdata, shape}); lists stay lists."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(value)


def chart(at, title_start: str) -> dict:
    found = [c for c in charts(at) if c["layout"].get("title", {}).get("text", "").startswith(title_start)]
    assert found, f"no chart titled {title_start!r}; titles: {[c['layout'].get('title') for c in charts(at)]}"
    return found[0]


def exact(metric) -> float:
    """The full-precision probability the app writes in a metric's help: 'σ(+0.123456) = 0.530822'."""
    return float(metric.proto.help.rsplit("=", 1)[1])


def metric(at, label: str):
    return next(m for m in at.metric if m.label == label)


def rated_pair(catalog, skip=0):
    users = catalog.users["user_id"].to_list()
    pairs = [(u, m) for u in users[3:] for m in catalog.movies["movie_id"].to_list() if catalog.rating(u, m)]
    return pairs[skip]


def choose(at, user, movie, when: datetime):
    at.selectbox(key="explore_user").set_value(user)
    at.selectbox(key="explore_movie").set_value(movie)
    at.run()
    at.date_input(key="explore_date").set_value(when.date())
    at.time_input(key="explore_time").set_value(when.time())
    at.run()
    assert not at.exception, at.exception


def test_explore_shows_the_librarys_ctr_attention_and_attributions(app_env, trained_run, catalog, synth_dataset):
    at = start()
    user, movie = rated_pair(catalog)
    when = datetime(2000, 11, 20, 18, 45, tzinfo=timezone.utc)
    choose(at, user, movie, when)

    values = catalog.sample(user, movie, when.timestamp())
    baseline = mean_embedding(trained_run.model, synth_dataset.split("train")[0])
    expected = explain_sample(trained_run.model, values, attributions=["integrated_gradients", "feature_ablation"],
                              baseline=baseline)
    assert exact(metric(at, "Predicted CTR")) == pytest.approx(expected.ctr, abs=1e-6)
    assert metric(at, "Predicted CTR").value == f"{expected.ctr:.1%}"
    stars = catalog.rating(user, movie)[0]
    assert metric(at, "Real rating").value == "★" * stars + "☆" * (5 - stars)

    grid = chart(at, "Attention per layer and head")
    layers, heads = expected.attention.shape[:2]
    assert len(grid["data"]) == layers * heads == 4
    for index, trace in enumerate(grid["data"]):
        np.testing.assert_allclose(array(trace["customdata"])[..., 0], expected.attention[index // heads, index % heads],
                                   atol=1e-6)  # z is the colour, log2(alpha * F)
        assert trace["y"] == expected.labels  # readable labels such as Gender=M, not f0
        assert trace["x"] == [label.split("=")[0] for label in expected.labels]
    assert any(label.startswith("RequestTime=2000-11-20 18:45") for label in expected.labels)

    at.selectbox(key="explore_layer").set_value(2)
    at.selectbox(key="explore_head").set_value(2)
    at.run()
    enlarged = chart(at, "Layer 2, head 2")
    np.testing.assert_allclose(array(enlarged["data"][0]["customdata"])[..., 0], expected.attention[1, 1], atol=1e-6)

    bars = chart(at, "What each field contributes")
    by_name = {trace["name"]: array(trace["x"]) for trace in bars["data"]}
    np.testing.assert_allclose(array(by_name["Integrated Gradients"]), expected.attributions["integrated_gradients"],
                               atol=1e-4)
    np.testing.assert_allclose(array(by_name["Feature Ablation"]), expected.attributions["feature_ablation"], atol=1e-5)
    shown = [m.value for m in at.markdown]
    assert any(expected.combinations[0].text in text for text in shown)


def test_what_if_edit_changes_ctr_and_attention_as_the_library_says(app_env, trained_run, catalog):
    at = start()
    user, movie = rated_pair(catalog, skip=5)
    when = datetime(2000, 6, 1, 12, 0, tzinfo=timezone.utc)
    choose(at, user, movie, when)
    read_raw(finish_background(at.switch_page("app/what_if.py").run()))  # raw α, the paper's reading
    assert not at.exception, at.exception
    values = catalog.sample(user, movie, when.timestamp())
    other = "F" if values["Gender"] == "M" else "M"
    at.selectbox(key="whatif_field_Gender").set_value(other)
    at.multiselect(key="whatif_field_Genre").set_value(["Comedy", "Romance"])
    at.run()
    assert not at.exception, at.exception

    expected = what_if(trained_run.model, values, {"Gender": other, "Genre": ["Comedy", "Romance"]})
    assert exact(metric(at, "CTR before")) == pytest.approx(expected.before.ctr, abs=1e-6)
    assert exact(metric(at, "CTR after")) == pytest.approx(expected.after.ctr, abs=1e-6)
    assert abs(expected.ctr_change) > 1e-4  # the edit matters, so the test can see it
    both = chart(at, "Attention before and after · layer 1")
    np.testing.assert_allclose(array(both["data"][0]["customdata"])[..., 0], expected.before.attention[0].mean(0),
                               atol=1e-6)
    np.testing.assert_allclose(array(both["data"][1]["customdata"])[..., 0], expected.after.attention[0].mean(0), atol=1e-6)
    assert both["data"][1]["y"] == chart(at, "Change in attention")["data"][0]["y"]  # one set of row labels
    difference = chart(at, "Change in attention")
    np.testing.assert_allclose(array(difference["data"][0]["z"]), expected.attention_change[0].mean(0), atol=1e-6)
    assert any(label.startswith("Gender=") and label.endswith(f"→ {other}") for label in difference["data"][0]["y"])

    at.button(key="whatif_reset").click().run()
    assert exact(metric(at, "CTR after")) == pytest.approx(expected.before.ctr, abs=1e-6)


def test_correlations_page_matches_dataset_correlations(app_env, trained_run, synth_dir):
    at = start("app/correlations.py")
    from autoint.datasets.movielens import load_movielens
    inputs, labels = load_movielens(synth_dir, schema=trained_run.schema).split("test")
    overall = dataset_correlations(trained_run.model, inputs, labels)
    figure = chart(at, "Mean attention over")
    np.testing.assert_allclose(array(figure["data"][0]["customdata"])[..., 0], overall.per_layer.mean(0), atol=1e-5)
    assert f"{overall.count:,} samples" in figure["layout"]["title"]["text"]

    assert any(f"{len(labels):,} of {len(labels):,} test samples (the whole split)" in c.value for c in at.caption)

    finish_background(at.radio(key="corr_label").set_value(1).run())
    clicks = dataset_correlations(trained_run.model, inputs, labels, label=1)
    assert f"{clicks.count:,} samples" in chart(at, "Mean attention over")["layout"]["title"]["text"]
    finish_background(at.selectbox(key="corr_field").set_value("Gender").run())
    finish_background(at.selectbox(key="corr_value_Gender").set_value("F").run())
    sliced = dataset_correlations(trained_run.model, inputs, labels, label=1, where={"Gender": "F"})
    np.testing.assert_allclose(array(chart(at, "Mean attention over")["data"][1]["customdata"])[..., 0],
                               sliced.per_layer[0], atol=1e-5)
    pairs = next(d.value for d in at.dataframe if "pair" in d.value.columns)
    top = sliced.strongest_pairs(1)[0]
    assert pairs.iloc[0]["pair"] == f"{top['fields'][0]} ↔ {top['fields'][1]}"


def test_recommend_page_lists_the_librarys_top_movies(app_env, trained_run, catalog, synth_dataset):
    at = start("app/recommend.py")
    user = catalog.users["user_id"][2]
    at.selectbox(key="recommend_user").set_value(user)
    at.slider(key="recommend_top").set_value(5)
    at.run()
    day, clock = at.date_input(key="recommend_date").value, at.time_input(key="recommend_time").value
    timestamp = datetime.combine(day, clock, tzinfo=timezone.utc).timestamp()
    expected = recommend(trained_run.model, catalog, user, timestamp, top=5, exclude_rated=True)
    table = next(d.value for d in at.dataframe if "movie" in d.value.columns)
    assert table["movie"].tolist() == [p["title"] for p in expected]
    np.testing.assert_allclose(table["CTR"].to_numpy(), [p["ctr"] for p in expected], atol=1e-6)
    assert table["strongest attention combination"].tolist() == [" × ".join(p["combination"]) for p in expected]
    measured = recommend(trained_run.model, catalog, user, timestamp, top=5, exclude_rated=True,
                         interaction_baseline=mean_embedding(trained_run.model, synth_dataset.split("train")[0]))
    assert table["strongest measured interaction"].tolist() == [
        f"{' × '.join(p['interaction']['fields'])} ({p['interaction']['value']:+.2f} logit)" for p in measured]
    reasons = [m.value for m in at.markdown]
    assert all(any(p["why"] in text and p["title"] in text for text in reasons) for p in expected)


def test_learn_page_shows_the_layers_real_numbers(app_env, trained_run, catalog):
    at = start("app/learn.py")
    at.selectbox(key="learn_layer").set_value(2)
    at.selectbox(key="learn_head").set_value(2)
    at.run()
    assert not at.exception, at.exception
    sample = at.session_state["sample"]
    steps = layer_steps(trained_run.model, catalog.sample(sample["user"], sample["movie"], sample["time"]), 2)
    np.testing.assert_allclose(array(chart(at, "ψ(e_m, e_k), head 2")["data"][0]["z"]), steps.scores[1], atol=1e-5)
    np.testing.assert_allclose(array(chart(at, "α_(m,k), head 2")["data"][0]["z"]), steps.attention[1], atol=1e-6)
    np.testing.assert_allclose(array(chart(at, "e^Res_m")["data"][0]["z"]), steps.output, atol=1e-5)
    assert len(at.get("latex")) >= 7  # every step has the paper's equation beside it


def queue_small_run(at, runs, name: str):
    """Submit a 1-layer, d=4, 1-epoch run named `name` from the Train page; (its job, the queue)."""
    for key, value in [("train_layers", 1), ("train_embed", 4), ("train_attn", 4)]:
        at.slider(key=key).set_value(value)
    at.number_input(key="train_epochs").set_value(1)
    at.text_input(key="train_name").set_value(name)
    at.button[0].click().run()
    assert any(f"Queued {name}" in s.value for s in at.success), [e.value for e in at.error]
    from app.first_start import job_queue
    queue = job_queue(str(runs))
    (job,) = [j for j in queue.jobs() if j.run_name == name]
    return job, queue


def test_train_page_refuses_bad_settings_and_a_one_epoch_run_joins_the_registry(app_env):
    at = start("app/train_page.py")
    at.toggle(key="train_plus").set_value(True)
    at.text_input(key="train_hidden").set_value("400,abc")
    at.button[0].click().run()
    assert any("Not started" in e.value and "400,abc" in e.value for e in at.error)
    assert not (app_env / ".jobs").exists() or not any((app_env / ".jobs").iterdir())

    at.toggle(key="train_plus").set_value(False)
    job, queue = queue_small_run(at, app_env, "one-epoch")
    assert queue.wait(job.id, timeout=180).status == "finished"
    at.run()
    registry = at.dataframe[0].value
    assert "one-epoch" in registry["run"].tolist()
    row = registry[registry["run"] == "one-epoch"].iloc[0]
    assert row["layers"] == 1 and row["epochs"] == 1 and 0.0 <= row["test AUC"] <= 1.0
    recorded = json.loads((app_env / "one-epoch" / "run.json").read_text())["train_config"]
    assert (row["batch"], row["lr"]) == (recorded["batch_size"], recorded["lr"])  # what the run took, shown
    assert row["lr"] == lr_for(row["batch"])  # the form sets neither: the defaults' rule chose them

    compare = at.dataframe[1].value  # two runs now: compared side by side
    assert set(compare.columns) == {"metric", "one-epoch", "small"}


def test_first_run_without_a_model_trains_the_default_with_progress(monkeypatch, tmp_path, synth_dir):
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(synth_dir))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(tmp_path / "runs"))
    import app.state as state
    from autoint.training.config import TrainConfig
    monkeypatch.setattr(first_start, "FIRST_RUN_TRAINING", TrainConfig(epochs=1, batch_size=512))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert any("No trained model yet" in i.value for i in at.info)
    queue = first_start.job_queue(str(tmp_path / "runs"))
    (job,) = queue.jobs()  # one job: the quick run on the way (here at its end: 1 epoch), the converged one last
    assert job.run_name == state.READABLE_RUN and job.spec["snapshot"]["run_name"] == state.QUICK_RUN
    assert queue.wait(job.id, timeout=180).status == "finished"
    at.run()
    assert not at.exception and not at.error
    assert metric(at, "Predicted CTR").value.endswith("%")


def test_a_broken_data_folder_is_an_error_message_not_a_traceback(monkeypatch, tmp_path):
    broken = tmp_path / "ml"
    broken.mkdir()
    (broken / "users.dat").write_text("1::M::25::4::12345\n2::X::25::4::12345\n")
    (broken / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    (broken / "ratings.dat").write_text("1::1::5::978300760\n")
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(broken))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("users.dat, line 2" in e.value for e in at.error), [e.value for e in at.error]


def test_offline_start_uses_synthetic_data_with_a_banner_and_a_failed_download_says_why(
        monkeypatch, tmp_path, trained_run):
    import app.state as state
    import autoint.datasets.download
    from autoint.datasets.download import DownloadError
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(tmp_path / "no-ml-1m-here"))
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / "small")
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    from autoint.workspace import sources
    monkeypatch.setattr(sources, "SYNTHETIC_DIR", tmp_path / "synthetic")
    monkeypatch.setattr(sources, "SYNTH_DEFAULTS", dict(users=100, movies=60, ratings=3000, seed=5))
    state.synthetic_folder.clear()

    def offline(target, progress=None, **kwargs):
        progress(1000, 6_000_000)
        raise DownloadError("could not reach files.grouplens.org (offline).")
    monkeypatch.setattr(autoint.datasets.download, "download_ml1m", offline)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Synthetic data" in w.value and "no-ml-1m-here" in w.value for w in at.warning)
    assert (tmp_path / "synthetic" / "ratings.dat").is_file()
    assert metric(at, "Predicted CTR").value.endswith("%")  # the app works on the synthetic data

    at.button(key="download_ml1m").click().run()
    assert any("download failed" in e.value and "offline" in e.value for e in at.error)
    assert not at.exception
    state.synthetic_folder.clear()


def test_train_page_presets_fill_the_form_and_the_authors_options_reach_the_job(app_env, monkeypatch):
    from autoint.model import autoint as model_module
    from autoint.model import presets as presets_module
    from autoint.model.autoint import AutoIntConfig
    from autoint.model.presets import PRESET_DESCRIPTIONS, PRESETS
    # The selector lists every preset with its description and fills the form; the form can then be changed.
    at = start("app/train_page.py")
    selector = at.selectbox(key="train_preset")
    assert selector.options == [f"{name}: {PRESET_DESCRIPTIONS[name]}" for name in PRESETS]
    assert selector.value == "paper" and not at.checkbox(key="train_qkv_relu").value
    selector.set_value("authors-code").run()
    assert [at.checkbox(key=k).value for k in ("train_qkv_relu", "train_projection_bias", "train_scaled",
                                               "train_layer_norm")] == [True, True, True, True]
    at.checkbox(key="train_layer_norm").uncheck()
    at.slider(key="train_attention_dropout").set_value(0.2)
    job, queue = queue_small_run(at, app_env, "authors-one")
    queue.cancel(job.id)  # what was asked for is in the job; training it would only cost time here
    assert AutoIntConfig.from_json(job.spec["model_config"]) == AutoIntConfig(
        layers=1, embed_dim=4, attn_dim=4, qkv_relu=True, projection_bias=True, scaled_attention=True,
        layer_norm=False, attention_dropout=0.2)
    # ... and in the one settings file the trainer reads (`train --config`), nothing re-spelled as flags.
    import json
    from autoint.training.train import settings_from_json
    command = job.spec["command"]
    settings = command[command.index("--config") + 1]
    model_back, _ = settings_from_json(json.loads(open(settings).read()))
    assert model_back == AutoIntConfig.from_json(job.spec["model_config"])
    assert not {"--qkv-relu", "--projection-bias", "--scaled", "--attention-dropout"} & set(command)
    # The readable preset fills its attention alignment too (a setting of its training, not of the layer).
    at.selectbox(key="train_preset").set_value("readable").run()
    assert at.slider(key="train_attention_alignment").value == PRESETS["readable"]["attention_alignment"] == 0.1
    # Back to the paper's preset: the form is the paper's model again.
    at.selectbox(key="train_preset").set_value("paper").run()
    assert at.slider(key="train_attention_alignment").value == 0.0
    assert not any(at.checkbox(key=k).value for k in ("train_qkv_relu", "train_projection_bias", "train_scaled",
                                                      "train_layer_norm"))
    assert at.slider(key="train_attention_dropout").value == 0.0 and at.slider(key="train_layers").value == 3

    # With only the paper's preset a one-choice selector would say nothing: a caption with the benchmark's verdict.
    monkeypatch.setattr(presets_module, "PRESETS", {"paper": {}})
    at = start("app/train_page.py")
    assert not [s for s in at.selectbox if s.key == "train_preset"]
    assert any(c.value.startswith("Only the paper's model is offered as a preset") for c in at.caption)


def test_each_run_freezes_the_live_heap_and_every_fiftieth_hands_it_back(monkeypatch):
    """Streamlit's gc.collect(2) after each run then walks only what the run made; the HEAP_RESCAN_RUNS-th run
    unfreezes, so its collect walks everything once and finds any cycle that died while frozen."""
    import gc
    import itertools
    from app import first_start, heap, state, views
    monkeypatch.setattr(heap, "_script_runs", itertools.count())
    try:
        for run in range(2 * heap.HEAP_RESCAN_RUNS):
            heap.settle_heap()
            rescan = run % heap.HEAP_RESCAN_RUNS == heap.HEAP_RESCAN_RUNS - 1
            assert (gc.get_freeze_count() == 0) is rescan, run
        import weakref

        class Node:
            pass
        node = Node()
        node.itself = node  # a cycle: only a collect can free it
        alive = weakref.ref(node)
        heap.settle_heap()  # frozen while alive
        del node
        gc.collect(2)
        assert alive() is not None  # died while frozen: the collect does not see it
        gc.unfreeze()  # what the HEAP_RESCAN_RUNS-th run does
        gc.collect(2)
        assert alive() is None  # handed back: found and freed
    finally:
        gc.unfreeze()


def test_explanations_are_computed_once_per_run_values_and_options(monkeypatch, trained_run, catalog, synth_dir):
    """views.explanation: the library's explanation, computed once for the same run, values and options (a rerun
    that keeps the sample), again for other values or options."""
    import autoint.explain.explanation
    from app import state
    calls = []
    real = autoint.explain.explanation.explain_sample
    monkeypatch.setattr(autoint.explain.explanation, "explain_sample", lambda *a, **k: calls.append(k) or real(*a, **k))
    views.explanation.clear()
    run_path, folder = str(trained_run.path), str(synth_dir)
    values = catalog.sample(1, 2)
    first = views.explanation(run_path, folder, values, ("integrated_gradients",), "mean")
    again = views.explanation(run_path, folder, dict(values), ("integrated_gradients",), "mean")
    assert len(calls) == 1 and again.ctr == first.ctr and np.array_equal(again.attention, first.attention)
    assert np.array_equal(again.interactions.pairs, first.interactions.pairs)
    want = real(trained_run.model, values, attributions=("integrated_gradients",),
                baseline=views.baseline(run_path, folder),
                interaction_baseline=views.interaction_baseline(run_path, folder, "mean"))
    assert first.ctr == pytest.approx(want.ctr, abs=1e-6)
    np.testing.assert_allclose(first.attributions["integrated_gradients"], want.attributions["integrated_gradients"],
                               atol=1e-5)
    other = views.explanation(run_path, folder, catalog.sample(2, 3), ("integrated_gradients",), "mean")
    plain = views.explanation(run_path, folder, values)
    assert len(calls) == 3 and other.ctr != first.ctr and plain.interactions is None and not plain.attributions
    # the baselines it takes stay cached resources of their own: one tensor per run, data source and kind
    assert views.interaction_baseline(run_path, folder, "unknown") is views.interaction_baseline(run_path, folder,
                                                                                                  "unknown")
