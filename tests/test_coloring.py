"""Spectral token colors: shape, range, determinism, cross-layer alignment, sink handling,
neighbour tables against scikit-learn, and prose-vs-code separation on the real model."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

import lmscope
from _models import PROSE_THEN_CODE, TINY_FAMILIES, default_inspector, tiny_ids, tiny_inspector
from lmscope import coloring
from lmscope.errors import InputError, OutOfRangeError
from lmscope.trace import VIEW_STREAMS


class FakeTrace:
    """Just what `token_colors` reads from a trace: given activations per layer."""

    def __init__(self, layers: list[torch.Tensor]) -> None:
        self._layers = layers
        self.n_layers = len(layers)
        self.seq_len = layers[0].shape[0]
        self.device = layers[0].device

    def stream(self, name: str, layer: int) -> torch.Tensor:
        return self._layers[layer]


def clusters(n_per: int = 20, centers: int = 3, d: int = 48, seed: int = 0) -> torch.Tensor:
    """Tokens drawn around a few well separated centers, in center order."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(centers, d, generator=g) * 4
    return torch.cat([mu[c] + torch.randn(n_per, d, generator=g) for c in range(centers)])


def color_gap(rgb: torch.Tensor, groups: torch.Tensor) -> float:
    """Mean color distance between groups over mean distance within groups (>1: separated)."""
    d = torch.cdist(rgb.double(), rgb.double())
    same = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool)
    return float(d[groups[:, None] != groups[None, :]].mean() / d[same].mean())


@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("stream", VIEW_STREAMS)
def test_shape_range_dtype_on_every_family(family, stream):
    tr = tiny_inspector(family).run(tiny_ids(20))
    rgb = lmscope.token_colors(tr, stream=stream)
    assert rgb.shape == (tr.n_layers, 20, 3)
    assert rgb.dtype == torch.float32 and rgb.device.type == "cpu"
    assert torch.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb.std() > 0.05  # colors, not one flat patch


def test_layers_argument_and_errors():
    tr = tiny_inspector("llama").run(tiny_ids(16))
    assert lmscope.token_colors(tr, layers=[2, 0]).shape == (2, 16, 3)
    assert lmscope.token_colors(tr, layers=-1).shape == (1, 16, 3)
    assert lmscope.token_colors(tr, layers=range(2)).shape == (2, 16, 3)
    with pytest.raises(OutOfRangeError, match=r"0\.\.2"):
        lmscope.token_colors(tr, layers=[3])
    with pytest.raises(InputError, match="resid_post"):
        lmscope.token_colors(tr, stream="resid_mid")
    with pytest.raises(InputError, match="empty"):
        lmscope.token_colors(tr, layers=[])
    with pytest.raises(OutOfRangeError):
        coloring.token_neighbors(tr, stream="mlp_out", layer=7)
    with pytest.raises(InputError, match="n_neighbors must be"):
        coloring.token_neighbors(tr, stream="mlp_out", layer=0, n_neighbors=0)


def test_deterministic_for_a_seed_and_cached_per_trace():
    ins = tiny_inspector("qwen2")
    tr = ins.run(tiny_ids(40))
    first = lmscope.token_colors(tr, stream="mlp_out", seed=3)
    coloring._cache.clear()  # recompute from scratch, not from the cache
    again = lmscope.token_colors(tr, stream="mlp_out", seed=3)
    assert torch.equal(first, again)
    other = lmscope.token_colors(ins.run(tiny_ids(40)), stream="mlp_out", seed=3)  # a new trace
    assert torch.equal(first, other)
    # the caller's global RNG is left alone
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    coloring._cache.clear()
    lmscope.token_colors(tr, stream="attn_out", seed=5)
    assert torch.equal(torch.rand(3), expected)
    # cached: mutating a returned tensor does not reach the cache
    first[:] = 0
    assert torch.equal(lmscope.token_colors(tr, stream="mlp_out", seed=3), again)


def test_cache_forgets_a_dropped_trace():
    tr = tiny_inspector("gpt2").run(tiny_ids(12))
    lmscope.token_colors(tr)
    assert tr in coloring._cache
    n = len(coloring._cache)
    del tr
    gc.collect()
    assert len(coloring._cache) == n - 1


def test_clusters_get_distinct_colors():
    x = clusters()
    groups = torch.arange(60) // 20
    rgb = lmscope.token_colors(FakeTrace([x]))[0]
    assert color_gap(rgb, groups) > 3


def test_colors_are_aligned_across_layers():
    """Layer l+1 = layer l under a random rotation of the model space: the cosine structure,
    hence the partition, is unchanged, so every token must keep its color."""
    x = clusters(centers=4, d=32)
    g = torch.Generator().manual_seed(7)
    layers = [x]
    for _ in range(4):
        q, _ = torch.linalg.qr(torch.randn(32, 32, generator=g))
        layers.append(layers[-1] @ q * 1.7)  # rotation and the norm growth of deeper layers
    rgb = lmscope.token_colors(FakeTrace(layers))
    assert (rgb - rgb[0]).abs().max() < 0.02


@pytest.mark.real_model
@pytest.mark.parametrize("stream", VIEW_STREAMS)
def test_alignment_steadies_colors_from_layer_to_layer(stream):
    tr = default_inspector().run(PROSE_THEN_CODE)
    aligned = coloring.embedding_to_rgb(coloring.spectral_embedding(tr, stream))
    each = torch.stack(
        [coloring._trace_cache(tr)[("emb", stream, layer, 0)] for layer in range(tr.n_layers)]
    )
    unaligned = coloring.embedding_to_rgb(each)  # per-layer fits, no rotation onto neighbours

    def drift(rgb: torch.Tensor) -> float:
        return float((rgb[1:] - rgb[:-1]).norm(dim=-1).mean())

    assert drift(aligned) < 0.7 * drift(unaligned), (drift(aligned), drift(unaligned))


@pytest.mark.parametrize("kind", ["scaled copy", "massive dimension"])
def test_sink_token_does_not_move_the_other_colors(kind, monkeypatch):
    x = clusters()
    # a huge-norm first token: a token's direction scaled up, or a "massive activation" in a
    # dimension no other token uses (what real attention sinks look like)
    sink = x[25] * 500 if kind == "scaled copy" else x[25] + torch.eye(48)[0] * 500
    with_sink = torch.cat([sink[None], x])
    assert coloring.outlier_mask(with_sink).tolist() == [True] + [False] * 60
    plain = lmscope.token_colors(FakeTrace([x]))[0]
    rgb = lmscope.token_colors(FakeTrace([with_sink]))[0]
    # the other tokens keep the colors they have with no sink at all
    assert (rgb[1:] - plain).abs().max() < 0.06
    # counter-check: fitting the sink like any token shifts everybody's colors
    monkeypatch.setattr(coloring, "OUTLIER_RATIO", float("inf"))
    naive = lmscope.token_colors(FakeTrace([with_sink.clone()]))[0]
    assert (naive[1:] - plain).abs().max() > 0.3


def test_sink_is_placed_among_its_most_similar_tokens():
    x = clusters()
    rgb = lmscope.token_colors(FakeTrace([torch.cat([x[25][None] * 500, x])]))[0]
    d = (rgb[1:] - rgb[0]).norm(dim=-1)
    assert (d.argsort()[:10] // 20 == 1).all()  # token 25 is in cluster 1


@pytest.mark.real_model
def test_real_model_sink_does_not_wash_out_the_palette():
    tr = default_inspector().run(PROSE_THEN_CODE)
    layer = tr.n_layers // 2
    x = tr.resid_post(layer)
    assert x[0].norm() > 20 * x[1:].norm(dim=-1).median()  # the sink is there
    assert coloring.outlier_mask(x)[0]
    rgb = lmscope.token_colors(tr, stream="resid_post", layers=[layer])[0]
    spread = rgb[1:].quantile(0.95, dim=0) - rgb[1:].quantile(0.05, dim=0)
    assert (spread > 0.5).all(), spread


@pytest.mark.real_model
@pytest.mark.parametrize("stream", VIEW_STREAMS)
def test_prose_and_code_halves_get_different_colors(stream):
    tr = default_inspector().run(PROSE_THEN_CODE)
    code = next(i for i, piece in enumerate(tr.token_texts) if piece.strip() == "def")
    assert "".join(tr.token_texts[:code]).rstrip().endswith("home.")
    groups = (torch.arange(tr.seq_len) >= code).long()
    rgb = lmscope.token_colors(tr, stream=stream)
    middle = range(tr.n_layers // 3, 2 * tr.n_layers // 3)
    gaps = [color_gap(rgb[layer], groups) for layer in middle]
    # every middle layer: tokens of the same half are closer in color than across halves
    assert min(gaps) > 1.0, gaps
    assert float(np.mean(gaps)) > 1.2, gaps


@pytest.mark.real_model
def test_neighbors_match_scikit_learn():
    from sklearn.neighbors import NearestNeighbors

    tr = default_inspector().run(PROSE_THEN_CODE)
    for stream, layer in [("attn_out", 3), ("mlp_out", 15), ("resid_post", 20)]:
        table = coloring.token_neighbors(tr, stream=stream, layer=layer, n_neighbors=4)
        x = tr.stream(stream, layer).double().numpy()
        norms = np.linalg.norm(x, axis=1)
        regular = norms <= coloring.OUTLIER_RATIO * np.median(norms)
        centered = x - x[regular].mean(0)
        nn = NearestNeighbors(n_neighbors=5, metric="cosine").fit(centered)
        _, idx = nn.kneighbors(centered)
        ref = np.array([[j for j in row if j != i][:4] for i, row in enumerate(idx)])
        assert table.shape == (tr.seq_len, 4)
        # ties aside, the same neighbours in the same order
        assert (table.numpy() == ref).mean() > 0.98


def test_neighbors_pad_short_inputs():
    tr = tiny_inspector("llama").run(tiny_ids(3))
    table = coloring.token_neighbors(tr, stream="resid_post", layer=1, n_neighbors=5)
    assert table.shape == (3, 5)
    assert (table[:, 2:] == -1).all() and (table[:, :2] >= 0).all()
    one = tiny_inspector("llama").run(tiny_ids(1))
    assert (coloring.token_neighbors(one, stream="resid_post", layer=0, n_neighbors=2) == -1).all()
    assert lmscope.token_colors(one).shape == (3, 1, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_trace_device():
    x = clusters().cuda()
    rgb = lmscope.token_colors(FakeTrace([x, x * 2]))
    cpu = lmscope.token_colors(FakeTrace([x.cpu(), x.cpu() * 2]))
    assert rgb.device.type == "cpu"
    assert (rgb - cpu).abs().max() < 0.02
