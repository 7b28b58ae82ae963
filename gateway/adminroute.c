#include "adminroute.h"

#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "xmalloc.h"

#define PARAM_MAX 256

/* Printable text without control characters, at most max bytes. */
static bool text_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return n <= max;
}

/* Match path against pattern; path parameters are decoded into segs. 1 = match, 0 = no,
 * -1 = a parameter is not acceptable (400). */
static int route_match(const char *pattern, const char *path, char **segs, int *nseg)
{
    *nseg = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return 0;
        p++;
        s++;
        size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
        if (pl == 1 && *p == '*') {
            if (sl == 0 || *nseg >= ADMINROUTE_SEGMENTS_MAX)
                return 0;
            char *raw = xstrndup(s, sl);
            char *dec = evhttp_uridecode(raw, 0, NULL);
            free(raw);
            segs[(*nseg)++] = dec ? dec : xstrdup("");
        } else if (pl != sl || strncmp(p, s, pl) != 0) {
            return 0;
        }
        p += pl;
        s += sl;
    }
    if (*p || (*s && strcmp(s, "/") != 0))
        return 0;
    for (int i = 0; i < *nseg; i++)
        if (!*segs[i] || !text_ok(segs[i], ADMINROUTE_SEGMENT_MAX) || strchr(segs[i], '/'))
            return -1;
    return 1;
}

static void free_segs(char **segs, int n)
{
    for (int i = 0; i < n; i++)
        free(segs[i]);
}

const adminroute_t *adminroute_find(const adminroute_t *routes, size_t n,
                                    enum evhttp_cmd_type method, const char *path,
                                    char *segs[ADMINROUTE_SEGMENTS_MAX], int *nseg, int *status)
{
    bool path_known = false, bad_segment = false;
    *nseg = 0;
    for (size_t i = 0; i < n; i++) {
        char *found[ADMINROUTE_SEGMENTS_MAX] = {0};
        int nfound = 0;
        int m = route_match(routes[i].path, path, found, &nfound);
        if (m != 0)
            path_known = true;
        if (m == 1 && routes[i].method == method) {
            memcpy(segs, found, sizeof found);
            *nseg = nfound;
            return &routes[i];
        }
        if (m == -1)
            bad_segment = true;
        free_segs(found, nfound);
    }
    *status = bad_segment ? 400 : path_known ? 405 : 404;
    return NULL;
}

bool adminroute_permits(const adminroute_t *route, admintoken_role_t role)
{
    if (route->role == ROLE_METER)
        return role == ROLE_METER || role == ROLE_ADMIN;
    return role != ROLE_METER && role >= route->role;
}

const char *adminroute_check_params(const adminroute_t *route, const struct evkeyvalq *params,
                                    char *msg, size_t msglen)
{
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, params, next)
    {
        bool known = false;
        for (const char *const *p = route->params; *p && !known; p++)
            known = strcmp(*p, kv->key) == 0;
        if (!known || !text_ok(kv->value, PARAM_MAX)) {
            snprintf(msg, msglen, known ? "%s: too long or not printable" : "unknown parameter %s",
                     text_ok(kv->key, 64) ? kv->key : "?");
            return msg;
        }
    }
    return NULL;
}
