/* readers: a small pool of read-only PostgreSQL connections for queries and verification, so
 * that many worker threads (needed for group commit) do not each hold a connection. */
#ifndef KOOISV_AUDIT_READERS_H
#define KOOISV_AUDIT_READERS_H
#include <libpq-fe.h>
#include <stddef.h>
#include "pgutil.h"

typedef struct readers readers_t;

/* A pool of at most size connections to dsn (made on demand), each with every statement in
 * stmts prepared, the statement timeout set and custom plans forced (the queries' optional
 * filters fold away per call). stmts must outlive the pool. */
readers_t *readers_new(const char *dsn, int size, int statement_timeout_ms,
                       const pg_stmt_t *stmts, size_t nstmts);
/* Close every connection; set *self_p to NULL. */
void readers_destroy(readers_t **self_p);
/* A usable connection, waiting up to wait_ms for one to be free; NULL if none (logged by rid).
 * Give it back with readers_give. */
PGconn *readers_take(readers_t *self, int wait_ms, const char *rid);
/* Return conn to the pool (a broken one is closed and replaced on demand). */
void readers_give(readers_t *self, PGconn *conn);

#endif
