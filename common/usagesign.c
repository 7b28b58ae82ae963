#include "usagesign.h"
#include "canonjson.h"
#include "cryptoutil.h"
#include "xmalloc.h"

#include <stdlib.h>
#include <string.h>

char *usagesign_signature(const char *key, const char *ts, const char *nonce, const char *body)
{
    char *text = xasprintf("ts=%s&nonce=%s&body=%s", ts, nonce, body);
    uint8_t mac[32];
    hmac_sha256(key, strlen(key), text, strlen(text), mac);
    free(text);
    return b64_encode(mac, sizeof mac);
}

static int key_compare(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* V1 (reconstructed from vectors.json, matching the marketplace's Java demo):
 *   stringToSign = k1=v1&k2=v2&... over every parameter except authToken, names sorted by byte
 *                  order, values as received (not URL-encoded, empty values kept);
 *   authToken    = base64(HMAC-SHA256(key = seller key + params.timeStamp, stringToSign)). */
char *usagesign_v1_token(const char *key, const json_t *params, char **string_to_sign)
{
    if (!key || !json_is_object(params))
        return NULL;
    size_t n = json_object_size(params), k = 0;
    const char **names = xmalloc((n ? n : 1) * sizeof *names);
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)params, name, value)
    {
        if (strcmp(name, "authToken") != 0 && !json_is_null(value))
            names[k++] = name;
    }
    qsort(names, k, sizeof *names, key_compare);

    char *sts = xstrdup("");
    size_t sts_len = 0;
    for (size_t i = 0; i < k; i++) {
        const json_t *v = json_object_get(params, names[i]);
        char *text;
        if (json_is_string(v))
            text = xstrdup(json_string_value(v));
        else if (json_is_number(v) || json_is_boolean(v))
            text = canonjson_dump(v);
        else
            text = NULL; /* nested values have no V1 form */
        if (!text) {
            free(sts);
            free(names);
            return NULL;
        }
        char *next = xasprintf("%s%s%s=%s", sts, i ? "&" : "", names[i], text);
        free(text);
        free(sts);
        sts = next;
    }
    sts_len = strlen(sts);
    free(names);

    const json_t *ts = json_object_get(params, "timeStamp");
    char *mac_key = xasprintf("%s%s", key, json_is_string(ts) ? json_string_value(ts) : "");
    uint8_t mac[32];
    hmac_sha256(mac_key, strlen(mac_key), sts, sts_len, mac);
    xfree_secret(mac_key, strlen(mac_key) + 1);
    if (string_to_sign)
        *string_to_sign = sts;
    else
        free(sts);
    return b64_encode(mac, sizeof mac);
}
