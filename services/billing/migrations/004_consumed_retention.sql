-- consumed_events is walked by seq when its old rows are deleted (ledger.c
-- billing_retention_rules, KOOISV_RETAIN_DAYS): an event older than the retention period has
-- long been acknowledged, so order never gives it again; were it given again, the instance's
-- last_seq and the ledger's unique event ids would still keep it from being applied twice.
SET LOCAL search_path = billing;

CREATE INDEX consumed_events_seq ON consumed_events (seq);
