"""Turning JSON records into models and back, with cattrs.

Values are read exactly or not at all. Money is a Decimal at any magnitude a server
can hold (the length of its text is bounded, not the amount); ids are ints up to
``2**64 - 1`` (MySQL's BIGINT UNSIGNED); dates and datetimes are ISO-8601 or
``YYYY-MM-DD HH:MM:SS``. Two rules read as None, because that is what the server
means: an empty (or blank) text in a number or date field, and a MySQL zero date
(``0000-00-00``, ``0000-00-00 00:00:00``), which PHP installs store for "no date".

A value that cannot be read is never silently None. The default converter raises
:class:`UnreadableValueError` (the resource turns it into a ResponseParseError naming
the record, the field and the value); the lenient one (``Client(lenient_values=True)``)
keeps the raw value in the model's ``extra`` under the field's name and logs one
WARNING per field. ``make_converter(forbid_extra_keys=True)`` also refuses unknown
keys; the tests use it to show drift.

Fields that hold secrets (``Model.holds_secret``: a user's or customer's password hash,
login tokens), declared or in ``extra``, are read as :class:`Secret`, and written out
as the Secret itself: the resources leave it out of what they send, the CLI shows it
masked.
"""

from __future__ import annotations

import logging
import re
import types
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final, TypeVar, Union, cast, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._protocol import MAX_ID
from ._secret import Secret, as_secret
from .errors import ResponseParseError, ValidationError
from .models import Model

logger = logging.getLogger("cloudonex_async")
M = TypeVar("M", bound=Model)

#: The longest amount read, written out in full (sign, digits and point). MySQL's
#: DECIMAL holds at most 65 digits; this leaves room for any scale a server uses.
MAX_AMOUNT_CHARS: Final = 100

_PLAIN_AMOUNT: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
# "1,234.50": a comma separates thousands only in this form. "12,50" (a decimal comma)
# and "1,234" (which could be either) are not read: a guess would be a wrong amount.
_GROUPED_AMOUNT: Final = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+\.\d+", re.ASCII)
_DIGITS: Final = re.compile(r"[+-]?\d+", re.ASCII)
# The formats read, the same on every Python: a date, or a date and time to the
# microsecond, with an optional zone (``Z``, ``+02:00`` or ``+0200``).
_DATE: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_DATETIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?([Zz]|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)


class UnreadableValueError(ValueError):
    """A field's value cannot be read as the field's type.

    Attributes:
        model: the model's class name. record_id: the record's id as sent (None if it
            had none). field: the field's name (``items[0].amount`` for a nested one).
        value: the raw value. reason: what is wrong with it.
    """

    def __init__(
        self, *, model: str, record_id: object, field: str, value: object, reason: str
    ) -> None:
        self.model = model
        self.record_id = record_id
        self.field = field
        self.value = value
        self.reason = reason
        shown = f" {record_id}" if record_id is not None else ""
        super().__init__(f"{model}{shown}: {field} = {_show(value)} {reason}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def to_decimal(value: object, _: object = None) -> Decimal:
    """Read money from a string, int, float or Decimal, exactly.

    Raises ValueError for NaN, infinities, text that is not a plain amount, and amounts
    whose digits would not fit in :data:`MAX_AMOUNT_CHARS` characters.
    """
    if isinstance(value, bool):
        raise ValueError("is a boolean, not an amount")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        if len(str(abs(value))) > MAX_AMOUNT_CHARS:
            raise ValueError(f"has more than {MAX_AMOUNT_CHARS} digits")
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))  # the shortest text that round-trips, not the binary value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_AMOUNT_CHARS:
            raise ValueError(f"is longer than {MAX_AMOUNT_CHARS} characters")
        if _GROUPED_AMOUNT.fullmatch(text):
            text = text.replace(",", "")
        elif not _PLAIN_AMOUNT.fullmatch(text):
            raise ValueError(
                "is not an amount (digits with an optional point; a comma only separates "
                "thousands, as in 1,234.50)"
            )
        amount = Decimal(text)
    else:
        raise ValueError("is not an amount")
    if not amount.is_finite():
        raise ValueError("is not a finite amount")
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    whole_digits = max(amount.adjusted() + 1, 1)
    if whole_digits + max(-exponent, 0) > MAX_AMOUNT_CHARS:
        raise ValueError(f"has more than {MAX_AMOUNT_CHARS} digits")
    return amount


def to_int(value: object, _: object = None) -> int:
    """Read an id or count from an int or a string of digits, up to ``2**64 - 1``."""
    if isinstance(value, bool):
        raise ValueError("is a boolean, not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        if len(value.strip().lstrip("+-")) > 20:
            raise ValueError("is beyond 2**64 - 1, the largest id a database column holds")
        number = int(value.strip())
    else:
        raise ValueError("is not an integer")
    if abs(number) > MAX_ID:
        raise ValueError("is beyond 2**64 - 1, the largest id a database column holds")
    return number


def to_datetime(value: object, _: object = None) -> datetime:
    """Read ``YYYY-MM-DD[THH:MM[:SS[.ffffff]]][zone]`` (a space for the ``T`` too).

    A value with a zone (``Z``, ``+02:00``) is aware; one without (the shipped servers'
    ``YYYY-MM-DD HH:MM:SS``) stays naive: it is the server's local time, which the API
    does not name. More than six digits of a second, or a number, are not read.
    """
    if isinstance(value, datetime):
        return value
    match = _DATETIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError("is not a date and time (YYYY-MM-DD HH:MM:SS, or ISO-8601)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = None
    if zone in ("Z", "z"):
        tz = timezone.utc
    elif zone:
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        tz = timezone(-offset if zone[0] == "-" else offset)
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        raise ValueError("is not a date and time that exists") from None


def to_date(value: object, _: object = None) -> date:
    """Read ``YYYY-MM-DD`` (a date and time's date part is accepted too)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) > 10:
        return to_datetime(value).date()
    match = _DATE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError("is not a date (YYYY-MM-DD)")
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        raise ValueError("is not a date that exists") from None


def to_str(value: object, _: object = None) -> str:
    """Read text; numbers (a phone number sent as a number) become their digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    raise ValueError("is not text")


def is_no_value(value: object, kind: type) -> bool:
    """Whether ``value`` means "no value" in a field of type ``kind`` (read as None).

    Empty or blank text in a number or date field, and MySQL's zero dates.
    """
    if value is None:
        return True
    if kind in (str, Secret) or not isinstance(value, str):
        return False
    text = value.strip()
    return not text or (kind in (date, datetime) and text.startswith("0000-00-00"))


def _optional_of(kind: object) -> type | None:
    """The X of ``X | None`` for the scalar types the models use; else None."""
    if get_origin(kind) not in (Union, types.UnionType):
        return None
    args = [a for a in get_args(kind) if a is not type(None)]
    if len(args) == 1 and args[0] in (Decimal, int, date, datetime, str, Secret):
        return cast(type, args[0])
    return None


def make_converter(*, lenient: bool = False, forbid_extra_keys: bool = False) -> cattrs.Converter:
    """Build a converter for the models.

    Args:
        lenient: keep an unreadable value in ``extra`` (one WARNING per field) instead
            of raising :class:`UnreadableValueError`.
        forbid_extra_keys: raise on fields the model does not declare (tests use it).
    """
    converter = cattrs.Converter()
    converter.register_structure_hook(Decimal, to_decimal)
    converter.register_structure_hook(int, to_int)
    converter.register_structure_hook(datetime, to_datetime)
    converter.register_structure_hook(date, to_date)
    converter.register_structure_hook(str, to_str)
    converter.register_structure_hook(Secret, lambda value, _: as_secret(to_str(value)))
    # Plain digits, never an exponent: "1E+3" is not an amount every server reads.
    converter.register_unstructure_hook(Decimal, lambda amount: format(amount, "f"))
    converter.register_unstructure_hook(datetime, datetime.isoformat)
    converter.register_unstructure_hook(date, date.isoformat)
    # Kept as it is: never sent (see Resource._payload), shown masked (the CLI).
    converter.register_unstructure_hook(Secret, lambda secret: secret)

    def optional(kind: object) -> Callable[[object, object], object]:
        inner = _optional_of(kind)
        assert inner is not None
        read = converter.get_structure_hook(inner)

        def structure(value: object, _: object) -> object:
            return None if is_no_value(value, inner) else read(value, inner)

        return structure

    converter.register_structure_hook_factory(lambda t: _optional_of(t) is not None, optional)

    warned: set[tuple[str, str]] = set()

    def is_model(cls: object) -> bool:
        return isinstance(cls, type) and issubclass(cls, Model)

    converter.register_structure_hook_factory(
        is_model,
        lambda cls: _structure_model(
            cls, converter, lenient=lenient, forbid_extra_keys=forbid_extra_keys, warned=warned
        ),
    )
    converter.register_unstructure_hook_factory(
        is_model, lambda cls: _unstructure_model(cls, converter)
    )
    return converter


def _structure_model(
    cls: type[M],
    converter: cattrs.Converter,
    *,
    lenient: bool,
    forbid_extra_keys: bool,
    warned: set[tuple[str, str]],
) -> Callable[[object, object], M]:
    fields = attrs.fields(cls)
    names = frozenset(f.name for f in fields) - {"extra"}
    generated = make_dict_structure_fn(
        cls, converter, extra=override(struct_hook=lambda value, _: value)
    )

    secret: dict[object, bool] = {}  # holds_secret, by name: a row has ~100 columns

    def holds_secret(name: object) -> bool:
        found = secret.get(name)
        if found is None:
            found = isinstance(name, str) and cls.holds_secret(name)
            if len(secret) < 4096:  # a server inventing names grows no cache
                secret[name] = found
        return found

    def hidden(value: object) -> object:
        """An unknown field's value with the secrets nested in it held as Secret."""
        if isinstance(value, Mapping):
            return {k: as_secret(v) if holds_secret(k) else hidden(v) for k, v in value.items()}
        if isinstance(value, list):
            return [hidden(v) for v in value]
        return value

    def structure(data: object, _: object) -> M:
        if not isinstance(data, Mapping):
            raise ValueError(f"a {cls.__name__} must be a JSON object, got {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in names}
        extra = {
            k: as_secret(v) if holds_secret(k) else hidden(v)
            for k, v in data.items()
            if k not in names
        }
        if forbid_extra_keys and extra:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(extra)}")
        try:
            return generated({**known, "extra": extra}, cls)
        except Exception:
            pass  # the slow path below finds the field and says why
        # The slow path, one field at a time, to name the field that cannot be read.
        values: dict[str, object] = {}
        for field in fields:
            if field.name not in known:
                continue
            raw = known[field.name]
            try:
                values[field.name] = converter.structure(raw, field.type)
            except Exception as error:
                nested = _unreadable_item(converter, raw, field.type)
                if nested is not None and not lenient:  # in an item of a list of records
                    raise UnreadableValueError(
                        model=cls.__name__,
                        record_id=data.get("id"),
                        field=f"{field.name}{nested.field}",
                        value=nested.value,
                        reason=nested.reason,
                    ) from None
                reason = str(error) if isinstance(error, ValueError) else "cannot be read"
                if not lenient:
                    raise UnreadableValueError(
                        model=cls.__name__,
                        record_id=data.get("id"),
                        field=field.name,
                        value=raw,
                        reason=reason,
                    ) from None
                if (cls.__name__, field.name) not in warned:
                    warned.add((cls.__name__, field.name))
                    logger.warning(
                        "%s.%s: a value that %s was kept in .extra (lenient_values=True); "
                        "further ones are not logged",
                        cls.__name__,
                        field.name,
                        reason,
                    )
                extra[field.name] = raw
        return cls(**cast(dict[str, Any], values), extra=extra)

    return structure


def _unreadable_item(
    converter: cattrs.Converter, raw: object, kind: object
) -> UnreadableValueError | None:
    """For a list of records that failed to read: which item and field, as ``[n].field``."""
    element = next((get_args(a)[0] for a in (kind, *get_args(kind)) if get_origin(a) is list), None)
    if not isinstance(raw, list) or element is None:
        return None
    for n, item in enumerate(raw):
        try:
            converter.structure(item, element)
        except UnreadableValueError as error:
            return UnreadableValueError(
                model=error.model,
                record_id=error.record_id,
                field=f"[{n}].{error.field}",
                value=error.value,
                reason=error.reason,
            )
        except Exception:
            return None
    return None


def _unstructure_model(
    cls: type[Model], converter: cattrs.Converter
) -> Callable[[Model], dict[str, object]]:
    generated = make_dict_unstructure_fn(
        cls, converter, _cattrs_omit_if_default=True, extra=override(omit=True)
    )

    def unstructure(model: Model) -> dict[str, object]:
        # Unknown fields first, so a field the model has read wins over its raw text.
        return {**model.extra, **generated(model)}

    return unstructure


CONVERTER: Final = make_converter()
"""The default converter: unreadable values raise :class:`UnreadableValueError`."""


def converter_for(*, lenient: bool) -> cattrs.Converter:
    """The converter for a client: the shared strict one, or a lenient one of its own
    (so each client warns once per field)."""
    return make_converter(lenient=True) if lenient else CONVERTER


def read_record(converter: cattrs.Converter, data: object, cls: type[M], *, source: str) -> M:
    """The model of a record the server sent in answer to ``source`` (``"GET products"``).

    Raises:
        ResponseParseError: a value cannot be read exactly (the error names the record,
            the field and the value), or the record is not a JSON object.
    """
    try:
        return converter.structure(data, cls)
    except UnreadableValueError as error:
        raise ResponseParseError(
            f"{source}: {error}; nothing was guessed. If the server really holds such "
            "values, pass Client(lenient_values=True) to read them as None and keep the "
            "raw value in the model's .extra",
            status=200,
            field=error.field,
        ) from None
    except ValueError as error:
        raise ResponseParseError(f"{source}: {error}", status=200) from None


def read_input(data: object, cls: type[M], *, what: str) -> M:
    """The model of a record the caller gave (``what`` names it: ``"record 30"``).

    Input is read as strictly as answers: what the library sends, it must be able to
    read back.

    Raises:
        ValidationError: a field's value cannot be read (status 0: nothing was sent).
    """
    try:
        return CONVERTER.structure(data, cls)
    except UnreadableValueError as error:
        raise ValidationError(
            f"{what} holds a value that cannot be sent; nothing was sent",
            status=0,
            errors={error.field: f"{_show(error.value)} {error.reason}"},
        ) from None
    except ValueError as error:
        raise ValidationError(f"{what}: {error}; nothing was sent", status=0) from None
