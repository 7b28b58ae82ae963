/* queryreader: queryInstance of one id (nearly every call) without a worker thread. The broker
 * queues each such call here (svcrt handle_async) and goes on; one thread reads every call that
 * is waiting in one round trip (libpq pipeline mode) on a session of its own, and answers them
 * (svc_call_finish), which wakes the broker once for all of them. A worker would cost two
 * thread hand-offs and a database round trip per call. Lists of ids, calls past their deadline
 * and everything else stay with the workers. */
#include "order.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "timeutil.h"
#include "xmalloc.h"

/* Calls read in one round trip at most; more wait for the next one. */
#define QR_BATCH 64
/* Calls waiting at most; beyond it the workers serve them. */
#define QR_QUEUE_MAX 4096

typedef struct {
    svc_call_t *call;
    int64_t taken_us; /* for the call's log line */
} qr_item_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    qr_item_t *q; /* ring of QR_QUEUE_MAX */
    size_t head, n;
    bool running, stop;
    pthread_t thread;
    pg_session_t *db;
    const order_config_t *cfg;
} qr = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

bool queryreader_take(svc_call_t *call)
{
    const char *id, *test;
    if (!query_single(call, &id, &test))
        return false;
    pthread_mutex_lock(&qr.mu);
    bool took = qr.running && !qr.stop && qr.n < QR_QUEUE_MAX;
    if (took) {
        qr.q[(qr.head + qr.n) % QR_QUEUE_MAX] = (qr_item_t){call, time_mono_us()};
        if (qr.n++ == 0)
            pthread_cond_signal(&qr.cv);
    }
    pthread_mutex_unlock(&qr.mu);
    return took;
}

/* The call's log line (as svcrt's log_calls writes it for the workers' calls, and batch=N: the
 * reads that shared its round trip), then its reply. */
static void finish(const qr_item_t *it, size_t batch)
{
    const Kooisv__Reply *reply = svc_call_reply(it->call);
    log_info(svc_call_rid(it->call), "order call body=%d result=%s msg=\"%s\" us=%lld batch=%zu",
             (int)svc_call_request(it->call)->body_case, reply->result_code, reply->result_msg,
             (long long)(time_mono_us() - it->taken_us), batch);
    svc_call_finish(it->call);
}

/* One call on its own (pg_session_exec reconnects a connection found dead while idle). */
static void serve_one(const qr_item_t *it)
{
    const char *p[2];
    query_single(it->call, &p[0], &p[1]);
    pg_status_t st = PG_OK;
    PGresult *res = pg_session_exec(qr.db, svc_call_rid(it->call), "query_instance", 2, p, &st);
    if (res) {
        query_answer(qr.cfg, it->call, res);
        PQclear(res);
    } else {
        order_reply(it->call, st, RC_INTERNAL, "");
    }
    finish(it, 1);
}

/* All n reads in one round trip; false (nothing answered, the connection out of pipeline mode
 * or broken) when that failed, and the caller serves them one by one. */
static bool serve_pipelined(const qr_item_t *items, size_t n)
{
    PGconn *conn = pg_session_conn(qr.db);
    if (PQenterPipelineMode(conn) != 1)
        return false;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const char *p[2];
        query_single(items[i].call, &p[0], &p[1]);
        ok = PQsendQueryPrepared(conn, "query_instance", 2, p, NULL, NULL, 0) == 1;
    }
    ok = ok && PQpipelineSync(conn) == 1;
    PGresult *res[QR_BATCH];
    int k = ok ? pg_pipeline_results(conn, res, QR_BATCH) : -1;
    size_t got = k > 0 ? (size_t)k : 0;
    ok = ok && got == n;
    for (size_t i = 0; i < got; i++)
        ok = ok && PQresultStatus(res[i]) == PGRES_TUPLES_OK;
    if (k < 0 || PQexitPipelineMode(conn) != 1)
        pg_session_reconnect(qr.db, NULL); /* results left unread: start afresh */
    for (size_t i = 0; i < got; i++) {
        if (ok)
            query_answer(qr.cfg, items[i].call, res[i]);
        PQclear(res[i]);
    }
    if (!ok) {
        log_warn(NULL, "query reader: %zu reads in one round trip failed (%s); one by one", n,
                 PQerrorMessage(conn));
        return false;
    }
    for (size_t i = 0; i < n; i++)
        finish(&items[i], n);
    return true;
}

static void serve(const qr_item_t *items, size_t n)
{
    const char *rid = svc_call_rid(items[0].call);
    if (!pg_session_ready(qr.db, rid)) {
        log_warn(rid, "database unavailable");
        for (size_t i = 0; i < n; i++) {
            svc_call_result(items[i].call, RC_INTERNAL, "database unavailable; please retry");
            finish(&items[i], 1);
        }
        return;
    }
    if (n > 1 && serve_pipelined(items, n))
        return;
    for (size_t i = 0; i < n; i++)
        serve_one(&items[i]);
}

static void *reader_main(void *arg)
{
    (void)arg;
    qr_item_t batch[QR_BATCH];
    for (;;) {
        pthread_mutex_lock(&qr.mu);
        while (qr.n == 0 && !qr.stop)
            pthread_cond_wait(&qr.cv, &qr.mu);
        size_t n = qr.n < QR_BATCH ? qr.n : QR_BATCH;
        for (size_t i = 0; i < n; i++)
            batch[i] = qr.q[(qr.head + i) % QR_QUEUE_MAX];
        qr.head = (qr.head + n) % QR_QUEUE_MAX;
        qr.n -= n;
        bool done = n == 0 && qr.stop;
        pthread_mutex_unlock(&qr.mu);
        if (done)
            return NULL;
        serve(batch, n);
    }
}

int queryreader_start(const order_config_t *cfg)
{
    qr.cfg = cfg;
    qr.db = orderdb_session(cfg, "kooisv-order-query", 60);
    if (!qr.db) {
        log_error(NULL, "query reader: cannot connect to the database");
        return -1;
    }
    qr.q = xcalloc(QR_QUEUE_MAX, sizeof *qr.q);
    qr.head = qr.n = 0;
    qr.stop = false;
    if (pthread_create(&qr.thread, NULL, reader_main, NULL) != 0) {
        log_error(NULL, "query reader: cannot start its thread");
        pg_session_destroy(&qr.db);
        free(qr.q);
        qr.q = NULL;
        return -1;
    }
    pthread_mutex_lock(&qr.mu);
    qr.running = true;
    pthread_mutex_unlock(&qr.mu);
    return 0;
}

void queryreader_stop(void)
{
    pthread_mutex_lock(&qr.mu);
    bool running = qr.running;
    qr.stop = true;
    pthread_cond_signal(&qr.cv);
    pthread_mutex_unlock(&qr.mu);
    if (!running)
        return;
    pthread_join(qr.thread, NULL);
    pthread_mutex_lock(&qr.mu);
    qr.running = false;
    pthread_mutex_unlock(&qr.mu);
    pg_session_destroy(&qr.db);
    free(qr.q);
    qr.q = NULL;
}
