"""`tollgate alerts list SUBSCRIPTION`: parsing and wiring only (sinks/alert_queries.py)."""

from __future__ import annotations

import click

from pipeline.settings import Settings

pass_settings = click.make_pass_decorator(Settings)


@click.group()
def alerts() -> None:
    """Usage alerts the invoice sink stored (alert.triggered, spec §11)."""


@alerts.command("list")
@click.argument("subscription")
@click.option("--json", "as_json", is_flag=True, help="The stored triggered_alert objects.")
@pass_settings
def alerts_list(settings: Settings, subscription: str, as_json: bool) -> None:
    """A subscription's alerts that fired: thresholds crossed, last value."""
    from sinks.alert_queries import alerts_table, list_alerts
    from sinks.db import connect

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
