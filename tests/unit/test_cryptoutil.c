/* cryptoutil: SHA-256/HMAC known answers, hex and strict base64, constant-time compares. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cryptoutil.h"

static void test_sha256_known_answers(void **state)
{
    uint8_t d[32];
    char hex[65];
    sha256("abc", 3, d);
    assert_string_equal(hex_encode(d, 32, hex),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256("", 0, d);
    assert_string_equal(hex_encode(d, 32, hex),
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256(NULL, 0, d);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_hmac_sha256_rfc4231(void **state)
{
    uint8_t mac[32];
    char hex[65];
    /* RFC 4231 test case 2. */
    const char *data = "what do ya want for nothing?";
    hmac_sha256("Jefe", 4, data, strlen(data), mac);
    assert_string_equal(hex_encode(mac, 32, hex),
                        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* RFC 4231 test case 6: a key longer than the block size is hashed first. */
    uint8_t key[131];
    memset(key, 0xaa, sizeof key);
    const char *big = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac_sha256(key, sizeof key, big, strlen(big), mac);
    assert_string_equal(hex_encode(mac, 32, hex),
                        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    /* An empty key and empty data are valid inputs, not a crash. */
    hmac_sha256(NULL, 0, NULL, 0, mac);
    assert_string_equal(hex_encode(mac, 32, hex),
                        "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

/* Each thread keeps one HMAC context that every call rekeys: the key of one call never leaks
 * into the next, on the same thread or on others running at once. */
enum { HMAC_THREADS = 4, HMAC_ROUNDS = 2000 };

static void *hmac_rounds(void *arg)
{
    const char *data = "what do ya want for nothing?";
    uintptr_t bad = 0;
    uint8_t mac[32];
    char hex[65];
    for (int i = 0; i < HMAC_ROUNDS; i++) {
        if ((i + (int)(uintptr_t)arg) % 2 == 0) {
            hmac_sha256("Jefe", 4, data, strlen(data), mac);
            bad += strcmp(hex_encode(mac, 32, hex), "5bdcc146bf60754e6a042426089575c75a003f089d2"
                                                    "739839dec58b964ec3843") != 0;
        } else {
            hmac_sha256("", 0, "", 0, mac);
            bad += strcmp(hex_encode(mac, 32, hex), "b613679a0814d9ec772f95d778c35fc5ff1697c4937"
                                                    "15653c6c712144292c5ad") != 0;
        }
    }
    return (void *)bad;
}

static void test_hmac_sha256_threads(void **state)
{
    pthread_t t[HMAC_THREADS];
    for (uintptr_t i = 0; i < HMAC_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hmac_rounds, (void *)i), 0);
    for (int i = 0; i < HMAC_THREADS; i++) {
        void *bad = NULL;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_int_equal((uintptr_t)bad, 0);
    }
    /* this thread too, after a long key and an empty one */
    assert_int_equal((uintptr_t)hmac_rounds((void *)0), 0);
}

static void test_hex_encode(void **state)
{
    const uint8_t b[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[13];
    assert_ptr_equal(hex_encode(b, sizeof b, out), out);
    assert_string_equal(out, "00017f80abff");
    assert_string_equal(hex_encode(b, 0, out), "");
}

static void test_hex_decode(void **state)
{
    assert_int_equal(hex_digit_value('0'), 0);
    assert_int_equal(hex_digit_value('a'), 10);
    assert_int_equal(hex_digit_value('F'), 15);
    assert_int_equal(hex_digit_value('g'), -1);
    assert_int_equal(hex_digit_value('/'), -1);
    assert_int_equal(hex_digit_value('\0'), -1);
    uint8_t out[3];
    assert_true(hex_decode("00aBff", out, 3));
    assert_int_equal(out[0], 0x00);
    assert_int_equal(out[1], 0xab);
    assert_int_equal(out[2], 0xff);
    /* Only the first 2*len digits are read. */
    assert_true(hex_decode("7f-", out, 1));
    assert_int_equal(out[0], 0x7f);
    /* A bad digit anywhere fails and leaves nothing decoded behind. */
    memset(out, 0x55, sizeof out);
    assert_false(hex_decode("0102x3", out, 3));
    const uint8_t zero[3] = {0};
    assert_memory_equal(out, zero, 3);
    assert_false(hex_decode("0 0000", out, 3));
    assert_false(hex_decode("01", out, 3)); /* stops at the terminator, does not read past it */
}

static void test_b64_encode_rfc4648(void **state)
{
    static const char *const pairs[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char *enc = b64_encode((const uint8_t *)pairs[i][0], strlen(pairs[i][0]));
        assert_string_equal(enc, pairs[i][1]);
        free(enc);
        uint8_t *dec = NULL;
        size_t len = 99;
        assert_int_equal(b64_decode(pairs[i][1], &dec, &len), 0);
        assert_int_equal(len, strlen(pairs[i][0]));
        assert_memory_equal(dec, pairs[i][0], len);
        free(dec);
    }
}

static void test_b64_binary_round_trip(void **state)
{
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t n = 0; n <= sizeof all; n += 17) {
        char *enc = b64_encode(all, n);
        assert_true(strchr(enc, '\n') == NULL);
        uint8_t *dec = NULL;
        size_t len = 0;
        assert_int_equal(b64_decode(enc, &dec, &len), 0);
        assert_int_equal(len, n);
        if (n)
            assert_memory_equal(dec, all, n);
        free(dec);
        free(enc);
    }
}

static void test_b64_decode_rejects(void **state)
{
    static const char *const bad[] = {
        "Zg",          /* missing padding */
        "Zg=",         /* wrong length */
        "Z===",        /* three pad chars */
        "====",        /* only padding */
        "Zm9v!A==",    /* char outside the alphabet */
        "Zm=v",        /* padding in the middle of a group */
        "=Zm9",        /* padding first */
        "Zg==Zg==",    /* padding before the last group */
        "Zm9vYg=a",    /* data after padding */
        "Zm9v\n",      /* whitespace */
        " Zm9v",       /* leading blank */
        "Zm9v-_==",    /* URL-safe alphabet is not standard base64 */
        "Zm9\xc3\xa9", /* non-ASCII */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *dec = (uint8_t *)"untouched";
        size_t len = 0;
        assert_int_equal(b64_decode(bad[i], &dec, &len), -1);
        assert_string_equal((const char *)dec, "untouched");
    }
    uint8_t *dec = NULL;
    size_t len = 0;
    assert_int_equal(b64_decode(NULL, &dec, &len), -1);
}

static void test_hex_equal_ci(void **state)
{
    assert_true(hex_equal_ci("00ff", "00ff"));
    assert_true(hex_equal_ci("00ff", "00FF"));
    assert_true(hex_equal_ci("ABCDEF0123456789", "abcdef0123456789"));
    assert_true(hex_equal_ci("", ""));
    assert_false(hex_equal_ci("00ff", "00fe"));
    assert_false(hex_equal_ci("10ff", "00ff"));
    assert_false(hex_equal_ci("00ff", "00ff0"));
    assert_false(hex_equal_ci("00ff0", "00ff"));
    assert_false(hex_equal_ci("00ff", ""));
    assert_false(hex_equal_ci(NULL, "00"));
    assert_false(hex_equal_ci("00", NULL));
    /* Case folding is ASCII letters only: '@' (0x40) and '`' (0x60) must stay different. */
    assert_false(hex_equal_ci("@", "`"));
    assert_false(hex_equal_ci("[", "{"));
}

static void test_bytes_equal(void **state)
{
    assert_true(bytes_equal("abc", "abc", 3));
    assert_false(bytes_equal("abc", "abd", 3));
    assert_true(bytes_equal("abc", "abd", 2));
    assert_true(bytes_equal("x", "y", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known_answers),
        cmocka_unit_test(test_hmac_sha256_rfc4231),
        cmocka_unit_test(test_hmac_sha256_threads),
        cmocka_unit_test(test_hex_encode),
        cmocka_unit_test(test_hex_decode),
        cmocka_unit_test(test_b64_encode_rfc4648),
        cmocka_unit_test(test_b64_binary_round_trip),
        cmocka_unit_test(test_b64_decode_rejects),
        cmocka_unit_test(test_hex_equal_ci),
        cmocka_unit_test(test_bytes_equal),
    };
    return cmocka_run_group_tests_name("cryptoutil", tests, NULL, NULL);
}
