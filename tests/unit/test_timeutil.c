/* timeutil: the marketplace's compact times in a configured zone (KOOISV_MARKETPLACE_TIME_ZONE):
 * UTC by default, fixed offsets, IANA names with their clock changes (skipped and repeated wall
 * times, rules past the last listed change), names refused, TZ left as it was. Expected instants
 * were computed independently (Python zoneinfo). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "timeutil.h"

/* 2027-12-06T11:19:47Z, the renewal read as UTC. */
#define RENEWAL_UTC_MS 1828091987000LL
#define HOUR_MS 3600000LL

static time_zone_t *zone(const char *name)
{
    char why[256] = "";
    time_zone_t *z = time_zone_new(name, why, sizeof why);
    if (!z)
        fail_msg("zone %s refused: %s", name, why);
    return z;
}

static int64_t parse(const time_zone_t *z, const char *s)
{
    int64_t ms = -1;
    if (!time_parse_compact(z, s, &ms))
        fail_msg("%s not parsed in %s", s, time_zone_name(z));
    return ms;
}

static void test_utc_by_default(void **state)
{
    (void)state;
    assert_int_equal(parse(NULL, "20271206111947"), RENEWAL_UTC_MS);
    const char *names[] = {"UTC", "Z", "+00:00", "-0000", "Etc/UTC"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        time_zone_t *z = zone(names[i]);
        assert_int_equal(parse(z, "20271206111947"), RENEWAL_UTC_MS);
        assert_string_equal(time_zone_name(z), names[i]);
        time_zone_destroy(&z);
        assert_null(z);
    }
    char out[15];
    assert_string_equal(time_format_compact(NULL, RENEWAL_UTC_MS + 999, out), "20271206111947");
    assert_string_equal(time_zone_name(NULL), "UTC");
}

static void test_fixed_offsets(void **state)
{
    (void)state;
    const struct {
        const char *name;
        int64_t shift_ms; /* UTC instant = wall - shift */
    } cases[] = {{"+08:00", 8 * HOUR_MS},
                 {"+0800", 8 * HOUR_MS},
                 {"+08", 8 * HOUR_MS},
                 {"-05:30", -(5 * HOUR_MS + HOUR_MS / 2)},
                 {"+14:00", 14 * HOUR_MS}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        time_zone_t *z = zone(cases[i].name);
        assert_int_equal(parse(z, "20271206111947"), RENEWAL_UTC_MS - cases[i].shift_ms);
        assert_int_equal(time_zone_offset(z, RENEWAL_UTC_MS), cases[i].shift_ms / 1000);
        char out[15];
        assert_string_equal(time_format_compact(z, RENEWAL_UTC_MS - cases[i].shift_ms, out),
                            "20271206111947");
        time_zone_destroy(&z);
    }
}

static void test_iana_names(void **state)
{
    (void)state;
    char out[15];
    time_zone_t *sh = zone("Asia/Shanghai");
    assert_int_equal(parse(sh, "20271206111947"), RENEWAL_UTC_MS - 8 * HOUR_MS);
    assert_int_equal(parse(sh, "19880701120000"), 583729200000LL); /* China's DST, +09:00 */
    assert_string_equal(time_format_compact(sh, 583729200000LL, out), "19880701120000");
    time_zone_destroy(&sh);

    time_zone_t *ny = zone("America/New_York");
    /* 02:30 does not exist on 2026-03-08: read with the offset before the change (EST). */
    assert_int_equal(parse(ny, "20260308023000"), 1772955000000LL);
    /* 01:30 happens twice on 2026-11-01: the earlier instant (EDT). */
    assert_int_equal(parse(ny, "20261101013000"), 1793511000000LL);
    assert_int_equal(parse(ny, "20261101023000"), 1793518200000LL);
    /* One hour after the first 01:30 it is 01:30 again, in EST. */
    assert_string_equal(time_format_compact(ny, 1793511000000LL + HOUR_MS, out), "20261101013000");
    /* Far past the last listed change: the zone's rule still applies (EDT in July). */
    assert_int_equal(parse(ny, "21500701120000"), 5695977600000LL);
    assert_int_equal(time_zone_offset(ny, 5695977600000LL), -4 * 3600);
    time_zone_destroy(&ny);
}

static void test_tz_left_alone(void **state)
{
    (void)state;
    setenv("TZ", "Europe/Paris", 1);
    time_zone_t *z = zone("Asia/Tokyo");
    assert_string_equal(getenv("TZ"), "Europe/Paris");
    time_zone_destroy(&z);
    unsetenv("TZ");
    z = zone("Asia/Tokyo");
    assert_null(getenv("TZ"));
    assert_int_equal(parse(z, "20271206111947"), RENEWAL_UTC_MS - 9 * HOUR_MS);
    time_zone_destroy(&z);
}

static void test_bad_names_refused(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "Mars/Olympus",
                         "../../etc/passwd",
                         "/etc/localtime",
                         "+15:00",
                         "+08:60",
                         "8",
                         "UTC+8",
                         "+8:00",
                         "utc ",
                         "Asia/Shanghai\n",
                         "zone.tab",
                         "Asia/../Asia/Shanghai"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[256] = "";
        time_zone_t *z = time_zone_new(bad[i], why, sizeof why);
        if (z)
            fail_msg("zone '%s' accepted", bad[i]);
        assert_true(strlen(why) > 0);
        assert_null(strchr(why, '\n'));
    }
    char why[256] = "";
    assert_null(time_zone_new(NULL, why, sizeof why));
}

static void test_bad_times_refused(void **state)
{
    (void)state;
    time_zone_t *z = zone("+08:00");
    const char *bad[] = {"2027120611194",
                         "202712061119470",
                         "20271306111947",
                         "20270229000000",
                         "20271206241947",
                         "2027120611194x",
                         "",
                         "19691231235959"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        if (time_parse_compact(z, bad[i], &ms) || time_parse_compact(NULL, bad[i], &ms))
            fail_msg("'%s' accepted", bad[i]);
    }
    assert_false(time_parse_compact(z, NULL, NULL));
    assert_true(time_parse_compact(z, "20280229235959", NULL));
    time_zone_destroy(&z);
}

/* getLicenseAsync times (spec §3): every listed form read as UTC, to the millisecond. */
static void test_license_times(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"2023-10-27 10:30:15 z", 1698402615000LL},   {"2023-10-27 10:30:15 Z", 1698402615000LL},
        {"2023-10-27 10:30:15 UTC", 1698402615000LL}, {"20231027103015", 1698402615000LL},
        {"20231027103015123", 1698402615123LL},       {"1970-01-01 00:00:00 z", 0},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        int64_t ms = -1;
        char why[160] = "";
        if (!time_parse_license(good[i].s, &ms, why, sizeof why))
            fail_msg("'%s' refused: %s", good[i].s, why);
        assert_int_equal(ms, good[i].ms);
    }
    static const struct {
        const char *s, *why;
    } bad[] = {
        {"2023-10-27 10:30:15 +08:00", "must end in the zone z, Z or UTC"},
        {"2023-10-27 10:30:15 GMT", "must end in the zone z, Z or UTC"},
        {"2023-10-27 10:30:15", "must end in the zone z, Z or UTC"},
        {"2023-10-27 10:30:15 z ", "must end in the zone z, Z or UTC"},
        {"2023-10-27 10:30:15z", "must end in the zone z, Z or UTC"},
        {"2023-10-27T10:30:15 z", "must be a UTC time as"},
        {"2023-1-27 10:30:15 z", "must be a UTC time as"},
        {"1698402615000", "must be a UTC time as"},
        {"2023102710301", "must be a UTC time as"},
        {"", "must be a UTC time as"},
        {"2023-13-27 10:30:15 z", "is not a real calendar time"},
        {"2023-02-29 10:30:15 z", "is not a real calendar time"},
        {"20231027106015", "is not a real calendar time"},
        {"19691231235959999", "is not a real calendar time"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 42;
        char why[160] = "";
        if (time_parse_license(bad[i].s, &ms, why, sizeof why))
            fail_msg("'%s' accepted", bad[i].s);
        if (!strstr(why, bad[i].why))
            fail_msg("'%s': reason \"%s\", wanted \"%s\"", bad[i].s, why, bad[i].why);
        assert_int_equal(ms, 42);
    }
    char why[160];
    assert_false(time_parse_license(NULL, NULL, why, sizeof why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc_by_default),    cmocka_unit_test(test_fixed_offsets),
        cmocka_unit_test(test_iana_names),        cmocka_unit_test(test_tz_left_alone),
        cmocka_unit_test(test_bad_names_refused), cmocka_unit_test(test_bad_times_refused),
        cmocka_unit_test(test_license_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
