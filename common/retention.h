/* retention: the rows a service has finished with (events delivered, jobs done), deleted once
 * they are older than the retention period, so that its bookkeeping tables and their queue
 * indexes stop growing with its whole history. One background thread per process on its own
 * session walks each rule in slices of RETENTION_SLICE_SQL rows, in the order of the table's key;
 * a full slice is followed by the next after RETENTION_PAUSE_MS (live calls keep the database),
 * and a walk that reached rows too young to go starts again from the lowest key after the poll
 * interval. Replicas take turns: a slice that finds another replica's slice of the same table
 * running ends its walk (RETENTION_WALK_SQL).
 * A rule is a prepared statement taking $1, the walk's position (a key, exclusive; "0" to
 * start), and $2, the retention period in days, and answering one row: how many rows it
 * deleted, and the position to go on from (NULL: the walk is over). The statement decides
 * what is finished; it must check it on the deleted row itself (a DELETE's own WHERE), so that
 * a row changed since its slice was read is looked at again as it now is. */
#ifndef KOOISV_RETENTION_H
#define KOOISV_RETENTION_H
#include <stddef.h>

#include "pgutil.h"

#define RETENTION_PAUSE_MS 100
#define RETENTION_POLL_MS 60000
#define RETENTION_DAYS_MAX 3650

/* Rows a slice reads at most (SQL text, for the rules). */
#define RETENTION_SLICE_SQL "1000"
/* The SQL interval of the retention period ($2 of a rule). */
#define RETENTION_AGE_SQL "make_interval(days => $2::int)"
/* A keep_from of RETENTION_WALK_SQL that keeps nothing back. */
#define RETENTION_NO_FLOOR "9223372036854775807"

/* A rule that walks table by slices in the order of key (a bigint column that grows with
 * time, with an index): the walk ends at the first row whose started column (a timestamp set
 * when the row was made) is within the retention period, or whose key is at or above keep_from
 * (a scalar SQL expression read once: rows from it on are kept, whatever they say); before
 * that, the rows (alias t) for which the condition finished holds are deleted. also: more
 * data-modifying CTEs (", name AS (...)"), which may use d, the deleted keys (column k); ""
 * for none. A slice first tries a transaction advisory lock of the table (named with the
 * session's schema): while another replica's slice holds it, the slice reads nothing and the
 * walk is over, so replicas take turns instead of waiting on each other's rows. */
#define RETENTION_WALK_SQL(table, key, started, finished, keep_from, also)                         \
    "WITH l AS (SELECT pg_try_advisory_xact_lock(hashtext('kooisv-retention ' || current_schema()" \
    "  || ' " table "')) AS got),"                                                                 \
    " s AS (SELECT " key " AS k, " started " < now() - " RETENTION_AGE_SQL " AS old FROM " table   \
    "  WHERE " key " > $1::bigint AND (SELECT got FROM l) ORDER BY " key                           \
    "  LIMIT " RETENTION_SLICE_SQL "),"                                                            \
    " e AS (SELECT count(*) AS n, coalesce(min(k) FILTER (WHERE NOT old OR k >= " keep_from "),"   \
    "  " RETENTION_NO_FLOOR ") AS edge FROM s),"                                                   \
    " d AS (DELETE FROM " table " t USING s, e WHERE t." key                                       \
    " = s.k AND s.k < e.edge AND (" finished ") RETURNING t." key " AS k)" also                    \
    " SELECT (SELECT count(*) FROM d), CASE WHEN e.n = " RETENTION_SLICE_SQL                       \
    "  AND e.edge = " RETENTION_NO_FLOOR " THEN (SELECT max(k) FROM s) END FROM e"

typedef struct {
    const char *name;       /* for log lines, e.g. "order"; copied */
    const char *dsn;        /* the thread's own session; copied */
    const char *setup_sql;  /* its session settings; NULL = none; copied */
    const pg_stmt_t *rules; /* each takes ($1 position, $2 days); must outlive the worker */
    size_t nrules;
    int days;    /* the retention period, 1..RETENTION_DAYS_MAX */
    int poll_ms; /* between walks; 0 = RETENTION_POLL_MS */
} retention_config_t;

typedef struct retention retention_t;

/* Start the thread that applies cfg's rules; NULL (logged) when cfg is unusable (no rule, days
 * out of range) or the thread cannot start. It connects on its first turn and keeps trying
 * while the database is away. Caller owns it (retention_destroy). */
retention_t *retention_start(const retention_config_t *cfg);
/* Stop the thread (after its current slice), free, set *self_p to NULL. NULL is fine. */
void retention_destroy(retention_t **self_p);

#endif
