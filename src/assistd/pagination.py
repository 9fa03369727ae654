"""Cursor pagination shared by every list endpoint.

Lists are ordered by ``created_at`` with ties broken by the row's monotonic ``seq``, so a page boundary
never skips or repeats an object even when many share a second. ``after``/``before`` are object ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from assistd.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


def parse_page_params(
    limit: str | None, order: str | None, after: str | None, before: str | None
) -> PageParams:
    """Validate raw query values; the messages say what the hosted API said.

    An empty value (``limit=``) is not an integer nor one of the orders: a 400, like any other."""
    if limit is None:
        n = 20
    else:
        try:
            n = int(limit)
        except ValueError:
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer, but got '{limit}' instead.", param="limit"
            ) from None
        if not 1 <= n <= 100:
            raise InvalidRequest(
                f"Invalid 'limit': integer below minimum value. Expected a value between 1 and 100, "
                f"but got {n} instead." if n < 1 else
                f"Invalid 'limit': integer above maximum value. Expected a value between 1 and 100, "
                f"but got {n} instead.",
                param="limit",
            )
    if order is None:
        order = "desc"
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value for 'order': expected one of 'asc' or 'desc', but got '{order}' instead.",
            param="order",
        )
    return PageParams(limit=n, order=order, after=after or None, before=before or None)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of stored objects, each already serialised JSON (bytes)."""

    items: Sequence[bytes]
    first_id: str | None
    last_id: str | None
    has_more: bool

    def to_json(self) -> bytes:
        # Built by concatenation: the objects are stored serialised, so a list read never re-encodes them.
        return b"".join(
            (
                b'{"object":"list","data":[',
                b",".join(self.items),
                b'],"first_id":',
                orjson.dumps(self.first_id),
                b',"last_id":',
                orjson.dumps(self.last_id),
                b',"has_more":',
                b"true" if self.has_more else b"false",
                b"}",
            )
        )
