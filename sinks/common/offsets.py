"""Consumer offsets kept in PostgreSQL, next to the rows they account for.

A stored `next_offset` means: every message of that partition before it is in the database.
It is written in the transaction that writes those messages' rows, so a crash anywhere leaves
rows and offsets in step, and a restart resumes exactly after the last committed batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sinks.common.db import Connection


def load_offsets(
    conn: Connection, group: str, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    """Stored next offsets of `partitions` (absent: nothing stored yet)."""
    rows = conn.execute(
        "SELECT kafka_partition, next_offset FROM consumer_offsets"
        " WHERE consumer_group = %s AND topic = %s AND kafka_partition = ANY(%s)",
        (group, topic, list(partitions)),
    ).fetchall()
    return {partition: offset for partition, offset in rows}


def store_offsets(conn: Connection, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Upsert the next offset of each partition, inside the caller's transaction."""
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO consumer_offsets (consumer_group, topic, kafka_partition, next_offset)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (consumer_group, topic, kafka_partition)"
            " DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            [(group, topic, partition, offset) for partition, offset in sorted(offsets.items())],
        )
