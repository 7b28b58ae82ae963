/* mktcall: signed requests to a production URL (see mktcall.h). */
#include "mktcall.h"

#include <event2/http.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bodysign.h"
#include "canonjson.h"
#include "randutil.h"
#include "sigv2.h"
#include "timeutil.h"
#include "xmalloc.h"

#define CONTENT_TYPE "Content-Type: application/json;charset=UTF-8"

/* The payload both signature kinds cover: canonical JSON, else the raw bytes. Caller frees. */
static char *payload_of(const char *body, size_t len)
{
    json_error_t err;
    json_t *v = canonjson_parse(body, len, &err);
    char *canon = v ? canonjson_dump(v) : NULL;
    json_decref(v);
    return canon ? canon : xstrndup(body, len);
}

/* "name=<encoded value>", preceded by '&' when q already holds a parameter; nothing for NULL. */
static void query_add(char **q, const char *name, const char *value)
{
    if (!value)
        return;
    char *enc = evhttp_uriencode(value, -1, 0);
    char *next = xasprintf("%s%s%s=%s", *q, **q ? "&" : "", name, enc);
    free(enc);
    free(*q);
    *q = next;
}

/* Trailing '/' removed. Caller frees. */
static char *strip_slash(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    return xstrndup(s, n);
}

mktcall_t *mktcall_new(const mktcall_spec_t *spec)
{
    mktcall_t *self = xcalloc(1, sizeof *self);
    const char *body = spec->body ? spec->body : "";
    self->body_len = strlen(body);
    self->body = xstrndup(body, self->body_len);
    char computed[65];
    const char *signature = spec->signature;
    if (!signature) {
        char *payload = payload_of(body, self->body_len);
        sigv2_sign(spec->kit_name ? SIGV2_KIT : SIGV2_BASIC, spec->key ? spec->key : "",
                   spec->nonce ? spec->nonce : "", spec->timestamp ? spec->timestamp : "", payload,
                   strlen(payload), computed);
        free(payload);
        signature = computed;
    }
    char *base = strip_slash(spec->url ? spec->url : "");
    size_t n = 0;
    self->headers[n++] = xstrdup(CONTENT_TYPE);
    if (spec->kit_name) {
        self->url = xasprintf("%s/produceAPI/v2/%s", base, spec->kit_name);
        if (spec->timestamp)
            self->headers[n++] = xasprintf("x-timestamp: %s", spec->timestamp);
        if (spec->nonce)
            self->headers[n++] = xasprintf("x-nonce: %s", spec->nonce);
        if (*signature)
            self->headers[n++] = xasprintf("x-sign: %s", signature);
    } else {
        char *q = xstrdup("");
        query_add(&q, "signature", *signature ? signature : NULL);
        query_add(&q, "timestamp", spec->timestamp);
        query_add(&q, "nonce", spec->nonce);
        self->url = xasprintf("%s?%s", base, q);
        free(q);
    }
    free(base);
    return self;
}

void mktcall_destroy(mktcall_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mktcall_t *self = *self_p;
    free(self->url);
    for (size_t i = 0; self->headers[i]; i++)
        free(self->headers[i]);
    free(self->body);
    free(self);
    *self_p = NULL;
}

const char *mktcall_query(const mktcall_t *self)
{
    const char *q = strchr(self->url, '?');
    return q ? q + 1 : "";
}

void mktcall_fresh(char timestamp[24], char nonce[33])
{
    snprintf(timestamp, 24, "%lld", (long long)time_now_ms());
    rand_alnum(nonce, 32);
}

int mktcall_send(const mktcall_t *self, const httpc_options_t *opt, httpc_response_t *out)
{
    return httpc_request("POST", self->url, (const char *const *)self->headers, self->body,
                         self->body_len, opt, out);
}

int mktcall_body_sign(const httpc_response_t *r, const char *key)
{
    const char *header = httpc_header(r, "Body-Sign");
    if (!header)
        return -1;
    return key && bodysign_verify(key, r->body ? r->body : "", r->body ? r->body_len : 0, header)
               ? 1
               : 0;
}
