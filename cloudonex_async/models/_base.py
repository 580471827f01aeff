"""The base of every record model: an id, and ``extra`` for fields this version does not know."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from .._secret import SECRET_NAME


@attrs.frozen(kw_only=True)
class Model:
    """A CloudOnex record. Every field but ``id`` may be missing (None).

    ``extra`` keeps the fields the server sent that this model does not declare (and the
    raw text of any value that could not be read), so a newer server never breaks an
    older client and an update sends them back unchanged; all but secrets, which are
    held as :class:`~cloudonex_async.Secret` and never sent back.
    """

    #: Fields of this record that hold secrets, besides those whose name says so
    #: (password, pwreset..., autologin, ...token, secret, api_key, salt): read as
    #: :class:`~cloudonex_async.Secret`, shown masked, never sent back.
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    id: int | None = None
    extra: Mapping[str, object] = attrs.field(factory=dict, repr=False)

    @classmethod
    def holds_secret(cls, name: str) -> bool:
        """Whether the field ``name`` (declared or in ``extra``) holds a secret."""
        return name in cls.secret_fields or SECRET_NAME.search(name) is not None
