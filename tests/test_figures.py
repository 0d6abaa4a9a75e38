"""The figure module: shapes are checked, scales are shared or centred, exports carry the numbers."""
import csv
import io

import numpy as np
import pytest

from autoint import figures
from autoint.figures import FigureError

LABELS = ["Gender=M", "Age=18-24", "Genre=Action|Thriller"]


def attention(layers=2, heads=3, fields=3, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(layers, heads, fields, fields))
    return np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)


def test_attention_heatmap_shows_values_labels_and_axis_titles():
    matrix = attention()[0, 0]
    fig = figures.attention_heatmap(matrix, LABELS, title="Layer 1, head 1")
    (trace,) = fig.data
    np.testing.assert_allclose(np.asarray(trace.z), matrix)
    assert list(trace.y) == LABELS and list(trace.x) == ["Gender", "Age", "Genre"]
    assert "%{z:.2f}" in trace.texttemplate  # the numbers are written in the cells
    assert "%{y}" in trace.hovertemplate and "%{x}" in trace.hovertemplate
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert fig.layout.yaxis.autorange == "reversed"  # first field on top, as in a matrix


def test_grid_has_one_trace_per_head_and_one_shared_colour_scale():
    weights = attention(layers=2, heads=3)
    fig = figures.attention_grid(weights, LABELS)
    assert len(fig.data) == 6
    for index, trace in enumerate(fig.data):
        np.testing.assert_allclose(np.asarray(trace.z), weights[index // 3, index % 3])
        assert trace.coloraxis == "coloraxis"
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == pytest.approx(weights.max())
    assert [a.text for a in fig.layout.annotations][:2] == ["layer 1, head 1", "layer 1, head 2"]


def test_before_after_shares_one_colour_scale_and_writes_row_labels_once():
    weights = attention(layers=1, heads=2)
    before, after = weights[0, 0], weights[0, 1] * 1.5
    labels = figures.transition_labels(LABELS, ["Gender=F", *LABELS[1:]])
    fig = figures.attention_before_after(before, after, labels)
    assert len(fig.data) == 2
    for trace, matrix in zip(fig.data, (before, after)):
        np.testing.assert_allclose(np.asarray(trace.z), matrix)
        assert trace.coloraxis == "coloraxis" and list(trace.y) == labels and "%{z:.2f}" in trace.texttemplate
    assert labels[0] == "Gender=M → F"
    assert fig.layout.coloraxis.cmax == pytest.approx(max(before.max(), after.max()))
    assert fig.layout.yaxis.showticklabels and not fig.layout.yaxis2.showticklabels
    assert [a.text for a in fig.layout.annotations] == ["Before", "After"]
    with pytest.raises(FigureError, match="after must be square"):
        figures.attention_before_after(before, np.ones((3, 2)), labels)
    with pytest.raises(FigureError, match="2 labels"):
        figures.attention_before_after(before, after, labels[:2])


def test_difference_heatmap_is_centred_on_zero_and_symmetric():
    difference = np.array([[0.3, -0.1, 0.0], [0.0, 0.05, -0.2], [0.1, 0.0, 0.0]])
    (trace,) = figures.difference_heatmap(difference, LABELS).data
    assert trace.zmid == 0 and trace.zmin == pytest.approx(-0.3) and trace.zmax == pytest.approx(0.3)
    (unchanged,) = figures.difference_heatmap(np.zeros((3, 3)), LABELS).data
    assert unchanged.zmax == figures.SMALLEST_CHANGE_SCALE  # no change reads as white, not as noise


@pytest.mark.parametrize("call, message", [
    (lambda: figures.attention_heatmap(np.ones((3, 4)), LABELS), "square"),
    (lambda: figures.attention_heatmap(np.ones((2, 2)), LABELS), "3 labels"),
    (lambda: figures.attention_grid(np.ones((3, 3)), LABELS), "4 dimensions"),
    (lambda: figures.attention_grid(np.ones((0, 2, 3, 3)), LABELS), "no layers"),
    (lambda: figures.attribution_bars({"ig": [1.0, 2.0]}, LABELS), "attribution vector"),
    (lambda: figures.attribution_bars({}, LABELS), "empty"),
    (lambda: figures.matrix_heatmap(np.full((2, 2), np.nan), ["a", "b"], ["c", "d"], title="t"), "NaN"),
    (lambda: figures.correlation_figure(np.ones((2, 3, 3)), LABELS[:2], count=1), "labels"),
    (lambda: figures.training_curves({"run": [{"epoch": 1}]}), "lacks"),
    (lambda: figures.plotly_config("gif"), "png or svg"),
])
def test_shape_and_argument_errors_name_the_problem(call, message):
    with pytest.raises(FigureError, match=message):
        call()


def test_attribution_bars_one_trace_per_method_with_readable_names():
    values = {"integrated_gradients": [0.5, -0.2, 0.1], "feature_ablation": [0.4, 0.0, -0.3]}
    fig = figures.attribution_bars(values, LABELS, method_names={"integrated_gradients": "Integrated Gradients"})
    assert [t.name for t in fig.data] == ["Integrated Gradients", "feature_ablation"]
    np.testing.assert_allclose(fig.data[1].x, values["feature_ablation"])
    assert list(fig.data[0].y) == LABELS


def test_correlation_figure_puts_the_overall_mean_first():
    per_layer = attention(layers=2, heads=1)[:, 0]
    fig = figures.correlation_figure(per_layer, ["Gender", "Age", "Genre"], count=1234, description="label=1")
    np.testing.assert_allclose(np.asarray(fig.data[0].z), per_layer.mean(0))
    np.testing.assert_allclose(np.asarray(fig.data[2].z), per_layer[1])
    assert "1,234 samples" in fig.layout.title.text and "label=1" in fig.layout.title.text


def test_training_curves_overlay_runs_and_running_loss():
    history = [{"epoch": 1, "train_loss": 0.6, "val_auc": 0.7, "val_logloss": 0.55},
               {"epoch": 2, "train_loss": 0.5, "val_auc": 0.75, "val_logloss": 0.5}]
    fig = figures.training_curves({"a": history, "b": history[:1]},
                                  steps={"a": [{"epoch": 3, "step": 5, "steps": 10, "loss": 0.45}]})
    names = [t.name for t in fig.data]
    assert "a: val AUC" in names and "b: train loss" in names and "a: running loss" in names
    running = fig.data[names.index("a: running loss")]
    assert list(running.x) == [2.5] and list(running.y) == [0.45]


def test_transition_labels_show_what_changed():
    assert figures.transition_labels(["Gender=M", "Age=18-24"], ["Gender=F", "Age=18-24"]) == \
        ["Gender=M → F", "Age=18-24"]


def test_csv_export_holds_every_cell_and_html_is_standalone():
    weights = attention(layers=1, heads=2)
    fig = figures.attention_grid(weights, LABELS)
    rows = list(csv.DictReader(io.StringIO(figures.figure_csv(fig))))
    assert len(rows) == 2 * 3 * 3
    first = rows[0]
    assert first["trace"] == "layer 1, head 1" and first["y"] == LABELS[0] and first["x"] == "Gender"
    assert float(first["value"]) == pytest.approx(weights[0, 0, 0, 0], rel=1e-5)
    bars = list(csv.DictReader(io.StringIO(figures.figure_csv(figures.attribution_bars({"ig": [1, 2, 3]}, LABELS)))))
    assert [(r["y"], r["value"]) for r in bars] == list(zip(LABELS, ["1", "2", "3"]))
    html = figures.figure_html(fig)
    assert "<html>" in html and html.rstrip().endswith("</html>") and "layer 1, head 2" in html and "plotly" in html.lower()


def test_plotly_config_offers_image_export_without_the_logo():
    config = figures.plotly_config("svg", filename="attention")
    assert config["toImageButtonOptions"]["format"] == "svg" and config["displaylogo"] is False
    assert "toImage" not in config.get("modeBarButtonsToRemove", [])


def test_figures_module_does_not_import_streamlit():
    import subprocess
    import sys
    code = "import sys, autoint.figures, autoint.jobs, autoint.steps; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
