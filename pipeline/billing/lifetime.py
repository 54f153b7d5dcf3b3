"""Lifetime usage toward each usage threshold (spec §4, §13): when thresholds were reached and
how far the lifetime usage has come toward the next ones.

Lago answers `GET /subscriptions/{id}/lifetime_usage` with one entry per threshold:
`{amount_cents, completion_ratio, reached_at}`. The ratios follow Lago's
`LifetimeUsages::UsageThresholdsCompletionService` (app/services/lifetime_usages/
usage_thresholds_completion_service.rb); `reached_at` needs to know when a threshold was crossed,
so a subscription remembers, per threshold a progressive invoice applied, the instant and the
lifetime usage of that crossing (`Reached`, Lago's `AppliedUsageThreshold` rows).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from pipeline.billing.catalog import Thresholds, UsageThreshold
from pipeline.billing.money import ENGINE_CONTEXT

MAX_RECURRING = 1000
"""Recurring crossings remembered, and recurring steps listed as reached: at most the latest
1,000 (Lago lists every step, which an amount of 1 cent would make unbounded)."""

_ONE = Decimal(1)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Reached:
    """One threshold applied by a progressive invoice: `lifetime_cents` is the invoice's
    `lifetime_usage_amount_cents` (H + I + C at the end of the check), `at_us` its issuing
    instant."""

    amount_cents: int
    recurring: bool
    lifetime_cents: int
    at_us: int


def remember_reached(
    reached: tuple[Reached, ...],
    crossed: Sequence[UsageThreshold],
    lifetime_cents: int,
    at_us: int,
) -> tuple[Reached, ...]:
    """The crossings remembered after a check crossed `crossed`. Lago shows a fixed threshold's
    latest crossing, so only that one is kept; of the recurring crossings, the latest
    `MAX_RECURRING`. A new tuple: the per-event path undoes a failed step by putting the old
    one back."""
    fixed = {t.amount_cents for t in crossed if not t.recurring}
    kept = [r for r in reached if r.recurring or r.amount_cents not in fixed]
    kept.extend(Reached(t.amount_cents, t.recurring, lifetime_cents, at_us) for t in crossed)
    excess = sum(1 for r in kept if r.recurring) - MAX_RECURRING
    if excess > 0:
        trimmed: list[Reached] = []
        for r in kept:
            if r.recurring and excess > 0:
                excess -= 1
            else:
                trimmed.append(r)
        kept = trimmed
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class Completion:
    """One entry of the lifetime usage's `usage_thresholds`; `reached_us` None: not reached."""

    amount_cents: int
    ratio: Decimal
    reached_us: int | None


def completions(
    thresholds: Thresholds, total_cents: int, reached: tuple[Reached, ...], now_us: int
) -> list[Completion]:
    """Lago's completion list for lifetime usage `total_cents` (H + I + C):

    - every fixed threshold ≤ total: ratio 1, reached at its latest crossing;
    - then, if a fixed threshold is above the total: the first such one with ratio
      (total − last passed) / (amount − last passed), the others 0, and the recurring one (if
      any) at largest fixed + step with 0;
    - else, if there is a recurring step s counted from L (the largest fixed amount, or 0):
      each step L + k·s ≤ total (the highest `MAX_RECURRING`) with ratio 1, reached at the
      first recurring crossing whose lifetime usage is ≥ that step, then the next step with
      ratio ((total − L) mod s) / s.

    A threshold passed with no crossing remembered (passed by historical usage, or added below
    usage already invoiced: no check crossed it) is reached at `now_us`, as Lago falls back to
    the current time. Lago takes the remainder of (L + total) for the next recurring step, off
    the grid its own list uses unless 2·L is a multiple of s; we take (total − L)."""
    if not thresholds:
        return []
    out: list[Completion] = []
    last = 0
    pending: list[UsageThreshold] = []
    for threshold in thresholds.fixed:
        if threshold.amount_cents <= total_cents:
            at = _latest_fixed(reached, threshold.amount_cents)
            out.append(Completion(threshold.amount_cents, _ONE, now_us if at is None else at))
            last = threshold.amount_cents
        else:
            pending.append(threshold)
    recurring = thresholds.recurring
    with localcontext(ENGINE_CONTEXT):
        if pending:
            first = pending[0].amount_cents
            ratio = Decimal(total_cents - last) / Decimal(first - last)
            out.append(Completion(first, ratio, None))
            out.extend(Completion(t.amount_cents, _ZERO, None) for t in pending[1:])
            if recurring is not None:
                step = thresholds.largest_fixed + recurring.amount_cents
                out.append(Completion(step, _ZERO, None))
        elif recurring is not None:
            out.extend(_recurring(recurring.amount_cents, last, total_cents, reached, now_us))
    return out


def _latest_fixed(reached: tuple[Reached, ...], amount_cents: int) -> int | None:
    latest = None
    for r in reached:
        if not r.recurring and r.amount_cents == amount_cents:
            latest = r.at_us if latest is None else max(latest, r.at_us)
    return latest


def _recurring(
    step: int, base: int, total_cents: int, reached: tuple[Reached, ...], now_us: int
) -> list[Completion]:
    crossings = sorted(
        (r for r in reached if r.recurring and r.amount_cents == step),
        key=lambda r: r.lifetime_cents,
    )
    lifetimes = [r.lifetime_cents for r in crossings]
    steps = (total_cents - base) // step
    out: list[Completion] = []
    for k in range(max(1, steps - MAX_RECURRING + 1), steps + 1):
        amount = base + k * step
        index = bisect_left(lifetimes, amount)
        at = crossings[index].at_us if index < len(crossings) else now_us
        out.append(Completion(amount, _ONE, at))
    remainder = (total_cents - base) % step
    out.append(Completion(base + (steps + 1) * step, Decimal(remainder) / Decimal(step), None))
    return out
