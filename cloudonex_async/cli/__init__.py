"""The ``cloudonex`` command line (also ``python -m cloudonex_async``).

Run ``cloudonex --help`` for the commands and ``cloudonex COMMAND --help`` for each.
:func:`main` takes an argument list and returns the exit code.
"""

from __future__ import annotations

from ._app import build_parser, main
from ._exits import EXIT_CODES

__all__ = ["EXIT_CODES", "build_parser", "main"]
