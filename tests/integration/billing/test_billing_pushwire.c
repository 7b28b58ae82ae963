/* Unit tests (no database, no suite) of the usage push's wire (pushwire: body, signed headers,
 * reading the marketplace's answers) and of billing's clock (billclock: the test offset). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "billclock.h"
#include "canonjson.h"
#include "pushwire.h"
#include "timeutil.h"
#include "usagesign.h"

static void test_time_format(void **state)
{
    (void)state;
    char out[17];
    assert_string_equal(pushwire_time(0, out), "19700101T000000Z");
    /* 2026-12-06T14:00:00.999Z: milliseconds are dropped, never rounded up */
    assert_string_equal(pushwire_time(1796565600999LL, out), "20261206T140000Z");
    assert_string_equal(pushwire_time(1796569199000LL, out), "20261206T145959Z");
    /* leap day */
    assert_string_equal(pushwire_time(1709164800000LL, out), "20240229T000000Z");
}

static void test_body_is_canonical(void **state)
{
    (void)state;
    pushwire_record_t recs[2] = {
        {.metering_sn = "sn1",
         .instance_id = "inst-1",
         .usage_value = "12.5",
         .begin_ms = 1796565600000LL,
         .end_ms = 1796569200000LL,
         .record_ms = 1796569500000LL},
        {.metering_sn = "sn2",
         .instance_id = "inst-2",
         .usage_value = "0.0001",
         .begin_ms = 1796565601000LL,
         .end_ms = 1796569200000LL,
         .record_ms = 1796569500000LL},
    };
    char *body = pushwire_body(recs, 2);
    assert_string_equal(body,
                        "{\"usage_records\":[{\"begin_time\":\"20261206T140000Z\",\"end_time\":"
                        "\"20261206T150000Z\",\"instance_id\":\"inst-1\",\"metering_sn\":\"sn1\","
                        "\"record_time\":\"20261206T150500Z\",\"usage_value\":\"12.5\"},"
                        "{\"begin_time\":\"20261206T140001Z\",\"end_time\":\"20261206T150000Z\","
                        "\"instance_id\":\"inst-2\",\"metering_sn\":\"sn2\",\"record_time\":"
                        "\"20261206T150500Z\",\"usage_value\":\"0.0001\"}]}");
    /* what is sent is its own canonical form: the signature holds either way */
    json_t *doc = canonjson_parse(body, strlen(body), NULL);
    char *again = canonjson_dump(doc);
    assert_string_equal(again, body);
    free(again);
    json_decref(doc);
    free(body);
}

static const char *header(char **h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; h[i]; i++)
        if (strncmp(h[i], name, n) == 0 && h[i][n] == ':')
            return h[i] + n + 2;
    return NULL;
}

static void test_headers_sign_the_body(void **state)
{
    (void)state;
    const char *key = "seller-key-0123456789abcdef";
    const char *body = "{\"usage_records\":[]}";
    char **h = pushwire_headers(key, body, 1796565600123LL);
    assert_string_equal(header(h, "ts"), "1796565600123");
    assert_string_equal(header(h, "Content-Type"), "application/json");
    const char *nonce = header(h, "nonce");
    assert_non_null(nonce);
    assert_int_equal(strlen(nonce), 36);
    char *want = usagesign_signature(key, "1796565600123", nonce, body);
    assert_string_equal(header(h, "signature"), want);
    free(want);
    /* a fresh nonce per request */
    char **h2 = pushwire_headers(key, body, 1796565600123LL);
    assert_string_not_equal(header(h2, "nonce"), nonce);
    pushwire_headers_free(h2);
    pushwire_headers_free(h);
    pushwire_headers_free(NULL);
}

static pushwire_answer_t read_answer(int status, const char *body, size_t batch)
{
    pushwire_answer_t a;
    pushwire_read(status, body, body ? strlen(body) : 0, "connection refused", batch, &a);
    return a;
}

static void test_read_answers(void **state)
{
    (void)state;
    pushwire_answer_t a = read_answer(0, NULL, 10);
    assert_int_equal(a.verdict, PUSHWIRE_RETRY);
    assert_string_equal(a.code, "NETWORK");
    assert_string_equal(a.message, "connection refused");

    a = read_answer(200, "{\"error_code\":\"MKT.0000\",\"error_msg\":\"success\"}", 10);
    assert_int_equal(a.verdict, PUSHWIRE_ACCEPTED);

    a = read_answer(200, "{\"error_code\":\"MKT.0250\",\"error_msg\":\"rate limited\"}", 10);
    assert_int_equal(a.verdict, PUSHWIRE_RETRY);
    assert_string_equal(a.code, "MKT.0250");

    a = read_answer(500, "<html>oops</html>", 10);
    assert_int_equal(a.verdict, PUSHWIRE_RETRY);
    assert_string_equal(a.code, "HTTP_500");

    a = read_answer(200, "not json", 10);
    assert_int_equal(a.verdict, PUSHWIRE_RETRY);
    assert_string_equal(a.code, "HTTP_200");

    /* success code with an error status is not a success */
    a = read_answer(503, "{\"error_code\":\"MKT.0000\"}", 10);
    assert_int_equal(a.verdict, PUSHWIRE_RETRY);

    a = read_answer(400,
                    "{\"error_code\":\"MKT.9001\",\"error_msg\":\"usage_records[3].instance_id "
                    "does not exist\"}",
                    5);
    assert_int_equal(a.verdict, PUSHWIRE_REFUSED);
    assert_int_equal(a.index, 3);
    assert_string_equal(a.code, "MKT.9001");
    assert_string_equal(a.message, "usage_records[3].instance_id does not exist");

    /* an index outside the batch, or none: not trusted */
    a = read_answer(400, "{\"error_code\":\"MKT.9002\",\"error_msg\":\"usage_records[7]: x\"}", 2);
    assert_int_equal(a.verdict, PUSHWIRE_REFUSED);
    assert_int_equal(a.index, -1);
    a = read_answer(400, "{\"error_code\":\"MKT.9004\",\"error_msg\":\"too old\"}", 2);
    assert_int_equal(a.verdict, PUSHWIRE_REFUSED);
    assert_int_equal(a.index, -1);
    a = read_answer(400, "{\"error_code\":\"MKT.9002\",\"error_msg\":\"usage_records[x]\"}", 2);
    assert_int_equal(a.index, -1);

    /* a malformed field of one record refuses that record; of the batch, retries */
    a = read_answer(400,
                    "{\"error_code\":\"MKT.0101\",\"error_msg\":\"usage_records[0].end_time\"}", 1);
    assert_int_equal(a.verdict, PUSHWIRE_REFUSED);
    assert_int_equal(a.index, 0);
    a = read_answer(401, "{\"error_code\":\"MKT.0102\",\"error_msg\":\"signature\"}", 3);
    assert_int_equal(a.verdict, PUSHWIRE_RETRY);
    a = read_answer(400, "{\"error_code\":\"MKT.0101\",\"error_msg\":\"bad\"}", 3);
    assert_int_equal(a.verdict, PUSHWIRE_RETRY);

    a = read_answer(400, "{\"error_code\":\"MKT.9003\",\"error_msg\":\"too many\"}", 1000);
    assert_int_equal(a.verdict, PUSHWIRE_SPLIT);
    a = read_answer(400, "{\"error_code\":\"MKT.9003\",\"error_msg\":\"too many\"}", 1);
    assert_int_equal(a.verdict, PUSHWIRE_RETRY);

    /* the marketplace's message is kept without control characters */
    a = read_answer(400, "{\"error_code\":\"MKT.9002\",\"error_msg\":\"a\\nb\\u0001c\"}", 1);
    assert_string_equal(a.message, "a b c");
}

static char offset_path[64];

static void write_offset(const char *text)
{
    FILE *f = fopen(offset_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_clock_offset(void **state)
{
    (void)state;
    snprintf(offset_path, sizeof offset_path, "/tmp/billclock-test-%ld", (long)getpid());
    billclock_init(NULL);
    assert_int_equal(billclock_offset_ms(), 0);
    billclock_init(offset_path); /* missing file: no offset */
    assert_int_equal(billclock_offset_ms(), 0);
    write_offset("3600\n");
    assert_int_equal(billclock_offset_ms(), 3600000);
    int64_t real = time_now_ms();
    int64_t now = billclock_now_ms();
    assert_true(now - real >= 3600000 && now - real < 3605000);
    write_offset("-7200");
    assert_int_equal(billclock_offset_ms(), -7200000);
    write_offset("12abc"); /* bad or half-written: no offset */
    assert_int_equal(billclock_offset_ms(), 0);
    write_offset("");
    assert_int_equal(billclock_offset_ms(), 0);
    write_offset("99999999999999");
    assert_int_equal(billclock_offset_ms(), 0);
    unlink(offset_path);
    billclock_init(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_format),           cmocka_unit_test(test_body_is_canonical),
        cmocka_unit_test(test_headers_sign_the_body), cmocka_unit_test(test_read_answers),
        cmocka_unit_test(test_clock_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
