#include "billing_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "xmalloc.h"

/* Create the instance of the registered order and wait until it is provisioned. */
static char *instance_of(char *order, const char *test_flag, char **order_out)
{
    char *id = ot_provisioned(order, test_flag, BT_WAIT_MS);
    if (order_out)
        *order_out = order;
    else
        free(order);
    return id;
}

char *bt_instance(const char *mode, const char *amount, const char *test_flag, char **order_out)
{
    char *order = kc_uid("BILL");
    char amount_member[64] = "";
    if (amount)
        snprintf(amount_member, sizeof amount_member, ",\"amount\":\"%s\"", amount);
    if (strcmp(mode, "ON_DEMAND") == 0)
        ot_order_register("{\"orderId\":\"%s\",\"orderLine\":[{\"chargingMode\":\"ON_DEMAND\"%s}]}",
                          order, amount_member);
    else
        ot_order_register("{\"orderId\":\"%s\",\"orderLine\":[{\"chargingMode\":\"%s\","
                          "\"periodType\":\"year\",\"periodNumber\":1%s}]}",
                          order, mode, amount_member);
    return instance_of(order, test_flag, order_out);
}

char *bt_ondemand_instance(const char *product)
{
    char *order = kc_uid("BILL");
    ot_order_register("{\"orderId\":\"%s\",\"orderLine\":[{\"chargingMode\":\"ON_DEMAND\","
                      "\"productInfo\":[{\"productId\":\"%s\",\"skuCode\":\"SKU-METERED\"}]}]}",
                      order, product);
    return instance_of(order, NULL, NULL);
}

void bt_status(const char *id, const char *status, const char *test_flag)
{
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s}", "activity", "updateInstanceStatus",
              "instanceId", id, "status", status, "testFlag", test_flag ? test_flag : "0");
    kresp_free(&r);
}

void bt_release(const char *id, const char *order, const char *test_flag)
{
    kresp_t r;
    const char *tf = test_flag ? test_flag : "0";
    if (order) {
        char *line = ot_line_of(order);
        ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s}", "activity", "releaseInstance",
                  "instanceId", id, "orderId", order, "orderLineId", line, "testFlag", tf);
        free(line);
    } else {
        ot_expect("000000", &r, "{s:s, s:s, s:s}", "activity", "releaseInstance", "instanceId", id,
                  "testFlag", tf);
    }
    kresp_free(&r);
}

long bt_lines(const char *id, const char *kind)
{
    const char *p[] = {id, kind};
    return kc_sql_count("SELECT 1 FROM billing.ledger WHERE instance_id = $1"
                        " AND ($2::text IS NULL OR kind = $2)",
                        2, p);
}

static long long lines_of(const void *id)
{
    return bt_lines(id, NULL);
}

void bt_wait_lines(const char *id, long n)
{
    if (!kc_wait_count(BT_WAIT_MS, lines_of, id, n))
        fail_msg("instance %s: %ld of %ld ledger lines after %d ms", id, bt_lines(id, NULL), n,
                 BT_WAIT_MS);
}

static bool all_consumed(void *arg)
{
    const char *p[] = {arg};
    long out = kc_sql_count("SELECT 1 FROM orders.outbox WHERE instance_id = $1", 1, p);
    long in = kc_sql_count("SELECT 1 FROM billing.consumed_events WHERE instance_id = $1"
                           " AND event_id IN (SELECT event_id FROM orders.outbox"
                           "  WHERE instance_id = $1)",
                           1, p);
    long acked = kc_sql_count("SELECT 1 FROM orders.event_acks a JOIN orders.outbox o"
                              " USING (event_id) WHERE a.consumer = 'billing'"
                              " AND o.instance_id = $1",
                              1, p);
    return out > 0 && in == out && acked == out;
}

void bt_wait_consumed(const char *id)
{
    if (!kc_wait(BT_WAIT_MS, 100, all_consumed, (void *)id))
        fail_msg("instance %s: billing has not consumed and acknowledged every order event", id);
}
