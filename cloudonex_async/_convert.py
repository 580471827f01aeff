"""Turning JSON records into models and back, with cattrs.

The production converter is lenient, because real servers send nulls, numeric
strings, three datetime formats and garbage: a value that cannot be read becomes
None on the model and its raw text is kept in ``extra`` under the field's name, so
one bad record never breaks a listing. ``make_converter(strict=True)`` raises
instead and refuses unknown keys; the tests use it to show drift.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .models import Model

logger = logging.getLogger("cloudonex_async")
M = TypeVar("M", bound=Model)


# An amount, id or count beyond these is garbage, not a value (a quadrillion in money).
MAX_AMOUNT = Decimal("1e15")
MAX_INT = 2**63 - 1


def to_decimal(value: object, _: object = None) -> Decimal:
    """Read money from a string, int, float or Decimal without float rounding.

    Only finite amounts below a quadrillion are money: NaN, Infinity and absurd
    magnitudes raise ValueError (the lenient converter parks them in ``extra``).
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))  # the shortest text that round-trips, not the binary value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            amount = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
    else:
        raise ValueError(f"not an amount: {value!r}"[:100])
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        raise ValueError(f"not a plausible amount: {value!r}"[:100])
    return amount


def to_int(value: object, _: object = None) -> int:
    """Read an id or count from an int or a numeric string (within 64 bits)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        number = int(value)
    elif isinstance(value, str) and len(value) <= 21 and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"not an integer: {value!r}"[:100])
    if abs(number) > MAX_INT:
        raise ValueError(f"an integer out of range: {value!r}"[:100])
    return number


def to_datetime(value: object, _: object = None) -> datetime:
    """Read ISO-8601 (``Z`` included) or ``YYYY-MM-DD HH:MM:SS``.

    A value without a zone (the shipped servers' format) stays naive: it is the
    server's local time, which the API does not name.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        return datetime.fromisoformat(text)  # raises ValueError on zero dates too
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), timezone.utc)
    raise ValueError(f"not a datetime: {value!r}")


def to_date(value: object, _: object = None) -> date:
    """Read ``YYYY-MM-DD`` (a datetime's date part is accepted too)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) > 10:
        return to_datetime(value).date()
    if isinstance(value, str):
        return date.fromisoformat(value.strip())
    raise ValueError(f"not a date: {value!r}")


def to_str(value: object, _: object = None) -> str:
    """Read text; numbers (a phone number sent as a number) become their digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"not text: {value!r}")


def make_converter(*, strict: bool = False) -> cattrs.Converter:
    """Build the converter for models; ``strict`` raises on unknown keys and bad values."""
    converter = cattrs.Converter()
    converter.register_structure_hook(Decimal, to_decimal)
    converter.register_structure_hook(int, to_int)
    converter.register_structure_hook(datetime, to_datetime)
    converter.register_structure_hook(date, to_date)
    converter.register_structure_hook(str, to_str)
    converter.register_unstructure_hook(Decimal, str)
    converter.register_unstructure_hook(datetime, datetime.isoformat)
    converter.register_unstructure_hook(date, date.isoformat)

    def is_model(cls: object) -> bool:
        return isinstance(cls, type) and issubclass(cls, Model)

    converter.register_structure_hook_factory(
        is_model, lambda cls: _structure_model(cls, converter, strict=strict)
    )
    converter.register_unstructure_hook_factory(
        is_model, lambda cls: _unstructure_model(cls, converter)
    )
    return converter


def _structure_model(
    cls: type[M], converter: cattrs.Converter, *, strict: bool
) -> Callable[[object, object], M]:
    fields = attrs.fields(cls)
    names = frozenset(f.name for f in fields) - {"extra"}
    generated = make_dict_structure_fn(
        cls, converter, extra=override(struct_hook=lambda value, _: value)
    )

    def structure(data: object, _: object) -> M:
        if not isinstance(data, Mapping):
            raise ValueError(f"a {cls.__name__} must be a JSON object, got {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        if strict and extra:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(extra)}")
        try:
            return generated({**known, "extra": extra}, cls)
        except Exception:
            if strict:
                raise
        # The slow path, one field at a time: keep what can be read, park the rest.
        values: dict[str, object] = {}
        for field in fields:
            if field.name not in known:
                continue
            try:
                values[field.name] = converter.structure(known[field.name], field.type)
            except Exception:
                logger.debug("%s.%s: unreadable value kept in extra", cls.__name__, field.name)
                extra[field.name] = known[field.name]
        return cls(**cast(dict[str, Any], values), extra=extra)

    return structure


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


CONVERTER = make_converter()
