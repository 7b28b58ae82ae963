#include "readers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "timeutil.h"
#include "xmalloc.h"

struct readers {
    char *dsn;
    int size;
    int statement_timeout_ms;
    const pg_stmt_t *stmts;
    size_t nstmts;
    pthread_mutex_t mu;
    pthread_cond_t freed;
    PGconn **idle;  /* connections not in use */
    int nidle;
    int open;       /* connections that exist, idle or taken */
};

readers_t *readers_new(const char *dsn, int size, int statement_timeout_ms,
                       const pg_stmt_t *stmts, size_t nstmts)
{
    readers_t *self = xcalloc(1, sizeof *self);
    self->dsn = xstrdup(dsn);
    self->size = size > 0 ? size : 1;
    self->statement_timeout_ms = statement_timeout_ms > 0 ? statement_timeout_ms : 3000;
    self->stmts = stmts;
    self->nstmts = nstmts;
    self->idle = xcalloc((size_t)self->size, sizeof *self->idle);
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->freed, NULL);
    return self;
}

void readers_destroy(readers_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    readers_t *self = *self_p;
    for (int i = 0; i < self->nidle; i++)
        PQfinish(self->idle[i]);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->freed);
    free(self->idle);
    free(self->dsn);
    free(self);
    *self_p = NULL;
}

static PGconn *reader_open(readers_t *self)
{
    PGconn *c = pg_connect(self->dsn, "kooisv-audit-reader", 0);
    if (!c)
        return NULL;
    char sql[96];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d", self->statement_timeout_ms);
    if (!pg_command(c, sql) || !pg_command(c, "SET plan_cache_mode = force_custom_plan") ||
        pg_prepare_all(c, self->stmts, self->nstmts) != 0) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

PGconn *readers_take(readers_t *self, int wait_ms, const char *rid)
{
    int64_t until = time_mono_us() + (int64_t)wait_ms * 1000;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        if (self->nidle > 0) {
            PGconn *c = self->idle[--self->nidle];
            pthread_mutex_unlock(&self->mu);
            if (pg_conn_alive(c) && PQtransactionStatus(c) == PQTRANS_IDLE)
                return c;
            /* Broken while idle (database restarted): replace it. */
            PQfinish(c);
            pthread_mutex_lock(&self->mu);
            self->open--;
            continue;
        }
        if (self->open < self->size) {
            self->open++;
            pthread_mutex_unlock(&self->mu);
            PGconn *c = reader_open(self);
            if (c)
                return c;
            log_warn(rid, "audit: no database connection for reading");
            pthread_mutex_lock(&self->mu);
            self->open--;
            pthread_cond_signal(&self->freed);
            pthread_mutex_unlock(&self->mu);
            return NULL;
        }
        int64_t left = until - time_mono_us();
        if (left <= 0) {
            pthread_mutex_unlock(&self->mu);
            log_warn(rid, "audit: every reading connection is busy");
            return NULL;
        }
        struct timespec ts = time_realtime_after_us(left);
        pthread_cond_timedwait(&self->freed, &self->mu, &ts);
    }
}

void readers_give(readers_t *self, PGconn *conn)
{
    if (!conn)
        return;
    bool usable = PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
    pthread_mutex_lock(&self->mu);
    if (usable) {
        self->idle[self->nidle++] = conn;
    } else {
        PQfinish(conn);
        self->open--;
    }
    pthread_cond_signal(&self->freed);
    pthread_mutex_unlock(&self->mu);
}
