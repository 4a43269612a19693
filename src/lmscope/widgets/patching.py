"""Patching: an activation-patching sweep as a heatmap (layers x positions, or layers x heads)
on a diverging scale; a click applies that one patch and shows the prediction before and after.

The sweep itself is `lmscope.patching(...)`; this view shows a `PatchingResult`. Selecting a
cell (`layer` with `token` or `head`) reruns the corrupted prompt with that cell's patch and
pushes the top-k next tokens of both runs and the answer's probability after every block
(the logit lens at the last position) of both.
"""

from __future__ import annotations

from typing import Any

import torch
import traitlets as t

from lmscope.errors import InputError, OutOfRangeError, check_count
from lmscope.options import keyword_options
from lmscope.sweeps import PatchingResult
from lmscope.widgets.base import LmscopeWidget, reports_errors, static_bundle
from lmscope.widgets.traits import WireArray


class Patching(LmscopeWidget):
    """`lmscope.Patching(result, top_k=5)`: the sweep `result` as a heatmap; click a cell."""

    _esm = static_bundle("patching")

    header = t.Unicode("").tag(sync=True)
    site = t.Unicode("resid_pre").tag(sync=True)
    axis = t.Unicode("position").tag(sync=True)
    layers = t.List(t.Int()).tag(sync=True)
    #: positions of the corrupted prompt, or heads
    columns = t.List(t.Int()).tag(sync=True)
    column_labels = t.List(t.Unicode()).tag(sync=True)
    #: the clean token each position is patched from ('' for heads or no counterpart)
    source_labels = t.List(t.Unicode()).tag(sync=True)
    #: [layers, columns] normalised effect (clean = 1, corrupted = 0; NaN: not patched)
    effect = WireArray(kind="table").tag(sync=True)
    #: [layers, columns] the raw metric of each patched run
    metric = WireArray(kind="table").tag(sync=True)
    metric_name = t.Unicode("").tag(sync=True)
    clean_metric = t.Float(0.0).tag(sync=True)
    corrupted_metric = t.Float(0.0).tag(sync=True)
    # the selected cell: a layer of the sweep and a position (token) or a head; -1: none
    layer = t.Int(-1).tag(sync=True)
    token = t.Int(-1).tag(sync=True)
    head = t.Int(-1).tag(sync=True)
    top_k = t.Int(5).tag(sync=True)
    #: what the selected cell's patch is, in words ('' when nothing is selected)
    patch_label = t.Unicode("").tag(sync=True)
    #: [2, top_k] next-token probabilities of the corrupted run and the patched run
    top_probs = WireArray(kind="prob").tag(sync=True)
    top_tokens = t.List(t.List(t.Unicode())).tag(sync=True)
    #: [2, n_layers] the answer's probability after every block, corrupted and patched
    answer_lens = WireArray(kind="prob").tag(sync=True)
    answer_token = t.Unicode("").tag(sync=True)

    @keyword_options
    def __init__(self, result: PatchingResult, *, top_k: int = 5) -> None:
        if not isinstance(result, PatchingResult):
            raise InputError(
                f"Patching shows the result of lmscope.patching(...), got {type(result).__name__}"
            )
        top_k = check_count("top_k", top_k, low=1, high=20)
        self._result = result
        corrupted = result.corrupted
        if result.axis == "head":
            labels = [f"H{h}" for h in result.columns]
            sources = [""] * len(labels)
        else:
            labels = [corrupted.tokens[p] for p in result.columns]
            clean = result.clean.tokens
            sources = [
                "" if result.align[p] is None else clean[result.align[p]] for p in result.columns
            ]
        names = corrupted.token_strings([result.answer] + ([result.foil] if result.foil else []))
        metric_name = f"logit({names[0]})" + (f" - logit({names[1]})" if len(names) > 1 else "")
        super().__init__(
            header=_header(result),
            site=result.site,
            axis=result.axis,
            layers=list(result.layers),
            columns=list(result.columns),
            column_labels=labels,
            source_labels=sources,
            effect=result.effect.float(),
            metric=result.metric.float(),
            metric_name=metric_name,
            clean_metric=result.clean_metric,
            corrupted_metric=result.corrupted_metric,
            top_k=top_k,
            answer_token=names[0],
        )
        self._lens_before = self._lens(corrupted)
        self._shown: tuple[int, int] = (-1, -1)

    @t.validate("layer")
    def _valid_layer(self, proposal: dict) -> int:
        return self._member("layer", proposal["value"], self.layers)

    @t.validate("token")
    def _valid_token(self, proposal: dict) -> int:
        allowed = self.columns if self.axis == "position" else []
        return self._member("token", proposal["value"], allowed)

    @t.validate("head")
    def _valid_head(self, proposal: dict) -> int:
        allowed = self.columns if self.axis == "head" else []
        return self._member("head", proposal["value"], allowed)

    @staticmethod
    def _member(name: str, value: int, allowed: list[int]) -> int:
        if value == -1:
            return -1
        if value not in allowed:
            shown = f"one of {allowed[0]}..{allowed[-1]}" if allowed else "-1 for this sweep"
            raise OutOfRangeError(f"{name} {value} is not in this sweep; choose {shown}")
        return value

    @property
    def result(self) -> PatchingResult:
        return self._result

    def select(self, layer: int, column: int) -> None:
        """Select one cell from Python: a layer of the sweep and a position (or a head)."""
        with self.changing_together(self._apply):
            self.layer = layer
            if self.axis == "head":
                self.head = column
            else:
                self.token = column

    @t.observe("layer", "token", "head")
    @reports_errors
    def _apply(self, _change: Any = None) -> None:
        if self._quiet:  # `select` is setting both traits of the cell; it applies once after
            return
        column = self.head if self.axis == "head" else self.token
        key = (self.layer, column)
        if key == self._shown:  # one selection can change two traits: rerun once
            return
        self._shown = key
        if self.layer < 0 or column < 0:
            with self.hold_sync():
                self.patch_label = ""
                self.top_tokens, self.top_probs, self.answer_lens = [], None, None
            return
        patched = self._result.rerun(self.layer, column)
        after, before = self._lens(patched), self._lens_before
        with self.hold_sync():  # one message: the view never sees half a comparison
            self.top_tokens = [before["tokens"], after["tokens"]]
            self.top_probs = torch.stack([before["probs"], after["probs"]])
            self.answer_lens = torch.stack([before["answer"], after["answer"]])
            self.patch_label = patched.edits[-1].label

    def _lens(self, trace) -> dict:
        lens = trace.logit_lens(
            top_k=self.top_k, positions=[trace.seq_len - 1], targets=[self._result.answer]
        )
        return {
            "tokens": [lens.token_strings[i] for i in lens.token_ids[-1, 0].tolist()],
            "probs": lens.probs[-1, 0],
            "answer": lens.target_probs[:, 0, 0],
        }


def _header(result: PatchingResult) -> str:
    what = "heads" if result.axis == "head" else "positions"
    text = (
        f"Patching {result.site}: clean into corrupted, layers x {what}. "
        f"Clean metric {result.clean_metric:.2f}, corrupted {result.corrupted_metric:.2f}."
    )
    edited = result.corrupted.edits_text
    return f"{text} Corrupted run {edited}." if edited else text
