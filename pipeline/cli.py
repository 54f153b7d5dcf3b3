"""The `tollgate` command: argument parsing and wiring only; the work lives elsewhere.

Settings are read once, in `main`, and reach each command through `@pass_settings`.
A `TollgateError` raised anywhere below becomes one ``Error: ...`` line and exit code 1.
Commands import their module inside the function, so that `tollgate --help` and the light
commands stay fast. Adding a command:

    @main.command()
    @pass_settings
    def replay(settings: Settings) -> None:
        \"\"\"One line for --help.\"\"\"
        from pipeline import replay as job

        job.run(settings, echo=click.echo)
"""

from __future__ import annotations

from typing import Any

import click

from pipeline.kernel.commands import pass_settings
from pipeline.kernel.errors import TollgateError
from pipeline.kernel.settings import Settings
from pipeline.local.settings import StackSettings
from sinks.cli import COMMANDS as SINK_COMMANDS


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TollgateError as exc:
            raise click.ClickException(str(exc)) from None


pass_stack_settings = click.make_pass_decorator(StackSettings)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """tollgate: usage metering and progressive billing on Kafka.

    Configured through TOLLGATE_* environment variables (docs/configuration.md).
    """
    from pipeline.tooling import compiled_engine

    ctx.obj = Settings.from_env()
    compiled_engine.select(ctx.obj.engine)  # before any command imports pipeline.billing


# Local stack


@main.group()
@click.pass_context
def dev(ctx: click.Context) -> None:
    """Local stack without Docker: a Kafka broker and PostgreSQL, in the run folder."""
    ctx.obj = StackSettings.from_env()  # the settings plus the local stack's own knobs


@dev.command("up")
@pass_stack_settings
def dev_up(settings: StackSettings) -> None:
    """Start Kafka and PostgreSQL (or reuse running ones) and wait until they answer."""
    from pipeline.local import devstack

    devstack.up(settings, echo=click.echo)


@dev.command("down")
@pass_stack_settings
def dev_down(settings: StackSettings) -> None:
    """Stop what `dev up` started from this run folder (data is kept)."""
    from pipeline.local import devstack

    devstack.down(settings, echo=click.echo)


@dev.command("status")
@pass_stack_settings
def dev_status(settings: StackSettings) -> None:
    """Print each service: up or down, address, pid, log."""
    from pipeline.local import devstack

    for service in devstack.status(settings):
        click.echo(service.line())
    click.echo(f"{'run folder':<17}{settings.run_dir}")


@dev.command("reset")
@pass_stack_settings
def dev_reset(settings: StackSettings) -> None:
    """Delete topics and consumer groups, worker state and table rows, for a clean run."""
    from pipeline.local import devstack

    devstack.reset(settings, echo=click.echo)


# Jobs


@main.command()
@click.argument("timeline", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Records per micro-batch, as the stream app groups them; the output does not change.",
)
@pass_settings
def replay(settings: Settings, timeline: str, batch_size: int) -> None:
    """Print the webhook bodies a timeline (spec §9) produces, one JSON object per line.

    Bills with the worker's engine settings (TOLLGATE_ALLOWED_LATENESS,
    TOLLGATE_DEDUPE_WINDOW_DAYS)."""
    import sys

    from pipeline.billing.context import EngineSettings
    from pipeline.replay import run_file

    code = run_file(
        timeline,
        batch_size=batch_size,
        out=sys.stdout,
        err=sys.stderr,
        settings=EngineSettings.of(settings.allowed_lateness, settings.dedupe_window_days),
    )
    sys.exit(code)


@main.command()
@click.option(
    "--clock",
    type=click.Choice(["wall", "records"]),
    default="wall",
    show_default=True,
    help="`records`: no wall-clock ticker, only record timestamps move the billing clock "
    "(backfills, replays of history, tests).",
)
@click.option("--loglevel", default="warning", show_default=True, help="Faust's log level.")
@pass_settings
def worker(settings: Settings, clock: str, loglevel: str) -> None:
    """Run the stream worker: usage events in, invoices and webhooks out."""
    from pipeline.worker import main as job

    job.run(settings, clock=clock, loglevel=loglevel, echo=click.echo)


@main.command()
@pass_settings
def intake(settings: Settings) -> None:
    """Run the intake: usage-events packed into usage batches for the worker (stateless)."""
    import logging

    from pipeline.intake import main as job

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    job.run(settings, echo=click.echo)  # a failed delivery ends it: restart resumes from commits


# Producing usage and reading outputs


@main.group()
def catalog() -> None:
    """Catalogue definitions: billable metrics, plans, customers and subscriptions."""


@catalog.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--at", "at", metavar="ISO", help="Instant the definitions apply at [default: now].")
@click.option("--check", is_flag=True, help="Only validate the file by itself; publish nothing.")
@pass_settings
def catalog_apply(settings: Settings, file: str, at: str | None, check: bool) -> None:
    """Validate a catalogue file (YAML or JSON, Lago shapes) whole, then publish it."""
    import os

    from pipeline.clients import catalog_apply as job
    from pipeline.clients.producer import schema_ids

    ids = schema_ids(os.environ)
    job.run(settings, file, at=at, ids=ids, check_only=check, echo=click.echo)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--rate", metavar="N/s", help="Send at most N records a second (demos, benchmarks).")
@click.option(
    "--ticks/--no-ticks",
    default=True,
    show_default=True,
    help="Tick every partition before each clock advance and at the end, so that the live "
    "output equals `tollgate replay`'s.",
)
@click.option(
    "--format",
    "encoding",
    type=click.Choice(["avro", "json"]),
    default="avro",
    show_default=True,
    help="Encoding of the usage events.",
)
@pass_settings
def feed(settings: Settings, file: str, rate: str | None, ticks: bool, encoding: str) -> None:
    """Publish a timeline (spec §9) or plain Lago events (JSON Lines) to the usage-events topic."""
    import os
    import sys

    from pipeline.clients import feed as job
    from pipeline.clients.producer import schema_ids

    ids = schema_ids(os.environ)
    avro = encoding == "avro"
    job.run(settings, file, err=sys.stderr, rate=rate, ticks=ticks, avro=avro, ids=ids)


@main.command()
@click.option("--from-beginning", is_flag=True, help="Start at the oldest output kept.")
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop when every partition has been read to its end and no message came for this "
    "many seconds [default: run until Ctrl-C].",
)
@click.option(
    "--group",
    metavar="G",
    help="Consumer group: commit what was printed and go on from there the next time "
    "[default: a throw-away group, no commits].",
)
@pass_settings
def outputs(
    settings: Settings, from_beginning: bool, idle_exit: float | None, group: str | None
) -> None:
    """Print the webhook bodies on the outputs topic, one JSON object per line."""
    import os
    import sys

    from pipeline.clients import outputs as job
    from pipeline.clients.producer import schema_ids

    job.run(
        settings,
        out=sys.stdout,
        err=sys.stderr,
        idle_exit=idle_exit,
        from_beginning=from_beginning,
        group=group,
        ids=schema_ids(os.environ),
    )


# The billing engine: compiled or from source (pipeline/tooling/compiled_engine.py)


@main.group()
def engine() -> None:
    """The mypyc-compiled billing engine: build, remove, or see which one runs."""


@engine.command("build")
@click.option("--force", is_flag=True, help="Compile even if the build matches the sources.")
def engine_build(force: bool) -> None:
    """Compile pipeline/billing in place (needs the dev extra and gcc)."""
    from pipeline.tooling import compiled_engine

    compiled_engine.build(click.echo, force=force)


@engine.command("clean")
def engine_clean() -> None:
    """Remove the compiled modules: the engine runs from its sources."""
    from pipeline.tooling import compiled_engine

    click.echo(f"removed {compiled_engine.clean()} compiled modules")


@engine.command("status")
def engine_status() -> None:
    """Which engine loads here, and whether the compiled one matches the sources."""
    from pipeline.tooling import compiled_engine

    try:
        running = compiled_engine.in_use()
    except ImportError:  # TOLLGATE_ENGINE=compiled without a current build
        running = "none"
    click.echo(f"build: {compiled_engine.build_state()}")
    click.echo(f"{compiled_engine.VARIABLE}: {Settings.from_env().engine}")
    click.echo(f"running: {running}")


# Sinks: `tollgate db`, `sink`, `webhooks`, `invoices` (sinks/cli.py)

for _command in SINK_COMMANDS:
    main.add_command(_command)


@click.command("pay")
@click.argument("invoice_id")
@click.option(
    "--status",
    type=click.Choice(["succeeded", "failed", "pending"]),
    default="succeeded",
    show_default=True,
    help="The invoice's new payment status.",
)
@click.option(
    "--subscription",
    metavar="ID",
    help="External subscription id of the invoice [default: looked up in the invoice sink's "
    "database].",
)
@click.option("--at", "at", metavar="ISO", help="Instant the payment applies at [default: now].")
@pass_settings
def invoices_pay(
    settings: Settings, invoice_id: str, status: str, subscription: str | None, at: str | None
) -> None:
    """Publish a payment status change of an invoice (spec §12), keyed by its subscription."""
    import os

    from pipeline.clients import payments
    from pipeline.clients.producer import schema_ids

    if subscription is None:
        subscription = _invoice_subscription(settings, invoice_id)
    payment = payments.invoice_payment(invoice_id, subscription, status)
    payments.run(settings, payment, at=at, ids=schema_ids(os.environ), echo=click.echo)


def _invoice_subscription(settings: Settings, invoice_id: str) -> str:
    from sinks.common.db import connect
    from sinks.invoices.queries import find_invoices

    with connect(settings.database_url, settings.database_schema, autocommit=True) as conn:
        found = find_invoices(conn, invoice_id)
    subscriptions = {i.invoice.external_subscription_id for i in found}
    if len(subscriptions) != 1 or None in subscriptions:
        raise TollgateError(
            f"no stored invoice {invoice_id!r} with one subscription: pass --subscription"
        )
    (subscription,) = subscriptions
    assert subscription is not None
    return subscription


for _group in SINK_COMMANDS:
    if _group.name == "invoices" and isinstance(_group, click.Group):
        _group.add_command(invoices_pay)


@main.command()
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=40,
    show_default=True,
    help="How long to send demo traffic.",
)
@click.option("--subscriptions", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=2000,
    show_default=True,
    help="Demo events per second.",
)
@pass_settings
def demo(settings: Settings, seconds: float, subscriptions: int, rate: float) -> None:
    """The whole pipeline live on the local stack (what `make up` runs)."""
    from pipeline.local import demo as job

    job.run(settings, seconds=seconds, subscriptions=subscriptions, rate=rate, echo=click.echo)


if __name__ == "__main__":
    main()
