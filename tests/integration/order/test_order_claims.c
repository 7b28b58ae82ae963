/* The order service's job threads under a backlog: a runner claims several due jobs in one
 * statement (up to 8, growing while its claims come back full) and runs them in turn; a job
 * whose lease, when its turn comes, no longer outlives a job step (the slowest HTTP timeout
 * plus 2 s) is given back, due at once for any runner and its attempt not counted; every job
 * is still provisioned exactly once. The test runs the order service with one job thread, a
 * 5 s lease and 2 s HTTP timeouts, so a claim may start jobs for 1 s (through
 * <suite>/env/order.env, restored at the end); a Query Order answers in 0.9 s, 1.1 s inside its
 * timeout even on a loaded machine. Also: the statements that name a job by its id keep to
 * its primary key whatever the statistics say (a copy of the tables). Needs the `suite`
 * fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <unistd.h>

#include "config.h"
#include "kplan.h"
#include "order.h"
#include "order_support.h"
#include "xmalloc.h"

#define JOBS 12
#define PROVISION_WAIT_MS 60000

static kc_envfile_t saved_env;

static int group_setup(void **state)
{
    (void)state;
    if (suite_env_load() != 0 || !suite_get("KOOISV_SUITE_DIR"))
        return -1;
    return ot_order_env_apply(&saved_env, "KOOISV_PROVISION_THREADS=1\n"
                                          "KOOISV_PROVISION_LEASE_MS=5000\n"
                                          "KOOISV_MARKETPLACE_TIMEOUT_MS=2000\n"
                                          "KOOISV_WEBHOOK_TIMEOUT_MS=2000\n"
                                          "KOOISV_PROVISION_BACKOFF_MS=600000\n"
                                          "KOOISV_PROVISION_BACKOFF_MAX_MS=600000\n");
}

static int group_teardown(void **state)
{
    ot_clear_faults_teardown(state);
    ot_order_env_restore(&saved_env);
    return 0;
}

/* The order service's log from byte offset on (caller frees). */
static char *order_log_from(size_t offset)
{
    char *path = xasprintf("%s/logs/order.log", suite_get("KOOISV_SUITE_DIR"));
    size_t len = 0;
    char *text = config_read_file(path, &len);
    free(path);
    char *out = xstrdup(text && offset < len ? text + offset : "");
    free(text);
    return out;
}

static size_t order_log_size(void)
{
    char *text = order_log_from(0);
    size_t n = strlen(text);
    free(text);
    return n;
}

/* The largest n of "(k of n in one claim)" in log. */
static int largest_claim(const char *log)
{
    int most = 0;
    for (const char *p = strstr(log, " in one claim)"); p; p = strstr(p + 1, " in one claim)")) {
        const char *of = p;
        while (of > log && of[-1] != ' ')
            of--;
        int n = atoi(of);
        if (n > most)
            most = n;
    }
    return most;
}

static void test_backlog_claimed_together(void **state)
{
    (void)state;
    /* Every Query Order fails at first: the jobs wait for a retry ten minutes away. */
    ot_fault("{\"path\":\"order/query\",\"match\":\"CS\",\"mode\":\"error\",\"count\":-1}");
    char *ids[JOBS];
    for (int i = 0; i < JOBS; i++) {
        char *order = ot_order_id(), *line = ot_line_of(order), *biz = kc_uid("biz");
        ids[i] = ot_new_instance(order, line, biz, NULL);
        free(order);
        free(line);
        free(biz);
    }
    for (int i = 0; i < JOBS; i++)
        ot_wait_job(ids[i], 1, "pending", 20000);

    /* Then every Query Order answers in 0.9 s (the timeout is 2 s), and all jobs fall due at
     * once: the runner's claims grow (1, 2, 4...), and a claim of three or more reaches its
     * third job after 1.8 s, past the 1 s its lease leaves for starting jobs, so the rest go
     * back. */
    ot_fault("{\"path\":\"order/query\",\"match\":\"CS\",\"mode\":\"slow\",\"count\":-1,"
             "\"delay_ms\":900}");
    size_t log_start = order_log_size();
    char *list = xstrdup("");
    for (int i = 0; i < JOBS; i++) {
        char *next = xasprintf("%s%s'%s'", list, i ? "," : "", ids[i]);
        free(list);
        list = next;
    }
    char *due = xasprintf("WITH u AS (UPDATE orders.jobs SET next_attempt_at = now()"
                          " WHERE instance_id IN (%s) AND state = 'pending' RETURNING 1)"
                          " SELECT count(*) FROM u",
                          list);
    assert_int_equal(ot_sql_num(due, NULL, NULL), JOBS);
    free(ot_sql("SELECT pg_notify('orders_jobs', '')::text", NULL, NULL));

    for (int i = 0; i < JOBS; i++)
        ot_assert_provisioned_once(ids[i], PROVISION_WAIT_MS, 2);
    /* Given back means not counted: one failed attempt, one that provisioned. */
    char *attempts = xasprintf("SELECT count(*) FROM orders.jobs WHERE instance_id IN (%s)"
                               " AND attempts = 2",
                               list);
    assert_int_equal(ot_sql_num(attempts, NULL, NULL), JOBS);

    char *log = order_log_from(log_start);
    int most = largest_claim(log);
    if (most < 3)
        fail_msg("no claim took three jobs or more (largest: %d)", most);
    if (!strstr(log, "too little of their lease is left"))
        fail_msg("no claimed job was given back");
    free(log);
    free(attempts);
    free(due);
    free(list);
    for (int i = 0; i < JOBS; i++)
        free(ids[i]);
}

/* The job statements that name one job by its id (the finishing transaction's lock, the
 * lease's renewal, a failure, a give-back) find it by the primary key, and the claim of new
 * jobs by their keys through the key's index, whatever the statistics say. The due index (jobs_due_order: pending and running jobs) also fits "state =
 * 'running'": while the statistics said it was nearly empty, their generic plans walked all of
 * it for the id, and under load it holds every job done since the last vacuum (the lock read
 * 180 buffers a job on the development state). A copy of the tables with 20,000 done jobs,
 * analysed, gives those statistics. */
static void test_job_by_id_plans(void **state)
{
    (void)state;
    PGconn *c = PQconnectdb(suite_get("KOOISV_PG_SUPER_DSN"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char *schema = xasprintf("jobs_plan_%ld", (long)getpid());
    char *sql = xasprintf("DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s;"
                          " CREATE TABLE %s.instances (LIKE orders.instances INCLUDING ALL);"
                          " CREATE TABLE %s.order_applications"
                          "  (LIKE orders.order_applications INCLUDING ALL);"
                          " CREATE TABLE %s.jobs (LIKE orders.jobs INCLUDING ALL);"
                          " INSERT INTO %s.jobs (kind, instance_id, order_id, order_line_id, state)"
                          "  SELECT 'provision', 'i' || g, 'o' || g, 'l', 'done'"
                          "  FROM generate_series(1, 20000) g;"
                          " ANALYZE %s.jobs; ANALYZE %s.instances",
                          schema, schema, schema, schema, schema, schema, schema, schema);
    kplan_exec(c, sql);
    free(sql);
    /* each statement and the indexes it may read jobs through (the copy's names); the claim's
     * lease is written by the primary key */
    static const char *const by_id[][2] = {{"job_lock_instance", "jobs_pkey"},
                                           {"job_store_order", "jobs_pkey"},
                                           {"job_fail", "jobs_pkey"},
                                           {"job_give_back", "jobs_pkey"},
                                           {"job_claim_key",
                                            "jobs_instance_id_kind_order_id_key jobs_pkey"}};
    char *wrong = xstrdup("");
    for (size_t k = 0; k < sizeof by_id / sizeof *by_id; k++) {
        const pg_stmt_t *st = NULL;
        for (size_t i = 0; i < jobs_stmts_count; i++)
            if (strcmp(jobs_stmts[i].name, by_id[k][0]) == 0)
                st = &jobs_stmts[i];
        assert_non_null(st);
        kplan_expect(c, st, "orders", schema, "jobs", by_id[k][1], &wrong);
    }
    kplan_done(c, schema);
    if (*wrong)
        fail_msg("statements that read a job by its id or key through another index:%s", wrong);
    free(wrong);
}

/* A new instance's provisioning job is claimed by its key, which the call's worker hands to a
 * job thread after the commit, not found by a walk of the due index (which runs once a poll
 * interval). */
static void test_new_job_claimed_by_key(void **state)
{
    (void)state;
    size_t log_start = order_log_size();
    char *order = ot_order_id(), *line = ot_line_of(order), *biz = kc_uid("biz");
    char *id = ot_new_instance(order, line, biz, NULL);
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 1);
    char *log = order_log_from(log_start);
    char *want = xasprintf("provision instance=%s attempt 1 claimed by ", id);
    const char *at = strstr(log, want);
    if (!at)
        fail_msg("no claim of the job of %s in the order log", id);
    const char *eol = strchr(at, '\n');
    char *claim = xasprintf("%.*s", eol ? (int)(eol - at) : (int)strlen(at), at);
    if (!strstr(claim, " by key)"))
        fail_msg("the job was not claimed by its key: %s", claim);
    free(claim);
    free(want);
    free(log);
    free(id);
    free(order);
    free(line);
    free(biz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_by_id_plans),
        cmocka_unit_test(test_new_job_claimed_by_key),
        cmocka_unit_test_teardown(test_backlog_claimed_together, ot_clear_faults_teardown),
    };
    return KC_SUITE_MAIN(tests, group_setup, group_teardown);
}
