#include "cryptoutil.h"
#include "xmalloc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

/* A failing digest means a broken OpenSSL, not bad input: a wrong MAC would be worse than a stop.
 */
static void crypto_fatal(const char *what)
{
    fprintf(stderr, "level=error msg=\"crypto primitive failed\" op=%s\n", what);
    abort();
}

/* OpenSSL's one-shot HMAC() and a legacy EVP_sha256() look the algorithm up by name on every
 * call (a locked store, string compares, parameter lists): more than the hash itself costs for
 * the short texts signed here. The algorithms are fetched once per process, and each thread
 * keeps one HMAC context that every call rekeys. */
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_alg;
static EVP_MD *sha256_alg;
static pthread_key_t hmac_ctx_key;

static void hmac_ctx_free(void *ctx)
{
    EVP_MAC_CTX_free(ctx);
}

static void algs_fetch(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    sha256_alg = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!hmac_alg || !sha256_alg || pthread_key_create(&hmac_ctx_key, hmac_ctx_free) != 0)
        crypto_fatal("fetch");
}

/* This thread's HMAC-SHA256 context (made on first use, freed when the thread ends). */
static EVP_MAC_CTX *thread_hmac(void)
{
    pthread_once(&algs_once, algs_fetch);
    EVP_MAC_CTX *ctx = pthread_getspecific(hmac_ctx_key);
    if (ctx)
        return ctx;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    ctx = EVP_MAC_CTX_new(hmac_alg);
    if (!ctx || !EVP_MAC_CTX_set_params(ctx, params) ||
        pthread_setspecific(hmac_ctx_key, ctx) != 0)
        crypto_fatal("hmac-sha256 context");
    return ctx;
}

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[32])
{
    static const uint8_t empty[1] = {0};
    size_t out_len = 0;
    /* Never a NULL key: EVP_MAC_init would keep the thread's previous key. */
    if (!key || key_len == 0) {
        key = empty;
        key_len = 0;
    }
    if (!data)
        data = empty;
    EVP_MAC_CTX *ctx = thread_hmac();
    if (!EVP_MAC_init(ctx, key, key_len, NULL) || !EVP_MAC_update(ctx, data, len) ||
        !EVP_MAC_final(ctx, out, &out_len, 32) || out_len != 32)
        crypto_fatal("hmac-sha256");
}

void sha256(const void *data, size_t len, uint8_t out[32])
{
    static const uint8_t empty[1] = {0};
    unsigned int out_len = 0;
    pthread_once(&algs_once, algs_fetch);
    if (!EVP_Digest(data ? data : empty, len, out, &out_len, sha256_alg, NULL) || out_len != 32)
        crypto_fatal("sha256");
}

char *hex_encode(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0f];
    }
    out[2 * len] = '\0';
    return out;
}

int pem_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int hex_digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool hex_decode(const char *hex, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int hi = hex_digit_value(hex[2 * i]), lo = hi < 0 ? -1 : hex_digit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(out, len);
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

char *b64_encode(const uint8_t *bytes, size_t len)
{
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    size_t done = 0, o = 0;
    /* EVP_EncodeBlock takes an int length: feed it in chunks that are a multiple of 3. */
    while (done < len) {
        size_t chunk = len - done;
        if (chunk > 3u * (1u << 28))
            chunk = 3u * (1u << 28);
        o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, bytes + done, (int)chunk);
        done += chunk;
    }
    out[o] = '\0';
    return out;
}

/* Value of one base64 alphabet character, -1 for anything else (including '='). */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int b64_decode(const char *text, uint8_t **out, size_t *out_len)
{
    if (!text || !out || !out_len)
        return -1;
    size_t n = strlen(text);
    if (n % 4 != 0)
        return -1;
    size_t pad = 0;
    if (n >= 1 && text[n - 1] == '=')
        pad++;
    if (n >= 2 && text[n - 2] == '=')
        pad++;
    uint8_t *buf = xmalloc(n / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        for (size_t j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)text[i + j];
            /* '=' only in the final one or two positions of the final group. */
            if (c == '=' && last && j >= 4 - pad) {
                v[j] = 0;
                continue;
            }
            v[j] = b64_value(c);
            if (v[j] < 0) {
                free(buf);
                return -1;
            }
        }
        uint32_t triple =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        buf[o++] = (uint8_t)(triple >> 16);
        if (!last || pad < 2)
            buf[o++] = (uint8_t)(triple >> 8);
        if (!last || pad < 1)
            buf[o++] = (uint8_t)triple;
    }
    buf[o] = 0;
    *out = buf;
    *out_len = o;
    return 0;
}

/* ASCII lower-casing without a data-dependent branch. */
static unsigned char fold_case(unsigned char c)
{
    unsigned int is_upper = (unsigned int)(c - 'A') < 26u;
    return (unsigned char)(c | (unsigned char)(is_upper << 5));
}

bool hex_equal_ci(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t n = strlen(a);
    if (strlen(b) != n)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= fold_case((unsigned char)a[i]) ^ fold_case((unsigned char)b[i]);
    return diff == 0;
}

bool bytes_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}
