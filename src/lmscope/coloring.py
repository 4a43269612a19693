"""Spectral token colors: a normalized-cut embedding of each layer's activations shown as RGB.

For one stream (attention output, MLP output or residual stream) and each layer:

1. Tokens whose activation norm is far above the layer's median (the attention-sink token and
   its "massive activations") are set aside: left in, they would own the leading eigenvector and
   squash every other token into one corner of the color cube.
2. The remaining rows are centered on their mean and scaled to unit length, so the graph sees
   directions, not the norm growth from layer to layer.
3. ncut-pytorch computes the normalized-cut eigenvectors of an RBF affinity graph over them
   (exact, not Nyström, at these sizes); the first, near-constant eigenvector is dropped.
4. Set-aside tokens are placed at the mean embedding of their most similar regular tokens.

Layers are then made comparable: the same tokens appear at every layer, so each layer's
embedding is rotated (orthogonal Procrustes) onto the previous layer's, one PCA over all layers
picks three axes, and one robust min/max over all layers maps them to [0, 1]. A color therefore
means the same region of the shared embedding at every layer, and a token whose color holds
from layer to layer kept its neighbours.

Everything runs on the trace's device; results are cached per trace (the trace is not touched,
the cache forgets it when it is garbage-collected).
"""

from __future__ import annotations

import weakref
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

from lmscope.errors import InputError, check_choice, check_count, check_index
from lmscope.options import keyword_options
from lmscope.trace import VIEW_STREAMS

if TYPE_CHECKING:
    from lmscope.trace import Trace

#: non-trivial eigenvectors kept per layer
N_EIG = 12
#: eigenvectors are weighted by eigenvalue**EIG_POWER
EIG_POWER = 1.0
#: a token whose activation norm exceeds this many times the layer median is fitted around
OUTLIER_RATIO = 8.0
#: quantile of pairwise distances used as the RBF width (smaller: sharper clusters)
SIGMA_QUANTILE = 0.5
#: rows sampled to pick the RBF width
SIGMA_ROWS = 128
#: fraction clipped at each end of every color channel
COLOR_CLIP = 0.01
#: set-aside tokens take the mean embedding of this many most similar regular tokens
PLACE_NEIGHBORS = 8
#: query rows per block when finding each token's neighbours
NEIGHBOR_ROWS = 1024

# trace -> {key: tensor}; weak so a dropped trace frees its colors
_cache: weakref.WeakKeyDictionary[Trace, dict[tuple, torch.Tensor]] = weakref.WeakKeyDictionary()


def _trace_cache(trace: Trace) -> dict[tuple, torch.Tensor]:
    entry = _cache.get(trace)
    if entry is None:
        entry = {}
        _cache[trace] = entry
    return entry


def _check_layers(trace: Trace, layers: Sequence[int] | int | None) -> list[int]:
    if layers is None:
        return list(range(trace.n_layers))
    if isinstance(layers, int) or not isinstance(layers, Sequence | range | torch.Tensor):
        layers = [layers]  # type: ignore[list-item]
    out = [check_index("layer", int(layer), trace.n_layers) for layer in layers]
    if not out:
        raise InputError(f"layers is empty; give layer indices in 0..{trace.n_layers - 1}")
    return out


def outlier_mask(x: torch.Tensor, ratio: float | None = None) -> torch.Tensor:
    """True for rows whose norm exceeds `ratio` (default OUTLIER_RATIO) times the median norm."""
    norms = x.float().norm(dim=-1)
    mask = norms > (OUTLIER_RATIO if ratio is None else ratio) * norms.median()
    if int(mask.sum()) > x.shape[0] // 2:  # never set aside the majority
        mask[:] = False
    return mask


def directions(x: torch.Tensor, outliers: torch.Tensor) -> torch.Tensor:
    """Rows centered on the regular tokens' mean and scaled to unit length (float32)."""
    x = x.float()
    mean = x[~outliers].mean(0, keepdim=True)
    return torch.nn.functional.normalize(x - mean, dim=-1, eps=1e-6)


def _layer_embedding(x: torch.Tensor, n_eig: int) -> torch.Tensor:
    """[seq, n_eig] normalized-cut embedding of one layer's rows (caller seeds the RNG)."""
    from ncut_pytorch import ncut_fn  # lazy: keep `import lmscope` light

    seq = x.shape[0]
    outliers = outlier_mask(x)
    z = directions(x, outliers)
    keep = (~outliers).nonzero().squeeze(1)
    zi = z[keep]
    n = zi.shape[0]
    out = torch.zeros(seq, n_eig, device=x.device)
    if n < 3:  # nothing to cut: every token gets the same (central) color
        return out
    k = min(n_eig, n - 2)
    # RBF width: a quantile of pairwise distances over a strided sample of rows
    # (unit rows: d^2 = 2 - 2 cos), so one layer's spread never sets another's
    rows = torch.arange(0, n, max(1, n // SIGMA_ROWS), device=x.device)
    cos = zi[rows] @ zi.T
    cos[torch.arange(len(rows), device=x.device), rows] = float("nan")  # self-pairs
    d2 = (2 - 2 * cos.flatten()).clamp_min(0)
    d2 = d2[~d2.isnan()]
    rank = max(1, int(SIGMA_QUANTILE * d2.numel()))
    sigma = max(float(d2.kthvalue(rank).values.sqrt()), 1e-3)
    eigvec, eigval = ncut_fn(
        zi, n_eig=k + 1, sigma=sigma, repulsion_sigma=sigma, device=str(x.device)
    )
    # column 0 is the trivial sqrt-degree vector; weight the rest by eigenvalue (a diffusion
    # map) so coarse splits outweigh fine ones when layers are aligned and reduced to 3-D
    emb = eigvec[:, 1:].float()
    emb = emb / emb.norm(dim=0, keepdim=True).clamp_min(1e-12) * (n**0.5)
    emb = emb * eigval[1:].float().clamp_min(0).pow(EIG_POWER)
    out[keep, :k] = emb
    if bool(outliers.any()):
        sim = z[outliers] @ zi.T
        top = sim.topk(min(PLACE_NEIGHBORS, n), dim=-1).indices
        out[outliers, :k] = emb[top].mean(1)
    return out


def _procrustes(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Orthogonal R minimizing ||a R - b|| (rows are the same tokens)."""
    u, _, vh = torch.linalg.svd(a.T @ b)
    return u @ vh


def spectral_embedding(
    trace: Trace, stream: str = "resid_post", layers: Sequence[int] | None = None, seed: int = 0
) -> torch.Tensor:
    """[n_layers, seq, N_EIG] normalized-cut embeddings, each layer rotated onto the previous one."""
    stream = check_choice("stream", stream, VIEW_STREAMS)
    idx = _check_layers(trace, layers)
    cache = _trace_cache(trace)
    per_layer = []
    for layer in idx:
        key = ("emb", stream, layer, seed)
        if key not in cache:
            devices = [trace.device] if trace.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed + 1000 * layer)
                with torch.no_grad():
                    cache[key] = _layer_embedding(trace.stream(stream, layer), N_EIG)
        per_layer.append(cache[key])
    aligned = [per_layer[0]]
    for emb in per_layer[1:]:
        aligned.append(emb @ _procrustes(emb, aligned[-1]))
    return torch.stack(aligned)


@contextmanager
def _one_thread() -> Iterator[None]:
    """A small dense decomposition in one thread: LAPACK's threads wait on each other when the
    cores are busy (a 576 x 576 eigh took 0.2-5.3 s with 2 threads on 2 loaded cores, 0.12 s
    in one), and the matrix is too small to gain from more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def embedding_to_rgb(emb: torch.Tensor, clip: float = COLOR_CLIP) -> torch.Tensor:
    """[..., k] embedding -> [..., 3] RGB in [0, 1]: one PCA and one robust range over all rows."""
    flat = emb.reshape(-1, emb.shape[-1]).float()
    centered = flat - flat.mean(0, keepdim=True)
    covariance = centered.T @ centered
    with _one_thread():
        _, vecs = torch.linalg.eigh(covariance)
    axes = vecs[:, -3:].flip(-1)  # three largest, largest first
    # eigh's sign is arbitrary: point each axis at its heavier tail so seeds agree
    proj = centered @ axes
    sign = torch.where(proj.pow(3).sum(0) < 0, -1.0, 1.0)
    proj = proj * sign
    if proj.shape[1] < 3:
        proj = torch.nn.functional.pad(proj, (0, 3 - proj.shape[1]))
    sample = proj if proj.shape[0] <= 100_000 else proj[:: proj.shape[0] // 100_000 + 1]
    lo = sample.quantile(clip, dim=0)
    hi = sample.quantile(1 - clip, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    return rgb.reshape(*emb.shape[:-1], 3)


@keyword_options
def token_colors(
    trace: Trace,
    *,
    stream: str = "resid_post",
    layers: Sequence[int] | int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """RGB color of every token at each layer: float32 [n_layers, seq, 3] in [0, 1], on the CPU.

    `stream` is one of "attn_out", "mlp_out", "resid_post"; `layers` defaults to all layers (an
    int gives one). Colors are aligned across the chosen layers (see the module docstring) and
    identical for the same seed; results are cached on the trace.
    """
    stream = check_choice("stream", stream, VIEW_STREAMS)
    idx = _check_layers(trace, layers)
    cache = _trace_cache(trace)
    key = ("rgb", stream, tuple(idx), seed)
    if key not in cache:
        emb = spectral_embedding(trace, stream, idx, seed)
        cache[key] = embedding_to_rgb(emb).cpu()
    return cache[key].clone()


@keyword_options
def token_neighbors(trace: Trace, *, stream: str, layer: int, n_neighbors: int = 5) -> torch.Tensor:
    """int64 [seq, n_neighbors]: for each token, the other tokens most similar to it at `layer`.

    Similarity is cosine between rows centered on the regular tokens' mean (the space the colors
    are fitted in); with fewer than n_neighbors+1 tokens the table is padded with -1.
    """
    steps = neighbor_steps(trace, stream=stream, layer=layer, n_neighbors=n_neighbors)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def neighbor_steps(
    trace: Trace, *, stream: str, layer: int, n_neighbors: int = 5
) -> Generator[None, None, torch.Tensor]:
    """`token_neighbors` a block of NEIGHBOR_ROWS query rows at a time: yields between blocks
    (a view's idle steps: 1,024 x 8,192 similarities a step at 8k tokens, not all 8,192 rows)
    and returns the table (`table = yield from neighbor_steps(...)`)."""
    stream = check_choice("stream", stream, VIEW_STREAMS)
    layer = check_index("layer", layer, trace.n_layers)
    k = check_count("n_neighbors", n_neighbors)
    x = trace.stream(stream, layer)
    seq = x.shape[0]
    out = torch.full((seq, k), -1, dtype=torch.long)
    if seq < 2:
        return out
    with torch.no_grad():
        z = directions(x, outlier_mask(x))
    # a block of rows at a time: the [seq, seq] similarity is 256 MB at 8,192 tokens
    for a in range(0, seq, NEIGHBOR_ROWS):
        if a:
            yield
        with torch.no_grad():
            sim = z[a : a + NEIGHBOR_ROWS] @ z.T
            rows = torch.arange(sim.shape[0], device=sim.device)
            sim[rows, rows + a] = -float("inf")
            top = sim.topk(min(k, seq - 1), dim=-1).indices.cpu()
        out[a : a + NEIGHBOR_ROWS, : top.shape[1]] = top
    return out


@keyword_options
def first_pass_colors(trace: Trace, *, stream: str, layer: int) -> torch.Tensor:
    """float32 [seq, 3] in [0, 1] on the CPU: a cheap stand-in for one layer's colors while the
    spectral ones are computed (milliseconds instead of seconds per layer at 8k tokens): the
    first three principal components of the same centered unit-length rows the spectral
    embedding starts from, through the same robust range. Not aligned across layers."""
    stream = check_choice("stream", stream, VIEW_STREAMS)
    layer = check_index("layer", layer, trace.n_layers)
    x = trace.stream(stream, layer)
    with torch.no_grad():
        return embedding_to_rgb(directions(x, outlier_mask(x))).cpu()
