/* timeutil: wall and monotonic clocks (the wall clock injectable for tests) and the spec's
 * time formats. */
#ifndef KOOISV_TIMEUTIL_H
#define KOOISV_TIMEUTIL_H
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Wall-clock milliseconds since the epoch (or the injected clock's). */
int64_t time_now_ms(void);
/* Monotonic microseconds, for latencies and deadlines inside one process. */
int64_t time_mono_us(void);
/* Replace the wall clock (tests); NULL restores the real one. */
void time_set_clock(int64_t (*clock_ms)(void));
/* Parse "yyyyMMddHHmmss" as UTC+8 (marketplace local time) into epoch ms; false if malformed
 * or not a real calendar time. */
bool time_parse_compact(const char *s, int64_t *ms_out);
/* Format epoch ms as "yyyy-MM-ddTHH:mm:ss.SSSZ" (UTC) into buf (>= 25 bytes). */
char *time_format_iso(int64_t ms, char *buf, unsigned long len);
/* Parse a decimal millisecond timestamp of 1..15 digits; false otherwise. */
bool time_parse_ms(const char *s, int64_t *ms_out);
/* Parse an operator's time into epoch ms: epoch ms digits, or ISO-8601 "YYYY-MM-DD" (midnight
 * UTC), "YYYY-MM-DDTHH:MM[:SS[.fff]]" then nothing (UTC), "Z", "+HH:MM", "-HH:MM" or "+HHMM";
 * false when s is neither or the time is before the epoch. */
bool time_parse_any(const char *s, int64_t *ms_out);

#endif
