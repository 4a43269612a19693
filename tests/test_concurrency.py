"""Concurrent use without a browser: two dashboards on one inspector, runs from two threads,
rapid selection changes. Every view must show its own trace's data, never a neighbour's or a
stale one (the browser side of the same story is in tests/browser/test_concurrency_browser.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from _models import default_inspector
from lmscope import attention
from lmscope._wire import decode
from lmscope.widgets.dashboard import TABS, Dashboard

PROMPTS = (
    ("I love you.", "The capital of Poland is"),
    ("def add(a, b):\n    return a + b", "Hungarian rock has been part of the popular music"),
)


def _drawn_lines(lines_view) -> np.ndarray:
    """The [rows, rows] matrix the view's synced line list stands for (0 where no line)."""
    sent = lines_view.lines
    n = len(lines_view.tokens)
    out = np.zeros((n, n), dtype=np.float32)
    q, k = decode(sent["query"]).astype(int), decode(sent["key"]).astype(int)
    out[q, k] = decode(sent["value"]).astype(np.float32)
    return out


def _assert_shows_own_trace(dash: Dashboard) -> None:
    tr = dash.trace
    tokens = dash.views["Tokens"]
    assert tokens.tokens == list(tr.tokens)
    assert decode(tokens.ids).tolist() == tr.input_ids.tolist()
    grid, lines = dash.views["Attention"].grid, dash.views["Attention"].lines
    assert grid.trace is tr and lines.trace is tr
    assert lines.tokens == list(tr.tokens)
    truth = attention.pattern(tr, layer=lines.layer, head=lines.head).float().numpy()
    drawn = _drawn_lines(lines)
    mask = drawn > 0
    assert mask.any()
    assert np.abs(drawn[mask] - truth[mask]).max() <= 1e-3
    assert dash.prompt.value == tr.text
    assert f"{tr.seq_len} tokens" in dash.status.value


@pytest.mark.real_model
def test_two_dashboards_on_one_inspector_run_from_two_threads():
    ins = default_inspector()
    dashes = [ins.show(p[0], tab="Attention") for p in PROMPTS]
    for d in dashes:
        d.view("Tokens")
    failures: list[BaseException] = []
    start = threading.Barrier(len(dashes))

    def work(dash: Dashboard, prompts: tuple[str, ...]) -> None:
        try:
            start.wait()
            for _ in range(2):
                for text in prompts:
                    dash.run(text)
                    dash.view("Tokens")
                    _assert_shows_own_trace(dash)
        except BaseException as err:
            failures.append(err)

    threads = [
        threading.Thread(target=work, args=(d, p)) for d, p in zip(dashes, PROMPTS, strict=True)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a run never finished"
    assert not failures, failures
    for dash, prompts in zip(dashes, PROMPTS, strict=True):
        assert dash.trace.text == prompts[-1]
        assert dash.error == ""
        _assert_shows_own_trace(dash)
    # the two dashboards never share a view or a selection
    a, b = dashes
    assert a.selection is not b.selection
    assert not set(map(id, a.views.values())) & set(map(id, b.views.values()))


@pytest.mark.real_model
def test_a_new_prompt_closes_the_old_views_and_their_requests_fail_cleanly():
    ins = default_inspector()
    dash = ins.show("I love you.", tab="Tokens")
    old = dash.views["Tokens"]
    dash.run("I hate you so much.")
    new = dash.views["Tokens"]
    assert new is not old and new.tokens == list(dash.trace.tokens)
    assert old.comm is None  # closed: the browser drops its view, a late reply has nowhere to go
    # a request that reached the old view before it closed is answered from its own trace or
    # refused in words; it never borrows the new trace
    sent: list = []
    old.send = lambda content, buffers=None: sent.append(content)
    old._handle_custom_msg({"type": "lmscope:request", "id": "late", "name": "next_tokens"}, [])
    assert sent and sent[0]["id"] == "late" and not sent[0]["ok"]
    assert "view was closed" in sent[0]["error"]
    assert new.error == ""


@pytest.mark.real_model
def test_rapid_selection_changes_end_on_the_last_selection():
    ins = default_inspector()
    dash = ins.show("The quick brown fox jumps over the lazy dog.", tab="Attention")
    grid, lines = dash.views["Attention"].grid, dash.views["Attention"].lines
    rng = np.random.default_rng(0)
    picks = [(int(rng.integers(30)), int(rng.integers(9))) for _ in range(40)]
    for layer, head in picks:
        # what clicks in the grid do: the grid's selection traits, jslinked to the hub
        with grid.hold_trait_notifications():
            grid.layer, grid.head = layer, head
    layer, head = picks[-1]
    assert dash.selection.as_dict()["layer"] == layer and dash.selection.head == head
    assert (lines.layer, lines.layer_end, lines.head) == (layer, layer, head)
    assert lines.lines["of"]["layer"] == layer and lines.lines["of"]["head"] == head
    truth = attention.pattern(dash.trace, layer=layer, head=head).float().numpy()
    drawn = _drawn_lines(lines)
    assert np.abs(drawn[drawn > 0] - truth[drawn > 0]).max() <= 1e-3
    assert grid.layer == layer and lines.error == "" and dash.error == ""
    assert TABS.index("Attention") == dash.tabs.selected_index
