/* pgworker: see pgworker.h. A stop or a poke is seen at once through a pipe the wait polls along
 * with the session's socket; a stop signal (svc_stopping, a flag) within SLICE_MS. */
#include "pgworker.h"

#include <assert.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "randutil.h"
#include "svc.h"
#include "xmalloc.h"

#define SLICE_MS 200

struct pgworker {
    char name[64];
    pg_session_config_t session; /* its strings owned */
    char *channel;
    int poll_ms;
    long retry_max_ms;
    pgworker_step_t step;
    void *arg;
    pg_session_t *db; /* NULL until the first connection */
    int listen_pid;   /* backend that holds our LISTEN; LISTEN again after a reconnection */
    int wake[2];      /* written by pgworker_stop and pgworker_poke */
    atomic_bool stop;
    atomic_bool idle;  /* its last step found nothing: it waits (pgworker_set_wake) */
    bool notified;     /* a NOTIFY on its channel came since pgworker_take_notified */
    long next_wait_ms; /* pgworker_wait_at_most's cap on the coming wait; 0 = poll_ms */
    pthread_t thread;
    bool running;
};

pgworker_t *pgworker_new(const pgworker_config_t *cfg)
{
    assert(cfg && cfg->step && cfg->session.dsn);
    pgworker_t *self = xcalloc(1, sizeof *self);
    snprintf(self->name, sizeof self->name, "%s", cfg->name ? cfg->name : "worker");
    self->session = cfg->session;
    self->session.dsn = xstrdup(cfg->session.dsn);
    self->session.app = cfg->session.app ? xstrdup(cfg->session.app) : NULL;
    self->session.setup_sql = cfg->session.setup_sql ? xstrdup(cfg->session.setup_sql) : NULL;
    self->channel = cfg->channel ? xstrdup(cfg->channel) : NULL;
    self->poll_ms = cfg->poll_ms > 0 ? cfg->poll_ms : 1;
    self->retry_max_ms = cfg->retry_max_ms > self->poll_ms ? cfg->retry_max_ms : self->poll_ms;
    self->step = cfg->step;
    self->arg = cfg->arg;
    atomic_init(&self->stop, false);
    self->wake[0] = self->wake[1] = -1;
    if (pipe2(self->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        log_error(NULL, "%s: cannot make its stop pipe", self->name);
        pgworker_destroy(&self);
        return NULL;
    }
    if (cfg->connect_first) {
        self->db = pg_session_new(&self->session);
        if (!self->db) {
            log_error(NULL, "%s: no database session", self->name);
            pgworker_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void pgworker_stop(pgworker_t *self)
{
    assert(self);
    if (atomic_exchange(&self->stop, true))
        return;
    ssize_t n = write(self->wake[1], "s", 1);
    (void)n; /* a full pipe already wakes the thread */
}

bool pgworker_stopping(pgworker_t *self)
{
    return atomic_load(&self->stop) || svc_stopping();
}

void pgworker_wait_at_most(pgworker_t *self, long ms)
{
    long v = ms > 0 ? ms : 1;
    if (self->next_wait_ms == 0 || v < self->next_wait_ms)
        self->next_wait_ms = v;
}

void pgworker_poke(pgworker_t *self)
{
    assert(self);
    ssize_t n = write(self->wake[1], "p", 1);
    (void)n; /* a full pipe already wakes the thread */
}

/* Drop the notifications queued on conn; true (and noted in self->notified) when there were. */
static bool take_notifies(pgworker_t *self, PGconn *conn)
{
    bool any = false;
    PGnotify *n;
    while ((n = PQnotifies(conn)) != NULL) {
        any = true;
        PQfreemem(n);
    }
    if (any)
        self->notified = true;
    return any;
}

bool pgworker_take_notified(pgworker_t *self)
{
    bool was = self->notified;
    self->notified = false;
    return was;
}

/* Wait up to ms for a stop or, when wake_on_db, for a poke, a NOTIFY or the session's connection
 * to break. */
static void pgworker_wait(pgworker_t *self, long ms, bool wake_on_db)
{
    /* a NOTIFY read with a step's own results is already queued: no wait for it */
    if (wake_on_db && self->db && take_notifies(self, pg_session_conn(self->db)))
        return;
    for (long left = ms; left > 0 && !pgworker_stopping(self); left -= SLICE_MS) {
        PGconn *conn = wake_on_db && self->db ? pg_session_conn(self->db) : NULL;
        struct pollfd pfd[2] = {{.fd = self->wake[0], .events = POLLIN},
                                {.fd = conn ? PQsocket(conn) : -1, .events = POLLIN}};
        if (poll(pfd, 2, left > SLICE_MS ? SLICE_MS : (int)left) <= 0)
            continue; /* the time */
        if (pfd[0].revents) {
            char drain[64];
            while (read(self->wake[0], drain, sizeof drain) > 0)
                ;
            if (wake_on_db) /* a poke; a stop is seen by the loop's test */
                return;
        }
        if (pfd[1].revents == 0)
            continue; /* a poke while the database is away: the backoff goes on */
        PQconsumeInput(conn);
        if (take_notifies(self, conn) || PQstatus(conn) != CONNECTION_OK)
            return;
    }
}

/* The session usable and listening; false when the database is away. */
static bool pgworker_ready(pgworker_t *self)
{
    if (!self->db) {
        self->db = pg_session_new(&self->session);
        if (!self->db)
            return false;
    } else if (!pg_session_ready(self->db, NULL)) {
        return false;
    }
    return !self->channel ||
           pg_listen_once(pg_session_conn(self->db), self->channel, &self->listen_pid);
}

static void *pgworker_main(void *arg)
{
    pgworker_t *self = arg;
    int failures = 0;
    while (!pgworker_stopping(self)) {
        if (!pgworker_ready(self)) {
            long delay = rand_backoff_ms(self->poll_ms, self->retry_max_ms, ++failures);
            log_warn(NULL, "%s: database unavailable; retrying in %ld ms", self->name, delay);
            pgworker_wait(self, delay, false);
            continue;
        }
        if (failures > 0)
            log_info(NULL, "%s: database available again", self->name);
        failures = 0;
        atomic_store(&self->idle, false);
        if (!self->step(self, self->db, self->arg)) {
            long ms = self->next_wait_ms > 0 && self->next_wait_ms < self->poll_ms
                          ? self->next_wait_ms
                          : self->poll_ms;
            self->next_wait_ms = 0;
            atomic_store(&self->idle, true); /* a poke from now on ends the wait */
            pgworker_wait(self, ms, true);
        }
    }
    return NULL;
}

int pgworker_start(pgworker_t *self)
{
    assert(self && !self->running);
    if (pthread_create(&self->thread, NULL, pgworker_main, self) != 0) {
        log_error(NULL, "%s: cannot start its thread", self->name);
        return -1;
    }
    self->running = true;
    return 0;
}

void pgworker_destroy(pgworker_t **self_p)
{
    pgworker_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->running) {
        pgworker_stop(self);
        pthread_join(self->thread, NULL);
    }
    pg_session_destroy(&self->db);
    for (int i = 0; i < 2; i++)
        if (self->wake[i] >= 0)
            close(self->wake[i]);
    free((char *)self->session.dsn);
    free((char *)self->session.app);
    free((char *)self->session.setup_sql);
    free(self->channel);
    free(self);
    *self_p = NULL;
}

struct pgworker_set {
    pgworker_t **workers;
    int n;
    atomic_uint next_wake; /* the worker poked when none is idle, in turn */
};

void pgworker_set_wake(pgworker_set_t *self)
{
    for (int i = 0; i < self->n; i++)
        if (atomic_exchange(&self->workers[i]->idle, false)) {
            pgworker_poke(self->workers[i]);
            return;
        }
    /* none idle (they are at work): the next wait of one of them ends at once */
    pgworker_poke(self->workers[atomic_fetch_add(&self->next_wake, 1) % (unsigned)self->n]);
}

pgworker_set_t *pgworker_set_new(int n, const pgworker_config_t *cfg, size_t arg_size)
{
    pgworker_set_t *self = xcalloc(1, sizeof *self);
    self->workers = xcalloc(n > 0 ? (size_t)n : 1, sizeof *self->workers);
    for (; self->n < n; self->n++) {
        char name[80];
        snprintf(name, sizeof name, "%s %d", cfg->name ? cfg->name : "worker", self->n);
        pgworker_config_t one = *cfg;
        one.name = name;
        one.arg = (char *)cfg->arg + (size_t)self->n * arg_size;
        pgworker_t *w = pgworker_new(&one);
        if (!w || pgworker_start(w) != 0) {
            pgworker_destroy(&w);
            pgworker_set_destroy(&self);
            return NULL;
        }
        self->workers[self->n] = w;
    }
    return self;
}

void pgworker_set_destroy(pgworker_set_t **self_p)
{
    pgworker_set_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    for (int i = 0; i < self->n; i++)
        pgworker_stop(self->workers[i]);
    for (int i = 0; i < self->n; i++)
        pgworker_destroy(&self->workers[i]);
    free(self->workers);
    free(self);
    *self_p = NULL;
}
