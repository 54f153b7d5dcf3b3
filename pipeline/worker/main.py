"""`tollgate worker`: create the topics, serve metrics and health, run the Faust worker."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable

from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.worker.app import build_app
from pipeline.worker.health import serve_worker_health
from pipeline.worker.stall import BrokerView, start_guard

# Young-generation collections every 50,000 allocations instead of 700: the worker holds every
# subscription's state (hundreds of thousands of long-lived objects) and allocates a few dicts
# per event; the default thresholds cost ≈ 40 % of the per-event time with 25,000 states
# (docs/decisions.md). Restored partitions are frozen out of the collector's scans (runner.py).
GC_THRESHOLDS = (50_000, 20, 10)


def run(settings: Settings, *, clock: str, loglevel: str, echo: Callable[[str], None]) -> None:
    import faust

    from pipeline.clients.topic_admin import ensure_topics_for
    from pipeline.tooling.compiled_engine import in_use

    gc.set_threshold(*GC_THRESHOLDS)
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
    keys = len(settings.api_key_list)
    echo(
        f"HTTP API on {settings.api_host}:{settings.api_port} (reached by the other workers at "
        f"{settings.api_base_url}); {keys} API key{'' if keys == 1 else 's'} configured"
        + ("" if keys else ": every request is refused until TOLLGATE_API_KEYS is set")
    )
    start_guard(
        app.tollgate_watch,  # type: ignore[attr-defined]
        BrokerView(
            settings.kafka_bootstrap,
            settings.worker_app_id,
            app.conf.broker_client_id,
            Topics.with_prefix(settings.topic_prefix).usage_batches,
        ),
    )
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None  # its start-up spinner leaves the root logger at DEBUG (~9 % CPU)
    worker.execute_from_commandline()
