/* log: one structured line per event on stderr, logfmt style:
 *   ts=2026-11-28T10:00:00.123Z level=info svc=gateway rid=<request id> msg="..." k=v ...
 * Never pass a key, signature, password or secret to these functions. */
#ifndef KOOISV_LOG_H
#define KOOISV_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Set the service name and minimum level (from KOOISV_LOG_LEVEL: debug|info|warn|error). */
void log_init(const char *service);
/* Write one line; rid may be NULL ("-"). fmt is free text (quoted and escaped in the output). */
void log_msg(log_level_t level, const char *rid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write one line made of pre-formatted key=value fields (caller escapes values with log_quote). */
void log_fields(log_level_t level, const char *rid, const char *fields);
/* Quote s for a logfmt value into buf (always terminated); returns buf. */
char *log_quote(const char *s, char *buf, unsigned long buflen);

/* A rate limit for one kind of line (refusals a peer can provoke): at most one a second. Zero-
 * initialise (static); shared by threads. */
typedef struct {
    long last_s;         /* second of the last line let through */
    unsigned long quiet; /* calls held back since */
} log_gate_t;
/* True when a line may be written now (at most once a second per gate); *quiet then gets how
 * many calls were held back since the last such line. */
int log_gate_pass(log_gate_t *gate, unsigned long *quiet);

#define log_debug(rid, ...) log_msg(LOG_DEBUG, rid, __VA_ARGS__)
#define log_info(rid, ...) log_msg(LOG_INFO, rid, __VA_ARGS__)
#define log_warn(rid, ...) log_msg(LOG_WARN, rid, __VA_ARGS__)
#define log_error(rid, ...) log_msg(LOG_ERROR, rid, __VA_ARGS__)

#endif
