"""Adding a data set in a real browser: a generated CSV (2,000 rows with planted pairs) uploaded through the file
input, one kind edited in the spec table, saved; a tiny model trained on it from the Train page (1 epoch); Explore
opened on it. The server runs in a temporary working directory, so the data set lands in a temporary data/.

Screenshots in test-output/screenshots/: add-data-edit.png (the preview, the edited spec table and its TOML),
add-data-saved.png (the page after saving) and add-data.png (Explore on the new data set).
"""
import ast
import os

import pytest

from autoint.workspace import adding
from conftest import REPO
from test_browser import CHROMIUM, SHOTS, SHOWN, _streamlit, at_page, browser, go, page, settle, shoot  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
ROWS = 2000


def table_widths() -> dict:
    """The spec table's fixed column widths, as app/add_data.py sets them (a cell is found by its position)."""
    tree = ast.parse((REPO / "app" / "add_data.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "TABLE_WIDTHS")
    return ast.literal_eval(node.value)


@pytest.fixture(scope="class")
def adding_server(tmp_path_factory):
    """The app in an empty working directory; its default data set a small spec data set (no catalogue: nothing
    trains by itself), no runs yet. Yields (url, working directory, the CSV to upload)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from autoint.datasets.infer import infer_spec, write_spec
    from autoint.datasets.synth import generate_clicks
    base = generate_clicks(tmp_path_factory.mktemp("adding-base") / "base", rows=300, seed=1)
    write_spec(infer_spec(base / "impressions.csv").to_toml(spec_dir=base), base / "base.toml")
    upload = generate_clicks(tmp_path_factory.mktemp("adding-upload") / "shop", rows=ROWS, seed=7) / "impressions.csv"
    work = tmp_path_factory.mktemp("adding-work")
    env = {**os.environ, "AUTOINT_DATA_DIR": str(base), "AUTOINT_RUNS_DIR": str(work / "runs"),
           "AUTOINT_CACHE_DIR": str(tmp_path_factory.mktemp("adding-cache")), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    env.pop("AUTOINT_UPLOAD_LIMIT_MB", None)
    for url in _streamlit(tmp_path_factory, env, "adding-log", cwd=work):
        yield url, work, upload


def edit_cell(tab, table, row: int, column: str, option: str) -> None:
    """Pick `option` in a select cell of the data editor: double-click the cell (row 0 is the first data row) and
    choose it in the editor that opens."""
    widths = table_widths()
    names = list(adding.TABLE_COLUMNS)
    x = sum(widths[n] for n in names[:names.index(column)]) + widths[column] / 2
    y = 35 * (row + 1) + 35 / 2  # the header row, then 35 px a row
    table.dblclick(position={"x": x, "y": y})
    tab.get_by_test_id("portal").get_by_role("option", name=option, exact=True).click()  # the select's menu


def shows(tab, text: str, timeout: float = 240_000) -> None:
    """Wait until the main area's text holds `text` (a page switch draws it after the first settle may pass)."""
    tab.wait_for_function("text => document.querySelector('[data-testid=\"stMain\"]').innerText.includes(text)",
                          arg=text, timeout=timeout)


class TestAddADataSet:
    def test_upload_edit_save_train_and_explore(self, page, adding_server):  # noqa: F811
        page.set_default_timeout(240_000)
        try:
            flow(page, *adding_server)
        except Exception:
            page.screenshot(path=str(SHOTS / "add-data-failed.png"))  # what the page showed when it failed
            raise


def flow(page, server, work, upload) -> None:  # noqa: F811
    """Upload, edit, save, train, explore. The window is tall enough to show the spec table unscrolled: the grid
    places a click by where it was drawn, and a scroll of the page before the click moves it off the cell."""
    page.set_viewport_size({"width": 1400, "height": 1800})
    page.goto(f"{server}/add-data")
    shows(page, "up to 200 MB")
    settle(page, 0)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(upload))
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stDataFrame\"]').length >= 2")
    settle(page, 0, 2)
    main = page.locator('[data-testid="stMain"]')
    assert "No warnings" in main.inner_text() or page.locator('[data-testid="stAlertContentWarning"]').count()
    assert [p.name for p in (work / "data").glob(".staging-impressions-*")]

    table = page.locator('[data-testid="stDataFrame"]').nth(1)  # the preview first, then the spec table
    edit_cell(page, table, 4, "kind", "categorical")  # price: numeric -> categorical
    page.wait_for_timeout(500)
    settle(page, 0, 2)
    page.get_by_text("The spec as TOML").click()
    shows(page, "set by hand (inferred numeric", timeout=60_000)
    shoot(page, "add-data-edit")
    page.get_by_role("textbox", name="Name (its folder: data/NAME/)").fill("shop")
    page.keyboard.press("Enter")
    shows(page, 'name = "shop"')
    settle(page, 0, 2)
    page.get_by_role("button", name="Save data set").click()
    shows(page, "Saved shop")
    settle(page, 0)
    spec = (work / "data" / "shop" / "spec.toml").read_text()
    assert 'name = "price"\nkind = "categorical"' in spec and not list((work / "data").glob(".staging-*"))
    switcher = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text="Data set")
    assert "shop (spec) · shop" in switcher.evaluate(f"e => {SHOWN}")  # the sidebar's data set is the new one
    shoot(page, "add-data-saved")

    page.get_by_role("link", name="Train a model on shop").click()
    at_page(page, server, "train")
    shows(page, "on shop (spec) · shop")  # the form trains on the new data set
    settle(page, 0)
    page.get_by_label("Epochs").fill("1")
    page.get_by_role("button", name="Start training").click()
    shows(page, "Run for the other pages", timeout=300_000)
    settle(page, 0, 1)

    go(page, server, "Explore")
    at_page(page, server, "")
    shows(page, "Predicted CTR")
    settle(page, 3)
    page.wait_for_timeout(1000)
    settle(page, 3)
    text = main.inner_text()
    assert "Predicted CTR" in text and "Real label" in text
    shoot(page, "add-data")
