/* pg_tx_run (common/pgutil.c) against the suite's PostgreSQL. BEGIN is queued and goes out with
 * the body's first statement; whatever the body does first (a prepared statement, a plain
 * command, nothing at all) and however it ends, the transaction is one: a failure undoes what came
 * before it, a rollback keeps nothing, and the connection is idle and usable afterwards. The
 * same holds for statements the body queues (pg_tx_queue): they run in order, before what
 * follows them, and a failure among them fails the transaction. After-commit hooks run only
 * once the transaction has committed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kclient.h"
#include "pgutil.h"
#include "xmalloc.h"

static char table[64];
static pg_stmt_t stmts[3];
static char *sql_insert, *sql_count, *sql_fail;
static pg_session_t *db;

/* Rows of the test table, counted by the session itself (outside any transaction). */
static long rows(void)
{
    PGresult *r = pg_session_exec(db, "pgtx", "pgtx_count", 0, NULL, NULL);
    assert_non_null(r);
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

/* The session is idle, out of pipeline mode, and answers a statement. */
static void assert_idle(void)
{
    PGconn *c = pg_session_conn(db);
    assert_int_equal(PQpipelineStatus(c), PQ_PIPELINE_OFF);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    (void)rows();
}

/* Inserts go through pg_tx_queue (sent with the next statement or COMMIT) instead of pg_tx_exec. */
static bool queue_inserts;

static pg_status_t insert(pg_tx_t *tx, const char *id)
{
    const char *p[] = {id};
    if (queue_inserts)
        return pg_tx_queue(tx, "pgtx_insert", 1, p);
    PGresult *r = pg_tx_exec(tx, "pgtx_insert", 1, p);
    if (!r)
        return tx->failed;
    PQclear(r);
    return PG_OK;
}

/* What a body does: ids to insert (NULL-terminated), then the status it returns. */
typedef struct {
    const char *first_command; /* a plain command (pg_command) before anything else, or NULL */
    const char *ids[4];
    bool fail_after;  /* a failing statement after the inserts */
    bool count_after; /* count the rows inside the transaction: *counted */
    pg_status_t ending;
} plan_t;

static long counted; /* rows the body saw (plan_t.count_after) */

static pg_status_t body(pg_tx_t *tx, void *arg)
{
    const plan_t *plan = arg;
    if (plan->first_command && !pg_command(tx->conn, plan->first_command))
        return PG_FAIL;
    for (int i = 0; plan->ids[i]; i++) {
        pg_status_t st = insert(tx, plan->ids[i]);
        if (st != PG_OK)
            return st;
    }
    if (plan->fail_after) {
        PGresult *r = pg_tx_exec(tx, "pgtx_fail", 0, NULL);
        if (!r)
            return tx->failed;
        PQclear(r);
    }
    if (plan->count_after) {
        PGresult *r = pg_tx_exec(tx, "pgtx_count", 0, NULL);
        if (!r)
            return tx->failed;
        counted = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    return plan->ending;
}

static int setup(void **state)
{
    (void)state;
    snprintf(table, sizeof table, "public.pgtx_%ld", (long)getpid());
    char *ddl = xasprintf("CREATE TABLE %s (id text PRIMARY KEY)", table);
    assert_true(kc_sql_exec(ddl, 0, NULL) >= 0);
    free(ddl);
    sql_insert = xasprintf("INSERT INTO %s (id) VALUES ($1)", table);
    sql_count = xasprintf("SELECT count(*) FROM %s", table);
    sql_fail = xasprintf("SELECT 1 / (SELECT count(*) - count(*) FROM %s)", table);
    stmts[0] = (pg_stmt_t){"pgtx_insert", sql_insert, 1};
    stmts[1] = (pg_stmt_t){"pgtx_count", sql_count, 0};
    stmts[2] = (pg_stmt_t){"pgtx_fail", sql_fail, 0};
    pg_session_config_t cfg = {.dsn = suite_get("KOOISV_PG_SUPER_DSN"),
                               .app = "test_pgtx",
                               .stmts = stmts,
                               .nstmts = 3,
                               .wait_s = 5};
    db = pg_session_new(&cfg);
    assert_non_null(db);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pg_session_destroy(&db);
    char *ddl = xasprintf("DROP TABLE IF EXISTS %s", table);
    kc_sql_exec(ddl, 0, NULL);
    free(ddl);
    free(sql_insert);
    free(sql_count);
    free(sql_fail);
    return 0;
}

static void run(const plan_t *plan, pg_status_t want, long want_rows)
{
    long before = rows();
    assert_int_equal(pg_tx_run(db, "pgtx", body, (void *)plan), want);
    assert_idle();
    assert_int_equal(rows(), before + want_rows);
}

/* Two inserts committed: both kept. */
static void test_commit(void **state)
{
    (void)state;
    run(&(plan_t){.ids = {"c1", "c2"}, .ending = PG_OK}, PG_OK, 2);
}

/* The first statement fails (a duplicate id): nothing kept. */
static void test_first_statement_fails(void **state)
{
    (void)state;
    run(&(plan_t){.ids = {"c1"}, .ending = PG_OK}, PG_FAIL, 0);
}

/* A failure after two inserts undoes them: the first insert, sent with BEGIN, was inside the
 * transaction. */
static void test_failure_undoes_the_first_statement(void **state)
{
    (void)state;
    run(&(plan_t){.ids = {"f1", "f2"}, .fail_after = true, .ending = PG_OK}, PG_FAIL, 0);
    run(&(plan_t){.ids = {"f3", "c2"}, .ending = PG_OK}, PG_FAIL, 0);
}

/* The body asks for a rollback after inserting: nothing kept. */
static void test_rollback(void **state)
{
    (void)state;
    run(&(plan_t){.ids = {"r1"}, .ending = PG_ROLLBACK}, PG_ROLLBACK, 0);
}

/* A body that runs no statement: committed or rolled back, the connection is left clean. */
static void test_empty_body(void **state)
{
    (void)state;
    run(&(plan_t){.ending = PG_OK}, PG_OK, 0);
    run(&(plan_t){.ending = PG_ROLLBACK}, PG_ROLLBACK, 0);
}

/* A plain command first (as change_notify_jobs may be): still inside the transaction. */
static void test_command_first(void **state)
{
    (void)state;
    char *cmd = xasprintf("INSERT INTO %s (id) VALUES ('p1')", table);
    run(&(plan_t){.first_command = cmd, .ids = {"p2"}, .ending = PG_ROLLBACK}, PG_ROLLBACK, 0);
    run(&(plan_t){.first_command = cmd, .ids = {"p2"}, .fail_after = true, .ending = PG_OK},
        PG_FAIL, 0);
    run(&(plan_t){.first_command = cmd, .ids = {"p2"}, .ending = PG_OK}, PG_OK, 2);
    free(cmd);
}

/* The body's backend is killed before its first statement, while BEGIN is still queued: the
 * transaction is run again on a fresh connection, once, and commits. */
static int kills_left;
static pg_status_t killed_body(pg_tx_t *tx, void *arg)
{
    if (kills_left > 0) {
        kills_left--;
        char pid[16];
        snprintf(pid, sizeof pid, "%d", PQbackendPID(tx->conn));
        const char *p[] = {pid};
        assert_int_equal(kc_sql_exec("SELECT pg_terminate_backend($1::int)", 1, p), 1);
        usleep(100 * 1000);
    }
    return insert(tx, arg);
}

static void test_connection_killed_before_first_statement(void **state)
{
    (void)state;
    long before = rows();
    kills_left = 1;
    assert_int_equal(pg_tx_run(db, "pgtx", killed_body, "k1"), PG_OK);
    assert_int_equal(kills_left, 0);
    assert_idle();
    assert_int_equal(rows(), before + 1);
    /* killed on both runs: it fails, and the session still works afterwards */
    kills_left = 2;
    assert_int_equal(pg_tx_run(db, "pgtx", killed_body, "k2"), PG_FAIL);
    assert_true(pg_session_ready(db, "pgtx"));
    assert_idle();
    assert_int_equal(rows(), before + 1);
}

/* ---- the same with the inserts queued (pg_tx_queue) ---- */

/* Every case above again, the inserts queued instead of waited for: the same outcomes. */
static void test_queued_cases(void **state)
{
    (void)state;
    queue_inserts = true;
    char *cmd = xasprintf("INSERT INTO %s (id) VALUES ('qp1')", table);
    run(&(plan_t){.ids = {"q1", "q2"}, .ending = PG_OK}, PG_OK, 2);
    run(&(plan_t){.ids = {"q1"}, .ending = PG_OK}, PG_FAIL, 0); /* a duplicate, at COMMIT */
    run(&(plan_t){.ids = {"qf1", "qf2"}, .fail_after = true, .ending = PG_OK}, PG_FAIL, 0);
    run(&(plan_t){.ids = {"qf3", "q2"}, .ending = PG_OK}, PG_FAIL, 0);
    run(&(plan_t){.ids = {"qr1"}, .ending = PG_ROLLBACK}, PG_ROLLBACK, 0);
    run(&(plan_t){.first_command = cmd, .ids = {"qp2"}, .ending = PG_ROLLBACK}, PG_ROLLBACK, 0);
    run(&(plan_t){.first_command = cmd, .ids = {"qp2"}, .ending = PG_OK}, PG_OK, 2);
    free(cmd);
    queue_inserts = false;
}

/* A statement after queued ones sees what they wrote, in order; and when one of them fails it
 * gets that failure (the transaction keeps nothing, the connection is left idle). */
static void test_queued_then_read(void **state)
{
    (void)state;
    queue_inserts = true;
    long before = rows();
    counted = -1;
    run(&(plan_t){.ids = {"qs1", "qs2", "qs3"}, .count_after = true, .ending = PG_OK}, PG_OK, 3);
    assert_int_equal(counted, before + 3);
    counted = -1;
    run(&(plan_t){.ids = {"qs4", "qs1", "qs5"}, .count_after = true, .ending = PG_OK}, PG_FAIL,
        0);
    assert_int_equal(counted, -1); /* the read failed with the duplicate before it */
    queue_inserts = false;
}

/* More statements queued than fit at once (PG_QUEUE_MAX, 32): the first ones go out first, all
 * are committed. */
static pg_status_t many_body(pg_tx_t *tx, void *arg)
{
    const char *prefix = arg;
    for (int i = 0; i < 70; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s%d", prefix, i);
        const char *p[] = {id};
        if (pg_tx_queue(tx, "pgtx_insert", 1, p) != PG_OK)
            return PG_FAIL;
    }
    return PG_OK;
}

static void test_queued_many(void **state)
{
    (void)state;
    long before = rows();
    assert_int_equal(pg_tx_run(db, "pgtx", many_body, "qm"), PG_OK);
    assert_idle();
    assert_int_equal(rows(), before + 70);
    /* again with one duplicate among them (qm5): nothing kept */
    assert_int_equal(pg_tx_run(db, "pgtx", many_body, "qm"), PG_FAIL);
    assert_idle();
    assert_int_equal(rows(), before + 70);
}

/* After-commit hooks: run once the transaction has committed, once per pair however often it is
 * registered; never when it rolls back or fails (a queued duplicate fails it at COMMIT). The
 * failure's SQLSTATE is what pg_last_failure_sqlstate says. */
static int hook_runs[2];

static void hook(void *arg)
{
    hook_runs[(int)(intptr_t)arg]++;
}

typedef struct {
    const char *id;
    pg_status_t ending;
} hook_plan_t;

static pg_status_t hook_body(pg_tx_t *tx, void *arg)
{
    const hook_plan_t *plan = arg;
    const char *p[] = {plan->id};
    if (pg_tx_queue(tx, "pgtx_insert", 1, p) != PG_OK ||
        pg_tx_after_commit(tx, hook, (void *)0) != PG_OK ||
        pg_tx_after_commit(tx, hook, (void *)0) != PG_OK ||
        pg_tx_after_commit(tx, hook, (void *)1) != PG_OK)
        return PG_FAIL;
    /* no hook has run before COMMIT */
    return hook_runs[0] || hook_runs[1] ? PG_FAIL : plan->ending;
}

static void test_after_commit(void **state)
{
    (void)state;
    long before = rows();
    assert_int_equal(pg_tx_run(db, "pgtx", hook_body, &(hook_plan_t){"h1", PG_OK}), PG_OK);
    assert_int_equal(hook_runs[0], 1);
    assert_int_equal(hook_runs[1], 1);
    hook_runs[0] = hook_runs[1] = 0;
    assert_int_equal(pg_tx_run(db, "pgtx", hook_body, &(hook_plan_t){"h2", PG_ROLLBACK}),
                     PG_ROLLBACK);
    assert_int_equal(pg_tx_run(db, "pgtx", hook_body, &(hook_plan_t){"h1", PG_OK}), PG_FAIL);
    assert_string_equal(pg_last_failure_sqlstate(), "23505");
    assert_int_equal(hook_runs[0] + hook_runs[1], 0);
    assert_idle();
    assert_int_equal(rows(), before + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit),
        cmocka_unit_test(test_first_statement_fails),
        cmocka_unit_test(test_failure_undoes_the_first_statement),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_command_first),
        cmocka_unit_test(test_connection_killed_before_first_statement),
        cmocka_unit_test(test_queued_cases),
        cmocka_unit_test(test_queued_then_read),
        cmocka_unit_test(test_queued_many),
        cmocka_unit_test(test_after_commit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
