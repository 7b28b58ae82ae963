/* sdksign: the marketplace API gateway's AK/SK scheme (SDK-HMAC-SHA256) used for Query Order:
 *   CanonicalRequest = METHOD \n URI (ending in '/') \n sorted query \n headers \n signed \n hex(sha256(body))
 *   StringToSign     = "SDK-HMAC-SHA256\n" X-Sdk-Date "\n" hex(sha256(CanonicalRequest))
 *   Authorization    = "SDK-HMAC-SHA256 Access=<ak>, SignedHeaders=<h1;h2>, Signature=<hex hmac(sk)>" */
#ifndef KOOISV_SDKSIGN_H
#define KOOISV_SDKSIGN_H
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *method;      /* "GET" */
    const char *host;        /* host[:port] exactly as sent in the Host header */
    const char *path;        /* "/api/mkp-openapi-public/global/v1/order/query" */
    const char *query;       /* raw query without '?', may be "" */
    const char *sdk_date;    /* X-Sdk-Date, "yyyyMMdd'T'HHmmss'Z'" */
    const char *body;        /* may be NULL */
    size_t body_len;
} sdksign_request_t;

/* Authorization header value signing host and x-sdk-date. Caller owns the result. */
char *sdksign_authorization(const char *ak, const char *sk, const sdksign_request_t *req);
/* Verify an Authorization header against sk (for the emulator); false if malformed or wrong. */
bool sdksign_verify(const char *authorization, const char *ak, const char *sk,
                    const sdksign_request_t *req);
/* Current UTC time as X-Sdk-Date into out[17]. */
void sdksign_date_now(char out[17]);

#endif
