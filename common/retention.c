/* retention: see retention.h. */
#include "retention.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "pgworker.h"
#include "xmalloc.h"

/* One rule's walk: where it stands, and what it deleted since the walk began. */
typedef struct {
    char position[24]; /* a key as decimal text; "0" at the start of a walk */
    long long deleted;
    bool over; /* the walk reached rows too young to go (or the end) */
} walk_t;

struct retention {
    retention_config_t cfg;
    char days[12];
    walk_t *walks;
    pgworker_t *worker;
};

/* One slice of rule i: its rows deleted counted, its walk moved on or over (a failed statement,
 * logged, ends the walk: it starts again at the next poll). */
static void slice(retention_t *self, pg_session_t *db, size_t i)
{
    walk_t *w = &self->walks[i];
    const char *p[] = {w->position, self->days};
    PGresult *r = pg_session_exec(db, NULL, self->cfg.rules[i].name, 2, p, NULL);
    if (!r || PQntuples(r) != 1) {
        if (r)
            PQclear(r);
        w->over = true;
        return;
    }
    w->deleted += strtoll(pg_value(r, 0, 0), NULL, 10);
    if (PQgetisnull(r, 0, 1))
        w->over = true;
    else
        snprintf(w->position, sizeof w->position, "%s", pg_value(r, 0, 1));
    PQclear(r);
}

/* pgworker_step_t: a slice of every rule whose walk goes on. When every walk is over, each is
 * logged (when it deleted something) and begins again at the next poll; while one goes on,
 * the next slice follows after RETENTION_PAUSE_MS. */
static bool retention_step(pgworker_t *worker, pg_session_t *db, void *arg)
{
    retention_t *self = arg;
    bool going = false;
    for (size_t i = 0; i < self->cfg.nrules && !pgworker_stopping(worker); i++) {
        walk_t *w = &self->walks[i];
        if (w->over)
            continue;
        slice(self, db, i);
        going |= !w->over;
    }
    if (going) {
        pgworker_wait_at_most(worker, RETENTION_PAUSE_MS);
        return false;
    }
    for (size_t i = 0; i < self->cfg.nrules; i++) {
        walk_t *w = &self->walks[i];
        if (w->deleted > 0)
            log_info(NULL, "retention: %s: %s deleted %lld rows finished over %s days ago",
                     self->cfg.name, self->cfg.rules[i].name, w->deleted, self->days);
        *w = (walk_t){.position = "0"};
    }
    return false;
}

retention_t *retention_start(const retention_config_t *cfg)
{
    if (!cfg->nrules || cfg->days < 1 || cfg->days > RETENTION_DAYS_MAX) {
        log_error(NULL, "retention: %s: no rule, or days outside 1..%d", cfg->name,
                  RETENTION_DAYS_MAX);
        return NULL;
    }
    retention_t *self = xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    self->cfg.name = xstrdup(cfg->name);
    self->cfg.dsn = xstrdup(cfg->dsn);
    self->cfg.setup_sql = cfg->setup_sql ? xstrdup(cfg->setup_sql) : NULL;
    if (self->cfg.poll_ms < 1)
        self->cfg.poll_ms = RETENTION_POLL_MS;
    snprintf(self->days, sizeof self->days, "%d", cfg->days);
    self->walks = xcalloc(cfg->nrules, sizeof *self->walks);
    for (size_t i = 0; i < cfg->nrules; i++)
        snprintf(self->walks[i].position, sizeof self->walks[i].position, "0");
    char app[64];
    snprintf(app, sizeof app, "kooisv-%s-retention", cfg->name);
    pgworker_config_t wc = {
        .name = "retention",
        .session = {.dsn = self->cfg.dsn,
                    .app = app,
                    .setup_sql = self->cfg.setup_sql,
                    .stmts = cfg->rules,
                    .nstmts = cfg->nrules,
                    .wait_s = 5},
        .poll_ms = self->cfg.poll_ms,
        .retry_max_ms = 60000,
        .step = retention_step,
        .arg = self,
    };
    self->worker = pgworker_new(&wc);
    if (!self->worker || pgworker_start(self->worker) != 0) {
        retention_destroy(&self);
        return NULL;
    }
    log_info(NULL, "retention: %s: finished rows go after %d days", cfg->name, cfg->days);
    return self;
}

void retention_destroy(retention_t **self_p)
{
    retention_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    pgworker_destroy(&self->worker);
    free((char *)self->cfg.name);
    free((char *)self->cfg.dsn);
    free((char *)self->cfg.setup_sql);
    free(self->walks);
    free(self);
    *self_p = NULL;
}
