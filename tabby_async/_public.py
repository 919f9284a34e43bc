"""How a public module presents its names: their home, and the names that moved.

Every public module (``tabby_async``, ``.types``, ``.fleet``, ``.services``,
``.desired``) gathers names defined in private modules. :func:`publish`
makes each class and function report the public module in reprs,
tracebacks and pickles, as httpx does (the errors, the client and its
services, the functions); :func:`moved` is the module
``__getattr__`` that keeps an old spelling working for one release, with a
:class:`DeprecationWarning` that names the new home.

It imports nothing of the package, so that any module may use it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, is_typeddict

import msgspec

__all__ = ["moved", "publish"]


def publish(namespace: Mapping[str, Any], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` to ``module`` on each class and function of ``names``.

    Only the package's own: constants, type aliases, sentinels and names
    from elsewhere (a builtin an alias stands for) keep theirs. So do the
    classes whose annotations are read at run time (msgspec Structs,
    dataclasses, TypedDicts): msgspec and ``typing.get_type_hints`` resolve
    those annotations in the module ``__module__`` names, which must stay the
    one that defines them.
    """
    for name in names:
        obj = namespace[name]
        own = inspect.isfunction(obj) or (inspect.isclass(obj) and not _reads_annotations(obj))
        if own and obj.__module__.startswith("tabby_async."):
            obj.__module__ = module


def _reads_annotations(cls: type) -> bool:
    return issubclass(cls, msgspec.Struct) or dataclasses.is_dataclass(cls) or is_typeddict(cls)


def moved(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the names of ``homes`` (old name -> its public home).

    A home is a module (the name kept its spelling) or ``module:NewName``
    (it was renamed too). The name is looked up in its home at the moment it
    is asked for, so the old module imports nothing new; each use warns
    once, naming the new spelling.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, new = home.partition(":")
        new = new or name
        warnings.warn(
            f"{module}.{name} is deprecated: use {where}.{new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(where), new)

    return __getattr__
