/* pgworker: one background thread on its own PostgreSQL session, the loop that the services'
 * background work shares (order jobs, billing exports, usage push, ledger consumer, outbox
 * delivery): make the session ready (reconnecting with backoff when the database is away),
 * LISTEN on a channel, run one step, and when the step found nothing to do wait for a NOTIFY, a
 * poke, the poll interval or a stop.
 * The worker owns its session; a step only borrows it. */
#ifndef KOOISV_PGWORKER_H
#define KOOISV_PGWORKER_H
#include <stdbool.h>

#include "pgutil.h"

typedef struct pgworker pgworker_t;

/* One unit of work on db (ready, and listening when a channel is set). Returns true when more
 * work may be waiting (the next step follows at once), false to wait for a NOTIFY, the poll
 * interval or a stop. A long step checks pgworker_stopping(worker) between its parts. */
typedef bool (*pgworker_step_t)(pgworker_t *worker, pg_session_t *db, void *arg);

typedef struct {
    const char *name;            /* in log lines, e.g. "job thread 0"; copied */
    pg_session_config_t session; /* copied; session.stmts must outlive the worker; wait_s is how
                                  * long each connection attempt waits */
    bool connect_first;          /* pgworker_new connects (NULL when it cannot); else the thread
                                  * connects on its first turn */
    const char *channel;         /* LISTEN channel (an identifier), NULL for none; copied */
    int poll_ms;                 /* longest wait between steps with nothing to do */
    long retry_max_ms;           /* reconnection delays grow from poll_ms to this (or poll_ms) */
    pgworker_step_t step;
    void *arg; /* handed to step; must outlive the worker */
} pgworker_config_t;

/* A worker for cfg, not started; NULL (logged) when connect_first and the database cannot be
 * reached within cfg->session.wait_s. Caller owns it (pgworker_destroy). */
pgworker_t *pgworker_new(const pgworker_config_t *cfg);
/* Start the thread; 0, or -1 (logged) when it cannot be started. */
int pgworker_start(pgworker_t *self);
/* Ask the thread to stop after its current step, without waiting for it (stopping many workers
 * at once before destroying each). */
void pgworker_stop(pgworker_t *self);
/* Wake the thread if it waits for work (it then runs its step at once), or make its next wait
 * end at once if it is busy; a poke is never lost, several may count as one. Any thread. */
void pgworker_poke(pgworker_t *self);
/* From a step: make the wait that follows it end after ms at the latest (a retry of its own
 * falling due before the poll interval). */
void pgworker_wait_at_most(pgworker_t *self, long ms);
/* From a step: whether a NOTIFY on the worker's channel came since the last call (it woke the
 * worker, or was read with a step's results); clears it. */
bool pgworker_take_notified(pgworker_t *self);
/* True once pgworker_stop was called or a stop signal arrived (svc_stopping). */
bool pgworker_stopping(pgworker_t *self);
/* Stop the thread and wait for it, close the session, free, set *self_p to NULL. */
void pgworker_destroy(pgworker_t **self_p);

/* ---- a set of like workers (job threads, export threads) ---- */

typedef struct pgworker_set pgworker_set_t;

/* Make and start n workers as cfg says: worker i is named "<cfg->name> <i>" and handed
 * (char *)cfg->arg + i * arg_size (an array of per-worker states that must outlive the set).
 * NULL (logged) unless all n started; those that did are stopped again. Caller owns the set. */
pgworker_set_t *pgworker_set_new(int n, const pgworker_config_t *cfg, size_t arg_size);
/* Wake one worker of the set for new work: an idle one if any (its last step found nothing),
 * else the next in turn, whose next wait then ends at once. Any thread. */
void pgworker_set_wake(pgworker_set_t *self);
/* Ask every worker to stop at once, then wait for and destroy each; free, set *self_p to NULL. */
void pgworker_set_destroy(pgworker_set_t **self_p);

#endif
