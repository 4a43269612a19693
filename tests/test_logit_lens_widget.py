"""LogitLens without a browser: the composite's table state, its linked plots, and decoding only
the stage shown."""

from __future__ import annotations

import numpy as np
import pytest

from _models import tiny_ids, tiny_inspector
from lmscope.errors import InputError
from lmscope.widgets.logit_lens import LogitLens


def test_composite_links_table_and_plots():
    tr = tiny_inspector("llama").run(tiny_ids(12))
    w = LogitLens(tr, top_k=3, stage="both", targets=[5, 9])
    assert w.table.top["post"]["shape"] == [3, 12, 3] and w.table.top["post"]["dtype"] == "int32"
    assert w.table.probs["mid"]["dtype"] == "float16"
    # every id shown is in the string table, and the table holds only ids that occur
    ids = np.frombuffer(w.table.string_ids["data"], dtype=np.int32)
    assert set(ids.tolist()) == {
        *w.results["post"].token_ids.flatten().tolist(),
        *w.results["mid"].token_ids.flatten().tolist(),
        5,
        9,
    }
    assert w.token == 11 and w.table.token == 11
    # focusing a column in the table moves the target line and the scatter
    w.table.token = 4
    assert w.token == 4
    np.testing.assert_allclose(w._lines.y[0], w.results["post"].target_probs[:, 4, 0].numpy())
    assert [m.visible for m in w._scatter] == [True, True, False, False]
    assert [m.display_legend for m in w._scatter] == [True, True, False, False]  # no blank rows
    # token strings repeat ('�' for several byte pieces): bqplot must not key points by them
    assert not any(m.names_unique for m in w._scatter)
    w.layer = 1
    top = w.results["post"].probs[1, 4, 0].item()
    assert w._scatter[0].y[0] == pytest.approx(top, rel=1e-6)
    w.metric = "rank"
    np.testing.assert_array_equal(w._lines.y[1], w.results["post"].target_ranks[:, 4, 1].numpy())
    w.compare_positions = [2]
    assert [m.visible for m in w._scatter] == [True, True, True, False]
    assert [m.display_legend for m in w._scatter] == [True, True, True, False]
    with pytest.raises(InputError, match="stage must be one of post, mid, both"):
        LogitLens(tr, stage="pre")
    # only the stage shown is decoded; another is decoded when asked for
    one = LogitLens(tr, top_k=3)
    assert list(one.results) == ["post"] and one.table.stages == ["post"]
    one.table.stage = "mid"  # what the browser's stage menu sets
    assert list(one.results) == ["post", "mid"] and one.table.stages == ["post", "mid"]
    assert one.table.top["mid"]["shape"] == [3, 12, 3]


def test_plots_name_whole_layers_and_keep_legends_short():
    from lmscope.widgets import plots

    tr = tiny_inspector("llama").run(tiny_ids(6))
    w = LogitLens(tr, top_k=3)
    # a 2-layer model gets ticks 0 and 1, not bqplot's fractions printed as '0 0 0 1 1'
    np.testing.assert_array_equal(w.line_fig.axes[0].tick_values, np.arange(tr.n_layers))
    np.testing.assert_array_equal(plots.layer_ticks(30), np.arange(0, 30, 2))
    assert len(plots.layer_ticks(100)) <= 16
    assert plots.count_ticks(3).tolist() == [0, 1, 2, 3]  # small counts: whole, each once
    assert plots.count_ticks(13).tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert plots.count_ticks(1300).tolist() == list(range(0, 1401, 200))
    long = "<script>window.pwned=2</script>"
    most = plots.LEGEND_COLUMNS
    assert (
        plots.legend_text(long) == long[: most - 1] + "…" and plots.legend_text("Paris") == "Paris"
    )
    # the token is cut, what is around it kept whole; a wide character counts two columns
    assert plots.legend_text(long, before="8191: ") == "8191: <script>win…"
    assert plots.legend_text("東京" * 10, after=" (post)") == "東京東京東…" + " (post)"
    assert plots.fit_text("東京", 4) == "東京" and plots.fit_text("東京x", 4) == "東…"
    title = plots.title_text("targets at position 8191 (", long, ")")
    assert title == "targets at position 8191 (<scrip…)" and len(title) == plots.TITLE_COLUMNS
    assert all(len(m.labels[0]) <= most for m in w._scatter if m.visible)
