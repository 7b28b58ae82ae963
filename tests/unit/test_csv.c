/* csv: RFC 4180 quoting, formula neutralisation of text cells, plain decimals left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "csv.h"

typedef struct {
    char data[512];
    size_t len;
} sink_t;

static void sink_write(void *arg, const char *data, size_t len)
{
    sink_t *s = arg;
    assert_true(s->len + len < sizeof s->data);
    memcpy(s->data + s->len, data, len);
    s->len += len;
    s->data[s->len] = '\0';
}

/* The row made of fields (text unless numbers says which are numbers). */
static const char *row(sink_t *s, const char *const *fields, size_t n, const char *numbers)
{
    s->len = 0;
    s->data[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        bool last = i + 1 == n;
        if (numbers && numbers[i] == 'n')
            csv_number(sink_write, s, fields[i], last);
        else
            csv_text(sink_write, s, fields[i], last);
    }
    return s->data;
}

static void test_plain_fields_unquoted(void **state)
{
    sink_t s;
    const char *f[] = {"abc", "12", "", NULL, "a b"};
    assert_string_equal(row(&s, f, 5, NULL), "abc,12,,,a b\r\n");
}

static void test_rfc4180_quoting(void **state)
{
    sink_t s;
    const char *f[] = {"a,b", "say \"hi\"", "line1\nline2", "cr\rhere", "\"", "é,ü"};
    assert_string_equal(
        row(&s, f, 6, NULL),
        "\"a,b\",\"say \"\"hi\"\"\",\"line1\nline2\",\"cr\rhere\",\"\"\"\",\"é,ü\"\r\n");
}

static void test_formula_cells_neutralised(void **state)
{
    sink_t s;
    const char *f[] = {"=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx"};
    assert_string_equal(row(&s, f, 6, NULL),
                        "\"'=1+1\",\"'+SUM(A1)\",\"'-2+3\",\"'@cmd\",\"'\tx\",\"'\rx\"\r\n");
    /* Quotes inside a neutralised cell are still doubled. */
    const char *g[] = {"=HYPERLINK(\"http://x\")"};
    assert_string_equal(row(&s, g, 1, NULL), "\"'=HYPERLINK(\"\"http://x\"\")\"\r\n");
    /* A text cell that happens to look like a negative number is text: neutralised too. */
    const char *h[] = {"-5"};
    assert_string_equal(row(&s, h, 1, NULL), "\"'-5\"\r\n");
    /* Only the first character matters. */
    const char *k[] = {"a=1", "x@y"};
    assert_string_equal(row(&s, k, 2, NULL), "a=1,x@y\r\n");
}

static void test_number_cells(void **state)
{
    sink_t s;
    const char *f[] = {"-12.5000", "0", "3.25", NULL, "-1+2", "=1", "1e5", "1.", ".5", "--1"};
    assert_string_equal(row(&s, f, 10, "nnnnnnnnnn"),
                        "-12.5000,0,3.25,,\"'-1+2\",\"'=1\",1e5,1.,.5,\"'--1\"\r\n");
}

static void test_predicates(void **state)
{
    assert_true(csv_is_decimal("-0.0001"));
    assert_true(csv_is_decimal("42"));
    assert_false(csv_is_decimal(""));
    assert_false(csv_is_decimal("-"));
    assert_false(csv_is_decimal("1.2.3"));
    assert_false(csv_is_decimal(NULL));
    assert_true(csv_is_formula("=x"));
    assert_true(csv_is_formula("@"));
    assert_false(csv_is_formula(""));
    assert_false(csv_is_formula(NULL));
    assert_false(csv_is_formula("x="));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_fields_unquoted),
        cmocka_unit_test(test_rfc4180_quoting),
        cmocka_unit_test(test_formula_cells_neutralised),
        cmocka_unit_test(test_number_cells),
        cmocka_unit_test(test_predicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
