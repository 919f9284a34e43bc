"""The admin areas of the SDK against the emulator: client.lora, client.templates,
client.sampling, client.tokens, client.service_info() and client.ensure(DesiredState).

Every method is called against the emulator, and each error answer of the
server's table for these routes is checked to reach the user as its typed
error. What the SDK refuses before sending is checked to send nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tabby_async import (
    AsyncTabbyClient,
    ChatMessage,
    InvalidInputError,
)
from tabby_async.testing import TabbyEmulator

pytestmark = pytest.mark.emulator(models=["m"])

Call = Callable[[AsyncTabbyClient], Awaitable[Any]]


# --- refused before sending ---------------------------------------------------------------


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
