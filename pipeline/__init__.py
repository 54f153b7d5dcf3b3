"""tollgate: usage metering and progressive billing on Kafka."""
