"""Token display strings and word groups on the real tokenizer; the default-model cache."""

import os

import pytest

from _models import default_inspector
from lmscope import default_model
from lmscope.tokens import display_strings, visible, word_groups

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def tokenizer():
    return default_inspector().tokenizer


@pytest.mark.parametrize(
    "text",
    [
        "Hello world, this is plain ASCII.",
        "Emoji 🤗🎉 and CJK 日本語の文章 mixed in",
        "line one\n\tindented line two\r\n  trailing  ",
        "<script>alert('x')</script> &amp; <b>bold</b>",
        "\x00\x07 control \x1b[31m characters",
    ],
)
def test_texts_reassemble_and_display_is_never_empty(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    display, texts = display_strings(tokenizer, ids)
    assert "".join(texts) == tokenizer.decode(ids)
    assert len(display) == len(ids)
    assert all(d for d in display)
    assert not any("\n" in d or "\t" in d or "\r" in d for d in display)


def test_split_characters_show_the_character_and_piece(tokenizer):
    ids = tokenizer("🤗")["input_ids"]
    display, texts = display_strings(tokenizer, ids)
    assert len(ids) > 1
    assert texts[-1] == "🤗" and all(t == "" for t in texts[:-1])
    assert display == [f"🤗 {i}/{len(ids)}" for i in range(1, len(ids) + 1)]


def test_whitespace_is_visible():
    assert visible(" a\nb\tc") == "·a↵b⇥c"
    assert visible("\x07") == "␇"
    assert visible("") == "∅"


def test_word_groups_join_subwords(tokenizer):
    trace = default_inspector().run("A sunflower grows, unbelievably, under the sun.")
    words = ["".join(trace.token_texts[i] for i in group) for group in trace.word_groups]
    assert "".join(words) == trace.text
    assert " sunflower" in words and " unbelievably" in words and " sun" in words
    assert "," in words and "." in words
    assert sorted(i for g in trace.word_groups for i in g) == list(range(trace.seq_len))


def test_word_groups_rules():
    assert word_groups(["The", " sun", "flower", ",", " ok"]) == [[0], [1, 2], [3], [4]]
    assert word_groups(["<s>", "Hi"], special=[True, False]) == [[0], [1]]
    # text-less pieces of a split character go with the piece completing it
    assert word_groups(["a", " ", "", "", "🤗", "b"]) == [[0], [1], [2, 3, 4], [5]]


def test_cache_folder_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "mine"))
    assert default_model.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("LMSCOPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_model.cache_root() == tmp_path / "xdg" / "lmscope"


def test_converted_model_is_reused():
    folder = default_model.ensure_converted()
    stamp = os.stat(folder / "model.safetensors").st_mtime_ns
    assert default_model.ensure_converted() == folder
    assert os.stat(folder / "model.safetensors").st_mtime_ns == stamp
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".converting-")]
