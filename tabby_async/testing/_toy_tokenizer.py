"""The emulator's toy tokenizer and toy chat renderer: shapes, not a real model's tokens.

Token *values* from the emulator are not what any real model would give; only
the shapes, statuses and the server's own logic around them are faithful.

The tokenizer works on UTF-8 bytes:

- ids 0, 1 and 2 are the special tokens ``<pad>``, ``<s>`` (BOS) and ``</s>``
  (EOS); every byte ``b`` of the text is the id ``b + 3``;
- ``add_bos_token`` puts id 1 first;
- ``encode_special_tokens`` reads the texts ``<s>``, ``</s>`` and ``<pad>``
  in the input as their ids (otherwise they are plain bytes);
- decoding is the inverse: with ``decode_special_tokens`` the special ids
  come back as their texts, otherwise they are left out; an id outside
  0..258 decodes to U+FFFD, and so do bytes that are not valid UTF-8.

The chat renderer stands in for the model's Jinja template: each message is
a line ``<role>: <content>`` (a ``None`` content is empty), after the tool
results that follow an assistant's ``tool_calls`` are put in the order of
those calls, as the server does. It renders no generation prompt (the server
forces ``add_generation_prompt`` off here) and never a BOS (``add_bos_token``
alone decides that).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["BOS", "decode", "encode", "render_chat"]

#: The ids of ``<pad>``, ``<s>`` and ``</s>``.
PAD, BOS, EOS = 0, 1, 2
_SPECIAL_TEXTS = {"<pad>": PAD, "<s>": BOS, "</s>": EOS}
_SPECIAL_IDS = {token: text for text, token in _SPECIAL_TEXTS.items()}
_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in sorted(_SPECIAL_TEXTS, key=len)[::-1]))
_OFFSET = 3


def encode(text: str, *, add_bos_token: bool, encode_special_tokens: bool) -> list[int]:
    """The toy ids of ``text`` (see the module docstring)."""
    tokens = [BOS] if add_bos_token else []
    if not encode_special_tokens:
        tokens.extend(b + _OFFSET for b in text.encode())
        return tokens
    start = 0
    for match in _SPECIAL_RE.finditer(text):
        tokens.extend(b + _OFFSET for b in text[start : match.start()].encode())
        tokens.append(_SPECIAL_TEXTS[match.group()])
        start = match.end()
    tokens.extend(b + _OFFSET for b in text[start:].encode())
    return tokens


def decode(tokens: Iterable[int], *, decode_special_tokens: bool) -> str:
    """The text of toy ids (see the module docstring)."""
    parts: list[str] = []
    run = bytearray()
    for token in tokens:
        if _OFFSET <= token < 256 + _OFFSET:
            run.append(token - _OFFSET)
            continue
        if run:
            parts.append(run.decode(errors="replace"))
            run.clear()
        special = _SPECIAL_IDS.get(token)
        if special is None:
            parts.append("\ufffd")
        elif decode_special_tokens:
            parts.append(special)
    if run:
        parts.append(run.decode(errors="replace"))
    return "".join(parts)


def render_chat(messages: list[dict[str, Any]]) -> str:
    """The toy prompt of chat messages whose content is already a string or ``None``."""
    ordered = _tool_results_in_call_order(messages)
    return "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in ordered)


def _tool_results_in_call_order(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run of ``tool`` messages after an assistant's ``tool_calls``, sorted into
    the calls' order by ``tool_call_id`` (unknown ids keep their order, last)."""
    out = list(messages)
    i = 0
    while i < len(out):
        message = out[i]
        i += 1
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls:
            continue
        order = {call["id"]: n for n, call in enumerate(calls) if call.get("id")}
        start = i
        while i < len(out) and out[i].get("role") == "tool":
            i += 1
        if order and i - start > 1:
            out[start:i] = sorted(
                out[start:i], key=lambda m: order.get(m.get("tool_call_id"), len(order))
            )
    return out
