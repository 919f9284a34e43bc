"""The environment variables a client reads, and how an argument and a variable combine.

One definition for the SDK and the command line: ``TABBY_URL``,
``TABBY_API_KEY`` and ``TABBY_ADMIN_KEY``. The rule, per setting:

- an argument that was given wins, whatever it is (``api_key=None`` means
  "no key": the environment is not read);
- an argument that was not given (:data:`FROM_ENV`, or ``None`` for the URL)
  takes the variable when it is set and not empty;
- otherwise the default: ``http://127.0.0.1:5000``, or no key.

The resolution is pure: it takes the environment as a mapping, so it is tested
as a table without touching ``os.environ``.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NamedTuple

from .errors import InvalidInputError

if TYPE_CHECKING:
    from yarl import URL

__all__ = [
    "DEFAULT_URL",
    "ENV_ADMIN_KEY",
    "ENV_API_KEY",
    "ENV_URL",
    "FROM_ENV",
    "FromEnv",
    "Setting",
    "check_env_name",
    "env_value",
    "resolve_key",
    "resolve_url",
]

#: The server URL, when ``base_url`` is not given.
ENV_URL: Final = "TABBY_URL"
#: The api key, when ``api_key`` is not given.
ENV_API_KEY: Final = "TABBY_API_KEY"
#: The admin key, when ``admin_key`` is not given.
ENV_ADMIN_KEY: Final = "TABBY_ADMIN_KEY"
#: The URL used when neither the argument nor ``TABBY_URL`` gives one.
DEFAULT_URL: Final = "http://127.0.0.1:5000"


class FromEnv(enum.Enum):
    """The type of :data:`FROM_ENV`, the default of the key arguments."""

    FROM_ENV = "FROM_ENV"

    def __repr__(self) -> str:
        # Shown in signatures and help(): say what it means, not the enum's form.
        return "FROM_ENV"


#: "Not given: read the environment variable" (distinct from ``None``, "no key").
FROM_ENV: Final = FromEnv.FROM_ENV


class Setting(NamedTuple):
    """A resolved setting and where it came from.

    ``source`` is the argument's name, or the variable's when the value was
    read from the environment, so that a validation error names what the user
    has to fix.
    """

    value: str | None
    source: str


#: A portable environment variable name (POSIX: letters, digits and ``_``,
#: not starting with a digit).
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env_name(field: str, value: object) -> str:
    """The name of an environment variable, as ``field`` gives it; refuses anything else.

    A value that is not a name is most likely the secret itself, written
    where its variable's name belongs (``admin_key_env = "<the key>"``), so
    the message names ``field`` and never shows the value.
    """
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise InvalidInputError(
            field,
            "must be the name of an environment variable (letters, digits and _, not "
            "starting with a digit), not the key itself; the value is not shown",
        )
    return value


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable ``name`` from ``environ`` (default ``os.environ``); empty counts as unset."""
    value = (os.environ if environ is None else environ).get(name)
    return value or None


def resolve_key(
    given: str | FromEnv | None,
    argument: str,
    variable: str,
    environ: Mapping[str, str] | None = None,
) -> Setting:
    """The key to use: ``given`` unless it is :data:`FROM_ENV`, else ``variable``, else none."""
    if given is FROM_ENV:
        from_env = env_value(variable, environ)
        return Setting(from_env, variable if from_env is not None else argument)
    return Setting(given, argument)


def resolve_url(
    given: str | URL | None, environ: Mapping[str, str] | None = None
) -> tuple[str | URL, str]:
    """The URL to use and its source: ``given``, else ``TABBY_URL``, else the default.

    ``None`` means "not given". The value is passed through unchecked (a
    ``str`` or a ``yarl.URL``): the client validates it, naming the source.
    """
    if given is not None:
        return given, "base_url"
    from_env = env_value(ENV_URL, environ)
    if from_env is not None:
        return from_env, ENV_URL
    return DEFAULT_URL, "base_url"
