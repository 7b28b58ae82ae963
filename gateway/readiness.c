#include "readiness.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "rpc.h"
#include "timeutil.h"

static struct {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    const char *endpoints, *server_key;
    int interval_ms;
    int64_t ok_at_us; /* last PING answered 000000 (0: never) */
    char why[160];    /* why the last PING was not */
} rd = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* One PING through client (created on first use: audit may resolve later than we start). */
static void ping_once(rpc_client_t **client, unsigned long n)
{
    char why[160] = "";
    bool ok = false;
    if (!*client)
        *client = rpc_client_new(rd.endpoints, rd.server_key);
    if (!*client) {
        snprintf(why, sizeof why, "audit endpoints %s resolve to nothing", rd.endpoints);
    } else {
        char rid[48];
        snprintf(rid, sizeof rid, "readiness-%lu", n);
        Kooisv__Ping ping = KOOISV__PING__INIT;
        Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
        env.request_id = rid;
        env.body_case = KOOISV__ENVELOPE__BODY_PING;
        env.ping = &ping;
        Kooisv__Reply *reply = NULL;
        int timeout = rd.interval_ms > 3000 ? 3000 : rd.interval_ms;
        if (rpc_call(*client, &env, timeout, &reply) != 0) {
            snprintf(why, sizeof why, "audit service: no answer within %d ms", timeout);
        } else {
            ok = reply->result_code && strcmp(reply->result_code, "000000") == 0;
            if (!ok)
                snprintf(why, sizeof why, "audit service: %s",
                         reply->result_msg ? reply->result_msg : "(no message)");
            kooisv__reply__free_unpacked(reply, NULL);
        }
    }
    pthread_mutex_lock(&rd.lock);
    bool was_ok = rd.ok_at_us && !*rd.why;
    if (ok) {
        rd.ok_at_us = time_mono_us();
        rd.why[0] = '\0';
    } else {
        snprintf(rd.why, sizeof rd.why, "%s", why);
    }
    pthread_mutex_unlock(&rd.lock);
    if (was_ok && !ok)
        log_warn(NULL, "not ready: %s", why);
    else if (!was_ok && ok)
        log_info(NULL, "ready: the audit service answers");
}

static void *readiness_main(void *arg)
{
    (void)arg;
    rpc_client_t *client = NULL;
    unsigned long n = 0;
    pthread_mutex_lock(&rd.lock);
    while (!rd.stop) {
        pthread_mutex_unlock(&rd.lock);
        ping_once(&client, n++);
        pthread_mutex_lock(&rd.lock);
        struct timespec until = time_realtime_after_us((int64_t)rd.interval_ms * 1000);
        if (!rd.stop)
            pthread_cond_timedwait(&rd.wake, &rd.lock, &until);
    }
    pthread_mutex_unlock(&rd.lock);
    rpc_client_destroy(&client);
    return NULL;
}

int readiness_start(const char *endpoints, const char *server_key, int interval_ms)
{
    rd.endpoints = endpoints;
    rd.server_key = server_key;
    rd.interval_ms = interval_ms > 0 ? interval_ms : 1000;
    rd.stop = false;
    snprintf(rd.why, sizeof rd.why, "the audit service has not answered yet");
    if (pthread_create(&rd.thread, NULL, readiness_main, NULL) != 0) {
        log_error(NULL, "cannot start the readiness thread");
        return -1;
    }
    rd.started = true;
    return 0;
}

void readiness_stop(void)
{
    if (!rd.started)
        return;
    pthread_mutex_lock(&rd.lock);
    rd.stop = true;
    pthread_cond_signal(&rd.wake);
    pthread_mutex_unlock(&rd.lock);
    pthread_join(rd.thread, NULL);
    rd.started = false;
}

bool readiness_audit(char *why, size_t whylen)
{
    pthread_mutex_lock(&rd.lock);
    bool ok =
        rd.ok_at_us && !*rd.why && time_mono_us() - rd.ok_at_us < (int64_t)rd.interval_ms * 3000;
    if (!ok)
        snprintf(why, whylen, "%s", *rd.why ? rd.why : "the audit service answered too long ago");
    pthread_mutex_unlock(&rd.lock);
    return ok;
}
