/* adminexport: the download of a billing export's file (operator):
 *   GET /v1/billing/exports/<id>/download   the file, streamed chunk by chunk
 * The billing service keeps the file as chunks in PostgreSQL (any replica serves any chunk);
 * the answer asks for one chunk (AdminRequest export.chunk), sends it, and asks for the next
 * only once it has left, so a download holds one chunk in memory whatever the file's size.
 * Refused before the first byte: unknown export 404, not ready (queued, running) or failed 409,
 * expired (older than 3 days) 410. A file that expires or disappears in the middle ends the
 * answer abruptly (a truncated download, never a complete-looking one). The file's SHA-256 is
 * in X-Content-SHA256. Requesting, listing and reading exports are plain service routes
 * (adminsvc). */
#ifndef KOOISV_ADMINEXPORT_H
#define KOOISV_ADMINEXPORT_H
#include <stddef.h>
#include "adminroute.h"

/* The export routes (*n of them), static. */
const adminroute_t *adminexport_routes(size_t *n);

#endif
