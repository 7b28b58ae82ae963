/* kooisv-tenant: the tenant service. Serves kit tenantSync, singleOrgSync and allOrgSync
 * (validated by the gateway, spec §4) and operator look-ups over ZeroMQ; owns schema "tenants";
 * tells the seller's application about every committed change through its outbox. */
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "syncoutbox.h"
#include "syncsvc.h"
#include "tenant.h"

static const config_var_t tenant_vars[] = {
    {"KOOISV_BIND", "tcp://*:7102", 0, "ZeroMQ endpoint the service binds (ROUTER)"},
    {"KOOISV_WORKERS", "4", 0, "worker threads, each with its own PostgreSQL connection (1..64)"},
    {"KOOISV_PG_DSN", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "PostgreSQL connection string of role kooisv_tenant (schema tenants)"},
    {"KOOISV_LOG_LEVEL", "info", 0, "debug | info | warn | error"},
    SYNCOUTBOX_CONFIG_VARS,
};

static void tenant_handle(sync_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_TENANT_SYNC:
        tenantsync_handle(w, call, env->tenant_sync);
        break;
    case KOOISV__ENVELOPE__BODY_SINGLE_ORG_SYNC:
        orgsync_single(w, call, env->single_org_sync);
        break;
    case KOOISV__ENVELOPE__BODY_ALL_ORG_SYNC:
        orgsync_all(w, call, env->all_org_sync);
        break;
    case KOOISV__ENVELOPE__BODY_ADMIN:
        tenantadmin_handle(w, call, env->admin);
        break;
    default:
        svc_call_result(call, "000002", "the tenant service does not serve this request");
        break;
    }
}

int main(int argc, char **argv)
{
    log_init("tenant");
    config_load("kooisv-tenant",
                "tenant service: kit tenantSync, singleOrgSync, allOrgSync (schema tenants)",
                tenant_vars, sizeof tenant_vars / sizeof tenant_vars[0], argc, argv);
    syncoutbox_config_t ob = {.source = "tenant",
                              .schema = "tenants",
                              .dsn = config_get("KOOISV_PG_DSN"),
                              .seal_key = NULL};
    syncoutbox_init(&ob);
    const pg_stmt_t *groups[] = {tenantsync_stmts, orgsync_stmts, tenantadmin_stmts,
                                 syncoutbox_stmts};
    const size_t counts[] = {tenantsync_stmts_count, orgsync_stmts_count, tenantadmin_stmts_count,
                             syncoutbox_stmts_count};
    sync_service_t svc = {.name = "tenant",
                          .schema = "tenants",
                          .dsn = config_get("KOOISV_PG_DSN"),
                          .bind = config_get("KOOISV_BIND"),
                          .workers = (int)config_get_long("KOOISV_WORKERS", 1, 64),
                          .groups = groups,
                          .counts = counts,
                          .ngroups = 4,
                          .handle = tenant_handle};
    return sync_service_run(&svc);
}
