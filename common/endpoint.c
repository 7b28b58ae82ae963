#include "endpoint.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xmalloc.h"

static int resolved_add(char ***list, int *n, const char *ep)
{
    for (int i = 0; i < *n; i++)
        if (strcmp((*list)[i], ep) == 0)
            return 0;
    *list = xrealloc(*list, sizeof(char *) * (size_t)(*n + 1));
    (*list)[(*n)++] = xstrdup(ep);
    return 0;
}

void endpoint_list_free(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

int endpoint_resolve(const char *endpoints, char ***out)
{
    char **list = NULL;
    int n = 0;
    char *copy = xstrdup(endpoints ? endpoints : "");
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (strncmp(tok, "tcp://", 6) != 0) {
            /* ipc:// and inproc:// need no resolution. */
            resolved_add(&list, &n, tok);
            continue;
        }
        char *host = tok + 6;
        char *colon = strrchr(host, ':');
        if (!colon || colon == host || !colon[1])
            goto fail;
        *colon = '\0';
        const char *port = colon + 1;
        char hostbuf[256];
        snprintf(hostbuf, sizeof hostbuf, "%s", host);
        size_t hl = strlen(hostbuf);
        if (hostbuf[0] == '[' && hl > 2 && hostbuf[hl - 1] == ']') {
            hostbuf[hl - 1] = '\0';
            memmove(hostbuf, hostbuf + 1, hl - 1);
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int gai = getaddrinfo(hostbuf, port, &hints, &res);
        if (gai != 0) {
            log_warn(NULL, "cannot resolve %s: %s", hostbuf, gai_strerror(gai));
            goto fail;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            char addr[INET6_ADDRSTRLEN], ep[300];
            if (ai->ai_family == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addr,
                          sizeof addr);
                snprintf(ep, sizeof ep, "tcp://%s:%s", addr, port);
            } else if (ai->ai_family == AF_INET6) {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addr,
                          sizeof addr);
                snprintf(ep, sizeof ep, "tcp://[%s]:%s", addr, port);
            } else {
                continue;
            }
            resolved_add(&list, &n, ep);
        }
        freeaddrinfo(res);
    }
    free(copy);
    *out = list;
    return n;
fail:
    free(copy);
    endpoint_list_free(list, n);
    *out = NULL;
    return -1;
}
