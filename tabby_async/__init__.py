"""tabby_async: an asyncio SDK for TabbyAPI's model-management API.

::

    import asyncio

    from tabby_async import AsyncTabbyClient


    async def main() -> None:
        # URL and keys from TABBY_URL, TABBY_API_KEY and TABBY_ADMIN_KEY.
        async with AsyncTabbyClient() as client:
            print((await client.models.list()).ids)
            async with client.models.load_stream(model_name="my-model") as stream:
                async for event in stream:
                    print(event.model_type, event.module, event.modules, event.status)


    asyncio.run(main())
"""

import importlib as _importlib
import warnings as _warnings
from typing import Any as _Any

from ._client import AsyncTabbyClient
from ._defaults import USE_CLIENT_DEFAULT, RetriesArg, TimeoutArg, UseClientDefault
from ._desired import (
    FIELD_RULES,
    NOT_COMPARED,
    EnsureMismatchError,
    EnsureResult,
    FieldDiff,
    FieldRule,
    LoadPlan,
)
from ._env import FROM_ENV, FromEnv
from ._fields import (
    DownloadFields,
    DraftModelFields,
    EmbeddingModelLoadFields,
    LoraLoadFields,
    LoraLoadItemFields,
    ModelLoadFields,
    TokenOptions,
)
from ._lora import AsyncLoraService
from ._sampling import AsyncSamplingService
from ._state import DesiredState, PartPlan, StateMismatchError, StatePlan, StateResult
from ._stream import LoadStream
from ._templates import AsyncTemplatesService
from ._timeouts import Timeout
from ._tokens import AsyncTokensService
from ._version import __version__
from .errors import (
    AlreadyLoadedError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientStateError,
    ErrorCode,
    InvalidInputError,
    KeyProblem,
    LoadFailedError,
    LoraLoadFailedError,
    ModelNotFoundError,
    ModelNotLoadedError,
    NoTemplateError,
    NotFoundError,
    PermissionDeniedError,
    PresetNotFoundError,
    RateLimitError,
    ResponseDecodeError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    TabbyConnectionError,
    TabbyError,
    TabbyTimeoutError,
    TemplateNotFoundError,
    UnprocessableEntityError,
)
from .models import AsyncModelsService, ProgressCallback
from .types import (
    ChatMessage,
    ChatMessagePart,
    DownloadRequest,
    DownloadResponse,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    HealthIssue,
    HealthResponse,
    ImageURL,
    LoraCard,
    LoraList,
    LoraLoadItem,
    LoraLoadRequest,
    LoraLoadResponse,
    ModelCard,
    ModelCardLogging,
    ModelCardParameters,
    ModelDefaultGenerationSettings,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
    SamplerOverrides,
    SamplerOverridesSwitchRequest,
    ServiceApi,
    ServiceInfo,
    ServiceSoftware,
    TemplateList,
    TokenDecodeRequest,
    TokenDecodeResponse,
    TokenEncodeRequest,
    TokenEncodeResponse,
)

__all__ = [
    "FIELD_RULES",
    "FROM_ENV",
    "NOT_COMPARED",
    "USE_CLIENT_DEFAULT",
    "APIStatusError",
    "AlreadyLoadedError",
    "AsyncLoraService",
    "AsyncModelsService",
    "AsyncSamplingService",
    "AsyncTabbyClient",
    "AsyncTemplatesService",
    "AsyncTokensService",
    "AuthenticationError",
    "BadRequestError",
    "ChatMessage",
    "ChatMessagePart",
    "ClientStateError",
    "DesiredState",
    "DownloadFields",
    "DownloadRequest",
    "DownloadResponse",
    "DraftModelFields",
    "DraftModelLoadRequest",
    "EmbeddingModelLoadFields",
    "EmbeddingModelLoadRequest",
    "EnsureMismatchError",
    "EnsureResult",
    "ErrorCode",
    "FieldDiff",
    "FieldRule",
    "FromEnv",
    "HealthIssue",
    "HealthResponse",
    "ImageURL",
    "InvalidInputError",
    "KeyProblem",
    "LoadFailedError",
    "LoadPlan",
    "LoadStream",
    "LoraCard",
    "LoraList",
    "LoraLoadFailedError",
    "LoraLoadFields",
    "LoraLoadItem",
    "LoraLoadItemFields",
    "LoraLoadRequest",
    "LoraLoadResponse",
    "ModelCard",
    "ModelCardLogging",
    "ModelCardParameters",
    "ModelDefaultGenerationSettings",
    "ModelList",
    "ModelLoadFields",
    "ModelLoadRequest",
    "ModelLoadResponse",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "ModelPropsResponse",
    "NoTemplateError",
    "NotFoundError",
    "PartPlan",
    "PermissionDeniedError",
    "PermissionResponse",
    "PresetNotFoundError",
    "ProgressCallback",
    "RateLimitError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetriesArg",
    "SamplerOverrides",
    "SamplerOverridesSwitchRequest",
    "ServerError",
    "ServiceApi",
    "ServiceInfo",
    "ServiceSoftware",
    "StateMismatchError",
    "StatePlan",
    "StateResult",
    "StreamError",
    "TabbyConnectionError",
    "TabbyError",
    "TabbyTimeoutError",
    "TemplateList",
    "TemplateNotFoundError",
    "Timeout",
    "TimeoutArg",
    "TokenDecodeRequest",
    "TokenDecodeResponse",
    "TokenEncodeRequest",
    "TokenEncodeResponse",
    "TokenOptions",
    "UnprocessableEntityError",
    "UseClientDefault",
    "__version__",
]

#: Names that moved to another public module, kept here for one release
#: with a DeprecationWarning: name -> its home.
_MOVED: dict[str, str] = {
    "FleetError": "tabby_async.fleet",
    "NodeCancelledError": "tabby_async.fleet",
    "NodeSkippedError": "tabby_async.fleet",
    "VerificationError": "tabby_async.fleet",
}


def __getattr__(name: str) -> _Any:
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _warnings.warn(
        f"tabby_async.{name} is deprecated: import it from {home}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_importlib.import_module(home), name)
