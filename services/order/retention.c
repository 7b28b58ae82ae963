/* retention: what the order service deletes once it has finished with it (common/retention.h,
 * KOOISV_RETAIN_DAYS): jobs done or cancelled, and events delivered (or skipped) that every
 * consumer of the event feed has acknowledged, with those acknowledgements. Instances, their
 * history, order applications (which keep a retried order from being applied twice) and
 * licenses are the seller's record and are never deleted. */
#include "order.h"

/* An event goes only below every consumer's mark (eventfeed.c: all below it is acknowledged by
 * that consumer); with no consumer yet, the webhook alone decides. A consumer counts from its
 * first acknowledgement, which makes its mark. */
#define FEED_FLOOR                                                                                 \
    "coalesce((SELECT min(below_id) FROM orders.event_feed_marks), " RETENTION_NO_FLOOR ")"

const pg_stmt_t order_retention_rules[] = {
    /* A job's key (jobs_key) keeps nothing from being done twice once its order is applied:
     * order_applications does (lifecycle.c); a cancelled job keeps its last change in
     * updated_at. */
    {"retention_jobs",
     RETENTION_WALK_SQL("orders.jobs", "id", "created_at",
                        "t.state IN ('done', 'cancelled') AND coalesce(t.done_at, t.updated_at)"
                        " < now() - " RETENTION_AGE_SQL,
                        RETENTION_NO_FLOOR, ""),
     2},
    {"retention_outbox",
     OUTBOX_RETENTION_SQL(FEED_FLOOR,
                          ", a AS (DELETE FROM orders.event_acks ack USING d"
                          "  WHERE ack.consumer IN (SELECT consumer FROM orders.event_feed_marks)"
                          "  AND ack.seq = d.k)"),
     2},
};
const size_t order_retention_rules_count =
    sizeof order_retention_rules / sizeof order_retention_rules[0];
