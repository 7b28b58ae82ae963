-- Schema "tenants" (role kooisv_tenant): kit tenantSync, singleOrgSync, allOrgSync (spec §4).
-- Every key starts with (instance_id, tenant_id): no statement reads a row without both.

CREATE TABLE tenants (
    instance_id  text NOT NULL,            -- '' in seller-console debugging
    tenant_id    text NOT NULL,
    order_id     text NOT NULL DEFAULT '',
    tenant_code  text NOT NULL DEFAULT '',
    name         text NOT NULL DEFAULT '',
    domain_name  text NOT NULL DEFAULT '',
    test_flag    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, tenant_id)   -- idempotency key of tenantSync
);

-- The org tree. parent_code is plain text, not a foreign key: children may arrive before their
-- parents (spec §4), and a parent's deletion leaves its children as orphans until it returns.
-- Cycles are refused by the service under a per-(instance, tenant) advisory lock.
CREATE TABLE orgs (
    instance_id  text NOT NULL,
    tenant_id    text NOT NULL,
    org_code     text NOT NULL,
    org_name     text NOT NULL,
    parent_code  text NOT NULL DEFAULT '',  -- '' = top level
    test_flag    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, tenant_id, org_code),  -- idempotency key of the org calls
    CHECK (parent_code <> org_code)
);
CREATE INDEX orgs_by_parent ON orgs (instance_id, tenant_id, parent_code);

-- Outbox of committed changes for the seller's application (common/outbox.h).
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
