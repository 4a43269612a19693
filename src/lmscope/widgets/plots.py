"""The bqplot pieces the composites draw with: a figure's two axes and the figure itself, so
every plot in lmscope has the same margins, label styles and layout rules."""

from __future__ import annotations

import math
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


def legend_text(text: str, most: int = 24) -> str:
    """A legend entry cut to `most` characters: bqplot grows a legend past its figure's edge."""
    return text if len(text) <= most else text[: most - 1] + "…"


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
