#include "zmqauth.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "config.h"
#include "log.h"
#include "transport.h"
#include "xmalloc.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "kooisv"

/* A client key the process admits, and the peer it makes of its holder. */
typedef struct {
    uint8_t key[32]; /* binary */
    zmqauth_peer_t peer;
} admitted_t;

static struct {
    bool ready;
    char public_z85[ZMQAUTH_KEY_LEN + 1];
    char secret_z85[ZMQAUTH_KEY_LEN + 1];
    admitted_t *clients;
    size_t n_clients, n_system;
    void *zap; /* the handler's REP socket, bound before any server socket */
    pthread_t zap_thread;
} auth;

bool zmqauth_key_valid(const char *key)
{
    uint8_t raw[32];
    return key && strlen(key) == ZMQAUTH_KEY_LEN && zmq_z85_decode(raw, key) != NULL;
}

const char *zmqauth_public_key(void)
{
    return auth.public_z85;
}

zmqauth_peer_t zmqauth_peer_parse(const char *user_id)
{
    if (user_id && strcmp(user_id, ZMQAUTH_USER_GATEWAY) == 0)
        return ZMQAUTH_PEER_GATEWAY;
    if (user_id && strcmp(user_id, ZMQAUTH_USER_SYSTEM) == 0)
        return ZMQAUTH_PEER_SYSTEM;
    return ZMQAUTH_PEER_UNKNOWN;
}

const char *zmqauth_peer_name(zmqauth_peer_t peer)
{
    return peer == ZMQAUTH_PEER_GATEWAY  ? ZMQAUTH_USER_GATEWAY
           : peer == ZMQAUTH_PEER_SYSTEM ? ZMQAUTH_USER_SYSTEM
                                         : "-";
}

size_t zmqauth_system_clients(void)
{
    return auth.n_system;
}

/* ---------------------------------------------------------------- ZAP handler */

/* The peer the list holding key makes of its client; ZMQAUTH_PEER_UNKNOWN when none does. */
static zmqauth_peer_t client_admitted(const uint8_t *key, size_t len)
{
    if (len != 32)
        return ZMQAUTH_PEER_UNKNOWN;
    for (size_t i = 0; i < auth.n_clients; i++)
        if (memcmp(auth.clients[i].key, key, 32) == 0)
            return auth.clients[i].peer;
    return ZMQAUTH_PEER_UNKNOWN;
}

/* At most one log line a second; the refusals in between are counted into the next one. */
static void refusal_log(const char *address, const uint8_t *key, size_t key_len)
{
    static log_gate_t gate;
    unsigned long quiet;
    if (!log_gate_pass(&gate, &quiet))
        return;
    char z85[ZMQAUTH_KEY_LEN + 1] = "-";
    if (key_len == 32)
        zmq_z85_encode(z85, key, 32);
    log_warn(NULL,
             "zmqauth: refused a CURVE client from %s with key %.8s... (not admitted); %lu more "
             "refused since the last such line",
             address, z85, quiet);
}

/* ZAP 1.0 (RFC 27): [version][request id][domain][address][routing id][mechanism][credentials]
 * in, [version][request id][status code][status text][user id][metadata] out. */
static void zap_serve(void *sock)
{
    zmq_msg_t part[7];
    int n = 0;
    bool too_many = false;
    for (int more = 1; more; n++) {
        if (n == 7) { /* too many frames: drain, and refuse */
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            while (zmq_msg_recv(&extra, sock, 0) >= 0 && zmq_msg_more(&extra))
                ;
            zmq_msg_close(&extra);
            too_many = true;
            break;
        }
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], sock, 0) < 0) {
            zmq_msg_close(&part[n]);
            for (int i = 0; i < n; i++)
                zmq_msg_close(&part[i]);
            return;
        }
        more = zmq_msg_more(&part[n]);
    }
    zmqauth_peer_t peer = n == 7 && !too_many && zmq_msg_size(&part[5]) == 5 &&
                                  memcmp(zmq_msg_data(&part[5]), "CURVE", 5) == 0
                              ? client_admitted(zmq_msg_data(&part[6]), zmq_msg_size(&part[6]))
                              : ZMQAUTH_PEER_UNKNOWN;
    bool ok = peer != ZMQAUTH_PEER_UNKNOWN;
    if (!ok && n == 7) {
        char address[64];
        snprintf(address, sizeof address, "%.*s", (int)zmq_msg_size(&part[3]),
                 (const char *)zmq_msg_data(&part[3]));
        refusal_log(address, zmq_msg_data(&part[6]), zmq_msg_size(&part[6]));
    }
    /* A REP socket must answer; a malformed request gets a 500 with whatever id it had. */
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(sock, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
    else
        zmq_send(sock, "", 0, ZMQ_SNDMORE);
    const char *code = ok ? "200" : (n == 7 ? "400" : "500");
    zmq_send(sock, code, 3, ZMQ_SNDMORE);
    const char *text = ok ? "OK" : "client key not admitted";
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    /* The User-Id: ZeroMQ sets it on every message of the connection (svc.c reads it). */
    const char *user = ok ? zmqauth_peer_name(peer) : "";
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(sock, "", 0, 0);
    for (int i = 0; i < n && i < 7; i++)
        zmq_msg_close(&part[i]);
}

static void *zap_main(void *arg)
{
    void *sock = arg;
    for (;;) {
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, -1) < 0) {
            if (zmq_errno() == ETERM)
                break;
            continue;
        }
        if (item.revents & ZMQ_POLLIN)
            zap_serve(sock);
    }
    zmq_close(sock);
    return NULL;
}

/* ---------------------------------------------------------------- set-up */

static int fail(char *why, size_t why_len, const char *fmt, const char *arg)
{
    snprintf(why, why_len, fmt, arg);
    return -1;
}

/* Parse the comma/blank list of Z85 public keys into auth.clients as peer. A key the other list
 * admits already is an error: its rights would be ambiguous. */
static int clients_parse(const char *clients, zmqauth_peer_t peer, char *why, size_t why_len)
{
    char *copy = xstrdup(clients ? clients : "");
    char *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ", \t\r\n", &save); tok;
         tok = strtok_r(NULL, ", \t\r\n", &save)) {
        uint8_t key[32];
        if (!zmqauth_key_valid(tok)) {
            rc = fail(why, why_len, "not a CURVE public key (Z85, 40 characters): %.8s...", tok);
            break;
        }
        zmq_z85_decode(key, tok);
        zmqauth_peer_t had = client_admitted(key, sizeof key);
        if (had == peer)
            continue;
        if (had != ZMQAUTH_PEER_UNKNOWN) {
            rc = fail(why, why_len,
                      "key %.8s... is listed twice (KOOISV_CURVE_CLIENTS and "
                      "KOOISV_CURVE_SYSTEM_CLIENTS give different rights: one list only)",
                      tok);
            break;
        }
        auth.clients = xrealloc(auth.clients, (auth.n_clients + 1) * sizeof *auth.clients);
        memcpy(auth.clients[auth.n_clients].key, key, sizeof key);
        auth.clients[auth.n_clients++].peer = peer;
        if (peer == ZMQAUTH_PEER_SYSTEM)
            auth.n_system++;
    }
    free(copy);
    return rc;
}

/* zmqauth_setup; *bad names the variable at fault (secret key or a client list). */
static int setup(const char *secret_z85, const char *clients, const char *system_clients,
                 const char **bad, char *why, size_t why_len)
{
    *bad = "KOOISV_CURVE_SECRET_KEY";
    if (auth.ready)
        return fail(why, why_len, "%s", "CURVE keys are already set up");
    if (!zmq_has("curve"))
        return fail(why, why_len, "%s", "this libzmq has no CURVE support");
    if (!zmqauth_key_valid(secret_z85))
        return fail(why, why_len, "%s", "must be a CURVE secret key (Z85, 40 characters)");
    if (zmq_curve_public(auth.public_z85, secret_z85) != 0)
        return fail(why, why_len, "cannot derive the public key: %s", zmq_strerror(zmq_errno()));
    *bad = "KOOISV_CURVE_CLIENTS";
    int rc = clients_parse(clients, ZMQAUTH_PEER_GATEWAY, why, why_len);
    if (rc == 0) {
        *bad = "KOOISV_CURVE_SYSTEM_CLIENTS";
        rc = clients_parse(system_clients, ZMQAUTH_PEER_SYSTEM, why, why_len);
    }
    if (rc != 0) {
        free(auth.clients);
        auth.clients = NULL;
        auth.n_clients = auth.n_system = 0;
        return -1;
    }
    if (auth.n_clients > 0) {
        auth.zap = zmq_socket(transport_context(), ZMQ_REP);
        if (!auth.zap || zmq_bind(auth.zap, ZAP_ENDPOINT) != 0 ||
            pthread_create(&auth.zap_thread, NULL, zap_main, auth.zap) != 0) {
            fail(why, why_len, "cannot start the ZAP handler: %s", zmq_strerror(zmq_errno()));
            if (auth.zap)
                zmq_close(auth.zap);
            auth.zap = NULL;
            return -1;
        }
        pthread_detach(auth.zap_thread);
    }
    memcpy(auth.secret_z85, secret_z85, ZMQAUTH_KEY_LEN + 1);
    auth.ready = true;
    return 0;
}

int zmqauth_setup(const char *secret_z85, const char *clients, const char *system_clients,
                  char *why, size_t why_len)
{
    const char *bad;
    return setup(secret_z85, clients, system_clients, &bad, why, why_len);
}

static void config_apply(const char *prog, const char *clients, const char *system_clients,
                         bool server)
{
    char why[200];
    const char *bad = NULL;
    if (setup(config_get("KOOISV_CURVE_SECRET_KEY"), clients, system_clients, &bad, why,
              sizeof why) != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, bad, why);
        exit(2);
    }
    if (server && auth.n_clients == auth.n_system) {
        fprintf(stderr, "%s: KOOISV_CURVE_CLIENTS: lists no client key\n", prog);
        exit(2);
    }
}

void zmqauth_config_server(const char *prog)
{
    config_apply(prog, config_get("KOOISV_CURVE_CLIENTS"),
                 config_get("KOOISV_CURVE_SYSTEM_CLIENTS"), true);
}

void zmqauth_config_client(const char *prog)
{
    config_apply(prog, NULL, NULL, false);
}

/* ---------------------------------------------------------------- sockets */

static void limit_size(void *sock)
{
    int64_t max = ZMQAUTH_MAX_MSG_BYTES;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
}

int zmqauth_server(void *sock)
{
    if (!auth.ready || auth.n_clients == 0) {
        log_error(NULL, "zmqauth: a server socket needs this process's CURVE key and the "
                        "clients it admits");
        return -1;
    }
    int one = 1;
    limit_size(sock);
    if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, auth.secret_z85, ZMQAUTH_KEY_LEN) != 0) {
        log_error(NULL, "zmqauth: cannot make a CURVE server: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int zmqauth_client(void *sock, const char *server_key)
{
    if (!auth.ready) {
        log_error(NULL, "zmqauth: a client socket needs this process's CURVE key");
        return -1;
    }
    if (!zmqauth_key_valid(server_key)) {
        log_error(NULL, "zmqauth: the server's public key is not a CURVE key");
        return -1;
    }
    limit_size(sock);
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, ZMQAUTH_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, auth.public_z85, ZMQAUTH_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, auth.secret_z85, ZMQAUTH_KEY_LEN) != 0) {
        log_error(NULL, "zmqauth: cannot make a CURVE client: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}
