"""Deterministic, TabbyAPI-shaped response bodies (precomputed bytes).

Everything here is built once, in the server process, with the same compact
JSON separators the real server (FastAPI's JSONResponse) uses.
"""

from __future__ import annotations

import json
from typing import Any

CREATED = 1763952623  # a fixed request time; the real server puts "now" here

_FAMILIES = (
    ("Qwen2.5", ("0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B")),
    ("Llama-3.1", ("8B", "70B", "405B")),
    ("Mistral-Nemo", ("12B",)),
    ("gemma-2", ("2B", "9B", "27B")),
    ("Phi-3.5-mini", ("3.8B",)),
    ("DeepSeek-R1-Distill-Qwen", ("1.5B", "7B", "14B", "32B")),
)
_VARIANTS = ("Instruct", "Base", "Coder-Instruct", "Chat", "abliterated")
_QUANTS = ("exl2-4.0bpw", "exl2-4.65bpw", "exl2-6.0bpw", "exl2-8.0bpw", "exl3-3.5bpw", "GPTQ-Int4")


def model_names(k: int) -> list[str]:
    """K distinct, realistic folder names (the server lists sub-folders)."""
    names: list[str] = []
    i = 0
    while len(names) < k:
        fam, sizes = _FAMILIES[i % len(_FAMILIES)]
        size = sizes[(i // len(_FAMILIES)) % len(sizes)]
        var = _VARIANTS[(i // 7) % len(_VARIANTS)]
        quant = _QUANTS[(i // 11) % len(_QUANTS)]
        names.append(f"{fam}-{size}-{var}-{quant}_{i:04d}")
        i += 1
    return names


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _card(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": CREATED,
        "owned_by": "tabbyAPI",
        "logging": None,
        "parameters": parameters,
    }


def model_list(k: int) -> bytes:
    """GET /v1/model/list (and its alias /v1/models): K cards, parameters null."""
    return dumps({"object": "list", "data": [_card(n) for n in model_names(k)]})


# A ChatML-style Jinja template, repeated to about 2 KB as a real one is.
_TEMPLATE_HEAD = (
    "{%- set loop_messages = messages -%}\n"
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
    '{{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.'
    '\\n\\n<tools>" }}{%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}'
    '{{- "\\n</tools>\\n" }}{%- endif %}\n'
)
_TEMPLATE_LOOP = (
    "{%- for message in loop_messages %}{%- if message['role'] == 'user' %}"
    "{{- '<|im_start|>user\\n' + message['content'] | trim + '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'assistant' %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if message['content'] %}{{- message['content'] | trim }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}{%- endfor %}\n"
)
_TEMPLATE_TAIL = "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n"


def prompt_template(target: int = 2200) -> str:
    text = _TEMPLATE_HEAD
    while len(text) + len(_TEMPLATE_LOOP) + len(_TEMPLATE_TAIL) <= target:
        text += _TEMPLATE_LOOP
    return text + _TEMPLATE_TAIL


MODEL_NAME = "Qwen2.5-7B-Instruct-exl2-6.0bpw"


def model_card() -> bytes:
    """GET /v1/model: the loaded model's card with its parameters."""
    params = {
        "max_seq_len": 32768,
        "cache_size": 32768,
        "cache_mode": "Q8",
        "rope_scale": 1.0,
        "rope_alpha": 1.0,
        "max_batch_size": 256,
        "chunk_size": 2048,
        "prompt_template": "chatml",
        "prompt_template_content": prompt_template(),
        "use_vision": False,
        "draft": None,
    }
    return dumps(_card(MODEL_NAME, params))


def props() -> bytes:
    """GET /props."""
    return dumps(
        {
            "total_slots": 1,
            "chat_template": prompt_template(),
            "default_generation_settings": {"n_ctx": 32768},
        }
    )


def ollama_tags(k: int) -> bytes:
    """GET /api/tags in Ollama's shape, for the same K models."""
    models = []
    for i, name in enumerate(model_names(k)):
        models.append(
            {
                "name": f"{name.lower()}:latest",
                "model": f"{name.lower()}:latest",
                "modified_at": "2026-11-23T19:50:23.862459+00:00",
                "size": 4_683_087_332 + i,
                "digest": f"{i:08x}" + "a3f5c9e1" * 7,
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "qwen2",
                    "families": ["qwen2"],
                    "parameter_size": "7.6B",
                    "quantization_level": "Q4_K_M",
                },
            }
        )
    return dumps({"models": models})


def sse_frame(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\r\n\r\n"


def load_frames(events: int) -> list[bytes]:
    """The load stream of one model: ``processing`` 1..N then ``finished`` N/N.

    ``events`` frames in all (N = events - 1), one frame per HTTP chunk.
    """
    n = max(1, events - 1)
    frames = [
        sse_frame({"model_type": "model", "module": i, "modules": n, "status": "processing"})
        for i in range(1, n + 1)
    ]
    last = {"model_type": "model", "module": n, "modules": n, "status": "finished"}
    frames.append(sse_frame(last))
    return frames


PING_FRAME = b": ping - 2026-11-23 19:50:23.862459+00:00\r\n\r\n"
