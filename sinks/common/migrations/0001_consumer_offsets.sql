-- Where each sink's consumer group is in each partition of the topic it reads. The row is
-- written in the transaction that writes the rows of the same messages, so a stored offset
-- always means "every message before it is in the database" (exactly once in effect).
CREATE TABLE consumer_offsets (
    consumer_group  text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL CHECK (kafka_partition >= 0),
    next_offset     bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);
