#include "svcadmin.h"
#include "resultcode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

const char *svcadmin_arg(const Kooisv__AdminRequest *req, const char *key)
{
    for (size_t i = 0; req && i < req->n_args; i++)
        if (req->args[i]->key && strcmp(req->args[i]->key, key) == 0)
            return req->args[i]->value ? req->args[i]->value : "";
    return "";
}

bool svcadmin_count(const char *s, int64_t min, int64_t max, int64_t *out)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 18 || strspn(s, "0123456789") != n)
        return false;
    int64_t v = strtoll(s, NULL, 10);
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool svcadmin_limit(svc_call_t *call, const Kooisv__AdminRequest *req, long dflt, long max,
                    char out[16])
{
    const char *s = svcadmin_arg(req, "limit");
    int64_t v = dflt;
    if (*s && !svcadmin_count(s, 1, max, &v)) {
        svc_call_result(call, RC_INVALID, "limit: must be 1..%ld", max);
        return false;
    }
    snprintf(out, 16, "%lld", (long long)v);
    return true;
}

void svcadmin_reply_text(svc_call_t *call, const char *json)
{
    Kooisv__AdminResult *res = svc_call_alloc(call, sizeof *res);
    kooisv__admin_result__init(res);
    res->json = svc_call_strdup(call, json);
    Kooisv__Reply *reply = svc_call_reply(call);
    reply->result_case = KOOISV__REPLY__RESULT_ADMIN;
    reply->admin = res;
    svc_call_result(call, RC_OK, "success");
}

/* Answer with doc as the AdminResult; wipe the serialised copy when it holds a secret. */
static void reply_doc(svc_call_t *call, json_t *doc, bool secret)
{
    char *text = svcadmin_json_text(doc);
    json_decref(doc);
    svcadmin_reply_text(call, text);
    if (secret)
        xfree_secret(text, strlen(text));
    else
        free(text);
}

void svcadmin_reply(svc_call_t *call, json_t *doc)
{
    reply_doc(call, doc, false);
}

void svcadmin_reply_secret(svc_call_t *call, json_t *doc)
{
    reply_doc(call, doc, true);
}

char *svcadmin_json_text(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        /* only on allocation failure inside jansson */
        fprintf(stderr, "level=error msg=\"json_dumps failed\"\n");
        abort();
    }
    return s;
}

void svcadmin_series_add(json_t *series, const char *name, const char *type, const char *help,
                         double value, const char *const *labels)
{
    json_t *l = json_object();
    for (const char *const *p = labels; p && p[0] && p[1]; p += 2)
        json_object_set_new(l, p[0], json_string(p[1]));
    json_array_append_new(series, json_pack("{s:s,s:s,s:s,s:f,s:o}", "name", name, "type", type,
                                            "help", help, "value", value, "labels", l));
}
