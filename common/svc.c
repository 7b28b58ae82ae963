#include "svc.h"
#include "resultcode.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "seenreq.h"
#include "timeutil.h"
#include "transport.h"
#include "xmalloc.h"
#include "zmqauth.h"

/* ---------------------------------------------------------------- signals */

static volatile sig_atomic_t stop_requested;
/* Set by svc_run once the requests it held are answered: the workers end then, not at the
 * signal (a worker handed a request must serve it). */
static volatile sig_atomic_t workers_release;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

bool svc_stopping(void)
{
    return stop_requested != 0;
}

void svc_stop(void)
{
    stop_requested = 1;
}

/* ---------------------------------------------------------------- calls */

typedef struct call_block {
    struct call_block *next;
    max_align_t align[];
} call_block_t;

#define ROUTE_MAX 8 /* routing frames a request may carry in front of its delimiter */

struct svc_call {
    const Kooisv__Envelope *req;
    zmqauth_peer_t peer;
    Kooisv__Reply reply;
    call_block_t *blocks;
    /* A call taken by svc_def_t.handle_async lives on the heap until its reply is sent: it owns
     * its request and copies of its routing frames. */
    struct svc_call *next; /* in the list of finished calls */
    Kooisv__Envelope *owned;
    zmq_msg_t route[ROUTE_MAX];
    int n_route;
};

const Kooisv__Envelope *svc_call_request(const svc_call_t *call)
{
    return call->req;
}

Kooisv__Reply *svc_call_reply(svc_call_t *call)
{
    return &call->reply;
}

void *svc_call_alloc(svc_call_t *call, size_t size)
{
    call_block_t *b = xcalloc(1, sizeof(call_block_t) + size);
    b->next = call->blocks;
    call->blocks = b;
    return b->align;
}

char *svc_call_strdup(svc_call_t *call, const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s);
    char *p = svc_call_alloc(call, n + 1);
    memcpy(p, s, n);
    return p;
}

/* vprintf into memory that lives until the reply is sent. */
static char *call_vprintf(svc_call_t *call, const char *fmt, va_list ap)
{
    char *tmp = NULL;
    if (vasprintf(&tmp, fmt, ap) < 0)
        tmp = NULL;
    char *out = svc_call_strdup(call, tmp ? tmp : "");
    free(tmp);
    return out;
}

char *svc_call_printf(svc_call_t *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = call_vprintf(call, fmt, ap);
    va_end(ap);
    return out;
}

void svc_call_result(svc_call_t *call, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    call->reply.result_msg = call_vprintf(call, fmt, ap);
    va_end(ap);
    call->reply.result_code = svc_call_strdup(call, code);
}

const char *svc_call_rid(const svc_call_t *call)
{
    return call->req && call->req->request_id ? call->req->request_id : "-";
}

zmqauth_peer_t svc_call_peer(const svc_call_t *call)
{
    return call->peer;
}

static void call_release(svc_call_t *call)
{
    call_block_t *b = call->blocks;
    while (b) {
        call_block_t *next = b->next;
        free(b);
        b = next;
    }
    call->blocks = NULL;
}

/* Fill the reply's defaults for a request (env NULL: not an envelope). */
static void call_begin(svc_call_t *call, Kooisv__Envelope *env, zmqauth_peer_t peer)
{
    call->req = env;
    call->peer = peer;
    kooisv__reply__init(&call->reply);
    call->reply.result_code = RC_INTERNAL;
    call->reply.result_msg = "internal error";
    if (env) {
        call->reply.request_id = env->request_id;
        /* Lets a client with two calls under one request id (audit intent, then outcome) tell
         * their replies apart even when one arrives late. */
        call->reply.answers = (uint32_t)env->body_case;
    }
}

/* ---------------------------------------------------------------- service runtime */

typedef struct {
    const svc_def_t *def;
    int index;
    void *state;
    char inproc[128];
    pthread_t thread;
    /* The routing frames of the request being served: its reply goes back behind them. */
    zmq_msg_t route[ROUTE_MAX];
    int n_route;
    zmqauth_peer_t peer; /* who sent it (the broker's first frame) */
} worker_t;

/* Send one reply on sock: the request's routing frames, the delimiter, the bytes. */
static int reply_send(zmq_msg_t *route, int n_route, void *sock, const uint8_t *buf, size_t len)
{
    for (int i = 0; i < n_route; i++) {
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, &route[i]);
        if (zmq_msg_send(&copy, sock, ZMQ_SNDMORE) < 0) {
            zmq_msg_close(&copy);
            return -1;
        }
    }
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, buf, len, 0) < 0)
        return -1;
    return 0;
}

/* Copies of a request reaching this replica again (a client's resend, a retried call): kept a
 * minute, answers up to 4 KiB (larger ones are audit pages and admin views, never resent). */
#define SEEN_SLOTS 8192
#define SEEN_WINDOW_MS 60000
#define SEEN_MAX_REPLY 4096
static seenreq_t *seen;

/* Pack reply into *buf (caller frees); returns its length. */
static size_t pack_reply(const Kooisv__Reply *reply, uint8_t **buf)
{
    size_t len = kooisv__reply__get_packed_size(reply);
    *buf = xmalloc(len ? len : 1);
    kooisv__reply__pack(reply, *buf);
    return len;
}

/* The kind under which an answer is kept: the body and who asked (one peer never gets another's
 * answer by reusing its request id). */
static uint32_t seen_kind(const Kooisv__Envelope *env, zmqauth_peer_t peer)
{
    return (uint32_t)env->body_case | (uint32_t)peer << 24;
}

/* A copy of a request this replica answered with success already gets that answer again, on
 * sock behind route. True when the copy was answered so. */
static bool serve_copy(const svc_def_t *def, zmqauth_peer_t peer, zmq_msg_t *route, int n_route,
                       void *sock, const Kooisv__Envelope *env)
{
    if (!env->request_id || !*env->request_id || env->body_case == KOOISV__ENVELOPE__BODY_PING)
        return false;
    uint8_t *cached = NULL;
    size_t len = 0;
    seenreq_state_t st =
        seenreq_take(seen, env->request_id, seen_kind(env, peer), time_now_ms(), &cached, &len);
    if (st == SEENREQ_NEW)
        return false;
    log_info(env->request_id, "%s: a copy of an answered request: the same answer again",
             def->name);
    if (reply_send(route, n_route, sock, cached, len) < 0)
        log_warn(env->request_id, "%s: reply not sent: %s", def->name, zmq_strerror(errno));
    free(cached);
    return true;
}

/* Pack the call's reply, keep it for copies of the request when it is a success, and send it on
 * sock behind route. */
static void call_answer(const svc_def_t *def, svc_call_t *call, zmq_msg_t *route, int n_route,
                        void *sock)
{
    const Kooisv__Envelope *env = call->req;
    uint8_t *buf;
    size_t len = pack_reply(&call->reply, &buf);
    /* Only a success is kept: a copy of a failed call (the database was down) must run again. */
    if (env && env->request_id && *env->request_id &&
        env->body_case != KOOISV__ENVELOPE__BODY_PING && call->reply.result_code &&
        strcmp(call->reply.result_code, RC_OK) == 0)
        seenreq_answer(seen, env->request_id, seen_kind(env, call->peer), buf, len);
    if (reply_send(route, n_route, sock, buf, len) < 0)
        log_warn(svc_call_rid(call), "%s: reply not sent: %s", def->name, zmq_strerror(errno));
    free(buf);
}

/* Why the peer may not send env (svc.h "Per-key rights"), or NULL when it may. */
static const char *request_refusal(const svc_def_t *def, zmqauth_peer_t peer,
                                   const Kooisv__Envelope *env)
{
    bool system_action = false;
    if (env->body_case == KOOISV__ENVELOPE__BODY_ADMIN && env->admin->action && def->system_actions)
        for (const char *const *a = def->system_actions; *a && !system_action; a++)
            system_action = strcmp(*a, env->admin->action) == 0;
    switch (peer) {
    case ZMQAUTH_PEER_GATEWAY:
        return system_action ? "this admin action is for system clients only" : NULL;
    case ZMQAUTH_PEER_SYSTEM:
        return system_action || env->body_case == KOOISV__ENVELOPE__BODY_PING
                   ? NULL
                   : "a system client's key may send only the admin actions the service serves "
                     "system clients";
    default:
        return "the client's key is not identified (no User-Id from the ZAP handler)";
    }
}

/* Answer the call 000001 when its peer may not send it; true when refused so. */
static bool refused(worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = call->req;
    const char *why = request_refusal(w->def, call->peer, env);
    if (!why)
        return false;
    static log_gate_t gate;
    unsigned long quiet;
    if (log_gate_pass(&gate, &quiet))
        log_warn(svc_call_rid(call),
                 "%s: refused body=%d action=%s from a %s client: %s; %lu more refused since the "
                 "last such line",
                 w->def->name, (int)env->body_case,
                 env->body_case == KOOISV__ENVELOPE__BODY_ADMIN && env->admin->action
                     ? env->admin->action
                     : "-",
                 zmqauth_peer_name(w->peer), why, quiet);
    svc_call_result(call, RC_AUTH, "refused: %s", why);
    return true;
}

static void serve_one(worker_t *w, void *sock, zmq_msg_t *msg)
{
    svc_call_t call = {0};
    Kooisv__Envelope *env =
        kooisv__envelope__unpack(NULL, zmq_msg_size(msg), (const uint8_t *)zmq_msg_data(msg));
    call_begin(&call, env, w->peer);
    if (!env) {
        log_warn(NULL, "%s: dropped a message that is not an envelope (%zu bytes)", w->def->name,
                 zmq_msg_size(msg));
        call.reply.result_code = RC_INVALID;
        call.reply.result_msg = "malformed envelope";
    } else {
        if (refused(w, &call)) {
            /* answered below, before any handler or cached answer */
        } else if (serve_copy(w->def, w->peer, w->route, w->n_route, sock, env)) {
            kooisv__envelope__free_unpacked(env, NULL);
            return;
        } else if (env->body_case == KOOISV__ENVELOPE__BODY_PING) {
            char why[160] = "";
            bool ready = !w->def->ready || w->def->ready(w->def->arg, why, sizeof why);
            call.reply.result_code = ready ? RC_OK : RC_INTERNAL;
            call.reply.result_msg = ready ? "pong" : svc_call_printf(&call, "not ready: %s", why);
        } else {
            w->def->handle(w->state, &call);
        }
    }
    call_answer(w->def, &call, w->route, w->n_route, sock);
    call_release(&call);
    if (env)
        kooisv__envelope__free_unpacked(env, NULL);
}

/* Receive one request: who sent it into w->peer, its routing frames into w->route, its payload
 * into payload. False when the message is not [peer, route..., "", payload] (it is dropped:
 * there is no one to answer). */
static bool request_recv(worker_t *w, void *sock, zmq_msg_t *payload)
{
    w->n_route = 0;
    w->peer = ZMQAUTH_PEER_UNKNOWN;
    zmq_msg_t peer;
    zmq_msg_init(&peer);
    if (zmq_msg_recv(&peer, sock, 0) < 0) {
        zmq_msg_close(&peer);
        return false;
    }
    char user[16] = "";
    if (zmq_msg_size(&peer) < sizeof user)
        memcpy(user, zmq_msg_data(&peer), zmq_msg_size(&peer));
    w->peer = zmqauth_peer_parse(user);
    bool delimited = false, ok = zmq_msg_more(&peer);
    zmq_msg_close(&peer);
    if (!ok)
        return false;
    for (int more = 1; more;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            return false;
        }
        more = zmq_msg_more(&part);
        if (delimited) {
            if (more || zmq_msg_size(payload) || !ok) /* one payload frame only */
                ok = false;
            zmq_msg_move(payload, &part);
        } else if (zmq_msg_size(&part) == 0) {
            delimited = true;
        } else if (w->n_route < ROUTE_MAX) {
            zmq_msg_init(&w->route[w->n_route]);
            zmq_msg_move(&w->route[w->n_route++], &part);
        } else {
            ok = false;
        }
        zmq_msg_close(&part);
    }
    return ok && delimited && w->n_route > 0;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    /* A DEALER that says when it is free: the broker (svc_run) gives each request to a worker
     * that is idle, so a stuck call holds up no other. */
    void *sock = zmq_socket(transport_context(), ZMQ_DEALER);
    int linger = 1000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(sock, w->inproc) != 0 || zmq_send(sock, "READY", 5, 0) < 0) {
        log_error(NULL, "%s: worker %d cannot connect: %s", w->def->name, w->index,
                  zmq_strerror(errno));
        svc_stop();
        zmq_close(sock);
        return NULL;
    }
    while (!workers_release) {
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
        int n = zmq_poll(&item, 1, 100);
        if (n <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (request_recv(w, sock, &msg))
            serve_one(w, sock, &msg);
        else if (zmq_send(sock, "READY", 5, 0) < 0) /* nothing to answer: free again */
            break;
        for (int i = 0; i < w->n_route; i++)
            zmq_msg_close(&w->route[i]);
        w->n_route = 0;
        zmq_msg_close(&msg);
    }
    zmq_close(sock);
    return NULL;
}

/* Move the rest of a multipart message from one socket to the other (after the caller took
 * or sent its first frames). 1 when a whole message went, 0 when none was waiting, -1 on
 * error. */
static int forward_rest(void *from, void *to, bool started)
{
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, from, started ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            return !started && errno == EAGAIN ? 0 : -1;
        }
        started = true;
        int more = zmq_msg_more(&part);
        if (zmq_msg_send(&part, to, more ? ZMQ_SNDMORE : 0) < 0) {
            zmq_msg_close(&part);
            return -1;
        }
        if (!more)
            return 1;
    }
}

/* One message from a worker: [worker id, "READY"] or [worker id, route..., "", reply]. The
 * worker's id goes into *worker (it is free again); a reply goes on to the frontend. 1 when a
 * message was handled, 0 when none was waiting, -1 on error. */
static int backend_recv(void *backend, void *frontend, zmq_msg_t *worker)
{
    zmq_msg_init(worker);
    if (zmq_msg_recv(worker, backend, ZMQ_DONTWAIT) < 0)
        return errno == EAGAIN ? 0 : -1;
    zmq_msg_t first;
    zmq_msg_init(&first);
    int rc = -1;
    if (zmq_msg_more(worker) && zmq_msg_recv(&first, backend, 0) >= 0) {
        int more = zmq_msg_more(&first);
        if (!more && zmq_msg_size(&first) == 5 && memcmp(zmq_msg_data(&first), "READY", 5) == 0)
            rc = 1;
        else if (zmq_msg_send(&first, frontend, more ? ZMQ_SNDMORE : 0) >= 0)
            rc = more && forward_rest(backend, frontend, true) < 0 ? -1 : 1;
    }
    zmq_msg_close(&first);
    if (rc < 0)
        zmq_msg_close(worker);
    return rc;
}

/* ---------------------------------------------------------------- calls served without a worker */

/* Calls taken by handle_async and finished (svc_call_finish), waiting for the broker to send
 * their replies; the eventfd wakes the broker. */
static struct {
    pthread_mutex_t mu;
    svc_call_t *head, *tail;
    int efd;   /* -1 until a service with handle_async runs */
    bool open; /* a broker sends what is finished; else svc_call_finish drops it */
} fin = {.mu = PTHREAD_MUTEX_INITIALIZER, .efd = -1};

static void async_call_free(svc_call_t *call)
{
    for (int i = 0; i < call->n_route; i++)
        zmq_msg_close(&call->route[i]);
    call_release(call);
    if (call->owned)
        kooisv__envelope__free_unpacked(call->owned, NULL);
    free(call);
}

void svc_call_finish(svc_call_t *call)
{
    pthread_mutex_lock(&fin.mu);
    bool open = fin.open, wake = open && !fin.head;
    if (open) {
        call->next = NULL;
        if (fin.tail)
            fin.tail->next = call;
        else
            fin.head = call;
        fin.tail = call;
    }
    pthread_mutex_unlock(&fin.mu);
    if (!open) {
        log_warn(svc_call_rid(call), "finished after the service stopped: reply dropped");
        async_call_free(call);
        return;
    }
    uint64_t one = 1;
    if (wake && write(fin.efd, &one, sizeof one) != (ssize_t)sizeof one)
        log_error(svc_call_rid(call), "cannot wake the broker: %s", strerror(errno));
}

/* The finished calls, in the order they finished (the list is emptied). */
static svc_call_t *finished_take(void)
{
    pthread_mutex_lock(&fin.mu);
    svc_call_t *list = fin.head;
    fin.head = fin.tail = NULL;
    pthread_mutex_unlock(&fin.mu);
    return list;
}

/* ---------------------------------------------------------------- the broker */

/* A request as the broker receives it from the frontend. */
typedef struct {
    zmq_msg_t part[ROUTE_MAX + 2];
    int n;
} inreq_t;

static void inreq_close(inreq_t *q)
{
    for (int i = 0; i < q->n; i++)
        zmq_msg_close(&q->part[i]);
    q->n = 0;
}

/* Receive a waiting request from the frontend into q. 1 when one came, 0 when none was waiting,
 * -1 on error. A message with more frames than a request has is read whole and dropped (there
 * is no valid request to answer), and counts as received with q->n = 0. */
static int inreq_recv(void *frontend, inreq_t *q)
{
    int more = 1;
    q->n = 0;
    while (more && q->n < ROUTE_MAX + 2) {
        zmq_msg_init(&q->part[q->n]);
        if (zmq_msg_recv(&q->part[q->n], frontend, q->n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int rc = q->n == 0 && errno == EAGAIN ? 0 : -1;
            zmq_msg_close(&q->part[q->n]);
            inreq_close(q);
            return rc;
        }
        more = zmq_msg_more(&q->part[q->n]);
        q->n++;
    }
    if (more) {
        inreq_close(q);
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, frontend, 0) < 0) {
                zmq_msg_close(&part);
                return -1;
            }
            more = zmq_msg_more(&part);
            zmq_msg_close(&part);
        }
    }
    return 1;
}

/* The ZAP handler's User-Id of q: it is on the frames ZeroMQ received from the wire (not on the
 * routing id the ROUTER adds), so it is read from the last frame that has it. */
static const char *inreq_user(inreq_t *q)
{
    const char *user = NULL;
    for (int i = q->n - 1; i >= 0 && !user; i--)
        user = zmq_msg_gets(&q->part[i], "User-Id");
    return user;
}

/* Send q to the worker whose id is *worker, behind a frame with its sender's User-Id (a send
 * clears it, so the worker is told). The frames are sent (q is emptied) even on error; 1 when
 * it went, -1 on error. */
static int inreq_to_worker(inreq_t *q, void *backend, zmq_msg_t *worker)
{
    const char *user = inreq_user(q);
    int rc = 1;
    if (zmq_msg_send(worker, backend, ZMQ_SNDMORE) < 0 ||
        zmq_send(backend, user ? user : "", user ? strlen(user) : 0, ZMQ_SNDMORE) < 0)
        rc = -1;
    int sent = 0;
    while (rc == 1 && sent < q->n) {
        if (zmq_msg_send(&q->part[sent], backend, sent < q->n - 1 ? ZMQ_SNDMORE : 0) < 0)
            rc = -1;
        else
            sent++;
    }
    for (int i = sent; i < q->n; i++)
        zmq_msg_close(&q->part[i]);
    q->n = 0;
    return rc;
}

/* The broker's state: its two sockets, the idle workers (by routing id, least recently used
 * first), a request waiting for a worker, and the calls served without one. */
typedef struct {
    const svc_def_t *def;
    void *frontend, *backend;
    zmq_msg_t *idle;
    int n_idle, nworkers;
    bool frontend_empty; /* the last look at the frontend found no request waiting */
    inreq_t parked;      /* received, for the next free worker (parked.n > 0) */
    long in_flight;      /* taken by handle_async, not answered yet */
} broker_t;

/* Offer q to the service's handle_async on the broker thread. True when it was answered or
 * taken (q may be closed then); false when a worker must serve it (q untouched): not a
 * well-formed request, a PING, a request its peer may not send (the worker refuses it), or one
 * the service does not take. A copy of an answered request is answered here. */
static bool broker_take(broker_t *b, inreq_t *q)
{
    const svc_def_t *def = b->def;
    int d = 0;
    while (d < q->n && zmq_msg_size(&q->part[d]) > 0)
        d++;
    if (d == 0 || d > ROUTE_MAX || q->n != d + 2)
        return false;
    const char *user = inreq_user(q);
    zmqauth_peer_t peer = zmqauth_peer_parse(user ? user : "");
    zmq_msg_t *payload = &q->part[d + 1];
    Kooisv__Envelope *env = kooisv__envelope__unpack(NULL, zmq_msg_size(payload),
                                                     (const uint8_t *)zmq_msg_data(payload));
    if (!env || env->body_case == KOOISV__ENVELOPE__BODY_PING || request_refusal(def, peer, env)) {
        if (env)
            kooisv__envelope__free_unpacked(env, NULL);
        return false;
    }
    svc_call_t *call = xcalloc(1, sizeof *call);
    call_begin(call, env, peer);
    call->owned = env;
    for (int i = 0; i < d; i++) {
        zmq_msg_init(&call->route[i]);
        zmq_msg_copy(&call->route[i], &q->part[i]);
    }
    call->n_route = d;
    if (serve_copy(def, peer, call->route, call->n_route, b->frontend, env)) {
        async_call_free(call);
        return true;
    }
    if (!def->handle_async(def->arg, call)) {
        async_call_free(call);
        return false;
    }
    b->in_flight++;
    return true;
}

/* Send the replies of the calls finished since the last look. */
static void broker_finished(broker_t *b)
{
    uint64_t count;
    if (read(fin.efd, &count, sizeof count) < 0 && errno != EAGAIN)
        log_warn(NULL, "%s: eventfd: %s", b->def->name, strerror(errno));
    for (svc_call_t *call = finished_take(); call;) {
        svc_call_t *next = call->next;
        call_answer(b->def, call, call->route, call->n_route, b->frontend);
        async_call_free(call);
        b->in_flight--;
        call = next;
    }
}

/* Hand q to the longest idle worker (it stays idle when the hand-off failed). */
static void broker_to_worker(broker_t *b, inreq_t *q)
{
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, &b->idle[0]);
    int rc = inreq_to_worker(q, b->backend, &id);
    zmq_msg_close(&id);
    if (rc < 0) {
        log_warn(NULL, "%s: request not handed to a worker: %s", b->def->name, zmq_strerror(errno));
        return;
    }
    zmq_msg_close(&b->idle[0]);
    memmove(&b->idle[0], &b->idle[1], (size_t)(b->n_idle - 1) * sizeof *b->idle);
    b->n_idle--;
}

/* Requests taken from the frontend in one round at most, so that answers are not held up. */
#define BROKER_BURST 256

/* One round of the broker: wait up to timeout_ms for a message, collect the workers that are
 * free again (forwarding their answers), send the answers of calls finished without a worker,
 * and take waiting requests: those handle_async takes, and for free workers the others. 0, or
 * -1 on error (logged). */
static int broker_round(broker_t *b, int timeout_ms)
{
    bool async = b->def->handle_async != NULL;
    bool take = b->parked.n == 0 && (b->n_idle > 0 || async);
    zmq_pollitem_t items[3] = {{.socket = b->backend, .events = ZMQ_POLLIN},
                               {.socket = b->frontend, .events = take ? ZMQ_POLLIN : 0},
                               {.socket = NULL, .fd = fin.efd, .events = ZMQ_POLLIN}};
    int n = zmq_poll(items, async ? 3 : 2, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        log_error(NULL, "%s: poll failed: %s", b->def->name, zmq_strerror(errno));
        return -1;
    }
    if (items[0].revents & ZMQ_POLLIN)
        while (b->n_idle < b->nworkers &&
               backend_recv(b->backend, b->frontend, &b->idle[b->n_idle]) > 0)
            b->n_idle++;
    if (async && (items[2].revents & ZMQ_POLLIN))
        broker_finished(b);
    if (b->parked.n > 0 && b->n_idle > 0)
        broker_to_worker(b, &b->parked);
    b->frontend_empty = false;
    for (int burst = 0; b->parked.n == 0 && (b->n_idle > 0 || async) && burst < BROKER_BURST;
         burst++) {
        inreq_t q;
        int got = inreq_recv(b->frontend, &q);
        if (got <= 0) {
            b->frontend_empty = got == 0;
            break;
        }
        if (q.n == 0 || (async && broker_take(b, &q))) {
            inreq_close(&q);
            continue;
        }
        if (b->n_idle == 0) {
            b->parked = q;
            break;
        }
        broker_to_worker(b, &q);
    }
    return 0;
}

/* Nothing held: every worker idle, no request waiting or parked, no call in flight. */
static bool broker_idle(const broker_t *b)
{
    return b->n_idle == b->nworkers && b->frontend_empty && b->parked.n == 0 && b->in_flight == 0;
}

int svc_run(const svc_def_t *def)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    void *ctx = transport_context();
    if (!seen)
        seen = seenreq_new(SEEN_SLOTS, SEEN_WINDOW_MS, SEEN_MAX_REPLY);
    int nworkers = def->workers > 0 ? def->workers : 1;
    worker_t *workers = xcalloc((size_t)nworkers, sizeof *workers);
    char inproc[128];
    snprintf(inproc, sizeof inproc, "inproc://kooisv-%s-workers", def->name);

    void *backend = zmq_socket(ctx, ZMQ_ROUTER);
    void *frontend = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 1000;
    zmq_setsockopt(frontend, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(backend, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(backend, inproc) != 0) {
        log_error(NULL, "%s: cannot bind %s: %s", def->name, inproc, zmq_strerror(errno));
        return 1;
    }
    int started = 0, rc = 0;
    for (int i = 0; i < nworkers; i++) {
        workers[i].def = def;
        workers[i].index = i;
        snprintf(workers[i].inproc, sizeof workers[i].inproc, "%s", inproc);
        workers[i].state = def->worker_init ? def->worker_init(i, def->arg) : def->arg;
        if (def->worker_init && !workers[i].state) {
            log_error(NULL, "%s: worker %d failed to start", def->name, i);
            rc = 1;
            break;
        }
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            log_error(NULL, "%s: cannot start worker thread %d", def->name, i);
            if (def->worker_fini)
                def->worker_fini(workers[i].state);
            rc = 1;
            break;
        }
        started++;
    }
    /* Only the configured clients may reach the workers (zmqauth.h). */
    if (rc == 0 && zmqauth_server(frontend) != 0)
        rc = 1;
    if (rc == 0 && zmq_bind(frontend, def->bind) != 0) {
        log_error(NULL, "%s: cannot bind %s: %s", def->name, def->bind, zmq_strerror(errno));
        rc = 1;
    }
    if (rc == 0 && def->handle_async && fin.efd < 0) {
        fin.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fin.efd < 0) {
            log_error(NULL, "%s: eventfd: %s", def->name, strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0)
        log_info(NULL, "%s: serving on %s with %d workers", def->name, def->bind, nworkers);
    broker_t b = {.def = def, .frontend = frontend, .backend = backend, .nworkers = nworkers};
    b.idle = xcalloc((size_t)nworkers, sizeof *b.idle);
    pthread_mutex_lock(&fin.mu);
    fin.open = rc == 0 && def->handle_async;
    pthread_mutex_unlock(&fin.mu);
    while (rc == 0 && !svc_stopping())
        if (broker_round(&b, 250) != 0)
            rc = 1;
    /* Graceful stop: what this replica already holds (requests being served by a worker or
     * without one, and those received but not yet handed to a worker) is answered before the
     * workers end, for at most SVC_DRAIN_MS; it ends as soon as nothing is held. Callers stop
     * sending here once the connection goes (their other replicas take over). */
    int64_t drain_until = time_mono_us() + (int64_t)SVC_DRAIN_MS * 1000;
    while (rc == 0 && started == nworkers && time_mono_us() < drain_until && !broker_idle(&b))
        if (broker_round(&b, 20) != 0)
            rc = 1;
    if (rc == 0 && started == nworkers && !broker_idle(&b))
        log_warn(NULL,
                 "%s: stopping with %d request(s) still being served by workers and %ld without "
                 "one after %d ms",
                 def->name, nworkers - b.n_idle, b.in_flight, SVC_DRAIN_MS);
    /* Calls still in flight without a worker are dropped when they finish (their callers'
     * deadlines have passed; every call is safe to repeat). */
    pthread_mutex_lock(&fin.mu);
    fin.open = false;
    pthread_mutex_unlock(&fin.mu);
    if (def->handle_async)
        broker_finished(&b);
    inreq_close(&b.parked);
    workers_release = 1;
    svc_stop();
    for (int i = 0; i < started; i++) {
        pthread_join(workers[i].thread, NULL);
        if (def->worker_fini)
            def->worker_fini(workers[i].state);
    }
    /* Replies already queued by the workers are flushed by the frontend's linger. */
    zmq_msg_t spare;
    zmq_msg_init(&spare);
    while (backend_recv(backend, frontend, &spare) > 0) {
        zmq_msg_close(&spare);
        zmq_msg_init(&spare);
    }
    zmq_msg_close(&spare);
    for (int i = 0; i < b.n_idle; i++)
        zmq_msg_close(&b.idle[i]);
    free(b.idle);
    zmq_close(frontend);
    zmq_close(backend);
    free(workers);
    log_info(NULL, "%s: stopped", def->name);
    return rc;
}
