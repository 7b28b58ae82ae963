/* queryorder: the marketplace's Query Order API (spec §6), called by the provisioning job:
 * GET {url}/api/mkp-openapi-public/global/v1/order/query?orderId=..&orderLineId=.. signed with
 * SDK-HMAC-SHA256 (sdksign), answer resultCode "MKT.0000" with orderInfo. */
#ifndef KOOISV_QUERYORDER_H
#define KOOISV_QUERYORDER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "timeutil.h"

typedef struct {
    const char *url;     /* KOOISV_MARKETPLACE_URL: scheme://host[:port][/prefix] */
    const char *ak;      /* KOOISV_MARKETPLACE_AK */
    const char *sk;      /* KOOISV_MARKETPLACE_SK */
    const char *ca_file; /* NULL/"" = system store */
    int timeout_ms;
    const time_zone_t *zone; /* KOOISV_MARKETPLACE_TIME_ZONE: zone of createTime/expireTime */
} queryorder_config_t;

/* What the instance keeps of an order line. Strings are owned (NULL when absent). */
typedef struct {
    char *order_type;
    char *charging_mode;
    char *period_type;
    int period_number;  /* -1 when absent */
    char *product_id;   /* of the first productInfo entry */
    char *sku_code;     /* idem */
    char *product_info; /* every productInfo entry of the line, a compact JSON array; NULL when
                           the line has none (pay-per-use lines may carry several items) */
    char *amount;
    bool trial;
    char *expire_raw;  /* expireTime as given */
    int64_t expire_ms; /* parsed expireTime, 0 when absent or unparseable */
    char *order_json;  /* orderInfo, compact JSON */
} queryorder_details_t;

/* Fetch and parse order_id/order_line_id. 0 on MKT.0000 with the line found; -1 with a one-line
 * reason in err (transport failure, HTTP status, other resultCode, malformed answer, an answer
 * about another order or without the asked line). */
int queryorder_fetch(const queryorder_config_t *cfg, const char *order_id,
                     const char *order_line_id, queryorder_details_t *out, char *err,
                     size_t errlen);
/* Parse a Query Order answer body for order_id/order_line_id, its compact times as wall times of
 * zone (NULL = UTC) (pure; used by fetch and the unit test): the answer's orderInfo.orderId must
 * be order_id and one of its lines order_line_id, else -1 with the reason in err (nothing of
 * such an answer may be stored). */
int queryorder_parse(const char *body, size_t len, const char *order_id, const char *order_line_id,
                     const time_zone_t *zone, queryorder_details_t *out, char *err, size_t errlen);
/* Free the strings of d and zero it. */
void queryorder_details_free(queryorder_details_t *d);

#endif
