/* kooisv-emulator: the marketplace's seller-facing APIs on a local HTTPS listener, for the
 * test suite and the local runner. See README.md beside this file. */
#include "emulator.h"

#include "config.h"
#include "log.h"
#include "xmalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define EMU_MAX_BODY (8 * 1024 * 1024)

static const config_var_t vars[] = {
    {"KOOISV_EMULATOR_LISTEN", "127.0.0.1:9443", 0,
     "HTTPS listen address host:port (port 0 = any free port, see PORT_FILE)"},
    {"KOOISV_TLS_CERT_FILE", NULL, CONFIG_REQUIRED, "PEM certificate (chain) to serve"},
    {"KOOISV_TLS_KEY_FILE", NULL, CONFIG_REQUIRED, "PEM private key of the certificate"},
    {"KOOISV_EMULATOR_PORT_FILE", "", 0,
     "if set, the bound port is written here once listening (for port 0)"},
    {"KOOISV_EMULATOR_CONTROL_ANY", "0", 0,
     "1 = accept /_emulator/ control calls from any address, not only loopback"},
    {"KOOISV_MARKETPLACE_AK", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "access key id expected in Query Order signatures"},
    {"KOOISV_MARKETPLACE_SK", NULL, CONFIG_REQUIRED | CONFIG_SECRET | CONFIG_KEY,
     "secret key for Query Order signatures (SDK-HMAC-SHA256)"},
    {"KOOISV_BASIC_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET | CONFIG_KEY,
     "seller key: usage-push signatures"},
    {"KOOISV_EMULATOR_WEBHOOK_SECRET", "", CONFIG_SECRET,
     "if set, webhook calls are checked and recorded with signature_ok"},
    {"KOOISV_MARKETPLACE_TIME_ZONE", "UTC", 0, TIME_ZONE_HELP},
    {"KOOISV_LOG_LEVEL", "info", 0, "debug|info|warn|error"},
};

static emu_t emu;
static unsigned long request_counter; /* names requests that carry no X-Request-Id */

/* The name of a request's method as the exchange records it; "OTHER" for the rest. */
static const char *method_name(enum evhttp_cmd_type cmd)
{
    static const struct {
        enum evhttp_cmd_type cmd;
        const char *name;
    } methods[] = {
        {EVHTTP_REQ_GET, "GET"},       {EVHTTP_REQ_POST, "POST"}, {EVHTTP_REQ_PUT, "PUT"},
        {EVHTTP_REQ_DELETE, "DELETE"}, {EVHTTP_REQ_HEAD, "HEAD"}, {EVHTTP_REQ_PATCH, "PATCH"},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (methods[i].cmd == cmd)
            return methods[i].name;
    return "OTHER";
}

static void route(struct evhttp_request *req, void *arg)
{
    emu_exchange_t *ex = xcalloc(1, sizeof *ex);
    ex->emu = &emu;
    ex->req = req;
    ex->method = method_name(evhttp_request_get_command(req));
    const char *rid = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    if (rid && strlen(rid) < sizeof ex->rid)
        snprintf(ex->rid, sizeof ex->rid, "%s", rid);
    else
        snprintf(ex->rid, sizeof ex->rid, "emu-%lu", ++request_counter);

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    ex->raw_path = xstrdup(raw && *raw ? raw : "/");
    ex->query = xstrdup(query ? query : "");
    ex->path = evhttp_uridecode(ex->raw_path, 0, NULL);
    if (!ex->path)
        ex->path = xstrdup(ex->raw_path);

    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    ex->body_len = evbuffer_get_length(in);
    ex->body = xmalloc(ex->body_len + 1);
    evbuffer_copyout(in, ex->body, ex->body_len);
    ex->body[ex->body_len] = '\0';

    /* Every branch below ends the exchange with exactly one reply (which frees ex). */
    if (strcmp(ex->path, EMU_ORDER_QUERY_PATH) == 0)
        emu_dispatch_faultable(ex, "order/query", EMU_STYLE_RESULT, emu_order_query);
    else if (strcmp(ex->path, EMU_USAGE_PATH) == 0)
        emu_dispatch_faultable(ex, "usage-data", EMU_STYLE_ERROR, emu_usage_push);
    else if (strncmp(ex->path, EMU_CONTROL_PREFIX, strlen(EMU_CONTROL_PREFIX)) == 0)
        emu_control_route(ex);
    else
        emu_reply(ex, 404, json_pack("{s:s}", "error", "no such path"));
}

static SSL_CTX *ssl_ctx;

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new(ssl_ctx);
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static SSL_CTX *server_ctx(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long e = ERR_get_error();
        fprintf(stderr, "kooisv-emulator: KOOISV_TLS_CERT_FILE/KOOISV_TLS_KEY_FILE: %s\n",
                ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "cannot load");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Split "host:port" / "[v6]:port" into host and port; -1 if malformed. */
static int split_listen(const char *listen, char *host, size_t host_len, unsigned short *port)
{
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return -1;
    const char *h = listen;
    size_t hl = (size_t)(colon - listen);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_len)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || end == colon + 1)
        return -1;
    *port = (unsigned short)p;
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    log_info(NULL, "signal %d: stopping", (int)sig);
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    config_load("kooisv-emulator",
                "Marketplace emulator: Query Order, usage push, webhook receiver and a control "
                "API under /_emulator/ (see tests/emulator/README.md).",
                vars, sizeof vars / sizeof vars[0], argc, argv);
    log_init("emulator");
    signal(SIGPIPE, SIG_IGN);
    char why[256];
    if (!(emu.zone = time_zone_new(config_get("KOOISV_MARKETPLACE_TIME_ZONE"), why, sizeof why)))
        config_die("KOOISV_MARKETPLACE_TIME_ZONE: %s", why);

    char host[256];
    unsigned short port;
    if (split_listen(config_get("KOOISV_EMULATOR_LISTEN"), host, sizeof host, &port) != 0)
        config_die("KOOISV_EMULATOR_LISTEN: want host:port");
    ssl_ctx = server_ctx(config_get("KOOISV_TLS_CERT_FILE"), config_get("KOOISV_TLS_KEY_FILE"));
    if (!ssl_ctx)
        return 2;

    emu.ak = config_get("KOOISV_MARKETPLACE_AK");
    emu.sk = config_get("KOOISV_MARKETPLACE_SK");
    emu.basic_key = config_get("KOOISV_BASIC_KEY");
    emu.webhook_secret = config_get("KOOISV_EMULATOR_WEBHOOK_SECRET");
    emu.control_any = config_get_bool("KOOISV_EMULATOR_CONTROL_ANY");
    emu.base = event_base_new();
    emu_state_init(&emu);

    struct evhttp *http = evhttp_new(emu.base);
    evhttp_set_bevcb(http, make_bev, NULL);
    evhttp_set_gencb(http, route, NULL);
    evhttp_set_max_body_size(http, EMU_MAX_BODY);
    evhttp_set_timeout(http, 30);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(http, host, port);
    if (!sock)
        config_die("KOOISV_EMULATOR_LISTEN: cannot listen on %s",
                   config_get("KOOISV_EMULATOR_LISTEN"));
    /* Accepted sockets inherit it: answers leave at once instead of waiting for a delayed ACK. */
    int one = 1;
    setsockopt(evhttp_bound_socket_get_fd(sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl);
    unsigned short bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                          : ((struct sockaddr_in *)&ss)->sin_port);
    const char *port_file = config_get("KOOISV_EMULATOR_PORT_FILE");
    if (*port_file) {
        /* Written whole then renamed, so a reader never sees a half-written port. */
        char *tmp = xasprintf("%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file))
            config_die("KOOISV_EMULATOR_PORT_FILE: cannot write %s", port_file);
        free(tmp);
    }
    log_info(NULL, "listening on %s port %u", host, bound);

    struct event *sigterm = evsignal_new(emu.base, SIGTERM, on_signal, emu.base);
    struct event *sigint = evsignal_new(emu.base, SIGINT, on_signal, emu.base);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_base_dispatch(emu.base);

    event_free(sigterm);
    event_free(sigint);
    evhttp_free(http);
    emu_state_free(&emu);
    time_zone_destroy(&emu.zone);
    event_base_free(emu.base);
    SSL_CTX_free(ssl_ctx);
    return 0;
}
