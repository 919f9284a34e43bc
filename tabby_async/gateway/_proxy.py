"""The gateway's HTTP side: the OpenAI routes, passed through to the node the engine picks.

A request's body is read once, its ``model`` looked up in the catalog, and
``model`` replaced by the node's folder (so a node with inline loading on
never swaps by itself); everything else goes on byte for byte. A stream is
passed on chunk by chunk as the node sends it, never buffered; the answer's
own ``model`` field stays what TabbyAPI says (the folder's last segment).
Whether an answer is a stream is the node's to say: its content type decides,
so a ``stream`` the server reads as true in its lax way (``"yes"``, ``1``)
streams here too.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import msgspec
from aiohttp import web

from .. import (
    APIStatusError,
    AsyncTabbyClient,
    TabbyConnectionError,
    TabbyTimeoutError,
    Timeout,
    tracing,
)
from ._catalog import Catalog, CatalogModel, GatewayPolicy, ModelKind
from ._errors import GatewayError, error_event, error_response
from ._metrics import GatewayMetrics
from ._placement import NodeState
from ._upkeep import Stream


class Engine(Protocol):
    """What the routes need of the gateway's engine (its module imports this one)."""

    catalog: Catalog
    policy: GatewayPolicy
    api_keys: tuple[str, ...]
    metrics: GatewayMetrics
    clients: dict[str, AsyncTabbyClient]
    nodes: dict[str, NodeState]
    streams: set[Stream]

    async def acquire(self, entry: CatalogModel) -> NodeState: ...
    def release(self, node: NodeState, kind: ModelKind) -> None: ...
    def node_unreachable(self, node: NodeState) -> None: ...
    def watch(self, close: Any) -> Stream: ...
    def replicas(self, name: str, kind: ModelKind) -> list[str]: ...
    def queued(self, name: str) -> int: ...
    def status(self) -> dict[str, Any]: ...


__all__ = ["routes"]

logger = logging.getLogger("tabby_async.gateway")

_BODY = msgspec.json.Decoder(dict[str, msgspec.Raw])
_STR = msgspec.json.Decoder(str)
_encode = msgspec.json.encode
_DONE = b"data: [DONE]"
_SSE = "text/event-stream"
#: The answers a client with a broken connection gives a write.
_GONE = (ConnectionError, RuntimeError)
_UPSTREAM_LOST = (aiohttp.ClientError, TimeoutError, OSError)

Opener = Callable[..., Awaitable[aiohttp.ClientResponse]]


def raise_mmap_threshold() -> None:
    """Keep asyncio's socket read buffers on the heap: allocate and free one 4 MiB block.

    asyncio reads a socket into a fresh 256 KiB buffer and shrinks it to what
    came. While glibc's mmap threshold is at its start value (128 KiB), each
    such read is an mmap, a shrink and a munmap with fresh pages faulted in:
    a quarter of a proxied request's CPU. Freeing a block that glibc served
    by mmap raises the threshold to that block's size, for the whole process
    (other allocators ignore it).
    """
    block = bytearray(4 << 20)
    del block


class Proxy:
    """The route handlers of one gateway."""

    def __init__(self, gateway: Engine) -> None:
        raise_mmap_threshold()
        self.gateway = gateway
        self.catalog = gateway.catalog.models
        self._keys = tuple(k.encode() for k in gateway.api_keys)
        # One Raw per model: the node's folder, encoded once.
        self._folders = {name: msgspec.Raw(_encode(e.folder)) for name, e in self.catalog.items()}
        policy = gateway.policy
        # No read bound: a non-streamed answer says nothing until it is done;
        # the stall watchdog bounds the silence of a stream or a begun answer.
        self._timeout = Timeout(connect=policy.connect_timeout)
        self._stall = policy.stall_timeout
        self._cap = policy.max_answer_bytes

    # ------------------------------------------------------------------ checks

    def authorised(self, request: web.BaseRequest) -> bool:
        """True when no keys are set, or the request carries one of them."""
        keys = self._keys
        if not keys:
            return True
        # Read as the server reads them: a non-empty x-api-key first, else the
        # word after "Bearer" and one space (further words are ignored).
        headers = request.headers
        given = headers.get("x-api-key")
        if not given:
            words = headers.get("Authorization", "").split(" ")
            if len(words) < 2 or words[0].lower() != "bearer":
                return False
            given = words[1]
        # aiohttp keeps bytes that are not UTF-8 as surrogates: such a key is just wrong.
        sent = given.encode("utf-8", "surrogateescape")
        found = False
        for key in keys:  # every key compared: the time says nothing of which
            found |= hmac.compare_digest(sent, key)
        return found

    def _parse(
        self, body: bytes, kind: ModelKind
    ) -> tuple[dict[str, msgspec.Raw], CatalogModel]:
        """The body's fields (``model`` now the folder) and its catalog entry."""
        try:
            fields = _BODY.decode(body)
        except msgspec.DecodeError:
            raise GatewayError(400, "invalid_request", "the body is not a JSON object") from None
        raw = fields.get("model")
        try:
            name = None if raw is None else _STR.decode(raw)
        except msgspec.DecodeError:
            name = None
        if name is None:
            raise GatewayError(400, "invalid_request", "'model' must name a catalog model")
        entry = self.catalog.get(name)
        if entry is None or entry.kind != kind:
            what = "an embedding model" if kind == "embedding" else "a generating model"
            raise GatewayError(
                404,
                "model_not_found",
                f"{name[:200]!r} is not {what} of this gateway (GET /v1/models lists them)",
            )
        fields["model"] = self._folders[name]
        return fields, entry

    # ------------------------------------------------------------------ routes

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "model", "chat_completions")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "model", "completions")

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "embedding", "embeddings")

    async def _forward(
        self, request: web.Request, kind: ModelKind, call: str
    ) -> web.StreamResponse:
        gateway = self.gateway
        if not self.authorised(request):
            gateway.metrics.refused("", "unauthorized")
            return _unauthorised()
        try:
            fields, entry = self._parse(await _read(request), kind)
        except GatewayError as err:
            gateway.metrics.refused("", err.code)
            return error_response(err.status, err.code, err.message)
        body = _encode(fields)
        span = tracing.start_span(
            "tabby.gateway.request", lambda: {"tabby.model": entry.name, "tabby.route": call}
        )
        tries = len(gateway.nodes) + 1
        while True:
            try:
                node = await gateway.acquire(entry)
            except GatewayError as err:
                if span is not None:
                    tracing.set_error(span, err.code, err.message)
                    tracing.end_span(span, "error")
                return error_response(err.status, err.code, err.message, err.retry_after)
            if span is not None:
                span.set_attribute("tabby.node", node.name)
            opener: Opener = getattr(gateway.clients[node.name].inference, call)
            try:
                upstream = await opener(body, timeout=self._timeout)
            except (TabbyConnectionError, TabbyTimeoutError) as err:
                gateway.release(node, kind)
                tries -= 1
                if not err.sent and tries > 0:
                    gateway.node_unreachable(node)
                    continue  # it never reached the node: another may take it
                return self._failed(span, entry, node.name, 502, "upstream_error", str(err))
            except APIStatusError as err:
                gateway.release(node, kind)
                code = "upstream_error" if err.status >= 500 else "invalid_request"
                status = 502 if err.status >= 500 else err.status
                return self._failed(span, entry, node.name, status, code, err.message or str(err))
            except BaseException:
                gateway.release(node, kind)
                raise
            break
        outcome = "client_closed"  # unless the answer is passed on
        answer: web.StreamResponse
        try:
            if upstream.content_type == _SSE:
                answer, outcome = await self._pass_stream(request, upstream, entry, node.name)
            else:
                answer, outcome = await self._pass_whole(upstream, node.name)
        finally:
            upstream.close()
            gateway.release(node, kind)
            gateway.metrics.request(entry.name, node.name, outcome)
            if span is not None:
                tracing.end_span(span, outcome)
        return answer

    def _failed(
        self,
        span: tracing.SpanLike | None,
        entry: CatalogModel,
        node: str,
        status: int,
        code: str,
        message: str,
    ) -> web.Response:
        self.gateway.metrics.request(entry.name, node, code)
        if span is not None:
            tracing.set_error(span, code, message)
            tracing.end_span(span, "error")
        return error_response(status, code, f"node {node!r}: {message}")

    async def _pass_whole(
        self, upstream: aiohttp.ClientResponse, node: str
    ) -> tuple[web.Response, str]:
        cap = self._cap
        problem: str | None = None
        length = upstream.content_length
        if length is not None and length > cap:
            problem = f"node {node!r} sent an answer over {cap} bytes ({length})"
            return error_response(502, "upstream_error", problem), "upstream_error"
        # Once the answer has begun, the stall watchdog bounds its silence.
        watch = self.gateway.watch(upstream.close)
        content = upstream.content
        parts: list[bytes] = []
        size = 0
        try:
            while chunk := await content.readany():
                watch.tokens += 1
                size += len(chunk)
                if size > cap:
                    problem = f"node {node!r} sent an answer over {cap} bytes"
                    break
                parts.append(chunk)
        except _UPSTREAM_LOST as exc:
            problem = f"node {node!r} broke off its answer: {type(exc).__name__}"
        finally:
            self.gateway.streams.discard(watch)
        if watch.stalled:
            problem = f"node {node!r} went silent mid-answer for {self._stall:g} s"
        if problem is not None:
            logger.warning("%s", problem)
            return error_response(502, "upstream_error", problem), "upstream_error"
        return (
            web.Response(
                body=parts[0] if len(parts) == 1 else b"".join(parts),
                status=upstream.status,
                headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")},
            ),
            "ok",
        )

    async def _pass_stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        entry: CatalogModel,
        node: str,
    ) -> tuple[web.StreamResponse, str]:
        response = web.StreamResponse(
            status=upstream.status,
            headers={
                "Content-Type": upstream.headers.get("Content-Type", _SSE),
                "Cache-Control": "no-cache",
            },
        )
        await response.prepare(request)
        watch = self.gateway.watch(upstream.close)
        streams = self.gateway.streams
        content = upstream.content
        last = b""
        problem: str | None = None
        try:
            while True:
                try:
                    chunk = await content.readany()
                except _UPSTREAM_LOST as exc:
                    problem = f"node {node!r} failed mid-stream: {type(exc).__name__}"
                    break
                if not chunk:
                    if not (_DONE in last or b'"error"' in last):
                        problem = f"node {node!r} ended the stream before its end"
                    break
                if b"data:" in chunk:  # a token, not a ping
                    watch.tokens += 1
                last = chunk
                try:
                    await response.write(chunk)
                except _GONE:
                    return response, "client_closed"  # the upstream is closed: it stops
            if watch.stalled:
                problem = f"node {node!r} sent no token for {self._stall:g} s"
            outcome = "ok" if problem is None else "upstream_error"
            try:
                if problem is not None:
                    logger.warning("%s: %s", entry.name, problem)
                    await response.write(error_event("upstream_error", problem))
                await response.write_eof()
            except _GONE:
                return response, "client_closed"
            return response, outcome
        finally:
            streams.discard(watch)

    # ------------------------------------------------------------------ the rest

    async def models(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return _unauthorised()
        gateway = self.gateway
        data = []
        for name, entry in self.catalog.items():
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "tabby-async-gateway",
                    "kind": entry.kind,
                    "pinned": entry.pinned,
                    "ttl": entry.ttl,
                    "max_replicas": entry.max_replicas,
                    "loaded_on": gateway.replicas(name, entry.kind),
                    "queued": gateway.queued(name),
                }
            )
        return _json({"object": "list", "data": data})

    async def health(self, request: web.Request) -> web.Response:
        nodes = self.gateway.nodes.values()
        up = sum(1 for n in nodes if n.up)
        degraded = sum(1 for n in nodes if n.up and not n.healthy)
        status = (
            "unhealthy" if not up else ("degraded" if degraded or up < len(nodes) else "healthy")
        )
        body = {"status": status, "nodes": len(nodes), "up": up, "degraded": degraded}
        return _json(body, 503 if not up else 200)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.gateway.metrics.text(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def status(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return _unauthorised()
        return _json(self.gateway.status())


async def _read(request: web.Request) -> bytes:
    """The request's body; one over the app's ``client_max_size`` is a 413 in our shape."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        bound = request.client_max_size
        raise GatewayError(
            413, "body_too_large", f"the body is over the gateway's bound of {bound} bytes"
        ) from None


def _unauthorised() -> web.Response:
    return error_response(401, "unauthorized", "send a client key (Bearer or x-api-key)")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def routes(gateway: Engine) -> list[web.RouteDef]:
    """The gateway's routes."""
    proxy = Proxy(gateway)
    known = [
        web.post("/v1/chat/completions", proxy.chat),
        web.post("/v1/completions", proxy.completions),
        web.post("/v1/embeddings", proxy.embeddings),
        web.get("/v1/models", proxy.models),
        web.get("/health", proxy.health),
        web.get("/metrics", proxy.metrics),
        web.get("/status", proxy.status),
    ]
    # Any other method on a known path, and any other path, answer in our shape
    # (aiohttp's own 404 and 405 are plain text); a route, not a middleware,
    # so the hot path pays nothing.
    others = [web.route("*", r.path, _not_allowed(r.method)) for r in known]
    return [*known, *others, web.route("*", "/{path:.*}", _not_found)]


def _not_allowed(method: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    allow = "GET, HEAD" if method == "GET" else method

    async def answer(request: web.Request) -> web.Response:
        response = error_response(
            405, "method_not_allowed", f"{request.path} takes {allow}, not {request.method}"
        )
        response.headers["Allow"] = allow
        return response

    return answer


async def _not_found(request: web.Request) -> web.Response:
    return error_response(404, "not_found", f"no route {request.path[:200]!r} on this gateway")
