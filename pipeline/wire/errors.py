"""The one exception the wire package raises for bad input."""

from __future__ import annotations

from typing import Final

MALFORMED: Final = "malformed"
"""Bytes that cannot be decoded (spec §8): the record never reaches the engine."""

INVALID: Final = "invalid"
"""A value that cannot be encoded because it does not fit its schema."""


class WireError(ValueError):
    """Bad input at the wire boundary: `reason` is a spec §8 reason code, `message` says why.

    Decoding raises it with reason `malformed`; encoding a value that does not fit its schema
    raises it with reason `invalid`. The agents turn it into a dead-letter record and an
    `event.error` webhook; anything else a codec raises is a bug.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[WireError], tuple[str, str]]:
        return (type(self), (self.reason, self.message))
