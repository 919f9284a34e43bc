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

from ._models import EmulatedModel
from ._wire import model_card, model_list

__all__ = [
    "LoadedModel",
    "ModelState",
    "card_id",
    "find_template",
    "template_name",
    "top_level",
]


def card_id(name: str) -> str:
    """The id a model card carries: the model folder's own name.

    A nested name (``org/model/4.0bpw``) loads that folder, and the server
    names the card after the folder, so the card says ``4.0bpw``.
    """
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def top_level(names: Iterable[str]) -> list[str]:
    """What a listing shows: the model folder's direct sub-folders, once each."""
    return list(dict.fromkeys(n.replace("\\", "/").split("/", 1)[0] for n in names))


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

    def make_loaded(
        self, model: EmulatedModel, fields: dict[str, Any], draft_name: str | None
    ) -> LoadedModel:
        """What a load with these (validated) request fields leaves loaded."""
        # Only what the card reports is kept: the rope values, the draft's
        # settings and the split/backend fields are taken and never shown.
        max_seq_len = fields["max_seq_len"] or model.max_seq_len
        template = self.load_template(model, fields["prompt_template"])
        return LoadedModel(
            name=model.name,
            max_seq_len=max_seq_len,
            cache_size=fields["cache_size"] or max_seq_len,
            cache_mode=fields["cache_mode"] or "FP16",
            max_batch_size=fields["max_batch_size"] or model.max_batch_size,
            chunk_size=fields["chunk_size"] or 2048,
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
