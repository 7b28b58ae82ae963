/* provisioner: makes the credentials (appInfo) of a new instance, chosen by KOOISV_PROVISIONER:
 *   builtin: URLs from templates ({instanceId}, {orderId}), a derived user name and a random
 *            strong password, nothing leaves the process;
 *   webhook: an HMAC-signed POST (common/webhook.h) of {event:"instance.provision", ...} to the
 *            seller's application, which answers {frontEndUrl, adminUrl, userName, password, memo}.
 * The caller retries failures with backoff and stores the result sealed. */
#ifndef KOOISV_PROVISIONER_H
#define KOOISV_PROVISIONER_H
#include <stdbool.h>
#include <stddef.h>

typedef enum { PROVISIONER_BUILTIN = 0, PROVISIONER_WEBHOOK } provisioner_kind_t;

typedef struct {
    provisioner_kind_t kind;
    const char *frontend_template;
    const char *admin_template;
    const char *memo;
    const char *webhook_url;
    const char *webhook_secret;
    const char *webhook_ca_file; /* NULL/"" = system store */
    int webhook_timeout_ms;
} provisioner_config_t;

/* What the application is told about the instance. */
typedef struct {
    const char *instance_id;
    const char *order_id;
    const char *order_line_id;
    const char *product_id;    /* may be NULL */
    const char *sku_code;      /* may be NULL */
    const char *charging_mode; /* may be NULL */
    const char *expire_time;   /* ISO text or NULL */
    bool test_flag;
    const char *request_id; /* for the log */
} provisioner_request_t;

/* appInfo in plain text; owned strings (NULL when absent). */
typedef struct {
    char *front_end_url;
    char *admin_url;
    char *user_name;
    char *password;
    char *memo;
} provisioner_credentials_t;

/* Parse "builtin" or "webhook"; false otherwise. */
bool provisioner_kind_parse(const char *name, provisioner_kind_t *out);
/* Make the credentials of req. 0, or -1 with a one-line reason in err. */
int provisioner_provision(const provisioner_config_t *cfg, const provisioner_request_t *req,
                          provisioner_credentials_t *out, char *err, size_t errlen);
/* Expand {instanceId} and {orderId} in tmpl with URL-escaped values. Caller owns the result. */
char *provisioner_expand(const char *tmpl, const char *instance_id, const char *order_id);
/* Validate an application's answer (JSON text) into out; 0 or -1 with a reason in err. */
int provisioner_parse_answer(const char *body, size_t len, provisioner_credentials_t *out,
                             char *err, size_t errlen);
/* Wipe and free the strings of c. */
void provisioner_credentials_free(provisioner_credentials_t *c);

#endif
