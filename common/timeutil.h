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
/* The real (CLOCK_REALTIME) time us >= 0 microseconds from now, the absolute time
 * pthread_cond_timedwait wants (never the injected clock). */
struct timespec time_realtime_after_us(int64_t us);
/* Replace the wall clock (tests); NULL restores the real one. */
void time_set_clock(int64_t (*clock_ms)(void));

/* A time zone of the marketplace's compact times (KOOISV_MARKETPLACE_TIME_ZONE). Fixed offsets
 * are kept as they are; an IANA name is resolved once, in time_zone_new, into a table of its UTC
 * offsets from 1970 to 2200 (TZ is set, tzset() and localtime_r() walk the years, TZ is put back),
 * so that the parse/format pair below is pure and thread-safe and never touches TZ. */
typedef struct time_zone_t time_zone_t;
/* Resolve name: "UTC", "Z", "+HH:MM", "-HH:MM", "+HHMM", "+HH" (offsets up to 14:00), or an IANA
 * name with a TZif file under $TZDIR or /usr/share/zoneinfo ("Asia/Shanghai"). Call before other
 * threads start (IANA names touch TZ). NULL with a one-line reason in why otherwise. Caller owns
 * the result. */
time_zone_t *time_zone_new(const char *name, char *why, size_t whylen);
/* Free *self_p and set it to NULL. */
void time_zone_destroy(time_zone_t **self_p);
/* The name the zone was made from. */
const char *time_zone_name(const time_zone_t *self);
/* Offset from UTC, in seconds east, in effect at epoch ms (NULL = UTC). */
int time_zone_offset(const time_zone_t *self, int64_t ms);
/* --help line of KOOISV_MARKETPLACE_TIME_ZONE, the same in every binary that reads it. */
#define TIME_ZONE_HELP                                                                             \
    "zone of the marketplace's yyyyMMddHHmmss times (refreshInstance expireTime, Query Order "     \
    "createTime/expireTime): UTC, an offset like +08:00, or an IANA name like Asia/Shanghai"
/* Parse "yyyyMMddHHmmss" as a wall time of zone (NULL = UTC) into epoch ms; false if malformed
 * or not a real calendar time. A wall time that a zone's clock change skips is read with the
 * offset before the change; one it repeats, as the earlier instant. */
bool time_parse_compact(const time_zone_t *zone, const char *s, int64_t *ms_out);
/* Parse a getLicenseAsync time (spec §3; always UTC) into epoch ms: "yyyy-MM-dd HH:mm:ss z"
 * (the marketplace's documented form; the zone token z, Z or UTC), "yyyyMMddHHmmss" or
 * "yyyyMMddHHmmssSSS". False, with a one-line reason in why (which names no input), when s is
 * none of them, not a real calendar time, or carries another zone. */
bool time_parse_license(const char *s, int64_t *ms_out, char *why, size_t whylen);
/* Format epoch ms as "yyyyMMddHHmmss" in zone (NULL = UTC) into out; returns out. */
char *time_format_compact(const time_zone_t *zone, int64_t ms, char out[15]);
/* Format epoch ms as "yyyy-MM-ddTHH:mm:ss.SSSZ" (UTC) into buf (>= 25 bytes). */
char *time_format_iso(int64_t ms, char *buf, unsigned long len);
/* Parse a decimal millisecond timestamp of 1..15 digits; false otherwise. */
bool time_parse_ms(const char *s, int64_t *ms_out);
/* Parse an operator's time into epoch ms: epoch ms digits, or ISO-8601 "YYYY-MM-DD" (midnight
 * UTC), "YYYY-MM-DDTHH:MM[:SS[.fff]]" then nothing (UTC), "Z", "+HH:MM", "-HH:MM" or "+HHMM";
 * false when s is neither or the time is before the epoch. */
bool time_parse_any(const char *s, int64_t *ms_out);

#endif
