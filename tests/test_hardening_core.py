"""Long sessions, threads, hostile text and safety defaults at the Inspector/Trace level."""

import gc
import os
import subprocess
import sys
import threading
import weakref

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmscope
from _models import default_inspector, tiny_ids, tiny_inspector
from lmscope.errors import InputError


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_traces_are_released_when_dropped():
    ins = tiny_inspector("llama")
    trace = ins.run(tiny_ids(32))
    trace.attention(0)
    ref = weakref.ref(trace)
    del trace
    gc.collect()
    assert ref() is None


@pytest.mark.real_model
def test_soak_many_runs_do_not_grow_memory():
    """A reduced soak for CI: 60 runs with pattern requests on the real model."""
    ins = default_inspector()
    texts = [
        f"Run number {i}: the quick brown fox jumps over {i % 7} lazy dogs." for i in range(60)
    ]
    for text in texts[:10]:  # warm-up: allocator pools and caches settle
        ins.run(text).attention(3)
    gc.collect()
    before = _rss_bytes()
    for i, text in enumerate(texts[10:]):
        trace = ins.run(text)
        trace.attention(i % 30)
        trace.attention_scores((i + 1) % 30)
        del trace
    gc.collect()
    growth = _rss_bytes() - before
    print(f"soak: 50 runs, RSS before {before / 1e6:.0f} MB, growth {growth / 1e6:.1f} MB")
    assert growth < 60e6


def test_threads_sharing_an_inspector_never_mix_activations():
    ins = tiny_inspector("qwen2")
    inputs = {name: tiny_ids(20 + k, seed=k) for k, name in enumerate("abcd")}
    expected = {name: ins.run(ids).logits.clone() for name, ids in inputs.items()}
    failures = []

    def worker(name):
        for _ in range(6):
            trace = ins.run(inputs[name])
            if not torch.equal(trace.logits, expected[name]):
                failures.append(name)
            torch.testing.assert_close(
                trace.resid_post(2),
                trace.resid_pre(2) + trace.attn_out(2) + trace.mlp_out(2),
                atol=1e-4,
                rtol=1e-4,
            )

    threads = [threading.Thread(target=worker, args=(name,)) for name in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures


@pytest.mark.real_model
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=60))
def test_any_unicode_text_runs_and_reassembles(text):
    ins = default_inspector()
    trace = ins.run(text)
    assert trace.seq_len == len(trace.tokens) == len(trace.token_texts)
    assert all(trace.tokens)
    assert trace.text == ins.tokenizer.decode(trace.input_ids)


@pytest.mark.real_model
@pytest.mark.parametrize(
    "text",
    [
        "<img src=x onerror=alert(1)>",
        "</script><script>alert(1)</script>",
        "\u202e\u200b\ufeff reversed and zero-width",
        "a" * 3000,
        "\x00\x01\x02\x7f",
    ],
)
def test_hostile_text_is_plain_data(text):
    trace = default_inspector().run(text)
    assert trace.text == default_inspector().tokenizer.decode(trace.input_ids)


def test_whitespace_only_is_not_empty():
    ins = default_inspector()
    assert ins.run(" ").seq_len >= 1
    with pytest.raises(InputError):
        ins.run("")


def test_import_makes_no_network_call():
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('network call during import')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "import lmscope, lmscope.inspector, lmscope.trace\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_trust_remote_code_is_off_by_default():
    import inspect

    default = (
        inspect.signature(lmscope.Inspector.from_pretrained).parameters["trust_remote_code"].default
    )
    assert default is False


def test_closing_a_view_releases_its_trace():
    from lmscope.widgets.attention_lines import AttentionLines
    from lmscope.widgets.tokens import TokenView

    trace = tiny_inspector("llama").run(tiny_ids(16))
    views = [AttentionLines(trace, layer=1, head=0), TokenView(trace)]
    ref = weakref.ref(trace)
    del trace
    gc.collect()
    assert ref() is not None  # open views keep their trace (ipywidgets registers every widget)
    for view in views:
        view.close()
    gc.collect()
    assert ref() is None
