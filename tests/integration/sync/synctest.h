/* synctest: helpers shared by the kit sync integration tests: signed kit calls with the answer
 * checked, SQL snapshots proving that a refused call changed nothing, operator actions sent
 * straight to the tenant and app services over ZeroMQ, and the emulator's webhook log. */
#ifndef KOOISV_SYNCTEST_H
#define KOOISV_SYNCTEST_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char code[16]; /* resultCode, "" when the answer had none */
    char msg[512]; /* resultMsg */
    int status;    /* HTTP status */
} kit_answer_t;

/* POST a kit call whose body is printf(fmt, ...) through gateway 1; fails the test when no
 * answer arrived or Body-Sign does not verify. */
kit_answer_t kit_call(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* kit_call that must succeed: fails the test, naming the body and the answer, unless the
 * call answered 000000. */
void kit_ok(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same as kit_call with chosen x-timestamp/x-nonce/x-sign (kc_kit_ex conventions). */
kit_answer_t kit_call_ex(const char *name, const char *body, const char *ts, const char *nonce,
                         const char *sign);
/* Assert the call answered code (and, when msg_part is not NULL, that resultMsg contains it). */
#define assert_kit(answer, want_code, msg_part)                                                    \
    synctest_assert_kit(&(answer), want_code, msg_part, __FILE__, __LINE__)
void synctest_assert_kit(const kit_answer_t *a, const char *code, const char *msg_part,
                         const char *file, int line);

/* Load the suite env; outside ctest (no fixture) print why and exit 1. */
void synctest_require_suite(void);

/* A kit call that must be refused: body is a printf format (%1$s = instance, %2$s = tenant). */
typedef struct {
    const char *name;
    const char *body;
    const char *code;
    const char *msg; /* part of resultMsg; NULL = any non-empty message */
} kit_refusal_t;
/* Send each of the n refusals for (inst, tenant); fail unless each answers HTTP 200 with its
 * code and message and the tenant's rows (tenant_digest) are as they were before them. */
void kit_refusals_check(const kit_refusal_t *list, size_t n, const char *inst, const char *tenant);
/* Send one kit call 8 times at once through both gateways; fail unless every answer is 000000. */
void kit_concurrent_duplicates(const char *name, const char *body);
/* clientSecret as the marketplace sends it: secret RSA-OAEP encrypted (variant 0..2) with the
 * suite's public key, base64. Caller frees. */
char *kit_encrypt_secret(int variant, const char *secret);

/* A fresh id: prefix + 16 characters. Caller frees. */
char *uid(const char *prefix);
/* First column of the first row as a long (-1 when no row). */
long sql_long(const char *sql, int n, const char *const *params);
/* First column of the first row, or NULL. Caller frees. */
char *sql_text(const char *sql, int n, const char *const *params);
/* Digest of every row of both sync schemas that belongs to tenant_id (outbox rows by id only):
 * equal digests before and after a call mean the call changed nothing. Caller frees. */
char *tenant_digest(const char *tenant_id);
/* Fail unless tenant_digest(tenant_id) still equals before (a tenant_digest); frees before. */
#define assert_tenant_unchanged(tenant_id, before)                                                 \
    synctest_assert_unchanged(tenant_id, before, __FILE__, __LINE__)
void synctest_assert_unchanged(const char *tenant_id, char *before, const char *file, int line);
/* Outbox rows of tenant_id whose event_type is type (NULL = any), in schema "tenants"/"apps". */
long outbox_count(const char *schema, const char *tenant_id, const char *type);

/* Send an AdminRequest straight to a service: svc "tenant" or "app", caller kind (e.g.
 * "operator"), action, then NULL-terminated key/value pairs. Returns the result code (static
 * per call site is not needed: the caller owns *json, the AdminResult text or NULL). */
char *admin_rpc(const char *svc, const char *caller_kind, const char *action, char **json, ...)
    __attribute__((sentinel));

/* Fail unless svc ("tenant" / "app") answers an admin action nobody serves with 000002 naming
 * the action and the service. */
void assert_unknown_action_refused(const char *svc);

/* Webhook calls the emulator recorded under webhook/sync whose body mentions needle. */
long webhook_calls_with(const char *needle);
/* Wait up to timeout_ms for at least n such calls; returns the count seen. */
long webhook_wait(const char *needle, long n, int timeout_ms);
/* True when every recorded webhook/sync call mentioning needle has signature_ok true. */
bool webhook_signatures_ok(const char *needle);

/* Run fn(arg, i) on n threads at once (a barrier starts them together) and join them. */
void run_concurrently(int n, void (*fn)(void *arg, int i), void *arg);

#endif
