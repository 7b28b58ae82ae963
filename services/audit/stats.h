/* stats: the admin action "audit.stats" (the web console's overview): marketplace calls per
 * minute by event type and result code, and their latency percentiles, over the last hours
 * (argument "hours", 1..168, default 24), counted from the trail itself. Operators' own admin
 * calls are left out. Answer: {"from","to","calls","minutes":[[minute_ms,event,code,n],...],
 * "latencyMs":{"count","p50","p99"}}. */
#ifndef KOOISV_AUDIT_STATS_H
#define KOOISV_AUDIT_STATS_H
#include <stddef.h>
#include "pgutil.h"
#include "svc.h"

extern const pg_stmt_t stats_stmts[];
extern const size_t stats_nstmts;

/* Serve one "audit.stats" AdminRequest on conn (stats_stmts prepared): sets the reply. */
void stats_handle(PGconn *conn, svc_call_t *call, const Kooisv__AdminRequest *req);

#endif
