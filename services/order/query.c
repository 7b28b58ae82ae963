/* query: queryInstance (spec §3). Read-only: up to 100 ids; unknown and released instances, and
 * those of the other kind (a debug call sees only test instances, a real call only real ones), are
 * left out; appInfo appears once provisioning stored the credentials, whose user name and
 * password are opened from their sealed form and re-encrypted for the wire (appcrypt). */
#include "order.h"

#include <stdlib.h>
#include <string.h>

#include "appcrypt.h"
#include "log.h"
#include "sealbox.h"
#include "xmalloc.h"

#define QUERY_MAX_IDS 100

/* One id (nearly every call) has a statement of its own: PostgreSQL plans "= ANY($1)" afresh for
 * every execution (its generic plan looks costlier than the custom one for a one-element array),
 * which cost more CPU than running it; "= $1" gets one generic plan from its sixth run on. */
#define QUERY_SELECT                                                                               \
    "SELECT instance_id, front_end_url, admin_url, user_name_sealed, password_sealed, memo,"       \
    " provisioned_at IS NOT NULL FROM orders.instances WHERE "
#define QUERY_FILTER " AND state <> 'released' AND test_flag = $2::boolean"
const pg_stmt_t query_stmts[] = {
    {"query_instance", QUERY_SELECT "instance_id = $1" QUERY_FILTER, 2},
    {"query_instances", QUERY_SELECT "instance_id = ANY($1::text[])" QUERY_FILTER, 2},
};
const size_t query_stmts_count = sizeof query_stmts / sizeof query_stmts[0];

/* A text[] literal of ids: every element quoted, '"' and '\' escaped (the value is a parameter,
 * never SQL). Caller owns the result. */
static char *array_literal(char *const *ids, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += 2 * strlen(ids[i]) + 3;
    char *out = xmalloc(cap), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        *p++ = '"';
        for (const char *s = ids[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                *p++ = '\\';
            *p++ = *s;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* Open a sealed credential and encrypt it for the wire; NULL (logged) on failure. */
static char *wire_form(const order_config_t *cfg, svc_call_t *call, const char *instance_id,
                       const char *sealed)
{
    char *plain = NULL;
    size_t len = 0;
    if (!sealed || sealbox_open(cfg->data_key, instance_id, sealed, &plain, &len) != 0) {
        log_error(svc_call_rid(call), "instance %s: sealed credential does not open", instance_id);
        return NULL;
    }
    char *wire = appcrypt_encrypt(cfg->basic_key, cfg->encrypt_type, plain, NULL);
    xfree_secret(plain, len);
    if (!wire)
        return NULL;
    char *copy = svc_call_strdup(call, wire);
    free(wire);
    return copy;
}

static int row_of(const PGresult *res, const char *id)
{
    for (int i = 0; i < PQntuples(res); i++)
        if (strcmp(pg_value(res, i, 0), id) == 0)
            return i;
    return -1;
}

bool query_single(svc_call_t *call, const char **id, const char **test_flag)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__QueryInstance *r = env->query_instance;
    if (env->body_case != KOOISV__ENVELOPE__BODY_QUERY_INSTANCE || !r ||
        r->n_instance_ids != 1 || !*r->instance_ids[0] || strlen(r->instance_ids[0]) > 256)
        return false;
    *id = r->instance_ids[0];
    *test_flag = env->test_flag ? "true" : "false";
    return true;
}

void query_answer(const order_config_t *cfg, svc_call_t *call, const PGresult *res)
{
    const Kooisv__QueryInstance *r = svc_call_request(call)->query_instance;
    Kooisv__QueryInstanceResult *out = svc_call_alloc(call, sizeof *out);
    kooisv__query_instance_result__init(out);
    out->encrypt_type = svc_call_strdup(call, cfg->encrypt_type);
    out->info = svc_call_alloc(call, r->n_instance_ids * sizeof *out->info);
    bool failed = false;
    /* Answer in request order; a repeated id is answered once. */
    for (size_t i = 0; i < r->n_instance_ids && !failed; i++) {
        const char *id = r->instance_ids[i];
        int row = row_of(res, id);
        bool repeated = false;
        for (size_t j = 0; j < i && !repeated; j++)
            repeated = strcmp(r->instance_ids[j], id) == 0;
        if (row < 0 || repeated)
            continue;
        Kooisv__InstanceInfo *info = svc_call_alloc(call, sizeof *info);
        kooisv__instance_info__init(info);
        info->instance_id = svc_call_strdup(call, id);
        info->usage_info_json = "";
        if (strcmp(pg_value(res, row, 6), "t") == 0) {
            Kooisv__AppInfo *app = svc_call_alloc(call, sizeof *app);
            kooisv__app_info__init(app);
            app->front_end_url = svc_call_strdup(call, pg_value(res, row, 1));
            app->admin_url = svc_call_strdup(call, pg_value(res, row, 2));
            app->memo = svc_call_strdup(call, pg_value(res, row, 5));
            app->user_name = pg_value(res, row, 3) ? wire_form(cfg, call, id, pg_value(res, row, 3))
                                                   : svc_call_strdup(call, "");
            app->password = pg_value(res, row, 4) ? wire_form(cfg, call, id, pg_value(res, row, 4))
                                                  : svc_call_strdup(call, "");
            failed = !app->user_name || !app->password;
            info->app_info = app;
        }
        out->info[out->n_info++] = info;
    }
    if (failed) {
        svc_call_result(call, RC_INTERNAL, "internal error; please retry");
        return;
    }
    Kooisv__Reply *reply = svc_call_reply(call);
    reply->query_instance = out;
    reply->result_case = KOOISV__REPLY__RESULT_QUERY_INSTANCE;
    svc_call_result(call, RC_OK, "success");
}

void query_instances(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__QueryInstance *r = env->query_instance;
    const char *rid = svc_call_rid(call);
    if (r->n_instance_ids == 0) {
        svc_call_result(call, RC_INVALID, "instanceId is required");
        return;
    }
    if (r->n_instance_ids > QUERY_MAX_IDS) {
        svc_call_result(call, RC_INVALID, "instanceId lists %zu ids; at most %d are allowed",
                        r->n_instance_ids, QUERY_MAX_IDS);
        return;
    }
    for (size_t i = 0; i < r->n_instance_ids; i++) {
        if (!*r->instance_ids[i] || strlen(r->instance_ids[i]) > 256) {
            svc_call_result(call, RC_INVALID, "instanceId holds an empty or oversized id");
            return;
        }
    }
    bool one = r->n_instance_ids == 1;
    char *ids = one ? NULL : array_literal(r->instance_ids, r->n_instance_ids);
    const char *p[] = {one ? r->instance_ids[0] : ids, env->test_flag ? "true" : "false"};
    pg_status_t st = PG_OK;
    PGresult *res =
        pg_session_exec(w->db, rid, one ? "query_instance" : "query_instances", 2, p, &st);
    free(ids);
    if (!res) {
        order_reply(call, st, RC_INTERNAL, "");
        return;
    }
    query_answer(order_cfg(w), call, res);
    PQclear(res);
}
