#include "adminsvc.h"
#include "resultcode.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admincall.h"
#include "resref.h"
#include "xmalloc.h"

static const char *const instance_list_params[] = {"state", "order", "limit", "before", NULL};
static const char *const stats_params[] = {"hours", NULL};
static const char *const limit_params[] = {"limit", NULL};
static const char *const instance_params[] = {"instance", NULL};
static const char *const users_params[] = {"instance", "app", "after", "limit", NULL};
static const char *const secret_params[] = {"instance", "tenant", NULL};
static const char *const no_params[] = {NULL};
static const char *const usage_failed_params[] = {"limit", "state", NULL};
static const char *const state_params[] = {"state", NULL};
static const char *const range_params[] = {"from", "to", NULL};
static const char *const export_request_params[] = {"kind",   "format",   "from",    "to",
                                                    "tenant", "instance", "product", NULL};

static const char *const resource_params[][2] = {
    {"instance", "instance"}, {"tenant", "tenant"}, {"app", "app"}};

/* Path parameters and the ids among the query parameters name the resources touched. */
static const char *prepare_service(admincall_t *c)
{
    const adminroute_t *r = c->route;
    for (int i = 0; i < c->nseg; i++)
        if (r->seg_kinds[i])
            resref_add(&c->res, &c->n_res, r->seg_kinds[i], c->seg[i]);
    for (size_t i = 0; i < sizeof resource_params / sizeof *resource_params; i++) {
        const char *v = admincall_param(c, resource_params[i][0]);
        if (v)
            resref_add(&c->res, &c->n_res, resource_params[i][1], v);
    }
    return NULL;
}

/* The services whose outbox is delivered to the seller's application. */
static const service_id_t outbox_services[] = {SVC_ORDER, SVC_TENANT, SVC_APP};

static bool outbox_service(const char *name, service_id_t *out)
{
    for (size_t i = 0; i < sizeof outbox_services / sizeof *outbox_services; i++)
        if (strcmp(name, services_name(outbox_services[i])) == 0) {
            *out = outbox_services[i];
            return true;
        }
    return false;
}

static const char *prepare_outbox_redrive(admincall_t *c)
{
    service_id_t svc;
    if (!outbox_service(c->seg[0], &svc))
        return "unknown service: tenant or app";
    char ref[ADMINROUTE_SEGMENT_MAX * 2 + 2];
    snprintf(ref, sizeof ref, "%s/%s", c->seg[0], c->seg[1]);
    resref_add(&c->res, &c->n_res, "outbox", ref);
    return NULL;
}

/* The JSON document of a successful AdminRequest reply, or NULL (caller owns it). */
static json_t *reply_admin_json(const Kooisv__Reply *reply)
{
    json_error_t err;
    if (admincall_reply_ok(reply) && reply->result_case == KOOISV__REPLY__RESULT_ADMIN &&
        reply->admin)
        return json_loads(reply->admin->json, 0, &err);
    return NULL;
}

/* Answer c with a service's AdminRequest reply (what names the service; ok_msg is the log's
 * result on success), then free the reply. */
static void finish_admin_reply(admincall_t *c, Kooisv__Reply *reply, const char *what,
                               const char *ok_msg)
{
    json_t *doc = reply_admin_json(reply);
    if (!admincall_reply_ok(reply))
        admincall_finish_failed(c, what, reply);
    else if (!doc)
        admincall_finish_error(c, 502, RC_INTERNAL, "%s answered without a JSON document", what);
    else
        admincall_finish_json(c, 200, RC_OK, ok_msg, doc);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
}

static void on_service_reply(Kooisv__Reply *reply, void *arg)
{
    admincall_t *c = arg;
    char what[64];
    snprintf(what, sizeof what, "the %s service", services_name(c->route->svc));
    finish_admin_reply(c, reply, what, "ok");
}

int adminsvc_request(admincall_t *c, service_id_t svc, const char *rid, const char *action,
                     const char *const *keys, const char *const *values, size_t n,
                     dispatch_done_fn done, void *arg)
{
    Kooisv__AdminRequest__ArgsEntry entries[ADMINSVC_ARGS_MAX];
    Kooisv__AdminRequest__ArgsEntry *ptrs[ADMINSVC_ARGS_MAX];
    n = n < ADMINSVC_ARGS_MAX ? n : ADMINSVC_ARGS_MAX;
    for (size_t i = 0; i < n; i++) {
        kooisv__admin_request__args_entry__init(&entries[i]);
        entries[i].key = (char *)keys[i];
        entries[i].value = (char *)values[i];
        ptrs[i] = &entries[i];
    }
    Kooisv__AdminRequest ar = KOOISV__ADMIN_REQUEST__INIT;
    ar.action = (char *)action;
    ar.args = ptrs;
    ar.n_args = n;
    Kooisv__Caller caller;
    Kooisv__Envelope env = admincall_envelope(c, &caller, ADMINCALL_SERVICE_TIMEOUT_MS);
    if (rid)
        env.request_id = (char *)rid;
    env.body_case = KOOISV__ENVELOPE__BODY_ADMIN;
    env.admin = &ar;
    return admincall_dispatch(c, svc, &env, ADMINCALL_SERVICE_TIMEOUT_MS, done, arg);
}

/* The AdminRequest of a service route: path parameters and query parameters as args. */
static int send_admin_request(admincall_t *c, service_id_t svc, dispatch_done_fn done, void *arg)
{
    const adminroute_t *r = c->route;
    const char *keys[ADMINSVC_ARGS_MAX], *values[ADMINSVC_ARGS_MAX];
    size_t n = 0;
    for (int i = 0; i < c->nseg; i++)
        if (r->seg_args[i]) {
            keys[n] = r->seg_args[i];
            values[n++] = c->seg[i];
        }
    for (const char *const *p = r->params; *p && n < ADMINSVC_ARGS_MAX; p++) {
        const char *v = admincall_param(c, *p);
        if (!v)
            continue;
        keys[n] = *p;
        values[n++] = v;
    }
    return adminsvc_request(c, svc, NULL, r->action, keys, values, n, done, arg);
}

static void run_service(admincall_t *c)
{
    if (send_admin_request(c, c->route->svc, on_service_reply, c) != 0)
        admincall_finish_error(c, 503, RC_INTERNAL, "the %s service is not configured",
                               services_name(c->route->svc));
}

static void on_outbox_redrive_reply(Kooisv__Reply *reply, void *arg)
{
    admincall_t *c = arg;
    finish_admin_reply(c, reply, c->seg[0], "redriven");
}

static void run_outbox_redrive(admincall_t *c)
{
    service_id_t svc = SVC_ORDER;
    outbox_service(c->seg[0], &svc);
    if (send_admin_request(c, svc, on_outbox_redrive_reply, c) != 0)
        admincall_finish_error(c, 503, RC_INTERNAL, "the %s service is not configured", c->seg[0]);
}

/* outbox.failed and metrics ask every service with an outbox; one answer per service. */
typedef struct {
    admincall_t *call;
    service_id_t svc;
} fan_t;

/* The message of the fan-out's refusals when every service refused the arguments (000002),
 * else NULL: bad input is the caller's error (400), not an outage. */
static const char *fan_all_invalid(json_t *fan)
{
    const char *msg = NULL, *name;
    json_t *doc;
    json_object_foreach(fan, name, doc)
    {
        const char *code = json_string_value(json_object_get(doc, "code"));
        if (!code || strcmp(code, RC_INVALID) != 0)
            return NULL;
        msg = json_string_value(json_object_get(doc, "error"));
    }
    return msg;
}

static void on_fan_reply(Kooisv__Reply *reply, void *arg)
{
    fan_t *f = arg;
    admincall_t *c = f->call;
    const char *name = services_name(f->svc);
    json_t *doc = reply_admin_json(reply);
    if (doc) {
        c->answered++;
    } else {
        doc = json_pack("{s:s, s:s?}", "code", reply ? reply->result_code : RC_INTERNAL, "error",
                        reply ? reply->result_msg : "no answer in time");
    }
    json_object_set_new(c->fan, name, doc ? doc : json_null());
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    free(f);
    if (--c->pending > 0)
        return;
    const char *invalid = c->answered == 0 ? fan_all_invalid(c->fan) : NULL;
    if (invalid)
        admincall_finish_error(c, 400, RC_INVALID, "%s", invalid);
    else if (c->answered == 0)
        admincall_finish_error(c, 503, RC_INTERNAL, "no service answered %s", c->route->action);
    else
        admincall_finish_json(c, 200, RC_OK, "ok", json_pack("{s:O}", "services", c->fan));
}

static void run_fanout(admincall_t *c)
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
        admincall_finish_error(c, 503, RC_INTERNAL, "no service is configured");
}

/* Usage intake (POST /v1/usage): the body {"records":[...]} with 1..USAGE_RECORDS_MAX records,
 * each checked by the billing service (all or nothing); the record count is a resource of the
 * audit entry. */
#define USAGE_RECORDS_MAX 1000

static const char *prepare_usage(admincall_t *c)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    json_error_t err;
    json_t *body = len ? json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &err) : NULL;
    json_t *records = json_object_get(body, "records");
    size_t n = json_array_size(records);
    if (!json_is_array(records) || n == 0 || n > USAGE_RECORDS_MAX) {
        json_decref(body);
        return "body: expected {\"records\":[...]} with 1..1000 records";
    }
    c->body = body;
    char count[16];
    snprintf(count, sizeof count, "%zu", n);
    resref_add(&c->res, &c->n_res, "records", count);
    return NULL;
}

static void run_usage(admincall_t *c)
{
    char *text = json_dumps(json_object_get(c->body, "records"), JSON_COMPACT);
    Kooisv__AdminRequest__ArgsEntry arg = KOOISV__ADMIN_REQUEST__ARGS_ENTRY__INIT;
    Kooisv__AdminRequest__ArgsEntry *args[] = {&arg};
    arg.key = "records";
    arg.value = text;
    Kooisv__AdminRequest ar = KOOISV__ADMIN_REQUEST__INIT;
    ar.action = (char *)c->route->action;
    ar.args = args;
    ar.n_args = 1;
    Kooisv__Caller caller;
    Kooisv__Envelope env = admincall_envelope(c, &caller, ADMINCALL_SERVICE_TIMEOUT_MS);
    env.body_case = KOOISV__ENVELOPE__BODY_ADMIN;
    env.admin = &ar;
    int rc = admincall_dispatch(c, SVC_BILLING, &env, ADMINCALL_SERVICE_TIMEOUT_MS,
                                on_service_reply, c);
    free(text);
    if (rc != 0)
        admincall_finish_error(c, 503, RC_INTERNAL, "the billing service is not configured");
}

/* One route per entry: kept as a table. */
/* clang-format off */
static const adminroute_t routes[] = {
    {EVHTTP_REQ_GET, "/v1/instances/*", "instance.get", ROLE_OPERATOR, no_params,
     prepare_service, run_service, SVC_ORDER, {"id"}, {"instance"}},
    {EVHTTP_REQ_GET, "/v1/instances", "instance.list", ROLE_OPERATOR, instance_list_params,
     prepare_service, run_service, SVC_ORDER, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/jobs/failed", "jobs.failed", ROLE_OPERATOR, limit_params,
     prepare_service, run_service, SVC_ORDER, {0}, {0}},
    {EVHTTP_REQ_POST, "/v1/jobs/*/redrive", "jobs.redrive", ROLE_OPERATOR, no_params,
     prepare_service, run_service, SVC_ORDER, {"id"}, {"job"}},
    {EVHTTP_REQ_GET, "/v1/license/pubkey", "license.pubkey", ROLE_AUDITOR, no_params,
     prepare_service, run_service, SVC_ORDER, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/tenants/*", "tenant.get", ROLE_OPERATOR, instance_params,
     prepare_service, run_service, SVC_TENANT, {"tenant"}, {"tenant"}},
    {EVHTTP_REQ_GET, "/v1/tenants/*/orgs", "tenant.tree", ROLE_OPERATOR, instance_params,
     prepare_service, run_service, SVC_TENANT, {"tenant"}, {"tenant"}},
    {EVHTTP_REQ_GET, "/v1/tenants/*/users", "app.users", ROLE_OPERATOR, users_params,
     prepare_service, run_service, SVC_APP, {"tenant"}, {"tenant"}},
    {EVHTTP_REQ_GET, "/v1/apps/*/secret", "app.secret", ROLE_ADMIN, secret_params,
     prepare_service, run_service, SVC_APP, {"app"}, {"app"}},
    {EVHTTP_REQ_GET, "/v1/outbox/failed", "outbox.failed", ROLE_OPERATOR, limit_params,
     prepare_service, run_fanout, SVC_ORDER, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/stats/services", "metrics", ROLE_AUDITOR, no_params,
     prepare_service, run_fanout, SVC_ORDER, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/stats/calls", "audit.stats", ROLE_AUDITOR, stats_params,
     prepare_service, run_service, SVC_AUDIT, {0}, {0}},
    {EVHTTP_REQ_POST, "/v1/outbox/*/*/redrive", "outbox.redrive", ROLE_OPERATOR, no_params,
     prepare_outbox_redrive, run_outbox_redrive, SVC_ORDER, {NULL, "id"}, {0}},
    {EVHTTP_REQ_GET, "/v1/billing/ping", "billing.ping", ROLE_AUDITOR, no_params,
     prepare_service, run_service, SVC_BILLING, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/usage/failed", "usage.failed", ROLE_OPERATOR, usage_failed_params,
     prepare_service, run_service, SVC_BILLING, {0}, {0}},
    {EVHTTP_REQ_POST, "/v1/usage/*/redrive", "usage.redrive", ROLE_OPERATOR, state_params,
     prepare_service, run_service, SVC_BILLING, {"id"}, {"usage_push"}},
    {EVHTTP_REQ_GET, "/v1/billing/status", "billing.status", ROLE_OPERATOR, range_params,
     prepare_service, run_service, SVC_BILLING, {0}, {0}},
    {EVHTTP_REQ_POST, "/v1/usage", "usage.add", ROLE_METER, no_params, prepare_usage, run_usage,
     SVC_BILLING, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/billing/instances/*", "billing.instance", ROLE_OPERATOR, no_params,
     prepare_service, run_service, SVC_BILLING, {"id"}, {"instance"}},
    {EVHTTP_REQ_POST, "/v1/billing/exports", "export.request", ROLE_OPERATOR,
     export_request_params, prepare_service, run_service, SVC_BILLING, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/billing/exports", "export.list", ROLE_OPERATOR, limit_params,
     prepare_service, run_service, SVC_BILLING, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/billing/exports/*", "export.get", ROLE_OPERATOR, no_params,
     prepare_service, run_service, SVC_BILLING, {"id"}, {"export"}},
};
/* clang-format on */

const adminroute_t *adminsvc_routes(size_t *n)
{
    *n = sizeof routes / sizeof *routes;
    return routes;
}
