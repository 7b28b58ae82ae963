/* pgworker without a database: a worker that must connect first is refused, a running worker
 * whose database is away never runs its step, and a stop ends it at once though its next
 * reconnection is seconds away. (With a database: the order, billing and faults tests.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "pgworker.h"
#include "timeutil.h"

/* A socket folder that does not exist: every connection attempt fails at once. */
#define NO_DATABASE "host=/nonexistent-kooisv-test port=1 dbname=none"

static const pg_stmt_t no_stmts[] = {{"nothing", "SELECT 1", 0}};

static bool count_step(pgworker_t *worker, pg_session_t *db, void *arg)
{
    (void)worker;
    (void)db;
    (*(int *)arg)++;
    return false;
}

static pgworker_config_t config(bool connect_first, int *steps)
{
    return (pgworker_config_t){.name = "test worker",
                               .session = {.dsn = NO_DATABASE,
                                           .app = "test_pgworker",
                                           .stmts = no_stmts,
                                           .nstmts = 1,
                                           .wait_s = 0},
                               .connect_first = connect_first,
                               .channel = "test_channel",
                               .poll_ms = 10000,
                               .retry_max_ms = 20000,
                               .step = count_step,
                               .arg = steps};
}

static void test_connect_first_refused(void **state)
{
    (void)state;
    int steps = 0;
    pgworker_config_t cfg = config(true, &steps);
    assert_null(pgworker_new(&cfg));
    pgworker_destroy(NULL);
}

static void test_stop_while_database_away(void **state)
{
    (void)state;
    int steps = 0;
    pgworker_config_t cfg = config(false, &steps);
    pgworker_t *w = pgworker_new(&cfg);
    assert_non_null(w);
    assert_false(pgworker_stopping(w));
    assert_int_equal(pgworker_start(w), 0);
    struct timespec ts = {0, 300 * 1000000L}; /* the first attempt failed: a 10 s wait began */
    nanosleep(&ts, NULL);
    int64_t t0 = time_mono_us();
    pgworker_stop(w);
    assert_true(pgworker_stopping(w));
    pgworker_stop(w); /* twice is harmless */
    pgworker_destroy(&w);
    assert_null(w);
    assert_true(time_mono_us() - t0 < 1000000);
    assert_int_equal(steps, 0);
}

static void test_destroy_never_started(void **state)
{
    (void)state;
    int steps = 0;
    pgworker_config_t cfg = config(false, &steps);
    pgworker_t *w = pgworker_new(&cfg);
    assert_non_null(w);
    pgworker_destroy(&w);
    assert_null(w);
    assert_int_equal(steps, 0);
}

static void test_set_of_workers(void **state)
{
    (void)state;
    int steps[3] = {0};
    pgworker_config_t cfg = config(false, steps);
    pgworker_set_t *set = pgworker_set_new(3, &cfg, sizeof steps[0]);
    assert_non_null(set);
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    int64_t t0 = time_mono_us();
    pgworker_set_destroy(&set);
    assert_null(set);
    assert_true(time_mono_us() - t0 < 1000000); /* stopped together, not one wait after another */
    for (int i = 0; i < 3; i++)
        assert_int_equal(steps[i], 0);
    pgworker_set_destroy(&set); /* NULL: nothing */
    /* A set that cannot connect first does not start at all. */
    cfg.connect_first = true;
    assert_null(pgworker_set_new(3, &cfg, sizeof steps[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_first_refused),
        cmocka_unit_test(test_stop_while_database_away),
        cmocka_unit_test(test_destroy_never_started),
        cmocka_unit_test(test_set_of_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
