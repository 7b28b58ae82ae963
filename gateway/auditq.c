#include "auditq.h"
#include "resultcode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "timeutil.h"
#include "transport.h"
#include "xmalloc.h"

#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000
#define QUEUE_MAX 100000 /* per thread; beyond it the oldest record is given up (and logged) */
/* Outcomes delivered within BATCH_WAIT_MS of each other go in one AuditOutcomeBatch (at most
 * BATCH_MAX): one message and one answer for many. An audit service that does not know batches
 * (an older version, during an upgrade) gets them one by one for SINGLES_MS. */
#define BATCH_MAX 128
#define BATCH_WAIT_MS 2
#define SINGLES_MS 60000

typedef struct item {
    struct item *next;
    auditq_t *queue;
    char *rid;
    const char *what; /* "intent" | "outcome" */
    uint8_t *buf;     /* packed envelope */
    size_t len;
    int attempts;
} item_t;

struct auditq {
    struct event_base *base;
    dispatch_t *dispatch;
    int timeout_ms;
    item_t *head, *tail;
    size_t queued;
    size_t direct; /* direct attempts outstanding */
    bool head_busy;
    struct event *retry;
    int backoff_ms;
    item_t *batch_head, *batch_tail; /* outcomes waiting for the next batch */
    size_t batch_n;
    struct event *flush;
    int64_t singles_until_ms; /* outcomes go alone until then */
};

/* A batch of outcomes sent, waiting for its answer. */
typedef struct {
    auditq_t *queue;
    item_t *items;
    size_t n;
} batch_t;

static void pump(auditq_t *self);

static const char *record_kind(const Kooisv__Envelope *env)
{
    return env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_INTENT ? "intent" : "outcome";
}

static item_t *item_new(auditq_t *self, const Kooisv__Envelope *env)
{
    item_t *it = xcalloc(1, sizeof *it);
    it->queue = self;
    it->rid = xstrdup(env->request_id);
    it->what = record_kind(env);
    it->len = transport_pack_envelope(env, &it->buf);
    return it;
}

static void item_free(item_t *it)
{
    free(it->rid);
    free(it->buf);
    free(it);
}

/* Stored, or refused as malformed (retrying could never succeed). */
static bool reply_final(const Kooisv__Reply *reply, bool *stored)
{
    *stored = reply && strcmp(reply->result_code, RC_OK) == 0;
    return *stored || (reply && strcmp(reply->result_code, RC_INVALID) == 0);
}

static int item_send(item_t *it, dispatch_done_fn done)
{
    auditq_t *self = it->queue;
    if (!self->dispatch)
        return -1;
    Kooisv__Envelope *env = kooisv__envelope__unpack(NULL, it->len, it->buf);
    if (!env)
        return -1;
    it->attempts++;
    int rc = dispatch_call(self->dispatch, SVC_AUDIT, env, self->timeout_ms, done, it);
    kooisv__envelope__free_unpacked(env, NULL);
    return rc;
}

/* Put it at the tail of the list [*head, *tail]. */
static void list_append(item_t **head, item_t **tail, item_t *it)
{
    it->next = NULL;
    if (*tail)
        (*tail)->next = it;
    else
        *head = it;
    *tail = it;
}

static void queue_append(auditq_t *self, item_t *it)
{
    if (self->queued >= QUEUE_MAX && self->head && self->head != self->tail && !self->head_busy) {
        item_t *old = self->head;
        self->head = old->next;
        self->queued--;
        metrics_audit_queue_add(-1);
        metrics_audit_lost(1);
        log_error(old->rid, "audit %s lost: retry queue full (%d records)", old->what, QUEUE_MAX);
        item_free(old);
    }
    list_append(&self->head, &self->tail, it);
    self->queued++;
    metrics_audit_queue_add(1);
}

static void queue_pop(auditq_t *self)
{
    item_t *it = self->head;
    self->head = it->next;
    if (!self->head)
        self->tail = NULL;
    self->queued--;
    metrics_audit_queue_add(-1);
    item_free(it);
}

static void on_head_done(Kooisv__Reply *reply, void *arg)
{
    item_t *it = arg;
    auditq_t *self = it->queue;
    bool stored;
    bool final = reply_final(reply, &stored);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    self->head_busy = false;
    if (final) {
        if (stored)
            log_info(it->rid, "audit %s stored after %d attempts", it->what, it->attempts);
        else {
            log_error(it->rid, "audit %s refused by the audit service: given up", it->what);
            metrics_audit_lost(1);
        }
        queue_pop(self);
        self->backoff_ms = 0;
        pump(self);
        return;
    }
    if (!self->dispatch)
        return;
    self->backoff_ms = self->backoff_ms ? self->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (self->backoff_ms > BACKOFF_MAX_MS)
        self->backoff_ms = BACKOFF_MAX_MS;
    struct timeval tv = {self->backoff_ms / 1000, (self->backoff_ms % 1000) * 1000};
    evtimer_add(self->retry, &tv);
}

static void pump(auditq_t *self)
{
    if (!self->head || self->head_busy || !self->dispatch || evtimer_pending(self->retry, NULL))
        return;
    self->head_busy = true;
    if (item_send(self->head, on_head_done) != 0)
        on_head_done(NULL, self->head);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

static void on_direct_done(Kooisv__Reply *reply, void *arg)
{
    item_t *it = arg;
    auditq_t *self = it->queue;
    self->direct--;
    bool stored;
    bool final = reply_final(reply, &stored);
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    if (final) {
        if (!stored) {
            log_error(it->rid, "audit %s refused by the audit service", it->what);
            metrics_audit_lost(1);
        }
        item_free(it);
        return;
    }
    log_warn(it->rid, "audit %s not stored (audit service %s): queued for retry", it->what,
             reply ? "refused it" : "unreachable");
    queue_append(self, it);
    pump(self);
}

/* ---------------------------------------------------------------- outcome batches */

/* Send item alone, as a direct attempt; into the retry queue when that cannot be sent. */
static void send_alone(auditq_t *self, item_t *it)
{
    if (self->dispatch && item_send(it, on_direct_done) == 0) {
        self->direct++;
        return;
    }
    queue_append(self, it);
}

static void on_batch_done(Kooisv__Reply *reply, void *arg)
{
    batch_t *b = arg;
    auditq_t *self = b->queue;
    self->direct -= b->n;
    bool per_item = reply && reply->result_case == KOOISV__REPLY__RESULT_AUDIT_OUTCOMES &&
                    reply->audit_outcomes && reply->audit_outcomes->n_result_codes == b->n;
    /* Refused whole without per-outcome answers: the service does not know batches. */
    bool unknown =
        !per_item && reply && reply->result_code && strcmp(reply->result_code, RC_INVALID) == 0;
    if (unknown) {
        log_warn(NULL,
                 "the audit service does not take outcome batches (%s): outcomes go one by one "
                 "for %d s",
                 reply->result_msg ? reply->result_msg : "", SINGLES_MS / 1000);
        self->singles_until_ms = (time_mono_us() / 1000) + SINGLES_MS;
    } else if (!per_item) {
        log_warn(b->items ? b->items->rid : NULL,
                 "audit outcome batch of %zu not stored (audit service %s): queued for retry", b->n,
                 reply ? "refused it" : "unreachable");
    }
    size_t i = 0;
    for (item_t *it = b->items, *next; it; it = next, i++) {
        next = it->next;
        const char *code = per_item ? reply->audit_outcomes->result_codes[i] : NULL;
        if (code && strcmp(code, RC_OK) == 0) {
            item_free(it);
        } else if (code && strcmp(code, RC_INVALID) == 0) {
            log_error(it->rid, "audit outcome refused by the audit service");
            metrics_audit_lost(1);
            item_free(it);
        } else if (unknown) {
            send_alone(self, it);
        } else {
            queue_append(self, it);
        }
    }
    if (reply)
        kooisv__reply__free_unpacked(reply, NULL);
    free(b);
    pump(self);
}

/* Send the outcomes waiting for a batch, as one AuditOutcomeBatch. */
static void batch_flush(auditq_t *self)
{
    if (!self->batch_n)
        return;
    batch_t *b = xcalloc(1, sizeof *b);
    b->queue = self;
    b->items = self->batch_head;
    b->n = self->batch_n;
    self->batch_head = self->batch_tail = NULL;
    self->batch_n = 0;
    evtimer_del(self->flush);
    /* Each record is kept packed alone (for a retry); the batch borrows the unpacked fields. */
    Kooisv__Envelope **singles = xcalloc(b->n, sizeof *singles);
    Kooisv__AuditOutcome *outs = xcalloc(b->n, sizeof *outs);
    Kooisv__AuditOutcome **ptrs = xcalloc(b->n, sizeof *ptrs);
    size_t n = 0;
    for (item_t *it = b->items; it; it = it->next, n++) {
        singles[n] = kooisv__envelope__unpack(NULL, it->len, it->buf);
        kooisv__audit_outcome__init(&outs[n]);
        ptrs[n] = &outs[n];
        const Kooisv__AuditOutcome *o = singles[n] ? singles[n]->audit_outcome : NULL;
        if (o) {
            outs[n].result_code = o->result_code;
            outs[n].result_msg = o->result_msg;
            outs[n].latency_us = o->latency_us;
            outs[n].http_status = o->http_status;
            outs[n].request_id = singles[n]->request_id;
        }
    }
    Kooisv__AuditOutcomeBatch batch = KOOISV__AUDIT_OUTCOME_BATCH__INIT;
    batch.outcomes = ptrs;
    batch.n_outcomes = n;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    char rid[160];
    snprintf(rid, sizeof rid, "outcomes:%s+%zu", b->items->rid, n);
    env.request_id = rid;
    env.received_ms = time_now_ms();
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOMES;
    env.audit_outcomes = &batch;
    self->direct += n;
    int rc = self->dispatch ? dispatch_call(self->dispatch, SVC_AUDIT, &env, self->timeout_ms,
                                            on_batch_done, b)
                            : -1;
    for (size_t i = 0; i < n; i++)
        if (singles[i])
            kooisv__envelope__free_unpacked(singles[i], NULL);
    free(singles);
    free(outs);
    free(ptrs);
    if (rc != 0)
        on_batch_done(NULL, b);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    batch_flush(arg);
}

/* ---------------------------------------------------------------- the queue */

auditq_t *auditq_new(struct event_base *base, dispatch_t *dispatch, int timeout_ms)
{
    auditq_t *self = xcalloc(1, sizeof *self);
    self->base = base;
    self->dispatch = dispatch;
    self->timeout_ms = timeout_ms;
    self->retry = evtimer_new(base, on_retry, self);
    self->flush = evtimer_new(base, on_flush, self);
    return self;
}

void auditq_detach(auditq_t *self)
{
    self->dispatch = NULL;
    evtimer_del(self->retry);
    evtimer_del(self->flush);
    /* Outcomes waiting for a batch stay in memory with the rest (lost at destroy, logged). */
    while (self->batch_head) {
        item_t *it = self->batch_head;
        self->batch_head = it->next;
        queue_append(self, it);
    }
    self->batch_tail = NULL;
    self->batch_n = 0;
}

void auditq_destroy(auditq_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    auditq_t *self = *self_p;
    long lost = 0;
    while (self->head) {
        log_error(self->head->rid, "audit %s lost at shutdown (audit service unreachable)",
                  self->head->what);
        queue_pop(self);
        lost++;
    }
    while (self->batch_head) {
        item_t *it = self->batch_head;
        self->batch_head = it->next;
        log_error(it->rid, "audit outcome lost at shutdown (never sent)");
        item_free(it);
        lost++;
    }
    if (lost)
        metrics_audit_lost(lost);
    if (self->direct)
        log_error(NULL, "%zu audit records still in flight at shutdown", self->direct);
    event_free(self->retry);
    event_free(self->flush);
    free(self);
    *self_p = NULL;
}

void auditq_deliver(auditq_t *self, const Kooisv__Envelope *env)
{
    item_t *it = item_new(self, env);
    if (self->dispatch && env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME &&
        (time_mono_us() / 1000) >= self->singles_until_ms) {
        list_append(&self->batch_head, &self->batch_tail, it);
        if (++self->batch_n >= BATCH_MAX) {
            batch_flush(self);
        } else if (!evtimer_pending(self->flush, NULL)) {
            struct timeval tv = {0, BATCH_WAIT_MS * 1000};
            evtimer_add(self->flush, &tv);
        }
        return;
    }
    if (self->dispatch && item_send(it, on_direct_done) == 0) {
        self->direct++;
        return;
    }
    log_warn(it->rid, "audit %s not sent (audit service not configured or stopping): queued",
             it->what);
    queue_append(self, it);
    pump(self);
}

void auditq_enqueue(auditq_t *self, const Kooisv__Envelope *env)
{
    item_t *it = item_new(self, env);
    log_warn(it->rid, "audit %s queued for retry", it->what);
    queue_append(self, it);
    pump(self);
}

size_t auditq_pending(const auditq_t *self)
{
    return self->queued + self->direct + self->batch_n;
}
