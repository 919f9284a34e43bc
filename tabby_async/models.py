"""Deprecated: the Models API's class is in :mod:`tabby_async.services`.

This module was public before its siblings were made private; it stays for
one release and warns on import.
"""

import warnings

from ._models import AsyncModelsService, ProgressCallback

__all__ = ["AsyncModelsService", "ProgressCallback"]

warnings.warn(
    "tabby_async.models is deprecated: use tabby_async.services",
    DeprecationWarning,
    stacklevel=2,
)
