"""`tollgate worker`: create the topics, serve metrics and health, run the Faust worker."""

from __future__ import annotations

import os
from collections.abc import Callable

from pipeline.settings import Settings
from pipeline.topics import Topics
from pipeline.worker.app import build_app
from pipeline.worker.health import serve_worker_health
from pipeline.worker.stall import BrokerView, start_guard


def run(settings: Settings, *, clock: str, loglevel: str, echo: Callable[[str], None]) -> None:
    import faust

    from pipeline.compiled_engine import in_use
    from pipeline.topic_admin import ensure_topics_for

    (settings.run_dir / "state").mkdir(parents=True, exist_ok=True)
    created = ensure_topics_for(settings)
    if created:
        echo(f"created topics: {', '.join(created)}")
    app = build_app(settings, clock=clock, environ=dict(os.environ))
    serve_worker_health(app, settings, echo)
    echo(
        f"worker {settings.worker_app_id}: {settings.kafka_bootstrap}, clock={clock}, "
        f"store={settings.worker_store}, engine={in_use()}"
    )
    start_guard(
        app.tollgate_watch,  # type: ignore[attr-defined]
        BrokerView(
            settings.kafka_bootstrap,
            settings.worker_app_id,
            app.conf.broker_client_id,
            Topics.with_prefix(settings.topic_prefix).usage_events,
        ),
    )
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None  # its start-up spinner leaves the root logger at DEBUG (~9 % CPU)
    worker.execute_from_commandline()
