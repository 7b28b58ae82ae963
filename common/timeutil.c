#include "timeutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static int64_t (*injected_clock)(void);

static int64_t real_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_now_ms(void)
{
    return injected_clock ? injected_clock() : real_clock_ms();
}

int64_t time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void time_set_clock(int64_t (*clock_ms)(void))
{
    injected_clock = clock_ms;
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* A real calendar time from 1970 on (the checks timegm would silently normalise away). */
static bool calendar_ok(int y, int mo, int d, int h, int mi, int se)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && d <= mdays[mo - 1] + (mo == 2 && leap) &&
           h <= 23 && mi <= 59 && se <= 59;
}

static time_t utc_seconds(int y, int mo, int d, int h, int mi, int se)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = se};
    return timegm(&tm);
}

bool time_parse_compact(const char *s, int64_t *ms_out)
{
    if (!s || strlen(s) != 14 || !digits(s, 14))
        return false;
    int y = num(s, 4), mo = num(s + 4, 2), d = num(s + 6, 2);
    int h = num(s + 8, 2), mi = num(s + 10, 2), se = num(s + 12, 2);
    if (!calendar_ok(y, mo, d, h, mi, se))
        return false;
    time_t t = utc_seconds(y, mo, d, h, mi, se);
    /* The marketplace writes its local time, UTC+8. */
    if (ms_out)
        *ms_out = ((int64_t)t - 8 * 3600) * 1000;
    return true;
}

char *time_format_iso(int64_t ms, char *buf, unsigned long len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
    return buf;
}

bool time_parse_ms(const char *s, int64_t *ms_out)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 15 || !digits(s, n))
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    if (ms_out)
        *ms_out = v;
    return true;
}

bool time_parse_any(const char *s, int64_t *ms_out)
{
    if (!s || !*s)
        return false;
    size_t len = strlen(s);
    if (digits(s, len))
        return time_parse_ms(s, ms_out);
    if (len < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2))
        return false;
    int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2), h = 0, mi = 0, se = 0, ms = 0;
    const char *p = s + 10;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(p, 2) || p[2] != ':' || !digits(p + 3, 2))
            return false;
        h = num(p, 2);
        mi = num(p + 3, 2);
        p += 5;
        if (*p == ':') {
            if (!digits(p + 1, 2))
                return false;
            se = num(p + 1, 2);
            p += 3;
            if (*p == '.') {
                p++;
                int kept = 0, seen = 0;
                for (; *p >= '0' && *p <= '9'; p++, seen++)
                    if (kept < 3) {
                        ms = ms * 10 + (*p - '0');
                        kept++;
                    }
                if (seen == 0)
                    return false;
                for (; kept < 3; kept++)
                    ms *= 10;
            }
        }
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        if (!digits(p, 2))
            return false;
        int oh = num(p, 2);
        p += 2;
        if (*p == ':')
            p++;
        if (!digits(p, 2))
            return false;
        int om = num(p, 2);
        p += 2;
        if (oh > 23 || om > 59)
            return false;
        offset_min = sign * (oh * 60 + om);
    }
    if (*p)
        return false;
    if (!calendar_ok(y, mo, d, h, mi, se))
        return false;
    int64_t ms_total =
        (int64_t)utc_seconds(y, mo, d, h, mi, se) * 1000 + ms - (int64_t)offset_min * 60000;
    if (ms_total < 0)
        return false;
    if (ms_out)
        *ms_out = ms_total;
    return true;
}
