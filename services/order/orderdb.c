/* orderdb: the statement registry, the transaction helper, and change_record (history + outbox),
 * shared by the request handlers and the job threads. */
#include "order.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xmalloc.h"

const pg_stmt_t orderdb_stmts[] = {
    {"history_insert",
     "INSERT INTO orders.instance_history (instance_id, event, from_state, to_state, order_id,"
     " order_line_id, scene, status, request_id, detail)"
     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
     10},
    /* The payload is the instance as it is after the change, so billing needs no second look. */
    {"outbox_insert",
     "WITH e AS (SELECT gen_random_uuid() AS id)"
     " INSERT INTO orders.outbox (event_id, event_type, instance_id, test_flag, payload)"
     " SELECT e.id, $2, i.instance_id, i.test_flag, jsonb_build_object("
     "  'eventId', e.id, 'eventType', $2::text, 'instanceId', i.instance_id,"
     "  'orderId', coalesce($3::text, i.order_id),"
     "  'orderLineId', coalesce($4::text, i.order_line_id),"
     "  'state', i.state, 'testFlag', i.test_flag, 'productId', i.product_id,"
     "  'skuCode', i.sku_code, 'chargingMode', i.charging_mode, 'periodType', i.period_type,"
     "  'periodNumber', i.period_number, 'amount', i.amount, 'trial', i.trial,"
     "  'expireTime', i.expire_time, 'planVersion', i.plan_version,"
     "  'requestId', $5::text, 'at', now())"
     " FROM orders.instances i, e WHERE i.instance_id = $1",
     5},
};
const size_t orderdb_stmts_count = sizeof orderdb_stmts / sizeof orderdb_stmts[0];

static pg_stmt_t *all_stmts;
static size_t all_count;
static pthread_once_t all_once = PTHREAD_ONCE_INIT;

static void statements_build(void)
{
    const struct {
        const pg_stmt_t *stmts;
        size_t n;
    } tables[] = {
        {orderdb_stmts, orderdb_stmts_count},   {lifecycle_stmts, lifecycle_stmts_count},
        {query_stmts, query_stmts_count},       {license_stmts, license_stmts_count},
        {admin_stmts, admin_stmts_count},       {jobs_stmts, jobs_stmts_count},
        {zonemark_stmts, zonemark_stmts_count},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        n += tables[i].n;
    all_stmts = xcalloc(n, sizeof *all_stmts);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        memcpy(all_stmts + all_count, tables[i].stmts, tables[i].n * sizeof *all_stmts);
        all_count += tables[i].n;
    }
}

const pg_stmt_t *orderdb_statements(size_t *n)
{
    pthread_once(&all_once, statements_build);
    *n = all_count;
    return all_stmts;
}

PGconn *orderdb_connect(const order_config_t *cfg, const char *app, int wait_s)
{
    PGconn *conn = pg_connect(cfg->dsn, app, wait_s);
    if (!conn)
        return NULL;
    size_t n;
    const pg_stmt_t *stmts = orderdb_statements(&n);
    if (pg_prepare_all(conn, stmts, n) != 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

bool orderdb_ensure(PGconn *conn)
{
    size_t n;
    const pg_stmt_t *stmts = orderdb_statements(&n);
    return pg_ensure(conn, stmts, n);
}

PGresult *orderdb_exec(PGconn *conn, const char *rid, const char *stmt, int nparams,
                       const char *const *params, db_status_t *status)
{
    bool idle = PQtransactionStatus(conn) == PQTRANS_IDLE;
    PGresult *res = pg_exec(conn, stmt, nparams, params);
    /* A connection that died while idle (database restart) is found broken only when used;
     * outside a transaction nothing is lost by reconnecting and asking again. */
    if (!pg_ok(res) && idle && PQstatus(conn) == CONNECTION_BAD && orderdb_ensure(conn)) {
        PQclear(res);
        res = pg_exec(conn, stmt, nparams, params);
    }
    if (pg_ok(res))
        return res;
    *status = pg_is_retryable(res) ? DB_RETRY : DB_FAIL;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    log_msg(*status == DB_RETRY ? LOG_INFO : LOG_ERROR, rid, "statement %s failed: sqlstate=%s %s",
            stmt, state ? state : "-", PQresultErrorMessage(res));
    PQclear(res);
    return NULL;
}

db_status_t orderdb_tx(PGconn *conn, const char *rid, db_status_t (*body)(PGconn *, void *),
                       void *ctx)
{
    for (int attempt = 0;; attempt++) {
        bool begun = pg_command(conn, "BEGIN");
        if (!begun && PQstatus(conn) == CONNECTION_BAD && orderdb_ensure(conn))
            begun = pg_command(conn, "BEGIN"); /* died while idle: nothing was lost */
        if (!begun) {
            log_error(rid, "BEGIN failed: %s", PQerrorMessage(conn));
            return DB_FAIL;
        }
        db_status_t st = body(conn, ctx);
        if (st == DB_OK) {
            if (pg_command(conn, "COMMIT"))
                return DB_OK;
            /* After a failed COMMIT the transaction is gone either way; nothing was promised. */
            log_error(rid, "COMMIT failed: %s", PQerrorMessage(conn));
            return DB_FAIL;
        }
        pg_command(conn, "ROLLBACK");
        if (st == DB_ROLLBACK)
            return DB_ROLLBACK;
        if (st == DB_RETRY && attempt < 4)
            continue;
        return DB_FAIL;
    }
}

db_status_t change_record(PGconn *conn, const change_t *c)
{
    assert(c && c->instance_id && c->event && c->to_state);
    db_status_t st = DB_OK;
    const char *h[] = {c->instance_id,   c->event, c->from_state, c->to_state,   c->order_id,
                       c->order_line_id, c->scene, c->status,     c->request_id, c->detail_json};
    PGresult *res = orderdb_exec(conn, c->request_id, "history_insert", 10, h, &st);
    if (!res)
        return st;
    PQclear(res);
    if (!c->outbox_event)
        return DB_OK;
    const char *o[] = {c->instance_id, c->outbox_event, c->order_id, c->order_line_id,
                       c->request_id};
    res = orderdb_exec(conn, c->request_id, "outbox_insert", 5, o, &st);
    if (!res)
        return st;
    PQclear(res);
    return DB_OK;
}

db_status_t change_notify_jobs(PGconn *conn, const char *rid)
{
    /* Delivered at COMMIT to every replica's job threads (LISTEN orders_jobs); polling covers
     * a lost notification. */
    if (pg_command(conn, "NOTIFY orders_jobs"))
        return DB_OK;
    log_error(rid, "NOTIFY failed: %s", PQerrorMessage(conn));
    return DB_FAIL;
}

bool order_require(svc_call_t *call, const char *name, const char *value, size_t max)
{
    if (!value || !*value) {
        svc_call_result(call, RC_INVALID, "%s is required", name);
        return false;
    }
    if (strlen(value) > max) {
        svc_call_result(call, RC_INVALID, "%s is longer than %zu characters", name, max);
        return false;
    }
    return true;
}

void order_reply(svc_call_t *call, db_status_t st, const char *code, const char *msg)
{
    if (st == DB_OK || st == DB_ROLLBACK)
        svc_call_result(call, code, "%s", msg);
    else
        svc_call_result(call, RC_INTERNAL, "internal error; please retry");
}
