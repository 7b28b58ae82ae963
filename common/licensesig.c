#include "licensesig.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cryptoutil.h"
#include "xmalloc.h"

#define LICENSESIG_PREFIX "KL2."
#define LICENSESIG_SIG_LEN 64

struct licensesig_t {
    EVP_PKEY *key;
    char *public_pem;
    char kid[17];
};

/* base64url without padding (RFC 4648 §5). Caller owns the result. */
static char *b64url_encode(const uint8_t *bytes, size_t len)
{
    char *s = b64_encode(bytes, len);
    size_t n = 0;
    for (char *p = s; *p && *p != '='; p++, n++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    s[n] = '\0';
    return s;
}

/* Decode n characters of base64url without padding; -1 on anything else. */
static int b64url_decode(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
    if (n % 4 == 1 ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") < n)
        return -1;
    char *std = xmalloc(n + 3);
    for (size_t i = 0; i < n; i++)
        std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    size_t m = n;
    while (m % 4)
        std[m++] = '=';
    std[m] = '\0';
    int rc = b64_decode(std, out, out_len);
    free(std);
    return rc;
}

/* The key id of an Ed25519 key: first 16 hex digits of SHA-256 of its raw public key. */
static int key_id(EVP_PKEY *key, char kid[17])
{
    uint8_t raw[32], digest[32];
    size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != sizeof raw)
        return -1;
    sha256(raw, len, digest);
    char hex[65];
    hex_encode(digest, sizeof digest, hex);
    memcpy(kid, hex, 16);
    kid[16] = '\0';
    return 0;
}

licensesig_t *licensesig_new(const char *pem, char *why, size_t whylen)
{
    BIO *bio = BIO_new_mem_buf(pem ? pem : "", -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, pem_no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (!key) {
        snprintf(why, whylen, "not a PEM private key without passphrase");
        return NULL;
    }
    if (EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(key);
        snprintf(why, whylen, "must be an Ed25519 key (openssl genpkey -algorithm ed25519)");
        return NULL;
    }
    licensesig_t *self = xcalloc(1, sizeof *self);
    self->key = key;
    BIO *out = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n = out && PEM_write_bio_PUBKEY(out, key) == 1 ? BIO_get_mem_data(out, &data) : 0;
    if (n > 0)
        self->public_pem = xstrndup(data, (size_t)n);
    BIO_free(out);
    if (!self->public_pem || key_id(key, self->kid) != 0) {
        snprintf(why, whylen, "cannot derive the public key");
        licensesig_destroy(&self);
        return NULL;
    }
    return self;
}

void licensesig_destroy(licensesig_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    EVP_PKEY_free((*self_p)->key); /* OpenSSL wipes the private key */
    free((*self_p)->public_pem);
    free(*self_p);
    *self_p = NULL;
}

const char *licensesig_public_pem(const licensesig_t *self)
{
    return self->public_pem;
}

const char *licensesig_key_id(const licensesig_t *self)
{
    return self->kid;
}

char *licensesig_sign(const licensesig_t *self, json_t *payload)
{
    if (!json_is_object(payload))
        return NULL;
    json_object_set_new(payload, "kid", json_string(self->kid));
    char *text = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return NULL;
    char *b64 = b64url_encode((const uint8_t *)text, strlen(text));
    free(text);
    char *signed_part = xasprintf(LICENSESIG_PREFIX "%s", b64);
    free(b64);
    uint8_t sig[LICENSESIG_SIG_LEN];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, self->key) == 1 &&
              EVP_DigestSign(ctx, sig, &sig_len, (const uint8_t *)signed_part,
                             strlen(signed_part)) == 1 &&
              sig_len == sizeof sig;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        free(signed_part);
        return NULL;
    }
    char *sig_text = b64url_encode(sig, sig_len);
    char *license = xasprintf("%s.%s", signed_part, sig_text);
    free(signed_part);
    free(sig_text);
    return license;
}

static EVP_PKEY *public_key_parse(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem ? pem : "", -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, pem_no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (key && EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    return key;
}

int licensesig_verify(const char *public_pem, const char *license, json_t **payload_out, char *why,
                      size_t whylen)
{
    if (payload_out)
        *payload_out = NULL;
    EVP_PKEY *key = public_key_parse(public_pem);
    if (!key) {
        snprintf(why, whylen, "the public key is not a PEM Ed25519 public key");
        return -1;
    }
    int rc = -1;
    uint8_t *payload = NULL, *sig = NULL;
    size_t payload_len = 0, sig_len = 0;
    json_t *doc = NULL;
    const char *prefix = LICENSESIG_PREFIX, *body, *dot;
    size_t plen = strlen(prefix);
    if (!license || strncmp(license, "KL1.", 4) == 0) {
        snprintf(why, whylen, "%s",
                 license ? "a KL1 license (HMAC, issued before Ed25519 "
                           "signing): only the order service can check it"
                         : "no license");
        goto done;
    }
    if (strncmp(license, prefix, plen) != 0 || !(dot = strchr(body = license + plen, '.')) ||
        strchr(dot + 1, '.') ||
        b64url_decode(body, (size_t)(dot - body), &payload, &payload_len) != 0 ||
        b64url_decode(dot + 1, strlen(dot + 1), &sig, &sig_len) != 0 ||
        sig_len != LICENSESIG_SIG_LEN) {
        snprintf(why, whylen, "not a license: KL2.<base64url payload>.<base64url signature>");
        goto done;
    }
    json_error_t jerr;
    doc = json_loadb((const char *)payload, payload_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        snprintf(why, whylen, "the license payload is not a JSON object");
        goto done;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool holds =
        ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
        EVP_DigestVerify(ctx, sig, sig_len, (const uint8_t *)license, (size_t)(dot - license)) == 1;
    EVP_MD_CTX_free(ctx);
    if (!holds) {
        char kid[17] = "";
        const char *signer = json_string_value(json_object_get(doc, "kid"));
        bool hex_kid = signer && strlen(signer) == 16 && strspn(signer, "0123456789abcdef") == 16;
        if (key_id(key, kid) == 0 && hex_kid && strcmp(signer, kid) != 0)
            snprintf(why, whylen, "signature does not hold: signed by key %s, not this key %s",
                     signer, kid);
        else
            snprintf(why, whylen, "signature does not hold");
        goto done;
    }
    rc = 0;
    if (payload_out) {
        *payload_out = doc;
        doc = NULL;
    }
done:
    json_decref(doc);
    free(payload);
    free(sig);
    EVP_PKEY_free(key);
    return rc;
}
