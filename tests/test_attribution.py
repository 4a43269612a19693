"""Direct logit attribution: the parts add up to the model's own logit, on every family."""

import pytest
import torch

from _models import TINY_FAMILIES, tiny_ids, tiny_inspector
from lmscope import capture

ATOL = 5e-5


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_probe_rows_give_the_output_projection_input(family):
    """One query row through the probe is that row of what the model fed its output projection."""
    ins = tiny_inspector(family)
    parts, layer, seen = ins.parts, 1, {}
    handle = parts.attn_projs[layer].register_forward_pre_hook(
        lambda _m, args: seen.update(z=args[0][0])
    )
    try:
        trace = ins.run(tiny_ids(20))
    finally:
        handle.remove()
    call = trace._rec.attn_call[layer]
    for row in (0, 7, 19):
        sink = capture.probe(parts.attentions[layer], call, rows=[row])
        assert sink["weights"].shape[-2:] == (1, 20)
        torch.testing.assert_close(
            sink["output"][0, 0].flatten(), seen["z"][row], atol=ATOL, rtol=1e-4
        )
    head = parts.n_heads - 1
    sink = capture.probe(parts.attentions[layer], call, heads=[head], rows=[19])
    torch.testing.assert_close(sink["weights"][0, 0, 0], trace.head(layer, head)[19])
