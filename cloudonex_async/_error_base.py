"""The root of the error tree, alone, so that the records errors carry can name it too."""

from __future__ import annotations


class CloudOnexError(Exception):
    """Base class of every error this library raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"
