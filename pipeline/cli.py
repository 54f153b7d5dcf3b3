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

from pipeline.errors import TollgateError
from pipeline.settings import Settings


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TollgateError as exc:
            raise click.ClickException(str(exc)) from None


pass_settings = click.make_pass_decorator(Settings)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """tollgate: usage metering and progressive billing on Kafka.

    Configured through TOLLGATE_* environment variables (docs/configuration.md).
    """
    ctx.obj = Settings.from_env()


# Local stack


@main.group()
def dev() -> None:
    """Local stack without Docker: a Kafka broker and PostgreSQL, in the run folder."""


@dev.command("up")
@pass_settings
def dev_up(settings: Settings) -> None:
    """Start Kafka and PostgreSQL (or reuse running ones) and wait until they answer."""
    from pipeline import devstack

    devstack.up(settings, echo=click.echo)


@dev.command("down")
@pass_settings
def dev_down(settings: Settings) -> None:
    """Stop what `dev up` started from this run folder (data is kept)."""
    from pipeline import devstack

    devstack.down(settings, echo=click.echo)


@dev.command("status")
@pass_settings
def dev_status(settings: Settings) -> None:
    """Print each service: up or down, address, pid, log."""
    from pipeline import devstack

    for service in devstack.status(settings):
        click.echo(service.line())
    click.echo(f"{'run folder':<17}{settings.run_dir}")


@dev.command("reset")
@pass_settings
def dev_reset(settings: Settings) -> None:
    """Delete topics and consumer groups, worker state and table rows, for a clean run."""
    from pipeline import devstack

    devstack.reset(settings, echo=click.echo)


# Jobs


@main.command()
@pass_settings
def smoke(settings: Settings) -> None:
    """Send one usage event through Kafka into PostgreSQL and print it."""
    from pipeline import smoke as job

    job.run(settings, echo=click.echo)


@main.command()
@click.argument("timeline", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Records per micro-batch, as the stream app groups them; the output does not change.",
)
def replay(timeline: str, batch_size: int) -> None:
    """Print the webhook bodies a timeline (spec §9) produces, one JSON object per line."""
    import sys

    from pipeline.replay import run_file

    sys.exit(run_file(timeline, batch_size=batch_size, out=sys.stdout, err=sys.stderr))
