/* rpc: the blocking client side of the transport (transport.h), for services, tools and tests
 * (the gateway has its own asynchronous dispatcher): one DEALER connected to every replica of a
 * service, a request sent and its reply matched by request id and body case. */
#ifndef KOOISV_RPC_H
#define KOOISV_RPC_H
#include "envelope.pb-c.h"

typedef struct rpc_client rpc_client_t;

/* A client connected to every replica of endpoints (endpoint.h), a CURVE client (zmqauth.h,
 * this process's key) of the servers with public key server_key; NULL if endpoints is malformed
 * or resolves to nothing, or the keys are missing. Caller owns it. */
rpc_client_t *rpc_client_new(const char *endpoints, const char *server_key);
/* Destroy and set *self_p to NULL. */
void rpc_client_destroy(rpc_client_t **self_p);
/* Send req (request_id must be set) and wait up to timeout_ms for the matching reply. Retries
 * once on another replica when half the time passed without an answer. Returns 0 with *reply
 * set (caller frees with kooisv__reply__free_unpacked(*reply, NULL)), or -1 on timeout / no
 * replica. */
int rpc_call(rpc_client_t *self, const Kooisv__Envelope *req, int timeout_ms,
             Kooisv__Reply **reply);

#endif
