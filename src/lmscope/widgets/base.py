"""The bases every lmscope view and composite builds on (see docs/widget-platform.md).

- `LmscopeWidget`: an anywidget view. It declares its synced traits (arrays as `WireArray`),
  points `_esm` at its bundle in `lmscope/static/`, validates what the browser may set with
  `@t.validate`, and optionally answers on-demand requests (`@request_handler`).
- `LmscopeComposite`: a `VBox` of views and plots (bqplot, controls) with the same error area
  under it, the same `save_html` and the same `close`.

Both report errors the same way (`ReportsErrors`): an exception in an observer, a request
handler or a value the browser set lands in the `error` string, which the shared error area
(`js/lib/errors.js`) shows under the view; the next successful update clears it.

    class HeadView(LmscopeWidget):
        _esm = static_bundle("head_view")
        layer = t.Int(0).tag(sync=True)                  # selection: flows back from the browser
        pattern = WireArray(kind="prob").tag(sync=True)  # the slice on screen, binary

        @keyword_options
        def __init__(self, trace, *, layer=0):
            self._trace = trace
            super().__init__(layer=check_index("layer", layer, trace.n_layers))
            self._push()

        @t.validate("layer")                             # from Python and from the browser
        def _valid_layer(self, proposal):
            return check_index("layer", proposal["value"], self._trace.n_layers)

        @t.observe("layer")
        @reports_errors
        def _push(self, _change=None):                   # Python answers a selection change
            self.pattern = self._trace.attention(self.layer)[0]
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anywidget
import ipywidgets as ipw
import traitlets as t

from lmscope import _wire
from lmscope.errors import LmscopeError, check_choice, check_index, check_optional_index
from lmscope.options import keyword_options
from lmscope.trace import Trace

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
log = logging.getLogger("lmscope")


def static_bundle(name: str) -> pathlib.Path:
    """The built bundle of `js/views/<name>.js`. A Path, so ANYWIDGET_HMR=1 reloads it live."""
    return STATIC / f"{name}.js"


#: what the views call each stream they show
STREAM_TITLES = {
    "attn_out": "attention output",
    "mlp_out": "MLP output",
    "resid_post": "residual stream",
}


def loop_running() -> bool:
    """Whether this thread runs an event loop (a kernel does; a script does not)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def describe(err: BaseException) -> str:
    if isinstance(err, _EXPECTED):
        return f"{type(err).__name__}: {err}"
    return f"{type(err).__name__}: {err} (an lmscope bug? the traceback is in the kernel log)"


# errors a person can cause (a bad value, an impossible request): no traceback in the log
_EXPECTED = (LmscopeError, ValueError, IndexError, KeyError, MemoryError, t.TraitError)


def reports_errors(method: Callable) -> Callable:
    """Decorate an observer/handler so its exception is shown under the view, not lost."""

    @functools.wraps(method)
    def wrapper(self: ReportsErrors, *args: Any, **kwargs: Any) -> Any:
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


def index_check(*names: str, size: str, label: str | None = None, optional: bool = False):
    """A `@t.validate` for selection traits, the same from Python and from the browser: each of
    `names` must be an index below `self.<size>` (an int, or a list's length); -1 stays -1 (none)
    when `optional`. `label` names the value in the message (default: the trait's name).

        _valid_layer = index_check("layer", "layer_end", size="n_layers", label="layer")
    """
    check = check_optional_index if optional else check_index

    @t.validate(*names)
    def validate(self: t.HasTraits, proposal: dict) -> int:
        bound = getattr(self, size)
        bound = bound if isinstance(bound, int) else len(bound)
        return check(label or proposal["trait"].name, proposal["value"], bound)

    return validate


def choice_check(name: str, choices: tuple[str, ...]):
    """A `@t.validate` for a trait that holds one of `choices` (a stream, a stage, a mode)."""

    @t.validate(name)
    def validate(self: t.HasTraits, proposal: dict) -> str:
        return check_choice(name, proposal["value"], choices)

    return validate


class ReportsErrors(t.HasTraits):
    """The one error surface: `error` holds the message of the last failed callback."""

    #: message of the last failed callback, shown under the view; "" when all is well
    error = t.Unicode("")
    _errors_reported = 0

    @contextmanager
    def reporting_errors(self) -> Iterator[None]:
        """Run a callback: its exception becomes `error`; its success clears an earlier one,
        unless a callback nested inside it (an observer its assignment fired) just failed."""
        reported = self._errors_reported
        try:
            yield
        except Exception as err:
            if not isinstance(err, _EXPECTED):
                log.exception("lmscope view callback failed")
            self._report(err)
        else:
            if self.error and self._errors_reported == reported:
                self.error = ""

    def _report(self, err: BaseException) -> None:
        self._errors_reported += 1
        self.error = describe(err)

    #: True while `changing_together` sets several traits: observers that recompute skip
    _quiet = False

    @contextmanager
    def changing_together(self, then: Callable[[], Any]) -> Iterator[None]:
        """Set several traits as one change: observers that check `self._quiet` stay still
        while the block runs, then `then()` recomputes once (its error shown under the view).

            with self.changing_together(self._refresh):
                self.layer, self.head = 3, 1
        """
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False
        with self.reporting_errors():
            then()


class Exportable:
    """`save_html(path, title=None) -> Path`, the same for every view and composite."""

    def save_html(self, path: str | os.PathLike, title: str | None = None) -> pathlib.Path:
        """One self-contained HTML file of this view as it is now; renders with no network
        (lmscope views through a small static runtime, bqplot figures and controls through
        Jupyter's own HTML widget manager, both inlined)."""
        from lmscope.widgets.export import save_html

        return save_html(self, path, title=title or self._export_title())

    def _export_title(self) -> str:
        return f"lmscope: {type(self).__name__}"

    @keyword_options
    def save_svg(
        self,
        path: str | os.PathLike,
        *,
        width: int | None = None,
        height: int | None = None,
        title: str | None = None,
        theme: str = "light",
    ) -> pathlib.Path:
        """This view as drawn now, as an SVG file (text stays text): no view on screen needed,
        no network (a headless Chromium draws the saved page; see lmscope.widgets.figures).
        `width`/`height` set the output size (one alone keeps the aspect); `title` defaults
        to the view, the model, the prompt's length and the run's edits; `theme` is "light"
        or "dark" (the current Jupyter theme: the view's own PNG/SVG control). Controls are
        left out; the line under the title says what they are set to."""
        from lmscope.widgets.figures import save_svg

        title = self._figure_title() if title is None else title
        return save_svg(
            self._figure_target(), path, width=width, height=height, title=title, theme=theme
        )

    @keyword_options
    def save_png(
        self,
        path: str | os.PathLike,
        *,
        scale: float = 2,
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
        title: str | None = None,
        theme: str = "light",
    ) -> pathlib.Path:
        """This view as a PNG file at `scale` x its size on screen (or `width`/`height`
        pixels), drawn from the same SVG as `save_svg` (same `title` and `theme`); `dpi` is
        written into the file (for print at the size on screen: scale=dpi/96)."""
        from lmscope.widgets.figures import save_png

        title = self._figure_title() if title is None else title
        return save_png(
            self._figure_target(),
            path,
            scale=scale,
            width=width,
            height=height,
            dpi=dpi,
            title=title,
            theme=theme,
        )

    def _figure_target(self) -> Any:
        """What a figure shows (the dashboard: its current tab)."""
        return self

    def _figure_title(self) -> str:
        from lmscope.widgets.figures import figure_title

        return figure_title(self)


def _release_traces(widget: Any) -> None:
    # ipywidgets keeps every widget in a registry until it is closed, and a trace pinned there
    # would pin its tensors too
    for name, value in list(vars(widget).items()):
        if isinstance(value, Trace):
            setattr(widget, name, None)


def edits_of(view: Any) -> str:
    """'edited: ...' for the edited trace(s) a view holds (`trace.edits_text`), '' for plain runs."""
    texts = [v.edits_text for v in vars(view).values() if isinstance(v, Trace) and v.edits]
    return " | ".join(dict.fromkeys(texts))


class LmscopeWidget(ReportsErrors, Exportable, anywidget.AnyWidget):
    """Base of every lmscope view: shared stylesheet, error area, request/response, save_html.

    Subclasses set `_esm = static_bundle("<view>")` and declare traits; they keep `_css` (the
    shared stylesheet, built from js/styles/lmscope.css) and put their own rules in their
    JS module (`injectCss` in js/lib/view.js).
    """

    _css = STATIC / "lmscope.css"
    error = t.Unicode("").tag(sync=True)
    #: the edits of the run this view shows ('edited: Ablate(5, head=1)'), drawn above the view
    edits = t.Unicode("").tag(sync=True)
    #: what the reader must know about what is shown, in words (why attention rows do not sum
    #: to one, which layers are not shown and why), drawn above the view; '' for nothing
    note = t.Unicode("").tag(sync=True)

    #: the title the download control writes above the picture (set when the view is shown)
    figure_title = t.Unicode("").tag(sync=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self.figure_title = self._figure_title()
        return super()._repr_mimebundle_(**kwargs)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_custom_message)
        if not self.edits:
            self.edits = edits_of(self)

    _closed = False

    def set_state(self, sync_data: dict) -> None:
        """Values from the browser pass the same `@validate` checks as Python's; one that fails
        is shown under the view and the browser gets Python's value back."""
        names = [key for key in sync_data if key in self.keys]
        before = {name: self._trait_values.get(name) for name in names}
        try:
            super().set_state(sync_data)
        except Exception as err:
            # the checks run when the batch is done, after the values were stored: put the old
            # ones back quietly (no observer saw the bad ones) and tell the browser
            self._trait_values.update(before)
            self._report(err)
            self.send_state(names)

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

    # -- work finished after the first state -------------------------------------------------
    #: what the view still computes after its first state (see `_start_steps`)
    _steps: Iterator[None] | None = None
    _steps_generation = 0

    def _start_steps(self, steps: Iterator[None]) -> None:
        """Finish the view's data one step of `steps` at a time (a second or so of work each)
        whenever the kernel's event loop is idle, so the view answers clicks meanwhile;
        replaces unfinished earlier steps. Without a running loop (a script) nothing runs
        until `fill_all()`."""
        self._steps = steps
        self._steps_generation += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon(self._step, loop, self._steps_generation)

    def _step(self, loop: asyncio.AbstractEventLoop, generation: int) -> None:
        if self._closed or self._steps is None or generation != self._steps_generation:
            return
        with self.reporting_errors():
            if self._next_step():
                loop.call_soon(self._step, loop, generation)
            return
        self._steps = None  # a step failed: its error is shown, the first state stays

    def _next_step(self) -> bool:
        try:
            next(self._steps)  # type: ignore[arg-type]
        except StopIteration:
            self._steps = None
            return False
        return True

    def fill_all(self) -> LmscopeWidget:
        """Compute now what the view would otherwise finish while the kernel is idle."""
        with self.reporting_errors():
            while self._steps is not None:
                self._next_step()
        return self

    def close(self) -> None:
        """Close the view and let go of its trace(s)."""
        super().close()
        self._closed = True
        self._steps = None
        _release_traces(self)

    def synced_bytes(self) -> int:
        """What this widget's synced state costs on the wire right now (bundle excluded)."""
        # code and stylesheet are the same for every trace: not what a view's data costs
        bundle = ("_esm", "_css")
        return sum(_wire.nbytes(getattr(self, name)) for name in self.keys if name not in bundle)


class ErrorArea(LmscopeWidget):
    """The error area alone, under a composite: the same box every view shows its errors in."""

    _esm = static_bundle("error_area")


class LmscopeComposite(ReportsErrors, Exportable, ipw.VBox):
    """Base of the composites (views beside bqplot figures and controls): `children` go in a
    VBox with the shared error area under them, fed by `error`."""

    def __init__(self, children: list[ipw.Widget], **kwargs: Any) -> None:
        self.error_area = ErrorArea()
        super().__init__([*children, self.error_area], **kwargs)
        t.dlink((self, "error"), (self.error_area, "error"))
        text = edits_of(self)
        if text:  # the first view of the composite (its header), else the error area
            views = [c for c in children if isinstance(c, LmscopeWidget)] + [self.error_area]
            if not views[0].edits:
                views[0].edits = text
        self.add_class("lms-composite")  # the error area's download control saves this box

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self.error_area.figure_title = self._figure_title()
        return super()._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        """Close the composite, its parts and their traces."""
        for child in self.children:
            child.close()
        super().close()
        _release_traces(self)
