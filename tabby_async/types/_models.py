"""The Models API's types: model cards and listings, load requests and events, downloads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .._checks import (
    check_bool,
    check_gpu_split,
    check_model_name,
    check_positive_float,
    check_positive_int,
    check_str,
    check_str_list,
)
from ..errors import InvalidInputError
from ._base import RequestStruct, ResponseStruct

__all__ = [
    "DownloadRequest",
    "DownloadResponse",
    "DraftModelLoadRequest",
    "EmbeddingModelLoadRequest",
    "LoadStatus",
    "ModelCard",
    "ModelCardLogging",
    "ModelCardParameters",
    "ModelDefaultGenerationSettings",
    "ModelList",
    "ModelLoadRequest",
    "ModelLoadResponse",
    "ModelPropsResponse",
    "ModelType",
    "RopeAlpha",
]

RopeAlpha = float | Literal["auto"]

if TYPE_CHECKING:
    #: The component of a load event (``embedding_model``: an embedding load's answer).
    ModelType = Literal["vision", "draft", "model", "embedding_model"]
    #: Where a component is.
    LoadStatus = Literal["processing", "finished"]
else:
    # Decoded as plain text, so that a newer server's new value passes
    # through instead of failing the load; type checkers see the Literal, so
    # a misspelt comparison (``event.status == "finshed"``) is caught.
    ModelType = str
    LoadStatus = str


# --- responses ---------------------------------------------------------------


class ModelCardLogging(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The server's logging preferences, as reported on a model card."""

    log_prompt: bool | None = None
    log_generation_params: bool | None = None
    log_requests: bool | None = None


class ModelCardParameters(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """What the server reports about the loaded model's settings."""

    max_seq_len: int | None = None
    cache_size: int | None = None
    cache_mode: str | None = None
    rope_scale: float | None = None
    rope_alpha: float | None = None
    max_batch_size: int | None = None
    chunk_size: int | None = None
    prompt_template: str | None = None
    prompt_template_content: str | None = None
    use_vision: bool | None = None
    draft: ModelCard | None = None


class ModelCard(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """One model. ``parameters`` is set only for the loaded model (``get``)."""

    id: str
    object: str | None = "model"
    #: The time of the request (the server sets it on every answer), not of the model.
    created: int | float | None = 0
    owned_by: str | None = "tabbyAPI"
    logging: ModelCardLogging | None = None
    parameters: ModelCardParameters | None = None


class ModelList(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """A listing of model folders: every sub-folder, loadable or not, unsorted."""

    object: str | None = "list"
    data: list[ModelCard] = msgspec.field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """The model names, in the server's order."""
        return [card.id for card in self.data]


class ModelLoadResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """One progress event of a load (or the answer of an embedding load).

    ``model_type`` is ``"vision"``, ``"draft"``, ``"model"`` or
    ``"embedding_model"``; ``status`` is ``"processing"`` or ``"finished"``.
    Both are typed as those values; a value a newer server adds is passed
    through unchanged, not refused.
    """

    model_type: ModelType = "model"
    module: int
    modules: int
    status: LoadStatus

    @property
    def done(self) -> bool:
        """True for the event that ends a load: the main model's ``finished``."""
        return self.status == "finished" and self.model_type in ("model", "embedding_model")


class ModelDefaultGenerationSettings(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """Part of :class:`ModelPropsResponse`: ``n_ctx`` is the context length."""

    n_ctx: int


class ModelPropsResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The ``/props`` answer (llama.cpp-compatible)."""

    total_slots: int = 1
    #: The loaded model's prompt template; ``""`` (or ``None``) when it has none.
    chat_template: str | None = ""
    default_generation_settings: ModelDefaultGenerationSettings


class DownloadResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """Where the server put a Hugging Face download."""

    download_path: str


# --- requests ------------------------------------------------------------------


class DraftModelLoadRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """A draft (speculative decoding) model to load with the main model."""

    draft_model_name: str
    draft_rope_scale: float | None = None
    draft_rope_alpha: RopeAlpha | None = None
    draft_gpu_split: list[float] | None = None
    draft_cache_mode: str | None = None

    def __post_init__(self) -> None:
        check_model_name("draft_model.draft_model_name", self.draft_model_name)
        check_positive_float("draft_model.draft_rope_scale", self.draft_rope_scale)
        check_positive_float("draft_model.draft_rope_alpha", self.draft_rope_alpha, allow_auto=True)
        check_gpu_split("draft_model.draft_gpu_split", self.draft_gpu_split)
        check_str("draft_model.draft_cache_mode", self.draft_cache_mode)


class ModelLoadRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """Everything ``POST /v1/model/load`` takes; only ``model_name`` is required.

    ``max_seq_len`` and ``cache_size`` count tokens; ``max_seq_len=-1`` asks
    for the model's own context length, and the server caps the context at
    ``cache_size`` (which defaults to the context). ``cache_size`` must be a
    multiple of 256. ``cache_mode`` is read by the server as ``Q4``, ``Q6``,
    ``Q8`` or ``"k,v"`` (k and v from 2 to 8); any other text, ``q4``
    included, gives an FP16 cache. ``gpu_split`` is gigabytes per GPU;
    ``autosplit_reserve`` is megabytes per GPU, and a negative value there
    leaves that GPU out. ``backend`` is passed through unchecked (the server
    knows its own).
    """

    model_name: str
    backend: str | None = None
    max_seq_len: int | None = None
    cache_size: int | None = None
    cache_mode: str | None = None
    tensor_parallel: bool | None = None
    tensor_parallel_backend: str | None = None
    gpu_split_auto: bool | None = None
    autosplit_reserve: list[float] | None = None
    gpu_split: list[float] | None = None
    rope_scale: float | None = None
    rope_alpha: RopeAlpha | None = None
    chunk_size: int | None = None
    output_chunking: bool | None = None
    prompt_template: str | None = None
    vision: bool | None = None
    draft_model: DraftModelLoadRequest | None = None
    skip_queue: bool | None = None

    def __post_init__(self) -> None:
        check_model_name("model_name", self.model_name)
        check_str("backend", self.backend)
        check_positive_int("max_seq_len", self.max_seq_len, own=-1)
        check_positive_int("cache_size", self.cache_size)
        if self.cache_size is not None and self.cache_size % 256:
            raise InvalidInputError(
                "cache_size", f"must be a multiple of 256 tokens, got {self.cache_size}"
            )
        check_str("cache_mode", self.cache_mode)
        check_bool("tensor_parallel", self.tensor_parallel)
        check_str("tensor_parallel_backend", self.tensor_parallel_backend)
        check_bool("gpu_split_auto", self.gpu_split_auto)
        check_gpu_split("autosplit_reserve", self.autosplit_reserve, unit="MB", negative_ok=True)
        check_gpu_split("gpu_split", self.gpu_split)
        check_positive_float("rope_scale", self.rope_scale)
        check_positive_float("rope_alpha", self.rope_alpha, allow_auto=True)
        check_positive_int("chunk_size", self.chunk_size)
        check_bool("output_chunking", self.output_chunking)
        check_str("prompt_template", self.prompt_template)
        check_bool("vision", self.vision)
        check_bool("skip_queue", self.skip_queue)
        if self.draft_model is not None and not isinstance(self.draft_model, DraftModelLoadRequest):
            raise InvalidInputError("draft_model", "must be a DraftModelLoadRequest")


class EmbeddingModelLoadRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """What ``POST /v1/model/embedding/load`` takes."""

    embedding_model_name: str
    embeddings_device: str | None = None

    def __post_init__(self) -> None:
        check_model_name("embedding_model_name", self.embedding_model_name)
        check_str("embeddings_device", self.embeddings_device)


class DownloadRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """A Hugging Face repository for the server to download.

    ``token`` is a secret: it is sent to the server but never shown by
    ``repr``/``str``/rich.
    """

    repo_id: str
    repo_type: str = "model"
    folder_name: str | None = None
    revision: str | None = None
    token: str | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    chunk_limit: int | None = None
    timeout: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.repo_id, str) or not self.repo_id.strip():
            raise InvalidInputError("repo_id", "must be a non-empty string such as 'org/name'")
        check_str("repo_type", self.repo_type)
        if self.folder_name is not None:
            check_model_name("folder_name", self.folder_name)
        check_str("revision", self.revision)
        check_str("token", self.token)
        check_str_list("include", self.include)
        check_str_list("exclude", self.exclude)
        check_positive_int("chunk_limit", self.chunk_limit)
        check_positive_int("timeout", self.timeout)

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        shown = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name == "token" and value is not None:
                value = "***"
            shown.append((name, value))
        return shown

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.__rich_repr__())
        return f"DownloadRequest({fields})"
