-- Bill and detail exports (export.c, exportrun.c). An export is requested by an operator, made
-- by whichever billing replica claims it first (FOR UPDATE SKIP LOCKED) and kept 3 days as
-- chunks in export_chunks, so that every replica, and through them every gateway, reaches the
-- file; the janitor then deletes the chunks and marks the export expired (the row stays, so a
-- late download gets a clear answer).
SET LOCAL search_path = billing;

CREATE TABLE exports (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind text NOT NULL CHECK (kind IN ('bill', 'detail')),
  format text NOT NULL CHECK (format IN ('csv', 'json')),
  range_from timestamptz NOT NULL,
  range_to timestamptz NOT NULL,
  tenant_id text,
  instance_id text,
  product_id text,
  status text NOT NULL DEFAULT 'queued'
    CHECK (status IN ('queued', 'running', 'ready', 'failed', 'expired')),
  requested_by text NOT NULL,     -- operator name
  request_id text NOT NULL,       -- the admin call that asked for it (audit trail)
  requested_at timestamptz NOT NULL DEFAULT now(),
  attempts int NOT NULL DEFAULT 0,
  claim_token text,               -- the replica thread that made it (or is making it)
  claimed_at timestamptz,
  finished_at timestamptz,
  expires_at timestamptz,         -- ready: downloadable until then (finished_at + 3 days)
  error text,                     -- failed: why
  row_count bigint,
  byte_count bigint,
  chunk_count int,
  sha256 text,                    -- of the whole file, hex
  CHECK (range_to > range_from)
);
CREATE INDEX exports_pending ON exports (requested_at) WHERE status IN ('queued', 'running');
CREATE INDEX exports_expiring ON exports (expires_at) WHERE status = 'ready';
CREATE INDEX exports_recent ON exports (requested_at DESC);

CREATE TABLE export_chunks (
  export_id uuid NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
  seq int NOT NULL CHECK (seq >= 0),
  data bytea NOT NULL,
  PRIMARY KEY (export_id, seq)
);
-- CSV and JSON compress well; lz4 costs a fraction of the default pglz's time (a million-row
-- detail is ~160 MB before compression). Left at the default where the server lacks lz4.
DO $$ BEGIN
  ALTER TABLE export_chunks ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
  RAISE NOTICE 'lz4 unavailable: export chunks use the default compression';
END $$;

-- The detail streams usage in (hour, id) order: an index in that order spares the sort of a
-- million rows. (The ledger is read through 001's ledger_occurred.)
CREATE INDEX usage_records_bucket_id ON usage_records (bucket_start, id);

-- Times in exports and answers: ISO-8601 UTC with milliseconds.
CREATE FUNCTION export_time(t timestamptz) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;

-- What operators see of an export (export.get, export.list, export.request, export.chunk). A
-- ready export past its expiry is shown expired at once, whether or not the janitor has run.
CREATE FUNCTION export_doc(e exports) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_strip_nulls(jsonb_build_object(
    'id', e.id, 'kind', e.kind, 'format', e.format,
    'from', export_time(e.range_from), 'to', export_time(e.range_to),
    'tenant', e.tenant_id, 'instance', e.instance_id, 'product', e.product_id,
    'status', CASE WHEN e.status = 'ready' AND e.expires_at <= now() THEN 'expired'
                   ELSE e.status END,
    'requested_by', e.requested_by, 'request_id', e.request_id,
    'requested_at', export_time(e.requested_at), 'attempts', e.attempts, 'made_by', e.claim_token,
    'started_at', export_time(e.claimed_at), 'finished_at', export_time(e.finished_at),
    'expires_at', export_time(e.expires_at), 'error', e.error, 'rows', e.row_count,
    'bytes', e.byte_count, 'chunks', e.chunk_count, 'sha256', e.sha256))
$$;
