"""Turn token ids into strings a person can read, and group tokens into words.

Two views of each token:
- `texts`: the exact text it contributes, so ''.join(texts) reproduces the decoded prompt. A
  character split over several byte-level tokens (emoji, CJK) is credited to its last piece.
- `display`: never empty, whitespace made visible, control characters shown as symbols; the
  pieces of a split character show the character and which piece they are ("🤗 1/3").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

_REPLACEMENT = "\ufffd"
_VISIBLE = {" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"}


def _decode_each(tokenizer, ids: Sequence[int]) -> list[str]:
    pieces = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    raw = tokenizer.convert_ids_to_tokens(list(ids))
    # SentencePiece decoders drop the leading space of a lone token; its raw form keeps "▁".
    return [
        " " + p if isinstance(r, str) and r.startswith("▁") and not p.startswith(" ") else p
        for p, r in zip(pieces, raw, strict=True)
    ]


def token_texts(tokenizer, ids: Sequence[int]) -> tuple[list[str], list[tuple[int, int]]]:
    """Exact text of each token, plus (index, count) of its piece for split characters."""
    pieces = _decode_each(tokenizer, ids)
    texts = list(pieces)
    piece_of: list[tuple[int, int]] = [(1, 1)] * len(ids)
    i = 0
    while i < len(ids):
        if _REPLACEMENT not in pieces[i]:
            i += 1
            continue
        # grow the run of tokens until together they decode to whole characters
        end = i + 1
        joined = pieces[i]
        while end <= len(ids):
            joined = tokenizer.decode(list(ids[i:end]), clean_up_tokenization_spaces=False)
            if not joined.endswith(_REPLACEMENT) or end - i >= 8:
                break
            end += 1
        end = min(end, len(ids))
        if end - i == 1:  # an invalid byte on its own: keep the replacement character
            i += 1
            continue
        for j in range(i, end):
            texts[j] = joined if j == end - 1 else ""
            piece_of[j] = (j - i + 1, end - i)
        i = end
    return texts, piece_of


def visible(text: str) -> str:
    """Whitespace and control characters as visible symbols; never an empty string."""
    out = []
    for ch in text:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif unicodedata.category(ch) == "Cc":
            code = ord(ch)
            out.append(chr(0x2400 + code) if code < 0x20 else f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out) or "∅"


def display_strings(tokenizer, ids: Sequence[int]) -> tuple[list[str], list[str]]:
    """(display strings, exact texts) for a sequence of token ids."""
    texts, piece_of = token_texts(tokenizer, ids)
    display = []
    for j, text in enumerate(texts):
        index, count = piece_of[j]
        if count > 1:
            whole = texts[j + count - index]
            display.append(f"{visible(whole)} {index}/{count}")
        else:
            display.append(visible(text))
    return display, texts


def word_groups(texts: Sequence[str], special: Sequence[bool] | None = None) -> list[list[int]]:
    """Indices of tokens that form whole words.

    A token continues the current word when it starts with a letter or digit and the previous
    token ended with one; whitespace, punctuation and special tokens start a new group. The
    text-less pieces of a split character travel with the piece that completes it.
    """
    special = special or [False] * len(texts)
    units: list[tuple[list[int], str, bool]] = []
    pending: list[int] = []
    for j, text in enumerate(texts):
        pending.append(j)
        if text != "" or j == len(texts) - 1:
            units.append((pending, text, bool(special[j])))
            pending = []
    groups: list[list[int]] = []
    prev_tail_alnum = False
    for indices, text, is_special in units:
        starts_alnum = bool(text) and text[0].isalnum()
        if groups and starts_alnum and prev_tail_alnum and not is_special:
            groups[-1].extend(indices)
        else:
            groups.append(list(indices))
        prev_tail_alnum = bool(text) and text[-1].isalnum() and not is_special
    return groups
