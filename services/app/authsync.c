/* authSync (spec §4): idempotency key instance + tenant + app + userName. Whole lists are
 * applied with one statement each (jsonb_to_recordset), sorted by userName so that concurrent
 * calls lock rows in the same order. Mobile and e-mail are sealed per row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "resultcode.h"
#include "svcadmin.h"
#include "log.h"
#include "sealbox.h"
#include "xmalloc.h"

#define USER_COLUMNS                                                                               \
    "instance_id, tenant_id, app_id, user_name, name, org_code, position, employee_code,"          \
    " employee_type, role, enabled, mobile_sealed, email_sealed, current_sync_time, test_flag"
#define USER_SELECT                                                                                \
    " SELECT $1, $2, $3, x.user_name, x.name, x.org_code, x.position, x.employee_code,"            \
    " nullif(x.employee_type, 0), x.role, x.enabled, x.mobile_sealed, x.email_sealed, $5,"         \
    " $6::boolean FROM jsonb_to_recordset($4::jsonb) AS x(user_name text, name text,"              \
    " org_code text, position text, employee_code text, employee_type smallint, role text,"        \
    " enabled boolean, mobile_sealed text, email_sealed text)"
#define USER_SET                                                                                   \
    " name = EXCLUDED.name, org_code = EXCLUDED.org_code, position = EXCLUDED.position,"           \
    " employee_code = EXCLUDED.employee_code, employee_type = EXCLUDED.employee_type,"             \
    " role = EXCLUDED.role, enabled = EXCLUDED.enabled, mobile_sealed = EXCLUDED.mobile_sealed,"   \
    " email_sealed = EXCLUDED.email_sealed, current_sync_time = EXCLUDED.current_sync_time,"       \
    " updated_at = now()"
#define USER_KEY "instance_id = $1 AND tenant_id = $2 AND app_id = $3"
#define USER_IN " AND user_name = ANY ($4::text[])"

const pg_stmt_t authsync_stmts[] = {
    /* add: new users are inserted; a user whose authorisation was cancelled is authorised
     * again with the data given; an authorised user is left alone (repeated add) */
    {"user_add",
     "INSERT INTO app_users (" USER_COLUMNS ")" USER_SELECT
     " ON CONFLICT (instance_id, tenant_id, app_id, user_name) DO UPDATE SET" USER_SET ","
     " auth_status = 'authorised' WHERE app_users.auth_status = 'cancelled'"
     " RETURNING user_name, (xmax = 0) AS inserted",
     6},
    /* modify: the caller sends only users that differ (compared under FOR UPDATE); a missing
     * user is created (upsert); the authorisation status is not modify's business */
    {"user_modify",
     "INSERT INTO app_users (" USER_COLUMNS ")" USER_SELECT
     " ON CONFLICT (instance_id, tenant_id, app_id, user_name) DO UPDATE SET" USER_SET
     " RETURNING user_name, (xmax = 0) AS inserted",
     6},
    {"user_lock",
     "SELECT user_name, name, org_code, position, employee_code, coalesce(employee_type, 0),"
     " role, enabled, mobile_sealed, email_sealed FROM app_users WHERE " USER_KEY USER_IN
     " ORDER BY user_name COLLATE \"C\" FOR UPDATE",
     4},
    {"user_delete", "DELETE FROM app_users WHERE " USER_KEY USER_IN " RETURNING user_name", 4},
    /* cancel authorisation: the user stays, marked; cancelling a missing user is a no-op */
    {"user_cancel",
     "UPDATE app_users SET auth_status = 'cancelled', current_sync_time = $5, updated_at = now()"
     " WHERE " USER_KEY USER_IN " AND auth_status <> 'cancelled' RETURNING user_name",
     5},
};
const size_t authsync_stmts_count = sizeof authsync_stmts / sizeof authsync_stmts[0];

char *app_contact_aad(const char *column, const char *instance_id, const char *tenant_id,
                      const char *app_id, const char *user_name)
{
    return xasprintf("apps.app_users.%s\x1f%s\x1f%s\x1f%s\x1f%s", column, instance_id, tenant_id,
                     app_id, user_name);
}

static int user_cmp(const void *a, const void *b)
{
    const Kooisv__SyncUser *x = *(Kooisv__SyncUser *const *)a;
    const Kooisv__SyncUser *y = *(Kooisv__SyncUser *const *)b;
    return strcmp(x->user_name, y->user_name);
}

typedef struct {
    const Kooisv__AuthSync *m;
    const app_state_t *st;
    Kooisv__SyncUser **users; /* m->users sorted by user_name */
    size_t n;
} auth_call_t;

/* Sealed contact value or JSON null when not given. */
static json_t *seal_contact(const auth_call_t *a, const char *column, const char *user_name,
                            const char *value)
{
    if (!*value)
        return json_null();
    char *aad =
        app_contact_aad(column, a->m->instance_id, a->m->tenant_id, a->m->app_id, user_name);
    char *sealed = sealbox_seal(a->st->data_key, aad, value, strlen(value));
    free(aad);
    json_t *v = json_string(sealed);
    free(sealed);
    return v;
}

/* The record set for user_add / user_modify. */
static json_t *user_rows(const auth_call_t *a, Kooisv__SyncUser *const *users, size_t n)
{
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++) {
        const Kooisv__SyncUser *u = users[i];
        json_array_append_new(
            rows, json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:b,s:o,s:o}", "user_name", u->user_name,
                            "name", u->name, "org_code", u->org_code, "position", u->position,
                            "employee_code", u->employee_code, "employee_type", u->employee_type,
                            "role", u->role, "enabled", u->enable, "mobile_sealed",
                            seal_contact(a, "mobile", u->user_name, u->mobile), "email_sealed",
                            seal_contact(a, "email", u->user_name, u->email)));
    }
    return rows;
}

/* The user names as a text[] literal. Caller frees. */
static char *user_names(Kooisv__SyncUser *const *users, size_t n)
{
    const char **names = xmalloc(n * sizeof *names);
    for (size_t i = 0; i < n; i++)
        names[i] = users[i]->user_name;
    char *out = pg_text_array(names, n);
    free(names);
    return out;
}

/* Stored contact value equals value? (NULL column = not given = "") */
static bool same_contact(const auth_call_t *a, const char *column, const char *user_name,
                         const char *sealed, const char *value)
{
    if (!sealed)
        return !*value;
    char *aad =
        app_contact_aad(column, a->m->instance_id, a->m->tenant_id, a->m->app_id, user_name);
    char *old = NULL;
    size_t len = 0;
    int rc = sealbox_open(a->st->data_key, aad, sealed, &old, &len);
    free(aad);
    if (rc != 0)
        return false;
    bool same = strcmp(old, value) == 0;
    xfree_secret(old, len);
    return same;
}

/* Does stored row i of r hold exactly what u brings? */
static bool same_user(const auth_call_t *a, PGresult *r, int i, const Kooisv__SyncUser *u)
{
    return strcmp(PQgetvalue(r, i, 1), u->name) == 0 &&
           strcmp(PQgetvalue(r, i, 2), u->org_code) == 0 &&
           strcmp(PQgetvalue(r, i, 3), u->position) == 0 &&
           strcmp(PQgetvalue(r, i, 4), u->employee_code) == 0 &&
           atoi(PQgetvalue(r, i, 5)) == u->employee_type &&
           strcmp(PQgetvalue(r, i, 6), u->role) == 0 &&
           (strcmp(PQgetvalue(r, i, 7), "t") == 0) == u->enable &&
           same_contact(a, "mobile", u->user_name, pg_value(r, i, 8), u->mobile) &&
           same_contact(a, "email", u->user_name, pg_value(r, i, 9), u->email);
}

/* The users of a modify that differ from what is stored (or are missing). Caller frees. */
static Kooisv__SyncUser **changed_users(const auth_call_t *a, PGresult *r, size_t *n_out)
{
    Kooisv__SyncUser **out = xmalloc(a->n * sizeof *out);
    size_t n = 0;
    int rows = PQntuples(r), j = 0;
    /* both lists are sorted by user_name in byte order: merge */
    for (size_t i = 0; i < a->n; i++) {
        const Kooisv__SyncUser *u = a->users[i];
        while (j < rows && strcmp(PQgetvalue(r, j, 0), u->user_name) < 0)
            j++;
        if (j < rows && strcmp(PQgetvalue(r, j, 0), u->user_name) == 0 && same_user(a, r, j, u))
            continue;
        out[n++] = a->users[i];
    }
    *n_out = n;
    return out;
}

/* Event data: the users that changed, with their details for add/modify. */
static json_t *event_users(const auth_call_t *a, PGresult *r, bool details)
{
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        if (!details) {
            json_array_append_new(list, json_pack("{s:s}", "userName", name));
            continue;
        }
        Kooisv__SyncUser key = {.user_name = (char *)name}, *kp = &key;
        Kooisv__SyncUser **hit = bsearch(&kp, a->users, a->n, sizeof *a->users, user_cmp);
        if (!hit)
            continue;
        const Kooisv__SyncUser *u = *hit;
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "userName", u->user_name,
                              "name", u->name, "orgCode", u->org_code, "position", u->position,
                              "employeeCode", u->employee_code, "role", u->role, "enable",
                              u->enable ? "true" : "false", "mobile", u->mobile, "email", u->email,
                              "created", strcmp(PQgetvalue(r, i, 1), "t") == 0);
        if (u->employee_type)
            json_object_set_new(o, "employeeType", json_integer(u->employee_type));
        json_array_append_new(list, o);
    }
    return list;
}

static const char *const flag_action[] = {"delete", "add", "modify", "cancel"};

static pg_status_t auth_tx(svcrt_tx_t *tx, void *arg)
{
    auth_call_t *a = arg;
    const Kooisv__AuthSync *m = a->m;
    const Kooisv__Envelope *env = svc_call_request(tx->call);
    const char *test = env->test_flag ? "true" : "false";
    PGresult *r = NULL;
    char *doc;
    if (m->flag == 1 || m->flag == 2) {
        Kooisv__SyncUser **todo = a->users;
        size_t n = a->n;
        Kooisv__SyncUser **changed = NULL;
        if (m->flag == 2) {
            doc = user_names(a->users, a->n);
            const char *lp[] = {m->instance_id, m->tenant_id, m->app_id, doc};
            r = svcrt_exec(tx, "user_lock", 4, lp);
            free(doc);
            if (!r)
                return PG_FAIL;
            changed = changed_users(a, r, &n);
            PQclear(r);
            todo = changed;
        }
        if (n == 0) {
            free(changed);
            tx->ok_msg = "success (no change)";
            return PG_OK;
        }
        json_t *rows = user_rows(a, todo, n);
        free(changed);
        doc = svcadmin_json_text(rows);
        json_decref(rows);
        const char *p[] = {m->instance_id,       m->tenant_id, m->app_id, doc,
                           m->current_sync_time, test};
        r = svcrt_exec(tx, m->flag == 1 ? "user_add" : "user_modify", 6, p);
        free(doc);
    } else {
        doc = user_names(a->users, a->n);
        const char *p[] = {m->instance_id, m->tenant_id, m->app_id, doc, m->current_sync_time};
        r = svcrt_exec(tx, m->flag == 0 ? "user_delete" : "user_cancel", m->flag == 0 ? 4 : 5, p);
        free(doc);
    }
    if (!r)
        return PG_FAIL;
    if (PQntuples(r) == 0) {
        PQclear(r);
        tx->ok_msg = m->flag == 1 ? "success (users already authorised)" : "success (no change)";
        return PG_OK;
    }
    json_t *users = event_users(a, r, m->flag == 1 || m->flag == 2);
    PQclear(r);
    json_t *data = json_pack("{s:s,s:s,s:o}", "appId", m->app_id, "currentSyncTime",
                             m->current_sync_time, "users", users);
    return svcrt_emit(tx, "authSync", flag_action[m->flag], m->instance_id, m->tenant_id, data);
}

void authsync_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AuthSync *m)
{
    if (!svcrt_text_ok(m->instance_id, 64, false) || !svcrt_text_ok(m->tenant_id, 64, true) ||
        !svcrt_text_ok(m->app_id, 64, true) || !svcrt_text_ok(m->current_sync_time, 32, false) ||
        m->flag < 0 || m->flag > 3 || m->n_users == 0 || m->n_users > 10000) {
        svc_call_result(call, RC_INVALID, "invalid authSync message");
        return;
    }
    bool full = m->flag == 1 || m->flag == 2;
    for (size_t i = 0; i < m->n_users; i++) {
        const Kooisv__SyncUser *u = m->users[i];
        bool ok = svcrt_text_ok(u->user_name, 128, true) && svcrt_text_ok(u->name, 128, full) &&
                  svcrt_text_ok(u->org_code, 64, full) && svcrt_text_ok(u->position, 128, false) &&
                  svcrt_text_ok(u->employee_code, 64, false) &&
                  svcrt_text_ok(u->mobile, 32, false) && svcrt_text_ok(u->email, 254, false) &&
                  u->employee_type >= 0 && u->employee_type <= 4 &&
                  (!full || strcmp(u->role, "user") == 0 || strcmp(u->role, "admin") == 0);
        if (!ok) {
            svc_call_result(call, RC_INVALID, "userList[%zu]: invalid user", i);
            return;
        }
    }
    auth_call_t a = {.m = m, .st = w->svc, .n = m->n_users};
    a.users = xmalloc(a.n * sizeof *a.users);
    memcpy(a.users, m->users, a.n * sizeof *a.users);
    qsort(a.users, a.n, sizeof *a.users, user_cmp);
    for (size_t i = 1; i < a.n; i++)
        if (strcmp(a.users[i - 1]->user_name, a.users[i]->user_name) == 0) {
            svc_call_result(call, RC_INVALID, "userList: userName %s appears more than once",
                            a.users[i]->user_name);
            free(a.users);
            return;
        }
    svcrt_tx_run(w, call, auth_tx, &a);
    free(a.users);
}
