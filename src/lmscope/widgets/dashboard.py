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
- Edits: `dash.edits` (readable and settable; the control row's "ablate head", "ablate
  neuron" and "clear edits" set it too) re-runs the prompt with those edits and shows the
  edited run; `dash.original` keeps the unedited one. While edits are set, the attention grid
  shows the edited patterns minus the original's (difference mode) and the lens tracks the
  original's answer (and the edited one) through the edited run's layers. Ablations from the
  control write zero, or, once `dash.mean_texts` is set from Python and "mean" is picked in
  the control's ablation menu, the site's mean over those texts (computed once per layer).
  A new Run or Generate starts unedited.
- Errors (an empty prompt, a prompt too long for the model) appear in the dashboard's error
  area (the one every view has), never as a traceback.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as ipw
import traitlets as t

from lmscope import edits as edits_module
from lmscope.errors import InputError, check_choice, check_index, check_optional_index
from lmscope.options import keyword_options, unknown_option
from lmscope.widgets.base import LmscopeComposite, index_check

if TYPE_CHECKING:
    from lmscope.inspector import Inspector
    from lmscope.trace import Trace

TABS = ("Tokens", "Attention", "Logit lens", "Attribution", "Colors", "Norms")


SELECTION = ("token", "layer", "head")


class Selection(ipw.Widget):
    """The shared selection: a widget model without a view (synced, so a saved page keeps it).

    `token` (-1: none), `layer` and `head`, each checked against the trace's sizes whoever sets
    it. The same names are every view's selection traits.
    """

    token = t.Int(-1).tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    head = t.Int(0).tag(sync=True)
    n_tokens = t.Int(1).tag(sync=True)
    n_layers = t.Int(1).tag(sync=True)
    n_heads = t.Int(1).tag(sync=True)

    _valid_token = index_check("token", size="n_tokens", optional=True)
    _valid_layer = index_check("layer", size="n_layers")
    _valid_head = index_check("head", size="n_heads")

    def update(self, values: Mapping[str, int] | Selection) -> None:
        """Set several at once (checked first, so a bad value changes nothing)."""
        items = values.as_dict() if isinstance(values, Selection) else dict(values)
        for name in items:
            if name not in SELECTION:
                raise unknown_option("Selection", name, SELECTION)
        checked = {
            "token": lambda v: check_optional_index("token", v, self.n_tokens),
            "layer": lambda v: check_index("layer", v, self.n_layers),
            "head": lambda v: check_index("head", v, self.n_heads),
        }
        items = {name: checked[name](value) for name, value in items.items()}
        with self.hold_trait_notifications():
            for name, value in items.items():
                setattr(self, name, value)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SELECTION}

    def __repr__(self) -> str:
        return f"Selection(token={self.token}, layer={self.layer}, head={self.head})"


class Dashboard(LmscopeComposite):
    """Tokens, attention, logit lens, token colors and norms of `trace`, linked by selection.

    `inspector` enables the prompt box (Run / Generate); without one the box shows the trace's
    text read-only. `dash.selection` is the shared `Selection` (`.token`, `.layer`, `.head`);
    assign a dict (or another `Selection`) to set several at once:
    `dash.selection = {"token": 3, "layer": 10}`.
    """

    @keyword_options
    def __init__(
        self,
        trace: Trace,
        *,
        inspector: Inspector | None = None,
        tab: str = "Tokens",
        max_new_tokens: int = 20,
    ) -> None:
        check_choice("tab", tab, TABS)
        self.inspector = inspector
        self.trace = trace
        #: the unedited run; `trace` is the run shown (edited while `edits` is set)
        self.original = trace
        self._edits: tuple[edits_module.Ablate | edits_module.Patch, ...] = ()
        self._mean_texts: tuple[Any, ...] = ()
        self._means: dict[tuple[str, int], Any] = {}  # (site, layer) -> mean over mean_texts
        self._selection = Selection()
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
        self.prompt_box = ipw.VBox([self.prompt, controls, self._edit_controls()])
        self.tabs = ipw.Tab(children=[ipw.VBox() for _ in TABS], titles=list(TABS))
        super().__init__([self.prompt_box, self.tabs])
        # the error area right under the prompt box, where a failed Run is noticed
        self.children = [self.prompt_box, self.error_area, self.tabs]
        self.add_class("lms-dashboard")

        self._selection.observe(self._on_selection, names=["layer", "head"])
        self._selection.observe(self._on_token, names=["token"])
        self._selection.observe(self._describe_selection, names=list(SELECTION))
        self.tabs.observe(self._on_tab, names="selected_index")
        self.tabs.observe(self._retitle_figure, names="selected_index")
        self._reset_selection()
        with self.reporting_errors():
            self.tabs.selected_index = TABS.index(tab)
            self._build(tab)  # selected_index may not have changed (0 is the default)

    def _figure_target(self) -> ipw.Widget:
        """A figure of the dashboard is its current tab (what save_png/save_svg draw)."""
        return self.tabs.children[self.tabs.selected_index or 0]

    def _figure_title(self) -> str:
        from lmscope.widgets.figures import figure_title

        tab = TABS[self.tabs.selected_index or 0]
        return figure_title(self).replace("Dashboard", f"Dashboard: {tab}", 1)

    def _retitle_figure(self, _change=None) -> None:
        # the download control in the error area names the tab it saves
        self.error_area.figure_title = self._figure_title()

    # -- edits --------------------------------------------------------------------------------
    def _edit_controls(self) -> ipw.HBox:
        no_inspector = self.inspector is None
        self.ablate_head_button = ipw.Button(
            description="ablate selected head",
            layout=ipw.Layout(width="auto"),
            tooltip="zero the selected layer and head's output (at the output projection's input)",
            disabled=no_inspector,
        )
        n_neurons = self._n_neurons()
        self.neuron = ipw.BoundedIntText(
            value=0,
            min=0,
            max=max(0, n_neurons - 1),
            description="neuron",
            style={"description_width": "initial"},
            layout=ipw.Layout(width="140px"),
            disabled=no_inspector,
        )
        self.ablate_neuron_button = ipw.Button(
            description="ablate neuron of layer's MLP",
            layout=ipw.Layout(width="auto"),
            tooltip="zero that hidden unit of the selected layer's MLP",
            disabled=no_inspector,
        )
        self.clear_edits_button = ipw.Button(
            description="clear edits", disabled=True, layout=ipw.Layout(width="auto")
        )
        self.ablation = ipw.Dropdown(
            options=[("zero", "zero")],
            value="zero",
            description="ablation",
            tooltip="what an ablation writes: zero, or the mean over dash.mean_texts",
            style={"description_width": "initial"},
            layout=ipw.Layout(width="auto"),
            disabled=no_inspector,
        )
        self.edits_status = ipw.Label()
        self.ablate_head_button.on_click(lambda _b: self._from_button(self.ablate_head))
        self.ablate_neuron_button.on_click(
            lambda _b: self._from_button(lambda: self.ablate_neuron(self.neuron.value))
        )
        self.clear_edits_button.on_click(lambda _b: self._from_button(self.clear_edits))
        return ipw.HBox(
            [
                self.ablation,
                self.ablate_head_button,
                self.neuron,
                self.ablate_neuron_button,
                self.clear_edits_button,
                self.edits_status,
            ],
            layout=ipw.Layout(align_items="center", gap="8px", flex_flow="row wrap"),
        )

    def _n_neurons(self) -> int:
        if self.inspector is None:
            return 1
        return edits_module.site_shape(self.inspector.parts, "mlp_neuron", 0)[0]

    @property
    def edits(self) -> tuple[edits_module.Ablate | edits_module.Patch, ...]:
        """The edits of the run shown (() for the original run)."""
        return self._edits

    @edits.setter
    def edits(self, edits: Any) -> None:
        """Re-run the original's tokens with `edits` (an `Ablate`/`Patch` or a list of them;
        empty restores the original run). Checked first: a bad edit changes nothing."""
        if isinstance(edits, edits_module.Ablate | edits_module.Patch):
            edits = [edits]
        if edits is None or isinstance(edits, str) or not isinstance(edits, list | tuple):
            raise InputError(
                "dash.edits takes a list of lmscope.Ablate / lmscope.Patch ([] for none), "
                f"got {type(edits).__name__}"
            )
        edits = tuple(edits)
        for edit in edits:
            if not isinstance(edit, edits_module.Ablate | edits_module.Patch):
                raise InputError(
                    "dash.edits takes lmscope.Ablate and lmscope.Patch objects, got "
                    f"{type(edit).__name__}"
                )
        if not edits:
            self._edits = ()
            self._show(self.original, keep_selection=True)
            return
        inspector = self._need_inspector()
        original = self.original
        with self._busy(f"running {inspector.name} with {len(edits)} edit(s)…"):
            trace = inspector.run(
                original.input_ids,
                edits=edits,
                prompt_length=original.prompt_length,
                generated_text=original.generated_text,
            )
        self._edits = edits
        self._show(trace, keep_selection=True)

    def ablate_head(
        self, layer: int | None = None, head: int | None = None, *, mode: str | None = None
    ) -> None:
        """Add an ablation of `layer`'s `head` (the selected ones by default) to the edits;
        `mode` "zero" or "mean" (default: the control's ablation menu)."""
        sel = self._selection
        layer = sel.layer if layer is None else layer
        head = sel.head if head is None else head
        self.edits = [*self._edits, self._ablation(layer, mode, head=head)]

    def ablate_neuron(
        self, neuron: int, layer: int | None = None, *, mode: str | None = None
    ) -> None:
        """Add an ablation of MLP hidden unit `neuron` of `layer` (the selected one)."""
        layer = self._selection.layer if layer is None else layer
        self.edits = [*self._edits, self._ablation(layer, mode, neuron=neuron)]

    @property
    def mean_texts(self) -> tuple[Any, ...]:
        """The texts (or token ids) a mean ablation averages over; () offers zero only."""
        return self._mean_texts

    @mean_texts.setter
    def mean_texts(self, texts: Any) -> None:
        if isinstance(texts, str) or not isinstance(texts, list | tuple):
            raise InputError(
                "dash.mean_texts takes a list of texts (or token ids) to average over, "
                f"got {type(texts).__name__}"
            )
        for text in texts:
            if not (isinstance(text, str) and text) and not hasattr(text, "shape"):
                raise InputError(f"dash.mean_texts holds texts or token ids, got {text!r}")
        self._mean_texts, self._means = tuple(texts), {}
        options = [("zero", "zero")]
        if texts:
            options.append((f"mean of {len(texts)} text(s)", "mean"))
        self.ablation.options = options
        self.ablation.value = "mean" if texts else "zero"

    def _ablation(self, layer: int, mode: str | None, **unit: int) -> edits_module.Ablate:
        mode = self.ablation.value if mode is None else mode
        check_choice("mode", mode, edits_module.MODES)
        if mode == "zero":
            return edits_module.Ablate(layer, **unit)
        if not self._mean_texts:
            raise InputError(
                "a mean ablation averages over dash.mean_texts: set it to a list of texts first"
            )
        inspector = self._need_inspector()
        layer = check_index("layer", layer, inspector.n_layers)
        site = "head" if "head" in unit else "mlp_neuron"
        if (site, layer) not in self._means:
            n = len(self._mean_texts)
            with self._busy(f"averaging layer {layer}'s {site} over {n} text(s)…"):
                self._means[site, layer] = edits_module.mean_activation(
                    inspector, list(self._mean_texts), site=site, layer=layer
                )
        return edits_module.Ablate(layer, mode="mean", mean=self._means[site, layer], **unit)

    def clear_edits(self) -> None:
        """Back to the original run."""
        self.edits = []

    def _describe_edits(self) -> None:
        self.clear_edits_button.disabled = not self._edits
        original, edited = self.original, self.trace
        if not self._edits or original.logits is None or edited.logits is None:
            self.edits_status.value = ""
            return
        p_orig = original.logits[-1].float().softmax(-1)
        p_edit = edited.logits[-1].float().softmax(-1)
        answer, new = int(p_orig.argmax()), int(p_edit.argmax())
        from lmscope.lens import token_strings

        names = token_strings(getattr(edited, "tokenizer", None), [answer, new])
        text = (
            f"{len(self._edits)} edit(s) · last token: p({names[0]!r}) "
            f"{float(p_orig[answer]):.3f} → {float(p_edit[answer]):.3f}"
        )
        if new != answer:
            text += f"; edited top-1 {names[1]!r} ({float(p_edit[new]):.3f})"
        self.edits_status.value = text

    # -- selection -----------------------------------------------------------------------------
    @property
    def selection(self) -> Selection:
        return self._selection

    @selection.setter
    def selection(self, values: Mapping[str, int] | Selection) -> None:
        self._selection.update(values)

    def _reset_selection(self) -> None:
        # a new trace: its last token; keep layer and head where the model has them (the first
        # trace starts on the last layer)
        tr, sel = self.trace, self._selection
        first = sel.n_tokens == 1 and sel.token == -1
        with sel.hold_trait_notifications():
            sel.n_tokens, sel.n_layers, sel.n_heads = tr.seq_len, tr.n_layers, tr.n_heads
            sel.token = tr.seq_len - 1
            sel.layer = tr.n_layers - 1 if first else min(sel.layer, tr.n_layers - 1)
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
        # the other views are linked to the selection name to name; Attribution asks again
        attribution = self._views.get("Attribution")
        sel = self._selection
        if attribution is not None and (attribution.layer, attribution.head) != (
            sel.layer,
            sel.head,
        ):
            with self.reporting_errors():
                attribution.select(sel.layer, sel.head)

    def _on_token(self, change: dict) -> None:
        attribution = self._views.get("Attribution")
        if self.tabs.selected_index == TABS.index("Logit lens"):
            return  # a lens click: `_on_lens_cell` asks the whole new question at once
        if attribution is not None and change["new"] >= 0 and attribution.token != change["new"]:
            with self.reporting_errors():
                attribution.token = change["new"]

    def _on_lens_cell(self, change: dict) -> None:
        """A click on a lens cell (the lens tab open): attribute that cell's top token there."""
        if self.tabs.selected_index != TABS.index("Logit lens"):
            return  # the selection moved because of another view, not a lens click
        table = self._views["Logit lens"].table
        layer, position = table.layer, table.token
        if layer < 0 or position < 0:
            return
        stage = "mid" if table.stage == "mid" else "post"
        view = self._views["Logit lens"]
        view.ensure(position)  # the lens decodes columns as they are shown
        top = int(view.results[stage].token_ids[layer, position, 0])
        self._question = (top, position)
        attribution = self._views.get("Attribution")
        if attribution is not None:
            with self.reporting_errors():
                attribution.attribute(top, token=position)

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

    def _link(self, view: ipw.Widget, *names: str) -> None:
        # a view's selection traits carry the hub's names, so linking is name to name
        for name in names:
            self._links.append(t.link((self._selection, name), (view, name)))

    # -- views ---------------------------------------------------------------------------------
    @property
    def views(self) -> dict[str, ipw.Widget]:
        """The views built so far, by tab title."""
        return dict(self._views)

    def view(self, tab: str) -> ipw.Widget:
        """The view of `tab`, built now if its tab has not been opened yet."""
        check_choice("tab", tab, TABS)
        self._build(tab)
        return self._views[tab]

    def _on_tab(self, change: dict) -> None:
        if change["new"] is not None:
            with self.reporting_errors():
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

        tr, sel = self.trace, self._selection
        if tab == "Tokens":
            view = lmscope.TokenView(tr, token=sel.token)
            self._link(view, "token")
        elif tab == "Attention":
            # an edited run: its patterns minus the original's
            compare = {"compare": self.original, "mode": "diff"} if self._edits else {}
            view = lmscope.AttentionExplorer(tr, layer=sel.layer, head=sel.head, **compare)
            self._link(view, "layer", "head")
        elif tab == "Logit lens":
            # track the model's own final answer through the layers; an edited run also tracks
            # the original's answer
            answer: int | list[int] | None = None
            if tr.logits is not None:
                answer = int(tr.logits[-1].argmax())
                if self._edits and self.original.logits is not None:
                    first = int(self.original.logits[-1].argmax())
                    answer = [first] if first == answer else [first, answer]
            view = lmscope.LogitLens(tr, targets=answer, token=max(sel.token, 0))
            view.layer = sel.layer
            self._link(view, "token", "layer")
            view.table.observe(self._on_lens_cell, names=["token", "layer"])
        elif tab == "Attribution":
            # the model's own answer at the selected token, or the lens cell last clicked
            position = sel.token if sel.token >= 0 else tr.seq_len - 1
            target, position = self._question or (int(tr.logits[position].argmax()), position)
            view = lmscope.Attribution(tr, target=target, token=position)
            view.can_open = True
            view.select(sel.layer, sel.head)
            view.observe(self._on_attribution_head, names=["layer", "head"])
            view.observe(self._on_open_head, names=["open_head"])
        elif tab == "Colors":
            view = lmscope.TokenColors(tr, token=sel.token)
            self._link(view, "token")
        else:
            view = lmscope.NormPlot(tr, token=sel.token)
            self._link(view, "token")
        return view

    def build_all(self) -> Dashboard:
        """Build every tab's view now (for an export, or before a demo)."""
        with self.reporting_errors():
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
        """Show `trace` in every view (views are rebuilt; the open tab right away) as the new
        original run (edits cleared)."""
        self.original = trace
        self._edits = ()
        self._show(trace)

    def _show(self, trace: Trace, keep_selection: bool = False) -> None:
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
        if keep_selection:  # the same tokens, edited or not
            self._describe_selection()
        else:
            self._reset_selection()
        self._describe_edits()
        self._retitle_figure()  # a figure's title names the edits of the run shown
        self._build(TABS[self.tabs.selected_index or 0])

    def _need_inspector(self) -> Inspector:
        if self.inspector is None:
            raise InputError(
                "this dashboard has no inspector: build it with Dashboard(trace, inspector=ins) "
                "or Inspector.show(text) to run new prompts"
            )
        return self.inspector

    def _from_button(self, action: Callable[[], Any]) -> None:
        with self.reporting_errors():
            action()

    # -- progress and errors ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _busy(self, message: str, step: int = 1) -> Iterator[None]:
        buttons = (
            self.run_button,
            self.generate_button,
            self.ablate_head_button,
            self.ablate_neuron_button,
        )
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

    # -- export --------------------------------------------------------------------------------
    def save_html(self, path: str | os.PathLike, title: str | None = None) -> pathlib.Path:
        """Every view as one self-contained HTML file (builds the tabs not opened yet), its
        bqplot figures drawn too; returns the file's path."""
        self.build_all()
        sections: list[ipw.Widget] = []
        for tab in TABS:
            heading = ipw.Label(tab)
            heading.add_class("lms-section")
            sections += [heading, self._views[tab]]
        text = self.trace.text.replace("\n", " ")
        title = title or f"lmscope: {text[:60]}{'…' if len(text) > 60 else ''}"
        from lmscope.widgets.export import save_html

        return save_html(ipw.VBox(sections), path, title=title)
