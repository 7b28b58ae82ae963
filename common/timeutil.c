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

bool time_parse_compact(const char *s, int64_t *ms_out)
{
    if (!s || strlen(s) != 14 || !digits(s, 14))
        return false;
    int y = num(s, 4), mo = num(s + 4, 2), d = num(s + 6, 2);
    int h = num(s + 8, 2), mi = num(s + 10, 2), se = num(s + 12, 2);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return false;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = se};
    time_t t = timegm(&tm);
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
