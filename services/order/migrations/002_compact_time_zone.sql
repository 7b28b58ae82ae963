-- The zone in which the stored expiries (orders.instances.expire_time) were read from the
-- marketplace's yyyyMMddHHmmss times. Versions before this migration read them as UTC+8; the
-- spec (§3) decided they are UTC. At start the order service compares this with its
-- KOOISV_MARKETPLACE_TIME_ZONE and, when they differ, reads every stored expiry again in the
-- configured zone (zonemark.c), then records that zone here. One row.
SET LOCAL search_path = orders;

CREATE TABLE orders.compact_time_zone (
    only_row   boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    zone       text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders.compact_time_zone (zone) VALUES ('+08:00');
