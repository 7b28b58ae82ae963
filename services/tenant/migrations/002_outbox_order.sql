-- Per-instance delivery order of the outbox (common/outbox.c, statement outbox_claim): finding
-- an earlier pending event of the same instance and tenant is an index probe.
CREATE INDEX outbox_pending_by_instance ON outbox (instance_id, tenant_id, id)
    WHERE status = 'pending';
