"""Invoice payments in the invoice sink (spec §12), on the real broker and PostgreSQL: an
`invoice.payment_status_updated` updates the stored invoice's payment_status and body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.sinks_support import Slice, outputs_of, publish, stack_slice

__all__ = ["stack_slice"]  # fixtures, used by name

pytestmark = pytest.mark.integration

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "entitlements_access.jsonl"
PROGRESSIVE = "3de8139d-328d-5ed5-962c-b719e961403c"


def test_the_invoice_sink_applies_payment_status_updates(stack_slice: Slice) -> None:
    stack = stack_slice
    records = outputs_of(SCENARIO.name, folder=SCENARIO.parent)
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
