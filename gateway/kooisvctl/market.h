/* market: kooisvctl's marketplace client. It sends any basic activity (spec §3) or kit sync call
 * (spec §4) to a kooisv production URL signed as the marketplace signs it (common/mktcall),
 * checks the answer's Body-Sign and decrypts appInfo (common/appcrypt). `market check`
 * (marketcheck.h) runs the seller console's debugging cases with the same calls. */
#ifndef KOOISV_MARKET_H
#define KOOISV_MARKET_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define MARKET_EXIT_FAILED 1
#define MARKET_EXIT_USAGE 2

/* Where and with which keys calls go: flags, else settings (ctlenv). */
typedef struct {
    char *url;       /* production URL (KOOISV_URL) */
    char *basic_key; /* KOOISV_BASIC_KEY(_FILE); NULL when not given */
    char *kit_key;   /* KOOISV_KIT_KEY(_FILE); NULL when not given */
    char *ca_file;   /* KOOISV_CA_FILE; NULL = the system store (the peer is always verified) */
    char *rsa_public_key_file; /* KOOISV_RSA_PUBLIC_KEY_FILE: encrypts clientSecret */
    int timeout_ms;
} market_conf_t;

/* One answer. */
typedef struct {
    int status; /* HTTP status; 0 when none arrived (error says why) */
    char *body; /* "" when none */
    size_t len;
    json_t *json;     /* body as JSON, or NULL */
    const char *code; /* resultCode, or NULL; borrowed from json */
    const char *msg;  /* resultMsg, or ""; borrowed */
    int body_sign;    /* 1 valid, 0 invalid, -1 absent (mktcall_body_sign) */
    char *request_id; /* X-Request-Id, or NULL */
    char error[256];  /* transport failure */
} market_answer_t;

/* conf from these flags (NULL: not given), else the settings (ctlenv). 0, or
 * MARKET_EXIT_USAGE with the reason on stderr: no URL or not http(s), a named file unreadable. */
int market_conf_from_flags(market_conf_t *conf, const char *url, const char *basic_key_file,
                           const char *kit_key_file, const char *ca_file, const char *rsa_file,
                           const char *timeout);
/* Free what market_conf_from_flags filled (keys wiped). */
void market_conf_free(market_conf_t *conf);
/* Send body to kit sync interface kit_name (NULL: a basic call) with conf's key of that family;
 * ts/nonce NULL = fresh ones, signature NULL = computed. 0 when an answer arrived, -1 otherwise
 * (out->error says why). out is always filled; free it with market_answer_free. */
int market_send(const market_conf_t *conf, const char *kit_name, const char *body, const char *ts,
                const char *nonce, const char *signature, market_answer_t *out);
/* Free what market_send filled; safe on a zeroed answer. */
void market_answer_free(market_answer_t *a);
/* The decrypted appInfo of a queryInstance (or any) answer: an array of {instanceId, userName,
 * password} for every appInfo with encrypted credentials (encryptType of the answer, default
 * "1"), decrypted with the basic key. NULL with why when one does not decrypt. Caller owns. */
json_t *market_appinfo_decrypt(const market_conf_t *conf, const json_t *answer, char *why,
                               size_t whylen);
/* "now" as the kit sync timeStamp (yyyyMMddHHmmssSSS, UTC+8) into out[18]. */
void market_kit_timestamp(char out[18]);
/* The kooisvctl market verb group: argv[0] is the activity, kit sync name or "check".
 * Returns the exit status. */
int market_main(int argc, char **argv);
/* The market lines of kooisvctl --help. */
void market_usage_summary(FILE *f);

#endif
