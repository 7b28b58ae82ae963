/* kooisv-audit-bench: throughput of the audit journal with and without group commit.
 * Not a test: it prints numbers. It writes real rows into the audit schema of the database it is
 * given (the trail is append-only: use a scratch database), hashed with KOOISV_AUDIT_CHAIN_KEY
 * from the environment, or a random key (then they do not verify).
 *   kooisv-audit-bench --dsn DSN [--migrate-dsn DSN] [--threads N] [--records N]
 *                      [--batches 1,16,256]
 * Each record is an intent with a fresh nonce followed by its outcome, appended by N threads at
 * once (as N service workers would). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "resultcode.h"
#include "log.h"
#include "migrations.h"
#include "pgutil.h"
#include "randutil.h"
#include "timeutil.h"
#include "xmalloc.h"

typedef struct {
    journal_t *journal;
    int count;
    int64_t *latencies_us; /* one per append */
    int failures;
} bench_thread_t;

static void *bench_thread(void *arg)
{
    bench_thread_t *t = arg;
    for (int i = 0; i < t->count; i++) {
        char rid[37], nonce[37];
        rand_uuid(rid);
        rand_uuid(nonce);
        entry_resource_t res = {"instance", "bench-instance"};
        int64_t now = time_now_ms();
        entry_intent_t in = {
            .request_id = rid, .trace_id = rid, .received_ms = now, .caller_kind = "basic",
            .caller_id = "bench-key", .event_type = "newInstance", .resources = &res,
            .nresources = 1, .source_addr = "127.0.0.1", .nonce = nonce, .nonce_ts_ms = now,
            .reject_reason = "", .reject_code = ""};
        journal_result_t r;
        int64_t t0 = time_mono_us();
        journal_append_intent(t->journal, &in, &r);
        t->latencies_us[2 * i] = time_mono_us() - t0;
        if (strcmp(r.code, RC_OK) != 0 || r.replay)
            t->failures++;
        entry_outcome_t out = {.request_id = rid, .recorded_ms = time_now_ms(),
                               .result_code = RC_OK, .result_msg = "ok",
                               .latency_us = 1000, .http_status = 200};
        t0 = time_mono_us();
        journal_append_outcome(t->journal, &out, &r);
        t->latencies_us[2 * i + 1] = time_mono_us() - t0;
        if (strcmp(r.code, RC_OK) != 0)
            t->failures++;
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void bench_run(const char *dsn, const entry_chain_t *chain, int batch, int nthreads,
                      int records)
{
    journal_config_t cfg = {.dsn = dsn,
                            .batch_max = batch,
                            .nonce_window_ms = 60000,
                            .nonce_margin_ms = 300000,
                            .statement_timeout_ms = 10000,
                            .chain = chain};
    journal_t *j = journal_new(&cfg);
    bench_thread_t *ts = xcalloc((size_t)nthreads, sizeof *ts);
    pthread_t *th = xcalloc((size_t)nthreads, sizeof *th);
    int per = records / nthreads;
    int64_t t0 = time_mono_us();
    for (int i = 0; i < nthreads; i++) {
        ts[i].journal = j;
        ts[i].count = per;
        ts[i].latencies_us = xcalloc((size_t)per * 2 + 1, sizeof(int64_t));
        pthread_create(&th[i], NULL, bench_thread, &ts[i]);
    }
    int failures = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        failures += ts[i].failures;
    }
    double secs = (double)(time_mono_us() - t0) / 1e6;
    size_t n = (size_t)per * 2 * (size_t)nthreads;
    int64_t *all = xcalloc(n, sizeof *all);
    for (int i = 0; i < nthreads; i++) {
        memcpy(all + (size_t)i * (size_t)per * 2, ts[i].latencies_us,
               (size_t)per * 2 * sizeof(int64_t));
        free(ts[i].latencies_us);
    }
    qsort(all, n, sizeof *all, cmp_i64);
    journal_stats_t st;
    journal_stats(j, &st);
    printf("batch_max=%-4d threads=%-3d entries=%-6zu seconds=%6.2f entries/s=%8.0f "
           "transactions=%-6llu avg_batch=%6.1f p50_ms=%6.2f p99_ms=%7.2f failures=%d\n",
           batch, nthreads, n, secs, (double)n / secs, (unsigned long long)st.batches,
           st.batches ? (double)st.records / (double)st.batches : 0.0,
           (double)all[n / 2] / 1000.0, (double)all[n * 99 / 100] / 1000.0, failures);
    fflush(stdout);
    free(all);
    free(ts);
    free(th);
    journal_destroy(&j);
}

static void usage(void)
{
    fprintf(stderr, "usage: kooisv-audit-bench --dsn DSN [--migrate-dsn DSN] [--threads N] "
                    "[--records N] [--batches 1,16,256]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dsn = NULL, *migrate = NULL, *batches = "1,16,256";
    int threads = 64, records = 20000;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--dsn") == 0)
            dsn = argv[++i];
        else if (strcmp(argv[i], "--migrate-dsn") == 0)
            migrate = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--records") == 0)
            records = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batches") == 0)
            batches = argv[++i];
        else
            usage();
    }
    if (!dsn || threads < 1 || records < threads)
        usage();
    log_init("audit-bench");
    if (migrate) {
        PGconn *c = pg_connect(migrate, "kooisv-audit-bench", 5);
        if (!c || pg_migrate(c, "audit", service_migrations, service_migrations_count) != 0)
            return 1;
        PQfinish(c);
    }
    /* Keyed as the service keys them: with KOOISV_AUDIT_CHAIN_KEY (the suite's, say) the rows
     * still verify; with a random key they cannot. */
    uint8_t random_key[32];
    rand_bytes(random_key, sizeof random_key);
    const char *key = getenv("KOOISV_AUDIT_CHAIN_KEY");
    entry_chain_t chain = {.key = key ? (const uint8_t *)key : random_key,
                           .key_len = key ? strlen(key) : sizeof random_key,
                           .keyed_from = 1};
    char *list = xstrdup(batches), *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        bench_run(dsn, &chain, atoi(tok), threads, records);
    free(list);
    return 0;
}
