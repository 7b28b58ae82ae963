/* orderdb: the statement registry, the session factory, and change_record (history + outbox
 * event through common/outbox), shared by the request handlers and the job threads. */
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
    /* An event's data: the instance as it is after the change, so billing needs no second
     * look (README "Order events"); with the event's id, in the same round trip. */
    {"outbox_snapshot",
     "SELECT " ORDER_EVENT_COLUMNS("$2", "$3", "$4", "$5")
     " FROM orders.instances i WHERE i.instance_id = $1 AND " OUTBOX_XACT_FIRST,
     5},
};
const size_t orderdb_stmts_count = sizeof orderdb_stmts / sizeof orderdb_stmts[0];

static pg_stmt_t *all_stmts; /* the order's own statements, then the outbox's */
static size_t own_count, all_count;
static pthread_once_t all_once = PTHREAD_ONCE_INIT;
static outbox_t *events; /* set once at start, before any thread runs */

static void statements_build(void)
{
    const struct {
        const pg_stmt_t *stmts;
        size_t n;
    } tables[] = {
        {orderdb_stmts, orderdb_stmts_count},   {lifecycle_stmts, lifecycle_stmts_count},
        {query_stmts, query_stmts_count},       {license_stmts, license_stmts_count},
        {admin_stmts, admin_stmts_count},       {jobs_stmts, jobs_stmts_count},
        {zonemark_stmts, zonemark_stmts_count}, {eventfeed_stmts, eventfeed_stmts_count},
    };
    size_t nout;
    const pg_stmt_t *out = outbox_stmts(&nout);
    size_t n = nout;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        n += tables[i].n;
    all_stmts = xcalloc(n, sizeof *all_stmts);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        memcpy(all_stmts + all_count, tables[i].stmts, tables[i].n * sizeof *all_stmts);
        all_count += tables[i].n;
    }
    own_count = all_count;
    memcpy(all_stmts + all_count, out, nout * sizeof *all_stmts);
    all_count += nout;
}

const pg_stmt_t *orderdb_statements(size_t *n)
{
    pthread_once(&all_once, statements_build);
    *n = own_count;
    return all_stmts;
}

void orderdb_use_outbox(outbox_t *outbox)
{
    events = outbox;
}

pg_session_config_t orderdb_session_config(const order_config_t *cfg, const char *app, int wait_s)
{
    size_t n;
    (void)orderdb_statements(&n);
    const pg_stmt_t *stmts = all_stmts;
    n = all_count; /* the runtime adds the outbox's to its workers; these sessions need them too */
    return (pg_session_config_t){.dsn = cfg->dsn,
                                 .app = app,
                                 .setup_sql = cfg->session_sql,
                                 .stmts = stmts,
                                 .nstmts = n,
                                 .wait_s = wait_s};
}

pg_session_t *orderdb_session(const order_config_t *cfg, const char *app, int wait_s)
{
    pg_session_config_t sc = orderdb_session_config(cfg, app, wait_s);
    return pg_session_new(&sc);
}

/* The event of c from a row of ORDER_EVENT_COLUMNS (with c->data_extra merged in), emitted in
 * tx. */
static pg_status_t event_emit_from(pg_tx_t *tx, const change_t *c, const PGresult *res, int row,
                                   int col)
{
    if (!events) {
        log_error(c->request_id, "order events: no outbox (start order)");
        return PG_FAIL;
    }
    bool test_flag = strcmp(PQgetvalue(res, row, col + 1), "t") == 0;
    json_t *data = json_loads(PQgetvalue(res, row, col + 2), 0, NULL);
    if (!data) {
        log_error(c->request_id, "order event %s: its data is not JSON", c->outbox_event);
        return PG_FAIL;
    }
    if (c->data_extra)
        json_object_update(data, c->data_extra);
    return outbox_emit_id(events, tx, PQgetvalue(res, row, col), c->outbox_event, c->instance_id,
                          "", test_flag, data);
}

/* The event of c: the instance snapshot (with c->data_extra merged in) emitted in tx. */
static pg_status_t event_emit(pg_tx_t *tx, const change_t *c)
{
    const char *p[] = {c->instance_id, c->order_id, c->order_line_id, c->scene, c->from_state};
    pg_status_t st = PG_OK;
    PGresult *res = pg_exec_logged(tx->conn, c->request_id, "outbox_snapshot", 5, p, &st);
    if (!res)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        log_error(c->request_id, "order event %s: instance %s not found", c->outbox_event,
                  c->instance_id);
        return PG_FAIL;
    }
    st = event_emit_from(tx, c, res, 0, 0);
    PQclear(res);
    return st;
}

/* c's history row, queued in tx: it goes out with the event's statements or the COMMIT. */
static pg_status_t history_queue(pg_tx_t *tx, const change_t *c)
{
    const char *h[] = {c->instance_id,   c->event, c->from_state, c->to_state,   c->order_id,
                       c->order_line_id, c->scene, c->status,     c->request_id, c->detail_json};
    return pg_tx_queue(tx, "history_insert", 10, h);
}

pg_status_t change_record(pg_tx_t *tx, const change_t *c)
{
    assert(c && c->instance_id && c->event && c->to_state);
    pg_status_t st = history_queue(tx, c);
    if (st != PG_OK)
        return st;
    return c->outbox_event ? event_emit(tx, c) : PG_OK;
}

pg_status_t change_record_from(pg_tx_t *tx, const change_t *c, const PGresult *res, int row,
                               int col)
{
    assert(c && c->instance_id && c->event && c->to_state && c->outbox_event);
    pg_status_t st = history_queue(tx, c);
    return st == PG_OK ? event_emit_from(tx, c, res, row, col) : st;
}

pg_status_t change_notify_jobs(PGconn *conn, const char *rid)
{
    /* Delivered at COMMIT to every replica's job threads (LISTEN orders_jobs); polling covers
     * a lost notification. */
    if (pg_command(conn, "NOTIFY orders_jobs"))
        return PG_OK;
    log_error(rid, "NOTIFY failed: %s", PQerrorMessage(conn));
    return PG_FAIL;
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

void order_reply(svc_call_t *call, pg_status_t st, const char *code, const char *msg)
{
    if (st == PG_OK || st == PG_ROLLBACK)
        svc_call_result(call, code, "%s", msg);
    else
        svc_call_result(call, RC_INTERNAL, "internal error; please retry");
}
