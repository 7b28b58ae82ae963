/* orders: the marketplace's Query Order API (spec §6) with its debug orders, synthesised
 * orders for any "CS..." id, and orders registered by tests. An order, once answered, is kept
 * so repeated queries return identical data (as the marketplace's would). */
#include "emulator.h"

#include "sdksign.h"
#include "xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)

typedef struct {
    const char *order_id;
    const char *order_type;    /* NEW | RENEW | CHANGE | UNSUBSCRIBE | TRIAL_TO_FORMAL */
    const char *charging_mode; /* PERIOD | ONE_TIME | ON_DEMAND */
    const char *period_type;   /* year | month | day | hour, NULL = none */
    int period_number;
    int64_t expire_in_ms; /* 0 = no expireTime */
    const char *product_id;
    const char *sku_code;
    long linear_value; /* 0 = none (packages carry an amount) */
    bool trial;
} mock_order_t;

static const mock_order_t mocks[] = {
    {"MOCKPERIODYEARNEW", "NEW", "PERIOD", "year", 1, 365 * DAY_MS, "OFFI000000000000000001",
     "SKU-BASIC", 0, false},
    {"MOCKONETIMENEW", "NEW", "ONE_TIME", NULL, 0, 0, "OFFI000000000000000001", "SKU-ONETIME", 0,
     false},
    {"MOCKONDEMAND", "NEW", "ON_DEMAND", NULL, 0, 0, "OFFI000000000000000003", "SKU-ONDEMAND", 0,
     false},
    {"MOCKONDEMANDPKG", "NEW", "ON_DEMAND", "month", 1, 30 * DAY_MS, "OFFI000000000000000003",
     "SKU-ONDEMAND-PKG", 100, false},
    {"MOCKPERIODDAYTRIAL", "NEW", "PERIOD", "day", 7, 7 * DAY_MS, "OFFI000000000000000001",
     "SKU-BASIC", 0, true},
    {"MOCKMONTYTRIALTOFORMAL", "TRIAL_TO_FORMAL", "PERIOD", "month", 1, 30 * DAY_MS,
     "OFFI000000000000000001", "SKU-BASIC", 0, false},
    {"MOCKMONTYUNSUBSCRIBE", "UNSUBSCRIBE", "PERIOD", "month", 1, 1, "OFFI000000000000000001",
     "SKU-BASIC", 0, false},
    {"MOCKMONTYRENEW", "RENEW", "PERIOD", "month", 1, 60 * DAY_MS, "OFFI000000000000000001",
     "SKU-BASIC", 0, false},
    {"MOCKMONTYCHANGE", "CHANGE", "PERIOD", "month", 1, 30 * DAY_MS, "OFFI000000000000000002",
     "SKU-PRO", 0, false},
};

static int64_t period_ms(const char *type, json_int_t n)
{
    if (n <= 0)
        n = 1;
    if (!type || strcmp(type, "year") == 0)
        return 365 * DAY_MS * n;
    if (strcmp(type, "month") == 0)
        return 30 * DAY_MS * n;
    if (strcmp(type, "day") == 0)
        return DAY_MS * n;
    if (strcmp(type, "hour") == 0)
        return 3600 * 1000LL * n;
    return 365 * DAY_MS;
}

static json_t *order_from_mock(const emu_t *emu, const mock_order_t *m, const char *order_id,
                               int64_t now)
{
    char created[15], expire[15];
    time_format_compact(emu->zone, now, created);
    char *line_id = xasprintf("%s-000001", order_id);
    json_t *product = json_pack("{s:s, s:s}", "productId", m->product_id, "skuCode", m->sku_code);
    if (m->linear_value)
        json_object_set_new(product, "linearValue", json_integer(m->linear_value));
    json_t *line = json_pack("{s:s, s:s, s:[o]}", "orderLineId", line_id, "chargingMode",
                             m->charging_mode, "productInfo", product);
    if (m->period_type) {
        json_object_set_new(line, "periodType", json_string(m->period_type));
        json_object_set_new(line, "periodNumber", json_integer(m->period_number));
    }
    if (m->expire_in_ms) {
        time_format_compact(emu->zone, now + m->expire_in_ms, expire);
        json_object_set_new(line, "expireTime", json_string(expire));
    }
    if (m->trial)
        json_object_set_new(line, "isTrial", json_string("1"));
    char *customer = xasprintf("CUST-%s", order_id);
    json_t *order =
        json_pack("{s:s, s:s, s:s, s:s, s:[o]}", "orderId", order_id, "orderType", m->order_type,
                  "createTime", created, "customerId", customer, "orderLine", line);
    free(customer);
    free(line_id);
    return order;
}

/* Fill what a registered order leaves out with the yearly defaults; false + why on bad shape. */
static bool order_complete(const emu_t *emu, json_t *order, int64_t now, const char **why)
{
    const char *order_id = json_string_value(json_object_get(order, "orderId"));
    if (!order_id || !*order_id) {
        *why = "orderId (string) is required";
        return false;
    }
    char created[15];
    time_format_compact(emu->zone, now, created);
    if (!json_object_get(order, "orderType"))
        json_object_set_new(order, "orderType", json_string("NEW"));
    if (!json_object_get(order, "createTime"))
        json_object_set_new(order, "createTime", json_string(created));
    json_t *lines = json_object_get(order, "orderLine");
    if (!lines) {
        lines = json_pack("[{}]");
        json_object_set_new(order, "orderLine", lines);
    }
    if (!json_is_array(lines)) {
        *why = "orderLine must be an array";
        return false;
    }
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        if (!json_is_object(line)) {
            *why = "orderLine entries must be objects";
            return false;
        }
        if (!json_object_get(line, "orderLineId")) {
            char *id = xasprintf("%s-%06zu", order_id, i + 1);
            json_object_set_new(line, "orderLineId", json_string(id));
            free(id);
        }
        if (!json_object_get(line, "chargingMode"))
            json_object_set_new(line, "chargingMode", json_string("PERIOD"));
        const char *mode = json_string_value(json_object_get(line, "chargingMode"));
        if (mode && strcmp(mode, "PERIOD") == 0) {
            if (!json_object_get(line, "periodType"))
                json_object_set_new(line, "periodType", json_string("year"));
            if (!json_object_get(line, "periodNumber"))
                json_object_set_new(line, "periodNumber", json_integer(1));
            if (!json_object_get(line, "expireTime")) {
                char expire[15];
                int64_t span = period_ms(json_string_value(json_object_get(line, "periodType")),
                                         json_integer_value(json_object_get(line, "periodNumber")));
                time_format_compact(emu->zone, now + span, expire);
                json_object_set_new(line, "expireTime", json_string(expire));
            }
        }
        if (!json_object_get(line, "productInfo"))
            json_object_set_new(line, "productInfo",
                                json_pack("[{s:s, s:s}]", "productId", "OFFI000000000000000001",
                                          "skuCode", "SKU-BASIC"));
    }
    return true;
}

const char *emu_order_register(emu_t *emu, json_t *order, const char **why)
{
    json_t *answer_for = json_object_get(order, "answerFor");
    if (answer_for && (!json_is_string(answer_for) || !*json_string_value(answer_for))) {
        *why = "answerFor must be a non-empty string";
        return NULL;
    }
    json_t *info = json_object_get(order, "orderInfo");
    if (info)
        order = info;
    else if (answer_for) {
        *why = "answerFor goes beside an orderInfo object";
        return NULL;
    }
    if (!json_is_object(order)) {
        *why = "body must be an orderInfo object";
        return NULL;
    }
    json_t *copy = json_deep_copy(order);
    if (!order_complete(emu, copy, emu_now_ms(), why)) {
        json_decref(copy);
        return NULL;
    }
    const char *id = json_string_value(json_object_get(copy, "orderId"));
    if (answer_for) {
        id = json_string_value(answer_for);
        json_object_set_new(emu->verbatim, id, json_true());
    } else {
        json_object_del(emu->verbatim, id);
    }
    json_object_set_new(emu->orders, id, copy);
    return json_object_iter_key(json_object_iter_at(emu->orders, id));
}

/* The order for id (borrowed, kept in emu->orders) or NULL when the marketplace has none. */
static json_t *order_lookup(emu_t *emu, const char *id)
{
    json_t *order = json_object_get(emu->orders, id);
    if (order)
        return order;
    int64_t now = emu_now_ms();
    for (size_t i = 0; i < sizeof mocks / sizeof mocks[0]; i++)
        if (strcmp(mocks[i].order_id, id) == 0)
            order = order_from_mock(emu, &mocks[i], id, now);
    if (!order && strncmp(id, "CS", 2) == 0 && strlen(id) <= 64)
        order = order_from_mock(emu, &mocks[0], id, now); /* a real-looking id: a yearly purchase */
    if (!order)
        return NULL;
    json_object_set_new(emu->orders, id, order);
    return order;
}

void emu_order_query(emu_exchange_t *ex)
{
    emu_t *emu = ex->emu;
    if (!emu_method_allowed(ex, EMU_STYLE_RESULT, "GET"))
        return;
    const char *auth = emu_header(ex, "Authorization");
    const char *date = emu_header(ex, "X-Sdk-Date");
    const char *host = emu_header(ex, "Host");
    int64_t date_ms;
    if (!auth || !date || !host) {
        emu_reply_error(ex, EMU_STYLE_RESULT, 401, "MKT.0102",
                        "missing Authorization, X-Sdk-Date or Host");
        return;
    }
    if (!emu_parse_utc_compact(date, &date_ms) ||
        llabs(emu_now_ms() - date_ms) > EMU_CLOCK_SKEW_MS) {
        emu_reply_error(ex, EMU_STYLE_RESULT, 401, "MKT.0102",
                        "X-Sdk-Date malformed or more than 15 minutes away");
        return;
    }
    sdksign_request_t sreq = {.method = "GET",
                              .host = host,
                              .path = ex->raw_path,
                              .query = ex->query,
                              .sdk_date = date,
                              .body = NULL,
                              .body_len = 0};
    if (!sdksign_verify(auth, emu->ak, emu->sk, &sreq)) {
        emu_reply_error(ex, EMU_STYLE_RESULT, 401, "MKT.0102", "signature verification failed");
        return;
    }
    char *order_id = emu_query_param(ex, "orderId");
    char *line_id = emu_query_param(ex, "orderLineId");
    if (!order_id || !*order_id || strlen(order_id) > 64 || (line_id && strlen(line_id) > 64)) {
        emu_reply_error(ex, EMU_STYLE_RESULT, 400, "MKT.0101",
                        "orderId is required (at most 64 characters)");
        goto out;
    }
    json_t *order = order_lookup(emu, order_id);
    if (!order) {
        emu_reply_error(ex, EMU_STYLE_RESULT, 200, "MKT.0100", "order does not exist");
        goto out;
    }
    json_t *info = json_deep_copy(order);
    if (line_id && *line_id && !json_object_get(emu->verbatim, order_id)) {
        /* orderLineId narrows the answer to that line. */
        json_t *lines = json_object_get(info, "orderLine");
        json_t *kept = json_array();
        size_t i;
        json_t *line;
        json_array_foreach(lines, i, line)
        {
            const char *lid = json_string_value(json_object_get(line, "orderLineId"));
            if (lid && strcmp(lid, line_id) == 0)
                json_array_append(kept, line);
        }
        if (json_array_size(kept) == 0) {
            json_decref(kept);
            json_decref(info);
            emu_reply_error(ex, EMU_STYLE_RESULT, 200, "MKT.0100", "order line does not exist");
            goto out;
        }
        json_object_set_new(info, "orderLine", kept);
    }
    emu_reply(ex, 200,
              json_pack("{s:s, s:s, s:o}", "resultCode", "MKT.0000", "resultMsg", "success",
                        "orderInfo", info));
out:
    free(order_id);
    free(line_id);
}
