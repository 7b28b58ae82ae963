/* mktcall: one request to a kooisv production URL, signed as the marketplace signs it: a basic
 * interface call carries signature, timestamp and nonce in its query string (spec §2), a kit
 * sync call goes to <url>/produceAPI/v2/<name> with x-timestamp, x-nonce and x-sign headers
 * (spec §4). The signed payload is the body's canonical JSON, or its raw bytes when the body is
 * not JSON (so that a malformed body can still be sent correctly signed). Used by the
 * integration tests' client and by kooisvctl market. */
#ifndef KOOISV_MKTCALL_H
#define KOOISV_MKTCALL_H
#include <stdbool.h>
#include <stddef.h>

#include "httpc.h"

typedef struct {
    const char *url;       /* production URL, e.g. https://host:8443/produce */
    const char *kit_name;  /* kit sync interface ("tenantSync", ...); NULL = basic interface */
    const char *key;       /* the family's seller key: basic key, or kit key */
    const char *body;      /* request body (NULL = "") */
    const char *timestamp; /* Unix ms as text; NULL = not sent */
    const char *nonce;     /* NULL = not sent */
    const char *signature; /* NULL = computed from the above, "" = not sent, else sent as given */
} mktcall_spec_t;

typedef struct {
    char *url;        /* where to POST (basic: with the signing query string) */
    char *headers[5]; /* NULL-terminated "Name: value": content type, then the kit x-* headers */
    char *body;       /* the body as given */
    size_t body_len;
} mktcall_t;

/* The request spec describes. Caller destroys it. */
mktcall_t *mktcall_new(const mktcall_spec_t *spec);
/* Free *self_p and set it to NULL; safe on NULL. */
void mktcall_destroy(mktcall_t **self_p);
/* The signing query string of a basic call ("signature=..&timestamp=..&nonce=.."): the part of
 * url after '?', "" for a kit call. Borrowed from self. */
const char *mktcall_query(const mktcall_t *self);
/* A fresh timestamp (now, Unix ms) and nonce (32 random alphanumeric characters). */
void mktcall_fresh(char timestamp[24], char nonce[33]);
/* POST the request through httpc with opt; httpc_request's return convention (out always
 * filled, caller frees with httpc_response_free). */
int mktcall_send(const mktcall_t *self, const httpc_options_t *opt, httpc_response_t *out);
/* Body-Sign of answer r checked with key: 1 valid, 0 present but not valid, -1 absent. */
int mktcall_body_sign(const httpc_response_t *r, const char *key);

#endif
