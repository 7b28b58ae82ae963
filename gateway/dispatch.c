#include "dispatch.h"
#include "resultcode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "endpoint.h"
#include "log.h"
#include "metrics.h"
#include "timeutil.h"
#include "transport.h"
#include "xmalloc.h"
#include "zmqauth.h"

#define PENDING_BUCKETS 512
#define RESOLVE_INTERVAL_S 5
/* A call with no connected replica waits this long for one (a service restarting, a link in
 * its reconnect back-off, which is at most LINK_RECONNECT_MAX_MS) before it fails; within the
 * marketplace's 5 s, a restart then costs a short wait instead of a 000005. */
#define LINK_WAIT_MS 500
#define LINK_RECONNECT_MAX_MS 250

/* One outstanding call, keyed by (service, request id). */
typedef struct pending {
    struct pending *next;
    struct link *link;
    char *rid;
    uint32_t answers; /* the envelope body case: the reply must name the same */
    uint8_t *buf;     /* packed envelope, kept for the one resend */
    size_t len;
    struct event *timer;
    int timeout_ms;
    bool resent;
    bool failed;  /* could not be sent at all: the timer reports NULL at once */
    bool waiting; /* no replica connected yet: on its link's waiting list */
    struct pending *wait_next;
    int64_t deadline_us; /* time_mono_us() when the call's whole time is up */
    Kooisv__Reply *fallback; /* a failure answer held while the other copy may still succeed */
    dispatch_done_fn done;
    void *arg;
} pending_t;

/* One replica address we connected to, whether its handshake completed, and whether a failed
 * one was logged since (once per outage, not once per reconnect). */
typedef struct {
    char *endpoint;
    bool up;
    bool refusal_logged;
} replica_t;

/* The DEALER for one service, its monitor, and the replicas it is connected to. */
typedef struct link {
    dispatch_t *dispatch;
    service_id_t svc;
    char *endpoints;
    void *sock;
    struct event *ev;
    void *monitor;
    struct event *monitor_ev;
    replica_t *replicas;
    int n_replicas;
    bool resolve_failed_logged;
    pending_t *waiting; /* calls waiting for a replica to connect, oldest first */
} link_t;

struct dispatch {
    struct event_base *base;
    link_t links[SVC__COUNT];
    pending_t *buckets[PENDING_BUCKETS];
    struct event *resolve_timer;
    bool closing;
};

/* ------------------------------------------------------------------ pending map */

static size_t pending_hash(service_id_t svc, const char *rid)
{
    uint32_t h = 2166136261u ^ (uint32_t)svc;
    for (const unsigned char *p = (const unsigned char *)rid; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % PENDING_BUCKETS;
}

static void pending_insert(dispatch_t *self, pending_t *p)
{
    size_t b = pending_hash(p->link->svc, p->rid);
    /* Append: with two calls under one id (audit intent then outcome) the older matches first. */
    pending_t **pp = &self->buckets[b];
    while (*pp)
        pp = &(*pp)->next;
    p->next = NULL;
    *pp = p;
}

static void pending_unlink(dispatch_t *self, pending_t *p)
{
    for (pending_t **pp = &self->buckets[pending_hash(p->link->svc, p->rid)]; *pp;
         pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            return;
        }
}

static pending_t *pending_find(dispatch_t *self, service_id_t svc, const char *rid,
                               uint32_t answers)
{
    for (pending_t *p = self->buckets[pending_hash(svc, rid)]; p; p = p->next)
        if (p->link->svc == svc && p->answers == answers && strcmp(p->rid, rid) == 0)
            return p;
    return NULL;
}

/* Take p off its link's waiting list, if it is on it. */
static void waiting_unlink(pending_t *p)
{
    if (!p->waiting)
        return;
    for (pending_t **pp = &p->link->waiting; *pp; pp = &(*pp)->wait_next)
        if (*pp == p) {
            *pp = p->wait_next;
            break;
        }
    p->waiting = false;
    p->wait_next = NULL;
}

/* Remove p, free it and run its callback (last, so the callback may start new calls). */
static void pending_finish(pending_t *p, Kooisv__Reply *reply)
{
    waiting_unlink(p);
    pending_unlink(p->link->dispatch, p);
    dispatch_done_fn done = p->done;
    void *arg = p->arg;
    event_free(p->timer);
    free(p->buf);
    free(p->rid);
    if (p->fallback && p->fallback != reply)
        kooisv__reply__free_unpacked(p->fallback, NULL);
    free(p);
    done(reply, arg);
}

/* Whether a call may be sent a second time (to another replica) when the first copy is slow:
 * reads, and writes keyed by the marketplace's own ids where a late first copy changes nothing
 * (the same order gets the same instance, the same event the same license, an audit record its
 * request id). Not state changes, whose late copy could land after a later change (a FREEZE
 * after the UNFREEZE that followed it), not kit syncs (same), and not the operators' audit
 * pages and actions (costly, or not idempotent). */
static bool resend_safe(uint32_t body_case)
{
    switch (body_case) {
    case KOOISV__ENVELOPE__BODY_PING:
    case KOOISV__ENVELOPE__BODY_QUERY_INSTANCE:
    case KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK:
    case KOOISV__ENVELOPE__BODY_NEW_INSTANCE:
    case KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC:
    case KOOISV__ENVELOPE__BODY_AUDIT_INTENT:
    case KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME:
    case KOOISV__ENVELOPE__BODY_AUDIT_OUTCOMES:
        return true;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------ sockets */

static int link_send(link_t *l, const uint8_t *buf, size_t len)
{
    if (zmq_send(l->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    if (zmq_send(l->sock, buf, len, ZMQ_DONTWAIT) < 0)
        return -1;
    return 0;
}

/* Look at the socket on the next loop turn: after a send (or any zmq call) the edge-triggered
 * ZMQ_FD may already have been consumed, so waiting for it could wait forever. */
static void link_poke(link_t *l)
{
    if (l->ev)
        event_active(l->ev, EV_READ, 1);
}

/* Start p's timer for a call just sent with ms of its time left: a call that may be resent is
 * looked at after half of it, others at the end. */
static void pending_arm(pending_t *p, int ms)
{
    p->timeout_ms = ms;
    int first = resend_safe(p->answers) ? ms / 2 : ms;
    struct timeval tv = {first / 1000, (first % 1000) * 1000};
    evtimer_add(p->timer, &tv);
}

/* A replica of l connected: send the calls waiting for one, oldest first, while it takes them
 * (one whose time is up is left to its timer). */
static void link_send_waiting(link_t *l)
{
    for (pending_t *p = l->waiting, *next; p; p = next) {
        next = p->wait_next;
        int left_ms = (int)((p->deadline_us - time_mono_us()) / 1000);
        if (left_ms <= 0)
            continue;
        if (link_send(l, p->buf, p->len) != 0)
            break;
        waiting_unlink(p);
        evtimer_del(p->timer);
        log_debug(p->rid, "sent to %s once a replica connected", services_name(l->svc));
        pending_arm(p, left_ms);
    }
    link_poke(l);
}

static void handle_reply(link_t *l, const uint8_t *data, size_t len)
{
    Kooisv__Reply *reply = kooisv__reply__unpack(NULL, len, data);
    if (!reply) {
        log_warn(NULL, "dropping an unreadable reply from %s (%zu bytes)", services_name(l->svc),
                 len);
        return;
    }
    pending_t *p = pending_find(l->dispatch, l->svc, reply->request_id, reply->answers);
    if (!p) {
        /* The duplicate of a resent call, or an answer after its deadline: already settled. */
        log_debug(reply->request_id, "late or duplicate reply from %s dropped",
                  services_name(l->svc));
        kooisv__reply__free_unpacked(reply, NULL);
        return;
    }
    /* Two copies are out: a failure (often the copy's fast "being processed") is held while the
     * other copy may still succeed; it becomes the answer if nothing better comes in time. */
    if (p->resent && !p->fallback && strcmp(reply->result_code, RC_OK) != 0) {
        p->fallback = reply;
        return;
    }
    pending_finish(p, reply);
}

/* Receive the next part from sock without waiting into msg (initialised); false when none is
 * waiting (or the socket failed). Its descriptor only signals edges, so a handler reads until
 * this turns false: the failed read also takes in the socket's pending commands, which is what
 * re-arms the edge (one system call, where asking ZMQ_EVENTS before each message cost one more
 * per message). */
static bool recv_part(void *sock, zmq_msg_t *msg)
{
    return sock && zmq_msg_recv(msg, sock, ZMQ_DONTWAIT) >= 0;
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    link_t *l = arg;
    for (;;) {
        /* One message: [empty][reply]; anything else is dropped whole. */
        zmq_msg_t last;
        zmq_msg_init(&last);
        if (!recv_part(l->sock, &last)) {
            zmq_msg_close(&last);
            return;
        }
        int parts = 1;
        bool ok = true;
        while (zmq_msg_more(&last)) {
            /* the other parts of a message are there once its first one is */
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (!recv_part(l->sock, &part)) {
                zmq_msg_close(&part);
                ok = false;
                break;
            }
            parts++;
            zmq_msg_close(&last);
            zmq_msg_init(&last);
            zmq_msg_move(&last, &part);
            zmq_msg_close(&part);
        }
        if (ok && parts == 2)
            handle_reply(l, zmq_msg_data(&last), zmq_msg_size(&last));
        else if (ok)
            log_warn(NULL, "dropping a %d-part message from %s", parts, services_name(l->svc));
        zmq_msg_close(&last);
    }
}

static replica_t *replica_find(link_t *l, const char *endpoint, size_t len)
{
    for (int i = 0; i < l->n_replicas; i++)
        if (strlen(l->replicas[i].endpoint) == len &&
            memcmp(l->replicas[i].endpoint, endpoint, len) == 0)
            return &l->replicas[i];
    return NULL;
}

/* Monitor events: [u16 event, u32 value][endpoint]. Handshake done = a replica we can use; a
 * failed one is a key mismatch (CURVE), logged once until the replica comes up. */
static void on_monitor(evutil_socket_t fd, short what, void *arg)
{
    link_t *l = arg;
    for (;;) {
        zmq_msg_t head, addr;
        zmq_msg_init(&head);
        if (!recv_part(l->monitor, &head)) {
            zmq_msg_close(&head);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&head) >= 2)
            memcpy(&event, zmq_msg_data(&head), 2);
        bool more = zmq_msg_more(&head);
        zmq_msg_close(&head);
        if (!more)
            continue;
        zmq_msg_init(&addr);
        if (zmq_msg_recv(&addr, l->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&addr);
            return;
        }
        replica_t *r = replica_find(l, zmq_msg_data(&addr), zmq_msg_size(&addr));
        if (r && event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && !r->up) {
            r->up = true;
            r->refusal_logged = false;
            metrics_replicas_add(l->svc, 1);
            log_info(NULL, "%s replica %s connected", services_name(l->svc), r->endpoint);
            link_send_waiting(l);
        } else if (r && !r->refusal_logged &&
                   (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                    event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                    event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)) {
            r->refusal_logged = true;
            log_warn(NULL,
                     "%s replica %s: CURVE handshake failed (its key pair must match this "
                     "gateway's server key for it, and its KOOISV_CURVE_CLIENTS must list this "
                     "gateway's public key %.8s...)",
                     services_name(l->svc), r->endpoint, zmqauth_public_key());
        } else if (r && event == ZMQ_EVENT_DISCONNECTED && r->up) {
            r->up = false;
            metrics_replicas_add(l->svc, -1);
            log_warn(NULL, "%s replica %s disconnected", services_name(l->svc), r->endpoint);
        }
        while (zmq_msg_more(&addr)) { /* future monitor versions may add frames */
            zmq_msg_close(&addr);
            zmq_msg_init(&addr);
            if (zmq_msg_recv(&addr, l->monitor, ZMQ_DONTWAIT) < 0)
                break;
        }
        zmq_msg_close(&addr);
    }
}

/* Connect to every address the endpoints resolve to now; drop the ones that went away. */
static void link_resolve(link_t *l)
{
    char **list = NULL;
    int n = endpoint_resolve(l->endpoints, &list);
    if (n < 0) {
        if (!l->resolve_failed_logged)
            log_warn(NULL, "cannot resolve %s endpoints %s; keeping %d replica(s), retrying",
                     services_name(l->svc), l->endpoints, l->n_replicas);
        l->resolve_failed_logged = true;
        return;
    }
    l->resolve_failed_logged = false;
    for (int i = 0; i < n; i++) {
        if (replica_find(l, list[i], strlen(list[i])))
            continue;
        if (zmq_connect(l->sock, list[i]) != 0) {
            log_warn(NULL, "cannot connect to %s replica %s: %s", services_name(l->svc), list[i],
                     zmq_strerror(zmq_errno()));
            continue;
        }
        l->replicas = xrealloc(l->replicas, (size_t)(l->n_replicas + 1) * sizeof *l->replicas);
        l->replicas[l->n_replicas++] = (replica_t){.endpoint = xstrdup(list[i]), .up = false};
    }
    for (int i = 0; i < l->n_replicas;) {
        bool present = false;
        for (int j = 0; j < n && !present; j++)
            present = strcmp(list[j], l->replicas[i].endpoint) == 0;
        if (present) {
            i++;
            continue;
        }
        zmq_disconnect(l->sock, l->replicas[i].endpoint);
        if (l->replicas[i].up)
            metrics_replicas_add(l->svc, -1);
        log_info(NULL, "%s replica %s no longer resolves: disconnected", services_name(l->svc),
                 l->replicas[i].endpoint);
        free(l->replicas[i].endpoint);
        l->replicas[i] = l->replicas[--l->n_replicas];
    }
    endpoint_list_free(list, n);
    link_poke(l); /* connect/disconnect may have consumed the fd's edge */
}

static void on_resolve(evutil_socket_t fd, short what, void *arg)
{
    dispatch_t *self = arg;
    for (int s = 0; s < SVC__COUNT; s++)
        if (self->links[s].sock)
            link_resolve(&self->links[s]);
}

static void sockopt_int(void *sock, int opt, int value)
{
    zmq_setsockopt(sock, opt, &value, sizeof value);
}

static int link_open(dispatch_t *self, link_t *l, const char *server_key)
{
    void *ctx = transport_context();
    l->sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!l->sock || zmqauth_client(l->sock, server_key) != 0)
        return -1;
    /* IMMEDIATE: queue only on connected replicas, so an absent service fails the send now
     * instead of after the deadline. */
    sockopt_int(l->sock, ZMQ_IMMEDIATE, 1);
    sockopt_int(l->sock, ZMQ_LINGER, 0);
    sockopt_int(l->sock, ZMQ_RECONNECT_IVL, 100);
    sockopt_int(l->sock, ZMQ_RECONNECT_IVL_MAX, LINK_RECONNECT_MAX_MS);
    sockopt_int(l->sock, ZMQ_CONNECT_TIMEOUT, 2000);
    sockopt_int(l->sock, ZMQ_HEARTBEAT_IVL, 2000);
    sockopt_int(l->sock, ZMQ_HEARTBEAT_TIMEOUT, 6000);
    char monaddr[96];
    snprintf(monaddr, sizeof monaddr, "inproc://kooisv-dispatch-%p-%d", (void *)self, l->svc);
    if (zmq_socket_monitor(l->sock, monaddr,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
        l->monitor = zmq_socket(ctx, ZMQ_PAIR);
        if (l->monitor && zmq_connect(l->monitor, monaddr) != 0) {
            zmq_close(l->monitor);
            l->monitor = NULL;
        }
    }
    int fd;
    size_t sz = sizeof fd;
    if (zmq_getsockopt(l->sock, ZMQ_FD, &fd, &sz) != 0)
        return -1;
    l->ev = event_new(self->base, fd, EV_READ | EV_PERSIST, on_socket, l);
    event_add(l->ev, NULL);
    if (l->monitor && zmq_getsockopt(l->monitor, ZMQ_FD, &fd, &sz) == 0) {
        l->monitor_ev = event_new(self->base, fd, EV_READ | EV_PERSIST, on_monitor, l);
        event_add(l->monitor_ev, NULL);
        event_active(l->monitor_ev, EV_READ, 1);
    }
    link_resolve(l);
    return 0;
}

static void link_close(link_t *l)
{
    if (l->ev)
        event_free(l->ev);
    if (l->monitor_ev)
        event_free(l->monitor_ev);
    l->ev = l->monitor_ev = NULL;
    if (l->sock && l->monitor)
        zmq_socket_monitor(l->sock, NULL, 0);
    if (l->monitor)
        zmq_close(l->monitor);
    for (int i = 0; i < l->n_replicas; i++) {
        if (l->replicas[i].up)
            metrics_replicas_add(l->svc, -1);
        free(l->replicas[i].endpoint);
    }
    free(l->replicas);
    if (l->sock)
        zmq_close(l->sock);
    free(l->endpoints);
    memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------------ public */

dispatch_t *dispatch_new(struct event_base *base, const char *const endpoints[SVC__COUNT],
                         const char *const server_keys[SVC__COUNT])
{
    dispatch_t *self = xcalloc(1, sizeof *self);
    self->base = base;
    for (int s = 0; s < SVC__COUNT; s++) {
        link_t *l = &self->links[s];
        l->dispatch = self;
        l->svc = (service_id_t)s;
        if (!endpoints[s] || !*endpoints[s])
            continue;
        l->endpoints = xstrdup(endpoints[s]);
        if (link_open(self, l, server_keys[s]) != 0) {
            log_error(NULL, "cannot open the %s socket: %s", services_name(s),
                      zmq_strerror(zmq_errno()));
            dispatch_destroy(&self);
            return NULL;
        }
    }
    self->resolve_timer = event_new(base, -1, EV_PERSIST, on_resolve, self);
    struct timeval every = {RESOLVE_INTERVAL_S, 0};
    event_add(self->resolve_timer, &every);
    return self;
}

void dispatch_destroy(dispatch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dispatch_t *self = *self_p;
    self->closing = true;
    for (size_t b = 0; b < PENDING_BUCKETS; b++)
        while (self->buckets[b])
            pending_finish(self->buckets[b], NULL);
    if (self->resolve_timer)
        event_free(self->resolve_timer);
    for (int s = 0; s < SVC__COUNT; s++)
        link_close(&self->links[s]);
    free(self);
    *self_p = NULL;
}

static void on_pending_timer(evutil_socket_t fd, short what, void *arg)
{
    pending_t *p = arg;
    if (p->waiting) {
        /* no replica connected in time */
        pending_finish(p, NULL);
        return;
    }
    if (!p->failed && !p->resent && resend_safe(p->answers)) {
        /* Half the time gone without an answer: the replica may be dead or stuck. Services are
         * idempotent, so another replica may get the same call once. */
        p->resent = true;
        if (link_send(p->link, p->buf, p->len) == 0)
            log_debug(p->rid, "no answer from %s after %d ms: resent", services_name(p->link->svc),
                      p->timeout_ms / 2);
        link_poke(p->link);
        int rest = p->timeout_ms - p->timeout_ms / 2;
        struct timeval tv = {rest / 1000, (rest % 1000) * 1000};
        evtimer_add(p->timer, &tv);
        return;
    }
    pending_finish(p, p->fallback);
}

int dispatch_call(dispatch_t *self, service_id_t svc, const Kooisv__Envelope *env, int timeout_ms,
                  dispatch_done_fn done, void *arg)
{
    if (!self || self->closing || svc < 0 || svc >= SVC__COUNT || !self->links[svc].sock)
        return -1;
    link_t *l = &self->links[svc];
    pending_t *p = xcalloc(1, sizeof *p);
    p->link = l;
    p->rid = xstrdup(env->request_id ? env->request_id : "");
    p->answers = (uint32_t)env->body_case;
    p->len = transport_pack_envelope(env, &p->buf);
    p->timeout_ms = timeout_ms;
    p->deadline_us = time_mono_us() + (int64_t)timeout_ms * 1000;
    p->done = done;
    p->arg = arg;
    p->timer = evtimer_new(self->base, on_pending_timer, p);
    pending_insert(self, p);
    struct timeval tv = {0, 0};
    if (timeout_ms <= 0) {
        /* No time: fail on the next loop turn, never inside this call. */
        p->failed = true;
    } else if (link_send(l, p->buf, p->len) != 0) {
        /* No connected replica: wait a little for one (link_send_waiting), then fail. */
        p->waiting = true;
        pending_t **pp = &l->waiting;
        while (*pp)
            pp = &(*pp)->wait_next;
        *pp = p;
        int wait = timeout_ms < LINK_WAIT_MS ? timeout_ms : LINK_WAIT_MS;
        tv.tv_sec = wait / 1000;
        tv.tv_usec = (wait % 1000) * 1000;
    } else {
        pending_arm(p, timeout_ms);
        link_poke(l);
        return 0;
    }
    evtimer_add(p->timer, &tv);
    link_poke(l);
    return 0;
}
