"""lmscope: Jupyter widgets for looking inside Hugging Face causal language models."""

from lmscope.architectures import Layout
from lmscope.coloring import token_colors
from lmscope.edits import Ablate, Patch, mean_activation
from lmscope.errors import LmscopeError
from lmscope.inspector import Inspector
from lmscope.stats import log_norms, norm_regression
from lmscope.sweeps import PatchingResult, patching
from lmscope.trace import Trace

__all__ = [
    "Ablate",
    "AttentionExplorer",
    "AttentionGrid",
    "AttentionLines",
    "Attribution",
    "Dashboard",
    "Inspector",
    "Layout",
    "LmscopeError",
    "LogitLens",
    "NormPlot",
    "Patch",
    "Patching",
    "PatchingResult",
    "TokenColors",
    "TokenView",
    "Trace",
    "log_norms",
    "mean_activation",
    "norm_regression",
    "patching",
    "token_colors",
]

_WIDGETS = {
    "AttentionExplorer": "lmscope.widgets.attention_explorer",
    "AttentionLines": "lmscope.widgets.attention_lines",
    "AttentionGrid": "lmscope.widgets.attention_grid",
    "Attribution": "lmscope.widgets.attribution",
    "LogitLens": "lmscope.widgets.logit_lens",
    "TokenColors": "lmscope.widgets.token_colors",
    "TokenView": "lmscope.widgets.tokens",
    "NormPlot": "lmscope.widgets.norm_plot",
    "Dashboard": "lmscope.widgets.dashboard",
    "Patching": "lmscope.widgets.patching",
}


def __getattr__(name: str):
    # widgets load anywidget; import them on first use so the torch side stays widget-free
    if name in _WIDGETS:
        import importlib

        return getattr(importlib.import_module(_WIDGETS[name]), name)
    raise AttributeError(f"module 'lmscope' has no attribute {name!r}")


__version__ = "0.1.0"
