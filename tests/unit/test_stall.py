"""The worker's stall watch: a held partition with messages waiting that does not move."""

from __future__ import annotations

from pipeline.worker.stall import StallWatch


def test_a_partition_that_moves_or_has_nothing_waiting_is_not_stalled() -> None:
    watch = StallWatch(after=30)
    watch.applied(0, 99, now=0)
    assert watch.stalled({0, 1}, {0: 100, 1: 5}, {1: 5}, now=100) == {}  # caught up, idle
    watch.applied(0, 150, now=120)
    assert watch.stalled({0}, {0: 200}, {}, now=140) == {}  # behind, but moved 20 s ago


def test_messages_waiting_without_progress_for_too_long_is_a_stall() -> None:
    watch = StallWatch(after=30)
    watch.applied(3, 2110, now=0)
    assert watch.stalled({3}, {3: 2596}, {}, now=10) == {}
    assert watch.stalled({3}, {3: 2596}, {}, now=31) == {3: 485}


def test_a_partition_never_applied_is_measured_from_its_assignment_and_committed_offset() -> None:
    watch = StallWatch(after=30)
    assert watch.stalled({2}, {2: 50}, {2: 40}, now=100) == {}  # just assigned
    assert watch.stalled({2}, {2: 50}, {2: 40}, now=131) == {2: 10}
    assert watch.stalled({2}, {2: 50}, {2: -1001}, now=131) == {2: 50}  # nothing committed yet


def test_a_partition_taken_away_and_given_back_starts_a_new_measure() -> None:
    watch = StallWatch(after=30)
    watch.applied(1, 10, now=0)
    assert watch.stalled(set(), {}, {}, now=5) == {}
    assert watch.stalled({1}, {1: 20}, {1: 11}, now=40) == {}  # reassigned at 40
    assert watch.stalled({1}, {1: 20}, {1: 11}, now=71) == {1: 9}


def test_the_guard_thread_ends_the_process_on_a_stall_and_shrugs_off_a_missing_broker() -> None:
    import threading

    from pipeline.worker.stall import EXIT_STALLED, start_guard

    class View:
        calls = 0

        def read(self) -> tuple[set[int], dict[int, int], dict[int, int]]:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("broker away")
            return {0}, {0: 10}, {0: 0}

    exited = threading.Event()
    codes: list[int] = []

    def exit(code: int) -> None:
        codes.append(code)
        exited.set()

    watch = StallWatch(after=0.2)
    start_guard(watch, View(), exit)  # type: ignore[arg-type]
    assert exited.wait(timeout=10)
    assert codes == [EXIT_STALLED]
