"""tollgate: usage metering and progressive billing on Kafka."""

import os as _os

from pipeline.tooling import compiled_engine as _compiled_engine

# Before anything imports the billing engine: the compiled one only while it is current.
ENGINE = _compiled_engine.select(_os.environ.get(_compiled_engine.VARIABLE) or "auto")
