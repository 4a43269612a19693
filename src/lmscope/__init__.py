"""lmscope: Jupyter widgets for looking inside Hugging Face causal language models."""

from lmscope.errors import LmscopeError
from lmscope.inspector import Inspector
from lmscope.trace import Trace

__all__ = ["Inspector", "LmscopeError", "Trace"]
__version__ = "0.1.0"
