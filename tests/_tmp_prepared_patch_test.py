import pytest
from test_app_prepared import *  # noqa
import test_app_prepared as T

@pytest.fixture(autouse=True)
def _patch(monkeypatch):
    import app.state as S
    from autoint.datasets import builtin_spec
    monkeypatch.setattr(S, "builtin_spec", builtin_spec, raising=False)

def test_compare_patched(env, monkeypatch):
    T.test_compare_reads_the_runs_metrics_without_hashing_their_vocabularies_on_each_rerun(env, monkeypatch)

def test_whatif_patched(env, monkeypatch):
    T.test_explore_and_what_if_read_the_sample_from_the_copy_never_the_whole_data(env, monkeypatch)
