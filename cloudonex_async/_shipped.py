"""The deployed CloudOnex 4.x code's field names and bodies, mapped onto the models.

Pure functions, no I/O. Shipped code names an invoice's customer ``userid`` and its
total ``total``, answers ``invoice/<id>`` as ``{"invoice": {...}, "items": [...]}``, and
wants an invoice create as form fields ``cid``, ``idate``, a ``duedate`` code, ``repeat``
and items that each carry ``item_code`` and ``taxed``. This module turns one shape into
the other, keeping every column it does not map in ``extra``.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Mapping
from typing import Final

from .errors import ValidationError
from .models import Secret

#: Due-date codes the vendor's invoice form offers, by days after the invoice date.
DUE_CODES: Final[Mapping[int, str]] = {
    0: "due_on_receipt",
    3: "days3",
    5: "days5",
    7: "days7",
    10: "days10",
    15: "days15",
    30: "days30",
    45: "days45",
    60: "days60",
}

# vendor column -> model field
_INVOICE_COLUMNS: Final = {
    "userid": "customer_id",
    "total": "amount",
    "duedate": "due_date",
    "date": "date",
    "status": "status",
    "notes": "notes",
    "id": "id",
}
_ITEM_COLUMNS: Final = {
    "itemcode": "item_code",
    "description": "description",
    "qty": "qty",
    "amount": "amount",
    "taxed": "taxed",
    "id": "id",
}


def is_shipped_invoice(data: object) -> bool:
    """Whether ``data`` is the ``{"invoice": {...}, "items": [...]}`` answer of shipped code."""
    return isinstance(data, Mapping) and isinstance(data.get("invoice"), Mapping)


def invoice_from_shipped(data: Mapping[str, object]) -> dict[str, object]:
    """Map a shipped ``invoice/<id>`` answer onto Invoice's fields (the rest stays as is)."""
    row = data["invoice"]
    assert isinstance(row, Mapping)
    record = _rename(row, _INVOICE_COLUMNS)
    number = f"{row.get('invoicenum') or ''}{row.get('cn') or ''}"
    if number:
        record["invoice_number"] = number
    items = data.get("items")
    if isinstance(items, list):
        record["items"] = [
            _rename(item, _ITEM_COLUMNS) if isinstance(item, Mapping) else item for item in items
        ]
    return record


def _rename(row: Mapping[str, object], columns: Mapping[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in row.items():
        name = columns.get(key)
        if name is None:
            out.setdefault(key, value)
        else:
            out[name] = value
    return out


def invoice_to_shipped(payload: Mapping[str, object], *, today: dt.date) -> dict[str, object]:
    """Build the form fields of ``POST invoice`` from an Invoice payload.

    Defaults, for what the caller did not give: ``idate`` is ``date`` or today;
    ``duedate`` comes from ``due_date`` (it must be 0, 3, 5, 7, 10, 15, 30, 45 or 60 days
    after the invoice date) or is ``due_on_receipt``; ``repeat`` is ``"0"`` (no
    repetition); each item gets ``item_code`` ``""``, ``qty`` 1 and ``taxed`` (a tax
    rate in percent) 0. Vendor fields given directly (``cid``, ``idate``, ``duedate``,
    ``repeat``) win.

    Raises:
        ValidationError: no items (the server would store an invoice without any), or a
            due date the vendor's form cannot express. Nothing was sent.
    """
    body: dict[str, object] = {
        k: v
        for k, v in payload.items()
        if k not in ("customer_id", "date", "due_date", "items", "amount", "invoice_number")
    }
    body.setdefault("cid", payload.get("customer_id"))
    issued = _as_date(payload.get("date")) or today
    body.setdefault("idate", issued.isoformat())
    if "duedate" not in body:
        body["duedate"] = _due_code(issued, _as_date(payload.get("due_date")))
    body.setdefault("repeat", "0")
    items = payload.get("items")
    if not isinstance(items, list) or not items:
        raise ValidationError(
            "an invoice needs at least one item: shipped CloudOnex servers store an invoice "
            "before its items, so one without items would be left behind; nothing was sent",
            status=0,
            errors={"items": "at least one item is required"},
        )
    body["items"] = [_item_to_shipped(item, index) for index, item in enumerate(items)]
    return {k: v for k, v in body.items() if v is not None}


def _item_to_shipped(item: object, index: int) -> dict[str, object]:
    if not isinstance(item, Mapping):
        raise ValidationError(
            f"invoice item {index} is not a mapping of fields; nothing was sent",
            status=0,
            errors={f"items.{index}": "must be a mapping"},
        )
    out = {k: v for k, v in item.items() if v is not None}
    # An item without item_code makes shipped code fail after it stored the invoice.
    out.setdefault("item_code", "")
    out.setdefault("qty", 1)
    out.setdefault("taxed", 0)
    return out


def _due_code(issued: dt.date, due: dt.date | None) -> str:
    if due is None:
        return DUE_CODES[0]
    days = (due - issued).days
    code = DUE_CODES.get(days)
    if code is None:
        allowed = ", ".join(str(d) for d in DUE_CODES)
        raise ValidationError(
            f"due_date {due.isoformat()} is {days} days after the invoice date; shipped "
            f"CloudOnex servers take a due date of {allowed} days after it; nothing was sent",
            status=0,
            errors={"due_date": f"must be {allowed} days after the invoice date"},
        )
    return code


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise ValidationError(
                f"not a date: {value!r} (use YYYY-MM-DD); nothing was sent",
                status=0,
                errors={"date": "use YYYY-MM-DD"},
            ) from None
    return None


_SECRET_COLUMN: Final = re.compile(r"pass|token|secret|pwreset|autologin|api_?key|salt|otp", re.I)


def hide_secrets(row: Mapping[str, object]) -> dict[str, object]:
    """Wrap the password hash and tokens of a user row in :class:`Secret` (never shown)."""
    return {
        k: Secret(v) if isinstance(v, str) and _SECRET_COLUMN.search(k) else v
        for k, v in row.items()
    }


# -- text through the sanitizer ------------------------------------------------------------
#
# Shipped code reads customer and user form fields through an HTML sanitizer
# (HTMLPurifier) and trim() before storing them: text is stored HTML-escaped
# ("Müller & Söhne" as "Müller &amp; Söhne", "5 > 3" as "5 &gt; 3"), markup it allows
# is kept ("<b>x</b>"), unknown tags are removed for good ("<GmbH>"), and script and
# style elements go with their content. Quotes and non-ASCII letters are kept. Invoice
# item fields are read another way and stored exactly as sent.

_ALLOWED_TAGS: Final = frozenset(
    "a abbr acronym address b bdo big blockquote br caption center cite code col colgroup "
    "dd del dfn dir div dl dt em font h1 h2 h3 h4 h5 h6 hr i img ins kbd li menu ol p pre "
    "q s samp small span strike strong sub sup table tbody td tfoot th thead tr tt u ul "
    "var".split()
)
_HIDDEN_ELEMENTS: Final = re.compile(
    r"<(script|style)\b[^>]*>.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL
)
_COMMENT: Final = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_TAG: Final = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)\b([^<>]*)>")


def sanitize_text(text: str) -> str:
    """Return ``text`` as shipped code stores it: sanitized, escaped and trimmed."""
    text = _COMMENT.sub("", _HIDDEN_ELEMENTS.sub("", text))
    out: list[str] = []
    position = 0
    for tag in _TAG.finditer(text):
        out.append(_escape(text[position : tag.start()]))
        if tag.group(2).lower() in _ALLOWED_TAGS:
            out.append(f"<{tag.group(1)}{tag.group(2).lower()}{tag.group(3)}>")
        position = tag.end()
    out.append(_escape(text[position:]))
    return "".join(out).strip()


def _escape(text: str) -> str:
    # Entities already in the text are read first, as the sanitizer's parser does.
    plain = unescape_text(text)
    return plain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Only a whole entity, ended by ";": "Terms&notes" is text, not "Terms¬es".
_ENTITY: Final = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def unescape_text(text: str) -> str:
    """Undo the escaping of stored text: the text as it was sent (markup kept)."""
    if "&" not in text:
        return text
    return _ENTITY.sub(lambda entity: html.unescape(entity.group()), text)


def as_stored_text(text: str) -> str:
    """``text`` as a shipped server will answer it once stored, then unescaped.

    What a sync compares with the remote record: equal to ``text`` unless the sanitizer
    removes something for good (unknown tags, scripts, surrounding blanks).
    """
    return unescape_text(sanitize_text(text))
