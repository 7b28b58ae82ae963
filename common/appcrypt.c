#include "appcrypt.h"
#include "cryptoutil.h"
#include "randutil.h"
#include "xmalloc.h"

#include <assert.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define SHA1_LEN 20
#define APPCRYPT_IV_LEN 16

/* Java's sun.security.provider.SecureRandom.updateState: state = state + output + 1 over 160
 * bits, byte 0 least significant, with Java's signed bytes (the carry is an arithmetic shift and
 * may be -1). If no byte changed, byte 0 is bumped so the stream never sticks. */
static void sha1prng_update_state(uint8_t state[SHA1_LEN], const uint8_t output[SHA1_LEN])
{
    int last = 1;
    bool changed = false;
    for (int i = 0; i < SHA1_LEN; i++) {
        int v = (int)(int8_t)state[i] + (int)(int8_t)output[i] + last;
        uint8_t t = (uint8_t)(v & 0xff);
        changed = changed || state[i] != t;
        state[i] = t;
        last = v >> 8; /* arithmetic on the platforms we build for, like Java's >> */
    }
    if (!changed)
        state[0]++;
}

static void sha1(const void *data, size_t len, uint8_t out[SHA1_LEN])
{
    unsigned int out_len = 0;
    if (!EVP_Digest(data, len, out, &out_len, EVP_sha1(), NULL) || out_len != SHA1_LEN) {
        fprintf(stderr, "level=error msg=\"crypto primitive failed\" op=sha1\n");
        abort();
    }
}

void appcrypt_derive_key(const char *seed, uint8_t *out, size_t len)
{
    assert(seed && len <= 64);
    uint8_t state[SHA1_LEN], block[SHA1_LEN];
    /* setSeed on a fresh SHA1PRNG: state = SHA1(seed). */
    sha1(seed, strlen(seed), state);
    for (size_t done = 0; done < len;) {
        sha1(state, sizeof state, block);
        sha1prng_update_state(state, block);
        size_t take = len - done < SHA1_LEN ? len - done : SHA1_LEN;
        memcpy(out + done, block, take);
        done += take;
    }
    OPENSSL_cleanse(state, sizeof state);
    OPENSSL_cleanse(block, sizeof block);
}

/* Cipher and key length for an encryptType, NULL if unknown. */
static const EVP_CIPHER *cipher_for(const char *encrypt_type, size_t *key_len)
{
    if (!encrypt_type)
        return NULL;
    if (strcmp(encrypt_type, "1") == 0) {
        *key_len = 32;
        return EVP_aes_256_cbc();
    }
    if (strcmp(encrypt_type, "2") == 0) {
        *key_len = 16;
        return EVP_aes_128_cbc();
    }
    return NULL;
}

static bool iv_valid(const char *iv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = iv[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

/* One CBC/PKCS#5 pass; returns the output length or -1. out must hold in_len + 16 bytes. */
static int cbc_run(const EVP_CIPHER *cipher, const uint8_t *key, const uint8_t *iv, int encrypt,
                   const uint8_t *in, size_t in_len, uint8_t *out)
{
    if (in_len > INT_MAX - 32)
        return -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return -1;
    int n1 = 0, n2 = 0;
    bool ok = EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, encrypt) == 1 &&
              EVP_CipherUpdate(ctx, out, &n1, in, (int)in_len) == 1 &&
              EVP_CipherFinal_ex(ctx, out + n1, &n2) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? n1 + n2 : -1;
}

char *appcrypt_encrypt(const char *seed, const char *encrypt_type, const char *plain,
                       const char *iv16)
{
    size_t key_len = 0;
    const EVP_CIPHER *cipher = cipher_for(encrypt_type, &key_len);
    if (!cipher || !seed || !plain)
        return NULL;
    char iv[APPCRYPT_IV_LEN + 1];
    if (iv16) {
        if (strlen(iv16) != APPCRYPT_IV_LEN || !iv_valid(iv16, APPCRYPT_IV_LEN))
            return NULL;
        memcpy(iv, iv16, sizeof iv);
    } else {
        rand_alnum(iv, APPCRYPT_IV_LEN);
    }
    uint8_t key[32];
    appcrypt_derive_key(seed, key, key_len);
    size_t plain_len = strlen(plain);
    uint8_t *ct = xmalloc(plain_len + 32);
    int ct_len =
        cbc_run(cipher, key, (const uint8_t *)iv, 1, (const uint8_t *)plain, plain_len, ct);
    OPENSSL_cleanse(key, sizeof key);
    char *wire = NULL;
    if (ct_len > 0) {
        char *b64 = b64_encode(ct, (size_t)ct_len);
        wire = xasprintf("%s%s", iv, b64);
        free(b64);
    }
    free(ct);
    return wire;
}

char *appcrypt_decrypt(const char *seed, const char *encrypt_type, const char *wire)
{
    size_t key_len = 0;
    const EVP_CIPHER *cipher = cipher_for(encrypt_type, &key_len);
    if (!cipher || !seed || !wire)
        return NULL;
    size_t wire_len = strlen(wire);
    /* At least the IV and one base64-encoded block. */
    if (wire_len < APPCRYPT_IV_LEN + 24 || !iv_valid(wire, APPCRYPT_IV_LEN))
        return NULL;
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    if (b64_decode(wire + APPCRYPT_IV_LEN, &ct, &ct_len) != 0)
        return NULL;
    if (ct_len == 0 || ct_len % 16 != 0) {
        free(ct);
        return NULL;
    }
    uint8_t key[32];
    appcrypt_derive_key(seed, key, key_len);
    uint8_t *plain = xmalloc(ct_len + 32);
    int plain_len = cbc_run(cipher, key, (const uint8_t *)wire, 0, ct, ct_len, plain);
    OPENSSL_cleanse(key, sizeof key);
    free(ct);
    /* A NUL inside would silently truncate the text for every caller: treat it as malformed. */
    if (plain_len < 0 || memchr(plain, '\0', (size_t)plain_len)) {
        xfree_secret(plain, ct_len + 32);
        return NULL;
    }
    plain[plain_len] = '\0';
    return (char *)plain;
}
