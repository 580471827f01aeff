"""The library's words for its options, said as the command line's flags."""

from __future__ import annotations

import re

# The Client options the command line has a flag for (see ``cloudonex --help``).
_OPTIONS = (
    "profile|auth|route_style|body_encoding|item_paths|timeout|max_wait|rate_limit|"
    "rate_period|max_response_bytes"
)
# name='value', name=60, or a bare name= (an option to set, followed by a space, comma...).
_SETTING = re.compile(rf"\b({_OPTIONS})=(?:'([\w.]+)'|(\d[\d.]*)|(?=[\s,;)]|$))")
# Switches, whose flag is named otherwise.
_SWITCHES = {"allow_insecure_http=True": "--insecure-http"}


def as_flags(text: str) -> str:
    """``auth='query'`` as ``--auth query``, ``timeout=60`` as ``--timeout 60``, in ``text``.

    Advice written for Python callers (an error message, a doctor finding) then names
    what a command-line user sets.
    """

    def flag(match: re.Match[str]) -> str:
        value = match.group(2) or match.group(3)
        name = f"--{match.group(1).replace('_', '-')}"
        return f"{name} {value}" if value else name

    for switch, flag_name in _SWITCHES.items():
        text = text.replace(switch, flag_name)
    return _SETTING.sub(flag, text)
