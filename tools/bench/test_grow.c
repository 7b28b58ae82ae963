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

static void test_grown_chain_verifies(void **state)
{
    (void)state;
    /* From the entry before the first grown one, so the link to the older trail is checked. */
    char *first = kc_sql_value("SELECT seq - 1 FROM audit.intents WHERE request_id = 'grow-000000000'",
                               0, NULL);
    assert_non_null(first);
    char *out = NULL;
    int rc = kc_ctl(&out, NULL, (const char *[]){"audit", "verify", "--from-seq", first, NULL});
    if (rc != 0 || !out || !strstr(out, "OK: "))
        fail_msg("audit verify --from-seq %s: exit %d: %s", first, rc, out ? out : "");
    free(out);
    free(first);
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
                            " WHERE request_id = 'grow-000025000'", 0, NULL);
    assert_non_null(at);
    long long hour = strtoll(at, NULL, 10) / HOUR_MS * HOUR_MS;
    char from[24], to[24];
    snprintf(from, sizeof from, "%lld", hour);
    snprintf(to, sizeof to, "%lld", hour + HOUR_MS);
    /* $1 from $2 to $3 event $4 resource $5 caller $6 source $7 result $8 request $9 cursor
     * $10 excluded events $11 limit (query.c) */
    const char *resource[11] = {NULL, NULL, NULL, "grow-inst-0000042", NULL, NULL,
                                NULL, NULL, NULL, "[]", "101"};
    const char *one_hour[11] = {from, to, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "[]", "101"};
    const char *newest[11] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "[]", "21"};
    /* The second page of a resource, as kooisvctl --before asks for it. */
    const char *resource_before[11] = {NULL, NULL, NULL, "grow-tenant-000042", NULL, NULL,
                                       NULL, NULL, "1000000", "[]", "101"};
    char *p = plan_of(conn, "query_page", 11, resource);
    assert_indexed("one resource", p, "intents_resources");
    free(p);
    p = plan_of(conn, "query_page", 11, resource_before);
    assert_indexed("one resource, before a seq", p, "intents_resources");
    free(p);
    p = plan_of(conn, "query_page", 11, one_hour);
    assert_indexed("one hour", p, "intents_received");
    free(p);
    p = plan_of(conn, "query_page", 11, newest);
    assert_indexed("the newest entries", p, "intents_pkey");
    free(p);
    /* Verification reads the chain from a point on, a chunk at a time. */
    char *mid = kc_sql_value("SELECT seq FROM audit.intents WHERE request_id = 'grow-000025000'",
                             0, NULL);
    const char *chunk[2] = {mid, "2001"};
    p = plan_of(conn, "verify_rows", 2, chunk);
    assert_indexed("verify, a chunk", p, "intents_pkey");
    assert_indexed("verify, a chunk", p, "outcomes_pkey");
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
