/* Operator look-ups of the app service (reached only through the gateway's admin API, which
 * authenticates, authorises and audits): app.users, app.secret, outbox.failed/redrive. Every
 * read is keyed by instance + tenant + app. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "resultcode.h"
#include "svcadmin.h"
#include "log.h"
#include "sealbox.h"
#include "xmalloc.h"

#define TS_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"

const pg_stmt_t appadmin_stmts[] = {
    {"admin_app_get",
     "SELECT client_id, client_secret_sealed, test_flag,"
     " to_char(created_at AT TIME ZONE 'UTC', " TS_FMT "),"
     " to_char(updated_at AT TIME ZONE 'UTC', " TS_FMT ")"
     " FROM apps WHERE instance_id = $1 AND tenant_id = $2 AND app_id = $3",
     3},
    {"admin_users",
     "SELECT user_name, name, org_code, position, employee_code, coalesce(employee_type, 0),"
     " role, enabled, mobile_sealed, email_sealed, auth_status, current_sync_time, test_flag,"
     " to_char(updated_at AT TIME ZONE 'UTC', " TS_FMT ")"
     " FROM app_users WHERE instance_id = $1 AND tenant_id = $2 AND app_id = $3"
     " AND user_name COLLATE \"C\" > $4 ORDER BY user_name COLLATE \"C\" LIMIT $5::int",
     5},
};
const size_t appadmin_stmts_count = sizeof appadmin_stmts / sizeof appadmin_stmts[0];

static bool app_key(svc_call_t *call, const Kooisv__AdminRequest *req, const char **instance,
                    const char **tenant, const char **app)
{
    *instance = svcadmin_arg(req, "instance");
    *tenant = svcadmin_arg(req, "tenant");
    *app = svcadmin_arg(req, "app");
    if (!svcrt_text_ok(*instance, 64, false) || !svcrt_text_ok(*tenant, 64, true) ||
        !svcrt_text_ok(*app, 64, true)) {
        svc_call_result(call, RC_INVALID,
                        "args: tenant and app (1..64 chars) and instance (0..64) required");
        return false;
    }
    return true;
}

/* Contact data is shown masked: an operator looking a user up needs to recognise it, not to
 * copy it (least privilege; the full value goes only to the seller's app, in events). */
static json_t *masked_contact(const svcrt_worker_t *w, const char *column, const char *instance,
                              const char *tenant, const char *app, const char *user,
                              const char *sealed)
{
    if (!sealed)
        return json_string("");
    const app_state_t *st = w->svc;
    char *aad = app_contact_aad(column, instance, tenant, app, user);
    char *plain = NULL;
    size_t len = 0;
    int rc = sealbox_open(st->data_key, aad, sealed, &plain, &len);
    free(aad);
    if (rc != 0)
        return json_string("(unreadable)");
    char *out = xstrdup(plain);
    if (strcmp(column, "email") == 0) {
        char *at = strchr(out, '@');
        /* first character and the domain: a***@example.com */
        if (at && at > out)
            for (char *p = out + 1; p < at; p++)
                *p = '*';
    } else {
        /* last four characters: *******1234 */
        size_t n = strlen(out);
        for (size_t i = 0; i + 4 < n; i++)
            out[i] = '*';
    }
    xfree_secret(plain, len);
    json_t *v = json_string(out);
    free(out);
    return v;
}

static void admin_users(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *instance, *tenant, *app;
    if (!app_key(call, req, &instance, &tenant, &app))
        return;
    const char *after = svcadmin_arg(req, "after");
    char lim[16];
    if (!svcadmin_limit(call, req, 1000, 10000, lim))
        return;
    if (!svcrt_text_ok(after, 128, false)) {
        svc_call_result(call, RC_INVALID, "after: a userName (at most 128 characters)");
        return;
    }
    const char *p[] = {instance, tenant, app, after, lim};
    PGresult *r = svcrt_admin_query(w, call, "admin_users", 5, p);
    if (!r)
        return;
    json_t *users = json_array();
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        const char *user = PQgetvalue(r, i, 0);
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:o,s:o}", "userName", user, "name",
            PQgetvalue(r, i, 1), "orgCode", PQgetvalue(r, i, 2), "position", PQgetvalue(r, i, 3),
            "employeeCode", PQgetvalue(r, i, 4), "role", PQgetvalue(r, i, 6), "enable",
            strcmp(PQgetvalue(r, i, 7), "t") == 0 ? "true" : "false", "authStatus",
            PQgetvalue(r, i, 10), "testFlag", strcmp(PQgetvalue(r, i, 12), "t") == 0, "updatedAt",
            PQgetvalue(r, i, 13), "mobile",
            masked_contact(w, "mobile", instance, tenant, app, user, pg_value(r, i, 8)), "email",
            masked_contact(w, "email", instance, tenant, app, user, pg_value(r, i, 9)));
        int type = atoi(PQgetvalue(r, i, 5));
        if (type)
            json_object_set_new(o, "employeeType", json_integer(type));
        json_array_append_new(users, o);
    }
    json_t *doc = json_pack("{s:s,s:s,s:s,s:o}", "instanceId", instance, "tenantId", tenant,
                            "appId", app, "users", users);
    if (n == atoi(lim))
        json_object_set_new(doc, "next", json_string(PQgetvalue(r, n - 1, 0)));
    PQclear(r);
    svcadmin_reply(call, doc);
}

/* The one way a stored clientSecret leaves the service: to an operator (the gateway admits
 * only the admin role to this action and audits it). */
static void admin_secret(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    if (!env->caller || strcmp(env->caller->kind, "operator") != 0) {
        svc_call_result(call, RC_AUTH, "app.secret is for operators only");
        return;
    }
    const char *instance, *tenant, *app;
    if (!app_key(call, req, &instance, &tenant, &app))
        return;
    const char *p[] = {instance, tenant, app};
    PGresult *r = svcrt_admin_query(w, call, "admin_app_get", 3, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        PQclear(r);
        svc_call_result(call, RC_NO_INSTANCE, "no app %s for tenant %s in instance '%s'", app, tenant,
                        instance);
        return;
    }
    const app_state_t *st = w->svc;
    char *aad = app_secret_aad(instance, tenant, app);
    char *plain = NULL;
    size_t len = 0;
    int rc = sealbox_open(st->data_key, aad, PQgetvalue(r, 0, 1), &plain, &len);
    free(aad);
    if (rc != 0) {
        PQclear(r);
        log_error(svc_call_rid(call), "stored clientSecret of app %s does not open (data key?)",
                  app);
        svc_call_result(call, RC_INTERNAL, "stored clientSecret cannot be opened");
        return;
    }
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:s%,s:s}", "instanceId", instance, "tenantId",
                            tenant, "appId", app, "clientId", PQgetvalue(r, 0, 0), "clientSecret",
                            plain, len, "updatedAt", PQgetvalue(r, 0, 4));
    PQclear(r);
    xfree_secret(plain, len);
    svcadmin_reply_secret(call, doc);
    log_info(svc_call_rid(call), "clientSecret of app %s (tenant %s) disclosed to operator %s", app,
             tenant, env->caller->id);
}

bool appadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    if (strcmp(req->action, "app.users") == 0)
        admin_users(w, call, req);
    else if (strcmp(req->action, "app.secret") == 0)
        admin_secret(w, call, req);
    else
        return false;
    return true;
}
