"""The request and response types, as msgspec Structs.

Responses ignore fields they do not know (a newer server may send more) and
give every field a default where the server may leave it out. Fields that
only describe (a card's ``object``, ``created`` and ``owned_by``, the props'
``chat_template``) also take ``null`` and, for ``created``, a float: a server
or proxy that differs there must not fail the whole call. Requests omit
unset fields on the wire, so the server's own defaults apply. Requests are
checked when built: a bad value raises :class:`~tabby_async.InvalidInputError`
naming the field, before anything is sent.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec

from .errors import InvalidInputError

__all__ = [
    "DownloadRequest",
    "DownloadResponse",
    "DraftModelLoadRequest",
    "EmbeddingModelLoadRequest",
    "HealthIssue",
    "HealthResponse",
    "ModelCard",
    "ModelCardLogging",
    "ModelCardParameters",
    "ModelDefaultGenerationSettings",
    "ModelList",
    "ModelLoadRequest",
    "ModelLoadResponse",
    "ModelPropsResponse",
    "PermissionResponse",
]

RopeAlpha = float | Literal["auto"]


class _Response(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Base of the response types: immutable, unknown fields ignored.

    ``gc=False``: a listing decodes into thousands of these, and keeping them
    out of the cycle collector's books saves real CPU. They hold only
    scalars, other responses and lists of them, so they cannot form a cycle
    (unless a caller appends a response into one of its own lists).
    """


class _Request(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """Base of the request types: unset (None) fields are not sent."""


# --- responses ---------------------------------------------------------------


class ModelCardLogging(_Response, frozen=True, kw_only=True, gc=False):
    """The server's logging preferences, as reported on a model card."""

    log_prompt: bool | None = None
    log_generation_params: bool | None = None
    log_requests: bool | None = None


class ModelCardParameters(_Response, frozen=True, kw_only=True, gc=False):
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


class ModelCard(_Response, frozen=True, kw_only=True, gc=False):
    """One model. ``parameters`` is set only for the loaded model (``get``)."""

    id: str
    object: str | None = "model"
    #: The time of the request (the server sets it on every answer), not of the model.
    created: int | float | None = 0
    owned_by: str | None = "tabbyAPI"
    logging: ModelCardLogging | None = None
    parameters: ModelCardParameters | None = None


class ModelList(_Response, frozen=True, kw_only=True, gc=False):
    """A listing of model folders: every sub-folder, loadable or not, unsorted."""

    object: str | None = "list"
    data: list[ModelCard] = msgspec.field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """The model names, in the server's order."""
        return [card.id for card in self.data]


class ModelLoadResponse(_Response, frozen=True, kw_only=True, gc=False):
    """One progress event of a load (or the answer of an embedding load).

    ``model_type`` is ``"vision"``, ``"draft"``, ``"model"`` or
    ``"embedding_model"``; ``status`` is ``"processing"`` or ``"finished"``.
    """

    model_type: str = "model"
    module: int
    modules: int
    status: str

    @property
    def done(self) -> bool:
        """True for the event that ends a load: the main model's ``finished``."""
        return self.status == "finished" and self.model_type in ("model", "embedding_model")


class ModelDefaultGenerationSettings(_Response, frozen=True, kw_only=True, gc=False):
    """Part of :class:`ModelPropsResponse`: ``n_ctx`` is the context length."""

    n_ctx: int


class ModelPropsResponse(_Response, frozen=True, kw_only=True, gc=False):
    """The ``/props`` answer (llama.cpp-compatible)."""

    total_slots: int = 1
    #: The loaded model's prompt template; ``""`` (or ``None``) when it has none.
    chat_template: str | None = ""
    default_generation_settings: ModelDefaultGenerationSettings


class DownloadResponse(_Response, frozen=True, kw_only=True, gc=False):
    """Where the server put a Hugging Face download."""

    download_path: str


class HealthIssue(_Response, frozen=True, kw_only=True, gc=False):
    """One reason the server calls itself unhealthy."""

    time: str = ""
    description: str = ""


class HealthResponse(_Response, frozen=True, kw_only=True, gc=False):
    """The ``/health`` answer. A 503 "unhealthy" answer is a result too."""

    status: str
    issues: list[HealthIssue] = msgspec.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"


class HealthShape(msgspec.Struct, frozen=True):
    """The server's own 503 on ``/health``: both fields present, ``issues`` a list.

    A proxy's 503 (an HTML page, ``{"detail": ...}``, ``{"status": "error"}``)
    lacks one of them and is an outage, not the server's answer.
    """

    status: str
    issues: list[HealthIssue]


class PermissionResponse(_Response, frozen=True, kw_only=True, gc=False):
    """The ``/v1/auth/permission`` answer: ``"api"`` or ``"admin"``."""

    permission: str


# --- request checks ------------------------------------------------------------


def _check_name(field: str, value: object) -> None:
    """A model folder name: non-empty, relative, no ``..`` segment.

    The server does not sanitise names (``../x`` escapes its model folder), so
    the SDK refuses them. Nested names such as ``org/exl3/4.0bpw`` stay allowed.
    """
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidInputError(field, "must not be empty")
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
        raise InvalidInputError(field, f"must be a name relative to the model folder: {value!r}")
    if any(part == ".." for part in value.replace("\\", "/").split("/")):
        raise InvalidInputError(field, f"must not contain a '..' segment: {value!r}")
    if "\x00" in value:
        raise InvalidInputError(field, "must not contain a NUL character")


def _check_positive_int(field: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, f"must be an integer, not {type(value).__name__}")
    if value <= 0:
        raise InvalidInputError(field, f"must be greater than 0, got {value}")


def _check_positive_float(field: str, value: object, *, allow_auto: bool = False) -> None:
    if value is None or (allow_auto and value == "auto"):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = ' or "auto"' if allow_auto else ""
        raise InvalidInputError(field, f"must be a number{hint}, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(field, f"must be a finite number greater than 0, got {value}")


def _check_split(field: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(field, "must be a list of numbers (GB per GPU)")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise InvalidInputError(f"{field}[{i}]", f"must be a number, not {item!r}")
        if item < 0:
            raise InvalidInputError(f"{field}[{i}]", f"must not be negative, got {item}")


def _check_str(field: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")


def _check_bool(field: str, value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise InvalidInputError(field, f"must be true or false, not {value!r}")


def _check_str_list(field: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InvalidInputError(field, "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidInputError(f"{field}[{i}]", f"must be a string, not {item!r}")


# --- requests ------------------------------------------------------------------


class DraftModelLoadRequest(_Request, frozen=True, kw_only=True, omit_defaults=True):
    """A draft (speculative decoding) model to load with the main model."""

    draft_model_name: str
    draft_rope_scale: float | None = None
    draft_rope_alpha: RopeAlpha | None = None
    draft_gpu_split: list[float] | None = None
    draft_cache_mode: str | None = None

    def __post_init__(self) -> None:
        _check_name("draft_model.draft_model_name", self.draft_model_name)
        _check_positive_float("draft_model.draft_rope_scale", self.draft_rope_scale)
        _check_positive_float(
            "draft_model.draft_rope_alpha", self.draft_rope_alpha, allow_auto=True
        )
        _check_split("draft_model.draft_gpu_split", self.draft_gpu_split)
        _check_str("draft_model.draft_cache_mode", self.draft_cache_mode)


class ModelLoadRequest(_Request, frozen=True, kw_only=True, omit_defaults=True):
    """Everything ``POST /v1/model/load`` takes; only ``model_name`` is required.

    ``cache_size`` counts tokens and must be a multiple of 256. ``cache_mode``
    and ``backend`` are passed through unchecked (the server knows its own).
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
        _check_name("model_name", self.model_name)
        _check_str("backend", self.backend)
        _check_positive_int("max_seq_len", self.max_seq_len)
        _check_positive_int("cache_size", self.cache_size)
        if self.cache_size is not None and self.cache_size % 256:
            raise InvalidInputError(
                "cache_size", f"must be a multiple of 256 tokens, got {self.cache_size}"
            )
        _check_str("cache_mode", self.cache_mode)
        _check_bool("tensor_parallel", self.tensor_parallel)
        _check_str("tensor_parallel_backend", self.tensor_parallel_backend)
        _check_bool("gpu_split_auto", self.gpu_split_auto)
        _check_split("autosplit_reserve", self.autosplit_reserve)
        _check_split("gpu_split", self.gpu_split)
        _check_positive_float("rope_scale", self.rope_scale)
        _check_positive_float("rope_alpha", self.rope_alpha, allow_auto=True)
        _check_positive_int("chunk_size", self.chunk_size)
        _check_bool("output_chunking", self.output_chunking)
        _check_str("prompt_template", self.prompt_template)
        _check_bool("vision", self.vision)
        _check_bool("skip_queue", self.skip_queue)
        if self.draft_model is not None and not isinstance(self.draft_model, DraftModelLoadRequest):
            raise InvalidInputError("draft_model", "must be a DraftModelLoadRequest")


class EmbeddingModelLoadRequest(_Request, frozen=True, kw_only=True, omit_defaults=True):
    """What ``POST /v1/model/embedding/load`` takes."""

    embedding_model_name: str
    embeddings_device: str | None = None

    def __post_init__(self) -> None:
        _check_name("embedding_model_name", self.embedding_model_name)
        _check_str("embeddings_device", self.embeddings_device)


class DownloadRequest(_Request, frozen=True, kw_only=True, omit_defaults=True):
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
        _check_str("repo_type", self.repo_type)
        if self.folder_name is not None:
            _check_name("folder_name", self.folder_name)
        _check_str("revision", self.revision)
        _check_str("token", self.token)
        _check_str_list("include", self.include)
        _check_str_list("exclude", self.exclude)
        _check_positive_int("chunk_limit", self.chunk_limit)
        _check_positive_int("timeout", self.timeout)

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
