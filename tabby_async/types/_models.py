"""The Models API's types: model cards and listings, load requests and events, downloads."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from .._checks import (
    check_bool,
    check_folder_name,
    check_gpu_split,
    check_positive_float,
    check_positive_int,
    check_str,
    check_str_list,
)
from .._load_field import LoadField, load_fields
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


def _draft(field: str, value: object) -> None:
    if not isinstance(value, DraftModelLoadRequest):
        raise InvalidInputError(field, "must be a DraftModelLoadRequest")


def _cache_size(field: str, value: object) -> None:
    check_positive_int(field, value)
    if isinstance(value, int) and value % 256:
        raise InvalidInputError(field, f"must be a multiple of 256 tokens, got {value}")


_rope_alpha = partial(check_positive_float, allow_auto=True)
_UNREPORTED_ROPE = "always reported as 1.0"


class DraftModelLoadRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """A draft (speculative decoding) model to load with the main model.

    Each field's :class:`LoadField` says how it is checked, compared with
    what the server reports, and offered on the command line.
    """

    draft_model_name: Annotated[
        str,
        LoadField(
            check_folder_name,
            "draft",
            "draft list",
            "the card's draft is always null; the draft listing seen with a plain api key "
            "(not the admin key) names the loaded draft",
            "NAME",
            "draft model folder to load too",
            "draft",
            "--draft-model",
        ),
    ]
    draft_rope_scale: Annotated[
        float | None, LoadField(check_positive_float, metavar="FACTOR", group="draft")
    ] = None
    draft_rope_alpha: Annotated[
        RopeAlpha | None, LoadField(_rope_alpha, metavar="ALPHA", group="draft")
    ] = None
    draft_gpu_split: Annotated[
        list[float] | None, LoadField(check_gpu_split, metavar="GB,GB", group="draft")
    ] = None
    draft_cache_mode: Annotated[
        str | None,
        LoadField(
            check_str,
            note="not a field of the server's load request",
            metavar="MODE",
            group="draft",
        ),
    ] = None

    def __post_init__(self) -> None:
        for name, rule in _DRAFT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                rule.check(f"draft_model.{name}", value)


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
    knows its own). Each field's :class:`LoadField` says how it is checked,
    compared with what the server reports, and offered on the command line.
    """

    model_name: Annotated[
        str,
        LoadField(
            check_folder_name,
            "name",
            "id",
            "as the card id, the folder's last segment: a nested name is left to the server",
        ),
    ]
    backend: Annotated[str | None, LoadField(check_str, metavar="NAME", help="e.g. exllamav3")] = (
        None
    )
    max_seq_len: Annotated[
        int | None,
        LoadField(
            partial(check_positive_int, own=-1),
            "context",
            "parameters.max_seq_len",
            "-1 (the model's own context) is not compared",
            "TOKENS",
            "context length (-1: the model's own)",
        ),
    ] = None
    cache_size: Annotated[
        int | None,
        LoadField(
            _cache_size,
            "exact",
            "parameters.cache_size",
            "not rounded",
            "TOKENS",
            "cache size (a multiple of 256)",
        ),
    ] = None
    cache_mode: Annotated[
        str | None,
        LoadField(
            check_str,
            "cache_mode",
            "parameters.cache_mode",
            "as the server reads it: Q4, Q6, Q8 or 'k,v' with k and v from 2 to 8; "
            "anything else is FP16",
            "MODE",
            "cache quantisation: FP16, Q4, Q6, Q8 or K,V bits (e.g. 4,8)",
        ),
    ] = None
    tensor_parallel: Annotated[
        bool | None, LoadField(check_bool, help="load with tensor parallelism", group="gpus")
    ] = None
    tensor_parallel_backend: Annotated[
        str | None, LoadField(check_str, metavar="NAME", help="e.g. native, nccl", group="gpus")
    ] = None
    gpu_split_auto: Annotated[
        bool | None,
        LoadField(check_bool, help="let the server split the model across GPUs", group="gpus"),
    ] = None
    autosplit_reserve: Annotated[
        list[float] | None,
        LoadField(
            partial(check_gpu_split, unit="MB", negative_ok=True),
            note="megabytes per GPU",
            metavar="MB,MB",
            help="memory to keep free per GPU with --gpu-split-auto "
            "(a negative value leaves that GPU out; write --autosplit-reserve=-1,96)",
            group="gpus",
        ),
    ] = None
    gpu_split: Annotated[
        list[float] | None,
        LoadField(
            check_gpu_split,
            note="gigabytes per GPU",
            metavar="GB,GB",
            help="GB per GPU, e.g. 20,24",
            group="gpus",
        ),
    ] = None
    rope_scale: Annotated[
        float | None,
        LoadField(
            check_positive_float,
            note=_UNREPORTED_ROPE,
            metavar="FACTOR",
            help="rope scale (linear scaling)",
        ),
    ] = None
    rope_alpha: Annotated[
        RopeAlpha | None,
        LoadField(
            _rope_alpha,
            note=_UNREPORTED_ROPE,
            metavar="ALPHA",
            help="rope alpha: a number or auto",
        ),
    ] = None
    chunk_size: Annotated[
        int | None,
        LoadField(
            check_positive_int,
            "chunk",
            "parameters.chunk_size",
            "the server may round it up to a multiple of 256, at least 256",
            "TOKENS",
            "prompt chunk size",
        ),
    ] = None
    output_chunking: Annotated[
        bool | None, LoadField(check_bool, help="chunk the model's output")
    ] = None
    prompt_template: Annotated[
        str | None,
        LoadField(
            check_str,
            "template",
            "parameters.prompt_template",
            "with or without .jinja: the card drops it; null when the server found no template",
            "NAME",
            "prompt template to use",
        ),
    ] = None
    vision: Annotated[
        bool | None,
        LoadField(
            check_bool,
            "exact",
            "parameters.use_vision",
            "as use_vision",
            help="load the vision component",
        ),
    ] = None
    draft_model: Annotated[DraftModelLoadRequest | None, LoadField(_draft)] = None
    skip_queue: Annotated[
        bool | None, LoadField(check_bool, help="ask the server to skip its load queue")
    ] = None

    def __post_init__(self) -> None:
        for name, rule in _MODEL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                rule.check(name, value)


#: The declared fields of each load request, read once from the annotations.
_DRAFT_FIELDS = load_fields(DraftModelLoadRequest)
_MODEL_FIELDS = load_fields(ModelLoadRequest)


class EmbeddingModelLoadRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """What ``POST /v1/model/embedding/load`` takes."""

    embedding_model_name: str
    embeddings_device: str | None = None

    def __post_init__(self) -> None:
        check_folder_name("embedding_model_name", self.embedding_model_name)
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
            check_folder_name("folder_name", self.folder_name)
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
