"""The sinks' commands (`tollgate db`, `sink`; `webhooks` and `invoices` in cli_admin.py,
`alerts` in cli_alerts.py):
parsing and wiring only.

They are registered on the `tollgate` group in pipeline/cli.py. As there, each command imports
its modules inside the function so that `tollgate --help` stays fast.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import click

from pipeline.kernel.commands import pass_settings
from pipeline.kernel.settings import Settings
from sinks.cli_admin import invoices, webhooks
from sinks.cli_alerts import alerts

if TYPE_CHECKING:  # the command bodies import them, to keep `tollgate --help` fast
    from sinks.common.consumer import LoopConfig
    from sinks.common.db import Database
    from sinks.common.runtime import Activity

F = TypeVar("F", bound=Callable[..., Any])


# Database


@click.group()
def db() -> None:
    """The sinks' PostgreSQL schema (TOLLGATE_DATABASE_SCHEMA)."""


@db.command("migrate")
@pass_settings
def db_migrate(settings: Settings) -> None:
    """Apply the migrations not applied yet (idempotent), printing each one."""
    from sinks.common.migrate import migrate

    migrate(settings.database_url, settings.database_schema, echo=click.echo)


# Sinks


def _sink_options(default_group: str) -> Callable[[F], F]:
    def decorate(command: F) -> F:
        options = [
            click.option("--batch-size", type=click.IntRange(1, 100_000), default=None,
                         help="Outputs per transaction [default: TOLLGATE_SINK_BATCH_SIZE]."),
            click.option("--idle-exit", type=click.FloatRange(min=0, min_open=True), default=None,
                         metavar="SECONDS", help="Exit after this long without work."),
            click.option("--group", default=default_group, show_default=True,
                         help="Kafka consumer group (offsets are stored per group)."),
            click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
                         help="Port of /metrics, 0 for none [default: TOLLGATE_METRICS_PORT]."),
        ]  # fmt: skip
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@click.group()
def sink() -> None:
    """Long-running sinks that read the outputs topic (one consumer group per sink kind)."""


@sink.command("invoices")
@_sink_options("tollgate-sink-invoices")
@pass_settings
def sink_invoices(settings: Settings, /, **options: Any) -> None:
    """Store invoice.created and credit_note.created outputs in PostgreSQL."""
    from sinks.common.runtime import wall_clock
    from sinks.invoices import sink as invoice_sink

    started = _start(settings, options, "invoices")
    try:
        stats = invoice_sink.run(
            started.loop,
            started.db,
            stop=started.stop,
            activity=started.activity,
            clock=wall_clock,
        )
    finally:
        started.db.close()
    click.echo(
        f"sink invoices: {stats.consumed} outputs in {stats.batches} batches; inserted "
        f"{_counts(stats.inserted)}; duplicates skipped {_counts(stats.duplicates)}; "
        f"dead letters {stats.dead_letters}",
        err=True,
    )


@sink.command("webhooks")
@_sink_options("tollgate-sink-webhooks")
@click.option("--intake/--no-intake", default=True, show_default=True,
              help="Read the outputs topic into the outbox.")  # fmt: skip
@click.option("--delivery/--no-delivery", default=True, show_default=True,
              help="POST due outbox rows to the endpoints.")  # fmt: skip
@pass_settings
def sink_webhooks(settings: Settings, /, intake: bool, delivery: bool, **options: Any) -> None:
    """Queue each output for every matching endpoint, and deliver them signed, with retries."""
    from sinks.common.runtime import wall_clock
    from sinks.webhooks import sink as webhook_sink

    if not (intake or delivery):
        raise click.UsageError("--no-intake and --no-delivery leave nothing to do")
    started = _start(settings, options, "webhooks")
    started.db.close()  # the loops open their own connections
    result = webhook_sink.run(
        settings,
        started.loop if intake else None,
        deliveries=delivery,
        stop=started.stop,
        activity=started.activity,
        clock=wall_clock,
    )
    if result.intake is not None:
        click.echo(
            f"sink webhooks: {result.intake.consumed} outputs read; queued "
            f"{_counts(result.intake.inserted)}; duplicates skipped "
            f"{_counts(result.intake.duplicates)}; dead letters {result.intake.dead_letters}",
            err=True,
        )
    if result.delivery is not None:
        d = result.delivery
        click.echo(
            f"sink webhooks: {d.attempts} attempts, {d.delivered} delivered, {d.failed} failed",
            err=True,
        )


class _Started(NamedTuple):
    stop: threading.Event
    activity: Activity
    db: Database
    loop: LoopConfig


def _start(settings: Settings, options: dict[str, Any], sink_name: str) -> _Started:
    """Logging, signals, metrics; refuses to run on a schema with migrations pending."""
    import os

    from pipeline.kernel.topics import Topics
    from pipeline.wire import schema_ids_from_env
    from sinks.common import runtime
    from sinks.common.consumer import LoopConfig
    from sinks.common.db import Database
    from sinks.common.health import database_answers, serve_sink_health
    from sinks.common.migrate import MigrationError, applied, available

    runtime.configure_logging()
    stop = threading.Event()
    runtime.stop_on_signals(stop)
    database = Database(settings.database_url, settings.database_schema, stop=stop, sink=sink_name)
    done = database.transaction(applied)
    missing = [m for m in available() if m.version not in done]
    if missing:
        raise MigrationError(
            f"schema {settings.database_schema} lacks {len(missing)} migration(s): "
            "run `tollgate db migrate` first"
        )
    port = settings.metrics_port if options["metrics_port"] is None else options["metrics_port"]
    serve_sink_health(
        settings.metrics_host,
        port,
        database_answers(settings.database_url, settings.database_schema),
    )
    topics = Topics.with_prefix(settings.topic_prefix)
    loop = LoopConfig(
        bootstrap=settings.kafka_bootstrap,
        topic=topics.outputs,
        dead_letter_topic=topics.dead_letters,
        group=options["group"],
        batch_size=options["batch_size"] or settings.sink_batch_size,
        batch_wait=settings.sink_batch_wait,
        ids=schema_ids_from_env(dict(os.environ)),
    )
    return _Started(stop, runtime.Activity(options["idle_exit"]), database, loop)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {n}" for table, n in sorted(counts.items())) or "nothing"


COMMANDS = (db, sink, webhooks, invoices, alerts)
