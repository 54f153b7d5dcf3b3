"""The §13 endpoints: each reads a request, asks the engine's queries or publishes records, and
answers with Lago's shapes.

Reads run on the worker owning the subscription's partition (`Directory.locate`); they are
synchronous over the in-memory ledger, so an answer never sees half of a batch. Writes are
published from whichever worker the request reached, except where the owner's state decides
(alerts are checked as the engine will check them; an invoice is found among the unpaid ones).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from pipeline.api.bodies import list_at, object_at, read_json
from pipeline.api.directory import Directory, Here, Nowhere, There
from pipeline.api.errors import ApiError, invalid, not_found, unavailable
from pipeline.api.events import MAX_BATCH, EventRefused, checked, event_object
from pipeline.api.forwarding import Forwarder, forwarded
from pipeline.api.publishing import Publisher
from pipeline.billing import queries
from pipeline.billing.engine import Ledger
from pipeline.billing.entitlements import payment_status_problem
from pipeline.wire import (
    AlertRecord,
    PaymentRecord,
    SchemaIds,
    WireError,
    dumps,
    encode_alert_record,
    encode_payment_record,
)

READ_TIMEOUT = 10.0
"""Seconds a client has to send its request body."""


def answer(body: Any, status: int = 200) -> web.Response:
    """JSON with exact numbers (`Decimal` as its digits)."""
    return web.Response(text=dumps(body), status=status, content_type="application/json")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Handlers:
    def __init__(
        self,
        directory: Directory,
        publisher: Publisher,
        forwarder: Forwarder,
        ids: SchemaIds,
        *,
        max_body_bytes: int,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.directory, self.publisher, self.forwarder = directory, publisher, forwarder
        self.ids, self.max_body_bytes, self.clock = ids, max_body_bytes, clock

    def routes(self) -> list[web.RouteDef]:
        sub = "/api/v1/subscriptions/{external_id}"
        return [
            web.post("/api/v1/events", self.create_event),
            web.post("/api/v1/events/batch", self.create_events),
            web.get(f"{sub}/lifetime_usage", self.lifetime_usage),
            web.get("/api/v1/customers/{external_customer_id}/current_usage", self.current_usage),
            web.get(f"{sub}/entitlements", self.entitlements),
            web.get(f"{sub}/alerts", self.alerts),
            web.post(f"{sub}/alerts", self.create_alerts),
            web.delete(f"{sub}/alerts", self.delete_alerts),
            web.get(f"{sub}/access", self.access),
            web.put("/api/v1/invoices/{lago_id}", self.update_invoice),
        ]

    async def _body(self, request: web.Request) -> Any:
        return await read_json(request, max_bytes=self.max_body_bytes, timeout=READ_TIMEOUT)

    # -- events -------------------------------------------------------------------------------

    async def create_event(self, request: web.Request) -> web.Response:
        event = object_at(await self._body(request), "event")
        try:
            key, value, read = checked(event, self.ids)
        except EventRefused as refused:
            raise invalid(refused.details) from None
        now = self.clock()
        await self.publisher.publish([(key, value)], now)
        return answer({"event": event_object(read, now)})

    async def create_events(self, request: web.Request) -> web.Response:
        events = list_at(await self._body(request), "events")
        if not events:
            raise invalid({"events": ["must not be empty"]})
        if len(events) > MAX_BATCH:
            raise invalid({"events": [f"too many events: at most {MAX_BATCH} per batch"]})
        records, read, problems = [], [], {}
        for index, event in enumerate(events):
            try:
                key, value, one = checked(event, self.ids)
            except EventRefused as refused:
                problems[str(index)] = refused.details
                continue
            records.append((key, value))
            read.append(one)
        if problems:
            raise invalid(problems)  # nothing is published
        now = self.clock()
        await self.publisher.publish(records, now)
        return answer({"events": [event_object(one, now) for one in read]})

    # -- reads --------------------------------------------------------------------------------

    async def _at_owner(
        self, request: web.Request, external_id: str, body: bytes | None = None
    ) -> Here | web.Response:
        """The owner's ledger when this worker owns the subscription; else the owner's
        answer (forwarded) — or a 503 while nobody does."""
        where = self.directory.locate(external_id)
        if isinstance(where, Here):
            return where
        if isinstance(where, Nowhere):
            raise unavailable(where.reason)
        assert isinstance(where, There)
        if forwarded(request):
            raise unavailable("this subscription's partition is moving between workers; retry")
        return await self.forwarder.forward(request, where.url, body)

    async def _subscription_read(
        self, request: web.Request, root: str, query: Callable[[Ledger, str], Any]
    ) -> web.Response:
        """`{root: query(ledger, external_id)}` from the owner; 404 when the query finds no
        such subscription (None)."""
        external_id = request.match_info["external_id"]
        here = await self._at_owner(request, external_id)
        if isinstance(here, web.Response):
            return here
        found = query(here.ledger, external_id)
        if found is None:
            raise not_found("subscription")
        return answer({root: found})

    async def lifetime_usage(self, request: web.Request) -> web.Response:
        return await self._subscription_read(request, "lifetime_usage", queries.lifetime_usage)

    async def entitlements(self, request: web.Request) -> web.Response:
        return await self._subscription_read(request, "entitlements", queries.entitlements)

    async def alerts(self, request: web.Request) -> web.Response:
        return await self._subscription_read(request, "alerts", queries.alerts)

    async def current_usage(self, request: web.Request) -> web.Response:
        customer = request.match_info["external_customer_id"]
        external_id = request.query.get("external_subscription_id", "")
        if not external_id:
            raise invalid({"external_subscription_id": ["value_is_mandatory"]})
        here = await self._at_owner(request, external_id)
        if isinstance(here, web.Response):
            return here
        usage = queries.current_usage(here.ledger, customer, external_id)
        if usage is None:
            known = external_id in here.ledger.subscriptions
            raise not_found("customer" if known else "subscription")
        return answer({"customer_usage": usage})

    async def access(self, request: web.Request) -> web.Response:
        """Always 200 with a decision (unknown subscriptions included): a gateway handles
        every answer the same way."""
        external_id = request.match_info["external_id"]
        feature_code = request.query.get("feature_code", "")
        if not feature_code:
            raise invalid({"feature_code": ["value_is_mandatory"]})
        here = await self._at_owner(request, external_id)
        if isinstance(here, web.Response):
            return here
        return answer({"access": queries.access(here.ledger, external_id, feature_code, here.now)})

    # -- writes that need the owner's state ---------------------------------------------------

    async def create_alerts(self, request: web.Request) -> web.Response:
        """Lago's create_alerts: checked as the engine will check them (422 naming the
        problem), published as alert records, answered with the alerts as they will be."""
        external_id = request.match_info["external_id"]
        raw = await self._body(request)
        posted = list_at(raw, "alerts")
        if not posted or not all(isinstance(item, dict) for item in posted):
            raise invalid({"alerts": ["must be a non-empty list of alert objects"]})
        here = await self._at_owner(request, external_id, dumps(raw).encode())
        if isinstance(here, web.Response):
            return here
        if external_id not in here.ledger.subscriptions:
            raise not_found("subscription")
        try:
            objects = queries.alert_objects_for_request(here.ledger, external_id, posted, here.now)
        except ValueError as error:
            raise invalid({"alerts": [str(error)]}) from None
        records = []
        for item in posted:
            alert = {**item, "external_subscription_id": external_id}
            records.append((external_id, self._alert_value(alert)))
        await self.publisher.publish(records, self.clock())
        return answer({"alerts": objects})

    async def delete_alerts(self, request: web.Request) -> web.Response:
        """Lago's delete_alerts: every alert of the subscription."""
        external_id = request.match_info["external_id"]
        here = await self._at_owner(request, external_id)
        if isinstance(here, web.Response):
            return here
        current = queries.alerts(here.ledger, external_id)
        if current is None:
            raise not_found("subscription")
        records = [
            (
                external_id,
                self._alert_value(
                    {
                        "external_subscription_id": external_id,
                        "code": alert["code"],
                        "deleted": True,
                    }
                ),
            )
            for alert in current
        ]
        await self.publisher.publish(records, self.clock())
        return answer({"alerts": current})

    def _alert_value(self, alert: dict[str, Any]) -> bytes:
        try:
            return encode_alert_record(AlertRecord.of(alert), ids=self.ids)
        except WireError:  # ids the Avro record cannot carry: the engine's JSON form
            return dumps({"alert": alert}).encode()

    async def update_invoice(self, request: web.Request) -> web.Response:
        """Lago's invoice update `{invoice: {payment_status}}`: the invoice is looked up among
        the unpaid invoices of this worker's partitions, then of the others'; its payment record
        is published keyed by its subscription."""
        lago_id = request.match_info["lago_id"]
        raw = await self._body(request)
        status = object_at(raw, "invoice").get("payment_status")
        problem = payment_status_problem(status)  # the engine's rule and words
        if problem:
            raise invalid({"payment_status": [problem]})
        for here in self.directory.local():
            found = queries.unpaid_invoice(here.ledger, lago_id)
            if found is not None:
                subscription, invoice = found
                payment = {
                    "lago_invoice_id": lago_id,
                    "external_subscription_id": subscription,
                    "payment_status": status,
                }
                value = encode_payment_record(PaymentRecord.of(payment), ids=self.ids)
                await self.publisher.publish([(subscription, value)], self.clock())
                return answer({"invoice": queries.invoice_with_status(invoice, status)})
        if not forwarded(request):
            body = dumps(raw).encode()
            for peer in self.directory.peers():
                try:
                    status_code, data, content_type = await self.forwarder.call(request, peer, body)
                except ApiError:
                    continue
                if status_code != 404:
                    return web.Response(status=status_code, body=data, content_type=content_type)
        raise not_found("invoice")
