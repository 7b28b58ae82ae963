/* Unit tests (no database, no suite) of KOOISV_BILLING_DAILY_PRODUCTS as billing reads it
 * (ledger_daily_products): the PostgreSQL array the ledger is given, and the refusal of each
 * kind of malformed entry, naming it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ledger.h"

static void expect_list(const char *list, const char *want)
{
    char why[256] = "";
    char *got = ledger_daily_products(list, why, sizeof why);
    if (!got)
        fail_msg("\"%s\" refused: %s", list, why);
    assert_string_equal(got, want);
    free(got);
}

static void expect_refused(const char *list, const char *says)
{
    char why[256] = "";
    char *got = ledger_daily_products(list, why, sizeof why);
    if (got)
        fail_msg("\"%s\" accepted as %s", list, got);
    if (!strstr(why, says))
        fail_msg("\"%s\": \"%s\" does not say \"%s\"", list, why, says);
}

static void test_lists(void **state)
{
    (void)state;
    expect_list(NULL, "{}");
    expect_list("", "{}");
    expect_list("  \t ", "{}");
    expect_list("OFFI000000000000000003", "{\"OFFI000000000000000003\"}");
    expect_list("A1,B2", "{\"A1\",\"B2\"}");
    expect_list(" A1 , B2\tC.3\n D_4 ,E-5 ", "{\"A1\",\"B2\",\"C.3\",\"D_4\",\"E-5\"}");
    expect_list("A1,A1", "{\"A1\",\"A1\"}"); /* a repeat is harmless */
    char longest[LEDGER_PRODUCT_ID_MAX + 1];
    memset(longest, 'x', LEDGER_PRODUCT_ID_MAX);
    longest[LEDGER_PRODUCT_ID_MAX] = '\0';
    char want[LEDGER_PRODUCT_ID_MAX + 8];
    snprintf(want, sizeof want, "{\"%s\"}", longest);
    expect_list(longest, want);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_refused("A1,,B2", "entry 2 is empty");
    expect_refused("A1, ,B2", "entry 2 is empty");
    expect_refused(",A1", "entry 1 is empty");
    expect_refused("A1,", "entry 2 is empty");
    expect_refused("A1 , ", "entry 2 is empty");
    expect_refused("A1;B2", "entry 1 (\"A1;B2\") is not a product id");
    expect_refused("A1,B\"2", "entry 2 (\"B\"2\") is not a product id");
    expect_refused("A1 {B2}", "entry 2 (\"{B2}\")");
    expect_refused("A1 B/2", "entry 2 (\"B/2\")");
    expect_refused("caf\xc3\xa9", "entry 1");
    char toolong[LEDGER_PRODUCT_ID_MAX + 2];
    memset(toolong, 'x', LEDGER_PRODUCT_ID_MAX + 1);
    toolong[LEDGER_PRODUCT_ID_MAX + 1] = '\0';
    expect_refused(toolong, "entry 1");
    expect_refused(toolong, "1..64 of A-Z a-z 0-9 _ . -");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
