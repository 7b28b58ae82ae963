/* dispatch: the gateway's asynchronous calls to the services over ZeroMQ inside libevent.
 * One dispatch_t per gateway thread (own event base): one DEALER socket per service, connected
 * to every replica as a CURVE client (host names re-resolved periodically), replies matched by
 * request id, a deadline per call. ZMQ_FD is edge-triggered: it is drained on every wake-up and
 * after every send. */
#ifndef KOOISV_DISPATCH_H
#define KOOISV_DISPATCH_H
#include <event2/event.h>
#include "envelope.pb-c.h"
#include "services.h"

typedef struct dispatch dispatch_t;

/* Called exactly once per dispatch_call: reply is the service's answer (the callback owns it and
 * frees it with kooisv__reply__free_unpacked(reply, NULL)), or NULL when no replica answered in
 * time or none is connected. */
typedef void (*dispatch_done_fn)(Kooisv__Reply *reply, void *arg);

/* A dispatcher on base; endpoints[i] is the comma list for service i ("" = not configured),
 * server_keys[i] the CURVE public key its replicas share (zmqauth.h; the process's own key must
 * be set up). NULL when a configured service's socket cannot be made (logged). */
dispatch_t *dispatch_new(struct event_base *base, const char *const endpoints[SVC__COUNT],
                         const char *const server_keys[SVC__COUNT]);
/* Cancel pending calls (their callbacks run with NULL), close sockets, set *self_p to NULL. */
void dispatch_destroy(dispatch_t **self_p);
/* Send env (request_id set) to svc; done runs later on base's thread, never inside this call.
 * A call that is safe to repeat (reads, and writes keyed by the marketplace's ids: see
 * resend_safe in dispatch.c) is sent once more, to the next replica, when half its time has
 * passed without an answer; then a failure answer is held until the other copy answers or the
 * time is up, so a fast failure of one copy never beats a success of the other. Returns 0, or
 * -1 if the service is not configured (done is then not called). */
int dispatch_call(dispatch_t *self, service_id_t svc, const Kooisv__Envelope *env, int timeout_ms,
                  dispatch_done_fn done, void *arg);

#endif
