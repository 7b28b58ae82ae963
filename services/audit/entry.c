#include "entry.h"

#include <stdlib.h>
#include <string.h>

#include "cryptoutil.h"
#include "xmalloc.h"

/* ---------------------------------------------------------------- cleaning */

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

char *entry_clean_text(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p);
    /* Worst case every byte becomes the 3-byte U+FFFD. */
    char *out = xmalloc(n * 3 + 1);
    size_t o = 0;
    while (*p) {
        size_t len = utf8_len(p, n);
        const char *piece;
        char one;
        size_t plen;
        if (len == 0) {
            piece = "\xef\xbf\xbd";
            plen = 3;
            len = 1;
        } else if (len == 1 && (*p < 0x20 || *p == 0x7f)) {
            one = ' ';
            piece = &one;
            plen = 1;
        } else {
            piece = (const char *)p;
            plen = len;
        }
        if (o + plen > max)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        p += len;
        n -= len;
    }
    out[o] = '\0';
    return out;
}

bool entry_resource_kind_allowed(const char *kind)
{
    static const char *const allowed[] = {
        "instance", "order", "order_line", "tenant",  "app",        "org",   "user",
        "token",    "product", "event",    "job",     "outbox",     "service", "records",
        "usage_push", "export"};
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (kind && strcmp(kind, allowed[i]) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- intake */

const char *entry_intent_from_envelope(entry_intent_t *self, const Kooisv__Envelope *env)
{
    memset(self, 0, sizeof *self);
    const Kooisv__AuditIntent *in = env->audit_intent;
    if (env->body_case != KOOISV__ENVELOPE__BODY_AUDIT_INTENT || !in)
        return "not an audit intent";
    /* The request id keys idempotency: never cut it, refuse it. */
    if (!env->request_id || !*env->request_id || strlen(env->request_id) > ENTRY_MAX_ID)
        return "request_id missing or longer than 128 bytes";
    if (env->received_ms <= 0)
        return "received_ms missing";
    if (!in->event_type || !*in->event_type)
        return "event_type missing";
    if (in->n_resources > ENTRY_MAX_RESOURCES)
        return "more than 128 resources";
    for (size_t i = 0; i < in->n_resources; i++)
        if (!in->resources[i] || !entry_resource_kind_allowed(in->resources[i]->kind))
            return "resource kind not allowed";
    bool rejected = in->reject_code && *in->reject_code;
    const char *caller_id = env->caller ? env->caller->id : "";
    if (in->nonce && *in->nonce && !rejected && !(caller_id && *caller_id))
        return "caller id missing for a nonce check";

    self->request_id = entry_clean_text(env->request_id, ENTRY_MAX_ID);
    self->trace_id = entry_clean_text(env->trace_id, ENTRY_MAX_ID);
    self->received_ms = env->received_ms;
    self->caller_kind = entry_clean_text(env->caller ? env->caller->kind : "", ENTRY_MAX_KIND);
    self->caller_id = entry_clean_text(caller_id, ENTRY_MAX_ID);
    self->event_type = entry_clean_text(in->event_type, ENTRY_MAX_EVENT);
    self->nresources = in->n_resources;
    self->resources = xcalloc(in->n_resources ? in->n_resources : 1, sizeof *self->resources);
    for (size_t i = 0; i < in->n_resources; i++) {
        self->resources[i].kind = entry_clean_text(in->resources[i]->kind, ENTRY_MAX_KIND);
        self->resources[i].id = entry_clean_text(in->resources[i]->id, ENTRY_MAX_RESOURCE_ID);
    }
    self->source_addr = entry_clean_text(env->source_addr, ENTRY_MAX_ADDR);
    self->test_flag = env->test_flag;
    self->nonce = entry_clean_text(in->nonce, ENTRY_MAX_ID);
    self->nonce_ts_ms = in->nonce_ts_ms;
    self->reject_reason = entry_clean_text(in->reject_reason, ENTRY_MAX_TEXT);
    self->reject_code = entry_clean_text(in->reject_code, ENTRY_MAX_KIND);
    return NULL;
}

const char *entry_outcome_from_envelope(entry_outcome_t *self, const Kooisv__Envelope *env,
                                        int64_t recorded_ms)
{
    memset(self, 0, sizeof *self);
    if (env->body_case != KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME || !env->audit_outcome)
        return "not an audit outcome";
    return entry_outcome_from(self, env->request_id, env->audit_outcome, recorded_ms);
}

const char *entry_outcome_from(entry_outcome_t *self, const char *request_id,
                               const Kooisv__AuditOutcome *out, int64_t recorded_ms)
{
    memset(self, 0, sizeof *self);
    if (!out)
        return "not an audit outcome";
    if (!request_id || !*request_id || strlen(request_id) > ENTRY_MAX_ID)
        return "request_id missing or longer than 128 bytes";
    if (!out->result_code || !*out->result_code)
        return "result_code missing";
    self->request_id = entry_clean_text(request_id, ENTRY_MAX_ID);
    self->recorded_ms = recorded_ms;
    self->result_code = entry_clean_text(out->result_code, ENTRY_MAX_KIND);
    self->result_msg = entry_clean_text(out->result_msg, ENTRY_MAX_TEXT);
    self->latency_us = out->latency_us;
    self->http_status = out->http_status;
    return NULL;
}

void entry_intent_clear(entry_intent_t *self)
{
    free(self->request_id);
    free(self->trace_id);
    free(self->caller_kind);
    free(self->caller_id);
    free(self->event_type);
    for (size_t i = 0; i < self->nresources; i++) {
        free(self->resources[i].kind);
        free(self->resources[i].id);
    }
    free(self->resources);
    free(self->source_addr);
    free(self->nonce);
    free(self->reject_reason);
    free(self->reject_code);
    memset(self, 0, sizeof *self);
}

void entry_outcome_clear(entry_outcome_t *self)
{
    free(self->request_id);
    free(self->result_code);
    free(self->result_msg);
    memset(self, 0, sizeof *self);
}

/* ---------------------------------------------------------------- canonical content */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} content_t;

static void put(content_t *c, const void *p, size_t n)
{
    if (c->len + n > c->cap) {
        c->cap = (c->len + n) * 2 + 64;
        c->buf = xrealloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
}

static void put_u32(content_t *c, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(c, b, 4);
}

static void put_i64(content_t *c, int64_t sv)
{
    uint64_t v = (uint64_t)sv;
    uint8_t b[8];
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
    put(c, b, 8);
}

static void put_str(content_t *c, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u32(c, (uint32_t)n);
    put(c, s ? s : "", n);
}

static void put_bool(content_t *c, bool b)
{
    uint8_t v = b ? 1 : 0;
    put(c, &v, 1);
}

/* Every record's content opens alike: its kind ('I' intent, 'O' outcome), seq, request id. */
static content_t content_open(char kind, int64_t seq, const char *request_id)
{
    content_t c = {0};
    put(&c, &kind, 1);
    put_i64(&c, seq);
    put_str(&c, request_id);
    return c;
}

size_t entry_intent_content(const entry_intent_t *self, uint8_t **out)
{
    content_t c = content_open('I', self->seq, self->request_id);
    put_str(&c, self->trace_id);
    put_i64(&c, self->received_ms);
    put_str(&c, self->caller_kind);
    put_str(&c, self->caller_id);
    put_str(&c, self->event_type);
    put_u32(&c, (uint32_t)self->nresources);
    for (size_t i = 0; i < self->nresources; i++) {
        put_str(&c, self->resources[i].kind);
        put_str(&c, self->resources[i].id);
    }
    put_str(&c, self->source_addr);
    put_bool(&c, self->test_flag);
    put_str(&c, self->nonce);
    put_i64(&c, self->nonce_ts_ms);
    put_str(&c, self->reject_reason);
    put_str(&c, self->reject_code);
    *out = c.buf;
    return c.len;
}

size_t entry_outcome_content(const entry_outcome_t *self, uint8_t **out)
{
    content_t c = content_open('O', self->seq, self->request_id);
    put_i64(&c, self->recorded_ms);
    put_str(&c, self->result_code);
    put_str(&c, self->result_msg);
    put_i64(&c, self->latency_us);
    put_i64(&c, self->http_status);
    *out = c.buf;
    return c.len;
}

bool entry_hash_from_hex(const char *hex, uint8_t out[ENTRY_HASH_LEN])
{
    memset(out, 0, ENTRY_HASH_LEN);
    if (!hex || strlen(hex) != 2 * ENTRY_HASH_LEN)
        return false;
    return hex_decode(hex, out, ENTRY_HASH_LEN);
}

void entry_chain_hash(const entry_chain_t *chain, int64_t seq, const uint8_t prev[ENTRY_HASH_LEN],
                      const uint8_t *content, size_t len, uint8_t out[ENTRY_HASH_LEN])
{
    uint8_t *buf = xmalloc(ENTRY_HASH_LEN + len);
    memcpy(buf, prev, ENTRY_HASH_LEN);
    memcpy(buf + ENTRY_HASH_LEN, content, len);
    if (chain && seq >= chain->keyed_from)
        hmac_sha256(chain->key, chain->key_len, buf, ENTRY_HASH_LEN + len, out);
    else
        sha256(buf, ENTRY_HASH_LEN + len, out);
    free(buf);
}

void entry_intent_hash(const entry_intent_t *self, const entry_chain_t *chain,
                       const uint8_t prev[ENTRY_HASH_LEN], uint8_t out[ENTRY_HASH_LEN])
{
    uint8_t *content = NULL;
    size_t len = entry_intent_content(self, &content);
    entry_chain_hash(chain, self->seq, prev, content, len, out);
    free(content);
}

void entry_outcome_hash(const entry_outcome_t *self, const entry_chain_t *chain,
                        const uint8_t prev[ENTRY_HASH_LEN], uint8_t out[ENTRY_HASH_LEN])
{
    uint8_t *content = NULL;
    size_t len = entry_outcome_content(self, &content);
    entry_chain_hash(chain, self->seq, prev, content, len, out);
    free(content);
}
