"""Dashboard: every lmscope view of one trace in tabs, under a prompt box, with one selection.

- The prompt box runs the inspector on new text ("Run") or continues it greedily ("Generate")
  and swaps the trace in: views are rebuilt for the new trace.
- Views are built when their tab is first opened (token coloring and the logit lens take
  seconds on a CPU), with a progress line meanwhile.
- One `Selection` model (token, layer, head) is the hub: each view's selection traits are
  linked to it in the kernel (`traitlets.link`), so a click in one view reaches the others
  through Python, in the order the clicks were made, and a notebook without a browser (e.g.
  nbclient) behaves the same. Not also with `ipywidgets.jslink`: two link paths race when
  clicks come faster than the kernel answers (a stale value coming back through one path
  overwrote a newer one from the other, and views ended on different heads).
- Attribution follows the selected token; a click on one of its heads selects that head
  (the attention views follow) and its "open in attention view" button switches to them. A
  click on a logit-lens cell, while the lens is the open tab, attributes that cell's top
  token at that position.
- Errors (an empty prompt, a prompt too long for the model) appear in the dashboard's error
  line, never as a traceback.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import ipywidgets as ipw
import traitlets as t

from lmscope.errors import InputError, check_index
from lmscope.widgets.base import describe, log

if TYPE_CHECKING:
    from lmscope.inspector import Inspector
    from lmscope.trace import Trace

TABS = ("Tokens", "Attention", "Logit lens", "Attribution", "Colors", "Norms")


class Selection(ipw.Widget):
    """The shared selection: a widget model without a view (synced, so a saved page keeps it)."""

    token = t.Int(-1).tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    head = t.Int(0).tag(sync=True)

    def as_dict(self) -> dict[str, int]:
        return {"token": self.token, "layer": self.layer, "head": self.head}

    def __repr__(self) -> str:
        return f"Selection(token={self.token}, layer={self.layer}, head={self.head})"


class Dashboard(ipw.VBox):
    """Tokens, attention, logit lens, token colors and norms of `trace`, linked by selection.

    `inspector` enables the prompt box (Run / Generate); without one the box shows the trace's
    text read-only. `dash.selection` is the shared `Selection` (`.token`, `.layer`, `.head`);
    assign a dict to set several at once: `dash.selection = {"token": 3, "layer": 10}`.
    """

    def __init__(
        self,
        trace: Trace,
        inspector: Inspector | None = None,
        *,
        tab: str = "Tokens",
        max_new_tokens: int = 20,
        **kwargs: Any,
    ) -> None:
        if tab not in TABS:
            raise InputError(f"tab must be one of {TABS}, got {tab!r}")
        self.inspector = inspector
        self.trace = trace
        self._selection = Selection(layer=trace.n_layers - 1)
        self._links: list[Any] = []
        self._views: dict[str, ipw.Widget] = {}
        #: (target id, position) the Attribution tab shows when it is built or next asked
        self._question: tuple[int, int] | None = None

        self.prompt = ipw.Textarea(
            value=trace.text,
            placeholder="Type a prompt, then Run (inspect it) or Generate (continue it greedily)",
            rows=4,
            disabled=inspector is None,
            layout=ipw.Layout(width="100%"),
        )
        self.run_button = ipw.Button(
            description="Run", button_style="primary", icon="play", disabled=inspector is None
        )
        self.generate_button = ipw.Button(
            description="Generate", icon="forward", disabled=inspector is None
        )
        self.max_new_tokens = ipw.BoundedIntText(
            value=max_new_tokens,
            min=1,
            max=512,
            description="new tokens",
            style={"description_width": "initial"},
            layout=ipw.Layout(width="150px"),
            disabled=inspector is None,
        )
        self.run_button.on_click(lambda _b: self._from_button(self.run))
        self.generate_button.on_click(lambda _b: self._from_button(self.generate))
        # steps: 1 running the model, 2 building the open tab's view
        self.progress = ipw.IntProgress(
            min=0, max=3, layout=ipw.Layout(width="120px", visibility="hidden")
        )
        self.status = ipw.Label()
        self.error = ipw.Label(style={"text_color": "#b00020"}, layout=ipw.Layout(display="none"))
        controls = ipw.HBox(
            [
                self.run_button,
                self.generate_button,
                self.max_new_tokens,
                self.progress,
                self.status,
            ],
            layout=ipw.Layout(align_items="center", gap="8px", flex_flow="row wrap"),
        )
        self.prompt_box = ipw.VBox([self.prompt, controls])
        self.tabs = ipw.Tab(children=[ipw.VBox() for _ in TABS], titles=list(TABS))
        super().__init__([self.prompt_box, self.error, self.tabs], **kwargs)
        self.add_class("lms-dashboard")

        self._selection.observe(self._on_selection, names=["layer", "head"])
        self._selection.observe(self._on_token, names=["token"])
        self._selection.observe(self._describe_selection)
        self.tabs.observe(self._on_tab, names="selected_index")
        self._reset_selection()
        with self._reporting():
            self.tabs.selected_index = TABS.index(tab)
            self._build(tab)  # selected_index may not have changed (0 is the default)

    # -- selection -----------------------------------------------------------------------------
    @property
    def selection(self) -> Selection:
        return self._selection

    @selection.setter
    def selection(self, values: dict[str, int]) -> None:
        unknown = set(values) - {"token", "layer", "head"}
        if unknown:
            raise InputError(f"selection keys are token, layer and head; got {sorted(unknown)}")
        tr = self.trace
        checked = {}
        if "token" in values:
            token = values["token"]
            checked["token"] = -1 if token == -1 else check_index("token", token, tr.seq_len)
        if "layer" in values:
            checked["layer"] = check_index("layer", values["layer"], tr.n_layers)
        if "head" in values:
            checked["head"] = check_index("head", values["head"], tr.n_heads)
        with self._selection.hold_trait_notifications():
            for name, value in checked.items():
                setattr(self._selection, name, value)

    def _reset_selection(self) -> None:
        # a new trace: its last token; keep layer and head where the model has them
        tr, sel = self.trace, self._selection
        with sel.hold_trait_notifications():
            sel.token = tr.seq_len - 1
            sel.layer = min(sel.layer, tr.n_layers - 1)
            sel.head = min(sel.head, tr.n_heads - 1)
        self._describe_selection()

    def _describe_selection(self, _change: Any = None) -> None:
        sel, tr = self._selection, self.trace
        token = f"token {sel.token} {tr.tokens[sel.token]!r}" if 0 <= sel.token < tr.seq_len else ""
        where = f"{tr.model_name or 'model'} · {tr.seq_len} tokens"
        if tr.generated_text:
            where += f" ({tr.seq_len - tr.prompt_length} generated)"
        parts = [where, token, f"layer {sel.layer}", f"head {sel.head}"]
        if self.progress.layout.visibility != "visible":
            self.status.value = " · ".join(p for p in parts if p)

    def _on_selection(self, change: dict) -> None:
        attribution = self._views.get("Attribution")
        sel = self._selection
        if attribution is not None and (attribution.layer, attribution.head) != (
            sel.layer,
            sel.head,
        ):
            with self._reporting():
                attribution.select(sel.layer, sel.head)
        attention = self._views.get("Attention")
        if attention is None:
            return
        grid, lines = attention.children
        with self._reporting():
            if grid.by == "layer" and grid.layer != sel.layer:
                grid.layer = sel.layer
            lines.show(sel.layer, sel.head)

    def _on_token(self, change: dict) -> None:
        attribution = self._views.get("Attribution")
        if self.tabs.selected_index == TABS.index("Logit lens"):
            return  # a lens click: `_on_lens_cell` asks the whole new question at once
        if attribution is not None and change["new"] >= 0 and attribution.token != change["new"]:
            with self._reporting():
                attribution.token = change["new"]

    def _on_lens_cell(self, change: dict) -> None:
        """A click on a lens cell (the lens tab open): attribute that cell's top token there."""
        if self.tabs.selected_index != TABS.index("Logit lens"):
            return  # the selection moved because of another view, not a lens click
        table = self._views["Logit lens"].table
        layer, position = table.selected_layer, table.selected_token
        if layer < 0 or position < 0:
            return
        stage = "mid" if table.view == "mid" else "post"
        result = self._views["Logit lens"].results[stage]
        top = int(result.token_ids[layer, result.positions.index(position), 0])
        self._question = (top, position)
        attribution = self._views.get("Attribution")
        if attribution is not None:
            with self._reporting():
                attribution.attribute(top, position=position)

    def _on_open_head(self, _change: dict) -> None:
        """The attribution view's "open in attention view": show its head there."""
        attribution = self._views["Attribution"]
        if attribution.head < 0:
            return
        self.selection = {"layer": attribution.layer, "head": attribution.head}
        self.tabs.selected_index = TABS.index("Attention")

    def _on_attribution_head(self, change: dict) -> None:
        attribution = self._views["Attribution"]
        if attribution.layer >= 0 and attribution.head >= 0:
            self.selection = {"layer": attribution.layer, "head": attribution.head}

    def _link(self, view: ipw.Widget, trait: str, hub_trait: str) -> None:
        self._links.append(t.link((self._selection, hub_trait), (view, trait)))

    # -- views ---------------------------------------------------------------------------------
    @property
    def views(self) -> dict[str, ipw.Widget]:
        """The views built so far, by tab title (Attention is a VBox of grid and lines)."""
        return dict(self._views)

    def view(self, tab: str) -> ipw.Widget:
        """The view of `tab`, built now if its tab has not been opened yet."""
        if tab not in TABS:
            raise InputError(f"tab must be one of {TABS}, got {tab!r}")
        self._build(tab)
        return self._views[tab]

    def _on_tab(self, change: dict) -> None:
        if change["new"] is not None:
            with self._reporting():
                self._build(TABS[change["new"]])

    def _build(self, tab: str) -> None:
        if tab in self._views:
            return
        with self._busy(f"building {tab.lower()} for {self.trace.seq_len} tokens…", step=2):
            view = self._make(tab)
        self._views[tab] = view
        self.tabs.children[TABS.index(tab)].children = [view]

    def _make(self, tab: str) -> ipw.Widget:
        import lmscope
        from lmscope.widgets.tokens import TokenView

        tr, sel = self.trace, self._selection
        if tab == "Tokens":
            view = TokenView(tr, selected_token=sel.token)
            self._link(view, "selected_token", "token")
            return view
        if tab == "Attention":
            grid = lmscope.AttentionGrid(tr, layer=sel.layer, head=sel.head, size=96)
            grid.selected_layer, grid.selected_head = sel.layer, sel.head
            lines = lmscope.AttentionLines(tr, layer=sel.layer, head=sel.head)
            self._link(grid, "selected_layer", "layer")
            self._link(grid, "selected_head", "head")
            return ipw.VBox([grid, lines])
        if tab == "Logit lens":
            # track the model's own final answer through the layers
            answer = int(tr.logits[-1].argmax()) if tr.logits is not None else None
            view = lmscope.LogitLens(tr, targets=answer, selected_token=max(sel.token, 0))
            view.selected_layer = sel.layer
            self._link(view.table, "selected_token", "token")
            self._link(view.table, "selected_layer", "layer")
            view.table.observe(self._on_lens_cell, names=["selected_token", "selected_layer"])
            return view
        if tab == "Attribution":
            # the model's own answer at the selected token, or the lens cell last clicked
            position = sel.token if sel.token >= 0 else tr.seq_len - 1
            target, position = self._question or (int(tr.logits[position].argmax()), position)
            view = lmscope.Attribution(tr, target=target, position=position)
            view.can_open = True
            view.select(sel.layer, sel.head)
            view.observe(self._on_attribution_head, names=["layer", "head"])
            view.observe(self._on_open_head, names=["open_head"])
            return view
        if tab == "Colors":
            view = lmscope.TokenColors(tr, selected_token=sel.token)
            self._link(view, "selected_token", "token")
            return view
        view = lmscope.NormPlot(tr, selected_token=sel.token)
        self._link(view, "selected_token", "token")
        return view

    def build_all(self) -> Dashboard:
        """Build every tab's view now (for an export, or before a demo)."""
        with self._reporting():
            for tab in TABS:
                self._build(tab)
        return self

    # -- prompt box ------------------------------------------------------------------------------
    def run(self, text: str | None = None) -> Trace:
        """Run the inspector on `text` (the prompt box's text by default) and show the trace."""
        inspector = self._need_inspector()
        text = self.prompt.value if text is None else text
        if not text.strip():
            raise InputError("the prompt is empty: type some text, then Run")
        with self._busy(f"running {inspector.name}…"):
            trace = inspector.run(text)
        self.prompt.value = text
        self.set_trace(trace)
        return trace

    def generate(self, text: str | None = None, max_new_tokens: int | None = None) -> Trace:
        """Continue `text` greedily by `max_new_tokens` tokens and show the trace of it all."""
        inspector = self._need_inspector()
        text = self.prompt.value if text is None else text
        n = self.max_new_tokens.value if max_new_tokens is None else max_new_tokens
        if not text.strip():
            raise InputError("the prompt is empty: type some text, then Generate")
        with self._busy(f"generating {n} tokens with {inspector.name}…"):
            trace = inspector.generate(text, max_new_tokens=n)
        self.prompt.value = trace.text
        self.set_trace(trace)
        return trace

    def set_trace(self, trace: Trace) -> None:
        """Show `trace` in every view (views are rebuilt; the open tab right away)."""
        for link in self._links:
            link.unlink()
        self._links.clear()
        for view in self._views.values():
            view.close()
        self._views.clear()
        for box in self.tabs.children:
            box.children = []
        self.trace = trace
        self._question = None
        self._reset_selection()
        self._build(TABS[self.tabs.selected_index or 0])

    def _need_inspector(self) -> Inspector:
        if self.inspector is None:
            raise InputError(
                "this dashboard has no inspector: build it with Dashboard(trace, inspector) "
                "or Inspector.show(text) to run new prompts"
            )
        return self.inspector

    def _from_button(self, action: Callable[[], Any]) -> None:
        with self._reporting():
            action()

    # -- progress and errors ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _busy(self, message: str, step: int = 1) -> Iterator[None]:
        buttons = (self.run_button, self.generate_button)
        self.progress.layout.visibility = "visible"
        self.progress.bar_style = "info"
        self.progress.value = step
        self.status.value = message
        for b in buttons:
            b.disabled = True
        try:
            yield
        finally:
            self.progress.layout.visibility = "hidden"
            for b in buttons:
                b.disabled = self.inspector is None
            self._describe_selection()

    @contextlib.contextmanager
    def _reporting(self) -> Iterator[None]:
        try:
            yield
        except Exception as err:
            if not isinstance(err, ValueError | IndexError | KeyError):
                log.exception("lmscope dashboard action failed")
            self.error.value = describe(err)
            self.error.layout.display = None
        else:
            self.error.value = ""
            self.error.layout.display = "none"

    # -- export --------------------------------------------------------------------------------
    def save_html(self, path: str | os.PathLike, title: str | None = None) -> pathlib.Path:
        """Every view as one self-contained HTML file (builds the tabs not opened yet). The
        bqplot plots (lens line and scatter, norms) need a kernel; the page says so."""
        from lmscope.export import save_html

        self.build_all()
        sections: list[ipw.Widget] = []
        for tab in TABS:
            view = self._views[tab]
            # NormPlot's controls would each be a note; one for its plots says enough
            shown = view.strip_fig if tab == "Norms" else view
            sections += [ipw.Label(tab), shown]
        text = self.trace.text.replace("\n", " ")
        title = title or f"lmscope: {text[:60]}{'…' if len(text) > 60 else ''}"
        return save_html(ipw.VBox(sections), path, title=title)
