#include "answer.h"
#include "resultcode.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bodysign.h"
#include "xmalloc.h"

static const char *const known_codes[] = {RC_OK, RC_AUTH, RC_INVALID, RC_NO_INSTANCE, RC_BUSY,
                                          RC_INTERNAL, RC_NO_RESOURCE, RC_SECRET_UNREADABLE, NULL};

int answer_code_known(const char *code)
{
    for (int i = 0; code && known_codes[i]; i++)
        if (strcmp(code, known_codes[i]) == 0)
            return 1;
    return 0;
}

/* A JSON string, or "" when a service handed us bytes that are not UTF-8. */
static json_t *str(const char *s)
{
    json_t *v = json_string(s ? s : "");
    return v ? v : json_string("");
}

static void set_if(json_t *obj, const char *key, const char *value)
{
    if (value && *value)
        json_object_set_new(obj, key, str(value));
}

static json_t *render_info(const Kooisv__InstanceInfo *info)
{
    json_t *o = json_object();
    json_object_set_new(o, "instanceId", str(info->instance_id));
    if (info->app_info) {
        const Kooisv__AppInfo *a = info->app_info;
        json_t *app = json_object();
        json_object_set_new(app, "frontEndUrl", str(a->front_end_url));
        set_if(app, "adminUrl", a->admin_url);
        set_if(app, "userName", a->user_name);
        set_if(app, "password", a->password);
        set_if(app, "memo", a->memo);
        json_object_set_new(o, "appInfo", app);
    }
    if (info->usage_info_json && *info->usage_info_json) {
        json_t *usage = json_loads(info->usage_info_json, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_array(usage))
            json_object_set_new(o, "usageInfo", usage);
        else
            json_decref(usage);
    }
    return o;
}

char *answer_render(const char *code, const char *msg, const Kooisv__Reply *reply)
{
    json_t *root = json_object();
    json_object_set_new(root, "resultCode", str(code));
    json_object_set_new(root, "resultMsg", str(msg));
    if (reply && code && strcmp(code, RC_OK) == 0) {
        if (reply->result_case == KOOISV__REPLY__RESULT_NEW_INSTANCE && reply->new_instance) {
            json_object_set_new(root, "instanceId", str(reply->new_instance->instance_id));
        } else if (reply->result_case == KOOISV__REPLY__RESULT_QUERY_INSTANCE &&
                   reply->query_instance) {
            const Kooisv__QueryInstanceResult *q = reply->query_instance;
            json_t *info = json_array();
            for (size_t i = 0; i < q->n_info; i++)
                json_array_append_new(info, render_info(q->info[i]));
            json_object_set_new(root, "info", info);
            set_if(root, "encryptType", q->encrypt_type);
        }
    }
    /* Compact, raw UTF-8, no "\/": the bytes signed are the bytes sent. */
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text)
        abort(); /* only on out of memory */
    return text;
}

void answer_send(struct evhttp_request *req, int status, const char *body, size_t len,
                 const char *key, const char *rid, int close)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json;charset=UTF-8");
    char *sign = bodysign_header(key, body, len);
    evhttp_add_header(h, "Body-Sign", sign);
    free(sign);
    if (rid)
        evhttp_add_header(h, "X-Request-Id", rid);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (close)
        evhttp_add_header(h, "Connection", "close");
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, body, len);
    const char *reason = status == 200   ? "OK"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 503 ? "Service Unavailable"
                                         : "Error";
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evhttp_send_reply(req, status, reason, out);
    evbuffer_free(out);
    /* evhttp queued the head and the body as two pieces, and a TLS bufferevent writes each
     * piece as a record of its own, in a system call of its own. The write waits for the next
     * loop turn: join them now, and the answer goes out as one record in one write. */
    if (bev)
        evbuffer_pullup(bufferevent_get_output(bev), -1);
}
