"""The app stays responsive on big data (issue 15, point 4), on a generated Criteo-format set whose 26 categorical
fields hold about 330 values each: Dataset correlations runs on a seeded sample whose size the page shows and takes,
computed in the background with progress, once per key; pickers of large vocabularies search instead of listing."""
import shutil
import threading

import numpy as np
import pytest
import torch

import autoint.explain.sampling
from conftest import tiny_criteo_run
from test_app import array, chart, finish_background, start as start_app

TIMEOUT = 180


@pytest.fixture(scope="module")
def big_vocab(tmp_path_factory):
    """(data folder, run folder): 10,000 Criteo-format rows drawing each category from 400 values (about 330 kept
    per field at min_count 10), and an AutoInt (1 layer, 1 head, d=4) trained one epoch."""
    return tiny_criteo_run(tmp_path_factory, "big-vocab", 10000, 512, pool=400)


@pytest.fixture
def app(monkeypatch, tmp_path, big_vocab, few_estimated_rows):
    """The app on that set; (data folder, run path, the test split's data, calls of the sample's attention)."""
    from autoint.datasets import load_dataset
    from autoint.training.runs import load_run
    folder, run = big_vocab
    runs = tmp_path / "runs"
    shutil.copytree(run, runs / run.name)
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(folder))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    calls = []
    original = autoint.explain.sampling.correlations_of_sample

    def counted(model, dataset, sample, **kwargs):
        calls.append((len(sample), sample.seed, tuple(sorted((kwargs.get("where") or {}).items())),
                      kwargs.get("label")))
        return original(model, dataset, sample, **kwargs)
    monkeypatch.setattr(autoint.explain.sampling, "correlations_of_sample", counted)
    model = load_run(runs / run.name).model
    return folder, str(runs / run.name), load_dataset("criteo", data_dir=folder, schema=model.schema), model, calls


def start(page=None, **session):
    return start_app(page, timeout=TIMEOUT, **session)


def captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def test_correlations_run_on_a_sample_whose_size_the_page_shows_and_takes(app, monkeypatch):
    from autoint.explain.explanation import dataset_correlations
    from autoint.explain.sampling import split_sample
    folder, run_path, data, model, calls = app
    monkeypatch.setattr(autoint.explain.sampling, "DEFAULT_SAMPLE_ROWS", 500)  # a split bigger than the default sample
    total = len(data.splits["test"])
    at = start("app/correlations.py", corr_sample_rows=4)  # 4 samples' interactions (39 fields: estimated)
    assert at.number_input(key="corr_sample_size").value == 500
    assert at.number_input(key="corr_sample_size").label == f"Samples (of {total:,} test samples)"
    assert f"500 of {total:,} test samples, seed 0" in captions(at)
    assert "500 samples" in chart(at, "Mean attention over")["layout"]["title"]["text"]
    assert f"Measured on 4 samples: the slice's share of 4 of {total:,} test samples, seed 0" in captions(at)
    assert calls == [(500, 0, (), None)]

    finish_background(at.number_input(key="corr_sample_size").set_value(200).run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"200 of {total:,} test samples, seed 0" in captions(at)
    figure = chart(at, "Mean attention over")
    assert "200 samples" in figure["layout"]["title"]["text"]
    sample = split_sample(data, "test", 200, seed=0)
    x, y = data.split("test")
    rows = torch.from_numpy(sample.positions)
    expected = dataset_correlations(model, x.index(rows), y[rows])
    np.testing.assert_allclose(array(figure["data"][0]["customdata"])[..., 0], expected.per_layer.mean(0), atol=1e-5)
    assert calls[-1] == (200, 0, (), None)

    # the same key is computed once: back to 500, to another page and back, or another session, all from memory
    finish_background(at.number_input(key="corr_sample_size").set_value(500).run())
    at.switch_page("app/train_page.py").run()
    finish_background(at.switch_page("app/correlations.py").run())
    other = start("app/correlations.py", corr_sample_rows=4)
    assert f"500 of {total:,} test samples, seed 0" in captions(other)
    assert calls == [(500, 0, (), None), (200, 0, (), None)]
    # another seed: other samples, computed anew
    finish_background(at.number_input(key="corr_sample_seed").set_value(7).run())
    assert f"500 of {total:,} test samples, seed 7" in captions(at) and calls[-1] == (500, 7, (), None)


def test_a_background_computation_shows_progress_then_its_result_and_errors_show_as_errors(app, monkeypatch):
    from autoint.data.dataset import DataError
    folder, run_path, data, model, calls = app
    gate = threading.Event()
    counted = autoint.explain.sampling.correlations_of_sample

    def gated(model, dataset, sample, progress=None, **kwargs):
        progress(0, len(sample))
        gate.wait(60)
        return counted(model, dataset, sample, progress=progress, **kwargs)
    monkeypatch.setattr(autoint.explain.sampling, "correlations_of_sample", gated)
    from streamlit.testing.v1 import AppTest
    from test_app import APP
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["corr_sample_rows"] = 4
    at.run()
    at.switch_page("app/correlations.py").run()
    assert not at.exception
    (bar,) = at.progress  # the script run did not wait: it drew the progress and stopped
    assert bar.proto.text.startswith(f"Averaging attention over {len(data.splits['test']):,} test samples")
    assert not [c for c in at.get("plotly_chart")]
    gate.set()
    finish_background(at)  # what the page's poll does
    assert not at.progress and chart(at, "Mean attention over")

    def broken(model, dataset, sample, **kwargs):
        raise DataError("criteo/train.txt, line 7: a broken row; fix the line")
    monkeypatch.setattr(autoint.explain.sampling, "correlations_of_sample", broken)
    finish_background(at.radio(key="corr_label").set_value(1).run())  # a new slice: a new computation, which fails
    assert any("line 7: a broken row" in e.value for e in at.error), [e.value for e in at.error]

    def bug(model, dataset, sample, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(autoint.explain.sampling, "correlations_of_sample", bug)
    finish_background(at.radio(key="corr_label").set_value(0).run())
    assert any("Something went wrong (ZeroDivisionError: a bug)" in e.value for e in at.error)


def test_pickers_of_large_vocabularies_search_instead_of_listing(app):
    from autoint.data.samples import value_counts
    folder, run_path, data, model, calls = app
    size = len(model.schema["C3"].vocab)
    assert size > 200  # a large vocabulary
    # Explore: a search box beside the value picker, which lists the most frequent matches only
    at = start(corr_sample_rows=4)
    at.multiselect(key="explore_filter_fields").set_value(["C3"]).run()
    options = at.selectbox(key="explore_value_C3").options
    assert len(options) <= 200 < size and at.text_input(key="explore_search_C3")
    top = next(v for v, _ in value_counts(data, "test", "C3", limit=5) if v != "<unknown>")
    text = top[2:6]
    at.text_input(key="explore_search_C3").set_value(text.upper()).run()  # any case
    found = at.selectbox(key="explore_value_C3").options
    assert found and all(text in o.split(" · ")[0] for o in found) and top in found[0]
    # What-if: the model's vocabulary searched
    at.switch_page("app/what_if.py").run()
    assert len(at.selectbox(key="whatif_field_C5").options) <= 201
    at.text_input(key="whatif_field_C5_search").set_value(text).run()
    matches = [v for v in model.schema["C5"].vocab if text in v]
    shown = at.selectbox(key="whatif_field_C5").options
    assert set(shown) - {at.selectbox(key="whatif_field_C5").value} <= set(matches)
    # Dataset correlations: the slice's value, searched among the sample's values
    finish_background(at.switch_page("app/correlations.py").run())
    finish_background(at.selectbox(key="corr_field").set_value("C3").run())
    assert not at.exception and not at.error, ([e.value for e in at.error], at.exception)
    assert len(at.selectbox(key="corr_value_C3").options) <= 200
    finish_background(at.text_input(key="corr_search_C3").set_value(text).run())
    assert not any("holds that text" in w.value for w in at.warning)
    assert all(text in o for o in at.selectbox(key="corr_value_C3").options)
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_a_big_data_set_not_prepared_yet_is_offered_a_prepare_button_with_progress(app, monkeypatch, tmp_path):
    import app.state as state
    import app.views as views
    from autoint.datasets import builtin_spec
    from autoint.datasets.prepared import default_dir, is_prepared
    folder, run_path, data, model, calls = app
    copy = tmp_path / "criteo"
    shutil.copytree(folder, copy)  # prepared beside its raw files: a copy, so the other tests' folder stays as it is
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(copy))
    monkeypatch.setattr(views, "PREPARE_OVER_BYTES", 1000)  # 10,000 rows are about 2 MB: "big" here
    at = start(corr_sample_rows=4)
    assert any(c.value.startswith("**Not prepared yet.**") for c in at.sidebar.caption)
    at.sidebar.button(key="prepare_data").click().run()
    assert not at.exception, at.exception
    assert views.preparer().wait_idle(TIMEOUT)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert is_prepared(default_dir(builtin_spec("criteo"), copy), builtin_spec("criteo"), copy)
    assert any(c.value.startswith("Prepared copy:") for c in at.sidebar.caption)
    assert not [b for b in at.sidebar.button if b.key == "prepare_data"]
    task = views.preparer().tasks()[-1]
    assert task.note.startswith("pass 2 of 2, encoding:") and "rows/s" in task.note  # the progress it reported

    # A run trained on the prepared copy (its vocabularies): the views read their sample from the copy's row groups
    from autoint.model.autoint import AutoIntConfig
    from autoint.datasets.prepared import Prepared
    from autoint.training.runs import save_run
    from autoint.explain.sampling import permutation_prefix
    from autoint.training.train import TrainConfig, train
    prepared = Prepared.open(default_dir(builtin_spec("criteo"), copy))
    trained = train(prepared.to_dataset(), AutoIntConfig(layers=1, heads=1, embed_dim=4, attn_dim=4),
                    TrainConfig(epochs=1, batch_size=512), progress=False)
    runs = tmp_path / "runs"
    path = save_run(runs / "on-prepared", trained.model, metrics=trained.metrics, data_fingerprint=prepared.fingerprint,
                    extra={"dataset": "criteo"})
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    test_rows = prepared.rows("test")
    at = start("app/correlations.py", corr_sample_rows=4, corr_sample_size=300, run_path=str(path))
    assert f"300 of {test_rows:,} test samples, seed 0" in captions(at)
    from autoint.explain.explanation import dataset_correlations
    x, y = prepared.read_split("test")
    order = torch.from_numpy(permutation_prefix(test_rows, 300, 0))
    expected = dataset_correlations(trained.model, x.index(order), y[order])
    figure = chart(at, "Mean attention over")
    assert "300 samples" in figure["layout"]["title"]["text"]
    np.testing.assert_allclose(array(figure["data"][0]["customdata"])[..., 0], expected.per_layer.mean(0), atol=1e-5)
