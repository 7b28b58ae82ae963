/* Unit tests of services/tenant/orgtree.c: parent links, duplicates, cycles, the nested JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "orgtree.h"
#include "xmalloc.h"

static char *tree_text(const orgtree_node_t *nodes, size_t n)
{
    orgtree_t *t = orgtree_new(nodes, n);
    json_t *j = orgtree_json(t);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    orgtree_destroy(&t);
    assert_null(t);
    return s;
}

static void test_nested_any_order(void **state)
{
    const orgtree_node_t nodes[] = {
        {"c", "C", "b"}, {"b", "B", "a"}, {"a", "A", ""}, {"d", "D", "a"}, {"x", "X", "gone"}};
    orgtree_t *t = orgtree_new(nodes, 5);
    assert_null(orgtree_duplicate(t));
    assert_null(orgtree_cycle(t));
    orgtree_destroy(&t);
    char *s = tree_text(nodes, 5);
    assert_string_equal(
        s, "[{\"orgCode\":\"a\",\"orgName\":\"A\",\"parentCode\":\"\",\"children\":["
           "{\"orgCode\":\"b\",\"orgName\":\"B\",\"parentCode\":\"a\",\"children\":["
           "{\"orgCode\":\"c\",\"orgName\":\"C\",\"parentCode\":\"b\",\"children\":[]}]},"
           "{\"orgCode\":\"d\",\"orgName\":\"D\",\"parentCode\":\"a\",\"children\":[]}]},"
           "{\"orgCode\":\"x\",\"orgName\":\"X\",\"parentCode\":\"gone\",\"children\":[],"
           "\"orphan\":true}]");
    free(s);
}

static void test_duplicate_and_cycles(void **state)
{
    const orgtree_node_t dup[] = {{"a", "A", ""}, {"b", "B", "a"}, {"a", "A2", ""}};
    orgtree_t *t = orgtree_new(dup, 3);
    assert_string_equal(orgtree_duplicate(t), "a");
    orgtree_destroy(&t);

    const orgtree_node_t cyc[] = {
        {"r", "R", ""}, {"x", "X", "z"}, {"y", "Y", "x"}, {"z", "Z", "y"}, {"w", "W", "x"}};
    t = orgtree_new(cyc, 5);
    assert_non_null(orgtree_cycle(t));
    json_t *j = orgtree_json(t); /* shown, not lost: cycle members are flagged roots */
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(strstr(s, "\"cycle\":true"));
    assert_non_null(strstr(s, "\"orgCode\":\"w\""));
    free(s);
    json_decref(j);
    orgtree_destroy(&t);

    const orgtree_node_t self[] = {{"s", "S", "s"}};
    t = orgtree_new(self, 1);
    assert_string_equal(orgtree_cycle(t), "s");
    orgtree_destroy(&t);

    t = orgtree_new(NULL, 0);
    assert_null(orgtree_cycle(t));
    j = orgtree_json(t);
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    orgtree_destroy(&t);
}

/* A 10000-deep chain: linear work, no recursion. */
static void test_deep_chain(void **state)
{
    enum { N = 10000 };
    orgtree_node_t *nodes = xcalloc(N, sizeof *nodes);
    char(*codes)[8] = xcalloc(N, sizeof *codes);
    for (int i = 0; i < N; i++)
        snprintf(codes[i], sizeof codes[i], "n%05d", i);
    for (int i = 0; i < N; i++)
        nodes[i] = (orgtree_node_t){codes[i], "N", i ? codes[i - 1] : ""};
    orgtree_t *t = orgtree_new(nodes, N);
    assert_null(orgtree_cycle(t));
    json_t *j = orgtree_json(t);
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    orgtree_destroy(&t);
    nodes[0].parent = codes[N - 1]; /* close the loop */
    t = orgtree_new(nodes, N);
    assert_non_null(orgtree_cycle(t));
    orgtree_destroy(&t);
    free(codes);
    free(nodes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_any_order),
        cmocka_unit_test(test_duplicate_and_cycles),
        cmocka_unit_test(test_deep_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
