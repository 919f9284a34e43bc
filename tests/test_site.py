"""The built documentation site, read as HTML: the API reference shows every signature.

The site is built once per session (the ``built_site`` fixture), strictly and
as ``./scripts/docs`` builds it. For every public method of the API areas,
the load stream and the fleet's models (found on the classes, not listed
here), the reference page has its heading, a signature naming each of its
parameters and its return type, and a ``Raises`` section; each signature's
links land on an anchor of the site (the keyword fields' tables among them).
The build prints no warning and not Material's MkDocs 2 notice.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import msgspec
import pytest

from tabby_async import LoadStream
from tabby_async.fleet import FleetModels
from tabby_async.services import (
    AsyncInferenceService,
    AsyncLoraService,
    AsyncModelsService,
    AsyncSamplingService,
    AsyncTemplatesService,
    AsyncTokensService,
)
from tests.helpers import BuiltSite

#: Each class the reference shows: its page and the dotted path of its heading.
DOCUMENTED: list[tuple[type, str, str]] = [
    (AsyncModelsService, "reference/client/", "tabby_async.services.AsyncModelsService"),
    (AsyncLoraService, "reference/client/", "tabby_async.services.AsyncLoraService"),
    (AsyncTemplatesService, "reference/client/", "tabby_async.services.AsyncTemplatesService"),
    (AsyncSamplingService, "reference/client/", "tabby_async.services.AsyncSamplingService"),
    (AsyncTokensService, "reference/client/", "tabby_async.services.AsyncTokensService"),
    (AsyncInferenceService, "reference/client/", "tabby_async.services.AsyncInferenceService"),
    (LoadStream, "reference/client/", "tabby_async.LoadStream"),
    (FleetModels, "reference/fleet/", "tabby_async.fleet.FleetModels"),
]

#: The first line of Material's notice, which NO_MKDOCS_2_WARNING=1 silences.
MKDOCS_2_NOTICE = "Material for MkDocs reaches end of life"


class Entry(msgspec.Struct):
    """One documented object of a page: its signature's text and links, its sections."""

    signature: str = ""
    links: list[str] = msgspec.field(default_factory=list)
    sections: list[str] = msgspec.field(default_factory=list)


class _Frame(msgspec.Struct):
    """An open ``div``: the object it starts (if any), and whether it is a signature."""

    entry: Entry | None
    signature: bool


class ReferencePage(HTMLParser):
    """A page's documented objects by heading id, and every id the page has."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, Entry] = {}
        self.ids: set[str] = set()
        self._frames: list[_Frame] = []
        self._named: set[int] = set()  # the entries whose heading was seen
        self._section: Entry | None = None

    def _entry(self) -> Entry | None:
        """The innermost documented object open here."""
        return next((f.entry for f in reversed(self._frames) if f.entry is not None), None)

    def _in_signature(self) -> bool:
        return any(f.signature for f in self._frames)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if found.get("id"):
            self.ids.add(found["id"] or "")
        if tag == "div":
            # Every documented object is a div.doc-object; its heading comes first.
            entry = Entry() if "doc-object" in classes else None
            self._frames.append(_Frame(entry, "doc-signature" in classes))
        elif tag in {"h2", "h3", "h4", "h5"} and found.get("id"):
            entry = self._entry()
            if entry is not None and id(entry) not in self._named:
                self._named.add(id(entry))
                self.entries[found["id"] or ""] = entry
        elif tag == "a" and self._in_signature() and found.get("href"):
            entry = self._entry()
            if entry is not None:
                entry.links.append(found["href"] or "")
        elif tag == "span" and "doc-section-title" in classes:
            self._section = self._entry()
            if self._section is not None:
                self._section.sections.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._frames:
            self._frames.pop()
        elif tag == "span":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._section is not None:
            self._section.sections[-1] += data.strip()
        elif self._in_signature():
            entry = self._entry()
            if entry is not None:
                entry.signature += data


@cache
def read_page(path: Path) -> ReferencePage:
    """A built page, parsed once."""
    page = ReferencePage()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def page_of(site: BuiltSite, url: str) -> ReferencePage:
    """The page at ``url`` (relative to the site's root, a directory's index)."""
    path = site.root / urlsplit(url).path.lstrip("/")
    return read_page(path / "index.html" if url.endswith("/") or path.is_dir() else path)


def public_methods(cls: type) -> list[str]:
    """The public callables defined on ``cls`` itself (properties are not callable)."""
    return [
        name for name, value in vars(cls).items() if not name.startswith("_") and callable(value)
    ]


def methods() -> list[tuple[type, str, str, str]]:
    return [
        (cls, page, heading, name)
        for cls, page, heading in DOCUMENTED
        for name in public_methods(cls)
    ]


def squeezed(text: str) -> str:
    """``text`` without whitespace: signatures wrap anywhere."""
    return "".join(text.split())


#: How a signature writes ``*args`` and ``**kwargs``.
STARS: dict[object, str] = {
    inspect.Parameter.VAR_POSITIONAL: "*",
    inspect.Parameter.VAR_KEYWORD: "**",
}


def shown(function: Callable[..., Any]) -> tuple[list[str], str | None]:
    """What a signature must show: each parameter as written, and the return type's text."""
    signature = inspect.signature(function)
    params = []
    for param in list(signature.parameters.values())[1:]:  # not self
        params.append(STARS.get(param.kind, "") + param.name)
    returns = signature.return_annotation
    if returns is inspect.Signature.empty:
        return params, None
    return params, returns if isinstance(returns, str) else returns.__name__


#: Each test below runs once per documented public method.
EVERY_METHOD = pytest.mark.parametrize(
    ("cls", "page", "heading", "name"),
    methods(),
    ids=[f"{cls.__name__}.{name}" for cls, _, _, name in methods()],
)


def test_every_documented_class_has_public_methods() -> None:
    # The enumeration below finds something on each class: a renamed class fails here.
    assert all(public_methods(cls) for cls, _, _ in DOCUMENTED)
    assert len(methods()) >= 40


@EVERY_METHOD
def test_the_reference_shows_the_signature_and_what_it_raises(
    built_site: BuiltSite, cls: type, page: str, heading: str, name: str
) -> None:
    entries = page_of(built_site, page).entries
    assert heading in entries, f"{page} has no heading for {heading}"
    entry = entries.get(f"{heading}.{name}")
    assert entry is not None, f"{page} has no heading for {heading}.{name}"
    text = squeezed(entry.signature)
    assert text.startswith(name + "("), f"{name}: no signature shown: {entry.signature!r}"
    params, returns = shown(getattr(cls, name))
    signature_params = text.split("->")[0]
    missing = [p for p in params if squeezed(p) not in signature_params]
    assert not missing, f"{name}: the signature leaves out {missing}: {entry.signature!r}"
    if returns is not None:
        # The reference writes names briefly: ``aiohttp.ClientResponse`` as ``ClientResponse``.
        brief = re.sub(r"\b\w+\.", "", squeezed(returns))
        assert text.endswith("->" + brief), f"{name}: return type {returns!r}"
    docstring = inspect.getdoc(getattr(cls, name)) or ""
    assert "\nRaises:\n" in docstring, f"{cls.__name__}.{name}: the docstring has no Raises"
    assert "Raises:" in entry.sections, f"{name}: the page shows no Raises section"


@EVERY_METHOD
def test_every_link_of_a_signature_lands(
    built_site: BuiltSite, cls: type, page: str, heading: str, name: str
) -> None:
    entry = page_of(built_site, page).entries[f"{heading}.{name}"]
    for href in entry.links:
        target = urlsplit(urljoin(page, href))
        assert not target.scheme, f"{name}: a signature links off the site: {href}"
        assert target.fragment in page_of(built_site, target.path).ids, f"{name}: {href}"


def test_keyword_fields_link_to_their_table(built_site: BuiltSite) -> None:
    # ``**fields: Unpack[ModelLoadFields]``: the fields' table is one click away.
    entry = page_of(built_site, "reference/client/").entries[
        "tabby_async.services.AsyncModelsService.load"
    ]
    assert "../fields/#tabby_async.types.ModelLoadFields" in entry.links


def test_no_private_constructor_is_shown(built_site: BuiltSite) -> None:
    # The classes are made by the client and the fleet: their heading has no signature.
    for _, page, heading in DOCUMENTED:
        entry = page_of(built_site, page).entries[heading]
        assert entry.signature.strip() == "", f"{heading}: {entry.signature!r}"


def test_the_build_is_clean(built_site: BuiltSite) -> None:
    assert "WARNING" not in built_site.output
    assert MKDOCS_2_NOTICE not in built_site.output


def test_the_notice_looked_for_is_the_one_material_prints() -> None:
    # Material prints it when imported under the name "mkdocs" without the variable.
    env = {k: v for k, v in os.environ.items() if k != "NO_MKDOCS_2_WARNING"}
    code = "import sys; sys.argv[0] = 'mkdocs'; import material.templates"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert MKDOCS_2_NOTICE in run.stderr
