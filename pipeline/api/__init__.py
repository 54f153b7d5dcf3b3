"""The HTTP API every worker serves (spec §13): Lago's paths, so that Lago's SDKs work against it.

Writes (events, alerts, invoice payment status) are published to the usage-events topic and
answered once the broker has them; billing outcomes still arrive as webhooks. Reads (usage,
entitlements, alerts, access) are answered from the in-memory state of the worker that owns the
subscription's partition; a request that lands elsewhere is forwarded there. The package knows
nothing of Faust: the worker hands in a `Directory` (directory.py) that says where a
subscription's state lives.
"""
