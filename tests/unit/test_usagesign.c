/* usagesign: the usage-push and V1 authToken vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "usagesign.h"
#include "vectors.h"

static const char *access_key(void)
{
    return vectors_str(vectors_get(), "accessKey");
}

static void test_usage_push_vectors(void **state)
{
    json_t *arr = vectors_section("usagePush");
    size_t i;
    json_t *vec;
    json_array_foreach(arr, i, vec)
    {
        char *sig = usagesign_signature(access_key(), vectors_str(vec, "ts"),
                                        vectors_str(vec, "nonce"), vectors_str(vec, "body"));
        assert_string_equal(sig, vectors_str(vec, "signature"));
        free(sig);
        /* Every input is bound. */
        sig = usagesign_signature(access_key(), "1660036200001", vectors_str(vec, "nonce"),
                                  vectors_str(vec, "body"));
        assert_string_not_equal(sig, vectors_str(vec, "signature"));
        free(sig);
    }
}

static void test_v1_token_vectors(void **state)
{
    json_t *arr = vectors_section("v1AuthToken");
    size_t i;
    json_t *vec;
    json_array_foreach(arr, i, vec)
    {
        json_t *params = json_object_get(vec, "params");
        assert_true(json_is_object(params));
        char *sts = NULL;
        char *token = usagesign_v1_token(access_key(), params, &sts);
        assert_non_null(token);
        assert_string_equal(sts, vectors_str(vec, "stringToSign"));
        assert_string_equal(token, vectors_str(vec, "authToken"));
        free(sts);
        free(token);

        /* Verifying a request means passing all of its parameters: authToken is not signed. */
        json_t *with_token = json_deep_copy(params);
        json_object_set_new(with_token, "authToken", json_string(vectors_str(vec, "authToken")));
        token = usagesign_v1_token(access_key(), with_token, NULL);
        assert_string_equal(token, vectors_str(vec, "authToken"));
        free(token);

        /* The key is seller key + timeStamp: another timeStamp changes the token twice over. */
        json_object_set_new(with_token, "timeStamp", json_string("20200101010101011"));
        token = usagesign_v1_token(access_key(), with_token, NULL);
        assert_string_not_equal(token, vectors_str(vec, "authToken"));
        free(token);
        json_decref(with_token);
    }
}

static void test_v1_token_edge_cases(void **state)
{
    json_t *p = json_pack("{s:s, s:s, s:i, s:n}", "b", "2", "a", "", "c", 3, "d");
    char *sts = NULL;
    char *token = usagesign_v1_token("k", p, &sts);
    assert_non_null(token);
    /* Sorted, empty value kept, number printed, null member left out. */
    assert_string_equal(sts, "a=&b=2&c=3");
    free(sts);
    free(token);
    json_decref(p);

    json_t *nested = json_pack("{s:{s:s}}", "a", "b", "c");
    assert_null(usagesign_v1_token("k", nested, NULL));
    json_decref(nested);
    json_t *arr = json_array();
    assert_null(usagesign_v1_token("k", arr, NULL));
    json_decref(arr);

    json_t *empty = json_object();
    token = usagesign_v1_token("k", empty, &sts);
    assert_non_null(token);
    assert_string_equal(sts, "");
    free(sts);
    free(token);
    json_decref(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_push_vectors),
        cmocka_unit_test(test_v1_token_vectors),
        cmocka_unit_test(test_v1_token_edge_cases),
    };
    return cmocka_run_group_tests_name("usagesign", tests, NULL, NULL);
}
