"""``tabby_async.testing``: an in-process TabbyAPI emulator for tests and benchmarks.

It speaks TabbyAPI's model-management wire protocol (see ``PROTOCOL.md``) over real
HTTP on a local port, records what it receives and can inject faults::

    from tabby_async.testing import TabbyEmulator, EmulatedModel

    async with TabbyEmulator(models=["a", EmulatedModel("b", modules=8, delay=0.01)]) as server:
        ...  # talk to server.url with server.admin_key

A pytest plugin (``tabby_async.testing.pytest_plugin``) provides the
``tabby_emulator`` and ``tabby_emulator_factory`` fixtures.
"""

from ._emulator import TabbyEmulator, run_emulator, serve_forever
from ._faults import Fault, FaultInjector
from ._models import EmulatedModel, RecordedRequest

__all__ = [
    "EmulatedModel",
    "Fault",
    "FaultInjector",
    "RecordedRequest",
    "TabbyEmulator",
    "run_emulator",
    "serve_forever",
]
