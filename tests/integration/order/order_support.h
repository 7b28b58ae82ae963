/* order_support: helpers shared by the order service's integration tests (kclient underneath):
 * signed basic calls built with json_pack formats, instance creation, waiting for
 * provisioning, SQL look-ups in schema orders, emulator faults. Failures are cmocka failures. */
#ifndef KOOISV_ORDER_SUPPORT_H
#define KOOISV_ORDER_SUPPORT_H
#include <jansson.h>
#include <stdbool.h>

#include "kclient.h"

/* Call the basic interface with the body json_pack(fmt, ...); asserts HTTP 200 with a valid
 * Body-Sign and a resultCode. Free r with kresp_free. */
void ot_basic(kresp_t *r, const char *fmt, ...);
/* Same, asserting the resultCode is want; the message is returned in r. */
void ot_expect(const char *want, kresp_t *r, const char *fmt, ...);
/* newInstance (test_flag "0"/"1" or NULL = absent) answered 000000; caller frees the id. */
char *ot_new_instance(const char *order_id, const char *line_id, const char *business_id,
                      const char *test_flag);
/* queryInstance of ids (comma list) answered 000000: the "info" array (caller json_decref). */
json_t *ot_query(const char *ids);
/* The info entry of id in info, or NULL (borrowed). */
json_t *ot_info_of(json_t *info, const char *id);
/* Poll queryInstance (with the instance's own testFlag) until id has appInfo; asserts it within
 * timeout_ms. Returns the appInfo object (caller json_decref). */
json_t *ot_wait_provisioned(const char *id, int timeout_ms);
/* newInstance of order_id's first line (order_id NULL: a fresh ot_order_id) with test_flag
 * as ot_new_instance, then ot_wait_provisioned up to timeout_ms; the instance id (caller
 * frees). */
char *ot_provisioned(const char *order_id, const char *test_flag, int timeout_ms);
/* First value of sql ($1 = a, $2 = b; NULL = unused) as text (caller frees) or NULL. */
char *ot_sql(const char *sql, const char *a, const char *b);
/* Poll (every 100 ms, up to timeout_ms) until the first value of sql ($1 = a, $2 = b; NULL =
 * unused) is want (a boolean SQL value reads "t"); false when it never was. */
bool ot_wait_value(int timeout_ms, const char *sql, const char *a, const char *b, const char *want);
/* The instance's state ("active"...), NULL when there is no such instance. Caller frees. */
char *ot_state_of(const char *id);
/* Fail the test unless the instance is in state want. */
void ot_assert_state(const char *id, const char *want);
/* Epoch ms of the instance's expiry, -1 when it has none. */
long long ot_expire_ms_of(const char *id);
/* First value of sql as a number; asserts it exists. */
long long ot_sql_num(const char *sql, const char *a, const char *b);
/* After a restart of the order service: poll until the gateway reaches it again (its ZeroMQ
 * reconnect takes a moment); asserts it does within timeout_ms. */
void ot_wait_service(int timeout_ms);
/* Emulator fault (JSON body of POST /_emulator/faults); asserts it was accepted. */
void ot_fault(const char *json);
/* Clear the Query Order fault. */
void ot_clear_faults(void);
/* ot_clear_faults as a cmocka teardown (of a test or of the group); returns 0. */
int ot_clear_faults_teardown(void **state);
/* Wait up to timeout_ms until the provisioning job of id made min_attempts attempts and is in
 * state st; fails the test otherwise. */
void ot_wait_job(const char *id, long min_attempts, const char *st, int timeout_ms);
/* A new instance whose Query Order calls meet the fault described by fields (JSON members
 * after "path"; NULL: none, provisioned without interference); the fault matches this order
 * only, so leftover jobs of other tests cannot consume it. Caller frees the id. */
char *ot_new_with_fault(const char *fields);
/* Attempts made so far by the instance's jobs (one job per instance where used). */
long long ot_job_attempts(const char *id);
/* Wait up to timeout_ms until id is provisioned; then it was provisioned exactly once (one
 * activation in history and outbox, the job done) after at least min_attempts attempts. */
void ot_assert_provisioned_once(const char *id, int timeout_ms, long long min_attempts);
/* Another replica (lease owner "elsewhere:1") takes the running provisioning job of id over
 * for an hour; waits until this runner's log says it lost the lease, then checks the job is
 * still the other's. The job's id (caller frees). */
char *ot_take_over_job(const char *id);
/* The other replica of ot_take_over_job gives job back: due at once for any runner. */
void ot_give_back_job(const char *job);
/* Restart the order service with the KEY=VALUE lines extra added to <suite>/env/order.env (the
 * file saved first into saved); 0 once the gateway reaches it again, -1 otherwise. */
int ot_order_env_apply(kc_envfile_t *saved, const char *extra);
/* Put the saved <suite>/env/order.env back and restart the order service. */
void ot_order_env_restore(kc_envfile_t *saved);
/* True when the order service's log (<suite>/logs/order.log) holds needle (a C string). */
bool ot_order_logged(void *needle);
/* Register an order with the emulator (JSON body of POST /_emulator/orders, printf-style);
 * asserts it was accepted. */
void ot_order_register(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A fresh order id the emulator answers (a yearly purchase) and its first line; caller frees. */
char *ot_order_id(void);
char *ot_line_of(const char *order_id);
/* refreshInstance of id by order (its first line) with scene and expireTime expire; asserts
 * 000000. */
void ot_refresh(const char *id, const char *order, const char *scene, const char *expire);
/* upgradeInstance of id by order (its first line); asserts 000000. */
void ot_upgrade(const char *id, const char *order);

/* The emulator's recorded calls of path (the last 100) whose query or body holds text. */
json_t *ot_emulator_calls(const char *path, const char *text);

/* Run bin (argv: bin alone) with envp, standard input and output /dev/null; its exit status
 * (-1 when it did not exit), its standard error in err (NUL-terminated, cut at errlen). */
int ot_run(const char *bin, char *const envp[], char *err, size_t errlen);
/* Fail the test unless bin, run with envp, refuses to start: exit status 2 and one line on
 * standard error that starts "<prog>: <var>: ". */
void ot_assert_refused(const char *bin, const char *prog, const char *var, char *const envp[]);
/* An environment with which kooisv-order gets past its required settings (fresh CURVE keys,
 * the suite's license key, a database that is not there) plus the line extra
 * ("NAME=VALUE"): for checks that a bad setting stops it. NULL-terminated; free it with
 * ot_env_free. */
char **ot_order_start_env(const char *extra);
/* Free what ot_order_start_env made. */
void ot_env_free(char **env);
#endif
