/* billing_support: helpers of the billing service's integration tests (order_support and
 * kclient underneath): basic calls that drive an instance through its life, and waits on the
 * billing schema. Failures are cmocka failures. */
#ifndef KOOISV_BILLING_SUPPORT_H
#define KOOISV_BILLING_SUPPORT_H
#include <stdbool.h>

#include "order_support.h"

#define BT_WAIT_MS 30000

/* Register a yearly (mode PERIOD) or pay-per-use (mode ON_DEMAND) order with amount (NULL =
 * none) at the emulator, create its instance (test_flag "1" or NULL) and wait until it is
 * provisioned; the instance id (caller frees). *order_out (may be NULL) gets the order id. */
char *bt_instance(const char *mode, const char *amount, const char *test_flag, char **order_out);
/* bt_instance of a pay-per-use order of product (productInfo[0].productId). */
char *bt_ondemand_instance(const char *product);
/* updateInstanceStatus FREEZE / UNFREEZE answered 000000 (test_flag as the instance's). */
void bt_status(const char *id, const char *status, const char *test_flag);
/* releaseInstance answered 000000; order NULL = not by unsubscription. */
void bt_release(const char *id, const char *order, const char *test_flag);
/* Wait until billing's ledger holds at least n lines for the instance; asserts it does. */
void bt_wait_lines(const char *id, long n);
/* Number of ledger lines of the instance (kind NULL = all kinds). */
long bt_lines(const char *id, const char *kind);
/* Wait until billing has consumed every order event of the instance (as many consumed_events
 * as orders.outbox rows, and order has every acknowledgement); asserts it does. */
void bt_wait_consumed(const char *id);

#endif
