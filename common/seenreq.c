#include "seenreq.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

typedef struct {
    uint64_t key; /* 0 = free */
    int64_t taken_ms;
    bool answered;
    uint8_t *reply; /* NULL when not kept */
    size_t len;
} slot_t;

struct seenreq {
    pthread_mutex_t lock;
    slot_t *slots;
    size_t n;
    int64_t window;
    size_t max_reply;
};

seenreq_t *seenreq_new(size_t slots, int64_t window_ms, size_t max_reply)
{
    seenreq_t *self = xcalloc(1, sizeof *self);
    pthread_mutex_init(&self->lock, NULL);
    self->n = slots ? slots : 1;
    self->slots = xcalloc(self->n, sizeof *self->slots);
    self->window = window_ms;
    self->max_reply = max_reply;
    return self;
}

void seenreq_destroy(seenreq_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    seenreq_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++)
        free(self->slots[i].reply);
    free(self->slots);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

/* 64-bit FNV-1a of the id and the case; never 0 (0 marks a free slot). */
static uint64_t key_of(const char *rid, uint32_t body_case)
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)rid; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    h = (h ^ body_case) * 1099511628211ull;
    return h ? h : 1;
}

seenreq_state_t seenreq_take(seenreq_t *self, const char *rid, uint32_t body_case, int64_t now_ms,
                             uint8_t **reply, size_t *len)
{
    assert(self && rid);
    uint64_t key = key_of(rid, body_case);
    seenreq_state_t state = SEENREQ_NEW;
    pthread_mutex_lock(&self->lock);
    slot_t *s = &self->slots[key % self->n];
    bool fresh = s->key == key && now_ms - s->taken_ms < self->window;
    if (fresh && s->answered && s->reply) {
        state = SEENREQ_ANSWERED;
        *reply = xmalloc(s->len ? s->len : 1);
        memcpy(*reply, s->reply, s->len);
        *len = s->len;
    } else if (!fresh || s->answered) {
        /* A different request in the slot (or an old one) is forgotten: the table is a cache. */
        free(s->reply);
        *s = (slot_t){.key = key, .taken_ms = now_ms};
    }
    pthread_mutex_unlock(&self->lock);
    return state;
}

void seenreq_answer(seenreq_t *self, const char *rid, uint32_t body_case, const uint8_t *reply,
                    size_t len)
{
    assert(self && rid);
    uint64_t key = key_of(rid, body_case);
    pthread_mutex_lock(&self->lock);
    slot_t *s = &self->slots[key % self->n];
    if (s->key == key && !s->answered) {
        s->answered = true;
        if (len <= self->max_reply) {
            s->reply = xmalloc(len ? len : 1);
            memcpy(s->reply, reply, len);
            s->len = len;
        }
    }
    pthread_mutex_unlock(&self->lock);
}
