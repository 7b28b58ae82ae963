/* sigv2: every basic and kit vector, both verification paths, the window edges, and each way a
 * request can be incomplete or wrong. Past timestamps are checked with an injected clock. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "canonjson.h"
#include "cryptoutil.h"
#include "sigv2.h"
#include "vectors.h"

static const char *access_key(void)
{
    return vectors_str(vectors_get(), "accessKey");
}

static char *canonical_of(const char *raw)
{
    json_t *v = canonjson_parse(raw, strlen(raw), NULL);
    assert_non_null(v);
    char *out = canonjson_dump(v);
    json_decref(v);
    return out;
}

/* A fully valid basic check at the moment of signing; fields point into the test's strings. */
typedef struct {
    sigv2_check_t check;
    char *canonical;
    char signature[65];
} fixture_t;

static const char *body = "{\"activity\": \"queryInstance\", \"instanceId\": \"i-1\"}";

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->canonical = canonical_of(body);
    sigv2_sign(SIGV2_BASIC, "seller-key", "nonce-1", "1700000000000", f->canonical,
               strlen(f->canonical), f->signature);
    f->check = (sigv2_check_t){
        .kind = SIGV2_BASIC,
        .key = "seller-key",
        .timestamp = "1700000000000",
        .nonce = "nonce-1",
        .signature = f->signature,
        .canonical = f->canonical,
        .canonical_len = strlen(f->canonical),
        .raw = body,
        .raw_len = strlen(body),
        .now_ms = 1700000000000LL,
    };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    free(f->canonical);
    free(f);
    return 0;
}

/* One signature vector of kind: canonical payload, signature, and verification with now_ms at
 * delta from the signed time. Fields name the vector's timestamp/nonce/signature members.
 * Returns the check (canonical owned by the caller) for kind-specific assertions. */
static sigv2_check_t check_vector(sigv2_kind_t kind, json_t *vec, const char *ts_field,
                                  const char *nonce_field, const char *sig_field, int64_t delta)
{
    const char *key = access_key();
    const char *raw = vectors_str(vec, "rawBody");
    const char *ts = vectors_str(vec, ts_field);
    const char *nonce = vectors_str(vec, nonce_field);
    const char *expected = vectors_str(vec, sig_field);
    char *canonical = canonical_of(raw);
    assert_string_equal(canonical, vectors_str(vec, "canonicalPayload"));
    char sig[65];
    sigv2_sign(kind, key, nonce, ts, canonical, strlen(canonical), sig);
    assert_string_equal(sig, expected);
    sigv2_check_t c = {
        .kind = kind,
        .key = key,
        .timestamp = ts,
        .nonce = nonce,
        .signature = expected,
        .canonical = canonical,
        .canonical_len = strlen(canonical),
        .raw = raw,
        .raw_len = strlen(raw),
        .now_ms = strtoll(ts, NULL, 10) + delta,
    };
    assert_int_equal(sigv2_verify(&c), SIGV2_OK);
    return c;
}

static void test_basic_vectors(void **state)
{
    const char *key = access_key();
    json_t *arr = vectors_section("basicSignature");
    size_t i;
    json_t *vec;
    json_array_foreach(arr, i, vec)
    {
        sigv2_check_t c = check_vector(SIGV2_BASIC, vec, "timestamp", "nonce", "signature", 1234);
        /* The inner HMAC of the payload. */
        uint8_t mac[32];
        char hex[65];
        hmac_sha256(key, strlen(key), c.canonical, c.canonical_len, mac);
        assert_string_equal(hex_encode(mac, 32, hex), vectors_str(vec, "payloadHmacHex"));
        /* Without the injected clock these past timestamps are stale. */
        c.now_ms = strtoll(c.timestamp, NULL, 10) + 10LL * 365 * 24 * 3600 * 1000;
        assert_int_equal(sigv2_verify(&c), SIGV2_STALE);
        free((char *)c.canonical);
    }
}

static void test_kit_vectors(void **state)
{
    json_t *arr = vectors_section("kitSignature");
    size_t i;
    json_t *vec;
    json_array_foreach(arr, i, vec)
    {
        sigv2_check_t c = check_vector(SIGV2_KIT, vec, "x-timestamp", "x-nonce", "x-sign", -59999);
        /* The same signature is not a basic signature. */
        c.kind = SIGV2_BASIC;
        assert_int_equal(sigv2_verify(&c), SIGV2_BAD_SIGNATURE);
        free((char *)c.canonical);
    }
}

static void test_canonical_path(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_OK);
}

static void test_raw_path(void **state)
{
    fixture_t *f = *state;
    /* A sender that signed the body exactly as written (with its spaces). */
    char raw_sig[65];
    sigv2_sign(SIGV2_BASIC, "seller-key", "nonce-1", "1700000000000", body, strlen(body), raw_sig);
    assert_string_not_equal(raw_sig, f->signature);
    f->check.signature = raw_sig;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_OK_RAW);
    /* Also when the body did not parse and there is no canonical form. */
    f->check.canonical = NULL;
    f->check.canonical_len = 0;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_OK_RAW);
    /* A canonical signature needs the canonical form. */
    f->check.signature = f->signature;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
}

static void test_raw_path_kit(void **state)
{
    const char *raw = "{\"tenantId\": \"t-1\", \"flag\": 1}";
    char *canonical = canonical_of(raw);
    char sig[65];
    sigv2_sign(SIGV2_KIT, "kit-key", "n", "5000", raw, strlen(raw), sig);
    sigv2_check_t c = {.kind = SIGV2_KIT,
                       .key = "kit-key",
                       .timestamp = "5000",
                       .nonce = "n",
                       .signature = sig,
                       .canonical = canonical,
                       .canonical_len = strlen(canonical),
                       .raw = raw,
                       .raw_len = strlen(raw),
                       .now_ms = 5000};
    assert_int_equal(sigv2_verify(&c), SIGV2_OK_RAW);
    free(canonical);
}

static void test_uppercase_signature(void **state)
{
    fixture_t *f = *state;
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)toupper((unsigned char)f->signature[i]);
    f->check.signature = upper;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_OK);
}

static void test_window_edges(void **state)
{
    fixture_t *f = *state;
    const int64_t ts = 1700000000000LL;
    f->check.now_ms = ts + SIGV2_WINDOW_MS;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_OK);
    f->check.now_ms = ts + SIGV2_WINDOW_MS + 1;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_STALE);
    f->check.now_ms = ts - SIGV2_WINDOW_MS;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_OK);
    f->check.now_ms = ts - SIGV2_WINDOW_MS - 1;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_STALE);
    /* A configured window replaces the default. */
    f->check.window_ms = 1000;
    f->check.now_ms = ts + 1000;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_OK);
    f->check.now_ms = ts - 1001;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_STALE);
}

static void test_stale_checked_before_signature(void **state)
{
    fixture_t *f = *state;
    f->check.now_ms += 3600000;
    f->check.signature = "00";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_STALE);
}

static void test_wrong_key(void **state)
{
    fixture_t *f = *state;
    f->check.key = "seller-kez";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
    f->check.key = "";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
    f->check.key = NULL;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
}

static void test_tampered_body(void **state)
{
    fixture_t *f = *state;
    const char *raw = "{\"activity\": \"queryInstance\", \"instanceId\": \"i-2\"}";
    char *canonical = canonical_of(raw);
    f->check.canonical = canonical;
    f->check.canonical_len = strlen(canonical);
    f->check.raw = raw;
    f->check.raw_len = strlen(raw);
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
    free(canonical);
}

static void test_tampered_nonce_and_timestamp(void **state)
{
    fixture_t *f = *state;
    f->check.nonce = "nonce-2";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
    f->check.nonce = "nonce-1";
    f->check.timestamp = "1700000000001";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
    /* Same instant, different text: the timestamp is signed as received. */
    f->check.timestamp = "01700000000000";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
}

static void test_wrong_signature_shapes(void **state)
{
    fixture_t *f = *state;
    char sig[66];
    memcpy(sig, f->signature, 65);
    sig[63] = sig[63] == '0' ? '1' : '0';
    f->check.signature = sig;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
    memcpy(sig, f->signature, 65);
    sig[64 - 1] = '\0'; /* one char short */
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
    memcpy(sig, f->signature, 64);
    sig[64] = 'a'; /* one char long */
    sig[65] = '\0';
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
    f->check.signature = "zz";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_BAD_SIGNATURE);
}

static void test_missing_signature(void **state)
{
    fixture_t *f = *state;
    f->check.signature = NULL;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_NO_SIGNATURE);
    f->check.signature = "";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_NO_SIGNATURE);
}

static void test_bad_timestamps(void **state)
{
    fixture_t *f = *state;
    const char *bad[] = {"",
                         "12a",
                         "-1",
                         "+1700000000000",
                         " 1700000000000",
                         "1700000000000 ",
                         "1.7e12",
                         "0x1",
                         "1234567890123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f->check.timestamp = bad[i];
        assert_int_equal(sigv2_verify(&f->check), SIGV2_NO_TIMESTAMP);
    }
    f->check.timestamp = NULL;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_NO_TIMESTAMP);
    /* 15 digits is well-formed (and far in the future here). */
    f->check.timestamp = "999999999999999";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_STALE);
}

static void test_bad_nonces(void **state)
{
    fixture_t *f = *state;
    char nonce[130];
    memset(nonce, 'n', 129);
    nonce[129] = '\0';
    f->check.nonce = nonce;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_NO_TIMESTAMP);
    f->check.nonce = "";
    assert_int_equal(sigv2_verify(&f->check), SIGV2_NO_TIMESTAMP);
    f->check.nonce = NULL;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_NO_TIMESTAMP);
    /* 128 characters is allowed. */
    nonce[128] = '\0';
    char sig[65];
    sigv2_sign(SIGV2_BASIC, "seller-key", nonce, "1700000000000", f->canonical,
               strlen(f->canonical), sig);
    f->check.nonce = nonce;
    f->check.signature = sig;
    assert_int_equal(sigv2_verify(&f->check), SIGV2_OK);
}

static void test_reasons(void **state)
{
    for (int r = SIGV2_OK; r <= SIGV2_BAD_SIGNATURE; r++) {
        const char *why = sigv2_reason((sigv2_result_t)r);
        assert_non_null(why);
        assert_true(strlen(why) > 5);
    }
    assert_string_not_equal(sigv2_reason(SIGV2_STALE), sigv2_reason(SIGV2_NO_TIMESTAMP));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_vectors),
        cmocka_unit_test(test_kit_vectors),
        cmocka_unit_test_setup_teardown(test_canonical_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_path, setup, teardown),
        cmocka_unit_test(test_raw_path_kit),
        cmocka_unit_test_setup_teardown(test_uppercase_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_checked_before_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_nonce_and_timestamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_signature_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_timestamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_nonces, setup, teardown),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests_name("sigv2", tests, NULL, NULL);
}
