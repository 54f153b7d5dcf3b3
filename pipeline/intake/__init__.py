"""`tollgate intake`: the stateless stage in front of the worker.

It reads the usage-events topic with confluent-kafka (librdkafka does the per-message work in C)
and packs each partition's messages, undecoded, into usage batches on the internal
usage-batches topic, same partition number. The worker then pays Faust's per-message cost once
per batch instead of once per event (docs/decisions.md). No billing happens here.
"""
