"""The ``cloudonex`` command's exit codes (also in ``cloudonex --help``)."""

from __future__ import annotations

OK, PARTIAL, USAGE, AUTH, NOT_FOUND, UNSUPPORTED, RATE_LIMITED, UNREACHABLE, API = range(9)
INTERRUPTED = 130

EXIT_CODES = """exit codes:
  0    success
  1    partial failure: some records failed or are unknown (see the report)
  2    usage or configuration error (a bad flag, a missing URL or key, a bad file)
  3    the server refused the API key (or its permissions)
  4    no such record
  5    this server does not support the operation
  6    rate limited: the budget is spent and --max-wait ran out
  7    the server could not be reached, timed out, or its answer was lost (the
       message says whether a write may have been carried out)
  8    any other API error
  130  interrupted (Ctrl-C); long jobs say how to resume
"""
