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

from ._client import AsyncTabbyClient
from ._defaults import USE_CLIENT_DEFAULT, RetriesArg, TimeoutArg, UseClientDefault
from ._desired import FIELD_RULES, NOT_COMPARED, EnsureResult, FieldDiff, FieldRule, LoadPlan
from ._env import FROM_ENV, FromEnv
from ._fields import DownloadFields, DraftModelFields, EmbeddingModelLoadFields, ModelLoadFields
from ._stream import LoadStream
from ._timeouts import Timeout
from ._version import __version__
from .errors import (
    AlreadyLoadedError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientStateError,
    EnsureMismatchError,
    ErrorCode,
    FleetError,
    InvalidInputError,
    KeyProblem,
    LoadFailedError,
    ModelNotFoundError,
    ModelNotLoadedError,
    NodeCancelledError,
    NodeSkippedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    StreamError,
    TabbyConnectionError,
    TabbyError,
    TabbyTimeoutError,
    UnprocessableEntityError,
    VerificationError,
)
from .models import AsyncModelsService, ProgressCallback
from .types import (
    DownloadRequest,
    DownloadResponse,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    HealthIssue,
    HealthResponse,
    ModelCard,
    ModelCardLogging,
    ModelCardParameters,
    ModelDefaultGenerationSettings,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
)

__all__ = [
    "FIELD_RULES",
    "FROM_ENV",
    "NOT_COMPARED",
    "USE_CLIENT_DEFAULT",
    "APIStatusError",
    "AlreadyLoadedError",
    "AsyncModelsService",
    "AsyncTabbyClient",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
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
    "FleetError",
    "FromEnv",
    "HealthIssue",
    "HealthResponse",
    "InvalidInputError",
    "KeyProblem",
    "LoadFailedError",
    "LoadPlan",
    "LoadStream",
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
    "NodeCancelledError",
    "NodeSkippedError",
    "NotFoundError",
    "PermissionDeniedError",
    "PermissionResponse",
    "ProgressCallback",
    "RateLimitError",
    "ResponseDecodeError",
    "RetriesArg",
    "ServerError",
    "StreamError",
    "TabbyConnectionError",
    "TabbyError",
    "TabbyTimeoutError",
    "Timeout",
    "TimeoutArg",
    "UnprocessableEntityError",
    "UseClientDefault",
    "VerificationError",
    "__version__",
]
