"""Bad requests: each is refused with the allowed range in the message, never with a traceback.

Library calls first (what the app calls), then the CLI in-process (`main([...])`: exit 2 and
`error: ...` on stderr; an uncaught exception would fail the test). The real entry point as a
subprocess is covered in test_reliability_data.py and test_train.py.
"""
import math
import pytest

from autoint.cli import build_parser, main
from autoint.data.dataset import DataError
from autoint.datasets.movielens import Catalog, read_movielens
from autoint.model.autoint import AutoIntConfig, ConfigError
from autoint.data.schema import SchemaError
from autoint.datasets.synth import FIRST_TIMESTAMP, LAST_TIMESTAMP
from autoint.training.train import TrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from autoint.datasets.synth import generate_movielens
    return generate_movielens(tmp_path_factory.mktemp("tiny") / "ml", users=60, movies=40, ratings=1500, seed=5)


@pytest.fixture(scope="module")
def catalog(tiny):
    return Catalog(read_movielens(tiny))


@pytest.fixture(scope="module")
def tiny_run(tiny, tmp_path_factory):
    """A one-epoch AutoInt on the tiny data, saved as a run folder (through the CLI's own code path)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--data-dir", str(tiny), "--layers", "1", "--embed-dim", "4", "--attn-dim", "4",
                 "--epochs", "1", "--batch-size", "256", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    from autoint.training.runs import load_run
    return load_run(out)


def cli_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- ids, times, genres (library)

@pytest.mark.parametrize("user", [0, -1, 61, 10**12])
def test_unknown_user(catalog, user):
    with pytest.raises(DataError, match=rf"unknown user {user}: .*users\.dat has users 1-60"):
        catalog.check_user(user)


@pytest.mark.parametrize("movie", [0, 41, 10**12])
def test_unknown_movie(catalog, movie):
    with pytest.raises(DataError, match=rf"unknown movie {movie}: .*movies\.dat has movie ids 1-40"):
        catalog.check_movie(movie)


@pytest.mark.parametrize("when", [0, FIRST_TIMESTAMP - 10**8, 10**20, -1e300, math.inf, math.nan])
def test_request_time_out_of_range(catalog, when):
    with pytest.raises(DataError, match=r"outside the data's range 20\d\d-.* to 20\d\d-.* \(UTC, Unix seconds "
                                        r"\d+ to \d+\)"):
        catalog.check_time(when)


def test_request_time_at_the_edges_is_accepted(catalog):
    assert catalog.check_time(catalog.first_time) == catalog.first_time
    assert catalog.check_time(catalog.last_time) == catalog.last_time


def test_model_refuses_request_time_outside_its_scaling(tiny_run, catalog):
    from autoint.explain.explanation import explain_sample
    values = catalog.sample(1, 1)
    field = tiny_run.schema["RequestTime"]
    for bad in (field.min_value - 1, field.max_value + 86400, 1e30):
        with pytest.raises(SchemaError, match=r"RequestTime=.* is outside the range the model was trained on: "
                                              r"choose from 20\d\d-.* UTC \(\d+\) to 20\d\d-.* UTC \(\d+\)"):
            explain_sample(tiny_run.model, {**values, "RequestTime": bad})


@pytest.mark.parametrize("genres", [["Cartoons"], ["Action", "action"], "Sci Fi", [""]])
def test_genres_not_in_vocabulary(tiny_run, catalog, genres):
    from autoint.explain.explanation import explain_sample
    with pytest.raises(SchemaError, match=r"Genre: .* not in the vocabulary; choose from .*Action.*"):
        explain_sample(tiny_run.model, {**catalog.sample(1, 1), "Genre": genres})


def test_too_many_or_no_genres(tiny_run, catalog):
    from autoint.explain.explanation import explain_sample
    values = catalog.sample(1, 1)
    with pytest.raises(SchemaError, match=r"Genre takes at most 6 values, got 7"):
        explain_sample(tiny_run.model, {**values, "Genre": ["Action"] * 7})
    with pytest.raises(SchemaError, match=r"Genre needs at least one value; choose from"):
        explain_sample(tiny_run.model, {**values, "Genre": []})


@pytest.mark.parametrize("text,pattern", [
    ("Genre", r"write Field=value"),
    ("Mood=happy", r"unknown field 'Mood'; the fields are Gender, Age"),
    ("Age=200", r"Age='200' is not a value the model knows; choose from Under 18, 18-24"),
    ("Gender=X", r"choose from M, F"),
    ("RequestTime=yesterday", r"give ISO 8601 .* or Unix seconds"),
])
def test_what_if_edits(tiny_run, text, pattern):
    from autoint.data.encoding import parse_edit
    with pytest.raises(SchemaError, match=pattern):
        parse_edit(tiny_run.schema, text)


def test_recommend_for_unknown_user(tiny_run, catalog):
    from autoint.explain.recommend import recommend
    with pytest.raises(DataError, match=r"unknown user 999: .* has users 1-60"):
        recommend(tiny_run.model, catalog, 999)
    with pytest.raises(DataError, match=r"outside the data's range"):
        recommend(tiny_run.model, catalog, 1, timestamp=LAST_TIMESTAMP + 10**9)


# ----------------------------------------------------------------------------- hyperparameters (library)

@pytest.mark.parametrize("kwargs,pattern", [
    ({"layers": 100}, r"layers=100 is out of range: choose an integer from 0 to 12"),
    ({"layers": -1}, r"layers=-1 is out of range: choose an integer from 0 to 12"),
    ({"embed_dim": 0}, r"embed_dim=0 is out of range: choose an integer from 1 to 256"),
    ({"embed_dim": 10**6}, r"embed_dim=1000000 is out of range: choose an integer from 1 to 256"),
    ({"attn_dim": 2.5}, r"attn_dim=2.5 is out of range: choose an integer from 1 to 256"),
    ({"heads": 0}, r"heads=0 is out of range: choose an integer from 1 to 16"),
    ({"heads": True}, r"heads=True is out of range"),
    ({"dropout": -0.1}, r"dropout=-0.1 is out of range: choose a number in \[0, 1\)"),
    ({"dropout": 1.0}, r"dropout=1.0 is out of range: choose a number in \[0, 1\)"),
    ({"dropout": math.nan}, r"dropout=nan is out of range"),
    ({"dnn_dropout": math.inf}, r"dnn_dropout=inf is out of range"),
    ({"dnn_hidden": (0,)}, r"each from 1 to 4096"),
    ({"dnn_hidden": (10**6,)}, r"each from 1 to 4096"),
    ({"dnn_hidden": (8,) * 9}, r"up to 8 layer widths"),
])
def test_model_hyperparameters(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        AutoIntConfig(**kwargs)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"lr": math.nan}, r"lr=nan is out of range: choose a learning rate in \(0, 1\]"),
    ({"lr": math.inf}, r"lr=inf is out of range"),
    ({"lr": 0.0}, r"lr=0.0 is out of range"),
    ({"lr": -1e-3}, r"lr=-0.001 is out of range"),
    ({"lr": 10.0}, r"lr=10.0 is out of range"),
    ({"batch_size": 10**9}, r"batch_size=1000000000 is out of range: choose an integer from 1 to 1048576"),
    ({"batch_size": 0}, r"batch_size=0 is out of range: choose an integer from 1 to"),
    ({"epochs": 10**6}, r"epochs=1000000 is out of range: choose an integer from 1 to 1000"),
    ({"patience": 0}, r"patience=0 is out of range: choose an integer from 1 to 1000"),
    ({"weight_decay": -1.0}, r"weight_decay=-1.0 is out of range: choose a number in \[0, 1\)"),
    ({"weight_decay": math.nan}, r"weight_decay=nan is out of range"),
    ({"seed": -1}, r"seed=-1 is out of range: choose an integer from 0 to"),
    ({"device": "tpu"}, r"device='tpu'"),
])
def test_training_hyperparameters(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig(**kwargs)


def test_cuda_without_gpu_says_use_cpu():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=r"no CUDA GPU; use --device cpu"):
        TrainConfig(device="cuda")


# ----------------------------------------------------------------------------- the CLI

@pytest.mark.parametrize("flags,pattern", [
    (["--layers", "100"], r"layers=100 is out of range: choose an integer from 0 to 12"),
    (["--embed-dim", "0"], r"embed_dim=0 is out of range: choose an integer from 1 to 256"),
    (["--lr", "nan"], r"lr=nan is out of range: choose a learning rate in \(0, 1\]"),
    (["--dropout", "-0.5"], r"dropout=-0.5 is out of range: choose a number in \[0, 1\)"),
    (["--batch-size", "1000000000"], r"batch_size=1000000000 is out of range: choose an integer from 1 to 1048576"),
    (["--heads", "64"], r"heads=64 is out of range: choose an integer from 1 to 16"),
    (["--dnn", "400,0"], r"each from 1 to 4096"),
    (["--epochs", "0"], r"epochs=0 is out of range"),
])
def test_train_cli_refuses_before_reading_data(capsys, tmp_path, flags, pattern):
    import re
    # The data folder does not exist: the settings must be refused first, with their range.
    err = cli_error(capsys, ["train", "--data-dir", str(tmp_path / "absent"), *flags, "--out", str(tmp_path / "r")])
    assert re.search(pattern, err), err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags", [["--lr", "fast"], ["--layers", "3.5"], ["--dnn", "400,abc"]])
def test_train_cli_unparseable_values(capsys, tmp_path, flags):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", *flags, "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid" in err or "comma-separated widths" in err


def _has_verb(name):
    return name in build_parser()._subparsers._group_actions[0].choices


@pytest.mark.parametrize("flags,pattern", [
    (["--user", "999", "--movie", "1"], r"unknown user 999: .* has users 1-60"),
    (["--user", "1", "--movie", "0"], r"unknown movie 0: .* has movie ids 1-40"),
    (["--user", "1", "--movie", "1", "--time", "1970-01-01"], r"request time 1970-01-01 00:00 is outside the data's "
                                                              r"range"),
    (["--user", "1", "--movie", "1", "--time", "soon"], r"give ISO 8601"),
    (["--user", "1", "--movie", "1", "--set", "Genre=Cartoons"], r"'Cartoons' not in the vocabulary; choose from"),
    (["--user", "1", "--movie", "1", "--set", "RequestTime=2999-01-01"], r"outside the (data's )?range"),
    (["--user", "1", "--movie", "1", "--set", "Age=7"], r"Age='7' is not a value the model knows; choose from"),
])
def test_explain_cli(capsys, tiny, tiny_run, flags, pattern):
    import re
    if not _has_verb("explain"):
        pytest.skip("`python -m autoint explain` is not there yet")
    err = cli_error(capsys, ["explain", str(tiny_run.path), "--data-dir", str(tiny), "--no-attributions", *flags])
    assert re.search(pattern, err), err


@pytest.mark.parametrize("flags,pattern", [
    (["--user", "0"], r"unknown user 0: .* has users 1-60"),
    (["--user", "1", "--top", "0"], r"--top 0: choose from 1 to"),
    (["--user", "1", "--time", "2030-01-01"], r"outside the data's range"),
])
def test_recommend_cli(capsys, tiny, tiny_run, flags, pattern):
    import re
    if not _has_verb("recommend"):
        pytest.skip("`python -m autoint recommend` is not there yet")
    err = cli_error(capsys, ["recommend", str(tiny_run.path), "--data-dir", str(tiny), *flags])
    assert re.search(pattern, err), err
