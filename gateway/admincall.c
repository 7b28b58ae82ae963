#include "admincall.h"
#include "resultcode.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "auditrec.h"
#include "console.h"
#include "log.h"
#include "randutil.h"
#include "resref.h"
#include "timeutil.h"
#include "xmalloc.h"

#define AUDIT_TIMEOUT_MS 2000 /* storing the intent: fail closed after this */

admincall_t *admincall_new(admincall_host_t *host, struct evhttp_request *req)
{
    admincall_t *c = xcalloc(1, sizeof *c);
    c->host = host;
    c->req = req;
    rand_uuid7(c->rid);
    c->received_ms = time_now_ms();
    c->start_us = time_mono_us();
    snprintf(c->event, sizeof c->event, "admin.unknown");
    snprintf(c->caller_id, sizeof c->caller_id, "-");
    TAILQ_INIT(&c->params);
    peer_address(req, c->source, sizeof c->source);
    c->next = host->calls;
    if (host->calls)
        host->calls->prev = c;
    host->calls = c;
    return c;
}

static void call_free(admincall_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->host->calls = c->next;
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
    json_decref(c->body);
    free(c);
}

Kooisv__Envelope admincall_envelope(admincall_t *c, Kooisv__Caller *caller, int timeout_ms)
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

/* A service request of a call: its reply reaches done only while the call lives. */
typedef struct {
    admincall_t *call;
    dispatch_done_fn done;
    void *arg;
} pending_t;

static void on_dispatch_reply(Kooisv__Reply *reply, void *arg)
{
    pending_t p = *(pending_t *)arg;
    free(arg);
    p.call->inflight--;
    if (!p.call->finished) {
        p.done(reply, p.arg);
        return;
    }
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    if (p.call->inflight == 0)
        call_free(p.call);
}

int admincall_dispatch(admincall_t *c, service_id_t svc, const Kooisv__Envelope *env,
                       int timeout_ms, dispatch_done_fn done, void *arg)
{
    pending_t *p = xmalloc(sizeof *p);
    *p = (pending_t){c, done, arg};
    if (dispatch_call(c->host->dispatch, svc, env, timeout_ms, on_dispatch_reply, p) != 0) {
        free(p);
        return -1;
    }
    c->inflight++;
    return 0;
}

static void intent_fill(admincall_t *c, Kooisv__AuditIntent *in)
{
    kooisv__audit_intent__init(in);
    in->event_type = c->event;
    in->resources = c->res;
    in->n_resources = c->n_res;
}

/* ================================================================ answers */

static void on_stream_gone(evutil_socket_t fd, short what, void *arg)
{
    admincall_finish_error(arg, 499, RC_INTERNAL, "client went away during the answer");
}

/* The connection of a streamed answer closed: finish the call on the next loop turn (not inside
 * libevent's close path). */
static void on_stream_close(struct evhttp_connection *evcon, void *arg)
{
    admincall_t *c = arg;
    if (!c->timer)
        c->timer = evtimer_new(c->host->base, on_stream_gone, c);
    event_active(c->timer, EV_TIMEOUT, 1);
}

static void on_chunk_written(struct evhttp_connection *evcon, void *arg)
{
    admincall_t *c = arg;
    void (*written)(admincall_t *) = c->written;
    c->written = NULL;
    if (written)
        written(c);
}

void admincall_stream_start(admincall_t *c, const char *content_type, const char *disposition)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "X-Request-Id", c->rid);
    evhttp_add_header(h, "Cache-Control", "no-store");
    console_api_headers(h);
    if (disposition)
        evhttp_add_header(h, "Content-Disposition", disposition);
    evhttp_send_reply_start(c->req, 200, NULL);
    c->streaming = true;
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    if (evcon)
        evhttp_connection_set_closecb(evcon, on_stream_close, c);
}

void admincall_stream_write(admincall_t *c, struct evbuffer *buf, void (*written)(admincall_t *c))
{
    c->written = written;
    if (admincall_client_gone(c)) {
        evbuffer_drain(buf, evbuffer_get_length(buf));
        on_stream_close(NULL, c);
        return;
    }
    evhttp_send_reply_chunk_with_cb(c->req, buf, on_chunk_written, c);
}

/* End a streamed answer: the final chunk after a success; after a failure the connection is cut
 * (shutdown), so the client cannot take a partial export for a whole one. */
static void stream_end(admincall_t *c, int status)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    if (evcon) {
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        if (status >= 400) {
            struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
            evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
            if (fd >= 0)
                shutdown(fd, SHUT_RDWR);
        }
    }
    evhttp_send_reply_end(c->req);
    c->req = NULL;
}

void admincall_finish(admincall_t *c, int status, const char *code, const char *msg,
                      const char *content_type, struct evbuffer *body, const char *disposition)
{
    if (c->req && c->streaming) {
        stream_end(c, status);
    } else if (c->req) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
        evhttp_add_header(h, "Content-Type", content_type);
        evhttp_add_header(h, "X-Request-Id", c->rid);
        evhttp_add_header(h, "Cache-Control", "no-store");
        console_api_headers(h);
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
    Kooisv__Envelope rec = admincall_envelope(c, &caller, AUDIT_TIMEOUT_MS);
    Kooisv__AuditIntent intent;
    intent_fill(c, &intent);
    auditrec_outcome(c->host->auditq, &rec, &intent, c->intent_stored, code, msg, latency_us,
                     status);
    if (c->inflight > 0)
        c->finished = true; /* freed when the last reply comes back (on_dispatch_reply) */
    else
        call_free(c);
}

void admincall_finish_json(admincall_t *c, int status, const char *code, const char *msg,
                           json_t *doc)
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
        code = RC_INTERNAL;
        msg = "answer could not be encoded";
        evbuffer_add_printf(b, "{\"error\":\"%s\",\"code\":\"000005\"}\n", msg);
    }
    admincall_finish(c, status, code, msg, "application/json; charset=utf-8", b, NULL);
    evbuffer_free(b);
}

void admincall_finish_error(admincall_t *c, int status, const char *code, const char *fmt, ...)
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
    admincall_finish_json(c, status, code, msg, doc);
}

/* HTTP status for a service's result code. */
static int http_status_of(const char *code)
{
    if (strcmp(code, RC_OK) == 0)
        return 200;
    if (strcmp(code, RC_AUTH) == 0)
        return 403;
    if (strcmp(code, RC_INVALID) == 0 || strcmp(code, RC_SECRET_UNREADABLE) == 0)
        return 400;
    if (strcmp(code, RC_NO_INSTANCE) == 0 || strcmp(code, RC_NO_RESOURCE) == 0)
        return 404;
    if (strcmp(code, RC_BUSY) == 0)
        return 409;
    return 502;
}

bool admincall_reply_ok(const Kooisv__Reply *r)
{
    return r && r->result_code && strcmp(r->result_code, RC_OK) == 0;
}

void admincall_finish_failed(admincall_t *c, const char *what, const Kooisv__Reply *r)
{
    if (!r)
        admincall_finish_error(c, 503, RC_INTERNAL, "%s did not answer in time", what);
    else
        admincall_finish_error(c, http_status_of(r->result_code), r->result_code, "%s: %s", what,
                               r->result_msg && *r->result_msg ? r->result_msg : "error");
}

bool admincall_expect(admincall_t *c, Kooisv__Reply *reply, Kooisv__Reply__ResultCase result,
                      const char *what)
{
    if (admincall_reply_ok(reply) && reply->result_case == result)
        return true;
    admincall_finish_failed(c, what, reply);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    return false;
}

/* ================================================================ parameters */

const char *admincall_param(const admincall_t *c, const char *name)
{
    const char *v = evhttp_find_header(&c->params, name);
    return v && *v ? v : NULL;
}

char *admincall_param_or_empty(const admincall_t *c, const char *name)
{
    const char *v = admincall_param(c, name);
    return (char *)(v ? v : "");
}

bool admincall_client_gone(const admincall_t *c)
{
    return !c->req || !evhttp_request_get_connection(c->req);
}

/* ================================================================ intent, then the route */

static void on_intent_reply(Kooisv__Reply *reply, void *arg)
{
    admincall_t *c = arg;
    bool stored = auditrec_intent_stored(reply, NULL);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    if (!stored) {
        /* Nothing runs unlogged. */
        log_error(c->rid, "audit service %s: admin call not executed",
                  reply ? "refused the intent" : "unavailable");
        admincall_finish_error(c, 503, RC_INTERNAL, "audit unavailable: the call was not executed");
        return;
    }
    c->intent_stored = true;
    if (admincall_client_gone(c)) {
        admincall_finish_error(c, 499, RC_INTERNAL, "client went away before the call ran");
        return;
    }
    c->route->run(c);
}

void admincall_start(admincall_t *c)
{
    Kooisv__Caller caller;
    Kooisv__Envelope rec = admincall_envelope(c, &caller, AUDIT_TIMEOUT_MS);
    Kooisv__AuditIntent intent;
    intent_fill(c, &intent);
    auditrec_send_intent(c->host->dispatch, &rec, &intent, AUDIT_TIMEOUT_MS, on_intent_reply, c);
}

void admincall_finish_waiting(admincall_host_t *host)
{
    for (admincall_t *c = host->calls, *next; c; c = next) {
        next = c->next;
        if (c->timer && evtimer_pending(c->timer, NULL))
            admincall_finish_error(c, 503, RC_INTERNAL, "the gateway is stopping");
    }
}
