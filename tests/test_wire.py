"""The wire format, the array trait and the base widget's error and request plumbing."""

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import traitlets as t

from lmscope import _wire
from lmscope.widgets.base import LmscopeWidget, reports_errors, request_handler
from lmscope.widgets.traits import WireArray


@pytest.mark.parametrize(
    ("array", "kind", "dtype"),
    [
        (torch.rand(3, 4), "prob", "float16"),
        (torch.rand(3, 4, dtype=torch.float64), "auto", "float32"),
        (torch.randn(2, 5), "activation", "float16"),
        (np.arange(6, dtype=np.int64).reshape(2, 3), "auto", "int32"),
        (np.arange(6, dtype=np.int64), "index", "int32"),
        (np.array([0, 128, 255]), "byte", "uint8"),
        (np.ones(4, dtype=np.uint8), "auto", "uint8"),
        (torch.randn(4, dtype=torch.bfloat16), "table", "float32"),
        (np.array([True, False]), "auto", "uint8"),
    ],
)
def test_encode_narrows_and_round_trips(array, kind, dtype):
    env = _wire.encode(array, kind)
    assert env["dtype"] == dtype
    assert isinstance(env["data"], memoryview)
    back = _wire.decode(env)
    assert list(back.shape) == env["shape"] == list(array.shape)
    source = array.float().numpy() if isinstance(array, torch.Tensor) else array
    np.testing.assert_array_equal(back, source.astype(dtype))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_encode_takes_gpu_tensors():
    values = torch.rand(4, 5, device="cuda", dtype=torch.bfloat16)
    env = _wire.encode(values, "prob")
    np.testing.assert_array_equal(_wire.decode(env), values.float().cpu().numpy().astype("f2"))


def test_encode_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match=r"0\.\.255"):
        _wire.encode(np.array([300]), "byte")
    with pytest.raises(ValueError, match="int32"):
        _wire.encode(np.array([2**40]), "index")
    with pytest.raises(TypeError):
        _wire.encode(np.array(["a"]), "auto")


class Demo(LmscopeWidget):
    _esm = "export default { render() {} }"
    values = WireArray(kind="prob").tag(sync=True)
    layer = t.Int(0).tag(sync=True)

    @t.observe("layer")
    @reports_errors
    def _push(self, _change=None):
        if self.layer > 3:
            raise IndexError(f"layer {self.layer} is out of range: valid 0..3")
        self.values = torch.full((2,), 0.25 * self.layer)

    @request_handler("slice")
    def _slice(self, start: int, stop: int):
        env = _wire.encode(torch.arange(10)[start:stop], "index")
        return {"dtype": env["dtype"], "shape": env["shape"]}, [env["data"]]


def test_array_trait_holds_binary_envelopes():
    w = Demo(values=np.array([0.5, 1.0]))
    assert w.values["dtype"] == "float16"
    state = w.get_state()
    assert isinstance(state["values"]["data"], memoryview)
    with pytest.raises(t.TraitError, match="values"):
        w.values = np.array(["x"])


def test_callback_errors_show_under_the_view_and_clear():
    w = Demo()
    w.layer = 9
    assert w.error == "IndexError: layer 9 is out of range: valid 0..3"
    w.layer = 2
    assert w.error == ""
    np.testing.assert_array_equal(WireArray.to_numpy(w.values), [0.5, 0.5])


class Chained(LmscopeWidget):
    _esm = "export default { render() {} }"
    start = t.Int(0).tag(sync=True)
    end = t.Int(0).tag(sync=True)

    @t.observe("start")
    @reports_errors
    def _follow(self, _change=None):
        if self.end < self.start:
            self.end = self.start  # fires _check, which fails; this callback itself succeeds

    @t.observe("end")
    @reports_errors
    def _check(self, _change=None):
        if self.end > 3:
            raise IndexError(f"end {self.end} is out of range: valid 0..3")


def test_an_outer_callback_does_not_clear_the_error_of_one_it_fired():
    w = Chained()
    w.start = 7
    assert w.error == "IndexError: end 7 is out of range: valid 0..3"
    w.start = 0  # the next success clears it
    w.end = 2
    assert w.error == ""


def test_requests_are_answered_with_buffers_and_errors():
    w = Demo()
    sent = []
    w.send = lambda content, buffers=None: sent.append((content, buffers))
    w._on_custom_message(
        w,
        {"type": "lmscope:request", "id": "a", "name": "slice", "args": {"start": 2, "stop": 5}},
        [],
    )
    reply, buffers = sent[-1]
    assert reply == {
        "type": "lmscope:response",
        "id": "a",
        "ok": True,
        "result": {"dtype": "int32", "shape": [3]},
    }
    assert np.frombuffer(bytes(buffers[0]), dtype=np.int32).tolist() == [2, 3, 4]
    w._on_custom_message(w, {"type": "lmscope:request", "id": "b", "name": "nope", "args": {}}, [])
    assert sent[-1][0]["ok"] is False and "no request handler 'nope'" in sent[-1][0]["error"]
    assert "nope" in w.error


def test_token_view_selection_is_validated_and_answered():
    from _models import tiny_ids, tiny_inspector
    from lmscope.widgets.tokens import TokenView

    trace = tiny_inspector("gpt2").run(tiny_ids(6))
    view = TokenView(trace)
    assert WireArray.to_numpy(view.ids).tolist() == trace.input_ids.tolist()
    view.token = 3
    assert len(view.predictions) == 5 and view.predictions[0].startswith("#")
    with pytest.raises(IndexError, match=r"0\.\.5"):
        view.token = 6
    fake = SimpleNamespace(tokens=["a", "b"], input_ids=torch.tensor([1, 2]))
    assert TokenView(fake).predictions == []


def test_views_load_their_bundle_and_the_shared_stylesheet_from_files():
    from anywidget._file_contents import FileContents

    from lmscope.widgets.base import STATIC
    from lmscope.widgets.tokens import TokenView

    # Paths, turned into watched files by anywidget: what ANYWIDGET_HMR=1 reloads live
    assert isinstance(TokenView._esm, FileContents)
    assert isinstance(LmscopeWidget._css, FileContents)
    view = TokenView(SimpleNamespace(tokens=["a"], input_ids=torch.tensor([7])))
    assert view._esm == (STATIC / "tokens.js").read_text()
    assert ".lms-error" in view._css and "--jp-" in view._css


_HMR_SCRIPT = """
import pathlib, sys, time
from lmscope.widgets.base import LmscopeWidget
bundle = pathlib.Path(sys.argv[1])

class Live(LmscopeWidget):
    _esm = bundle

w = Live()
assert "v1" in w._esm
time.sleep(0.3)
bundle.write_text("export default { render() {} } // v2")
deadline = time.monotonic() + 10
while "v2" not in w._esm and time.monotonic() < deadline:
    time.sleep(0.05)
print("reloaded" if "v2" in w._esm else "stale")
"""


def test_hot_reload_pushes_a_rebuilt_bundle(tmp_path):
    pytest.importorskip("watchfiles")
    bundle = tmp_path / "live.js"
    bundle.write_text("export default { render() {} } // v1")
    env = {**os.environ, "ANYWIDGET_HMR": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _HMR_SCRIPT, str(bundle)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.stdout.strip() == "reloaded", out.stderr[-2000:]
