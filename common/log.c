#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static char log_service[32] = "kooisv";
static log_level_t log_min = LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *service)
{
    snprintf(log_service, sizeof log_service, "%s", service ? service : "kooisv");
    const char *lvl = getenv("KOOISV_LOG_LEVEL");
    if (!lvl)
        return;
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++)
        if (strcasecmp(lvl, level_names[i]) == 0)
            log_min = (log_level_t)i;
}

char *log_quote(const char *s, char *buf, unsigned long buflen)
{
    size_t o = 0;
    if (buflen < 3) {
        if (buflen)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && o + 6 < buflen; p++) {
        if (*p == '"' || *p == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*p;
        } else if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x", *p);
        } else {
            buf[o++] = (char)*p;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static void log_write(log_level_t level, const char *rid, const char *rest)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line: stdio locks the stream, so lines from threads never interleave. */
    fprintf(stderr, "ts=%s.%03ldZ level=%s svc=%s rid=%s %s\n", ts, (long)(tv.tv_usec / 1000),
            level_names[level], log_service, rid && *rid ? rid : "-", rest);
}

void log_msg(log_level_t level, const char *rid, const char *fmt, ...)
{
    if (level < log_min)
        return;
    char text[1024], quoted[2100], line[2110];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "msg=%s", log_quote(text, quoted, sizeof quoted));
    log_write(level, rid, line);
}

void log_fields(log_level_t level, const char *rid, const char *fields)
{
    if (level < log_min)
        return;
    log_write(level, rid, fields);
}

int log_gate_pass(log_gate_t *gate, unsigned long *quiet)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    long now = (long)time(NULL);
    pthread_mutex_lock(&lock);
    int pass = now != gate->last_s;
    if (pass) {
        gate->last_s = now;
        *quiet = gate->quiet;
        gate->quiet = 0;
    } else {
        gate->quiet++;
    }
    pthread_mutex_unlock(&lock);
    return pass;
}
