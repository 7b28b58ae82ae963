/* ledger: order events -> billing ledger (ledger.h). */
#include "ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgworker.h"
#include "randutil.h"
#include "retention.h"
#include "resultcode.h"
#include "rpc.h"
#include "timeutil.h"
#include "xmalloc.h"

#define ORDER_TIMEOUT_MS 5000
#define REFUND_WINDOW "5 days" /* spec §7: the guarantee period */

const pg_stmt_t ledger_stmts[] = {
    /* One replica applies at a time; released at COMMIT/ROLLBACK. */
    {"ledger_lock", "SELECT pg_try_advisory_xact_lock(hashtext('kooisv-billing-ledger'))", 0},
    {"ledger_consume",
     "INSERT INTO consumed_events (event_id, seq, event_type, instance_id)"
     " VALUES ($1, $2::bigint, $3, $4) ON CONFLICT (event_id) DO NOTHING RETURNING 1",
     4},
    /* The instance as the event shows it, unless a later event was applied already. Its usage
     * granularity ($15: the products billed daily) is decided by the first event that names its
     * product, and only while it has no usage: stored usage is never re-bucketed. The usage
     * probe is ordered as its index is (a scalar subquery: EXISTS drops the ORDER BY), so it
     * stays an index probe when one instance holds most usage rows: the statistics then say
     * "every row matches", and a sequential scan looked cheapest (2 ms an event at 40,000 rows,
     * every other instance reading all of them). */
    {"ledger_instance",
     "INSERT INTO instances (instance_id, product_id, sku_code, charging_mode, period_type,"
     " period_number, amount, test_flag, state, paid_at, expire_time, created_at, updated_at,"
     " order_id, last_seq, usage_granularity)"
     " VALUES ($1, $2, $3, $4, $5, $6::int, $7::numeric, $8::bool, $9, $10::timestamptz,"
     " $11::timestamptz, $12::timestamptz, $12::timestamptz, $13, $14::bigint,"
     " CASE WHEN $2 = ANY ($15::text[]) THEN 'day' ELSE 'hour' END)"
     " ON CONFLICT (instance_id) DO UPDATE SET usage_granularity = CASE"
     "  WHEN instances.product_id IS NULL AND EXCLUDED.product_id IS NOT NULL AND"
     "   (SELECT u.client_record_id FROM usage_records u WHERE u.instance_id = $1"
     "    ORDER BY u.client_record_id LIMIT 1) IS NULL"
     "  THEN EXCLUDED.usage_granularity ELSE instances.usage_granularity END,"
     " product_id = EXCLUDED.product_id,"
     " sku_code = EXCLUDED.sku_code, charging_mode = EXCLUDED.charging_mode,"
     " period_type = EXCLUDED.period_type, period_number = EXCLUDED.period_number,"
     " amount = EXCLUDED.amount, test_flag = EXCLUDED.test_flag, state = EXCLUDED.state,"
     " paid_at = coalesce(EXCLUDED.paid_at, instances.paid_at),"
     " expire_time = EXCLUDED.expire_time, updated_at = EXCLUDED.updated_at,"
     " order_id = EXCLUDED.order_id, last_seq = EXCLUDED.last_seq"
     " WHERE instances.last_seq < EXCLUDED.last_seq",
     15},
    /* $10: at most one line of this kind per instance (new). */
    {"ledger_line",
     "INSERT INTO ledger (event_id, instance_id, kind, order_id, amount, period_type,"
     " period_number, test_flag, occurred_at)"
     " SELECT $1, $2, $3, $4, $5::numeric, $6, $7::int, $8::bool, $9::timestamptz"
     " WHERE NOT ($10::bool AND EXISTS (SELECT 1 FROM ledger WHERE instance_id = $2"
     "  AND kind = $3)) ON CONFLICT (event_id) DO NOTHING",
     10},
    /* The amount given back for an order's line of one of the kinds $3, paid within $5 of $4. */
    {"ledger_order_line",
     "SELECT (-amount)::text, period_type, period_number FROM ledger"
     " WHERE instance_id = $1 AND order_id = $2 AND kind = ANY($3::text[]) AND amount > 0"
     " AND occurred_at >= $4::timestamptz - $5::interval ORDER BY id DESC LIMIT 1",
     5},
};
const size_t ledger_stmts_count = sizeof ledger_stmts / sizeof ledger_stmts[0];

/* An event consumed that long ago was acknowledged long ago (a lost acknowledgement is made
 * again at the next pull, which gives the event again): order never gives it again. */
const pg_stmt_t billing_retention_rules[] = {
    {"retention_consumed_events",
     RETENTION_WALK_SQL("consumed_events", "seq", "consumed_at",
                        "t.consumed_at < now() - " RETENTION_AGE_SQL,
                        "(SELECT max(seq) FROM consumed_events)", ""),
     2},
};
const size_t billing_retention_rules_count =
    sizeof billing_retention_rules / sizeof billing_retention_rules[0];

/* ---------------------------------------------------------------- one event */

typedef struct {
    const char *event_id, *event_type, *instance_id, *occurred_at;
    char seq[24];
    bool test_flag;
    const json_t *data;
    /* data */
    const char *order_id, *scene, *state, *product_id, *sku_code, *charging_mode, *period_type,
        *expire_time;
    char period_number[24], amount[48];
    bool has_period_number, has_amount, by_unsubscription;
} event_t;

/* A string member of o, NULL when absent, null or not a string. */
static const char *str_of(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A decimal member (string or JSON number) into out; false when absent or null. */
static bool num_of(const json_t *o, const char *key, char *out, size_t len)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        snprintf(out, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, len, "%.4f", json_real_value(v));
    else
        return false;
    return true;
}

/* Read the event's fields; false when it lacks what billing keys on. */
static bool event_read(const json_t *doc, event_t *e)
{
    memset(e, 0, sizeof *e);
    e->event_id = str_of(doc, "eventId");
    e->event_type = str_of(doc, "eventType");
    e->instance_id = str_of(doc, "instanceId");
    e->occurred_at = str_of(doc, "occurredAt");
    e->test_flag = json_is_true(json_object_get(doc, "testFlag"));
    e->data = json_object_get(doc, "data");
    if (!e->event_id || !e->event_type || !e->instance_id || !e->occurred_at ||
        !json_is_integer(json_object_get(doc, "seq")) || !json_is_object(e->data) ||
        !svcrt_text_ok(e->event_id, 64, true) || !svcrt_text_ok(e->instance_id, 256, true))
        return false;
    snprintf(e->seq, sizeof e->seq, "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(doc, "seq")));
    e->order_id = str_of(e->data, "orderId");
    e->scene = str_of(e->data, "scene");
    e->state = str_of(e->data, "state");
    e->product_id = str_of(e->data, "productId");
    e->sku_code = str_of(e->data, "skuCode");
    e->charging_mode = str_of(e->data, "chargingMode");
    e->period_type = str_of(e->data, "periodType");
    e->expire_time = str_of(e->data, "expireTime");
    e->has_period_number =
        num_of(e->data, "periodNumber", e->period_number, sizeof e->period_number);
    e->has_amount = num_of(e->data, "amount", e->amount, sizeof e->amount);
    e->by_unsubscription = json_is_true(json_object_get(e->data, "byUnsubscription"));
    return true;
}

/* The ledger kind of an event, NULL when it makes no line. *paid: the event is a payment. */
static const char *event_kind(const event_t *e, bool *paid)
{
    *paid = false;
    const char *t = e->event_type;
    if (strcmp(t, "instance.activated") == 0)
        return "new";
    if (strcmp(t, "instance.renewed") == 0) {
        const char *scene = e->scene ? e->scene : "";
        *paid = strcmp(scene, "UNSUBSCRIBE_RENEWAL_PERIOD") != 0;
        if (strcmp(scene, "TRIAL_TO_FORMAL") == 0)
            return "trial_to_formal";
        return *paid ? "renewal" : "unsubscribe_renewal";
    }
    if (strcmp(t, "instance.upgraded") == 0)
        return *paid = true, "upgrade";
    if (strcmp(t, "instance.frozen") == 0)
        return "freeze";
    if (strcmp(t, "instance.unfrozen") == 0)
        return "unfreeze";
    if (strcmp(t, "instance.released") == 0)
        return "release";
    if (strcmp(t, "instance.created") == 0)
        *paid = true; /* the new purchase: paid when the marketplace creates the instance */
    return NULL;
}

/* Billing's state of the order's ("provisioning" counts as active: the customer has paid). */
static const char *billing_state_of(const char *order_state)
{
    if (order_state && strcmp(order_state, "frozen") == 0)
        return "frozen";
    if (order_state && strcmp(order_state, "released") == 0)
        return "released";
    return "active";
}

/* Insert a ledger line. */
static pg_status_t line_insert(pg_tx_t *tx, const event_t *e, const char *event_id,
                               const char *kind, const char *amount, const char *period_type,
                               const char *period_number, bool once)
{
    const char *p[] = {event_id,       e->instance_id,
                       kind,           e->order_id,
                       amount,         period_type,
                       period_number,  e->test_flag ? "true" : "false",
                       e->occurred_at, once ? "true" : "false"};
    return pg_tx_queue(tx, "ledger_line", 10, p);
}

/* The negated amount of the order's line of kinds (a PostgreSQL array literal) paid within
 * window of the event, into out with its period; false when there is none. */
static pg_status_t order_line(pg_tx_t *tx, const event_t *e, const char *kinds, const char *window,
                              char *amount, size_t len, char **ptype, char **pnum, bool *found)
{
    *found = false;
    const char *p[] = {e->instance_id, e->order_id, kinds, e->occurred_at, window};
    PGresult *r = pg_tx_exec(tx, "ledger_order_line", 5, p);
    if (!r)
        return tx->failed;
    if (PQntuples(r) == 1) {
        *found = true;
        snprintf(amount, len, "%s", PQgetvalue(r, 0, 0));
        *ptype = pg_value(r, 0, 1) ? xstrdup(pg_value(r, 0, 1)) : NULL;
        *pnum = pg_value(r, 0, 2) ? xstrdup(pg_value(r, 0, 2)) : NULL;
    }
    PQclear(r);
    return PG_OK;
}

/* The lines of e: its own, and a refund for a release by unsubscription in the guarantee
 * period. */
static pg_status_t lines_write(pg_tx_t *tx, const event_t *e, const char *kind)
{
    const char *amount = NULL;
    char back[48];
    char *ptype = NULL, *pnum = NULL;
    bool found = false;
    pg_status_t st = PG_OK;
    bool money = strcmp(kind, "new") == 0 || strcmp(kind, "renewal") == 0 ||
                 strcmp(kind, "trial_to_formal") == 0 || strcmp(kind, "upgrade") == 0;
    if (money && e->has_amount)
        amount = e->amount;
    if (strcmp(kind, "unsubscribe_renewal") == 0 && e->order_id) {
        /* the renewal given back: its amount, negated */
        st = order_line(tx, e, "{renewal}", "1000 years", back, sizeof back, &ptype, &pnum, &found);
        if (st != PG_OK)
            return st;
        amount = found ? back : NULL;
        free(ptype);
        free(pnum);
    }
    st = line_insert(tx, e, e->event_id, kind, amount, e->period_type,
                     e->has_period_number ? e->period_number : NULL, strcmp(kind, "new") == 0);
    if (st != PG_OK || strcmp(kind, "release") != 0 || !e->by_unsubscription || !e->order_id)
        return st;
    st = order_line(tx, e, "{new,renewal,trial_to_formal,upgrade}", REFUND_WINDOW, back,
                    sizeof back, &ptype, &pnum, &found);
    if (st == PG_OK && found) {
        char *refund_id = xasprintf("%s:refund", e->event_id);
        st = line_insert(tx, e, refund_id, "refund", back, ptype, pnum, false);
        free(refund_id);
    }
    free(ptype);
    free(pnum);
    return st;
}

char *ledger_daily_products(const char *list, char *why, size_t why_len)
{
    static const char blanks[] = " \t\r\n";
    size_t cap = 8, n = 0;
    char **ids = xcalloc(cap, sizeof *ids);
    const char *p = list ? list : "";
    char *out = NULL;
    bool comma = false; /* the last separator held a comma: an entry must follow */
    for (p += strspn(p, blanks); *p || comma;) {
        size_t len = strcspn(p, ", \t\r\n");
        if (len == 0) {
            snprintf(why, why_len,
                     "entry %zu is empty (two commas in a row, or a comma at the "
                     "start or end)",
                     n + 1);
            goto done;
        }
        size_t ok = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-");
        if (len > LEDGER_PRODUCT_ID_MAX || ok < len) {
            snprintf(why, why_len,
                     "entry %zu (\"%.*s\") is not a product id (1..%d of A-Z a-z 0-9 _ . -; "
                     "ids are separated by commas or blanks)",
                     n + 1, (int)(len > 80 ? 80 : len), p, LEDGER_PRODUCT_ID_MAX);
            goto done;
        }
        if (n == cap)
            ids = xrealloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = xstrndup(p, len);
        p += len;
        p += strspn(p, blanks);
        comma = *p == ',';
        if (comma)
            p += 1 + strspn(p + 1, blanks);
    }
    out = pg_text_array((const char *const *)ids, n);
done:
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return out;
}

/* Take the ledger's advisory lock in tx: PG_OK with *locked, or the failure. */
static pg_status_t ledger_lock(pg_tx_t *tx, bool *locked)
{
    PGresult *r = pg_tx_exec(tx, "ledger_lock", 0, NULL);
    if (!r)
        return tx->failed;
    *locked = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return PG_OK;
}

/* Apply one event in tx, whose transaction holds the ledger's lock; sets *out. PG_OK also when
 * the event wrote nothing (LEDGER_REJECTED, LEDGER_DUPLICATE), else the failure. The instance
 * and its lines are queued (pg_tx_queue): they go out with the next statement or the COMMIT. */
static pg_status_t apply_locked(pg_tx_t *tx, const json_t *doc, const char *daily_products,
                                ledger_outcome_t *out)
{
    event_t e;
    *out = LEDGER_REJECTED;
    if (!event_read(doc, &e))
        return PG_OK;
    const char *cp[] = {e.event_id, e.seq, e.event_type, e.instance_id};
    PGresult *r = pg_tx_exec(tx, "ledger_consume", 4, cp);
    if (!r)
        return tx->failed;
    bool fresh = PQntuples(r) == 1;
    PQclear(r);
    if (!fresh) {
        *out = LEDGER_DUPLICATE;
        return PG_OK;
    }
    bool paid;
    const char *kind = event_kind(&e, &paid);
    const char *ip[] = {e.instance_id,
                        e.product_id,
                        e.sku_code,
                        e.charging_mode,
                        e.period_type,
                        e.has_period_number ? e.period_number : NULL,
                        e.has_amount ? e.amount : NULL,
                        e.test_flag ? "true" : "false",
                        billing_state_of(e.state),
                        paid ? e.occurred_at : NULL,
                        e.expire_time,
                        e.occurred_at,
                        e.order_id,
                        e.seq,
                        daily_products ? daily_products : "{}"};
    pg_status_t st = pg_tx_queue(tx, "ledger_instance", 15, ip);
    if (st == PG_OK && kind)
        st = lines_write(tx, &e, kind);
    if (st == PG_OK)
        *out = LEDGER_APPLIED;
    return st;
}

pg_status_t ledger_apply(pg_tx_t *tx, const json_t *doc, const char *daily_products,
                         ledger_outcome_t *out)
{
    bool locked = false;
    *out = LEDGER_REJECTED;
    pg_status_t st = ledger_lock(tx, &locked);
    if (st != PG_OK)
        return st;
    if (!locked) {
        *out = LEDGER_BUSY;
        return PG_ROLLBACK;
    }
    st = apply_locked(tx, doc, daily_products, out);
    if (st == PG_OK && *out != LEDGER_APPLIED)
        return PG_ROLLBACK; /* nothing written */
    return st;
}

/* ---------------------------------------------------------------- the consumer thread */

struct ledger_consumer {
    const billing_state_t *cfg;
    pgworker_t *worker; /* the consumer thread and its session */
    pg_session_t *db;   /* the worker's session, lent for a step */
    rpc_client_t *rpc;
};

static bool consumer_step(pgworker_t *worker, pg_session_t *db, void *arg);

ledger_consumer_t *ledger_consumer_new(const billing_state_t *cfg, const char *dsn,
                                       const char *setup_sql)
{
    ledger_consumer_t *self = xcalloc(1, sizeof *self);
    self->cfg = cfg;
    self->rpc = rpc_client_new(cfg->order_endpoints, cfg->order_server_key);
    if (!self->rpc) {
        log_error(NULL, "ledger: KOOISV_ORDER_ENDPOINTS / KOOISV_ORDER_SERVER_KEY unusable");
        ledger_consumer_destroy(&self);
        return NULL;
    }
    pgworker_config_t wc = {.name = "ledger consumer",
                            .session = {.dsn = dsn,
                                        .app = "kooisv-billing-ledger",
                                        .setup_sql = setup_sql,
                                        .stmts = ledger_stmts,
                                        .nstmts = ledger_stmts_count,
                                        .wait_s = 30},
                            .connect_first = true,
                            .poll_ms = cfg->poll_ms,
                            .retry_max_ms = cfg->poll_ms,
                            .step = consumer_step,
                            .arg = self};
    self->worker = pgworker_new(&wc);
    if (!self->worker) {
        ledger_consumer_destroy(&self);
        return NULL;
    }
    return self;
}

/* Call an action of the order service (caller kind "system", id the consumer) with the args
 * consumer and k1 v1; its JSON answer (caller decrefs) or NULL (logged). Every call has its own
 * request id (a replica answers a repeated id from its cache of answers: seenreq.h), logged
 * with the pull's id (log_rid). */
static json_t *order_call(ledger_consumer_t *self, const char *log_rid, const char *action,
                          const char *k1, const char *v1)
{
    char rid[37];
    rand_uuid(rid);
    log_debug(log_rid, "ledger: %s request=%s", action, rid);
    Kooisv__AdminRequest__ArgsEntry e[2];
    Kooisv__AdminRequest__ArgsEntry *ep[2];
    const char *kv[][2] = {{"consumer", self->cfg->consumer}, {k1, v1}};
    for (int i = 0; i < 2; i++) {
        kooisv__admin_request__args_entry__init(&e[i]);
        e[i].key = (char *)kv[i][0];
        e[i].value = (char *)kv[i][1];
        ep[i] = &e[i];
    }
    Kooisv__AdminRequest ar = KOOISV__ADMIN_REQUEST__INIT;
    ar.action = (char *)action;
    ar.args = ep;
    ar.n_args = 2;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    caller.kind = "system";
    caller.id = (char *)self->cfg->consumer;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    env.request_id = (char *)rid;
    env.trace_id = (char *)rid;
    env.received_ms = time_now_ms();
    env.deadline_ms = env.received_ms + ORDER_TIMEOUT_MS;
    env.caller = &caller;
    env.body_case = KOOISV__ENVELOPE__BODY_ADMIN;
    env.admin = &ar;
    Kooisv__Reply *reply = NULL;
    json_t *doc = NULL;
    if (rpc_call(self->rpc, &env, ORDER_TIMEOUT_MS, &reply) != 0) {
        log_warn(log_rid, "ledger: %s: the order service did not answer in time", action);
        return NULL;
    }
    if (strcmp(reply->result_code, RC_OK) == 0 &&
        reply->result_case == KOOISV__REPLY__RESULT_ADMIN && reply->admin)
        doc = json_loads(reply->admin->json, 0, NULL);
    if (!doc)
        log_warn(log_rid, "ledger: %s: order answered %s %s", action, reply->result_code,
                 reply->result_msg);
    kooisv__reply__free_unpacked(reply, NULL);
    return doc;
}

typedef struct {
    const json_t *event;
    const char *daily_products;
    ledger_outcome_t out;
} apply_ctx_t;

static pg_status_t apply_body(pg_tx_t *tx, void *arg)
{
    apply_ctx_t *a = arg;
    return ledger_apply(tx, a->event, a->daily_products, &a->out);
}

/* A whole pull in one transaction: the lock once, then every event in order. */
typedef struct {
    const json_t *events;
    size_t n;
    const char *daily_products;
    ledger_outcome_t *outs; /* n of them */
    bool busy;              /* another replica holds the lock */
} batch_ctx_t;

static pg_status_t batch_body(pg_tx_t *tx, void *arg)
{
    batch_ctx_t *b = arg;
    bool locked = false;
    b->busy = false;
    for (size_t i = 0; i < b->n; i++) /* a rerun (PG_RETRY) starts afresh */
        b->outs[i] = LEDGER_REJECTED;
    pg_status_t st = ledger_lock(tx, &locked);
    if (st != PG_OK)
        return st;
    if (!locked) {
        b->busy = true;
        return PG_ROLLBACK;
    }
    for (size_t i = 0; i < b->n && st == PG_OK; i++)
        st = apply_locked(tx, json_array_get(b->events, i), b->daily_products, &b->outs[i]);
    return st;
}

/* Log what applying ev did, and add its id to the acknowledgements (ack, acklen, nack). */
static void event_done(const char *rid, const json_t *ev, ledger_outcome_t out, char **ack,
                       size_t *acklen, size_t *nack)
{
    const char *id = str_of(ev, "eventId");
    if (out == LEDGER_REJECTED)
        log_error(rid, "ledger: order event %s is not one billing can read; skipped",
                  id && svcrt_text_ok(id, 64, true) ? id : "(no eventId)");
    else if (out == LEDGER_APPLIED)
        log_info(rid, "ledger: stored %s event=%s instance=%s", str_of(ev, "eventType"), id,
                 str_of(ev, "instanceId"));
    if (id && svcrt_text_ok(id, 64, true) && !strchr(id, ',')) {
        size_t l = strlen(id);
        *ack = xrealloc(*ack, *acklen + l + 2);
        if (*acklen)
            (*ack)[(*acklen)++] = ',';
        memcpy(*ack + *acklen, id, l + 1);
        *acklen += l;
        (*nack)++;
    }
}

/* Apply the events of one pull and acknowledge what is stored. They are applied in one
 * transaction (one commit, and one round trip per event); when that fails, one transaction
 * each, in order, up to the first that fails, as before the batch: the events ahead of a bad
 * one are stored and acknowledged, and the bad one stops the pull. The number applied or
 * acknowledged; -1 when the pull should pause (busy, database down). */
static int consume_batch(ledger_consumer_t *self, const char *rid, const json_t *events)
{
    size_t i, n = json_array_size(events), nack = 0, acklen = 0;
    char *ack = xcalloc(1, 1);
    int rc = 0;
    batch_ctx_t b = {.events = events,
                     .n = n,
                     .daily_products = self->cfg->daily_products,
                     .outs = xcalloc(n ? n : 1, sizeof *b.outs)};
    pg_status_t bst = n ? pg_tx_run(self->db, rid, batch_body, &b) : PG_OK;
    if (bst == PG_OK) {
        for (i = 0; i < n; i++)
            event_done(rid, json_array_get(events, i), b.outs[i], &ack, &acklen, &nack);
    } else if (b.busy) {
        log_info(rid, "ledger: another replica is applying order events; pausing");
        rc = -1;
    } else {
        log_warn(rid,
                 "ledger: the %zu events of this pull failed as one transaction; "
                 "applying them one at a time",
                 n);
        for (i = 0; i < n && !pgworker_stopping(self->worker); i++) {
            const json_t *ev = json_array_get(events, i);
            apply_ctx_t a = {.event = ev, .daily_products = self->cfg->daily_products};
            pg_status_t st = pg_tx_run(self->db, rid, apply_body, &a);
            if (st != PG_OK && st != PG_ROLLBACK) {
                rc = -1;
                break;
            }
            if (a.out == LEDGER_BUSY) {
                log_info(rid, "ledger: another replica is applying order events; pausing");
                rc = -1;
                break;
            }
            event_done(rid, ev, a.out, &ack, &acklen, &nack);
        }
    }
    free(b.outs);
    if (nack) {
        json_t *done = order_call(self, rid, "events.ack", "ids", ack);
        if (!done) /* they come again and are only acknowledged then */
            rc = -1;
        json_decref(done);
    }
    free(ack);
    return rc < 0 ? -1 : (int)nack;
}

/* One pull of the consumer thread (pgworker_step_t): a batch of pending order events applied
 * and acknowledged; true when the batch was full (more may be pending). */
static bool consumer_step(pgworker_t *worker, pg_session_t *db, void *arg)
{
    (void)worker;
    ledger_consumer_t *self = arg;
    self->db = db;
    char batch[16];
    snprintf(batch, sizeof batch, "%d", self->cfg->batch);
    char rid[37];
    rand_uuid(rid);
    if (!self->rpc) /* endpoints re-resolved after a failure: order replicas come and go */
        self->rpc = rpc_client_new(self->cfg->order_endpoints, self->cfg->order_server_key);
    json_t *doc = self->rpc ? order_call(self, rid, "events.pending", "limit", batch) : NULL;
    if (!doc)
        rpc_client_destroy(&self->rpc);
    const json_t *events = json_object_get(doc, "events");
    int got = -1;
    if (json_is_array(events))
        got = consume_batch(self, rid, events);
    size_t n = json_array_size(events);
    json_decref(doc);
    return got >= 0 && n >= (size_t)self->cfg->batch;
}

int ledger_consumer_start(ledger_consumer_t *self)
{
    return pgworker_start(self->worker);
}

void ledger_consumer_destroy(ledger_consumer_t **self_p)
{
    ledger_consumer_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    pgworker_destroy(&self->worker);
    rpc_client_destroy(&self->rpc);
    free(self);
    *self_p = NULL;
}
