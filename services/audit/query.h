/* query: AuditQuery — filtered pages of the trail, newest first with a before_seq cursor, or
 * follow mode (oldest change first after after_seq). Each entry is an intent merged with its
 * outcome; an intent without one has has_outcome = false. */
#ifndef KOOISV_AUDIT_QUERY_H
#define KOOISV_AUDIT_QUERY_H
#include <stddef.h>
#include "pgutil.h"
#include "svc.h"

#define QUERY_DEFAULT_LIMIT 100
#define QUERY_MAX_LIMIT 1000

extern const pg_stmt_t query_stmts[];
extern const size_t query_nstmts;

/* Serve one AuditQuery on conn (statements of query_stmts prepared): sets the reply. */
void query_handle(PGconn *conn, svc_call_t *call);

#endif
