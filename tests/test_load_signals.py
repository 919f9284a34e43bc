"""What a load tells its caller: the server's "already loaded" no-op, reload=True,
idempotent unloads, and event fields from a newer server."""

from __future__ import annotations

import logging

import msgspec
import pytest

from tabby_async import AsyncTabbyClient, ModelNotLoadedError
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import ModelLoadResponse

pytestmark = pytest.mark.emulator(
    models=[EmulatedModel("m", modules=3), EmulatedModel("one", modules=1)],
    embeddings=["e"],
    ping_interval=0,
)

LOAD = "/v1/model/load"
UNLOAD = "/v1/model/unload"


async def test_a_real_load_is_not_already_loaded(client: AsyncTabbyClient) -> None:
    async with client.models.load_stream(model_name="m") as stream:
        events = [e async for e in stream]
    assert len(events) == 4 and stream.finished
    assert not stream.already_loaded


async def test_the_servers_no_op_is_flagged(
    client: AsyncTabbyClient, server: TabbyEmulator
) -> None:
    server.preload("m", max_seq_len=4096)
    async with client.models.load_stream(model_name="m", max_seq_len=8192) as stream:
        events = [(e.model_type, e.module, e.modules, e.status) async for e in stream]
    assert events == [("model", 1, 1, "processing"), ("model", 1, 1, "finished")]
    assert stream.already_loaded


async def test_ignored_parameters_are_logged(
    client: AsyncTabbyClient, server: TabbyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    server.preload("m", max_seq_len=4096)
    with caplog.at_level(logging.WARNING, logger="tabby_async"):
        await client.models.load(model_name="m")  # no parameters: nothing was ignored
        assert not caplog.records
        await client.models.load(model_name="m", max_seq_len=8192)
    (record,) = caplog.records
    assert "already loaded" in record.getMessage() and "reload=True" in record.getMessage()
    assert server.admin_key not in record.getMessage()


async def test_reload_unloads_first_when_parameters_differ(
    client: AsyncTabbyClient, server: TabbyEmulator
) -> None:
    server.preload("m", max_seq_len=4096)
    await client.models.load(model_name="m", max_seq_len=8192, reload=True)
    card = await client.models.get()
    assert card.parameters is not None and card.parameters.max_seq_len == 8192
    assert server.count("POST", UNLOAD) == 1
    # Already as requested: reload=True sends no unload.
    await client.models.load(model_name="m", max_seq_len=8192, reload=True)
    assert server.count("POST", UNLOAD) == 1
    assert server.count("POST", LOAD) == 2


async def test_reload_with_nothing_loaded_just_loads(
    client: AsyncTabbyClient, server: TabbyEmulator
) -> None:
    await client.models.load(model_name="m", reload=True)
    assert server.loaded == "m" and server.count("POST", UNLOAD) == 0


async def test_unload_missing_ok(client: AsyncTabbyClient, server: TabbyEmulator) -> None:
    with pytest.raises(ModelNotLoadedError) as info:
        await client.models.unload()
    assert info.value.kind == "model"
    await client.models.unload(missing_ok=True)
    with pytest.raises(ModelNotLoadedError) as embedding:
        await client.models.unload_embedding()
    assert embedding.value.kind == "embedding"
    await client.models.unload_embedding(missing_ok=True)
    assert server.count("POST", UNLOAD) == 2


def test_a_newer_servers_new_values_pass_through() -> None:
    event = msgspec.json.decode(
        b'{"model_type":"mmproj","module":1,"modules":2,"status":"warming"}',
        type=ModelLoadResponse,
    )
    assert (event.model_type, event.status) == ("mmproj", "warming")
    assert not event.done
