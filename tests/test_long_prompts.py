"""Long prompts (4,096 tokens on a tiny llama) without a browser: each view's first synced state
is small and equals the eager computation on what it covers, and what the view asks for later
(the lens columns it scrolls to) fills exactly the range asked for with the eager values."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import pytest
import torch
import transformers as tf

import lmscope
from _models import (
    _DECODER,
    PROSE_THEN_CODE,
    TINY_FAMILIES,
    default_inspector,
    hook_snapshot,
    tiny_ids,
    tiny_model,
)
from lmscope import _wire, attention, coloring, lens
from lmscope.widgets import logit_lens as logit_lens_widget
from lmscope.widgets import token_colors as token_colors_widget
from lmscope.widgets.attention_grid import AttentionGrid
from lmscope.widgets.attribution import Attribution
from lmscope.widgets.logit_lens import WINDOW, LogitLens
from lmscope.widgets.token_colors import TokenColors

LONG = 4096


@cache
def long_inspector() -> lmscope.Inspector:
    torch.manual_seed(0)
    config = tf.LlamaConfig(**{**_DECODER, "max_position_embeddings": 8192})
    return lmscope.Inspector(tf.AutoModelForCausalLM.from_config(config).eval())


@cache
def long_trace(n: int = LONG):
    return long_inspector().run(tiny_ids(n, seed=3))


def _decoded(envelope: dict) -> np.ndarray:
    return _wire.decode(envelope)


def _as_wire(values: torch.Tensor, kind: str) -> np.ndarray:
    return _wire.decode(_wire.encode(values, kind))


def test_lens_first_state_is_the_window_around_the_focus():
    tr = long_trace()
    w = LogitLens(tr, top_k=3, targets=[5])
    table = w.table
    start, stop = w.window()
    assert (start, stop) == (LONG - WINDOW, LONG)  # focused on the last position
    assert _decoded(table.columns["post"]).tolist() == list(range(start, stop))
    assert table.top["post"]["shape"] == [tr.n_layers, WINDOW, 3]
    # only the window was decoded, not the other 4,064 columns
    assert int(w.columns["post"].done.sum()) == WINDOW and "mid" not in w.columns
    # small: the window's arrays, the token labels and a string table of the ids that occur
    array_bytes = sum(
        _wire.nbytes(getattr(table, name)) for name in ("top", "probs", "columns", "target_probs")
    )
    assert array_bytes < 4 * tr.n_layers * WINDOW * 3 * 2
    assert table.synced_bytes() < 200_000
    # the synced columns equal the eager lens at those positions, string for string
    eager = lens.logit_lens(tr, top_k=3, positions=list(range(start, stop)), targets=[5])
    strings = np.array(table.strings, dtype=object)
    shown = strings[_decoded(table.top["post"])]
    assert shown.tolist() == eager.tokens
    np.testing.assert_array_equal(_decoded(table.probs["post"]), _as_wire(eager.probs, "prob"))
    np.testing.assert_array_equal(_decoded(table.target_ranks["post"]), eager.target_ranks.numpy())


def test_lens_columns_request_fills_the_range_asked_for():
    tr = long_trace()
    w = LogitLens(tr, top_k=3, targets=[5, 9])
    sent = []
    w.table.send = lambda content, buffers=None: sent.append((content, buffers))
    args = {"stages": ["post", "mid"], "start": 1000, "stop": 1040}
    message = {"type": "lmscope:request", "id": "a", "name": "columns", "args": args}
    w.table._on_custom_message(w.table, message, [])
    ((reply, buffers),) = sent
    assert reply["ok"], reply
    result = reply["result"]
    assert (result["start"], result["stop"]) == (1000, 1040)
    # exactly the range asked for was decoded (and the window), in both stages
    for stage in ("post", "mid"):
        done = w.columns[stage].done
        assert done[1000:1040].all() and not done[:1000].any()
        assert not done[1040 : LONG - WINDOW].any()
    arrays = {
        (a["stage"], a["name"]): _wire.decode({"data": buf, **a})
        for a, buf in zip(result["arrays"], buffers, strict=True)
    }
    strings = np.array(result["strings"], dtype=object)
    for stage in ("post", "mid"):
        eager = lens.logit_lens(
            tr, top_k=3, stage=stage, positions=list(range(1000, 1040)), targets=[5, 9]
        )
        assert strings[arrays[stage, "top"]].tolist() == eager.tokens
        np.testing.assert_array_equal(arrays[stage, "probs"], _as_wire(eager.probs, "prob"))
        np.testing.assert_array_equal(
            arrays[stage, "target_probs"], _as_wire(eager.target_probs, "prob")
        )
        np.testing.assert_array_equal(arrays[stage, "target_ranks"], eager.target_ranks.numpy())
    # a request past the end is cut to the prompt; a bad stage is refused in words
    sent.clear()
    args = {"stages": ["post"], "start": LONG - 3, "stop": LONG + 50}
    w.table._on_custom_message(w.table, {**message, "args": args}, [])
    assert sent[0][0]["result"]["stop"] == LONG
    sent.clear()
    w.table._on_custom_message(w.table, {**message, "args": {**args, "stages": ["pre"]}}, [])
    assert not sent[0][0]["ok"] and "stage must be one of post, mid" in sent[0][0]["error"]


def test_lens_focus_elsewhere_decodes_that_column_for_the_plots():
    tr = long_trace()
    w = LogitLens(tr, top_k=3, targets=[5])
    w.token = 10  # a linked view selects an early token
    assert w.columns["post"].done[10]
    np.testing.assert_array_equal(
        np.atleast_2d(w._lines.y)[0],  # bqplot keeps one line as a 1-D array
        lens.logit_lens(tr, top_k=3, positions=[10], targets=[5]).target_probs[:, 0, 0],
    )


def test_lens_filled_lazily_equals_the_eager_lens(monkeypatch):
    tr = long_trace(300)
    monkeypatch.setattr(logit_lens_widget, "WINDOW", 16)
    w = LogitLens(tr, top_k=4, targets=[7], token=40)
    assert int(w.columns["post"].done.sum()) == 16
    for start in (290, 0, 100, 120):  # scattered requests, overlapping the window and each other
        w.table._columns(stages=["post"], start=start, stop=start + 50)
    w.fill_all()
    assert w.columns["post"].complete
    eager = lens.logit_lens(tr, top_k=4, targets=[7])
    lazy = w.results["post"]
    assert torch.equal(lazy.token_ids, eager.token_ids)
    torch.testing.assert_close(lazy.probs, eager.probs, rtol=1e-6, atol=1e-8)
    assert torch.equal(lazy.target_ranks, eager.target_ranks)
    torch.testing.assert_close(lazy.target_probs, eager.target_probs, rtol=1e-6, atol=1e-8)
    assert lazy.tokens == eager.tokens
    # everything decoded is now what the table syncs (and what a saved page holds)
    assert _decoded(w.table.columns["post"]).tolist() == list(range(300))


@pytest.mark.parametrize("n", [5, WINDOW])
def test_lens_short_prompt_is_decoded_whole(n):
    tr = long_trace(n)
    w = LogitLens(tr, top_k=2)
    assert w.columns["post"].complete
    assert w.table.top["post"]["shape"] == [tr.n_layers, n, 2]


@pytest.mark.parametrize("mute_sink", [False, True])
def test_grid_pooled_block_by_block_equals_pooling_the_whole_pattern(monkeypatch, mute_sink):
    tr = long_trace(700)
    monkeypatch.setattr(attention, "BLOCK_BYTES", 700 * 4 * 3 * 4 * 37)  # blocks of 37 rows
    got = attention.pooled_heads(tr, 1, [0, 2, 3], 96, mute_sink=mute_sink)
    for i, h in enumerate([0, 2, 3]):
        m = tr.head(1, h).float()
        want = attention.pool(attention.without_sink(m) if mute_sink else m, 96)
        torch.testing.assert_close(got[i], want, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(_as_wire(got[i], "unit"), _as_wire(want, "unit"))


def test_grid_at_long_length_starts_from_a_first_pass_and_holds_no_full_pattern():
    tr = long_trace()
    before = tr.stored_bytes()
    grid = AttentionGrid(tr, layer=2)
    assert not grid.exact and "first pass" in grid.status
    assert grid.panel_a["shape"] == [tr.n_heads, 128, 128]
    assert grid.synced_bytes() < 200_000
    first = _decoded(grid.panel_a)
    np.testing.assert_array_equal(
        first, _as_wire(attention.first_pass_pool(tr, 2, range(tr.n_heads), 128), "unit")
    )
    grid.fill_all()  # what the kernel's idle loop does a block at a time
    assert grid.exact and grid.status == ""
    # the heads were pooled block by block: no [seq, seq] pattern was cached on the trace
    assert tr.stored_bytes() == before and tr.cached_head(2, 0) is None
    exact = _decoded(grid.panel_a)
    assert (first <= exact).all() and (first < exact).any()  # a first pass sees fewer rows
    # one head pooled from its whole pattern is the same picture
    want = attention.pool(tr.head(2, 1).float(), 128)
    np.testing.assert_array_equal(exact[1], _as_wire(want, "unit"))
    assert (exact == _as_wire(attention.grid(tr, layer=2)[0], "unit")).all()
    # by head, through every layer: each layer's one head (short enough to be exact at once)
    grid.by = "head"
    assert grid.panel_a["shape"] == [tr.n_layers, 128, 128] and grid.exact


@cache
def edited_long_trace(n: int = LONG, seed: int = 3):
    """The long prompt run again with a head of block 0 ablated: every later layer's patterns
    differ from the plain run's (the dashboard's difference grid after an edit)."""
    return long_inspector().run(tiny_ids(n, seed=seed), edits=[lmscope.Ablate(0, head=1)])


@cache
def diff_pair(n: int = 700) -> tuple:
    """A plain and an edited run of their own prompt: what these tests cache on them touches
    no other test's trace."""
    return long_inspector().run(tiny_ids(n, seed=5)), edited_long_trace(n, seed=5)


def _whole_difference(a, b, layer: int, head: int, size: int, mute_sink: bool = False):
    ma, mb = a.head(layer, head).float(), b.head(layer, head).float()
    if mute_sink:
        ma, mb = attention.without_sink(ma), attention.without_sink(mb)
    return attention.pool(ma - mb, size)


@pytest.mark.parametrize("mute_sink", [False, True])
def test_grid_difference_pooled_block_by_block_equals_pooling_the_whole_difference(
    monkeypatch, mute_sink
):
    a, b = diff_pair(700)
    monkeypatch.setattr(attention, "BLOCK_BYTES", 700 * 4 * 5 * 3 * 37)  # blocks of 37 rows
    heads = [0, 2, 3]
    got = attention.pooled_heads(a, 1, heads, 96, mute_sink=mute_sink, minus=b)
    # the grid function takes the same route (every head of the layer)
    every = attention.grid_difference(a, b, layer=1, size=96, mute_sink=mute_sink)
    torch.testing.assert_close(every[heads], got, rtol=0, atol=0)
    first = attention.first_pass_pool(a, 1, heads, 96, mute_sink=mute_sink, minus=b)
    for i, h in enumerate(heads):
        want = _whole_difference(a, b, 1, h, 96, mute_sink)
        assert (want > 0).any() and (want < 0).any()  # both signs, or the test proves little
        torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(_as_wire(got[i], "activation"), _as_wire(want, "activation"))
        # a first pass sees fewer rows: never a larger difference than the exact one
        assert (first[i].abs() <= want.abs() + 1e-7).all() and (first[i] != want).any()


def test_grid_difference_at_long_length_starts_from_a_first_pass_and_holds_no_full_pattern():
    a, b = long_trace(), edited_long_trace()

    def held() -> tuple:  # bytes each trace holds, and which heads of layer 2 it has cached
        cached = [
            [h for h in range(a.n_heads) if tr.cached_head(2, h) is not None] for tr in (a, b)
        ]
        return a.stored_bytes(), b.stored_bytes(), cached

    before = held()
    assert before[2][1] == []  # the edited run has no pattern of layer 2 yet
    grid = AttentionGrid(a, layer=2, compare=b, mode="diff")
    assert not grid.exact and grid.status.startswith("first pass")
    assert "exact max-pooling: 0%" in grid.status
    assert grid.diff["shape"] == [a.n_heads, 128, 128] and grid.panel_a is None
    assert grid.synced_bytes() < 200_000
    first = _decoded(grid.diff)
    np.testing.assert_array_equal(
        first,
        _as_wire(attention.first_pass_pool(a, 2, range(a.n_heads), 128, minus=b), "activation"),
    )
    grid.fill_all()
    assert grid.exact and grid.status == ""
    # no [seq, seq] pattern of either trace was computed whole and cached
    assert held() == before
    exact = _decoded(grid.diff)
    assert (np.abs(first) <= np.abs(exact)).all() and (first != exact).any()
    # side by side: both panels start as first passes and end exact, still nothing cached
    grid.mode = "side"
    assert not grid.exact and grid.diff is None
    grid.fill_all()
    assert grid.exact and held() == before
    # one head from its whole patterns (computed and cached now) is the same picture
    ma, mb = a.head(2, 3).float(), b.head(2, 3).float()
    for got, want, kind in (
        (exact, ma - mb, "activation"),
        (_decoded(grid.panel_a), ma, "unit"),
        (_decoded(grid.panel_b), mb, "unit"),
    ):
        np.testing.assert_array_equal(got[3], _as_wire(attention.pool(want, 128), kind))


def test_grid_difference_fills_while_the_event_loop_is_idle(monkeypatch):
    monkeypatch.setattr(attention, "BLOCK_BYTES", 700 * 4 * 5 * 4 * 37)  # blocks of 37 rows
    a, b = diff_pair(700)

    def build():
        return AttentionGrid(a, layer=1, size=64, compare=b, mode="diff")

    grid, seen = _built_under_a_running_loop(build)
    assert grid.exact and len(seen) > 3 and any("%" in s for s in seen)
    want = torch.stack([_whole_difference(a, b, 1, h, 64) for h in range(a.n_heads)])
    np.testing.assert_array_equal(_decoded(grid.diff), _as_wire(want, "activation"))


def test_grid_difference_on_the_default_model_equals_the_difference_of_whole_patterns(
    monkeypatch,
):
    # SmolLM2 at ~330 tokens, blocks of 40 query rows as a prompt 25x longer would have them:
    # the dashboard's grid after an edit (edited minus original)
    ins = default_inspector()
    ids = ins.tokenizer(PROSE_THEN_CODE * 4, return_tensors="pt").input_ids[0]
    plain = ins.run(ids)
    edited = ins.run(ids, edits=[lmscope.Ablate(2, head=4)])
    seq = plain.seq_len
    monkeypatch.setattr(attention, "BLOCK_BYTES", seq * 4 * 5 * plain.n_heads * 40)
    grid = AttentionGrid(edited, layer=6, size=64, compare=plain, mode="diff")
    assert not grid.exact and grid.diff["shape"] == [plain.n_heads, 64, 64]
    first = _decoded(grid.diff)
    grid.fill_all()
    assert grid.exact
    assert all(tr.cached_head(6, h) is None for tr in (plain, edited) for h in range(9))
    want = torch.stack([_whole_difference(edited, plain, 6, h, 64) for h in range(9)])
    assert want.abs().max() > 1e-3  # the ablation moved layer 6's attention
    got = _decoded(grid.diff)
    np.testing.assert_array_equal(got, _as_wire(want, "activation"))
    assert (np.abs(first) <= np.abs(got)).all()


def _built_under_a_running_loop(build):
    """The view `build()` makes inside a running asyncio loop, once it says it is exact, and
    every status it showed on the way. It must not be exact when built: the rest runs between
    other work. The loop is its own, in a thread: another test's browser may own this thread's."""

    async def show_and_wait():
        view = build()
        assert not view.exact
        seen = set()
        for _ in range(10_000):
            seen.add(view.status)
            if view.exact:
                break
            await asyncio.sleep(0)
        return view, seen

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, show_and_wait()).result()


def test_grid_fills_while_the_event_loop_is_idle(monkeypatch):
    monkeypatch.setattr(attention, "BLOCK_BYTES", 700 * 4 * 3 * 4 * 37)  # blocks of 37 rows
    tr = long_trace(700)

    grid, seen = _built_under_a_running_loop(lambda: AttentionGrid(tr, layer=1, size=64))
    assert grid.exact and len(seen) > 3
    want = attention.grid(tr, layer=1, size=64)[0]
    np.testing.assert_array_equal(_decoded(grid.panel_a), _as_wire(want, "unit"))


def test_token_colors_first_state_is_a_first_pass_of_the_shown_layer():
    tr = long_trace()
    w = TokenColors(tr, layer=1)
    assert tr.internals_kept  # every row is at hand: all three in the first state
    assert not w.exact and w.color_slices == [[0, 1], [1, 1], [2, 1]]
    assert "spectral colors" in w.status and "recomputing" not in w.status
    for stream in w.streams:
        want = coloring.first_pass_colors(tr, stream=stream, layer=1)
        np.testing.assert_array_equal(w.colors_at(stream, 1), _as_wire(want, "unit"))
    assert w.colors_at("attn_out", 0) is None  # no other layer yet
    assert w.neighbors is None and w.neighbors_layer == -1  # they come with the spectral work
    assert w.colors["shape"] == [3, LONG, 3]  # what was computed, no padding
    assert w.synced_bytes() < 3 * LONG * 3 + 200_000
    w.layer = 2  # the slider: that layer's first pass
    assert w.color_slices == [[0, 1], [0, 2], [1, 1], [1, 2], [2, 1], [2, 2]]
    np.testing.assert_array_equal(
        w.colors_at("attn_out", 2),
        _as_wire(coloring.first_pass_colors(tr, stream="attn_out", layer=2), "unit"),
    )


@cache
def recomputing_trace(n: int = 300):
    """A trace that keeps only the residual stream: sub-layer outputs need their block rerun."""
    model = long_inspector().model
    return lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids(n, seed=3))


def test_token_colors_show_the_residual_row_before_any_block_rerun(monkeypatch):
    monkeypatch.setattr(token_colors_widget, "EAGER_TOKENS", 100)
    tr = recomputing_trace()
    model = long_inspector().model
    hooks = hook_snapshot(model)
    assert not tr.internals_kept and not tr.stream_stored("attn_out", 1)
    w = TokenColors(tr, layer=1, n_neighbors=4)
    # the residual stream's row only: the block was not rerun for the other two
    assert not tr.stream_stored("attn_out", 1) and not tr.stream_stored("mlp_out", 1)
    assert w.color_slices == [[2, 1]] and w.colors["shape"] == [1, 300, 3]
    np.testing.assert_array_equal(
        w.colors_at("resid_post", 1),
        _as_wire(coloring.first_pass_colors(tr, stream="resid_post", layer=1), "unit"),
    )
    assert "attention output, MLP output: recomputing block 1" in w.status
    # the first step reruns block 1: its two rows arrive, the same as from a kept trace's
    w._next_step()
    assert w.color_slices == [[0, 1], [1, 1], [2, 1]] and "recomputing" not in w.status
    assert tr.stream_stored("mlp_out", 1) and tr.stream_stored("resid_post", 0)  # now cached
    kept = long_inspector().run(tiny_ids(300, seed=3))
    for stream in w.streams:
        want = coloring.first_pass_colors(kept, stream=stream, layer=1)
        np.testing.assert_array_equal(w.colors_at(stream, 1), _as_wire(want, "unit"))
    for _ in w.streams:  # then one neighbour table a step, sent with the last
        assert w.neighbors_layer == -1
        w._next_step()
    assert w.neighbors_layer == 1
    np.testing.assert_array_equal(_decoded(w.neighbors), w.neighbor_table(1))
    # a layer change in a script (no loop to run steps later): all of its rows at once
    w.layer = 2
    assert [s for s in w.color_slices if s[1] == 2] == [[0, 2], [1, 2], [2, 2]]
    w.fill_all()
    assert w.exact and w.status == ""
    assert w.colors["shape"] == [3 * tr.n_layers, 300, 3]
    np.testing.assert_array_equal(
        _decoded(w.colors).reshape(3, tr.n_layers, 300, 3), _eager_colors(300, w.streams)
    )
    np.testing.assert_array_equal(_decoded(w.neighbors), w.neighbor_table(2))
    assert hook_snapshot(model) == hooks  # every block rerun removed its hooks


def _eager_colors(n: int, streams) -> np.ndarray:
    """The spectral colors of a fresh run of the same prompt (no shared cache)."""
    fresh = long_inspector().run(tiny_ids(n, seed=3))
    rgb = torch.stack([coloring.token_colors(fresh, stream=s) for s in streams])
    return _as_wire(rgb, "unit")


def test_token_colors_filled_later_equal_the_eager_colors(monkeypatch):
    monkeypatch.setattr(token_colors_widget, "EAGER_TOKENS", 100)
    tr = long_trace(300)
    w = TokenColors(tr, layer=1, n_neighbors=4)
    assert not w.exact
    w.fill_all()
    assert w.exact and w.status == ""
    assert w.color_slices == [[r, layer] for r in range(3) for layer in range(3)]
    colors = _decoded(w.colors).reshape(3, tr.n_layers, 300, 3)
    np.testing.assert_array_equal(colors, _eager_colors(300, w.streams))
    assert w.neighbors_layer == 1
    np.testing.assert_array_equal(_decoded(w.neighbors), w.neighbor_table(1))


def test_token_colors_fill_while_the_event_loop_is_idle(monkeypatch):
    monkeypatch.setattr(token_colors_widget, "EAGER_TOKENS", 100)
    tr = long_trace(200)

    w, seen = _built_under_a_running_loop(lambda: TokenColors(tr, layer=0, n_neighbors=3))
    assert w.exact and len(seen) > 3  # progress was reported along the way
    colors = _decoded(w.colors).reshape(3, tr.n_layers, 200, 3)
    np.testing.assert_array_equal(colors, _eager_colors(200, w.streams))
    np.testing.assert_array_equal(_decoded(w.neighbors), w.neighbor_table(0))


def test_token_colors_idle_steps_are_a_block_or_a_cut_each(monkeypatch):
    """Each idle step is one block of a neighbour table, one block rerun or one normalized cut,
    and what they build equals the whole computation."""
    monkeypatch.setattr(token_colors_widget, "EAGER_TOKENS", 100)
    model = long_inspector().model
    tr = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids(300, seed=3))
    w_streams = ("attn_out", "mlp_out", "resid_post")
    kept = long_trace(300)  # the same prompt, internals kept: the whole tables, 1,024 rows a block
    whole = [coloring.token_neighbors(kept, stream=s, layer=1, n_neighbors=4) for s in w_streams]
    monkeypatch.setattr(coloring, "NEIGHBOR_ROWS", 64)  # 5 blocks of a table's 300 rows
    w = TokenColors(tr, layer=1, n_neighbors=4)
    w._next_step()  # block 1's rerun: the first pass of its rows
    assert w.color_slices == [[0, 1], [1, 1], [2, 1]]
    for _ in range(3 * 5 - 1):
        w._next_step()
        assert w.neighbors_layer == -1
    w._next_step()  # the last block of the last table: the tables are sent
    assert w.neighbors_layer == 1
    np.testing.assert_array_equal(_decoded(w.neighbors), torch.stack(whole).numpy())
    reruns = 0
    for layer in range(tr.n_layers):
        if not tr.stream_stored("attn_out", layer):  # a block's rerun is a step of its own
            reruns += 1
            w._next_step()
            assert tr.stream_stored("attn_out", layer) and tr.stream_stored("mlp_out", layer)
            assert w._spectral_done == 3 * layer
        for i in range(3):  # one normalized cut a step
            w._next_step()
            assert w._spectral_done == 3 * layer + i + 1
    assert not w.exact and reruns >= tr.n_layers - 1  # block 1 may still be cached
    assert not w._next_step()  # the colors, from the cached cuts: the last step
    assert w.exact and w._steps is None
    np.testing.assert_array_equal(
        _decoded(w.colors).reshape(3, tr.n_layers, 300, 3), _eager_colors(300, w.streams)
    )


def test_token_colors_later_layer_neighbours_come_in_steps(monkeypatch):
    """Once exact, a long prompt's slider move sends that layer's neighbours from idle steps."""
    monkeypatch.setattr(token_colors_widget, "EAGER_TOKENS", 100)
    monkeypatch.setattr(coloring, "NEIGHBOR_ROWS", 64)
    tr = long_trace(300)
    w = TokenColors(tr, layer=1, n_neighbors=4).fill_all()

    async def move():
        w.layer = 2
        assert w.neighbors_layer == 1 and w._steps is not None  # not computed in the handler
        for _ in range(100):
            await asyncio.sleep(0)
        return w.neighbors_layer

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, move()).result() == 2
    assert w._steps is None
    np.testing.assert_array_equal(_decoded(w.neighbors), w.neighbor_table(2))


def test_token_view_takes_its_softmaxes_block_by_block():
    tr = long_trace()
    w = lmscope.TokenView(tr)
    full = torch.log_softmax(tr.logits[:-1].float(), dim=-1)
    want = torch.zeros(LONG)
    want[1:] = full.gather(1, tr.input_ids[1:, None])[:, 0].exp()
    np.testing.assert_array_equal(_decoded(w.confidence), _as_wire(want, "prob"))
    result, buffers = w._next_tokens(top_k=3)
    top = torch.topk(torch.softmax(tr.logits.float(), dim=-1), 3, dim=-1)
    got = _wire.decode({"data": buffers[0], **result["probs"]})
    np.testing.assert_array_equal(got, _as_wire(top.values, "prob"))
    assert result["tokens"][-1] == tr.token_strings(top.indices[-1].tolist())


@pytest.mark.parametrize("mute_sink", [False, True])
def test_lines_pruned_block_by_block_equal_pruning_the_whole_pattern(monkeypatch, mute_sink):
    tr = long_trace(700)
    monkeypatch.setattr(attention, "BLOCK_BYTES", 700 * 4 * 3 * 53)  # blocks of 53 rows
    got = attention.head_lines(tr, 2, 1, threshold=0.02, top_k=5, mute_sink=mute_sink)
    m = tr.head(2, 1).float()
    want = attention.prune(attention.without_sink(m) if mute_sink else m, threshold=0.02, top_k=5)
    # the lines kept are the same; their weights come from a matmul over fewer query rows,
    # which BLAS may round differently in the last bit (seen on a loaded 2-core machine)
    for field in ("query", "key"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    for field in ("value", "strength"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-5, atol=0)


def test_lines_at_long_length_hold_no_full_pattern(monkeypatch):
    # one head of the default model at 8,192 tokens: 805 MB by the rule; here 4,096 tokens
    monkeypatch.setattr(attention, "BLOCK_BYTES", 64 * 2**20)
    tr = long_trace()
    before = tr.stored_bytes()
    lines = lmscope.AttentionLines(tr, layer=1, head=3, threshold=0.02)
    # first the top FIRST_ROWS query rows (the top of the view), the rest while idle
    query = _decoded(lines.lines["query"])
    assert not lines.exact and "0-255 of 4096" in lines.status
    assert len(query) > 0 and query.max() < 256
    lines.fill_all()
    assert lines.exact and lines.status == ""
    assert tr.stored_bytes() == before and tr.cached_head(1, 3) is None
    want = attention.head_lines(tr, 1, 3, threshold=0.02, top_k=16)
    for field in ("query", "key"):
        np.testing.assert_array_equal(_decoded(lines.lines[field]), getattr(want, field))
    n = len(want)
    assert 0 < n <= 16 * LONG and lines.synced_bytes() < 16 * LONG * 14 + 200_000
    # a score view or a word view still reads the whole pattern (and equals its own pruning)
    lines.values = "score"
    assert tr.cached_head(1, 3) is not None


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_attention_call_without_a_block_rerun_equals_the_stored_one(family):
    model = tiny_model(family)
    hooks = hook_snapshot(model)
    kept = lmscope.Inspector(model, trace_internals="keep").run(tiny_ids())
    redone = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids())
    for layer in range(kept.n_layers):
        (got_args, got_kwargs), (want_args, want_kwargs) = (
            redone.attention_call(layer),
            kept.attention_call(layer),
        )
        assert len(got_args) == len(want_args) and got_kwargs.keys() == want_kwargs.keys()
        for got, want in zip(
            [*got_args, *got_kwargs.values()], [*want_args, *want_kwargs.values()], strict=True
        ):
            if isinstance(want, torch.Tensor):
                assert torch.equal(got, want)
        assert torch.equal(redone.attention(layer), kept.attention(layer))
    assert not redone._recomputed  # the block stopped at its attention: nothing rerun whole
    assert hook_snapshot(model) == hooks


@cache
def long_recomputed_trace():
    """The same 4,096-token run with its internals recomputed (`long_trace` keeps them)."""
    model = long_inspector().model
    return lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids(LONG, seed=3))


def test_attribution_first_state_is_the_streams_then_each_block_is_split():
    """Past SPLIT_AT_ONCE tokens the first state is each block's share from the stored stream
    (every head and MLP still NaN, nothing run); the blocks are then split one a step into the
    kept run's own shares, with no block rerun over the prompt."""
    tr, kept = long_recomputed_trace(), long_trace()
    assert not tr.internals_kept and kept.internals_kept
    want = kept.attribution(5, foil=7)
    w = Attribution(tr, target=5, foil=7)
    assert not w.exact and "0 of 3 blocks" in w.status
    assert np.isnan(_decoded(w.heads)).all() and np.isnan(_decoded(w.mlps)).all()
    np.testing.assert_allclose(_decoded(w.blocks), want.layers.numpy(), atol=1e-5)
    assert w.summary["total"] == pytest.approx(want.total, abs=1e-5)
    assert abs(w.summary["unexplained"]) < 1e-4  # the blocks' shares add up already
    assert w.synced_bytes() < 40_000  # most of it the prompt's token labels
    w.fill_all()
    assert w.exact and w.status == "" and w.result.complete
    np.testing.assert_allclose(_decoded(w.heads), want.heads.numpy(), atol=1e-5)
    np.testing.assert_allclose(_decoded(w.mlps), want.mlps.numpy(), atol=1e-5)
    assert abs(w.summary["unexplained"]) < 1e-4
    assert "rerun" not in w.summary["route"] and not tr._recomputed
    w.select(2, 1)
    assert float(_decoded(w.sources).sum()) == pytest.approx(float(want.heads[2, 1]), abs=1e-5)


def test_attribution_splits_a_selected_block_at_once_and_the_rest_while_idle():
    tr = long_recomputed_trace()
    want = long_trace().attribution(5, position=3000)
    w = Attribution(tr, target=5, token=3000, layer=1, head=2)
    assert w.result.pending == (0, 2)  # the selected head's block first: its sources are shown
    assert float(_decoded(w.sources).sum()) == pytest.approx(float(want.heads[1, 2]), abs=1e-5)
    w.select(0, 3)  # a click on a block not split yet splits it
    assert w.result.pending == (2,)
    w, seen = _built_under_a_running_loop(lambda: Attribution(tr, target=5, token=3000))
    assert w.exact and {"heads and MLPs of 1 of 3", "heads and MLPs of 2 of 3"} <= {
        s[:24] for s in seen
    }
    np.testing.assert_allclose(_decoded(w.heads), want.heads.numpy(), atol=1e-5)
