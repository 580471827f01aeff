"""Secret: a value a record holds that must never be shown (a password hash, a login token).

The vendor's tables keep secrets in ordinary columns, and its API answers them with the
rest of the row: users' ``password`` (a bcrypt hash), ``pwresetkey``, ``autologin``,
``api_token``, ``at`` and ``pin``; customers' ``password``, ``token``, ``autologin`` and
``pwresetkey``. Such fields are read as :class:`Secret` (see ``Model.secret_fields``).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Final

#: What a non-empty secret shows instead of its value.
MASK: Final = "********"

# Column names that hold a secret in any record: passwords and their reset keys, login
# and API tokens, keys and salts. Short names (users' ``at``, ``pin``) are per model.
SECRET_NAME: Final = re.compile(
    r"passw(?:or)?d|pwreset|autologin|token|secret|api_?key|salt", re.IGNORECASE
)


class Secret:
    """A secret a record holds: shown as ``'********'``, its value only on request.

    ``repr``, ``str`` and ``format`` show the mask (an empty secret shows ``''``, so a
    field that holds nothing still reads as empty), and so do the CLI's JSON, CSV and
    table output. :meth:`get_secret_value` returns the value. Two secrets are equal
    when their values are (never equal to a plain ``str``), and a secret is hashable.

    Sending records back: a Secret is what the server *sent*, never something to send.
    ``create``, ``update``, ``bulk_*`` and ``sync`` leave out every field whose value is
    a Secret (declared or in ``extra``), so a model read from the server and sent back
    never echoes, say, a customer's bcrypt password hash as a new password (the server
    would hash the hash and lock the customer out). To set a password, pass a plain
    ``str``: it is sent as given. To send a secret deliberately, send
    ``secret.get_secret_value()``.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not a {type(value).__name__}")
        self._value = str(value)  # a str subclass (the old Secret) becomes plain text

    def get_secret_value(self) -> str:
        """The secret itself. Handle it with care: it is shown nowhere else."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return Secret, (self._value,)


def as_secret(value: object) -> object:
    """``value`` as a Secret: text as it is, a number as its digits; None stays None."""
    if value is None or isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    return Secret(str(value))


def masked_repr(fields: Mapping[str, object]) -> str:
    """The repr of ``fields`` with the values of secret-named fields (and Secrets) masked."""
    return repr(
        {
            k: Secret(str(v)) if isinstance(k, str) and SECRET_NAME.search(k) else v
            for k, v in fields.items()
        }
    )


def without_secrets(value: object) -> object:
    """``value`` (a payload: mappings, lists, values) with every Secret left out.

    A mapping loses the keys whose value is a Secret; a list loses such items.
    """
    if isinstance(value, Mapping):
        return {k: without_secrets(v) for k, v in value.items() if not isinstance(v, Secret)}
    if isinstance(value, (list, tuple)):
        return [without_secrets(v) for v in value if not isinstance(v, Secret)]
    return value


def revealed(value: object) -> dict[str, object]:
    """A payload (a mapping) with every Secret in it replaced by its value, nested too."""
    out = _revealed(value)
    assert isinstance(out, dict)
    return out


def _revealed(value: object) -> object:
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_revealed(v) for v in value]
    return value
