"""The base Structs every request and response type builds on.

Responses ignore fields they do not know (a newer server may send more) and
give every field a default where the server may leave it out. Fields that
only describe (a card's ``object``, ``created`` and ``owned_by``, the props'
``chat_template``) also take ``null`` and, for ``created``, a float: a server
or proxy that differs there must not fail the whole call. Requests omit
unset fields on the wire, so the server's own defaults apply. Requests are
checked when built: a bad value raises :class:`~tabby_async.InvalidInputError`
naming the field, before anything is sent.
"""

from __future__ import annotations

import msgspec

__all__ = ["RequestStruct", "ResponseStruct"]


class ResponseStruct(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Base of the response types: immutable, unknown fields ignored.

    ``gc=False``: a listing decodes into thousands of these, and keeping them
    out of the cycle collector's books saves real CPU. They hold only
    scalars, other responses and lists of them, so they cannot form a cycle
    (unless a caller appends a response into one of its own lists).
    """


class RequestStruct(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """Base of the request types: unset (None) fields are not sent."""
