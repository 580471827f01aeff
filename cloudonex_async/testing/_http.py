"""What the sandbox's two styles share: a request as routed, an answer, and the log."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from decimal import Decimal
from email.utils import formatdate

import attrs
from aiohttp import web

from ._forms import fold_form


@attrs.define
class LoggedRequest:
    """One request as the sandbox saw it (the API key is never logged).

    It is logged on arrival; ``status`` is filled in when the answer goes out (0 for a
    dropped connection or one still being answered).
    """

    method: str
    path: str
    params: Mapping[str, str]
    at: float
    resource: str | None = None
    action: str = "unknown"
    status: int = 0
    fault: str | None = None
    created: tuple[int, ...] = ()


@attrs.define
class Incoming:
    """A request after routing: its verb, the path after ``api/v2/``, query and body."""

    method: str
    segments: list[str]
    query: dict[str, str]
    body: dict[str, object]
    log: LoggedRequest


@attrs.define
class Answer:
    """What to send back: a JSON ``body``, or ``raw`` bytes (an HTML page, nothing)."""

    status: int
    body: object = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def response(self, date_header: str) -> web.Response:
        """The aiohttp response for this answer."""
        payload = self.raw if self.raw is not None else json.dumps(self.body, default=_encode)
        body = payload.encode() if isinstance(payload, str) else payload
        return web.Response(
            status=self.status,
            body=body,
            content_type=self.content_type if body else None,
            headers={"Date": date_header, **self.headers},
        )


def _encode(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


@functools.lru_cache(maxsize=4)
def http_date(second: int) -> str:
    """An HTTP Date header value for an epoch second."""
    return formatdate(second, usegmt=True)


_DECODER = json.JSONDecoder(parse_float=Decimal)


async def read_json_or_form(request: web.Request, *, json_allowed: bool) -> dict[str, object]:
    """Read a body: JSON (when allowed), or form fields folded PHP-style into nesting.

    A body the server cannot read becomes ``{}``, as PHP's empty ``$_POST`` would.
    """
    raw = await request.read()
    if not raw:
        return {}
    if request.content_type == "application/json":
        if not json_allowed:
            return {}
        try:
            value = _DECODER.decode(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {}
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        return fold_form((k, v) for k, v in form.items() if isinstance(v, str))
    return {}
