/* Unit test of services/order/instance_state.c: every (state, event) pair has the decided
 * verdict and next state, and the names round-trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "instance_state.h"

#define P INSTANCE_PROVISIONING
#define A INSTANCE_ACTIVE
#define F INSTANCE_FROZEN
#define R INSTANCE_RELEASED

typedef struct {
    instance_verdict_t verdict;
    instance_state_t to;
    const char *why; /* substring expected in the message of BUSY/INVALID */
} expect_t;

/* clang-format off */
#define OK(s) {INSTANCE_APPLY, s, ""}
#define SAME(s) {INSTANCE_NOOP, s, ""}
#define BUSY(s) {INSTANCE_BUSY, s, "provisioned"}
#define GONE {INSTANCE_INVALID, R, "released"}

/* The expected machine, written independently of the table in instance_state.c. */
static const expect_t expected[INSTANCE__STATE_COUNT][INSTANCE__EVENT_COUNT] = {
    /*            provisioned  freeze    unfreeze  refresh  upgrade  release  check  license */
    [P] = {OK(A), OK(P), OK(P), OK(P), OK(P), OK(R), OK(P), OK(P)},
    [A] = {SAME(A), OK(F), SAME(A), OK(A), OK(A), OK(R), OK(A), OK(A)},
    [F] = {SAME(F), SAME(F), OK(A), OK(F), OK(F), OK(R), OK(F), OK(F)},
    [R] = {GONE, GONE, GONE, GONE, GONE, SAME(R), GONE, GONE},
};
/* clang-format on */

static void test_every_pair(void **state)
{
    (void)state;
    int checked = 0;
    for (int s = 0; s < INSTANCE__STATE_COUNT; s++) {
        for (int e = 0; e < INSTANCE__EVENT_COUNT; e++) {
            instance_state_t to = (instance_state_t)-1;
            const char *why = NULL;
            instance_verdict_t v =
                instance_transition((instance_state_t)s, (instance_event_t)e, &to, &why);
            const expect_t *x = &expected[s][e];
            if (v != x->verdict || to != x->to || !why || !strstr(why, x->why))
                fail_msg("state %s event %s: verdict %d to %d why '%s'",
                         instance_state_name((instance_state_t)s),
                         instance_event_name((instance_event_t)e), v, to, why ? why : "(null)");
            /* Only APPLY may move; errors and no-ops stay where they are. */
            if (v != INSTANCE_APPLY)
                assert_int_equal(to, s);
            if (v == INSTANCE_BUSY || v == INSTANCE_INVALID)
                assert_true(strlen(why) > 0);
            checked++;
        }
    }
    assert_int_equal(checked, INSTANCE__STATE_COUNT * INSTANCE__EVENT_COUNT);
}

static void test_released_is_terminal(void **state)
{
    (void)state;
    for (int e = 0; e < INSTANCE__EVENT_COUNT; e++) {
        instance_state_t to;
        const char *why;
        instance_transition(R, (instance_event_t)e, &to, &why);
        assert_int_equal(to, R);
    }
}

static void test_names(void **state)
{
    (void)state;
    for (int s = 0; s < INSTANCE__STATE_COUNT; s++) {
        instance_state_t back;
        assert_true(instance_state_parse(instance_state_name((instance_state_t)s), &back));
        assert_int_equal(back, s);
    }
    instance_state_t out = A;
    assert_false(instance_state_parse("ACTIVE", &out));
    assert_false(instance_state_parse("", &out));
    assert_false(instance_state_parse(NULL, &out));
    assert_int_equal(out, A);
    assert_string_equal(instance_event_name(INSTANCE_EV_FREEZE), "freeze");
    assert_string_equal(instance_event_name(INSTANCE_EV_PROVISIONED), "provisioned");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair),
        cmocka_unit_test(test_released_is_terminal),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
