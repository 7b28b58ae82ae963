/* httpc: one blocking request per call. A call owns the connection it uses, with that
 * connection's own event_base and SSL object, so threads never share mutable libevent state;
 * the shared things are a cache of configured SSL_CTXs (immutable once built, guarded by a mutex
 * while looked up), in each context's entry the TLS sessions it made, for resumption (same
 * mutex), and a pool of idle kept-alive connections that a call takes out whole and puts back
 * (its own mutex). */
#include "httpc.h"

#include "xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <poll.h>
#include <time.h>

#define HTTPC_DEFAULT_TIMEOUT_MS 5000
/* Large enough for bill exports; a bound so a broken peer cannot exhaust memory. */
#define HTTPC_MAX_BODY (64u * 1024u * 1024u)

/* ---- SSL_CTX cache ---------------------------------------------------------------------- */

/* Sessions kept per context: one per peer (the newest), at most this many peers. */
#define HTTPC_MAX_SESSIONS 64

/* A session to resume with peer ("host port": the name verified, as in the URL, and the port). */
typedef struct sess_entry {
    struct sess_entry *next;
    char *peer;
    SSL_SESSION *sess;
} sess_entry_t;

typedef struct ctx_entry {
    struct ctx_entry *next;
    char *ca_file; /* NULL = system store */
    int verify_peer;
    time_t mtime; /* a rewritten CA file gets a fresh context */
    off_t size;
    SSL_CTX *ctx;
    /* Only a session made by this context (so verified as it verifies, against this CA file)
     * is ever offered by it, and only to the peer it was made with. */
    sess_entry_t *sessions;
} ctx_entry_t;

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static ctx_entry_t *ctx_cache;
static pthread_once_t libevent_once = PTHREAD_ONCE_INIT;

static void libevent_threads_init(void)
{
    /* Bases are never shared, but libevent keeps a little global state (debug map, rng);
     * locking it is cheap and safe to request more than once. */
    evthread_use_pthreads();
}

static void set_error(httpc_response_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_error(httpc_response_t *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->error, sizeof out->error, fmt, ap);
    va_end(ap);
}

static SSL_CTX *ctx_build(const char *ca_file, int verify_peer, char *why, size_t why_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(why, why_len, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* OpenSSL 3 reports a peer closing without close_notify as an error, which libevent 2.1's
     * allow_dirty_shutdown does not recognise: a read-until-close body would always fail. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    if (verify_peer) {
        int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            unsigned long e = ERR_get_error();
            snprintf(why, why_len, "cannot load CA %s: %s", ca_file ? ca_file : "(system)",
                     ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown");
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

/* The cache entry for (ca_file, verify_peer); its context has one reference for the caller.
 * Entries are never freed, so the pointer stays valid. */
static ctx_entry_t *ctx_get(const char *ca_file, int verify_peer, char *why, size_t why_len)
{
    time_t mtime = 0;
    off_t size = 0;
    if (ca_file && verify_peer) {
        struct stat st;
        if (stat(ca_file, &st) != 0) {
            snprintf(why, why_len, "cannot read CA %s: %s", ca_file, strerror(errno));
            return NULL;
        }
        mtime = st.st_mtime;
        size = st.st_size;
    }
    if (!verify_peer)
        ca_file = NULL;

    ctx_entry_t *found = NULL;
    pthread_mutex_lock(&ctx_lock);
    for (ctx_entry_t *e = ctx_cache; e; e = e->next) {
        bool same_file = (!e->ca_file && !ca_file) ||
                         (e->ca_file && ca_file && strcmp(e->ca_file, ca_file) == 0);
        if (same_file && e->verify_peer == verify_peer && e->mtime == mtime && e->size == size) {
            found = e;
            SSL_CTX_up_ref(e->ctx);
            break;
        }
    }
    if (!found) {
        SSL_CTX *ctx = ctx_build(ca_file, verify_peer, why, why_len);
        if (ctx) {
            /* Superseded entries for the same file stay cached: contexts are small and a test
             * process regenerates its CA at most a few times. */
            found = xcalloc(1, sizeof *found);
            found->ca_file = xstrdup(ca_file);
            found->verify_peer = verify_peer;
            found->mtime = mtime;
            found->size = size;
            found->ctx = ctx;
            found->next = ctx_cache;
            ctx_cache = found;
            SSL_CTX_up_ref(ctx);
        }
    }
    pthread_mutex_unlock(&ctx_lock);
    return found;
}

/* The session e keeps for peer, with a reference for the caller, or NULL. */
static SSL_SESSION *session_get(ctx_entry_t *e, const char *peer)
{
    SSL_SESSION *s = NULL;
    pthread_mutex_lock(&ctx_lock);
    for (sess_entry_t *k = e->sessions; k; k = k->next)
        if (strcmp(k->peer, peer) == 0) {
            s = k->sess;
            SSL_SESSION_up_ref(s);
            break;
        }
    pthread_mutex_unlock(&ctx_lock);
    return s;
}

/* Keep sess (NULL: forget) as e's session for peer, taking the caller's reference; the peer
 * used longest ago goes when HTTPC_MAX_SESSIONS are kept. */
static void session_put(ctx_entry_t *e, const char *peer, SSL_SESSION *sess)
{
    pthread_mutex_lock(&ctx_lock);
    sess_entry_t **pp = &e->sessions, *k = NULL;
    size_t n = 0;
    for (; *pp; pp = &(*pp)->next, n++)
        if (strcmp((*pp)->peer, peer) == 0) {
            k = *pp;
            *pp = k->next; /* taken out; put back at the head below */
            break;
        }
    if (k) {
        SSL_SESSION_free(k->sess);
    } else if (sess) {
        k = xcalloc(1, sizeof *k);
        k->peer = xstrdup(peer);
    }
    if (k && sess) {
        k->sess = sess;
        k->next = e->sessions;
        e->sessions = k;
    } else if (k) {
        free(k->peer);
        free(k);
    }
    /* Bound the list: drop the tail beyond HTTPC_MAX_SESSIONS. */
    n = 0;
    for (pp = &e->sessions; *pp && n < HTTPC_MAX_SESSIONS; pp = &(*pp)->next)
        n++;
    while (*pp) {
        sess_entry_t *old = *pp;
        *pp = old->next;
        SSL_SESSION_free(old->sess);
        free(old->peer);
        free(old);
    }
    pthread_mutex_unlock(&ctx_lock);
}

/* ---- kept-alive connections ------------------------------------------------------------- */

/* A connection is kept idle at most this long: under the 5 s keep-alive timeout of common
 * servers (Apache, Node.js), so that a kept connection is seldom one its server is closing just
 * as it is used again. Under load a connection is reused within milliseconds. */
#define HTTPC_IDLE_MS 4000
/* Idle connections kept per peer and trust setting, and in all. */
#define HTTPC_IDLE_PER_PEER 8
#define HTTPC_IDLE_MAX 32

/* One connection with its own event_base: a thread that takes it from the pool owns both until
 * it puts it back, so no libevent state is ever used by two threads at once. */
typedef struct link {
    struct link *next;
    ctx_entry_t *ce;  /* the trust setting it was verified under (a context reference); NULL: http */
    char *peer;       /* "host port", host as in the URL (the name verified) */
    struct event_base *base;
    struct evhttp_connection *conn;
    struct bufferevent *bev; /* the TLS bufferevent; NULL for http (evhttp makes its own) */
    SSL *ssl;                /* borrowed from bev */
    bool closed;             /* evhttp closed it (the answer said Connection: close, or an error) */
    bool resumed;            /* its handshake resumed a session */
    bool used;               /* an exchange has been made on it */
    struct timespec idle_since;
} link_t;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static link_t *pool; /* idle connections, the most recently used first */

static long ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void on_link_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    ((link_t *)arg)->closed = true;
}

/* Close l and free everything it holds (never under pool_lock: freeing may call back). */
static void link_free(link_t *l)
{
    if (!l)
        return;
    if (l->conn)
        evhttp_connection_free(l->conn); /* and the bufferevent with its SSL and socket */
    else if (l->bev)
        bufferevent_free(l->bev);
    if (l->base)
        event_base_free(l->base);
    if (l->ce)
        SSL_CTX_free(l->ce->ctx);
    free(l->peer);
    free(l);
}

static void link_free_list(link_t *l)
{
    while (l) {
        link_t *next = l->next;
        link_free(l);
        l = next;
    }
}

/* Whether idle l can carry a request: not closed by evhttp, not idle too long, and nothing to
 * read on it (an idle connection receives nothing but its server's close: a FIN, a reset or a
 * TLS close_notify). */
static bool link_fresh_enough(link_t *l)
{
    if (l->closed || ms_since(&l->idle_since) >= HTTPC_IDLE_MS)
        return false;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(l->conn);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0 || evbuffer_get_length(bufferevent_get_input(bev)) > 0 ||
        (l->ssl && SSL_pending(l->ssl) > 0))
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) == 0;
}

/* The most recently idle connection to peer under ce (NULL: http), or NULL. Connections found
 * closed or idle too long on the way are closed. */
static link_t *pool_take(const ctx_entry_t *ce, const char *peer)
{
    link_t *found = NULL, *dead = NULL;
    pthread_mutex_lock(&pool_lock);
    for (link_t **pp = &pool; *pp;) {
        link_t *l = *pp;
        bool mine = !found && l->ce == ce && strcmp(l->peer, peer) == 0;
        if (mine || l->closed || ms_since(&l->idle_since) >= HTTPC_IDLE_MS) {
            *pp = l->next;
            if (mine && link_fresh_enough(l)) {
                found = l;
            } else {
                l->next = dead;
                dead = l;
            }
        } else {
            pp = &l->next;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    link_free_list(dead);
    if (found)
        found->next = NULL;
    return found;
}

/* Keep l idle for the next request to its peer; the oldest idle connections beyond the limits
 * (per peer and in all) are closed. */
static void pool_put(link_t *l)
{
    clock_gettime(CLOCK_MONOTONIC, &l->idle_since);
    link_t *dead = NULL;
    pthread_mutex_lock(&pool_lock);
    l->next = pool;
    pool = l;
    size_t all = 0, same = 0;
    for (link_t **pp = &pool; *pp;) {
        link_t *k = *pp;
        bool peer = k->ce == l->ce && strcmp(k->peer, l->peer) == 0;
        all++;
        same += peer;
        if (all > HTTPC_IDLE_MAX || (peer && same > HTTPC_IDLE_PER_PEER)) {
            *pp = k->next;
            k->next = dead;
            dead = k;
            all--;
            same -= peer;
        } else {
            pp = &k->next;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    link_free_list(dead);
}

/* ---- one exchange ------------------------------------------------------------------------- */

typedef struct {
    httpc_response_t *out;
    struct event_base *base;
    struct bufferevent *bev; /* the TLS bufferevent, NULL for http */
    SSL *ssl;                /* borrowed from bev, for error reporting */
    bool done;
    bool timed_out;
    bool got_headers; /* the answer's status line and headers arrived */
    enum evhttp_request_error req_error;
    bool have_req_error;
    char target[INET6_ADDRSTRLEN + 16]; /* "addr:port" for messages */
    FILE *sink;                         /* opt->body_sink */
    struct evbuffer *held;              /* with a sink: the body of a non-2xx answer */
    bool sink_failed;
    bool want_session;    /* a new TLS connection: keep the session it made */
    bool resumed;         /* its handshake resumed a session (seen with the headers) */
    SSL_SESSION *session; /* taken when the answer's headers arrived (a reference) */
} call_t;

static const char *req_error_text(enum evhttp_request_error e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT:
        return "timeout";
    case EVREQ_HTTP_EOF:
        return "connection closed before a response";
    case EVREQ_HTTP_INVALID_HEADER:
        return "invalid response header";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "connection failed";
    case EVREQ_HTTP_REQUEST_CANCEL:
        return "request cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "response too large";
    }
    return "request failed";
}

/* Explain a failed exchange: certificate verdict first, then OpenSSL's reason, then what
 * evhttp saw. errno is useless here: deferred callbacks run long after the failing syscall. */
static void describe_failure(call_t *c)
{
    httpc_response_t *out = c->out;
    if (c->ssl) {
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK) {
            set_error(out, "tls verify failed: %s", X509_verify_cert_error_string(vr));
            return;
        }
    }
    if (c->bev && c->ssl) {
        unsigned long e = bufferevent_get_openssl_error(c->bev);
        /* Library 0 is libevent's stand-in for a socket error: reported below instead. */
        if (e && ERR_GET_LIB(e) != 0) {
            const char *reason = ERR_reason_error_string(e);
            set_error(out, "tls error: %s", reason ? reason : "handshake failed");
            return;
        }
    }
    if (c->have_req_error && c->req_error == EVREQ_HTTP_EOF)
        set_error(out, "connection refused, reset or closed before the response was complete");
    else if (c->have_req_error)
        set_error(out, "%s", req_error_text(c->req_error));
    else if (c->done)
        set_error(out, "cannot connect to %s", c->target);
    else
        set_error(out, "request failed");
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    call_t *c = arg;
    c->req_error = e;
    c->have_req_error = true;
}

static void copy_headers(struct evkeyvalq *hdrs, httpc_response_t *out)
{
    size_t n = 0;
    for (struct evkeyval *kv = hdrs ? hdrs->tqh_first : NULL; kv; kv = kv->next.tqe_next)
        n++;
    out->headers = xcalloc(n + 1, sizeof(char *));
    size_t i = 0;
    for (struct evkeyval *kv = hdrs ? hdrs->tqh_first : NULL; kv; kv = kv->next.tqe_next)
        out->headers[i++] = xasprintf("%s: %s", kv->key, kv->value);
    out->headers[i] = NULL;
}

static bool status_2xx(struct evhttp_request *req)
{
    int code = evhttp_request_get_response_code(req);
    return code >= 200 && code < 300;
}

/* Move what arrived to the sink (2xx) or keep it (an error's body); libevent drains the input
 * after a chunk callback. */
static void sink_input(call_t *c, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = in ? evbuffer_get_length(in) : 0;
    if (len == 0)
        return;
    if (!status_2xx(req)) {
        evbuffer_add_buffer(c->held, in);
        return;
    }
    if (!c->sink_failed && fwrite(evbuffer_pullup(in, -1), 1, len, c->sink) != len)
        c->sink_failed = true;
    evbuffer_drain(in, len);
}

/* The answer's headers are in: the handshake is long done and TLS 1.3 tickets, which a server
 * sends before its first answer, have been read. Take the session now; evhttp clears the SSL
 * object when it closes the connection, before on_done runs. */
static int on_headers(struct evhttp_request *req, void *arg)
{
    (void)req;
    call_t *c = arg;
    c->got_headers = true;
    if (c->ssl && c->want_session && !c->session) {
        /* A copy: when evhttp closes the connection without close_notify, OpenSSL marks the
         * connection's own session not resumable (a truncation guard); the framing of the answer
         * detects truncation here, and only a session of a complete exchange is kept. */
        SSL_SESSION *own = SSL_get_session(c->ssl);
        c->session = own ? SSL_SESSION_dup(own) : NULL;
        c->resumed = SSL_session_reused(c->ssl) == 1;
    }
    return 0;
}

static void on_chunk(struct evhttp_request *req, void *arg)
{
    sink_input(arg, req);
}

/* Completion callback: libevent frees req after we return, so everything is copied here. */
static void on_done(struct evhttp_request *req, void *arg)
{
    call_t *c = arg;
    c->done = true;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code > 0 && c->sink) {
        sink_input(c, req);
        evbuffer_add_buffer(c->held, evhttp_request_get_input_buffer(req));
    }
    if (code > 0 && c->sink_failed) {
        set_error(c->out, "cannot write the response body");
    } else if (code > 0) {
        c->out->status = code;
        struct evbuffer *in = c->sink ? c->held : evhttp_request_get_input_buffer(req);
        size_t len = in ? evbuffer_get_length(in) : 0;
        c->out->body = xmalloc(len + 1);
        if (len)
            evbuffer_remove(in, c->out->body, len);
        c->out->body[len] = '\0';
        c->out->body_len = len;
        copy_headers(evhttp_request_get_input_headers(req), c->out);
    } else {
        describe_failure(c);
    }
    event_base_loopbreak(c->base);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    call_t *c = arg;
    c->timed_out = true;
    event_base_loopbreak(c->base);
}

static int method_of(const char *m, enum evhttp_cmd_type *out)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type type;
    } map[] = {
        {"GET", EVHTTP_REQ_GET},         {"POST", EVHTTP_REQ_POST}, {"PUT", EVHTTP_REQ_PUT},
        {"DELETE", EVHTTP_REQ_DELETE},   {"HEAD", EVHTTP_REQ_HEAD}, {"PATCH", EVHTTP_REQ_PATCH},
        {"OPTIONS", EVHTTP_REQ_OPTIONS},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(m, map[i].name) == 0) {
            *out = map[i].type;
            return 0;
        }
    return -1;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* First address of host as numeric text into addr; -1 with out->error set. */
static int resolve(const char *host, char *addr, size_t len, httpc_response_t *out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        set_error(out, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, addr, (socklen_t)len, NULL, 0, NI_NUMERICHOST);
    freeaddrinfo(res);
    if (rc != 0) {
        set_error(out, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    return 0;
}

/* Add "Name: value" to hdrs; -1 when the line has no colon. */
static int add_header_line(struct evkeyvalq *hdrs, const char *line)
{
    const char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return -1;
    char *name = xstrndup(line, (size_t)(colon - line));
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    int rc = evhttp_add_header(hdrs, name, value);
    free(name);
    return rc;
}

/* What a request is, parsed once and sent on one connection or, when a kept one turns out
 * closed, on a second. */
typedef struct {
    enum evhttp_cmd_type cmd;
    bool tls;
    char *host; /* bare (IPv6 without brackets): for connecting, SNI and verification */
    int port;
    char *target;      /* path?query */
    char *host_header; /* as written in the URL */
    char *peer;        /* "host port" */
    const char *const *headers;
    const char *body;
    size_t body_len;
    bool keep_alive; /* reuse and keep the connection (no Connection header from the caller) */
    int verify_peer;
    FILE *sink;
} reqspec_t;

/* A new connection to r's peer (TLS under ce), not yet connected: evhttp connects it when the
 * first request is made. NULL with out->error set. */
static link_t *link_open(const reqspec_t *r, ctx_entry_t *ce, char *addr, size_t addr_len,
                         httpc_response_t *out)
{
    /* Resolve here (blocking this thread only, which a blocking call may) so a bad name gets
     * its own error instead of a generic connection failure. */
    if (resolve(r->host, addr, addr_len, out) != 0)
        return NULL;
    link_t *l = xcalloc(1, sizeof *l);
    l->peer = xstrdup(r->peer);
    l->base = event_base_new();
    if (!l->base) {
        set_error(out, "event_base_new failed");
        link_free(l);
        return NULL;
    }
    if (r->tls) {
        SSL *ssl = SSL_new(ce->ctx);
        if (!ssl) {
            set_error(out, "SSL_new failed");
            link_free(l);
            return NULL;
        }
        /* Resume the last session with this peer: no certificate to send or verify, no
         * signature; the session was verified by this same context for this same name. */
        SSL_SESSION *prior = session_get(ce, r->peer);
        if (prior) {
            SSL_set_session(ssl, prior);
            SSL_SESSION_free(prior);
        }
        bool ip = is_ip_literal(r->host);
        if (!ip)
            SSL_set_tlsext_host_name(ssl, r->host); /* SNI is for names only (RFC 6066) */
        if (r->verify_peer) {
            X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, r->host)
                        : X509_VERIFY_PARAM_set1_host(param, r->host, 0);
            if (ok != 1) {
                SSL_free(ssl);
                set_error(out, "cannot set expected host %s", r->host);
                link_free(l);
                return NULL;
            }
        }
        l->bev = bufferevent_openssl_socket_new(l->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!l->bev) {
            SSL_free(ssl);
            set_error(out, "bufferevent_openssl_socket_new failed");
            link_free(l);
            return NULL;
        }
        l->ssl = ssl;
        /* Framing (Content-Length / chunked) detects truncation; many servers skip
         * close_notify, and treating that as an error would fail good responses. */
        bufferevent_openssl_set_allow_dirty_shutdown(l->bev, 1);
        SSL_CTX_up_ref(ce->ctx);
        l->ce = ce;
    }
    l->conn = evhttp_connection_base_bufferevent_new(l->base, NULL, l->bev, addr,
                                                     (unsigned short)r->port);
    if (!l->conn) {
        set_error(out, "cannot create connection");
        link_free(l);
        return NULL;
    }
    /* evhttp never reconnects by itself: a TLS bufferevent cannot be connected twice. */
    evhttp_connection_set_retries(l->conn, 0);
    evhttp_connection_set_closecb(l->conn, on_link_close, l);
    return l;
}

/* Send r on l and wait for its answer until deadline (CLOCK_MONOTONIC). 0 when an answer
 * arrived (out filled), -1 otherwise (out->error says why). */
static int exchange(link_t *l, const reqspec_t *r, const struct timespec *deadline,
                    const char *addr, call_t *call, httpc_response_t *out)
{
    memset(call, 0, sizeof *call);
    call->out = out;
    call->base = l->base;
    call->bev = l->bev;
    call->ssl = l->ssl;
    call->sink = r->sink;
    call->want_session = l->ssl && !l->used;
    snprintf(call->target, sizeof call->target, "%s:%d", addr, r->port);
    if (call->sink)
        call->held = evbuffer_new();
    bool fresh = !l->used;
    l->used = true;

    long left_ms = -ms_since(deadline);
    if (left_ms < 1)
        left_ms = 1;
    struct timeval tv = {left_ms / 1000, (left_ms % 1000) * 1000};
    evhttp_connection_set_max_body_size(l->conn, call->sink ? EV_SIZE_MAX : HTTPC_MAX_BODY);
    evhttp_connection_set_timeout_tv(l->conn, &tv);

    int rc = -1;
    struct event *timer = NULL;
    struct evhttp_request *req = evhttp_request_new(on_done, call);
    evhttp_request_set_error_cb(req, on_error);
    evhttp_request_set_header_cb(req, on_headers);
    if (call->sink)
        evhttp_request_set_chunked_cb(req, on_chunk);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    bool have_host = false;
    for (size_t i = 0; r->headers && r->headers[i]; i++) {
        if (add_header_line(oh, r->headers[i]) != 0) {
            evhttp_request_free(req);
            set_error(out, "malformed header line");
            goto out;
        }
        if (strncasecmp(r->headers[i], "Host:", 5) == 0)
            have_host = true;
    }
    if (!have_host)
        evhttp_add_header(oh, "Host", r->host_header);
    if (!r->keep_alive && !evhttp_find_header(oh, "Connection"))
        evhttp_add_header(oh, "Connection", "close");
    if (r->body && r->body_len) {
        evbuffer_add(evhttp_request_get_output_buffer(req), r->body, r->body_len);
    } else if (r->cmd == EVHTTP_REQ_POST || r->cmd == EVHTTP_REQ_PUT ||
               r->cmd == EVHTTP_REQ_PATCH) {
        if (!evhttp_find_header(oh, "Content-Length"))
            evhttp_add_header(oh, "Content-Length", "0");
    }

    timer = evtimer_new(l->base, on_timeout, call);
    evtimer_add(timer, &tv);
    /* On failure evhttp_make_request frees req itself. */
    if (evhttp_make_request(l->conn, req, r->cmd, r->target) != 0) {
        set_error(out, "cannot send request");
        goto out;
    }
    if (fresh) {
        /* The socket exists once the request has started connecting. Without TCP_NODELAY a
         * request that leaves in two segments (TLS records of headers and body) waits for the
         * server's delayed ACK. */
        struct bufferevent *bev = evhttp_connection_get_bufferevent(l->conn);
        evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
        int one = 1;
        if (fd >= 0)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    event_base_dispatch(l->base);

    if (call->done && out->status > 0) {
        rc = 0;
        if (fresh)
            l->resumed = call->resumed;
    } else if (!call->done) {
        if (call->timed_out)
            snprintf(out->error, sizeof out->error, "timeout after %d ms",
                     (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000));
        else
            set_error(out, "request did not complete");
    }
out:
    if (timer)
        event_free(timer);
    if (call->held)
        evbuffer_free(call->held);
    call->held = NULL;
    return rc;
}

/* After a complete exchange, whether l may carry another request: evhttp kept it open (the
 * answer did not say Connection: close) and every byte of the answer was read. */
static bool link_reusable(link_t *l, const call_t *call)
{
    if (l->closed || !call->done || call->sink_failed)
        return false;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(l->conn);
    return bev && bufferevent_getfd(bev) >= 0 &&
           evbuffer_get_length(bufferevent_get_input(bev)) == 0;
}

int httpc_request(const char *method, const char *url, const char *const *headers, const char *body,
                  size_t body_len, const httpc_options_t *opt, httpc_response_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_once(&libevent_once, libevent_threads_init);

    int timeout_ms = opt && opt->timeout_ms > 0 ? opt->timeout_ms : HTTPC_DEFAULT_TIMEOUT_MS;
    const char *ca_file = opt ? opt->ca_file : NULL;
    reqspec_t r = {.headers = headers,
                   .body = body,
                   .body_len = body_len,
                   .verify_peer = opt ? opt->verify_peer : 1,
                   .sink = opt ? opt->body_sink : NULL,
                   .keep_alive = opt && opt->keep_alive};
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }

    if (!method || method_of(method, &r.cmd) != 0) {
        set_error(out, "unsupported method %s", method ? method : "(null)");
        return -1;
    }
    struct evhttp_uri *uri = url ? evhttp_uri_parse(url) : NULL;
    if (!uri) {
        set_error(out, "malformed url");
        return -1;
    }
    const char *scheme = evhttp_uri_get_scheme(uri);
    const char *uri_host = evhttp_uri_get_host(uri);
    if (scheme && strcasecmp(scheme, "https") == 0)
        r.tls = true;
    else if (scheme && strcasecmp(scheme, "http") == 0)
        r.tls = false;
    else {
        set_error(out, "unsupported scheme in url");
        evhttp_uri_free(uri);
        return -1;
    }
    if (!uri_host || !*uri_host) {
        set_error(out, "url has no host");
        evhttp_uri_free(uri);
        return -1;
    }
    /* libevent keeps IPv6 literals bracketed; connecting and verifying want the bare form. */
    size_t hl = strlen(uri_host);
    r.host = uri_host[0] == '[' && hl > 2 && uri_host[hl - 1] == ']'
                 ? xstrndup(uri_host + 1, hl - 2)
                 : xstrdup(uri_host);
    r.port = evhttp_uri_get_port(uri);
    bool explicit_port = r.port > 0;
    if (!explicit_port)
        r.port = r.tls ? 443 : 80;
    if (r.port > 65535) {
        set_error(out, "bad port in url");
        free(r.host);
        evhttp_uri_free(uri);
        return -1;
    }
    for (size_t i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], "Connection:", 11) == 0)
            r.keep_alive = false; /* the caller decides this connection's fate */

    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    r.target =
        xasprintf("%s%s%s", path && *path ? path : "/", query ? "?" : "", query ? query : "");
    /* Host as written in the URL (host[:port], IPv6 bracketed): what request signers see. */
    r.host_header = explicit_port ? xasprintf("%s:%d", uri_host, r.port) : xstrdup(uri_host);
    r.peer = xasprintf("%s %d", r.host, r.port);

    int rc = -1;
    call_t call = {0};
    ctx_entry_t *ce = NULL;
    link_t *l = NULL;
    char addr[INET6_ADDRSTRLEN] = "";
    if (r.tls) {
        char why[sizeof out->error];
        ce = ctx_get(ca_file, r.verify_peer, why, sizeof why);
        if (!ce) {
            set_error(out, "%s", why);
            goto done;
        }
    }
    /* A kept connection was made to this same name and port under this same trust setting
     * (the same context: CA file and verification), so it was verified as this request would
     * verify a new one. */
    l = r.keep_alive ? pool_take(ce, r.peer) : NULL;
    bool reused = l != NULL;
    if (l) {
        snprintf(addr, sizeof addr, "%s", r.host);
    } else if (!(l = link_open(&r, ce, addr, sizeof addr, out))) {
        goto done;
    }
    rc = exchange(l, &r, &deadline, addr, &call, out);
    /* Resent only when the connection itself failed (closed, reset, unwritable): never after
     * a timeout, and never after the server sent something, even a malformed answer. */
    bool conn_failed = !call.have_req_error || call.req_error == EVREQ_HTTP_EOF ||
                       call.req_error == EVREQ_HTTP_BUFFER_ERROR;
    if (rc != 0 && reused && conn_failed && !call.got_headers && !call.timed_out &&
        !call.sink_failed) {
        /* The kept connection was closed under the request (the server's idle timeout met it on
         * the way) before any answer: send it once more on a new connection, as HTTP clients do
         * (RFC 9112, 9.3.1). Callers that keep connections alive send requests that may be
         * repeated (Query Order, order events and usage carry their own ids). */
        link_free(l);
        l = NULL;
        reused = false;
        httpc_response_free(out);
        memset(out, 0, sizeof *out);
        if ((l = link_open(&r, ce, addr, sizeof addr, out)))
            rc = exchange(l, &r, &deadline, addr, &call, out);
    }
    if (rc == 0) {
        out->reused = reused;
        out->tls_resumed = l->resumed;
    }

done:
    /* The session to resume next time: after a complete exchange on a new connection, the one
     * its headers came with; after a failure, none. */
    if (ce && (call.session || rc != 0)) {
        SSL_SESSION *s = call.session;
        call.session = NULL;
        if (s && (rc != 0 || !SSL_SESSION_is_resumable(s))) {
            SSL_SESSION_free(s);
            s = NULL;
        }
        session_put(ce, r.peer, s);
    }
    if (l && rc == 0 && r.keep_alive && link_reusable(l, &call))
        pool_put(l);
    else
        link_free(l); /* frees a still-pending request without calling back */
    if (ce)
        SSL_CTX_free(ce->ctx);
    ERR_clear_error(); /* the error queue is per thread: leave it clean for the next user */
    free(r.target);
    free(r.host_header);
    free(r.peer);
    free(r.host);
    evhttp_uri_free(uri);
    if (rc != 0) {
        httpc_response_free(out);
        out->status = 0;
        if (!out->error[0])
            set_error(out, "request failed");
    }
    return rc;
}

const char *httpc_header(const httpc_response_t *r, const char *name)
{
    if (!r || !r->headers || !name)
        return NULL;
    size_t n = strlen(name);
    for (size_t i = 0; r->headers[i]; i++) {
        const char *h = r->headers[i];
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            const char *v = h + n + 1;
            while (*v == ' ')
                v++;
            return v;
        }
    }
    return NULL;
}

void httpc_response_free(httpc_response_t *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    if (r->headers) {
        for (size_t i = 0; r->headers[i]; i++)
            free(r->headers[i]);
        free(r->headers);
        r->headers = NULL;
    }
}
