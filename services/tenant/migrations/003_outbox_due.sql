-- The outbox claim (common/outbox.c, statement outbox_claim) walks the due events in
-- next_attempt_at order and checks each against the earliest pending event of its instance and
-- tenant, an index probe of outbox_pending_by_instance. With the predicate status = 'pending'
-- alone, outbox_due could serve that probe too, and when the statistics were taken while
-- nothing was pending (delivery keeping up) the planner took it: each probe read every pending
-- event, and with a backlog of 40,000 (a webhook down for a while, or a burst) every claim ran
-- into the statement timeout and delivery stopped for good. This predicate is implied only by
-- a statement that bounds next_attempt_at (a strict comparison implies IS NOT NULL), so only
-- the claim's scan of due events can use the index.
CREATE INDEX outbox_due_at ON outbox (next_attempt_at)
    WHERE status = 'pending' AND next_attempt_at IS NOT NULL;
DROP INDEX outbox_due;
ALTER INDEX outbox_due_at RENAME TO outbox_due;
