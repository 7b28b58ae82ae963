/* bench_grow: the loader of "Cost as data grows" (tools/bench/grow.sh) at a small scale against
 * the suite, and the plans of the audit queries on what it grew. No timing: it checks that
 *   - the loader appends what it says (requests, instances), and a second run adds nothing;
 *   - the grown entries are a valid part of the chain (kooisvctl audit verify from their start);
 *   - the service's own statements (query.c, verify.c, prepared as its readers prepare them)
 *     find one resource's, one hour's and the newest entries through an index, never by a
 *     sequential scan of audit.intents or audit.outcomes, whose cost grows with the trail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "kclient.h"
#include "pgutil.h"
#include "query.h"
#include "verify.h"
#include "xmalloc.h"

#define GROW_REQUESTS "50000"
#define GROW_INSTANCES "10000"
#define HOUR_MS 3600000LL

static char *grow_run(void)
{
    const char *build = suite_get("KOOISV_BUILD_DIR");
    assert_non_null(build);
    char *cmd = xasprintf("'%s/tools/bench/grow.sh' '%s/suite/suite.env' '%s' %s %s 2>&1",
                          SOURCE_DIR, build, build, GROW_REQUESTS, GROW_INSTANCES);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *out = xcalloc(1, 65536);
    size_t n = fread(out, 1, 65535, p);
    out[n] = '\0';
    int rc = pclose(p);
    printf("%s", out);
    if (rc != 0)
        fail_msg("grow.sh failed (%d): %s", rc, out);
    free(cmd);
    return out;
}

static long sql_long(const char *sql)
{
    char *v = kc_sql_value(sql, 0, NULL);
    assert_non_null(v);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

static void test_grow_twice(void **state)
{
    (void)state;
    free(grow_run());
    assert_int_equal(sql_long("SELECT count(*) FROM audit.intents WHERE request_id LIKE 'grow-%'"),
                     50000);
    assert_int_equal(sql_long("SELECT count(*) FROM audit.outcomes WHERE request_id LIKE 'grow-%'"),
                     50000);
    assert_int_equal(
        sql_long("SELECT count(*) FROM orders.instances WHERE instance_id LIKE 'grow-inst-%'"),
        10000);
    assert_int_equal(sql_long("SELECT count(*) FROM orders.instance_history"
                              " WHERE instance_id LIKE 'grow-inst-%'"),
                     20000);
    char *out = grow_run();
    assert_non_null(strstr(out, "already there, nothing to do"));
    assert_non_null(strstr(out, "0 added (10000 were there)"));
    free(out);
    assert_int_equal(sql_long("SELECT count(*) FROM audit.intents WHERE request_id LIKE 'grow-%'"),
                     50000);
}

/* "OK: N entries verified; ..." of kooisvctl audit verify: N, or -1. */
static long verified_count(const char *out)
{
    const char *ok = out ? strstr(out, "OK: ") : NULL;
    return ok ? strtol(ok + 4, NULL, 10) : -1;
}

static void test_grown_chain_verifies(void **state)
{
    (void)state;
    char *file = xasprintf("/tmp/kooisv-grow-checkpoint-%d", (int)getpid());
    unlink(file);
    /* No checkpoint yet: the whole chain, the grown entries and their link to the older trail. */
    char *out = NULL;
    int rc = kc_ctl(&out, NULL, (const char *[]){"audit", "verify", "--checkpoint", file, NULL});
    long whole = verified_count(out);
    if (rc != 0 || whole < 100000)
        fail_msg("audit verify --checkpoint (first): exit %d: %s", rc, out ? out : "");
    free(out);
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    char line[128] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_non_null(strchr(line, ':'));
    /* From the checkpoint on: only what was appended since (this test's own admin calls). */
    rc = kc_ctl(&out, NULL, (const char *[]){"audit", "verify", "--checkpoint", file, NULL});
    long since = verified_count(out);
    if (rc != 0 || since < 0 || since > 100)
        fail_msg("audit verify --checkpoint (again): exit %d: %s", rc, out ? out : "");
    free(out);
    /* A checkpoint whose entry no longer has the kept hash fails. */
    long long seq = strtoll(line, NULL, 10);
    f = fopen(file, "w");
    assert_non_null(f);
    fprintf(f, "%lld:%064d\n", seq, 0);
    fclose(f);
    rc = kc_ctl(&out, NULL, (const char *[]){"audit", "verify", "--checkpoint", file, NULL});
    if (rc != 1 || !out || !strstr(out, "modified"))
        fail_msg("audit verify with a wrong checkpoint: exit %d: %s", rc, out ? out : "");
    free(out);
    /* It is not moved on by a failed run, and it excludes the other starting points. */
    f = fopen(file, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_non_null(strstr(line, ":0000000000"));
    assert_int_equal(
        kc_ctl(NULL, NULL,
               (const char *[]){"audit", "verify", "--checkpoint", file, "--from-seq", "2", NULL}),
        2);
    unlink(file);
    free(file);
}

/* The plan of `EXPLAIN EXECUTE stmt(params)` on conn, as one text. Caller frees. */
static char *plan_of(PGconn *conn, const char *stmt, int n, const char *const *params)
{
    char *sql = xasprintf("EXPLAIN EXECUTE %s(", stmt);
    for (int i = 0; i < n; i++) {
        char *lit = params[i] ? PQescapeLiteral(conn, params[i], strlen(params[i])) : NULL;
        char *next = xasprintf("%s%s%s", sql, i ? ", " : "", lit ? lit : "NULL");
        PQfreemem(lit);
        free(sql);
        sql = next;
    }
    char *full = xasprintf("%s)", sql);
    free(sql);
    PGresult *r = PQexec(conn, full);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", full, PQresultErrorMessage(r));
    size_t len = 1;
    for (int i = 0; i < PQntuples(r); i++)
        len += strlen(PQgetvalue(r, i, 0)) + 1;
    char *plan = xcalloc(1, len);
    for (int i = 0; i < PQntuples(r); i++) {
        strcat(plan, PQgetvalue(r, i, 0));
        strcat(plan, "\n");
    }
    PQclear(r);
    free(full);
    return plan;
}

static void assert_indexed(const char *what, const char *plan, const char *index)
{
    printf("--- %s\n%s", what, plan);
    if (strstr(plan, "Seq Scan on intents") || strstr(plan, "Seq Scan on outcomes"))
        fail_msg("%s: a sequential scan of the trail:\n%s", what, plan);
    if (!strstr(plan, index))
        fail_msg("%s: index %s not used:\n%s", what, index, plan);
}

/* The resource's own rows of intent_resources drive the plan (a backward walk of its key, or
 * for a resource PostgreSQL expects few rows of, all of them sorted), each intent read by its
 * seq: what is read is bounded by the resource, never a walk of the whole trail. */
static void assert_resource_walk(const char *what, const char *plan)
{
    assert_indexed(what, plan, "intent_resources_pkey");
    assert_indexed(what, plan, "Index Cond: (seq = x.seq)");
    if (strstr(plan, "Backward using intents_pkey") || strstr(plan, "Seq Scan on intent_resources"))
        fail_msg("%s: not a walk of the resource's own rows:\n%s", what, plan);
}

static PGconn *reader_connect(void)
{
    const char *dsn = suite_get("KOOISV_PG_AUDITOR_DSN");
    assert_non_null(dsn);
    PGconn *conn = PQconnectdb(dsn);
    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    /* As the service's readers do (readers.c). */
    PQclear(PQexec(conn, "SET plan_cache_mode = force_custom_plan"));
    assert_int_equal(pg_prepare_all(conn, query_stmts, query_nstmts), 0);
    assert_int_equal(pg_prepare_all(conn, verify_stmts, verify_nstmts), 0);
    return conn;
}

static void test_query_plans(void **state)
{
    (void)state;
    PGconn *conn = reader_connect();
    char *at = kc_sql_value("SELECT received_ms FROM audit.intents"
                            " WHERE request_id = 'grow-000025000'",
                            0, NULL);
    assert_non_null(at);
    long long hour = strtoll(at, NULL, 10) / HOUR_MS * HOUR_MS;
    char from[24], to[24];
    snprintf(from, sizeof from, "%lld", hour);
    snprintf(to, sizeof to, "%lld", hour + HOUR_MS);
    /* $1 from $2 to $3 event $4 resource $5 caller $6 source $7 result $8 request $9 cursor
     * $10 excluded events $11 limit (query.c) */
    const char *resource[11] = {NULL, NULL, NULL, "grow-inst-0000042", NULL, NULL, NULL, NULL,
                                NULL, "[]", "101"};
    const char *one_hour[11] = {from, to, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "[]", "101"};
    const char *newest[11] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "[]", "21"};
    /* The second page of a resource, as kooisvctl --before asks for it. */
    const char *resource_before[11] = {
        NULL, NULL, NULL, "grow-tenant-000042", NULL, NULL, NULL, NULL, "1000000", "[]", "101"};
    /* One resource: its rows of intent_resources from the cursor down, each intent read by its
     * seq; never a walk of the whole trail backwards. */
    char *p = plan_of(conn, "query_page_resource", 11, resource);
    assert_resource_walk("one resource", p);
    free(p);
    p = plan_of(conn, "query_page_resource", 11, resource_before);
    assert_resource_walk("one resource, before a seq", p);
    free(p);
    p = plan_of(conn, "query_page", 11, one_hour);
    assert_indexed("one hour", p, "intents_received");
    free(p);
    p = plan_of(conn, "query_page", 11, newest);
    assert_indexed("the newest entries", p, "intents_pkey");
    free(p);
    /* Verification reads the chain a chunk at a time, from the start or from a point on. */
    char *mid =
        kc_sql_value("SELECT seq FROM audit.intents WHERE request_id = 'grow-000025000'", 0, NULL);
    const char *start[2] = {"1", "2001"}, *middle[2] = {mid, "2001"};
    p = plan_of(conn, "verify_rows", 2, start);
    assert_indexed("verify from the start", p, "intents_pkey");
    assert_indexed("verify from the start", p, "outcomes_pkey");
    free(p);
    p = plan_of(conn, "verify_rows", 2, middle);
    assert_indexed("verify from the middle", p, "intents_pkey");
    assert_indexed("verify from the middle", p, "outcomes_pkey");
    free(p);
    free(mid);
    free(at);
    PQfinish(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_twice),
        cmocka_unit_test(test_grown_chain_verifies),
        cmocka_unit_test(test_query_plans),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
