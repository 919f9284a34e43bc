"""The keyword fields of each request, as TypedDicts for ``**fields: Unpack[...]``.

``client.models.load(model_name="m", max_seq_len=4096)`` takes the fields of
:class:`~tabby_async.ModelLoadRequest` as keywords; typing them with these
dicts lets a type checker refuse ``max_seq_lenn=4096`` or
``max_seq_len="4096"``. Each dict mirrors its Struct field for field (a test
keeps them in step); every key is optional, because a Struct may carry the
rest. At run time the Struct's own checks still apply.
"""

from __future__ import annotations

from typing import TypedDict

from ._lora import LoraLoadItem
from ._models import DraftModelLoadRequest, RopeAlpha

__all__ = [
    "DownloadFields",
    "DraftModelFields",
    "EmbeddingModelLoadFields",
    "LoraLoadFields",
    "LoraLoadItemFields",
    "ModelLoadFields",
    "TokenOptions",
]


class DraftModelFields(TypedDict, total=False):
    """The fields of :class:`~tabby_async.DraftModelLoadRequest`."""

    draft_model_name: str
    draft_rope_scale: float | None
    draft_rope_alpha: RopeAlpha | None
    draft_gpu_split: list[float] | None
    draft_cache_mode: str | None


class ModelLoadFields(TypedDict, total=False):
    """The fields of :class:`~tabby_async.ModelLoadRequest` (``draft_model`` may be a dict)."""

    model_name: str
    backend: str | None
    max_seq_len: int | None
    cache_size: int | None
    cache_mode: str | None
    tensor_parallel: bool | None
    tensor_parallel_backend: str | None
    gpu_split_auto: bool | None
    autosplit_reserve: list[float] | None
    gpu_split: list[float] | None
    rope_scale: float | None
    rope_alpha: RopeAlpha | None
    chunk_size: int | None
    output_chunking: bool | None
    prompt_template: str | None
    vision: bool | None
    draft_model: DraftModelLoadRequest | DraftModelFields | None
    skip_queue: bool | None


class EmbeddingModelLoadFields(TypedDict, total=False):
    """The fields of :class:`~tabby_async.EmbeddingModelLoadRequest`."""

    embedding_model_name: str
    embeddings_device: str | None


class DownloadFields(TypedDict, total=False):
    """The fields of :class:`~tabby_async.DownloadRequest`, but ``timeout``.

    ``download(timeout=...)`` is the SDK's bound of the call; the request's
    own ``timeout`` (the server's, in seconds) goes in the Struct.
    """

    repo_id: str
    repo_type: str
    folder_name: str | None
    revision: str | None
    token: str | None
    include: list[str] | None
    exclude: list[str] | None
    chunk_limit: int | None


class LoraLoadItemFields(TypedDict, total=False):
    """The fields of :class:`~tabby_async.types.LoraLoadItem`."""

    name: str
    scaling: float | None


class LoraLoadFields(TypedDict, total=False):
    """The fields of :class:`~tabby_async.types.LoraLoadRequest` (an item may be a dict)."""

    loras: list[LoraLoadItem | LoraLoadItemFields]
    skip_queue: bool | None


class TokenOptions(TypedDict, total=False):
    """The switches of both token routes (unset: the server's default, true)."""

    add_bos_token: bool | None
    encode_special_tokens: bool | None
    decode_special_tokens: bool | None
