-- The feed's bound from transaction ids instead of time (eventfeed.c "events_mark"). Migration
-- 008 let a consumer's mark pass only ids outbox_seq had given out five minutes earlier: a pull
-- read five minutes of acknowledged events (at benchmark rates, most of PostgreSQL's time), and
-- an event whose transaction stayed open longer than that could be passed. Every transaction now
-- holds its transaction id before it takes an event id (outbox.c "outbox_next_id"), so a value
-- of outbox_seq is settled once every transaction that was running when it was read has ended.
-- Per consumer, the mark keeps one candidate: safe_seq, read by an earlier update, is settled
-- once the oldest running transaction is at or after safe_after (the next transaction id when a
-- later update began); seen_seq, read by the last update, becomes the next candidate.
SET LOCAL search_path = orders;

ALTER TABLE orders.event_feed_marks
    ADD COLUMN seen_seq   bigint,
    ADD COLUMN safe_seq   bigint,
    ADD COLUMN safe_after xid8;

DROP TABLE orders.event_feed_seq_log;
