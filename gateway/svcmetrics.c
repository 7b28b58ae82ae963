#include "svcmetrics.h"
#include "resultcode.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.pb-c.h"
#include "log.h"
#include "randutil.h"
#include "rpc.h"
#include "timeutil.h"
#include "xmalloc.h"

#define NAME_MAX_LEN 128
#define LABEL_VALUE_MAX 256
#define SERIES_MAX 2000

/* [a-z_][a-z0-9_]* of at most NAME_MAX_LEN bytes, starting with prefix. */
static bool name_ok(const char *s, const char *prefix)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN || strncmp(s, prefix, strlen(prefix)) != 0)
        return false;
    if (s[0] >= '0' && s[0] <= '9')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* A checked copy of one series as the service sent it, with service=<svc>; NULL if bad. */
static json_t *series_checked(const json_t *in, const char *svc)
{
    const char *name = NULL, *type = NULL, *help = NULL;
    json_t *value = NULL, *labels = NULL;
    if (json_unpack((json_t *)in, "{s:s,s:s,s:s,s:o,s?o}", "name", &name, "type", &type, "help",
                    &help, "value", &value, "labels", &labels) != 0)
        return NULL;
    if (!name_ok(name, "kooisv_") || (strcmp(type, "gauge") != 0 && strcmp(type, "counter") != 0))
        return NULL;
    if (!json_is_number(value) || !isfinite(json_number_value(value)))
        return NULL;
    if (labels && !json_is_object(labels))
        return NULL;
    json_t *l = json_object();
    json_object_set_new(l, "service", json_string(svc)); /* first: rendered first */
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v)
    {
        if (!name_ok(k, "") || strcmp(k, "service") == 0 || !json_is_string(v) ||
            strlen(json_string_value(v)) > LABEL_VALUE_MAX) {
            json_decref(l);
            return NULL;
        }
        json_object_set(l, k, v);
    }
    return json_pack("{s:s,s:s,s:s,s:f,s:o}", "name", name, "type", type, "help", help, "value",
                     json_number_value(value), "labels", l);
}

size_t svcmetrics_accept(json_t *all, const json_t *series, const char *svc)
{
    size_t i, dropped = 0;
    json_t *one;
    json_array_foreach(series, i, one)
    {
        json_t *ok = json_array_size(all) < SERIES_MAX ? series_checked(one, svc) : NULL;
        if (ok)
            json_array_append_new(all, ok);
        else
            dropped++;
    }
    return dropped;
}

int svcmetrics_fetch(service_id_t svc, const char *endpoints, const char *server_key,
                     int timeout_ms, json_t *all)
{
    const char *svc_name = services_name(svc);
    rpc_client_t *client = rpc_client_new(endpoints, server_key);
    if (!client)
        return -1;
    char rid[37];
    rand_uuid7(rid);
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    caller.kind = "system";
    caller.id = "metrics";
    Kooisv__AdminRequest ar = KOOISV__ADMIN_REQUEST__INIT;
    ar.action = "metrics";
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    env.request_id = rid;
    env.trace_id = rid;
    env.received_ms = time_now_ms();
    env.deadline_ms = env.received_ms + timeout_ms;
    env.caller = &caller;
    env.body_case = KOOISV__ENVELOPE__BODY_ADMIN;
    env.admin = &ar;
    Kooisv__Reply *reply = NULL;
    int rc = rpc_call(client, &env, timeout_ms, &reply);
    rpc_client_destroy(&client);
    if (rc != 0) {
        log_warn(rid, "metrics: the %s service did not answer", svc_name);
        return -1;
    }
    json_t *doc = NULL;
    if (strcmp(reply->result_code, RC_OK) == 0 && reply->result_case == KOOISV__REPLY__RESULT_ADMIN)
        doc = json_loads(reply->admin->json, 0, NULL);
    else
        log_warn(rid, "metrics: the %s service answered %s %s", svc_name, reply->result_code,
                 reply->result_msg ? reply->result_msg : "");
    kooisv__reply__free_unpacked(reply, NULL);
    json_t *series = json_object_get(doc, "series");
    if (!json_is_array(series)) {
        json_decref(doc);
        return -1;
    }
    size_t dropped = svcmetrics_accept(all, series, svc_name);
    if (dropped)
        log_warn(rid, "metrics: %zu series of the %s service dropped (malformed or over %d)",
                 dropped, svc_name, SERIES_MAX);
    json_decref(doc);
    return 0;
}

/* Label value and help text escapes of the exposition format (\\, \" in values, \n). */
static void put_escaped(FILE *out, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", out);
        else if (*s == '\n')
            fputs("\\n", out);
        else if (*s == '"' && quote)
            fputs("\\\"", out);
        else if ((unsigned char)*s >= 0x20 && *s != 0x7f)
            fputc(*s, out);
    }
}

static int by_name(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(json_string_value(json_object_get(x, "name")),
                  json_string_value(json_object_get(y, "name")));
}

char *svcmetrics_render(json_t *series)
{
    size_t n = json_array_size(series);
    json_t **items = xmalloc((n ? n : 1) * sizeof *items);
    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(series, i);
    /* stable enough: equal names keep no particular order, which the format allows */
    qsort(items, n, sizeof *items, by_name);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out)
        abort();
    const char *prev = "";
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_object_get(items[i], "name"));
        if (strcmp(name, prev) != 0) {
            fprintf(out, "# HELP %s ", name);
            put_escaped(out, json_string_value(json_object_get(items[i], "help")), false);
            fprintf(out, "\n# TYPE %s %s\n", name,
                    json_string_value(json_object_get(items[i], "type")));
            prev = name;
        }
        fputs(name, out);
        json_t *labels = json_object_get(items[i], "labels");
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach(labels, k, v)
        {
            fprintf(out, "%s%s=\"", first ? "{" : ",", k);
            put_escaped(out, json_string_value(v), true);
            fputc('"', out);
            first = false;
        }
        fprintf(out, "%s %.17g\n", first ? "" : "}",
                json_number_value(json_object_get(items[i], "value")));
    }
    fclose(out);
    free(items);
    return buf;
}

char *svcmetrics_collect(const char *const endpoints[SVC__COUNT],
                         const char *const server_keys[SVC__COUNT], int timeout_ms)
{
    json_t *all = json_array();
    for (int s = 0; s < SVC__COUNT; s++) {
        if (!endpoints[s] || !*endpoints[s])
            continue;
        int up = svcmetrics_fetch((service_id_t)s, endpoints[s], server_keys[s], timeout_ms, all) ==
                 0;
        json_array_append_new(
            all, json_pack("{s:s,s:s,s:s,s:f,s:{s:s}}", "name", "kooisv_service_metrics_up",
                           "type", "gauge", "help",
                           "1 when the service answered the gateway's metrics request", "value",
                           up ? 1.0 : 0.0, "labels", "service", services_name((service_id_t)s)));
    }
    char *text = svcmetrics_render(all);
    json_decref(all);
    return text;
}
