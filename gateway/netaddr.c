#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Split "host:port" / "[v6]:port" into host and port buffers. */
static bool split_hostport(const char *hostport, char *host, size_t hostlen, char *port,
                           size_t portlen)
{
    const char *colon = strrchr(hostport, ':');
    if (!colon || !colon[1])
        return false;
    const char *h = hostport;
    size_t hl = (size_t)(colon - hostport);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostlen || strlen(colon + 1) >= portlen)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, portlen, "%s", colon + 1);
    return true;
}

/* A port as 1 to 5 digits up to 65535: getaddrinfo takes "99999" as 34463 and "+80" as 80. */
static bool port_valid(const char *port)
{
    size_t n = strspn(port, "0123456789");
    return n >= 1 && n <= 5 && !port[n] && atoi(port) <= 65535;
}

int netaddr_listen(const char *hostport, bool reuseport, char *err, size_t errlen)
{
    char host[128], port[16];
    if (!split_hostport(hostport, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "not host:port: %s", hostport);
        return -1;
    }
    if (!port_valid(port)) {
        snprintf(err, errlen, "not a port (0..65535): %s", hostport);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "%s: %s", hostport, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Accepted sockets inherit TCP_NODELAY from the listener (Linux, the BSDs). Without it an
     * answer written in more than one segment waits for the client's delayed ACK (~40 ms). */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        snprintf(err, errlen, "TCP_NODELAY: %s", strerror(errno));
        goto fail;
    }
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        goto fail;
    }
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(err, errlen, "bind %s: %s", hostport, strerror(errno));
        goto fail;
    }
    if (listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen %s: %s", hostport, strerror(errno));
        goto fail;
    }
    freeaddrinfo(res);
    return fd;
fail:
    close(fd);
    freeaddrinfo(res);
    return -1;
}

int netaddr_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

void netaddr_with_port(const char *hostport, int port, char *out, size_t outlen)
{
    const char *colon = strrchr(hostport, ':');
    int hl = colon ? (int)(colon - hostport) : (int)strlen(hostport);
    snprintf(out, outlen, "%.*s:%d", hl, hostport, port);
}

bool netaddr_ip_parse(const char *text, uint8_t out[16], bool *v4)
{
    struct in_addr in;
    bool is_v4 = inet_pton(AF_INET, text, &in) == 1;
    if (v4)
        *v4 = is_v4;
    if (is_v4) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in, 4);
        return true;
    }
    return inet_pton(AF_INET6, text, out) == 1;
}

bool netaddr_list_next(const char **p, const char **item, size_t *len)
{
    if (!p || !*p || !**p)
        return false;
    const char *end = strchr(*p, ',');
    *item = *p;
    *len = end ? (size_t)(end - *p) : strlen(*p);
    *p = end ? end + 1 : *p + *len;
    return true;
}

void netaddr_trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}
