/* kconn: one kept-alive HTTPS connection that the test drives request by request, for what
 * kclient's one-connection-per-call requests hide (keep-alive behaviour, round-trip latency).
 * Each request leaves in a single TLS write, so what a test measures is the server's answer
 * path, not the client's segmentation. One kconn_t belongs to one thread. */
#ifndef KOOISV_KCONN_H
#define KOOISV_KCONN_H
#include <stddef.h>

#include "kclient.h"

typedef struct kconn kconn_t;

/* Connect to the scheme://host:port of url (https only), verifying the certificate against
 * ca_file (NULL: KOOISV_CA_FILE of the suite). NULL with the reason in err on failure. */
kconn_t *kconn_open(const char *url, const char *ca_file, char *err, size_t errlen);
/* kconn_open from source address src (NULL: any; any 127/8 address is this machine), writing
 * the raw bytes preamble[0..plen) (a PROXY protocol header, say; NULL: none) before the TLS
 * handshake, as a load balancer in front of the gateway does. */
kconn_t *kconn_open_from(const char *url, const char *ca_file, const char *src,
                         const void *preamble, size_t plen, char *err, size_t errlen);
/* Send one HTTP/1.1 request on the connection and read its answer (Content-Length framing).
 * headers: NULL-terminated "Name: value" list or NULL; body may be NULL. Fills out as kclient
 * does (status, body, json, code, headers; Body-Sign is not checked). 0 when an answer arrived,
 * -1 otherwise (out->error says why; the connection is then unusable). */
int kconn_request(kconn_t *self, const char *method, const char *path_and_query,
                  const char *const *headers, const char *body, size_t len, kresp_t *out);
/* Close the connection and free it; sets *self_p to NULL. Safe on NULL. */
void kconn_destroy(kconn_t **self_p);

#endif
