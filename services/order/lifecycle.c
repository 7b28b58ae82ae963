/* lifecycle: newInstance, refreshInstance, updateInstanceStatus, releaseInstance,
 * upgradeInstance and changeInstanceCheck. Each runs as validate -> transaction -> reply;
 * idempotency comes from unique keys (instances_order_key, order_applications) and transitions
 * are serialized by the instance row lock (instance_lock, FOR UPDATE). */
#include "order.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instance_state.h"
#include "log.h"
#include "randutil.h"
#include "timeutil.h"

#define ID_MAX 256

const pg_stmt_t lifecycle_stmts[] = {
    {"instance_by_order",
     "SELECT instance_id FROM orders.instances"
     " WHERE test_flag = $1::boolean AND order_id = $2 AND order_line_id = $3",
     3},
    /* No conflict target: a clash on the order key (a duplicate) and on the id (businessId
     * reused by another order) both come back as "no row", told apart by instance_by_order. A
     * new instance comes back with its "instance.created" event (ORDER_EVENT_COLUMNS from
     * column 1), which then costs no round trip of its own. */
    {"instance_insert",
     "WITH i AS (INSERT INTO orders.instances (instance_id, order_id, order_line_id, business_id,"
     " test_flag, created_request_id) VALUES ($1, $2, $3, $4, $5::boolean, $6)"
     " ON CONFLICT DO NOTHING RETURNING *)"
     " SELECT i.instance_id, " ORDER_EVENT_COLUMNS("$2", "$3", "NULL", "NULL")
     " FROM i WHERE " OUTBOX_XACT_FIRST,
     6},
    /* A new job (queue_job). No NOTIFY: the replica that commits it wakes one of its own job
     * threads (jobs_wake); the other replicas find it at their next poll. A NOTIFY here woke
     * every job thread of every replica and every other LISTENing session of the database at
     * each commit, for claims that mostly came back empty. */
    {"job_insert",
     "INSERT INTO orders.jobs (kind, instance_id, order_id, order_line_id, request_id,"
     " next_attempt_at) VALUES ($1, $2, $3, $4, $5, now() + interval '" JOB_KEY_GRACE "')"
     " ON CONFLICT DO NOTHING",
     5},
    /* Key (order_applications_key): a renewal and its cancellation share the orderId. */
    {"application_exists",
     "SELECT 1 FROM orders.order_applications WHERE instance_id = $1 AND activity = $2"
     " AND order_id = $3 AND coalesce(scene, '') = coalesce($4, '')",
     4},
    {"application_insert",
     "INSERT INTO orders.order_applications (instance_id, activity, order_id, order_line_id,"
     " scene, request_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
     6},
    {"instance_lock",
     "SELECT state, to_char(expire_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
     " product_id, test_flag, charging_mode, freeze_requested FROM orders.instances"
     " WHERE instance_id = $1 FOR UPDATE",
     1},
    /* A debug call (testFlag 1) sees only test instances, a real call only real ones. */
    {"instance_state",
     "SELECT state FROM orders.instances WHERE instance_id = $1 AND test_flag = $2::boolean", 2},
    {"instance_request_freeze",
     "UPDATE orders.instances SET freeze_requested = $2::boolean, updated_at = now()"
     " WHERE instance_id = $1",
     2},
    {"instance_set_state",
     "UPDATE orders.instances SET state = $2, updated_at = now(),"
     " released_at = CASE WHEN $2 = 'released' THEN now() ELSE released_at END"
     " WHERE instance_id = $1",
     2},
    {"instance_refresh",
     "UPDATE orders.instances SET expire_time = to_timestamp($2::bigint / 1000.0),"
     " product_id = coalesce($3, product_id), trial = trial AND $4 <> 'TRIAL_TO_FORMAL',"
     " updated_at = now() WHERE instance_id = $1",
     4},
    {"instance_upgrade",
     "UPDATE orders.instances SET product_id = coalesce($2, product_id),"
     " plan_version = plan_version + 1, updated_at = now() WHERE instance_id = $1",
     2},
    {"jobs_cancel",
     "UPDATE orders.jobs SET state = 'cancelled', lease_owner = NULL, lease_until = NULL,"
     " updated_at = now() WHERE instance_id = $1 AND state IN ('pending', 'running', 'failed')",
     1},
};
const size_t lifecycle_stmts_count = sizeof lifecycle_stmts / sizeof lifecycle_stmts[0];

/* What a transaction body decided; the reply is set from it after COMMIT. */
typedef struct {
    const char *rid;
    const char *code;
    char msg[160];
} verdict_t;

static void decide(verdict_t *v, const char *code, const char *fmt, const char *arg)
{
    v->code = code;
    snprintf(v->msg, sizeof v->msg, fmt, arg ? arg : "");
}

/* The locked instance: state, expiry (ISO, "" when none), product and test flag. */
typedef struct {
    instance_state_t state;
    char expire[32];
    char product[ID_MAX + 1];
    bool test_flag;
    bool one_time;         /* charging mode ONE_TIME (known once Query Order answered) */
    bool freeze_requested; /* FREEZE while provisioning: delivered frozen */
} locked_t;

/* Lock instance_id; PG_OK with *found saying whether it exists. */
static pg_status_t instance_lock(PGconn *conn, const char *rid, const char *instance_id,
                                 locked_t *out, bool *found)
{
    pg_status_t st = PG_OK;
    const char *p[] = {instance_id};
    PGresult *res = pg_exec_logged(conn, rid, "instance_lock", 1, p, &st);
    if (!res)
        return st;
    *found = PQntuples(res) == 1;
    if (*found) {
        if (!instance_state_parse(pg_value(res, 0, 0), &out->state)) {
            log_error(rid, "instance %s has unknown state", instance_id);
            PQclear(res);
            return PG_FAIL;
        }
        snprintf(out->expire, sizeof out->expire, "%s",
                 pg_value(res, 0, 1) ? pg_value(res, 0, 1) : "");
        snprintf(out->product, sizeof out->product, "%s",
                 pg_value(res, 0, 2) ? pg_value(res, 0, 2) : "");
        out->test_flag = strcmp(pg_value(res, 0, 3), "t") == 0;
        out->one_time = pg_value(res, 0, 4) && strcmp(pg_value(res, 0, 4), "ONE_TIME") == 0;
        out->freeze_requested = strcmp(pg_value(res, 0, 5), "t") == 0;
    }
    PQclear(res);
    return PG_OK;
}

/* PG_OK with *applied = whether (instance, activity, order, scene) was already applied. */
static pg_status_t application_seen(PGconn *conn, const char *rid, const char *instance_id,
                                    const char *activity, const char *order_id, const char *scene,
                                    bool *applied)
{
    pg_status_t st = PG_OK;
    const char *p[] = {instance_id, activity, order_id, scene};
    PGresult *res = pg_exec_logged(conn, rid, "application_exists", 4, p, &st);
    if (!res)
        return st;
    *applied = PQntuples(res) > 0;
    PQclear(res);
    return PG_OK;
}

/* Lock instance_id into *cur; PG_ROLLBACK with the verdict 000003 when it does not exist for a
 * call with this testFlag (debug calls see only test instances, real calls only real ones). */
static pg_status_t lock_existing(PGconn *conn, verdict_t *v, const char *instance_id, bool test,
                                 locked_t *cur)
{
    bool found = false;
    pg_status_t st = instance_lock(conn, v->rid, instance_id, cur, &found);
    if (st != PG_OK)
        return st;
    if (!found || cur->test_flag != test) {
        decide(v, RC_NO_INSTANCE, "instance %s does not exist", instance_id);
        return PG_ROLLBACK;
    }
    return PG_OK;
}

/* PG_OK with *to when event applies to state; otherwise PG_ROLLBACK with the verdict: a no-op
 * answers 000000 noop_fmt (given the state's name), a busy or invalid one 000004 / 000002. */
static pg_status_t transition_or_verdict(verdict_t *v, instance_state_t state,
                                         instance_event_t event, instance_state_t *to,
                                         const char *noop_fmt)
{
    const char *why;
    switch (instance_transition(state, event, to, &why)) {
    case INSTANCE_APPLY:
        return PG_OK;
    case INSTANCE_NOOP:
        decide(v, RC_OK, noop_fmt, instance_state_name(state));
        break;
    case INSTANCE_BUSY:
        decide(v, RC_BUSY, "%s", why);
        break;
    case INSTANCE_INVALID:
        decide(v, RC_INVALID, "%s", why);
        break;
    }
    return PG_ROLLBACK;
}

/* Record the change (history + outbox) and decide success; PG_OK or the failure. */
static pg_status_t record_applied(pg_tx_t *tx, verdict_t *v, const change_t *ch, bool *changed)
{
    pg_status_t st = change_record(tx, ch);
    if (st != PG_OK)
        return st;
    *changed = true;
    decide(v, RC_OK, "success", NULL);
    return PG_OK;
}

/* Queue a job's insert in tx (job: kind, instance, order, line, request id) and set *wake: the
 * caller wakes a job thread of this replica once tx has committed (jobs_wake). */
static pg_status_t queue_job(pg_tx_t *tx, const char *const job[5], bool *wake)
{
    *wake = true;
    return pg_tx_queue(tx, "job_insert", 5, job);
}

/* ---- newInstance ---- */

typedef struct {
    verdict_t v;
    const Kooisv__NewInstance *req;
    const char *test; /* "true" / "false" */
    char instance_id[ID_MAX + 1];
    bool created;
    bool job_wake; /* it queued a job: wake a job thread after COMMIT (queue_job) */
} new_ctx_t;

static pg_status_t find_by_order(PGconn *conn, new_ctx_t *c, bool *found)
{
    pg_status_t st = PG_OK;
    const char *p[] = {c->test, c->req->order_id, c->req->order_line_id};
    PGresult *res = pg_exec_logged(conn, c->v.rid, "instance_by_order", 3, p, &st);
    if (!res)
        return st;
    *found = PQntuples(res) == 1;
    if (*found)
        snprintf(c->instance_id, sizeof c->instance_id, "%s", pg_value(res, 0, 0));
    PQclear(res);
    return PG_OK;
}

/* Everything a new instance starts with, in its creating transaction; inserted is
 * instance_insert's row (its event). */
static pg_status_t new_created(pg_tx_t *tx, new_ctx_t *c, const PGresult *inserted)
{
    const Kooisv__NewInstance *r = c->req;
    const char *rid = c->v.rid;
    const char *app[] = {c->instance_id, "newInstance", r->order_id, r->order_line_id, NULL, rid};
    const char *job[] = {"provision", c->instance_id, r->order_id, r->order_line_id, rid};
    pg_status_t st;
    if ((st = pg_tx_queue(tx, "application_insert", 6, app)) != PG_OK ||
        (st = queue_job(tx, job, &c->job_wake)) != PG_OK)
        return st;
    change_t ch = {.instance_id = c->instance_id,
                   .event = "created",
                   .to_state = instance_state_name(INSTANCE_PROVISIONING),
                   .order_id = r->order_id,
                   .order_line_id = r->order_line_id,
                   .outbox_event = "instance.created",
                   .request_id = rid};
    return change_record_from(tx, &ch, inserted, 0, 1);
}

static pg_status_t new_body(pg_tx_t *tx, void *arg)
{
    PGconn *conn = tx->conn;
    new_ctx_t *c = arg;
    const Kooisv__NewInstance *r = c->req;
    bool found = false;
    pg_status_t st = PG_OK;
    c->created = false;
    c->job_wake = false;
    /* Candidates: the first call's businessId (spec's recommendation), then random UUIDs when
     * that id already names another order's instance. The insert comes first, since most
     * calls are new orders: a repeat is a conflict, found by its order after it. */
    for (int attempt = 0; !found && attempt < 4; attempt++) {
        char uuid[37];
        const char *candidate = r->business_id;
        if (attempt > 0 || !*candidate || strlen(candidate) > ID_MAX) {
            rand_uuid(uuid);
            candidate = uuid;
        }
        const char *p[] = {candidate,      r->order_id, r->order_line_id,
                           r->business_id, c->test,     c->v.rid};
        PGresult *res = pg_exec_logged(conn, c->v.rid, "instance_insert", 6, p, &st);
        if (!res)
            return st;
        if (PQntuples(res) == 1) {
            snprintf(c->instance_id, sizeof c->instance_id, "%s", candidate);
            c->created = true;
            st = new_created(tx, c, res);
            PQclear(res);
            return st;
        }
        PQclear(res);
        /* ON CONFLICT waited for the competing transaction; its row is visible now. */
        if ((st = find_by_order(conn, c, &found)) != PG_OK)
            return st;
    }
    if (!found) {
        log_error(c->v.rid, "newInstance: no free instance id after several attempts");
        return PG_FAIL;
    }
    return PG_OK;
}

void lifecycle_new(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__NewInstance *r = env->new_instance;
    if (!order_require(call, "orderId", r->order_id, ID_MAX) ||
        !order_require(call, "orderLineId", r->order_line_id, ID_MAX) ||
        !order_require(call, "businessId", r->business_id, 1024))
        return;
    new_ctx_t c = {
        .v = {.rid = svc_call_rid(call)}, .req = r, .test = env->test_flag ? "true" : "false"};
    pg_status_t st = pg_tx_run(w->db, c.v.rid, new_body, &c);
    if (st != PG_OK) {
        order_reply(call, st, RC_INTERNAL, "");
        return;
    }
    if (c.job_wake)
        jobs_wake("provision", c.instance_id, r->order_id);
    Kooisv__Reply *reply = svc_call_reply(call);
    Kooisv__NewInstanceResult *res = svc_call_alloc(call, sizeof *res);
    kooisv__new_instance_result__init(res);
    res->instance_id = svc_call_strdup(call, c.instance_id);
    reply->new_instance = res;
    reply->result_case = KOOISV__REPLY__RESULT_NEW_INSTANCE;
    log_info(c.v.rid, "newInstance order=%s line=%s instance=%s %s test=%d", r->order_id,
             r->order_line_id, c.instance_id, c.created ? "created" : "existing", env->test_flag);
    svc_call_result(call, RC_OK, "%s", c.created ? "success" : "success (existing instance)");
}

/* ---- refreshInstance / upgradeInstance: apply an order once ---- */

typedef struct {
    verdict_t v;
    const char *activity; /* refreshInstance | upgradeInstance */
    instance_event_t event;
    const char *instance_id;
    bool test_flag; /* the call's testFlag */
    const char *order_id;
    const char *order_line_id;
    const char *scene;      /* refresh */
    const char *product_id; /* NULL = unchanged */
    int64_t expire_ms;      /* refresh */
    const char *expire_raw; /* refresh */
    bool changed;
    bool job_wake; /* it queued a job: wake a job thread after COMMIT (queue_job) */
} apply_ctx_t;

static pg_status_t apply_body(pg_tx_t *tx, void *arg)
{
    PGconn *conn = tx->conn;
    apply_ctx_t *c = arg;
    const char *rid = c->v.rid;
    locked_t cur;
    bool applied = false;
    instance_state_t to;
    pg_status_t st;
    c->changed = false;
    c->job_wake = false;
    if ((st = lock_existing(conn, &c->v, c->instance_id, c->test_flag, &cur)) != PG_OK)
        return st;
    if ((st = application_seen(conn, rid, c->instance_id, c->activity, c->order_id, c->scene,
                               &applied)) != PG_OK)
        return st;
    if (applied) {
        decide(&c->v, RC_OK, "success (order %s already applied)", c->order_id);
        return PG_ROLLBACK;
    }
    if ((st = transition_or_verdict(&c->v, cur.state, c->event, &to, "success")) != PG_OK)
        return st;
    if (c->event == INSTANCE_EV_REFRESH && cur.one_time) {
        decide(&c->v, RC_INVALID, "instance %s is a ONE_TIME purchase: it has no expiry to refresh",
               c->instance_id);
        return PG_ROLLBACK;
    }
    const char *app[] = {c->instance_id, c->activity, c->order_id, c->order_line_id, c->scene, rid};
    if ((st = pg_tx_queue(tx, "application_insert", 6, app)) != PG_OK)
        return st;

    json_t *detail = json_object();
    const char *outbox;
    if (c->event == INSTANCE_EV_REFRESH) {
        char ms[24];
        snprintf(ms, sizeof ms, "%lld", (long long)c->expire_ms);
        const char *p[] = {c->instance_id, ms, c->product_id, c->scene};
        st = pg_tx_queue(tx, "instance_refresh", 4, p);
        json_object_set_new(detail, "expireTime", json_string(c->expire_raw));
        json_object_set_new(detail, "previousExpireTime",
                            *cur.expire ? json_string(cur.expire) : json_null());
        outbox = "instance.renewed";
        /* A renewal or a trial's conversion is an order of its own: its period and product come
         * from Query Order, in the background, and its event follows once they are stored. A
         * cancellation names the renewal's order, which changes no plan. */
        if (strcmp(c->scene, "UNSUBSCRIBE_RENEWAL_PERIOD") != 0) {
            const char *job[] = {"order_sync", c->instance_id, c->order_id, c->order_line_id, rid};
            if (st == PG_OK)
                st = queue_job(tx, job, &c->job_wake);
            outbox = NULL;
        }
    } else {
        const char *p[] = {c->instance_id, c->product_id};
        const char *job[] = {"order_sync", c->instance_id, c->order_id, c->order_line_id, rid};
        st = pg_tx_queue(tx, "instance_upgrade", 2, p);
        /* The new plan's details (sku, period) come from Query Order, in the background. */
        if (st == PG_OK)
            st = queue_job(tx, job, &c->job_wake);
        outbox = "instance.upgraded";
    }
    if (c->product_id) {
        json_object_set_new(detail, "productId", json_string(c->product_id));
        json_object_set_new(detail, "previousProductId",
                            *cur.product ? json_string(cur.product) : json_null());
    }
    char *detail_text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(detail);
    if (st == PG_OK) {
        change_t ch = {.instance_id = c->instance_id,
                       .event = instance_event_name(c->event),
                       .from_state = instance_state_name(cur.state),
                       .to_state = instance_state_name(to),
                       .order_id = c->order_id,
                       .order_line_id = c->order_line_id,
                       .scene = c->scene,
                       .detail_json = detail_text,
                       .outbox_event = outbox,
                       .request_id = rid};
        st = record_applied(tx, &c->v, &ch, &c->changed);
    }
    free(detail_text);
    return st;
}

/* The context of an order (refresh or upgrade) the call applies to an instance; product_id as
 * received (empty = unchanged). */
static apply_ctx_t apply_ctx_of(svc_call_t *call, const char *activity, instance_event_t event,
                                const char *instance_id, const char *order_id,
                                const char *order_line_id, const char *product_id)
{
    return (apply_ctx_t){.v = {.rid = svc_call_rid(call)},
                         .activity = activity,
                         .event = event,
                         .instance_id = instance_id,
                         .test_flag = svc_call_request(call)->test_flag,
                         .order_id = order_id,
                         .order_line_id = order_line_id,
                         .product_id = order_nullable(product_id)};
}

/* Check the optional productId, apply the order and reply; true when it changed the instance. */
static bool apply_order(svcrt_worker_t *w, svc_call_t *call, apply_ctx_t *c)
{
    if (c->product_id && strlen(c->product_id) > ID_MAX) {
        svc_call_result(call, RC_INVALID, "productId is longer than %d characters", ID_MAX);
        return false;
    }
    pg_status_t st = pg_tx_run(w->db, c->v.rid, apply_body, c);
    if (st == PG_OK && c->job_wake)
        jobs_wake("order_sync", c->instance_id, c->order_id);
    order_reply(call, st, c->v.code, c->v.msg);
    return c->changed && st == PG_OK;
}

void lifecycle_refresh(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__RefreshInstance *r = env->refresh_instance;
    if (!order_require(call, "instanceId", r->instance_id, ID_MAX) ||
        !order_require(call, "scene", r->scene, 64) ||
        !order_require(call, "orderId", r->order_id, ID_MAX) ||
        !order_require(call, "orderLineId", r->order_line_id, ID_MAX) ||
        !order_require(call, "expireTime", r->expire_time, 14))
        return;
    if (strcmp(r->scene, "TRIAL_TO_FORMAL") != 0 && strcmp(r->scene, "RENEWAL") != 0 &&
        strcmp(r->scene, "UNSUBSCRIBE_RENEWAL_PERIOD") != 0) {
        svc_call_result(call, RC_INVALID,
                        "scene must be TRIAL_TO_FORMAL, RENEWAL or UNSUBSCRIBE_RENEWAL_PERIOD");
        return;
    }
    apply_ctx_t c = apply_ctx_of(call, "refreshInstance", INSTANCE_EV_REFRESH, r->instance_id,
                                 r->order_id, r->order_line_id, r->product_id);
    c.scene = r->scene;
    c.expire_raw = r->expire_time;
    if (strlen(r->expire_time) != 14 ||
        !time_parse_compact(order_cfg(w)->market.zone, r->expire_time, &c.expire_ms)) {
        svc_call_result(call, RC_INVALID, "expireTime must be yyyyMMddHHmmss");
        return;
    }
    if (apply_order(w, call, &c))
        log_info(c.v.rid, "refreshInstance instance=%s order=%s scene=%s expire=%s", r->instance_id,
                 r->order_id, r->scene, r->expire_time);
}

void lifecycle_upgrade(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__UpgradeInstance *r = env->upgrade_instance;
    if (!order_require(call, "instanceId", r->instance_id, ID_MAX) ||
        !order_require(call, "orderId", r->order_id, ID_MAX) ||
        !order_require(call, "orderLineId", r->order_line_id, ID_MAX))
        return;
    apply_ctx_t c = apply_ctx_of(call, "upgradeInstance", INSTANCE_EV_UPGRADE, r->instance_id,
                                 r->order_id, r->order_line_id, r->product_id);
    if (apply_order(w, call, &c))
        log_info(c.v.rid, "upgradeInstance instance=%s order=%s", r->instance_id, r->order_id);
}

/* ---- updateInstanceStatus / releaseInstance: state changes ---- */

typedef struct {
    verdict_t v;
    instance_event_t event;
    const char *instance_id;
    bool test_flag;            /* the call's testFlag */
    const char *order_id;      /* release by unsubscription, else NULL */
    const char *order_line_id; /* idem */
    const char *status;        /* FREEZE / UNFREEZE, NULL for release */
    bool changed;
} state_ctx_t;

static const char *outbox_event_of(instance_event_t ev)
{
    switch (ev) {
    case INSTANCE_EV_FREEZE:
        return "instance.frozen";
    case INSTANCE_EV_UNFREEZE:
        return "instance.unfrozen";
    default:
        return "instance.released";
    }
}

/* FREEZE/UNFREEZE while provisioning: keep the wanted status for the provisioning job, which
 * delivers the instance in it. */
static pg_status_t status_while_provisioning(pg_tx_t *tx, state_ctx_t *c, const locked_t *cur)
{
    bool freeze = c->event == INSTANCE_EV_FREEZE;
    if (cur->freeze_requested == freeze) {
        decide(&c->v, RC_OK, "%s",
               freeze ? "success (instance will be delivered frozen)" : "success (not frozen)");
        return PG_ROLLBACK;
    }
    const char *p[] = {c->instance_id, freeze ? "true" : "false"};
    pg_status_t st = pg_tx_queue(tx, "instance_request_freeze", 2, p);
    if (st != PG_OK)
        return st;
    const char *state = instance_state_name(cur->state);
    change_t ch = {.instance_id = c->instance_id,
                   .event = instance_event_name(c->event),
                   .from_state = state,
                   .to_state = state,
                   .status = c->status,
                   .detail_json = "{\"whileProvisioning\":true}",
                   .request_id = c->v.rid};
    st = record_applied(tx, &c->v, &ch, &c->changed);
    if (st == PG_OK && freeze)
        decide(&c->v, RC_OK, "%s", "success (instance will be delivered frozen)");
    return st;
}

static pg_status_t state_body(pg_tx_t *tx, void *arg)
{
    PGconn *conn = tx->conn;
    state_ctx_t *c = arg;
    const char *rid = c->v.rid;
    locked_t cur;
    instance_state_t to;
    pg_status_t st;
    c->changed = false;
    if ((st = lock_existing(conn, &c->v, c->instance_id, c->test_flag, &cur)) != PG_OK ||
        (st = transition_or_verdict(&c->v, cur.state, c->event, &to,
                                    "success (instance already %s)")) != PG_OK)
        return st;
    if (cur.state == INSTANCE_PROVISIONING && c->event != INSTANCE_EV_RELEASE)
        return status_while_provisioning(tx, c, &cur);
    const char *p[] = {c->instance_id, instance_state_name(to)};
    if ((st = pg_tx_queue(tx, "instance_set_state", 2, p)) != PG_OK)
        return st;
    if (c->event == INSTANCE_EV_RELEASE) {
        const char *job[] = {c->instance_id};
        if ((st = pg_tx_queue(tx, "jobs_cancel", 1, job)) != PG_OK)
            return st;
        if (c->order_id) {
            const char *app[] = {
                c->instance_id, "releaseInstance", c->order_id, c->order_line_id, NULL, rid};
            if ((st = pg_tx_queue(tx, "application_insert", 6, app)) != PG_OK)
                return st;
        }
    }
    change_t ch = {.instance_id = c->instance_id,
                   .event = instance_event_name(c->event),
                   .from_state = instance_state_name(cur.state),
                   .to_state = instance_state_name(to),
                   .order_id = c->order_id,
                   .order_line_id = c->order_line_id,
                   .status = c->status,
                   .outbox_event = outbox_event_of(c->event),
                   .request_id = rid};
    /* Billing tells a release by unsubscription (a refund inside the guarantee period) from
     * the end of the instance's life. */
    json_t *extra = NULL;
    if (c->event == INSTANCE_EV_RELEASE)
        ch.data_extra = extra = json_pack("{s:b}", "byUnsubscription", c->order_id != NULL);
    st = record_applied(tx, &c->v, &ch, &c->changed);
    json_decref(extra);
    return st;
}

static void state_change(svcrt_worker_t *w, svc_call_t *call, state_ctx_t *c)
{
    pg_status_t st = pg_tx_run(w->db, c->v.rid, state_body, c);
    order_reply(call, st, c->v.code, c->v.msg);
    if (c->changed && st == PG_OK)
        log_info(c->v.rid, "%s instance=%s", instance_event_name(c->event), c->instance_id);
}

void lifecycle_status(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__UpdateInstanceStatus *r = env->update_instance_status;
    if (!order_require(call, "instanceId", r->instance_id, ID_MAX) ||
        !order_require(call, "status", r->status, 16))
        return;
    state_ctx_t c = {.v = {.rid = svc_call_rid(call)},
                     .instance_id = r->instance_id,
                     .test_flag = env->test_flag,
                     .status = r->status};
    if (strcmp(r->status, "FREEZE") == 0) {
        c.event = INSTANCE_EV_FREEZE;
    } else if (strcmp(r->status, "UNFREEZE") == 0) {
        c.event = INSTANCE_EV_UNFREEZE;
    } else {
        svc_call_result(call, RC_INVALID, "status must be FREEZE or UNFREEZE");
        return;
    }
    state_change(w, call, &c);
}

void lifecycle_release(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__ReleaseInstance *r = env->release_instance;
    if (!order_require(call, "instanceId", r->instance_id, ID_MAX))
        return;
    if (strlen(r->order_id) > ID_MAX || strlen(r->order_line_id) > ID_MAX) {
        svc_call_result(call, RC_INVALID, "orderId/orderLineId longer than %d characters", ID_MAX);
        return;
    }
    state_ctx_t c = {.v = {.rid = svc_call_rid(call)},
                     .event = INSTANCE_EV_RELEASE,
                     .instance_id = r->instance_id,
                     .test_flag = env->test_flag,
                     .order_id = order_nullable(r->order_id),
                     .order_line_id = order_nullable(r->order_line_id)};
    state_change(w, call, &c);
}

/* ---- changeInstanceCheck: read-only ---- */

void lifecycle_change_check(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__ChangeInstanceCheck *r = env->change_instance_check;
    const char *rid = svc_call_rid(call);
    if (!order_require(call, "instanceId", r->instance_id, ID_MAX) ||
        !order_require(call, "productInfo.productId", r->product_id, ID_MAX))
        return;
    pg_status_t st = PG_OK;
    const char *p[] = {r->instance_id, env->test_flag ? "true" : "false"};
    PGresult *res = pg_session_exec(w->db, rid, "instance_state", 2, p, &st);
    if (!res) {
        order_reply(call, st, RC_INTERNAL, "");
        return;
    }
    instance_state_t cur, to;
    const char *why;
    if (PQntuples(res) != 1) {
        svc_call_result(call, RC_NO_INSTANCE, "instance %s does not exist", r->instance_id);
    } else if (!instance_state_parse(pg_value(res, 0, 0), &cur)) {
        svc_call_result(call, RC_INTERNAL, "internal error; please retry");
    } else if (instance_transition(cur, INSTANCE_EV_CHECK, &to, &why) != INSTANCE_APPLY) {
        svc_call_result(call, RC_INVALID, "%s", why);
    } else {
        log_info(rid, "changeInstanceCheck instance=%s product=%s allowed", r->instance_id,
                 r->product_id);
        svc_call_result(call, RC_OK, "success (change allowed)");
    }
    PQclear(res);
}
