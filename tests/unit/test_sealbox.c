/* sealbox: key parsing, round trips, and every way a sealed value must fail to open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cryptoutil.h"
#include "sealbox.h"

static const char key_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static void load_key(uint8_t key[32])
{
    assert_int_equal(sealbox_parse_key(key_hex, key), 0);
}

static void test_parse_key(void **state)
{
    uint8_t key[32], expected[32];
    for (int i = 0; i < 32; i++)
        expected[i] = (uint8_t)i;
    assert_int_equal(sealbox_parse_key(key_hex, key), 0);
    assert_memory_equal(key, expected, 32);
    memset(key, 0, 32);
    assert_int_equal(
        sealbox_parse_key("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", key),
        0);
    assert_memory_equal(key, expected, 32);
    memset(key, 0, 32);
    char *b64 = b64_encode(expected, 32);
    assert_int_equal(sealbox_parse_key(b64, key), 0);
    assert_memory_equal(key, expected, 32);
    free(b64);

    const char *bad[] = {
        "",
        "00",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1",   /* 63 hex */
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0", /* 65 hex */
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g",  /* not hex */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",                      /* 31 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",                      /* 33 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",                       /* no padding */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sealbox_parse_key(bad[i], key), -1);
    assert_int_equal(sealbox_parse_key(NULL, key), -1);
}

static void test_round_trip(void **state)
{
    uint8_t key[32];
    load_key(key);
    const char *plains[] = {"", "s", "client-secret-密钥-\xf0\x9f\x98\x80",
                            "a longer secret spanning several AES blocks, 0123456789abcdef"};
    for (size_t i = 0; i < sizeof plains / sizeof plains[0]; i++) {
        char *sealed = sealbox_seal(key, "instance-1", plains[i], strlen(plains[i]));
        assert_non_null(sealed);
        assert_int_equal(strncmp(sealed, "v1:", 3), 0);
        if (strlen(plains[i]) > 8)
            assert_null(strstr(sealed, plains[i]));
        char *out = NULL;
        size_t len = 0;
        assert_int_equal(sealbox_open(key, "instance-1", sealed, &out, &len), 0);
        assert_int_equal(len, strlen(plains[i]));
        assert_string_equal(out, plains[i]);
        free(out);
        free(sealed);
    }
}

static void test_binary_and_null_aad(void **state)
{
    uint8_t key[32];
    load_key(key);
    const uint8_t bin[] = {0, 1, 2, 0, 255};
    char *sealed = sealbox_seal(key, NULL, bin, sizeof bin);
    char *out = NULL;
    size_t len = 0;
    /* NULL aad is the same as "". */
    assert_int_equal(sealbox_open(key, "", sealed, &out, &len), 0);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(out, bin, sizeof bin);
    assert_int_equal(out[len], '\0');
    free(out);
    free(sealed);
}

static void test_nonce_is_fresh(void **state)
{
    uint8_t key[32];
    load_key(key);
    char *a = sealbox_seal(key, "r", "same", 4);
    char *b = sealbox_seal(key, "r", "same", 4);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
}

static void expect_fail(const uint8_t key[32], const char *aad, const char *sealed)
{
    char *out = (char *)"untouched";
    size_t len = 77;
    assert_int_equal(sealbox_open(key, aad, sealed, &out, &len), -1);
    assert_string_equal(out, "untouched");
    assert_int_equal(len, 77);
}

/* expect_fail on "v1:" + base64 of raw (a sealed value taken apart and altered). */
static void expect_fail_raw(const uint8_t key[32], const char *aad, const uint8_t *raw, size_t len)
{
    char *b64 = b64_encode(raw, len);
    char *text = malloc(strlen(b64) + 4);
    strcpy(text, "v1:");
    strcat(text, b64);
    expect_fail(key, aad, text);
    free(text);
    free(b64);
}

static void test_wrong_aad_and_key(void **state)
{
    uint8_t key[32], other[32];
    load_key(key);
    memcpy(other, key, 32);
    other[31] ^= 1;
    char *sealed = sealbox_seal(key, "instance-1", "secret", 6);
    expect_fail(key, "instance-2", sealed);
    expect_fail(key, "", sealed);
    expect_fail(key, NULL, sealed);
    expect_fail(other, "instance-1", sealed);
    free(sealed);
}

static void test_every_flipped_byte_fails(void **state)
{
    uint8_t key[32];
    load_key(key);
    char *sealed = sealbox_seal(key, "row", "secret value", 12);
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    assert_int_equal(b64_decode(sealed + 3, &raw, &raw_len), 0);
    assert_int_equal(raw_len, 12 + 12 + 16);
    /* Nonce, ciphertext and tag are all authenticated. */
    for (size_t i = 0; i < raw_len; i++) {
        raw[i] ^= 0x01;
        expect_fail_raw(key, "row", raw, raw_len);
        raw[i] ^= 0x01;
    }
    free(raw);
    free(sealed);
}

static void test_truncated_and_malformed(void **state)
{
    uint8_t key[32];
    load_key(key);
    char *sealed = sealbox_seal(key, "row", "secret", 6);
    size_t n = strlen(sealed);
    /* Drop whole base64 groups (still valid base64) down to below nonce + tag. */
    for (size_t cut = 4; cut < n - 3; cut += 4) {
        char *t = strndup(sealed, n - cut);
        expect_fail(key, "row", t);
        free(t);
    }
    /* Base64 of only nonce + tag-length bytes with a wrong tag. */
    uint8_t zeros[28] = {0};
    expect_fail_raw(key, "row", zeros, sizeof zeros);

    char *v2 = strdup(sealed);
    v2[1] = '2';
    expect_fail(key, "row", v2);
    free(v2);
    expect_fail(key, "row", sealed + 3); /* no prefix */
    expect_fail(key, "row", "v1:");
    expect_fail(key, "row", "v1:!!!!");
    expect_fail(key, "row", "");
    expect_fail(key, "row", NULL);
    char *nl = malloc(n + 2);
    strcpy(nl, sealed);
    strcat(nl, "\n");
    expect_fail(key, "row", nl);
    free(nl);
    free(sealed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_key),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_binary_and_null_aad),
        cmocka_unit_test(test_nonce_is_fresh),
        cmocka_unit_test(test_wrong_aad_and_key),
        cmocka_unit_test(test_every_flipped_byte_fails),
        cmocka_unit_test(test_truncated_and_malformed),
    };
    return cmocka_run_group_tests_name("sealbox", tests, NULL, NULL);
}
