#include "admin.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auditq.h"
#include "basicreq.h"
#include "config.h"
#include "cryptoutil.h"
#include "dispatch.h"
#include "gateway.h"
#include "log.h"
#include "netaddr.h"
#include "peer.h"
#include "randutil.h"
#include "timeutil.h"
#include "xmalloc.h"

#define AUDIT_TIMEOUT_MS 2000 /* storing the intent: fail closed after this */
#define SERVICE_TIMEOUT_MS 3000
#define VERIFY_CALL_MS 6000    /* one AuditVerify round (the service stops at ~2 s) */
#define VERIFY_BUDGET_MS 50000 /* per HTTP call; the answer says where to continue */
#define FOLLOW_DEFAULT_WAIT_S 25
#define FOLLOW_MAX_WAIT_S 60
#define FOLLOW_POLL_MS 500
#define EXPORT_MAX_ENTRIES 100000
#define EXPORT_PAGE 1000
#define MAX_BODY 65536
#define HTTP_TIMEOUT_S 75 /* above the longest follow wait */
#define TOKENS_RECHECK_US 1000000
#define TOKEN_MAX 512
#define PARAM_MAX 256
#define SEGMENT_MAX 128
#define MAX_SEGMENTS 2

typedef enum { ROLE_NONE = 0, ROLE_AUDITOR, ROLE_OPERATOR, ROLE_ADMIN } role_t;
static const char *const role_names[] = {"none", "auditor", "operator", "admin"};

typedef struct {
    char name[65];
    role_t role;
    uint8_t hash[32];
} token_t;

typedef struct admin_call admin_call_t;

typedef struct route {
    enum evhttp_cmd_type method;
    const char *path;   /* "/"-separated segments, "*" = one parameter */
    const char *action; /* event "admin.<action>"; AdminRequest action */
    role_t role;
    const char *const *params;               /* query parameters accepted (NULL-terminated) */
    const char *(*prepare)(admin_call_t *c); /* validate; NULL or the 400 message */
    void (*run)(admin_call_t *c);
    service_id_t svc;                    /* service routes */
    const char *seg_args[MAX_SEGMENTS];  /* AdminRequest arg name of each path parameter */
    const char *seg_kinds[MAX_SEGMENTS]; /* resource kind of each path parameter */
    dispatch_done_fn audit_done;         /* audit query routes: the reply handler */
} route_t;

struct admin_call {
    admin_call_t *prev, *next; /* live calls, for shutdown */
    struct evhttp_request *req;
    const route_t *route;
    char rid[37];
    char event[64];
    char caller_id[65];
    char source[PEER_ADDR_MAX];
    int64_t received_ms, start_us;
    struct evkeyvalq params;
    char *seg[MAX_SEGMENTS];
    int nseg;
    Kooisv__ResourceRef **res;
    size_t n_res;
    bool intent_stored;
    int subcalls; /* numbering of audit sub-requests */
    /* audit routes */
    Kooisv__AuditQuery query;
    char *exclude[1];
    bool csv;
    int64_t until_us; /* follow: answer by then; verify: stop by then */
    struct event *timer;
    struct evbuffer *out; /* export */
    size_t exported;
    int64_t verify_from, verify_checked;
    /* fan-out (outbox.failed) */
    int pending;
    int answered;
    json_t *fan;
};

static struct {
    bool running;
    pthread_t thread;
    struct event_base *base;
    struct evhttp *http;
    SSL_CTX *tls;
    dispatch_t *dispatch;
    auditq_t *auditq;
    struct event *stop_ev;
    char *tokens_path;
    token_t *tokens;
    size_t ntokens;
    struct stat tokens_st;
    int64_t tokens_checked_us;
    admin_call_t *calls;
} adm;

/* ================================================================ small helpers */

bool admin_parse_time(const char *s, int64_t *ms_out)
{
    return time_parse_any(s, ms_out);
}

/* A non-negative integer of at most 18 digits within [min, max]. */
static bool parse_count(const char *s, int64_t min, int64_t max, int64_t *out)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 18 || strspn(s, "0123456789") != n)
        return false;
    int64_t v = strtoll(s, NULL, 10);
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Printable text without control characters, at most max bytes. */
static bool text_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return n <= max;
}

static const char *param(admin_call_t *c, const char *name)
{
    const char *v = evhttp_find_header(&c->params, name);
    return v && *v ? v : NULL;
}

/* The same, "" when absent: protobuf string fields are never NULL here. */
static char *param_or_empty(admin_call_t *c, const char *name)
{
    const char *v = param(c, name);
    return (char *)(v ? v : "");
}

/* True once the client is gone (libevent detaches the request from its connection). */
static bool client_gone(const admin_call_t *c)
{
    return !c->req || !evhttp_request_get_connection(c->req);
}

/* ================================================================ tokens */

static role_t role_parse(const char *s)
{
    for (int r = ROLE_AUDITOR; r <= ROLE_ADMIN; r++)
        if (strcmp(s, role_names[r]) == 0)
            return (role_t)r;
    return ROLE_NONE;
}

static bool hex_byte(const char *p, uint8_t *out)
{
    unsigned v = 0;
    for (int i = 0; i < 2; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned)(ch - 'A' + 10);
        else
            return false;
    }
    *out = (uint8_t)v;
    return true;
}

/* Parse the tokens file text; -1 with the first problem in err. */
static int tokens_parse(char *text, token_t **out, size_t *nout, char *err, size_t errlen)
{
    token_t *v = NULL;
    size_t n = 0;
    int lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *f[4] = {0};
        int nf = 0;
        char *fs = NULL;
        for (char *tok = strtok_r(line, " \t\r", &fs); tok; tok = strtok_r(NULL, " \t\r", &fs)) {
            if (nf == 0 && tok[0] == '#')
                break;
            if (nf < 4)
                f[nf] = tok;
            nf++;
        }
        if (nf == 0)
            continue;
        token_t t = {0};
        bool name_ok = nf == 3 && strlen(f[0]) < sizeof t.name;
        for (const char *p = name_ok ? f[0] : ""; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || strchr("._@-", *p)))
                name_ok = false;
        if (!name_ok) {
            snprintf(err, errlen,
                     "line %d: expected \"name role sha256hex\" (name: letters, "
                     "digits, . _ @ -)",
                     lineno);
            goto fail;
        }
        snprintf(t.name, sizeof t.name, "%s", f[0]);
        t.role = role_parse(f[1]);
        if (t.role == ROLE_NONE) {
            snprintf(err, errlen, "line %d: role must be auditor, operator or admin", lineno);
            goto fail;
        }
        bool hash_ok = strlen(f[2]) == 64;
        for (int i = 0; hash_ok && i < 32; i++)
            hash_ok = hex_byte(f[2] + 2 * i, &t.hash[i]);
        if (!hash_ok) {
            snprintf(err, errlen, "line %d: the third field must be 64 hex digits (SHA-256)",
                     lineno);
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i].name, t.name) == 0) {
                snprintf(err, errlen, "line %d: token name %s appears twice", lineno, t.name);
                goto fail;
            }
        v = xrealloc(v, (n + 1) * sizeof *v);
        v[n++] = t;
    }
    *out = v;
    *nout = n;
    return 0;
fail:
    free(v);
    return -1;
}

static int tokens_load(void)
{
    struct stat st;
    if (stat(adm.tokens_path, &st) != 0) {
        log_error(NULL, "admin tokens file %s: cannot stat", adm.tokens_path);
        return -1;
    }
    char *text = config_read_file(adm.tokens_path, NULL);
    if (!text) {
        log_error(NULL, "admin tokens file %s: cannot read", adm.tokens_path);
        return -1;
    }
    token_t *v = NULL;
    size_t n = 0;
    char err[200];
    int rc = tokens_parse(text, &v, &n, err, sizeof err);
    xfree_secret(text, strlen(text));
    if (rc != 0) {
        log_error(NULL, "admin tokens file %s: %s", adm.tokens_path, err);
        return -1;
    }
    if (n == 0)
        log_warn(NULL, "admin tokens file %s holds no token: every call gets 401", adm.tokens_path);
    free(adm.tokens);
    adm.tokens = v;
    adm.ntokens = n;
    adm.tokens_st = st;
    return 0;
}

/* Pick up a rotated tokens file; a broken new file keeps the tokens in force (logged). */
static void tokens_refresh(void)
{
    int64_t now = time_mono_us();
    if (now - adm.tokens_checked_us < TOKENS_RECHECK_US)
        return;
    adm.tokens_checked_us = now;
    struct stat st;
    if (stat(adm.tokens_path, &st) != 0)
        return;
    if (st.st_ino == adm.tokens_st.st_ino && st.st_size == adm.tokens_st.st_size &&
        st.st_mtim.tv_sec == adm.tokens_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == adm.tokens_st.st_mtim.tv_nsec)
        return;
    if (tokens_load() == 0)
        log_info(NULL, "admin tokens file reloaded: %zu token(s)", adm.ntokens);
}

/* The token presented in Authorization, matched by its SHA-256 in constant time. */
static const token_t *token_find(struct evhttp_request *req, const char **why)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h) {
        *why = "missing bearer token";
        return NULL;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *why = "malformed Authorization header (expected: Bearer <token>)";
        return NULL;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    if (len == 0 || len > TOKEN_MAX || strpbrk(tok, " \t")) {
        *why = "malformed bearer token";
        return NULL;
    }
    uint8_t hash[32];
    sha256(tok, len, hash);
    const token_t *found = NULL;
    for (size_t i = 0; i < adm.ntokens; i++)
        if (bytes_equal(hash, adm.tokens[i].hash, 32))
            found = &adm.tokens[i];
    if (!found)
        *why = "unknown token";
    return found;
}

/* ================================================================ calls and answers */

static admin_call_t *call_new(struct evhttp_request *req)
{
    admin_call_t *c = xcalloc(1, sizeof *c);
    c->req = req;
    rand_uuid(c->rid);
    c->received_ms = time_now_ms();
    c->start_us = time_mono_us();
    snprintf(c->event, sizeof c->event, "admin.unknown");
    snprintf(c->caller_id, sizeof c->caller_id, "-");
    TAILQ_INIT(&c->params);
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(c->source, sizeof c->source, "%s", addr ? addr : "");
    c->next = adm.calls;
    if (adm.calls)
        adm.calls->prev = c;
    adm.calls = c;
    return c;
}

static void call_free(admin_call_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        adm.calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    evhttp_clear_headers(&c->params);
    for (int i = 0; i < c->nseg; i++)
        free(c->seg[i]);
    resref_free(c->res, c->n_res);
    if (c->timer)
        event_free(c->timer);
    if (c->out)
        evbuffer_free(c->out);
    json_decref(c->fan);
    free(c);
}

static Kooisv__Envelope call_envelope(admin_call_t *c, Kooisv__Caller *caller, int timeout_ms)
{
    kooisv__caller__init(caller);
    caller->kind = "operator";
    caller->id = c->caller_id;
    Kooisv__Envelope e = KOOISV__ENVELOPE__INIT;
    e.request_id = c->rid;
    e.trace_id = c->rid;
    e.received_ms = c->received_ms;
    e.source_addr = c->source;
    e.caller = caller;
    e.deadline_ms = time_now_ms() + timeout_ms;
    return e;
}

static void intent_fill(admin_call_t *c, Kooisv__AuditIntent *in, const char *reject_code,
                        const char *reject_reason)
{
    kooisv__audit_intent__init(in);
    in->event_type = c->event;
    in->resources = c->res;
    in->n_resources = c->n_res;
    if (reject_code) {
        in->reject_code = (char *)reject_code;
        in->reject_reason = (char *)reject_reason;
    }
}

/* Send the answer, then its outcome (with the intent first when it was never stored, as a
 * rejection), then free c. */
static void call_finish(admin_call_t *c, int status, const char *code, const char *msg,
                        const char *content_type, struct evbuffer *body, const char *disposition)
{
    if (c->req) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
        evhttp_add_header(h, "Content-Type", content_type);
        evhttp_add_header(h, "X-Request-Id", c->rid);
        evhttp_add_header(h, "Cache-Control", "no-store");
        evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
        if (status == 401)
            evhttp_add_header(h, "WWW-Authenticate", "Bearer realm=\"kooisv-admin\"");
        if (disposition)
            evhttp_add_header(h, "Content-Disposition", disposition);
        evhttp_send_reply(c->req, status, NULL, body);
        c->req = NULL;
    }
    int64_t latency_us = time_mono_us() - c->start_us;
    char quoted[300], fields[700];
    log_quote(msg, quoted, sizeof quoted);
    snprintf(fields, sizeof fields,
             "msg=\"admin\" event=%s caller=%s src=%s http=%d code=%s latency_ms=%.1f result=%s",
             c->event, c->caller_id, c->source, status, code, (double)latency_us / 1000.0, quoted);
    log_fields(status < 400 ? LOG_INFO : LOG_WARN, c->rid, fields);

    Kooisv__Caller caller;
    Kooisv__Envelope rec = call_envelope(c, &caller, AUDIT_TIMEOUT_MS);
    Kooisv__AuditOutcome outcome = KOOISV__AUDIT_OUTCOME__INIT;
    outcome.result_code = (char *)code;
    outcome.result_msg = (char *)msg;
    outcome.latency_us = latency_us;
    outcome.http_status = status;
    if (c->intent_stored) {
        rec.body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME;
        rec.audit_outcome = &outcome;
        auditq_deliver(adm.auditq, &rec);
    } else {
        Kooisv__AuditIntent intent;
        intent_fill(c, &intent, code, msg);
        rec.body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
        rec.audit_intent = &intent;
        auditq_enqueue(adm.auditq, &rec);
        rec.body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME;
        rec.audit_outcome = &outcome;
        auditq_enqueue(adm.auditq, &rec);
    }
    call_free(c);
}

static void finish_json(admin_call_t *c, int status, const char *code, const char *msg, json_t *doc)
{
    struct evbuffer *b = evbuffer_new();
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text) {
        evbuffer_add(b, text, strlen(text));
        evbuffer_add(b, "\n", 1);
        free(text);
    } else {
        status = 500;
        code = "000005";
        msg = "answer could not be encoded";
        evbuffer_add_printf(b, "{\"error\":\"%s\",\"code\":\"000005\"}\n", msg);
    }
    call_finish(c, status, code, msg, "application/json; charset=utf-8", b, NULL);
    evbuffer_free(b);
}

/* Answer c with an error document. A call refused before it ran (no intent stored yet) is
 * recorded as a rejected intent plus its outcome (call_finish). */
static void finish_error(admin_call_t *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finish_error(admin_call_t *c, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *doc = json_pack("{s:s, s:s, s:s}", "error", msg, "code", code, "request_id", c->rid);
    if (!doc) /* a message quoting input that is not UTF-8 */
        doc = json_pack("{s:s, s:s, s:s}", "error", "invalid request", "code", code, "request_id",
                        c->rid);
    finish_json(c, status, code, msg, doc);
}

/* HTTP status for a service's result code. */
static int http_status_of(const char *code)
{
    if (strcmp(code, "000000") == 0)
        return 200;
    if (strcmp(code, "000001") == 0)
        return 403;
    if (strcmp(code, "000002") == 0 || strcmp(code, "000101") == 0)
        return 400;
    if (strcmp(code, "000003") == 0 || strcmp(code, "000100") == 0)
        return 404;
    if (strcmp(code, "000004") == 0)
        return 409;
    return 502;
}

static bool reply_ok(const Kooisv__Reply *r)
{
    return r && r->result_code && strcmp(r->result_code, "000000") == 0;
}

/* Answer for a failed service or audit reply (NULL = no answer in time). */
static void finish_failed(admin_call_t *c, const char *what, const Kooisv__Reply *r)
{
    if (!r)
        finish_error(c, 503, "000005", "%s did not answer in time", what);
    else
        finish_error(c, http_status_of(r->result_code), r->result_code, "%s: %s", what,
                     r->result_msg && *r->result_msg ? r->result_msg : "error");
}

/* True when reply is a success carrying result; otherwise c is answered as failed (what names
 * the service) and reply is freed. */
static bool reply_expect(admin_call_t *c, Kooisv__Reply *reply, Kooisv__Reply__ResultCase result,
                         const char *what)
{
    if (reply_ok(reply) && reply->result_case == result)
        return true;
    finish_failed(c, what, reply);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    return false;
}

/* ================================================================ audit entries out */

static json_t *entry_json(const Kooisv__AuditEntry *e)
{
    char at[32], oat[32];
    json_t *res = json_array();
    for (size_t i = 0; i < e->n_resources; i++)
        json_array_append_new(res, json_pack("{s:s?, s:s?}", "kind", e->resources[i]->kind, "id",
                                             e->resources[i]->id));
    json_t *outcome = json_null();
    if (e->has_outcome)
        outcome = json_pack("{s:I, s:s, s:s?, s:s?, s:I, s:I}", "seq", (json_int_t)e->outcome_seq,
                            "time", time_format_iso(e->outcome_ms, oat, sizeof oat), "result_code",
                            e->result_code, "result_msg", e->result_msg, "latency_us",
                            (json_int_t)e->latency_us, "http_status", (json_int_t)e->http_status);
    return json_pack("{s:I, s:s?, s:s, s:I, s:{s:s?, s:s?}, s:s?, s:o, s:s?, s:b, s:s?, s:s?,"
                     " s:s?, s:b, s:o*, s:I}",
                     "seq", (json_int_t)e->seq, "request_id", e->request_id, "time",
                     time_format_iso(e->received_ms, at, sizeof at), "received_ms",
                     (json_int_t)e->received_ms, "caller", "kind", e->caller_kind, "id",
                     e->caller_id, "event", e->event_type, "resources", res, "source",
                     e->source_addr, "test", (int)e->test_flag, "reject_code", e->reject_code,
                     "reject_reason", e->reject_reason, "nonce", e->nonce, "has_outcome",
                     (int)e->has_outcome, "outcome", outcome, "last_seq", (json_int_t)e->last_seq);
}

static json_t *entries_json(Kooisv__AuditEntry **v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e = entry_json(v[i]);
        if (e)
            json_array_append_new(arr, e);
    }
    return arr;
}

#define CSV_HEADER                                                                                 \
    "seq,time,request_id,caller_kind,caller_id,event,resources,source,test,reject_code,"           \
    "reject_reason,result_code,result_msg,latency_ms,http_status,outcome_time\r\n"

/* One CSV field (RFC 4180 quoting), neutralised against spreadsheet formula injection. */
static void csv_field(struct evbuffer *b, const char *s, bool last)
{
    s = s ? s : "";
    bool formula = s[0] && strchr("=+-@\t\r", s[0]);
    if (formula || strpbrk(s, ",\"\r\n")) {
        evbuffer_add(b, "\"", 1);
        if (formula)
            evbuffer_add(b, "'", 1);
        for (const char *p = s; *p; p++) {
            if (*p == '"')
                evbuffer_add(b, "\"", 1);
            evbuffer_add(b, p, 1);
        }
        evbuffer_add(b, "\"", 1);
    } else {
        evbuffer_add(b, s, strlen(s));
    }
    evbuffer_add(b, last ? "\r\n" : ",", last ? 2 : 1);
}

static void csv_entry(struct evbuffer *b, const Kooisv__AuditEntry *e)
{
    char num[32], at[32], oat[32];
    snprintf(num, sizeof num, "%lld", (long long)e->seq);
    csv_field(b, num, false);
    csv_field(b, time_format_iso(e->received_ms, at, sizeof at), false);
    csv_field(b, e->request_id, false);
    csv_field(b, e->caller_kind, false);
    csv_field(b, e->caller_id, false);
    csv_field(b, e->event_type, false);
    struct evbuffer *r = evbuffer_new();
    for (size_t i = 0; i < e->n_resources; i++)
        evbuffer_add_printf(r, "%s%s:%s", i ? ";" : "", e->resources[i]->kind, e->resources[i]->id);
    evbuffer_add(r, "", 1);
    csv_field(b, (const char *)evbuffer_pullup(r, -1), false);
    evbuffer_free(r);
    csv_field(b, e->source_addr, false);
    csv_field(b, e->test_flag ? "1" : "0", false);
    csv_field(b, e->reject_code, false);
    csv_field(b, e->reject_reason, false);
    csv_field(b, e->has_outcome ? e->result_code : "", false);
    csv_field(b, e->has_outcome ? e->result_msg : "", false);
    snprintf(num, sizeof num, "%.3f", (double)e->latency_us / 1000.0);
    csv_field(b, e->has_outcome ? num : "", false);
    char status[16];
    snprintf(status, sizeof status, "%lld", (long long)e->http_status);
    csv_field(b, e->has_outcome ? status : "", false);
    csv_field(b, e->has_outcome ? time_format_iso(e->outcome_ms, oat, sizeof oat) : "", true);
}

/* ================================================================ audit routes */

static const char *const query_params[] = {"from",   "to",     "event",  "resource",
                                           "caller", "source", "result", "request_id",
                                           "before", "limit",  "format", NULL};
static const char *const follow_params[] = {"after",  "wait",   "limit",  "event",      "resource",
                                            "caller", "source", "result", "request_id", NULL};
static const char *const export_params[] = {"from",   "to",     "format", "event",      "resource",
                                            "caller", "source", "result", "request_id", NULL};
static const char *const verify_params[] = {"from_seq", NULL};

/* Filters shared by query, follow and export into c->query. */
static const char *prepare_filters(admin_call_t *c)
{
    Kooisv__AuditQuery *q = &c->query;
    kooisv__audit_query__init(q);
    int64_t v;
    const char *s;
    if ((s = param(c, "from")) && !admin_parse_time(s, &q->from_ms))
        return "from: expected ISO-8601 (2026-11-28T10:00:00Z) or epoch milliseconds";
    if ((s = param(c, "to")) && !admin_parse_time(s, &q->to_ms))
        return "to: expected ISO-8601 (2026-11-28T10:00:00Z) or epoch milliseconds";
    if (q->from_ms && q->to_ms && q->to_ms <= q->from_ms)
        return "to must be after from";
    q->event_type = param_or_empty(c, "event");
    q->resource_id = param_or_empty(c, "resource");
    q->caller = param_or_empty(c, "caller");
    q->source_addr = param_or_empty(c, "source");
    q->result_code = param_or_empty(c, "result");
    q->request_id = param_or_empty(c, "request_id");
    if ((s = param(c, "limit"))) {
        if (!parse_count(s, 1, 1000, &v))
            return "limit: must be 1..1000";
        q->limit = (int32_t)v;
    }
    if ((s = param(c, "before"))) {
        if (!parse_count(s, 1, INT64_MAX, &v))
            return "before: must be a sequence number";
        q->before_seq = v;
    }
    const char *fmt = param(c, "format");
    if (fmt && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0)
        return "format: json or csv";
    c->csv = fmt && strcmp(fmt, "csv") == 0;
    return NULL;
}

static const char *prepare_follow(admin_call_t *c)
{
    const char *why = prepare_filters(c);
    if (why)
        return why;
    int64_t v;
    const char *s;
    c->query.follow = true;
    c->query.after_seq = -1; /* from the current head */
    if ((s = param(c, "after"))) {
        if (!parse_count(s, 0, INT64_MAX, &v))
            return "after: must be a sequence number";
        c->query.after_seq = v;
    }
    int64_t wait = FOLLOW_DEFAULT_WAIT_S;
    if ((s = param(c, "wait")) && !parse_count(s, 0, FOLLOW_MAX_WAIT_S, &wait))
        return "wait: must be 0..60 seconds";
    c->until_us = time_mono_us() + wait * 1000000;
    /* A follower must not be woken by the record of its own polling. */
    c->exclude[0] = "admin.audit.follow";
    c->query.exclude_event_types = c->exclude;
    c->query.n_exclude_event_types = 1;
    return NULL;
}

static const char *prepare_export(admin_call_t *c)
{
    const char *why = prepare_filters(c);
    if (why)
        return why;
    c->csv = !param(c, "format") || strcmp(param(c, "format"), "csv") == 0;
    c->query.limit = EXPORT_PAGE;
    c->out = evbuffer_new();
    if (c->csv)
        evbuffer_add(c->out, CSV_HEADER, strlen(CSV_HEADER));
    else
        evbuffer_add(c->out, "[", 1);
    return NULL;
}

static const char *prepare_verify(admin_call_t *c)
{
    int64_t v = 1;
    const char *s = param(c, "from_seq");
    /* POST body {"from_seq": N} works too. */
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    if (!s && len > 0) {
        json_error_t err;
        json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &err);
        json_t *f = json_object_get(body, "from_seq");
        bool ok =
            json_is_object(body) && (!f || (json_is_integer(f) && json_integer_value(f) >= 0));
        if (ok && f)
            v = json_integer_value(f);
        json_decref(body);
        if (!ok)
            return "body: expected {\"from_seq\": N}";
    } else if (s && !parse_count(s, 0, INT64_MAX, &v)) {
        return "from_seq: must be a sequence number";
    }
    c->verify_from = v > 0 ? v : 1;
    c->until_us = time_mono_us() + (int64_t)VERIFY_BUDGET_MS * 1000;
    return NULL;
}

/* Send an audit service request (query or verify) for c; done gets the reply. */
static void audit_request(admin_call_t *c, Kooisv__Envelope *env, int timeout_ms,
                          dispatch_done_fn done)
{
    /* Sub-requests get their own ids: a late reply must never match a later one. */
    char rid[64];
    snprintf(rid, sizeof rid, "%s/%d", c->rid, ++c->subcalls);
    env->request_id = rid;
    if (dispatch_call(adm.dispatch, SVC_AUDIT, env, timeout_ms, done, c) != 0)
        finish_error(c, 503, "000005", "the audit service is not configured");
}

/* Ask the audit service for c->query; done gets the reply. */
static void audit_query_send(admin_call_t *c, dispatch_done_fn done)
{
    Kooisv__Caller caller;
    Kooisv__Envelope env = call_envelope(c, &caller, SERVICE_TIMEOUT_MS);
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_QUERY;
    env.audit_query = &c->query;
    audit_request(c, &env, SERVICE_TIMEOUT_MS, done);
}

static void on_query_reply(Kooisv__Reply *reply, void *arg)
{
    admin_call_t *c = arg;
    if (!reply_expect(c, reply, KOOISV__REPLY__RESULT_AUDIT_QUERY, "audit query"))
        return;
    const Kooisv__AuditQueryResult *r = reply->audit_query;
    char msg[64];
    snprintf(msg, sizeof msg, "%zu entries", r->n_entries);
    if (c->csv) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, CSV_HEADER, strlen(CSV_HEADER));
        for (size_t i = 0; i < r->n_entries; i++)
            csv_entry(b, r->entries[i]);
        char next[24];
        snprintf(next, sizeof next, "%lld", (long long)r->next_before_seq);
        if (c->req && r->next_before_seq)
            evhttp_add_header(evhttp_request_get_output_headers(c->req), "X-Next-Before", next);
        call_finish(c, 200, "000000", msg, "text/csv; charset=utf-8", b, NULL);
        evbuffer_free(b);
    } else {
        json_t *doc =
            json_pack("{s:o, s:I, s:I}", "entries", entries_json(r->entries, r->n_entries),
                      "head_seq", (json_int_t)r->head_seq, "count", (json_int_t)r->n_entries);
        json_object_set_new(doc, "next_before",
                            r->next_before_seq ? json_integer(r->next_before_seq) : json_null());
        finish_json(c, 200, "000000", msg, doc);
    }
    kooisv__reply__free_unpacked(reply, NULL);
}

/* query, follow and export: one audit query, answered by the route's handler. */
static void run_audit_query(admin_call_t *c)
{
    audit_query_send(c, c->route->audit_done);
}

static void on_follow_reply(Kooisv__Reply *reply, void *arg);

static void on_follow_timer(evutil_socket_t fd, short what, void *arg)
{
    audit_query_send(arg, on_follow_reply);
}

static void on_follow_reply(Kooisv__Reply *reply, void *arg)
{
    admin_call_t *c = arg;
    if (!reply_expect(c, reply, KOOISV__REPLY__RESULT_AUDIT_QUERY, "audit follow"))
        return;
    const Kooisv__AuditQueryResult *r = reply->audit_query;
    int64_t now = time_mono_us();
    if (r->n_entries > 0 || now + (int64_t)FOLLOW_POLL_MS * 1000 > c->until_us || client_gone(c)) {
        char msg[64];
        snprintf(msg, sizeof msg, "%zu entries", r->n_entries);
        finish_json(c, 200, "000000", msg,
                    json_pack("{s:o, s:I, s:I, s:I}", "entries",
                              entries_json(r->entries, r->n_entries), "next_after",
                              (json_int_t)r->next_after_seq, "head_seq", (json_int_t)r->head_seq,
                              "count", (json_int_t)r->n_entries));
    } else {
        c->query.after_seq = r->next_after_seq;
        if (!c->timer)
            c->timer = evtimer_new(adm.base, on_follow_timer, c);
        struct timeval tv = {0, FOLLOW_POLL_MS * 1000};
        evtimer_add(c->timer, &tv);
    }
    kooisv__reply__free_unpacked(reply, NULL);
}

static void on_export_reply(Kooisv__Reply *reply, void *arg)
{
    admin_call_t *c = arg;
    if (!reply_expect(c, reply, KOOISV__REPLY__RESULT_AUDIT_QUERY, "audit export"))
        return;
    const Kooisv__AuditQueryResult *r = reply->audit_query;
    for (size_t i = 0; i < r->n_entries; i++, c->exported++) {
        if (c->csv) {
            csv_entry(c->out, r->entries[i]);
            continue;
        }
        json_t *e = entry_json(r->entries[i]);
        char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        if (text) {
            evbuffer_add_printf(c->out, "%s\n%s", c->exported ? "," : "", text);
            free(text);
        }
    }
    int64_t next = r->next_before_seq;
    kooisv__reply__free_unpacked(reply, NULL);
    if (next && c->exported >= EXPORT_MAX_ENTRIES) {
        finish_error(c, 413, "000002",
                     "more than %d entries: narrow the time range (from/to) or the filters",
                     EXPORT_MAX_ENTRIES);
        return;
    }
    if (next && !client_gone(c)) {
        c->query.before_seq = next;
        audit_query_send(c, on_export_reply);
        return;
    }
    if (!c->csv)
        evbuffer_add(c->out, "\n]\n", 3);
    char disposition[128], msg[64];
    snprintf(disposition, sizeof disposition, "attachment; filename=\"kooisv-audit-%.8s.%s\"",
             c->rid, c->csv ? "csv" : "json");
    snprintf(msg, sizeof msg, "%zu entries exported", c->exported);
    call_finish(c, 200, "000000", msg,
                c->csv ? "text/csv; charset=utf-8" : "application/json; charset=utf-8", c->out,
                disposition);
}

static void verify_round(admin_call_t *c);

static void on_verify_reply(Kooisv__Reply *reply, void *arg)
{
    admin_call_t *c = arg;
    if (!reply_expect(c, reply, KOOISV__REPLY__RESULT_AUDIT_VERIFY, "audit verify"))
        return;
    const Kooisv__AuditVerifyResult *r = reply->audit_verify;
    c->verify_checked += r->checked;
    if (r->ok && r->next_seq && !client_gone(c) && time_mono_us() < c->until_us) {
        c->verify_from = r->next_seq;
        kooisv__reply__free_unpacked(reply, NULL);
        verify_round(c);
        return;
    }
    json_t *doc = json_pack("{s:b, s:b, s:I, s:I, s:s?, s:s?}", "ok", (int)r->ok, "complete",
                            (int)(!r->ok || !r->next_seq), "checked", (json_int_t)c->verify_checked,
                            "head_seq", (json_int_t)r->head_seq, "head_hash", r->head_hash,
                            "detail", r->detail);
    if (!r->ok) {
        json_object_set_new(doc, "first_bad_seq", json_integer(r->first_bad_seq));
        json_object_set_new(doc, "problem", json_string(r->problem));
    } else if (r->next_seq) {
        json_object_set_new(doc, "next_seq", json_integer(r->next_seq));
    }
    char msg[256];
    if (r->ok)
        snprintf(msg, sizeof msg, "chain intact: %lld entries checked%s",
                 (long long)c->verify_checked, r->next_seq ? " (partial)" : "");
    else
        snprintf(msg, sizeof msg, "chain broken at %lld: %s", (long long)r->first_bad_seq,
                 r->problem);
    kooisv__reply__free_unpacked(reply, NULL);
    finish_json(c, 200, "000000", msg, doc);
}

static void verify_round(admin_call_t *c)
{
    Kooisv__Caller caller;
    Kooisv__Envelope env = call_envelope(c, &caller, VERIFY_CALL_MS);
    Kooisv__AuditVerify v = KOOISV__AUDIT_VERIFY__INIT;
    v.from_seq = c->verify_from;
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_VERIFY;
    env.audit_verify = &v;
    audit_request(c, &env, VERIFY_CALL_MS, on_verify_reply);
}

/* ================================================================ service routes */

static const char *const instance_list_params[] = {"state", "limit", "before", NULL};
static const char *const limit_params[] = {"limit", NULL};
static const char *const instance_params[] = {"instance", NULL};
static const char *const users_params[] = {"instance", "app", NULL};
static const char *const secret_params[] = {"instance", "tenant", NULL};
static const char *const no_params[] = {NULL};

static const char *const resource_params[][2] = {
    {"instance", "instance"}, {"tenant", "tenant"}, {"app", "app"}};

/* Path parameters and the ids among the query parameters name the resources touched. */
static const char *prepare_service(admin_call_t *c)
{
    const route_t *r = c->route;
    for (int i = 0; i < c->nseg; i++)
        if (r->seg_kinds[i])
            resref_add(&c->res, &c->n_res, r->seg_kinds[i], c->seg[i]);
    for (size_t i = 0; i < sizeof resource_params / sizeof *resource_params; i++) {
        const char *v = param(c, resource_params[i][0]);
        if (v)
            resref_add(&c->res, &c->n_res, resource_params[i][1], v);
    }
    return NULL;
}

/* The services whose outbox is delivered to the seller (order events wait for billing). */
static const service_id_t outbox_services[] = {SVC_TENANT, SVC_APP};

static bool outbox_service(const char *name, service_id_t *out)
{
    for (size_t i = 0; i < sizeof outbox_services / sizeof *outbox_services; i++)
        if (strcmp(name, dispatch_service_name(outbox_services[i])) == 0) {
            *out = outbox_services[i];
            return true;
        }
    return false;
}

static const char *prepare_outbox_redrive(admin_call_t *c)
{
    service_id_t svc;
    if (!outbox_service(c->seg[0], &svc))
        return "unknown service: tenant or app";
    char ref[SEGMENT_MAX * 2 + 2];
    snprintf(ref, sizeof ref, "%s/%s", c->seg[0], c->seg[1]);
    resref_add(&c->res, &c->n_res, "outbox", ref);
    return NULL;
}

/* The JSON document of a successful AdminRequest reply, or NULL (caller owns it). */
static json_t *reply_admin_json(const Kooisv__Reply *reply)
{
    json_error_t err;
    if (reply_ok(reply) && reply->result_case == KOOISV__REPLY__RESULT_ADMIN && reply->admin)
        return json_loads(reply->admin->json, 0, &err);
    return NULL;
}

/* Answer c with a service's AdminRequest reply (what names the service; ok_msg is the log's
 * result on success), then free the reply. */
static void finish_admin_reply(admin_call_t *c, Kooisv__Reply *reply, const char *what,
                               const char *ok_msg)
{
    json_t *doc = reply_admin_json(reply);
    if (!reply_ok(reply))
        finish_failed(c, what, reply);
    else if (!doc)
        finish_error(c, 502, "000005", "%s answered without a JSON document", what);
    else
        finish_json(c, 200, "000000", ok_msg, doc);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
}

static void on_service_reply(Kooisv__Reply *reply, void *arg)
{
    admin_call_t *c = arg;
    char what[64];
    snprintf(what, sizeof what, "the %s service", dispatch_service_name(c->route->svc));
    finish_admin_reply(c, reply, what, "ok");
}

/* The AdminRequest of a service route: path parameters and query parameters as args. */
static int send_admin_request(admin_call_t *c, service_id_t svc, dispatch_done_fn done, void *arg)
{
    const route_t *r = c->route;
    Kooisv__AdminRequest__ArgsEntry entries[MAX_SEGMENTS + 8];
    Kooisv__AdminRequest__ArgsEntry *ptrs[MAX_SEGMENTS + 8];
    size_t n = 0;
    for (int i = 0; i < c->nseg; i++)
        if (r->seg_args[i]) {
            kooisv__admin_request__args_entry__init(&entries[n]);
            entries[n].key = (char *)r->seg_args[i];
            entries[n].value = c->seg[i];
            ptrs[n] = &entries[n];
            n++;
        }
    for (const char *const *p = r->params; *p && n < sizeof entries / sizeof *entries; p++) {
        const char *v = param(c, *p);
        if (!v)
            continue;
        kooisv__admin_request__args_entry__init(&entries[n]);
        entries[n].key = (char *)*p;
        entries[n].value = (char *)v;
        ptrs[n] = &entries[n];
        n++;
    }
    Kooisv__AdminRequest ar = KOOISV__ADMIN_REQUEST__INIT;
    ar.action = (char *)r->action;
    ar.args = ptrs;
    ar.n_args = n;
    Kooisv__Caller caller;
    Kooisv__Envelope env = call_envelope(c, &caller, SERVICE_TIMEOUT_MS);
    env.body_case = KOOISV__ENVELOPE__BODY_ADMIN;
    env.admin = &ar;
    return dispatch_call(adm.dispatch, svc, &env, SERVICE_TIMEOUT_MS, done, arg);
}

static void run_service(admin_call_t *c)
{
    if (send_admin_request(c, c->route->svc, on_service_reply, c) != 0)
        finish_error(c, 503, "000005", "the %s service is not configured",
                     dispatch_service_name(c->route->svc));
}

static void on_outbox_redrive_reply(Kooisv__Reply *reply, void *arg)
{
    admin_call_t *c = arg;
    finish_admin_reply(c, reply, c->seg[0], "redriven");
}

static void run_outbox_redrive(admin_call_t *c)
{
    service_id_t svc = SVC_ORDER;
    outbox_service(c->seg[0], &svc);
    if (send_admin_request(c, svc, on_outbox_redrive_reply, c) != 0)
        finish_error(c, 503, "000005", "the %s service is not configured", c->seg[0]);
}

/* outbox.failed asks every service with an outbox; one answer per service. */
typedef struct {
    admin_call_t *call;
    service_id_t svc;
} fan_t;

static void on_fan_reply(Kooisv__Reply *reply, void *arg)
{
    fan_t *f = arg;
    admin_call_t *c = f->call;
    const char *name = dispatch_service_name(f->svc);
    json_t *doc = reply_admin_json(reply);
    if (doc) {
        c->answered++;
    } else {
        doc = json_pack("{s:s, s:s?}", "code", reply ? reply->result_code : "000005", "error",
                        reply ? reply->result_msg : "no answer in time");
    }
    json_object_set_new(c->fan, name, doc ? doc : json_null());
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    free(f);
    if (--c->pending > 0)
        return;
    if (c->answered == 0)
        finish_error(c, 503, "000005", "no service answered outbox.failed");
    else
        finish_json(c, 200, "000000", "ok", json_pack("{s:O}", "services", c->fan));
}

static void run_outbox_failed(admin_call_t *c)
{
    c->fan = json_object();
    /* Count first: a callback never runs inside dispatch_call. */
    fan_t *fans[sizeof outbox_services / sizeof *outbox_services];
    int n = 0;
    for (size_t i = 0; i < sizeof outbox_services / sizeof *outbox_services; i++) {
        fans[n] = xcalloc(1, sizeof **fans);
        fans[n]->call = c;
        fans[n]->svc = outbox_services[i];
        if (send_admin_request(c, outbox_services[i], on_fan_reply, fans[n]) == 0)
            n++;
        else
            free(fans[n]);
    }
    c->pending = n;
    if (n == 0)
        finish_error(c, 503, "000005", "no service is configured");
}

/* ================================================================ routing */

/* One route per entry: kept as a table. */
/* clang-format off */
static const route_t routes[] = {
    {EVHTTP_REQ_GET, "/v1/audit", "audit.query", ROLE_AUDITOR, query_params, prepare_filters,
     run_audit_query, SVC_AUDIT, {0}, {0}, on_query_reply},
    {EVHTTP_REQ_GET, "/v1/audit/follow", "audit.follow", ROLE_AUDITOR, follow_params,
     prepare_follow, run_audit_query, SVC_AUDIT, {0}, {0}, on_follow_reply},
    {EVHTTP_REQ_GET, "/v1/audit/export", "audit.export", ROLE_AUDITOR, export_params,
     prepare_export, run_audit_query, SVC_AUDIT, {0}, {0}, on_export_reply},
    {EVHTTP_REQ_POST, "/v1/audit/verify", "audit.verify", ROLE_AUDITOR, verify_params,
     prepare_verify, verify_round, SVC_AUDIT, {0}, {0}, NULL},
    {EVHTTP_REQ_GET, "/v1/instances/*", "instance.get", ROLE_OPERATOR, no_params,
     prepare_service, run_service, SVC_ORDER, {"id"}, {"instance"}, NULL},
    {EVHTTP_REQ_GET, "/v1/instances", "instance.list", ROLE_OPERATOR, instance_list_params,
     prepare_service, run_service, SVC_ORDER, {0}, {0}, NULL},
    {EVHTTP_REQ_GET, "/v1/jobs/failed", "jobs.failed", ROLE_OPERATOR, limit_params,
     prepare_service, run_service, SVC_ORDER, {0}, {0}, NULL},
    {EVHTTP_REQ_POST, "/v1/jobs/*/redrive", "jobs.redrive", ROLE_OPERATOR, no_params,
     prepare_service, run_service, SVC_ORDER, {"id"}, {"job"}, NULL},
    {EVHTTP_REQ_GET, "/v1/license/pubkey", "license.pubkey", ROLE_AUDITOR, no_params,
     prepare_service, run_service, SVC_ORDER, {0}, {0}, NULL},
    {EVHTTP_REQ_GET, "/v1/tenants/*/orgs", "tenant.tree", ROLE_OPERATOR, instance_params,
     prepare_service, run_service, SVC_TENANT, {"tenant"}, {"tenant"}, NULL},
    {EVHTTP_REQ_GET, "/v1/tenants/*/users", "app.users", ROLE_OPERATOR, users_params,
     prepare_service, run_service, SVC_APP, {"tenant"}, {"tenant"}, NULL},
    {EVHTTP_REQ_GET, "/v1/apps/*/secret", "app.secret", ROLE_ADMIN, secret_params,
     prepare_service, run_service, SVC_APP, {"app"}, {"app"}, NULL},
    {EVHTTP_REQ_GET, "/v1/outbox/failed", "outbox.failed", ROLE_OPERATOR, limit_params,
     prepare_service, run_outbox_failed, SVC_ORDER, {0}, {0}, NULL},
    {EVHTTP_REQ_POST, "/v1/outbox/*/*/redrive", "outbox.redrive", ROLE_OPERATOR, no_params,
     prepare_outbox_redrive, run_outbox_redrive, SVC_ORDER, {NULL, "id"}, {0}, NULL},
};
/* clang-format on */

/* Match path against pattern; path parameters are decoded into segs. 1 = match, 0 = no,
 * -1 = a parameter is not acceptable (400). */
static int route_match(const char *pattern, const char *path, char **segs, int *nseg)
{
    *nseg = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return 0;
        p++;
        s++;
        size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
        if (pl == 1 && *p == '*') {
            if (sl == 0 || *nseg >= MAX_SEGMENTS)
                return 0;
            char *raw = xstrndup(s, sl);
            char *dec = evhttp_uridecode(raw, 0, NULL);
            free(raw);
            segs[(*nseg)++] = dec ? dec : xstrdup("");
        } else if (pl != sl || strncmp(p, s, pl) != 0) {
            return 0;
        }
        p += pl;
        s += sl;
    }
    if (*p || (*s && strcmp(s, "/") != 0))
        return 0;
    for (int i = 0; i < *nseg; i++)
        if (!*segs[i] || !text_ok(segs[i], SEGMENT_MAX) || strchr(segs[i], '/'))
            return -1;
    return 1;
}

static void free_segs(char **segs, int n)
{
    for (int i = 0; i < n; i++)
        free(segs[i]);
}

static void on_intent_reply(Kooisv__Reply *reply, void *arg)
{
    admin_call_t *c = arg;
    bool stored = reply_ok(reply);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    if (!stored) {
        /* Nothing runs unlogged. */
        log_error(c->rid, "audit service %s: admin call not executed",
                  reply ? "refused the intent" : "unavailable");
        finish_error(c, 503, "000005", "audit unavailable: the call was not executed");
        return;
    }
    c->intent_stored = true;
    if (client_gone(c)) {
        finish_error(c, 499, "000005", "client went away before the call ran");
        return;
    }
    c->route->run(c);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    tokens_refresh();
    admin_call_t *c = call_new(req);
    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(evhttp_request_get_uri(req), 0);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path) {
        if (uri)
            evhttp_uri_free(uri);
        finish_error(c, 400, "000002", "malformed request URI");
        return;
    }
    /* Route first (for the event name), but say nothing about routes before authentication. */
    const route_t *route = NULL;
    bool path_known = false, bad_segment = false;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    for (size_t i = 0; i < sizeof routes / sizeof *routes && !route; i++) {
        char *segs[MAX_SEGMENTS] = {0};
        int nseg = 0;
        int m = route_match(routes[i].path, path, segs, &nseg);
        if (m != 0)
            path_known = true;
        if (m == 1 && routes[i].method == method) {
            route = &routes[i];
            memcpy(c->seg, segs, sizeof segs);
            c->nseg = nseg;
            continue;
        }
        if (m == -1)
            bad_segment = true;
        free_segs(segs, nseg);
    }
    if (route) {
        c->route = route;
        snprintf(c->event, sizeof c->event, "admin.%s", route->action);
    }
    const char *query = evhttp_uri_get_query(uri);
    bool query_ok = !query || evhttp_parse_query_str(query, &c->params) == 0;
    evhttp_uri_free(uri);

    const char *why = NULL;
    const token_t *tok = token_find(req, &why);
    if (!tok) {
        finish_error(c, 401, "000001", "%s", why);
        return;
    }
    snprintf(c->caller_id, sizeof c->caller_id, "%s", tok->name);
    if (!route) {
        if (bad_segment)
            finish_error(c, 400, "000002", "a path parameter is empty, too long or not printable");
        else if (path_known)
            finish_error(c, 405, "000002", "method not allowed here");
        else
            finish_error(c, 404, "000002", "no such admin route");
        return;
    }
    if (tok->role < route->role) {
        finish_error(c, 403, "000001", "role %s may not %s (needs %s)", role_names[tok->role],
                     route->action, role_names[route->role]);
        return;
    }
    if (!query_ok) {
        finish_error(c, 400, "000002", "malformed query string");
        return;
    }
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &c->params, next)
    {
        bool known = false;
        for (const char *const *p = route->params; *p && !known; p++)
            known = strcmp(*p, kv->key) == 0;
        if (!known || !text_ok(kv->value, PARAM_MAX)) {
            finish_error(c, 400, "000002",
                         known ? "%s: too long or not printable" : "unknown parameter %s",
                         text_ok(kv->key, 64) ? kv->key : "?");
            return;
        }
    }
    if ((why = route->prepare(c))) {
        finish_error(c, 400, "000002", "%s", why);
        return;
    }

    Kooisv__Caller caller;
    Kooisv__Envelope rec = call_envelope(c, &caller, AUDIT_TIMEOUT_MS);
    Kooisv__AuditIntent intent;
    intent_fill(c, &intent, NULL, NULL);
    rec.body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    rec.audit_intent = &intent;
    if (dispatch_call(adm.dispatch, SVC_AUDIT, &rec, AUDIT_TIMEOUT_MS, on_intent_reply, c) != 0)
        on_intent_reply(NULL, c);
}

/* ================================================================ life cycle */

static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new(adm.tls);
    if (!ssl) {
        log_error(NULL, "admin: SSL_new failed: out of memory");
        abort();
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        log_error(NULL, "admin: cannot create a TLS bufferevent: out of memory");
        abort();
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(adm.base);
}

static void *admin_main(void *arg)
{
    event_base_dispatch(adm.base);
    /* Calls waiting on a timer (follow) are answered here; those waiting on a service are
     * answered (503) by dispatch_destroy, while their connections still exist. */
    for (admin_call_t *c = adm.calls, *next; c; c = next) {
        next = c->next;
        if (c->timer && evtimer_pending(c->timer, NULL))
            finish_error(c, 503, "000005", "the gateway is stopping");
    }
    auditq_detach(adm.auditq);
    dispatch_destroy(&adm.dispatch);
    evhttp_free(adm.http);
    adm.http = NULL;
    for (int i = 0; i < 4; i++)
        event_base_loop(adm.base, EVLOOP_NONBLOCK);
    auditq_destroy(&adm.auditq);
    return NULL;
}

int admin_start(void)
{
    const char *listen = config_get("KOOISV_ADMIN_LISTEN");
    const char *tokens = config_get("KOOISV_ADMIN_TOKENS_FILE");
    if (!*listen) {
        log_info(NULL, "admin API off: KOOISV_ADMIN_LISTEN is empty");
        return 0;
    }
    if (!*tokens) {
        log_warn(NULL, "admin API off: KOOISV_ADMIN_TOKENS_FILE is not set");
        return 0;
    }
    adm.tokens_path = xstrdup(tokens);
    if (tokens_load() != 0)
        return -1;
    adm.tokens_checked_us = time_mono_us();
    const char *cert = config_get("KOOISV_ADMIN_TLS_CERT_FILE");
    const char *key = config_get("KOOISV_ADMIN_TLS_KEY_FILE");
    if (!*cert || !*key) {
        cert = config_get("KOOISV_TLS_CERT_FILE");
        key = config_get("KOOISV_TLS_KEY_FILE");
    }
    char err[256];
    adm.tls = tlsctx_new(cert, key, err, sizeof err);
    if (!adm.tls) {
        log_error(NULL, "admin API TLS: %s", err);
        return -1;
    }
    int fd = netaddr_listen(listen, false, err, sizeof err);
    if (fd < 0) {
        log_error(NULL, "admin API: %s", err);
        return -1;
    }
    adm.base = event_base_new();
    adm.http = adm.base ? evhttp_new(adm.base) : NULL;
    if (!adm.http) {
        log_error(NULL, "admin API: cannot create its event loop");
        close(fd);
        return -1;
    }
    evhttp_set_bevcb(adm.http, on_new_connection, NULL);
    evhttp_set_gencb(adm.http, on_request, NULL);
    evhttp_set_max_body_size(adm.http, MAX_BODY);
    evhttp_set_max_headers_size(adm.http, 16384);
    evhttp_set_timeout(adm.http, HTTP_TIMEOUT_S);
    evhttp_set_allowed_methods(adm.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                             EVHTTP_REQ_OPTIONS);
    if (!evhttp_accept_socket_with_handle(adm.http, fd)) {
        log_error(NULL, "admin API: cannot accept on %s", listen);
        close(fd);
        return -1;
    }
    adm.dispatch = dispatch_new(adm.base, gw.endpoints);
    if (!adm.dispatch) {
        log_error(NULL, "admin API: cannot reach the services");
        return -1;
    }
    adm.auditq = auditq_new(adm.base, adm.dispatch, AUDIT_TIMEOUT_MS);
    adm.stop_ev = event_new(adm.base, -1, 0, on_stop, NULL);
    if (pthread_create(&adm.thread, NULL, admin_main, NULL) != 0) {
        log_error(NULL, "admin API: cannot start its thread");
        return -1;
    }
    adm.running = true;
    log_info(NULL, "admin API on https://%s (port %d), %zu token(s)", listen,
             netaddr_local_port(fd), adm.ntokens);
    return 0;
}

void admin_stop(void)
{
    if (!adm.running)
        return;
    event_active(adm.stop_ev, EV_TIMEOUT, 1);
    pthread_join(adm.thread, NULL);
    adm.running = false;
    event_free(adm.stop_ev);
    event_base_free(adm.base);
    SSL_CTX_free(adm.tls);
    free(adm.tokens);
    free(adm.tokens_path);
    memset(&adm, 0, sizeof adm);
}
