#include "webhook.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cryptoutil.h"
#include "timeutil.h"
#include "xmalloc.h"

void webhook_sign(const char *secret, const char *timestamp, const char *body, size_t len,
                  char out[65])
{
    assert(secret && timestamp && (body || len == 0));
    /* timestamp "." body: binding the time into the MAC makes an old capture useless. */
    size_t tlen = strlen(timestamp);
    char *data = xmalloc(tlen + 1 + len);
    memcpy(data, timestamp, tlen);
    data[tlen] = '.';
    if (len)
        memcpy(data + tlen + 1, body, len);
    uint8_t mac[32];
    hmac_sha256(secret, strlen(secret), data, tlen + 1 + len, mac);
    free(data);
    hex_encode(mac, sizeof mac, out);
}

bool webhook_verify(const char *secret, const char *timestamp, const char *signature,
                    const char *body, size_t len, int64_t now_ms, int64_t window_ms)
{
    int64_t ts;
    if (!secret || !timestamp || !signature || !time_parse_ms(timestamp, &ts))
        return false;
    int64_t age = now_ms - ts;
    if (age > window_ms || -age > window_ms)
        return false;
    char want[65];
    webhook_sign(secret, timestamp, body, len, want);
    return hex_equal_ci(want, signature);
}

int webhook_post(const char *url, const char *secret, const char *event_json,
                 const httpc_options_t *opt, httpc_response_t *out)
{
    assert(url && secret && event_json && out);
    memset(out, 0, sizeof *out);
    char ts[24];
    snprintf(ts, sizeof ts, "%" PRId64, time_now_ms());
    size_t len = strlen(event_json);
    char sig[65];
    webhook_sign(secret, ts, event_json, len, sig);

    char h_ts[64], h_sig[96];
    snprintf(h_ts, sizeof h_ts, "X-Kooisv-Timestamp: %s", ts);
    snprintf(h_sig, sizeof h_sig, "X-Kooisv-Signature: %s", sig);
    const char *headers[] = {"Content-Type: application/json", "Accept: application/json", h_ts,
                             h_sig, NULL};
    httpc_options_t defaults = {.ca_file = NULL, .verify_peer = 1, .timeout_ms = 5000};
    if (httpc_request("POST", url, headers, event_json, len, opt ? opt : &defaults, out) != 0)
        return -1;
    if (out->status < 200 || out->status > 299) {
        snprintf(out->error, sizeof out->error, "HTTP status %d", out->status);
        return -1;
    }
    return 0;
}
