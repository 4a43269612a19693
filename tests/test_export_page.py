"""Saved pages with bqplot figures (`widgets/export.py`): the widget manager's code as the page
runs it, and the room each figure holds until the manager draws it."""

from __future__ import annotations

import re

import ipywidgets as ipw

from _models import tiny_ids, tiny_inspector
from lmscope.widgets import export
from lmscope.widgets.norm_plot import NormPlot


def test_page_leaves_out_manager_code_it_never_runs():
    page = export.render_html(NormPlot(tiny_inspector("llama").run(tiny_ids(24))))
    # ipywidgets 7's AMD copies, asked for by no widget the page holds
    assert 'define("@jupyter-widgets/base7"' not in page
    assert 'define("@jupyter-widgets/controls7"' not in page
    assert 'define("@jupyter-widgets/base"' in page and 'define("@jupyter-widgets/controls"' in page
    # the state's schema is not compiled at load (the page wrote that state itself)
    assert "gt.compile(At)" not in page and "E=()=>!0,$=()=>!0;" in page
    # each figure's box holds its height until the manager draws it there
    held = re.findall(r'<div class="lms-export-widget" style="min-height: (\d+)px">', page)
    assert sorted(map(int, held)) == [280, 360]


def test_reserved_height_of_rows_and_columns():
    def fig(height):
        return ipw.Box(layout=ipw.Layout(height=height))

    assert export._reserved_height(fig("300px")) == 300
    assert export._reserved_height(ipw.HBox([fig("300px"), fig("200px")])) == 300
    assert export._reserved_height(ipw.VBox([fig("300px"), fig("200px")])) == 500
    assert export._reserved_height(ipw.HBox([fig("40%"), ipw.Button()])) == 0
