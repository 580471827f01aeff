"""PHP-style form fields, as shipped CloudOnex servers read them: ``items[0][amount]=5``.

PHP folds bracketed names into nested arrays; so does :func:`fold_form`, turning
arrays whose keys are 0, 1, 2... into lists, as a JSON body would have them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PART = re.compile(r"\[([^\[\]]*)\]")


def fold_form(fields: Iterable[tuple[str, str]]) -> dict[str, object]:
    """Fold ``(name, value)`` pairs with PHP bracket names into nested dicts and lists."""
    root: dict[str, object] = {}
    for name, value in fields:
        head, _, rest = name.partition("[")
        keys = [head, *_PART.findall("[" + rest)] if rest else [head]
        node = root
        for depth, key in enumerate(keys):
            if key == "":  # name[]: the next index
                key = str(len(node))
            if depth == len(keys) - 1:
                node[key] = value
                break
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
    return {key: _lists(value) for key, value in root.items()}


def _lists(value: object) -> object:
    if not isinstance(value, dict):
        return value
    folded = {k: _lists(v) for k, v in value.items()}
    if folded and all(k.isdigit() for k in folded):
        indexes = sorted(int(k) for k in folded)
        if indexes == list(range(len(indexes))):
            return [folded[str(i)] for i in indexes]
    return folded
