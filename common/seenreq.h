/* seenreq: the requests a service replica has answered recently, by request id and body case,
 * so that a copy of an answered request (a client's resend, a retry of a call that timed out)
 * is not served again by this replica but gets the first answer, byte for byte. A copy that
 * arrives while the first is still being served is served too (the client only resends calls
 * that are safe to repeat, and a stuck worker must not hold the other copy up). Bounded: a
 * fixed number of slots for a window of time; an answer larger than the cap is not kept (its
 * copy is served again). Every function may be called from any thread. */
#ifndef KOOISV_SEENREQ_H
#define KOOISV_SEENREQ_H
#include <stddef.h>
#include <stdint.h>

typedef struct seenreq seenreq_t;

typedef enum {
    SEENREQ_NEW,      /* not answered (within the window): serve it */
    SEENREQ_ANSWERED, /* answered already: *reply holds the answer's bytes (caller frees) */
} seenreq_state_t;

/* A table of `slots` entries kept window_ms, answers up to max_reply bytes. Caller owns it. */
seenreq_t *seenreq_new(size_t slots, int64_t window_ms, size_t max_reply);
/* Destroy and set *self_p to NULL (safe on NULL). */
void seenreq_destroy(seenreq_t **self_p);
/* Take request (rid, body_case) at now_ms; see seenreq_state_t. */
seenreq_state_t seenreq_take(seenreq_t *self, const char *rid, uint32_t body_case, int64_t now_ms,
                             uint8_t **reply, size_t *len);
/* The request taken by seenreq_take was answered with these bytes (copied when small enough).
 * Callers keep only answers worth repeating (kooisv: successes). */
void seenreq_answer(seenreq_t *self, const char *rid, uint32_t body_case, const uint8_t *reply,
                    size_t len);

#endif
