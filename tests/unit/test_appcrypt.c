/* appcrypt: SHA1PRNG key derivation and AES-CBC wire form against the vectors; malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "appcrypt.h"
#include "cryptoutil.h"
#include "vectors.h"

static const char *seed(void)
{
    return vectors_str(vectors_get(), "accessKey");
}

static void test_key_derivation_vectors(void **state)
{
    json_t *kd = vectors_section("aesKeyDerivation");
    const char *s = vectors_str(kd, "seed");
    uint8_t expected[32], key[32];
    char hex[65];

    vectors_unhex(vectors_str(kd, "aes256KeyHex"), expected, 32);
    appcrypt_derive_key(s, key, 32);
    assert_memory_equal(key, expected, 32);
    assert_string_equal(hex_encode(key, 32, hex), vectors_str(kd, "aes256KeyHex"));

    vectors_unhex(vectors_str(kd, "aes128KeyHex"), expected, 16);
    appcrypt_derive_key(s, key, 16);
    assert_memory_equal(key, expected, 16);
}

static void test_key_derivation_is_a_stream(void **state)
{
    /* Shorter outputs are prefixes of longer ones across the 20-byte block boundaries. */
    uint8_t full[64], part[64];
    appcrypt_derive_key("some seller key", full, 64);
    size_t lengths[] = {0, 1, 19, 20, 21, 39, 40, 41, 63};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        memset(part, 0xee, sizeof part);
        appcrypt_derive_key("some seller key", part, lengths[i]);
        if (lengths[i])
            assert_memory_equal(part, full, lengths[i]);
        assert_int_equal(part[lengths[i]], 0xee);
    }
    uint8_t other[32];
    appcrypt_derive_key("some seller kez", other, 32);
    assert_memory_not_equal(other, full, 32);
}

static void test_cbc_vectors_both_ways(void **state)
{
    json_t *arr = vectors_section("aesCbc");
    size_t i;
    json_t *vec;
    json_array_foreach(arr, i, vec)
    {
        const char *type = vectors_str(vec, "encryptType");
        const char *plain = vectors_str(vec, "plain");
        const char *wire = vectors_str(vec, "wire");
        char *enc = appcrypt_encrypt(seed(), type, plain, vectors_str(vec, "iv"));
        assert_non_null(enc);
        assert_string_equal(enc, wire);
        free(enc);
        char *dec = appcrypt_decrypt(seed(), type, wire);
        assert_non_null(dec);
        assert_string_equal(dec, plain);
        free(dec);
    }
}

static void test_random_iv_round_trip(void **state)
{
    const char *types[] = {"1", "2"};
    const char *plains[] = {"", "x", "exactly16bytes!!", "密码 with spaces and \xf0\x9f\x98\x80"};
    for (size_t t = 0; t < 2; t++) {
        for (size_t p = 0; p < sizeof plains / sizeof plains[0]; p++) {
            char *a = appcrypt_encrypt(seed(), types[t], plains[p], NULL);
            char *b = appcrypt_encrypt(seed(), types[t], plains[p], NULL);
            assert_non_null(a);
            assert_non_null(b);
            assert_string_not_equal(a, b); /* fresh IV each time */
            for (int i = 0; i < 16; i++)
                assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789",
                                       a[i]));
            char *dec = appcrypt_decrypt(seed(), types[t], a);
            assert_non_null(dec);
            assert_string_equal(dec, plains[p]);
            free(dec);
            free(a);
            free(b);
        }
    }
}

static void test_encrypt_rejects(void **state)
{
    assert_null(appcrypt_encrypt(seed(), "3", "x", NULL));
    assert_null(appcrypt_encrypt(seed(), "", "x", NULL));
    assert_null(appcrypt_encrypt(seed(), NULL, "x", NULL));
    assert_null(appcrypt_encrypt(seed(), "1", "x", "0123456789abcde"));   /* 15 chars */
    assert_null(appcrypt_encrypt(seed(), "1", "x", "0123456789abcdef0")); /* 17 chars */
    assert_null(appcrypt_encrypt(seed(), "1", "x", "0123456789abcde-"));  /* not alnum */
    assert_null(appcrypt_encrypt(seed(), "1", NULL, NULL));
}

static void test_decrypt_rejects(void **state)
{
    const char *good = "0123456789abcdefCxa/kbut/oHLJxYv7ss2mw==";
    char *ok = appcrypt_decrypt(seed(), "1", good);
    assert_string_equal(ok, "admin");
    free(ok);

    const char *bad[] = {
        "",
        "0123456789abcdef",                             /* no ciphertext */
        "0123456789abcdefCxa/kbut/oHLJxYv7ss2m",        /* short, not base64 */
        "0123456789abcde-Cxa/kbut/oHLJxYv7ss2mw==",     /* non-alnum IV */
        "0123456789abcdefCxa/kbut/oHLJxYv7ss2mw=",      /* bad base64 length */
        "0123456789abcdefCxa/kbut/oHLJ*Yv7ss2mw==",     /* bad base64 char */
        "0123456789abcdefCxa/kbut/oHLJxYv7ss2mw==\n",   /* trailing newline */
        "0123456789abcdefQUFBQUFBQUFBQUFBQUFBQUFBQUE=", /* 20 bytes: not whole blocks */
        /* IV's last byte changed: the padding byte becomes 0x0a over 0x0b bytes. */
        "0123456789abcdegCxa/kbut/oHLJxYv7ss2mw==",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *dec = appcrypt_decrypt(seed(), "1", bad[i]);
        if (dec)
            fail_msg("accepted %s as %s", bad[i], dec);
    }
    assert_null(appcrypt_decrypt(seed(), "9", good));
    assert_null(appcrypt_decrypt(seed(), NULL, good));
    assert_null(appcrypt_decrypt(seed(), "1", NULL));
}

static void test_decrypt_wrong_key_never_returns_plain(void **state)
{
    const char *good = "0123456789abcdefCxa/kbut/oHLJxYv7ss2mw==";
    char *dec = appcrypt_decrypt("another seller key", "1", good);
    if (dec)
        assert_string_not_equal(dec, "admin");
    free(dec);
    dec = appcrypt_decrypt(seed(), "2", good);
    if (dec)
        assert_string_not_equal(dec, "admin");
    free(dec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_derivation_vectors),
        cmocka_unit_test(test_key_derivation_is_a_stream),
        cmocka_unit_test(test_cbc_vectors_both_ways),
        cmocka_unit_test(test_random_iv_round_trip),
        cmocka_unit_test(test_encrypt_rejects),
        cmocka_unit_test(test_decrypt_rejects),
        cmocka_unit_test(test_decrypt_wrong_key_never_returns_plain),
    };
    return cmocka_run_group_tests_name("appcrypt", tests, NULL, NULL);
}
