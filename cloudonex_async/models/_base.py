"""The base of every record model: an id, and ``extra`` for fields this version does not know."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen(kw_only=True)
class Model:
    """A CloudOnex record. Every field but ``id`` may be missing (None).

    ``extra`` keeps the fields the server sent that this model does not declare (and the
    raw text of any value that could not be read), so a newer server never breaks an
    older client and an update sends them back unchanged.
    """

    id: int | None = None
    extra: Mapping[str, object] = attrs.field(factory=dict, repr=False)
