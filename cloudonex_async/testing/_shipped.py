"""The sandbox's shipped style: how the deployed CloudOnex 4.x API code really answers.

What it reproduces, as seen on a running vendor server:

- Reads: ``customers`` (and ``customers/<id>``, whose id is ignored) is every customer
  as a bare array, newest first; ``customer/<id>`` is one bare row with about 97
  columns; ``invoice/<id>`` is ``{"invoice": {row}, "items": [rows]}`` in the vendor's
  column names; ``users`` and ``user/<id>`` are bare rows with the password hash and
  tokens. ``transactions`` and ``accounts`` answer the customer list (a copy-paste in
  the vendor's code). There is no paging and no rate limiting.
- Writes read form fields only (a JSON body is ignored): ``POST customer`` answers
  ``{"error": false, "contact_id": "12", ...}``; ``POST invoice`` needs ``cid``,
  ``idate``, a ``duedate`` code, ``repeat`` and items with ``item_code``, stores the
  invoice before its items (an item without ``item_code`` then fails with a 500 and
  leaves the invoice behind) and answers with the id of the last *item*; ``POST user``
  with an ignored body creates an Admin user with an empty username, and succeeds.
- Ignored verbs: PUT and DELETE on ``customer/<id>``, DELETE on ``invoice/<id>`` and
  ``POST customers`` answer an empty 200 and change nothing; ``PUT invoice/<id>``
  changes only ``status``.
- Customer and user form fields go through the vendor's HTML sanitizer and ``trim()``
  before they are stored (``Müller & Söhne`` is stored and answered as
  ``Müller &amp; Söhne``; unknown tags are removed); invoice item fields are stored as
  sent.
- Failures are ``{"error": true, "message": ...}`` at 200 (a list of messages on
  creates); a bad key is a 401; an unknown id is a PHP fatal error: an empty 500, or
  with ``display_errors`` a 200 HTML page (and warnings printed before JSON answers).
- Anything else is ``{"error": true, "message": "Unknown resources requested!"}``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Final, Protocol

from aiohttp import web

from .._shipped import sanitize_text
from ._http import Answer, Incoming, LoggedRequest, read_json_or_form
from ._tables import Tables

_FATAL_PAGE: Final = (
    b"<br />\n<b>Fatal error</b>:  Uncaught Error: Call to a member function "
    b"as_array() on bool in /var/www/html/system/controllers/api/v2.php:214\n"
    b"Stack trace:\n#0 {main}\n  thrown in <b>/var/www/html/system/controllers/api/v2.php"
    b"</b> on line <b>214</b><br />\n"
)
_WARNING: Final = (
    b'<br />\n<b>Warning</b>:  Undefined array key "taxed" in '
    b"<b>/var/www/html/system/controllers/api/v2.php</b> on line <b>88</b><br />\n"
)
_DUE_DAYS: Final = {
    "due_on_receipt": 0,
    "days3": 3,
    "days5": 5,
    "days7": 7,
    "days10": 10,
    "days15": 15,
    "days30": 30,
    "days45": 45,
    "days60": 60,
}
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The crm_accounts columns beyond the documented ones (the vendor's table has ~97).
_CUSTOMER_EXTRA_COLUMNS: Final = (
    "fname lname company jobtitle cid o username password active tags balance status notes "
    "tax_number currency pmethod autologin lastlogin lastloginip stype isp lat lon gname gid "
    "sid role country_code signed_up_by signed_up_ip type website drive business_number fax "
    "facebook google linkedin twitter skype whatsapp telegram secondary_email "
    "secondary_phone dob gender photo timezone language parent_id "
    "assigned_to source lead_status rating industry employees annual_revenue "
    "billing_address billing_city billing_state billing_zip billing_country "
    "shipping_address shipping_city shipping_state shipping_zip shipping_country "
    "vat_number credit_limit payment_terms discount price_group is_supplier "
    "is_customer portal_access email_verified phone_verified two_factor api_token "
    "token remember_token pwresetkey last_contacted next_followup custom1 custom2 custom3 "
    "custom4 custom5 c1 c2 c3 c4 c5"
).split()
_INVOICE_EXTRA_COLUMNS: Final = (
    "account cn invoicenum subtotal discount_type discount_value discount tax tax2 "
    "taxname taxrate taxrate2 credit paymentmethod vtoken ptoken r nd eid ename vid "
    "currency currency_symbol currency_prefix currency_suffix currency_rate recurring "
    "recurring_ends last_recurring_date source sale_agent tid aid datepaid quote_id "
    "show_quantity_as show_tax adjustment "
    "billing_street billing_city billing_state billing_zip billing_country "
    "shipping_street shipping_city shipping_state shipping_zip shipping_country "
    "include_shipping show_shipping_on_invoice terms client_note admin_note "
    "last_overdue_reminder last_due_reminder cancel_overdue_reminders project_id "
    "subscription_id short_link is_recurring_from cycles total_cycles hash "
    "prefix number_format formatted_number sent datesend allowed_payment_modes "
    "token custom1 custom2 custom3"
).split()


class Settings(Protocol):
    """The sandbox settings the shipped routes read (a SandboxServer has them)."""

    display_errors: bool


class ShippedRoutes:
    """Answers requests as the deployed CloudOnex 4.x API code does."""

    name = "shipped"

    def __init__(self, settings: Settings, tables: Tables) -> None:
        self.settings = settings
        self.tables = tables
        # Item ids run ahead of invoice ids, as on a database where items were removed:
        # the id that an invoice create answers then names another invoice, or none.
        tables.skip_ids("invoice_items", 40)

    # -- the style's shared answers ---------------------------------------------------

    def classify(self, method: str, segments: list[str]) -> tuple[str | None, str]:
        """Name the resource and the action (singular item paths, plural listings)."""
        name = segments[0]
        resource = {"customer": "customers", "invoice": "invoices", "user": "users"}.get(name, name)
        if name in ("customers", "users", "transactions", "accounts"):
            return resource, "list" if method == "GET" else "other"
        if len(segments) == 1:
            return resource, "create" if method == "POST" else "other"
        return resource, {"GET": "get", "PUT": "update", "DELETE": "delete"}.get(method, "other")

    async def read_body(self, request: web.Request) -> dict[str, object]:
        """Read form fields only: like the vendor's code, ignore a JSON body."""
        return await read_json_or_form(request, json_allowed=False)

    def unauthorized(self) -> Answer:
        """The vendor's answer to a missing or wrong key."""
        return Answer(401, {"error": True, "message": "No valid API key provided."})

    def no_route(self) -> Answer:
        """The vendor's answer to any path it does not know, at HTTP 200."""
        return Answer(200, {"error": True, "message": "Unknown resources requested!"})

    def server_error(self, status: int) -> Answer:
        """A PHP fatal error: an empty body (or, with display_errors, an HTML text at 200)."""
        if self.settings.display_errors:
            return Answer(200, raw=_FATAL_PAGE, content_type="text/html")
        return Answer(status, raw=b"")

    def seed_row(self, resource: str, record: Mapping[str, object]) -> dict[str, object]:
        """A row stored directly by :meth:`SandboxServer.seed`: every vendor column."""
        if resource == "customers":
            return self._customer_row(record)
        if resource == "invoices":
            return {**dict.fromkeys(_INVOICE_EXTRA_COLUMNS), "status": "Unpaid", **record}
        return {"created_at": self.tables.iso_stamp(), **record}

    # -- routing ------------------------------------------------------------------------

    def route(self, incoming: Incoming) -> Answer:
        """Answer a request as the vendor's router would."""
        method, segments, body = incoming.method, incoming.segments, incoming.body
        name, rest = segments[0], segments[1:]
        if name in ("customers", "transactions", "accounts"):
            if method == "GET":  # the id of customers/<id> is ignored, as in the vendor code
                return Answer(200, self._newest_first("customers"))
            if name == "customers" and method == "POST" and not rest:
                return _ignored()
            return _unknown_method()
        if name == "users" and method == "GET":
            return Answer(200, self._newest_first("users"))
        if name == "customer":
            return self._customer(incoming.log, method, rest, body)
        if name == "invoice":
            return self._invoice(incoming.log, method, rest, body)
        if name == "user":
            return self._user(incoming.log, method, rest, body)
        return self.no_route()

    def _newest_first(self, table: str) -> list[dict[str, object]]:
        return [dict(r) for _, r in sorted(self.tables.store[table].items(), reverse=True)]

    def _row(self, table: str, rest: list[str]) -> dict[str, object] | None:
        if len(rest) != 1 or not rest[0].isdigit():
            return None
        return self.tables.store[table].get(int(rest[0]))

    def _customer(
        self, log: LoggedRequest, method: str, rest: list[str], body: dict[str, object]
    ) -> Answer:
        if not rest:
            if method != "POST":
                return _unknown_method()
            body = _posted(body)
            problems = []
            if not str(body.get("account") or "").strip():
                problems.append("Account Name is required")
            email = body.get("email")
            if email not in (None, "") and not (isinstance(email, str) and _EMAIL.match(email)):
                problems.append("Invalid Email")
            if problems:
                return Answer(200, {"error": True, "message": problems})
            row = self.tables.insert("customers", self._customer_row(body))
            log.created = (*log.created, int(str(row["id"])))
            return self._written(
                {
                    "error": False,
                    "contact_id": str(row["id"]),
                    "message": "Account Created Successfully",
                }
            )
        if method in ("PUT", "DELETE"):
            return _ignored()  # the vendor code accepts these and does nothing
        if method != "GET":
            return _unknown_method()
        found = self._row("customers", rest)
        return Answer(200, found) if found is not None else self.server_error(500)

    def _customer_row(self, fields: Mapping[str, object]) -> dict[str, object]:
        stamp = self.tables.iso_stamp()
        row: dict[str, object] = dict.fromkeys(_CUSTOMER_EXTRA_COLUMNS)
        row.update(
            {
                "account": "",
                "email": "",
                "phone": "",
                "address": "",
                "city": "",
                "state": "",
                "zip": "",
                "country": "",
                "balance": "0.00",
                "status": "Active",
                "type": "Customer",
                "password": "$2y$10$yW0qZb6S1tP9jL7d0c2mIuXqk1V8Qh5n3rT4fA6sB9eC0dE1gH2iJ",
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
        row.update({k: v for k, v in fields.items() if isinstance(v, str)})
        return row

    def _invoice(
        self, log: LoggedRequest, method: str, rest: list[str], body: dict[str, object]
    ) -> Answer:
        if not rest:
            return self._create_invoice(log, body) if method == "POST" else _unknown_method()
        if method == "DELETE":
            return _ignored()
        row = self._row("invoices", rest)
        if method == "PUT":
            if row is None:
                return Answer(200, {"error": True, "message": "Invoice not found!"})
            status = body.get("status")
            if not isinstance(status, str) or not status:
                return Answer(200, {"error": True, "message": "Status is required"})
            row["status"] = status  # the only column this build updates
            return self._written({"error": False, "message": "Invoice Updated"})
        if method != "GET":
            return _unknown_method()
        if row is None:
            return self.server_error(500)
        items = [
            dict(i)
            for _, i in sorted(self.tables.store["invoice_items"].items())
            if i.get("invoiceid") == row["id"]
        ]
        return Answer(200, {"invoice": row, "items": items})

    def _create_invoice(self, log: LoggedRequest, body: dict[str, object]) -> Answer:
        problems = []
        cid = str(body.get("cid") or "")
        customer = self.tables.store["customers"].get(int(cid)) if cid.isdigit() else None
        if customer is None:
            problems.append("Customer Not Found")
        issued: dt.date | None = None
        try:
            issued = dt.date.fromisoformat(str(body.get("idate") or ""))
        except ValueError:
            problems += ["Invalid Date", "Date Parsing Error"]
        duedate = str(body.get("duedate") or "")
        if duedate not in _DUE_DAYS:
            problems.append("Invalid Due Date")
        if str(body.get("repeat") or "") == "":
            problems.append("Repeat is required")
        raw_items = body.get("items")
        items = [i for i in raw_items if isinstance(i, dict)] if isinstance(raw_items, list) else []
        try:
            lines = [(_money(i.get("qty", "1")), _money(i.get("amount", "0"))) for i in items]
            taxes = [_money(i.get("taxed", "0")) for i in items]
        except (InvalidOperation, TypeError):
            lines, taxes = [], []
            problems.append("Invalid Amount")
        if problems or issued is None or customer is None:
            return Answer(200, {"error": True, "message": problems})
        subtotal = sum((q * a for q, a in lines), Decimal("0.00"))
        tax = sum(
            (q * a * t / 100 for (q, a), t in zip(lines, taxes, strict=True)), Decimal("0.00")
        )
        row = {
            **dict.fromkeys(_INVOICE_EXTRA_COLUMNS),
            "userid": int(cid),
            "account": customer.get("account"),
            "date": issued.isoformat(),
            "duedate": (issued + dt.timedelta(days=_DUE_DAYS[duedate])).isoformat(),
            "invoicenum": "INV-",
            "subtotal": f"{subtotal:.2f}",
            "tax": f"{tax:.2f}",
            "total": f"{subtotal + tax:.2f}",
            "status": "Unpaid",
            "notes": str(body.get("notes") or ""),
            "r": str(body.get("repeat")),
            "credit": "0.00",
        }
        invoice = self.tables.insert("invoices", row)
        invoice["cn"] = f"{invoice['id']:05d}"
        log.created = (*log.created, int(str(invoice["id"])))
        # The vendor code stores the invoice first, then reads each item's item_code:
        # one missing is a fatal error, and the invoice stays behind without items.
        if any("item_code" not in item for item in items):
            return self.server_error(500)
        last_item = 0
        for item, (qty, amount), taxed in zip(items, lines, taxes, strict=True):
            stored = self.tables.insert(
                "invoice_items",
                {
                    "invoiceid": invoice["id"],
                    "userid": int(cid),
                    "itemcode": str(item.get("item_code") or ""),
                    "description": str(item.get("description") or ""),
                    "qty": f"{qty}",
                    "amount": f"{amount:.2f}",
                    "taxed": f"{taxed}",
                    "total": f"{qty * amount:.2f}",
                },
            )
            last_item = int(str(stored["id"]))
        # The answer names the last stored item, not the invoice (api-notes).
        return self._written(
            {"error": False, "invoice_id": str(last_item), "message": "Invoice Created"}
        )

    def _user(
        self, log: LoggedRequest, method: str, rest: list[str], body: dict[str, object]
    ) -> Answer:
        if not rest:
            if method != "POST":
                return _unknown_method()
            # No validation: an ignored (JSON) body creates an Admin with no username.
            body = _posted(body)
            role = str(body.get("user_type") or "")
            stamp = self.tables.iso_stamp()
            row = self.tables.insert(
                "users",
                {
                    "username": str(body.get("username") or ""),
                    "fullname": str(body.get("fullname") or ""),
                    "email": str(body.get("email") or ""),
                    "user_type": {"": "Admin", "1": "Admin"}.get(role, "Employee"),
                    "roleid": role or "1",
                    "password": "$2y$10$Q3nP8kL1vR6tY2wX9zA4bOuIe7fG5hJ0cD3sM6aN1qW8eT4yU2iKm",
                    "pwresetkey": "",
                    "autologin": "c0ffee5e1f0d4e6a9b8c7d6e5f4a3b2c",
                    "api_token": "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
                    "at": "5d41402abc4b2a76b9719d911017c592",
                    "pin": "",
                    "status": "Active",
                    "last_login": None,
                    "created_at": stamp,
                },
            )
            log.created = (*log.created, int(str(row["id"])))
            return self._written(
                {"error": False, "user_id": str(row["id"]), "message": "User Added"}
            )
        if method != "GET":
            return _unknown_method()
        found = self._row("users", rest)
        return Answer(200, found) if found is not None else self.server_error(500)

    def _written(self, body: dict[str, object]) -> Answer:
        if not self.settings.display_errors:
            return Answer(200, body)
        # display_errors on: PHP prints its warnings before the JSON answer.
        return Answer(200, raw=_WARNING + json.dumps(body).encode())


def _posted(body: Mapping[str, object]) -> dict[str, object]:
    """Form fields as the vendor's ``_post()`` reads them: sanitized and trimmed."""
    return {k: sanitize_text(v) if isinstance(v, str) else v for k, v in body.items()}


def _ignored() -> Answer:
    return Answer(200, raw=b"")


def _unknown_method() -> Answer:
    return Answer(200, {"error": True, "message": "Unknown Method!"})


def _money(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise TypeError(f"not an amount: {value!r}")
    return Decimal(value)
