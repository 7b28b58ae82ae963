/* export: bill and detail exports of the billing service, for operators.
 *   export.request {kind, format, from, to, tenant?, instance?, product?}  -> the export, queued
 *   export.get {id}, export.list {limit?}                                  -> status documents
 *   export.chunk {id, seq}  -> the export's document, and chunk seq of its file in
 *                              AdminResult.data while it is ready and not expired
 * Files are made asynchronously (queued -> running -> ready | failed) by export threads in any
 * billing replica (exportrun), stored as chunks in PostgreSQL so that every replica serves every
 * file, and kept 3 days; the janitor then deletes them (status expired). Every time comparison
 * uses PostgreSQL's clock, the one clock all replicas share. */
#ifndef KOOISV_BILLING_EXPORT_H
#define KOOISV_BILLING_EXPORT_H
#include <stdbool.h>
#include <stddef.h>

#include "pgutil.h"
#include "svcrt.h"

// clang-format off
#define EXPORT_CONFIG_VARS                                                                       \
    {"KOOISV_EXPORT_THREADS", "1", 0,                                                            \
     "threads per replica that make bill and detail exports (0..8; 0 = this replica makes none)"}, \
    {"KOOISV_EXPORT_POLL_MS", "1000", 0,                                                         \
     "how often idle export threads look for queued exports and expired files (a request also "  \
     "wakes them through NOTIFY)"}
// clang-format on

#define EXPORT_KEEP_DAYS 3 /* a ready file is downloadable this long (spec §7) */
#define EXPORT_RANGE_MAX_DAYS 366
#define EXPORT_MAX_ATTEMPTS 3 /* generations interrupted (replica died) before failed */

/* The admin actions' statements, prepared on every worker session. */
extern const pg_stmt_t export_stmts[];
extern const size_t export_stmts_count;

/* Serve req when it is one of the export.* actions (answering call); false otherwise. */
bool export_admin(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);

/* ---- exportrun: generation and janitor threads ---- */

typedef struct {
    const char *dsn;        /* KOOISV_PG_DSN */
    const char *replica_id; /* "host:pid": names this replica's claims */
    int threads;            /* KOOISV_EXPORT_THREADS */
    int poll_ms;            /* KOOISV_EXPORT_POLL_MS */
} export_config_t;

/* Read EXPORT_CONFIG_VARS (listed in the service's table) into *cfg; exits 2 on a bad value. */
void export_config_load(export_config_t *cfg, const char *dsn);
/* Start cfg->threads export threads (cfg must outlive them); 0 or -1 (logged). */
int export_start(const export_config_t *cfg);
/* Stop the export threads and wait for them to end. */
void export_join(void);

#endif
