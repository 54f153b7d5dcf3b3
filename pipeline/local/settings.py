"""The local stack's own knobs: ``TOLLGATE_*`` variables that only `tollgate dev ...` reads.

`StackSettings` is `Settings` plus these; the `dev` commands build it, nothing deployed does.
docs/configuration.md lists them in a table of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.kernel.settings import Settings, folder, matching, port, seconds, variable


@dataclass(frozen=True)
class StackSettings(Settings):
    """The settings of the local stack (Kafka from Maven Central, PostgreSQL)."""

    kafka_controller_port: int = field(
        default=19093,
        metadata=variable(
            "KAFKA_CONTROLLER_PORT",
            "Port of the KRaft controller listener of the local broker (127.0.0.1 only).",
            port,
        ),
    )
    kafka_version: str = field(
        default="4.1.1",
        metadata=variable(
            "KAFKA_VERSION",
            "Apache Kafka version the local stack resolves from Maven Central and runs "
            "(deploy/kafka/pom.xml); docker-compose.yml uses the same image tag.",
            matching(r"[0-9]+\.[0-9]+\.[0-9]+", "a version such as 4.1.1"),
        ),
    )
    kafka_heap: str = field(
        default="1g",
        metadata=variable(
            "KAFKA_HEAP",
            "Maximum JVM heap of the local broker (`-Xmx`).",
            matching(r"[0-9]+[mMgG]", "a JVM heap size such as 1g or 768m"),
        ),
    )
    cache_dir: Path = field(
        default=Path(".cache"),
        metadata=variable(
            "CACHE_DIR",
            "Download cache; the broker's jars go to `kafka/<version>/libs` inside it.",
            folder,
        ),
    )
    startup_timeout: float = field(
        default=120.0,
        metadata=variable(
            "STARTUP_TIMEOUT",
            "Seconds `tollgate dev up` waits for each service to answer before giving up.",
            seconds(0, 3600, above=True),
        ),
    )
