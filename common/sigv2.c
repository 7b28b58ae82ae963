#include "sigv2.h"
#include "cryptoutil.h"
#include "xmalloc.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

/* Nonces longer than this are not something the marketplace sends; refuse before hashing. */
#define SIGV2_NONCE_MAX 128
/* 15 digits of milliseconds reach the year 33658 and cannot overflow int64. */
#define SIGV2_TIMESTAMP_MAX_DIGITS 15

void sigv2_sign(sigv2_kind_t kind, const char *key, const char *nonce, const char *timestamp,
                const char *payload, size_t len, char out[65])
{
    size_t key_len = strlen(key), nonce_len = strlen(nonce), ts_len = strlen(timestamp);
    char inner_hex[65];
    const char *tail = payload;
    size_t tail_len = len;
    uint8_t mac[32];
    if (kind == SIGV2_BASIC) {
        /* Basic interfaces hash the payload first and sign its hex. */
        hmac_sha256(key, key_len, payload, len, mac);
        hex_encode(mac, sizeof mac, inner_hex);
        tail = inner_hex;
        tail_len = 64;
    }
    size_t total = key_len + nonce_len + ts_len + tail_len;
    char *text = xmalloc(total + 1);
    memcpy(text, key, key_len);
    memcpy(text + key_len, nonce, nonce_len);
    memcpy(text + key_len + nonce_len, timestamp, ts_len);
    if (tail_len)
        memcpy(text + key_len + nonce_len + ts_len, tail, tail_len);
    text[total] = '\0';
    hmac_sha256(key, key_len, text, total, mac);
    hex_encode(mac, sizeof mac, out);
    /* The buffer starts with the key. */
    xfree_secret(text, total + 1);
    OPENSSL_cleanse(mac, sizeof mac);
}

static bool timestamp_valid(const char *ts, int64_t *value)
{
    if (!ts)
        return false;
    size_t n = strlen(ts);
    if (n == 0 || n > SIGV2_TIMESTAMP_MAX_DIGITS)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (ts[i] < '0' || ts[i] > '9')
            return false;
        v = v * 10 + (ts[i] - '0');
    }
    *value = v;
    return true;
}

static bool nonce_valid(const char *nonce)
{
    return nonce && nonce[0] && strnlen(nonce, SIGV2_NONCE_MAX + 1) <= SIGV2_NONCE_MAX;
}

static bool signature_matches(const sigv2_check_t *c, const char *payload, size_t len)
{
    char expected[65];
    sigv2_sign(c->kind, c->key, c->nonce, c->timestamp, payload, len, expected);
    return hex_equal_ci(expected, c->signature);
}

sigv2_result_t sigv2_precheck(const sigv2_check_t *check)
{
    int64_t ts;
    if (!timestamp_valid(check->timestamp, &ts) || !nonce_valid(check->nonce))
        return SIGV2_NO_TIMESTAMP;
    int64_t window = check->window_ms > 0 ? check->window_ms : SIGV2_WINDOW_MS;
    int64_t skew = check->now_ms - ts;
    if (skew > window || skew < -window)
        return SIGV2_STALE;
    if (!check->signature || !check->signature[0])
        return SIGV2_NO_SIGNATURE;
    if (!check->key || !check->key[0] || strlen(check->signature) != 64)
        return SIGV2_BAD_SIGNATURE;
    for (const char *p = check->signature; *p; p++)
        if (!isxdigit((unsigned char)*p))
            return SIGV2_BAD_SIGNATURE;
    return SIGV2_OK;
}

sigv2_result_t sigv2_verify(const sigv2_check_t *check)
{
    sigv2_result_t pre = sigv2_precheck(check);
    if (pre != SIGV2_OK)
        return pre;
    if (check->canonical && signature_matches(check, check->canonical, check->canonical_len))
        return SIGV2_OK;
    /* Senders that sign the body as they wrote it, not its canonical form. */
    if (check->raw && signature_matches(check, check->raw, check->raw_len))
        return SIGV2_OK_RAW;
    return SIGV2_BAD_SIGNATURE;
}

const char *sigv2_reason(sigv2_result_t r)
{
    switch (r) {
    case SIGV2_OK:
        return "signature valid";
    case SIGV2_OK_RAW:
        return "signature valid over the raw body";
    case SIGV2_NO_TIMESTAMP:
        return "timestamp or nonce missing or malformed";
    case SIGV2_STALE:
        return "timestamp outside the allowed window";
    case SIGV2_NO_SIGNATURE:
        return "signature missing";
    case SIGV2_BAD_SIGNATURE:
        return "signature mismatch";
    }
    return "unknown signature result";
}
