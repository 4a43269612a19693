"""Attention analyses against plain torch computations and Hugging Face's eager attention."""

from __future__ import annotations

import math

import pytest
import torch

from _models import default_eager_model, default_inspector, tiny_ids, tiny_inspector
from lmscope import attention
from lmscope.errors import InputError, OutOfRangeError


@pytest.fixture(scope="module")
def trace():
    return tiny_inspector("llama").run(tiny_ids(20))


GROUPS = [[0], [1, 2], [3], [4, 5, 6], *[[i] for i in range(7, 18)], [18, 19]]


def test_single_head_is_the_trace_pattern(trace):
    got = attention.pattern(trace, layer=1, head=2)
    torch.testing.assert_close(got, trace.attention(1)[2].float().cpu())
    scores = attention.pattern(trace, layer=1, head=2, values="score")
    torch.testing.assert_close(scores, trace.attention_scores(1)[2].float().cpu())


def test_head_aggregates_and_layer_range_match_torch(trace):
    stack = torch.stack([trace.attention(layer) for layer in range(3)]).float()  # [L, H, q, k]
    torch.testing.assert_close(attention.pattern(trace, layer=2, head="mean"), stack[2].mean(0))
    torch.testing.assert_close(
        attention.pattern(trace, layer=2, head="max"), stack[2].max(0).values
    )
    torch.testing.assert_close(
        attention.pattern(trace, layer=0, head=3, layer_end=2), stack[:, 3].mean(0)
    )
    torch.testing.assert_close(
        attention.pattern(trace, layer=1, head="max", layer_end=2), stack[1:].max(1).values.mean(0)
    )
    # a mean over heads and blocks of probabilities is still a distribution per row
    rows = attention.pattern(trace, layer=0, head="mean", layer_end=2).sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))


def test_fused_rows_sum_to_one_and_match_a_loop(trace):
    m = attention.pattern(trace, layer=1, head=0)
    fused = attention.fuse_words(m, GROUPS)
    assert fused.shape == (len(GROUPS), len(GROUPS))
    torch.testing.assert_close(fused.sum(-1), torch.ones(len(GROUPS)))
    expected = torch.tensor([[float(m[qg][:, kg].sum(1).mean()) for kg in GROUPS] for qg in GROUPS])
    torch.testing.assert_close(fused, expected)


def test_fused_scores_softmax_to_the_fused_probabilities_for_one_token_words(trace):
    scores = attention.pattern(trace, layer=2, head=1, values="score")
    probs = attention.pattern(trace, layer=2, head=1)
    groups = [[0], [1], [2, 3, 4], *[[i] for i in range(5, 20)]]
    fused_scores = attention.fuse_words(scores, groups, values="score")
    fused_probs = attention.fuse_words(probs, groups)
    one_token_queries = [w for w, g in enumerate(groups) if len(g) == 1]
    torch.testing.assert_close(
        torch.softmax(fused_scores[one_token_queries], -1), fused_probs[one_token_queries]
    )


def test_muting_the_sink_renormalises_and_agrees_with_scores(trace):
    probs = attention.pattern(trace, layer=1, head=3)
    muted = attention.without_sink(probs)
    assert torch.all(muted[:, 0] == 0)
    torch.testing.assert_close(muted[1:].sum(-1), torch.ones(19))
    assert torch.all(muted[0] == 0)  # token 0 only ever sees itself
    scores = attention.without_sink(
        attention.pattern(trace, layer=1, head=3, values="score"), values="score"
    )
    torch.testing.assert_close(torch.softmax(scores[1:], -1), muted[1:])


def test_prune_keeps_exactly_the_strong_top_k_lines():
    m = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [0.2, 0.5, 0.3]])
    lines = attention.prune(m, threshold=0.25)
    assert list(zip(lines.query, lines.key, strict=True)) == [
        (0, 0),
        (1, 0),
        (1, 1),
        (2, 1),
        (2, 2),
    ]
    top1 = attention.prune(m, top_k=1)
    assert list(zip(top1.query, top1.key, strict=True)) == [(0, 0), (1, 1), (2, 1)]
    torch.testing.assert_close(torch.from_numpy(top1.value), torch.tensor([1.0, 0.7, 0.5]))
    # ties never let more than k through
    flat = attention.prune(torch.full((2, 4), 0.25), top_k=2)
    assert len(flat) == 4


def test_score_strength_is_scaled_per_row_and_masked_is_dropped():
    s = torch.tensor([[2.0, -math.inf, -math.inf], [1.0, 3.0, -math.inf], [0.0, 1.0, 2.0]])
    strength = attention.strength(s, "score")
    torch.testing.assert_close(
        strength, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 1.0]])
    )
    lines = attention.prune(s, threshold=0.4, values="score")
    assert list(zip(lines.query, lines.key, strict=True)) == [(0, 0), (1, 1), (2, 1), (2, 2)]


def test_pool_keeps_the_peak_and_the_sign():
    m = torch.zeros(8, 8)
    m[5, 2] = 0.9
    pooled = attention.pool(m, 4)
    assert pooled.shape == (4, 4) and pooled[2, 1] == pytest.approx(0.9)
    d = torch.zeros(8, 8)
    d[0, 0], d[0, 1] = -0.8, 0.3
    assert attention.pool(d, 4)[0, 0] == pytest.approx(-0.8)
    assert attention.pool(m, 16) is m


def test_grid_by_layer_and_by_head(trace):
    cells, labels, where = attention.grid(trace, by="layer", layer=2, size=8)
    assert cells.shape == (4, 8, 8) and labels[1] == "L2 H1" and where[3] == (2, 3)
    torch.testing.assert_close(cells[1], attention.pool(trace.attention(2)[1].float(), 8))
    cells, labels, where = attention.grid(trace, by="head", head=3, size=64)
    assert cells.shape == (3, 20, 20) and where == [(0, 3), (1, 3), (2, 3)]
    torch.testing.assert_close(cells[2], trace.attention(2)[3].float())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: attention.pattern(t, layer=3, head=0), "valid: 0..2"),
        (lambda t: attention.pattern(t, layer=0, head=4), "valid: 0..3"),
        (lambda t: attention.pattern(t, layer=2, head=0, layer_end=1), "empty"),
        (lambda t: attention.pattern(t, layer=0, head="median"), "mean"),
        (lambda t: attention.pattern(t, layer=0, head=0, values="logits"), "prob"),
        (lambda t: attention.grid(t, by="block"), "layer"),
        (lambda t: attention.prune(torch.eye(3), threshold=2.0), "0..1"),
        (lambda t: attention.prune(torch.eye(3), top_k=0), ">= 1"),
        (lambda t: attention.fuse_words(torch.eye(3), [[0], [1]]), "token 2"),
        (lambda t: attention.fuse_words(torch.eye(3), [[0, 1], [1, 2]]), "two groups"),
    ],
)
def test_bad_input_names_the_valid_range(trace, call, message):
    with pytest.raises((OutOfRangeError, InputError), match=message):
        call(trace)


@pytest.mark.real_model
def test_real_model_patterns_match_hugging_face_eager():
    ins = default_inspector()
    tr = ins.run("I love you because you are kind to strangers")
    ids = tr.input_ids[None]
    with torch.no_grad():
        hf = default_eager_model()(ids, output_attentions=True).attentions
    torch.testing.assert_close(
        attention.pattern(tr, layer=7, head=4), hf[7][0, 4], atol=2e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        attention.pattern(tr, layer=3, head="mean", layer_end=5),
        torch.stack([hf[i][0] for i in range(3, 6)]).mean((0, 1)),
        atol=2e-5,
        rtol=1e-4,
    )
    fused = attention.fuse_words(attention.pattern(tr, layer=7, head=4), tr.word_groups)
    torch.testing.assert_close(fused.sum(-1), torch.ones(len(tr.word_groups)))


def _array(env):
    import numpy as np

    return np.frombuffer(bytes(env["data"]), dtype=env["dtype"]).reshape(env["shape"])


def test_synced_lines_equal_the_pattern_within_quantization(trace):
    from lmscope.widgets.attention_lines import AttentionLines

    w = AttentionLines(trace, layer=2, head=1, threshold=0.0, top_k=20)
    q, k = _array(w.lines["query"]).astype(int), _array(w.lines["key"]).astype(int)
    truth = trace.attention(2)[1].float().numpy()
    assert len(q) == int((truth > 0).sum())  # no threshold, k = seq: every causal weight
    assert abs(_array(w.lines["value"]).astype(float) - truth[q, k]).max() <= 1e-3
    assert abs(_array(w.lines["strength"]) / 255 - truth[q, k]).max() <= 0.5 / 255 + 1e-6
    w.fuse_words, w.mute_sink = True, True
    assert w.error == "" and len(w.tokens) == len(trace.word_groups)
    with pytest.raises(OutOfRangeError, match=r"valid: 0\.\.3"):
        AttentionLines(trace, layer=0, head=9)
    w.set_state({"layer": 7})  # from the browser: shown under the view, not raised
    assert "valid: 0..2" in w.error and w.layer == 2


def test_synced_grid_equals_the_pooled_pattern(trace):
    from lmscope.widgets.attention_grid import AttentionGrid

    other = tiny_inspector("llama").run(tiny_ids(20, seed=5))
    g = AttentionGrid(trace, layer=1, compare=other, size=8)
    a, b = (_array(p) / 255 for p in (g.panel_a, g.panel_b))
    torch.testing.assert_close(
        torch.from_numpy(a).float(),
        attention.pool(trace.attention(1).float(), 8),
        atol=0.5 / 255,
        rtol=0,
    )
    assert b.shape == a.shape
    g.mode = "diff"
    diff = torch.from_numpy(_array(g.diff).astype("float32"))
    expected = attention.pool(trace.attention(1).float() - other.attention(1).float(), 8)
    torch.testing.assert_close(diff, expected, atol=1e-3, rtol=1e-3)
    with pytest.raises(InputError, match="same length"):
        AttentionGrid(trace, compare=tiny_inspector("llama").run(tiny_ids(7)), mode="diff")
