#include "adminaudit.h"
#include "resultcode.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admincall.h"
#include "csv.h"
#include "svcadmin.h"
#include "timeutil.h"

#define VERIFY_CALL_MS 6000    /* one AuditVerify round (the service stops at ~2 s) */
#define VERIFY_BUDGET_MS 50000 /* per HTTP call; the answer says where to continue */
#define FOLLOW_DEFAULT_WAIT_S 25
#define FOLLOW_MAX_WAIT_S 60
#define FOLLOW_POLL_MS 500
#define EXPORT_PAGE 1000

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

static void evbuffer_sink(void *sink, const char *data, size_t len)
{
    evbuffer_add(sink, data, len);
}

/* One CSV field (RFC 4180 quoting), neutralised against spreadsheet formula injection (csv.h). */
static void csv_field(struct evbuffer *b, const char *s, bool last)
{
    csv_text(evbuffer_sink, b, s, last);
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
static const char *const verify_params[] = {"from_seq", "head", NULL};

/* Filters shared by query, follow and export into c->query. */
static const char *prepare_query(admincall_t *c)
{
    Kooisv__AuditQuery *q = &c->query;
    kooisv__audit_query__init(q);
    int64_t v;
    const char *s;
    if ((s = admincall_param(c, "from")) && !time_parse_any(s, &q->from_ms))
        return "from: expected ISO-8601 (2026-11-28T10:00:00Z) or epoch milliseconds";
    if ((s = admincall_param(c, "to")) && !time_parse_any(s, &q->to_ms))
        return "to: expected ISO-8601 (2026-11-28T10:00:00Z) or epoch milliseconds";
    if (q->from_ms && q->to_ms && q->to_ms <= q->from_ms)
        return "to must be after from";
    q->event_type = admincall_param_or_empty(c, "event");
    q->resource_id = admincall_param_or_empty(c, "resource");
    q->caller = admincall_param_or_empty(c, "caller");
    q->source_addr = admincall_param_or_empty(c, "source");
    q->result_code = admincall_param_or_empty(c, "result");
    q->request_id = admincall_param_or_empty(c, "request_id");
    if ((s = admincall_param(c, "limit"))) {
        if (!svcadmin_count(s, 1, 1000, &v))
            return "limit: must be 1..1000";
        q->limit = (int32_t)v;
    }
    if ((s = admincall_param(c, "before"))) {
        if (!svcadmin_count(s, 1, INT64_MAX, &v))
            return "before: must be a sequence number";
        q->before_seq = v;
    }
    const char *fmt = admincall_param(c, "format");
    if (fmt && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0)
        return "format: json or csv";
    c->csv = fmt && strcmp(fmt, "csv") == 0;
    return NULL;
}

static const char *prepare_follow(admincall_t *c)
{
    const char *why = prepare_query(c);
    if (why)
        return why;
    int64_t v;
    const char *s;
    c->query.follow = true;
    c->query.after_seq = -1; /* from the current head */
    if ((s = admincall_param(c, "after"))) {
        if (!svcadmin_count(s, 0, INT64_MAX, &v))
            return "after: must be a sequence number";
        c->query.after_seq = v;
    }
    int64_t wait = FOLLOW_DEFAULT_WAIT_S;
    if ((s = admincall_param(c, "wait")) && !svcadmin_count(s, 0, FOLLOW_MAX_WAIT_S, &wait))
        return "wait: must be 0..60 seconds";
    c->until_us = time_mono_us() + wait * 1000000;
    /* A follower must not be woken by the record of its own polling. */
    c->exclude[0] = "admin.audit.follow";
    c->query.exclude_event_types = c->exclude;
    c->query.n_exclude_event_types = 1;
    return NULL;
}

static const char *prepare_export(admincall_t *c)
{
    const char *why = prepare_query(c);
    if (why)
        return why;
    c->csv = !admincall_param(c, "format") || strcmp(admincall_param(c, "format"), "csv") == 0;
    c->query.limit = EXPORT_PAGE;
    c->out = evbuffer_new();
    if (c->csv)
        evbuffer_add(c->out, CSV_HEADER, strlen(CSV_HEADER));
    else
        evbuffer_add(c->out, "[", 1);
    return NULL;
}

static const char *prepare_verify(admincall_t *c)
{
    int64_t v = 1;
    const char *s = admincall_param(c, "from_seq");
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
    } else if (s && !svcadmin_count(s, 0, INT64_MAX, &v)) {
        return "from_seq: must be a sequence number";
    }
    c->verify_from = v > 0 ? v : 1;
    /* head=SEQ:HASH as the audit service's head file holds it (trailing newline allowed). */
    const char *head = admincall_param(c, "head");
    if (head) {
        char *colon = strchr(head, ':');
        size_t hlen = colon ? strcspn(colon + 1, "\r\n") : 0;
        char seq[24];
        size_t slen = colon ? (size_t)(colon - head) : 0;
        if (!colon || slen == 0 || slen >= sizeof seq || hlen != 64 ||
            strspn(colon + 1, "0123456789abcdefABCDEF") < 64)
            return "head: expected SEQ:HASH (64 hex digits)";
        memcpy(seq, head, slen);
        seq[slen] = '\0';
        if (!svcadmin_count(seq, 1, INT64_MAX, &c->verify_head_seq))
            return "head: expected SEQ:HASH (64 hex digits)";
        memcpy(c->verify_head_hash, colon + 1, 64);
        c->verify_head_hash[64] = '\0';
    }
    c->until_us = time_mono_us() + (int64_t)VERIFY_BUDGET_MS * 1000;
    return NULL;
}

/* Send an audit service request (query or verify) for c; done gets the reply. */
static void audit_request(admincall_t *c, Kooisv__Envelope *env, int timeout_ms,
                          dispatch_done_fn done)
{
    /* Sub-requests get their own ids: a late reply must never match a later one. */
    char rid[64];
    snprintf(rid, sizeof rid, "%s/%d", c->rid, ++c->subcalls);
    env->request_id = rid;
    if (admincall_dispatch(c, SVC_AUDIT, env, timeout_ms, done, c) != 0)
        admincall_finish_error(c, 503, RC_INTERNAL, "the audit service is not configured");
}

/* Ask the audit service for c->query; done gets the reply. */
static void audit_query_send(admincall_t *c, dispatch_done_fn done)
{
    Kooisv__Caller caller;
    Kooisv__Envelope env = admincall_envelope(c, &caller, ADMINCALL_SERVICE_TIMEOUT_MS);
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_QUERY;
    env.audit_query = &c->query;
    audit_request(c, &env, ADMINCALL_SERVICE_TIMEOUT_MS, done);
}

static void on_query_reply(Kooisv__Reply *reply, void *arg)
{
    admincall_t *c = arg;
    if (!admincall_expect(c, reply, KOOISV__REPLY__RESULT_AUDIT_QUERY, "audit query"))
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
        admincall_finish(c, 200, RC_OK, msg, "text/csv; charset=utf-8", b, NULL);
        evbuffer_free(b);
    } else {
        json_t *doc =
            json_pack("{s:o, s:I, s:I}", "entries", entries_json(r->entries, r->n_entries),
                      "head_seq", (json_int_t)r->head_seq, "count", (json_int_t)r->n_entries);
        json_object_set_new(doc, "next_before",
                            r->next_before_seq ? json_integer(r->next_before_seq) : json_null());
        admincall_finish_json(c, 200, RC_OK, msg, doc);
    }
    kooisv__reply__free_unpacked(reply, NULL);
}

static void run_query(admincall_t *c)
{
    audit_query_send(c, on_query_reply);
}

static void on_follow_reply(Kooisv__Reply *reply, void *arg);

static void on_follow_timer(evutil_socket_t fd, short what, void *arg)
{
    audit_query_send(arg, on_follow_reply);
}

static void on_follow_reply(Kooisv__Reply *reply, void *arg)
{
    admincall_t *c = arg;
    if (!admincall_expect(c, reply, KOOISV__REPLY__RESULT_AUDIT_QUERY, "audit follow"))
        return;
    const Kooisv__AuditQueryResult *r = reply->audit_query;
    int64_t now = time_mono_us();
    if (r->n_entries > 0 || now + (int64_t)FOLLOW_POLL_MS * 1000 > c->until_us ||
        admincall_client_gone(c)) {
        char msg[64];
        snprintf(msg, sizeof msg, "%zu entries", r->n_entries);
        admincall_finish_json(
            c, 200, RC_OK, msg,
            json_pack("{s:o, s:I, s:I, s:I}", "entries", entries_json(r->entries, r->n_entries),
                      "next_after", (json_int_t)r->next_after_seq, "head_seq",
                      (json_int_t)r->head_seq, "count", (json_int_t)r->n_entries));
    } else {
        c->query.after_seq = r->next_after_seq;
        if (!c->timer)
            c->timer = evtimer_new(c->host->base, on_follow_timer, c);
        struct timeval tv = {0, FOLLOW_POLL_MS * 1000};
        evtimer_add(c->timer, &tv);
    }
    kooisv__reply__free_unpacked(reply, NULL);
}

static void run_follow(admincall_t *c)
{
    audit_query_send(c, on_follow_reply);
}

static void export_next(admincall_t *c);

/* The previous page has left for the socket: ask for the next one, or end the answer. */
static void on_export_written(admincall_t *c)
{
    if (c->query.before_seq) {
        export_next(c);
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "%zu entries exported", c->exported);
    admincall_finish(c, 200, RC_OK, msg, NULL, NULL, NULL);
}

/* One page at a time, each rendered and sent before the next is asked for: the export's memory
 * is one page, whatever its size. */
static void on_export_reply(Kooisv__Reply *reply, void *arg)
{
    admincall_t *c = arg;
    if (!admincall_expect(c, reply, KOOISV__REPLY__RESULT_AUDIT_QUERY, "audit export"))
        return;
    const Kooisv__AuditQueryResult *r = reply->audit_query;
    if (!c->streaming) {
        char disposition[128];
        snprintf(disposition, sizeof disposition, "attachment; filename=\"kooisv-audit-%.8s.%s\"",
                 c->rid, c->csv ? "csv" : "json");
        admincall_stream_start(
            c, c->csv ? "text/csv; charset=utf-8" : "application/json; charset=utf-8", disposition);
    }
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
    c->query.before_seq = r->next_before_seq;
    kooisv__reply__free_unpacked(reply, NULL);
    if (!c->query.before_seq && !c->csv)
        evbuffer_add(c->out, "\n]\n", 3);
    admincall_stream_write(c, c->out, on_export_written);
}

static void export_next(admincall_t *c)
{
    audit_query_send(c, on_export_reply);
}

static void run_export(admincall_t *c)
{
    export_next(c);
}

static void verify_round(admincall_t *c);

static void on_verify_reply(Kooisv__Reply *reply, void *arg)
{
    admincall_t *c = arg;
    if (!admincall_expect(c, reply, KOOISV__REPLY__RESULT_AUDIT_VERIFY, "audit verify"))
        return;
    const Kooisv__AuditVerifyResult *r = reply->audit_verify;
    c->verify_checked += r->checked;
    if (r->ok && r->next_seq && !admincall_client_gone(c) && time_mono_us() < c->until_us) {
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
    admincall_finish_json(c, 200, RC_OK, msg, doc);
}

static void verify_round(admincall_t *c)
{
    Kooisv__Caller caller;
    Kooisv__Envelope env = admincall_envelope(c, &caller, VERIFY_CALL_MS);
    Kooisv__AuditVerify v = KOOISV__AUDIT_VERIFY__INIT;
    v.from_seq = c->verify_from;
    v.expect_head_seq = c->verify_head_seq;
    v.expect_head_hash = c->verify_head_hash;
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_VERIFY;
    env.audit_verify = &v;
    audit_request(c, &env, VERIFY_CALL_MS, on_verify_reply);
}

/* One route per entry: kept as a table. */
/* clang-format off */
static const adminroute_t routes[] = {
    {EVHTTP_REQ_GET, "/v1/audit", "audit.query", ROLE_AUDITOR, query_params, prepare_query,
     run_query, SVC_AUDIT, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/audit/follow", "audit.follow", ROLE_AUDITOR, follow_params,
     prepare_follow, run_follow, SVC_AUDIT, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/audit/export", "audit.export", ROLE_AUDITOR, export_params,
     prepare_export, run_export, SVC_AUDIT, {0}, {0}},
    {EVHTTP_REQ_POST, "/v1/audit/verify", "audit.verify", ROLE_AUDITOR, verify_params,
     prepare_verify, verify_round, SVC_AUDIT, {0}, {0}},
};
/* clang-format on */

const adminroute_t *adminaudit_routes(size_t *n)
{
    *n = sizeof routes / sizeof *routes;
    return routes;
}
