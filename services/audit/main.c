/* kooisv-audit: the append-only, hash-chained record of every request and operator action, the
 * replay (nonce) check, and the query and verify API (ARCHITECTURE.md "Audit and replay"). */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "intake.h"
#include "journal.h"
#include "log.h"
#include "migrations.h"
#include "pgutil.h"
#include "query.h"
#include "readers.h"
#include "svc.h"
#include "verify.h"
#include "xmalloc.h"
#include "zmqauth.h"

static const config_var_t audit_vars[] = {
    {"KOOISV_BIND", "tcp://127.0.0.1:7104", 0, "ZeroMQ endpoint the service binds"},
    ZMQAUTH_SERVER_CONFIG_VARS,
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
} audit_t;

static void audit_handle(void *state, svc_call_t *call)
{
    audit_t *self = state;
    const Kooisv__Envelope *env = svc_call_request(call);
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_AUDIT_INTENT:
        intake_intent(self->journal, call);
        return;
    case KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME:
        intake_outcome(self->journal, call);
        return;
    case KOOISV__ENVELOPE__BODY_AUDIT_QUERY:
    case KOOISV__ENVELOPE__BODY_AUDIT_VERIFY: {
        PGconn *conn = readers_take(self->readers, 1000, svc_call_rid(call));
        if (!conn) {
            svc_call_result(call, "000005", "audit store unavailable");
            return;
        }
        if (env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_QUERY)
            query_handle(conn, call);
        else
            verify_handle(conn, call);
        readers_give(self->readers, conn);
        return;
    }
    default:
        svc_call_result(call, "000002", "the audit service does not serve this request");
        return;
    }
}

/* Apply the embedded migrations as the schema owner, if we were given its connection. */
static int audit_migrate(int wait_s)
{
    const char *dsn = config_get("KOOISV_PG_MIGRATE_DSN");
    if (!*dsn) {
        log_info(NULL, "KOOISV_PG_MIGRATE_DSN unset: assuming the audit schema is migrated");
        return 0;
    }
    PGconn *conn = pg_connect(dsn, "kooisv-audit-migrate", wait_s);
    if (!conn)
        return -1;
    int rc = pg_migrate(conn, "audit", service_migrations, service_migrations_count);
    PQfinish(conn);
    return rc;
}

int main(int argc, char **argv)
{
    log_init("audit");
    config_load("kooisv-audit", "The audit trail: append-only, hash-chained, replay check.",
                audit_vars, sizeof audit_vars / sizeof *audit_vars, argc, argv);
    zmqauth_config_server("kooisv-audit");
    int wait_s = (int)config_get_long("KOOISV_PG_WAIT_S", 0, 3600);
    if (audit_migrate(wait_s) != 0) {
        log_error(NULL, "audit: migrations failed");
        return 1;
    }
    /* Refuse to start on a database we cannot reach rather than answer 000005 forever. */
    PGconn *probe = pg_connect(config_get("KOOISV_PG_DSN"), "kooisv-audit", wait_s);
    if (!probe)
        return 1;
    PQfinish(probe);

    int timeout_ms = (int)config_get_long("KOOISV_AUDIT_STATEMENT_TIMEOUT_MS", 100, 60000);
    journal_config_t jc = {
        .dsn = config_get("KOOISV_PG_DSN"),
        .batch_max = (int)config_get_long("KOOISV_AUDIT_BATCH_MAX", 1, 10000),
        .nonce_window_ms = config_get_long("KOOISV_AUDIT_NONCE_WINDOW_MS", 1000, 3600000),
        .nonce_margin_ms = config_get_long("KOOISV_AUDIT_NONCE_MARGIN_MS", 0, 86400000),
        .statement_timeout_ms = timeout_ms,
    };
    /* Queries and verification share the pool: one table with both statement sets. */
    size_t nstmts = query_nstmts + verify_nstmts;
    pg_stmt_t *stmts = xcalloc(nstmts, sizeof *stmts);
    for (size_t i = 0; i < query_nstmts; i++)
        stmts[i] = query_stmts[i];
    for (size_t i = 0; i < verify_nstmts; i++)
        stmts[query_nstmts + i] = verify_stmts[i];

    audit_t self = {
        .journal = journal_new(&jc),
        .readers = readers_new(config_get("KOOISV_PG_DSN"),
                               (int)config_get_long("KOOISV_AUDIT_READERS", 1, 64), timeout_ms,
                               stmts, nstmts),
    };
    if (!self.journal)
        return 1;
    svc_def_t def = {
        .name = "audit",
        .bind = config_get("KOOISV_BIND"),
        .workers = (int)config_get_long("KOOISV_WORKERS", 1, 1024),
        .handle = audit_handle,
        .arg = &self,
    };
    int rc = svc_run(&def);
    /* Workers are joined by now: nothing waits on the journal any more. */
    journal_destroy(&self.journal);
    readers_destroy(&self.readers);
    free(stmts);
    return rc;
}
