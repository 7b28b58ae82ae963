/* pushadmin: operators' side of the usage push (push.h), on the service's worker sessions:
 *   usage.failed   (args: limit 1..1000, default 100; state refused|dead|"" = both)
 *                  the dead letter: refused and dead push records, oldest first, with the
 *                  marketplace's last code and message;
 *   usage.redrive  (args: id = one record or "all"; state refused|dead) puts refused/dead
 *                  records back to pending, due now, attempts reset; metering_sn and interval
 *                  stay (a pending or accepted record is refused: nothing to redrive);
 *   billing.status (args: from, to: operator times, default the last 48 hours of billing's
 *                  clock) per hour (or UTC day) and overall: usage rows received, excluded,
 *                  unsealed, pushed, accepted, refused, dead, waiting, quantities, the age of
 *                  the oldest usage not yet accepted, and the Prometheus series of the metrics
 *                  hook. Counts are of usage rows as the application reported them;
 *                  overall: of the usage whose bucket began within PUSHADMIN_HORIZON of
 *                  billing's clock (older usage can no longer be pushed), and of the push
 *                  records pending, refused or dead whatever their age. */
#ifndef KOOISV_PUSHADMIN_H
#define KOOISV_PUSHADMIN_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "svcrt.h"

/* How far back "overall" counts usage rows (and accepted records): the marketplace refuses
 * begin times older than 21 days, so nothing older is still to be pushed. */
#define PUSHADMIN_HORIZON "22 days"

/* The statements of the actions, prepared on every worker session (a group of main.c). */
extern const pg_stmt_t pushadmin_stmts[];
extern const size_t pushadmin_stmts_count;
/* Serve one of the actions above; false when req is none of them. */
bool pushadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);
/* The metrics hook (svcrt_def_t.metrics): append billing's usage series to series; -1 when the
 * database could not be read. */
int pushadmin_metrics(svcrt_worker_t *w, json_t *series);

#endif
