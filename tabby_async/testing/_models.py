"""Plain data types of the emulator: what a fake model looks like and what a request was.

Kept free of aiohttp so that they can be imported (and pickled, compared, printed)
cheaply by test code and by the pytest plugin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["EmulatedModel", "RecordedRequest", "as_model", "redact_body"]


@dataclasses.dataclass(frozen=True)
class EmulatedModel:
    """One fake model folder, with the knobs that decide how its load stream looks.

    The same type describes main models, draft models and embedding models; fields
    that make no sense for a kind are ignored for it (an embedding model only uses
    ``name``, ``modules`` and ``delay``).

    Attributes:
        name: folder path under the model folder, i.e. the ``model_name`` to load.
            It may be nested (``org/model/4.0bpw``); the card's ``id`` (and an api
            key's listing) use its last segment, so two folders may share one
            (``a/exl3/4.0bpw`` and ``b/exl3/4.0bpw``): loads tell them apart by
            their full path, as the server compares resolved paths.
        modules: number of modules the load reports (``processing 1..N``, ``finished N/N``).
        delay: seconds spent on each module before its ``processing`` frame is sent.
        fail_at: when set to ``k``, modules ``1..k`` are reported and then the load
            fails with an error frame carrying ``fail_message`` (``k = 0``: fail before
            the first module). ``None`` means the load succeeds.
        fail_message: the reason text of that error frame.
        config_error: when set, the load fails with this reason right after the
            response head, before any component loads (like a missing ``config.json``).
        vision_modules: size of the vision component. When ``> 0`` and the load
            request has ``"vision": true``, the component loads first and reports its
            own ``processing``/``finished`` frames with ``model_type "vision"``; the
            loaded card then shows ``use_vision: true``. With ``0`` (a model without
            a vision component: ``vision: true`` is then silently off) or without
            ``vision: true`` no vision frames are sent and ``use_vision`` is false.
        max_seq_len: the model's native context (its config's
            ``max_position_embeddings``): used when the request's ``max_seq_len`` is
            absent or 0, and for ``-1``. ``None``: the config has none, and the
            server falls back to 8192 (absent or 0) or 4096 (``-1``).
        max_batch_size: reported ``max_batch_size`` (and ``/props`` ``total_slots``).
            The load request cannot set it (the server drops the key); only
            ``folder_config`` can.
        prompt_template: the name the card reports for the model's own template,
            in use after a load that names no template, or one that does not
            exist (``None``: the model brings none, and the card shows ``null``).
            The server names it after where it found it: ``"tabby_template"``
            (``tabby_template.jinja``), ``"chat_template"``
            (``chat_template.jinja``), ``"from_tokenizer_config"`` (a
            ``chat_template`` string in ``chat_template.json`` or
            ``tokenizer_config.json``), or the first entry's ``name`` of a
            template list there.
        chat_template: the text of that template: the card's
            ``prompt_template_content`` and ``/props``' ``chat_template`` while it
            is in use.
        reply_tokens: how many tokens this model generates before its EOS when
            ``max_tokens`` (or the context) does not stop it first; ``None``: the
            emulator's ``reply_tokens``. Token ``k`` is ``"<card id>:<k> "``.
        token_delay: seconds before each generated token; ``None``: the
            emulator's ``token_delay``.
        folder_config: the ``model:`` section of the folder's own
            ``tabby_config.yml``. Its values win over the load request's on every
            real load (not on the no-op reload of the loaded folder), unvalidated,
            and may set keys the request cannot (``max_batch_size``); a
            ``draft_model`` mapping in it is merged into the request's
            ``draft_model``. ``None``: the folder has no such file.
    """

    name: str
    modules: int = 4
    delay: float = 0.0
    fail_at: int | None = None
    fail_message: str = "Emulated load failure"
    config_error: str | None = None
    vision_modules: int = 0
    max_seq_len: int | None = 4096
    max_batch_size: int = 1
    prompt_template: str | None = None
    chat_template: str = ""
    reply_tokens: int | None = None
    token_delay: float | None = None
    # Not hashed: a mapping is not hashable, and the name already identifies a folder.
    folder_config: Mapping[str, Any] | None = dataclasses.field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("EmulatedModel.name must not be empty")
        if self.modules < 1:
            raise ValueError("EmulatedModel.modules must be >= 1")
        if self.delay < 0:
            raise ValueError("EmulatedModel.delay must be >= 0")
        if self.reply_tokens is not None and self.reply_tokens < 0:
            raise ValueError("EmulatedModel.reply_tokens must be >= 0")
        if self.token_delay is not None and self.token_delay < 0:
            raise ValueError("EmulatedModel.token_delay must be >= 0")
        if self.vision_modules < 0:
            raise ValueError("EmulatedModel.vision_modules must be >= 0")
        if self.folder_config is not None:
            # A private copy, so that the caller's dict can change without changing us.
            config = {
                key: dict(value) if isinstance(value, Mapping) else value
                for key, value in self.folder_config.items()
            }
            object.__setattr__(self, "folder_config", config)


def as_model(spec: str | EmulatedModel) -> EmulatedModel:
    """Normalise the ``str | EmulatedModel`` shorthand accepted by the emulator."""
    if isinstance(spec, EmulatedModel):
        return spec
    return EmulatedModel(name=spec)


_UNSET: Any = object()
_SECRET_HEADERS = frozenset({"x-api-key", "x-admin-key", "authorization"})


class RecordedRequest:
    """One request as the emulator received it, recorded in arrival order.

    Attributes:
        method: HTTP method, upper case.
        path: URL path without the query string (``query`` holds that).
        headers: request headers with names lower-cased (when a name repeats, the
            last value wins). Values of ``x-api-key``, ``x-admin-key`` and
            ``authorization`` are replaced by ``"<redacted>"``.
        raw: the body bytes (``b""`` if none). For ``POST /v1/download`` with a JSON
            object body holding a ``token``, the body is re-encoded with that token
            replaced by ``"<redacted>"``.
        time: arrival time, ``time.time()`` seconds since the epoch.
        query: raw query string (``""`` if none).

    :attr:`body` is the parsed form of ``raw``, decoded lazily on first access so
    that recording stays cheap.
    """

    __slots__ = ("_body", "headers", "method", "path", "query", "raw", "time")

    def __init__(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes = b"",
        time: float = 0.0,
        query: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.raw = raw
        self.time = time
        self.query = query
        self._body: Any = _UNSET

    @classmethod
    def of(
        cls, method: str, path: str, headers: Mapping[str, str], time: float, query: str
    ) -> RecordedRequest:
        """A record of a request as it arrives: header names lower-cased, the keys'
        values redacted, no body yet (:attr:`raw` is set once it is read)."""
        lowered: dict[str, str] = {}
        for key, value in headers.items():
            low = key.lower()
            lowered[low] = "<redacted>" if low in _SECRET_HEADERS else value
        return cls(method, path, lowered, b"", time, query)

    @property
    def body(self) -> Any:
        """The body parsed as JSON; ``None`` when empty; the raw ``bytes`` if not JSON."""
        if self._body is _UNSET:
            if not self.raw:
                self._body = None
            else:
                try:
                    self._body = msgspec.json.decode(self.raw)
                except msgspec.DecodeError:
                    self._body = self.raw
        return self._body

    def json(self) -> Any:
        """Parse the body as JSON (raises ``msgspec.DecodeError`` if it is not JSON)."""
        return msgspec.json.decode(self.raw)

    def __repr__(self) -> str:
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"query={self.query!r}, raw={self.raw[:80]!r}, time={self.time!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedRequest):
            return NotImplemented
        return (
            self.method == other.method
            and self.path == other.path
            and self.headers == other.headers
            and self.raw == other.raw
            and self.time == other.time
            and self.query == other.query
        )

    __hash__ = None  # type: ignore[assignment]


def redact_body(path: str, body: bytes) -> bytes:
    """A body as recorded: a download's ``token`` replaced by ``"<redacted>"``."""
    if path != "/v1/download" or b"token" not in body:
        return body
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    if isinstance(data, dict) and "token" in data:
        data["token"] = "<redacted>"
        return msgspec.json.encode(data)
    return body
