/* pushwire: the usage-data call of spec §6 on the wire, without database or clock: the body of a
 * batch (canonical JSON, the exact bytes that are signed and sent), its signed headers, and what
 * the marketplace's answer means for the batch. push.c decides what to do with the verdict. */
#ifndef KOOISV_PUSHWIRE_H
#define KOOISV_PUSHWIRE_H
#include <stddef.h>
#include <stdint.h>

enum { PUSHWIRE_MAX_RECORDS = 1000 }; /* spec §6: records per request */

/* One record of a batch (strings not owned). */
typedef struct {
    const char *metering_sn;
    const char *instance_id;
    const char *usage_value; /* decimal text > 0, at most 4 decimals */
    int64_t begin_ms, end_ms, record_ms;
} pushwire_record_t;

/* What an answer (or its absence) means for the batch that was sent. */
typedef enum {
    PUSHWIRE_ACCEPTED, /* MKT.0000: every record of the batch is stored (or a known duplicate) */
    PUSHWIRE_RETRY,    /* no answer, timeout, 5xx, rate limited, internal or batch-level error */
    PUSHWIRE_REFUSED,  /* a record-level refusal (MKT.9001/9002/9004...): index names the record,
                          or is -1 when the answer does not say which */
    PUSHWIRE_SPLIT,    /* MKT.9003: too many records; send the batch in halves */
} pushwire_verdict_t;

typedef struct {
    pushwire_verdict_t verdict;
    long index;        /* PUSHWIRE_REFUSED: the refused record's position in the batch, or -1 */
    char code[24];     /* the marketplace's error_code, or NETWORK / HTTP_<status> */
    char message[256]; /* its error_msg (control characters replaced), or why nothing came */
} pushwire_answer_t;

/* Format epoch ms as UTC "yyyyMMdd'T'HHmmss'Z'" into out; returns out. */
char *pushwire_time(int64_t ms, char out[17]);
/* The request body {"usage_records":[...]} of n (1..PUSHWIRE_MAX_RECORDS) records in canonical
 * form. Caller frees. */
char *pushwire_body(const pushwire_record_t *records, size_t n);
/* The header lines of one request of body signed with key (a fresh nonce, ts = now_ms), as a
 * NULL-terminated array for httpc_request. Caller frees with pushwire_headers_free. */
char **pushwire_headers(const char *key, const char *body, int64_t now_ms);
/* Free what pushwire_headers returned; NULL is fine. */
void pushwire_headers_free(char **headers);
/* Judge an answer: status 0 = none arrived (transport_error says why); body may be NULL.
 * batch_size bounds the record index read from the message ("usage_records[N]..."). */
void pushwire_read(int status, const char *body, size_t body_len, const char *transport_error,
                   size_t batch_size, pushwire_answer_t *out);

#endif
