/* applicationSync (spec §4): idempotency key instance + tenant + app. The clientSecret arrives
 * RSA-OAEP encrypted under the seller's key; it is decrypted only to be sealed again under the
 * data key, and never logged or put in an event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "resultcode.h"
#include "log.h"
#include "rsaoaep.h"
#include "sealbox.h"
#include "xmalloc.h"

const pg_stmt_t appsync_stmts[] = {
    {"app_add",
     "INSERT INTO apps (instance_id, tenant_id, app_id, client_id, client_secret_sealed, test_flag)"
     " VALUES ($1, $2, $3, $4, $5, $6::boolean)"
     " ON CONFLICT (instance_id, tenant_id, app_id) DO NOTHING RETURNING app_id",
     6},
    {"app_lock",
     "SELECT client_id, client_secret_sealed FROM apps"
     " WHERE instance_id = $1 AND tenant_id = $2 AND app_id = $3 FOR UPDATE",
     3},
    /* modify of a missing app creates it (upsert): see tenantSync */
    {"app_upsert",
     "INSERT INTO apps (instance_id, tenant_id, app_id, client_id, client_secret_sealed, test_flag)"
     " VALUES ($1, $2, $3, $4, $5, $6::boolean)"
     " ON CONFLICT (instance_id, tenant_id, app_id) DO UPDATE SET client_id = EXCLUDED.client_id,"
     " client_secret_sealed = EXCLUDED.client_secret_sealed, updated_at = now()"
     " RETURNING (xmax = 0) AS inserted",
     6},
    {"app_delete",
     "DELETE FROM apps WHERE instance_id = $1 AND tenant_id = $2 AND app_id = $3 RETURNING app_id",
     3},
    {"app_delete_users",
     "DELETE FROM app_users WHERE instance_id = $1 AND tenant_id = $2 AND app_id = $3", 3},
};
const size_t appsync_stmts_count = sizeof appsync_stmts / sizeof appsync_stmts[0];

char *app_secret_aad(const char *instance_id, const char *tenant_id, const char *app_id)
{
    return xasprintf("apps.client_secret\x1f%s\x1f%s\x1f%s", instance_id, tenant_id, app_id);
}

typedef struct {
    const Kooisv__ApplicationSync *m;
    const app_state_t *st;
    char *plain; /* decrypted secret (wiped after the call) */
    size_t plain_len;
    char *sealed;
} app_call_t;

/* True when the stored (client id, sealed secret) equals what the call brings. */
static bool same_app(const app_call_t *a, const char *client_id, const char *sealed)
{
    if (strcmp(client_id, a->m->client_id) != 0)
        return false;
    char *aad = app_secret_aad(a->m->instance_id, a->m->tenant_id, a->m->app_id);
    char *old = NULL;
    size_t old_len = 0;
    int rc = sealbox_open(a->st->data_key, aad, sealed, &old, &old_len);
    free(aad);
    if (rc != 0)
        return false; /* unreadable: replace it with what we were given */
    bool same = old_len == a->plain_len && memcmp(old, a->plain, old_len) == 0;
    xfree_secret(old, old_len);
    return same;
}

static pg_status_t app_tx(svcrt_tx_t *tx, void *arg)
{
    app_call_t *a = arg;
    const Kooisv__ApplicationSync *m = a->m;
    const Kooisv__Envelope *env = svc_call_request(tx->call);
    const char *p[] = {m->instance_id, m->tenant_id, m->app_id,
                       m->client_id,   a->sealed,    env->test_flag ? "true" : "false"};
    PGresult *r;
    const char *action = NULL;
    bool created = false;
    long users = 0;
    if (m->flag == 1) {
        if (!(r = svcrt_exec(tx, "app_add", 6, p)))
            return PG_FAIL;
        if (PQntuples(r) == 1) {
            action = "add";
            created = true;
        } else {
            tx->ok_msg = "success (app already exists)";
        }
        PQclear(r);
    } else if (m->flag == 2) {
        if (!(r = svcrt_exec(tx, "app_lock", 3, p)))
            return PG_FAIL;
        bool same = PQntuples(r) == 1 && same_app(a, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
        PQclear(r);
        if (same) {
            tx->ok_msg = "success (no change)";
        } else {
            if (!(r = svcrt_exec(tx, "app_upsert", 6, p)))
                return PG_FAIL;
            action = "modify";
            created = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
            PQclear(r);
        }
    } else {
        /* delete: the app and its users; never checks that the instance exists */
        if (!(r = svcrt_exec(tx, "app_delete", 3, p)))
            return PG_FAIL;
        bool had = PQntuples(r) == 1;
        PQclear(r);
        if (!(r = svcrt_exec(tx, "app_delete_users", 3, p)))
            return PG_FAIL;
        users = atol(PQcmdTuples(r));
        PQclear(r);
        if (had || users > 0)
            action = "delete";
        else
            tx->ok_msg = "success (app already absent)";
    }
    if (!action)
        return PG_OK;
    /* the event says that the secret changed, never what it is */
    json_t *data = json_pack("{s:s,s:s}", "appId", m->app_id, "clientId", m->client_id);
    if (m->flag == 0)
        json_object_set_new(data, "usersDeleted", json_integer(users));
    else {
        json_object_set_new(data, "created", json_boolean(created));
        json_object_set_new(data, "clientSecretChanged", json_true());
    }
    return svcrt_emit(tx, "applicationSync", action, m->instance_id, m->tenant_id, data);
}

void appsync_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__ApplicationSync *m)
{
    const app_state_t *st = w->svc;
    bool secret_needed = m->flag == 1 || m->flag == 2;
    if (!svcrt_text_ok(m->instance_id, 64, false) || !svcrt_text_ok(m->tenant_id, 64, true) ||
        !svcrt_text_ok(m->app_id, 64, true) || !svcrt_text_ok(m->client_id, 128, secret_needed) ||
        m->flag < 0 || m->flag > 2) {
        svc_call_result(call, RC_INVALID, "invalid applicationSync message");
        return;
    }
    app_call_t a = {.m = m, .st = st};
    if (secret_needed) {
        if (!*m->client_secret ||
            rsaoaep_decrypt(st->rsa_key, m->client_secret, &a.plain, &a.plain_len) != 0) {
            svc_call_result(call, RC_SECRET_UNREADABLE, "clientSecret could not be decrypted");
            return;
        }
        char *aad = app_secret_aad(m->instance_id, m->tenant_id, m->app_id);
        a.sealed = sealbox_seal(st->data_key, aad, a.plain, a.plain_len);
        free(aad);
    }
    svcrt_tx_run(w, call, app_tx, &a);
    if (a.plain)
        xfree_secret(a.plain, a.plain_len);
    free(a.sealed);
}
