#include "svc.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "transport.h"
#include "xmalloc.h"
#include "zmqauth.h"

/* ---------------------------------------------------------------- signals */

static volatile sig_atomic_t stop_requested;

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

struct svc_call {
    const Kooisv__Envelope *req;
    Kooisv__Reply reply;
    call_block_t *blocks;
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

/* ---------------------------------------------------------------- service runtime */

typedef struct {
    const svc_def_t *def;
    int index;
    void *state;
    char inproc[128];
    pthread_t thread;
} worker_t;

static int send_reply(void *sock, const Kooisv__Reply *reply)
{
    size_t len = kooisv__reply__get_packed_size(reply);
    uint8_t *buf = xmalloc(len ? len : 1);
    kooisv__reply__pack(reply, buf);
    int rc = zmq_send(sock, buf, len, 0);
    free(buf);
    return rc < 0 ? -1 : 0;
}

static void serve_one(worker_t *w, void *sock, zmq_msg_t *msg)
{
    svc_call_t call = {0};
    kooisv__reply__init(&call.reply);
    Kooisv__Envelope *env =
        kooisv__envelope__unpack(NULL, zmq_msg_size(msg), (const uint8_t *)zmq_msg_data(msg));
    call.req = env;
    call.reply.result_code = "000005";
    call.reply.result_msg = "internal error";
    if (!env) {
        log_warn(NULL, "%s: dropped a message that is not an envelope (%zu bytes)", w->def->name,
                 zmq_msg_size(msg));
        call.reply.result_code = "000002";
        call.reply.result_msg = "malformed envelope";
    } else {
        call.reply.request_id = env->request_id;
        /* Lets a client with two calls under one request id (audit intent, then outcome) tell
         * their replies apart even when one arrives late. */
        call.reply.answers = (uint32_t)env->body_case;
        if (env->body_case == KOOISV__ENVELOPE__BODY_PING) {
            call.reply.result_code = "000000";
            call.reply.result_msg = "pong";
        } else {
            w->def->handle(w->state, &call);
        }
    }
    if (send_reply(sock, &call.reply) < 0)
        log_warn(svc_call_rid(&call), "%s: reply not sent: %s", w->def->name, zmq_strerror(errno));
    call_release(&call);
    if (env)
        kooisv__envelope__free_unpacked(env, NULL);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    void *sock = zmq_socket(transport_context(), ZMQ_REP);
    int linger = 1000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(sock, w->inproc) != 0) {
        log_error(NULL, "%s: worker %d cannot connect: %s", w->def->name, w->index,
                  zmq_strerror(errno));
        svc_stop();
        zmq_close(sock);
        return NULL;
    }
    while (!svc_stopping()) {
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
        int n = zmq_poll(&item, 1, 250);
        if (n <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, 0) >= 0)
            serve_one(w, sock, &msg);
        zmq_msg_close(&msg);
    }
    zmq_close(sock);
    return NULL;
}

/* Forward one whole multipart message from one socket to the other. */
static int forward(void *from, void *to)
{
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, from, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            return errno == EAGAIN ? 0 : -1;
        }
        int more = zmq_msg_more(&part);
        if (zmq_msg_send(&part, to, more ? ZMQ_SNDMORE : 0) < 0) {
            zmq_msg_close(&part);
            return -1;
        }
        if (!more)
            return 1;
    }
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
    int nworkers = def->workers > 0 ? def->workers : 1;
    worker_t *workers = xcalloc((size_t)nworkers, sizeof *workers);
    char inproc[128];
    snprintf(inproc, sizeof inproc, "inproc://kooisv-%s-workers", def->name);

    void *backend = zmq_socket(ctx, ZMQ_DEALER);
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
    if (rc == 0)
        log_info(NULL, "%s: serving on %s with %d workers", def->name, def->bind, nworkers);
    while (rc == 0 && !svc_stopping()) {
        zmq_pollitem_t items[2] = {{.socket = frontend, .events = ZMQ_POLLIN},
                                   {.socket = backend, .events = ZMQ_POLLIN}};
        int n = zmq_poll(items, 2, 250);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error(NULL, "%s: poll failed: %s", def->name, zmq_strerror(errno));
            rc = 1;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            while (forward(frontend, backend) > 0)
                ;
        if (items[1].revents & ZMQ_POLLIN)
            while (forward(backend, frontend) > 0)
                ;
    }
    svc_stop();
    for (int i = 0; i < started; i++) {
        pthread_join(workers[i].thread, NULL);
        if (def->worker_fini)
            def->worker_fini(workers[i].state);
    }
    /* Replies already queued by the workers are flushed by the frontend's linger. */
    while (forward(backend, frontend) > 0)
        ;
    zmq_close(frontend);
    zmq_close(backend);
    free(workers);
    log_info(NULL, "%s: stopped", def->name);
    return rc;
}
