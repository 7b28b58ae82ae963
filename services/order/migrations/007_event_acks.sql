-- Consumers of the order events inside the suite (billing) pull them over ZeroMQ
-- (eventfeed.c: events.pending / events.ack) instead of the seller's webhook: each consumer
-- acknowledges the events it has stored, by event id, and is then never given them again.
-- Independent of the webhook delivery status of the same rows.
SET LOCAL search_path = orders;

CREATE TABLE orders.event_acks (
    consumer  text NOT NULL,          -- "billing"
    event_id  text NOT NULL,          -- orders.outbox.event_id
    seq       bigint NOT NULL,        -- orders.outbox.id, for the consumer's low-water mark
    acked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX event_acks_seq ON orders.event_acks (consumer, seq);
