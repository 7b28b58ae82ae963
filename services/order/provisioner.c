#include "provisioner.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "randutil.h"
#include "webhook.h"
#include "xmalloc.h"

#define URL_MAX 512 /* appInfo.frontEndUrl limit (spec §3) */
#define NAME_MAX_LEN 128
#define MEMO_MAX 1024

bool provisioner_kind_parse(const char *name, provisioner_kind_t *out)
{
    if (name && strcmp(name, "builtin") == 0)
        *out = PROVISIONER_BUILTIN;
    else if (name && strcmp(name, "webhook") == 0)
        *out = PROVISIONER_WEBHOOK;
    else
        return false;
    return true;
}

static void append_escaped(char **out, size_t *len, size_t *cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (*len + 4 > *cap) {
            *cap = *cap * 2 + 16;
            *out = xrealloc(*out, *cap);
        }
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            (*out)[(*len)++] = (char)c;
        } else {
            (*out)[(*len)++] = '%';
            (*out)[(*len)++] = hex[c >> 4];
            (*out)[(*len)++] = hex[c & 15];
        }
    }
}

char *provisioner_expand(const char *tmpl, const char *instance_id, const char *order_id)
{
    size_t cap = strlen(tmpl) + 64, len = 0;
    char *out = xmalloc(cap);
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{instanceId}", 12) == 0) {
            append_escaped(&out, &len, &cap, instance_id);
            p += 12;
        } else if (strncmp(p, "{orderId}", 9) == 0) {
            append_escaped(&out, &len, &cap, order_id);
            p += 9;
        } else {
            if (len + 2 > cap) {
                cap *= 2;
                out = xrealloc(out, cap);
            }
            out[len++] = *p++;
        }
    }
    out = xrealloc(out, len + 1);
    out[len] = '\0';
    return out;
}

static bool is_http_url(const char *s)
{
    return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
}

void provisioner_credentials_free(provisioner_credentials_t *c)
{
    free(c->front_end_url);
    free(c->admin_url);
    if (c->user_name)
        xfree_secret(c->user_name, strlen(c->user_name));
    if (c->password)
        xfree_secret(c->password, strlen(c->password));
    free(c->memo);
    memset(c, 0, sizeof *c);
}

static int builtin_provision(const provisioner_config_t *cfg, const provisioner_request_t *req,
                             provisioner_credentials_t *out, char *err, size_t errlen)
{
    out->front_end_url =
        provisioner_expand(cfg->frontend_template, req->instance_id, req->order_id);
    if (cfg->admin_template && *cfg->admin_template)
        out->admin_url = provisioner_expand(cfg->admin_template, req->instance_id, req->order_id);
    if (strlen(out->front_end_url) > URL_MAX ||
        (out->admin_url && strlen(out->admin_url) > URL_MAX)) {
        snprintf(err, errlen, "expanded URL template is longer than %d characters", URL_MAX);
        provisioner_credentials_free(out);
        return -1;
    }
    char name[16] = "admin-";
    rand_alnum(name + 6, 8);
    for (char *p = name + 6; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    out->user_name = xstrdup(name);
    char pw[21];
    const char *why = NULL;
    do
        rand_password(pw, 20);
    while (!config_password_is_strong(pw, name, &why));
    out->password = xstrdup(pw);
    explicit_bzero(pw, sizeof pw);
    out->memo = cfg->memo && *cfg->memo ? xstrdup(cfg->memo) : NULL;
    return 0;
}

/* Optional string member within max; false (err set) when present with a wrong type/length. */
static bool take_string(json_t *obj, const char *key, size_t max, char **out, char *err,
                        size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v) || json_string_length(v) > max) {
        snprintf(err, errlen, "webhook answer: %s must be a string of at most %zu characters", key,
                 max);
        return false;
    }
    if (json_string_length(v) > 0)
        *out = xstrndup(json_string_value(v), json_string_length(v));
    return true;
}

int provisioner_parse_answer(const char *body, size_t len, provisioner_credentials_t *out,
                             char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", len, 0, &jerr);
    int rc = -1;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "webhook answer is not a JSON object");
    } else if (take_string(root, "frontEndUrl", URL_MAX, &out->front_end_url, err, errlen) &&
               take_string(root, "adminUrl", URL_MAX, &out->admin_url, err, errlen) &&
               take_string(root, "userName", NAME_MAX_LEN, &out->user_name, err, errlen) &&
               take_string(root, "password", NAME_MAX_LEN, &out->password, err, errlen) &&
               take_string(root, "memo", MEMO_MAX, &out->memo, err, errlen)) {
        const char *why = NULL;
        if (!out->front_end_url || !is_http_url(out->front_end_url))
            snprintf(err, errlen, "webhook answer: frontEndUrl must be an http(s) URL");
        else if (out->admin_url && !is_http_url(out->admin_url))
            snprintf(err, errlen, "webhook answer: adminUrl must be an http(s) URL");
        else if (out->password && !config_password_is_strong(out->password, out->user_name, &why))
            snprintf(err, errlen, "webhook answer: password refused (%s)", why ? why : "weak");
        else
            rc = 0;
    }
    json_decref(root);
    if (rc != 0)
        provisioner_credentials_free(out);
    return rc;
}

static int webhook_provision(const provisioner_config_t *cfg, const provisioner_request_t *req,
                             provisioner_credentials_t *out, char *err, size_t errlen)
{
    /* eventId is stable per instance so that the application can recognise a retry. */
    json_t *ev = json_object();
    char *event_id = xasprintf("provision:%s", req->instance_id);
    json_object_set_new(ev, "event", json_string("instance.provision"));
    json_object_set_new(ev, "eventId", json_string(event_id));
    json_object_set_new(ev, "instanceId", json_string(req->instance_id));
    json_object_set_new(ev, "orderId", json_string(req->order_id));
    json_object_set_new(ev, "orderLineId", json_string(req->order_line_id));
    json_object_set_new(ev, "productId",
                        req->product_id ? json_string(req->product_id) : json_null());
    json_object_set_new(ev, "skuCode", req->sku_code ? json_string(req->sku_code) : json_null());
    json_object_set_new(ev, "chargingMode",
                        req->charging_mode ? json_string(req->charging_mode) : json_null());
    json_object_set_new(ev, "expireTime",
                        req->expire_time ? json_string(req->expire_time) : json_null());
    json_object_set_new(ev, "testFlag", json_boolean(req->test_flag));
    free(event_id);
    char *body = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(ev);

    httpc_options_t opt = {
        .ca_file = cfg->webhook_ca_file && *cfg->webhook_ca_file ? cfg->webhook_ca_file : NULL,
        .verify_peer = 1,
        .timeout_ms = cfg->webhook_timeout_ms,
        .keep_alive = 1}; /* a job's call is repeated on retries anyway: the seller's is idempotent */
    httpc_response_t resp;
    int rc = webhook_post(cfg->webhook_url, cfg->webhook_secret, body, &opt, &resp);
    free(body);
    if (rc != 0)
        snprintf(err, errlen, "webhook failed: %s", resp.error[0] ? resp.error : "no answer");
    else
        rc = provisioner_parse_answer(resp.body, resp.body_len, out, err, errlen);
    httpc_response_free(&resp);
    return rc;
}

int provisioner_provision(const provisioner_config_t *cfg, const provisioner_request_t *req,
                          provisioner_credentials_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (cfg->kind == PROVISIONER_WEBHOOK)
        return webhook_provision(cfg, req, out, err, errlen);
    return builtin_provision(cfg, req, out, err, errlen);
}
