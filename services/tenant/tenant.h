/* The tenant service (schema "tenants"): kit tenantSync, singleOrgSync and allOrgSync (spec §4)
 * plus the operator look-ups tenant.get and tenant.tree. */
#ifndef KOOISV_TENANT_H
#define KOOISV_TENANT_H
#include "envelope.pb-c.h"
#include "svcrt.h"

extern const pg_stmt_t tenantsync_stmts[];
extern const size_t tenantsync_stmts_count;
extern const pg_stmt_t orgsync_stmts[];
extern const size_t orgsync_stmts_count;
extern const pg_stmt_t tenantadmin_stmts[];
extern const size_t tenantadmin_stmts_count;

/* tenantSync: add (idempotent), modify (name and domain; upsert when missing), delete (the
 * tenant and its org tree; success when already gone). */
void tenantsync_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__TenantSync *m);
/* singleOrgSync: add/modify/delete one org; a move that would close a cycle is 000002. */
void orgsync_single(svcrt_worker_t *w, svc_call_t *call, const Kooisv__SingleOrgSync *m);
/* allOrgSync: replace the tenant's whole tree atomically; a cycle or duplicate is 000002. */
void orgsync_all(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AllOrgSync *m);
/* Serve tenant.get and tenant.tree; false when action is neither. */
bool tenantadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);

#endif
