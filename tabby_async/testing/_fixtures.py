"""The folders an emulator has unless told otherwise: templates, sampler presets, LoRAs.

The template texts are small Jinja templates written for the emulator; it never
renders them (its chat renderer is a toy), it only reports them as the server
reports a template's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["DEFAULT_LORAS", "DEFAULT_PRESETS", "DEFAULT_TEMPLATES"]

#: The template folder an emulator has unless told otherwise (name -> text).
DEFAULT_TEMPLATES: Mapping[str, str] = MappingProxyType(
    {
        "chatml": "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] }}<|im_end|>\n{% endfor %}",
        "alpaca": "{% for message in messages %}### {{ message['role'] | capitalize }}:\n"
        "{{ message['content'] }}\n\n{% endfor %}",
    }
)
#: The sampler override presets an emulator has unless told otherwise.
DEFAULT_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "fast": {"temperature": {"override": 0.7}, "top_k": {"override": 20, "force": True}},
        "precise": {"temperature": {"override": 0.1, "force": True}},
    }
)
#: The LoRA folders an emulator has unless told otherwise.
DEFAULT_LORAS = ("lora-a", "lora-b")
