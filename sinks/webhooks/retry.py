"""What one delivery attempt leads to, under the retry schedule. Pure.

The schedule (TOLLGATE_WEBHOOK_RETRY_SCHEDULE) lists the delay before each attempt: entry 0
before the first (0: at once), entry k after the k-th failed attempt. A 2xx answer delivers;
anything else (another status, a timeout, a refused connection) schedules the next attempt,
and after the last entry the delivery is `failed` (`tollgate webhooks retry` revives it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # delivered | pending | failed
    attempted_at: datetime
    next_attempt_at: datetime
    status_code: int | None
    status_class: str  # 2xx, 3xx, 4xx, 5xx, timeout, connection_error
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"

    @property
    def metric_outcome(self) -> str:
        return "retrying" if self.status == "pending" else self.status


def outcome(
    *,
    attempts_before: int,
    attempted_at: datetime,
    schedule: Sequence[float],
    status_code: int | None,
    failure: str | None = None,
    error: str | None = None,
) -> Outcome:
    """The result of attempt number `attempts_before + 1`: `status_code` when the receiver
    answered, else `failure` (TIMEOUT or CONNECTION_ERROR) with `error` saying why."""
    if status_code is not None:
        status_class = f"{status_code // 100}xx"
    else:
        status_class = failure or CONNECTION_ERROR
    if status_code is not None and 200 <= status_code < 300:
        return Outcome("delivered", attempted_at, attempted_at, status_code, status_class, None)
    done = attempts_before + 1
    if done < len(schedule):
        next_at = attempted_at + timedelta(seconds=schedule[done])
        return Outcome("pending", attempted_at, next_at, status_code, status_class, error)
    return Outcome("failed", attempted_at, attempted_at, status_code, status_class, error)
