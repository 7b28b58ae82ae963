/* config: env-file lines as a shell sources them (the runner's kooisv.env, kooisvctl
 * --env-file, the tests' suite.env). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config.h"

/* Parse a copy of line; returns the kind and, for 1, copies name and value out. */
static int parse(const char *line, char *name, char *value)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line);
    char *n, *v;
    int kind = config_env_line(buf, &n, &v);
    if (kind == 1) {
        strcpy(name, n);
        strcpy(value, v);
    }
    return kind;
}

static void test_env_line_values(void **state)
{
    char n[512], v[512];
    assert_int_equal(parse("KOOISV_URL=https://127.0.0.1:8443/produce\n", n, v), 1);
    assert_string_equal(n, "KOOISV_URL");
    assert_string_equal(v, "https://127.0.0.1:8443/produce");
    /* What the runner writes for a libpq connection string: spaces and quotes survive. */
    assert_int_equal(
        parse("KOOISV_PG_SUPER_DSN='host='\\''/tmp/a b'\\'' port=5 user=postgres password=x1'",
              n, v),
        1);
    assert_string_equal(v, "host='/tmp/a b' port=5 user=postgres password=x1");
    assert_int_equal(parse("export  K=\"a \\\"b\\\" \\$c \\\\ 'd'\"", n, v), 1);
    assert_string_equal(n, "K");
    assert_string_equal(v, "a \"b\" $c \\ 'd'");
    assert_int_equal(parse("  EMPTY=  ", n, v), 1);
    assert_string_equal(v, "");
    assert_int_equal(parse("K=a#b\r\n", n, v), 1);
    assert_string_equal(v, "a#b");
}

static void test_env_line_blank_and_bad(void **state)
{
    char n[512], v[512];
    assert_int_equal(parse("", n, v), 0);
    assert_int_equal(parse("   \n", n, v), 0);
    assert_int_equal(parse("# KOOISV_URL=x", n, v), 0);
    /* What the shell would split or refuse is refused, not half-read. */
    assert_int_equal(parse("K=host=/tmp port=5", n, v), -1);
    assert_int_equal(parse("K='unterminated", n, v), -1);
    assert_int_equal(parse("K=\"unterminated", n, v), -1);
    assert_int_equal(parse("=value", n, v), -1);
    assert_int_equal(parse("no equals sign", n, v), -1);
    assert_int_equal(parse("BAD-NAME=x", n, v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_line_values),
        cmocka_unit_test(test_env_line_blank_and_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
