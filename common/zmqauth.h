/* zmqauth: CURVE on every ZeroMQ socket (ARCHITECTURE.md "The ZeroMQ plane is authenticated").
 * A process has one CURVE key pair, from its secret key (Z85, 40 characters; replicas of one
 * service share it). A server socket admits only the client public keys it was configured with:
 * one ZAP handler per process (a thread on inproc://zeromq.zap.01) answers for every server
 * socket, and logs refusals (at most one line a second). A client socket names its server's
 * public key. Every socket made here also gets ZMQ_MAXMSGSIZE. There is no plain mode: a socket
 * is refused when the process has no key, and a server when it admits no client.
 * Each admitted key has rights by the list that admits it: the ZAP handler answers a User-Id,
 * which ZeroMQ sets on every message of that connection (zmq_msg_gets(msg, "User-Id")):
 * ZMQAUTH_USER_GATEWAY for the keys in KOOISV_CURVE_CLIENTS, ZMQAUTH_USER_SYSTEM for those in
 * KOOISV_CURVE_SYSTEM_CLIENTS (services calling a service: svc.h says what each may send). A key
 * may be in one list only. */
#ifndef KOOISV_ZMQAUTH_H
#define KOOISV_ZMQAUTH_H
#include <stdbool.h>
#include <stddef.h>

#define ZMQAUTH_KEY_LEN 40 /* a Z85 key: 32 bytes */
/* Largest message a socket accepts: a request body is at most KOOISV_MAX_BODY_BYTES (1 MiB by
 * default) and an admin answer (1000 audit entries at most) a few MiB. */
#define ZMQAUTH_MAX_MSG_BYTES (16L * 1024 * 1024)

/* Who sent a message, by the list that admitted its key (the ZAP User-Id). */
typedef enum {
    ZMQAUTH_PEER_UNKNOWN = 0, /* no User-Id, or one this process did not give: refused */
    ZMQAUTH_PEER_GATEWAY,     /* KOOISV_CURVE_CLIENTS */
    ZMQAUTH_PEER_SYSTEM,      /* KOOISV_CURVE_SYSTEM_CLIENTS */
} zmqauth_peer_t;
#define ZMQAUTH_USER_GATEWAY "gateway"
#define ZMQAUTH_USER_SYSTEM "system"

// clang-format off
/* This process's key: in every binary's configuration table that uses ZeroMQ. */
#define ZMQAUTH_KEY_CONFIG_VAR                                                                   \
    {"KOOISV_CURVE_SECRET_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET,                           \
     "CURVE secret key (Z85, 40 characters) of this process on the ZeroMQ plane; replicas of "   \
     "one service share it"}
/* A server's key and the clients it admits (zmqauth_config_server). */
#define ZMQAUTH_SERVER_CONFIG_VARS                                                               \
    ZMQAUTH_KEY_CONFIG_VAR,                                                                      \
    {"KOOISV_CURVE_CLIENTS", NULL, CONFIG_REQUIRED | CONFIG_SECRET,                              \
     "CURVE public keys (Z85, comma list) of the gateways admitted to KOOISV_BIND: they may "    \
     "send every request but the system clients' admin actions; public, the file twin is for "   \
     "Docker secrets"},                                                                          \
    {"KOOISV_CURVE_SYSTEM_CLIENTS", "", CONFIG_SECRET,                                           \
     "CURVE public keys (Z85, comma list) of the services admitted to KOOISV_BIND as system "    \
     "clients: they may send only PING and the admin actions this service serves them (order: " \
     "events.pending, events.ack; the others serve none and refuse to start with a key here)"}
// clang-format on

/* Take secret_z85 as this process's key pair and admit the client public keys listed in
 * clients as gateways and those in system_clients as system clients (Z85, separated by commas or
 * blanks; NULL or "" admits none: a client-only process). A key in both lists is an error.
 * Starts the ZAP handler when they list any. Call once, before any socket is made.
 * 0, or -1 with the reason in why. */
int zmqauth_setup(const char *secret_z85, const char *clients, const char *system_clients,
                  char *why, size_t why_len);
/* zmqauth_setup from KOOISV_CURVE_SECRET_KEY, KOOISV_CURVE_CLIENTS and
 * KOOISV_CURVE_SYSTEM_CLIENTS (config.h, table with ZMQAUTH_SERVER_CONFIG_VARS); on error prints
 * "prog: NAME: reason" and exits 2. */
void zmqauth_config_server(const char *prog);
/* The same for a client-only process (table with ZMQAUTH_KEY_CONFIG_VAR). */
void zmqauth_config_client(const char *prog);
/* True when key is a Z85 CURVE key (40 characters that decode to 32 bytes). */
bool zmqauth_key_valid(const char *key);
/* The peer a User-Id names (NULL or unknown: ZMQAUTH_PEER_UNKNOWN). */
zmqauth_peer_t zmqauth_peer_parse(const char *user_id);
/* The User-Id of peer ("-" for ZMQAUTH_PEER_UNKNOWN), for log lines. */
const char *zmqauth_peer_name(zmqauth_peer_t peer);
/* Number of system client keys admitted (a service that serves them none refuses to start). */
size_t zmqauth_system_clients(void);
/* This process's public key (Z85), "" before zmqauth_setup. */
const char *zmqauth_public_key(void);
/* Make sock a CURVE server that admits the configured clients (before it binds). 0, or -1 when
 * the process has no key or admits no client (logged). */
int zmqauth_server(void *sock);
/* Make sock a CURVE client of the server with public key server_key (before it connects). 0, or
 * -1 when the process has no key or server_key is not a key (logged). */
int zmqauth_client(void *sock, const char *server_key);

#endif
