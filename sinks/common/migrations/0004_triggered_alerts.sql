-- Usage alerts that fired (alert.triggered outputs, spec §11). The key is the output's
-- deterministic id: writing an output twice inserts nothing the second time.
CREATE TABLE triggered_alerts (
    webhook_id               text        PRIMARY KEY,
    lago_alert_id            uuid        NOT NULL,
    alert_code               text        NOT NULL,
    alert_name               text,
    alert_type               text        NOT NULL,
    external_subscription_id text        NOT NULL,
    external_customer_id     text,
    billable_metric_code     text,
    previous_value           numeric     NOT NULL,
    current_value            numeric     NOT NULL,
    crossed_thresholds       jsonb       NOT NULL,
    triggered_at             timestamptz NOT NULL,
    body                     jsonb       NOT NULL,
    event_at                 timestamptz NOT NULL,
    written_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX triggered_alerts_by_subscription
    ON triggered_alerts (external_subscription_id, alert_code, triggered_at);
