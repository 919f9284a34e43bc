"""AsyncTemplatesService: the prompt templates of one server (``client.templates``)."""

from __future__ import annotations

from . import _routes as R
from ._compare import template_stem
from ._defaults import USE_CLIENT_DEFAULT, RetriesArg, TimeoutArg
from ._resource import Resource
from .errors import ServerError, TemplateNotFoundError
from .types import TemplateList, TemplateSwitchRequest

__all__ = ["AsyncTemplatesService"]

_DEFAULT = USE_CLIENT_DEFAULT


class AsyncTemplatesService(Resource):
    """List, switch and unload the loaded model's prompt template: ``client.templates``.

    The template belongs to the loaded model: loading any other model
    replaces it (a repeated load of the same model keeps it), and unloading
    the model clears it.

    Each method's ``Raises`` names the errors particular to it; the errors
    any call may raise are listed on :class:`~tabby_async.AsyncTabbyClient`.
    """

    __slots__ = ()

    async def list(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> TemplateList:
        """Every template with the admin key; with an api key the one in use, or none.

        Raises:
            AuthenticationError: the server wants an api key, and the client's is missing or wrong.
        """
        return await self._call(R.TEMPLATE_LIST, timeout=timeout, max_retries=max_retries)

    async def switch(self, name: str, *, timeout: TimeoutArg = _DEFAULT) -> None:
        """Use template ``name`` (with or without ``.jinja``) for the loaded model.

        An unknown name raises :class:`~tabby_async.TemplateNotFoundError`:
        the server answers it with a bare 500, so on a 500 the SDK reads the
        template list and tells the two apart (any other 500 stays a
        :class:`~tabby_async.ServerError`). Needs a loaded model.

        Raises:
            TemplateNotFoundError: no template of that name (``status`` is
                the server's 500).
            InvalidInputError: an empty or unsafe name, before anything is
                sent.
            ModelNotLoadedError: no model is loaded.
            PermissionDeniedError: the client has no valid admin key.
        """
        body = TemplateSwitchRequest(prompt_template_name=name)
        try:
            await self._call(R.TEMPLATE_SWITCH, body, timeout=timeout)
            return
        except ServerError as err:
            if err.status != 500 or await self._known(name, timeout):
                raise
            missing = TemplateNotFoundError(
                f"no prompt template named {template_stem(name)!r} on the server",
                status=err.status,
                body=err.body,
                method=err.method,
                path=err.path,
                headers=err.headers,
            )
        raise missing

    async def unload(self, *, timeout: TimeoutArg = _DEFAULT) -> None:
        """Stop using a prompt template (``POST /v1/template/unload``).

        Raises:
            ModelNotLoadedError: no model is loaded.
            PermissionDeniedError: the client has no valid admin key.
        """
        await self._call(R.TEMPLATE_UNLOAD, timeout=timeout)

    async def _known(self, name: str, timeout: TimeoutArg) -> bool:
        """True when the server lists ``name`` (or cannot say: then the 500 stands)."""
        try:
            listing = await self.list(timeout=timeout)
        except ServerError:
            return True
        return template_stem(name) in listing.data
