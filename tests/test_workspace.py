"""The workspace rules the CLI and the app share: which run the app opens on, which data a run explains."""
import pytest

from autoint.errors import DataError
from autoint.workspace import defaults, sources


def listed(name, preset_settings=None, data_dir="", dataset=None, model="AutoInt"):
    from autoint.model.autoint import AutoIntConfig
    config = AutoIntConfig(**(preset_settings or {})).to_json()
    return {"name": name, "path": f"/runs/{name}", "model": model, "config": config, "data_dir": data_dir,
            "dataset": dataset, "metrics": {}}


def test_the_app_opens_on_the_readable_model():
    from autoint.model.presets import PRESETS
    paper, readable = PRESETS["paper"], PRESETS["readable"]
    newest_first = [listed("mine", paper, "/data/a"), listed("default", readable), listed("paper", paper)]
    assert defaults.default_run(newest_first)["name"] == "default"  # the quick readable model, before it converges
    assert defaults.default_run([listed("readable", readable)] + newest_first)["name"] == "readable"
    others = [listed("x", paper, "/data/b"), listed("y", paper, "/data/a")]
    assert defaults.default_run(others, "/data/a")["name"] == "y"  # else the newest trained on this folder
    assert defaults.default_run(others)["name"] == "x" and defaults.default_run([]) is None
    assert defaults.paper_run(newest_first)["name"] == "paper"
    assert defaults.paper_run([listed("default-converged", paper)])["name"] == "default-converged"  # older starts
    assert defaults.paper_run([listed("mine", paper), listed("r", readable)])["name"] == "mine"
    assert defaults.readable_run([listed("mine", paper), listed("r", readable)])["name"] == "r"
    assert defaults.paper_run([listed("r", readable)]) is None


def test_the_first_start_trains_the_readable_model_then_the_papers():
    first, second = defaults.first_run_plan(3)
    assert (first["preset"], first["run_name"], first["snapshot"]) == ("readable", "readable", (3, "default"))
    assert (second["preset"], second["run_name"], second["snapshot"]) == ("paper", "paper", None)


def test_which_data_a_run_explains():
    manifest = {"dataset": "criteo", "spec": None}
    assert sources.trained_on({}) == ("movielens-1m", None)  # runs from before data sets were recorded
    assert sources.data_set_for("r", manifest) == ("criteo", None)
    with pytest.raises(DataError, match="r was trained on criteo, not avazu.*--dataset criteo"):
        sources.data_set_for("r", manifest, dataset="avazu")
    with pytest.raises(DataError, match="a spec of its own; pass --spec FILE"):
        sources.data_set_for("r", {"dataset": "mine", "spec": "/elsewhere/mine.toml"})
    source = sources.DataSource(sources.Path("/d"), False, sources.Path("/d"), False, dataset="criteo")
    assert sources.run_explains({"dataset": "criteo"}, source) and not sources.run_explains({}, source)
    assert not source.has_catalog and sources.DataSource(sources.Path("/m"), False, sources.Path("/m"), False).has_catalog


def test_a_run_is_refused_on_data_with_other_fields(synth_dataset, tmp_path):
    from autoint.datasets.synth import generate_criteo
    folder = generate_criteo(tmp_path / "criteo", rows=300, seed=1)
    with pytest.raises(DataError, match="are not the ones r was trained on"):
        sources.load_for_run("criteo", None, folder, synth_dataset.schema, "r")


def test_data_sets_are_asked_for_by_capability(tmp_path, monkeypatch, capsys):
    """Outside autoint/datasets the code asks which data sets have a catalogue and which files a folder lacks;
    the default data set's files and the default itself are named once, in the registry."""
    from autoint import datasets
    from autoint.cli import main as cli
    assert datasets.has_catalogue(datasets.DEFAULT_DATASET) and not datasets.has_catalogue("criteo")
    assert not datasets.has_catalogue(datasets.DEFAULT_DATASET, spec="mine.toml")  # a user's spec is read by spec
    assert datasets.recorded_dataset(None) == datasets.DEFAULT_DATASET == "movielens-1m"
    assert datasets.recorded_dataset("kdd12") == "kdd12"
    (tmp_path / "users.dat").write_text("")
    assert datasets.files_missing("movielens-1m", tmp_path) == ["movies.dat", "ratings.dat or ratings.dat.gz"]
    assert datasets.files_missing("criteo", tmp_path) == ["train.txt or train.txt.gz"]
    monkeypatch.setenv("AUTOINT_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"holds part of MovieLens-1M but no movies.dat and no ratings.dat or "
                                        r"ratings.dat.gz\. Add the missing files"):
        sources.default_source(generate=False)
    with pytest.raises(DataError, match="has no catalogue of users and items"):
        datasets.catalogue(tmp_path, "criteo")
    assert cli(["prepare"]) == 2  # the catalogued data set is read whole: prepare is refused, in words
    assert "prepare needs --dataset criteo, avazu, kdd12, or --spec FILE; MovieLens-1M is small" in \
        capsys.readouterr().err
