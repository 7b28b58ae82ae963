-- Order events reach the seller's application through the common outbox (common/outbox.h):
-- orders.outbox takes that module's shape (id from outbox_seq, the posted JSON document as text,
-- delivery status, attempts). The rows written before keep their id (= seq) and event id; their
-- payload becomes the common envelope with the old instance snapshot as "data", and those never
-- delivered are pending (with no webhook configured the delivery thread marks them skipped).
SET LOCAL search_path = orders;

CREATE SEQUENCE orders.outbox_seq;
CREATE TABLE orders.outbox_common (
    id              bigint PRIMARY KEY,        -- from outbox_seq; the event's "seq"
    event_id        text NOT NULL UNIQUE,
    event_type      text NOT NULL,
    instance_id     text NOT NULL REFERENCES orders.instances,
    tenant_id       text NOT NULL DEFAULT '', -- order events belong to no tenant
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

INSERT INTO orders.outbox_common (id, event_id, event_type, instance_id, tenant_id, test_flag,
                                  payload, sealed, status, created_at, next_attempt_at,
                                  delivered_at)
SELECT o.seq, o.event_id::text, o.event_type, o.instance_id, '', o.test_flag,
       jsonb_build_object(
           'eventId', o.event_id::text, 'seq', o.seq, 'eventType', o.event_type,
           'source', 'order', 'requestId', coalesce(o.payload->>'requestId', '-'),
           'instanceId', o.instance_id, 'tenantId', '', 'testFlag', o.test_flag,
           'occurredAt', to_char(o.created_at AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'data', o.payload - 'eventId' - 'eventType' - 'instanceId' - 'testFlag'
                   - 'requestId' - 'at')::text,
       false, CASE WHEN o.delivered_at IS NULL THEN 'pending' ELSE 'delivered' END,
       o.created_at, o.created_at, o.delivered_at
FROM orders.outbox o;

SELECT setval('orders.outbox_seq', coalesce((SELECT max(id) FROM orders.outbox_common), 0) + 1,
              false);

DROP TABLE orders.outbox;
ALTER TABLE orders.outbox_common RENAME TO outbox;
ALTER TABLE orders.outbox RENAME CONSTRAINT outbox_common_pkey TO outbox_pkey;
ALTER TABLE orders.outbox RENAME CONSTRAINT outbox_common_event_id_key TO outbox_event_id_key;
ALTER TABLE orders.outbox RENAME CONSTRAINT outbox_common_status_check TO outbox_status_check;
ALTER TABLE orders.outbox RENAME CONSTRAINT outbox_common_instance_id_fkey
    TO outbox_instance_id_fkey;
CREATE INDEX outbox_due ON orders.outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_failed ON orders.outbox (id) WHERE status = 'failed';
CREATE INDEX outbox_pending_by_instance ON orders.outbox (instance_id, tenant_id, id)
    WHERE status = 'pending';
