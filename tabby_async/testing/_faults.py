"""Fault injection for the emulator: scripted misbehaviour for reliability tests.

Every fault is armed for ``n`` matching requests (``None``: until cleared), matched
by exact path and method (``None`` matches anything), and counted down when it
fires. All bookkeeping happens synchronously on the event loop, so a fault armed
for ``n`` requests fires exactly ``n`` times even with hundreds of concurrent
clients. ``probability`` below 1 hits only some matching requests (reproducibly:
see :meth:`FaultInjector.seed`). Faults are tried in the order they were armed;
per request at most one fault of each stage fires:

1. ``delay_head`` -- sleep before the request is handled at all.
2. answer instead of the real route (the route does not run: nothing is loaded,
   recorded state does not change), any route:

   - ``fail_next`` -- the given status and ``{"detail": ...}`` body;
   - ``proxy_error`` -- a reverse proxy's HTML error page (nginx's ``502 Bad
     Gateway``, ``503 Service Temporarily Unavailable``, ...), ``text/html``;
   - ``not_http`` -- bytes that are not HTTP at all (an SSH server's banner, as
     on a wrong port), then the connection closes;
   - ``empty_stream`` (the load route) -- a ``204``, or a ``200`` with an empty
     ``text/event-stream`` body.

3. after the route ran, for JSON responses only: ``malformed_json``, ``slow_body``
   or ``reset_mid_body`` (whichever was armed first and matches).
4. for the load stream only, each its own stage (so they combine):

   - ``drop_stream`` -- cut the connection after some frames;
   - ``bom`` -- a UTF-8 byte order mark before the first frame;
   - ``sse_retry`` -- an SSE ``retry:`` field before the first frame (TabbyAPI
     never sends one);
   - ``frames_after_finished`` -- more frames after the last one, instead of the
     end of the body.

TabbyAPI itself does none of this; proxies, wrong ports and broken servers do,
and a client should give a typed error promptly for each.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from ._wire import reason_phrase

__all__ = ["Fault", "FaultInjector"]

# Stage names; a request asks for one stage at a time.
STAGE_DELAY = "delay"
STAGE_FAIL = "fail"
STAGE_BODY = "body"
STAGE_STREAM = "stream"
STAGE_BOM = "bom"
STAGE_RETRY = "retry"
STAGE_TRAILING = "trailing"

#: What ``not_http`` sends by default: the first line an SSH server sends.
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n"


class Fault:
    """One armed fault. Returned by the arming methods so tests can inspect it.

    Attributes:
        kind: the name of the arming method (``"fail_next"``, ``"proxy_error"``,
            ``"drop_stream"``, ...).
        remaining: how many more times it may fire (``None``: unlimited).
        fired: how many times it has fired so far.
        path / method: the match filters (``None`` = any).
        probability: chance that a matching request is hit (1.0 = every one).
    """

    __slots__ = (
        "after_events",
        "body",
        "chunk_size",
        "clean_end",
        "count",
        "detail",
        "fired",
        "headers",
        "kind",
        "method",
        "path",
        "probability",
        "remaining",
        "seconds",
        "stage",
        "status",
        "stop_load",
    )

    def __init__(
        self,
        kind: str,
        stage: str,
        n: int | None,
        path: str | None,
        method: str | None,
        probability: float,
    ) -> None:
        if n is not None and n < 1:
            raise ValueError("n must be >= 1 (or None for unlimited)")
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        self.kind = kind
        self.stage = stage
        self.remaining = n
        self.fired = 0
        self.path = path
        self.method = method.upper() if method else None
        self.probability = probability
        # Kind-specific parameters (unused ones keep their defaults).
        self.status = 503
        self.detail = ""
        self.body: bytes | None = None
        self.headers: dict[str, str] = {}
        self.seconds = 0.0
        self.chunk_size = 16
        self.after_events = 0
        self.stop_load = True
        self.clean_end = False
        self.count: int | None = None

    @property
    def exhausted(self) -> bool:
        """True once the fault has fired as often as it was armed for."""
        return self.remaining is not None and self.remaining <= 0

    def __repr__(self) -> str:
        return (
            f"<Fault {self.kind} path={self.path!r} method={self.method!r} "
            f"remaining={self.remaining} fired={self.fired}>"
        )


class FaultInjector:
    """The ``server.faults`` object: arm, inspect and clear faults.

    All arming methods return the :class:`Fault` they created.
    """

    __slots__ = ("_faults", "_random")

    def __init__(self, seed: int | None = None) -> None:
        self._faults: list[Fault] = []
        self._random = random.Random(seed)

    # ------------------------------------------------------------------ arming

    def fail_next(
        self,
        n: int | None = 1,
        status: int = 503,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
        path: str | None = None,
        method: str | None = None,
        *,
        body: bytes | None = None,
        probability: float = 1.0,
    ) -> Fault:
        """Answer the next ``n`` matching requests with ``status`` and ``{"detail": detail}``.

        ``detail`` defaults to the status's reason phrase (``502``: ``"Bad Gateway"``);
        ``headers`` are added (``{"Retry-After": "2"}`` with a 429...); ``body`` replaces
        the JSON body with raw bytes (still ``application/json``). The route does not run.
        """
        fault = self._arm("fail_next", STAGE_FAIL, n, path, method, probability)
        fault.status = status
        fault.detail = reason_phrase(status) if detail is None else detail
        fault.body = body
        fault.headers = dict(headers or {})
        return fault

    def drop_stream(
        self,
        after_events: int = 0,
        n: int | None = 1,
        path: str | None = "/v1/model/load",
        *,
        stop_load: bool = True,
        clean_end: bool = False,
        probability: float = 1.0,
    ) -> Fault:
        """Cut the next load stream after ``after_events`` data frames (pings not counted).

        The connection is closed with no terminating chunk and no error frame, which
        is what a client sees when the real server dies mid-load. With
        ``stop_load=True`` (the default, like the real server dying) the load itself
        is cancelled too, so nothing ends up loaded; with ``stop_load=False`` only the
        connection is cut and the load finishes in the background.

        With ``clean_end=True`` the body ends in good order instead (the terminating
        chunk is sent, the connection stays usable), as when a proxy gives up on a
        stream: an end without the model's ``finished`` and without an error frame.
        """
        if after_events < 0:
            raise ValueError("after_events must be >= 0")
        fault = self._arm("drop_stream", STAGE_STREAM, n, path, "POST", probability)
        fault.after_events = after_events
        fault.stop_load = stop_load
        fault.clean_end = clean_end
        return fault

    def proxy_error(
        self,
        status: int = 502,
        n: int | None = 1,
        path: str | None = None,
        method: str | None = None,
        *,
        probability: float = 1.0,
    ) -> Fault:
        """Answer the next ``n`` matching requests like a proxy whose upstream is down.

        ``status`` (502, 503, 504 or any other) with ``content-type: text/html`` and
        the error page nginx sends, e.g. ``<html><head><title>502 Bad Gateway</title>
        ...``. The real route is not run for a hit request.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an error status (400-599)")
        fault = self._arm("proxy_error", STAGE_FAIL, n, path, method, probability)
        fault.status = status
        return fault

    def not_http(
        self,
        n: int | None = 1,
        path: str | None = None,
        method: str | None = None,
        *,
        banner: bytes = SSH_BANNER,
        probability: float = 1.0,
    ) -> Fault:
        """Answer the next ``n`` matching requests with ``banner``, which is not HTTP, and close.

        By default the first line of an SSH server, which is what a client gets when
        the URL names the wrong port. No HTTP status line is sent. The real route is
        not run for a hit request.
        """
        fault = self._arm("not_http", STAGE_FAIL, n, path, method, probability)
        fault.body = bytes(banner)
        return fault

    def empty_stream(
        self,
        status: int = 204,
        n: int | None = 1,
        path: str | None = "/v1/model/load",
        *,
        probability: float = 1.0,
    ) -> Fault:
        """Answer the next ``n`` load requests with ``status`` and no body at all.

        ``204`` (No Content) or ``200``, labelled ``text/event-stream`` either way, as
        a misconfigured proxy may. The load itself does not run.
        """
        if status not in (200, 204):
            raise ValueError("status must be 200 or 204")
        fault = self._arm("empty_stream", STAGE_FAIL, n, path, "POST", probability)
        fault.status = status
        return fault

    def bom(
        self,
        n: int | None = 1,
        path: str | None = "/v1/model/load",
        *,
        probability: float = 1.0,
    ) -> Fault:
        """Begin the next ``n`` load streams with a UTF-8 byte order mark (``EF BB BF``).

        It is sent right after the head, before the first frame. The SSE rules drop
        a leading BOM; a parser that does not loses the first frame, which is the
        error frame when a load fails at once.
        """
        return self._arm("bom", STAGE_BOM, n, path, "POST", probability)

    def sse_retry(
        self,
        milliseconds: int | str = 20000,
        n: int | None = 1,
        path: str | None = "/v1/model/load",
        *,
        probability: float = 1.0,
    ) -> Fault:
        """Begin the next ``n`` load streams with an SSE ``retry: <milliseconds>`` field.

        It is sent as its own block (``retry: 20000\\r\\n\\r\\n``) right after the
        head. An EventSource that reconnects when a stream ends waits that long (some
        double it) first, and a value too large for a timer can crash it; arm
        :meth:`drop_stream` too to end the stream early. Any text is sent as given
        (``"9" * 30``, ``"soon"``).
        """
        text = str(milliseconds)
        if "\r" in text or "\n" in text:
            raise ValueError("milliseconds must be one line")
        fault = self._arm("sse_retry", STAGE_RETRY, n, path, "POST", probability)
        fault.detail = text
        return fault

    def frames_after_finished(
        self,
        count: int | None = None,
        interval: float = 0.05,
        n: int | None = 1,
        path: str | None = "/v1/model/load",
        *,
        probability: float = 1.0,
    ) -> Fault:
        """Keep the next ``n`` load streams going after their last frame.

        Instead of ending the body after the model's ``finished`` (or the error
        frame), send ``count`` more copies of that last frame (``None``: until the
        client goes away), one every ``interval`` seconds, then end it.
        """
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 (or None for no end)")
        if interval < 0:
            raise ValueError("interval must be >= 0")
        fault = self._arm("frames_after_finished", STAGE_TRAILING, n, path, "POST", probability)
        fault.count = count
        fault.seconds = interval
        return fault

    def delay_head(
        self,
        seconds: float,
        n: int | None = 1,
        path: str | None = None,
        method: str | None = None,
        *,
        probability: float = 1.0,
    ) -> Fault:
        """Wait ``seconds`` before handling the next ``n`` matching requests.

        Nothing is sent during the wait (not even the response head); the route runs
        afterwards as usual.
        """
        fault = self._arm("delay_head", STAGE_DELAY, n, path, method, probability)
        fault.seconds = seconds
        return fault

    def malformed_json(
        self,
        n: int | None = 1,
        path: str | None = None,
        method: str | None = None,
        *,
        probability: float = 1.0,
    ) -> Fault:
        """Replace the next ``n`` matching JSON responses by a truncated body with status 200.

        The body is the first half of what would have been sent (at least one byte,
        never valid JSON), with a correct ``content-length`` and
        ``content-type: application/json``.
        """
        return self._arm("malformed_json", STAGE_BODY, n, path, method, probability)

    def slow_body(
        self,
        seconds_per_chunk: float,
        n: int | None = 1,
        path: str | None = None,
        method: str | None = None,
        *,
        chunk_size: int = 16,
        probability: float = 1.0,
    ) -> Fault:
        """Send the next ``n`` matching JSON bodies ``chunk_size`` bytes at a time.

        The head (with the full ``content-length``) goes out at once; each piece of
        the body is preceded by a ``seconds_per_chunk`` pause.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        fault = self._arm("slow_body", STAGE_BODY, n, path, method, probability)
        fault.seconds = seconds_per_chunk
        fault.chunk_size = chunk_size
        return fault

    def reset_mid_body(
        self,
        n: int | None = 1,
        path: str | None = None,
        method: str | None = None,
        *,
        probability: float = 1.0,
    ) -> Fault:
        """Send the head and half of the next ``n`` matching JSON bodies, then close.

        The head announces the full ``content-length``; the connection is closed
        after half of it, so clients see a truncated payload.
        """
        return self._arm("reset_mid_body", STAGE_BODY, n, path, method, probability)

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def seed(self, seed: int | None) -> None:
        """Reseed the generator used for ``probability`` < 1 (for reproducible campaigns)."""
        self._random.seed(seed)

    @property
    def pending(self) -> list[Fault]:
        """The faults still armed, in arming order."""
        return list(self._faults)

    def __bool__(self) -> bool:
        return bool(self._faults)

    # ------------------------------------------------------------------ internals

    def _arm(
        self,
        kind: str,
        stage: str,
        n: int | None,
        path: str | None,
        method: str | None,
        probability: float,
    ) -> Fault:
        fault = Fault(kind, stage, n, path, method, probability)
        self._faults.append(fault)
        return fault

    def take(self, stage: str, method: str, path: str) -> Fault | None:
        """Claim the first armed fault of ``stage`` matching the request, or ``None``.

        Synchronous on purpose: the count-down cannot interleave with another
        request's, so concurrent clients never over-consume a fault.
        """
        faults = self._faults
        for index, fault in enumerate(faults):
            if fault.stage != stage:
                continue
            if fault.path is not None and fault.path != path:
                continue
            if fault.method is not None and fault.method != method:
                continue
            if fault.probability < 1.0 and self._random.random() >= fault.probability:
                continue
            fault.fired += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del faults[index]
            return fault
        return None
