"""tollgate: usage metering and progressive billing on Kafka.

Importing it does nothing: the engine (compiled or sources) is chosen by each entry point,
`pipeline.tooling.compiled_engine.select`, before anything imports `pipeline.billing`.
"""
