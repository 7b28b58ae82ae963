/* produce: one marketplace request from arrival to answer.
 *
 *   route (404/405) -> authenticate -> validate -> audit intent -> service -> answer -> outcome
 *
 * Authentication comes before validation, and the cheap checks before the costly ones: a source
 * that used up its budget of refused calls (srclimit) is refused at once; then timestamp, nonce
 * and signature must be present and well-formed and the timestamp fresh, all before the body is
 * parsed or an HMAC computed. The signature is then checked over the canonical JSON when the
 * body parses and over the raw bytes in any case, so even a body that is not JSON can be
 * authenticated first. A timestamp/nonce problem answers 000002, a signature problem 000001; only
 * an authenticated body is then validated (000002 naming the field). Every call that reached
 * this point, accepted or rejected, is recorded by the audit service before it is answered (a
 * flood of refused unauthenticated calls past its source's per-minute quota is counted instead,
 * and recorded as one summary entry per source and minute); an accepted call runs only after the
 * audit service stored its intent and found its nonce fresh.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "resultcode.h"
#include "auditrec.h"
#include "basicreq.h"
#include "canonjson.h"
#include "gateway.h"
#include "kitsync.h"
#include "log.h"
#include "metrics.h"
#include "randutil.h"
#include "resref.h"
#include "sigv2.h"
#include "srclimit.h"
#include "timeutil.h"
#include "xmalloc.h"

#define NONCE_MAX 128
#define SERVICE_MARGIN_MS 20 /* kept back from the deadline for writing the answer */

typedef enum { CALL_BASIC, CALL_KIT } call_kind_t;

typedef struct {
    gw_worker_t *worker;
    struct evhttp_request *req;
    call_kind_t kind;
    char rid[37];
    char event_type[32];
    int64_t received_ms;
    int64_t start_us;
    char peer[PEER_ADDR_MAX];
    char source[PEER_ADDR_MAX];
    Kooisv__Caller caller;
    Kooisv__Envelope env; /* the call; its body is set once validated */
    service_id_t svc;
    char nonce[NONCE_MAX + 1];
    int64_t nonce_ts_ms;
    Kooisv__ResourceRef **res;
    size_t n_res;
    /* verdict */
    const char *code; /* result code once decided */
    char msg[512];
    bool rejected;        /* refused by the gateway itself (or audit failed) */
    bool unauthenticated; /* refused before its signature was found valid */
    bool unrecorded;      /* ...and only counted for its source's summary (srclimit) */
    bool intent_stored;
    Kooisv__Reply *reply; /* the service's answer */
} call_t;

static const char *call_key(const call_t *c)
{
    return c->kind == CALL_KIT ? gw.kit_key : gw.basic_key;
}

static void call_free(call_t *c)
{
    if (c->kind == CALL_KIT)
        kitsync_free_body(&c->env);
    else
        basicreq_free_body(&c->env);
    resref_free(c->res, c->n_res);
    if (c->reply)
        kooisv__reply__free_unpacked(c->reply, NULL);
    c->worker->inflight--;
    metrics_inflight_add(-1);
    free(c);
}

/* An envelope carrying c's identity with no body yet (audit records share it). */
static Kooisv__Envelope envelope_header(call_t *c)
{
    Kooisv__Envelope e = KOOISV__ENVELOPE__INIT;
    e.request_id = c->rid;
    e.trace_id = c->rid;
    e.received_ms = c->received_ms;
    e.source_addr = c->source;
    e.caller = &c->caller;
    e.test_flag = c->env.test_flag;
    e.deadline_ms = c->received_ms + gw.deadline_ms;
    return e;
}

/* The intent record. A rejected call keeps its nonce for the record, but the reject code tells
 * the audit service not to claim it: nothing ran, so the genuine request may still use it.
 * (A call answered before its intent was stored is always a rejected one: auditrec_outcome.) */
static void intent_fill(call_t *c, Kooisv__AuditIntent *intent)
{
    kooisv__audit_intent__init(intent);
    intent->event_type = c->event_type;
    intent->resources = c->res;
    intent->n_resources = c->n_res;
    intent->nonce = c->nonce;
    intent->nonce_ts_ms = c->nonce_ts_ms;
    if (c->rejected) {
        intent->reject_reason = c->msg;
        intent->reject_code = (char *)c->code;
    }
}

/* ------------------------------------------------------------------ answering */

static void log_request(call_t *c, int status, int64_t latency_us)
{
    char msg[700], fields[1200];
    log_quote(c->msg, msg, sizeof msg);
    snprintf(fields, sizeof fields,
             "msg=\"request\" kind=%s activity=%s code=%s http=%d latency_ms=%.1f peer=%s src=%s "
             "caller=%s:%s test=%d result=%s",
             c->kind == CALL_KIT ? "kit" : "basic", c->event_type, c->code, status,
             (double)latency_us / 1000.0, c->peer, c->source, c->caller.kind, c->caller.id,
             c->env.test_flag ? 1 : 0, msg);
    log_fields(LOG_INFO, c->rid, fields);
}

static void respond(call_t *c)
{
    gw_worker_t *w = c->worker;
    char *body = answer_render(c->code, c->msg, c->reply);
    server_request_end(c->req);
    answer_send(c->req, 200, body, strlen(body), call_key(c), c->rid, w->stopping);
    c->req = NULL; /* evhttp owns (and may have freed) it now */
    free(body);
    int64_t latency_us = time_mono_us() - c->start_us;
    log_request(c, 200, latency_us);
    metrics_request_done(c->event_type, c->code, latency_us);
    metrics_http_status(200);

    if (!c->unrecorded) {
        Kooisv__Envelope rec = envelope_header(c);
        Kooisv__AuditIntent intent;
        intent_fill(c, &intent);
        auditrec_outcome(w->auditq, &rec, &intent, c->intent_stored, c->code, c->msg, latency_us,
                         200);
    }
    call_free(c);
}

static void settle(call_t *c, const char *code, const char *fmt, const char *arg)
{
    c->code = code;
    snprintf(c->msg, sizeof c->msg, fmt, arg ? arg : "");
}

/* ------------------------------------------------------------------ service call */

static void on_service_reply(Kooisv__Reply *reply, void *arg)
{
    call_t *c = arg;
    const char *svc = services_name(c->svc);
    if (!reply) {
        log_warn(c->rid,
                 "no answer from the %s service (no replica connected, or none answered "
                 "within the deadline) after %lld ms",
                 svc, (long long)((time_mono_us() - c->start_us) / 1000));
        settle(c, RC_INTERNAL, "internal error: %s service unavailable, retry later", svc);
    } else if (!answer_code_known(reply->result_code)) {
        log_error(c->rid, "%s service answered an unknown result code", svc);
        settle(c, RC_INTERNAL, "internal error%s", NULL);
    } else {
        c->reply = reply;
        c->code = reply->result_code;
        const char *msg = reply->result_msg && *reply->result_msg
                              ? reply->result_msg
                              : (strcmp(reply->result_code, RC_OK) == 0 ? "success" : "error");
        snprintf(c->msg, sizeof c->msg, "%s", msg);
        bool ok = strcmp(c->code, RC_OK) == 0;
        if (ok && c->env.body_case == KOOISV__ENVELOPE__BODY_NEW_INSTANCE &&
            (reply->result_case != KOOISV__REPLY__RESULT_NEW_INSTANCE || !reply->new_instance ||
             !*reply->new_instance->instance_id)) {
            /* Safe to fail: a retry with the same order gets the same instance. */
            log_error(c->rid, "order service answered newInstance without an instanceId");
            settle(c, RC_INTERNAL, "internal error: no instanceId%s", NULL);
        } else if (ok && c->env.body_case == KOOISV__ENVELOPE__BODY_QUERY_INSTANCE &&
                   reply->result_case != KOOISV__REPLY__RESULT_QUERY_INSTANCE) {
            log_error(c->rid, "order service answered queryInstance without info");
            settle(c, RC_INTERNAL, "internal error: no instance info%s", NULL);
        }
    }
    respond(c);
}

static void call_service(call_t *c)
{
    int64_t spent_ms = (time_mono_us() - c->start_us) / 1000;
    int remaining = gw.deadline_ms - (int)spent_ms - SERVICE_MARGIN_MS;
    if (remaining <= 0) {
        settle(c, RC_INTERNAL, "internal error: deadline exceeded, retry later%s", NULL);
        respond(c);
        return;
    }
    c->env.deadline_ms = c->received_ms + gw.deadline_ms;
    if (dispatch_call(c->worker->dispatch, c->svc, &c->env, remaining, on_service_reply, c) != 0) {
        log_error(c->rid, "%s service is not configured", services_name(c->svc));
        settle(c, RC_INTERNAL, "internal error: %s service not configured", services_name(c->svc));
        respond(c);
    }
}

/* ------------------------------------------------------------------ audit intent */

static void on_intent_reply(Kooisv__Reply *reply, void *arg)
{
    call_t *c = arg;
    bool replay;
    bool stored = auditrec_intent_stored(reply, &replay);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    if (c->rejected) {
        c->intent_stored = stored;
        respond(c);
        return;
    }
    if (!stored) {
        /* Nothing runs unrecorded. */
        log_error(c->rid, "audit service %s: call not executed",
                  reply ? "refused the intent" : "unavailable");
        c->rejected = true;
        settle(c, RC_INTERNAL, "internal error: audit unavailable, retry later%s", NULL);
        respond(c);
        return;
    }
    c->intent_stored = true;
    if (replay) {
        settle(c, RC_AUTH, "replayed nonce%s", NULL);
        respond(c);
        return;
    }
    call_service(c);
}

static void send_intent(call_t *c)
{
    Kooisv__Envelope rec = envelope_header(c);
    Kooisv__AuditIntent intent;
    intent_fill(c, &intent);
    /* The audit service gets a third of the budget; the service call keeps the rest. */
    auditrec_send_intent(c->worker->dispatch, &rec, &intent, gw.deadline_ms / 3, on_intent_reply,
                         c);
}

/* ------------------------------------------------------------------ checks */

static void reject(call_t *c, const char *code, const char *msg)
{
    c->rejected = true;
    c->code = code;
    snprintf(c->msg, sizeof c->msg, "%s", msg);
}

/* Best effort for the record of a rejected call: the instance it names, if readable. */
static void resources_from_raw(call_t *c, const json_t *body)
{
    const char *instance = json_string_value(json_object_get(body, "instanceId"));
    if (instance && strlen(instance) <= 64)
        resref_add(&c->res, &c->n_res, "instance", instance);
}

/* A readable event type for a body whose activity is not one we know: bounded and plain. */
static void set_event_type(call_t *c, const char *name)
{
    bool plain = name && *name && strlen(name) < sizeof c->event_type;
    for (const char *p = name; plain && *p; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
    snprintf(c->event_type, sizeof c->event_type, "%s", plain ? name : "unknown");
}

/* The call's verdict from the signature alone: throttled sources and calls that fail the cheap
 * checks are refused before the body is parsed or any HMAC is computed. Sets c->rejected and,
 * for a refusal of an unauthenticated call, c->unauthenticated. */
static void authenticate(call_t *c, const char *raw, size_t len, const char *canonical,
                         const char *ts, const char *nonce, const char *sig, bool nonce_ok,
                         bool throttled, int64_t now)
{
    if (throttled) {
        metrics_source_throttled();
        reject(c, RC_AUTH, "too many refused calls from this address; retry later");
        c->unauthenticated = true;
        return;
    }
    sigv2_check_t check = {
        .kind = c->kind == CALL_KIT ? SIGV2_KIT : SIGV2_BASIC,
        .key = call_key(c),
        .timestamp = ts,
        .nonce = nonce,
        .signature = sig,
        .canonical = canonical,
        .canonical_len = canonical ? strlen(canonical) : 0,
        .raw = raw,
        .raw_len = len,
        .now_ms = now,
        .window_ms = 0,
    };
    sigv2_result_t verdict = nonce && !nonce_ok ? SIGV2_NO_TIMESTAMP : sigv2_verify(&check);
    switch (verdict) {
    case SIGV2_OK:
    case SIGV2_OK_RAW:
        return;
    case SIGV2_NO_TIMESTAMP:
    case SIGV2_STALE:
        reject(c, RC_INVALID, nonce && !nonce_ok ? "nonce is malformed" : sigv2_reason(verdict));
        break;
    case SIGV2_NO_SIGNATURE:
    case SIGV2_BAD_SIGNATURE:
        reject(c, RC_AUTH, sigv2_reason(verdict));
        break;
    }
    c->unauthenticated = true;
    srclimit_failed(gw.srclimit, c->source, now);
}

/* Validate an authenticated body into the envelope (or reject it naming the field). */
static void validate(call_t *c, const json_t *body, const json_error_t *jerr, const char *kit_name)
{
    char msg[512];
    if (!body) {
        snprintf(msg, sizeof msg, "request body is not valid JSON in UTF-8 (line %d, column %d)",
                 jerr->line, jerr->column);
        reject(c, RC_INVALID, msg);
    } else if (!json_is_object(body)) {
        reject(c, RC_INVALID, "request body must be a JSON object");
    } else if (c->kind == CALL_BASIC) {
        const char *code = basicreq_build(body, &c->env, msg, sizeof msg);
        if (strcmp(code, RC_OK) != 0)
            reject(c, code, msg);
        else {
            c->svc = SVC_ORDER;
            basicreq_resources(&c->env, &c->res, &c->n_res);
        }
    } else {
        service_id_t svc = SVC_TENANT;
        const char *code = kitsync_build(kit_name, body, &c->env, &svc, msg, sizeof msg);
        if (strcmp(code, RC_OK) != 0) {
            kitsync_free_body(&c->env);
            reject(c, code, msg);
        } else {
            c->svc = svc;
            kitsync_resources(&c->env, &c->res, &c->n_res);
        }
    }
}

/* Bodies up to this size are still read for the record of a call refused by the cheap checks
 * (its activity, instance and test flag); larger ones are not worth an unauthenticated parse. */
#define RECORD_PARSE_MAX 4096

static void check_call(call_t *c, const char *kit_name)
{
    struct evhttp_request *req = c->req;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *raw = len ? (const char *)evbuffer_pullup(in, -1) : "";

    /* Signature pieces: query string (basic) or headers (kit). */
    struct evkeyvalq query;
    TAILQ_INIT(&query);
    const char *ts = NULL, *nonce = NULL, *sig = NULL;
    if (c->kind == CALL_BASIC) {
        const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
        if (q && evhttp_parse_query_str(q, &query) == 0) {
            ts = evhttp_find_header(&query, "timestamp");
            nonce = evhttp_find_header(&query, "nonce");
            sig = evhttp_find_header(&query, "signature");
        }
    } else {
        struct evkeyvalq *h = evhttp_request_get_input_headers(req);
        ts = evhttp_find_header(h, "x-timestamp");
        nonce = evhttp_find_header(h, "x-nonce");
        sig = evhttp_find_header(h, "x-sign");
    }
    bool nonce_ok = nonce && *nonce && strlen(nonce) <= NONCE_MAX;
    for (const char *p = nonce; nonce_ok && *p; p++)
        nonce_ok = *p > 0x20 && *p < 0x7f;
    if (nonce_ok)
        snprintf(c->nonce, sizeof c->nonce, "%s", nonce);
    if (ts)
        time_parse_ms(ts, &c->nonce_ts_ms);

    /* The cheap checks first; the body is parsed (and canonicalised for the HMAC) only for a
     * call that passed them. */
    sigv2_check_t pre = {.kind = c->kind == CALL_KIT ? SIGV2_KIT : SIGV2_BASIC,
                         .key = call_key(c),
                         .timestamp = ts,
                         .nonce = nonce,
                         .signature = sig,
                         .now_ms = time_now_ms()};
    bool throttled = srclimit_throttled(gw.srclimit, c->source, pre.now_ms);
    bool cheap_ok = !throttled && !(nonce && !nonce_ok) && sigv2_precheck(&pre) == SIGV2_OK;
    json_error_t jerr;
    json_t *body = cheap_ok || len <= RECORD_PARSE_MAX ? canonjson_parse(raw, len, &jerr) : NULL;
    char *canonical = cheap_ok && body ? canonjson_dump(body) : NULL;

    if (c->kind == CALL_KIT)
        snprintf(c->event_type, sizeof c->event_type, "%s", kit_name);
    else
        set_event_type(c, json_string_value(json_object_get(body, "activity")));

    authenticate(c, raw, len, canonical, ts, nonce, sig, nonce_ok, throttled, pre.now_ms);
    if (!c->rejected)
        validate(c, body, &jerr, kit_name);
    if (c->rejected && body && json_is_object(body)) {
        if (!c->n_res)
            resources_from_raw(c, body);
        /* The record of a rejected debugging call still says it was one. */
        const json_t *flag = json_object_get(body, "testFlag");
        c->env.test_flag = (json_is_string(flag) && strcmp(json_string_value(flag), "1") == 0) ||
                           (json_is_integer(flag) && json_integer_value(flag) == 1);
    }

    evhttp_clear_headers(&query);
    free(canonical);
    json_decref(body);
}

/* ------------------------------------------------------------------ entry */

static void answer_plain(struct evhttp_request *req, int status, const char *key, const char *msg,
                         const char *path)
{
    char rid[37];
    rand_uuid7(rid);
    json_t *o = json_object();
    json_object_set_new(o, "resultCode", json_string(RC_INVALID));
    json_object_set_new(o, "resultMsg", json_string(msg));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char peer[PEER_ADDR_MAX];
    peer_address(req, peer, sizeof peer);
    if (status == 405)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
    server_request_end(req);
    char qpath[300], fields[600];
    log_quote(path, qpath, sizeof qpath);
    snprintf(fields, sizeof fields, "msg=\"request\" http=%d path=%s method=%d peer=%s", status,
             qpath, (int)evhttp_request_get_command(req), peer);
    answer_send(req, status, body, strlen(body), key, rid, 0);
    log_fields(LOG_INFO, rid, fields);
    metrics_http_status(status);
    free(body);
}

void produce_handle(struct evhttp_request *req, void *arg)
{
    gw_worker_t *w = arg;
    server_request_begin(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path)
        path = "";
    call_kind_t kind;
    const char *kit_name = NULL;
    size_t prefix_len = strlen(gw.kit_prefix);
    if (strcmp(path, gw.produce_path) == 0) {
        kind = CALL_BASIC;
    } else if (strncmp(path, gw.kit_prefix, prefix_len) == 0 && kitsync_known(path + prefix_len)) {
        kind = CALL_KIT;
        kit_name = path + prefix_len;
    } else {
        answer_plain(req, 404, gw.basic_key, "unknown path", path);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        answer_plain(req, 405, kind == CALL_KIT ? gw.kit_key : gw.basic_key, "method not allowed",
                     path);
        return;
    }

    call_t *c = xcalloc(1, sizeof *c);
    c->worker = w;
    c->req = req;
    c->kind = kind;
    c->start_us = time_mono_us();
    c->received_ms = time_now_ms();
    rand_uuid7(c->rid);
    w->inflight++;
    metrics_inflight_add(1);
    kooisv__envelope__init(&c->env);
    kooisv__caller__init(&c->caller);
    c->caller.kind = kind == CALL_KIT ? "kit" : "basic";
    c->caller.id = kind == CALL_KIT ? gw.kit_key_id : gw.basic_key_id;
    c->env.request_id = c->rid;
    c->env.trace_id = c->rid;
    c->env.received_ms = c->received_ms;
    c->env.source_addr = c->source;
    c->env.caller = &c->caller;

    peer_request_source(gw.trusted, req, c->peer, c->source, sizeof c->source);

    check_call(c, kit_name);
    /* A flood of refused unauthenticated calls must not fill the trail: past its source's quota
     * they are answered at once and counted for one summary entry (produce_record_summaries). */
    if (c->unauthenticated && !srclimit_record(gw.srclimit, c->source, time_now_ms())) {
        c->unrecorded = true;
        metrics_reject_unrecorded();
        respond(c);
        return;
    }
    send_intent(c);
}

void produce_record_summaries(gw_worker_t *w)
{
    srclimit_summary_t sums[32];
    size_t n = srclimit_summaries(gw.srclimit, time_now_ms(), sums, 32);
    for (size_t i = 0; i < n; i++) {
        char rid[37], from[40], to[40], msg[512];
        rand_uuid7(rid);
        time_format_iso(sums[i].from_ms, from, sizeof from);
        time_format_iso(sums[i].to_ms, to, sizeof to);
        snprintf(msg, sizeof msg,
                 "%ld refused unauthenticated calls from %.63s between %.39s and %.39s (beyond the "
                 "per-minute quota, not recorded one by one)",
                 sums[i].count, sums[i].source, from, to);
        Kooisv__Caller caller = KOOISV__CALLER__INIT;
        caller.kind = "system";
        caller.id = "gateway";
        Kooisv__Envelope rec = KOOISV__ENVELOPE__INIT;
        rec.request_id = rid;
        rec.trace_id = rid;
        rec.received_ms = sums[i].to_ms;
        rec.source_addr = sums[i].source;
        rec.caller = &caller;
        Kooisv__ResourceRef **res = NULL;
        size_t n_res = 0;
        resref_add(&res, &n_res, "source", sums[i].source);
        Kooisv__AuditIntent intent = KOOISV__AUDIT_INTENT__INIT;
        intent.event_type = "rejected.unauthenticated";
        intent.resources = res;
        intent.n_resources = n_res;
        intent.nonce = "";
        intent.reject_reason = msg;
        intent.reject_code = RC_AUTH;
        auditrec_outcome(w->auditq, &rec, &intent, false, RC_AUTH, msg, 0, 200);
        resref_free(res, n_res);
        log_warn(rid, "%s", msg);
    }
}
