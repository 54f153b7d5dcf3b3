"""The intake's packing, without Kafka: bounds, continuity of offsets, oversized messages."""

from __future__ import annotations

from pipeline.intake.packer import ORIGINAL_PREFIX_BYTES, Bounds, Packer
from pipeline.wire import decode_usage_batch, encode_framed_batch, read_frames

BOUNDS = Bounds(max_messages=3, max_bytes=10_000, linger=0.5, max_message_bytes=1000)


def test_a_batch_closes_at_its_message_bound_and_the_next_continues_from_it():
    packer = Packer(BOUNDS)
    packer.start(2, 40)
    closed = [packer.add(2, offset, 1000 + offset, b"k", b"v", now=0.0) for offset in (41, 42, 44)]
    assert closed[:2] == [None, None]
    first = closed[2]
    assert first is not None
    assert (first.partition, first.from_offset, first.last_offset, first.count) == (2, 40, 44, 3)
    assert [m.offset for m in read_frames(first.frames, first.count)] == [41, 42, 44]
    packer.add(2, 45, 0, None, None, now=1.0)
    (second,) = packer.drain()
    assert (second.from_offset, second.last_offset) == (45, 45)


def test_a_batch_closes_at_its_byte_bound():
    packer = Packer(Bounds(max_messages=100, max_bytes=300, linger=1, max_message_bytes=1000))
    assert packer.add(0, 0, 0, None, b"x" * 200, now=0) is None
    batch = packer.add(0, 1, 0, None, b"x" * 200, now=0)
    assert batch is not None and batch.count == 2


def test_batches_fall_due_after_the_linger_per_partition():
    packer = Packer(BOUNDS)
    packer.add(0, 0, 0, None, b"a", now=10.0)
    packer.add(1, 0, 0, None, b"b", now=10.3)
    assert packer.next_deadline() == 10.5
    assert packer.due(10.4) == []
    assert [b.partition for b in packer.due(10.5)] == [0]
    assert [b.partition for b in packer.due(10.8)] == [1]
    assert packer.next_deadline() is None


def test_an_oversized_message_travels_cut_with_its_original_size():
    packer = Packer(Bounds(max_messages=1, max_bytes=10 << 20, linger=1, max_message_bytes=1000))
    huge = b"{" + b" " * (2 * ORIGINAL_PREFIX_BYTES)
    batch = packer.add(0, 7, 0, b"k", huge, now=0)
    assert batch is not None
    (message,) = read_frames(batch.frames, 1)
    assert message.size == len(huge) and message.value == huge[:ORIGINAL_PREFIX_BYTES]


def test_a_revoked_partition_drops_what_it_packed_and_restarts_where_told():
    packer = Packer(BOUNDS)
    packer.add(3, 5, 0, None, b"a", now=0)
    packer.stop(3)
    assert packer.drain() == []
    packer.start(3, 5)
    packer.add(3, 5, 0, None, b"a", now=0)
    (batch,) = packer.drain()
    assert batch.from_offset == 5


def test_a_packed_batch_round_trips_through_the_wire():
    packer = Packer(BOUNDS)
    for offset in range(3):
        batch = packer.add(1, offset, 1_700_000_000_000 + offset, b"sub", b"{}", now=0)
    assert batch is not None
    data = encode_framed_batch("events", 1, batch.from_offset, batch.count, batch.frames)
    decoded = decode_usage_batch(data)
    assert decoded.source_partition == 1 and decoded.last_offset == 2
    assert [(m.offset, m.key, m.value, m.size) for m in decoded.messages] == [
        (0, b"sub", b"{}", 2),
        (1, b"sub", b"{}", 2),
        (2, b"sub", b"{}", 2),
    ]
