"""The app on a prepared copy (issue 15): the Train page trains on the copy when there is one (and asks to prepare a
source too big for memory first), Explore and What-if read their sample from the copy's row group without loading
the data set, and the copy's freshness is checked once per state of its files, not on each rerun or view."""
import os
import shutil

import pytest

import autoint.datasets
import autoint.datasets.generic
import autoint.datasets.prepared
from conftest import REPO
from autoint.workspace import sources
from app import views  # the app module whose names the tests patch or call
from test_app import finish_background, start as start_app

TIMEOUT = 180
ROWS = 4000


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """(data folder, Prepared, run folder): generated Criteo-format rows, prepared in row groups of 256 rows, and
    an AutoInt (1 layer, 1 head, d=4) trained one epoch on the copy through the CLI (`train --prepared`)."""
    from autoint.cli import main as cli
    from autoint.datasets import builtin_spec
    from autoint.datasets.synth import generate_criteo
    from autoint.datasets.prepared import prepare
    folder = generate_criteo(tmp_path_factory.mktemp("app-prepared") / "criteo", rows=ROWS, seed=5, pool=40)
    prepared = prepare(builtin_spec("criteo"), folder, row_group_rows=256, progress=False)
    run = tmp_path_factory.mktemp("app-prepared-runs") / "on-copy"
    assert cli(["train", "--prepared", str(prepared.path), "--epochs", "1", "--layers", "1", "--heads", "1",
                "--embed-dim", "4", "--attn-dim", "4", "--batch-size", "512", "--quiet", "--out", str(run)]) == 0
    return folder, prepared, run


@pytest.fixture
def env(monkeypatch, tmp_path, copy, few_estimated_rows):
    folder, prepared, run = copy
    runs = tmp_path / "runs"
    shutil.copytree(run, runs / run.name)
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(folder))
    monkeypatch.setenv("AUTOINT_RUNS_DIR", str(runs))
    return folder, prepared, runs


def refuse_reading_whole(monkeypatch):
    """The in-memory reader raises: a page that still loads the data set whole fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the data set was read whole into memory")
    monkeypatch.setattr(autoint.datasets, "load_dataset", refuse)
    monkeypatch.setattr(autoint.datasets.generic, "read_frame", refuse)


def start(page=None, **session):
    return start_app(page, timeout=TIMEOUT, **session)


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def raw_line(folder, line: int) -> list[str]:
    return (folder / "train.txt").read_text().splitlines()[line - 1].split("\t")


def test_the_train_page_trains_on_the_prepared_copy_and_says_so(env, monkeypatch):
    from autoint.training.runs import load_run, read_manifest
    folder, prepared, runs = env
    refuse_reading_whole(monkeypatch)
    at = start("app/train_page.py")
    said = texts(at.markdown)
    assert f"the prepared copy `{prepared.path}` ({ROWS:,} rows), loaded whole into memory" in said
    for key, value in [("train_layers", 1), ("train_embed", 4), ("train_attn", 4), ("train_heads", 1)]:
        at.slider(key=key).set_value(value)
    at.number_input(key="train_epochs").set_value(1)
    at.text_input(key="train_name").set_value("from-page")
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    assert any("Queued from-page" in s.value for s in at.success), [e.value for e in at.error]
    from app.first_start import job_queue
    queue = job_queue(str(runs))
    (job,) = [j for j in queue.jobs() if j.run_name == "from-page"]
    assert "--prepared" in job.spec["command"] and job.spec["prepared"] == str(prepared.path)
    assert queue.wait(job.id, timeout=TIMEOUT).status == "finished"
    manifest = read_manifest(runs / "from-page")
    assert manifest["prepared"] == str(prepared.path) and manifest["metrics"]["data_path"] == "in-memory"
    assert manifest["data_fingerprint"] == prepared.fingerprint and manifest["dataset"] == "criteo"
    assert load_run(runs / "from-page").model.schema == prepared.schema  # the copy's vocabularies

    # A copy too big for memory is streamed, and the page says so (the trainer decides by the same rule)
    monkeypatch.setattr("autoint.training.train.IN_MEMORY_MAX_BYTES", 1000)
    at.run()
    from autoint.training.train import TrainConfig
    assert f"streamed through shuffle buffers of {TrainConfig().buffer_rows:,} rows" in texts(at.markdown)


def test_a_source_too_big_for_memory_without_a_copy_is_prepared_before_training(env, monkeypatch, tmp_path):
    import app.state as state
    import app.views as views
    folder, prepared, runs = env
    bare = tmp_path / "criteo"
    bare.mkdir()
    shutil.copy(folder / "train.txt", bare / "train.txt")  # the raw file without its copy
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(bare))
    at = start("app/train_page.py")
    assert "parsed whole into memory" in texts(at.markdown)  # small: trained from the raw file, as before
    assert not at.button(key="FormSubmitter:train_form-Start training").disabled
    monkeypatch.setattr(views, "PREPARE_OVER_BYTES", 1000)  # now "too big"
    at.run()
    assert any("**Prepare first.**" in w.value for w in at.warning)
    assert at.button(key="FormSubmitter:train_form-Start training").disabled
    at.button(key="train_prepare").click().run()
    assert views.preparer().wait_idle(TIMEOUT)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"the prepared copy `{bare / 'prepared' / 'criteo'}`" in texts(at.markdown)
    assert not at.button(key="FormSubmitter:train_form-Start training").disabled


def test_explore_and_what_if_read_the_sample_from_the_copy_never_the_whole_data(env, monkeypatch):
    folder, prepared, runs = env
    refuse_reading_whole(monkeypatch)
    at = start(corr_sample_rows=4)
    picker = at.number_input(key="explore_position")
    assert picker.min == 0 and picker.max == prepared.rows("test") - 1 and picker.value == 0
    assert "of the prepared copy" in texts(at.caption)
    position = prepared.rows("test") - 3
    at.number_input(key="explore_position").set_value(position).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    record = prepared.take("test", [position]).frame.row(0, named=True)
    raw = raw_line(folder, record["line"])
    assert f"test sample {position:,} of the prepared copy (`{prepared.path}`), line {record['line']:,} of the raw " \
           f"data" in texts(at.caption)
    from autoint.datasets import builtin_spec
    columns = builtin_spec("criteo").columns
    shown = texts(at.markdown)
    for f in prepared.schema.fields:  # decoded: the raw file's values (a value too rare for a slot: <unknown>)
        text = raw[columns.index(f.name)]
        if f.kind == "numeric":
            if text:
                assert f"`{f.name}={float(text):g}`" in shown
        else:
            assert f"`{f.name}={text if text in f._lookup else '<unknown>'}`" in shown
    label = at.metric[1]
    assert label.label == "Real label" and label.value == ("click" if raw[0] == "1" else "no click")

    at.button(key="explore_random").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert 0 <= at.number_input(key="explore_position").value < prepared.rows("test")

    # What-if starts from that sample, read from the copy too
    at.number_input(key="explore_position").set_value(position).run()
    at.switch_page("app/what_if.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"Start: test sample {position:,} (from Explore)" in texts(at.caption)
    c5 = raw[columns.index("C5")]
    assert at.selectbox(key="whatif_field_C5").value == (c5 if c5 in prepared.schema["C5"]._lookup else "<unknown>")
    # and so do Learn and Dataset correlations (a sample of the copy), still without the data set in memory
    at.switch_page("app/learn.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    finish_background(at.switch_page("app/correlations.py").run(), TIMEOUT)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"of {prepared.rows('test'):,} test samples" in texts(at.caption)


def test_the_copys_freshness_is_checked_once_per_state_of_its_files(env, monkeypatch):
    import app.state as state
    folder, prepared, runs = env
    calls = []
    checked = autoint.datasets.prepared.is_prepared

    def counted(*args, **kwargs):
        calls.append(args)
        return checked(*args, **kwargs)
    monkeypatch.setattr(autoint.datasets.prepared, "is_prepared", counted)
    views._fresh_copy.clear()
    at = start(corr_sample_rows=4)
    for _ in range(3):
        at.run()
    finish_background(at.switch_page("app/correlations.py").run())  # views_data and split_total: one decision
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.switch_page("app/train_page.py").run()
    assert len(calls) == 1
    # A raw file that changes makes a new check, which finds the copy stale: the pages go back to the raw file
    info = (folder / "train.txt").stat()
    try:
        os.utime(folder / "train.txt", ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
        at.run()
        assert len(calls) == 2 and views.prepared_copy(sources.found_in(folder)[0]) is None
        assert "parsed whole into memory" in texts(at.markdown)
    finally:
        os.utime(folder / "train.txt", ns=(info.st_atime_ns, info.st_mtime_ns))


SHOP_SPEC = """\
name = "shop"
files = ["impressions.csv"]
separator = ";"
label = "clicked"
min_count = {min_count}

[[field]]
names = ["country", "device", "ad_category"]
kind = "categorical"

[[field]]
name = "price"
kind = "numeric"
"""


def test_a_changed_spec_file_makes_its_copy_stale_at_once(tmp_path):
    """The spec file is part of the state the freshness answer is kept for: editing it (other settings, the same raw
    files) is seen on the next rerun, not only when the cached answer is evicted."""
    import app.state as state
    from autoint.datasets import read_spec
    from autoint.datasets.synth import generate_clicks
    from autoint.datasets.prepared import prepare
    folder = generate_clicks(tmp_path / "shop", rows=1500, seed=0)
    spec_file = folder / "shop.toml"
    spec_file.write_text(SHOP_SPEC.format(min_count=2))
    prepare(read_spec(spec_file), folder, row_group_rows=256, progress=False)
    (source,) = [s for s in sources.found_in(folder) if s.spec]
    assert views.prepared_copy(source) is not None
    spec_file.write_text(SHOP_SPEC.format(min_count=20))
    assert views.prepared_copy(source) is None


def test_compare_reads_the_runs_metrics_without_hashing_their_vocabularies_on_each_rerun(env, monkeypatch):
    """Compare shows two runs' metrics and curves from run.json; their vocabularies are read (and hashed) once, when
    each model is loaded, not again on every rerun of the page."""
    import autoint.training.runs as runs_module
    folder, prepared, runs = env
    shutil.copytree(runs / "on-copy", runs / "on-copy-2")
    reads = []
    real = runs_module._read_vocabularies
    monkeypatch.setattr(runs_module, "_read_vocabularies", lambda *args: (reads.append(args[0]), real(*args))[1])
    at = start("app/train_page.py")
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(d for d in at.dataframe if "metric" in d.value.columns).value
    auc = runs_module.read_manifest(runs / "on-copy")["metrics"]["test_auc"]
    assert set(table.columns) == {"metric", "on-copy", "on-copy-2"}
    assert table.set_index("metric").loc["test_auc"].tolist() == [str(auc), str(auc)]
    assert [m.label for m in at.metric] == ["CTR under on-copy", "CTR under on-copy-2"]
    loaded = len(reads)
    at.run()
    assert not at.exception and len(reads) == loaded


def test_explore_picks_a_sample_of_the_copy_by_field_values_reading_columns_only(env, monkeypatch):
    """The field filters on a prepared copy: each value list comes from the copy's test split (that field's column),
    the sample is the first match and then any match, and the data set is never read whole."""
    from autoint.data.samples import matching, value_counts
    folder, prepared, runs = env
    refuse_reading_whole(monkeypatch)
    at = start()
    at.multiselect(key="explore_filter_fields").set_value(["C3"]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    top = value_counts(prepared, "test", "C3", limit=3)
    picker = at.selectbox(key="explore_value_C3")
    assert picker.value == top[0][0] and list(picker.options)[0].endswith(f"· {top[0][1]:,} samples")
    value = next(v for v, _ in top if v != "<unknown>")
    at.selectbox(key="explore_value_C3").set_value(value).run()
    positions = matching(prepared, "test", {"C3": value})
    match = at.number_input(key="explore_match")
    assert match.max == len(positions) and match.value == 1
    assert f"`C3={value}`" in texts(at.markdown)
    assert f"test sample {positions[0]:,} of the prepared copy" in texts(at.caption)
    at.number_input(key="explore_match").set_value(len(positions)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"test sample {positions[-1]:,} of the prepared copy" in texts(at.caption)
    at.multiselect(key="explore_filter_fields").set_value([]).run()  # no filter: the position picker again
    assert at.number_input(key="explore_position").value == positions[-1]
