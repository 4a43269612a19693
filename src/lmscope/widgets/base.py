"""The anywidget base class every lmscope view subclasses.

A view declares its synced traits (arrays as `WireArray`), points `_esm` at its bundle in
`lmscope/static/`, and optionally answers on-demand requests:

    class HeadView(LmscopeWidget):
        _esm = static_bundle("head_view")
        layer = t.Int(0).tag(sync=True)                 # selection: flows back from the browser
        pattern = WireArray(kind="prob").tag(sync=True)  # the slice on screen, binary

        def __init__(self, trace, **kwargs):
            self._trace = trace
            super().__init__(**kwargs)
            self._push()

        @t.observe("layer")
        @reports_errors
        def _push(self, _change=None):                  # Python answers a selection change
            self.pattern = self._trace.attention(self.layer)[0]

        @request_handler("prefetch")
        def _prefetch(self, layer: int):                # bulk fetch: (json result, buffers)
            env = _wire.encode(self._trace.attention(layer), "prob")
            return {"dtype": env["dtype"], "shape": env["shape"]}, [env["data"]]

Exceptions in observers and handlers land in the synced `error` trait, which the JS side
(`js/lib/view.js`) shows under the view; the next successful update clears it.
"""

from __future__ import annotations

import functools
import logging
import os
import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anywidget
import traitlets as t

from lmscope import _wire
from lmscope.errors import LmscopeError
from lmscope.trace import Trace

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
log = logging.getLogger("lmscope")


def static_bundle(name: str) -> pathlib.Path:
    """The built bundle of `js/views/<name>.js`. A Path, so ANYWIDGET_HMR=1 reloads it live."""
    return STATIC / f"{name}.js"


def describe(err: BaseException) -> str:
    if isinstance(err, LmscopeError | ValueError | IndexError | KeyError | MemoryError):
        return f"{type(err).__name__}: {err}"
    return f"{type(err).__name__}: {err} (an lmscope bug? the traceback is in the kernel log)"


def reports_errors(method: Callable) -> Callable:
    """Decorate an observer/handler so its exception is shown under the view, not lost."""

    @functools.wraps(method)
    def wrapper(self: LmscopeWidget, *args: Any, **kwargs: Any) -> Any:
        with self.reporting_errors():
            return method(self, *args, **kwargs)

    return wrapper


def request_handler(name: str) -> Callable[[Callable], Callable]:
    """Mark a method as the answer to `request(model, name, args)` from `js/lib/request.js`.

    It is called with the request's args as keywords and returns `result` or
    `(result, buffers)`; result is JSON, buffers are bytes/memoryviews sent alongside.
    """

    def mark(method: Callable) -> Callable:
        method._lmscope_request = name  # type: ignore[attr-defined]
        return method

    return mark


class LmscopeWidget(anywidget.AnyWidget):
    """Base of every lmscope view: shared stylesheet, error area, request/response, save_html.

    Subclasses set `_esm = static_bundle("<view>")` and declare traits; they keep `_css` (the
    shared stylesheet, built from js/styles/lmscope.css) and put their own rules in their
    JS module (`injectCss` in js/lib/view.js).
    """

    _css = STATIC / "lmscope.css"
    #: message of the last failed callback, shown under the view; "" when all is well
    error = t.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_custom_message)

    @contextmanager
    def reporting_errors(self) -> Iterator[None]:
        """Run a callback: its exception becomes `error`; its success clears an earlier one,
        unless a callback nested inside it (an observer its assignment fired) just failed."""
        reported = self._errors_reported
        try:
            yield
        except Exception as err:
            if not isinstance(err, LmscopeError | ValueError | IndexError | KeyError):
                log.exception("lmscope view callback failed")
            self._report(err)
        else:
            if self.error and self._errors_reported == reported:
                self.error = ""

    _errors_reported = 0
    _closed = False

    def _report(self, err: BaseException) -> None:
        self._errors_reported += 1
        self.error = describe(err)

    # -- request / response ----------------------------------------------------------------
    @classmethod
    def _request_handlers(cls) -> dict[str, str]:
        found = {}
        for attr in dir(cls):
            name = getattr(getattr(cls, attr, None), "_lmscope_request", None)
            if name:
                found[name] = attr
        return found

    def _on_custom_message(self, _widget: Any, content: Any, _buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "lmscope:request":
            return
        reply: dict[str, Any] = {"type": "lmscope:response", "id": content.get("id")}
        attr = self._request_handlers().get(content.get("name", ""))
        buffers: list = []
        reported = self._errors_reported
        try:
            if self._closed:
                raise LmscopeError(
                    "this view was closed (a newer run replaced it), so it has no data to send"
                )
            if attr is None:
                raise KeyError(
                    f"{type(self).__name__} has no request handler {content.get('name')!r}"
                )
            result = getattr(self, attr)(**(content.get("args") or {}))
            if isinstance(result, tuple):
                result, buffers = result
            reply.update(ok=True, result=result)
            if self.error and self._errors_reported == reported:
                self.error = ""
        except Exception as err:
            reply.update(ok=False, error=describe(err))
            self._report(err)
        self.send(reply, buffers)

    def close(self) -> None:
        """Close the view and let go of its trace(s): ipywidgets keeps every widget in a
        registry until it is closed, and a trace pinned there would pin its tensors too."""
        super().close()
        self._closed = True
        for name, value in list(vars(self).items()):
            if isinstance(value, Trace):
                setattr(self, name, None)

    # -- export and accounting -------------------------------------------------------------
    def save_html(self, path: str | os.PathLike, title: str | None = None) -> pathlib.Path:
        """One self-contained HTML file of this view as it is now; renders with no network."""
        from lmscope.export import save_html

        return save_html(self, path, title=title)

    def synced_bytes(self) -> int:
        """What this widget's synced state costs on the wire right now (bundle excluded)."""
        return sum(_wire.nbytes(getattr(self, name)) for name in self.keys if name != "_esm")
