/* billclock: billing's clock for deciding when an hour is due, when a retry comes and how old
 * waiting usage is. It is the wall clock (UTC) unless KOOISV_BILLING_CLOCK_OFFSET_FILE (tests
 * only) names a file holding a signed number of seconds: that much is added, read again at every
 * call, so that a test moves every replica's clock (forward, back) without waiting for real hours
 * and without restarting them. Signature timestamps (ts headers) always use the real clock. */
#ifndef KOOISV_BILLCLOCK_H
#define KOOISV_BILLCLOCK_H
#include <stdint.h>

/* Use offset_file ("" or NULL = none); the string is copied. Call before threads start. */
void billclock_init(const char *offset_file);
/* Billing's now, epoch ms. A missing or unreadable offset file counts as offset 0. */
int64_t billclock_now_ms(void);
/* The offset in effect, ms (0 without a file). */
int64_t billclock_offset_ms(void);

#endif
