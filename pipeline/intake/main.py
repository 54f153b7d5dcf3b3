"""`tollgate intake`: create the topics, serve metrics and health, run the packing loop."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from pipeline.clients.topic_admin import batch_message_bytes, ensure_topics_for
from pipeline.intake.health import serve_intake_health
from pipeline.intake.packer import Bounds
from pipeline.intake.stage import Intake, IntakeConfig
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import schema_ids_from_env


def config_for(settings: Settings, environ: dict[str, str]) -> IntakeConfig:
    topics = Topics.with_prefix(settings.topic_prefix)
    return IntakeConfig(
        bootstrap=settings.kafka_bootstrap,
        group=settings.intake_group,
        source_topic=topics.usage_events,
        batch_topic=topics.usage_batches,
        bounds=Bounds(
            settings.intake_batch_messages,
            settings.intake_batch_bytes,
            settings.intake_linger,
            settings.max_message_bytes,
        ),
        batch_message_bytes=batch_message_bytes(
            settings.intake_batch_bytes, settings.max_message_bytes
        ),
        ids=schema_ids_from_env(environ),
        client_id=f"tollgate-intake-{socket.gethostname()}-{os.getpid()}",
    )


def run(settings: Settings, *, echo: Callable[[str], None]) -> None:
    created = ensure_topics_for(settings)
    if created:
        echo(f"created topics: {', '.join(created)}")
    config = config_for(settings, dict(os.environ))
    bounds = config.bounds
    echo(
        f"intake {config.group}: {config.source_topic} → {config.batch_topic} on "
        f"{config.bootstrap}; batches of at most {bounds.max_messages} messages or "
        f"{bounds.max_bytes} bytes, linger {bounds.linger} s"
    )
    intake = Intake(config)
    serve_intake_health(intake, settings, echo)
    intake.install_signal_handlers()
    intake.run()
