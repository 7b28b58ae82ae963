-- A consumer's low-water mark of the order event feed (eventfeed.c): every event with an id
-- below below_id is acknowledged by it, so events.pending scans from there instead of from the
-- first event ever (that scan grew with the whole history: 330 ms a pull at a few hundred
-- thousand events).
SET LOCAL search_path = orders;

CREATE TABLE orders.event_feed_marks (
    consumer   text PRIMARY KEY,
    below_id   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- outbox_seq's last value over time, taken at most once a minute. An event id at or below a
-- value taken more than five minutes ago belongs to a transaction that has ended (an order
-- transaction idle for 60 s is ended by the server), so a mark kept at or below it never passes
-- an event that could still commit.
CREATE TABLE orders.event_feed_seq_log (
    taken_at  timestamptz PRIMARY KEY,
    seq_value bigint NOT NULL
);
