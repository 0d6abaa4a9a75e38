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


def weights(trace) -> np.ndarray:
    """The raw attention an attention trace carries (its z is the colour value log2(alpha * F))."""
    return np.asarray(trace.customdata)[..., 0]


def test_attention_heatmap_shows_values_labels_and_axis_titles():
    matrix = attention()[0, 0]
    fig = figures.attention_heatmap(matrix, LABELS, title="Layer 1, head 1")
    (trace,) = fig.data
    np.testing.assert_allclose(weights(trace), matrix)
    np.testing.assert_allclose(np.asarray(trace.customdata)[..., 1], matrix * 3)  # alpha * F
    np.testing.assert_allclose(np.asarray(trace.z), np.log2(np.maximum(matrix * 3, 1 / 3)))
    assert trace.texttemplate == "%{text}" and trace.text[0][1] == f"{matrix[0, 1]:.2f}"  # the weight, not the colour
    assert "%{y}" in trace.hovertemplate and "%{x}" in trace.hovertemplate
    assert "%{customdata[0]:.3f}" in trace.hovertemplate and "%{customdata[1]:.2f}× uniform" in trace.hovertemplate
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert fig.layout.yaxis.autorange == "reversed"  # first field on top, as in a matrix
    assert fig.layout.title.text == "Layer 1, head 1"


def test_uniform_attention_is_white_with_its_weights_in_the_cells():
    """The issue's case: a flat map is colour value 0 (r = 1) everywhere, on a pale range, and still says 0.14."""
    fields = 7
    labels = [f"f{i}=v" for i in range(fields)]
    flat = np.full((fields, fields), 1 / fields)
    fig = figures.attention_heatmap(flat, labels, entropy=1.0, uniform=True, title="Layer 1, head 1")
    (trace,) = fig.data
    np.testing.assert_allclose(np.asarray(trace.z), 0.0, atol=1e-12)  # log2(alpha * F) = log2(1)
    np.testing.assert_allclose(np.asarray(trace.customdata)[..., 1], 1.0)
    assert {cell for row in trace.text for cell in row} == {"0.14"}
    axis = fig.layout.coloraxis
    assert trace.coloraxis == "coloraxis" and axis.cmid == 0
    assert axis.cmax == pytest.approx(np.log2(figures.SMALLEST_RATIO))  # pale, not stretched to full contrast
    assert axis.cmin == -axis.cmax
    assert "×1 (uniform)" in axis.colorbar.ticktext
    assert axis.colorbar.tickvals[list(axis.colorbar.ticktext).index("×1 (uniform)")] == 0
    assert fig.layout.title.text == "Layer 1, head 1 · entropy 1.00 · ≈ uniform"


def test_near_uniform_attention_stays_pale_and_a_wider_map_sets_its_own_range():
    """The issue's 0.11-0.16 with F = 7 (x0.77-x1.12) is drawn on the smallest range, x1/1.5-x1.5: coloured, but
    not at full contrast; a map reaching x0.35 stretches the range to exactly x0.35 both ways."""
    fields = 7
    labels = [f"f{i}" for i in range(fields)]
    row = np.array([0.11, 0.16, 0.15, 0.15, 0.15, 0.14, 0.14])
    matrix = np.tile(row / row.sum(), (fields, 1))
    fig = figures.attention_heatmap(matrix, labels)
    assert fig.layout.coloraxis.cmax == pytest.approx(np.log2(1.5)) and fig.layout.coloraxis.cmin == -np.log2(1.5)
    np.testing.assert_allclose(np.asarray(fig.data[0].z)[0], np.log2(row / row.sum() * fields))
    assert -0.7 < np.asarray(fig.data[0].z).min() / np.log2(1.5) < -0.6  # 0.11 is ~2/3 of the way to full blue
    wide = np.tile(np.array([0.05, 0.35, 0.15, 0.15, 0.1, 0.1, 0.1]), (fields, 1))
    fig = figures.attention_heatmap(wide, labels)
    bound = abs(np.log2(0.05 * fields))
    assert fig.layout.coloraxis.cmax == pytest.approx(bound) and fig.layout.coloraxis.cmin == pytest.approx(-bound)
    # a peaked weight is symmetric with a vanishing one: the floor is x1/F, the most a weight can exceed is xF
    (trace,) = figures.attention_heatmap(np.eye(fields), labels).data
    assert np.asarray(trace.z).max() == pytest.approx(np.log2(fields))
    assert np.asarray(trace.z).min() == pytest.approx(-np.log2(fields))


def test_colour_bar_ticks_are_multiples_of_uniform():
    values, texts = figures._uniform_ticks(np.log2(4))
    assert texts == ["×1/4", "×0.5", "×1 (uniform)", "×2", "×4"]
    np.testing.assert_allclose(values, [-2, -1, 0, 1, 2])
    values, texts = figures._uniform_ticks(np.log2(1.5))
    assert texts == ["×0.67", "×0.8", "×1 (uniform)", "×1.2", "×1.5"]
    np.testing.assert_allclose(values, np.log2([2 / 3, 0.8, 1, 1.25, 1.5]))


def test_grid_has_one_trace_per_head_and_one_shared_colour_scale():
    weights_ = attention(layers=2, heads=3)
    fig = figures.attention_grid(weights_, LABELS)
    assert len(fig.data) == 6
    for index, trace in enumerate(fig.data):
        np.testing.assert_allclose(weights(trace), weights_[index // 3, index % 3])
        assert trace.coloraxis == "coloraxis"
    colours = np.log2(np.maximum(weights_ * 3, 1 / 3))  # every head's colour values, floored at x1/F
    bound = max(np.abs(colours).max(), np.log2(figures.SMALLEST_RATIO))
    assert fig.layout.coloraxis.cmax == pytest.approx(bound) and fig.layout.coloraxis.cmin == pytest.approx(-bound)
    assert [a.text for a in fig.layout.annotations][:2] == ["layer 1, head 1", "layer 1, head 2"]


def test_grid_titles_carry_entropy_and_the_uniform_flag():
    weights_ = attention(layers=2, heads=2)
    entropy = np.array([[0.98, 0.5], [0.1234, 1.0]])
    uniform = np.array([[True, False], [False, False]])
    fig = figures.attention_grid(weights_, LABELS, entropy=entropy, uniform=uniform)
    assert [a.text for a in fig.layout.annotations] == [
        "layer 1, head 1 · entropy 0.98 · ≈ uniform", "layer 1, head 2 · entropy 0.50",
        "layer 2, head 1 · entropy 0.12", "layer 2, head 2 · entropy 1.00"]
    assert [t.name for t in fig.data] == ["layer 1, head 1", "layer 1, head 2", "layer 2, head 1", "layer 2, head 2"]
    only_flags = figures.attention_grid(weights_, LABELS, uniform=uniform)
    assert [a.text for a in only_flags.layout.annotations][:2] == ["layer 1, head 1 · ≈ uniform", "layer 1, head 2"]
    with pytest.raises(FigureError, match=r"entropy must have one value per layer and head, shape \(2, 2\)"):
        figures.attention_grid(weights_, LABELS, entropy=entropy[0])
    with pytest.raises(FigureError, match="uniform must be a bool mask"):
        figures.attention_grid(weights_, LABELS, uniform=entropy)
    with pytest.raises(FigureError, match=r"uniform must have one flag per layer and head"):
        figures.attention_grid(weights_, LABELS, uniform=uniform[:1])


def test_before_after_shares_one_colour_scale_and_writes_row_labels_once():
    weights_ = attention(layers=1, heads=2)
    before, after = weights_[0, 0], weights_[0, 1]
    labels = figures.transition_labels(LABELS, ["Gender=F", *LABELS[1:]])
    fig = figures.attention_before_after(before, after, labels, entropy=[0.9, 0.8], uniform=np.array([False, True]))
    assert len(fig.data) == 2
    for trace, matrix in zip(fig.data, (before, after)):
        np.testing.assert_allclose(weights(trace), matrix)
        assert trace.coloraxis == "coloraxis" and list(trace.y) == labels and trace.texttemplate == "%{text}"
    assert labels[0] == "Gender=M → F"
    bound = np.abs(np.log2(np.maximum(np.stack([before, after]) * 3, 1 / 3))).max()
    assert fig.layout.coloraxis.cmax == pytest.approx(max(bound, np.log2(figures.SMALLEST_RATIO)))
    assert fig.layout.yaxis.showticklabels and not fig.layout.yaxis2.showticklabels
    assert [a.text for a in fig.layout.annotations] == ["Before · entropy 0.90",
                                                        "After · entropy 0.80 · ≈ uniform"]
    assert [a.text for a in figures.attention_before_after(before, after, labels).layout.annotations] == \
        ["Before", "After"]
    with pytest.raises(FigureError, match="after must be square"):
        figures.attention_before_after(before, np.ones((3, 2)), labels)
    with pytest.raises(FigureError, match="2 labels"):
        figures.attention_before_after(before, after, labels[:2])
    with pytest.raises(FigureError, match="after holds negative values"):
        figures.attention_before_after(before, after - before, labels)


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
    fig = figures.correlation_figure(per_layer, ["Gender", "Age", "Genre"], count=1234, description="label=1",
                                     entropy=[0.9, 0.95, 0.85], uniform=np.array([False, True, False]))
    np.testing.assert_allclose(weights(fig.data[0]), per_layer.mean(0))
    np.testing.assert_allclose(weights(fig.data[2]), per_layer[1])
    assert all(trace.coloraxis == "coloraxis" for trace in fig.data) and fig.layout.coloraxis.cmid == 0
    assert "1,234 samples" in fig.layout.title.text and "label=1" in fig.layout.title.text
    assert [a.text for a in fig.layout.annotations] == ["all layers · entropy 0.90",
                                                        "layer 1 · entropy 0.95 · ≈ uniform", "layer 2 · entropy 0.85"]


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


def interaction(fields=3, seed=1):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(scale=0.2, size=(fields, fields))
    return (matrix + matrix.T) / 2


def test_signed_interaction_heatmap_has_a_blank_diagonal_and_a_symmetric_scale():
    matrix = interaction()
    matrix[0, 1] = matrix[1, 0] = -0.5  # the largest |value|, negative
    fig = figures.interaction_heatmap(matrix, LABELS, signed=True, main=[0.1, -0.2, 0.3])
    (trace,) = fig.data
    z = np.asarray(trace.z, dtype=float)
    assert np.isnan(np.diag(z)).all()
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(z[off], matrix[off])
    axis = fig.layout.coloraxis
    assert axis.cmid == 0 and axis.cmin == pytest.approx(-0.5) and axis.cmax == pytest.approx(0.5)
    assert trace.text[0][0] == "" and trace.text[0][1] == "-0.50" and trace.text[2][0] == f"{matrix[2, 0]:+.2f}"
    assert trace.customdata[0][1] == "Gender=M × Age=18-24: -0.500 logit"
    assert trace.customdata[1][1] == "Age=18-24: the diagonal is not an interaction<br>main effect -0.200 logit"
    assert list(trace.y) == LABELS and list(trace.x) == ["Gender", "Age", "Genre"]  # as the attention heatmaps
    assert fig.layout.yaxis.autorange == "reversed"
    no_main = figures.interaction_heatmap(matrix, LABELS, signed=True).data[0]
    assert no_main.customdata[1][1] == "Age=18-24: the diagonal is not an interaction"
    matrix[0, 2] = matrix[2, 0] = -0.004  # rounds to zero: no minus sign in the cell, the hover keeps it
    tiny = figures.interaction_heatmap(matrix, LABELS, signed=True).data[0]
    assert tiny.text[0][2] == "+0.00" and tiny.customdata[0][2].endswith("-0.004 logit")


def test_unsigned_interaction_heatmap_runs_from_zero():
    matrix = np.abs(interaction())
    np.fill_diagonal(matrix, np.nan)  # a diagonal the caller left undefined is fine
    fig = figures.interaction_heatmap(matrix, LABELS, signed=False)
    axis = fig.layout.coloraxis
    assert axis.cmin == 0 and axis.cmax == pytest.approx(np.nanmax(matrix)) and axis.cmid is None
    assert fig.data[0].customdata[0][2] == \
        f"Gender=M × Genre=Action|Thriller: mean |interaction| {matrix[0, 2]:.3f} logit"
    assert fig.data[0].text[0][2] == f"{matrix[0, 2]:.2f}"
    zero = figures.interaction_heatmap(np.zeros((3, 3)), LABELS, signed=False)
    assert zero.layout.coloraxis.cmax == figures.SMALLEST_INTERACTION_SCALE


@pytest.mark.parametrize("call, message", [
    (lambda: figures.interaction_heatmap(np.ones((3, 2)), LABELS, signed=True), "matrix must be a square"),
    (lambda: figures.interaction_heatmap(np.ones((2, 2)), LABELS, signed=True), "labels has 3 labels"),
    (lambda: figures.interaction_heatmap(np.triu(np.ones((3, 3))), LABELS, signed=True), "matrix must be symmetric"),
    (lambda: figures.interaction_heatmap(-np.ones((3, 3)), LABELS, signed=False), "pass signed=True"),
    (lambda: figures.interaction_heatmap(np.full((3, 3), np.nan), LABELS, signed=True), "NaN or infinite values off"),
    (lambda: figures.interaction_heatmap(np.ones((3, 3)), LABELS, signed=True, main=[1, 2]), "main must hold one"),
    (lambda: figures.attention_interaction_side_by_side(np.ones((3, 3)) / 3, np.ones((2, 2)), LABELS, signed=True),
     r"interaction has shape \(2, 2\) but attention has \(3, 3\)"),
    (lambda: figures.attention_interaction_side_by_side(np.ones((3, 4)), np.ones((3, 3)), LABELS, signed=True),
     "attention must be square"),
    (lambda: figures.interaction_change_heatmap(np.ones((3, 3)), np.ones((4, 4)), LABELS), "after has shape"),
    (lambda: figures.agreement_scatter([0.1, 0.2], [0.3], ["a", "b"], rho=0.5), "interaction_pairs has 1"),
    (lambda: figures.agreement_scatter([0.1, 0.2], [0.3, 0.4], ["a"], rho=0.5), "pair_labels has 1 labels"),
    (lambda: figures.agreement_scatter([[0.1]], [0.3], ["a"], rho=0.5), "attention_pairs must have 1 dimensions"),
    (lambda: figures.agreement_bars({}), "rho is empty"),
    (lambda: figures.agreement_bars({"overall": 0.2, "layer 1": 1.5}), r"rho\['layer 1'\] is outside"),
])
def test_interaction_figures_name_the_bad_argument(call, message):
    with pytest.raises(FigureError, match=message):
        call()


def test_side_by_side_shares_order_and_labels_with_two_colour_bars_apart():
    weights_ = attention(layers=1, heads=1)[0, 0]
    matrix = interaction()
    fig = figures.attention_interaction_side_by_side(weights_, matrix, LABELS, signed=True)
    left, right = fig.data
    assert list(left.y) == list(right.y) == LABELS and list(left.x) == list(right.x) == ["Gender", "Age", "Genre"]
    assert (left.coloraxis, right.coloraxis) == ("coloraxis", "coloraxis2")
    np.testing.assert_allclose(weights(left), weights_)
    assert fig.layout.coloraxis.cmid == 0 and fig.layout.coloraxis2.cmid == 0  # uniform-relative and signed
    assert fig.layout.coloraxis2.cmax == pytest.approx(np.abs(matrix[~np.eye(3, dtype=bool)]).max())
    assert fig.layout.yaxis.showticklabels and not fig.layout.yaxis2.showticklabels  # row labels written once
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]
    top, bottom = fig.layout.coloraxis.colorbar, fig.layout.coloraxis2.colorbar
    assert top.y - top.len >= bottom.y + bottom.len  # stacked, not overlapping
    unsigned = figures.attention_interaction_side_by_side(weights_, np.abs(matrix), LABELS, signed=False)
    assert unsigned.layout.coloraxis2.cmin == 0
    assert unsigned.layout.coloraxis2.colorscale != fig.layout.coloraxis2.colorscale  # sequential, not diverging


def test_interaction_change_is_after_minus_before_with_a_blank_diagonal():
    before, after = interaction(seed=1), interaction(seed=2)
    fig = figures.interaction_change_heatmap(before, after, LABELS)
    z = np.asarray(fig.data[0].z, dtype=float)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(z[off], (after - before)[off])
    assert np.isnan(np.diag(z)).all()
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax and fig.layout.coloraxis.cmid == 0
    assert fig.data[0].customdata[0][1].endswith("logit (after − before)")
    same = figures.interaction_change_heatmap(before, before, LABELS)
    assert same.layout.coloraxis.cmax == figures.SMALLEST_CHANGE_SCALE


def test_difference_heatmap_names_its_value():
    fig = figures.difference_heatmap(np.zeros((3, 3)), LABELS, value_name="change in interaction",
                                     axes=("field i", "field j"))
    assert "change in interaction:" in fig.data[0].hovertemplate and "query" not in fig.data[0].hovertemplate
    assert fig.layout.yaxis.title.text == "field i" and fig.layout.xaxis.title.text == "field j"
    assert "change in attention:" in figures.difference_heatmap(np.zeros((3, 3)), LABELS).data[0].hovertemplate


def test_agreement_scatter_labels_every_pair_and_states_rho():
    x, y = np.array([0.14, 0.15, 0.13]), np.array([0.02, 0.30, 0.05])
    labels = ["Gender × Age", "Gender × Genre", "Age × Genre"]
    fig = figures.agreement_scatter(x, y, labels, rho=-0.1666, uniform_weight=1 / 7)
    (trace,) = fig.data
    assert list(trace.text) == labels and trace.mode == "markers+text"
    np.testing.assert_allclose(trace.x, x)
    np.testing.assert_allclose(trace.y, y)
    texts = [a.text for a in fig.layout.annotations]
    assert "Spearman ρ = -0.17 over 3 pairs" in texts and "uniform 1/F" in texts
    assert fig.layout.shapes[0].x0 == pytest.approx(1 / 7)
    undefined = figures.agreement_scatter(x, y, labels, rho=float("nan"))
    assert "Spearman ρ undefined over 3 pairs (one side is constant)" in [a.text for a in undefined.layout.annotations]


def test_agreement_scatter_of_many_pairs_labels_the_strongest_that_fit_and_names_every_point():
    """39 fields: 741 pairs. At most MAX_SCATTER_LABELS labels are drawn, the strongest by interaction and by
    attention first, none over another; every point keeps its name for hover and the CSV, and the figure says so."""
    rng = np.random.default_rng(0)
    x, y = rng.random(741) ** 4, rng.random(741) ** 4  # most points crowd one corner, as attention and k-SII do
    labels = [f"pair {i}" for i in range(741)]
    fig = figures.agreement_scatter(x, y, labels, rho=0.1)
    (trace,) = fig.data
    assert list(trace.text) == labels and "%{text}" in trace.hovertemplate
    drawn = [i for i, t in enumerate(trace.texttemplate) if t == "%{text}"]
    assert 2 <= len(drawn) <= figures.MAX_SCATTER_LABELS and all(t in ("%{text}", "") for t in trace.texttemplate)
    assert int(np.argmax(y)) in drawn and int(np.argmax(x)) in drawn
    assert "labels: the strongest pairs that fit; hover names every pair" in " ".join(a.text for a in fig.layout.annotations)
    rows = list(csv.DictReader(io.StringIO(figures.figure_csv(fig))))
    assert [r["y"] for r in rows] == labels
    # the drawn ones are exactly those the placement keeps (each overlapping none placed before it)
    positions = figures._label_positions(x, y, labels, order=figures._strongest_first(x, y), most=figures.MAX_SCATTER_LABELS, width_px=450)
    assert [i for i, p in enumerate(positions) if p is not None] == drawn
    few = figures.agreement_scatter(x[:5], y[:5], labels[:5], rho=0.1)
    assert list(few.data[0].texttemplate) == ["%{text}"] * 5
    assert "labels:" not in " ".join(a.text for a in few.layout.annotations)


def test_strongest_first_alternates_the_axes_and_lists_every_point_once():
    x, y = np.array([0.9, 0.1, 0.5, 0.2]), np.array([0.0, 0.8, 0.7, 0.1])
    assert figures._strongest_first(x, y) == [1, 0, 2, 3]


def test_scatter_labels_of_points_on_top_of_each_other_go_different_ways():
    positions = figures._label_positions(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0]),
                                         ["Zipcode × Genre", "Gender × Age", "Age × Genre"])
    assert positions[0] != positions[1]
    assert positions[2] == "top center"  # alone, the first choice


def test_agreement_bars_fix_the_axis_colour_by_sign_and_keep_nan_visible():
    rho = {"overall": 0.3, "layer 1": -0.5, "layer 1 head 1": float("nan"), "layer 1 head 2": 0.0}
    fig = figures.agreement_bars(rho)
    (bars,) = fig.data
    assert list(bars.y) == list(rho) and list(bars.x) == [0.3, -0.5, None, 0.0]  # a gap, not a 0
    assert list(bars.marker.color) == [figures.POSITIVE, figures.NEGATIVE, figures.POSITIVE, figures.POSITIVE]
    assert list(fig.layout.xaxis.range) == [-1, 1]
    assert fig.layout.shapes[0].x0 == 0 and fig.layout.shapes[0].x1 == 0  # the line at 0
    (gap,) = fig.layout.annotations
    assert gap.text == "undefined (constant)" and gap.y == "layer 1 head 1"
    assert list(bars.text) == ["+0.30", "-0.50", "", "+0.00"]


def test_csv_of_the_new_figures_holds_values_labels_and_blanks():
    weights_ = attention(layers=1, heads=1)[0, 0]
    matrix = interaction()
    side = list(csv.DictReader(io.StringIO(figures.figure_csv(
        figures.attention_interaction_side_by_side(weights_, matrix, LABELS, signed=True)))))
    assert len(side) == 2 * 9
    by_trace = {(r["trace"], r["y"], r["x"]): r["value"] for r in side}
    assert float(by_trace[("attention", LABELS[0], "Age")]) == pytest.approx(weights_[0, 1], rel=1e-5)  # alpha itself
    assert float(by_trace[("interaction", LABELS[2], "Gender")]) == pytest.approx(matrix[2, 0], rel=1e-5)
    assert by_trace[("interaction", LABELS[1], "Age")] == ""  # the diagonal has no value
    scatter = list(csv.DictReader(io.StringIO(figures.figure_csv(
        figures.agreement_scatter([0.1, 0.2], [0.3, 0.4], ["Gender × Age", "Age × Genre"], rho=1.0)))))
    assert [(r["y"], r["x"], r["value"]) for r in scatter] == [("Gender × Age", "0.1", "0.3"),
                                                                ("Age × Genre", "0.2", "0.4")]
    bars = list(csv.DictReader(io.StringIO(figures.figure_csv(figures.agreement_bars({"overall": 0.25,
                                                                                      "layer 1": float("nan")})))))
    assert [(r["y"], r["value"]) for r in bars] == [("overall", "0.25"), ("layer 1", "")]
    change = list(csv.DictReader(io.StringIO(figures.figure_csv(
        figures.interaction_change_heatmap(matrix, 2 * matrix, LABELS)))))
    assert float(change[1]["value"]) == pytest.approx(matrix[0, 1], rel=1e-5) and change[0]["value"] == ""
    single = list(csv.DictReader(io.StringIO(figures.figure_csv(figures.interaction_heatmap(matrix, LABELS,
                                                                                            signed=True)))))
    assert len(single) == 9 and single[0]["value"] == ""


def test_plotly_config_offers_image_export_without_the_logo():
    config = figures.plotly_config("svg", filename="attention")
    assert config["toImageButtonOptions"]["format"] == "svg" and config["displaylogo"] is False
    assert "toImage" not in config.get("modeBarButtonsToRemove", [])


def test_figures_module_does_not_import_streamlit():
    import subprocess
    import sys
    code = "import sys, autoint.figures, autoint.training.jobs, autoint.explain.steps; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_many_fields_keep_every_label_in_compact_rows():
    """Criteo's 39 fields: every field keeps its tick label (small font, upright on x) and rows are compact, so a
    head's map is readable at one screen's height; ML-1M's 7 fields keep the roomy layout."""
    import numpy as np
    from autoint.figures import CELL_PX, MANY_PX, attention_grid, attention_heatmap
    for fields in (7, 39):
        labels = [f"C{i}=v{i}" for i in range(fields)]
        weights = np.full((fields, fields), 1.0 / fields)
        fig = attention_heatmap(weights, labels)
        assert fig.layout.height == max(320, 160 + (CELL_PX if fields == 7 else MANY_PX) * fields)
        grid = attention_grid(np.broadcast_to(weights, (2, 2, fields, fields)), labels)
        for axis in (fig.layout.xaxis, fig.layout.yaxis, grid.layout.xaxis3, grid.layout.yaxis):
            if fields == 39:
                assert axis.dtick == 1 and axis.tickfont.size == 9
            else:
                assert axis.dtick is None and axis.tickfont.size is None
        assert (fig.layout.xaxis.tickangle == -90) == (fields == 39)


def test_attention_heatmap_writes_weights_in_cells_only_while_they_can_be_read():
    """Up to MANY_FIELDS fields each cell shows its weight; Criteo's 39 (1,521 cells) leave the numbers to the
    hover, which gives every weight either way."""
    for fields, written in ((figures.MANY_FIELDS, True), (39, False)):
        matrix = np.full((fields, fields), 1 / fields)
        (trace,) = figures.attention_heatmap(matrix, [f"f{i}" for i in range(fields)]).data
        assert (trace.texttemplate == "%{text}") is written and (trace.text is not None) is written
        assert "weight α = %{customdata[0]:.3f}" in trace.hovertemplate
        np.testing.assert_allclose(np.asarray(trace.customdata)[..., 0], matrix)


def test_correlation_figure_writes_weights_only_where_they_can_be_read():
    """Fig. 7(b): numbers in the cells for up to 3 layers and MANY_FIELDS fields, else the hover alone (39 fields:
    4 x 1,521 unreadable numbers)."""
    for layers, fields, written in ((3, 7, True), (3, figures.MANY_FIELDS, True), (3, 39, False), (4, 7, False)):
        per_layer = np.full((layers, fields, fields), 1 / fields)
        fig = figures.correlation_figure(per_layer, [f"f{i}" for i in range(fields)], count=10)
        assert figures.correlation_cells_written(layers, fields) is written
        assert all((t.texttemplate == "%{text}") is written for t in fig.data) and len(fig.data) == layers + 1
        assert all("weight α = %{customdata[0]:.3f}" in t.hovertemplate for t in fig.data)


def test_maps_too_dense_for_their_x_labels_leave_them_to_the_hover_and_say_so():
    """39 fields in 2 or 4 maps side by side (78-156 columns of cells) would overlap their x labels: they are left
    out and the x titles say the hover names the field; one map of 39, or a grid of 7, keeps them."""
    F = 39
    labels = [f"C{i}=v" for i in range(F)]
    attention = np.full((3, 2, F, F), 1 / F)

    def xaxes(fig):
        return [fig.layout[k] for k in fig.layout if k.startswith("xaxis")]
    for fig in (figures.attention_grid(attention, labels),
                figures.attention_interaction_side_by_side(attention[0, 0], np.zeros((F, F)), labels, signed=True),
                figures.correlation_figure(attention[:, 0], figures.field_names(labels), count=3)):
        assert all(axis.showticklabels is False for axis in xaxes(fig))
        titled = [axis.title.text for axis in xaxes(fig) if axis.title.text]
        assert titled and all(t.endswith("; hover names it") for t in titled)
        for trace in fig.data:  # the hover does name the column: %{x}, or a prebuilt text naming both fields
            assert "%{x}" in trace.hovertemplate or f"× {labels[1]}" in str(np.asarray(trace.customdata)[0][1])
    single = figures.attention_heatmap(attention[0, 0], labels)
    assert single.layout.xaxis.showticklabels is not False and single.layout.xaxis.title.text == figures.KEY_AXIS
    small = figures.attention_grid(np.full((3, 2, 7, 7), 1 / 7), [f"f{i}" for i in range(7)])
    assert [a.showticklabels for a in xaxes(small)].count(True) == 2  # the bottom row's two maps
