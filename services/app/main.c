/* kooisv-app: the app service. Serves kit applicationSync and authSync (validated by the
 * gateway, spec §4) and operator look-ups over ZeroMQ; owns schema "apps"; keeps clientSecret
 * and users' contact data sealed at rest; tells the seller's application about every committed
 * change through its outbox. */
#include <openssl/crypto.h>

#include "app.h"
#include "migrations.h"
#include "rsaoaep.h"
#include "sealbox.h"
#include "svcrt.h"

static const config_var_t app_vars[] = {
    SVCRT_CONFIG_VARS("tcp://127.0.0.1:7103", "kooisv_app", "apps"),
    {"KOOISV_APP_RSA_PRIVATE_KEY_FILE", "", 0,
     "PEM RSA private key (>= 3072 bits) that decrypts the kit clientSecret (required, or its "
     "alias KOOISV_RSA_PRIVATE_KEY_FILE)"},
    {"KOOISV_RSA_PRIVATE_KEY_FILE", "", 0, "alias of KOOISV_APP_RSA_PRIVATE_KEY_FILE"},
    {"KOOISV_DATA_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "32-byte key (64 hex or base64) sealing secrets and contact data at rest"},
    SVCRT_OUTBOX_CONFIG_VARS,
    SVCRT_RETENTION_CONFIG_VARS,
};

static app_state_t app_state;

static bool app_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
{
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_APPLICATION_SYNC:
        appsync_handle(w, call, env->application_sync);
        return true;
    case KOOISV__ENVELOPE__BODY_AUTH_SYNC:
        authsync_handle(w, call, env->auth_sync);
        return true;
    default:
        return false;
    }
}

/* The RSA key of clientSecret and the data key; exits 2 when either is missing or unusable. */
static void app_configure(svcrt_def_t *def)
{
    const char *why = NULL;
    const char *key_var = "KOOISV_APP_RSA_PRIVATE_KEY_FILE";
    if (!*config_get(key_var) && *config_get("KOOISV_RSA_PRIVATE_KEY_FILE"))
        key_var = "KOOISV_RSA_PRIVATE_KEY_FILE";
    if (!*config_get(key_var))
        svcrt_die("KOOISV_APP_RSA_PRIVATE_KEY_FILE", "required");
    app_state.rsa_key = rsaoaep_load_private(config_get(key_var), &why);
    if (!app_state.rsa_key)
        svcrt_die(key_var, why ? why : "unusable key");
    if (sealbox_parse_key(config_get("KOOISV_DATA_KEY"), app_state.data_key) != 0)
        svcrt_die("KOOISV_DATA_KEY", "must be 32 bytes as 64 hex characters or base64");
    static const uint8_t zero[32];
    if (CRYPTO_memcmp(app_state.data_key, zero, sizeof zero) == 0)
        svcrt_die("KOOISV_DATA_KEY", "all-zero key refused");
    def->seal_key = app_state.data_key;
}

int main(int argc, char **argv)
{
    const pg_stmt_t *const groups[] = {appsync_stmts, authsync_stmts, appadmin_stmts};
    const size_t counts[] = {appsync_stmts_count, authsync_stmts_count, appadmin_stmts_count};
    svcrt_def_t app = {
        SVCRT_KIT_SERVICE("app", "apps"),
        .summary = "app service: kit applicationSync, authSync (schema apps)",
        .vars = app_vars,
        .nvars = sizeof app_vars / sizeof app_vars[0],
        .groups = groups,
        .counts = counts,
        .ngroups = 3,
        .configure = app_configure,
        .handle = app_handle,
        .admin = appadmin_handle,
        .svc = &app_state,
    };
    int rc = svcrt_run(&app, argc, argv);
    EVP_PKEY_free(app_state.rsa_key);
    OPENSSL_cleanse(app_state.data_key, sizeof app_state.data_key);
    return rc;
}
