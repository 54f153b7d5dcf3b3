"""Invoice payments in the invoice sink (spec §12), on the real broker and PostgreSQL: an
`invoice.payment_status_updated` updates the stored invoice's payment_status and body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.billing.webhooks import Output
from pipeline.replay import replay
from pipeline.wire import OutputRecord
from tests.integration.sinks_support import Slice, publish, stack_slice

__all__ = ["stack_slice"]  # fixtures, used by name

pytestmark = pytest.mark.integration

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "entitlements_access.jsonl"
PROGRESSIVE = "3de8139d-328d-5ed5-962c-b719e961403c"


def test_the_invoice_sink_applies_payment_status_updates(stack_slice: Slice) -> None:
    stack = stack_slice
    with SCENARIO.open(encoding="utf-8") as lines:
        outputs = [item for item in replay(lines) if isinstance(item, Output)]
    records = [
        OutputRecord.from_body(
            o.id,
            o.body,
            external_subscription_id=o.external_subscription_id,
            external_customer_id=o.external_customer_id,
        )
        for o in outputs
    ]
    publish(stack.settings.kafka_bootstrap, stack.topics.outputs, records)
    sink = stack.start(
        "sink", "invoices", "--idle-exit", "2", "--metrics-port", "0", "--group", stack.group("p")
    )
    assert sink.wait(60) == 0, stack.log_text()

    assert stack.scalar("SELECT count(*) FROM invoices") == 2
    status = f"SELECT payment_status FROM invoices WHERE lago_id = '{PROGRESSIVE}'"
    assert stack.scalar(status) == "succeeded"  # pending, then failed, then succeeded
    body = f"SELECT body::text FROM invoices WHERE lago_id = '{PROGRESSIVE}'"
    assert json.loads(stack.scalar(body))["payment_status"] == "succeeded"
