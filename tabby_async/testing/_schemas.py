"""What each route of the emulated server accepts: its request body as a :class:`Schema`.

Field order, types, defaults and aliases follow the real server's request
models, so that a bad body gets the same 422 entries, in the same order; only
their declared fields are here (a key the server's model lacks, such as
``max_batch_size`` or ``draft_cache_mode``, is dropped as the server drops it),
and only their declared constraints: the load request's ints have no bounds
(``max_seq_len: -1``, a ``cache_size`` of 1000) and ``autosplit_reserve``
takes negatives.
"""

from __future__ import annotations

from ._validation import (
    Field,
    Schema,
    check_bool,
    check_dict,
    check_float,
    check_float_or_auto,
    check_int,
    check_str,
    list_of,
    literal,
    union,
)

__all__ = [
    "CHAT_MESSAGE",
    "DOWNLOAD_SCHEMA",
    "EMBEDDING_LOAD_SCHEMA",
    "LOAD_SCHEMA",
    "LORA_LOAD_SCHEMA",
    "SAMPLING_SWITCH_SCHEMA",
    "TEMPLATE_SWITCH_SCHEMA",
    "TOKEN_DECODE_SCHEMA",
    "TOKEN_ENCODE_SCHEMA",
]

# ----------------------------------------------------------------------------- models

_float_list = list_of(check_float)

DRAFT_SCHEMA = Schema(
    [
        ("draft_model_name", check_str, True),
        ("draft_rope_scale", check_float, False),
        ("draft_rope_alpha", check_float_or_auto, False),
        ("draft_gpu_split", _float_list, False),
    ]
)

LOAD_SCHEMA = Schema(
    [
        ("model_name", check_str, True),
        ("backend", check_str, False),
        ("max_seq_len", check_int, False),
        ("cache_size", check_int, False),
        ("cache_mode", check_str, False),
        ("tensor_parallel", check_bool, False),
        ("tensor_parallel_backend", check_str, False),
        ("gpu_split_auto", check_bool, False),
        ("autosplit_reserve", _float_list, False),
        ("gpu_split", _float_list, False),
        ("rope_scale", check_float, False),
        ("rope_alpha", check_float_or_auto, False),
        ("chunk_size", check_int, False),
        ("output_chunking", check_bool, False),
        ("prompt_template", check_str, False),
        ("vision", check_bool, False),
        ("draft_model", DRAFT_SCHEMA, False),
        ("skip_queue", check_bool, False),
    ]
)

EMBEDDING_LOAD_SCHEMA = Schema(
    [
        ("embedding_model_name", check_str, True),
        ("embeddings_device", check_str, False),
    ]
)

DOWNLOAD_SCHEMA = Schema(
    [
        ("repo_id", check_str, True),
        ("repo_type", check_str, False),
        ("folder_name", check_str, False),
        ("revision", check_str, False),
        ("token", check_str, False),
        ("include", list_of(check_str), False),
        ("exclude", list_of(check_str), False),
        ("chunk_limit", check_int, False),
        ("timeout", check_int, False),
    ]
)


# ----------------------------------------------------------------------------- LoRA

LORA_LOAD_SCHEMA = Schema(
    [
        (
            "loras",
            list_of(
                Schema([("name", check_str, True), Field("scaling", check_float, default=1.0)])
            ),
            True,
        ),
        Field("skip_queue", check_bool, nullable=False, default=False),
    ]
)

# ----------------------------------------------------------------------------- templates

TEMPLATE_SWITCH_SCHEMA = Schema([("prompt_template_name", check_str, True)])

# ----------------------------------------------------------------------------- sampling

SAMPLING_SWITCH_SCHEMA = Schema([("preset", check_str, False), ("overrides", check_dict, False)])

# ----------------------------------------------------------------------------- tokens

_TOOL_CALL = Schema(
    [
        Field("id", check_str, nullable=False),
        ("function", Schema([("name", check_str, True), ("arguments", check_str, True)]), True),
        Field("type", literal("function"), nullable=False, default="function"),
        ("index", check_int, False),
    ]
)

_MESSAGE_PART = Schema(
    [
        Field("type", literal("text", "image_url"), nullable=False, default="text"),
        ("text", check_str, False),
        ("image_url", Schema([("url", check_str, True)]), False),
    ]
)

CHAT_MESSAGE = Schema(
    [
        Field("role", check_str, nullable=False, default="user"),
        (
            "content",
            union(("str", check_str), ("list[ChatCompletionMessagePart]", list_of(_MESSAGE_PART))),
            False,
        ),
        ("reasoning_content", check_str, False),
        ("tool_calls", list_of(_TOOL_CALL), False),
        ("tool_call_id", check_str, False),
    ]
)

#: The three switches every token request has, in the server's field order.
_TOKEN_SWITCHES = [
    Field("add_bos_token", check_bool, nullable=False, default=True),
    Field("encode_special_tokens", check_bool, nullable=False, default=True),
    Field("decode_special_tokens", check_bool, nullable=False, default=True),
]

TOKEN_ENCODE_SCHEMA = Schema(
    [
        *_TOKEN_SWITCHES,
        (
            "text",
            union(("str", check_str), ("list[ChatCompletionMessage]", list_of(CHAT_MESSAGE))),
            True,
        ),
        Field("template_vars", check_dict, aliases=("chat_template_kwargs",)),
    ]
)

TOKEN_DECODE_SCHEMA = Schema([*_TOKEN_SWITCHES, ("tokens", list_of(check_int), True)])
