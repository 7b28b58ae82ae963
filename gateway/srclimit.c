#include "srclimit.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#define SLOTS 4096  /* sources tracked at once */
#define PROBE 16    /* slots looked at for one source */
#define PENDING 256 /* summaries of evicted sources waiting to be handed out */

typedef struct {
    char source[64]; /* "" = free */
    double tokens;
    int64_t refill_ms; /* when tokens were last brought up to date */
    int64_t seen_ms;
    int64_t window_ms; /* start of the record window */
    int recorded;
    long unrecorded;
} slot_t;

struct srclimit {
    pthread_mutex_t lock;
    double rate;
    int burst;
    int records;
    int64_t window;
    slot_t *slots;
    srclimit_summary_t pending[PENDING];
    size_t n_pending;
};

srclimit_t *srclimit_new(double rate, int burst, int records, int64_t window_ms)
{
    srclimit_t *self = xcalloc(1, sizeof *self);
    pthread_mutex_init(&self->lock, NULL);
    self->rate = rate;
    self->burst = burst > 0 ? burst : 1;
    self->records = records;
    self->window = window_ms > 0 ? window_ms : 60000;
    self->slots = xcalloc(SLOTS, sizeof *self->slots);
    return self;
}

void srclimit_destroy(srclimit_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    srclimit_t *self = *self_p;
    pthread_mutex_destroy(&self->lock);
    free(self->slots);
    free(self);
    *self_p = NULL;
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* A slot's ended window, if it has an unrecorded count, becomes a summary. */
static void close_window(srclimit_t *self, slot_t *s)
{
    if (s->unrecorded > 0 && self->n_pending < PENDING) {
        srclimit_summary_t *p = &self->pending[self->n_pending++];
        snprintf(p->source, sizeof p->source, "%s", s->source);
        p->count = s->unrecorded;
        p->from_ms = s->window_ms;
        p->to_ms = s->window_ms + self->window;
    }
    s->unrecorded = 0;
    s->recorded = 0;
}

/* The slot of source, created (evicting the least recently seen of its probe run) if needed.
 * Brings its tokens and window up to now. Called with the lock held. */
static slot_t *slot_of(srclimit_t *self, const char *source, int64_t now_ms)
{
    uint32_t h = hash(source);
    slot_t *found = NULL, *victim = NULL;
    /* Slots are never emptied, only taken over, so a source is in the first PROBE slots from
     * its hash or nowhere; a free slot is preferred, else the least recently seen. */
    for (int i = 0; i < PROBE && !found; i++) {
        slot_t *s = &self->slots[(h + (uint32_t)i) % SLOTS];
        if (*s->source && strcmp(s->source, source) == 0)
            found = s;
        else if (!victim || (*victim->source && (!*s->source || s->seen_ms < victim->seen_ms)))
            victim = s;
    }
    if (!found) {
        found = victim;
        if (*found->source)
            close_window(self, found);
        memset(found, 0, sizeof *found);
        snprintf(found->source, sizeof found->source, "%s", source);
        found->tokens = self->burst;
        found->refill_ms = now_ms;
        found->window_ms = now_ms;
    }
    found->seen_ms = now_ms;
    if (now_ms > found->refill_ms) {
        found->tokens += self->rate * (double)(now_ms - found->refill_ms) / 1000.0;
        if (found->tokens > self->burst)
            found->tokens = self->burst;
        found->refill_ms = now_ms;
    }
    if (now_ms >= found->window_ms + self->window) {
        close_window(self, found);
        found->window_ms = now_ms;
    }
    return found;
}

bool srclimit_throttled(srclimit_t *self, const char *source, int64_t now_ms)
{
    assert(self);
    if (self->rate <= 0)
        return false;
    pthread_mutex_lock(&self->lock);
    bool empty = slot_of(self, source, now_ms)->tokens < 1.0;
    pthread_mutex_unlock(&self->lock);
    return empty;
}

void srclimit_failed(srclimit_t *self, const char *source, int64_t now_ms)
{
    assert(self);
    if (self->rate <= 0)
        return;
    pthread_mutex_lock(&self->lock);
    slot_t *s = slot_of(self, source, now_ms);
    s->tokens = s->tokens >= 1.0 ? s->tokens - 1.0 : 0.0;
    pthread_mutex_unlock(&self->lock);
}

bool srclimit_record(srclimit_t *self, const char *source, int64_t now_ms)
{
    assert(self);
    if (self->records <= 0)
        return true;
    pthread_mutex_lock(&self->lock);
    slot_t *s = slot_of(self, source, now_ms);
    bool record = s->recorded < self->records;
    if (record)
        s->recorded++;
    else
        s->unrecorded++;
    pthread_mutex_unlock(&self->lock);
    return record;
}

size_t srclimit_summaries(srclimit_t *self, int64_t now_ms, srclimit_summary_t *out, size_t max)
{
    assert(self);
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < SLOTS && self->n_pending < PENDING; i++) {
        slot_t *s = &self->slots[i];
        if (*s->source && s->unrecorded > 0 && now_ms >= s->window_ms + self->window) {
            close_window(self, s);
            s->window_ms = now_ms;
        }
    }
    size_t n = self->n_pending < max ? self->n_pending : max;
    memcpy(out, self->pending, n * sizeof *out);
    memmove(self->pending, self->pending + n, (self->n_pending - n) * sizeof *out);
    self->n_pending -= n;
    pthread_mutex_unlock(&self->lock);
    return n;
}
