/* randutil: shapes and alphabets of the random values; rough uniformity of alnum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "randutil.h"

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static void test_rand_bytes_fills(void **state)
{
    uint8_t a[64] = {0}, b[64] = {0};
    rand_bytes(a, sizeof a);
    rand_bytes(b, sizeof b);
    /* 2^-512 chance of a false failure. */
    assert_memory_not_equal(a, b, sizeof a);
    rand_bytes(a, 0);
}

static void test_rand_alnum_alphabet_and_length(void **state)
{
    char out[101];
    memset(out, 'X', sizeof out);
    rand_alnum(out, 100);
    assert_int_equal(strlen(out), 100);
    assert_int_equal(strspn(out, alnum), 100);
    rand_alnum(out, 0);
    assert_string_equal(out, "");
}

static void test_rand_alnum_uniform(void **state)
{
    /* 62 * 500 draws: every symbol must appear, none wildly over- or under-represented
     * (expected 500 each; bounds are > 8 standard deviations away). */
    enum { N = 62 * 500 };
    char *out = malloc(N + 1);
    rand_alnum(out, N);
    int counts[256] = {0};
    for (size_t i = 0; i < N; i++)
        counts[(unsigned char)out[i]]++;
    for (const char *c = alnum; *c; c++) {
        assert_in_range(counts[(unsigned char)*c], 320, 680);
    }
    free(out);
}

/* a is a UUID's text: 36 characters, lower-case hex in 8-4-4-4-12 groups, the given version
 * digit and the RFC variant. */
static void assert_uuid_shape(const char *a, char version)
{
    assert_int_equal(strlen(a), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    assert_int_equal(a[14], version);
    assert_non_null(strchr("89ab", a[19]));
}

/* Milliseconds of the Unix time a v7 id carries (its first 12 hex digits). */
static uint64_t uuid7_ms(const char *id)
{
    char hex[13];
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    return strtoull(hex, NULL, 16);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A v7 id: the v4 layout with version 7, the time it was made, distinct ids within one
 * millisecond, and ids made later sorting later. */
static void test_rand_uuid7(void **state)
{
    (void)state;
    char ids[200][37];
    uint64_t before = now_ms();
    for (int k = 0; k < 200; k++)
        rand_uuid7(ids[k]);
    uint64_t after = now_ms();
    for (int k = 0; k < 200; k++) {
        const char *a = ids[k];
        assert_uuid_shape(a, '7');
        assert_in_range(uuid7_ms(a), before, after);
        for (int j = 0; j < k; j++)
            assert_string_not_equal(ids[j], a);
    }
    struct timespec two_ms = {0, 2000000};
    nanosleep(&two_ms, NULL);
    char later[37];
    rand_uuid7(later);
    for (int k = 0; k < 200; k++)
        assert_true(strcmp(ids[k], later) < 0);
}

static void test_rand_uuid_v4_shape(void **state)
{
    char a[37], b[37];
    rand_uuid(a);
    rand_uuid(b);
    assert_string_not_equal(a, b);
    for (int k = 0; k < 100; k++) {
        rand_uuid(a);
        assert_uuid_shape(a, '4');
    }
}

static void test_rand_password_classes(void **state)
{
    size_t lengths[] = {12, 13, 16, 32, 64};
    char out[65];
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        for (int k = 0; k < 200; k++) {
            rand_password(out, lengths[l]);
            assert_int_equal(strlen(out), lengths[l]);
            int upper = 0, lower = 0, digit = 0, symbol = 0;
            for (const char *p = out; *p; p++) {
                if (*p >= 'A' && *p <= 'Z')
                    upper++;
                else if (*p >= 'a' && *p <= 'z')
                    lower++;
                else if (*p >= '0' && *p <= '9')
                    digit++;
                else {
                    /* Printable ASCII without quotes, backslash or blanks. */
                    assert_in_range((unsigned char)*p, 0x21, 0x7e);
                    assert_null(strchr("\"'\\`", *p));
                    symbol++;
                }
            }
            assert_true(upper && lower && digit && symbol);
        }
    }
}

/* Doubling per attempt from first_ms, capped at max_ms, with at most 20 % jitter on top. */
static void test_rand_backoff(void **state)
{
    (void)state;
    for (int k = 0; k < 200; k++) {
        long a1 = rand_backoff_ms(1000, 600000, 1), a3 = rand_backoff_ms(1000, 600000, 3);
        long big = rand_backoff_ms(1000, 600000, 40);
        assert_true(a1 >= 1000 && a1 <= 1200);
        assert_true(a3 >= 4000 && a3 <= 4800);
        assert_true(big >= 600000 && big <= 720000);
    }
    assert_int_equal(rand_backoff_ms(10, 5, 1) >= 5, 1); /* first above the cap: the cap */
    assert_true(rand_backoff_ms(10, 5, 1) <= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rand_bytes_fills),
        cmocka_unit_test(test_rand_alnum_alphabet_and_length),
        cmocka_unit_test(test_rand_alnum_uniform),
        cmocka_unit_test(test_rand_uuid_v4_shape),
        cmocka_unit_test(test_rand_uuid7),
        cmocka_unit_test(test_rand_password_classes),
        cmocka_unit_test(test_rand_backoff),
    };
    return cmocka_run_group_tests_name("randutil", tests, NULL, NULL);
}
