"""tabby_async in an application that imported OpenTelemetry's API but configured no provider.

The worker of the plain ``tabby_async`` client cannot import ``opentelemetry`` at all (see
``benchmarks/worker.py``); this one imports ``opentelemetry.trace`` first, as an application
that traces (or a library it uses) does. With no tracer provider set, the SDK's spans are
non-recording and dropped at once: the difference between the two is what they cost.
"""

from __future__ import annotations

import opentelemetry.trace  # noqa: F401  (imported, no provider: the case measured)

from benchmarks.clients.tabby import Client as TabbyClient


class Client(TabbyClient):
    name = "tabby_async_otel"
