"""Plotly figures of AutoInt explanations: one function per picture, plain arrays in, a Figure out.

Every function checks the shapes it is given against the labels and says which argument
is wrong (bertviz style), so a mismatch fails here with a message instead of drawing a
silently mislabelled chart. Nothing here imports Streamlit or torch: the app, notebooks and
scripts share these pictures.
"""
from __future__ import annotations

import csv
import io
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

ATTENTION_SCALE = "Blues"
DIVERGING_SCALE = "RdBu_r"  # red = more, blue = less; white is 0 (zmid)
QUERY_AXIS = "query field m (row)"
KEY_AXIS = "attends to field k (column)"
CELL_PX = 46  # height per field row of a stand-alone heatmap, so long labels never overlap
SMALLEST_CHANGE_SCALE = 0.01  # a difference map's colour range never shrinks below this, so noise stays white
METHOD_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]


class FigureError(ValueError):
    """Arrays that do not fit the labels or each other; the message names the argument and the shapes."""


def plotly_config(image_format: str = "png", filename: str = "autoint") -> dict:
    """The toolbar every chart shares: export as PNG or SVG (the camera button), no Plotly logo."""
    if image_format not in ("png", "svg"):
        raise FigureError(f"image_format={image_format!r}: choose png or svg.")
    return {"displaylogo": False, "toImageButtonOptions": {"format": image_format, "filename": filename, "scale": 2},
            "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


# ----------------------------------------------------------------------------- shape checks

def _as_array(name: str, value, ndim: int) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.ndim != ndim:
        raise FigureError(f"{name} must have {ndim} dimensions, got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise FigureError(f"{name} holds NaN or infinite values.")
    return array


def _check_labels(name: str, labels: Sequence[str], size: int, what: str) -> list[str]:
    labels = [str(label) for label in labels]
    if len(labels) != size:
        raise FigureError(f"{name} has {len(labels)} labels but the {what} has {size}.")
    return labels


def _square(name: str, value, labels: Sequence[str], leading: int = 0) -> tuple[np.ndarray, list[str]]:
    """An array whose last two axes are (fields, fields), with one label per field."""
    array = _as_array(name, value, leading + 2)
    if array.shape[-1] != array.shape[-2]:
        raise FigureError(f"{name} must be square over its last two axes (fields x fields), got shape {array.shape}.")
    return array, _check_labels("labels", labels, array.shape[-1], f"{name} ({array.shape})")


def field_names(labels: Sequence[str]) -> list[str]:
    """`Gender=M` -> `Gender`: the columns of an attention map name the field; its rows carry the values."""
    return [label.split("=", 1)[0] for label in labels]


# ----------------------------------------------------------------------------- heatmaps

def _heatmap_trace(matrix: np.ndarray, rows: list[str], columns: list[str], hover: str, *, value_format: str,
                   show_values: bool, **colour) -> go.Heatmap:
    return go.Heatmap(z=matrix, x=columns, y=rows, xgap=1, ygap=1,
                      texttemplate=f"%{{z:{value_format}}}" if show_values else None,
                      hovertemplate=hover + f"<br>value: %{{z:{value_format}}}<extra></extra>", **colour)


def matrix_heatmap(matrix, row_labels: Sequence[str], column_labels: Sequence[str], *, title: str,
                   x_title: str = "", y_title: str = "", diverging: bool = False, value_format: str = ".2f",
                   show_values: bool | None = None) -> go.Figure:
    """Any labelled matrix with its numbers in the cells (the Learn page's embeddings, Q, K, V ...)."""
    matrix = _as_array("matrix", matrix, 2)
    rows = _check_labels("row_labels", row_labels, matrix.shape[0], "matrix's row count")
    columns = _check_labels("column_labels", column_labels, matrix.shape[1], "matrix's column count")
    if show_values is None:
        show_values = matrix.size <= 400  # beyond that the numbers are too small to read
    if diverging:
        bound = float(np.abs(matrix).max()) or 1.0
        colour = dict(colorscale=DIVERGING_SCALE, zmid=0.0, zmin=-bound, zmax=bound)
    else:
        colour = dict(colorscale=ATTENTION_SCALE)
    fig = go.Figure(_heatmap_trace(matrix, rows, columns, "row: %{y}<br>column: %{x}", value_format=value_format,
                                   show_values=show_values, **colour))
    fig.update_layout(title=title, height=max(260, 120 + CELL_PX * len(rows)), margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(title=x_title, side="bottom", tickangle=-30)
    fig.update_yaxes(title=y_title, autorange="reversed")
    return fig


def attention_heatmap(matrix, labels: Sequence[str], *, title: str = "Attention", zmax: float | None = None
                      ) -> go.Figure:
    """One head's (or an average's) attention: row m = query field, column k = the field it attends to."""
    matrix, labels = _square("matrix", matrix, labels)
    fig = go.Figure(_heatmap_trace(matrix, labels, field_names(labels), f"{QUERY_AXIS}: %{{y}}<br>{KEY_AXIS}: %{{x}}",
                                   value_format=".2f", show_values=True, colorscale=ATTENTION_SCALE, zmin=0.0,
                                   zmax=zmax if zmax is not None else max(float(matrix.max()), 1e-6),
                                   colorbar=dict(title="weight")))
    fig.update_layout(title=title, height=max(320, 160 + CELL_PX * len(labels)), margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(title=KEY_AXIS, tickangle=-30)
    fig.update_yaxes(title=QUERY_AXIS, autorange="reversed")
    return fig


def attention_grid(attention, labels: Sequence[str], *, title: str = "Attention per layer and head",
                   show_values: bool = False) -> go.Figure:
    """All heads of all layers, (L, H, F, F), as an L x H grid sharing ONE colour scale.

    One scale (0 to the largest weight anywhere) makes cells comparable across heads; field
    labels sit on the left column and bottom row only, so the grid stays readable.
    """
    attention, labels = _square("attention", attention, labels, leading=2)
    layers, heads = attention.shape[:2]
    if layers == 0:
        raise FigureError("attention has no layers (a 0-layer model has no interacting layer to show).")
    traces = [_heatmap_trace(attention[l, h], labels, field_names(labels),
                             f"layer {l + 1}, head {h + 1}<br>{QUERY_AXIS}: %{{y}}<br>{KEY_AXIS}: %{{x}}",
                             value_format=".2f", show_values=show_values, coloraxis="coloraxis")
              for l in range(layers) for h in range(heads)]
    layout = _grid_layout(layers, heads, [f"layer {l + 1}, head {h + 1}" for l in range(layers) for h in range(heads)],
                          traces)
    fig = go.Figure(traces, layout)
    fig.update_layout(title=title, coloraxis=dict(colorscale=ATTENTION_SCALE, cmin=0.0,
                                                  cmax=max(float(attention.max()), 1e-6),
                                                  colorbar=dict(title="weight")),
                      height=160 + layers * (70 + 26 * len(labels)), margin=dict(l=10, r=10, t=80, b=10))
    return fig


def attention_before_after(before, after, labels: Sequence[str], *, title: str = "Attention before and after"
                           ) -> go.Figure:
    """Two (fields, fields) attention maps side by side on ONE colour scale, the row labels written once (use
    `transition_labels` so an edited field reads `Genre=Action → Comedy`), so a what-if compares like with like."""
    before, labels = _square("before", before, labels)
    after, _ = _square("after", after, labels)
    traces = [_heatmap_trace(matrix, labels, field_names(labels), f"{name}<br>{QUERY_AXIS}: %{{y}}<br>{KEY_AXIS}: %{{x}}",
                             value_format=".2f", show_values=True, coloraxis="coloraxis")
              for name, matrix in (("before", before), ("after", after))]
    fig = go.Figure(traces, _grid_layout(1, 2, ["Before", "After"], traces))
    fig.update_layout(title=title, coloraxis=dict(colorscale=ATTENTION_SCALE, cmin=0.0,
                                                  cmax=max(float(before.max()), float(after.max()), 1e-6),
                                                  colorbar=dict(title="weight")),
                      height=max(360, 200 + CELL_PX * len(labels)), margin=dict(l=10, r=10, t=80, b=10))
    return fig


def _grid_layout(rows: int, cols: int, titles: Sequence[str], traces: Sequence[go.Heatmap]) -> dict:
    """Axes for a rows x cols grid of heatmaps that share their field axes, and assign `traces` to them
    in row-major order. Built by hand: plotly's make_subplots costs ~80 ms, most of a rerun's budget."""
    h_gap, v_gap = 0.02, min(0.3 / rows, 0.12)
    width, height = (1 - h_gap * (cols - 1)) / cols, (1 - v_gap * (rows - 1)) / rows
    layout: dict = {"annotations": []}
    for index, trace in enumerate(traces):
        row, col = divmod(index, cols)
        suffix = str(index + 1) if index else ""
        left, top = col * (width + h_gap), 1 - row * (height + v_gap)
        trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
        layout[f"xaxis{suffix}"] = dict(domain=[left, min(left + width, 1.0)], anchor=f"y{suffix}", tickangle=-40,
                                        showticklabels=row == rows - 1, title=KEY_AXIS if row == rows - 1 else None,
                                        **({"matches": "x"} if index else {}))
        layout[f"yaxis{suffix}"] = dict(domain=[max(top - height, 0.0), top], anchor=f"x{suffix}", autorange="reversed",
                                        showticklabels=col == 0, title=QUERY_AXIS if col == 0 else None,
                                        **({"matches": "y"} if index else {}))
        layout["annotations"].append(dict(text=titles[index], x=left + width / 2, y=top, xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13)))
    return layout


def difference_heatmap(difference, labels: Sequence[str], *, title: str = "Change in attention (after - before)"
                       ) -> go.Figure:
    """A signed change, on a diverging scale centred on 0 and symmetric, so white means no change."""
    difference, labels = _square("difference", difference, labels)
    bound = max(float(np.abs(difference).max()), SMALLEST_CHANGE_SCALE)
    fig = go.Figure(_heatmap_trace(difference, labels, field_names(labels), f"{QUERY_AXIS}: %{{y}}<br>{KEY_AXIS}: %{{x}}",
                                   value_format="+.2f", show_values=True, colorscale=DIVERGING_SCALE, zmid=0.0,
                                   zmin=-bound, zmax=bound, colorbar=dict(title="change")))
    fig.update_layout(title=title, height=max(320, 160 + CELL_PX * len(labels)), margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(title=KEY_AXIS, tickangle=-30)
    fig.update_yaxes(title=QUERY_AXIS, autorange="reversed")
    return fig


def transition_labels(before: Sequence[str], after: Sequence[str]) -> list[str]:
    """Axis labels for a before/after comparison: `Gender=M → F` where a field changed."""
    if len(before) != len(after):
        raise FigureError(f"before has {len(before)} labels, after has {len(after)}; they must describe the same fields.")
    out = []
    for old, new in zip(before, after):
        if old == new:
            out.append(old)
        else:
            out.append(f"{old} → {new.split('=', 1)[-1]}")
    return out


# ----------------------------------------------------------------------------- bars and curves

def attribution_bars(attributions: Mapping[str, Sequence[float]], labels: Sequence[str], *,
                     method_names: Mapping[str, str] | None = None,
                     title: str = "What each field contributes to the logit") -> go.Figure:
    """Per-field attributions, one bar group per method; positive pushes the CTR up."""
    if not attributions:
        raise FigureError("attributions is empty; ask for at least one attribution method.")
    labels = list(map(str, labels))
    fig = go.Figure()
    for index, (method, values) in enumerate(attributions.items()):
        values = _as_array(f"attributions[{method!r}]", values, 1)
        _check_labels("labels", labels, len(values), f"attribution vector of {method!r}")
        name = (method_names or {}).get(method, method)
        fig.add_trace(go.Bar(x=values, y=labels, orientation="h", name=name,
                             marker_color=METHOD_COLOURS[index % len(METHOD_COLOURS)],
                             hovertemplate=f"{name}<br>%{{y}}: %{{x:+.3f}}<extra></extra>"))
    fig.update_layout(title=title, barmode="group", height=max(300, 140 + 26 * len(labels) * len(attributions)),
                      margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.15))
    fig.update_xaxes(title="contribution to the logit (positive raises the CTR)", zeroline=True,
                     zerolinecolor="#444")
    fig.update_yaxes(autorange="reversed")
    return fig


def correlation_figure(per_layer, fields: Sequence[str], *, count: int, description: str = "all samples"
                       ) -> go.Figure:
    """The paper's Fig. 7(b): mean attention over a set of samples, averaged over heads and layers,
    beside each layer's own average. per_layer is (L, F, F)."""
    per_layer, fields = _square("per_layer", per_layer, fields, leading=1)
    layers = per_layer.shape[0]
    if layers == 0:
        raise FigureError("per_layer has no layers (a 0-layer model has no attention to average).")
    matrices = [per_layer.mean(axis=0)] + list(per_layer)
    titles = ["all layers"] + [f"layer {l + 1}" for l in range(layers)]
    traces = [_heatmap_trace(matrix, fields, fields, f"{titles[i]}<br>{QUERY_AXIS}: %{{y}}<br>{KEY_AXIS}: %{{x}}",
                             value_format=".2f", show_values=len(matrices) <= 4, coloraxis="coloraxis")
              for i, matrix in enumerate(matrices)]
    fig = go.Figure(traces, _grid_layout(1, len(matrices), titles, traces))
    fig.update_layout(title=f"Mean attention over {count:,} samples ({description})",
                      coloraxis=dict(colorscale=ATTENTION_SCALE, cmin=0.0, cmax=max(float(per_layer.max()), 1e-6),
                                     colorbar=dict(title="weight")),
                      height=160 + CELL_PX * len(fields), margin=dict(l=10, r=10, t=80, b=10))
    return fig


def training_curves(histories: Mapping[str, Sequence[Mapping]], *, steps: Mapping[str, Sequence[Mapping]] | None = None,
                    title: str = "Training") -> go.Figure:
    """Loss and validation AUC per epoch for one or more runs ({run name: history}).

    A history row has epoch, train_loss, val_auc and val_logloss (the trainer's records);
    `steps` adds the within-epoch running loss of a job still in progress ({name: [{epoch,
    step, steps, loss}]}) so the curve moves before the first epoch ends.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=["log loss", "validation AUC"], horizontal_spacing=0.1)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, (name, history) in enumerate(histories.items()):
        colour = palette[i % len(palette)]
        for key in ("epoch", "train_loss", "val_auc", "val_logloss"):
            missing = [row for row in history if key not in row]
            if missing:
                raise FigureError(f"history of {name!r}: a row lacks {key!r} ({dict(missing[0])}).")
        epochs = [row["epoch"] for row in history]
        fig.add_trace(go.Scatter(x=epochs, y=[row["train_loss"] for row in history], name=f"{name}: train loss",
                                 mode="lines+markers", line=dict(color=colour)), row=1, col=1)
        fig.add_trace(go.Scatter(x=epochs, y=[row["val_logloss"] for row in history], name=f"{name}: val log loss",
                                 mode="lines+markers", line=dict(color=colour, dash="dash")), row=1, col=1)
        fig.add_trace(go.Scatter(x=epochs, y=[row["val_auc"] for row in history], name=f"{name}: val AUC",
                                 mode="lines+markers", line=dict(color=colour)), row=1, col=2)
        running = (steps or {}).get(name, [])
        if running:
            fig.add_trace(go.Scatter(x=[s["epoch"] - 1 + s["step"] / s["steps"] for s in running],
                                     y=[s["loss"] for s in running], name=f"{name}: running loss", mode="lines",
                                     line=dict(color=colour, dash="dot")), row=1, col=1)
    fig.update_xaxes(title="epoch")
    fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(orientation="h", y=-0.3))
    return fig


# ----------------------------------------------------------------------------- export

def figure_html(fig: go.Figure) -> str:
    """A stand-alone HTML file of the figure (plotly.js inlined, so it opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config=plotly_config())


def figure_csv(fig: go.Figure) -> str:
    """The numbers behind a figure, one row per cell or point: trace, row/y, column/x, value."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trace", "y", "x", "value"])
    for index, trace in enumerate(fig.data):
        name = trace.name or _subplot_title(fig, index) or f"trace {index + 1}"
        z = getattr(trace, "z", None)
        if z is not None:
            for row_label, row in zip(trace.y, z):
                for column_label, value in zip(trace.x, row):
                    writer.writerow([name, row_label, column_label, f"{float(value):.6g}"])
        elif getattr(trace, "orientation", None) == "h":
            for y, x in zip(trace.y, trace.x):
                writer.writerow([name, y, "", f"{float(x):.6g}"])
        else:
            for x, y in zip(trace.x, trace.y):
                writer.writerow([name, "", x, f"{float(y):.6g}"])
    return out.getvalue()


def _subplot_title(fig: go.Figure, index: int) -> str | None:
    """Subplot titles are annotations in trace order; a grid's trace i has title i."""
    titles = [a.text for a in fig.layout.annotations or ()]
    return titles[index] if index < len(titles) else None


def sweep_figure(settings: Sequence[int], ours: Sequence[float], ours_std: Sequence[float], *, axis: str,
                 metric: str, title: str) -> go.Figure:
    """Figures 5-6 of the paper: one metric (mean +- std over seeds) against depth or embedding size."""
    x = _as_array("settings", settings, 1)
    y, err = _as_array("ours", ours, 1), _as_array("ours_std", ours_std, 1)
    if not (len(x) == len(y) == len(err)):
        raise FigureError(f"settings, ours and ours_std must have one value each per setting; got {len(x)}, "
                          f"{len(y)} and {len(err)}.")
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", name=metric,
                               error_y={"type": "data", "array": err, "visible": True},
                               hovertemplate=f"{axis}=%{{x}}<br>{metric} %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=axis, yaxis_title=f"{metric} (mean +- std over seeds)",
                      template="plotly_white", height=360, margin={"t": 60, "b": 50})
    fig.update_xaxes(tickvals=list(x))
    return fig
