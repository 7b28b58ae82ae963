/* kooisv-grow: fills the database of a running kooisv with synthetic history, for the benchmark
 * "as data grows" (README "Cost as data grows"). Not a test and never for production: the rows
 * are made up. tools/bench/grow.sh runs it with the suite's or the local runner's secrets.
 *   kooisv-grow --audit-dsn-file F --key-file F --pairs N [--order-dsn-file F --instances I]
 *               [--days D] [--chunk C] [--tenants T]
 * Audit: N synthetic requests, an intent and its outcome each (2N entries). They are real
 * entries of the chain: each is hashed as the service would (entry.h, with the chain key,
 * checked against the sealed epoch first) and chained after the head it finds, so `kooisvctl
 * audit verify` checks them like any other. Each chunk is one transaction that holds the
 * journal's advisory lock (the service's writers wait for it) and re-reads the head: the service
 * may go on appending between chunks. Request ids are grow-<index, 9 digits>; the loader
 * resumes after the highest one present and does nothing once N are there. Times: the requests
 * are spread evenly over the D days (365) that end a day before the first run, oldest first, so seq
 * and time grow together as in a real trail (entries the service wrote before the first run have
 * smaller seqs but later times). Resources: instances grow-inst-<7 digits> (I of them), tenants
 * grow-tenant-<6 digits> (T, 100,000), orders CSGROW<9 digits>.
 * Orders: I instances grow-inst-<7 digits> (as the order service's role, the schema's owner),
 * with their newInstance application and history (created, provisioned), created over the same
 * D days; ON CONFLICT DO NOTHING makes a second run a no-op.
 * Then VACUUM ANALYZE of the grown tables, as their owners (--audit-owner-dsn-file: the audit
 * schema's owner, when it may log in). DSNs are read from files (they hold passwords). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cryptoutil.h"
#include "entry.h"
#include "epoch.h"
#include "log.h"
#include "pgutil.h"
#include "timeutil.h"
#include "xmalloc.h"

#define GROW_PREFIX "grow-"
#define GROW_LOCK "SELECT pg_advisory_xact_lock(hashtextextended('kooisv-audit-chain', 0))"
#define DAY_MS 86400000LL

typedef struct {
    const char *audit_dsn_file;
    const char *order_dsn_file;
    const char *audit_owner_dsn_file;
    const char *key_file;
    int64_t pairs;
    int64_t days;
    int64_t chunk;
    int64_t instances;
    int64_t tenants;
} grow_args_t;

typedef struct {
    PGconn *conn;
    entry_chain_t chain;
    int64_t base_ms; /* time of pair 0 */
    int64_t step_ms; /* time between pairs */
} grow_t;

/* splitmix64: a fixed pseudo-random stream per pair, so a resumed run writes what one run
 * would have. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kooisv-grow: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ---------------------------------------------------------------- one synthetic request */

typedef struct {
    char request_id[24], trace_id[40], nonce[40], caller_id[24], source[24];
    char res_id[2][40];
    entry_resource_t res[2];
    entry_intent_t in;
    entry_outcome_t out;
} grow_pair_t;

/* Fill p with pair i at sequence numbers seq (intent) and seq + 1 (outcome). */
static void grow_pair_make(const grow_t *g, const grow_args_t *a, int64_t i, int64_t seq,
                           grow_pair_t *p)
{
    uint64_t r = mix((uint64_t)i), r2 = mix(r), r3 = mix(r2);
    memset(p, 0, sizeof *p);
    snprintf(p->request_id, sizeof p->request_id, GROW_PREFIX "%09" PRId64, i);
    snprintf(p->trace_id, sizeof p->trace_id, "%016" PRIx64 "%016" PRIx64, r, r2);
    snprintf(p->nonce, sizeof p->nonce, "%016" PRIx64 "%016" PRIx64, r2, r3);
    snprintf(p->source, sizeof p->source, "10.%u.%u.%u", (unsigned)(r3 >> 8) % 16,
             (unsigned)(r3 >> 16) % 256, 1 + (unsigned)(r3 >> 24) % 254);
    int64_t at = g->base_ms + i * g->step_ms + (i ? (int64_t)(r3 % (uint64_t)g->step_ms) : 0);
    int64_t instance = (int64_t)(r2 % (uint64_t)a->instances);
    int kind = (int)(r % 100);
    const char *event, *caller_kind = "basic";
    size_t nres = 1;
    snprintf(p->res_id[0], sizeof p->res_id[0], "grow-inst-%07" PRId64, instance);
    p->res[0].kind = "instance";
    if (kind < 60) {
        event = "queryInstance";
    } else if (kind < 80) {
        event = kind < 72 ? "newInstance" : "refreshInstance";
        snprintf(p->res_id[1], sizeof p->res_id[1], "CSGROW%09" PRId64, i);
        p->res[1].kind = "order";
        nres = 2;
    } else if (kind < 82) {
        event = "releaseInstance";
    } else if (kind < 94) {
        event = "tenantSync";
        caller_kind = "kit";
        snprintf(p->res_id[0], sizeof p->res_id[0], "grow-tenant-%06" PRId64,
                 (int64_t)(r3 % (uint64_t)a->tenants));
        p->res[0].kind = "tenant";
    } else if (kind < 96) {
        event = "getLicenseAsync";
    } else if (kind < 99) {
        event = "admin.audit.query";
        caller_kind = "operator";
        nres = 0;
    } else {
        event = "admin.instance.get";
        caller_kind = "operator";
    }
    for (size_t k = 0; k < nres; k++)
        p->res[k].id = p->res_id[k];
    snprintf(p->caller_id, sizeof p->caller_id, "%s",
             caller_kind[0] == 'b'   ? "grow-basic-key"
             : caller_kind[0] == 'k' ? "grow-kit-key"
                                     : "admin");
    bool signed_call = caller_kind[0] != 'o';
    /* One call in a hundred is refused at the gateway (a bad signature). */
    bool refused = signed_call && r3 % 100 == 7;
    p->in = (entry_intent_t){.seq = seq,
                             .request_id = p->request_id,
                             .trace_id = p->trace_id,
                             .received_ms = at,
                             .caller_kind = (char *)caller_kind,
                             .caller_id = p->caller_id,
                             .event_type = (char *)event,
                             .resources = p->res,
                             .nresources = nres,
                             .source_addr = p->source,
                             .test_flag = r3 % 50 == 3,
                             .nonce = signed_call ? p->nonce : "",
                             .nonce_ts_ms = signed_call ? at - (int64_t)(r % 3000) : 0,
                             .reject_reason = refused ? "signature does not match" : "",
                             .reject_code = refused ? "000002" : ""};
    int64_t latency_us = 800 + (int64_t)(r2 % 40000);
    p->out = (entry_outcome_t){.seq = seq + 1,
                               .request_id = p->request_id,
                               .recorded_ms = at + latency_us / 1000 + 1,
                               .result_code = refused ? "000002" : "000000",
                               .result_msg = refused ? "signature does not match" : "success",
                               .latency_us = latency_us,
                               .http_status = 200};
}

/* ---------------------------------------------------------------- COPY text rows */

static void copy_bytea(FILE *b, const uint8_t h[ENTRY_HASH_LEN])
{
    char hex[2 * ENTRY_HASH_LEN + 1];
    fprintf(b, "\\\\x%s", hex_encode(h, ENTRY_HASH_LEN, hex));
}

/* The generated strings hold no tab, newline or backslash: they go into COPY text as they are. */
static void copy_intent(FILE *b, const entry_intent_t *e, const uint8_t prev[ENTRY_HASH_LEN],
                        const uint8_t hash[ENTRY_HASH_LEN])
{
    fprintf(b, "%" PRId64 "\t%s\t%s\t%" PRId64 "\t%s\t%s\t%s\t[", e->seq, e->request_id,
            e->trace_id, e->received_ms, e->caller_kind, e->caller_id, e->event_type);
    for (size_t k = 0; k < e->nresources; k++)
        fprintf(b, "%s{\"kind\": \"%s\", \"id\": \"%s\"}", k ? ", " : "", e->resources[k].kind,
                e->resources[k].id);
    fprintf(b, "]\t%s\t%s\t%s\t%" PRId64 "\t%s\t%s\t", e->source_addr, e->test_flag ? "t" : "f",
            e->nonce, e->nonce_ts_ms, e->reject_reason, e->reject_code);
    copy_bytea(b, prev);
    fputc('\t', b);
    copy_bytea(b, hash);
    fputc('\n', b);
}

static void copy_outcome(FILE *b, const entry_outcome_t *e, const uint8_t prev[ENTRY_HASH_LEN],
                         const uint8_t hash[ENTRY_HASH_LEN])
{
    fprintf(b, "%" PRId64 "\t%s\t%" PRId64 "\t%s\t%s\t%" PRId64 "\t%" PRId64 "\t", e->seq,
            e->request_id, e->recorded_ms, e->result_code, e->result_msg, e->latency_us,
            e->http_status);
    copy_bytea(b, prev);
    fputc('\t', b);
    copy_bytea(b, hash);
    fputc('\n', b);
}

/* ---------------------------------------------------------------- database */

static PGresult *sql(PGconn *conn, const char *q)
{
    PGresult *r = PQexec(conn, q);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_COPY_IN)
        die("%s: %s", q, PQerrorMessage(conn));
    return r;
}

/* Run COPY q with rows (len bytes of COPY text). */
static void copy_in(PGconn *conn, const char *q, const char *rows, size_t len)
{
    PQclear(sql(conn, q));
    if (PQputCopyData(conn, rows, (int)len) != 1 || PQputCopyEnd(conn, NULL) != 1)
        die("COPY: %s", PQerrorMessage(conn));
    PGresult *r = PQgetResult(conn);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("COPY: %s", PQresultErrorMessage(r));
    PQclear(r);
    while ((r = PQgetResult(conn)))
        PQclear(r);
}

/* Pairs already loaded: one more than the highest grow- request id (0 when none). */
static int64_t grow_done(PGconn *conn)
{
    PGresult *r = sql(conn, "SELECT max(request_id) FROM audit.intents"
                            " WHERE request_id >= '" GROW_PREFIX "' AND request_id < 'grow.'");
    const char *v = pg_value(r, 0, 0);
    int64_t done = v ? strtoll(v + strlen(GROW_PREFIX), NULL, 10) + 1 : 0;
    PQclear(r);
    return done;
}

/* Pair 0's time, from the first run (so a resumed run spreads like one run). */
static int64_t grow_base(PGconn *conn, int64_t done, const grow_args_t *a)
{
    if (done == 0)
        return time_now_ms() - (a->days + 1) * DAY_MS; /* the newest a day old */
    PGresult *r = sql(conn, "SELECT received_ms FROM audit.intents WHERE request_id = '" GROW_PREFIX
                            "000000000'");
    const char *v = pg_value(r, 0, 0);
    if (!v)
        die("pair 0 is missing: this trail holds grow- entries this loader did not write");
    int64_t base = strtoll(v, NULL, 10);
    PQclear(r);
    return base;
}

/* Append pairs [from, to) in one transaction after the current head. */
static void grow_chunk(grow_t *g, const grow_args_t *a, int64_t from, int64_t to)
{
    PQclear(sql(g->conn, "BEGIN"));
    PQclear(sql(g->conn, GROW_LOCK));
    PGresult *r =
        sql(g->conn, "SELECT seq, encode(hash, 'hex') FROM ("
                     " (SELECT seq, hash FROM audit.intents ORDER BY seq DESC LIMIT 1)"
                     " UNION ALL"
                     " (SELECT seq, hash FROM audit.outcomes ORDER BY seq DESC LIMIT 1)) h"
                     " ORDER BY seq DESC LIMIT 1");
    int64_t head = 0;
    uint8_t prev[ENTRY_HASH_LEN] = {0}, hash[ENTRY_HASH_LEN];
    if (PQntuples(r) == 1) {
        head = strtoll(pg_value(r, 0, 0), NULL, 10);
        if (!entry_hash_from_hex(pg_value(r, 0, 1), prev))
            die("the chain head %" PRId64 " has no valid hash", head);
    }
    PQclear(r);
    char *intents_text = NULL, *outcomes_text = NULL;
    size_t intents_len = 0, outcomes_len = 0;
    FILE *intents = open_memstream(&intents_text, &intents_len);
    FILE *outcomes = open_memstream(&outcomes_text, &outcomes_len);
    if (!intents || !outcomes)
        die("out of memory");
    grow_pair_t p;
    for (int64_t i = from; i < to; i++) {
        int64_t seq = head + 1 + 2 * (i - from);
        grow_pair_make(g, a, i, seq, &p);
        entry_intent_hash(&p.in, &g->chain, prev, hash);
        copy_intent(intents, &p.in, prev, hash);
        memcpy(prev, hash, sizeof prev);
        entry_outcome_hash(&p.out, &g->chain, prev, hash);
        copy_outcome(outcomes, &p.out, prev, hash);
        memcpy(prev, hash, sizeof prev);
    }
    fclose(intents);
    fclose(outcomes);
    copy_in(g->conn,
            "COPY audit.intents (seq, request_id, trace_id, received_ms, caller_kind, caller_id,"
            " event_type, resources, source_addr, test_flag, nonce, nonce_ts_ms, reject_reason,"
            " reject_code, prev_hash, hash) FROM STDIN",
            intents_text, intents_len);
    copy_in(g->conn,
            "COPY audit.outcomes (seq, request_id, recorded_ms, result_code, result_msg,"
            " latency_us, http_status, prev_hash, hash) FROM STDIN",
            outcomes_text, outcomes_len);
    PQclear(sql(g->conn, "COMMIT"));
    free(intents_text);
    free(outcomes_text);
}

/* ---------------------------------------------------------------- orders */

/* Instances [$1, $2) with their application and history; existing ones are left alone. */
#define GROW_ORDERS_SQL                                                                            \
    "WITH g AS (SELECT n, 'grow-inst-' || lpad(n::text, 7, '0') AS id,"                            \
    "  'CSGROW' || lpad(n::text, 9, '0') AS order_id,"                                             \
    "  now() - make_interval(secs => ($3::bigint - n) * $4::double precision / $3::bigint) AS at"  \
    "  FROM generate_series($1::bigint, $2::bigint - 1) n),"                                       \
    " ins AS (INSERT INTO orders.instances (instance_id, order_id, order_line_id, business_id,"    \
    "  test_flag, state, order_type, charging_mode, period_type, period_number, product_id,"       \
    "  sku_code, amount, trial, expire_time, front_end_url, admin_url, provisioned_at,"            \
    "  created_request_id, created_at, updated_at, released_at)"                                   \
    "  SELECT id, order_id, order_id || '-1', 'grow-biz-' || n, n % 50 = 3,"                       \
    "   CASE WHEN n % 20 = 0 THEN 'released' WHEN n % 97 = 1 THEN 'frozen' ELSE 'active' END,"     \
    "   'NEW', CASE WHEN n % 10 = 0 THEN '3' ELSE '0' END, 'month', 1 + (n % 12)::int,"            \
    "   'grow-product-' || n % 20, 'grow-sku-' || n % 60, (10 + n % 90)::text || '.00',"           \
    "   n % 25 = 0, at + make_interval(months => 1 + (n % 12)::int),"                              \
    "   'https://app.example.com/t/' || id, 'https://app.example.com/admin/' || id,"               \
    "   at + interval '3 seconds', 'grow-' || lpad(n::text, 9, '0'), at, at,"                      \
    "   CASE WHEN n % 20 = 0 THEN at + interval '30 days' END"                                     \
    "  FROM g ON CONFLICT DO NOTHING RETURNING instance_id, order_id, created_at, state),"         \
    " app AS (INSERT INTO orders.order_applications (instance_id, activity, order_id,"             \
    "  order_line_id, request_id, applied_at)"                                                     \
    "  SELECT instance_id, 'newInstance', order_id, order_id || '-1', 'grow', created_at FROM "    \
    "ins),"                                                                                        \
    " hist AS (INSERT INTO orders.instance_history (instance_id, at, event, from_state, to_state," \
    "  order_id, request_id)"                                                                      \
    "  SELECT instance_id, created_at, 'created', NULL, 'provisioning', order_id, 'grow' FROM ins" \
    "  UNION ALL"                                                                                  \
    "  SELECT instance_id, created_at + interval '3 seconds', 'provisioned', 'provisioning',"      \
    "   'active', order_id, 'grow' FROM ins)"                                                      \
    " SELECT count(*) FROM ins"

static void grow_orders(const grow_args_t *a)
{
    char *dsn = config_read_file(a->order_dsn_file, NULL);
    if (!dsn)
        die("cannot read %s", a->order_dsn_file);
    dsn[strcspn(dsn, "\r\n")] = '\0';
    PGconn *conn = pg_connect(dsn, "kooisv-grow", 10);
    free(dsn);
    if (!conn)
        die("cannot connect as the order service");
    PQclear(sql(conn, "SET synchronous_commit = off"));
    PGresult *r = PQprepare(conn, "grow_orders", GROW_ORDERS_SQL, 4, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("preparing the order statement: %s", PQresultErrorMessage(r));
    PQclear(r);
    int64_t t0 = time_mono_us(), added = 0, step = 100000;
    char from[24], to[24], total[24], span_s[24];
    snprintf(total, sizeof total, "%" PRId64, a->instances);
    snprintf(span_s, sizeof span_s, "%" PRId64, a->days * 86400);
    for (int64_t f = 0; f < a->instances; f += step) {
        snprintf(from, sizeof from, "%" PRId64, f);
        snprintf(to, sizeof to, "%" PRId64, f + step < a->instances ? f + step : a->instances);
        const char *p[] = {from, to, total, span_s};
        r = PQexecPrepared(conn, "grow_orders", 4, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            die("instances %s..%s: %s", from, to, PQresultErrorMessage(r));
        added += strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    PQclear(sql(conn, "VACUUM ANALYZE orders.instances, orders.instance_history,"
                      " orders.order_applications"));
    printf("orders: %" PRId64 " instances wanted, %" PRId64 " added (%" PRId64
           " were there), %.1f s with VACUUM ANALYZE\n",
           a->instances, added, a->instances - added, (double)(time_mono_us() - t0) / 1e6);
    fflush(stdout);
    PQfinish(conn);
}

/* ---------------------------------------------------------------- audit */

static void grow_audit(const grow_args_t *a)
{
    size_t key_len = 0;
    char *key = config_read_file(a->key_file, &key_len);
    char *dsn = config_read_file(a->audit_dsn_file, NULL);
    if (!key || !dsn)
        die("cannot read %s or %s", a->key_file, a->audit_dsn_file);
    key_len = strcspn(key, "\r\n"); /* as the service reads a _FILE secret */
    dsn[strcspn(dsn, "\r\n")] = '\0';
    grow_t g = {.conn = pg_connect(dsn, "kooisv-grow", 10)};
    free(dsn);
    if (!g.conn)
        die("cannot connect as the audit service");
    g.chain.key = (const uint8_t *)key;
    g.chain.key_len = key_len;
    if (epoch_load(g.conn, g.chain.key, key_len, &g.chain.keyed_from) != 0)
        die("the chain epoch does not match this key (see the log line above)");
    PQclear(sql(g.conn, "SET synchronous_commit = off"));
    int64_t done = grow_done(g.conn);
    g.base_ms = grow_base(g.conn, done, a);
    g.step_ms = a->days * DAY_MS / a->pairs;
    if (g.step_ms < 1)
        g.step_ms = 1;
    if (done >= a->pairs) {
        printf("audit: %" PRId64 " requests (%" PRId64 " entries) already there, nothing to do\n",
               done, 2 * done);
    } else {
        printf("audit: %" PRId64 " requests there, appending %" PRId64 " (%" PRId64 " entries)\n",
               done, a->pairs - done, 2 * (a->pairs - done));
        fflush(stdout);
        int64_t t0 = time_mono_us(), last = t0;
        for (int64_t from = done; from < a->pairs; from += a->chunk) {
            int64_t to = from + a->chunk < a->pairs ? from + a->chunk : a->pairs;
            grow_chunk(&g, a, from, to);
            int64_t now = time_mono_us();
            if (now - last > 30000000 || to == a->pairs) {
                double s = (double)(now - t0) / 1e6;
                printf("audit: %" PRId64 "/%" PRId64 " requests, %.0f s, %.0f entries/s\n", to,
                       a->pairs, s, 2.0 * (double)(to - done) / s);
                fflush(stdout);
                last = now;
            }
        }
    }
    PQfinish(g.conn);
    free(key);
    if (!a->audit_owner_dsn_file)
        return;
    /* Statistics now rather than at autovacuum's leisure: the plans depend on them. */
    dsn = config_read_file(a->audit_owner_dsn_file, NULL);
    if (!dsn)
        die("cannot read %s", a->audit_owner_dsn_file);
    dsn[strcspn(dsn, "\r\n")] = '\0';
    PGconn *owner = pg_connect(dsn, "kooisv-grow", 0);
    free(dsn);
    if (!owner) {
        /* The owner may log in only while migrating (the local runner's NOLOGIN default). */
        printf("audit: no VACUUM ANALYZE (the schema's owner cannot log in): autovacuum's turn\n");
        return;
    }
    int64_t t0 = time_mono_us();
    PQclear(sql(owner, "VACUUM ANALYZE audit.intents, audit.outcomes"));
    printf("audit: VACUUM ANALYZE %.1f s\n", (double)(time_mono_us() - t0) / 1e6);
    PQfinish(owner);
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr, "usage: kooisv-grow --audit-dsn-file F --key-file F --pairs N\n"
                    "                   [--order-dsn-file F --instances I]"
                    " [--audit-owner-dsn-file F] [--days D]"
                    " [--chunk C] [--tenants T]\n");
    exit(2);
}

static int64_t arg_count(const char *v, int64_t min)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < min)
        usage();
    return n;
}

int main(int argc, char **argv)
{
    grow_args_t a = {.days = 365, .chunk = 50000, .instances = 1000000, .tenants = 100000};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(o, "--audit-dsn-file") == 0)
            a.audit_dsn_file = v;
        else if (strcmp(o, "--order-dsn-file") == 0)
            a.order_dsn_file = v;
        else if (strcmp(o, "--audit-owner-dsn-file") == 0)
            a.audit_owner_dsn_file = v;
        else if (strcmp(o, "--key-file") == 0)
            a.key_file = v;
        else if (strcmp(o, "--pairs") == 0)
            a.pairs = arg_count(v, 1);
        else if (strcmp(o, "--days") == 0)
            a.days = arg_count(v, 1);
        else if (strcmp(o, "--chunk") == 0)
            a.chunk = arg_count(v, 1);
        else if (strcmp(o, "--instances") == 0)
            a.instances = arg_count(v, 1);
        else if (strcmp(o, "--tenants") == 0)
            a.tenants = arg_count(v, 1);
        else
            usage();
        i++;
    }
    if (!a.audit_dsn_file || !a.key_file || !a.pairs)
        usage();
    log_init("kooisv-grow");
    if (a.order_dsn_file)
        grow_orders(&a);
    grow_audit(&a);
    return 0;
}
