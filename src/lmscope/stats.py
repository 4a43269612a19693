"""Statistics of update sizes: log norms of a stream per token and layer, and a lag regression.

`log_norms(trace, stream)` is `log ||x_t||` of every token's vector in a stream (the attention
output, the MLP output, the residual stream ...) at every layer, as `[n_layers, seq]` float64.

`norm_regression(trace, stream, lags)` asks, for each layer at once, whether a token's update
size is predicted by the previous tokens' update sizes:

    y[t] = b0 + b1 * y[t-1] + ... + b_lags * y[t-lags]      for t = lags+1 .. seq-1

with `y = log_norms(trace, stream)[layer]`. It is ordinary least squares with a constant, solved
for all layers in one batched pseudo-inverse (the same solver statsmodels' `OLS.fit()` uses), with
statsmodels' standard errors, two-sided t-test p-values and centred R².

The first token never enters the fit, neither as a response nor as a predictor (the earliest
predictor is `y[1]`): in most models it is an attention sink whose updates are orders of
magnitude off the rest, and one such outlier would dominate every layer's fit. This follows the
classic hand-written analysis (responses from t = 3 with two lags), which also leaves the first
token out of its norm distributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from lmscope.errors import InputError, check_choice, check_count
from lmscope.options import keyword_options
from lmscope.trace import STREAMS

if TYPE_CHECKING:
    from lmscope.trace import Trace

#: positions left out of the fit and of the view's distributions (the attention sink)
SKIP_FIRST = 1


@keyword_options
def log_norms(trace: Trace, *, stream: str = "attn_out") -> torch.Tensor:
    """`log ||stream(layer)[t]||` for every layer and token: float64 `[n_layers, seq]` on the CPU.

    Norms are taken in float64 whatever the trace's dtype. A zero vector gives `-inf`. The
    attention and MLP outputs' norms were recorded during the run (`Trace.token_norms`): no
    block is rerun for them when the trace recomputes its internals.
    """
    check_choice("stream", stream, STREAMS)
    rows = [trace.token_norms(stream, layer).cpu() for layer in range(trace.n_layers)]
    return torch.stack(rows).log()


@dataclass
class NormRegression:
    """Per-layer OLS of a token's log update size on its `lags` predecessors' (all on the CPU).

    Column `j` of `betas`/`pvalues`/`stderr` is the coefficient of `y[t-1-j]` (lag `j+1`).
    """

    stream: str
    lags: int
    betas: torch.Tensor  # [n_layers, lags] float64
    pvalues: torch.Tensor  # [n_layers, lags]
    stderr: torch.Tensor  # [n_layers, lags]
    intercepts: torch.Tensor  # [n_layers]
    intercept_pvalues: torch.Tensor  # [n_layers]
    r2: torch.Tensor  # [n_layers] centred R², as statsmodels' `rsquared`
    n_obs: int  # responses per layer: seq - lags - 1
    df_resid: int  # n_obs - lags - 1

    @property
    def n_layers(self) -> int:
        return self.betas.shape[0]

    @property
    def tvalues(self) -> torch.Tensor:
        return self.betas / self.stderr

    def significant(self, alpha: float = 0.05) -> torch.Tensor:
        """Bool `[n_layers, lags]`: which lag coefficients have p < alpha."""
        return self.pvalues < alpha


def lagged_ols(y: torch.Tensor, lags: int = 2, start: int = SKIP_FIRST) -> dict[str, torch.Tensor]:
    """Batched OLS of `y[:, t]` on a constant and `y[:, t-1] .. y[:, t-lags]`, t ≥ start + lags.

    `y` is `[batch, seq]`; returns float64 `params` `[batch, lags+1]` (constant first), `bse`,
    `pvalues`, `rsquared` `[batch]`, plus `n_obs` and `df_resid`, matching statsmodels' OLS.
    """
    from scipy import stats as scipy_stats  # here, so `import lmscope` stays quick

    y = torch.as_tensor(y, dtype=torch.float64)
    seq = y.shape[-1]
    n_obs = seq - start - lags
    df = n_obs - (lags + 1)
    if df < 1:
        raise InputError(
            f"{lags} lag(s) need at least {start + 2 * lags + 2} tokens "
            f"(the first {start} left out, then {lags} lags, {lags + 1} parameters and one "
            f"degree of freedom); this sequence has {seq}"
        )
    response = y[:, start + lags :]  # [B, n]
    # column j+1 holds y[t-1-j]
    design = torch.stack(
        [torch.ones_like(response)]
        + [y[:, start + lags - 1 - j : seq - 1 - j] for j in range(lags)],
        dim=-1,
    )  # [B, n, lags+1]
    # statsmodels fits with pinv(X) and takes the covariance from pinv(X) @ pinv(X).T
    pinv = torch.linalg.pinv(design, rtol=1e-15)  # [B, p, n]
    params = (pinv @ response.unsqueeze(-1)).squeeze(-1)
    resid = response - (design @ params.unsqueeze(-1)).squeeze(-1)
    ssr = (resid**2).sum(-1)
    scale = ssr / df
    cov_diag = (pinv**2).sum(-1)  # diag(pinv @ pinv.T)
    bse = (scale.unsqueeze(-1) * cov_diag).sqrt()
    tvalues = params / bse
    pvalues = torch.from_numpy(2 * scipy_stats.t.sf(np.abs(tvalues.numpy()), df))
    centered = response - response.mean(-1, keepdim=True)
    rsquared = 1 - ssr / (centered**2).sum(-1)
    return {
        "params": params,
        "bse": bse,
        "pvalues": pvalues,
        "rsquared": rsquared,
        "n_obs": n_obs,
        "df_resid": df,
    }


@keyword_options
def norm_regression(
    trace: Trace, *, stream: str = "attn_out", lags: int = 2, norms: torch.Tensor | None = None
) -> NormRegression:
    """Regress each token's log norm on its `lags` predecessors', every layer in one batch.

    `y[t] = b0 + b1*y[t-1] + ... + b_lags*y[t-lags]`, fitted for t = lags+1 .. seq-1 (the first
    token is left out, see the module docstring). Equal to
    `statsmodels.api.OLS(y[lags+1:], design).fit()` per layer. `norms`: `log_norms(trace,
    stream=stream)` when the caller has it already (on a trace that recomputes its internals,
    taking them reruns every block).
    """
    check_choice("stream", stream, STREAMS)
    most = max((trace.seq_len - SKIP_FIRST - 2) // 2, 1)
    lags = check_count("lags", lags, high=most, context=f" for a {trace.seq_len}-token trace")
    y = log_norms(trace, stream=stream) if norms is None else torch.as_tensor(norms)
    if y.shape != (trace.n_layers, trace.seq_len):
        raise InputError(f"norms must be [n_layers, seq] = {[trace.n_layers, trace.seq_len]}")
    used = y[:, SKIP_FIRST:]
    if not torch.isfinite(used).all():
        bad = (~torch.isfinite(used)).any(-1).nonzero().flatten().tolist()
        raise InputError(
            f"stream {stream!r} has a zero vector (log norm -inf) at layer(s) {bad}; "
            "a regression on log norms is undefined there"
        )
    fit = lagged_ols(y, lags)
    return NormRegression(
        stream=stream,
        lags=lags,
        betas=fit["params"][:, 1:],
        pvalues=fit["pvalues"][:, 1:],
        stderr=fit["bse"][:, 1:],
        intercepts=fit["params"][:, 0],
        intercept_pvalues=fit["pvalues"][:, 0],
        r2=fit["rsquared"],
        n_obs=fit["n_obs"],
        df_resid=fit["df_resid"],
    )
