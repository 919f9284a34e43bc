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
from ._env import DEFAULT_URL, ENV_ADMIN_KEY, ENV_API_KEY, ENV_URL, FROM_ENV, FromEnv
from ._model_plan import ModelMismatchError
from ._public import moved as _moved
from ._public import publish as _publish
from ._state_plan import DesiredState, StateMismatchError, StatePlan, StateResult
from ._stream import LoadStream
from ._timeouts import Timeout
from ._version import __version__
from .errors import (
    AlreadyLoadedError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientStateError,
    InvalidInputError,
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
from .types import (
    DownloadRequest,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    ModelLoadRequest,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_ADMIN_KEY",
    "ENV_API_KEY",
    "ENV_URL",
    "FROM_ENV",
    "USE_CLIENT_DEFAULT",
    "APIStatusError",
    "AlreadyLoadedError",
    "AsyncTabbyClient",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
    "DesiredState",
    "DownloadRequest",
    "DraftModelLoadRequest",
    "EmbeddingModelLoadRequest",
    "FromEnv",
    "InvalidInputError",
    "LoadFailedError",
    "LoadStream",
    "LoraLoadFailedError",
    "ModelLoadRequest",
    "ModelMismatchError",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "NoTemplateError",
    "NotFoundError",
    "PermissionDeniedError",
    "PresetNotFoundError",
    "RateLimitError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetriesArg",
    "ServerError",
    "StateMismatchError",
    "StatePlan",
    "StateResult",
    "StreamError",
    "TabbyConnectionError",
    "TabbyError",
    "TabbyTimeoutError",
    "TemplateNotFoundError",
    "Timeout",
    "TimeoutArg",
    "UnprocessableEntityError",
    "UseClientDefault",
    "__version__",
]

_publish(globals(), __all__, __name__)

#: Names that moved to another public module, kept here for one release
#: with a DeprecationWarning: name -> its home.
_MOVED: dict[str, str] = {
    "AsyncLoraService": "tabby_async.services",
    "AsyncModelsService": "tabby_async.services",
    "AsyncSamplingService": "tabby_async.services",
    "AsyncTemplatesService": "tabby_async.services",
    "AsyncTokensService": "tabby_async.services",
    "ChatMessage": "tabby_async.types",
    "ChatMessagePart": "tabby_async.types",
    "DownloadFields": "tabby_async.types",
    "DownloadResponse": "tabby_async.types",
    "DraftModelFields": "tabby_async.types",
    "EmbeddingModelLoadFields": "tabby_async.types",
    "EnsureMismatchError": "tabby_async:ModelMismatchError",
    "EnsureResult": "tabby_async.desired:ModelResult",
    "ErrorCode": "tabby_async.errors",
    "FIELD_RULES": "tabby_async.desired",
    "FieldDiff": "tabby_async.desired",
    "FieldRule": "tabby_async.desired",
    "FleetError": "tabby_async.fleet",
    "HealthIssue": "tabby_async.types",
    "HealthResponse": "tabby_async.types",
    "ImageURL": "tabby_async.types",
    "KeyProblem": "tabby_async.errors",
    "LoadPlan": "tabby_async.desired:ModelPlan",
    "LoraCard": "tabby_async.types",
    "LoraList": "tabby_async.types",
    "LoraLoadFields": "tabby_async.types",
    "LoraLoadItem": "tabby_async.types",
    "LoraLoadItemFields": "tabby_async.types",
    "LoraLoadRequest": "tabby_async.types",
    "LoraLoadResponse": "tabby_async.types",
    "ModelCard": "tabby_async.types",
    "ModelCardLogging": "tabby_async.types",
    "ModelCardParameters": "tabby_async.types",
    "ModelDefaultGenerationSettings": "tabby_async.types",
    "ModelList": "tabby_async.types",
    "ModelLoadFields": "tabby_async.types",
    "ModelLoadResponse": "tabby_async.types",
    "ModelPropsResponse": "tabby_async.types",
    "NOT_COMPARED": "tabby_async.desired",
    "NodeCancelledError": "tabby_async.fleet",
    "NodeSkippedError": "tabby_async.fleet",
    "PartPlan": "tabby_async.desired",
    "PermissionResponse": "tabby_async.types",
    "ProgressCallback": "tabby_async.services",
    "SamplerOverrides": "tabby_async.types",
    "SamplerOverridesSwitchRequest": "tabby_async.types",
    "ServiceApi": "tabby_async.types",
    "ServiceInfo": "tabby_async.types",
    "ServiceSoftware": "tabby_async.types",
    "TemplateList": "tabby_async.types",
    "TokenDecodeRequest": "tabby_async.types",
    "TokenDecodeResponse": "tabby_async.types",
    "TokenEncodeRequest": "tabby_async.types",
    "TokenEncodeResponse": "tabby_async.types",
    "TokenOptions": "tabby_async.types",
    "VerificationError": "tabby_async.fleet",
}

__getattr__ = _moved(__name__, _MOVED)
