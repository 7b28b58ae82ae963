/* httpc's kept-alive connections against a scripted HTTP/1.1 server on loopback (plain HTTP:
 * the TLS side, trust settings and idle expiry are in the emulator's test). The server counts
 * the connections it accepted and the requests it read, so every claim about reuse is checked
 * from the server's side, not only from httpc's own `reused` flag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "httpc.h"
#include "xmalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* How the server treats the requests it reads. */
typedef enum {
    ANSWER,      /* answer every request, keeping the connection unless asked to close */
    CLOSE_AFTER, /* answer, then close the connection (without saying so) */
    DROP_SECOND, /* answer a connection's first request; close on its second, unanswered */
    DROP_ALL,    /* close on every request, unanswered */
    SAY_CLOSE,   /* answer with Connection: close, but leave the socket open */
    SLOW_SECOND, /* answer a connection's first request; never answer its second */
    JUNK_SECOND, /* answer a connection's first request; its second with junk, then close */
} srv_mode_t;

#define MAX_CONNS 16

typedef struct {
    int fd;
    int requests; /* read on this connection */
    char buf[8192];
    size_t len;
} sconn_t;

static struct {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    atomic_int mode;
    atomic_int accepted;   /* connections accepted */
    atomic_int requests;   /* requests read, answered or not */
    atomic_int asked_close; /* requests that carried Connection: close */
    sconn_t conns[MAX_CONNS];
} srv;

static void sconn_close(sconn_t *c)
{
    close(c->fd);
    c->fd = -1;
    c->len = 0;
    c->requests = 0;
}

static void answer(sconn_t *c, bool say_close)
{
    char out[256];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n%s\r\nok",
                     say_close ? "Connection: close\r\n" : "");
    if (write(c->fd, out, (size_t)n) != n)
        sconn_close(c);
}

/* Handle every complete request in c's buffer (requests here carry no body). */
static void serve_buffer(sconn_t *c)
{
    char *end;
    while (c->fd >= 0 && (end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        size_t used = (size_t)(end - c->buf) + 4;
        bool wants_close = memmem(c->buf, used, "Connection: close", 17) != NULL;
        c->requests++;
        atomic_fetch_add(&srv.requests, 1);
        if (wants_close)
            atomic_fetch_add(&srv.asked_close, 1);
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        switch ((srv_mode_t)atomic_load(&srv.mode)) {
        case ANSWER:
            answer(c, false);
            if (wants_close && c->fd >= 0)
                sconn_close(c);
            break;
        case CLOSE_AFTER:
            answer(c, false);
            if (c->fd >= 0)
                sconn_close(c);
            break;
        case DROP_SECOND:
            if (c->requests >= 2)
                sconn_close(c);
            else
                answer(c, false);
            break;
        case DROP_ALL:
            sconn_close(c);
            break;
        case SAY_CLOSE:
            answer(c, true);
            break;
        case SLOW_SECOND:
            if (c->requests < 2)
                answer(c, false);
            break;
        case JUNK_SECOND:
            if (c->requests < 2) {
                answer(c, false);
            } else {
                if (write(c->fd, "NOT HTTP AT ALL\r\n\r\n", 19) != 19)
                    break;
                sconn_close(c);
            }
            break;
        }
    }
}

static void *server_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&srv.stop)) {
        struct pollfd p[MAX_CONNS + 1];
        p[0] = (struct pollfd){.fd = srv.listen_fd, .events = POLLIN};
        for (int i = 0; i < MAX_CONNS; i++)
            p[i + 1] = (struct pollfd){.fd = srv.conns[i].fd, .events = POLLIN};
        if (poll(p, MAX_CONNS + 1, 50) <= 0)
            continue;
        if (p[0].revents & POLLIN) {
            int fd = accept(srv.listen_fd, NULL, NULL);
            for (int i = 0; fd >= 0 && i < MAX_CONNS; i++)
                if (srv.conns[i].fd < 0) {
                    srv.conns[i].fd = fd;
                    atomic_fetch_add(&srv.accepted, 1);
                    fd = -1;
                }
            if (fd >= 0)
                close(fd);
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            sconn_t *c = &srv.conns[i];
            if (c->fd < 0 || !(p[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
            if (n <= 0) {
                sconn_close(c);
                continue;
            }
            c->len += (size_t)n;
            serve_buffer(c);
        }
    }
    return NULL;
}

/* Each test has a server of its own, on a port of its own: kept connections of one test are
 * never offered to another (the pool is per host and port). */
static void server_mode(srv_mode_t mode)
{
    atomic_store(&srv.mode, (int)mode);
    atomic_store(&srv.accepted, 0);
    atomic_store(&srv.requests, 0);
    atomic_store(&srv.asked_close, 0);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* a write to a connection the server closed fails, not kills */
    atomic_store(&srv.stop, false);
    server_mode(ANSWER);
    for (int i = 0; i < MAX_CONNS; i++)
        srv.conns[i].fd = -1;
    srv.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (srv.listen_fd < 0 || bind(srv.listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(srv.listen_fd, 16) != 0 ||
        getsockname(srv.listen_fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    srv.port = ntohs(a.sin_port);
    return pthread_create(&srv.thread, NULL, server_main, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&srv.stop, true);
    pthread_join(srv.thread, NULL);
    for (int i = 0; i < MAX_CONNS; i++)
        if (srv.conns[i].fd >= 0)
            sconn_close(&srv.conns[i]);
    close(srv.listen_fd);
    return 0;
}

static char *server_url(void)
{
    return xasprintf("http://127.0.0.1:%d/x", srv.port);
}

/* GET url; returns httpc's result, fills *reused and *status. */
static int get(const char *url, int keep_alive, int timeout_ms, int *reused, int *status,
               char *error, size_t error_len)
{
    httpc_options_t opt = {.timeout_ms = timeout_ms, .keep_alive = keep_alive};
    httpc_response_t r;
    int rc = httpc_request("GET", url, NULL, NULL, 0, &opt, &r);
    *reused = r.reused;
    *status = r.status;
    if (error)
        snprintf(error, error_len, "%s", r.error);
    httpc_response_free(&r);
    return rc;
}

static void get_ok(const char *url, int keep_alive, int want_reused)
{
    int reused, status;
    char err[128];
    assert_int_equal(get(url, keep_alive, 2000, &reused, &status, err, sizeof err), 0);
    assert_int_equal(status, 200);
    assert_int_equal(reused, want_reused);
}

/* Without keep_alive every request asks to close and gets a connection of its own. */
static void test_no_keep_alive(void **state)
{
    (void)state;
    server_mode(ANSWER);
    char *url = server_url();
    for (int i = 0; i < 3; i++)
        get_ok(url, 0, 0);
    assert_int_equal(atomic_load(&srv.accepted), 3);
    assert_int_equal(atomic_load(&srv.asked_close), 3);
    free(url);
}

/* With keep_alive, requests share one connection and never ask to close it. */
static void test_keep_alive_reuses(void **state)
{
    (void)state;
    server_mode(ANSWER);
    char *url = server_url();
    get_ok(url, 1, 0);
    get_ok(url, 1, 1);
    get_ok(url, 1, 1);
    assert_int_equal(atomic_load(&srv.accepted), 1);
    assert_int_equal(atomic_load(&srv.requests), 3);
    assert_int_equal(atomic_load(&srv.asked_close), 0);
    /* A request without keep_alive neither takes nor disturbs the kept connection. */
    get_ok(url, 0, 0);
    get_ok(url, 1, 1);
    assert_int_equal(atomic_load(&srv.accepted), 2);
    free(url);
}

/* A connection the server closed while it was idle is not used: a new one carries the request. */
static void test_closed_while_idle(void **state)
{
    (void)state;
    server_mode(CLOSE_AFTER);
    char *url = server_url();
    get_ok(url, 1, 0);
    usleep(100 * 1000); /* the server's FIN has arrived */
    get_ok(url, 1, 0);
    assert_int_equal(atomic_load(&srv.accepted), 2);
    assert_int_equal(atomic_load(&srv.requests), 2);
    free(url);
}

/* A kept connection closed under the request, before any answer, is replaced once: the request
 * is answered on a new connection. */
static void test_closed_under_request(void **state)
{
    (void)state;
    server_mode(DROP_SECOND);
    char *url = server_url();
    get_ok(url, 1, 0);
    get_ok(url, 1, 0); /* dropped on the kept connection, answered on a new one */
    assert_int_equal(atomic_load(&srv.accepted), 2);
    assert_int_equal(atomic_load(&srv.requests), 3);
    free(url);
}

/* A new connection closed under its request is a failure, not sent again. */
static void test_new_connection_not_retried(void **state)
{
    (void)state;
    server_mode(DROP_ALL);
    char *url = server_url();
    int reused, status;
    char err[128];
    assert_int_equal(get(url, 1, 2000, &reused, &status, err, sizeof err), -1);
    assert_int_equal(status, 0);
    assert_non_null(strstr(err, "closed"));
    assert_int_equal(atomic_load(&srv.accepted), 1);
    assert_int_equal(atomic_load(&srv.requests), 1);
    free(url);
}

/* An answer saying Connection: close ends the connection on httpc's side, even when the server
 * leaves its socket open: the next request opens a new one. */
static void test_server_says_close(void **state)
{
    (void)state;
    server_mode(SAY_CLOSE);
    char *url = server_url();
    get_ok(url, 1, 0);
    get_ok(url, 1, 0);
    assert_int_equal(atomic_load(&srv.accepted), 2);
    free(url);
}

/* A kept connection whose answer does not come in time fails the request (a timeout is never
 * sent again: the server may be working on it), and the connection is not kept. */
static void test_timeout_not_retried(void **state)
{
    (void)state;
    server_mode(SLOW_SECOND);
    char *url = server_url();
    get_ok(url, 1, 0);
    int reused, status;
    char err[128];
    assert_int_equal(get(url, 1, 300, &reused, &status, err, sizeof err), -1);
    assert_non_null(strstr(err, "timeout"));
    assert_int_equal(atomic_load(&srv.accepted), 1);
    assert_int_equal(atomic_load(&srv.requests), 2);
    server_mode(ANSWER);
    get_ok(url, 1, 0); /* a new connection: the timed-out one was closed */
    assert_int_equal(atomic_load(&srv.accepted), 1);
    free(url);
}

/* A kept connection whose server sent something, even junk, is not resent: the server may have
 * acted on the request. */
static void test_junk_not_retried(void **state)
{
    (void)state;
    server_mode(JUNK_SECOND);
    char *url = server_url();
    get_ok(url, 1, 0);
    int reused, status;
    char err[128];
    assert_int_equal(get(url, 1, 2000, &reused, &status, err, sizeof err), -1);
    assert_int_equal(atomic_load(&srv.accepted), 1);
    assert_int_equal(atomic_load(&srv.requests), 2);
    free(url);
}

/* Threads share the pool: each takes a connection whole, so 4 threads making 25 requests each
 * need at most 4 connections. */
static void *burst(void *arg)
{
    const char *url = arg;
    for (int i = 0; i < 25; i++) {
        httpc_options_t opt = {.timeout_ms = 2000, .keep_alive = 1};
        httpc_response_t r;
        if (httpc_request("GET", url, NULL, NULL, 0, &opt, &r) != 0 || r.status != 200) {
            httpc_response_free(&r);
            return (void *)1;
        }
        httpc_response_free(&r);
    }
    return NULL;
}

static void test_threads_share_the_pool(void **state)
{
    (void)state;
    server_mode(ANSWER);
    char *url = server_url();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, burst, url), 0);
    for (int i = 0; i < 4; i++) {
        void *failed = NULL;
        pthread_join(t[i], &failed);
        assert_null(failed);
    }
    assert_int_equal(atomic_load(&srv.requests), 100);
    assert_in_range(atomic_load(&srv.accepted), 1, 4);
    free(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive_reuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_while_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_under_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_connection_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_says_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_junk_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_share_the_pool, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
