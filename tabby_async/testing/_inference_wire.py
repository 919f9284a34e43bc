"""What the inference routes put on the wire: completion and chat bodies, stream chunks, usage.

The shapes are the server's, quirks included: a streamed completion's chunks
carry the id prefix ``chatcmpl-``, ``object: "text_completion"`` and the
model under ``model_name`` (a chat chunk under ``model``); stream chunks are
Python's ``json.dumps`` (spaces after ``:`` and ``,``) while whole answers are
compact JSON; a non-streamed answer's id is ``cmpl-`` for chat too; ``usage``
is sent only when ``stream_options.include_usage`` is true, streamed or not.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from ._generation import Choice
from ._wire import FRAME_END, encode

__all__ = [
    "FRAME_DONE",
    "Kind",
    "aggregate_usage",
    "data_frame",
    "response_body",
    "stream_chunk",
    "usage_chunk",
    "usage_of",
]

#: Which route: ``"text"`` (``/v1/completions``) or ``"chat"`` (``/v1/chat/completions``).
Kind = Literal["text", "chat"]

#: The end of a finished stream.
FRAME_DONE = b"data: [DONE]" + FRAME_END


def data_frame(text: str) -> bytes:
    """One SSE event with ``text`` (one line) as its data."""
    return b"data: " + text.encode() + FRAME_END


def usage_of(finish: dict[str, Any] | None) -> dict[str, Any] | None:
    """The usage stats of one choice's finish chunk (``None`` without one), in the
    server's field order."""
    if finish is None:
        return None
    prompt, completion = finish["prompt_tokens"], finish["gen_tokens"]
    return {
        "prompt_tokens": prompt,
        "prompt_time": finish["prompt_time"],
        "prompt_tokens_per_sec": finish["prompt_tokens_per_sec"],
        "completion_tokens": completion,
        "completion_time": finish["gen_time"],
        "completion_tokens_per_sec": finish["gen_tokens_per_sec"],
        "total_tokens": prompt + completion,
        "total_time": finish["total_time"],
    }


def aggregate_usage(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Several choices' usage as one: the first's prompt, the sum of completions."""
    if len(stats) == 1:
        return stats[0]
    first = stats[0]
    completion = sum(s["completion_tokens"] for s in stats)
    completion_time = max(s["completion_time"] for s in stats)
    return {
        "prompt_tokens": first["prompt_tokens"],
        "prompt_time": first["prompt_time"],
        "prompt_tokens_per_sec": first["prompt_tokens_per_sec"],
        "completion_tokens": completion,
        "completion_time": completion_time,
        "completion_tokens_per_sec": completion / (completion_time + 1e-20),
        "total_tokens": first["prompt_tokens"] + completion,
        "total_time": first["prompt_time"] + completion_time,
    }


def _chunk(kind: Kind, request_id: str, choice: dict[str, Any], model: str) -> dict[str, Any]:
    if kind == "text":
        return {
            "id": f"chatcmpl-{request_id}",
            "object": "text_completion",
            "choices": [choice],
            "created": int(time.time()),
            "model_name": model,
        }
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "choices": [choice],
        "model": model,
    }


def stream_chunk(
    kind: Kind,
    request_id: str,
    index: int,
    text: str,
    finish: dict[str, Any] | None,
    model: str,
    suppress_finish: bool,
) -> str | None:
    """One streamed chunk's JSON, or ``None`` when the server skips it as empty."""
    reason = None if finish is None or suppress_finish else finish["finish_reason"]
    if not text and reason is None:
        return None
    choice: dict[str, Any] = {"index": index}
    if kind == "text":
        choice["text"] = text
    else:
        choice["delta"] = {"content": text} if text else {}
    choice["finish_reason"] = reason
    if reason is not None and finish is not None and finish["eos_reason"]:
        choice["eos_reason"] = finish["eos_reason"]
    return json.dumps(_chunk(kind, request_id, choice, model), ensure_ascii=False)


def usage_chunk(
    kind: Kind, request_id: str, index: int, reason: str, usage: dict[str, Any], model: str
) -> str:
    """The chunk after the last choice's end that carries the usage stats."""
    rid = f"chatcmpl-{request_id}"
    now = int(time.time())
    if kind == "text":
        choice = {"index": index, "text": "", "finish_reason": reason}
        data: dict[str, Any] = {"id": rid, "object": "text_completion", "choices": [choice]}
        data.update(created=now, usage=usage, model_name=model)
    else:
        choice = {"index": index, "delta": {}, "finish_reason": reason}
        data = {"id": rid, "object": "chat.completion.chunk", "created": now, "choices": [choice]}
        data.update(usage=usage, model=model)
    return json.dumps(data, ensure_ascii=False)


def _last_fields(choice: Choice) -> tuple[str, Any, Any]:
    """``(finish_reason, eos_reason, stop_str)`` of a whole answer's choice: a choice
    cut short (its generation cancelled) is reported as stopped, with no reasons."""
    finish = choice.finish
    if finish is None:
        return "stop", None, None
    return finish["finish_reason"], finish["eos_reason"], finish["stop_str"]


def response_body(
    kind: Kind,
    request_id: str,
    choices: list[Choice],
    model: str,
    usage: dict[str, Any] | None,
) -> bytes:
    """A non-streamed answer's body, in the server's field order."""
    out: list[dict[str, Any]] = []
    for choice in choices:
        reason, eos_reason, stop_str = _last_fields(choice)
        has_content = bool(choice.text.strip())
        if kind == "text":
            out.append(
                {
                    "index": choice.index,
                    "finish_reason": reason,
                    "eos_reason": eos_reason,
                    "logprobs": None,
                    "text": choice.text if has_content else "",
                }
            )
        else:
            message = {
                "role": "assistant",
                "content": choice.text if has_content else None,
                "reasoning_content": None,
                "tool_calls": None,
                "tool_call_id": None,
            }
            out.append(
                {
                    "index": choice.index,
                    "finish_reason": reason,
                    "eos_reason": eos_reason,
                    "stop_str": stop_str,
                    "message": message,
                    "logprobs": None,
                }
            )
    return encode(
        {
            "id": f"cmpl-{request_id}",
            "choices": out,
            "created": int(time.time()),
            "model": model,
            "object": "text_completion" if kind == "text" else "chat.completion",
            "usage": usage,
        }
    )
