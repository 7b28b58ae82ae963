#include "sealbox.h"
#include "cryptoutil.h"
#include "randutil.h"
#include "xmalloc.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define SEALBOX_PREFIX "v1:"
#define SEALBOX_NONCE_LEN 12
#define SEALBOX_TAG_LEN 16

int sealbox_parse_key(const char *text, uint8_t key[32])
{
    if (!text)
        return -1;
    size_t n = strlen(text);
    if (n == 64) {
        uint8_t tmp[32];
        if (!hex_decode(text, tmp, sizeof tmp))
            return -1;
        memcpy(key, tmp, 32);
        OPENSSL_cleanse(tmp, sizeof tmp);
        return 0;
    }
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    if (b64_decode(text, &raw, &raw_len) != 0)
        return -1;
    int rc = -1;
    if (raw_len == 32) {
        memcpy(key, raw, 32);
        rc = 0;
    }
    xfree_secret(raw, raw_len + 1);
    return rc;
}

char *sealbox_seal(const uint8_t key[32], const char *aad, const void *plain, size_t len)
{
    if (!aad)
        aad = "";
    if (len > (size_t)INT_MAX - 64)
        return NULL;
    size_t aad_len = strlen(aad);
    size_t total = SEALBOX_NONCE_LEN + len + SEALBOX_TAG_LEN;
    uint8_t *buf = xmalloc(total);
    uint8_t *nonce = buf, *ct = buf + SEALBOX_NONCE_LEN, *tag = ct + len;
    rand_bytes(nonce, SEALBOX_NONCE_LEN);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
              (aad_len == 0 ||
               EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)aad_len) == 1) &&
              (len == 0 || EVP_EncryptUpdate(ctx, ct, &n, plain, (int)len) == 1) &&
              EVP_EncryptFinal_ex(ctx, ct + (len ? n : 0), &fin) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEALBOX_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    char *text = NULL;
    if (ok) {
        char *b64 = b64_encode(buf, total);
        text = xasprintf(SEALBOX_PREFIX "%s", b64);
        free(b64);
    }
    free(buf);
    return text;
}

int sealbox_open(const uint8_t key[32], const char *aad, const char *sealed, char **out,
                 size_t *out_len)
{
    if (!aad)
        aad = "";
    if (!sealed || strncmp(sealed, SEALBOX_PREFIX, strlen(SEALBOX_PREFIX)) != 0)
        return -1;
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    if (b64_decode(sealed + strlen(SEALBOX_PREFIX), &raw, &raw_len) != 0)
        return -1;
    if (raw_len < SEALBOX_NONCE_LEN + SEALBOX_TAG_LEN || raw_len > (size_t)INT_MAX) {
        free(raw);
        return -1;
    }
    size_t aad_len = strlen(aad);
    size_t ct_len = raw_len - SEALBOX_NONCE_LEN - SEALBOX_TAG_LEN;
    uint8_t *nonce = raw, *ct = raw + SEALBOX_NONCE_LEN, *tag = ct + ct_len;
    char *plain = xmalloc(ct_len + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
              (aad_len == 0 ||
               EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)aad_len) == 1) &&
              (ct_len == 0 || EVP_DecryptUpdate(ctx, (uint8_t *)plain, &n, ct, (int)ct_len) == 1) &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEALBOX_TAG_LEN, tag) == 1 &&
              EVP_DecryptFinal_ex(ctx, (uint8_t *)plain + (ct_len ? n : 0), &fin) == 1;
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    if (!ok) {
        xfree_secret(plain, ct_len + 1);
        return -1;
    }
    plain[ct_len] = '\0';
    *out = plain;
    *out_len = ct_len;
    return 0;
}
