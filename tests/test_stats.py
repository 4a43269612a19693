"""Norm statistics against independent sources: norms from Hugging Face's own modules (hooks on
the real SmolLM2), fits from statsmodels' OLS one layer at a time."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmscope
from _models import default_eager_model, default_inspector, tiny_ids, tiny_inspector
from lmscope.errors import InputError
from lmscope.stats import lagged_ols, log_norms, norm_regression

TEXT = (
    "Hungarian rock has been part of the popular music of Hungary since the early 1960s. "
    "The first major bands were Illés, Metró and Omega; at the time the authorities frowned "
    "on rock, and some members later formed a supergroup that became popular in Germany."
)


@pytest.fixture(scope="module")
def real_trace():
    return default_inspector().run(TEXT)


def statsmodels_fit(norms: np.ndarray, lags: int):
    """The textbook loop: one design row per t = lags+1 .. seq-1, constant first."""
    rows = [[1.0, *(norms[t - j] for j in range(1, lags + 1))] for t in range(lags + 1, len(norms))]
    return sm.OLS(norms[lags + 1 :], np.array(rows)).fit()


def hf_attn_out_log_norms(ids: torch.Tensor) -> np.ndarray:
    """log ||o_proj output|| per layer and token, hooked on Hugging Face's eager model."""
    model = default_eager_model()
    outs: dict[int, np.ndarray] = {}
    hooks = [
        layer.self_attn.o_proj.register_forward_hook(
            lambda _m, _i, out, i=i: outs.__setitem__(i, out[0].double().numpy())
        )
        for i, layer in enumerate(model.model.layers)
    ]
    try:
        with torch.no_grad():
            model(ids[None])
    finally:
        for h in hooks:
            h.remove()
    return np.log(np.stack([np.linalg.norm(outs[i], axis=-1) for i in range(len(outs))]))


@pytest.mark.real_model
def test_real_model_attn_out_matches_statsmodels_on_hf_norms(real_trace):
    tr = real_trace
    expected_norms = hf_attn_out_log_norms(tr.input_ids)
    np.testing.assert_allclose(log_norms(tr).numpy(), expected_norms, atol=2e-4)
    res = norm_regression(tr, stream="attn_out", lags=2)
    assert res.betas.shape == res.pvalues.shape == (tr.n_layers, 2)
    assert res.n_obs == tr.seq_len - 3
    for layer in range(tr.n_layers):
        fit = statsmodels_fit(expected_norms[layer], 2)
        np.testing.assert_allclose(res.betas[layer], fit.params[1:], rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(res.intercepts[layer], fit.params[0], rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(res.pvalues[layer], fit.pvalues[1:], rtol=2e-2, atol=1e-4)
        np.testing.assert_allclose(res.r2[layer], fit.rsquared, atol=2e-4)
    # on the trace's own norms the agreement is to rounding, layer by layer
    y = log_norms(tr).numpy()
    for layer in range(tr.n_layers):
        fit = statsmodels_fit(y[layer], 2)
        np.testing.assert_allclose(res.betas[layer], fit.params[1:], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.pvalues[layer], fit.pvalues[1:], rtol=1e-8, atol=1e-15)
        np.testing.assert_allclose(res.stderr[layer], fit.bse[1:], rtol=1e-9)
        assert res.df_resid == fit.df_resid
    # a real finding, not noise: some layers' updates follow the previous token's
    assert res.significant().any()


@pytest.mark.real_model
@pytest.mark.parametrize("stream", ["mlp_out", "resid_post"])
def test_real_model_other_streams_match_statsmodels(real_trace, stream):
    tr = real_trace
    res = norm_regression(tr, stream=stream, lags=3)
    y = log_norms(tr, stream=stream).numpy()
    for layer in (0, 11, tr.n_layers - 1):
        fit = statsmodels_fit(y[layer], 3)
        np.testing.assert_allclose(res.betas[layer], fit.params[1:], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.pvalues[layer], fit.pvalues[1:], rtol=1e-8, atol=1e-15)
        np.testing.assert_allclose(res.r2[layer], fit.rsquared, rtol=1e-9)


def test_resid_post_norms_match_hf_hidden_states():
    ins = tiny_inspector("gpt2")
    ids = tiny_ids(20)
    tr = ins.run(ids)
    with torch.no_grad():
        hidden = ins.model(ids[None], output_hidden_states=True).hidden_states
    # hidden_states[l+1] is block l's output, except the last one (after the final norm)
    for layer in range(tr.n_layers - 1):
        expected = hidden[layer + 1][0].double().norm(dim=-1).log()
        torch.testing.assert_close(
            log_norms(tr, stream="resid_post")[layer], expected, atol=1e-5, rtol=0
        )


# (not gemma2: its post-attention norm makes attn_out norms constant to 1e-7, ill-posed)
@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3"])
@pytest.mark.parametrize("lags", [1, 2, 4])
def test_tiny_models_any_lags_match_statsmodels(family, lags):
    tr = tiny_inspector(family).run(tiny_ids(40))
    res = norm_regression(tr, stream="attn_out", lags=lags)
    assert res.betas.shape == (tr.n_layers, lags)
    y = log_norms(tr).numpy()
    for layer in range(tr.n_layers):
        fit = statsmodels_fit(y[layer], lags)
        np.testing.assert_allclose(res.betas[layer], fit.params[1:], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.intercepts[layer], fit.params[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.pvalues[layer], fit.pvalues[1:], rtol=1e-7, atol=1e-15)
        np.testing.assert_allclose(res.r2[layer], fit.rsquared, rtol=1e-9)


def test_first_token_never_enters_the_fit():
    tr = tiny_inspector("llama").run(tiny_ids(30))
    base = norm_regression(tr)
    y = log_norms(tr)
    y[:, 0] += 50.0  # an exaggerated attention sink changes nothing
    fit = lagged_ols(y, 2)
    torch.testing.assert_close(fit["params"][:, 1:], base.betas)
    # ... whereas starting at the first token would have used it
    assert not torch.allclose(lagged_ols(y, 2, start=0)["params"][:, 1:], base.betas)


@settings(max_examples=30, deadline=None)
@given(
    seq=st.integers(9, 60),
    lags=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    ar=st.floats(-0.9, 0.9),
)
def test_batched_fit_equals_statsmodels_on_random_series(seq, lags, seed, ar):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(3, seq))
    for t in range(1, seq):  # autocorrelated series, so betas are far from zero too
        y[:, t] += ar * y[:, t - 1]
    fit = lagged_ols(torch.from_numpy(y), lags)
    for b in range(3):
        ref = statsmodels_fit(y[b], lags)
        np.testing.assert_allclose(fit["params"][b], ref.params, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fit["bse"][b], ref.bse, rtol=1e-8)
        np.testing.assert_allclose(fit["pvalues"][b], ref.pvalues, rtol=1e-6, atol=1e-14)
        np.testing.assert_allclose(fit["rsquared"][b], ref.rsquared, rtol=1e-8, atol=1e-12)


def test_bad_stream_and_lags_are_clear_errors():
    tr = tiny_inspector("llama").run(tiny_ids(12))
    with pytest.raises(InputError, match=r"stream must be one of .*attn_out.*, got 'attn'"):
        norm_regression(tr, stream="attn")
    with pytest.raises(InputError, match=r"stream must be one of"):
        log_norms(tr, stream="logits")
    with pytest.raises(InputError, match=r"lags must be in 1\.\.4 for a 12-token trace, got 5"):
        norm_regression(tr, lags=5)
    with pytest.raises(InputError, match=r"lags must be in 1\.\.4 .* got 0"):
        norm_regression(tr, lags=0)
    for bad in (1.5, "2", True, None):
        with pytest.raises(InputError, match="lags must be an integer"):
            norm_regression(tr, lags=bad)  # type: ignore[arg-type]
    assert isinstance(InputError("x"), ValueError)
    short = tiny_inspector("llama").run(tiny_ids(4))
    with pytest.raises(InputError, match="need at least 5 tokens"):
        norm_regression(short, lags=1)
    norm_regression(tiny_inspector("llama").run(tiny_ids(5)), lags=1)  # the minimum works
    assert set(lmscope.trace.VIEW_STREAMS) <= set(lmscope.trace.STREAMS)


def test_zero_updates_are_a_clear_error():
    tr = tiny_inspector("llama").run(tiny_ids(12))
    tr.stream("attn_out", 1).zero_()  # as if the layer's attention were ablated
    with pytest.raises(InputError, match=r"zero vector .* layer\(s\) \[1\]"):
        norm_regression(tr)


def test_norm_regression_from_norms_at_hand_is_the_same_fit():
    tr = tiny_inspector("llama").run(tiny_ids(40))
    norms = log_norms(tr, stream="mlp_out")
    given = norm_regression(tr, stream="mlp_out", lags=3, norms=norms)
    own = norm_regression(tr, stream="mlp_out", lags=3)
    torch.testing.assert_close(given.betas, own.betas)
    torch.testing.assert_close(given.pvalues, own.pvalues)
    with pytest.raises(InputError, match=r"norms must be \[n_layers, seq\]"):
        norm_regression(tr, stream="mlp_out", norms=norms[:, :-1])
