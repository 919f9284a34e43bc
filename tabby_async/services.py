"""tabby_async.services: the API areas a client holds, one class each.

A client builds them; users reach them as ``client.models``,
``client.lora``, ``client.templates``, ``client.sampling`` and
``client.tokens`` and ``client.inference``, and name the classes here only to annotate::

    from tabby_async.services import AsyncModelsService


    async def warm(models: AsyncModelsService) -> None:
        await models.ensure_loaded(model_name="my-model")
"""

from ._inference import AsyncInferenceService
from ._lora import AsyncLoraService
from ._models import AsyncModelsService
from ._public import publish as _publish
from ._sampling import AsyncSamplingService
from ._stream import ProgressCallback
from ._templates import AsyncTemplatesService
from ._tokens import AsyncTokensService

__all__ = [
    "AsyncInferenceService",
    "AsyncLoraService",
    "AsyncModelsService",
    "AsyncSamplingService",
    "AsyncTemplatesService",
    "AsyncTokensService",
    "ProgressCallback",
]

_publish(globals(), __all__, __name__)
