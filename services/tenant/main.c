/* kooisv-tenant: the tenant service. Serves kit tenantSync, singleOrgSync and allOrgSync
 * (validated by the gateway, spec §4) and operator look-ups over ZeroMQ; owns schema "tenants";
 * tells the seller's application about every committed change through its outbox. */
#include "migrations.h"
#include "svcrt.h"
#include "tenant.h"

static const config_var_t tenant_vars[] = {
    SVCRT_CONFIG_VARS("tcp://127.0.0.1:7102", "kooisv_tenant", "tenants"),
    SVCRT_OUTBOX_CONFIG_VARS,
    SVCRT_RETENTION_CONFIG_VARS,
};

static bool tenant_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
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
    const pg_stmt_t *const groups[] = {tenantsync_stmts, orgsync_stmts, tenantadmin_stmts};
    const size_t counts[] = {tenantsync_stmts_count, orgsync_stmts_count, tenantadmin_stmts_count};
    svcrt_def_t tenant = {
        SVCRT_KIT_SERVICE("tenant", "tenants"),
        .summary = "tenant service: kit tenantSync, singleOrgSync, allOrgSync (schema tenants)",
        .vars = tenant_vars,
        .nvars = sizeof tenant_vars / sizeof tenant_vars[0],
        .groups = groups,
        .counts = counts,
        .ngroups = 3,
        .handle = tenant_handle,
        .admin = tenantadmin_handle,
    };
    return svcrt_run(&tenant, argc, argv);
}
