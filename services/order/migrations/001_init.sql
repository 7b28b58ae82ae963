-- Order service schema: instances and their life cycle, the orders applied to them, provisioning
-- jobs, licenses and the outbox of order events. Idempotency lives in the unique keys below.
SET LOCAL search_path = orders;

-- One row per purchased instance. (test_flag, order_id, order_line_id) is the newInstance
-- idempotency key: console debug calls (testFlag=1) get their own namespace.
CREATE TABLE orders.instances (
    instance_id        text        PRIMARY KEY,
    seq                bigserial   NOT NULL UNIQUE,           -- stable cursor for listings
    order_id           text        NOT NULL,
    order_line_id      text        NOT NULL,
    business_id        text        NOT NULL,
    test_flag          boolean     NOT NULL DEFAULT false,
    state              text        NOT NULL DEFAULT 'provisioning'
                       CHECK (state IN ('provisioning', 'active', 'frozen', 'released')),
    -- Order details from Query Order (spec §6), then refresh/upgrade.
    order_type         text,
    charging_mode      text,
    period_type        text,
    period_number      integer,
    product_id         text,
    sku_code           text,
    amount             text,
    trial              boolean     NOT NULL DEFAULT false,
    expire_time        timestamptz,
    order_info         jsonb,                                 -- the order as Query Order gave it
    order_fetched_at   timestamptz,
    plan_version       integer     NOT NULL DEFAULT 1,
    -- Credentials (appInfo); user name and password sealed (sealbox, aad = instance_id).
    front_end_url      text,
    admin_url          text,
    user_name_sealed   text,
    password_sealed    text,
    memo               text,
    provisioned_at     timestamptz,
    created_request_id text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    released_at        timestamptz,
    CONSTRAINT instances_order_key UNIQUE (test_flag, order_id, order_line_id),
    CONSTRAINT instances_credentials CHECK (provisioned_at IS NULL OR front_end_url IS NOT NULL)
);
CREATE INDEX instances_state_seq ON orders.instances (state, seq);

-- Every order applied to an instance: a repeated refresh/upgrade/release with the same orderId
-- finds its row here and changes nothing.
CREATE TABLE orders.order_applications (
    instance_id   text        NOT NULL REFERENCES orders.instances,
    activity      text        NOT NULL,   -- newInstance | refreshInstance | upgradeInstance | releaseInstance
    order_id      text        NOT NULL,
    order_line_id text,
    scene         text,
    request_id    text,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, activity, order_id)
);

-- Every transition and change, with the call that caused it.
CREATE TABLE orders.instance_history (
    id            bigserial   PRIMARY KEY,
    instance_id   text        NOT NULL REFERENCES orders.instances,
    at            timestamptz NOT NULL DEFAULT now(),
    event         text        NOT NULL,   -- created | provisioned | freeze | unfreeze | refresh | upgrade | release
    from_state    text,
    to_state      text        NOT NULL,
    order_id      text,
    order_line_id text,
    scene         text,
    status        text,
    request_id    text,
    detail        jsonb
);
CREATE INDEX instance_history_instance ON orders.instance_history (instance_id, id);

-- Background work (provisioning, order look-ups). Claimed with FOR UPDATE SKIP LOCKED and a
-- lease: a job whose lease ran out (its replica died) is taken over by any replica.
CREATE TABLE orders.jobs (
    id              bigserial   PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('provision', 'order_sync')),
    instance_id     text        NOT NULL REFERENCES orders.instances,
    order_id        text        NOT NULL,
    order_line_id   text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    request_id      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    CONSTRAINT jobs_key UNIQUE (instance_id, kind, order_id)
);
CREATE INDEX jobs_due ON orders.jobs (next_attempt_at) WHERE state IN ('pending', 'running');

-- Issued licenses: one per (instance, eventId, fingerprint), never a second one.
CREATE TABLE orders.licenses (
    instance_id        text        NOT NULL REFERENCES orders.instances,
    event_id           text        NOT NULL,
    fingerprint_sha256 text        NOT NULL,   -- of deviceFingerprint ("" when absent): bounded key
    device_fingerprint text        NOT NULL,
    effective_time     timestamptz NOT NULL,
    expire_time        timestamptz,
    license            text        NOT NULL,
    request_id         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, event_id, fingerprint_sha256)
);

-- Order events for billing, written in the transaction of the change they describe.
CREATE TABLE orders.outbox (
    seq          bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_type   text        NOT NULL,   -- instance.created | activated | renewed | frozen | unfrozen | upgraded | released
    instance_id  text        NOT NULL REFERENCES orders.instances,
    test_flag    boolean     NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX outbox_pending ON orders.outbox (seq) WHERE delivered_at IS NULL;
