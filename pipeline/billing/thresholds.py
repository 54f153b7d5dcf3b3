"""The threshold check of spec §5: Lago's algorithm, literally, and nothing else."""

from __future__ import annotations

from pipeline.billing.catalog import Thresholds, UsageThreshold


def crossed_thresholds(
    thresholds: Thresholds, historical: int, invoiced: int, current: int, progressed: int
) -> tuple[UsageThreshold, ...]:
    """The thresholds one check crosses, in crossing order (fixed ascending, then recurring).

    `historical` = H, `invoiced` = I, `current` = C (open period's usage), `progressed` = P (fees
    of the latest progressive invoice of the open period). Steps 4 and 5 measure the recurring
    threshold on different grids, as Lago does.
    """
    if not thresholds:
        return ()
    added = current - progressed
    if added < 0:
        return ()
    billed = historical + invoiced + progressed
    total = billed + added
    largest = thresholds.largest_fixed
    recurring = thresholds.recurring
    if billed < largest:
        crossed = tuple(t for t in thresholds.fixed if billed < t.amount_cents <= total)
        if recurring is not None and total - largest >= recurring.amount_cents:
            crossed += (recurring,)
        return crossed
    if recurring is not None and added + billed % recurring.amount_cents >= recurring.amount_cents:
        return (recurring,)
    return ()


def crossing_distance(thresholds: Thresholds, billed: int) -> int | None:
    """The smallest A = C − P at which `crossed_thresholds` crosses anything, given
    B = H + I + P; None if no usage can cross. A check with a smaller A crosses nothing, so the
    per-event path may skip it without changing any output."""
    if not thresholds:
        return None
    largest = thresholds.largest_fixed
    recurring = thresholds.recurring
    if billed < largest:
        distance = (
            next(t.amount_cents for t in thresholds.fixed if t.amount_cents > billed) - billed
        )
        if recurring is not None:
            distance = min(distance, largest + recurring.amount_cents - billed)
        return distance
    if recurring is not None:
        return recurring.amount_cents - billed % recurring.amount_cents
    return None
