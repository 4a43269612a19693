"""The bqplot pieces the composites draw with: a figure's two axes and the figure itself, so
every plot in lmscope has the same margins, label styles and layout rules."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

import bqplot as bq
import ipywidgets as ipw
import numpy as np


def axes(
    x: bq.Scale,
    y: bq.Scale,
    *,
    x_label: str,
    y_label: str,
    x_format: str | None = None,
    y_format: str | None = None,
    x_ticks: Any = None,
    y_ticks: Any = None,
    grid_x: str | None = None,
    grid_y: str | None = None,
) -> list[bq.Axis]:
    """A horizontal and a vertical axis; formats, tick values and grid lines where given."""

    def axis(scale, label, tick_format, ticks, grid, **more):
        given = {"tick_format": tick_format, "tick_values": ticks, "grid_lines": grid}
        return bq.Axis(
            scale=scale, label=label, **{k: v for k, v in given.items() if v is not None}, **more
        )

    return [
        axis(x, x_label, x_format, x_ticks, grid_x),
        axis(y, y_label, y_format, y_ticks, grid_y, orientation="vertical"),
    ]


def layer_ticks(n_layers: int, most: int = 16) -> np.ndarray:
    """Whole layer numbers for an axis, at most `most` of them: bqplot's own ticks on a short
    range are fractions, which an integer format prints as '0 0 0 1 1 1'."""
    step = max(1, math.ceil(n_layers / most))
    return np.arange(0, n_layers, step)


def count_ticks(top: float, most: int = 8) -> np.ndarray:
    """Whole counts from 0 to at least `top`, 1, 2 or 5 times a power of ten apart, at most
    `most` + 1 of them: bqplot's own ticks under a small count are fractions, which an integer
    format prints as '0 0 1 1 2 2'."""
    top = max(1.0, float(top))
    power = 1
    while True:
        for step in (power, 2 * power, 5 * power):
            if math.ceil(top / step) <= most:
                return np.arange(0, math.ceil(top / step) * step + 1, step)
        power *= 10


#: a plot half a view wide is at least this wide (its figure's min_width), so that the budgets
#: below hold: bqplot sizes a legend's box by its longest label's length (11 px a character,
#: 14 px type) and never wraps or cuts a title
HALF_MIN_WIDTH = "300px"
#: a plot title's type, and the columns it keeps in a 235 px plot area (about 7 px a column)
TITLE_STYLE = {"font-size": "14px"}
TITLE_COLUMNS = 34
#: the columns a legend entry keeps: its box (columns + 2) x 11 px from 8 px in stays inside
#: a 235 px plot area when the legend is on the plot's left (bqplot's right-hand legends are
#: shifted left by 16 px a character, past the plot's edge)
LEGEND_COLUMNS = 18


def _columns(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def fit_text(text: str, most: int) -> str:
    """`text` cut to `most` columns with an ellipsis (a wide character, CJK or emoji, counts
    two): plain text, which bqplot sets as a text node."""
    if sum(map(_columns, text)) <= most:
        return text
    out, used = [], 0
    for ch in text:
        used += _columns(ch)
        if used > most - 1:
            break
        out.append(ch)
    return "".join(out) + "…"


def legend_text(text: str, *, before: str = "", after: str = "") -> str:
    """A legend entry `before + text + after` in LEGEND_COLUMNS: `text` (a token) is cut with
    an ellipsis, `before` and `after` (a position, a stage) are kept whole."""
    room = max(4, LEGEND_COLUMNS - len(before) - len(after))
    return f"{before}{fit_text(text, room)}{after}"


def title_text(before: str, text: str, after: str = "") -> str:
    """A plot title `before + text + after` in TITLE_COLUMNS, `text` cut with an ellipsis."""
    room = max(4, TITLE_COLUMNS - len(before) - len(after))
    return f"{before}{fit_text(text, room)}{after}"


def figure(
    marks: list,
    axes: list[bq.Axis],
    *,
    width: str,
    height: str,
    min_width: str | None = None,
    margin: tuple[int, int, int, int] = (40, 45, 55, 10),
    **options: Any,
) -> bq.Figure:
    """A figure of `marks` over `axes`; margin is (top, bottom, left, right) in px."""
    top, bottom, left, right = margin
    size = {"width": width, "height": height} | ({"min_width": min_width} if min_width else {})
    return bq.Figure(
        marks=marks,
        axes=axes,
        layout=ipw.Layout(**size),
        fig_margin={"top": top, "bottom": bottom, "left": left, "right": right},
        **options,
    )
