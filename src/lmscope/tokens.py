"""Turn token ids into strings a person can read, and group tokens into words.

Two views of each token:
- `texts`: the exact text it contributes, so ''.join(texts) reproduces the decoded prompt. A
  character split over several byte-level tokens (emoji, CJK) is credited to its last piece.
- `display`: never empty, whitespace made visible, control characters shown as symbols; the
  pieces of a split character show the character and which piece they are ("🤗 1/3").
"""

from __future__ import annotations

import codecs
import unicodedata
from collections.abc import Sequence
from functools import cache

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


@cache
def _byte_alphabet() -> dict[str, int]:
    """Byte-level BPE writes each byte as a printable character: invert that mapping.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes are shifted, in order, to
    code points from 256 up.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    shifted = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + n): b for n, b in enumerate(shifted)})
    return table


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return type(decoder).__name__ == "ByteLevel"


def _token_bytes(tokenizer, ids: Sequence[int]) -> list[bytes]:
    table = _byte_alphabet()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = []
    for i, raw in zip(ids, tokenizer.convert_ids_to_tokens(list(ids)), strict=True):
        if i in special or not isinstance(raw, str) or any(ch not in table for ch in raw):
            out.append(tokenizer.decode([i]).encode())  # added tokens are stored as plain text
        else:
            out.append(bytes(table[ch] for ch in raw))
    return out


def _texts_from_bytes(pieces: list[bytes]) -> list[str]:
    """Each token's text, a character credited to the token holding its last byte."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts = [decoder.decode(piece) for piece in pieces]
    if texts:
        texts[-1] += decoder.decode(b"", final=True)
    return texts


def _texts_by_joint_decoding(tokenizer, ids: Sequence[int]) -> list[str]:
    """Fallback for non-byte-level tokenizers: decode alone, re-join runs of partial pieces."""
    pieces = _decode_each(tokenizer, ids)
    texts = list(pieces)
    i = 0
    while i < len(ids):
        if _REPLACEMENT not in pieces[i]:
            i += 1
            continue
        end = i + 1
        while end < len(ids) and end - i < 4 and _REPLACEMENT in pieces[end]:
            end += 1
        joined = tokenizer.decode(list(ids[i:end]), clean_up_tokenization_spaces=False)
        if _REPLACEMENT not in joined:
            texts[i : end - 1] = [""] * (end - 1 - i)
            texts[end - 1] = joined
        i = end
    return texts


def token_texts(tokenizer, ids: Sequence[int]) -> tuple[list[str], list[tuple[int, int]]]:
    """Exact text of each token, plus (piece, of pieces) for tokens of a split character."""
    if _is_byte_level(tokenizer):
        texts = _texts_from_bytes(_token_bytes(tokenizer, ids))
    else:
        texts = _texts_by_joint_decoding(tokenizer, ids)
    piece_of: list[tuple[int, int]] = [(1, 1)] * len(texts)
    start = 0
    for j, text in enumerate(texts):
        if text == "":
            continue
        if j > start:  # tokens start..j-1 held only bytes of the character token j completes
            count = j - start + 1
            for k in range(start, j + 1):
                piece_of[k] = (k - start + 1, count)
        start = j + 1
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
            completed = texts[j + count - index]
            display.append(
                f"{visible(completed[:1])} {index}/{count}"
                if index < count
                else f"{visible(completed)} {index}/{count}"
            )
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


def id_strings(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own (a vocabulary entry, not a piece of a text), made visible."""
    ids = list(ids)
    if tokenizer is None:
        return [f"#{i}" for i in ids]
    return [visible(text) for text in _decode_each(tokenizer, ids)]
