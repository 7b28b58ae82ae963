-- Schema "billing" (role kooisv_billing): order events -> ledger, usage intake. The tables of the
-- shared billing design (issue 9): push (002) and export (003) build on their names and meanings.
SET LOCAL search_path = billing;

-- Every order event consumed, exactly once: the primary key is the order outbox's eventId.
CREATE TABLE consumed_events (
    event_id    text PRIMARY KEY,
    seq         bigint NOT NULL,              -- the order outbox's seq (commit order, not gap-free)
    event_type  text NOT NULL,                -- "instance.created" ...
    instance_id text,
    consumed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per instance known from order events: the instance as the last event showed it.
CREATE TABLE instances (
    instance_id       text PRIMARY KEY,
    tenant_id         text,
    customer_id       text,
    product_id        text,
    sku_code          text,
    charging_mode     text,                   -- as the order says: PERIOD / ONE_TIME / ON_DEMAND ...
    period_type       text,
    period_number     int,
    amount            numeric(20,4),
    test_flag         bool NOT NULL,
    usage_granularity text NOT NULL DEFAULT 'hour' CHECK (usage_granularity IN ('hour', 'day')),
    state             text NOT NULL CHECK (state IN ('active', 'frozen', 'released')),
    paid_at           timestamptz,            -- when the order that set the period was paid
    expire_time       timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    order_id          text,                   -- the order that made the last change
    last_seq          bigint NOT NULL DEFAULT 0 -- seq of the last event applied
);

-- One line per change (kind below). A refund line's event_id is "<release event id>:refund".
CREATE TABLE ledger (
    id            bigserial PRIMARY KEY,
    event_id      text NOT NULL UNIQUE,
    instance_id   text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('new', 'renewal', 'trial_to_formal',
                  'unsubscribe_renewal', 'upgrade', 'freeze', 'unfreeze', 'release', 'refund')),
    order_id      text,
    amount        numeric(20,4),
    period_type   text,
    period_number int,
    test_flag     bool NOT NULL,
    occurred_at   timestamptz NOT NULL
);
CREATE INDEX ledger_instance ON ledger (instance_id, id);
CREATE INDEX ledger_occurred ON ledger (occurred_at) WHERE NOT test_flag;
CREATE INDEX ledger_order ON ledger (order_id, occurred_at);

-- Usage as the seller's application reported it (usage intake). One row per
-- (instance, client record id): a repeat is the same record.
CREATE TABLE usage_records (
    id               bigserial PRIMARY KEY,
    instance_id      text NOT NULL,
    client_record_id text NOT NULL,
    quantity         numeric(20,4) NOT NULL CHECK (quantity > 0),
    used_begin       timestamptz NOT NULL,
    used_end         timestamptz NOT NULL CHECK (used_end >= used_begin),
    bucket_start     timestamptz NOT NULL,     -- the hour (or UTC day) of used_begin
    received_at      timestamptz NOT NULL DEFAULT now(),
    request_id       text NOT NULL,
    test_flag        bool NOT NULL DEFAULT false,
    UNIQUE (instance_id, client_record_id)
);
CREATE INDEX usage_records_bucket ON usage_records (bucket_start, instance_id);
