/* httpc: one blocking request per call. Every call owns its event_base, connection and SSL
 * object, so threads never share mutable libevent state; the only shared things are a cache of
 * configured SSL_CTXs (immutable once built, guarded by a mutex while looked up) and, in each
 * context's entry, the TLS sessions it made, for resumption (same mutex). */
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

/* ---- one request ------------------------------------------------------------------------ */

typedef struct {
    httpc_response_t *out;
    struct event_base *base;
    struct bufferevent *bev; /* NULL for plain http until evhttp creates its own */
    SSL *ssl;                /* borrowed from bev, for error reporting */
    bool done;
    bool timed_out;
    enum evhttp_request_error req_error;
    bool have_req_error;
    char target[INET6_ADDRSTRLEN + 16]; /* "addr:port" for messages */
    FILE *sink;                         /* opt->body_sink */
    struct evbuffer *held;              /* with a sink: the body of a non-2xx answer */
    bool sink_failed;
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
    if (c->ssl && !c->session) {
        /* A copy: when evhttp closes the connection without close_notify, OpenSSL marks the
         * connection's own session not resumable (a truncation guard); the framing of the answer
         * detects truncation here, and only a session of a complete exchange is kept. */
        SSL_SESSION *own = SSL_get_session(c->ssl);
        c->session = own ? SSL_SESSION_dup(own) : NULL;
        c->out->tls_resumed = SSL_session_reused(c->ssl) == 1;
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

int httpc_request(const char *method, const char *url, const char *const *headers, const char *body,
                  size_t body_len, const httpc_options_t *opt, httpc_response_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_once(&libevent_once, libevent_threads_init);

    int timeout_ms = opt && opt->timeout_ms > 0 ? opt->timeout_ms : HTTPC_DEFAULT_TIMEOUT_MS;
    int verify_peer = opt ? opt->verify_peer : 1;
    const char *ca_file = opt ? opt->ca_file : NULL;

    enum evhttp_cmd_type cmd;
    if (!method || method_of(method, &cmd) != 0) {
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
    bool tls;
    if (scheme && strcasecmp(scheme, "https") == 0)
        tls = true;
    else if (scheme && strcasecmp(scheme, "http") == 0)
        tls = false;
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
    char *host = uri_host[0] == '[' && hl > 2 && uri_host[hl - 1] == ']'
                     ? xstrndup(uri_host + 1, hl - 2)
                     : xstrdup(uri_host);
    int port = evhttp_uri_get_port(uri);
    bool explicit_port = port > 0;
    if (!explicit_port)
        port = tls ? 443 : 80;
    if (port > 65535) {
        set_error(out, "bad port in url");
        free(host);
        evhttp_uri_free(uri);
        return -1;
    }

    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    char *target =
        xasprintf("%s%s%s", path && *path ? path : "/", query ? "?" : "", query ? query : "");
    /* Host as written in the URL (host[:port], IPv6 bracketed): what request signers see. */
    char *host_header = explicit_port ? xasprintf("%s:%d", uri_host, port) : xstrdup(uri_host);

    int rc = -1;
    call_t call = {.out = out, .sink = opt ? opt->body_sink : NULL};
    if (call.sink)
        call.held = evbuffer_new();
    struct evhttp_connection *conn = NULL;
    struct event *timer = NULL;
    ctx_entry_t *ce = NULL;
    char *peer = xasprintf("%s %d", host, port);

    /* Resolve here (blocking this thread only, which a blocking call may) so a bad name gets
     * its own error instead of a generic connection failure. */
    char addr[INET6_ADDRSTRLEN];
    if (resolve(host, addr, sizeof addr, out) != 0)
        goto done;
    snprintf(call.target, sizeof call.target, "%s:%d", addr, port);
    call.base = event_base_new();
    if (!call.base) {
        set_error(out, "event_base_new failed");
        goto done;
    }

    if (tls) {
        char why[sizeof out->error];
        ce = ctx_get(ca_file, verify_peer, why, sizeof why);
        if (!ce) {
            set_error(out, "%s", why);
            goto done;
        }
        SSL *ssl = SSL_new(ce->ctx);
        if (!ssl) {
            set_error(out, "SSL_new failed");
            goto done;
        }
        /* Resume the last session with this peer: no certificate to send or verify, no
         * signature; the session was verified by this same context for this same name. */
        SSL_SESSION *prior = session_get(ce, peer);
        if (prior) {
            SSL_set_session(ssl, prior);
            SSL_SESSION_free(prior);
        }
        bool ip = is_ip_literal(host);
        if (!ip)
            SSL_set_tlsext_host_name(ssl, host); /* SNI is for names only (RFC 6066) */
        if (verify_peer) {
            X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                        : X509_VERIFY_PARAM_set1_host(param, host, 0);
            if (ok != 1) {
                SSL_free(ssl);
                set_error(out, "cannot set expected host %s", host);
                goto done;
            }
        }
        call.bev = bufferevent_openssl_socket_new(call.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                  BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!call.bev) {
            SSL_free(ssl);
            set_error(out, "bufferevent_openssl_socket_new failed");
            goto done;
        }
        call.ssl = ssl;
        /* Framing (Content-Length / chunked) detects truncation; many servers skip
         * close_notify, and treating that as an error would fail good responses. */
        bufferevent_openssl_set_allow_dirty_shutdown(call.bev, 1);
    }

    conn = evhttp_connection_base_bufferevent_new(call.base, NULL, call.bev, addr,
                                                  (unsigned short)port);
    if (!conn) {
        if (call.bev)
            bufferevent_free(call.bev);
        call.bev = NULL;
        call.ssl = NULL;
        set_error(out, "cannot create connection");
        goto done;
    }
    evhttp_connection_set_retries(conn, 0);
    evhttp_connection_set_max_body_size(conn, call.sink ? EV_SIZE_MAX : HTTPC_MAX_BODY);
    {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evhttp_connection_set_timeout_tv(conn, &tv);
    }

    struct evhttp_request *req = evhttp_request_new(on_done, &call);
    evhttp_request_set_error_cb(req, on_error);
    if (call.ssl)
        evhttp_request_set_header_cb(req, on_headers);
    if (call.sink)
        evhttp_request_set_chunked_cb(req, on_chunk);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    bool have_host = false, have_conn = false;
    for (size_t i = 0; headers && headers[i]; i++) {
        if (add_header_line(oh, headers[i]) != 0) {
            evhttp_request_free(req);
            set_error(out, "malformed header line");
            goto done;
        }
        if (strncasecmp(headers[i], "Host:", 5) == 0)
            have_host = true;
        if (strncasecmp(headers[i], "Connection:", 11) == 0)
            have_conn = true;
    }
    if (!have_host)
        evhttp_add_header(oh, "Host", host_header);
    if (!have_conn)
        evhttp_add_header(oh, "Connection", "close");
    if (body && body_len) {
        evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len);
    } else if (cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_PUT || cmd == EVHTTP_REQ_PATCH) {
        if (!evhttp_find_header(oh, "Content-Length"))
            evhttp_add_header(oh, "Content-Length", "0");
    }

    timer = evtimer_new(call.base, on_timeout, &call);
    {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(timer, &tv);
    }
    /* On failure evhttp_make_request frees req itself. */
    if (evhttp_make_request(conn, req, cmd, target) != 0) {
        set_error(out, "cannot send request");
        goto done;
    }
    /* The socket exists once the request has started connecting. Without TCP_NODELAY a request
     * that leaves in two segments (TLS records of headers and body) waits for the server's
     * delayed ACK. */
    {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
        evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
        int one = 1;
        if (fd >= 0)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    event_base_dispatch(call.base);

    if (call.done && out->status > 0) {
        rc = 0;
    } else if (!call.done) {
        if (call.timed_out)
            snprintf(out->error, sizeof out->error, "timeout after %d ms", timeout_ms);
        else
            set_error(out, "request did not complete");
    }

done:
    /* The session to resume next time: after a complete exchange the one its headers came
     * with; after a failure, none. */
    if (ce) {
        SSL_SESSION *s = call.session;
        call.session = NULL;
        if (s && (rc != 0 || !SSL_SESSION_is_resumable(s))) {
            SSL_SESSION_free(s);
            s = NULL;
        }
        session_put(ce, peer, s);
    }
    /* Frees a still-pending request without calling back, and the bufferevent + SSL. */
    if (conn)
        evhttp_connection_free(conn);
    if (call.held)
        evbuffer_free(call.held);
    if (timer)
        event_free(timer);
    if (call.base)
        event_base_free(call.base);
    if (ce)
        SSL_CTX_free(ce->ctx);
    free(peer);
    ERR_clear_error(); /* the error queue is per thread: leave it clean for the next user */
    free(target);
    free(host_header);
    free(host);
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
