#include "rpc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "endpoint.h"
#include "timeutil.h"
#include "transport.h"
#include "xmalloc.h"
#include "zmqauth.h"

struct rpc_client {
    void *sock;
    int connected;
};

rpc_client_t *rpc_client_new(const char *endpoints, const char *server_key)
{
    char **eps = NULL;
    int n = endpoint_resolve(endpoints, &eps);
    if (n <= 0) {
        endpoint_list_free(eps, n > 0 ? n : 0);
        return NULL;
    }
    rpc_client_t *self = xcalloc(1, sizeof *self);
    self->sock = zmq_socket(transport_context(), ZMQ_DEALER);
    int one = 1, linger = 0;
    zmq_setsockopt(self->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmqauth_client(self->sock, server_key) != 0) {
        endpoint_list_free(eps, n);
        rpc_client_destroy(&self);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (zmq_connect(self->sock, eps[i]) == 0)
            self->connected++;
    endpoint_list_free(eps, n);
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

int rpc_call(rpc_client_t *self, const Kooisv__Envelope *req, int timeout_ms, Kooisv__Reply **reply)
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
        Kooisv__Reply *r =
            kooisv__reply__unpack(NULL, zmq_msg_size(&part), (const uint8_t *)zmq_msg_data(&part));
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
