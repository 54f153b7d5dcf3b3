"""Errors that reach the command line as one line of text, without a traceback."""

from __future__ import annotations


class TollgateError(Exception):
    """A failure the user can fix; the message says what went wrong and names the fix.

    The `tollgate` command prints it as a single ``Error: ...`` line and exits non-zero.
    """
