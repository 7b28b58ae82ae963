/* readiness: whether this gateway can serve a marketplace call, for /readyz (metrics.c). Every
 * call is recorded by the audit service first, so the gateway is ready only while an audit
 * replica answers a PING with 000000, which it does only while its database answers (svcrt.h).
 * A thread of its own pings audit every interval; being alive (/livez) is separate. */
#ifndef KOOISV_READINESS_H
#define KOOISV_READINESS_H
#include <stdbool.h>
#include <stddef.h>

/* Start pinging the audit replicas at endpoints (CURVE public key server_key) every
 * interval_ms. 0, or -1 (logged) when the thread cannot start. */
int readiness_start(const char *endpoints, const char *server_key, int interval_ms);
/* Stop the thread (waits for it). Safe when not started. */
void readiness_stop(void);
/* True when audit answered the last PING with 000000, less than three intervals ago; else why
 * into why (whylen bytes). */
bool readiness_audit(char *why, size_t whylen);

#endif
