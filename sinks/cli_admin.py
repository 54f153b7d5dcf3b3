"""`tollgate webhooks ...` and `tollgate invoices ...`: parsing and wiring only (the queries
are in sinks/webhooks/admin.py and sinks/invoices/queries.py, the tables in sinks/render.py)."""

from __future__ import annotations

from typing import Any

import click

from pipeline.kernel.commands import pass_settings
from pipeline.kernel.settings import Settings

# Webhook endpoints and deliveries


@click.group()
def webhooks() -> None:
    """Webhook endpoints and the outbox of deliveries."""


@webhooks.command("add")
@click.argument("url")
@click.option("--events", default=None, metavar="TYPE[,TYPE...]",
              help="Webhook types to send (default: every type).")  # fmt: skip
@click.option("--lago-signature", is_flag=True,
              help="Also send Lago's X-Lago-Signature header (HMAC of the body).")  # fmt: skip
@pass_settings
def webhooks_add(settings: Settings, url: str, events: str | None, lago_signature: bool) -> None:
    """Register an endpoint; prints its id and its signing secret."""
    import secrets

    from sinks.webhooks import admin as webhook_admin
    from sinks.webhooks.signing import SECRET_BYTES, new_secret

    types = webhook_admin.parse_event_types(events)
    secret = new_secret(secrets.token_bytes(SECRET_BYTES))
    with _connect(settings) as conn:
        endpoint = webhook_admin.add_endpoint(
            conn, url, secret=secret, event_types=types, lago_signature=lago_signature
        )
    click.echo(f"id      {endpoint.id}")
    click.echo(f"url     {endpoint.url}")
    click.echo(f"events  {','.join(types) if types else 'all'}")
    click.echo(f"secret  {endpoint.secret}")


@webhooks.command("list")
@pass_settings
def webhooks_list(settings: Settings) -> None:
    """Every endpoint with its delivery counts."""
    from sinks import render
    from sinks.webhooks import admin as webhook_admin

    with _connect(settings) as conn:
        click.echo(render.endpoints_table(webhook_admin.list_endpoints(conn)))


@webhooks.command("deliveries")
@click.option("--failed", is_flag=True, help="Only deliveries that used every attempt.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_settings
def webhooks_deliveries(settings: Settings, failed: bool, limit: int) -> None:
    """The latest deliveries, newest first."""
    from sinks import render
    from sinks.webhooks import admin as webhook_admin

    with _connect(settings) as conn:
        rows = webhook_admin.list_deliveries(conn, failed_only=failed, limit=limit)
    click.echo(render.deliveries_table(rows))


@webhooks.command("retry")
@click.argument("delivery_id", type=int, required=False)
@click.option("--all-failed", is_flag=True, help="Every failed delivery.")
@pass_settings
def webhooks_retry(settings: Settings, delivery_id: int | None, all_failed: bool) -> None:
    """Make a delivery (or every failed one) pending and due now."""
    from sinks.common.runtime import wall_clock
    from sinks.webhooks import admin as webhook_admin

    if (delivery_id is None) == (not all_failed):
        raise click.UsageError("give a delivery ID or --all-failed (not both)")
    with _connect(settings) as conn:
        if delivery_id is not None:
            count = webhook_admin.retry_delivery(conn, delivery_id, now=wall_clock())
        else:
            count = webhook_admin.retry_failed(conn, now=wall_clock())
    click.echo(f"{count} deliver{'y' if count == 1 else 'ies'} due now")


@webhooks.command("rotate-secret")
@click.argument("endpoint_id", type=int)
@pass_settings
def webhooks_rotate_secret(settings: Settings, endpoint_id: int) -> None:
    """Give an endpoint a new secret; prints it. The old one also signs for 24 hours."""
    import secrets

    from sinks.common.runtime import wall_clock
    from sinks.webhooks import admin as webhook_admin
    from sinks.webhooks.signing import SECRET_BYTES, new_secret

    secret = new_secret(secrets.token_bytes(SECRET_BYTES))
    with _connect(settings) as conn:
        webhook_admin.rotate_secret(conn, endpoint_id, secret=secret, now=wall_clock())
    click.echo(f"secret  {secret}")


@webhooks.command("remove")
@click.argument("endpoint_id", type=int)
@pass_settings
def webhooks_remove(settings: Settings, endpoint_id: int) -> None:
    """Delete an endpoint and its deliveries: nothing more is sent to it."""
    from sinks.webhooks import admin as webhook_admin

    with _connect(settings) as conn:
        url, deliveries = webhook_admin.remove_endpoint(conn, endpoint_id)
    click.echo(f"removed endpoint {endpoint_id} ({url}) and {deliveries} deliveries")


@webhooks.command("prune")
@click.option("--older-than-days", type=click.FloatRange(min=0), default=30, show_default=True,
              help="Delete deliveries delivered longer ago than this.")  # fmt: skip
@pass_settings
def webhooks_prune(settings: Settings, older_than_days: float) -> None:
    """Delete old delivered deliveries from the outbox (pending and failed ones stay)."""
    from datetime import timedelta

    from sinks.common.runtime import wall_clock
    from sinks.webhooks import admin as webhook_admin

    before = wall_clock() - timedelta(days=older_than_days)
    with _connect(settings) as conn:
        count = webhook_admin.prune_delivered(conn, before=before)
    noun = "delivery" if count == 1 else "deliveries"
    click.echo(f"deleted {count} {noun} delivered before {before.isoformat(timespec='seconds')}")


# Invoices


@click.group()
def invoices() -> None:
    """Invoices the invoice sink stored."""


@invoices.command("list")
@click.option("--customer", default=None, help="External customer id.")
@click.option("--subscription", default=None, help="External subscription id.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The stored invoice objects, one a line.")
@pass_settings
def invoices_list(
    settings: Settings, customer: str | None, subscription: str | None, limit: int, as_json: bool
) -> None:
    """The latest invoices, newest first."""
    from sinks import render
    from sinks.invoices.queries import list_invoices

    with _connect(settings) as conn:
        found = list_invoices(conn, customer=customer, subscription=subscription, limit=limit)
    if as_json:
        for invoice in found:
            click.echo(invoice.body)
    else:
        click.echo(render.invoices_table(found))


@invoices.command("show")
@click.argument("number_or_id")
@click.option("--json", "as_json", is_flag=True, help="The stored invoice object.")
@pass_settings
def invoices_show(settings: Settings, number_or_id: str, as_json: bool) -> None:
    """One invoice by number or lago_id: totals, fees, thresholds, credit notes."""
    from sinks import render
    from sinks.invoices.queries import find_invoices

    with _connect(settings) as conn:
        found = find_invoices(conn, number_or_id)
    if not found:
        raise click.ClickException(f"no invoice with number or id {number_or_id}")
    for n, detail in enumerate(found):
        if as_json:
            click.echo(detail.invoice.body)
        else:
            click.echo(("\n" if n else "") + render.invoice_detail(detail))


def _connect(settings: Settings) -> Any:
    from sinks.common.db import connect

    return connect(settings.database_url, settings.database_schema, autocommit=True)
