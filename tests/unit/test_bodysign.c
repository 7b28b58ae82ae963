/* bodysign: the Body-Sign header vectors and what must not verify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bodysign.h"
#include "vectors.h"

static void test_vectors(void **state)
{
    const char *key = vectors_str(vectors_get(), "accessKey");
    json_t *arr = vectors_section("bodySign");
    size_t i;
    json_t *vec;
    json_array_foreach(arr, i, vec)
    {
        const char *body = vectors_str(vec, "body");
        const char *expected = vectors_str(vec, "header");
        char *header = bodysign_header(key, body, strlen(body));
        assert_string_equal(header, expected);
        free(header);
        assert_true(bodysign_verify(key, body, strlen(body), expected));
    }
}

static void test_rejects(void **state)
{
    const char *key = "seller-key";
    const char *body = "{\"resultCode\":\"000000\",\"resultMsg\":\"success.\"}";
    char *header = bodysign_header(key, body, strlen(body));
    assert_true(bodysign_verify(key, body, strlen(body), header));
    /* Any change to the body, the key or the header's exact text fails. */
    assert_false(bodysign_verify(key, body, strlen(body) - 1, header));
    assert_false(bodysign_verify("seller-kez", body, strlen(body), header));
    char *spaced = malloc(strlen(header) + 2);
    strcpy(spaced, header);
    char *comma = strchr(spaced, ',');
    memmove(comma + 2, comma + 1, strlen(comma + 1) + 1);
    comma[1] = ' ';
    assert_false(bodysign_verify(key, body, strlen(body), spaced));
    free(spaced);
    assert_false(bodysign_verify(key, body, strlen(body), ""));
    assert_false(bodysign_verify(key, body, strlen(body), NULL));
    free(header);
}

static void test_body_with_nul_and_empty(void **state)
{
    /* The signature covers the exact bytes, including an embedded NUL. */
    char *a = bodysign_header("k", "ab\0c", 4);
    char *b = bodysign_header("k", "ab", 2);
    assert_string_not_equal(a, b);
    assert_true(bodysign_verify("k", "ab\0c", 4, a));
    free(a);
    free(b);
    char *e = bodysign_header("k", "", 0);
    assert_int_equal(strncmp(e, "sign_type=\"HMAC-SHA256\", signature=\"", 36), 0);
    assert_true(bodysign_verify("k", "", 0, e));
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_body_with_nul_and_empty),
    };
    return cmocka_run_group_tests_name("bodysign", tests, NULL, NULL);
}
