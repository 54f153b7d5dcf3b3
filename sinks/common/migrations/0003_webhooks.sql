-- Webhook endpoints and the outbox of deliveries. One delivery per (endpoint, output id): an
-- output read twice never makes a second delivery. The body is the exact text POSTed and
-- signed, kept as text (jsonb would reorder keys and change the bytes).
CREATE TABLE webhook_endpoints (
    id                         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url                        text        NOT NULL UNIQUE CHECK (url ~ '^https?://'),
    secret                     text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    previous_secret            text        CHECK (previous_secret LIKE 'whsec\_%'),
    previous_secret_expires_at timestamptz,
    event_types                text[],  -- NULL: every webhook type
    lago_signature             boolean     NOT NULL DEFAULT false,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);

CREATE TABLE webhook_deliveries (
    id                       bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    endpoint_id              bigint      NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    webhook_id               text        NOT NULL,
    webhook_type             text        NOT NULL,
    external_subscription_id text,
    body                     text        NOT NULL,
    status                   text        NOT NULL DEFAULT 'pending'
                                         CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts                 integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at          timestamptz NOT NULL,
    last_attempt_at          timestamptz,
    last_status_code         integer,
    last_error               text,
    event_at                 timestamptz NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    delivered_at             timestamptz,
    PRIMARY KEY (endpoint_id, webhook_id),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (created_at)
    WHERE status = 'failed';
