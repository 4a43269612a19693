"""The calling convention of every public view and analysis: `f(trace, *, option=value, ...)`.

`@keyword_options` enforces it with clear words: the trace (or the one subject) is the only
positional argument, and a misspelled option raises `TypeError` naming the closest valid one
(`layr=3` -> "did you mean 'layer'?") instead of being ignored.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


#: names that lmscope 0.1 used, and what each became (CHANGELOG.md lists them all)
RENAMED = {
    "k": ("top_k", "n_neighbors"),
    "selected_token": ("token",),
    "selected_layer": ("layer",),
    "selected_head": ("head",),
    "include_first": ("mute_sink",),
    "view": ("stage",),
    "stages": ("stage",),
    "aggregate": ("head",),
}


def unknown_option(owner: str, name: str, valid: Iterable[str]) -> TypeError:
    """The error for an option `owner` does not take, with the closest valid name if any."""
    valid = sorted(valid)
    close = [new for new in RENAMED.get(name, ()) if new in valid]
    close = close or difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid options: {', '.join(valid)}"
    return TypeError(f"{owner}() got an unknown option {name!r}{hint}")


def keyword_options(func: F) -> F:
    """Check a call's keywords against `func`'s signature before running it (see the module
    docstring). Works on functions and on `__init__` (then named after the class)."""
    params = list(inspect.signature(func).parameters.values())
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    options = [p.name for p in params if p.kind == p.KEYWORD_ONLY]
    owner = func.__qualname__.removesuffix(".__init__")
    subject = positional[1:] if positional[:1] == ["self"] else positional
    takes = ", ".join(subject) or "nothing"

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(positional):
            raise TypeError(
                f"{owner}() takes {takes} positionally; everything else is a keyword option "
                f"({', '.join(options)}), e.g. {options[0] if options else 'name'}=..."
            )
        for name in kwargs:
            if name not in options and name not in positional:
                raise unknown_option(owner, name, options)
        return func(*args, **kwargs)

    call.__lmscope_options__ = tuple(options)  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]
