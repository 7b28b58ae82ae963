#include "rsaoaep.h"
#include "cryptoutil.h"
#include "xmalloc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#define RSAOAEP_MIN_BITS 3072

/* Java providers disagree on OAEP defaults; these are the combinations seen in the wild. */
static const struct {
    const char *oaep_md;
    const char *mgf1_md;
} variants[] = {
    {"SHA256", "SHA1"},
    {"SHA256", "SHA256"},
    {"SHA1", "SHA1"},
};
#define VARIANT_COUNT (int)(sizeof variants / sizeof variants[0])

/* key if it is RSA of at least RSAOAEP_MIN_BITS, else NULL (key freed, why set). */
static EVP_PKEY *rsa_strong(EVP_PKEY *key, const char **why)
{
    if (!EVP_PKEY_is_a(key, "RSA")) {
        EVP_PKEY_free(key);
        *why = "the key is not RSA";
        return NULL;
    }
    if (EVP_PKEY_get_bits(key) < RSAOAEP_MIN_BITS) {
        EVP_PKEY_free(key);
        *why = "RSA key shorter than 3072 bits";
        return NULL;
    }
    *why = NULL;
    return key;
}

/* The PEM key in path, read by read (PEM_read_bio_PrivateKey or PEM_read_bio_PUBKEY), checked
 * by rsa_strong; NULL with *why set to cannot_open, not_pem or rsa_strong's reason. */
static EVP_PKEY *load_pem(const char *path, const char **why,
                          EVP_PKEY *(*read)(BIO *, EVP_PKEY **, pem_password_cb *, void *),
                          const char *cannot_open, const char *not_pem)
{
    const char *unused;
    if (!why)
        why = &unused;
    BIO *bio = path ? BIO_new_file(path, "r") : NULL;
    if (!bio) {
        ERR_clear_error();
        *why = cannot_open;
        return NULL;
    }
    EVP_PKEY *key = read(bio, NULL, pem_no_passphrase, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (!key) {
        *why = not_pem;
        return NULL;
    }
    return rsa_strong(key, why);
}

EVP_PKEY *rsaoaep_load_private(const char *path, const char **why)
{
    return load_pem(path, why, PEM_read_bio_PrivateKey, "cannot open the private key file",
                    "not a readable PEM private key (encrypted keys are not supported)");
}

EVP_PKEY *rsaoaep_load_public(const char *path, const char **why)
{
    return load_pem(path, why, PEM_read_bio_PUBKEY, "cannot open the public key file",
                    "not a PEM public key");
}

/* A context for variant v ready to encrypt (encrypt=true) or decrypt; NULL on failure. */
static EVP_PKEY_CTX *oaep_ctx(EVP_PKEY *key, int v, bool encrypt)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    if (!ctx)
        return NULL;
    const EVP_MD *oaep = EVP_get_digestbyname(variants[v].oaep_md);
    const EVP_MD *mgf1 = EVP_get_digestbyname(variants[v].mgf1_md);
    bool ok = oaep && mgf1 &&
              (encrypt ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) == 1 &&
              EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
              EVP_PKEY_CTX_set_rsa_oaep_md(ctx, oaep) == 1 &&
              EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1) == 1;
    if (!ok) {
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int rsaoaep_decrypt(EVP_PKEY *key, const char *b64, char **plain, size_t *plain_len)
{
    if (!key || !b64 || !plain || !plain_len)
        return -1;
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    if (b64_decode(b64, &ct, &ct_len) != 0)
        return -1;
    int rc = -1;
    size_t cap = (size_t)EVP_PKEY_get_size(key);
    if (ct_len == 0 || ct_len != cap) {
        free(ct);
        return -1;
    }
    uint8_t *out = xmalloc(cap + 1);
    for (int v = 0; v < VARIANT_COUNT && rc != 0; v++) {
        EVP_PKEY_CTX *ctx = oaep_ctx(key, v, false);
        size_t out_len = cap;
        if (ctx && EVP_PKEY_decrypt(ctx, out, &out_len, ct, ct_len) == 1) {
            out[out_len] = '\0';
            *plain = (char *)out;
            *plain_len = out_len;
            rc = 0;
        }
        EVP_PKEY_CTX_free(ctx);
    }
    /* Failed variants leave errors queued; they are expected and must not leak into later
     * unrelated OpenSSL error reports. */
    ERR_clear_error();
    free(ct);
    if (rc != 0)
        xfree_secret(out, cap + 1);
    return rc;
}

char *rsaoaep_encrypt(EVP_PKEY *key, int variant, const void *plain, size_t len)
{
    if (!key || variant < 0 || variant >= VARIANT_COUNT)
        return NULL;
    EVP_PKEY_CTX *ctx = oaep_ctx(key, variant, true);
    if (!ctx) {
        ERR_clear_error();
        return NULL;
    }
    size_t cap = (size_t)EVP_PKEY_get_size(key), out_len = cap;
    uint8_t *out = xmalloc(cap);
    char *text = NULL;
    if (EVP_PKEY_encrypt(ctx, out, &out_len, plain, len) == 1)
        text = b64_encode(out, out_len);
    else
        ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    free(out);
    return text;
}
