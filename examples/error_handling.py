"""Handle the SDK's errors by their stable ``code`` instead of their class.

    TABBY_URL=... TABBY_API_KEY=... TABBY_ADMIN_KEY=... python examples/error_handling.py

Every failure is a ``TabbyError`` with a string ``code``, so one ``match``
covers them all. This script provokes a few on purpose (none changes the
server's state) and shows what each looks like.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from tabby_async import AsyncTabbyClient, TabbyError


def explain(err: TabbyError) -> str:
    """What to tell a user about ``err``: a switch on its code."""
    match err.code:
        case "permission_error":
            return f"needs the admin key: {err.message}"
        case "authentication_error":
            return "the api key is missing or wrong"
        case "invalid_request":
            return f"the server refused the request: {err.message}"
        case "not_found":
            return f"no such model (or route): {err.message}"
        case "model_not_loaded":
            return "nothing is loaded yet"
        case "invalid_input":
            return f"refused before sending: {err.message}"
        case "load_failed":
            return f"the load failed on the server: {err.message}"
        case "connection_error" | "timeout":
            return f"the server is unreachable: {err.message}"
        case _:
            return f"unexpected {type(err).__name__}: {err}"


async def attempt(what: str, call: Awaitable[object]) -> None:
    try:
        await call
    except TabbyError as err:
        print(f"{what:<36} -> {err.code:<18} {explain(err)}")
    else:
        print(f"{what:<36} -> ok")


async def main() -> None:
    # Both from TABBY_URL / TABBY_API_KEY / TABBY_ADMIN_KEY, but the reader is
    # told to use no admin key (an explicit None is not read from the environment).
    reader = AsyncTabbyClient(admin_key=None)
    admin = AsyncTabbyClient()
    async with reader, admin:
        # An api key on an admin route: a permission problem, not a bad key.
        await attempt("unload with only the api key", reader.models.unload())
        # The server has no folder of that name.
        await attempt(
            "load a model that does not exist", admin.models.load(model_name="no-such-model")
        )
        # A 400 the server explains (a repo it cannot fetch; it says why).
        await attempt(
            "download a repo that does not exist",
            admin.models.download(repo_id="tabby-async-examples/does-not-exist"),
        )
        # Caught by the SDK before anything is sent.
        await attempt(
            "load with a bad cache size", admin.models.load(model_name="m", cache_size=1000)
        )
        # With no model loaded (or while one loads) the server answers 503.
        await attempt("get the loaded model", admin.models.get())


if __name__ == "__main__":
    asyncio.run(main())
