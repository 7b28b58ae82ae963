/* Unit test of the operators' time parsing (gateway/admin.c: admin_parse_time), which the
 * admin API applies to from/to and kooisvctl passes through untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "admin.h"

static int64_t parse(const char *s)
{
    int64_t ms = -1;
    assert_true(admin_parse_time(s, &ms));
    return ms;
}

static void test_accepted(void **state)
{
    (void)state;
    const int64_t day = 1764288000000; /* 2025-11-28T00:00:00Z */
    assert_int_equal(parse("1764288000000"), day);
    assert_int_equal(parse("0"), 0);
    assert_int_equal(parse("2025-11-28"), day);
    assert_int_equal(parse("2025-11-28T00:00Z"), day);
    assert_int_equal(parse("2025-11-28T10:00:00Z"), day + 36000000);
    assert_int_equal(parse("2025-11-28t10:00:00z"), day + 36000000);
    assert_int_equal(parse("2025-11-28 10:00:00"), day + 36000000);
    assert_int_equal(parse("2025-11-28T10:00:00.5Z"), day + 36000500);
    assert_int_equal(parse("2025-11-28T10:00:00.123456Z"), day + 36000123);
    assert_int_equal(parse("2025-11-28T18:00:00+08:00"), day + 36000000);
    assert_int_equal(parse("2025-11-28T18:00:00+0800"), day + 36000000);
    assert_int_equal(parse("2025-11-28T05:30:00-04:30"), day + 36000000);
    assert_int_equal(parse("2024-02-29"), 1709164800000);
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "yesterday",
                         "2025-11-28T",
                         "2025-11-28T10",
                         "2025-11-28T25:00:00Z",
                         "2025-11-28T10:61:00Z",
                         "2025-02-29",
                         "2025-13-01",
                         "2025-11-31",
                         "2025-11-28T10:00:00.Z",
                         "2025-11-28T10:00:00+24:00",
                         "2025-11-28T10:00:00Zjunk",
                         "1969-12-31",
                         "1970-01-01T00:00:00+01:00",
                         "-5",
                         "1234567890123456"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 0;
        if (admin_parse_time(bad[i], &ms))
            fail_msg("'%s' accepted as %lld", bad[i], (long long)ms);
    }
    assert_false(admin_parse_time(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_accepted),
                                       cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
