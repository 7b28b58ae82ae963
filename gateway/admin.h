/* admin: the operators' HTTPS API (KOOISV_ADMIN_LISTEN, default 127.0.0.1:8444) on its own
 * thread and event base, with its own dispatcher to the services.
 *
 * Authentication: "Authorization: Bearer <token>", checked against KOOISV_ADMIN_TOKENS_FILE
 * (lines "name role sha256hex-of-token"; roles auditor < operator < admin; the file is re-read
 * when it changes). Missing, malformed or unknown token -> 401; a role below the route's ->
 * 403. Answers are JSON ({"error","code","request_id"} on failure) with X-Request-Id.
 *
 * Every call, audit queries included, is itself audited: an AuditIntent (caller kind
 * "operator", id = token name, event "admin.<action>", source = TCP peer) is stored BEFORE the
 * call runs (503 when the audit service cannot store it: nothing runs unlogged) and its
 * AuditOutcome after; refused calls (401/403/400/404/405) are recorded as rejected intents.
 *
 * Routes (role):
 *   GET  /v1/audit?from&to&event&resource&caller&source&result&request_id&before&limit&format
 *                                                   (auditor) newest first, json | csv
 *   GET  /v1/audit/follow?after&wait&limit&<filters> (auditor) long poll, oldest change first
 *   GET  /v1/audit/export?from&to&format&<filters>  (auditor) attachment, csv | json
 *   POST /v1/audit/verify?from_seq                  (auditor) walk the hash chain
 *   GET  /v1/instances/<id>, GET /v1/instances?state&limit&before, GET /v1/jobs/failed,
 *   POST /v1/jobs/<id>/redrive                      (operator) -> order service
 *   GET  /v1/license/pubkey                         (auditor)  -> order service: license key
 *   GET  /v1/tenants/<tenantId>/orgs?instance       (operator) -> tenant service
 *   GET  /v1/tenants/<tenantId>/users?instance&app  (operator) -> app service
 *   GET  /v1/apps/<appId>/secret?instance&tenant    (admin)    -> app service
 *   GET  /v1/outbox/failed, POST /v1/outbox/<svc>/<id>/redrive (operator) -> the services
 * Times (from, to) are ISO-8601 (2026-11-28, 2026-11-28T10:00:00Z, ...+08:00) or epoch ms. */
#ifndef KOOISV_ADMIN_H
#define KOOISV_ADMIN_H
#include <stdbool.h>
#include <stdint.h>

/* Start the admin API from the gateway's configuration (KOOISV_ADMIN_LISTEN, _TOKENS_FILE,
 * _TLS_CERT_FILE/_KEY_FILE falling back to KOOISV_TLS_CERT_FILE/_KEY_FILE). An empty listen
 * address or tokens file leaves the API off (logged). Returns 0, or -1 (logged) when it was
 * configured but cannot start. Call after evthread_use_pthreads(). */
int admin_start(void);
/* Stop the admin thread (calls in flight are answered 503) and free everything. */
void admin_stop(void);

/* Parse an operator's time: epoch milliseconds, or ISO-8601 "YYYY-MM-DD" (midnight UTC),
 * "YYYY-MM-DDTHH:MM[:SS[.fff]]" followed by nothing (UTC), "Z", or "+HH:MM"/"-HH:MM"/"+HHMM".
 * False when s is neither. */
bool admin_parse_time(const char *s, int64_t *ms_out);

#endif
