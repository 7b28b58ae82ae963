#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "xmalloc.h"

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

struct timespec time_realtime_after_us(int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += us / 1000000;
    ts.tv_nsec += (us % 1000000) * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
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

/* One offset change: from at_s on (epoch seconds), the zone is offset_s east of UTC. */
typedef struct {
    int64_t at_s;
    int offset_s;
} zone_change_t;

struct time_zone_t {
    char *name;
    zone_change_t *changes; /* ascending; changes[0].at_s is INT64_MIN */
    size_t n;
};

/* "UTC", "Z", "+HH", "+HHMM", "+HH:MM" (or '-'): offset in seconds east; false otherwise. */
static bool fixed_offset(const char *s, int *offset_s)
{
    if (strcmp(s, "UTC") == 0 || strcmp(s, "Z") == 0) {
        *offset_s = 0;
        return true;
    }
    if (s[0] != '+' && s[0] != '-')
        return false;
    size_t len = strlen(s);
    int h, m = 0;
    if (len == 3 && digits(s + 1, 2))
        h = num(s + 1, 2);
    else if (len == 5 && digits(s + 1, 4))
        h = num(s + 1, 2), m = num(s + 3, 2);
    else if (len == 6 && digits(s + 1, 2) && s[3] == ':' && digits(s + 4, 2))
        h = num(s + 1, 2), m = num(s + 4, 2);
    else
        return false;
    if (m > 59 || h * 60 + m > 14 * 60)
        return false;
    *offset_s = (s[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
    return true;
}

/* A name that can only address a file below the zoneinfo folder, and that file is TZif. */
static bool iana_file_ok(const char *name, char *why, size_t whylen)
{
    if (!*name || name[0] == '/' || strstr(name, "..") ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-") !=
            strlen(name)) {
        snprintf(why, whylen, "not UTC, an offset like +08:00 or an IANA zone name");
        return false;
    }
    const char *dir = getenv("TZDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    bool ok = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "TZif", 4) == 0;
    if (f)
        fclose(f);
    if (!ok)
        snprintf(why, whylen, "unknown time zone (no TZif file %s)", path);
    return ok;
}

static int local_offset(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    return (int)tm.tm_gmtoff;
}

static void zone_add(time_zone_t *z, size_t *cap, int64_t at_s, int offset_s)
{
    if (z->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        z->changes = xrealloc(z->changes, *cap * sizeof *z->changes);
    }
    z->changes[z->n++] = (zone_change_t){at_s, offset_s};
}

/* Walk 1970..2200 in 6-hour steps under TZ=name; each change found is narrowed to its second. */
static void zone_tabulate(time_zone_t *z, const char *name)
{
    const char *old = getenv("TZ");
    char *saved = old ? xstrdup(old) : NULL;
    setenv("TZ", name, 1);
    tzset();
    size_t cap = 0;
    const int64_t step = 6 * 3600, end = 7258118400LL; /* 2200-01-01 */
    int prev = local_offset(0);
    zone_add(z, &cap, INT64_MIN, prev);
    for (int64_t t = step; t <= end; t += step) {
        int cur = local_offset(t);
        if (cur == prev)
            continue;
        int64_t lo = t - step, hi = t; /* offset(lo) == prev, offset(hi) == cur */
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if (local_offset(mid) == prev)
                lo = mid;
            else
                hi = mid;
        }
        zone_add(z, &cap, hi, cur);
        prev = cur;
    }
    if (saved)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved);
}

time_zone_t *time_zone_new(const char *name, char *why, size_t whylen)
{
    int offset_s;
    if (!name)
        name = "";
    time_zone_t *z = xcalloc(1, sizeof *z);
    if (fixed_offset(name, &offset_s)) {
        size_t cap = 0;
        zone_add(z, &cap, INT64_MIN, offset_s);
    } else if (iana_file_ok(name, why, whylen)) {
        zone_tabulate(z, name);
    } else {
        free(z);
        return NULL;
    }
    z->name = xstrdup(name);
    return z;
}

void time_zone_destroy(time_zone_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->changes);
    free((*self_p)->name);
    free(*self_p);
    *self_p = NULL;
}

const char *time_zone_name(const time_zone_t *self)
{
    return self ? self->name : "UTC";
}

/* Offset in effect at epoch second t. */
static int offset_at(const time_zone_t *z, int64_t t)
{
    if (!z)
        return 0;
    size_t lo = 0, hi = z->n; /* changes[lo].at_s <= t < changes[hi].at_s */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->changes[mid].at_s <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->changes[lo].offset_s;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int time_zone_offset(const time_zone_t *self, int64_t ms)
{
    return offset_at(self, floor_div(ms, 1000));
}

bool time_parse_compact(const time_zone_t *zone, const char *s, int64_t *ms_out)
{
    if (!s || strlen(s) != 14 || !digits(s, 14))
        return false;
    int y = num(s, 4), mo = num(s + 4, 2), d = num(s + 6, 2);
    int h = num(s + 8, 2), mi = num(s + 10, 2), se = num(s + 12, 2);
    if (!calendar_ok(y, mo, d, h, mi, se))
        return false;
    int64_t wall = (int64_t)utc_seconds(y, mo, d, h, mi, se);
    /* The instant lies within a day of the wall time read as UTC: the offsets two days either
     * side are the ones before and after any change near it. */
    int before = offset_at(zone, wall - 2 * 86400), after = offset_at(zone, wall + 2 * 86400);
    int64_t t = wall - before; /* also the reading of a skipped wall time */
    if (offset_at(zone, t) != before && offset_at(zone, wall - after) == after)
        t = wall - after;
    else if (offset_at(zone, wall - after) == after && wall - after < t)
        t = wall - after;
    if (ms_out)
        *ms_out = t * 1000;
    return true;
}

bool time_parse_license(const char *s, int64_t *ms_out, char *why, size_t whylen)
{
    static const char forms[] = "yyyy-MM-dd HH:mm:ss z, yyyyMMddHHmmss or yyyyMMddHHmmssSSS";
    size_t len = s ? strlen(s) : 0;
    int y, mo, d, h, mi, se, ms = 0;
    if ((len == 14 || len == 17) && digits(s, len)) {
        y = num(s, 4), mo = num(s + 4, 2), d = num(s + 6, 2);
        h = num(s + 8, 2), mi = num(s + 10, 2), se = num(s + 12, 2);
        if (len == 17)
            ms = num(s + 14, 3);
    } else if (len >= 19 && digits(s, 4) && s[4] == '-' && digits(s + 5, 2) && s[7] == '-' &&
               digits(s + 8, 2) && s[10] == ' ' && digits(s + 11, 2) && s[13] == ':' &&
               digits(s + 14, 2) && s[16] == ':' && digits(s + 17, 2)) {
        const char *zone = s + 19;
        if (strcmp(zone, " z") != 0 && strcmp(zone, " Z") != 0 && strcmp(zone, " UTC") != 0) {
            snprintf(why, whylen,
                     "must end in the zone z, Z or UTC after one space (getLicenseAsync times "
                     "are UTC)");
            return false;
        }
        y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2);
        h = num(s + 11, 2), mi = num(s + 14, 2), se = num(s + 17, 2);
    } else {
        snprintf(why, whylen, "must be a UTC time as %s", forms);
        return false;
    }
    if (!calendar_ok(y, mo, d, h, mi, se)) {
        snprintf(why, whylen, "is not a real calendar time (%s, UTC)", forms);
        return false;
    }
    if (ms_out)
        *ms_out = (int64_t)utc_seconds(y, mo, d, h, mi, se) * 1000 + ms;
    return true;
}

char *time_format_compact(const time_zone_t *zone, int64_t ms, char out[15])
{
    int64_t sec = floor_div(ms, 1000);
    time_t t = (time_t)(sec + offset_at(zone, sec));
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 15, "%Y%m%d%H%M%S", &tm);
    return out;
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
