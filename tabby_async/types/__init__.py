"""The request and response types, as msgspec Structs, one module per API area.

Responses ignore fields they do not know (a newer server may send more) and
give every field a default where the server may leave it out; fields that only
describe (``created``, ``owned_by``, ...) also take ``null``. Requests omit
unset fields on the wire, so the server's own defaults apply, and are checked
when built: a bad value raises :class:`~tabby_async.InvalidInputError` naming
the field, before anything is sent.
"""

from .._load_field import How, LoadField, load_fields
from .._public import publish as _publish
from ._base import RequestStruct, ResponseStruct
from ._fields import (
    DownloadFields,
    DraftModelFields,
    EmbeddingModelLoadFields,
    LoraLoadFields,
    LoraLoadItemFields,
    ModelLoadFields,
    TokenOptions,
)
from ._lora import LoraCard, LoraList, LoraLoadItem, LoraLoadRequest, LoraLoadResponse
from ._models import (
    DownloadRequest,
    DownloadResponse,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    LoadStatus,
    ModelCard,
    ModelCardLogging,
    ModelCardParameters,
    ModelDefaultGenerationSettings,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
    ModelType,
    RopeAlpha,
)
from ._sampling import SamplerOverrides, SamplerOverridesSwitchRequest
from ._server import (
    HealthIssue,
    HealthResponse,
    PermissionResponse,
    ServiceApi,
    ServiceInfo,
    ServiceSoftware,
)
from ._templates import TemplateList, TemplateSwitchRequest
from ._tokens import (
    ChatMessage,
    ChatMessagePart,
    ImageURL,
    TokenDecodeRequest,
    TokenDecodeResponse,
    TokenEncodeRequest,
    TokenEncodeResponse,
)

__all__ = [
    "ChatMessage",
    "ChatMessagePart",
    "DownloadFields",
    "DownloadRequest",
    "DownloadResponse",
    "DraftModelFields",
    "DraftModelLoadRequest",
    "EmbeddingModelLoadFields",
    "EmbeddingModelLoadRequest",
    "HealthIssue",
    "HealthResponse",
    "How",
    "ImageURL",
    "LoadField",
    "LoadStatus",
    "LoraCard",
    "LoraList",
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
    "ModelPropsResponse",
    "ModelType",
    "PermissionResponse",
    "RequestStruct",
    "ResponseStruct",
    "RopeAlpha",
    "SamplerOverrides",
    "SamplerOverridesSwitchRequest",
    "ServiceApi",
    "ServiceInfo",
    "ServiceSoftware",
    "TemplateList",
    "TemplateSwitchRequest",
    "TokenDecodeRequest",
    "TokenDecodeResponse",
    "TokenEncodeRequest",
    "TokenEncodeResponse",
    "TokenOptions",
    "load_fields",
]

_publish(globals(), __all__, __name__)
