"""The admin areas of the SDK against the emulator: client.lora, client.templates,
client.sampling, client.tokens, client.service_info() and client.apply(DesiredState).

Every method is called against the emulator, and each error answer of the
server's table for these routes is checked to reach the user as its typed
error. What the SDK refuses before sending is checked to send nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tabby_async import (
    AsyncTabbyClient,
    AuthenticationError,
    BadRequestError,
    DesiredState,
    EmbeddingModelLoadRequest,
    InvalidInputError,
    LoraLoadFailedError,
    ModelLoadRequest,
    ModelNotLoadedError,
    NoTemplateError,
    NotFoundError,
    PermissionDeniedError,
    PresetNotFoundError,
    ServerError,
    TemplateNotFoundError,
)
from tabby_async.testing import TabbyEmulator
from tabby_async.types import ChatMessage, ChatMessagePart, LoraLoadItem, LoraLoadResponse

TEMPLATES = {"chatml": "{{ chatml }}", "alpaca": "{{ alpaca }}", "llama3": "{{ llama3 }}"}
PRESETS = {
    "precise": {"temperature": {"override": 0.2, "force": True}},
    "creative": {"temperature": {"override": 1.1}, "top_p": {"override": 0.95}},
}
LORAS = ["lora-a", "lora-b"]
pytestmark = pytest.mark.emulator(
    models=["m", "n"],
    embeddings=["e"],
    templates=TEMPLATES,
    presets=PRESETS,
    loras=LORAS,
)

Call = Callable[[AsyncTabbyClient], Awaitable[Any]]


@pytest.fixture
async def anonymous(server: TabbyEmulator) -> AsyncIterator[AsyncTabbyClient]:
    """A client of ``server`` with no key at all."""
    async with AsyncTabbyClient(server.url, api_key=None, admin_key=None) as nobody:
        yield nobody


def posts(server: TabbyEmulator) -> list[str]:
    """The paths of every POST the server received, in order."""
    return [r.path for r in server.requests if r.method == "POST"]


# --- refused before sending ----------------------------------------------------------------


class _Unencodable:
    """An object JSON cannot carry."""


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.lora.load(loras=[]), "loras"),
        (lambda c: c.lora.load(), "LoraLoadRequest"),
        (lambda c: c.lora.load(loras=[{"name": ""}]), "loras[].name"),
        (lambda c: c.lora.load(loras=[{"name": "../up"}]), "loras[].name"),
        (lambda c: c.lora.load(loras=[{"name": "a", "scaling": float("nan")}]), "loras[].scaling"),
        (lambda c: c.lora.load(loras=[{"name": "a", "scaling": "1"}]), "loras[].scaling"),
        (lambda c: c.lora.load(loras=["a"]), "loras[0]"),
        (lambda c: c.lora.load(loras=[{"name": "a"}], skip_queue="yes"), "skip_queue"),
        (lambda c: c.templates.switch(""), "name"),
        (lambda c: c.templates.switch("../escape"), "name"),
        (lambda c: c.sampling.switch(), "preset/overrides"),
        (lambda c: c.sampling.switch(preset="p", overrides={"top_k": 1}), "preset/overrides"),
        (lambda c: c.sampling.switch(preset=""), "preset"),
        (lambda c: c.sampling.switch(overrides={}), "overrides"),
        (lambda c: c.sampling.switch(overrides={"t": _Unencodable()}), "overrides"),
        (lambda c: c.sampling.switch(overrides={"t": {1: {(1, 2): 3}}}), "overrides"),
        (lambda c: c.tokens.encode(123), "text"),
        (lambda c: c.tokens.encode(b"bytes"), "text"),
        (lambda c: c.tokens.encode([{"role": "user", "content": "hi"}]), "text[0]"),
        (lambda c: c.tokens.encode("x", template_vars={"v": _Unencodable()}), "template_vars"),
        (lambda c: c.tokens.encode("x", add_bos_token="yes"), "add_bos_token"),
        (lambda c: c.tokens.decode("123"), "tokens"),
        (lambda c: c.tokens.decode([1, -1]), "tokens[1]"),
        (lambda c: c.tokens.decode([True]), "tokens[0]"),
        (lambda c: c.tokens.decode([1], decode_special_tokens=1), "decode_special_tokens"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    server: TabbyEmulator, client: AsyncTabbyClient, call: Call, field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await call(client)
    assert caught.value.field == field
    assert server.requests == []


def test_a_message_whose_tool_calls_json_cannot_carry_is_refused() -> None:
    with pytest.raises(InvalidInputError) as caught:
        ChatMessage(role="assistant", tool_calls=[{"function": _Unencodable()}])
    assert caught.value.field == "tool_calls"
    ChatMessage(role="assistant", tool_calls=[{"id": "1", "function": {"name": "f"}}])


# --- service info --------------------------------------------------------------------------


async def test_service_info_needs_no_key_and_ignores_a_wrong_one(
    server: TabbyEmulator, anonymous: AsyncTabbyClient
) -> None:
    info = await anonymous.service_info()
    assert info.software.name == "TabbyAPI"
    assert info.version == 0.1
    assert {name: api.relative_url for name, api in info.api.items()} == {
        "openai": "/v1",
        "koboldai": "/api",
    }
    async with AsyncTabbyClient(server.url, api_key="wrong", admin_key="wrong") as wrong:
        assert await wrong.service_info() == info
    server.preload("m")  # the same fixed answer whatever the state
    assert await anonymous.service_info() == info


# --- keys and "no model" -------------------------------------------------------------------

#: Every call of the admin areas, by the key its route needs and whether it needs a model.
API_CALLS: list[tuple[str, Call, bool]] = [
    ("lora.list", lambda c: c.lora.list(), False),
    ("lora.active", lambda c: c.lora.active(), True),
    ("templates.list", lambda c: c.templates.list(), False),
    ("sampling.list", lambda c: c.sampling.list(), False),
    ("tokens.encode", lambda c: c.tokens.encode("hi"), True),
    ("tokens.decode", lambda c: c.tokens.decode([5, 6]), True),
]
ADMIN_CALLS: list[tuple[str, Call, bool]] = [
    ("lora.load", lambda c: c.lora.load(loras=[LoraLoadItem(name="lora-a")]), True),
    ("lora.unload", lambda c: c.lora.unload(), True),
    ("templates.switch", lambda c: c.templates.switch("chatml"), True),
    ("templates.unload", lambda c: c.templates.unload(), True),
    ("sampling.switch", lambda c: c.sampling.switch(preset="precise"), False),
    ("sampling.unload", lambda c: c.sampling.unload(), False),
]


def calls(table: list[tuple[str, Call, bool]]) -> Any:
    return pytest.mark.parametrize(
        ("call", "needs_model"), [(c, m) for _, c, m in table], ids=[n for n, _, _ in table]
    )


async def refusal(
    call: Call, who: AsyncTabbyClient, error: type[AuthenticationError | PermissionDeniedError]
) -> tuple[int, str]:
    """The status and key problem (``reason``) of the error ``call`` raises for ``who``."""
    with pytest.raises(error) as caught:
        await call(who)
    return caught.value.status, caught.value.reason


@calls(API_CALLS)
async def test_api_routes_without_or_with_a_wrong_key_are_401(
    server: TabbyEmulator, anonymous: AsyncTabbyClient, call: Call, needs_model: bool
) -> None:
    assert await refusal(call, anonymous, AuthenticationError) == (401, "missing")
    async with AsyncTabbyClient(server.url, api_key="not-the-key") as wrong:
        assert await refusal(call, wrong, AuthenticationError) == (401, "invalid")


@calls(ADMIN_CALLS)
async def test_admin_routes_need_the_admin_key(
    server: TabbyEmulator,
    anonymous: AsyncTabbyClient,
    reader: AsyncTabbyClient,
    call: Call,
    needs_model: bool,
) -> None:
    server.preload("m")
    for who in (anonymous, reader):  # no key, or only the api key: the admin key is missing
        assert await refusal(call, who, PermissionDeniedError) == (401, "missing")
    async with AsyncTabbyClient(server.url, admin_key="not-the-admin-key") as wrong:
        assert await refusal(call, wrong, PermissionDeniedError) == (401, "invalid")
    state = await reader.sampling.list()
    assert (state.selected_preset, state.overrides) == (None, {})  # nothing was switched


@calls(API_CALLS + ADMIN_CALLS)
async def test_the_model_routes_need_a_loaded_model(
    server: TabbyEmulator, client: AsyncTabbyClient, call: Call, needs_model: bool
) -> None:
    if not needs_model:
        await call(client)  # answers with nothing loaded
        return
    with pytest.raises(ModelNotLoadedError) as caught:
        await call(client)
    assert (caught.value.status, caught.value.kind) == (503, "model")


async def test_the_key_is_checked_before_the_model(
    server: TabbyEmulator, anonymous: AsyncTabbyClient, reader: AsyncTabbyClient
) -> None:
    # Nothing is loaded: still a 401, not a 503.
    with pytest.raises(AuthenticationError):
        await anonymous.tokens.encode("hi")
    with pytest.raises(PermissionDeniedError):
        await reader.templates.switch("chatml")


# --- LoRA ----------------------------------------------------------------------------------


async def test_lora_list_is_every_folder_for_the_admin_key_and_the_active_ones_for_an_api_key(
    server: TabbyEmulator, client: AsyncTabbyClient, reader: AsyncTabbyClient
) -> None:
    listing = await client.lora.list()
    assert sorted(listing.ids) == sorted(LORAS)
    assert {card.object for card in listing.data} == {"lora"}
    assert (await reader.lora.list()).ids == []  # none is ever active
    server.preload("m")
    assert (await client.lora.active()).ids == []


async def test_a_lora_load_with_failures_raises_whatever_the_status(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m")
    items = [
        LoraLoadItem(name="lora-b", scaling=0.5),
        LoraLoadItem(name="lora-a"),
        LoraLoadItem(name="lora-b"),
        LoraLoadItem(name="no-such-lora"),
    ]
    with pytest.raises(LoraLoadFailedError) as caught:
        await client.lora.load(loras=items, skip_queue=True)
    err = caught.value
    assert err.code == "lora_load_failed"
    # Every name, in request order, duplicates and unknown names too.
    assert err.failure == ("lora-b", "lora-a", "lora-b", "no-such-lora")
    assert err.success == ()
    assert "4 of 4" in str(err)
    assert posts(server) == ["/v1/lora/load"]  # a write: sent once
    (sent,) = [r for r in server.requests if r.path == "/v1/lora/load"]
    assert sent.body == {
        "loras": [
            {"name": "lora-b", "scaling": 0.5},
            {"name": "lora-a"},
            {"name": "lora-b"},
            {"name": "no-such-lora"},
        ],
        "skip_queue": True,
    }
    assert (await client.lora.active()).ids == []


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        (b'{"success": ["lora-a"], "failure": []}', None),
        (b'{"success": ["lora-a"], "failure": ["lora-b"]}', ("lora-b",)),
        (b'{"success": [], "failure": ["lora-a"]}', ("lora-a",)),
    ],
)
async def test_a_200_is_success_only_with_an_empty_failure_list(
    server: TabbyEmulator, client: AsyncTabbyClient, answer: bytes, failure: tuple[str, ...] | None
) -> None:
    # A backend that applies adapters: the answer is a 200 either way.
    server.preload("m")
    server.faults.fail_next(status=200, body=answer, path="/v1/lora/load")
    call = client.lora.load(loras=[{"name": "lora-a"}, {"name": "lora-b"}])
    if failure is None:
        assert await call == LoraLoadResponse(success=["lora-a"], failure=[])
        return
    with pytest.raises(LoraLoadFailedError) as caught:
        await call
    assert caught.value.failure == failure
    assert caught.value.success == (("lora-a",) if failure == ("lora-b",) else ())


async def test_lora_unload_is_answered(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    server.preload("m")
    assert await client.lora.unload() is None
    assert posts(server) == ["/v1/lora/unload"]


@pytest.mark.emulator(models=["m"], loras=None)
async def test_without_a_lora_folder(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    server.preload("m")
    with pytest.raises(BadRequestError) as caught:
        await client.lora.load(loras=[LoraLoadItem(name="lora-a")])
    assert caught.value.status == 400
    assert "lora directory does not exist" in caught.value.message
    assert type(caught.value) is BadRequestError
    # The admin's listing is the server's 500; a 500 is not retried.
    with pytest.raises(ServerError) as listing:
        await client.lora.list()
    assert listing.value.status == 500
    assert server.count("GET", "/v1/lora/list") == 1


# --- prompt templates ----------------------------------------------------------------------


async def in_use(client: AsyncTabbyClient) -> str | None:
    card = await client.models.get()
    assert card.parameters is not None
    return card.parameters.prompt_template


async def test_template_list_is_every_template_for_the_admin_key_and_the_one_in_use_for_an_api_key(
    server: TabbyEmulator, client: AsyncTabbyClient, reader: AsyncTabbyClient
) -> None:
    assert sorted((await client.templates.list()).names) == sorted(TEMPLATES)
    assert (await reader.templates.list()).names == []
    server.preload("m")
    await client.templates.switch("alpaca")
    assert (await reader.templates.list()).names == ["alpaca"]


@pytest.mark.parametrize("name", ["chatml", "chatml.jinja"])
async def test_template_switch_with_or_without_jinja(
    server: TabbyEmulator, client: AsyncTabbyClient, name: str
) -> None:
    server.preload("m")
    assert await client.templates.switch(name) is None
    assert await in_use(client) == "chatml"
    assert (await client.models.get_props()).chat_template == TEMPLATES["chatml"]


async def test_an_unknown_template_is_not_found_with_the_servers_500(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m")
    await client.templates.switch("alpaca")
    with pytest.raises(TemplateNotFoundError) as caught:
        await client.templates.switch("no-such-template.jinja")
    err = caught.value
    assert isinstance(err, NotFoundError)
    assert (err.code, err.status, err.path) == ("not_found", 500, "/v1/template/switch")
    assert "'no-such-template'" in err.message
    # The switch once, then the listing that tells the two 500s apart.
    paths = [(r.method, r.path) for r in server.requests if "template" in r.path]
    assert paths[-2:] == [("POST", "/v1/template/switch"), ("GET", "/v1/template/list")]
    assert await in_use(client) == "alpaca"


async def test_another_500_on_a_switch_stays_a_server_error(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # The template exists, so this 500 is not "not found".
    server.preload("m")
    server.faults.fail_next(status=500, detail="boom", path="/v1/template/switch")
    with pytest.raises(ServerError) as caught:
        await client.templates.switch("chatml")
    assert not isinstance(caught.value, NotFoundError)
    assert caught.value.status == 500


async def test_the_template_follows_the_loaded_model(
    server: TabbyEmulator, client: AsyncTabbyClient, reader: AsyncTabbyClient
) -> None:
    await client.models.load(model_name="m", prompt_template="alpaca")
    assert await in_use(client) == "alpaca"
    await client.templates.switch("chatml")
    assert await in_use(client) == "chatml"
    await client.models.load(model_name="m", prompt_template="alpaca")  # a no-op reload keeps it
    assert await in_use(client) == "chatml"
    await client.models.load(model_name="n", prompt_template="llama3")  # any other load replaces it
    assert await in_use(client) == "llama3"
    await client.models.unload()  # and unloading the model clears it
    assert (await reader.templates.list()).names == []
    await client.models.load(model_name="n")
    assert (await reader.templates.list()).names != ["llama3"]


async def test_template_unload(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    server.preload("m")
    await client.templates.switch("chatml")
    assert await client.templates.unload() is None
    card = await client.models.get()
    assert card.parameters is not None
    assert (card.parameters.prompt_template, card.parameters.prompt_template_content) == (
        None,
        None,
    )
    assert (await client.models.get_props()).chat_template == ""


# --- sampler overrides ---------------------------------------------------------------------


async def test_sampling_list_shows_presets_to_the_admin_key_only(
    client: AsyncTabbyClient, reader: AsyncTabbyClient
) -> None:
    state = await client.sampling.list()
    assert (state.selected_preset, state.overrides) == (None, {})
    assert sorted(state.presets or []) == sorted(PRESETS)
    assert (await reader.sampling.list()).presets == []


async def test_selected_preset_is_the_last_preset_loaded_not_what_is_in_force(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # No model needed.
    await client.sampling.switch(preset="precise")
    state = await client.sampling.list()
    assert (state.selected_preset, state.overrides) == ("precise", PRESETS["precise"])
    await client.sampling.switch(overrides={"top_k": {"override": 40}})
    state = await client.sampling.list()
    assert (state.selected_preset, state.overrides) == ("precise", {"top_k": {"override": 40}})
    await client.sampling.unload()
    state = await client.sampling.list()
    assert (state.selected_preset, state.overrides) == ("precise", {})
    assert server.loaded is None


async def test_sampler_overrides_drop_nulls_at_any_depth(client: AsyncTabbyClient) -> None:
    # In dicts and in lists alike.
    await client.sampling.switch(
        overrides={
            "top_k": {"override": None, "force": True},
            "min_p": None,
            "banned": {"override": [1, None], "nested": {"a": None, "b": 2}},
        }
    )
    assert (await client.sampling.list()).overrides == {
        "top_k": {"force": True},
        "banned": {"override": [1], "nested": {"b": 2}},
    }


async def test_sampler_overrides_are_kept_across_model_loads(
    client: AsyncTabbyClient,
) -> None:
    await client.sampling.switch(preset="creative")
    await client.models.load(model_name="m")
    await client.models.load(model_name="n")
    state = await client.sampling.list()
    assert (state.selected_preset, state.overrides) == ("creative", PRESETS["creative"])


@pytest.mark.parametrize("preset", ["no-such-preset", "precise.yml"])
async def test_an_unknown_preset_is_not_found(
    server: TabbyEmulator, client: AsyncTabbyClient, preset: str
) -> None:
    with pytest.raises(PresetNotFoundError) as caught:
        await client.sampling.switch(preset=preset)
    err = caught.value
    assert isinstance(err, NotFoundError) and isinstance(err, BadRequestError)
    assert (err.code, err.status) == ("not_found", 400)
    assert preset in err.message
    assert posts(server) == ["/v1/sampling/override/switch"]


# --- tokens --------------------------------------------------------------------------------


async def test_encode_and_decode_a_string(server: TabbyEmulator, reader: AsyncTabbyClient) -> None:
    server.preload("m")
    plain = await reader.tokens.encode("Hello, world", add_bos_token=False)
    assert plain.length == len(plain.tokens) > 0
    with_bos = await reader.tokens.encode("Hello, world")  # the server's default: a BOS
    assert with_bos.length == plain.length + 1
    assert with_bos.tokens[1:] == plain.tokens
    decoded = await reader.tokens.decode(plain.tokens)
    assert decoded.text == "Hello, world"
    sent = [r.body for r in server.requests if r.path == "/v1/token/encode"]
    assert sent == [{"add_bos_token": False, "text": "Hello, world"}, {"text": "Hello, world"}]


async def test_encode_messages_needs_a_template(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m")
    await client.templates.unload()
    messages = [ChatMessage(role="user", content="Hi")]
    with pytest.raises(NoTemplateError) as caught:
        await client.tokens.encode(messages)
    err = caught.value
    assert (err.code, err.status) == ("no_template", 422)
    assert err.errors == []  # the server's detail is a plain string here
    await client.templates.switch("chatml")
    encoded = await client.tokens.encode(messages)
    assert encoded.length == len(encoded.tokens) > 0


async def test_encode_messages_sends_typed_messages_and_template_vars(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m", prompt_template="chatml")
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content=[ChatMessagePart(type="text", text="Hi")]),
    ]
    await client.tokens.encode(messages, template_vars={"tools": []}, add_bos_token=False)
    (sent,) = [r.body for r in server.requests if r.path == "/v1/token/encode"]
    assert sent == {
        "add_bos_token": False,
        "text": [
            {"role": "system", "content": "Be brief."},
            {"content": [{"type": "text", "text": "Hi"}]},  # the role "user" is the default
        ],
        "template_vars": {"tools": []},
    }
    empty = await client.tokens.encode([], add_bos_token=False)  # [] is an empty prompt
    assert empty.tokens == []


# --- retries: reads again, writes never ----------------------------------------------------

READS: list[tuple[str, str, Call]] = [
    ("GET", "/v1/lora/list", lambda c: c.lora.list()),
    ("GET", "/v1/lora", lambda c: c.lora.active()),
    ("GET", "/v1/template/list", lambda c: c.templates.list()),
    ("GET", "/v1/sampling/override/list", lambda c: c.sampling.list()),
    ("GET", "/.well-known/serviceinfo", lambda c: c.service_info()),
    ("POST", "/v1/token/encode", lambda c: c.tokens.encode("hi")),
    ("POST", "/v1/token/decode", lambda c: c.tokens.decode([5])),
]
WRITES: list[tuple[str, Call]] = [
    ("/v1/lora/load", lambda c: c.lora.load(loras=[{"name": "lora-a"}])),
    ("/v1/lora/unload", lambda c: c.lora.unload()),
    ("/v1/template/switch", lambda c: c.templates.switch("chatml")),
    ("/v1/template/unload", lambda c: c.templates.unload()),
    ("/v1/sampling/override/switch", lambda c: c.sampling.switch(preset="precise")),
    ("/v1/sampling/override/unload", lambda c: c.sampling.unload()),
]


@pytest.mark.parametrize(("method", "path", "call"), READS, ids=[p for _, p, _ in READS])
async def test_reads_are_retried(
    server: TabbyEmulator, client: AsyncTabbyClient, method: str, path: str, call: Call
) -> None:
    server.preload("m")
    server.faults.fail_next(1, status=502, detail="Bad Gateway", path=path, method=method)
    await call(client)
    assert server.count(method, path) == 2


@pytest.mark.parametrize(("path", "call"), WRITES, ids=[p for p, _ in WRITES])
async def test_writes_are_never_retried(
    server: TabbyEmulator, client: AsyncTabbyClient, path: str, call: Call
) -> None:
    server.preload("m")
    server.faults.fail_next(1, status=502, detail="Bad Gateway", path=path, method="POST")
    with pytest.raises(ServerError) as caught:
        await call(client)
    assert caught.value.status == 502
    assert posts(server) == [path]


# --- a whole node's desired state ----------------------------------------------------------


async def test_ensure_loads_the_model_then_switches_the_template_and_the_preset_once(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    state = DesiredState(
        model=ModelLoadRequest(model_name="m", max_seq_len=4096),
        template="chatml",
        sampling_preset="precise",
    )
    planned = await client.apply(state, dry_run=True)
    assert [(p.part, p.action) for p in planned.plan.parts] == [
        ("model", "load"),
        ("template", "switch"),
        ("sampling", "switch"),
    ]
    assert posts(server) == []  # a dry run writes nothing
    result = await client.apply(state)
    assert [p.part for p in result.done] == ["model", "template", "sampling"]
    # The model first: any load replaces the template.
    assert posts(server) == [
        "/v1/model/load",
        "/v1/template/switch",
        "/v1/sampling/override/switch",
    ]
    assert await in_use(client) == "chatml"
    again = await client.apply(state)
    assert not again.changed
    assert len(posts(server)) == 3  # the second call sends no write
    assert any("sampling_preset" in u for u in again.unchecked)


async def test_ensure_lets_the_load_set_the_template_it_names(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    state = DesiredState(
        model=ModelLoadRequest(model_name="m", prompt_template="chatml.jinja"), template="chatml"
    )
    result = await client.apply(state)
    assert [p.part for p in result.done] == ["model"]
    assert posts(server) == ["/v1/model/load"]
    assert await in_use(client) == "chatml"


async def test_ensure_switches_the_template_again_after_another_load(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m", prompt_template="alpaca")
    state = DesiredState(model=ModelLoadRequest(model_name="n"), template="alpaca")
    await client.apply(state)
    assert posts(server) == ["/v1/model/load", "/v1/template/switch"]
    assert await in_use(client) == "alpaca"


async def test_ensure_switches_the_preset_again_once_its_overrides_are_gone(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    state = DesiredState(sampling_preset="creative")
    await client.apply(state)
    await client.sampling.unload()  # selected_preset still says "creative"
    server.reset_requests()
    result = await client.apply(state)
    assert [p.part for p in result.done] == ["sampling"]
    assert posts(server) == ["/v1/sampling/override/switch"]
    assert (await client.sampling.list()).overrides == PRESETS["creative"]


@pytest.mark.emulator(models=["m"], presets={"neutral": {}})
async def test_ensure_takes_a_preset_that_sets_no_overrides(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # No overrides in force after the switch, as after an unload: the server
    # naming the preset right after the switch counts.
    result = await client.apply(DesiredState(sampling_preset="neutral"))
    assert [p.part for p in result.done] == ["sampling"]
    assert result.mismatches == ()
    assert (await client.sampling.list()).selected_preset == "neutral"


async def test_ensure_looks_before_loading_the_embedding_model(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # The server refuses (400) to load the embedding model it already has.
    state = DesiredState(embedding=EmbeddingModelLoadRequest(embedding_model_name="e"))
    await client.apply(state)
    assert posts(server) == ["/v1/model/embedding/load"]
    again = await client.apply(state)
    assert not again.changed
    assert posts(server) == ["/v1/model/embedding/load"]
