/* kooisv-bench: signed load against a running kooisv (the local runner's `up`), with nginx
 * serving a static 200 under the same certificate in the same run as the yardstick.
 *
 *   kooisv-bench --env-file .state/kooisv.env --table             the whole table (README)
 *   kooisv-bench --env-file .state/kooisv.env --workload query --conns 64 --seconds 10
 *
 * Every request is signed afresh (a unique nonce, the current time) with the seller's keys of the
 * env file, over N connections that are kept alive or opened anew (full TLS handshake) for every
 * call, as fast as they go or at a fixed total rate (latency then counts from each call's planned
 * start, so that a stall is not hidden). It prints calls/s, latency percentiles, the answers by
 * result code and the CPU time per call of every kooisv process and of PostgreSQL (from /proc,
 * before and after: steadier than throughput on a shared machine), and each rate as a ratio of
 * nginx's rate over the same kind of connections.
 *
 *   kooisv-bench --workload mix --rate 20 --conns 4 --seconds 3600 --no-nginx --log calls.log
 *
 * runs until SIGINT/SIGTERM (then prints its result as at the end of --seconds) and writes one
 * line per call to the log: answer, call, nonce, id (what the deploy test checks a rolling
 * restart against: every call answered 000000 is in the audit trail and stored once), when it
 * was due (ms from the run's start) and its latency (µs): which calls make a tail, and when. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "canonjson.h"
#include "config.h"
#include "randutil.h"
#include "sigv2.h"
#include "timeutil.h"
#include "xmalloc.h"

/* ---- settings ---------------------------------------------------------------------------- */

typedef enum { W_QUERY, W_NEW, W_REFRESH, W_TENANT, W_MIX, W_NGINX, W_N } workload_t;
static const char *const workload_names[W_N] = {"query",  "new", "refresh",
                                                "tenant", "mix", "nginx"};
static const char *const workload_titles[W_N] = {"queryInstance",
                                                 "newInstance (fresh orders)",
                                                 "refreshInstance (fresh renewals)",
                                                 "tenantSync (fresh tenants)",
                                                 "mix 60/15/10/15",
                                                 "nginx static 200"};

typedef struct {
    workload_t workload;
    int conns;
    double seconds;
    double rate;  /* calls/s in total, 0 = as fast as possible */
    bool newconn; /* a new TLS connection per call */
    int retries;  /* times an answer 000005 is retried (--retry) */
} run_spec_t;

typedef struct {
    double calls_s;
    double p50, p95, p99, max; /* ms */
    double cpu_us_call;        /* kooisv processes + PostgreSQL (nginx's own for nginx) */
    double proc_us_call[16];   /* per watched process, order of the procs table */
    double cs_call;            /* context switches per call, kooisv + PostgreSQL: each thread
                                * hand-off and each database round trip costs one, and they
                                * depend far less on the machine's other load than CPU time */
    double bench_us_call;      /* this load generator */
    char codes[256];           /* "000000:1234 000005:2" */
    long calls;
    double busy_pct, steal_pct; /* the machine's CPUs over the run (/proc/stat), all processes */
    /* fixed rate only, by the second each call was due in: the median and the worst of the
     * seconds' own p99, and how many seconds had a p99 over g.tail_ms */
    int nsec, tail_secs, worst_sec;
    double sec_p99_median, sec_p99_worst;
} run_result_t;

static struct {
    char *host; /* of KOOISV_URL */
    char port[8];
    char *path; /* "/produce" */
    char *ca_file, *basic_key, *kit_key, *state_dir;
    struct sockaddr_storage addr; /* where requests go in this run */
    socklen_t addrlen;
    SSL_CTX *ssl;
    char run_id[9]; /* makes this run's order, tenant and nonce values unique */
    char **pool;    /* provisioned instance ids */
    int npool;
    FILE *log;      /* --log: one line per call */
    double tail_ms; /* --tail-ms: a second of a fixed-rate run with a p99 over this is counted */
} g;

/* SIGINT/SIGTERM: the workers stop after the call they are in, and the run is reported. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* What one call was, for --log: the call's name, its nonce and the id it is about (orderId of
 * newInstance and refreshInstance, tenantId of tenantSync, instanceId of queryInstance). */
typedef struct {
    const char *call;
    char nonce[40];
    char id[64];
} call_info_t;

/* ---- settings from the env file ---------------------------------------------------------- */

static char *env_names[64], *env_values[64];
static int n_env;

static const char *setting(const char *name)
{
    for (int i = 0; i < n_env; i++)
        if (strcmp(env_names[i], name) == 0)
            return env_values[i];
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void env_file_load(const char *path)
{
    char *text = config_read_file(path, NULL);
    if (!text) {
        fprintf(stderr, "kooisv-bench: cannot read %s: %s\n", path, strerror(errno));
        exit(2);
    }
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *name, *value;
        if (config_env_line(line, &name, &value) == 1 && n_env < 64) {
            env_names[n_env] = xstrdup(name);
            env_values[n_env++] = xstrdup(value);
        }
    }
    xfree_secret(text, strlen(text));
}

static const char *need(const char *name)
{
    const char *v = setting(name);
    if (!v) {
        fprintf(stderr, "kooisv-bench: %s is not set (give --env-file .state/kooisv.env)\n", name);
        exit(2);
    }
    return v;
}

/* https://host:port/path of KOOISV_URL into g. */
static void url_parse(const char *url)
{
    if (strncmp(url, "https://", 8) != 0) {
        fprintf(stderr, "kooisv-bench: KOOISV_URL must be https://host:port/path\n");
        exit(2);
    }
    const char *h = url + 8, *slash = strchr(h, '/'), *colon = strrchr(h, ':');
    if (!slash)
        slash = h + strlen(h);
    if (!colon || colon > slash) {
        g.host = xstrndup(h, (size_t)(slash - h));
        snprintf(g.port, sizeof g.port, "443");
    } else {
        g.host = xstrndup(h, (size_t)(colon - h));
        snprintf(g.port, sizeof g.port, "%.*s", (int)(slash - colon - 1), colon + 1);
    }
    g.path = xstrdup(*slash ? slash : "/");
}

static void resolve(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        fprintf(stderr, "kooisv-bench: cannot resolve %s:%s: %s\n", host, port, gai_strerror(rc));
        exit(1);
    }
    memcpy(&g.addr, ai->ai_addr, ai->ai_addrlen);
    g.addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
}

/* ---- one HTTPS connection ---------------------------------------------------------------- */

typedef struct {
    int fd;
    SSL *ssl;
    char buf[65536];
    size_t have;
} conn_t;

static void conn_close(conn_t *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    c->have = 0;
}

/* TCP + a full TLS handshake verifying the certificate; 0 or -1. */
static int conn_open(conn_t *c)
{
    c->fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c->ssl = NULL;
    c->have = 0;
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, (struct sockaddr *)&g.addr, g.addrlen) != 0) {
        conn_close(c);
        return -1;
    }
    c->ssl = SSL_new(g.ssl);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, g.host);
    if (SSL_connect(c->ssl) != 1) {
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Send req whole and read one answer (Content-Length framing). The status, the resultCode (or
 * "" when none) and whether the server keeps the connection; -1 on a transport failure. */
static int conn_call(conn_t *c, const char *req, size_t len, int *status, char code[16], bool *keep)
{
    if (SSL_write(c->ssl, req, (int)len) != (int)len)
        return -1;
    c->have = 0;
    char *end = NULL;
    for (;;) {
        c->buf[c->have] = '\0';
        if ((end = strstr(c->buf, "\r\n\r\n")))
            break;
        if (c->have + 1 >= sizeof c->buf)
            return -1;
        int n = SSL_read(c->ssl, c->buf + c->have, (int)(sizeof c->buf - 1 - c->have));
        if (n <= 0)
            return -1;
        c->have += (size_t)n;
    }
    *status = c->have > 12 ? atoi(c->buf + 9) : 0;
    size_t head = (size_t)(end - c->buf) + 4, body_len = 0;
    *keep = true;
    for (char *line = strstr(c->buf, "\r\n") + 2; line < end;) {
        char *eol = strstr(line, "\r\n");
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            body_len = strtoul(line + 15, NULL, 10);
        else if (strncasecmp(line, "Connection:", 11) == 0 && strcasestr(line, "close") &&
                 strcasestr(line, "close") < eol)
            *keep = false;
        line = eol + 2;
    }
    if (head + body_len >= sizeof c->buf)
        return -1;
    while (c->have < head + body_len) {
        int n = SSL_read(c->ssl, c->buf + c->have, (int)(head + body_len - c->have));
        if (n <= 0)
            return -1;
        c->have += (size_t)n;
    }
    c->buf[head + body_len] = '\0';
    const char *rc = strstr(c->buf + head, "\"resultCode\":\"");
    code[0] = '\0';
    if (rc)
        snprintf(code, 16, "%.6s", rc + 14);
    return 0;
}

/* ---- signed requests --------------------------------------------------------------------- */

/* A unique id: the run's id, the worker, a counter. */
/* The run of this invocation under way (run_one counts them): part of every id a call makes,
 * so that a later run of --table never repeats an earlier run's orders, renewals or tenants
 * (they would be answered as repeats, which costs far less than the work they stand for). */
static unsigned run_seq;

static void uid(char *out, size_t len, const char *prefix, int worker, unsigned long n)
{
    snprintf(out, len, "%s%s%02XW%02dN%07lu", prefix, g.run_id, run_seq & 0xffu, worker, n);
}

static void fresh_ts_nonce(char ts[24], char nonce[40], int worker, unsigned long n)
{
    snprintf(ts, 24, "%lld", (long long)time_now_ms());
    char r[9];
    rand_alnum(r, 8);
    snprintf(nonce, 40, "%.8s%.8s%02d%07lu", r, g.run_id, worker % 100, n % 10000000);
}

/* A signed POST of body (canonical JSON already) into out; its length. SIGV2_BASIC: to the
 * basic interface, signed in the query string; SIGV2_KIT: to <path>/produceAPI/v2/<name>, signed
 * in x- headers. The nonce goes to info when given. */
static size_t signed_request(char *out, size_t cap, sigv2_kind_t kind, const char *name,
                             const char *body, int worker, unsigned long n, call_info_t *info)
{
    char ts[24], nonce[40], sig[65];
    fresh_ts_nonce(ts, nonce, worker, n);
    if (info)
        snprintf(info->nonce, sizeof info->nonce, "%s", nonce);
    size_t blen = strlen(body);
    sigv2_sign(kind, kind == SIGV2_KIT ? g.kit_key : g.basic_key, nonce, ts, body, blen, sig);
    int k = kind == SIGV2_KIT
                ? snprintf(out, cap,
                           "POST %s%sproduceAPI/v2/%s HTTP/1.1\r\nHost: %s\r\n"
                           "Content-Type: application/json;charset=UTF-8\r\nx-timestamp: %s\r\n"
                           "x-nonce: %s\r\nx-sign: %s\r\nContent-Length: %zu\r\n\r\n%s",
                           g.path, g.path[strlen(g.path) - 1] == '/' ? "" : "/", name, g.host, ts,
                           nonce, sig, blen, body)
                : snprintf(out, cap,
                           "POST %s?signature=%s&timestamp=%s&nonce=%s HTTP/1.1\r\nHost: %s\r\n"
                           "Content-Type: application/json;charset=UTF-8\r\n"
                           "Content-Length: %zu\r\n\r\n%s",
                           g.path, sig, ts, nonce, g.host, blen, body);
    return k > 0 && (size_t)k < cap ? (size_t)k : 0;
}

/* The workload's n-th call of worker into out (for the mix: 60 % queryInstance, 15 %
 * newInstance, 10 % refreshInstance, 15 % tenantSync); its length. What it is goes to info
 * when given. */
static size_t make_request(workload_t w, char *out, size_t cap, int worker, unsigned long n,
                           call_info_t *info)
{
    char body[512], id[64];
    call_info_t scratch;
    if (!info)
        info = &scratch;
    if (w == W_MIX) {
        unsigned k = (unsigned)((n * 7 + (unsigned long)worker) % 20);
        w = k < 12 ? W_QUERY : k < 15 ? W_NEW : k < 17 ? W_REFRESH : W_TENANT;
    }
    const char *inst = g.npool ? g.pool[(size_t)(worker + (int)(n % 7)) % (size_t)g.npool] : "x";
    const char *about = id; /* the id info names */
    sigv2_kind_t kind = SIGV2_BASIC;
    switch (w) {
    case W_NGINX:
    case W_QUERY:
        snprintf(body, sizeof body, "{\"activity\":\"queryInstance\",\"instanceId\":\"%s\"}", inst);
        info->call = "queryInstance";
        about = inst;
        break;
    case W_NEW:
        uid(id, sizeof id, "CSB", worker, n);
        snprintf(body, sizeof body,
                 "{\"activity\":\"newInstance\",\"businessId\":\"B-%s\",\"orderId\":\"%s\","
                 "\"orderLineId\":\"%s-000001\"}",
                 id, id, id);
        info->call = "newInstance";
        break;
    case W_REFRESH:
        /* one instance per worker: renewals of one instance wait for each other's row lock */
        uid(id, sizeof id, "CSR", worker, n);
        snprintf(body, sizeof body,
                 "{\"activity\":\"refreshInstance\",\"expireTime\":\"20991231000000\","
                 "\"instanceId\":\"%s\",\"orderId\":\"%s\",\"orderLineId\":\"%s-000001\","
                 "\"scene\":\"RENEWAL\"}",
                 g.npool ? g.pool[worker % g.npool] : "x", id, id);
        info->call = "refreshInstance";
        break;
    case W_TENANT: {
        uid(id, sizeof id, "BT", worker, n);
        char stamp[15];
        int64_t now = time_now_ms();
        time_format_compact(NULL, now, stamp);
        snprintf(body, sizeof body,
                 "{\"domainName\":\"bench.example.com\",\"flag\":1,\"instanceId\":\"BI%s\","
                 "\"name\":\"Bench\",\"orderId\":\"\",\"tenantCode\":\"c\",\"tenantId\":\"%s\","
                 "\"testFlag\":0,\"timeStamp\":\"%s%03d\"}",
                 g.run_id, id, stamp, (int)(now % 1000));
        info->call = "tenantSync";
        kind = SIGV2_KIT;
        break;
    }
    default:
        return 0;
    }
    snprintf(info->id, sizeof info->id, "%s", about);
    return signed_request(out, cap, kind, kind == SIGV2_KIT ? info->call : NULL, body, worker, n,
                          info);
}

/* ---- CPU time of the processes, from /proc ----------------------------------------------- */

#define NPROCS 10
/* kooisv's processes come first, then PostgreSQL: the total of a call is P_GATEWAY..P_PG. */
enum { P_GATEWAY, P_ORDER, P_TENANT, P_APP, P_AUDIT, P_BILLING, P_PG, P_EMULATOR, P_NGINX, P_BENCH };
static const char *const proc_names[NPROCS] = {"gateway", "order",    "tenant",   "app",   "audit",
                                               "billing", "postgres", "emulator", "nginx", "bench"};
static pid_t proc_pids[NPROCS];
static long hz;

/* utime + stime (+ the children it reaped) of pid, in ticks; 0 when it is gone. */
static uint64_t stat_ticks(pid_t pid, bool with_children, pid_t *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime cutime cstime */
    unsigned long long v[15] = {0};
    char state;
    int got =
        sscanf(p + 2, "%c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
               &state, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10],
               &v[11], &v[12], &v[13]);
    if (got < 15)
        return 0;
    if (ppid)
        *ppid = (pid_t)v[0];
    return v[10] + v[11] + (with_children ? v[12] + v[13] : 0);
}

/* The sum of of(child) over the direct children of pid (PostgreSQL's backends, nginx's
 * workers), found in /proc. */
static uint64_t children_sum(pid_t pid, uint64_t (*of)(pid_t child))
{
    uint64_t sum = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        pid_t child = (pid_t)atoi(e->d_name), parent = 0;
        stat_ticks(child, false, &parent);
        if (parent == pid)
            sum += of(child);
    }
    if (d)
        closedir(d);
    return sum;
}

static uint64_t own_ticks(pid_t pid)
{
    return stat_ticks(pid, false, NULL);
}

/* pid and all its direct children. */
static uint64_t tree_ticks(pid_t pid)
{
    return stat_ticks(pid, true, NULL) + children_sum(pid, own_ticks);
}

/* Context switches (voluntary and not) of every thread of pid. */
static uint64_t task_switches(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    struct dirent *e;
    uint64_t sum = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char status[320], line[256];
        snprintf(status, sizeof status, "/proc/%d/task/%s/status", (int)pid, e->d_name);
        FILE *f = fopen(status, "r");
        while (f && fgets(line, sizeof line, f)) {
            unsigned long long n;
            if (sscanf(line, "voluntary_ctxt_switches: %llu", &n) == 1 ||
                sscanf(line, "nonvoluntary_ctxt_switches: %llu", &n) == 1)
                sum += n;
        }
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return sum;
}

/* Context switches of the kooisv processes and of PostgreSQL's postmaster and backends. */
static uint64_t switches_sample(void)
{
    uint64_t sum = 0;
    for (int i = P_GATEWAY; i < P_PG; i++)
        if (proc_pids[i])
            sum += task_switches(proc_pids[i]);
    if (!proc_pids[P_PG])
        return sum;
    return sum + task_switches(proc_pids[P_PG]) + children_sum(proc_pids[P_PG], task_switches);
}

static void cpu_sample(uint64_t out[NPROCS])
{
    for (int i = 0; i < NPROCS; i++) {
        if (i == P_BENCH) {
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            out[i] = (uint64_t)(((double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6) *
                                (double)hz);
        } else
            out[i] = !proc_pids[i]               ? 0
                     : i == P_PG || i == P_NGINX ? tree_ticks(proc_pids[i])
                                                 : stat_ticks(proc_pids[i], true, NULL);
    }
}

static pid_t pid_from_file(const char *path)
{
    char *text = config_read_file(path, NULL);
    pid_t pid = text ? (pid_t)atoi(text) : 0;
    free(text);
    return pid > 0 && kill(pid, 0) == 0 ? pid : 0;
}

/* The processes `up` started: <state>/run/<proc>.pid and the postmaster's pid file. */
static void procs_find(void)
{
    for (int i = P_GATEWAY; i <= P_EMULATOR; i++) {
        char path[4096];
        if (i == P_PG)
            snprintf(path, sizeof path, "%s/pg/data/postmaster.pid", g.state_dir);
        else
            snprintf(path, sizeof path, "%s/run/%s.pid", g.state_dir, proc_names[i]);
        proc_pids[i] = pid_from_file(path);
        if (!proc_pids[i])
            fprintf(stderr, "kooisv-bench: no running %s (%s): its CPU is not counted\n",
                    proc_names[i], path);
    }
}

/* Wait (at most 60 s) until the watched processes are quiet: the work a run queued (provisioning
 * of new instances, outbox deliveries) is billed to that run, never to the next one. */
static void settle(void)
{
    for (int i = 0; i < 120; i++) {
        uint64_t a[NPROCS], b[NPROCS], busy = 0;
        cpu_sample(a);
        usleep(500000);
        cpu_sample(b);
        for (int k = P_GATEWAY; k <= P_EMULATOR; k++)
            busy += b[k] - a[k];
        if ((double)busy / (double)hz < 0.05)
            return;
    }
}

/* ---- nginx, the yardstick ---------------------------------------------------------------- */

static char nginx_dir[64];
static char nginx_port[8];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Start nginx (one worker, our certificate, a static 200 for every request) as our child on a
 * free loopback port. */
static void nginx_start(const char *nginx_bin, const char *cert, const char *key)
{
    snprintf(nginx_dir, sizeof nginx_dir, "/tmp/kooisv-bench-XXXXXX");
    if (!mkdtemp(nginx_dir)) {
        perror("kooisv-bench: mkdtemp");
        exit(1);
    }
    chmod(nginx_dir, 0755);
    int port = free_port();
    snprintf(nginx_port, sizeof nginx_port, "%d", port);
    char conf[128];
    snprintf(conf, sizeof conf, "%s/nginx.conf", nginx_dir);
    FILE *f = fopen(conf, "w");
    if (!f || port < 0) {
        fprintf(stderr, "kooisv-bench: cannot prepare nginx in %s\n", nginx_dir);
        exit(1);
    }
    fprintf(f,
            "worker_processes 1;\ndaemon off;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  keepalive_requests 100000000;\n"
            "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n"
            "  scgi_temp_path %s/scgi;\n"
            "  server {\n    listen 127.0.0.1:%d ssl;\n    ssl_certificate %s;\n"
            "    ssl_certificate_key %s;\n    ssl_protocols TLSv1.2 TLSv1.3;\n"
            "    location / { default_type application/json;"
            " return 200 '{\"resultCode\":\"000000\",\"resultMsg\":\"success\"}'; }\n  }\n}\n",
            nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir, port, cert,
            key);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        char elog[128];
        snprintf(elog, sizeof elog, "%s/error.log", nginx_dir);
        execl(nginx_bin, nginx_bin, "-e", elog, "-p", nginx_dir, "-c", conf, (char *)NULL);
        _exit(127);
    }
    proc_pids[P_NGINX] = pid;
    for (int i = 0; i < 100; i++) {
        usleep(50000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
    }
    fprintf(stderr, "kooisv-bench: nginx did not start (see %s/error.log)\n", nginx_dir);
    exit(1);
}

static void nginx_stop(void)
{
    if (!proc_pids[P_NGINX])
        return;
    kill(proc_pids[P_NGINX], SIGTERM);
    waitpid(proc_pids[P_NGINX], NULL, 0);
    proc_pids[P_NGINX] = 0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", nginx_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "kooisv-bench: could not remove %s\n", nginx_dir);
}

/* ---- a run ------------------------------------------------------------------------------- */

#define MAXCODES 12

typedef struct {
    int id;
    const run_spec_t *spec;
    int64_t t0, t_end; /* monotonic µs */
    uint32_t *lat;     /* µs */
    uint32_t *due_s;   /* the second of the run each call was due in, beside lat */
    size_t nlat, cap;
    char codes[MAXCODES][16];
    long counts[MAXCODES];
    conn_t conn;
    pthread_barrier_t *ready;
} worker_t;

static void count_code(worker_t *w, const char *code)
{
    for (int i = 0; i < MAXCODES; i++) {
        if (!w->codes[i][0])
            snprintf(w->codes[i], sizeof w->codes[i], "%s", code);
        if (strcmp(w->codes[i], code) == 0) {
            w->counts[i]++;
            return;
        }
    }
}

/* One --log line: answer, call, nonce, id, due (ms from the run's start t0), latency (µs from
 * start to now) (stdio locks the stream for each line). */
static void log_call(const char *answer, const call_info_t *info, int64_t t0, int64_t start)
{
    if (g.log)
        fprintf(g.log, "%s %s %s %s %lld %lld\n", answer, info->call, info->nonce, info->id,
                (long long)((start - t0) / 1000), (long long)(time_mono_us() - start));
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const run_spec_t *s = w->spec;
    static __thread char req[4096];
    if (!s->newconn && conn_open(&w->conn) != 0)
        count_code(w, "connect-failed");
    pthread_barrier_wait(w->ready);
    /* nothing before t0, when the "before" CPU sample is taken (until 2026-12-07 a run as fast
     * as it goes started at the barrier, up to 0.1 s early) */
    int64_t until_t0 = w->t0 - time_mono_us();
    if (until_t0 > 0)
        usleep((useconds_t)until_t0);
    double every_us = s->rate > 0 ? 1e6 * s->conns / s->rate : 0;
    for (unsigned long n = 0; !stop_requested; n++) {
        int64_t planned = w->t0 + (int64_t)(every_us * ((double)n + (double)w->id / s->conns));
        int64_t now = time_mono_us();
        if (every_us > 0 && planned > now) {
            if (planned >= w->t_end)
                break;
            usleep((useconds_t)(planned - now));
            if (stop_requested)
                break;
        }
        int64_t start = every_us > 0 ? planned : time_mono_us();
        if (start >= w->t_end)
            break;
        /* One call: with --retry, an answer 000005 ("retry later") is retried as the marketplace
         * does, the same call (same ids) signed afresh, after a pause; each such answer is
         * counted and logged as 000005-retried. */
        int64_t done = 0;
        char code[16] = "";
        bool keep = true, ended = false;
        for (int attempt = 0;; attempt++) {
            call_info_t info;
            size_t len = make_request(s->workload, req, sizeof req, w->id, n, &info);
            if (s->newconn || w->conn.fd < 0) {
                if (w->conn.fd >= 0)
                    conn_close(&w->conn);
                if (conn_open(&w->conn) != 0) {
                    count_code(w, "connect-failed");
                    log_call("connect-failed", &info, w->t0, start);
                    usleep(10000);
                    break;
                }
            }
            int status = 0;
            if (conn_call(&w->conn, req, len, &status, code, &keep) != 0) {
                count_code(w, "transport-error");
                log_call("transport-error", &info, w->t0, start);
                conn_close(&w->conn);
                break;
            }
            done = time_mono_us();
            if (done > w->t_end) {
                ended = true;
                break;
            }
            if (!code[0] || status != 200)
                snprintf(code, sizeof code, "HTTP-%d", status);
            if (!keep || s->newconn)
                conn_close(&w->conn);
            if (strcmp(code, "000005") == 0 && attempt < s->retries && !stop_requested) {
                count_code(w, "000005-retried");
                log_call("000005-retried", &info, w->t0, start);
                usleep(1000000);
                continue;
            }
            count_code(w, s->workload == W_NGINX ? "200" : code);
            log_call(code, &info, w->t0, start);
            if (w->nlat == w->cap) {
                w->cap = w->cap ? w->cap * 2 : 4096;
                w->lat = xrealloc(w->lat, w->cap * sizeof *w->lat);
                w->due_s = xrealloc(w->due_s, w->cap * sizeof *w->due_s);
            }
            w->due_s[w->nlat] = (uint32_t)((start - w->t0) / 1000000);
            w->lat[w->nlat++] = (uint32_t)(done - start);
            break;
        }
        if (ended)
            break;
    }
    conn_close(&w->conn);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The machine's CPU time so far (/proc/stat's first line, in ticks): *busy (everything but idle
 * and iowait) and *steal (taken by the hypervisor for other guests); the total. */
static uint64_t machine_ticks(uint64_t *busy, uint64_t *steal)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                       &v[4], &v[5], &v[6], &v[7])
              : 0;
    if (f)
        fclose(f);
    if (n < 8) {
        *busy = *steal = 0;
        return 0;
    }
    uint64_t total = 0;
    for (int i = 0; i < 8; i++)
        total += v[i];
    *busy = total - v[3] - v[4];
    *steal = v[7];
    return total;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The per-second figures of a fixed-rate run into r: calls grouped by the second they were due
 * in (lat[i] µs, due_s[i]), each second's own p99. */
static void seconds_tail(const uint32_t *lat, const uint32_t *due_s, size_t n, run_result_t *r)
{
    if (n == 0)
        return;
    /* sorted by second, then by latency: each second is a run of ascending latencies */
    uint64_t *v = xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)due_s[i] << 32 | lat[i];
    qsort(v, n, sizeof *v, cmp_u64);
    double *p99 = xmalloc(n * sizeof *p99);
    int m = 0;
    for (size_t from = 0, to; from < n; from = to) {
        for (to = from + 1; to < n && v[to] >> 32 == v[from] >> 32; to++)
            ;
        double q = (uint32_t)v[from + (size_t)((double)(to - from - 1) * 0.99)] / 1000.0;
        p99[m++] = q;
        if (q > g.tail_ms)
            r->tail_secs++;
        if (q > r->sec_p99_worst) {
            r->sec_p99_worst = q;
            r->worst_sec = (int)(v[from] >> 32);
        }
    }
    qsort(p99, (size_t)m, sizeof *p99, cmp_double);
    r->nsec = m;
    r->sec_p99_median = p99[m / 2];
    free(v);
    free(p99);
}

static void run_one(const run_spec_t *s, run_result_t *r)
{
    memset(r, 0, sizeof *r);
    run_seq++;
    worker_t *ws = xcalloc((size_t)s->conns, sizeof *ws);
    pthread_t *th = xcalloc((size_t)s->conns, sizeof *th);
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, (unsigned)s->conns + 1);
    for (int i = 0; i < s->conns; i++) {
        ws[i].id = i;
        ws[i].spec = s;
        ws[i].conn.fd = -1;
        ws[i].ready = &ready;
        ws[i].t0 = INT64_MAX;
        ws[i].t_end = INT64_MAX;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&th[i], &attr, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "kooisv-bench: pthread_create failed\n");
            exit(1);
        }
        pthread_attr_destroy(&attr);
    }
    /* the workers read t0/t_end only after the barrier */
    int64_t t0 = time_mono_us() + 100000, t_end = t0 + (int64_t)(s->seconds * 1e6);
    for (int i = 0; i < s->conns; i++) {
        ws[i].t0 = t0;
        ws[i].t_end = t_end;
    }
    uint64_t before[NPROCS], after[NPROCS];
    pthread_barrier_wait(&ready);
    while (time_mono_us() < t0)
        usleep(1000);
    cpu_sample(before);
    uint64_t cs_before = switches_sample();
    uint64_t busy0, steal0, busy1, steal1, all0 = machine_ticks(&busy0, &steal0);
    for (int i = 0; i < s->conns; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(time_mono_us() - t0) / 1e6;
    /* the machine over the calls' time, not the settling after it */
    uint64_t all1 = machine_ticks(&busy1, &steal1);
    if (all1 > all0) {
        r->busy_pct = 100.0 * (double)(busy1 - busy0) / (double)(all1 - all0);
        r->steal_pct = 100.0 * (double)(steal1 - steal0) / (double)(all1 - all0);
    }
    /* The work the calls queued (provisioning, order events, billing) is theirs: it is billed
     * to this run, once the processes are quiet again. */
    settle();
    cpu_sample(after);
    uint64_t cs_after = switches_sample();
    pthread_barrier_destroy(&ready);
    if (g.log)
        fflush(g.log);

    size_t total = 0;
    for (int i = 0; i < s->conns; i++)
        total += ws[i].nlat;
    uint32_t *all = xmalloc((total ? total : 1) * sizeof *all);
    uint32_t *due = xmalloc((total ? total : 1) * sizeof *due);
    size_t k = 0;
    char names[2 * MAXCODES][16];
    long counts[2 * MAXCODES] = {0};
    int ncodes = 0;
    for (int i = 0; i < s->conns; i++) {
        memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof *all);
        memcpy(due + k, ws[i].due_s, ws[i].nlat * sizeof *due);
        k += ws[i].nlat;
        for (int c = 0; c < MAXCODES && ws[i].codes[c][0]; c++) {
            int j = 0;
            while (j < ncodes && strcmp(names[j], ws[i].codes[c]) != 0)
                j++;
            if (j == ncodes && ncodes < 2 * MAXCODES)
                snprintf(names[ncodes++], sizeof names[0], "%s", ws[i].codes[c]);
            if (j < ncodes)
                counts[j] += ws[i].counts[c];
        }
        free(ws[i].lat);
        free(ws[i].due_s);
    }
    if (s->rate > 0)
        seconds_tail(all, due, total, r);
    free(due);
    qsort(all, total, sizeof *all, cmp_u32);
#define PCT(p) (total ? all[(size_t)((double)(total - 1) * (p))] / 1000.0 : 0)
    r->calls = (long)total;
    r->calls_s = secs > 0 ? (double)total / (s->seconds < secs ? s->seconds : secs) : 0;
    r->p50 = PCT(0.50);
    r->p95 = PCT(0.95);
    r->p99 = PCT(0.99);
    r->max = PCT(1.0);
#undef PCT
    size_t off = 0;
    for (int j = 0; j < ncodes && off < sizeof r->codes; j++)
        off += (size_t)snprintf(r->codes + off, sizeof r->codes - off, "%s%s:%ld", j ? " " : "",
                                names[j], counts[j]);
    double calls = total ? (double)total : 1;
    for (int i = 0; i < NPROCS; i++)
        r->proc_us_call[i] = (double)(after[i] - before[i]) * 1e6 / (double)hz / calls;
    r->bench_us_call = r->proc_us_call[P_BENCH];
    r->cs_call = (double)(cs_after - cs_before) / calls;
    if (s->workload == W_NGINX)
        r->cpu_us_call = r->proc_us_call[P_NGINX];
    else
        for (int i = P_GATEWAY; i <= P_PG; i++)
            r->cpu_us_call += r->proc_us_call[i];
    free(all);
    free(ws);
    free(th);
}

static void print_result(const run_spec_t *s, const run_result_t *r, double nginx_rate)
{
    printf("%-34s %s %3d conns%s: %8.0f calls/s", workload_titles[s->workload],
           s->newconn ? "new-conn" : "keep-alive", s->conns, s->rate > 0 ? " fixed-rate" : "",
           r->calls_s);
    if (nginx_rate > 0 && s->workload != W_NGINX)
        printf(" (%.2f %% of nginx)", 100.0 * r->calls_s / nginx_rate);
    printf("\n    latency ms p50 %.1f p95 %.1f p99 %.1f max %.1f; answers %s\n", r->p50, r->p95,
           r->p99, r->max, r->codes);
    if (r->nsec > 0)
        printf("    per second (by when calls were due): p99 median %.1f ms, worst %.1f ms (second "
               "%d); %d of %d seconds with a p99 over %g ms\n",
               r->sec_p99_median, r->sec_p99_worst, r->worst_sec, r->tail_secs, r->nsec, g.tail_ms);
    printf("    machine: CPU %.0f %% busy (all processes, /proc/stat), %.0f %% stolen\n",
           r->busy_pct, r->steal_pct);
    if (s->workload != W_NGINX)
        printf("    context switches/call (kooisv + PostgreSQL): %.1f\n", r->cs_call);
    printf("    CPU µs/call: total %.0f |", r->cpu_us_call);
    for (int i = 0; i < NPROCS; i++)
        if (r->proc_us_call[i] > 0.5 || i <= P_PG)
            printf(" %s %.0f", proc_names[i], r->proc_us_call[i]);
    printf("\n");
    fflush(stdout);
}

/* ---- setup: instances to query and renew ------------------------------------------------- */

static char *json_string_of(const char *body, const char *key)
{
    json_t *v = json_loads(body, 0, NULL);
    const char *s = json_string_value(json_object_get(v, key));
    char *copy = s ? xstrdup(s) : NULL;
    json_decref(v);
    return copy;
}

/* Create n instances through newInstance and wait until each is provisioned (its queryInstance
 * shows appInfo), so that queryInstance reads what a real one does. */
static void pool_make(int n, int retries)
{
    conn_t *c = xcalloc(1, sizeof *c);
    char req[4096];
    g.pool = xcalloc((size_t)n, sizeof *g.pool);
    if (conn_open(c) != 0) {
        fprintf(stderr, "kooisv-bench: cannot connect to %s:%s\n", g.host, g.port);
        exit(1);
    }
    for (int i = 0, attempt = 0; i < n; i++) {
        int status = 0;
        char code[16] = "";
        bool keep = false;
        size_t len = make_request(W_NEW, req, sizeof req, 99, (unsigned long)i, NULL);
        char *id = NULL;
        if (conn_call(c, req, len, &status, code, &keep) == 0 && strcmp(code, "000000") == 0)
            id = json_string_of(strstr(c->buf, "\r\n\r\n") + 4, "instanceId");
        if (!id && strcmp(code, "000005") == 0 && attempt++ < retries) { /* --retry: same order */
            usleep(1000000);
            if (!keep) {
                conn_close(c);
                conn_open(c);
            }
            i--;
            continue;
        }
        attempt = 0;
        if (!id) {
            fprintf(stderr, "kooisv-bench: newInstance of the pool failed (HTTP %d, %s)\n", status,
                    code);
            exit(1);
        }
        g.pool[g.npool++] = id;
        if (!keep) {
            conn_close(c);
            conn_open(c);
        }
    }
    int64_t deadline = time_mono_us() + 60 * 1000000LL;
    for (int i = 0; i < n && time_mono_us() < deadline;) {
        int status;
        char code[16], body[256];
        bool keep;
        snprintf(body, sizeof body, "{\"activity\":\"queryInstance\",\"instanceId\":\"%s\"}",
                 g.pool[i]);
        size_t len =
            signed_request(req, sizeof req, SIGV2_BASIC, NULL, body, 98, (unsigned long)i, NULL);
        if (conn_call(c, req, len, &status, code, &keep) == 0 && strstr(c->buf, "\"appInfo\""))
            i++;
        else
            usleep(100000);
        if (!keep) {
            conn_close(c);
            conn_open(c);
        }
        if (time_mono_us() >= deadline) {
            fprintf(stderr, "kooisv-bench: the pool's instances were not provisioned in 60 s\n");
            exit(1);
        }
    }
    conn_close(c);
    free(c);
}

/* ---- main -------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f, "usage: kooisv-bench [--env-file PATH] [--table | --workload W] [options]\n"
           "  --env-file PATH   KEY=VALUE settings (the runner's .state/kooisv.env): KOOISV_URL,\n"
           "                    KOOISV_CA_FILE, KOOISV_BASIC_KEY, KOOISV_KIT_KEY, "
           "KOOISV_STATE_DIR\n"
           "  --workload W      query | new | refresh | tenant | mix | nginx (default query)\n"
           "  --table           the whole table: nginx, each workload, new connections, the mix\n"
           "                    at a steady --mix-rate\n"
           "  --conns N         connections (default 64; 16 for new-connection runs of --table)\n"
           "  --seconds S       length of each run (default 10)\n"
           "  --rate R          fixed total rate, calls/s (default: as fast as possible)\n"
           "  --mix-rate R      the steady rate of --table's last run (default 1000)\n"
           "  --new-conn        a new TLS connection (full handshake) for every call\n"
           "  --no-nginx        no nginx baseline (no ratios)\n"
           "  --nginx PATH      nginx binary (default /usr/sbin/nginx)\n"
           "  --tls-key PATH    the certificate's key for nginx (default "
           "<state>/secrets/tls-server.key)\n"
           "  --log PATH        one line per call: answer call nonce id due_ms latency_us (answer:\n"
           "                    the resultCode, HTTP-<status>, transport-error, connect-failed or\n"
           "                    000005-retried; due_ms: when the call was due, from the run's\n"
           "                    start; latency_us: from then to its answer)\n"
           "  --retry N         retry a call answered 000005 up to N times (0-10, default 0), as\n"
           "                    the marketplace does: same ids, a fresh signature, 1 s later\n"
           "  --tail-ms T       a fixed-rate run counts the seconds whose own p99 is over T ms\n"
           "                    (default 25)\n"
           "SIGINT or SIGTERM ends the run after the calls in flight and prints its result.\n");
}

static void table_row(const run_spec_t *s, const run_result_t *r, double nginx_rate)
{
    char ratio[32] = "";
    if (nginx_rate > 0 && s->workload != W_NGINX)
        snprintf(ratio, sizeof ratio, "%.2f %%", 100.0 * r->calls_s / nginx_rate);
    char mode[48];
    snprintf(mode, sizeof mode, "%s, %d conns%s", s->newconn ? "new TLS conn/call" : "keep-alive",
             s->conns, s->rate > 0 ? ", fixed rate" : "");
    char cs[16] = "";
    if (s->workload != W_NGINX)
        snprintf(cs, sizeof cs, "%.1f", r->cs_call);
    printf("| %s | %s | %.0f | %s | %.1f / %.1f / %.1f / %.1f | %.0f | %s | %.0f / %.0f / %.0f / "
           "%.0f / %.0f / %.0f | %s |\n",
           workload_titles[s->workload], mode, r->calls_s, ratio, r->p50, r->p95, r->p99, r->max,
           r->cpu_us_call, cs, r->proc_us_call[P_GATEWAY], r->proc_us_call[P_AUDIT],
           r->proc_us_call[P_ORDER], r->proc_us_call[P_TENANT], r->proc_us_call[P_PG],
           r->bench_us_call, r->codes);
}

int main(int argc, char **argv)
{
    run_spec_t one = {.workload = W_QUERY, .conns = 64, .seconds = 10};
    bool table = false, with_nginx = true;
    double mix_rate = 1000;
    int conns_set = 0;
    const char *nginx_bin = "/usr/sbin/nginx", *tls_key = NULL, *log_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--env-file") == 0 && v)
            env_file_load(argv[++i]);
        else if (strcmp(a, "--table") == 0)
            table = true;
        else if (strcmp(a, "--workload") == 0 && v) {
            int w = 0;
            while (w < W_N && strcmp(workload_names[w], v) != 0)
                w++;
            if (w == W_N) {
                usage(stderr);
                return 2;
            }
            one.workload = (workload_t)w;
            i++;
        } else if (strcmp(a, "--conns") == 0 && v && atoi(v) > 0 && atoi(v) <= 4096) {
            one.conns = atoi(argv[++i]);
            conns_set = 1;
        } else if (strcmp(a, "--seconds") == 0 && v && atof(v) > 0)
            one.seconds = atof(argv[++i]);
        else if (strcmp(a, "--rate") == 0 && v && atof(v) >= 0)
            one.rate = atof(argv[++i]);
        else if (strcmp(a, "--mix-rate") == 0 && v && atof(v) > 0)
            mix_rate = atof(argv[++i]);
        else if (strcmp(a, "--new-conn") == 0)
            one.newconn = true;
        else if (strcmp(a, "--no-nginx") == 0)
            with_nginx = false;
        else if (strcmp(a, "--nginx") == 0 && v)
            nginx_bin = argv[++i];
        else if (strcmp(a, "--tls-key") == 0 && v)
            tls_key = argv[++i];
        else if (strcmp(a, "--log") == 0 && v)
            log_path = argv[++i];
        else if (strcmp(a, "--retry") == 0 && v && atoi(v) >= 0 && atoi(v) <= 10)
            one.retries = atoi(argv[++i]);
        else if (strcmp(a, "--tail-ms") == 0 && v && atof(v) > 0)
            g.tail_ms = atof(argv[++i]);
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (g.tail_ms <= 0)
        g.tail_ms = 25;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (log_path && !(g.log = fopen(log_path, "w"))) {
        fprintf(stderr, "kooisv-bench: cannot write %s: %s\n", log_path, strerror(errno));
        return 2;
    }
    hz = sysconf(_SC_CLK_TCK);
    url_parse(need("KOOISV_URL"));
    g.ca_file = xstrdup(need("KOOISV_CA_FILE"));
    g.basic_key = xstrdup(need("KOOISV_BASIC_KEY"));
    g.kit_key = xstrdup(need("KOOISV_KIT_KEY"));
    g.state_dir = xstrdup(need("KOOISV_STATE_DIR"));
    int64_t now = time_now_ms();
    for (int i = 7; i >= 0; i--, now /= 36)
        g.run_id[i] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[now % 36];
    g.ssl = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(g.ssl, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(g.ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(g.ssl, SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(g.ssl, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(g.ssl, g.ca_file, NULL) != 1) {
        fprintf(stderr, "kooisv-bench: cannot load %s\n", g.ca_file);
        return 1;
    }
    procs_find();

    /* the bodies are written canonical, so that what is signed is what is sent */
    const char *const samples[] = {
        "{\"activity\":\"newInstance\",\"businessId\":\"B-x\",\"orderId\":\"x\","
        "\"orderLineId\":\"x-000001\"}",
        "{\"domainName\":\"bench.example.com\",\"flag\":1,\"instanceId\":\"BIx\","
        "\"name\":\"Bench\",\"orderId\":\"\",\"tenantCode\":\"c\",\"tenantId\":\"x\","
        "\"testFlag\":0,\"timeStamp\":\"20261128101500123\"}"};
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        json_t *v = canonjson_parse(samples[i], strlen(samples[i]), NULL);
        char *canon = v ? canonjson_dump(v) : NULL;
        if (!canon || strcmp(canon, samples[i]) != 0) {
            fprintf(stderr, "kooisv-bench: internal: a body is not canonical\n");
            return 1;
        }
        free(canon);
        json_decref(v);
    }

    resolve(g.host, g.port);
    int pool_n = table ? 64 : one.conns < 64 ? one.conns : 64;
    if (table || one.workload == W_QUERY || one.workload == W_REFRESH || one.workload == W_MIX)
        pool_make(pool_n, one.retries);
    settle();

    /* nginx's rates: keep-alive and new connections, as many connections as the kooisv runs */
    double nginx_ka = 0, nginx_nc = 0;
    int nc_conns = conns_set ? one.conns : 16;
    run_spec_t specs[16];
    int nspecs = 0;
    if (table) {
        const workload_t ws[] = {W_QUERY, W_NEW, W_REFRESH, W_TENANT, W_MIX};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++)
            specs[nspecs++] = (run_spec_t){ws[i], one.conns, one.seconds, 0, false, 0};
        specs[nspecs++] = (run_spec_t){W_QUERY, nc_conns, one.seconds, 0, true, 0};
        specs[nspecs++] = (run_spec_t){W_MIX, one.conns, one.seconds, mix_rate, false, 0};
    } else if (one.workload != W_NGINX)
        specs[nspecs++] = one;

    char *key = tls_key ? xstrdup(tls_key) : xasprintf("%s/secrets/tls-server.key", g.state_dir);
    char *cert = xasprintf("%s/tls/server.crt", g.state_dir);
    printf("kooisv-bench: run %s, %s:%s, %d s per run, %ld CPUs\n", g.run_id, g.host, g.port,
           (int)one.seconds, sysconf(_SC_NPROCESSORS_ONLN));
    run_spec_t nk = {W_NGINX, one.conns, one.seconds, one.rate, one.newconn && !table, 0};
    run_spec_t nn = {W_NGINX, nc_conns, one.seconds, 0, true, 0};
    run_result_t rk = {0}, rn = {0};
    bool need_ka = table || !one.newconn, need_nc = table || one.newconn;
    if (with_nginx || one.workload == W_NGINX) {
        nginx_start(nginx_bin, cert, key);
        struct sockaddr_storage saved = g.addr;
        socklen_t saved_len = g.addrlen;
        resolve(g.host, nginx_port);
        if (need_ka) {
            nk.newconn = false;
            run_one(&nk, &rk);
            nginx_ka = rk.calls_s;
            print_result(&nk, &rk, 0);
        }
        if (need_nc) {
            run_one(&nn, &rn);
            nginx_nc = rn.calls_s;
            print_result(&nn, &rn, 0);
        }
        nginx_stop();
        g.addr = saved;
        g.addrlen = saved_len;
    }
    run_result_t *results = xcalloc((size_t)nspecs + 1, sizeof *results);
    for (int i = 0; i < nspecs; i++) {
        settle();
        run_one(&specs[i], &results[i]);
        print_result(&specs[i], &results[i], specs[i].newconn ? nginx_nc : nginx_ka);
    }
    printf("\n| call | connections | calls/s | of nginx | latency ms p50 / p95 / p99 / max | "
           "CPU µs/call, kooisv + PostgreSQL | context switches/call | of which CPU gateway / "
           "audit / order / tenant / PostgreSQL / (load generator) | answers |\n"
           "|---|---|---|---|---|---|---|---|---|\n");
    if (need_ka && nginx_ka > 0)
        table_row(&nk, &rk, 0);
    if (need_nc && nginx_nc > 0)
        table_row(&nn, &rn, 0);
    for (int i = 0; i < nspecs; i++)
        table_row(&specs[i], &results[i], specs[i].newconn ? nginx_nc : nginx_ka);
    free(results);
    free(key);
    free(cert);
    SSL_CTX_free(g.ssl);
    if (g.log && fclose(g.log) != 0) {
        fprintf(stderr, "kooisv-bench: writing %s failed\n", log_path);
        return 1;
    }
    return 0;
}
