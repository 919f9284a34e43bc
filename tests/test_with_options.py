"""``client.with_options``: other defaults over the same sessions, keys and memory."""

from __future__ import annotations

import asyncio

import pytest

from tabby_async import AsyncTabbyClient, Timeout
from tabby_async.errors import ClientStateError, InvalidInputError
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tests.helpers import ConnectionCounter

pytestmark = pytest.mark.emulator(models=[EmulatedModel("m", modules=2)])


async def test_only_the_given_defaults_change(client: AsyncTabbyClient) -> None:
    quick = client.with_options(timeout=2.5)
    assert quick.timeout.total == 2.5
    assert quick.timeout.connect == client.timeout.connect  # a number replaces the total only
    assert quick.stream_timeout == client.stream_timeout
    assert quick.max_retries == client.max_retries
    none = client.with_options(max_retries=0, stream_timeout=None)
    assert none.max_retries == 0
    assert none.stream_timeout == Timeout(total=None, connect=None, read=None)
    assert none.timeout == client.timeout
    assert repr(quick) == repr(client)


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", -1), ("stream_timeout", "10"), ("max_retries", -1), ("max_retries", None)],
)
def test_bad_defaults_are_refused_by_name(
    client: AsyncTabbyClient, option: str, value: object
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        client.with_options(**{option: value})  # type: ignore[arg-type]
    assert caught.value.field.split(".")[0] == option


async def test_it_shares_the_connections_and_closes_nothing(
    server: TabbyEmulator, connections: ConnectionCounter
) -> None:
    parent = AsyncTabbyClient(server.url, admin_key=server.admin_key)
    derived = parent.with_options(timeout=5)
    assert (await derived.models.list()).ids == ["m"]
    assert (await parent.models.list()).ids == ["m"]
    assert connections.opened == 1  # one pool: the second call reused the connection
    async with derived:  # closing the derived client closes nothing
        pass
    assert not derived.closed and not parent.closed
    assert (await parent.models.list()).ids == ["m"]
    await parent.aclose()
    assert derived.closed  # closed with the client it came from
    with pytest.raises(ClientStateError):
        await derived.models.list()
    assert connections.held == 0


async def test_ensures_through_either_share_one_run(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    derived = client.with_options(max_retries=0)
    await asyncio.gather(
        client.models.ensure_loaded(model_name="m", max_seq_len=2048),
        derived.models.ensure_loaded(model_name="m", max_seq_len=2048),
    )
    assert server.count("POST", "/v1/model/load") == 1


def test_the_sentinels_are_one_style() -> None:
    import copy
    import enum
    import pickle

    from tabby_async import FROM_ENV, USE_CLIENT_DEFAULT

    for sentinel in (USE_CLIENT_DEFAULT, FROM_ENV):
        assert isinstance(sentinel, enum.Enum) and len(type(sentinel)) == 1
        assert pickle.loads(pickle.dumps(sentinel)) is sentinel
        assert copy.deepcopy(sentinel) is sentinel
        assert repr(sentinel) == sentinel.name
