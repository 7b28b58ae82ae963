/* exportfmt: the export file's layout without a database: CSV header and rows (numbers as
 * they are, text neutralised, times as ISO-8601), JSON rows (escapes, numbers, null), chunking
 * by drain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "exportfmt.h"

static char *text(exportfmt_t *f)
{
    size_t len;
    const char *d = exportfmt_data(f, &len);
    char *s = malloc(len + 1);
    memcpy(s, d, len);
    s[len] = '\0';
    return s;
}

/* A detail row: usage record with the given client record id and quantity. */
static void usage_row(const char *values[18], const char *record, const char *quantity)
{
    static const char *const base[18] = {"usage",
                                         "7",
                                         "2026-10-10 10:05:00+00",
                                         "T1",
                                         "P1",
                                         "I1",
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         "2026-10-10 10:05:00.25+00",
                                         "2026-10-10 10:06:00+00",
                                         "2026-10-10 10:00:00+00",
                                         NULL,
                                         NULL,
                                         NULL};
    memcpy(values, base, sizeof base);
    values[11] = quantity;
    values[15] = record;
}

static void test_kinds_and_formats_parse(void **state)
{
    export_kind_t k;
    export_format_t f;
    assert_true(exportfmt_kind_parse("bill", &k) && k == EXPORT_BILL);
    assert_true(exportfmt_kind_parse("detail", &k) && k == EXPORT_DETAIL);
    assert_false(exportfmt_kind_parse("Bill", &k));
    assert_false(exportfmt_kind_parse("", &k));
    assert_false(exportfmt_kind_parse(NULL, &k));
    assert_true(exportfmt_format_parse("json", &f) && f == EXPORT_JSON);
    assert_false(exportfmt_format_parse("xlsx", &f));
    size_t n;
    assert_string_equal(exportfmt_columns(EXPORT_DETAIL, &n)[16].name, "push_status");
    assert_int_equal(n, 18);
}

static void test_csv_rows(void **state)
{
    exportfmt_t *f = exportfmt_new(EXPORT_DETAIL, EXPORT_CSV);
    const char *v[18];
    usage_row(v, "=cmd|' /C calc'!A0", "-1.5000");
    exportfmt_row(f, v);
    exportfmt_end(f);
    char *s = text(f);
    assert_string_equal(
        s, "record_type,record_id,occurred_at,tenant_id,product_id,instance_id,kind,order_id,"
           "amount,period_type,period_number,quantity,used_begin,used_end,bucket_start,"
           "client_record_id,push_status,metering_sn\r\n"
           "usage,7,2026-10-10T10:05:00Z,T1,P1,I1,,,,,,-1.5000,2026-10-10T10:05:00.25Z,"
           "2026-10-10T10:06:00Z,2026-10-10T10:00:00Z,\"'=cmd|' /C calc'!A0\",,\r\n");
    assert_int_equal(exportfmt_rows(f), 1);
    free(s);
    exportfmt_destroy(&f);
    assert_null(f);
}

static void test_json_rows_parse_back(void **state)
{
    exportfmt_t *f = exportfmt_new(EXPORT_DETAIL, EXPORT_JSON);
    const char *v[18];
    usage_row(v, "quote\" back\\ nl\n tab\t bell\x07 é", "3.2500");
    exportfmt_row(f, v);
    usage_row(v, "=x", "-2");
    exportfmt_row(f, v);
    exportfmt_end(f);
    char *s = text(f);
    json_error_t err;
    json_t *rows = json_loads(s, 0, &err);
    if (!rows)
        fail_msg("%s: %s", err.text, s);
    assert_int_equal(json_array_size(rows), 2);
    json_t *r0 = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(r0, "client_record_id")),
                        "quote\" back\\ nl\n tab\t bell\x07 é");
    assert_true(json_is_real(json_object_get(r0, "quantity")));
    assert_true(json_real_value(json_object_get(r0, "quantity")) == 3.25);
    assert_true(json_is_integer(json_object_get(r0, "record_id")));
    assert_true(json_is_null(json_object_get(r0, "metering_sn")));
    assert_string_equal(json_string_value(json_object_get(r0, "used_begin")),
                        "2026-10-10T10:05:00.25Z");
    /* JSON is not neutralised. */
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(rows, 1), "client_record_id")), "=x");
    json_decref(rows);
    free(s);
    exportfmt_destroy(&f);
}

static void test_empty_files(void **state)
{
    exportfmt_t *f = exportfmt_new(EXPORT_BILL, EXPORT_JSON);
    exportfmt_end(f);
    char *s = text(f);
    assert_string_equal(s, "[\n]\n");
    free(s);
    exportfmt_destroy(&f);
    f = exportfmt_new(EXPORT_BILL, EXPORT_CSV);
    exportfmt_end(f);
    s = text(f);
    assert_non_null(strstr(s, "line,tenant_id,"));
    assert_string_equal(strchr(s, '\n') + 1, "");
    free(s);
    exportfmt_destroy(&f);
}

static void test_drain_chunks(void **state)
{
    exportfmt_t *f = exportfmt_new(EXPORT_DETAIL, EXPORT_CSV);
    size_t header, len;
    exportfmt_data(f, &header);
    exportfmt_drain(f);
    exportfmt_data(f, &len);
    assert_int_equal(len, 0);
    const char *v[18];
    usage_row(v, "r", "1");
    for (int i = 0; i < 10000; i++)
        exportfmt_row(f, v);
    exportfmt_data(f, &len);
    assert_true(len > 10000 * 100);
    exportfmt_drain(f);
    exportfmt_row(f, v);
    exportfmt_data(f, &len);
    assert_true(len > 100 && len < 300);
    assert_int_equal(exportfmt_rows(f), 10001);
    exportfmt_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_and_formats_parse),
        cmocka_unit_test(test_csv_rows),
        cmocka_unit_test(test_json_rows_parse_back),
        cmocka_unit_test(test_empty_files),
        cmocka_unit_test(test_drain_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
