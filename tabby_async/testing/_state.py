"""The emulated server's model state: its folders, what is loaded, and what the card reports.

One :class:`ModelState` per emulator holds the model, draft, embedding,
template and LoRA folders, the loaded model (a :class:`LoadedModel`), whether a load is running,
and the loaded embedding model. Whoever changes what is loaded calls
:meth:`ModelState.changed`, which wakes every :meth:`ModelState.wait_for`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from ._generation import Generations
from ._models import EmulatedModel
from ._wire import model_card, model_list

__all__ = [
    "LoadedModel",
    "ModelState",
    "apply_folder_config",
    "card_id",
    "find_template",
    "resolve_name",
    "round_chunk_size",
    "template_name",
    "top_level",
]

_PATH_STEPS = frozenset({"", ".", ".."})


def card_id(name: str) -> str:
    """The id a model card carries: the model folder's own name.

    A nested name (``org/model/4.0bpw``) loads that folder, and the server
    names the card after the folder, so the card says ``4.0bpw``.
    """
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def top_level(names: Iterable[str]) -> list[str]:
    """What a listing shows: the model folder's direct sub-folders, once each."""
    return list(dict.fromkeys(n.replace("\\", "/").split("/", 1)[0] for n in names))


def resolve_name(name: str, folders: Mapping[str, object]) -> str | None:
    """The folder of ``folders`` that ``name`` resolves to, or ``None`` if none.

    The server joins the name to its model folder, checks that the path exists
    and compares resolved paths: ``org/model/../model/4.0bpw`` and
    ``org//model/./4.0bpw`` are ``org/model/4.0bpw``. A ``..`` must step out of
    a folder that exists (the file system resolves it only then), and a name
    that leaves the model folder or is absolute finds nothing here.
    """
    if name in folders and not _PATH_STEPS.intersection(name.split("/")):
        return name  # the common case: already a folder's own name
    if name.startswith("/"):
        return None
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts or not _is_folder("/".join(parts), folders):
                return None
            parts.pop()
        else:
            parts.append(part)
    resolved = "/".join(parts)
    return resolved if resolved in folders else None


def _is_folder(path: str, folders: Mapping[str, object]) -> bool:
    """Whether ``path`` is a folder: one of ``folders`` or a parent of one."""
    prefix = path + "/"
    return path in folders or any(name.startswith(prefix) for name in folders)


def apply_folder_config(model: EmulatedModel, fields: dict[str, Any]) -> dict[str, Any]:
    """The load fields after the folder's ``tabby_config.yml`` (``model.folder_config``).

    The server merges, lowest to highest: the request, then the folder's file;
    nested mappings (``draft_model``) merge key by key, other values replace.
    """
    config = model.folder_config
    if not config:
        return fields
    merged = dict(fields)
    for key, value in config.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = {**current, **value}
        else:
            merged[key] = value
    return merged


def round_chunk_size(value: int) -> int:
    """The chunk size the server uses: at least 256, rounded up to a multiple of 256."""
    return (max(256, value) + 255) // 256 * 256


def template_name(value: str | None) -> str | None:
    """A template name as the card reports it: without the ``.jinja`` the server adds."""
    if value is not None and value.endswith(".jinja"):
        return value[: -len(".jinja")]
    return value


def find_template(templates: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``(reported name, text)`` of the template ``name`` opens, or ``None`` if none.

    The server opens ``templates/<name>``, putting ``.jinja`` in place of any
    other extension (``alpaca.txt`` opens ``alpaca.jinja``), and reports the
    file name without a ``.jinja`` (``chatml.jinja`` is ``chatml``, ``alpaca.txt``
    stays ``alpaca.txt``). ``templates`` maps a file's name without ``.jinja``
    to its text.
    """
    try:
        path = PurePosixPath(name)
        if path.suffix.endswith(".jinja"):
            reported = path.name.split(".jinja")[0]
        else:
            reported = path.name
            path = path.with_suffix(".jinja")
    except ValueError:  # "", "." or "..": no file name to open
        return None
    text = templates.get(str(path)[: -len(".jinja")])
    return None if text is None else (reported, text)


@dataclasses.dataclass(slots=True)
class LoadedModel:
    """The loaded main model and what its card reports.

    The card reports only what the real server reports back: rope values are
    always 1.0, ``draft`` is always null even with a draft loaded, and the
    draft's own settings are reported nowhere. ``draft_name`` is kept for the
    emulator's own accessors, never sent. The prompt template in use belongs
    to the loaded model: a template switch or unload changes it here.
    """

    name: str
    max_seq_len: int
    cache_size: int
    cache_mode: str
    max_batch_size: int
    chunk_size: int
    prompt_template: str | None
    prompt_template_content: str | None
    use_vision: bool
    draft_name: str | None = None

    def card(self) -> dict[str, Any]:
        """``GET /v1/model``'s body, with ``parameters``."""
        return model_card(
            card_id(self.name),
            int(time.time()),
            {
                "max_seq_len": self.max_seq_len,
                "cache_size": self.cache_size,
                "cache_mode": self.cache_mode,
                "rope_scale": 1.0,
                "rope_alpha": 1.0,
                "max_batch_size": self.max_batch_size,
                "chunk_size": self.chunk_size,
                "prompt_template": self.prompt_template,
                "prompt_template_content": self.prompt_template_content,
                "use_vision": self.use_vision,
                "draft": None,
            },
        )

    def props(self) -> dict[str, Any]:
        """``GET /props``'s body."""
        return {
            "total_slots": self.max_batch_size,
            "chat_template": self.prompt_template_content or "",
            "default_generation_settings": {"n_ctx": self.max_seq_len},
        }


class ModelState:
    """Folders and loaded models of one emulator (see the module docstring)."""

    __slots__ = (
        "_changed",
        "_list_cache",
        "drafts",
        "embeddings",
        "generations",
        "loaded",
        "loaded_embedding",
        "loading",
        "loras",
        "models",
        "templates",
    )

    def __init__(
        self,
        models: Iterable[EmulatedModel],
        drafts: Iterable[EmulatedModel],
        embeddings: Iterable[EmulatedModel],
        templates: Mapping[str, str],
        loras: Iterable[str] | None,
    ) -> None:
        #: The template folder: a template's name (without ``.jinja``) -> its text.
        self.templates = dict(templates)
        #: The LoRA folder's sub-folders (``None``: the server has no LoRA folder).
        self.loras: list[str] | None = None if loras is None else list(loras)
        self.models: dict[str, EmulatedModel] = {m.name: m for m in models}
        self.drafts: dict[str, EmulatedModel] = {m.name: m for m in drafts}
        self.embeddings: dict[str, EmulatedModel] = {m.name: m for m in embeddings}
        self.loaded: LoadedModel | None = None
        #: True while a load holds the load lock: the model routes answer 503 meanwhile.
        self.loading = False
        self.loaded_embedding: str | None = None
        #: The books of the generations (inference requests) and their waits.
        self.generations = Generations()
        self._list_cache: dict[int, tuple[tuple[int, int], bytes]] = {}
        self._changed = asyncio.Event()

    @property
    def ready(self) -> LoadedModel | None:
        """The loaded model when the model routes may use it (none loading), else ``None``."""
        return None if self.loading else self.loaded

    # ------------------------------------------------------------------ waiting

    def changed(self) -> None:
        """Wake the waiters: what is loaded (or whether a load runs) has changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-checking it after each :meth:`changed`."""
        while not predicate():
            await self._changed.wait()

    # ------------------------------------------------------------------ listings

    def listing(
        self, folder: Mapping[str, EmulatedModel], admin: bool, current: str | None
    ) -> bytes:
        """A listing's body: every top-level folder for an admin, else what is loaded."""
        if not admin:
            return model_list([card_id(current)] if current is not None else [], int(time.time()))
        # Cached per second: ``created`` has one-second resolution and folders
        # only ever grow, so (second, size) identifies the bytes.
        now = int(time.time())
        key = (now, len(folder))
        cached = self._list_cache.get(id(folder))
        if cached is None or cached[0] != key:
            cached = (key, model_list(top_level(folder), now))
            self._list_cache[id(folder)] = cached
        return cached[1]

    # ------------------------------------------------------------------ the card

    def preload(self, name: str, fields: dict[str, Any]) -> None:
        """Mark ``name`` as loaded with these validated request fields, as a load would."""
        if self.loading:
            raise RuntimeError("a load is in progress")
        model = self.models[name]
        fields = apply_folder_config(model, fields)
        draft = fields.get("draft_model") or {}
        requested = draft.get("draft_model_name")
        draft_name = None if requested is None else resolve_name(requested, self.drafts)
        if requested is not None and draft_name is None:
            raise KeyError(requested)
        self.loaded = self.make_loaded(model, fields, draft_name)
        self.changed()

    def make_loaded(
        self, model: EmulatedModel, fields: dict[str, Any], draft_name: str | None
    ) -> LoadedModel:
        """What a load with these (validated) request fields leaves loaded."""
        # Only what the card reports is kept: the rope values, the draft's
        # settings and the split/backend fields are taken and never shown.
        # ``fields`` already holds the folder config's values (apply_folder_config).
        native = model.max_seq_len
        requested = fields["max_seq_len"]
        if requested == -1:
            requested = 4096 if native is None else native
        # 0 counts as not set, like an absent value.
        max_seq_len = requested or (8192 if native is None else native)
        cache_size = fields["cache_size"] or max_seq_len
        # A context longer than the cache is cut down to the cache's size.
        max_seq_len = min(max_seq_len, cache_size)
        cache_mode = fields["cache_mode"]
        chunk_size = fields["chunk_size"]
        max_batch_size = fields.get("max_batch_size")
        template = self.load_template(model, fields["prompt_template"])
        return LoadedModel(
            name=model.name,
            max_seq_len=max_seq_len,
            cache_size=cache_size,
            # Reported as sent ("q4" stays "q4"), only a missing one is FP16.
            cache_mode="FP16" if cache_mode is None else cache_mode,
            max_batch_size=model.max_batch_size if max_batch_size is None else max_batch_size,
            chunk_size=round_chunk_size(2048 if chunk_size is None else chunk_size),
            prompt_template=template[0] if template else None,
            prompt_template_content=template[1] if template else None,
            use_vision=bool(fields["vision"]) and model.vision_modules > 0,
            draft_name=draft_name,
        )

    def load_template(self, model: EmulatedModel, requested: str | None) -> tuple[str, str] | None:
        """The template a load puts in use: the requested one if it exists, else the
        model's own (a requested template that does not exist is silently unused)."""
        found = find_template(self.templates, requested) if requested else None
        if found is not None:
            return found
        own = template_name(model.prompt_template)
        return None if own is None else (own, model.chat_template)
