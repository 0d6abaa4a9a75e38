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
from .errors import AutoIntError
from plotly.subplots import make_subplots

ATTENTION_SCALE = "Blues"
DIVERGING_SCALE = "RdBu_r"  # red = more, blue = less; white is 0 (zmid)
QUERY_AXIS = "query field m (row)"
KEY_AXIS = "attends to field k (column)"
CELL_PX = 46  # height per field row of a stand-alone heatmap, so long labels never overlap
MANY_FIELDS = 16  # above this many fields (Criteo has 39) rows get MANY_PX and every label a small font
MANY_PX = 18
X_LABELS_MAX = 60  # columns of cells across a figure (maps side by side x fields) that keep their x labels legible
SMALLEST_CHANGE_SCALE = 0.01  # a difference map's colour range never shrinks below this, so noise stays white
METHOD_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
UNIFORM_SCALE = "RdBu_r"  # attention relative to uniform: red = more than 1/F, blue = less, white = uniform
UNIFORM_FLOOR = 1 / 64  # the lowest colour ever drawn: x1/64 of uniform (log2 of a zero weight is -inf)
SMALLEST_RATIO = 1.5  # the attention colour range reaches at least x1.5 and x1/1.5 of uniform: a head whose weights
#                       all lie within 0.02 of 1/7 (x0.86-x1.14) stays pale instead of being stretched to full contrast
INTERACTION_SCALE = "Purples"  # a split's mean |interaction|, from 0 (white) up; not blue/red, which mean +/- here
POSITIVE, NEGATIVE = "#2c7fb8", "#d95f0e"  # bars coloured by sign
BLANK = "#e8e8e8"  # behind an interaction map: its blank diagonal reads as "no value", not as a white 0


class FigureError(AutoIntError, ValueError):
    """Arrays that do not fit the labels or each other; the message names the argument and the shapes."""



def _row_px(fields: int) -> int:
    """Pixels per field row: roomy for ML-1M's 7 fields, compact for Criteo's 39 (else a page is 2,000 px tall)."""
    return CELL_PX if fields <= MANY_FIELDS else MANY_PX


def _many_fields(fig: go.Figure, fields: int, columns: int = 1) -> go.Figure:
    """With many fields, every field keeps its tick label (plotly would drop some) in a 9 px font, x labels upright;
    `columns` maps side by side. Past X_LABELS_MAX columns of cells across the figure the x labels would overlap
    (4 maps x 39 fields): there they are left out and each x title says that the hover names the field."""
    if fields > MANY_FIELDS:
        fig.update_xaxes(tickfont=dict(size=9), tickangle=-90, dtick=1)
        fig.update_yaxes(tickfont=dict(size=9), dtick=1)
        if fields * columns > X_LABELS_MAX:
            fig.update_xaxes(showticklabels=False)
            fig.for_each_xaxis(lambda axis: axis.update(title_text=f"{axis.title.text}; hover names it")
                               if axis.title.text else None)
    return fig


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
    fig.update_layout(title=title, height=max(260, 120 + _row_px(len(rows)) * len(rows)),
                      margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(title=x_title, side="bottom", tickangle=-30)
    fig.update_yaxes(title=y_title, autorange="reversed")
    _many_fields(fig, len(rows))
    return fig


# Attention maps are coloured by each weight relative to uniform, r = alpha * F (1 = every field alike):
# a trained AutoInt's rows are often nearly flat (0.11-0.16 with F = 7), which a 0-to-max scale paints as
# one blank square. The colour value is log2(r), so x2 and x0.5 sit at the same distance from white.

def relative_to_uniform(attention) -> np.ndarray:
    """alpha * F for attention of shape (..., F, F): 1 is uniform, 2 is twice the uniform weight."""
    attention = np.asarray(attention, dtype=float)
    return attention * attention.shape[-1]


def uniform_colour(attention) -> np.ndarray:
    """The colour value of each weight: log2(alpha * F), floored at x1/F (and never below UNIFORM_FLOOR).

    A weight can be at most F times uniform (alpha = 1), so the floor x1/F makes the possible range symmetric: a
    near-zero weight ("ignores this field") is as dark a blue as a weight of 1 is a red, and a few such weights do
    not stretch the scale until every other cell is white. The hover and cell text keep the exact alpha."""
    attention = np.asarray(attention, dtype=float)
    floor = max(1 / max(attention.shape[-1], 1), UNIFORM_FLOOR)
    return np.log2(np.maximum(relative_to_uniform(attention), floor))


def _uniform_bound(*colours: np.ndarray, zmax: float | None = None, fields: int = 1) -> float:
    """The colour range +-bound shared by every panel of a figure: the largest |log2 r| anywhere, never below
    log2(SMALLEST_RATIO) so a nearly uniform map stays pale instead of being stretched to full contrast."""
    bound = max([float(np.abs(colour).max()) for colour in colours if colour.size] + [np.log2(SMALLEST_RATIO)])
    if zmax is not None:  # a caller's own largest weight, e.g. to share the scale with another figure
        bound = max(bound, abs(float(np.log2(max(zmax * fields, UNIFORM_FLOOR)))))
    return bound


def _ratio_text(ratio: float) -> str:
    if abs(ratio - 1) < 1e-9:
        return "×1 (uniform)"
    if ratio < 0.3:
        return f"×1/{1 / ratio:.3g}"
    return f"×{ratio:.2g}"


def _uniform_ticks(bound: float) -> tuple[list[float], list[str]]:
    """Colour bar ticks at round multiples of uniform within +-bound: x0.8 ... x1.25 for a pale map, powers of two
    (x1/4, x1/2, x1, x2, x4 ...) for a peaked one."""
    if bound < 1:
        steps = (0.8, 0.9, 1.0, 1.1, 1.25) if bound < np.log2(1.25) + 1e-9 else (0.5, 2 / 3, 0.8, 1.0, 1.25, 1.5, 2.0)
        ratios = [r for r in steps if abs(np.log2(r)) <= bound + 1e-9]
    else:
        step = max(1, int(np.ceil(2 * bound / 7)))  # at most ~7 ticks
        top = int(np.floor(bound + 1e-9))
        ratios = [2.0 ** k for k in range(-top, top + 1) if k % step == 0]
    return [float(np.log2(r)) for r in ratios], [_ratio_text(r) for r in ratios]


def _uniform_axis(bound: float, title_text: str = "weight<br>vs uniform", **colorbar) -> dict:
    """A coloraxis for attention: diverging, white at uniform (log2 r = 0), symmetric, ticks as multiples of uniform."""
    values, texts = _uniform_ticks(bound)
    return dict(colorscale=UNIFORM_SCALE, cmin=-bound, cmax=bound, cmid=0.0,
                colorbar=dict(title=dict(text=title_text), tickvals=values, ticktext=texts, **colorbar))


def _attention_trace(matrix: np.ndarray, rows: list[str], columns: list[str], where: str, *, show_values: bool,
                     coloraxis: str = "coloraxis", name: str | None = None) -> go.Heatmap:
    """One attention map: colour log2(alpha * F) on `coloraxis`; cell text, hover and CSV carry the raw alpha
    (customdata[..., 0]; customdata[..., 1] is alpha * F)."""
    fields = matrix.shape[-1]
    custom = np.stack([matrix, relative_to_uniform(matrix)], axis=-1)  # (F, F, 2)
    text = [[f"{value:.2f}" for value in row] for row in matrix] if show_values else None
    return go.Heatmap(z=uniform_colour(matrix), x=columns, y=rows, xgap=1, ygap=1, coloraxis=coloraxis, name=name,
                      customdata=custom, text=text, texttemplate="%{text}" if show_values else None,
                      meta={"value": "attention weight alpha (customdata[..., 0])", "colour": "log2(alpha × F)"},
                      hovertemplate=f"{where}{QUERY_AXIS}: %{{y}}<br>{KEY_AXIS}: %{{x}}<br>"
                                    f"weight α = %{{customdata[0]:.3f}} · %{{customdata[1]:.2f}}× uniform "
                                    f"(1/F = {1 / fields:.3f})<extra></extra>")


def _check_weights(name: str, attention: np.ndarray) -> np.ndarray:
    if (attention < 0).any():
        raise FigureError(f"{name} holds negative values ({attention.min():.3g}); attention weights are softmax "
                          "outputs in [0, 1]. Pass the weights, not scores or differences.")
    return attention


def head_title(base: str, entropy: float | None = None, uniform: bool = False) -> str:
    """`layer 1, head 2 · entropy 0.98 · ≈ uniform`: a panel's name with the head's flags."""
    parts = [base]
    if entropy is not None:
        parts.append(f"entropy {float(entropy):.2f}")
    if uniform:
        parts.append("≈ uniform")
    return " · ".join(parts)


def _flags(entropy, uniform, shape: tuple[int, ...], what: str) -> tuple[np.ndarray | None, np.ndarray]:
    """entropy (fraction of log F per head) and uniform (bool per head), checked against the panels' shape."""
    if entropy is not None:
        entropy = np.asarray(entropy, dtype=float)
        if entropy.shape != shape:
            raise FigureError(f"entropy must have one value per {what}, shape {shape}; got shape {entropy.shape}.")
        if not np.isfinite(entropy).all():
            raise FigureError("entropy holds NaN or infinite values.")
    if uniform is None or uniform is False:
        mask = np.zeros(shape, dtype=bool)
    else:
        mask = np.asarray(uniform)
        if mask.dtype != bool:
            raise FigureError(f"uniform must be a bool mask (True where every weight is within 0.02 of 1/F), "
                              f"got dtype {mask.dtype}.")
        if mask.shape != shape:
            raise FigureError(f"uniform must have one flag per {what}, shape {shape}; got shape {mask.shape}.")
    return entropy, mask


def attention_heatmap(matrix, labels: Sequence[str], *, title: str = "Attention", zmax: float | None = None,
                      entropy: float | None = None, uniform: bool = False) -> go.Figure:
    """One head's (or an average's) attention: row m = query field, column k = the field it attends to.

    Coloured by weight relative to uniform (see `uniform_colour`), the weight itself written in the cells up to
    MANY_FIELDS fields (past that the numbers are too small to read; the hover gives each one).
    `zmax` widens the colour range to reach that weight (to match another figure); `entropy` (a fraction of
    log F) and `uniform` (every weight within 0.02 of 1/F) are added to the title.
    """
    matrix, labels = _square("matrix", matrix, labels)
    matrix = _check_weights("matrix", matrix)
    entropy, flag = _flags(entropy, uniform, (), "map (a scalar)")
    trace = _attention_trace(matrix, labels, field_names(labels), "", show_values=len(labels) <= MANY_FIELDS)
    fig = go.Figure(trace)
    bound = _uniform_bound(trace.z, zmax=zmax, fields=len(labels))
    fig.update_layout(title=head_title(title, entropy, bool(flag)), coloraxis=_uniform_axis(bound),
                      height=max(320, 160 + _row_px(len(labels)) * len(labels)), margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(title=KEY_AXIS, tickangle=-30, showgrid=False)
    fig.update_yaxes(title=QUERY_AXIS, autorange="reversed", showgrid=False)
    _many_fields(fig, len(labels))
    return fig


def attention_grid(attention, labels: Sequence[str], *, title: str = "Attention per layer and head",
                   show_values: bool = False, entropy=None, uniform=None) -> go.Figure:
    """All heads of all layers, (L, H, F, F), as an L x H grid sharing ONE colour scale.

    One scale (weight relative to uniform, as far as the most extreme cell anywhere) makes cells comparable across
    heads; field labels sit on the left column and bottom row only, so the grid stays readable. `entropy` (L, H)
    and `uniform` (L, H) bool put each head's entropy and an "≈ uniform" flag in its subplot title.
    """
    attention, labels = _square("attention", attention, labels, leading=2)
    layers, heads = attention.shape[:2]
    if layers == 0:
        raise FigureError("attention has no layers (a 0-layer model has no interacting layer to show).")
    attention = _check_weights("attention", attention)
    entropy, flags = _flags(entropy, uniform, (layers, heads), "layer and head")
    names = [f"layer {l + 1}, head {h + 1}" for l in range(layers) for h in range(heads)]
    traces = [_attention_trace(attention[l, h], labels, field_names(labels), f"{names[l * heads + h]}<br>",
                               show_values=show_values, name=names[l * heads + h])
              for l in range(layers) for h in range(heads)]
    titles = [head_title(names[l * heads + h], None if entropy is None else entropy[l, h], flags[l, h])
              for l in range(layers) for h in range(heads)]
    fig = go.Figure(traces, _grid_layout(layers, heads, titles, traces))
    fig.update_layout(title=title, coloraxis=_uniform_axis(_uniform_bound(uniform_colour(attention))),
                      height=160 + layers * (70 + min(26, _row_px(len(labels))) * len(labels)),
                      margin=dict(l=10, r=10, t=80, b=10))
    _many_fields(fig, len(labels), columns=heads)
    return fig


# Readings of the attention other than raw alpha (autoint.explain.readings) are not weights that sum to 1 over a
# row, so "relative to uniform" means nothing for them: they take a sequential scale from 0 to the largest value
# anywhere in the figure, shared by every panel. A reading that is nearly the same everywhere says so in its title.
READING_SCALE = "Oranges"
FLAT_READING = 0.05  # a figure whose values all lie within 5% of its largest reads "nearly flat"


def _reading_values(name: str, maps: np.ndarray) -> np.ndarray:
    if not np.isfinite(maps).all() or (maps < 0).any():
        raise FigureError(f"{name} holds negative or non-finite values; a reading is a strength (>= 0).")
    return maps


def _reading_axis(values: np.ndarray, title_text: str, **colorbar) -> dict:
    top = float(values.max()) if values.size else 0.0
    return dict(colorscale=READING_SCALE, cmin=0.0, cmax=top if top > 0 else 1.0,
                colorbar=dict(title=dict(text=title_text), **colorbar))


def reading_is_flat(values) -> bool:
    """Every value within FLAT_READING of the largest (or all zero): colour would show no pattern."""
    values = np.asarray(values, dtype=float)
    top = float(values.max()) if values.size else 0.0
    return top <= 0 or float(values.min()) >= (1 - FLAT_READING) * top


def _reading_trace(matrix: np.ndarray, rows: list[str], columns: list[str], where: str, *, show_values: bool,
                   unit: str, coloraxis: str = "coloraxis", name: str | None = None) -> go.Heatmap:
    text = [[f"{value:.3g}" for value in row] for row in matrix] if show_values else None
    return go.Heatmap(z=matrix, x=columns, y=rows, xgap=1, ygap=1, coloraxis=coloraxis, name=name, text=text,
                      texttemplate="%{text}" if show_values else None,
                      hovertemplate=f"{where}{QUERY_AXIS}: %{{y}}<br>{KEY_AXIS}: %{{x}}<br>{unit} = "
                                    f"%{{z:.4g}}<extra></extra>")


def reading_grid(maps, labels: Sequence[str], *, reading: str, unit: str, title: str = "Per layer and head",
                 entropy=None, uniform=None) -> go.Figure:
    """Every layer and head of one reading, (L, H, F, F), as an L x H grid on ONE scale. `reading` "raw" is the
    attention itself (`attention_grid`, relative to uniform); any other reading a sequential scale from 0."""
    if reading == "raw":
        return attention_grid(maps, labels, title=title, entropy=entropy, uniform=uniform)
    maps, labels = _square("reading", maps, labels, leading=2)
    layers, heads = maps.shape[:2]
    if layers == 0:
        raise FigureError("the reading has no layers (a 0-layer model has no interacting layer to show).")
    maps = _reading_values(reading, maps)
    names = [f"layer {l + 1}, head {h + 1}" for l in range(layers) for h in range(heads)]
    traces = [_reading_trace(maps[l, h], labels, field_names(labels), f"{names[l * heads + h]}<br>",
                             show_values=False, unit=unit, name=names[l * heads + h])
              for l in range(layers) for h in range(heads)]
    fig = go.Figure(traces, _grid_layout(layers, heads, names, traces))
    flat = " · nearly the same everywhere: no pattern to read" if reading_is_flat(maps) else ""
    fig.update_layout(title=title + flat, coloraxis=_reading_axis(maps, unit),
                      height=160 + layers * (70 + min(26, _row_px(len(labels))) * len(labels)),
                      margin=dict(l=10, r=10, t=80, b=10))
    _many_fields(fig, len(labels), columns=heads)
    return fig


def reading_heatmap(matrix, labels: Sequence[str], *, reading: str, unit: str, title: str,
                    entropy: float | None = None, uniform: bool = False) -> go.Figure:
    """One (F, F) map of a reading (raw alpha: `attention_heatmap`), its values in the cells up to MANY_FIELDS."""
    if reading == "raw":
        return attention_heatmap(matrix, labels, title=title, entropy=entropy, uniform=uniform)
    matrix, labels = _square("reading", matrix, labels)
    matrix = _reading_values(reading, matrix)
    fig = go.Figure(_reading_trace(matrix, labels, field_names(labels), "", show_values=len(labels) <= MANY_FIELDS,
                                   unit=unit))
    flat = " · nearly the same everywhere" if reading_is_flat(matrix) else ""
    fig.update_layout(title=title + flat, coloraxis=_reading_axis(matrix, unit),
                      height=max(320, 160 + _row_px(len(labels)) * len(labels)), margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(title=KEY_AXIS, tickangle=-30, showgrid=False)
    fig.update_yaxes(title=QUERY_AXIS, autorange="reversed", showgrid=False)
    _many_fields(fig, len(labels))
    return fig


def attention_before_after(before, after, labels: Sequence[str], *, title: str = "Attention before and after",
                           entropy=None, uniform=None) -> go.Figure:
    """Two (fields, fields) attention maps side by side on ONE colour scale, the row labels written once (use
    `transition_labels` so an edited field reads `Genre=Action → Comedy`), so a what-if compares like with like.
    `entropy` and `uniform` are pairs (before, after)."""
    before, labels = _square("before", before, labels)
    after, _ = _square("after", after, labels)
    before, after = _check_weights("before", before), _check_weights("after", after)
    entropy, flags = _flags(entropy, uniform, (2,), "map (before, after)")
    traces = [_attention_trace(matrix, labels, field_names(labels), f"{name}<br>", show_values=True, name=name)
              for name, matrix in (("before", before), ("after", after))]
    titles = [head_title(name, None if entropy is None else entropy[i], flags[i])
              for i, name in enumerate(("Before", "After"))]
    fig = go.Figure(traces, _grid_layout(1, 2, titles, traces))
    fig.update_layout(title=title, coloraxis=_uniform_axis(_uniform_bound(traces[0].z, traces[1].z)),
                      height=max(360, 200 + _row_px(len(labels)) * len(labels)), margin=dict(l=10, r=10, t=80, b=10))
    _many_fields(fig, len(labels), columns=2)
    return fig


def _grid_layout(rows: int, cols: int, titles: Sequence[str], traces: Sequence[go.Heatmap], *,
                 domains: Sequence[tuple[float, float]] | None = None) -> dict:
    """Axes for a rows x cols grid of heatmaps that share their field axes, and assign `traces` to them
    in row-major order (`domains` overrides the columns' x ranges). Built by hand: plotly's make_subplots
    costs ~80 ms, most of a rerun's budget."""
    h_gap, v_gap = 0.02, min(0.3 / rows, 0.12)
    width, height = (1 - h_gap * (cols - 1)) / cols, (1 - v_gap * (rows - 1)) / rows
    if domains is None:
        domains = [(col * (width + h_gap), min(col * (width + h_gap) + width, 1.0)) for col in range(cols)]
    layout: dict = {"annotations": []}
    for index, trace in enumerate(traces):
        row, col = divmod(index, cols)
        suffix = str(index + 1) if index else ""
        (left, right), top = domains[col], 1 - row * (height + v_gap)
        trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
        layout[f"xaxis{suffix}"] = dict(domain=[left, right], anchor=f"y{suffix}", tickangle=-40, showgrid=False,
                                        showticklabels=row == rows - 1, title=KEY_AXIS if row == rows - 1 else None,
                                        **({"matches": "x"} if index else {}))
        layout[f"yaxis{suffix}"] = dict(domain=[max(top - height, 0.0), top], anchor=f"x{suffix}", autorange="reversed",
                                        showgrid=False,
                                        showticklabels=col == 0, title=QUERY_AXIS if col == 0 else None,
                                        **({"matches": "y"} if index else {}))
        layout["annotations"].append(dict(text=titles[index], x=(left + right) / 2, y=top, xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13)))
    return layout


def difference_heatmap(difference, labels: Sequence[str], *, title: str = "Change in attention (after - before)",
                       value_name: str = "change in attention", axes: tuple[str, str] = (QUERY_AXIS, KEY_AXIS)
                       ) -> go.Figure:
    """A signed change, on a diverging scale centred on 0 and symmetric, so white means no change.
    `value_name` names the value in the hover and colour bar; `axes` are the (row, column) axis titles."""
    difference, labels = _square("difference", difference, labels)
    bound = max(float(np.abs(difference).max()), SMALLEST_CHANGE_SCALE)
    rows_title, columns_title = axes
    fig = go.Figure(_heatmap_trace(difference, labels, field_names(labels),
                                   f"{rows_title}: %{{y}}<br>{columns_title}: %{{x}}", value_format="+.2f",
                                   show_values=True, colorscale=DIVERGING_SCALE, zmid=0.0, zmin=-bound, zmax=bound,
                                   colorbar=dict(title=dict(text=value_name.replace(" ", "<br>", 1)))))
    fig.data[0].hovertemplate = fig.data[0].hovertemplate.replace("value:", f"{value_name}:")
    fig.update_layout(title=title, height=max(320, 160 + _row_px(len(labels)) * len(labels)),
                      margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(title=columns_title, tickangle=-30, showgrid=False)
    fig.update_yaxes(title=rows_title, autorange="reversed", showgrid=False)
    _many_fields(fig, len(labels))
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


# ----------------------------------------------------------------------------- field interactions
# Pairwise Shapley interactions (k-SII, order 2) between fields, in logit units: the same field order, labels and
# orientation as the attention maps (row = first field, top to bottom), so the two can sit side by side.

ROW_FIELD_AXIS = "field i (row)"
COLUMN_FIELD_AXIS = "field j (column)"
SMALLEST_INTERACTION_SCALE = 1e-3  # an all-zero interaction map still gets a colour range (and reads as white/pale)


def _interaction_matrix(name: str, matrix, labels: Sequence[str], *, signed: bool) -> tuple[np.ndarray, list[str]]:
    """A symmetric (F, F) interaction map with its diagonal set to NaN (a field does not interact with itself)."""
    matrix = np.array(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise FigureError(f"{name} must be a square (fields x fields) matrix, got shape {matrix.shape}.")
    labels = _check_labels("labels", labels, matrix.shape[0], f"{name} ({matrix.shape})")
    off = ~np.eye(len(labels), dtype=bool)
    if not np.isfinite(matrix[off]).all():
        raise FigureError(f"{name} holds NaN or infinite values off the diagonal.")
    gap = float(np.abs(matrix - matrix.T)[off].max()) if len(labels) > 1 else 0.0
    if gap > 1e-6 * max(float(np.abs(matrix[off]).max()), 1.0):
        raise FigureError(f"{name} must be symmetric (the interaction of fields i and j is that of j and i); "
                          f"the largest |{name} - {name}.T| is {gap:.3g}.")
    if not signed and (matrix[off] < 0).any():
        raise FigureError(f"{name} has negative values ({matrix[off].min():+.3g}) but signed=False draws a mean "
                          "|interaction| from 0; pass signed=True for one sample's signed values.")
    np.fill_diagonal(matrix, np.nan)
    return matrix, labels


def _interaction_axis(matrix: np.ndarray, *, signed: bool, title: str, smallest: float = SMALLEST_INTERACTION_SCALE,
                      **colorbar) -> dict:
    """Signed: diverging, white at 0, symmetric bounds. Unsigned (a mean |interaction|): sequential from 0."""
    largest = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 0.0
    bound = max(largest, smallest)
    bar = dict(title=dict(text=title), **colorbar)
    if signed:
        return dict(colorscale=DIVERGING_SCALE, cmin=-bound, cmax=bound, cmid=0.0, colorbar=bar)
    return dict(colorscale=INTERACTION_SCALE, cmin=0.0, cmax=bound, colorbar=bar)


def _cell_text(value: float, spec: str) -> str:
    """`value` formatted by `spec`, with no minus sign on a value that rounds to zero ("-0.00" reads as a change)."""
    text = format(value, spec)
    return text.replace("-", "+" if "+" in spec else "", 1) if text.startswith("-") and not any(
        c in "123456789" for c in text) else text


def _interaction_trace(matrix: np.ndarray, labels: list[str], *, signed: bool, main: np.ndarray | None = None,
                       coloraxis: str = "coloraxis", name: str | None = None, what: str = "") -> go.Heatmap:
    """Cells hold the values (blank diagonal); the hover names both fields, `Gender=M × Genre=Drama: +0.123 logit`,
    and on the diagonal says it is not an interaction (with the field's main effect when `main` is given)."""
    cell, exact = ("+.2f", "+.3f") if signed else (".2f", ".3f")
    prefix = "" if signed else "mean |interaction| "
    size = len(labels)
    text, hover = [], []
    for i in range(size):
        text.append(["" if i == j else _cell_text(matrix[i, j], cell) for j in range(size)])
        row = []
        for j in range(size):
            if i == j:
                line = f"{labels[i]}: the diagonal is not an interaction"
                if main is not None:
                    line += f"<br>main effect {main[i]:+.3f} logit"
            else:
                line = f"{labels[i]} × {labels[j]}: {prefix}{format(matrix[i, j], exact)} logit{what}"
            row.append(line)
        hover.append(row)
    return go.Heatmap(z=matrix, x=field_names(labels), y=labels, xgap=1, ygap=1, coloraxis=coloraxis, name=name,
                      text=text, texttemplate="%{text}", customdata=hover, hoverongaps=True,
                      hovertemplate="%{customdata}<extra></extra>")


def _same_shape(name: str, value, other_name: str, other: np.ndarray) -> None:
    shape = np.shape(value)
    if shape != other.shape:
        raise FigureError(f"{name} has shape {shape} but {other_name} has {other.shape}; both are (fields, fields) "
                          "maps over the same fields in the same order.")


def _main_effects(main, size: int) -> np.ndarray | None:
    if main is None:
        return None
    main = _as_array("main", main, 1)
    if len(main) != size:
        raise FigureError(f"main must hold one first-order value per field ({size}), got {len(main)}.")
    return main


def interaction_heatmap(matrix, labels: Sequence[str], *, signed: bool,
                        title: str = "Field interactions (pairwise Shapley, k-SII)", main=None) -> go.Figure:
    """An (F, F) symmetric map of pairwise interactions in logit units.

    signed=True (one sample): diverging, white at 0, symmetric bounds; signed=False (a split's mean |interaction|):
    sequential from 0. The diagonal is blank; `main` (F,) first-order values appear in its hover only.
    """
    matrix, labels = _interaction_matrix("matrix", matrix, labels, signed=signed)
    main = _main_effects(main, len(labels))
    fig = go.Figure(_interaction_trace(matrix, labels, signed=signed, main=main))
    fig.update_layout(title=title, coloraxis=_interaction_axis(
        matrix, signed=signed, title="interaction<br>(logit)" if signed else "mean<br>|interaction|<br>(logit)"),
        height=max(320, 160 + _row_px(len(labels)) * len(labels)), margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor=BLANK)
    fig.update_xaxes(title=COLUMN_FIELD_AXIS, tickangle=-30, showgrid=False)
    fig.update_yaxes(title=ROW_FIELD_AXIS, autorange="reversed", showgrid=False)
    _many_fields(fig, len(labels))
    return fig


def attention_interaction_side_by_side(attention, interaction, labels: Sequence[str], *, signed: bool,
                                       title: str = "Attention beside field interactions", main=None,
                                       attention_title: str = "Attention (mean of layers and heads)",
                                       interaction_title: str = "Interaction (k-SII, logit)",
                                       reading: str = "raw", unit: str = "attention") -> go.Figure:
    """ONE figure, two panels: left the (F, F) attention (raw alpha on the relative-to-uniform scale; another
    `reading` on its own scale from 0), right the (F, F) interaction map, same field order and labels, the row
    labels written once, each with its own colour bar."""
    attention, labels = _square("attention", attention, labels)
    attention = _check_weights("attention", attention) if reading == "raw" else _reading_values(reading, attention)
    _same_shape("interaction", interaction, "attention", attention)
    interaction, _ = _interaction_matrix("interaction", interaction, labels, signed=signed)
    main = _main_effects(main, len(labels))
    left = _attention_trace(attention, labels, field_names(labels), "attention<br>", show_values=True,
                            name="attention") if reading == "raw" else \
        _reading_trace(attention, labels, field_names(labels), f"{unit}<br>", show_values=len(labels) <= MANY_FIELDS,
                       unit=unit, name="attention")
    traces = [left,
              _interaction_trace(interaction, labels, signed=signed, main=main, coloraxis="coloraxis2",
                                 name="interaction")]
    layout = _grid_layout(1, 2, [attention_title, interaction_title], traces, domains=[(0.0, 0.48), (0.52, 1.0)])
    layout["xaxis2"]["title"] = COLUMN_FIELD_AXIS
    fig = go.Figure(traces, layout)
    # Both colour bars on the right, stacked (attention's on top), so they never cover a panel at any page width.
    fig.update_layout(
        title=title, coloraxis=_uniform_axis(_uniform_bound(traces[0].z), title_text="attention<br>vs uniform",
                                             x=1.02, y=1.0, yanchor="top", len=0.48) if reading == "raw" else
        _reading_axis(attention, unit, x=1.02, y=1.0, yanchor="top", len=0.48),
        coloraxis2=_interaction_axis(interaction, signed=signed, x=1.02, y=0.0, yanchor="bottom", len=0.48,
                                     title="interaction<br>(logit)" if signed else "mean<br>|interaction|<br>(logit)"),
        height=max(380, 220 + _row_px(len(labels)) * len(labels)), margin=dict(l=10, r=10, t=80, b=10), plot_bgcolor=BLANK)
    _many_fields(fig, len(labels), columns=2)
    return fig


def interaction_change_heatmap(before, after, labels: Sequence[str], *,
                               title: str = "Change in field interactions (after − before)") -> go.Figure:
    """The signed change after − before of two (F, F) interaction maps (What-if page), blank diagonal, white = no
    change, symmetric bounds never below SMALLEST_CHANGE_SCALE so noise stays pale."""
    before, labels = _interaction_matrix("before", before, labels, signed=True)
    _same_shape("after", after, "before", before)
    after, _ = _interaction_matrix("after", after, labels, signed=True)
    return _change_figure(after - before, labels, what="after − before", title=title)


def interaction_difference_heatmap(first, second, labels: Sequence[str], *, names: tuple[str, str],
                                   title: str | None = None) -> go.Figure:
    """Two runs' (F, F) mean |interaction| maps compared: second − first (B − A, `names` = (A, B)), blank diagonal,
    red where B combines the pair more, blue where less, white = the same; symmetric bounds never below
    SMALLEST_CHANGE_SCALE."""
    first, labels = _interaction_matrix("first", first, labels, signed=False)
    _same_shape("second", second, "first", first)
    second, _ = _interaction_matrix("second", second, labels, signed=False)
    a, b = names
    return _change_figure(second - first, labels, what=f"{b} − {a}",
                          title=title or f"Mean |interaction|: {b} − {a} (red: {b} combines the pair more)")


def _change_figure(change: np.ndarray, labels: list[str], *, what: str, title: str) -> go.Figure:
    """A signed (F, F) change of interaction maps (NaN diagonal), white at 0; `what` names it in the hover."""
    fig = go.Figure(_interaction_trace(change, labels, signed=True, what=f" ({what})"))
    fig.update_layout(title=title, coloraxis=_interaction_axis(change, signed=True, smallest=SMALLEST_CHANGE_SCALE,
                                                                title="change<br>(logit)"),
                      height=max(320, 160 + _row_px(len(labels)) * len(labels)), margin=dict(l=10, r=10, t=60, b=10),
                      plot_bgcolor=BLANK)
    fig.update_xaxes(title=COLUMN_FIELD_AXIS, tickangle=-30, showgrid=False)
    fig.update_yaxes(title=ROW_FIELD_AXIS, autorange="reversed", showgrid=False)
    _many_fields(fig, len(labels))
    return fig


def _rho_text(rho: float) -> str:
    return "undefined (constant)" if not np.isfinite(rho) else f"{rho:+.2f}"


def agreement_scatter(attention_pairs, interaction_pairs, pair_labels: Sequence[str], *, rho: float,
                      title: str = "Does attention follow the interactions?", uniform_weight: float | None = None,
                      x_title: str = "attention between the two fields, (α_ij + α_ji) / 2",
                      y_title: str = "interaction strength |k-SII| (logit)") -> go.Figure:
    """One labelled point per field pair (x: symmetrised attention weight, y: interaction strength), with the
    Spearman ρ under the title. `uniform_weight` (1/F) draws a dotted line where attention would be uniform."""
    x = _as_array("attention_pairs", attention_pairs, 1)
    y = _as_array("interaction_pairs", interaction_pairs, 1)
    if len(x) != len(y):
        raise FigureError(f"attention_pairs has {len(x)} pairs but interaction_pairs has {len(y)}; "
                          "they must list the same field pairs in the same order.")
    pairs = _check_labels("pair_labels", pair_labels, len(x), "attention_pairs")
    if len(x) <= MAX_SCATTER_LABELS:
        positions = _label_positions(x, y, pairs)
    else:  # the strongest first, each label only where it overlaps none already drawn; hover names every point
        positions = _label_positions(x, y, pairs, order=_strongest_first(x, y), most=MAX_SCATTER_LABELS,
                                     width_px=450)  # as narrow as a half-width column: no overlap there either
    shown = np.array([position is not None for position in positions], dtype=bool)  # (P,)
    positions = [position or "top center" for position in positions]
    fig = go.Figure(go.Scatter(x=x, y=y, text=pairs, mode="markers+text", name="field pairs",
                               texttemplate=["%{text}" if keep else "" for keep in shown],
                               textposition=list(positions), textfont=dict(size=10, color="#444"),
                               marker=dict(size=8, color="#1f77b4"),
                               hovertemplate="%{text}<br>attention %{x:.3f}<br>interaction %{y:.3f} logit"
                                             "<extra></extra>"))
    if uniform_weight is not None:
        fig.add_vline(x=float(uniform_weight), line=dict(dash="dot", color="#888"), annotation_position="bottom right",
                      annotation=dict(text="uniform 1/F", font=dict(size=10, color="#666")))
    statement = (f"Spearman ρ = {rho:.2f} over {len(x)} pairs" if np.isfinite(rho)
                 else f"Spearman ρ undefined over {len(x)} pairs (one side is constant)")
    if not shown.all():
        statement += "<br>labels: the strongest pairs that fit; hover names every pair"
    fig.update_layout(title=title, height=460, margin=dict(l=10, r=10, t=90, b=10), showlegend=False,
                      annotations=[*fig.layout.annotations,
                                   dict(text=statement, x=0, y=1.02, xref="paper", yref="paper", xanchor="left",
                                        yanchor="bottom", showarrow=False, font=dict(size=13))])
    # Room around the points for their text labels (about a label's width each side), so none is cut off.
    low, high = float(min(x.min(), uniform_weight or x.min())), float(max(x.max(), uniform_weight or x.max()))
    pad = max(high - low, 1e-3) * 0.35
    top = float(y.max()) if len(y) else 1.0
    fig.update_xaxes(title=x_title, range=[low - pad, high + pad])
    fig.update_yaxes(title=y_title, range=[min(0.0, float(y.min())) - 0.05 * max(top, 1e-6), top * 1.12 + 1e-6])
    return fig


# A scatter of more field pairs than this (9 fields: MovieLens with its ids) labels only the strongest that fit: 39
# fields have 741 pairs, whose labels drew one unreadable blob, and placing them all took ~0.8 s a rerun.
MAX_SCATTER_LABELS = 36


def _strongest_first(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Every point once, the strongest by y and by x in turns (y first)."""
    by_y, by_x = np.argsort(-y, kind="stable"), np.argsort(-x, kind="stable")
    seen, order = set(), []
    for pair in zip(by_y.tolist(), by_x.tolist()):
        for i in pair:
            if i not in seen:
                seen.add(i)
                order.append(i)
    return order


def _label_positions(x: np.ndarray, y: np.ndarray, labels: Sequence[str], *, order: Sequence[int] | None = None,
                     most: int | None = None, width_px: float = 800, height_px: float = 340, char_px: float = 5.6,
                     line_px: float = 13) -> list[str | None]:
    """A text position per point ("top center" first) chosen so labels overlap each other as little as a greedy pass
    can manage, assuming a plot of about width_px x height_px (a 10 px font is ~5.6 px per character). Points are
    placed top first, or in `order`; with `most`, a label that would overlap one already placed is left out (None),
    and at most `most` are placed."""
    span_x, span_y = float(np.ptp(x)) or 1.0, float(np.ptp(y)) or 1.0
    px, py = (x - x.min()) / span_x * width_px, (y - y.min()) / span_y * height_px  # in pixels, y up
    placed: list[tuple[float, float, float, float]] = []
    positions: list[str | None] = ["top center" if most is None else None] * len(labels)
    for i in (order if order is not None else sorted(range(len(labels)), key=lambda i: -py[i])):
        if most is not None and len(placed) >= most:
            break
        w, h, gap = char_px * len(labels[i]), line_px, 6.0
        boxes = {"top center": (px[i] - w / 2, px[i] + w / 2, py[i] + gap, py[i] + gap + h),
                 "bottom center": (px[i] - w / 2, px[i] + w / 2, py[i] - gap - h, py[i] - gap),
                 "middle right": (px[i] + gap, px[i] + gap + w, py[i] - h / 2, py[i] + h / 2),
                 "middle left": (px[i] - gap - w, px[i] - gap, py[i] - h / 2, py[i] + h / 2)}

        def clash(box):
            return sum(max(0.0, min(box[1], b[1]) - max(box[0], b[0])) * max(0.0, min(box[3], b[3]) - max(box[2], b[2]))
                       for b in placed)

        overlap = {name: clash(box) for name, box in boxes.items()}
        best = min(overlap, key=overlap.get)  # the least overlap; ties: the first in the order above
        if most is not None and overlap[best] > 0:
            continue
        positions[i] = best
        placed.append(boxes[best])
    return positions


def agreement_bars(rho: Mapping[str, float], *, title: str = "Agreement of attention and interactions (Spearman ρ)"
                   ) -> go.Figure:
    """Spearman ρ per view (`overall`, `layer 1`, `layer 1 head 2` ...) as horizontal bars on a fixed [-1, 1] axis,
    coloured by sign; a NaN (e.g. a view whose attention is constant) is a labelled gap, never a silent 0."""
    if not rho:
        raise FigureError("rho is empty; pass at least one view, e.g. {'overall': 0.3}.")
    names = [str(name) for name in rho]
    values = np.array([float(value) for value in rho.values()])
    bad = [name for name, value in zip(names, values) if np.isfinite(value) and abs(value) > 1 + 1e-9]
    if bad or np.isinf(values).any():
        raise FigureError(f"rho[{(bad or names)[0]!r}] is outside [-1, 1]; a Spearman correlation lies in [-1, 1].")
    defined = np.isfinite(values)
    colours = [POSITIVE if value >= 0 else NEGATIVE for value in np.nan_to_num(values)]
    fig = go.Figure(go.Bar(x=[float(v) if ok else None for v, ok in zip(values, defined)], y=names, orientation="h",
                           name="Spearman ρ", marker_color=colours,
                           text=[_rho_text(v) if ok else "" for v, ok in zip(values, defined)], textposition="auto",
                           cliponaxis=False,
                           hovertemplate="%{y}: ρ = %{x:+.2f}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="#444", width=1))
    fig.update_layout(title=title, height=max(240, 120 + 28 * len(names)), margin=dict(l=10, r=50, t=60, b=10),
                      showlegend=False,
                      annotations=[dict(text="undefined (constant)", x=0.03, y=name, xref="x", yref="y", xanchor="left",
                                        showarrow=False, font=dict(size=11, color="#777", style="italic"))
                                   for name, ok in zip(names, defined) if not ok])
    fig.update_xaxes(range=[-1, 1], title="Spearman ρ (attention vs interaction strength)",
                     tickvals=[-1, -0.5, 0, 0.5, 1])
    fig.update_yaxes(autorange="reversed")
    return fig


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


def correlation_cells_written(layers: int, fields: int) -> bool:
    """Whether `correlation_figure` writes each weight in its cells: up to 3 layers (4 panels) and MANY_FIELDS
    fields; past that the numbers are too small to read and the hover alone gives them."""
    return layers + 1 <= 4 and fields <= MANY_FIELDS


def correlation_figure(per_layer, fields: Sequence[str], *, count: int, description: str = "all samples",
                       entropy=None, uniform=None) -> go.Figure:
    """The paper's Fig. 7(b): mean attention over a set of samples, averaged over heads and layers,
    beside each layer's own average, on one relative-to-uniform colour scale. per_layer is (L, F, F);
    `entropy` and `uniform` (L + 1,) flag the panels (the overall mean first)."""
    per_layer, fields = _square("per_layer", per_layer, fields, leading=1)
    layers = per_layer.shape[0]
    if layers == 0:
        raise FigureError("per_layer has no layers (a 0-layer model has no attention to average).")
    per_layer = _check_weights("per_layer", per_layer)
    entropy, flags = _flags(entropy, uniform, (layers + 1,), "panel (all layers, then each layer)")
    matrices = [per_layer.mean(axis=0)] + list(per_layer)
    names = ["all layers"] + [f"layer {l + 1}" for l in range(layers)]
    written = correlation_cells_written(len(matrices) - 1, len(fields))
    traces = [_attention_trace(matrix, fields, fields, f"{names[i]}<br>", show_values=written, name=names[i])
              for i, matrix in enumerate(matrices)]
    titles = [head_title(name, None if entropy is None else entropy[i], flags[i]) for i, name in enumerate(names)]
    fig = go.Figure(traces, _grid_layout(1, len(matrices), titles, traces))
    fig.update_layout(title=f"Mean attention over {count:,} samples ({description})",
                      coloraxis=_uniform_axis(_uniform_bound(uniform_colour(per_layer), uniform_colour(matrices[0]))),
                      height=160 + _row_px(len(fields)) * len(fields), margin=dict(l=10, r=10, t=80, b=10))
    _many_fields(fig, len(fields), columns=len(matrices))
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
    """The numbers behind a figure, one row per cell or point: trace, row/y, column/x, value.

    An attention map's value is the weight alpha itself, not its colour value log2(alpha * F); a blank value is a
    cell with no number (an interaction map's diagonal, an undefined correlation); a labelled point (a scatter
    with text) writes its label as the row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trace", "y", "x", "value"])
    for index, trace in enumerate(fig.data):
        name = trace.name or _subplot_title(fig, index) or f"trace {index + 1}"
        z = getattr(trace, "z", None)
        if z is not None:
            if isinstance(trace.meta, dict) and "colour" in trace.meta and trace.customdata is not None:
                z = np.asarray(trace.customdata, dtype=float)[..., 0]  # the weight, not the colour
            for row_label, row in zip(trace.y, z):
                for column_label, value in zip(trace.x, row):
                    writer.writerow([name, row_label, column_label, _number(value)])
        elif getattr(trace, "orientation", None) == "h":
            for y, x in zip(trace.y, trace.x):
                writer.writerow([name, y, "", _number(x)])
        else:
            text = getattr(trace, "text", None)
            labels = list(text) if text is not None and not isinstance(text, str) else [""] * len(trace.x)
            for label, x, y in zip(labels, trace.x, trace.y):
                writer.writerow([name, label, x, _number(y)])
    return out.getvalue()


def _number(value) -> str:
    """A CSV cell: the value to 6 significant digits, blank for None or NaN."""
    if value is None or not np.isfinite(float(value)):
        return ""
    return f"{float(value):.6g}"


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
