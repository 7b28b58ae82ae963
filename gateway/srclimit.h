/* srclimit: what an unauthenticated caller may cost, per source address. Two budgets:
 *  - failures: each call refused before it was authenticated (bad or missing signature, stale
 *    or missing timestamp, malformed nonce) takes a token from its source's bucket, refilled at
 *    `rate` per second up to `burst`; a source with an empty bucket is throttled: its calls are
 *    refused before any parsing or HMAC until the bucket refills;
 *  - records: the first `records` such refusals of a source in a window (60 s) get an audit
 *    record each; the rest are counted, and the count is handed out once the window has ended
 *    (srclimit_summaries), to be recorded as one entry.
 * The table is bounded (sources beyond it share nothing: the least recently seen is evicted,
 * its unreported count kept for the summaries). Every function may be called from any thread. */
#ifndef KOOISV_SRCLIMIT_H
#define KOOISV_SRCLIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srclimit srclimit_t;

typedef struct {
    char source[64];
    long count;      /* refusals not recorded one by one */
    int64_t from_ms; /* the window they fell in */
    int64_t to_ms;
} srclimit_summary_t;

/* A limiter: rate <= 0 never throttles; records <= 0 records every refusal; window_ms the
 * length of a record window (60000 in production). Caller owns it. */
srclimit_t *srclimit_new(double rate, int burst, int records, int64_t window_ms);
/* Destroy and set *self_p to NULL (safe on NULL). */
void srclimit_destroy(srclimit_t **self_p);
/* True when source has no failure budget left at now_ms: refuse its call at once. */
bool srclimit_throttled(srclimit_t *self, const char *source, int64_t now_ms);
/* A call of source was refused before authentication: take a token. */
void srclimit_failed(srclimit_t *self, const char *source, int64_t now_ms);
/* Whether this refusal of source gets an audit record of its own (true) or is only counted for
 * the window's summary (false). */
bool srclimit_record(srclimit_t *self, const char *source, int64_t now_ms);
/* Move up to max summaries of windows that ended by now_ms (sources with a count) into out;
 * returns how many. */
size_t srclimit_summaries(srclimit_t *self, int64_t now_ms, srclimit_summary_t *out, size_t max);

#endif
