"""tabby_async: an asyncio SDK for TabbyAPI's model-management API.

::

    from tabby_async import AsyncTabbyClient, ModelLoadRequest

    async with AsyncTabbyClient("http://127.0.0.1:5000", admin_key="...") as client:
        print((await client.models.list()).ids)
        async with client.models.load_stream(ModelLoadRequest(model_name="m")) as stream:
            async for event in stream:
                print(event.model_type, event.module, event.modules, event.status)
"""

from ._client import AsyncTabbyClient
from ._ensure import (
    FIELD_RULES,
    NOT_COMPARED,
    EnsureMismatchError,
    EnsureResult,
    FieldDiff,
    FieldRule,
    LoadPlan,
)
from ._env import FROM_ENV, FromEnv
from ._stream import LoadStream
from ._timeouts import Timeout
from ._version import __version__
from .errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientStateError,
    InvalidInputError,
    LoadFailedError,
    ModelNotFoundError,
    ModelNotLoadedError,
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
    "APIStatusError",
    "AsyncModelsService",
    "AsyncTabbyClient",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
    "DownloadRequest",
    "DownloadResponse",
    "DraftModelLoadRequest",
    "EmbeddingModelLoadRequest",
    "EnsureMismatchError",
    "EnsureResult",
    "FieldDiff",
    "FieldRule",
    "FromEnv",
    "HealthIssue",
    "HealthResponse",
    "InvalidInputError",
    "LoadFailedError",
    "LoadPlan",
    "LoadStream",
    "ModelCard",
    "ModelCardLogging",
    "ModelCardParameters",
    "ModelDefaultGenerationSettings",
    "ModelList",
    "ModelLoadRequest",
    "ModelLoadResponse",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "ModelPropsResponse",
    "NotFoundError",
    "PermissionDeniedError",
    "PermissionResponse",
    "ProgressCallback",
    "RateLimitError",
    "ResponseDecodeError",
    "ServerError",
    "StreamError",
    "TabbyConnectionError",
    "TabbyError",
    "TabbyTimeoutError",
    "Timeout",
    "UnprocessableEntityError",
    "__version__",
]
