#include "queryorder.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpc.h"
#include "sdksign.h"
#include "timeutil.h"
#include "xmalloc.h"

#define QUERY_PATH "/api/mkp-openapi-public/global/v1/order/query"

/* Text of a string or number member (Query Order is loose about types); NULL otherwise. */
static char *text_of(const json_t *v)
{
    if (json_is_string(v))
        return json_string_length(v) ? xstrdup(json_string_value(v)) : NULL;
    if (json_is_integer(v))
        return xasprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v)) {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        char *copy = xstrdup(s);
        free(s);
        return copy;
    }
    return NULL;
}

static char *member_text(const json_t *obj, const char *key)
{
    return text_of(json_object_get(obj, key));
}

/* True for true, 1, "1", "true" (case-insensitive). */
static bool truthy(const json_t *v)
{
    if (json_is_true(v))
        return true;
    if (json_is_integer(v))
        return json_integer_value(v) == 1;
    if (json_is_string(v))
        return strcmp(json_string_value(v), "1") == 0 ||
               strcasecmp(json_string_value(v), "true") == 0;
    return false;
}

/* expireTime as yyyyMMddHHmmss (a wall time of zone) or ISO-8601 UTC; 0 if neither. */
static int64_t parse_expire(const char *s, const time_zone_t *zone)
{
    int64_t ms = 0;
    if (!s)
        return 0;
    if (strlen(s) == 14 && time_parse_compact(zone, s, &ms))
        return ms;
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return 0;
    if (*end == '.')
        while (isdigit((unsigned char)*++end))
            ;
    if (*end != 'Z' && *end != '\0')
        return 0;
    return (int64_t)timegm(&tm) * 1000;
}

int queryorder_parse(const char *body, size_t len, const char *order_id, const char *order_line_id,
                     const time_zone_t *zone, queryorder_details_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->period_number = -1;
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", len, 0, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "Query Order answer is not a JSON object");
        json_decref(root);
        return -1;
    }
    const char *code = json_string_value(json_object_get(root, "resultCode"));
    if (!code || strcmp(code, "MKT.0000") != 0) {
        const char *msg = json_string_value(json_object_get(root, "resultMsg"));
        snprintf(err, errlen, "Query Order resultCode %.32s: %.120s", code ? code : "(none)",
                 msg ? msg : "");
        json_decref(root);
        return -1;
    }
    json_t *info = json_object_get(root, "orderInfo");
    json_t *lines = json_object_get(info, "orderLine");
    if (!json_is_object(info) || !json_is_array(lines) || json_array_size(lines) == 0) {
        snprintf(err, errlen, "Query Order answer lacks orderInfo.orderLine");
        json_decref(root);
        return -1;
    }
    /* An answer about another order (a mix-up on either side) must never land on this one. */
    char *answered = member_text(info, "orderId");
    bool same_order = answered && order_id && strcmp(answered, order_id) == 0;
    if (!same_order) {
        snprintf(err, errlen, "Query Order answered orderId %.64s for order %.64s",
                 answered ? answered : "(none)", order_id ? order_id : "");
        free(answered);
        json_decref(root);
        return -1;
    }
    free(answered);
    json_t *line = NULL;
    for (size_t i = 0; i < json_array_size(lines) && !line; i++) {
        const char *id =
            json_string_value(json_object_get(json_array_get(lines, i), "orderLineId"));
        if (id && order_line_id && strcmp(id, order_line_id) == 0)
            line = json_array_get(lines, i);
    }
    if (!json_is_object(line)) {
        snprintf(err, errlen, "order line %.64s is not in the Query Order answer",
                 order_line_id ? order_line_id : "");
        json_decref(root);
        return -1;
    }
    json_t *products = json_object_get(line, "productInfo");
    json_t *product = json_is_array(products) ? json_array_get(products, 0) : products;
    if (json_is_array(products) && json_array_size(products) > 0) {
        out->product_info = json_dumps(products, JSON_COMPACT | JSON_SORT_KEYS);
    } else if (json_is_object(products)) {
        json_t *one = json_pack("[O]", products);
        out->product_info = json_dumps(one, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(one);
    }

    out->order_type = member_text(info, "orderType");
    out->charging_mode = member_text(line, "chargingMode");
    out->period_type = member_text(line, "periodType");
    char *period = member_text(line, "periodNumber");
    if (period) {
        char *end;
        long n = strtol(period, &end, 10);
        if (*end == '\0' && n >= 0 && n < 100000)
            out->period_number = (int)n;
        free(period);
    }
    out->product_id = member_text(product, "productId");
    if (!out->product_id)
        out->product_id = member_text(line, "productId");
    out->sku_code = member_text(product, "skuCode");
    if (!out->sku_code)
        out->sku_code = member_text(line, "skuCode");
    const char *amount_keys[] = {"amount", "amountAfterDiscount", "totalAmount"};
    for (size_t i = 0; i < 3 && !out->amount; i++) {
        out->amount = member_text(line, amount_keys[i]);
        if (!out->amount)
            out->amount = member_text(info, amount_keys[i]);
    }
    const char *trial_keys[] = {"trialFlag", "isTrial", "trial"};
    for (size_t i = 0; i < 3 && !out->trial; i++)
        out->trial = truthy(json_object_get(line, trial_keys[i])) ||
                     truthy(json_object_get(info, trial_keys[i])) ||
                     truthy(json_object_get(product, trial_keys[i]));
    if (!out->trial && out->order_type && strstr(out->order_type, "TRIAL") &&
        !strstr(out->order_type, "FORMAL"))
        out->trial = true;
    out->expire_raw = member_text(line, "expireTime");
    out->expire_ms = parse_expire(out->expire_raw, zone);
    out->order_json = json_dumps(info, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    return 0;
}

void queryorder_details_free(queryorder_details_t *d)
{
    free(d->order_type);
    free(d->charging_mode);
    free(d->period_type);
    free(d->product_id);
    free(d->sku_code);
    free(d->product_info);
    free(d->amount);
    free(d->expire_raw);
    free(d->order_json);
    memset(d, 0, sizeof *d);
    d->period_number = -1;
}

/* Percent-encode s for a query value (RFC 3986 unreserved kept). Caller owns the result. */
static char *url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = xmalloc(strlen(s) * 3 + 1), *p = out;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = '\0';
    return out;
}

int queryorder_fetch(const queryorder_config_t *cfg, const char *order_id,
                     const char *order_line_id, queryorder_details_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->period_number = -1;
    /* url = scheme://authority[/prefix]; the Host header and the signature use authority. */
    const char *scheme_end = cfg->url ? strstr(cfg->url, "://") : NULL;
    if (!scheme_end || !scheme_end[3]) {
        snprintf(err, errlen, "KOOISV_MARKETPLACE_URL is not an absolute URL");
        return -1;
    }
    const char *authority = scheme_end + 3;
    size_t alen = strcspn(authority, "/?#");
    char *host = xstrndup(authority, alen);
    char *prefix = xstrndup(authority + alen, strcspn(authority + alen, "?#"));
    size_t plen = strlen(prefix);
    while (plen && prefix[plen - 1] == '/')
        prefix[--plen] = '\0';
    char *path = xasprintf("%s%s", prefix, QUERY_PATH);
    char *oid = url_encode(order_id), *lid = url_encode(order_line_id);
    char *query = xasprintf("orderId=%s&orderLineId=%s", oid, lid);
    char *url =
        xasprintf("%.*s%s?%s", (int)(authority - cfg->url) + (int)alen, cfg->url, path, query);

    char date[17];
    sdksign_date_now(date);
    sdksign_request_t sreq = {.method = "GET",
                              .host = host,
                              .path = path,
                              .query = query,
                              .sdk_date = date,
                              .body = NULL,
                              .body_len = 0};
    char *auth = sdksign_authorization(cfg->ak, cfg->sk, &sreq);
    char *h_date = xasprintf("X-Sdk-Date: %s", date);
    char *h_auth = xasprintf("Authorization: %s", auth);
    char *h_host = xasprintf("Host: %s", host);
    const char *headers[] = {h_host, h_date, h_auth, "Content-Type: application/json", NULL};
    httpc_options_t opt = {.ca_file = cfg->ca_file && *cfg->ca_file ? cfg->ca_file : NULL,
                           .verify_peer = 1,
                           .timeout_ms = cfg->timeout_ms,
                           .keep_alive = 1}; /* a GET */
    httpc_response_t resp;
    memset(&resp, 0, sizeof resp);
    int rc = -1;
    if (httpc_request("GET", url, headers, NULL, 0, &opt, &resp) != 0)
        snprintf(err, errlen, "Query Order unreachable: %s", resp.error);
    else if (resp.status != 200)
        snprintf(err, errlen, "Query Order answered HTTP %d", resp.status);
    else
        rc = queryorder_parse(resp.body, resp.body_len, order_id, order_line_id, cfg->zone, out,
                              err, errlen);
    httpc_response_free(&resp);
    free(h_host);
    free(h_auth);
    free(h_date);
    free(auth);
    free(url);
    free(query);
    free(oid);
    free(lid);
    free(path);
    free(prefix);
    free(host);
    return rc;
}
