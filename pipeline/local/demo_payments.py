"""The demo's customers paying, or not: half the subscriptions pay each progressive invoice a
few seconds after the invoice sink has written it; the others never pay, so their invoices go
overdue once the grace passes and access answers `payment_overdue` (spec §12).

`PaymentSchedule` makes the choice, with no clock and no I/O. `Payer` is its shell: a thread
that reads new progressive invoices from the invoice sink's table and publishes an
`invoice_payment` record for each one due, as `tollgate invoices pay` does.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.clients.payments import invoice_payment
from pipeline.clients.producer import UsageProducer
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics

PAYMENT_DELAY_SECONDS = 3.0
UNPAID_PROGRESSIVE_INVOICES = (
    "SELECT lago_id::text, external_subscription_id FROM invoices"
    " WHERE invoice_type = 'progressive_billing' AND payment_status = 'pending'"
    " AND total_amount_cents > 0 AND external_subscription_id IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class Invoice:
    lago_id: str
    external_subscription_id: str


def pays(subscription: str) -> bool:
    """Whether the customer of a demo subscription pays: half of them, always the same ones
    (a checksum of the id, not Python's per-process salted hash)."""
    return zlib.crc32(subscription.encode()) % 2 == 0


class PaymentSchedule:
    """Which invoices get paid, and when: an invoice of a paying subscription `delay` seconds
    after it was first noted; the others are counted as left unpaid. Times are whatever clock
    the caller reads (seconds); an invoice noted twice counts once."""

    def __init__(self, delay: float, payer: Callable[[str], bool] = pays) -> None:
        self.delay = delay
        self.paid = 0
        self.left_unpaid = 0
        self._pays = payer
        self._noted: set[str] = set()
        self._due: list[tuple[float, Invoice]] = []

    def note(self, invoices: Iterable[Invoice], now: float) -> None:
        for invoice in invoices:
            if invoice.lago_id in self._noted:
                continue
            self._noted.add(invoice.lago_id)
            if self._pays(invoice.external_subscription_id):
                self._due.append((now + self.delay, invoice))
            else:
                self.left_unpaid += 1

    def take_due(self, now: float) -> list[Invoice]:
        """The invoices to pay now, in the order they were noted; counted as paid."""
        due = [invoice for at, invoice in self._due if at <= now]
        self._due = [(at, invoice) for at, invoice in self._due if at > now]
        self.paid += len(due)
        return due

    @property
    def waiting(self) -> int:
        """Invoices chosen to be paid and not paid yet."""
        return len(self._due)


class Payer:
    """Pays what `schedule` says, once a second, on a thread of its own (its own producer and
    database connection) until `stop`."""

    def __init__(self, demo: Settings, schedule: PaymentSchedule, interval: float = 1.0) -> None:
        self.demo = demo
        self.schedule = schedule
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-payer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from sinks.common.db import connect

        demo = self.demo
        topics = Topics.with_prefix(demo.topic_prefix)
        with (
            UsageProducer(demo.kafka_bootstrap, topics) as producer,
            connect(demo.database_url, demo.database_schema, autocommit=True) as conn,
        ):
            while not self._stop.wait(self.interval):
                rows = conn.execute(UNPAID_PROGRESSIVE_INVOICES).fetchall()
                now = time.monotonic()
                self.schedule.note((Invoice(lago_id, sub) for lago_id, sub in rows), now)
                for invoice in self.schedule.take_due(now):
                    producer.send_payment(
                        invoice_payment(invoice.lago_id, invoice.external_subscription_id)
                    )
                producer.poll(0)
