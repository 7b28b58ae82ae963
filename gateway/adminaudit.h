/* adminaudit: the audit views of the admin API (role auditor), served by the audit service:
 *   GET  /v1/audit?from&to&event&resource&caller&source&result&request_id&before&limit&format
 *                                                    newest first, json | csv
 *   GET  /v1/audit/follow?after&wait&limit&<filters> long poll, oldest change first
 *   GET  /v1/audit/export?from&to&format&<filters>   attachment, csv | json
 *   POST /v1/audit/verify?from_seq                   walk the hash chain (bounded per call; the
 *                                                    answer says where to continue)
 * CSV fields are quoted per RFC 4180 and neutralised against spreadsheet formulas. Each request
 * to the audit service gets its own request id ("<rid>/<n>"), so a late reply never matches a
 * later request. */
#ifndef KOOISV_ADMINAUDIT_H
#define KOOISV_ADMINAUDIT_H
#include <stddef.h>
#include "adminroute.h"

/* The audit routes (*n of them), static. */
const adminroute_t *adminaudit_routes(size_t *n);

#endif
