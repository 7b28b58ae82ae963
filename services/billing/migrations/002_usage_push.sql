-- Usage push (billing -> marketplace, spec §6). Usage of pay-per-use, non-test instances is
-- sealed into push records: one per instance and hour (or UTC day), plus one per later batch of
-- late usage of that hour. A record's metering_sn and interval are fixed when it is sealed,
-- before the first attempt, and never change; every usage row names the record that carries it.
SET LOCAL search_path = billing;

CREATE TABLE usage_pushes (
    id               bigserial PRIMARY KEY,
    metering_sn      text NOT NULL UNIQUE,
    instance_id      text NOT NULL,
    bucket_start     timestamptz NOT NULL,    -- the hour (or UTC day) the usage belongs to
    granularity      text NOT NULL CHECK (granularity IN ('hour', 'day')),
    late_seq         int NOT NULL CHECK (late_seq >= 0), -- 0: the bucket's record; n: n-th late one
    begin_time       timestamptz NOT NULL,    -- bucket_start + late_seq seconds
    end_time         timestamptz NOT NULL,    -- the bucket's end
    record_time      timestamptz NOT NULL,    -- when it was sealed (billing's clock)
    usage_value      numeric(20,4) NOT NULL CHECK (usage_value > 0),
    record_count     int NOT NULL CHECK (record_count > 0),
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'accepted', 'refused', 'dead')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    accepted_at      timestamptz,
    last_code        text,                    -- the marketplace's error_code, or NETWORK / HTTP_nnn
    last_message     text,
    redrives         int NOT NULL DEFAULT 0,
    CHECK (end_time > begin_time),
    -- the marketplace ignores a second record of the same instance and interval
    UNIQUE (instance_id, begin_time, end_time),
    UNIQUE (instance_id, bucket_start, late_seq)
);
CREATE INDEX usage_pushes_due ON usage_pushes (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX usage_pushes_failed ON usage_pushes (id) WHERE state IN ('refused', 'dead');
CREATE INDEX usage_pushes_bucket ON usage_pushes (bucket_start);

ALTER TABLE usage_records ADD COLUMN push_id bigint REFERENCES usage_pushes (id);
CREATE INDEX usage_records_unsealed ON usage_records (bucket_start) WHERE push_id IS NULL;
CREATE INDEX usage_records_push ON usage_records (push_id);

-- Each usage row with where it stands: excluded (test flag, or the instance is not pay-per-use:
-- never pushed), unsealed (waiting for its window), or its push record's state. The pusher seals
-- from it, and operators' status (and exports) read it.
CREATE VIEW usage_push_state AS
SELECT u.id, u.instance_id, u.client_record_id, u.bucket_start, u.quantity, u.received_at,
       u.push_id, p.metering_sn,
       coalesce(i.usage_granularity, 'hour') AS granularity,
       CASE i.usage_granularity WHEN 'day' THEN interval '1 day' ELSE interval '1 hour' END AS unit,
       CASE WHEN u.test_flag OR i.test_flag IS NOT FALSE
                 OR i.charging_mode IS DISTINCT FROM 'ON_DEMAND' THEN 'excluded'
            WHEN u.push_id IS NULL THEN 'unsealed'
            ELSE p.state END AS state,
       coalesce(p.attempts, 0) > 0 AS pushed
FROM usage_records u
LEFT JOIN instances i ON i.instance_id = u.instance_id
LEFT JOIN usage_pushes p ON p.id = u.push_id;
