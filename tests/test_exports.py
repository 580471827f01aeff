"""The public names: sorted, complete, and importable."""

from __future__ import annotations

import cloudonex_async
from cloudonex_async import errors, testing


def test_all_names_each_public_name_once() -> None:
    names = cloudonex_async.__all__  # ruff (RUF022) keeps it sorted
    assert len(names) == len(set(names))
    public = {n for n in vars(cloudonex_async) if n.isidentifier() and not n.startswith("_")}
    modules = {"errors", "limiters", "models", "resources", "testing"}
    assert public - set(names) <= modules
    for name in names:
        assert getattr(cloudonex_async, name) is not None


def test_every_error_is_exported_and_in_the_tree() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.CloudOnexError)
        assert name in cloudonex_async.__all__


def test_testing_exports() -> None:
    assert sorted(testing.__all__) == testing.__all__
    assert {"SandboxServer", "FakeClock", "Faults"} <= set(testing.__all__)


def test_every_public_name_has_a_docstring() -> None:
    for name in cloudonex_async.__all__:
        value = getattr(cloudonex_async, name)
        if isinstance(value, type):
            assert value.__doc__, name
