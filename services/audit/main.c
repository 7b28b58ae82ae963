/* kooisv-audit: the append-only, hash-chained record of every request and operator action, the
 * replay (nonce) check, and the query and verify API (ARCHITECTURE.md "Audit and replay").
 * Migrations are a separate one-shot run (--migrate) with the schema owner's connection; the
 * serving process never holds it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "resultcode.h"
#include "epoch.h"
#include "intake.h"
#include "journal.h"
#include "log.h"
#include "migrations.h"
#include "svcadmin.h"
#include "pgutil.h"
#include "query.h"
#include "readers.h"
#include "stats.h"
#include "svcrt.h"
#include "verify.h"
#include "xmalloc.h"
#include "zmqauth.h"

static const config_var_t audit_vars[] = {
    {"KOOISV_BIND", "tcp://127.0.0.1:7104", 0, "ZeroMQ endpoint the service binds"},
    ZMQAUTH_SERVER_CONFIG_VARS,
    {"KOOISV_WORKERS", "8", 0,
     "worker threads for queries, verification and stats (intents and outcomes need none: "
     "they wait for the journal's group commit without a thread)"},
    {"KOOISV_PG_DSN", NULL, CONFIG_SECRET,
     "PostgreSQL connection as role kooisv_audit (INSERT and SELECT on the trail only); "
     "required to serve"},
    {"KOOISV_PG_MIGRATE_DSN", NULL, CONFIG_SECRET,
     "connection as kooisv_audit_owner, for --migrate only: the serving process refuses to "
     "start with it set"},
    {"KOOISV_AUDIT_CHAIN_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET | CONFIG_KEY,
     "HMAC key of the hash chain; never stored in the database (losing it: the trail can no "
     "longer be verified)"},
    {"KOOISV_AUDIT_HEAD_PATH", "", 0,
     "file the chain head (seq:hash) is written to after each commit, to keep outside the "
     "database for verify --head (empty: none)"},
    {"KOOISV_PG_WAIT_S", "30", 0, "seconds to wait for PostgreSQL at start"},
    {"KOOISV_LOG_LEVEL", "info", 0, "debug | info | warn | error"},
    {"KOOISV_AUDIT_BATCH_MAX", "256", 0, "records per transaction (1 = no group commit)"},
    {"KOOISV_AUDIT_READERS", "4", 0, "database connections for queries and verification"},
    {"KOOISV_AUDIT_NONCE_WINDOW_MS", "60000", 0,
     "signature window the gateway enforces (spec section 2)"},
    {"KOOISV_AUDIT_NONCE_MARGIN_MS", "300000", 0,
     "how much longer than the window nonces are kept (clock skew between hosts)"},
    {"KOOISV_AUDIT_STATEMENT_TIMEOUT_MS", "3000", 0,
     "per statement; a stuck database answers 000005 instead of hanging callers"},
};

typedef struct {
    journal_t *journal;
    readers_t *readers;
    pg_stmt_t *reader_stmts; /* queries' and verification's statements */
    entry_chain_t chain;     /* the chain key, and the first keyed seq (epoch) */
} audit_t;

/* The newest complete verification an operator ran (POST /v1/audit/verify, recorded by the
 * gateway as admin.audit.verify with its outcome), found through the index intents_event. */
static const pg_stmt_t chainwatch_stmts[] = {
    {"audit_last_verify",
     "SELECT o.recorded_ms, o.result_msg LIKE 'chain intact:%' FROM ("
     "  SELECT request_id FROM audit.intents WHERE event_type = 'admin.audit.verify'"
     "  ORDER BY seq DESC LIMIT 50) i"
     " JOIN audit.outcomes o USING (request_id)"
     " WHERE o.result_code = '000000' AND o.result_msg NOT LIKE '%(partial)'"
     " ORDER BY o.seq DESC LIMIT 1",
     0},
};

/* svcrt_def_t.metrics: whether the trail verified when it was last verified, and when. */
static int audit_metrics(svcrt_worker_t *w, json_t *series)
{
    audit_t *self = w->svc;
    PGconn *conn = readers_take(self->readers, 1000, NULL);
    if (!conn)
        return -1;
    PGresult *r = pg_exec(conn, "audit_last_verify", 0, NULL);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok) {
        bool any = PQntuples(r) == 1;
        svcadmin_series_add(series, "kooisv_audit_chain_verify_ok", "gauge",
                            "1 when the newest complete verification of the trail found it "
                            "intact, 0 when it found it broken, -1 when none was ever run",
                            any ? (strcmp(PQgetvalue(r, 0, 1), "t") == 0 ? 1 : 0) : -1, NULL);
        svcadmin_series_add(series, "kooisv_audit_chain_last_verify_timestamp_seconds", "gauge",
                            "when the newest complete verification ended (Unix time; 0 never)",
                            any ? strtod(PQgetvalue(r, 0, 0), NULL) / 1000.0 : 0, NULL);
    }
    PQclear(r);
    readers_give(self->readers, conn);
    return ok ? 0 : -1;
}

/* A reading connection for the call (give it back with readers_give), or NULL after answering
 * that the store is unavailable. */
static PGconn *audit_reader(audit_t *self, svc_call_t *call)
{
    PGconn *conn = readers_take(self->readers, 1000, svc_call_rid(call));
    if (!conn)
        svc_call_result(call, RC_INTERNAL, "audit store unavailable");
    return conn;
}

/* svcrt_def_t.handle_async: intents and outcomes go to the journal from the broker thread and
 * are answered from the writer thread after their group commit, without a worker. */
static bool audit_handle_async(void *svc, svc_call_t *call, const Kooisv__Envelope *env)
{
    audit_t *self = svc;
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_AUDIT_INTENT:
        intake_intent(self->journal, call);
        return true;
    case KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME:
        intake_outcome(self->journal, call);
        return true;
    case KOOISV__ENVELOPE__BODY_AUDIT_OUTCOMES:
        intake_outcomes(self->journal, call);
        return true;
    default:
        return false;
    }
}

/* Queries, verification and stats, on a worker (intents and outcomes never get here). */
static bool audit_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
{
    audit_t *self = w->svc;
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_AUDIT_QUERY:
    case KOOISV__ENVELOPE__BODY_AUDIT_VERIFY: {
        PGconn *conn = audit_reader(self, call);
        if (!conn)
            return true;
        if (env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_QUERY)
            query_handle(conn, call);
        else
            verify_handle(conn, &self->chain, call);
        readers_give(self->readers, conn);
        return true;
    }
    case KOOISV__ENVELOPE__BODY_ADMIN: {
        const Kooisv__AdminRequest *req = env->admin;
        if (!req->action || strcmp(req->action, "audit.stats") != 0)
            return false;
        if (!env->caller || !env->caller->kind || strcmp(env->caller->kind, "operator") != 0) {
            svc_call_result(call, RC_AUTH, "admin actions are for operators only");
            return true;
        }
        PGconn *conn = audit_reader(self, call);
        if (!conn)
            return true;
        stats_handle(conn, call, req);
        readers_give(self->readers, conn);
        return true;
    }
    default:
        return false;
    }
}

/* kooisv-audit --migrate: apply the embedded migrations as the schema owner and seal the chain
 * epoch with the key, then exit (a one-shot step: the serving process never holds the owner's
 * connection). */
static int audit_migrate(int wait_s, const char *key)
{
    const char *dsn = config_get("KOOISV_PG_MIGRATE_DSN");
    if (!*dsn) {
        log_error(NULL, "audit --migrate: KOOISV_PG_MIGRATE_DSN is not set");
        return 1;
    }
    PGconn *conn = pg_connect(dsn, "kooisv-audit-migrate", wait_s);
    if (!conn)
        return 1;
    int rc = pg_migrate(conn, "audit", service_migrations, service_migrations_count);
    if (rc == 0)
        rc = epoch_seal(conn, (const uint8_t *)key, strlen(key));
    PQfinish(conn);
    if (rc != 0)
        log_error(NULL, "audit --migrate: failed");
    return rc == 0 ? 0 : 1;
}

/* The serving role must not be able to lift the append-only triggers: not the schema owner,
 * not a member of it, not a superuser. */
static const pg_stmt_t audit_role_stmts[] = {
    {"audit_role_owns",
     "SELECT pg_has_role(current_user, nspowner, 'MEMBER') FROM pg_namespace"
     " WHERE nspname = 'audit'",
     0},
};

/* Check the serving connection (role, chain epoch under our key); 0 or -1 with a reason. */
static int audit_check_store(PGconn *conn, audit_t *self)
{
    if (pg_prepare_all(conn, audit_role_stmts, 1) != 0)
        return -1;
    PGresult *r = pg_exec(conn, "audit_role_owns", 0, NULL);
    const char *owns = pg_ok(r) ? pg_value(r, 0, 0) : NULL;
    bool refused = !owns || owns[0] != 'f';
    PQclear(r);
    if (refused) {
        log_error(NULL, "audit: refusing to serve: KOOISV_PG_DSN's role owns schema audit or is "
                        "a superuser (or the schema is missing); use role kooisv_audit");
        return -1;
    }
    return epoch_load(conn, self->chain.key, self->chain.key_len, &self->chain.keyed_from);
}

/* Remove --migrate from argv (config_load refuses arguments it does not know); true if given. */
static bool take_migrate_flag(int *argc, char **argv)
{
    bool found = false;
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--migrate") == 0)
            found = true;
        else
            argv[out++] = argv[i];
    }
    argv[out] = NULL;
    *argc = out;
    return found;
}

/* The serving process refuses the schema owner's connection (fail closed) and keeps the key. */
static void audit_configure(svcrt_def_t *def)
{
    audit_t *self = def->svc;
    if (*config_get("KOOISV_PG_MIGRATE_DSN"))
        svcrt_die("KOOISV_PG_MIGRATE_DSN",
                  "refusing to serve with KOOISV_PG_MIGRATE_DSN set: the schema owner's "
                  "connection is for the one-shot kooisv-audit --migrate only");
    if (!*config_get("KOOISV_PG_DSN"))
        svcrt_die("KOOISV_PG_DSN", "required to serve");
    const char *key = config_get("KOOISV_AUDIT_CHAIN_KEY");
    self->chain.key = (const uint8_t *)key;
    self->chain.key_len = strlen(key);
}

/* The journal's writer thread and the readers' pool; in reverse at audit_stop. */
static int audit_start(svcrt_def_t *def)
{
    audit_t *self = def->svc;
    int wait_s = (int)config_get_long("KOOISV_PG_WAIT_S", 0, 3600);
    /* Refuse to start on a database we cannot reach rather than answer 000005 forever. */
    PGconn *probe = pg_connect(config_get("KOOISV_PG_DSN"), "kooisv-audit", wait_s);
    if (!probe)
        return -1;
    int checked = audit_check_store(probe, self);
    PQfinish(probe);
    if (checked != 0)
        return -1;
    log_info(NULL, "audit chain keyed from seq %lld", (long long)self->chain.keyed_from);

    int timeout_ms = (int)config_get_long("KOOISV_AUDIT_STATEMENT_TIMEOUT_MS", 100, 60000);
    journal_config_t jc = {
        .dsn = config_get("KOOISV_PG_DSN"),
        .batch_max = (int)config_get_long("KOOISV_AUDIT_BATCH_MAX", 1, 10000),
        .nonce_window_ms = config_get_long("KOOISV_AUDIT_NONCE_WINDOW_MS", 1000, 3600000),
        .nonce_margin_ms = config_get_long("KOOISV_AUDIT_NONCE_MARGIN_MS", 0, 86400000),
        .statement_timeout_ms = timeout_ms,
        .chain = &self->chain,
        .head_file = config_get("KOOISV_AUDIT_HEAD_PATH"),
    };
    self->journal = journal_new(&jc);
    if (!self->journal)
        return -1;
    /* Queries, verification, the chain watch and stats share the pool: one table with every
     * statement set. */
    const struct {
        const pg_stmt_t *stmts;
        size_t n;
    } sets[] = {
        {query_stmts, query_nstmts},
        {verify_stmts, verify_nstmts},
        {chainwatch_stmts, sizeof chainwatch_stmts / sizeof *chainwatch_stmts},
        {stats_stmts, stats_nstmts},
    };
    size_t nsets = sizeof sets / sizeof *sets, nstmts = 0;
    for (size_t i = 0; i < nsets; i++)
        nstmts += sets[i].n;
    self->reader_stmts = xcalloc(nstmts, sizeof *self->reader_stmts);
    for (size_t i = 0, at = 0; i < nsets; i++) {
        memcpy(self->reader_stmts + at, sets[i].stmts, sets[i].n * sizeof *sets[i].stmts);
        at += sets[i].n;
    }
    self->readers = readers_new(config_get("KOOISV_PG_DSN"),
                                (int)config_get_long("KOOISV_AUDIT_READERS", 1, 64), timeout_ms,
                                self->reader_stmts, nstmts);
    return 0;
}

static void audit_stop(svcrt_def_t *def)
{
    audit_t *self = def->svc;
    /* Workers are joined by now: nothing waits on the journal any more. */
    readers_destroy(&self->readers);
    journal_destroy(&self->journal);
    free(self->reader_stmts);
    self->reader_stmts = NULL;
}

int main(int argc, char **argv)
{
    if (take_migrate_flag(&argc, argv)) {
        /* The one-shot step speaks to PostgreSQL only: no ZeroMQ keys. */
        config_var_t vars[sizeof audit_vars / sizeof *audit_vars];
        size_t n = 0;
        for (size_t i = 0; i < sizeof audit_vars / sizeof *audit_vars; i++)
            if (strncmp(audit_vars[i].name, "KOOISV_CURVE_", 13) != 0)
                vars[n++] = audit_vars[i];
        log_init("audit");
        config_load("kooisv-audit",
                    "kooisv-audit --migrate: applies the migrations as the schema owner "
                    "(KOOISV_PG_MIGRATE_DSN), seals the chain epoch with the key and exits.",
                    vars, n, argc, argv);
        return audit_migrate((int)config_get_long("KOOISV_PG_WAIT_S", 0, 3600),
                             config_get("KOOISV_AUDIT_CHAIN_KEY"));
    }
    audit_t audit = {0};
    svcrt_def_t def = {
        .name = "audit",
        .summary = "The audit trail: append-only, hash-chained (HMAC), replay check. "
                   "kooisv-audit --migrate applies the migrations as the schema owner "
                   "(KOOISV_PG_MIGRATE_DSN), seals the chain epoch with the key and exits.",
        .vars = audit_vars,
        .nvars = sizeof audit_vars / sizeof *audit_vars,
        .schema = "audit",
        .migrations = NULL, /* applied by --migrate, never by the serving process */
        .nmigrations = 0,
        .workers_max = 1024,
        .wait_var = "KOOISV_PG_WAIT_S",
        .serve_late = true,
        .configure = audit_configure,
        .start = audit_start,
        .stop = audit_stop,
        .handle = audit_handle,
        .handle_async = audit_handle_async,
        .metrics = audit_metrics,
        .svc = &audit,
    };
    return svcrt_run(&def, argc, argv);
}
