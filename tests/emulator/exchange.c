/* exchange: the emulator's plumbing shared by every endpoint: state, the call log tests read
 * back, fault injection, and replies (possibly delayed). */
#include "emulator.h"

#include "bodysign.h"
#include "log.h"
#include "xmalloc.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

void emu_state_init(emu_t *emu)
{
    emu->orders = json_object();
    emu->verbatim = json_object();
    emu->calls = json_object();
    emu->faults = json_object();
    emu->usage = json_array();
    emu->usage_seen = json_object();
    emu->usage_nonces = json_object();
    emu->usage_instances = json_null();
    emu->usage_pushes = json_integer(0);
    emu->webhooks = json_object();
}

static void delayed_free_all(emu_t *emu);

void emu_state_free(emu_t *emu)
{
    delayed_free_all(emu);
    json_decref(emu->orders);
    json_decref(emu->verbatim);
    json_decref(emu->calls);
    json_decref(emu->faults);
    json_decref(emu->usage);
    json_decref(emu->usage_seen);
    json_decref(emu->usage_nonces);
    json_decref(emu->usage_instances);
    json_decref(emu->usage_pushes);
    json_decref(emu->webhooks);
}

void emu_state_reset(emu_t *emu)
{
    /* Pending slow replies survive a reset: their clients are still waiting. */
    void *delayed = emu->delayed;
    emu->delayed = NULL;
    emu_state_free(emu);
    emu_state_init(emu);
    emu->delayed = delayed;
}

int64_t emu_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

bool emu_parse_utc_compact(const char *s, int64_t *ms_out)
{
    if (!s || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)s[i]))
            return false;
    struct tm tm = {0};
    tm.tm_year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0') - 1900;
    tm.tm_mon = (s[4] - '0') * 10 + (s[5] - '0') - 1;
    tm.tm_mday = (s[6] - '0') * 10 + (s[7] - '0');
    tm.tm_hour = (s[9] - '0') * 10 + (s[10] - '0');
    tm.tm_min = (s[11] - '0') * 10 + (s[12] - '0');
    tm.tm_sec = (s[13] - '0') * 10 + (s[14] - '0');
    struct tm want = tm;
    time_t t = timegm(&tm);
    /* timegm normalises 31 Feb into March: a changed field means the input was not a date. */
    if (t == (time_t)-1 || tm.tm_year != want.tm_year || tm.tm_mon != want.tm_mon ||
        tm.tm_mday != want.tm_mday || tm.tm_hour != want.tm_hour || tm.tm_min != want.tm_min ||
        tm.tm_sec != want.tm_sec)
        return false;
    *ms_out = (int64_t)t * 1000;
    return true;
}

const char *emu_header(const emu_exchange_t *ex, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(ex->req), name);
}

char *emu_query_param(const emu_exchange_t *ex, const char *name)
{
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(ex->query, &params) != 0) {
        evhttp_clear_headers(&params);
        return NULL;
    }
    const char *v = evhttp_find_header(&params, name);
    char *copy = xstrdup(v);
    evhttp_clear_headers(&params);
    return copy;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    }
    return "Status";
}

static void exchange_free(emu_exchange_t *ex)
{
    free(ex->raw_path);
    free(ex->path);
    free(ex->query);
    free(ex->body);
    free(ex);
}

static void send_now(emu_exchange_t *ex, int status, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    struct evkeyvalq *oh = evhttp_request_get_output_headers(ex->req);
    evhttp_add_header(oh, "X-Request-Id", ex->rid);
    if (body) {
        char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text) {
            evbuffer_add(buf, text, strlen(text));
            if (ex->body_sign) {
                char *sig = bodysign_header(ex->emu->basic_key, text, strlen(text));
                evhttp_add_header(oh, "Body-Sign", sig);
                free(sig);
            }
            free(text);
        }
        evhttp_add_header(oh, "Content-Type", "application/json; charset=utf-8");
    }
    evhttp_send_reply(ex->req, status, reason_phrase(status), buf);
    evbuffer_free(buf);
    log_info(ex->rid, "%s %s -> %d", ex->method, ex->path, status);
}

typedef struct delayed {
    struct delayed *next;
    emu_exchange_t *ex;
    int status;
    json_t *body;
    struct event *timer;
} delayed_t;

static void delayed_unlink(emu_t *emu, delayed_t *d)
{
    for (delayed_t **p = (delayed_t **)&emu->delayed; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            return;
        }
}

static void delayed_free_all(emu_t *emu)
{
    delayed_t *d = emu->delayed;
    while (d) {
        delayed_t *next = d->next;
        json_decref(d->body);
        event_free(d->timer);
        exchange_free(d->ex);
        free(d);
        d = next;
    }
    emu->delayed = NULL;
}

static void delayed_fire(evutil_socket_t fd, short what, void *arg)
{
    delayed_t *d = arg;
    delayed_unlink(d->ex->emu, d);
    /* evhttp stops reading once a request is complete, so the request stays valid until we
     * answer even if the client has given up; the write then fails and evhttp cleans up. */
    send_now(d->ex, d->status, d->body);
    json_decref(d->body);
    event_free(d->timer);
    exchange_free(d->ex);
    free(d);
}

void emu_reply(emu_exchange_t *ex, int status, json_t *body)
{
    if (ex->call) {
        json_object_set_new(ex->call, "status", json_integer(status));
        json_object_set(ex->call, "response", body ? body : json_null());
    }
    if (ex->delay_ms > 0) {
        delayed_t *d = xcalloc(1, sizeof *d);
        d->ex = ex;
        d->status = status;
        d->body = body;
        d->timer = evtimer_new(ex->emu->base, delayed_fire, d);
        d->next = ex->emu->delayed;
        ex->emu->delayed = d;
        struct timeval tv = {ex->delay_ms / 1000, (ex->delay_ms % 1000) * 1000};
        evtimer_add(d->timer, &tv);
        return;
    }
    send_now(ex, status, body);
    json_decref(body);
    exchange_free(ex);
}

void emu_reply_error(emu_exchange_t *ex, emu_style_t style, int status, const char *code,
                     const char *msg)
{
    json_t *body = style == EMU_STYLE_ERROR
                       ? json_pack("{s:s, s:s}", "error_code", code, "error_msg", msg)
                       : json_pack("{s:s, s:s}", "resultCode", code, "resultMsg", msg);
    emu_reply(ex, status, body);
}

bool emu_method_allowed(emu_exchange_t *ex, emu_style_t style, const char *method)
{
    if (strcmp(ex->method, method) == 0)
        return true;
    emu_reply_error(ex, style, 405, "MKT.0101", "method not allowed");
    return false;
}

/* Close the connection without an HTTP answer: the client sees a reset/EOF. */
static void drop(emu_exchange_t *ex)
{
    if (ex->call)
        json_object_set_new(ex->call, "status", json_integer(0));
    struct evhttp_connection *conn = evhttp_request_get_connection(ex->req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    /* The reply cannot leave the shut socket; writing it makes evhttp notice the failure and
     * free the connection through its normal path (SIGPIPE is ignored). */
    evhttp_send_reply(ex->req, 500, "Dropped", NULL);
    log_info(ex->rid, "%s dropped (fault)", ex->path);
    exchange_free(ex);
}

int emu_peer_port(emu_exchange_t *ex)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(ex->req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (conn)
        evhttp_connection_get_peer(conn, &addr, &port);
    return port;
}

static json_t *record_call(emu_exchange_t *ex, const char *key)
{
    emu_t *emu = ex->emu;
    json_t *slot = json_object_get(emu->calls, key);
    if (!slot) {
        slot = json_pack("{s:i, s:[]}", "count", 0, "calls");
        json_object_set_new(emu->calls, key, slot);
    }
    json_t *headers = json_object();
    struct evkeyvalq *ih = evhttp_request_get_input_headers(ex->req);
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next) {
        char *lower = xstrdup(kv->key);
        for (char *p = lower; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        json_t *v = json_string(kv->value);
        json_object_set_new(headers, lower, v ? v : json_null());
        free(lower);
    }
    json_t *call =
        json_pack("{s:I, s:I, s:s, s:s, s:s, s:o, s:n, s:n}", "seq", (json_int_t)++emu->seq,
                  "time_ms", (json_int_t)emu_now_ms(), "method", ex->method, "path", ex->path,
                  "query", ex->query, "headers", headers, "status", "response");
    /* The client's port: calls on one kept-alive connection share it. */
    json_object_set_new(call, "peer_port", json_integer(emu_peer_port(ex)));
    json_t *body = json_stringn(ex->body, ex->body_len);
    if (body) {
        json_object_set_new(call, "body", body);
    } else {
        /* Not UTF-8: keep the bytes visible without breaking the JSON log. */
        json_object_set_new(call, "body", json_null());
        json_object_set_new(call, "body_invalid_utf8", json_true());
    }
    json_object_set_new(slot, "count",
                        json_integer(json_integer_value(json_object_get(slot, "count")) + 1));
    json_t *list = json_object_get(slot, "calls");
    json_array_append_new(list, call);
    while (json_array_size(list) > EMU_CALLS_KEPT)
        json_array_remove(list, 0);
    return call;
}

/* Consume one occurrence of the fault for key when it applies to this call (a fault with
 * "match" only hits calls whose query or body contains that text, so concurrent work on other
 * orders is left alone). Caller owns the returned copy. */
static json_t *take_fault(emu_exchange_t *ex, const char *key)
{
    emu_t *emu = ex->emu;
    json_t *f = json_object_get(emu->faults, key);
    if (!f)
        return NULL;
    const char *match = json_string_value(json_object_get(f, "match"));
    if (match && *match && !strstr(ex->query ? ex->query : "", match) &&
        !strstr(ex->body ? ex->body : "", match))
        return NULL;
    json_t *copy = json_deep_copy(f);
    json_int_t count = json_integer_value(json_object_get(f, "count"));
    if (count > 0) {
        json_object_set_new(f, "count", json_integer(count - 1));
        if (count - 1 == 0)
            json_object_del(emu->faults, key);
    }
    return copy;
}

void emu_dispatch_faultable(emu_exchange_t *ex, const char *key, emu_style_t style,
                            emu_handler_fn handler)
{
    ex->call = record_call(ex, key);
    json_t *fault = take_fault(ex, key);
    if (!fault) {
        handler(ex);
        return;
    }
    const char *mode = json_string_value(json_object_get(fault, "mode"));
    json_object_set_new(ex->call, "fault", json_string(mode));
    if (strcmp(mode, "slow") == 0) {
        ex->delay_ms = (int)json_integer_value(json_object_get(fault, "delay_ms"));
        json_decref(fault);
        handler(ex);
    } else if (strcmp(mode, "drop") == 0) {
        json_decref(fault);
        drop(ex);
    } else if (strcmp(mode, "http500") == 0) {
        json_decref(fault);
        emu_reply(ex, 500, json_pack("{s:s}", "error", "injected http500"));
    } else { /* "error" */
        const char *code = json_string_value(json_object_get(fault, "code"));
        int status = (int)json_integer_value(json_object_get(fault, "http_status"));
        const char *msg = json_string_value(json_object_get(fault, "message"));
        /* Webhooks speak the seller's result codes, the marketplace APIs its MKT codes. */
        const char *default_code = strncmp(key, "webhook/", 8) == 0 ? "000005" : "MKT.0999";
        emu_reply_error(ex, style, status > 0 ? status : 200, code ? code : default_code,
                        msg ? msg : "injected error");
        json_decref(fault);
    }
}
