"""`tollgate alerts list SUBSCRIPTION`: parsing and wiring only (query in sinks/invoices)."""

from __future__ import annotations

import click

from pipeline.kernel.commands import pass_settings
from pipeline.kernel.settings import Settings


@click.group()
def alerts() -> None:
    """Usage alerts the invoice sink stored (alert.triggered, spec §11)."""


@alerts.command("list")
@click.argument("subscription")
@click.option("--json", "as_json", is_flag=True, help="The stored triggered_alert objects.")
@pass_settings
def alerts_list(settings: Settings, subscription: str, as_json: bool) -> None:
    """A subscription's alerts that fired: thresholds crossed, last value."""
    from sinks.common.db import connect
    from sinks.invoices.alert_queries import list_alerts
    from sinks.render import alerts_table

    with connect(settings.database_url, settings.database_schema, autocommit=True) as conn:
        if as_json:
            for (body,) in conn.execute(
                "SELECT body::text FROM triggered_alerts WHERE external_subscription_id = %s"
                " ORDER BY triggered_at, current_value",
                (subscription,),
            ):
                click.echo(body)
            return
        found = list_alerts(conn, subscription)
    if not found:
        click.echo(f"no alert of subscription {subscription} has fired")
        return
    click.echo(alerts_table(found))
