"""The `alerts:` list of a catalogue file: each alert checked with the engine's own rules.

An alert on a subscription of the same file is checked whole (its plan charges the metric a
metric type names; one alert per type and metric). An alert on a subscription defined
elsewhere is checked for its shape only: the worker refuses it (`invalid_definition`) if the
subscription does not exist or the rest does not hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.billing.alerts import AlertDefinition, AlertDeletion, check_alert, parse_alert
from pipeline.billing.catalog import Catalog, parse_subscription

if TYPE_CHECKING:
    from pipeline.clients.catalog_file import Definition


class FileAlerts:
    """What a file's alerts are checked against: its subscriptions' plans and earlier alerts."""

    def __init__(self) -> None:
        self.plans: dict[str, str] = {}  # external subscription id → plan code
        self.alerts: dict[str, dict[str, AlertDefinition]] = {}  # by subscription, by code

    def note(self, item: Definition) -> None:
        """A definition the file made: a subscription's plan is what its alerts need."""
        if item.kind == "subscription":
            subscription = parse_subscription(item.payload)
            self.plans[subscription.external_id] = subscription.plan_code

    def check(self, payload: dict[str, Any], catalog: Catalog) -> None:
        """`DefinitionError` if the alert is refused."""
        alert = parse_alert(payload)
        if isinstance(alert, AlertDeletion):
            return
        plan_code = self.plans.get(alert.external_subscription_id)
        plan = catalog.plans.get(plan_code) if plan_code is not None else None
        others = self.alerts.setdefault(alert.external_subscription_id, {})
        check_alert(alert, plan, others)
        others[alert.code] = alert
