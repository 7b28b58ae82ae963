/* kooisv-audit: the append-only, hash-chained record of every request and operator action, the
 * replay (nonce) check, and the query and verify API (ARCHITECTURE.md "Audit and replay"). */
#include <stdlib.h>

#include "config.h"
#include "intake.h"
#include "journal.h"
#include "migrations.h"
#include "query.h"
#include "readers.h"
#include "svcrt.h"
#include "verify.h"
#include "xmalloc.h"

static const config_var_t audit_vars[] = {
    {"KOOISV_BIND", "tcp://*:7104", 0, "ZeroMQ endpoint the service binds"},
    {"KOOISV_WORKERS", "64", 0,
     "worker threads; the records they wait on together form one group commit"},
    {"KOOISV_PG_DSN", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "PostgreSQL connection as role kooisv_audit (INSERT and SELECT on the trail only)"},
    {"KOOISV_PG_MIGRATE_DSN", NULL, CONFIG_SECRET,
     "connection as kooisv_audit_owner, used once at start to apply migrations "
     "(unset: someone else applies them)"},
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
} audit_t;

static bool audit_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
{
    audit_t *self = w->svc;
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_AUDIT_INTENT:
        intake_intent(self->journal, call);
        return true;
    case KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME:
        intake_outcome(self->journal, call);
        return true;
    case KOOISV__ENVELOPE__BODY_AUDIT_QUERY:
    case KOOISV__ENVELOPE__BODY_AUDIT_VERIFY: {
        PGconn *conn = readers_take(self->readers, 1000, svc_call_rid(call));
        if (!conn) {
            svc_call_result(call, "000005", "audit store unavailable");
            return true;
        }
        if (env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_QUERY)
            query_handle(conn, call);
        else
            verify_handle(conn, call);
        readers_give(self->readers, conn);
        return true;
    }
    default:
        return false;
    }
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
    PQfinish(probe);

    int timeout_ms = (int)config_get_long("KOOISV_AUDIT_STATEMENT_TIMEOUT_MS", 100, 60000);
    journal_config_t jc = {
        .dsn = config_get("KOOISV_PG_DSN"),
        .batch_max = (int)config_get_long("KOOISV_AUDIT_BATCH_MAX", 1, 10000),
        .nonce_window_ms = config_get_long("KOOISV_AUDIT_NONCE_WINDOW_MS", 1000, 3600000),
        .nonce_margin_ms = config_get_long("KOOISV_AUDIT_NONCE_MARGIN_MS", 0, 86400000),
        .statement_timeout_ms = timeout_ms,
    };
    self->journal = journal_new(&jc);
    if (!self->journal)
        return -1;
    /* Queries and verification share the pool: one table with both statement sets. */
    size_t nstmts = query_nstmts + verify_nstmts;
    self->reader_stmts = xcalloc(nstmts, sizeof *self->reader_stmts);
    for (size_t i = 0; i < query_nstmts; i++)
        self->reader_stmts[i] = query_stmts[i];
    for (size_t i = 0; i < verify_nstmts; i++)
        self->reader_stmts[query_nstmts + i] = verify_stmts[i];
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
    audit_t audit = {0};
    svcrt_def_t def = {
        .name = "audit",
        .summary = "The audit trail: append-only, hash-chained, replay check.",
        .vars = audit_vars,
        .nvars = sizeof audit_vars / sizeof *audit_vars,
        .schema = "audit",
        .migrations = service_migrations,
        .nmigrations = service_migrations_count,
        .workers_max = 1024,
        .migrate_dsn_var = "KOOISV_PG_MIGRATE_DSN",
        .wait_var = "KOOISV_PG_WAIT_S",
        .serve_late = true,
        .start = audit_start,
        .stop = audit_stop,
        .handle = audit_handle,
        .svc = &audit,
    };
    return svcrt_run(&def, argc, argv);
}
