/* intake: usage as the seller's application reports it (admin action usage.add, reached through
 * the gateway's POST /v1/usage: role meter, or admin). Arg "records": a JSON array of 1..1000
 * records {"instanceId", "recordId" (the client's record id, 1..64 characters), "quantity" (a
 * decimal string > 0 with at most 4 decimals), and "usedAt" (a time) or "begin" and "end" (an
 * interval inside one hour, or one UTC day for instances billed daily)}; times ISO-8601 (or
 * epoch ms), at most INTAKE_SKEW_S in the future and at most 21 days old. All or nothing: a
 * record for an unknown, released or non-pay-per-use (charging mode other than ON_DEMAND)
 * instance, or a malformed one, refuses the whole call (000002, the message names the record
 * by position and recordId) and nothing is stored. A record whose (instanceId, recordId) is
 * already stored is counted once: it is skipped, whatever its content. Answer
 * {"received":n,"stored":k,"repeated":n-k}. A test-flag instance's usage is stored with
 * usage_records.test_flag set: never pushed, never billed. */
#ifndef KOOISV_INTAKE_H
#define KOOISV_INTAKE_H
#include <stdbool.h>

#include "svcrt.h"

#define INTAKE_RECORDS_MAX 1000
#define INTAKE_SKEW_S 60       /* tolerated clock difference with the application */
#define INTAKE_MAX_AGE_DAYS 21 /* the marketplace refuses older usage (spec §6) */

extern const pg_stmt_t intake_stmts[];
extern const size_t intake_stmts_count;

/* Serve usage.add; false when req is another action. */
bool intake_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);

#endif
