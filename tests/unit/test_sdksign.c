/* sdksign: known answers computed with an independent script of the API gateway SDK rules,
 * sign/verify round trips, and tampering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sdksign.h"

static const char ak[] = "AKTESTAKTESTAKTEST01";
static const char sk[] = "secret-sk-0123456789";

static sdksign_request_t query_order(void)
{
    return (sdksign_request_t){
        .method = "GET",
        .host = "mkt.example.com:9443",
        .path = "/api/mkp-openapi-public/global/v1/order/query",
        .query = "orderLineId=CS1906666666ABCDE-000001&orderId=CS1906666666ABCDE",
        .sdk_date = "20240102T030405Z",
        .body = NULL,
        .body_len = 0,
    };
}

static void test_known_answers(void **state)
{
    sdksign_request_t r = query_order();
    char *auth = sdksign_authorization(ak, sk, &r);
    assert_string_equal(
        auth, "SDK-HMAC-SHA256 Access=AKTESTAKTESTAKTEST01, "
              "SignedHeaders=host;x-sdk-date, "
              "Signature=c69132ddefdcbd04a0fae9585e6a9c584dba19fed843fccc0a166ffcbace2eae");
    free(auth);

    /* Path segments and query are decoded then RFC 3986-encoded; pairs sorted by name then
     * value; a bare name gets "="; an empty name is dropped. */
    r.path = "/a b/c%2Fd";
    r.query = "z=1&a=x y&a=1&c=%2F&d&=skip&e=%E4%B8%AD~*+";
    auth = sdksign_authorization(ak, sk, &r);
    assert_non_null(
        strstr(auth, "Signature=8344b00c09088968d7a7b55ce34cbc514f0eeff1f34dde1e3b2599f2c557de6d"));
    free(auth);
}

static void test_round_trip_and_equivalent_forms(void **state)
{
    sdksign_request_t r = query_order();
    char *auth = sdksign_authorization(ak, sk, &r);
    assert_true(sdksign_verify(auth, ak, sk, &r));
    /* Parameter order, encoding of unreserved chars and the trailing slash do not matter. */
    r.query = "orderId=CS1906666666ABCDE&orderLineId=CS1906666666ABCDE-000001";
    assert_true(sdksign_verify(auth, ak, sk, &r));
    r.query = "orderId=%43S1906666666ABCDE&orderLineId=CS1906666666ABCDE-000001";
    assert_true(sdksign_verify(auth, ak, sk, &r));
    r.path = "/api/mkp-openapi-public/global/v1/order/query/";
    assert_true(sdksign_verify(auth, ak, sk, &r));
    free(auth);
}

static void test_with_body(void **state)
{
    sdksign_request_t r = query_order();
    r.method = "POST";
    r.path = "/api/mkp-openapi-public/global/v1/isv/usage-data";
    r.query = "";
    r.body = "{\"usage_records\":[]}";
    r.body_len = strlen(r.body);
    char *auth = sdksign_authorization(ak, sk, &r);
    assert_true(sdksign_verify(auth, ak, sk, &r));
    r.body = "{\"usage_records\":[1]}";
    r.body_len = strlen(r.body);
    assert_false(sdksign_verify(auth, ak, sk, &r));
    free(auth);
}

static void test_tampering_fails(void **state)
{
    sdksign_request_t r = query_order();
    char *auth = sdksign_authorization(ak, sk, &r);
    assert_false(sdksign_verify(auth, ak, "secret-sk-0123456780", &r));
    assert_false(sdksign_verify(auth, "AKOTHER", sk, &r));

    /* r with one signed part changed. */
    sdksign_request_t t[6];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        t[i] = r;
    t[0].query = "orderLineId=CS1906666666ABCDE-000002&orderId=CS1906666666ABCDE";
    t[1].query = "orderLineId=CS1906666666ABCDE-000001&orderId=CS1906666666ABCDE&extra=1";
    t[2].host = "evil.example.com:9443";
    t[3].sdk_date = "20240102T030406Z";
    t[4].method = "POST";
    t[5].path = "/api/mkp-openapi-public/global/v1/order/querx";
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_false(sdksign_verify(auth, ak, sk, &t[i]));
    free(auth);
}

static void test_signature_case_insensitive(void **state)
{
    sdksign_request_t r = query_order();
    char *auth = sdksign_authorization(ak, sk, &r);
    char *sig = strstr(auth, "Signature=") + 10;
    for (char *p = sig; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_true(sdksign_verify(auth, ak, sk, &r));
    free(auth);
}

static void test_malformed_headers(void **state)
{
    sdksign_request_t r = query_order();
    char *auth = sdksign_authorization(ak, sk, &r);
    const char *sig = strstr(auth, "Signature=") + 10;
    char buf[512];
    const char *formats[] = {
        "SDK-HMAC-SHA1 Access=%s, SignedHeaders=host;x-sdk-date, Signature=%s",
        "Access=%s, SignedHeaders=host;x-sdk-date, Signature=%s",
        "SDK-HMAC-SHA256 Access=%s, SignedHeaders=content-type;host;x-sdk-date, Signature=%s",
        "SDK-HMAC-SHA256 Access=%s, SignedHeaders=x-sdk-date;host, Signature=%s",
        "SDK-HMAC-SHA256 Access=%s, SignedHeaders=host;host, Signature=%s",
        "SDK-HMAC-SHA256 Access=%s, SignedHeaders=, Signature=%s",
        "SDK-HMAC-SHA256 Access=%s, Signature=%s",
        "SDK-HMAC-SHA256 Access=%s, SignedHeaders=host;x-sdk-date, Sig=%s",
    };
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        snprintf(buf, sizeof buf, formats[i], ak, sig);
        if (sdksign_verify(buf, ak, sk, &r))
            fail_msg("accepted: %s", buf);
    }
    snprintf(buf, sizeof buf, "SDK-HMAC-SHA256 SignedHeaders=host;x-sdk-date, Signature=%s", sig);
    assert_false(sdksign_verify(buf, ak, sk, &r));
    assert_false(sdksign_verify("SDK-HMAC-SHA256 Access=x, SignedHeaders=host;x-sdk-date, "
                                "Signature=",
                                "x", sk, &r));
    assert_false(sdksign_verify("", ak, sk, &r));
    assert_false(sdksign_verify(NULL, ak, sk, &r));
    /* Field order and extra blanks around fields are tolerated. */
    snprintf(buf, sizeof buf,
             "SDK-HMAC-SHA256 Signature=%s,  Access=%s ,SignedHeaders=host;x-sdk-date", sig, ak);
    assert_true(sdksign_verify(buf, ak, sk, &r));
    free(auth);
}

static void test_date_now_shape(void **state)
{
    char d[17];
    sdksign_date_now(d);
    assert_int_equal(strlen(d), 16);
    for (int i = 0; i < 16; i++) {
        if (i == 8)
            assert_int_equal(d[i], 'T');
        else if (i == 15)
            assert_int_equal(d[i], 'Z');
        else
            assert_in_range(d[i], '0', '9');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_round_trip_and_equivalent_forms),
        cmocka_unit_test(test_with_body),
        cmocka_unit_test(test_tampering_fails),
        cmocka_unit_test(test_signature_case_insensitive),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_date_now_shape),
    };
    return cmocka_run_group_tests_name("sdksign", tests, NULL, NULL);
}
