#include "svcrt.h"
#include "resultcode.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "svcadmin.h"
#include "timeutil.h"
#include "xmalloc.h"

/* The service this process runs (svcrt_run is called once per process). */
static struct {
    svcrt_def_t *def;
    const char *dsn;  /* KOOISV_PG_DSN */
    int wait_s;       /* worker sessions wait this long for the database */
    pg_stmt_t *stmts; /* the service's groups, then the outbox's */
    size_t nstmts;
    outbox_t *outbox;
    /* Readiness: one connection of its own, asked at most once a second (svcrt_ready). */
    pthread_mutex_t probe_lock;
    PGconn *probe;
    int64_t probe_at_us;
    bool probe_ok;
    char probe_why[120];
} rt = {.probe_lock = PTHREAD_MUTEX_INITIALIZER};

void svcrt_die(const char *var, const char *why)
{
    config_die("%s: %s", var, why); /* config_load was given "kooisv-<name>" */
}

/* ---------------------------------------------------------------- start-up */

/* The outbox as SVCRT_OUTBOX_CONFIG_VARS say; exits 2 on a bad setting. */
static outbox_t *outbox_from_config(const svcrt_def_t *def)
{
    const char *ca = config_get("KOOISV_SYNC_WEBHOOK_CA_FILE");
    outbox_config_t oc = {
        .source = def->name,
        .schema = def->schema,
        .dsn = rt.dsn,
        .setup_sql = def->session_sql,
        .seal_key = def->seal_key,
        .url = config_get("KOOISV_SYNC_WEBHOOK_URL"),
        .secret = config_get("KOOISV_SYNC_WEBHOOK_SECRET"),
        .ca_file = *ca ? ca : config_get("KOOISV_MARKETPLACE_CA_FILE"),
        .max_attempts = (int)config_get_long("KOOISV_SYNC_WEBHOOK_MAX_ATTEMPTS", 1, 100),
        .backoff_ms = (int)config_get_long("KOOISV_SYNC_WEBHOOK_BACKOFF_MS", 10, 600000),
        .poll_ms = (int)config_get_long("KOOISV_SYNC_WEBHOOK_POLL_MS", 100, 600000),
        .threads = (int)config_get_long("KOOISV_SYNC_WEBHOOK_THREADS", 1, 16),
    };
    if (*oc.url && !*oc.secret)
        svcrt_die("KOOISV_SYNC_WEBHOOK_SECRET", "required when KOOISV_SYNC_WEBHOOK_URL is set");
    const char *why = NULL;
    outbox_t *ob = outbox_new(&oc, &why);
    if (!ob)
        svcrt_die("KOOISV_SYNC_WEBHOOK_URL", why);
    return ob;
}

/* Every statement a worker prepares: the service's groups, then the outbox's. */
static void statements_build(const svcrt_def_t *def)
{
    size_t nout = 0;
    const pg_stmt_t *out = def->outbox ? outbox_stmts(&nout) : NULL;
    rt.nstmts = nout;
    for (size_t g = 0; g < def->ngroups; g++)
        rt.nstmts += def->counts[g];
    rt.stmts = xcalloc(rt.nstmts ? rt.nstmts : 1, sizeof *rt.stmts);
    size_t k = 0;
    for (size_t g = 0; g < def->ngroups; g++)
        for (size_t i = 0; i < def->counts[g]; i++)
            rt.stmts[k++] = def->groups[g][i];
    for (size_t i = 0; i < nout; i++)
        rt.stmts[k++] = out[i];
}

/* Apply the embedded migrations; 0 or -1 (logged). */
static int migrate(const svcrt_def_t *def, int wait_s)
{
    if (!def->nmigrations) /* a service whose migrations are a step of their own (audit) */
        return 0;
    const char *var = def->migrate_dsn_var ? def->migrate_dsn_var : "KOOISV_PG_DSN";
    const char *dsn = config_get(var);
    if (!*dsn) {
        log_info(NULL, "%s unset: assuming the %s schema is migrated", var, def->schema);
        return 0;
    }
    char app[64];
    snprintf(app, sizeof app, "kooisv-%s-migrate", def->name);
    PGconn *conn = pg_connect(dsn, app, wait_s);
    int rc = conn ? pg_migrate(conn, def->schema, def->migrations, def->nmigrations) : -1;
    PQfinish(conn);
    if (rc != 0)
        log_error(NULL, "%s: migrations of schema %s failed", def->name, def->schema);
    return rc;
}

/* ---------------------------------------------------------------- workers */

static void *worker_init(int index, void *arg)
{
    svcrt_def_t *def = arg;
    svcrt_worker_t *w = xcalloc(1, sizeof *w);
    w->index = index;
    w->svc = def->svc;
    w->outbox = rt.outbox;
    if (rt.nstmts == 0)
        return w;
    char app[64];
    snprintf(app, sizeof app, "kooisv-%s", def->name);
    pg_session_config_t sc = {.dsn = rt.dsn,
                              .app = app,
                              .setup_sql = def->session_sql,
                              .stmts = rt.stmts,
                              .nstmts = rt.nstmts,
                              .wait_s = rt.wait_s};
    w->db = pg_session_new(&sc);
    if (!w->db) {
        free(w);
        return NULL;
    }
    w->conn = pg_session_conn(w->db);
    return w;
}

static void worker_fini(void *state)
{
    svcrt_worker_t *w = state;
    if (!w)
        return;
    pg_session_destroy(&w->db);
    free(w);
}

/* Ready to serve call: the deadline has not passed (unless the service serves late calls) and
 * the session is usable. On false the
 * call's result is set. */
static bool worker_ready(const svcrt_def_t *def, svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const char *rid = svc_call_rid(call);
    if (!def->serve_late && env->deadline_ms > 0 && time_now_ms() > env->deadline_ms) {
        /* the caller has already answered 000005 and the marketplace retries (every call is
         * idempotent): doing the work now would only surprise it */
        log_warn(rid, "deadline passed before the call could run; skipped");
        svc_call_result(call, RC_INTERNAL, "deadline passed before the call could run");
        return false;
    }
    if (w->db && !pg_session_ready(w->db, rid)) {
        log_warn(rid, "database unavailable");
        svc_call_result(call, RC_INTERNAL, "database unavailable; please retry");
        return false;
    }
    return true;
}

/* The admin action "metrics": {"series":[...]} from the outbox and the service's hook. */
static void serve_metrics(const svcrt_def_t *def, svcrt_worker_t *w, svc_call_t *call)
{
    json_t *series = json_array();
    int rc = 0;
    if (w->outbox && w->db)
        rc = outbox_metrics(w->outbox, w->db, series);
    if (rc == 0 && def->metrics)
        rc = def->metrics(w, series);
    if (rc != 0) {
        json_decref(series);
        svc_call_result(call, RC_INTERNAL, "metrics: database error");
        return;
    }
    svcadmin_reply(call, json_pack("{s:o}", "series", series));
}

static void dispatch(const svcrt_def_t *def, svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    if (env->body_case == KOOISV__ENVELOPE__BODY_ADMIN && env->admin->action &&
        strcmp(env->admin->action, "metrics") == 0) {
        serve_metrics(def, w, call);
    } else if (env->body_case == KOOISV__ENVELOPE__BODY_ADMIN && def->admin) {
        const Kooisv__AdminRequest *req = env->admin;
        if (!def->admin(w, call, req) && !(w->outbox && outbox_admin(w->outbox, w->db, call, req)))
            svc_call_result(call, RC_INVALID, "unknown action for the %s service: %s", def->name,
                            req->action);
    } else if (!def->handle(w, call, env)) {
        svc_call_result(call, RC_INVALID, "the %s service does not serve this request", def->name);
    }
}

static void worker_handle(void *state, svc_call_t *call)
{
    svcrt_worker_t *w = state;
    const svcrt_def_t *def = rt.def;
    if (!worker_ready(def, w, call))
        return;
    int64_t start = time_mono_us();
    dispatch(def, w, call);
    if (def->log_calls) {
        const Kooisv__Reply *reply = svc_call_reply(call);
        log_info(svc_call_rid(call), "%s call body=%d result=%s msg=\"%s\" us=%lld", def->name,
                 (int)svc_call_request(call)->body_case, reply->result_code, reply->result_msg,
                 (long long)(time_mono_us() - start));
    }
}

/* svc_def_t.handle_async: the service's, for calls whose deadline has not passed. */
static bool svcrt_handle_async(void *arg, svc_call_t *call)
{
    const svcrt_def_t *def = arg;
    const Kooisv__Envelope *env = svc_call_request(call);
    if (!def->serve_late && env->deadline_ms > 0 && time_now_ms() > env->deadline_ms)
        return false;
    return def->handle_async(def->svc, call, env);
}

/* ---------------------------------------------------------------- readiness */

/* A libpq connection to dsn that gives up after 3 s, with statements limited to 2 s. */
static PGconn *probe_connect(const char *dsn, const char *app)
{
    const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
    const char *vals[] = {dsn, "3", "-c statement_timeout=2000", app, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

/* SELECT 1 on *conn, (re)connecting it first when needed. true when answered; else why. */
static bool probe_db(PGconn **conn, const char *dsn, const char *app, char *why, size_t whylen)
{
    if (*conn && !pg_conn_alive(*conn)) {
        PQfinish(*conn);
        *conn = NULL;
    }
    if (!*conn)
        *conn = probe_connect(dsn, app);
    bool ok = false;
    if (PQstatus(*conn) == CONNECTION_OK) {
        PGresult *r = PQexec(*conn, "SELECT 1");
        ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    if (!ok) {
        const char *msg = PQerrorMessage(*conn);
        size_t n = strcspn(msg, "\n");
        snprintf(why, whylen, "database unreachable: %.*s", (int)(n > 90 ? 90 : n), msg);
        PQfinish(*conn);
        *conn = NULL;
    }
    return ok;
}

/* svc_def_t.ready: the database answers (checked at most once a second). */
static bool svcrt_ready(void *arg, char *why, size_t whylen)
{
    const svcrt_def_t *def = arg;
    pthread_mutex_lock(&rt.probe_lock);
    int64_t now = time_mono_us();
    if (!rt.probe_at_us || now - rt.probe_at_us > 1000000) {
        char app[80];
        snprintf(app, sizeof app, "kooisv-%s-ready", def->name);
        rt.probe_ok = probe_db(&rt.probe, rt.dsn, app, rt.probe_why, sizeof rt.probe_why);
        rt.probe_at_us = time_mono_us();
    }
    bool ok = rt.probe_ok;
    if (!ok)
        snprintf(why, whylen, "%s", rt.probe_why);
    pthread_mutex_unlock(&rt.probe_lock);
    return ok;
}

/* TCP connect to the port of KOOISV_BIND on this host (a wildcard address as loopback). */
static bool bind_port_open(char *why, size_t whylen)
{
    const char *bind = config_get("KOOISV_BIND");
    const char *hp = strncmp(bind, "tcp://", 6) == 0 ? bind + 6 : bind;
    const char *colon = strrchr(hp, ':');
    char host[256];
    snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - hp) : 0, hp);
    if (!*host || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    else if (strcmp(host, "[::]") == 0 || strcmp(host, "[*]") == 0)
        snprintf(host, sizeof host, "::1");
    else if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (!colon || getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res) {
        snprintf(why, whylen, "cannot resolve %s", bind);
        return false;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {2, 0};
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    bool ok = fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    if (!ok)
        snprintf(why, whylen, "nothing listens on %s", bind);
    return ok;
}

/* --check live|ready: the probes of a container or pod (see svcrt.h). Exit code. */
static int svcrt_check(const svcrt_def_t *def, const char *mode)
{
    char why[200] = "";
    bool live = strcmp(mode, "live") == 0, ready = strcmp(mode, "ready") == 0;
    if (!live && !ready) {
        fprintf(stderr, "kooisv-%s: --check live|ready\n", def->name);
        return 2;
    }
    bool ok = bind_port_open(why, sizeof why);
    if (ok && ready) {
        PGconn *conn = NULL;
        char app[80];
        snprintf(app, sizeof app, "kooisv-%s-check", def->name);
        ok = probe_db(&conn, config_get("KOOISV_PG_DSN"), app, why, sizeof why);
        PQfinish(conn);
    }
    printf("%s\n", ok ? (live ? "alive" : "ready") : why);
    return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- the life cycle */

int svcrt_run(svcrt_def_t *def, int argc, char **argv)
{
    rt.def = def;
    char prog[64];
    snprintf(prog, sizeof prog, "kooisv-%s", def->name);
    log_init(def->name);
    if (argc == 3 && strcmp(argv[1], "--check") == 0) {
        char *noargs[] = {argv[0], NULL};
        config_load(prog, def->summary, def->vars, def->nvars, 1, noargs);
        return svcrt_check(def, argv[2]);
    }
    config_load(prog, def->summary, def->vars, def->nvars, argc, argv);
    zmqauth_config_server(prog);
    if (zmqauth_system_clients() > 0 && !def->system_actions)
        svcrt_die("KOOISV_CURVE_SYSTEM_CLIENTS",
                  "this service serves system clients no action: leave it empty");
    rt.dsn = config_get("KOOISV_PG_DSN");
    int wait_s = def->wait_var ? (int)config_get_long(def->wait_var, 0, 3600) : 0;
    rt.wait_s = def->wait_var ? wait_s : 30;
    int workers = (int)config_get_long("KOOISV_WORKERS", 1, def->workers_max);
    if (def->configure)
        def->configure(def);
    int retain_days =
        def->nretention ? (int)config_get_long("KOOISV_RETAIN_DAYS", 0, RETENTION_DAYS_MAX) : 0;
    retention_t *retention = NULL;
    if (def->outbox)
        rt.outbox = outbox_from_config(def);
    statements_build(def);

    int rc = 1;
    bool started = false;
    if (migrate(def, def->wait_var ? wait_s : 60) != 0)
        goto done;
    if (def->start && def->start(def) != 0)
        goto done;
    started = true;
    if (rt.outbox && outbox_start(rt.outbox) != 0) {
        log_error(NULL, "%s: cannot start the outbox delivery thread", def->name);
        goto done;
    }
    if (retain_days > 0) {
        retention_config_t rcfg = {.name = def->name,
                                   .dsn = rt.dsn,
                                   .setup_sql = def->session_sql,
                                   .rules = def->retention,
                                   .nrules = def->nretention,
                                   .days = retain_days};
        if (!(retention = retention_start(&rcfg)))
            goto done;
    } else if (def->nretention) {
        log_info(NULL, "%s: KOOISV_RETAIN_DAYS is 0: finished rows are kept", def->name);
    }
    svc_def_t sd = {.name = def->name,
                    .bind = config_get("KOOISV_BIND"),
                    .workers = workers,
                    .worker_init = worker_init,
                    .worker_fini = worker_fini,
                    .handle = worker_handle,
                    .arg = def,
                    .ready = svcrt_ready,
                    .system_actions = def->system_actions,
                    .handle_async = def->handle_async ? svcrt_handle_async : NULL};
    rc = svc_run(&sd);
done:
    svc_stop(); /* background threads watch this, also after a failed start */
    retention_destroy(&retention);
    outbox_destroy(&rt.outbox);
    if (started && def->stop)
        def->stop(def);
    free(rt.stmts);
    rt.stmts = NULL;
    if (rt.probe)
        PQfinish(rt.probe);
    rt.probe = NULL;
    log_info(NULL, "%s: stopped", def->name);
    return rc;
}

/* ---------------------------------------------------------------- for handlers */

outbox_t *svcrt_outbox(void)
{
    return rt.outbox;
}

PGresult *svcrt_exec(svcrt_tx_t *tx, const char *stmt, int n, const char *const *params)
{
    return pg_tx_exec(tx->db, stmt, n, params);
}

typedef struct {
    svcrt_worker_t *w;
    svc_call_t *call;
    svcrt_tx_fn fn;
    void *arg;
    const char *ok_msg;
} tx_run_t;

static pg_status_t tx_body(pg_tx_t *db, void *arg)
{
    tx_run_t *run = arg;
    svcrt_tx_t tx = {.w = run->w, .db = db, .call = run->call, .ok_msg = "success"};
    pg_status_t st = run->fn(&tx, run->arg);
    run->ok_msg = tx.ok_msg;
    return st;
}

void svcrt_tx_run(svcrt_worker_t *w, svc_call_t *call, svcrt_tx_fn fn, void *arg)
{
    tx_run_t run = {.w = w, .call = call, .fn = fn, .arg = arg};
    pg_status_t st = pg_tx_run(w->db, svc_call_rid(call), tx_body, &run);
    if (st == PG_OK)
        svc_call_result(call, RC_OK, "%s", run.ok_msg);
    else if (st != PG_ROLLBACK)
        svc_call_result(call, RC_INTERNAL, "database error, retry later");
    /* PG_ROLLBACK: the body set the reply */
}

pg_status_t svcrt_emit(svcrt_tx_t *tx, const char *interface, const char *action,
                       const char *instance_id, const char *tenant_id, json_t *data)
{
    return svcrt_emit_id(tx, NULL, interface, action, instance_id, tenant_id, data);
}

pg_status_t svcrt_emit_id(svcrt_tx_t *tx, const char *event_id, const char *interface,
                          const char *action, const char *instance_id, const char *tenant_id,
                          json_t *data)
{
    char type[64];
    snprintf(type, sizeof type, "%s.%s", interface, action);
    const Kooisv__Envelope *env = svc_call_request(tx->call);
    if (event_id)
        return outbox_emit_id(tx->w->outbox, tx->db, event_id, type, instance_id, tenant_id,
                              env->test_flag, data);
    return outbox_emit(tx->w->outbox, tx->db, type, instance_id, tenant_id, env->test_flag, data);
}

PGresult *svcrt_admin_query(svcrt_worker_t *w, svc_call_t *call, const char *stmt, int n,
                            const char *const *params)
{
    PGresult *r = pg_session_exec(w->db, svc_call_rid(call), stmt, n, params, NULL);
    if (!r)
        svc_call_result(call, RC_INTERNAL, "database error");
    return r;
}

bool svcrt_text_ok(const char *s, size_t max, bool required)
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
