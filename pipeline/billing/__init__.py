"""The pure billing engine: records in, outputs out.

Nothing in this package performs I/O, reads a clock, draws randomness or imports a framework
(faust, confluent_kafka, fastavro, psycopg, prometheus_client). The live worker, the sinks and
`tollgate replay` are shells around it, so they compute the same invoices by construction.
"""
