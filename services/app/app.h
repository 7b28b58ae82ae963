/* The app service (schema "apps"): kit applicationSync and authSync (spec §4) plus the
 * operator look-ups app.users and app.secret. */
#ifndef KOOISV_APP_H
#define KOOISV_APP_H
#include <openssl/evp.h>
#include <stdint.h>

#include "envelope.pb-c.h"
#include "svcrt.h"

/* Shared by every worker, read-only after start-up. */
typedef struct {
    EVP_PKEY *rsa_key;    /* seller's private key for clientSecret (>= 3072 bits) */
    uint8_t data_key[32]; /* sealbox key for secrets and contact data at rest */
} app_state_t;

extern const pg_stmt_t appsync_stmts[];
extern const size_t appsync_stmts_count;
extern const pg_stmt_t authsync_stmts[];
extern const size_t authsync_stmts_count;
extern const pg_stmt_t appadmin_stmts[];
extern const size_t appadmin_stmts_count;

/* applicationSync: add/modify decrypt clientSecret (000101 when no OAEP variant opens it) and
 * store it sealed; delete removes the app and its users (success when already gone). */
void appsync_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__ApplicationSync *m);
/* authSync: add, modify (upsert), delete, cancel authorisation (flag 3: the user stays). */
void authsync_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AuthSync *m);
/* Serve app.users and app.secret (operators only); false when action is neither. */
bool appadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);

/* Associated data binding a sealed value to its row and column. Caller owns the result. */
char *app_secret_aad(const char *instance_id, const char *tenant_id, const char *app_id);
char *app_contact_aad(const char *column, const char *instance_id, const char *tenant_id,
                      const char *app_id, const char *user_name);

#endif
