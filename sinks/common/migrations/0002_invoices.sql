-- Invoices and credit notes from invoice.created and credit_note.created outputs. Every key
-- is a deterministic id from the engine, so writing an output twice inserts nothing the
-- second time (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE invoices (
    lago_id                                 uuid        PRIMARY KEY,
    webhook_id                              text        NOT NULL,
    number                                  text        NOT NULL,
    sequential_id                           integer     NOT NULL CHECK (sequential_id > 0),
    invoice_type                            text        NOT NULL,
    invoicing_reason                        text,
    external_subscription_id                text,
    external_customer_id                    text,
    currency                                text        NOT NULL,
    issuing_date                            date        NOT NULL,
    fees_amount_cents                       bigint      NOT NULL,
    progressive_billing_credit_amount_cents bigint      NOT NULL,
    sub_total_excluding_taxes_amount_cents  bigint      NOT NULL,
    taxes_amount_cents                      bigint      NOT NULL,
    total_amount_cents                      bigint      NOT NULL,
    status                                  text        NOT NULL,
    payment_status                          text        NOT NULL,
    body                                    jsonb       NOT NULL,
    event_at                                timestamptz NOT NULL,
    written_at                              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_by_customer ON invoices (external_customer_id, issuing_date);
CREATE INDEX invoices_by_subscription ON invoices (external_subscription_id, sequential_id);
CREATE INDEX invoices_by_number ON invoices (number);

CREATE TABLE invoice_fees (
    lago_id          uuid    PRIMARY KEY,
    invoice_lago_id  uuid    NOT NULL REFERENCES invoices (lago_id) ON DELETE CASCADE,
    position         integer NOT NULL CHECK (position >= 0),
    item_type        text    NOT NULL,
    code             text    NOT NULL,
    units            numeric NOT NULL,
    amount_cents     bigint  NOT NULL,
    UNIQUE (invoice_lago_id, position)
);

CREATE TABLE applied_usage_thresholds (
    invoice_lago_id             uuid    NOT NULL REFERENCES invoices (lago_id) ON DELETE CASCADE,
    position                    integer NOT NULL CHECK (position >= 0),
    amount_cents                bigint  NOT NULL,
    recurring                   boolean NOT NULL,
    threshold_display_name      text,
    lifetime_usage_amount_cents bigint  NOT NULL,
    PRIMARY KEY (invoice_lago_id, position)
);

CREATE TABLE credit_notes (
    lago_id                                uuid        PRIMARY KEY,
    webhook_id                             text        NOT NULL,
    lago_invoice_id                        uuid        NOT NULL,
    number                                 text        NOT NULL,
    invoice_number                         text,
    external_subscription_id               text,
    external_customer_id                   text,
    currency                               text        NOT NULL,
    sub_total_excluding_taxes_amount_cents bigint      NOT NULL,
    taxes_amount_cents                     bigint      NOT NULL,
    total_amount_cents                     bigint      NOT NULL,
    credit_amount_cents                    bigint      NOT NULL,
    balance_amount_cents                   bigint      NOT NULL,
    refund_amount_cents                    bigint      NOT NULL,
    body                                   jsonb       NOT NULL,
    event_at                               timestamptz NOT NULL,
    written_at                             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_notes_by_invoice ON credit_notes (lago_invoice_id);
