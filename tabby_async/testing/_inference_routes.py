"""The inference routes: ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/embeddings``.

The checks come in the server's order: malformed JSON (422), the api key
(401), the body (422), then the model. A request without ``model`` needs a
loaded one (503); a request naming one goes through the server's inline
loading, which is off unless ``inline_model_loading`` is on: the name is then
ignored and the loaded model answers, and with nothing loaded that is the
server's plain-text 500 (it reads the missing model's folder). With inline
loading on, an admin key loads the named folder first (an api key gets a 401);
a name that is no folder is skipped. Chat needs a prompt template (422). A
prompt longer than the context is a 400. A streamed completion without
``max_tokens`` (and no sampler override for it) fails in the stream, after its
200 head, with an error event, as the server's stream does.

How much a choice says: its model's ``reply_tokens`` (else the emulator's)
tokens and then EOS (``finish_reason "stop"``), unless ``max_tokens`` (or,
without one, the room left in the context) stops it first (``"length"``). A
streamed completion's choice ``i`` may say ``5 * i`` tokens more, as the server
raises its ``max_tokens`` so. Prompt token counts come from the toy tokenizer.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import uuid
from base64 import b64encode
from typing import Any

from aiohttp import web

from ._generation import Choice, Generations
from ._guards import Guards
from ._inference_run import (
    Plan,
    aborted,
    answer_whole,
    open_stream,
    stream_error_message,
    stream_generation,
)
from ._inference_schemas import ABSENT, CHAT_SCHEMA, COMPLETION_SCHEMA, EMBEDDINGS_SCHEMA
from ._inference_wire import Kind
from ._load import LoadJobs
from ._sampling_routes import SamplingRoutes
from ._schemas import LOAD_SCHEMA
from ._state import LoadedModel, card_id, resolve_name
from ._token_routes import flatten_message
from ._toy_tokenizer import encode as toy_encode
from ._toy_tokenizer import render_chat
from ._validation import BodyError, parse_json_body, validate
from ._wire import (
    MSG_NO_EMBEDDING,
    detail,
    encode,
    error_frame,
    internal_error,
    json_response,
    unprocessable,
)

__all__ = ["EMBEDDING_DIMENSIONS", "InferenceRoutes", "embedding_vector"]

MSG_NO_CHAT_TEMPLATE = "Chat completions are disabled because a prompt template is not set."
#: How many floats an emulated embedding has.
EMBEDDING_DIMENSIONS = 8


def embedding_vector(folder: str, text: str) -> list[float]:
    """The emulated embedding of ``text`` by the embedding model in ``folder``.

    Derived from a SHA-256 of both, each value a float32 in [-1, 1]: the same
    text and model always give the same vector, another text or model another.
    """
    digest = hashlib.sha256(f"{folder}\0{text}".encode()).digest()
    raw = [b / 127.5 - 1.0 for b in digest[:EMBEDDING_DIMENSIONS]]
    return list(
        struct.unpack(f"<{EMBEDDING_DIMENSIONS}f", struct.pack(f"<{EMBEDDING_DIMENSIONS}f", *raw))
    )


class InferenceRoutes:
    """Handlers of the inference routes (one emulator's)."""

    __slots__ = (
        "_guards",
        "_inline",
        "_jobs",
        "_lock",
        "_ping_interval",
        "_reply_tokens",
        "_sampling",
        "_state",
        "_token_delay",
        "generations",
    )

    def __init__(
        self,
        guards: Guards,
        jobs: LoadJobs,
        sampling: SamplingRoutes,
        generations: Generations,
        *,
        ping_interval: float,
        token_delay: float,
        reply_tokens: int,
        inline_model_loading: bool,
    ) -> None:
        self._guards = guards
        self._state = guards.state
        self._jobs = jobs
        self._sampling = sampling
        self.generations = generations
        self._ping_interval = ping_interval
        self._token_delay = token_delay
        self._reply_tokens = reply_tokens
        self._inline = inline_model_loading
        # The server's inference router serialises its model checks and inline loads.
        self._lock = asyncio.Lock()

    async def completions(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/completions``."""
        return await self._generate(request, body, "text")

    async def chat(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/chat/completions``."""
        return await self._generate(request, body, "chat")

    # ------------------------------------------------------------------ generation

    async def _generate(
        self, request: web.BaseRequest, body: bytes, kind: Kind
    ) -> web.StreamResponse:
        schema = COMPLETION_SCHEMA if kind == "text" else CHAT_SCHEMA
        fields = self._guards.body(request, body, schema, admin=False)
        if isinstance(fields, web.Response):
            return fields
        loaded = await self._model_for(request, fields["model"])
        if isinstance(loaded, web.Response):
            return loaded
        if kind == "text":
            prompt = fields["prompt"]
            prompts: list[str] = [prompt] if isinstance(prompt, str) else prompt
            bos = fields["add_bos_token"] is not False
        else:
            if loaded.prompt_template is None:
                return json_response(422, detail(MSG_NO_CHAT_TEMPLATE))
            messages = [flatten_message(m, loaded.use_vision) for m in fields["messages"]]
            if None in messages:
                return internal_error()
            prompts = [render_chat([m for m in messages if m is not None])]
            bos = True
        lengths = [
            len(toy_encode(p, add_bos_token=bos, encode_special_tokens=True)) for p in prompts
        ]
        for length in lengths:
            if length > loaded.max_seq_len:
                message = (
                    f"Prompt length {length} exceeds the available context size "
                    f"of {loaded.max_seq_len} tokens"
                )
                return json_response(400, detail(message))

        request_id = uuid.uuid4().hex
        stream = bool(fields["stream"])
        doomed = self.generations.swap_waiting
        max_tokens = self._max_tokens(fields["max_tokens"])
        if stream:
            resp = await open_stream(request)
            if doomed or (kind == "text" and max_tokens is None):
                # The server fails these inside the stream: a swap's unload took the
                # model away under it, or it adds to a missing max_tokens.
                if doomed:
                    await self._state_settled()
                await resp.write(error_frame(stream_error_message(kind)))
                await resp.write_eof()
                return resp
        elif doomed:
            await self._state_settled()
            return aborted(kind, request_id)
        plan = self._plan(kind, request_id, loaded, lengths, fields, max_tokens, stream)
        if stream:
            return await stream_generation(resp, plan, self.generations, self._ping_interval)
        return await answer_whole(plan, self.generations)

    async def _state_settled(self) -> None:
        """Wait for a swap that waits on running generations to go on."""
        await self.generations.wait_for(lambda g: not g.swap_waiting, None)

    def _max_tokens(self, requested: Any) -> int | None:
        """The request's ``max_tokens`` after the sampler overrides (a default, or forced)."""
        override = self._sampling.overrides.get("max_tokens")
        if isinstance(override, dict):
            value = override.get("override")
            if requested is ABSENT or (value and override.get("force")):
                requested = value
        if requested is ABSENT or not isinstance(requested, int):
            return None
        return requested

    def _plan(
        self,
        kind: Kind,
        request_id: str,
        loaded: LoadedModel,
        lengths: list[int],
        fields: dict[str, Any],
        max_tokens: int | None,
        stream: bool,
    ) -> Plan:
        spec = self._state.models.get(loaded.name)
        reply = self._reply_tokens
        delay = self._token_delay
        if spec is not None:
            reply = spec.reply_tokens if spec.reply_tokens is not None else reply
            delay = spec.token_delay if spec.token_delay is not None else delay
        n = fields["n"] or 1
        choices: list[Choice] = []
        for length in lengths:
            for _ in range(n):
                index = len(choices)
                limit = max_tokens or 0
                if stream and kind == "text":
                    limit += 5 * index
                if limit <= 0:  # no limit: the room left in the context
                    limit = loaded.max_seq_len - length - 1
                choices.append(Choice(index, length, min(limit, reply), limit > reply))
        options = fields["stream_options"]
        usage = bool(options and options["include_usage"])
        return Plan(kind, request_id, loaded.name, card_id(loaded.name), choices, delay, usage)

    # ------------------------------------------------------------------ which model answers

    async def _model_for(
        self, request: web.BaseRequest, requested: str | None
    ) -> LoadedModel | web.Response:
        """The loaded model that answers, after any inline load; or the refusal."""
        async with self._lock:
            if not requested:
                refused = self._guards.no_model()
                if refused is not None:
                    return refused
            else:
                refused = await self._inline_load(request, requested)
                if refused is not None:
                    return refused
            loaded = self._state.ready
            # Nothing loaded after the inline path: the server reads the missing
            # model's folder and crashes.
            return internal_error() if loaded is None else loaded

    def _is_loaded(self, requested: str) -> bool:
        loaded = self._state.ready
        if loaded is None:
            return False
        return (
            card_id(loaded.name) == requested
            or resolve_name(requested, self._state.models) == loaded.name
        )

    async def _inline_load(self, request: web.BaseRequest, requested: str) -> web.Response | None:
        """The server's inline load of ``requested``; ``None`` lets the request go on."""
        if self._is_loaded(requested):
            return None
        permission = self._guards.permission(request)
        if permission != "admin" and permission != "api":
            return internal_error()  # the server's permission lookup raises
        if not self._inline:
            return None
        if permission != "admin":
            message = f"Unable to switch model to {requested} because an admin key isn't provided"
            return json_response(401, detail(message))
        folder = resolve_name(requested, self._state.models)
        if folder is None:
            return None  # the server logs the missing folder and goes on
        fields = validate(LOAD_SCHEMA, {"model_name": folder})
        job = self._jobs.start(self._state.models[folder], fields, lambda _frame: None)
        await asyncio.shield(job)  # a client that goes away does not stop the load
        loaded = self._state.ready
        if loaded is None or loaded.name != folder:
            return internal_error()  # the load failed: the server raises
        return None

    # ------------------------------------------------------------------ embeddings

    async def embeddings(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/embeddings``: 422 (JSON), 401, 503 without an embedding model, 422."""
        try:
            data = parse_json_body(body, request.headers.get("Content-Type"))
        except BodyError as exc:
            return unprocessable(exc.errors)
        denied = self._guards.api(request)
        if denied is not None:
            return denied
        folder = self._state.loaded_embedding
        if folder is None:
            return json_response(503, detail(MSG_NO_EMBEDDING))
        try:
            fields = validate(EMBEDDINGS_SCHEMA, data)
        except BodyError as exc:
            return unprocessable(exc.errors)
        texts = fields["input"]
        texts = [texts] if isinstance(texts, str) else texts
        b64 = fields["encoding_format"] == "base64"
        items: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector = embedding_vector(folder, text)
            value: Any = (
                b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if b64 else vector
            )
            items.append({"object": "embedding", "embedding": value, "index": index})
        used = sum(
            len(toy_encode(t, add_bos_token=False, encode_special_tokens=False)) for t in texts
        )
        usage = {"prompt_tokens": used, "total_tokens": used, "completion_tokens": 0}
        answer = {"object": "list", "data": items, "model": card_id(folder), "usage": usage}
        return json_response(200, encode(answer))
