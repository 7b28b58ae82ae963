/* kclient: what an integration test needs to talk to a running suite (tests/harness): the
 * suite's settings, signed marketplace calls over real HTTPS (checking Body-Sign), admin API
 * calls, PostgreSQL as superuser, process control and the emulator's control API.
 * Every function may be called from several threads at once. */
#ifndef KOOISV_KCLIENT_H
#define KOOISV_KCLIENT_H
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "rpc.h"

typedef struct {
    int status; /* HTTP status; 0 when no response arrived (error says why) */
    char *body; /* NUL-terminated response body ("" when none) */
    size_t len;
    json_t *json;     /* body parsed as JSON, or NULL */
    const char *code; /* "resultCode" (else "error_code") of json, or NULL; borrowed */
    int body_sign_ok; /* 1 when Body-Sign verifies with the expected key, else 0 */
    char *request_id; /* X-Request-Id response header, or NULL */
    char **headers;   /* "Name: value" strings, NULL-terminated (never NULL after a call) */
    char error[128];  /* transport failure when status == 0 */
} kresp_t;

/* Load $KOOISV_SUITE_ENV, else <build>/suite/suite.env (KEY=VALUE lines, # comments). Safe to
 * call repeatedly: loads once (a failed load is retried). 0 on success, -1 when the file cannot
 * be read. */
int suite_env_load(void);
/* A suite test's main: load suite.env (exit status 1 with a message when it is missing), then run
 * the cmocka group tests (an array) with setup and teardown (NULL = none). */
#define KC_SUITE_MAIN(tests, setup, teardown)                                                    \
    (suite_env_load() != 0                                                                       \
         ? (fprintf(stderr, "no suite.env: run under the suite fixture\n"), 1)                   \
         : cmocka_run_group_tests(tests, setup, teardown))
/* Value of name from the suite env file (loaded on demand), else from the process
 * environment, else NULL. Borrowed: valid for the life of the process. */
const char *suite_get(const char *name);

/* A ZeroMQ client of the suite's service svc ("order", "tenant", "app", "audit") speaking as
 * the gateway: its CURVE key (KOOISV_CURVE_SECRET_KEY_FILE of the suite env, taken once per
 * process) and the service's public key (KOOISV_<SVC>_SERVER_KEY). Fails the test when the
 * suite does not name them. Caller destroys it (rpc_client_destroy). */
rpc_client_t *kc_rpc_client(const char *svc);

/* Send this thread's kc_basic/kc_kit/kc_raw calls to gateway 1 (KOOISV_URL, the default) or
 * gateway 2 (KOOISV_GATEWAY2_URL: the suite runs two, to test cross-replica behaviour). */
void kc_use_gateway(int which);

/* Basic interface call (spec §2): POST body to KOOISV_URL signed with KOOISV_BASIC_KEY, a fresh
 * nonce and the current time. 0 when a response arrived (any status), -1 otherwise.
 * out is always filled; free it with kresp_free. */
int kc_basic(const char *body, kresp_t *out);
/* Same with chosen values: ts/nonce NULL = parameter omitted; signature NULL = the correct
 * signature for body/ts/nonce, "" = parameter omitted, else sent as given. */
int kc_basic_ex(const char *body, const char *ts, const char *nonce, const char *signature,
                kresp_t *out);
/* The query string ("signature=..&timestamp=..&nonce=..") that signs body as a basic-interface
 * call with KOOISV_BASIC_KEY, a fresh nonce and the current time, for clients of their own
 * (kconn). Caller frees; NULL when the suite has no basic key. */
char *kc_basic_query(const char *body);
/* Kit sync call (spec §4): POST body to KOOISV_URL/produceAPI/v2/<name> with x-timestamp,
 * x-nonce and x-sign made with KOOISV_KIT_KEY. Same return convention as kc_basic. */
int kc_kit(const char *name, const char *body, kresp_t *out);
/* Same with chosen header values, conventions as kc_basic_ex (NULL/"" as there). */
int kc_kit_ex(const char *name, const char *body, const char *ts, const char *nonce,
              const char *sign, kresp_t *out);
/* Anything else to the gateway: path is appended to the scheme://host:port of KOOISV_URL
 * (e.g. "/produce?x=1"), or used as is when it starts with "http". headers is a
 * NULL-terminated list of "Name: value" or NULL; body may be NULL. Body-Sign is checked with
 * the basic key. Same return convention as kc_basic. */
int kc_raw(const char *method, const char *path, const char *const *headers, const char *body,
           size_t len, kresp_t *out);
/* Admin API: method to KOOISV_ADMIN_URL + path_and_query, "Authorization: Bearer <token>"
 * when token is not NULL, JSON body (may be NULL). */
int kc_admin(const char *method, const char *path_and_query, const char *token, const char *body,
             kresp_t *out);
/* Emulator control API: method to KOOISV_EMULATOR_URL + path (e.g. "/_emulator/faults"). */
int kc_emulator(const char *method, const char *path, const char *body, kresp_t *out);
/* Value of a response header (case-insensitive name) or NULL. */
const char *kresp_header(const kresp_t *r, const char *name);
/* Fill out->json, ->code (resultCode, else error_code) and ->request_id (X-Request-Id) from the
 * body and headers already in out. */
void kresp_parse(kresp_t *out);
/* Free what a kc_* call filled; safe on a zeroed or already freed kresp_t. */
void kresp_free(kresp_t *r);

/* Superuser connection to KOOISV_PG_SUPER_DSN, one per thread, reconnected when broken;
 * NULL (with a message on stderr) if it cannot connect. Owned by kclient: do not PQfinish. */
PGconn *kc_pg(void);
/* First column of the first row of sql ($1.. text params), or NULL when there is no row, the
 * value is SQL NULL or the query failed (message on stderr). Caller frees. */
char *kc_sql_value(const char *sql, int nparams, const char *const *params);
/* Number of rows sql returns (not a count(*) value: use kc_sql_value), -1 on error. */
long kc_sql_count(const char *sql, int nparams, const char *const *params);
/* Run a command (INSERT/UPDATE/DDL); rows affected, or -1 on error (message on stderr). */
long kc_sql_exec(const char *sql, int nparams, const char *const *params);

/* A suite process's env file (<suite>/env/<proc>.env, read when the process restarts), as it
 * was before a test added settings to it. */
typedef struct {
    char *path;
    char *saved; /* its text, NULL when there was none */
} kc_envfile_t;

/* Remember proc's env file. */
void kc_envfile_save(kc_envfile_t *self, const char *proc);
/* Write the remembered text followed by extra (making env/ when missing); fails the test when it
 * cannot. */
void kc_envfile_write(const kc_envfile_t *self, const char *extra);
/* Put the remembered text back (remove the file when there was none) and free it. */
void kc_envfile_restore(kc_envfile_t *self);

/* Run tests/harness/suite.sh <verb> <build dir> [svc] (svc may be NULL) and return its exit
 * status, -1 if it could not run. */
int kc_suite(const char *verb, const char *svc);
/* Run <build>/gateway/kooisvctl --env-file <suite.env> args... (args NULL-terminated) with
 * stdin_text as its standard input (NULL: empty); its exit status (-1 if it could not run),
 * and its standard output in *out (caller frees) when out is not NULL. */
int kc_ctl(char **out, const char *stdin_text, const char *const *args);
/* kc_ctl that also keeps the standard error in *err (caller frees) when err is not NULL; up
 * to 36 arguments. */
int kc_ctl_err(char **out, char **err, const char *stdin_text, const char *const *args);
/* A TCP port on 127.0.0.1 that no socket uses now (the kernel's choice for a bind to port 0,
 * released at once), or -1. */
int kc_free_port(void);
/* Start another replica of the suite's service svc ("billing"): the running replica's
 * environment (read from /proc) with KOOISV_BIND on a free port (kc_free_port), logging to
 * <suite>/logs/<svc>2.log. Its pid (stop it with SIGTERM and waitpid), or -1 (message on
 * stderr). */
pid_t kc_spawn_replica(const char *svc);
/* A unique id for test data: prefix + 16 characters [0-9A-Z] (time then randomness), so ids
 * sort by creation. Caller frees. */
char *kc_uid(const char *prefix);
/* Call done(arg) every interval_ms until it returns true or timeout_ms passes; returns its
 * last answer. For asynchronous effects (provisioning, outbox delivery). */
bool kc_wait(int timeout_ms, int interval_ms, bool (*done)(void *arg), void *arg);
/* Ask count(arg) every 100 ms until it reaches n or timeout_ms passes; true when it reached n
 * (rows written, events or records delivered by a background thread). */
bool kc_wait_count(int timeout_ms, long long (*count)(const void *arg), const void *arg,
                   long long n);
/* The value of one series of the suite gateway's /metrics, named exactly as exposed (name and
 * labels: "kooisv_outbox_failed{service=\"order\",source=\"order\"}"); -1 when absent or
 * when /metrics did not answer 200. */
double kc_metric(const char *series);

#endif
