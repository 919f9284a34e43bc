"""The SDK core against the emulator: all twelve operations, keys, errors,
the load stream's guarantees, timeouts and the client's lifecycle."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from tabby_async import (
    AsyncTabbyClient,
    AuthenticationError,
    ClientStateError,
    DownloadRequest,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    InvalidInputError,
    LoadFailedError,
    ModelLoadRequest,
    ModelNotFoundError,
    ModelNotLoadedError,
    PermissionDeniedError,
    ServerError,
    StreamError,
    TabbyConnectionError,
    TabbyError,
    TabbyTimeoutError,
    Timeout,
)
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import ModelCard, ModelList, ModelLoadResponse, ModelPropsResponse
from tests.helpers import GUARD, ConnectionCounter, serve_app

LOAD = "/v1/model/load"


pytestmark = pytest.mark.emulator(
    models=[
        "alpha",
        EmulatedModel(name="beta", modules=3, max_seq_len=8192),
        EmulatedModel(name="slow", modules=50, delay=0.05),
        EmulatedModel(name="broken", modules=4, fail_at=2, fail_message="CUDA out of memory"),
        EmulatedModel(name="noconfig", config_error="config.json not found"),
        EmulatedModel(name="seeing", modules=2, vision_modules=2),
    ],
    drafts=["draft-small"],
    embeddings=["embed-a"],
    downloadable={"org/tiny": 0.0},
)


# --- the twelve operations ------------------------------------------------------


async def test_all_twelve_operations(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    models = await client.models.list()
    assert isinstance(models, ModelList)
    assert {"alpha", "beta"} <= set(models.ids)
    assert all(card.parameters is None for card in models.data)

    assert (await client.models.list_draft()).ids == ["draft-small"]
    assert (await client.models.list_embedding()).ids == ["embed-a"]

    with pytest.raises(ModelNotLoadedError):
        await client.models.get()

    final = await client.models.load(ModelLoadRequest(model_name="beta", max_seq_len=4096))
    assert final == ModelLoadResponse(model_type="model", module=3, modules=3, status="finished")

    card = await client.models.get()
    assert isinstance(card, ModelCard)
    assert card.id == "beta"
    assert card.parameters is not None and card.parameters.max_seq_len == 4096

    props = await client.models.get_props()
    assert isinstance(props, ModelPropsResponse)
    assert props.default_generation_settings.n_ctx == 4096

    events = []
    async with client.models.load_stream(model_name="alpha") as stream:
        async for event in stream:
            events.append(event)
    assert events[-1].status == "finished" and events[-1].model_type == "model"
    assert (await client.models.get()).id == "alpha"

    assert await client.models.unload() is None
    with pytest.raises(ModelNotLoadedError):
        await client.models.get_props()

    loaded = await client.models.load_embedding(
        EmbeddingModelLoadRequest(embedding_model_name="embed-a")
    )
    assert loaded.model_type == "embedding_model" and loaded.status == "finished"
    assert (await client.models.get_embedding()).id == "embed-a"
    assert await client.models.unload_embedding() is None
    with pytest.raises(ModelNotLoadedError, match="embedding"):
        await client.models.get_embedding()

    done = await client.models.download(DownloadRequest(repo_id="org/tiny", token="hf_x"))
    assert done.download_path.endswith("tiny")
    assert "tiny" in (await client.models.list()).ids

    routes = [(r.method, r.path) for r in server.requests]
    for expected in [
        ("GET", "/v1/model/list"),
        ("GET", "/v1/model"),
        ("GET", "/props"),
        ("GET", "/v1/model/draft/list"),
        ("POST", LOAD),
        ("POST", "/v1/model/unload"),
        ("POST", "/v1/download"),
        ("GET", "/v1/model/embedding/list"),
        ("GET", "/v1/model/embedding"),
        ("POST", "/v1/model/embedding/load"),
        ("POST", "/v1/model/embedding/unload"),
    ]:
        assert expected in routes
    assert connections.held == 0


async def test_keyword_fields_build_the_request(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    await client.models.load(
        ModelLoadRequest(model_name="alpha", max_seq_len=1024),
        cache_size=2048,
        draft_model={"draft_model_name": "draft-small"},
    )
    body = [r for r in server.requests if r.path == LOAD][-1].body
    assert body == {
        "model_name": "alpha",
        "max_seq_len": 1024,
        "cache_size": 2048,
        "draft_model": {"draft_model_name": "draft-small"},
    }
    with pytest.raises(InvalidInputError) as info:
        client.models.load_stream(model_name="alpha", max_seq_length=5)
    assert info.value.field == "max_seq_length"
    with pytest.raises(InvalidInputError, match="model_name"):
        client.models.load_stream(model_name="../../etc")
    with pytest.raises(InvalidInputError, match="cache_size"):
        await client.models.load(model_name="alpha", cache_size=1000)
    assert len([r for r in server.requests if r.path == LOAD]) == 1


# --- keys -------------------------------------------------------------------------


async def test_keys_go_where_the_protocol_says(server: TabbyEmulator) -> None:
    async with AsyncTabbyClient(
        server.url, api_key=server.api_key, admin_key=server.admin_key
    ) as client:
        await client.models.list()
        await client.models.load(model_name="alpha")
    by_path = {r.path: r.headers for r in server.requests}
    api_headers = {k.lower() for k in by_path["/v1/model/list"]}
    admin_headers = {k.lower() for k in by_path[LOAD]}
    assert "x-api-key" in api_headers and "x-admin-key" not in api_headers
    assert "x-admin-key" in admin_headers and "x-api-key" not in admin_headers
    ua = {k.lower(): v for k, v in by_path["/v1/model/list"].items()}["user-agent"]
    assert ua.startswith("tabby-async/")


async def test_with_both_keys_the_admin_key_serves_api_routes(server: TabbyEmulator) -> None:
    """TabbyAPI lists every folder only to admin permission: use the admin key."""
    async with AsyncTabbyClient(
        server.url, api_key=server.api_key, admin_key=server.admin_key
    ) as client:
        assert (await client.permission()).permission == "admin"
        assert {"alpha", "beta"} <= set((await client.models.list()).ids)
    async with AsyncTabbyClient(server.url, api_key=server.api_key) as client:
        assert (await client.models.list()).ids == []  # an api key sees what is loaded


async def test_admin_key_alone_works_on_api_routes(client: AsyncTabbyClient) -> None:
    assert "alpha" in (await client.models.list()).ids
    assert (await client.permission()).permission == "admin"


async def test_api_key_on_admin_route_is_a_permission_error(reader: AsyncTabbyClient) -> None:
    assert (await reader.permission()).permission == "api"
    with pytest.raises(PermissionDeniedError) as info:
        await reader.models.unload()
    assert info.value.code == "permission_error"
    assert info.value.status == 401
    assert "admin key" in str(info.value)
    with pytest.raises(PermissionDeniedError):
        async with reader.models.load_stream(model_name="alpha"):
            pass


async def test_wrong_or_missing_keys(server: TabbyEmulator) -> None:
    async with AsyncTabbyClient(server.url, api_key="wrong") as client:
        with pytest.raises(AuthenticationError) as info:
            await client.models.list()
        assert info.value.message == "Invalid API key"
    async with AsyncTabbyClient(server.url) as client:
        with pytest.raises(AuthenticationError, match="Please provide an API key"):
            await client.models.list()
    async with AsyncTabbyClient(server.url, admin_key="wrong") as client:
        with pytest.raises(PermissionDeniedError, match="Invalid admin key"):
            await client.models.unload()


async def test_no_keys_against_a_server_without_auth() -> None:
    async with (
        TabbyEmulator(models=["alpha"], auth=False) as server,
        AsyncTabbyClient(server.url) as client,
    ):
        await client.models.load(model_name="alpha")
        assert (await client.models.get()).id == "alpha"
        assert (await client.permission()).permission == "admin"


# --- errors -----------------------------------------------------------------------


async def test_error_handling_switch_reaches_each_branch(
    server: TabbyEmulator, client: AsyncTabbyClient, reader: AsyncTabbyClient
) -> None:
    """The seed's error-handling example: switch on the error's code."""

    async def outcome(client: AsyncTabbyClient, name: str) -> str:
        try:
            await client.models.load(model_name=name)
        except TabbyError as err:
            match err.code:
                case "permission_error":
                    return "needs admin"
                case "invalid_request":
                    return "bad request"
                case "not_found":
                    return "no such model"
                case _:
                    return err.code
        return "loaded"

    assert await outcome(reader, "alpha") == "needs admin"
    assert await outcome(client, "missing-model") == "no such model"
    server.faults.fail_next(
        1, status=400, detail="A model name was not provided for load.", path=LOAD
    )
    assert await outcome(client, "alpha") == "bad request"
    assert await outcome(client, "broken") == "load_failed"
    assert await outcome(client, "alpha") == "loaded"


async def test_missing_model_is_model_not_found(client: AsyncTabbyClient) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        async with client.models.load_stream(model_name="nope"):
            pass
    assert info.value.status == 400
    assert info.value.message.startswith("Could not find the model path")
    with pytest.raises(ModelNotFoundError):
        await client.models.load_embedding(embedding_model_name="nope")


async def test_not_loaded_503s(client: AsyncTabbyClient) -> None:
    for call in (client.models.get, client.models.get_props, client.models.unload):
        with pytest.raises(ModelNotLoadedError) as info:
            await call()
        assert info.value.status == 503 and not isinstance(info.value, ServerError)
    with pytest.raises(ModelNotLoadedError):
        await client.models.unload_embedding()


async def test_load_failed_and_config_error_frames(
    client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    seen: list[ModelLoadResponse] = []
    with pytest.raises(LoadFailedError, match="CUDA out of memory") as info:
        await client.models.load(model_name="broken", on_progress=seen.append)
    assert info.value.code == "load_failed"
    assert [e.module for e in seen] == [1, 2]
    with pytest.raises(LoadFailedError, match=r"config\.json"):
        await client.models.load(model_name="noconfig")
    with pytest.raises(ModelNotLoadedError):
        await client.models.get()
    assert connections.held == 0


# --- the load stream -----------------------------------------------------------------


async def test_vision_and_draft_finish_before_the_model(client: AsyncTabbyClient) -> None:
    kinds: list[tuple[str, str]] = []

    async def record(event: ModelLoadResponse) -> None:
        kinds.append((event.model_type, event.status))

    final = await client.models.load(
        model_name="seeing",
        vision=True,
        draft_model=DraftModelLoadRequest(draft_model_name="draft-small"),
        on_progress=record,
    )
    assert final.model_type == "model" and final.status == "finished"
    finished = [k for k, s in kinds if s == "finished"]
    assert finished == ["vision", "draft", "model"]
    assert kinds[-1] == ("model", "finished")


async def test_already_loaded_streams_one_of_one(client: AsyncTabbyClient) -> None:
    await client.models.load(model_name="beta")
    events: list[ModelLoadResponse] = []
    await client.models.load(model_name="beta", max_seq_len=1024, on_progress=events.append)
    assert [(e.module, e.modules, e.status) for e in events] == [
        (1, 1, "processing"),
        (1, 1, "finished"),
    ]


async def test_leaving_early_closes_the_response(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    async with client.models.load_stream(model_name="slow") as stream:
        async for event in stream:
            assert event.module == 1
            assert connections.held == 1
            break
    assert stream.closed
    assert connections.held == 0
    # The server goes on loading after the client left: a load is not cancelled by a disconnect.
    await server.wait_loaded("slow", timeout=GUARD)
    assert (await client.models.get()).id == "slow"


async def test_aclose_and_cancellation_close_the_response(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    stream = client.models.load_stream(model_name="slow")
    first = await stream.__anext__()
    assert first.module == 1
    await stream.aclose()
    assert connections.held == 0
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()

    # The load went on in the background: let it end and unload, so that the
    # next load is a real one and the cancel lands while it streams (a no-op
    # load's two frames can be read in one go, ending the stream first).
    await server.wait_loaded("slow", timeout=GUARD)
    await client.models.unload()
    started = asyncio.Event()

    async def follow() -> None:
        async with client.models.load_stream(model_name="slow") as s:
            async for _ in s:
                started.set()

    task = asyncio.create_task(follow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert connections.held == 0


async def test_an_exception_in_the_block_closes_the_response(
    client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    with pytest.raises(KeyError):
        async with client.models.load_stream(model_name="slow") as stream:
            async for _ in stream:
                raise KeyError("boom")
    assert connections.held == 0


async def test_cut_stream_is_a_stream_error_and_never_resent(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    server.faults.drop_stream(after_events=2)
    got: list[ModelLoadResponse] = []
    with pytest.raises(StreamError, match="ended before the model finished") as info:
        await client.models.load(model_name="beta", on_progress=got.append)
    assert info.value.code == "stream_error"
    assert len(got) == 2
    await asyncio.sleep(0.3)  # EventSource would reconnect within this
    assert server.count("POST", LOAD) == 1
    assert connections.held == 0


async def test_pings_are_skipped() -> None:
    async with (
        TabbyEmulator(
            models=[EmulatedModel(name="m", modules=2, delay=0.15)], ping_interval=0.05
        ) as server,
        AsyncTabbyClient(server.url, admin_key=server.admin_key) as client,
    ):
        events = [e async for e in client.models.load_stream(model_name="m")]
    assert [(e.module, e.status) for e in events] == [
        (1, "processing"),
        (2, "processing"),
        (2, "finished"),
    ]


async def test_a_finished_stream_returns_its_connection_to_the_pool(
    client: AsyncTabbyClient,
    connections: ConnectionCounter,
) -> None:
    await client.models.load(model_name="alpha")
    assert connections.held == 0
    opened, handed_out = connections.opened, connections.handed_out
    # Pooled, not closed: the next load (a no-op one now) is sent on the same connection.
    await client.models.load(model_name="alpha")
    assert connections.handed_out > handed_out
    assert connections.opened == opened == 1
    assert connections.held == 0


# --- timeouts -------------------------------------------------------------------------


async def test_per_call_total_timeout(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    server.faults.delay_head(2.0, path="/v1/model/list")
    with pytest.raises(TabbyTimeoutError) as info:
        await client.models.list(timeout=0.3)
    assert info.value.kind == "total"
    assert isinstance(info.value, TimeoutError)
    assert connections.held == 0


async def test_read_idle_timeout_on_a_silent_stream(
    server: TabbyEmulator, connections: ConnectionCounter
) -> None:
    async with AsyncTabbyClient(
        server.url,
        admin_key=server.admin_key,
        stream_timeout=Timeout(connect=1.0, read=0.3),
    ) as client:
        with pytest.raises(TabbyTimeoutError) as info:
            async with client.models.load_stream(
                model_name="slow", timeout=Timeout(read=0.02)
            ) as s:
                async for _ in s:
                    pass
        assert info.value.kind == "read"
        assert connections.held == 0
        assert client.stream_timeout.total is None


async def test_default_timeouts() -> None:
    client = AsyncTabbyClient()
    assert client.timeout.total == 30.0
    assert client.stream_timeout.total is None
    assert client.stream_timeout.read is not None and client.stream_timeout.read > 15
    with pytest.raises(InvalidInputError, match="timeout"):
        AsyncTabbyClient(timeout=-1)
    await client.aclose()


async def test_connection_refused_is_a_connection_error() -> None:
    sock_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = sock_server.sockets[0].getsockname()[1]
    sock_server.close()
    await sock_server.wait_closed()
    async with AsyncTabbyClient(f"http://127.0.0.1:{port}", max_retries=0) as client:
        with pytest.raises(TabbyConnectionError) as info:
            await client.models.list()
    assert isinstance(info.value, ConnectionError)
    assert info.value.code == "connection_error"


# --- lifecycle ----------------------------------------------------------------------


async def test_closed_client_is_a_clear_error(server: TabbyEmulator) -> None:
    client = AsyncTabbyClient(server.url, api_key=server.api_key)
    await client.models.list()
    await client.aclose()
    await client.aclose()  # idempotent
    with pytest.raises(ClientStateError, match="closed"):
        await client.models.list()


async def test_caller_session_is_used_and_left_open(server: TabbyEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with AsyncTabbyClient(server.url, api_key=server.api_key, session=session) as c:
            await c.models.list()
        assert not session.closed
        async with session.get(server.url + "/health") as resp:
            assert resp.status == 200


async def test_other_event_loop_is_refused(server: TabbyEmulator) -> None:
    client = AsyncTabbyClient(server.url, api_key=server.api_key)
    await client.models.list()

    def elsewhere() -> BaseException | None:
        async def call() -> None:
            await client.models.list()

        try:
            asyncio.run(call())
        except BaseException as exc:
            return exc
        return None

    error = await asyncio.to_thread(elsewhere)
    assert isinstance(error, ClientStateError)
    assert "another event loop" in str(error)
    await client.aclose()


def test_base_url_is_normalised_and_checked() -> None:
    assert str(AsyncTabbyClient("http://h:5000/v1/").base_url) == "http://h:5000/"
    assert str(AsyncTabbyClient("https://h/tabby/").base_url) == "https://h/tabby"
    for bad in ("ftp://h", "127.0.0.1:5000", "http://user:pw@h:5000"):
        with pytest.raises(InvalidInputError) as info:
            AsyncTabbyClient(bad)
        assert info.value.field == "base_url"


async def test_secrets_stay_out_of_repr_errors_and_logs(
    server: TabbyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tabby_async")
    client = AsyncTabbyClient(server.url, api_key="api-SECRET-1", admin_key="admin-SECRET-2")
    texts = [repr(client), str(client)]
    for call in (client.models.list, client.models.unload):
        with pytest.raises(TabbyError) as info:
            await call()
        texts += [str(info.value), repr(info.value), repr(info.value.body)]
    await client.aclose()
    texts += [r.getMessage() for r in caplog.records]
    assert any("GET /v1/model/list" in t for t in texts)
    for text in texts:
        assert "SECRET" not in text


async def test_silent_long_calls_have_no_idle_bound_by_default() -> None:
    """A download sends nothing until done: an idle bound would cut it (and the
    server cancels a cut download), so only an explicit timeout applies."""
    async with (
        TabbyEmulator(models=["alpha"], downloadable={"org/slow": 0.5}) as server,
        AsyncTabbyClient(
            server.url,
            admin_key=server.admin_key,
            stream_timeout=Timeout(connect=1.0, read=0.2),
        ) as client,
    ):
        done = await client.models.download(repo_id="org/slow")
        assert done.download_path.endswith("slow")
        with pytest.raises(TabbyTimeoutError) as info:
            await client.models.download(repo_id="org/slow", folder_name="again", timeout=0.2)
        assert info.value.kind == "total"
        # The load stream keeps the read bound: silence there means trouble.
        assert client.stream_timeout.read == 0.2


async def test_loaded_embedding_is_none_only_for_the_servers_none_loaded_answer(
    client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    assert await client.models.loaded_embedding() is None
    await client.models.load_embedding(EmbeddingModelLoadRequest(embedding_model_name="embed-a"))
    card = await client.models.loaded_embedding()
    assert card is not None and card.id == "embed-a"
    await client.models.unload_embedding()
    assert await client.models.loaded_embedding() is None
    assert connections.held == 0


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        # Another 503 (a proxy's, or the main model's text) is an error as before.
        (503, {"detail": "No models are currently loaded."}, ModelNotLoadedError),
        (503, {"detail": "Service Unavailable"}, ServerError),
        # The right text with another status is not the server's "none loaded".
        (500, {"detail": "No embedding models are currently loaded."}, ServerError),
        # Not the server's JSON answer: what get_embedding raises for it.
        (503, "No embedding models are currently loaded.", ModelNotLoadedError),
    ],
)
async def test_loaded_embedding_raises_for_any_other_answer(
    status: int, body: object, error: type[Exception]
) -> None:
    async def answer(request: web.Request) -> web.Response:
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/v1/model/embedding", answer)
    async with serve_app(app) as url, AsyncTabbyClient(url, api_key="k") as client:
        with pytest.raises(error):
            await client.models.loaded_embedding(max_retries=0)
