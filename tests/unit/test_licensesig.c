/* licensesig: Ed25519 licenses signed and verified (KL2), every kind of bad license and bad key
 * refused with its reason, and the earlier HMAC format (KL1) recognised. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cryptoutil.h"
#include "licensesig.h"
#include "xmalloc.h"

/* A fresh key of type ("ED25519", "RSA") as PEM: the private key, and its public key. */
static void keypair(const char *type, char **priv, char **pub)
{
    EVP_PKEY *k = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                           : EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k);
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    long n = BIO_get_mem_data(b, &data);
    *priv = xstrndup(data, (size_t)n);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &data);
    *pub = xstrndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
}

static char *sign_sample(licensesig_t *s)
{
    json_t *p = json_pack("{s:s, s:s, s:I, s:n}", "iid", "inst-1", "eid", "ev-1", "eff",
                          (json_int_t)1698402615000LL, "exp");
    char *license = licensesig_sign(s, p);
    json_decref(p);
    assert_non_null(license);
    return license;
}

static void expect_refused(const char *pub, const char *license, const char *needle)
{
    char why[256] = "";
    json_t *before = json_object(), *payload = before;
    if (licensesig_verify(pub, license, &payload, why, sizeof why) == 0)
        fail_msg("'%s' verified", license ? license : "(null)");
    json_decref(before);
    assert_null(payload);
    if (!strstr(why, needle))
        fail_msg("reason \"%s\", wanted \"%s\"", why, needle);
}

static void test_sign_verify(void **state)
{
    (void)state;
    char *priv, *pub, why[256] = "";
    keypair("ED25519", &priv, &pub);
    licensesig_t *s = licensesig_new(priv, why, sizeof why);
    assert_non_null(s);
    assert_string_equal(licensesig_public_pem(s), pub);
    assert_int_equal(strlen(licensesig_key_id(s)), 16);

    char *license = sign_sample(s);
    assert_memory_equal(license, "KL2.", 4);
    /* Exactly two dots, base64url only, a 64-byte signature (86 characters). */
    const char *dot = strrchr(license, '.');
    assert_ptr_equal(strchr(license + 4, '.'), dot);
    assert_int_equal(strlen(dot + 1), 86);
    assert_int_equal(strspn(license + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789-_."),
                     strlen(license + 4));

    json_t *payload = NULL;
    assert_int_equal(licensesig_verify(pub, license, &payload, why, sizeof why), 0);
    assert_string_equal(json_string_value(json_object_get(payload, "iid")), "inst-1");
    assert_int_equal(json_integer_value(json_object_get(payload, "eff")), 1698402615000LL);
    assert_true(json_is_null(json_object_get(payload, "exp")));
    assert_string_equal(json_string_value(json_object_get(payload, "kid")), licensesig_key_id(s));
    json_decref(payload);
    assert_int_equal(licensesig_verify(pub, license, NULL, why, sizeof why), 0);

    /* Ed25519 is deterministic: the same facts give the same license. */
    char *again = sign_sample(s);
    assert_string_equal(again, license);
    free(again);
    free(license);
    licensesig_destroy(&s);
    assert_null(s);
    licensesig_destroy(&s);
    free(priv);
    free(pub);
}

static void test_tampering_refused(void **state)
{
    (void)state;
    char *priv, *pub, *other_priv, *other_pub, why[256] = "";
    keypair("ED25519", &priv, &pub);
    keypair("ED25519", &other_priv, &other_pub);
    licensesig_t *s = licensesig_new(priv, why, sizeof why);
    char *license = sign_sample(s);

    /* Another key: the reason names both key ids. */
    expect_refused(other_pub, license, "signed by key");
    /* One character of the payload changed (a valid base64url character all the same). */
    char *t = xstrdup(license);
    t[10] = t[10] == 'A' ? 'B' : 'A';
    expect_refused(pub, t, "");
    /* One character of the signature changed. */
    strcpy(t, license);
    size_t last = strlen(t) - 5;
    t[last] = t[last] == 'A' ? 'B' : 'A';
    expect_refused(pub, t, "signature does not hold");
    free(t);
    /* A payload of someone else's making with this license's signature. */
    const char *dot = strrchr(license, '.');
    char *forged = xasprintf("KL2.eyJpaWQiOiJ4In0%s", dot);
    expect_refused(pub, forged, "signature does not hold");
    free(forged);

    expect_refused(pub, "KL1.eyJhIjoxfQ.00ff", "a KL1 license (HMAC");
    expect_refused(pub, NULL, "no license");
    expect_refused(pub, "", "not a license");
    expect_refused(pub, "KL2.", "not a license");
    expect_refused(pub, "KL2.abc", "not a license");
    expect_refused(pub, "KL2.eyJhIjoxfQ.AAAA", "not a license");
    expect_refused(pub, "KL2.ey$hIjoxfQ.AAAA", "not a license");
    char *three = xasprintf("%s.x", license);
    expect_refused(pub, three, "not a license");
    free(three);
    char *sig86 = xstrdup(dot + 1);
    char *not_json = xasprintf("KL2.bm90IGpzb24.%s", sig86);
    expect_refused(pub, not_json, "payload is not a JSON object");
    free(not_json);
    free(sig86);

    expect_refused("not a key", license, "not a PEM Ed25519 public key");
    expect_refused(priv, license, "not a PEM Ed25519 public key");
    char *rsa_priv, *rsa_pub;
    keypair("RSA", &rsa_priv, &rsa_pub);
    expect_refused(rsa_pub, license, "not a PEM Ed25519 public key");

    free(license);
    licensesig_destroy(&s);
    free(priv);
    free(pub);
    free(other_priv);
    free(other_pub);
    free(rsa_priv);
    free(rsa_pub);
}

static void test_bad_private_keys(void **state)
{
    (void)state;
    char why[256];
    char *rsa_priv, *rsa_pub, *ed_priv, *ed_pub;
    keypair("RSA", &rsa_priv, &rsa_pub);
    keypair("ED25519", &ed_priv, &ed_pub);
    const struct {
        const char *pem, *why;
    } bad[] = {
        {NULL, "not a PEM private key"},
        {"", "not a PEM private key"},
        {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PEM private key"},
        {ed_pub, "not a PEM private key"},
        {rsa_priv, "must be an Ed25519 key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why[0] = '\0';
        licensesig_t *s = licensesig_new(bad[i].pem, why, sizeof why);
        if (s)
            fail_msg("key %zu accepted", i);
        if (!strstr(why, bad[i].why))
            fail_msg("key %zu: reason \"%s\", wanted \"%s\"", i, why, bad[i].why);
    }
    /* A payload that is not an object is not signed. */
    licensesig_t *s = licensesig_new(ed_priv, why, sizeof why);
    json_t *arr = json_array();
    assert_null(licensesig_sign(s, arr));
    json_decref(arr);
    licensesig_destroy(&s);
    free(rsa_priv);
    free(rsa_pub);
    free(ed_priv);
    free(ed_pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_tampering_refused),
        cmocka_unit_test(test_bad_private_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
