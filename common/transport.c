#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "timeutil.h"
#include "xmalloc.h"

/* ---------------------------------------------------------------- context and signals */

static void *zmq_context;
static pthread_once_t context_once = PTHREAD_ONCE_INIT;
static volatile sig_atomic_t stop_requested;

static void context_create(void)
{
    zmq_context = zmq_ctx_new();
    if (!zmq_context) {
        log_error(NULL, "cannot create the ZeroMQ context: %s", zmq_strerror(errno));
        abort();
    }
}

void *transport_context(void)
{
    pthread_once(&context_once, context_create);
    return zmq_context;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

bool service_stopping(void)
{
    return stop_requested != 0;
}

void service_stop(void)
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

char *svc_call_printf(svc_call_t *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = NULL;
    if (vasprintf(&tmp, fmt, ap) < 0)
        tmp = NULL;
    va_end(ap);
    char *out = svc_call_strdup(call, tmp ? tmp : "");
    free(tmp);
    return out;
}

void svc_call_result(svc_call_t *call, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = NULL;
    if (vasprintf(&tmp, fmt, ap) < 0)
        tmp = NULL;
    va_end(ap);
    call->reply.result_code = svc_call_strdup(call, code);
    call->reply.result_msg = svc_call_strdup(call, tmp ? tmp : "");
    free(tmp);
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
    const service_def_t *def;
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
        log_warn(NULL, "%s: dropped a message that is not an envelope (%zu bytes)",
                 w->def->name, zmq_msg_size(msg));
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
        log_warn(svc_call_rid(&call), "%s: reply not sent: %s", w->def->name,
                 zmq_strerror(errno));
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
        service_stop();
        zmq_close(sock);
        return NULL;
    }
    while (!service_stopping()) {
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

int service_run(const service_def_t *def)
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
    if (rc == 0 && zmq_bind(frontend, def->bind) != 0) {
        log_error(NULL, "%s: cannot bind %s: %s", def->name, def->bind, zmq_strerror(errno));
        rc = 1;
    }
    if (rc == 0)
        log_info(NULL, "%s: serving on %s with %d workers", def->name, def->bind, nworkers);
    while (rc == 0 && !service_stopping()) {
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
    service_stop();
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

/* ---------------------------------------------------------------- endpoints */

static int resolved_add(char ***list, int *n, const char *ep)
{
    for (int i = 0; i < *n; i++)
        if (strcmp((*list)[i], ep) == 0)
            return 0;
    *list = xrealloc(*list, sizeof(char *) * (size_t)(*n + 1));
    (*list)[(*n)++] = xstrdup(ep);
    return 0;
}

void transport_resolved_free(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

int transport_resolve(const char *endpoints, char ***out)
{
    char **list = NULL;
    int n = 0;
    char *copy = xstrdup(endpoints ? endpoints : "");
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (strncmp(tok, "tcp://", 6) != 0) {
            /* ipc:// and inproc:// need no resolution. */
            resolved_add(&list, &n, tok);
            continue;
        }
        char *host = tok + 6;
        char *colon = strrchr(host, ':');
        if (!colon || colon == host || !colon[1])
            goto fail;
        *colon = '\0';
        const char *port = colon + 1;
        char hostbuf[256];
        snprintf(hostbuf, sizeof hostbuf, "%s", host);
        size_t hl = strlen(hostbuf);
        if (hostbuf[0] == '[' && hl > 2 && hostbuf[hl - 1] == ']') {
            hostbuf[hl - 1] = '\0';
            memmove(hostbuf, hostbuf + 1, hl - 1);
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int gai = getaddrinfo(hostbuf, port, &hints, &res);
        if (gai != 0) {
            log_warn(NULL, "cannot resolve %s: %s", hostbuf, gai_strerror(gai));
            goto fail;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            char addr[INET6_ADDRSTRLEN], ep[300];
            if (ai->ai_family == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addr,
                          sizeof addr);
                snprintf(ep, sizeof ep, "tcp://%s:%s", addr, port);
            } else if (ai->ai_family == AF_INET6) {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addr,
                          sizeof addr);
                snprintf(ep, sizeof ep, "tcp://[%s]:%s", addr, port);
            } else {
                continue;
            }
            resolved_add(&list, &n, ep);
        }
        freeaddrinfo(res);
    }
    free(copy);
    *out = list;
    return n;
fail:
    free(copy);
    transport_resolved_free(list, n);
    *out = NULL;
    return -1;
}

size_t transport_pack_envelope(const Kooisv__Envelope *env, uint8_t **buf)
{
    size_t len = kooisv__envelope__get_packed_size(env);
    *buf = xmalloc(len ? len : 1);
    kooisv__envelope__pack(env, *buf);
    return len;
}

/* ---------------------------------------------------------------- blocking client */

struct rpc_client {
    void *sock;
    int connected;
};

rpc_client_t *rpc_client_new(const char *endpoints)
{
    char **eps = NULL;
    int n = transport_resolve(endpoints, &eps);
    if (n <= 0) {
        transport_resolved_free(eps, n > 0 ? n : 0);
        return NULL;
    }
    rpc_client_t *self = xcalloc(1, sizeof *self);
    self->sock = zmq_socket(transport_context(), ZMQ_DEALER);
    int one = 1, linger = 0;
    zmq_setsockopt(self->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger);
    for (int i = 0; i < n; i++)
        if (zmq_connect(self->sock, eps[i]) == 0)
            self->connected++;
    transport_resolved_free(eps, n);
    return self;
}

void rpc_client_destroy(rpc_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zmq_close((*self_p)->sock);
    free(*self_p);
    *self_p = NULL;
}

static int rpc_send(rpc_client_t *self, const uint8_t *buf, size_t len, int64_t until_us)
{
    /* With ZMQ_IMMEDIATE a send only succeeds once a replica is connected: wait for one. */
    while (time_mono_us() < until_us) {
        if (zmq_send(self->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 0) {
            if (zmq_send(self->sock, buf, len, 0) >= 0)
                return 0;
            return -1;
        }
        if (errno != EAGAIN)
            return -1;
        zmq_pollitem_t item = {.socket = self->sock, .events = ZMQ_POLLOUT};
        int64_t left_ms = (until_us - time_mono_us()) / 1000;
        zmq_poll(&item, 1, left_ms > 50 ? 50 : (left_ms > 0 ? left_ms : 0));
    }
    errno = ETIMEDOUT;
    return -1;
}

int rpc_call(rpc_client_t *self, const Kooisv__Envelope *req, int timeout_ms,
             Kooisv__Reply **reply)
{
    *reply = NULL;
    uint8_t *buf = NULL;
    size_t len = transport_pack_envelope(req, &buf);
    int64_t start = time_mono_us();
    int64_t deadline = start + (int64_t)timeout_ms * 1000;
    int64_t resend_at = start + (int64_t)timeout_ms * 500;
    int resent = 0;
    if (rpc_send(self, buf, len, deadline) < 0) {
        free(buf);
        return -1;
    }
    int rc = -1;
    while (time_mono_us() < deadline) {
        int64_t now = time_mono_us();
        if (!resent && now >= resend_at) {
            resent = 1;
            rpc_send(self, buf, len, deadline);
        }
        int64_t until = resent ? deadline : resend_at;
        int wait_ms = (int)((until - now) / 1000);
        zmq_pollitem_t item = {.socket = self->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, wait_ms > 0 ? wait_ms : 1) <= 0)
            continue;
        /* Frames: [empty][reply]; anything else, or a stale reply, is dropped. */
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, self->sock, 0) < 0) {
            zmq_msg_close(&part);
            continue;
        }
        while (zmq_msg_more(&part) && zmq_msg_size(&part) == 0) {
            zmq_msg_close(&part);
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, self->sock, 0) < 0)
                break;
        }
        Kooisv__Reply *r = kooisv__reply__unpack(NULL, zmq_msg_size(&part),
                                                 (const uint8_t *)zmq_msg_data(&part));
        zmq_msg_close(&part);
        if (!r)
            continue;
        if (r->request_id && req->request_id && strcmp(r->request_id, req->request_id) == 0 &&
            r->answers == (uint32_t)req->body_case) {
            *reply = r;
            rc = 0;
            break;
        }
        kooisv__reply__free_unpacked(r, NULL);
    }
    free(buf);
    return rc;
}
