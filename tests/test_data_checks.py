"""describe's checks (autoint.datasets.checks) on hand-made files whose answers are known exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from autoint.cli import main
from autoint.datasets import load_dataset, read_spec
from autoint.datasets.checks import auc, check_data


def _write(folder, rows: list[str], fields: str, label: str = "clicked", min_count: int = 1):
    """data.csv (a header, then `rows`) and spec.toml beside it; returns the spec's path."""
    folder.mkdir(exist_ok=True)
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    spec = folder / "spec.toml"
    spec.write_text(f'name = "t"\nfiles = ["data.csv"]\nlabel = "{label}"\nmin_count = {min_count}\n{fields}')
    return spec


def _checks(spec_path) -> dict:
    checks = check_data(load_dataset(spec=spec_path), spec=read_spec(spec_path))
    return {(c.code, c.field): c for c in checks}


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """1,000 rows, 30% clicks: `flag` copies the label as Y/N, `noise` and `amount` are random, `site` constant."""
    rng = np.random.default_rng(1)
    labels = (rng.random(1000) < 0.3).astype(int)
    rows = ["flag,noise,amount,site,clicked"] + [
        f"{'Y' if y else 'N'},{rng.choice(list('abcde'))},{rng.uniform(0, 50):.3f},web,{y}" for y in labels]
    fields = ('[[field]]\nnames = ["flag", "noise", "site"]\nkind = "categorical"\n'
              '[[field]]\nname = "amount"\nkind = "numeric"\n')
    return _write(tmp_path_factory.mktemp("leaky"), rows, fields)


def test_leaky_field_is_flagged(leaky):
    checks = _checks(leaky)
    leak = checks[("possible_leak", "flag")]
    assert leak.level == "warning" and leak.numbers["val_auc"] > 0.99 and leak.numbers["val_samples"] == 101
    assert "flag alone predicts the label on the validation split with AUC 1.0000" in leak.message
    assert ("possible_leak", "noise") not in checks and ("possible_leak", "amount") not in checks


def test_constant_field_is_flagged(leaky):
    checks = _checks(leaky)
    constant = checks[("constant_field", "site")]
    assert "site has the same value ('web') in every one of the 1,000 samples" in constant.message
    assert "spec.toml, line" in constant.message
    assert [c for c in checks if c[0] == "constant_field"] == [("constant_field", "site")]


def test_duplicate_share(tmp_path):
    """300 distinct rows, then 100 of them again: 100 of 400 samples repeat an earlier one (labels aside)."""
    rows = ["color,size,clicked"] + [f"{'red' if i % 2 else 'blue'},{i},{i % 3 == 0:d}" for i in range(300)]
    rows += [f"{'red' if i % 2 else 'blue'},{i},{i % 2}" for i in range(100)]
    spec = _write(tmp_path, rows, '[[field]]\nname = "color"\nkind = "categorical"\n'
                                  '[[field]]\nname = "size"\nkind = "numeric"\n')
    dup = _checks(spec)[("duplicate_rows", None)]
    assert dup.numbers == {"duplicates": 100, "samples": 400, "share": 0.25}
    assert "100 of the 400 samples (25.0%) repeat an earlier sample's fields" in dup.message


def test_class_balance(tmp_path):
    rows = ["city,clicked"] + [f"{'ab'[i % 2]},{int(i % 200 == 7)}" for i in range(1000)]
    spec = _write(tmp_path, rows, '[[field]]\nname = "city"\nkind = "categorical"\n')
    balance = _checks(spec)[("class_balance", None)]
    assert balance.numbers == {"positives": 5, "samples": 1000, "share": 0.005}
    assert "only 5 of the 1,000 samples (0.50%) are positive" in balance.message
    assert "spec.toml, line 3: label = 'clicked'" in balance.message


def test_unknown_share_under_min_count(tmp_path):
    """400 rows of "a", 500 values seen once, 100 empty; min_count 2: 600 of 1,000 fall to <unknown>, whatever
    the split (a value seen once is under 2 in any training split, "a" above it)."""
    values = ["a"] * 400 + [f"v{i}" for i in range(500)] + [""] * 100
    rows = ["shop,clicked"] + [f"{v},{i % 2}" for i, v in enumerate(values)]
    spec = _write(tmp_path, rows, '[[field]]\nname = "shop"\nkind = "categorical"\nmin_count = 2\n')
    unknown = _checks(spec)[("unknown_share", "shop")]
    assert unknown.numbers == {"unknown": 600, "values": 1000, "share": 0.6, "missing": 100}
    assert ("60.0% of shop's values (600 of 1,000) fall to <unknown>: 100 missing, 500 seen fewer than 2 times in "
            "the training split or not at all there") in unknown.message
    assert "lower its min_count (" in unknown.message and "spec.toml, line 8), or leave it out" in unknown.message


def test_describe_adds_the_checks(leaky, capsys):
    assert main(["describe", "--spec", str(leaky)]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert {(c["code"], c["field"]) for c in report["checks"]} == {("constant_field", "site"),
                                                                  ("possible_leak", "flag")}
    assert report["samples"] == 1000 and "warning: flag alone predicts" in captured.err


def test_auc_by_ranks():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([1.0, 1.0, 1.0]), np.array([0, 1, 1])) == 0.5
    assert auc(np.array([0.2, 0.3]), np.array([1, 1])) is None
