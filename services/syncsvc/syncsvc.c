#include "syncsvc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migrations.h"
#include "syncoutbox.h"
#include "timeutil.h"
#include "xmalloc.h"

enum { SYNC_TX_ATTEMPTS = 3 };

bool sync_session_setup(PGconn *conn, const char *schema)
{
    /* schema is one of our constants, never input: quoting it is still cheap insurance */
    char *ident = PQescapeIdentifier(conn, schema, strlen(schema));
    if (!ident)
        return false;
    char sql[256];
    /* Timeouts: a statement stuck behind a lock must fail (000005, the marketplace retries)
     * before the gateway's 4 s budget is gone. */
    snprintf(sql, sizeof sql,
             "SET search_path = %s; SET statement_timeout = '3s'; SET lock_timeout = '2s';"
             " SET idle_in_transaction_session_timeout = '10s'; SET TIME ZONE 'UTC'",
             ident);
    PQfreemem(ident);
    return pg_command(conn, sql);
}

sync_worker_t *sync_worker_new(const char *dsn, const char *app, const char *schema,
                               const pg_stmt_t *const *groups, const size_t *counts, size_t ngroups)
{
    PGconn *conn = pg_connect(dsn, app, 30);
    if (!conn)
        return NULL;
    sync_worker_t *self = xcalloc(1, sizeof *self);
    self->conn = conn;
    self->schema = schema;
    for (size_t g = 0; g < ngroups; g++)
        self->nstmts += counts[g];
    self->stmts = xcalloc(self->nstmts ? self->nstmts : 1, sizeof *self->stmts);
    size_t k = 0;
    for (size_t g = 0; g < ngroups; g++)
        for (size_t i = 0; i < counts[g]; i++)
            self->stmts[k++] = groups[g][i];
    if (!sync_session_setup(conn, schema) || pg_prepare_all(conn, self->stmts, self->nstmts) != 0) {
        sync_worker_destroy(&self);
        return NULL;
    }
    return self;
}

void sync_worker_destroy(sync_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sync_worker_t *self = *self_p;
    PQfinish(self->conn);
    free(self->stmts);
    free(self);
    *self_p = NULL;
}

bool sync_worker_ready(sync_worker_t *self, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    if (env->deadline_ms > 0 && time_now_ms() > env->deadline_ms) {
        /* the gateway has already answered 000005: doing the work now would surprise it */
        svc_call_result(call, "000005", "deadline passed before the call could run");
        return false;
    }
    if (PQstatus(self->conn) == CONNECTION_OK && PQtransactionStatus(self->conn) == PQTRANS_IDLE)
        return true;
    if (PQstatus(self->conn) == CONNECTION_OK) {
        /* a transaction left open by a failed call: discard it */
        pg_command(self->conn, "ROLLBACK");
        if (PQtransactionStatus(self->conn) == PQTRANS_IDLE)
            return true;
    }
    PQreset(self->conn);
    if (PQstatus(self->conn) != CONNECTION_OK || !sync_session_setup(self->conn, self->schema) ||
        pg_prepare_all(self->conn, self->stmts, self->nstmts) != 0) {
        log_warn(svc_call_rid(call), "database unavailable");
        svc_call_result(call, "000005", "database unavailable");
        return false;
    }
    log_info(svc_call_rid(call), "database connection re-established");
    return true;
}

PGresult *sync_exec(sync_tx_t *tx, const char *stmt, int n, const char *const *params)
{
    PGresult *r = pg_exec(tx->conn, stmt, n, params);
    if (pg_ok(r))
        return r;
    tx->retryable = pg_is_retryable(r);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* the primary message only: parameters (which may be personal data) stay out of logs */
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    log_warn(svc_call_rid(tx->call), "statement %s failed: sqlstate=%s %s", stmt,
             state ? state : "-", primary ? primary : PQerrorMessage(tx->conn));
    PQclear(r);
    return NULL;
}

void sync_tx_run(sync_worker_t *w, svc_call_t *call, sync_tx_fn fn, void *arg)
{
    for (int attempt = 1; attempt <= SYNC_TX_ATTEMPTS; attempt++) {
        sync_tx_t tx = {.w = w, .conn = w->conn, .call = call, .ok_msg = "success"};
        if (!pg_command(w->conn, "BEGIN")) {
            svc_call_result(call, "000005", "database unavailable");
            return;
        }
        sync_tx_rc_t rc = fn(&tx, arg);
        if (rc == SYNC_TX_COMMIT) {
            PGresult *r = PQexec(w->conn, "COMMIT");
            bool ok = pg_ok(r);
            /* COMMIT of a failed transaction "succeeds" as a ROLLBACK: check what happened */
            if (ok && strcmp(PQcmdStatus(r), "COMMIT") != 0)
                ok = false;
            tx.retryable = pg_is_retryable(r);
            PQclear(r);
            if (ok) {
                svc_call_result(call, "000000", "%s", tx.ok_msg);
                return;
            }
            log_warn(svc_call_rid(call), "commit failed (attempt %d)", attempt);
        } else {
            pg_command(w->conn, "ROLLBACK");
            if (rc == SYNC_TX_ABORT)
                return;
        }
        if (PQtransactionStatus(w->conn) != PQTRANS_IDLE)
            pg_command(w->conn, "ROLLBACK");
        if (!tx.retryable)
            break;
    }
    svc_call_result(call, "000005", "database error, retry later");
}

char *sync_json_text(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        /* only on allocation failure inside jansson */
        fprintf(stderr, "level=error msg=\"json_dumps failed\"\n");
        abort();
    }
    return s;
}

char *sync_text_array(const char *const *items, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += 2 * strlen(items[i]) + 3; /* quotes, comma, every byte possibly escaped */
    char *out = xmalloc(cap);
    char *o = out;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        *o++ = '"';
        for (const char *p = items[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                *o++ = '\\';
            *o++ = *p;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

bool sync_text_ok(const char *s, size_t max, bool required)
{
    if (!s)
        return !required;
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if ((*p & 0xc0) != 0x80)
            chars++;
    }
    if (required && chars == 0)
        return false;
    return chars <= max;
}

const char *sync_admin_arg(const Kooisv__AdminRequest *req, const char *key)
{
    for (size_t i = 0; req && i < req->n_args; i++)
        if (req->args[i]->key && strcmp(req->args[i]->key, key) == 0)
            return req->args[i]->value ? req->args[i]->value : "";
    return "";
}

PGresult *sync_admin_query(sync_worker_t *w, svc_call_t *call, const char *stmt, int n,
                           const char *const *params)
{
    PGresult *r = pg_exec(w->conn, stmt, n, params);
    if (pg_ok(r))
        return r;
    log_warn(svc_call_rid(call), "%s failed: %s", stmt, PQerrorMessage(w->conn));
    PQclear(r);
    svc_call_result(call, "000005", "database error");
    return NULL;
}

/* Answer with doc as the AdminResult; wipe the serialised copy when it holds a secret. */
static void admin_reply(svc_call_t *call, json_t *doc, bool secret)
{
    char *text = sync_json_text(doc);
    json_decref(doc);
    Kooisv__Reply *reply = svc_call_reply(call);
    Kooisv__AdminResult *res = svc_call_alloc(call, sizeof *res);
    kooisv__admin_result__init(res);
    res->json = svc_call_strdup(call, text);
    if (secret)
        xfree_secret(text, strlen(text));
    else
        free(text);
    reply->result_case = KOOISV__REPLY__RESULT_ADMIN;
    reply->admin = res;
    svc_call_result(call, "000000", "success");
}

void sync_admin_reply(svc_call_t *call, json_t *doc)
{
    admin_reply(call, doc, false);
}

void sync_admin_reply_secret(svc_call_t *call, json_t *doc)
{
    admin_reply(call, doc, true);
}

/* The service being run, its statement groups completed with the outbox's. */
static sync_service_t running;
static const char *running_dsn; /* KOOISV_PG_DSN */

static void *service_worker_init(int index, void *arg)
{
    (void)index;
    const sync_service_t *s = arg;
    char app[64];
    snprintf(app, sizeof app, "kooisv-%s", s->name);
    sync_worker_t *w =
        sync_worker_new(running_dsn, app, s->schema, s->groups, s->counts, s->ngroups);
    if (w)
        w->svc = s->svc;
    return w;
}

static void service_worker_fini(void *state)
{
    sync_worker_t *w = state;
    sync_worker_destroy(&w);
}

/* Admin actions go to the service, then to the outbox; kit bodies to the service. */
static void service_dispatch(sync_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    if (env->body_case == KOOISV__ENVELOPE__BODY_ADMIN) {
        const Kooisv__AdminRequest *req = env->admin;
        if (!running.admin(w, call, req) && !syncoutbox_admin(w, call, req))
            svc_call_result(call, "000002", "unknown action for the %s service: %s", running.name,
                            req->action);
    } else if (!running.handle(w, call, env)) {
        svc_call_result(call, "000002", "the %s service does not serve this request", running.name);
    }
}

static void service_handle(void *state, svc_call_t *call)
{
    sync_worker_t *w = state;
    if (!sync_worker_ready(w, call))
        return;
    int64_t start = time_mono_us();
    service_dispatch(w, call);
    const Kooisv__Reply *reply = svc_call_reply(call);
    const Kooisv__Envelope *env = svc_call_request(call);
    log_info(svc_call_rid(call), "%s call body=%d result=%s msg=\"%s\" us=%lld", running.name,
             (int)env->body_case, reply->result_code, reply->result_msg,
             (long long)(time_mono_us() - start));
}

/* Migrate, start the outbox's delivery thread, serve; the process exit code. */
static int service_serve(const sync_service_t *s, int workers)
{
    char app[64];
    snprintf(app, sizeof app, "kooisv-%s-migrate", s->name);
    PGconn *conn = pg_connect(running_dsn, app, 60);
    if (!conn)
        return 1;
    bool ok = sync_session_setup(conn, s->schema) &&
              pg_migrate(conn, s->schema, service_migrations, service_migrations_count) == 0;
    PQfinish(conn);
    if (!ok) {
        log_error(NULL, "%s: migrations failed", s->name);
        return 1;
    }
    if (syncoutbox_start() != 0) {
        log_error(NULL, "%s: cannot start the outbox delivery thread", s->name);
        return 1;
    }
    svc_def_t def = {.name = s->name,
                     .bind = config_get("KOOISV_BIND"),
                     .workers = workers,
                     .worker_init = service_worker_init,
                     .worker_fini = service_worker_fini,
                     .handle = service_handle,
                     .arg = &running};
    int rc = svc_run(&def);
    svc_stop(); /* the delivery thread watches this */
    syncoutbox_join();
    return rc;
}

int sync_service_run(const sync_service_t *s)
{
    char prog[64];
    snprintf(prog, sizeof prog, "kooisv-%s", s->name);
    zmqauth_config_server(prog);
    running_dsn = config_get("KOOISV_PG_DSN");
    syncoutbox_config_t ob = {
        .source = s->name, .schema = s->schema, .dsn = running_dsn, .seal_key = s->seal_key};
    syncoutbox_init(&ob);
    int workers = (int)config_get_long("KOOISV_WORKERS", 1, 64);

    /* every worker also prepares the outbox's statements (syncoutbox_emit, syncoutbox_admin) */
    const pg_stmt_t **groups = xcalloc(s->ngroups + 1, sizeof *groups);
    size_t *counts = xcalloc(s->ngroups + 1, sizeof *counts);
    for (size_t g = 0; g < s->ngroups; g++) {
        groups[g] = s->groups[g];
        counts[g] = s->counts[g];
    }
    groups[s->ngroups] = syncoutbox_stmts;
    counts[s->ngroups] = syncoutbox_stmts_count;
    running = *s;
    running.groups = groups;
    running.counts = counts;
    running.ngroups = s->ngroups + 1;
    int rc = service_serve(&running, workers);
    free(groups);
    free(counts);
    return rc;
}
