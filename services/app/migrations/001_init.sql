-- Schema "apps" (role kooisv_app): kit applicationSync and authSync (spec §4).
-- Every key starts with (instance_id, tenant_id): no statement reads a row without both.
-- Secrets and personal contact data are sealed (common/sealbox.h, KOOISV_DATA_KEY) with
-- associated data naming the row, so a value copied to another row does not open.

CREATE TABLE apps (
    instance_id          text NOT NULL,           -- '' in seller-console debugging
    tenant_id            text NOT NULL,
    app_id               text NOT NULL,
    client_id            text NOT NULL,
    client_secret_sealed text NOT NULL,           -- never plain text
    test_flag            boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, tenant_id, app_id), -- idempotency key of applicationSync
    CHECK (client_secret_sealed LIKE 'v1:%')
);

-- Users authorised for an app. No foreign key to apps or to the tenant's orgs (another
-- schema): users may arrive before their app or their department.
CREATE TABLE app_users (
    instance_id       text NOT NULL,
    tenant_id         text NOT NULL,
    app_id            text NOT NULL,
    user_name         text NOT NULL,
    name              text NOT NULL DEFAULT '',
    org_code          text NOT NULL DEFAULT '',
    position          text NOT NULL DEFAULT '',
    employee_code     text NOT NULL DEFAULT '',
    employee_type     smallint CHECK (employee_type BETWEEN 1 AND 4),  -- NULL = not given
    role              text NOT NULL CHECK (role IN ('user', 'admin')),
    enabled           boolean NOT NULL,
    mobile_sealed     text,                       -- NULL = not given
    email_sealed      text,                       -- NULL = not given
    auth_status       text NOT NULL DEFAULT 'authorised'
                      CHECK (auth_status IN ('authorised', 'cancelled')),  -- flag 3 cancels
    current_sync_time text NOT NULL DEFAULT '',
    test_flag         boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, tenant_id, app_id, user_name)  -- idempotency key of authSync
);

-- Outbox of committed changes for the seller's application (common/outbox.h).
-- Payloads are sealed here: authSync events carry users' contact data.
CREATE SEQUENCE outbox_seq;
CREATE TABLE outbox (
    id              bigint PRIMARY KEY,        -- from outbox_seq; the event's "seq"
    event_id        text NOT NULL UNIQUE,
    event_type      text NOT NULL,
    instance_id     text NOT NULL,
    tenant_id       text NOT NULL,
    test_flag       boolean NOT NULL DEFAULT false,
    payload         text NOT NULL,             -- the exact JSON posted (sealed when "sealed")
    sealed          boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'skipped', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_failed ON outbox (id) WHERE status = 'failed';
