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
    SYNC_SERVICE_CONFIG_VARS("tcp://127.0.0.1:7102", "kooisv_tenant", "tenants"),
    SYNCOUTBOX_CONFIG_VARS,
};

static bool tenant_handle(sync_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
{
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_TENANT_SYNC:
        tenantsync_handle(w, call, env->tenant_sync);
        return true;
    case KOOISV__ENVELOPE__BODY_SINGLE_ORG_SYNC:
        orgsync_single(w, call, env->single_org_sync);
        return true;
    case KOOISV__ENVELOPE__BODY_ALL_ORG_SYNC:
        orgsync_all(w, call, env->all_org_sync);
        return true;
    default:
        return false;
    }
}

int main(int argc, char **argv)
{
    log_init("tenant");
    config_load("kooisv-tenant",
                "tenant service: kit tenantSync, singleOrgSync, allOrgSync (schema tenants)",
                tenant_vars, sizeof tenant_vars / sizeof tenant_vars[0], argc, argv);
    const pg_stmt_t *groups[] = {tenantsync_stmts, orgsync_stmts, tenantadmin_stmts};
    const size_t counts[] = {tenantsync_stmts_count, orgsync_stmts_count, tenantadmin_stmts_count};
    sync_service_t svc = {.name = "tenant",
                          .schema = "tenants",
                          .groups = groups,
                          .counts = counts,
                          .ngroups = 3,
                          .handle = tenant_handle,
                          .admin = tenantadmin_handle};
    return sync_service_run(&svc);
}
