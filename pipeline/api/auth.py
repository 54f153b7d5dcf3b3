"""API keys: `Authorization: Bearer <key>`, compared in constant time, never logged.

Every configured key is compared (`hmac.compare_digest`) whatever matched before, so the time
an answer takes says nothing about which key, or how much of one, was right.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

_SCHEME = "bearer "


class Keys:
    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(key.encode() for key in keys if key)

    def __repr__(self) -> str:  # never the keys themselves
        return f"Keys({len(self._keys)} configured)"

    def __len__(self) -> int:
        return len(self._keys)

    def accepts(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries one of the keys."""
        if not authorization or authorization[: len(_SCHEME)].lower() != _SCHEME:
            return False
        offered = authorization[len(_SCHEME) :].strip().encode("utf-8", "replace")
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(offered, key)
        return found
