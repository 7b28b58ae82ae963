/* rsaoaep: key loading rules and the three OAEP variants, cross-checked against OpenSSL's
 * parameter API so that encrypt and decrypt cannot agree on a wrong digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "cryptoutil.h"
#include "rsaoaep.h"
#include "xmalloc.h"

typedef struct {
    char dir[64];
    char good[128];      /* 3072-bit RSA */
    char short_key[128]; /* 2048-bit RSA */
    char encrypted[128]; /* 3072-bit RSA under a passphrase */
    char ec[128];        /* P-256 */
    char garbage[128];
    EVP_PKEY *key;
} fixture_t;

/* Digest names per variant, written independently of the module under test. */
static const char *const oaep_md[] = {"SHA256", "SHA256", "SHA1"};
static const char *const mgf1_md[] = {"SHA1", "SHA256", "SHA1"};

static void write_key(const char *path, EVP_PKEY *key, const EVP_CIPHER *cipher)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, cipher, (unsigned char *)(cipher ? "pass" : NULL),
                                          cipher ? 4 : 0, NULL, NULL),
                     1);
    fclose(f);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/kooisv-rsaoaep-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->good, sizeof f->good, "%s/good.pem", f->dir);
    snprintf(f->short_key, sizeof f->short_key, "%s/short.pem", f->dir);
    snprintf(f->encrypted, sizeof f->encrypted, "%s/encrypted.pem", f->dir);
    snprintf(f->ec, sizeof f->ec, "%s/ec.pem", f->dir);
    snprintf(f->garbage, sizeof f->garbage, "%s/garbage.pem", f->dir);

    EVP_PKEY *big = EVP_RSA_gen(3072);
    EVP_PKEY *small = EVP_RSA_gen(2048);
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    if (!big || !small || !ec)
        return -1;
    write_key(f->good, big, NULL);
    write_key(f->short_key, small, NULL);
    write_key(f->encrypted, big, EVP_aes_256_cbc());
    write_key(f->ec, ec, NULL);
    FILE *g = fopen(f->garbage, "w");
    fputs("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", g);
    fclose(g);
    EVP_PKEY_free(small);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(big);

    const char *why = "unset";
    f->key = rsaoaep_load_private(f->good, &why);
    if (!f->key)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    EVP_PKEY_free(f->key);
    unlink(f->good);
    unlink(f->short_key);
    unlink(f->encrypted);
    unlink(f->ec);
    unlink(f->garbage);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* OAEP through OSSL_PARAMs; returns the output length or -1. */
static int oaep_with_params(EVP_PKEY *key, int variant, int encrypt, const uint8_t *in,
                            size_t in_len, uint8_t *out, size_t out_cap)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE,
                                         (char *)OSSL_PKEY_RSA_PAD_MODE_OAEP, 0),
        OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST,
                                         (char *)oaep_md[variant], 0),
        OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST,
                                         (char *)mgf1_md[variant], 0),
        OSSL_PARAM_construct_end(),
    };
    size_t n = out_cap;
    int ok = (encrypt ? EVP_PKEY_encrypt_init_ex(ctx, params)
                      : EVP_PKEY_decrypt_init_ex(ctx, params)) == 1 &&
             (encrypt ? EVP_PKEY_encrypt(ctx, out, &n, in, in_len)
                      : EVP_PKEY_decrypt(ctx, out, &n, in, in_len)) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok ? (int)n : -1;
}

static void test_load_rules(void **state)
{
    fixture_t *f = *state;
    const char *why = "unset";
    EVP_PKEY *k = rsaoaep_load_private(f->good, &why);
    assert_non_null(k);
    assert_null(why);
    assert_int_equal(EVP_PKEY_get_bits(k), 3072);
    EVP_PKEY_free(k);

    const char *paths[] = {f->short_key, f->encrypted, f->ec, f->garbage, "/nonexistent/key.pem"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        why = NULL;
        assert_null(rsaoaep_load_private(paths[i], &why));
        assert_non_null(why);
    }
    why = NULL;
    assert_null(rsaoaep_load_private(f->short_key, &why));
    assert_non_null(strstr(why, "3072"));
    assert_null(rsaoaep_load_private(NULL, NULL));
}

static void test_each_variant_round_trip(void **state)
{
    fixture_t *f = *state;
    const char *secret = "client-secret-0123456789-密钥";
    for (int v = 0; v < 3; v++) {
        char *b64 = rsaoaep_encrypt(f->key, v, secret, strlen(secret));
        assert_non_null(b64);
        char *plain = NULL;
        size_t len = 0;
        assert_int_equal(rsaoaep_decrypt(f->key, b64, &plain, &len), 0);
        assert_int_equal(len, strlen(secret));
        assert_string_equal(plain, secret);
        xfree_secret(plain, len + 1);
        free(b64);
    }
}

static void test_variants_match_independent_params(void **state)
{
    fixture_t *f = *state;
    const char *secret = "s3cr3t";
    uint8_t buf[512];
    for (int v = 0; v < 3; v++) {
        /* What the module encrypts as variant v decrypts only with v's digests. */
        char *b64 = rsaoaep_encrypt(f->key, v, secret, strlen(secret));
        uint8_t *ct = NULL;
        size_t ct_len = 0;
        assert_int_equal(b64_decode(b64, &ct, &ct_len), 0);
        assert_int_equal(ct_len, 384);
        for (int w = 0; w < 3; w++) {
            int n = oaep_with_params(f->key, w, 0, ct, ct_len, buf, sizeof buf);
            if (w == v) {
                assert_int_equal(n, (int)strlen(secret));
                assert_memory_equal(buf, secret, strlen(secret));
            } else {
                assert_int_equal(n, -1);
            }
        }
        free(ct);
        free(b64);

        /* And what a third party encrypts as variant v, the module decrypts. */
        int n = oaep_with_params(f->key, v, 1, (const uint8_t *)secret, strlen(secret), buf,
                                 sizeof buf);
        assert_int_equal(n, 384);
        char *third = b64_encode(buf, (size_t)n);
        char *plain = NULL;
        size_t len = 0;
        assert_int_equal(rsaoaep_decrypt(f->key, third, &plain, &len), 0);
        assert_string_equal(plain, secret);
        xfree_secret(plain, len + 1);
        free(third);
    }
}

static void test_decrypt_rejects(void **state)
{
    fixture_t *f = *state;
    char *plain = (char *)"untouched";
    size_t len = 0;
    assert_int_equal(rsaoaep_decrypt(f->key, "not base64!", &plain, &len), -1);
    assert_int_equal(rsaoaep_decrypt(f->key, "", &plain, &len), -1);
    assert_int_equal(rsaoaep_decrypt(f->key, "QUJD", &plain, &len), -1); /* 3 bytes */
    assert_int_equal(rsaoaep_decrypt(f->key, NULL, &plain, &len), -1);
    /* Full-length garbage. */
    uint8_t junk[384];
    memset(junk, 0x5a, sizeof junk);
    junk[0] = 0x01;
    char *b64 = b64_encode(junk, sizeof junk);
    assert_int_equal(rsaoaep_decrypt(f->key, b64, &plain, &len), -1);
    free(b64);
    /* A valid ciphertext with one flipped byte. */
    char *good = rsaoaep_encrypt(f->key, 0, "x", 1);
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    assert_int_equal(b64_decode(good, &ct, &ct_len), 0);
    ct[200] ^= 0x10;
    b64 = b64_encode(ct, ct_len);
    assert_int_equal(rsaoaep_decrypt(f->key, b64, &plain, &len), -1);
    assert_string_equal(plain, "untouched");
    free(b64);
    free(ct);
    free(good);
}

static void test_encrypt_rejects(void **state)
{
    fixture_t *f = *state;
    assert_null(rsaoaep_encrypt(f->key, -1, "x", 1));
    assert_null(rsaoaep_encrypt(f->key, 3, "x", 1));
    /* Longer than OAEP-SHA256 allows for a 384-byte modulus (384 - 66 = 318). */
    char big[400];
    memset(big, 'a', sizeof big);
    assert_null(rsaoaep_encrypt(f->key, 0, big, sizeof big));
    char *ok = rsaoaep_encrypt(f->key, 0, big, 318);
    assert_non_null(ok);
    free(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_rules),
        cmocka_unit_test(test_each_variant_round_trip),
        cmocka_unit_test(test_variants_match_independent_params),
        cmocka_unit_test(test_decrypt_rejects),
        cmocka_unit_test(test_encrypt_rejects),
    };
    return cmocka_run_group_tests_name("rsaoaep", tests, setup, teardown);
}
