/* control: the tests' handle on the emulator (everything under /_emulator/, see README.md)
 * and the receiver for the seller webhooks the services call. Control calls are refused from
 * anything but loopback unless KOOISV_EMULATOR_CONTROL_ANY is set (containers). */
#include "emulator.h"

#include "randutil.h"
#include "webhook.h"
#include "xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOK_PREFIX EMU_CONTROL_PREFIX "webhook/"
#define WEBHOOK_WINDOW_MS (5 * 60 * 1000)

static bool from_loopback(emu_exchange_t *ex)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(ex->req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (!conn)
        return false;
    evhttp_connection_get_peer(conn, &addr, &port);
    return addr && (strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
                    strncmp(addr, "::ffff:127.", 11) == 0);
}

/* Parse the request body as JSON (an empty body is {}); NULL after answering 400. */
static json_t *body_json(emu_exchange_t *ex)
{
    if (ex->body_len == 0)
        return json_object();
    json_error_t err;
    json_t *v = json_loadb(ex->body, ex->body_len, 0, &err);
    if (!v) {
        char msg[200];
        snprintf(msg, sizeof msg, "body is not JSON: %s", err.text);
        emu_reply(ex, 400, json_pack("{s:s}", "error", msg));
    }
    return v;
}

static void reply_bad(emu_exchange_t *ex, const char *why)
{
    emu_reply(ex, 400, json_pack("{s:s}", "error", why));
}

/* The identity a provisioning event is about, for readable default credentials. */
static char *event_instance(const json_t *event)
{
    static const char *const names[] = {"instanceId", "instance_id"};
    const json_t *scopes[] = {event, json_object_get(event, "data"),
                              json_object_get(event, "payload")};
    for (size_t s = 0; s < 3; s++)
        for (size_t n = 0; n < 2; n++) {
            const char *v = json_string_value(json_object_get(scopes[s], names[n]));
            if (v && *v)
                return xstrndup(v, 48);
        }
    return NULL;
}

static json_t *provision_default(emu_exchange_t *ex)
{
    json_t *event = json_loadb(ex->body, ex->body_len, 0, NULL);
    char *id = event ? event_instance(event) : NULL;
    if (!id)
        id = xasprintf("n%ld", ex->emu->seq);
    char password[17];
    rand_password(password, 16);
    char *front = xasprintf("https://app.example.test/i/%s", id);
    char *admin = xasprintf("https://app.example.test/admin/%s", id);
    char *user = xasprintf("admin_%s", id);
    json_t *answer =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "frontEndUrl", front, "adminUrl", admin, "userName",
                  user, "password", password, "memo", "provisioned by kooisv-emulator");
    free(front);
    free(admin);
    free(user);
    free(id);
    json_decref(event);
    return answer;
}

static void webhook_answer(emu_exchange_t *ex)
{
    emu_t *emu = ex->emu;
    const char *name = ex->path + strlen(WEBHOOK_PREFIX);
    if (emu->webhook_secret[0] && ex->call) {
        const char *ts = emu_header(ex, "X-Kooisv-Timestamp");
        const char *sig = emu_header(ex, "X-Kooisv-Signature");
        bool ok = ts && sig &&
                  webhook_verify(emu->webhook_secret, ts, sig, ex->body, ex->body_len, emu_now_ms(),
                                 WEBHOOK_WINDOW_MS);
        json_object_set_new(ex->call, "signature_ok", json_boolean(ok));
    }
    json_t *cfg = json_object_get(emu->webhooks, name);
    int status = cfg ? (int)json_integer_value(json_object_get(cfg, "status")) : 0;
    json_t *body = cfg ? json_object_get(cfg, "body") : NULL;
    ex->body_sign = cfg && json_is_true(json_object_get(cfg, "body_sign"));
    if (status <= 0)
        status = 200;
    if (body)
        emu_reply(ex, status, json_deep_copy(body));
    else if (strcmp(name, "provision") == 0)
        emu_reply(ex, status, provision_default(ex));
    else
        emu_reply(ex, status,
                  json_pack("{s:s, s:s}", "resultCode", "000000", "resultMsg", "success"));
}

static json_t *calls_of(emu_t *emu, const char *key, long limit)
{
    json_t *slot = json_object_get(emu->calls, key);
    json_t *all = slot ? json_object_get(slot, "calls") : NULL;
    json_t *out = json_array();
    size_t n = all ? json_array_size(all) : 0;
    size_t from = limit > 0 && (size_t)limit < n ? n - (size_t)limit : 0;
    for (size_t i = from; i < n; i++)
        json_array_append(out, json_array_get(all, i));
    json_int_t count = slot ? json_integer_value(json_object_get(slot, "count")) : 0;
    return json_pack("{s:s, s:I, s:o}", "path", key, "count", count, "calls", out);
}

static long limit_param(emu_exchange_t *ex, long def)
{
    char *s = emu_query_param(ex, "limit");
    long v = s ? strtol(s, NULL, 10) : def;
    free(s);
    return v > 0 ? v : def;
}

static void get_calls(emu_exchange_t *ex)
{
    char *key = emu_query_param(ex, "path");
    if (key && *key) {
        emu_reply(ex, 200, calls_of(ex->emu, key, limit_param(ex, EMU_CALLS_KEPT)));
    } else {
        json_t *paths = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(ex->emu->calls, k, v)
        {
            json_object_set(paths, k, json_object_get(v, "count"));
        }
        emu_reply(ex, 200, json_pack("{s:o}", "paths", paths));
    }
    free(key);
}

static void set_fault(emu_exchange_t *ex)
{
    json_t *req = body_json(ex);
    if (!req)
        return;
    const char *key = json_string_value(json_object_get(req, "path"));
    const char *mode = json_string_value(json_object_get(req, "mode"));
    json_t *count = json_object_get(req, "count");
    json_int_t n = count ? json_integer_value(count) : 1;
    if (!key || !*key || !mode ||
        (strcmp(mode, "error") && strcmp(mode, "slow") && strcmp(mode, "http500") &&
         strcmp(mode, "drop")) ||
        (count && !json_is_integer(count)) || n < -1 ||
        (json_object_get(req, "match") && !json_is_string(json_object_get(req, "match")))) {
        json_decref(req);
        reply_bad(ex, "want {path, mode: error|slow|http500|drop, count (-1 = always), "
                      "delay_ms, code, http_status, message, match}");
        return;
    }
    if (n == 0) {
        json_object_del(ex->emu->faults, key);
    } else {
        json_t *f = json_pack("{s:s, s:I, s:I}", "mode", mode, "count", n, "delay_ms",
                              json_integer_value(json_object_get(req, "delay_ms")));
        static const char *const extra[] = {"code", "http_status", "message", "match"};
        for (size_t i = 0; i < 4; i++) {
            json_t *v = json_object_get(req, extra[i]);
            if (v)
                json_object_set(f, extra[i], v);
        }
        json_object_set_new(ex->emu->faults, key, f);
    }
    json_decref(req);
    emu_reply(ex, 200, json_pack("{s:O}", "faults", ex->emu->faults));
}

static void register_order(emu_exchange_t *ex)
{
    json_t *req = body_json(ex);
    if (!req)
        return;
    const char *why = NULL;
    const char *id = emu_order_register(ex->emu, req, &why);
    json_decref(req);
    if (!id) {
        reply_bad(ex, why);
        return;
    }
    emu_reply(
        ex, 200,
        json_pack("{s:s, s:O}", "orderId", id, "orderInfo", json_object_get(ex->emu->orders, id)));
}

static void get_usage(emu_exchange_t *ex)
{
    char *instance = emu_query_param(ex, "instance_id");
    json_t *records = json_array();
    size_t i;
    json_t *rec;
    json_array_foreach(ex->emu->usage, i, rec)
    {
        const char *id = json_string_value(json_object_get(rec, "instance_id"));
        if (!instance || (id && strcmp(id, instance) == 0))
            json_array_append(records, rec);
    }
    free(instance);
    emu_reply(ex, 200,
              json_pack("{s:I, s:O, s:o}", "count", (json_int_t)json_array_size(records), "pushes",
                        ex->emu->usage_pushes, "records", records));
}

static void set_usage_instances(emu_exchange_t *ex)
{
    json_t *req = body_json(ex);
    if (!req)
        return;
    json_t *list = json_object_get(req, "instances");
    if (!list || (!json_is_array(list) && !json_is_null(list))) {
        json_decref(req);
        reply_bad(ex, "want {\"instances\": [ids] | null}");
        return;
    }
    json_decref(ex->emu->usage_instances);
    ex->emu->usage_instances = json_incref(list);
    json_decref(req);
    emu_reply(ex, 200, json_pack("{s:O}", "instances", ex->emu->usage_instances));
}

static void set_webhook(emu_exchange_t *ex, const char *name)
{
    json_t *req = body_json(ex);
    if (!req)
        return;
    json_t *status = json_object_get(req, "status");
    if (!json_is_object(req) || (status && !json_is_integer(status))) {
        json_decref(req);
        reply_bad(ex, "want {\"status\": n, \"body\": json, \"body_sign\": bool} "
                      "({} restores the default)");
        return;
    }
    if (json_object_size(req) == 0)
        json_object_del(ex->emu->webhooks, name);
    else
        json_object_set(ex->emu->webhooks, name, req);
    json_decref(req);
    emu_reply(ex, 200, json_pack("{s:s, s:O}", "name", name, "webhooks", ex->emu->webhooks));
}

void emu_control_route(emu_exchange_t *ex)
{
    const char *sub = ex->path + strlen(EMU_CONTROL_PREFIX);
    bool get = strcmp(ex->method, "GET") == 0, post = strcmp(ex->method, "POST") == 0;

    if (strcmp(sub, "health") == 0) {
        emu_reply(ex, 200, json_pack("{s:s, s:i}", "status", "ok", "peer_port", emu_peer_port(ex)));
        return;
    }
    if (post && strncmp(ex->path, WEBHOOK_PREFIX, strlen(WEBHOOK_PREFIX)) == 0 &&
        ex->path[strlen(WEBHOOK_PREFIX)]) {
        char *key = xstrdup(ex->path + strlen(EMU_CONTROL_PREFIX));
        emu_dispatch_faultable(ex, key, EMU_STYLE_RESULT, webhook_answer);
        free(key);
        return;
    }
    if (!ex->emu->control_any && !from_loopback(ex)) {
        emu_reply(ex, 403, json_pack("{s:s}", "error", "control API is loopback-only"));
        return;
    }
    if (get && strncmp(sub, "webhook/", 8) == 0 && sub[8]) {
        emu_reply(ex, 200, calls_of(ex->emu, sub, limit_param(ex, EMU_CALLS_KEPT)));
    } else if (post && strncmp(sub, "webhooks/", 9) == 0 && sub[9]) {
        set_webhook(ex, sub + 9);
    } else if (get && strcmp(sub, "calls") == 0) {
        get_calls(ex);
    } else if (post && strcmp(sub, "faults") == 0) {
        set_fault(ex);
    } else if (get && strcmp(sub, "faults") == 0) {
        emu_reply(ex, 200, json_pack("{s:O}", "faults", ex->emu->faults));
    } else if (post && strcmp(sub, "orders") == 0) {
        register_order(ex);
    } else if (get && strcmp(sub, "usage") == 0) {
        get_usage(ex);
    } else if (post && strcmp(sub, "usage/instances") == 0) {
        set_usage_instances(ex);
    } else if (post && strcmp(sub, "reset") == 0) {
        emu_state_reset(ex->emu);
        emu_reply(ex, 200, json_pack("{s:s}", "status", "reset"));
    } else {
        emu_reply(ex, 404, json_pack("{s:s}", "error", "no such control endpoint"));
    }
}
