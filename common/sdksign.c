#include "sdksign.h"
#include "cryptoutil.h"
#include "xmalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SDKSIGN_ALGORITHM "SDK-HMAC-SHA256"

/* Growable string; always NUL-terminated. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} strbuf_t;

static void sb_append(strbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_puts(strbuf_t *b, const char *s)
{
    sb_append(b, s, strlen(s));
}

/* Percent-decode n bytes of s into a new string ('+' stays '+', malformed escapes stay literal),
 * as the API gateway SDKs do before re-encoding. */
static char *uri_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hex_digit_value(s[i + 1])) >= 0 &&
            (lo = hex_digit_value(s[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* RFC 3986 encoding: everything but the unreserved set becomes %XX (upper-case hex). */
static void uri_encode(strbuf_t *b, const char *s)
{
    static const char digits[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            sb_append(b, (const char *)p, 1);
        } else {
            char esc[3] = {'%', digits[c >> 4], digits[c & 0x0f]};
            sb_append(b, esc, 3);
        }
    }
}

/* Each path segment decoded then re-encoded; the result always ends in '/'. */
static void canonical_uri(strbuf_t *b, const char *path)
{
    if (!path || !*path)
        path = "/";
    const char *seg = path;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        char *dec = uri_decode(seg, n);
        uri_encode(b, dec);
        free(dec);
        if (!slash)
            break;
        sb_append(b, "/", 1);
        seg = slash + 1;
    }
    if (b->len == 0 || b->data[b->len - 1] != '/')
        sb_append(b, "/", 1);
}

typedef struct {
    char *name;
    char *value;
} query_param_t;

static int param_compare(const void *a, const void *b)
{
    const query_param_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* Parameters sorted by name then value, each encoded, joined by '&'. */
static void canonical_query(strbuf_t *b, const char *query)
{
    if (!query || !*query)
        return;
    size_t cap = 1;
    for (const char *p = query; *p; p++)
        cap += *p == '&';
    query_param_t *params = xcalloc(cap, sizeof *params);
    size_t count = 0;
    const char *item = query;
    for (;;) {
        const char *amp = strchr(item, '&');
        size_t n = amp ? (size_t)(amp - item) : strlen(item);
        const char *eq = memchr(item, '=', n);
        size_t name_len = eq ? (size_t)(eq - item) : n;
        if (name_len > 0) {
            params[count].name = uri_decode(item, name_len);
            params[count].value = eq ? uri_decode(eq + 1, n - name_len - 1) : xstrdup("");
            count++;
        }
        if (!amp)
            break;
        item = amp + 1;
    }
    qsort(params, count, sizeof *params, param_compare);
    for (size_t i = 0; i < count; i++) {
        if (i)
            sb_append(b, "&", 1);
        uri_encode(b, params[i].name);
        sb_append(b, "=", 1);
        uri_encode(b, params[i].value);
        free(params[i].name);
        free(params[i].value);
    }
    free(params);
}

/* Header value without surrounding blanks, appended to b. */
static void append_trimmed(strbuf_t *b, const char *v)
{
    if (!v)
        v = "";
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    sb_append(b, v, n);
}

/* hex(HMAC(sk, StringToSign)) for a request signing the given headers ("host", "x-sdk-date",
 * in sorted order; signed_headers is their ';'-joined list). */
static void compute_signature(const char *sk, const sdksign_request_t *req, bool sign_host,
                              bool sign_date, const char *signed_headers, char out[65])
{
    strbuf_t cr = {0};
    sb_puts(&cr, req->method ? req->method : "GET");
    sb_append(&cr, "\n", 1);
    canonical_uri(&cr, req->path);
    sb_append(&cr, "\n", 1);
    canonical_query(&cr, req->query);
    sb_append(&cr, "\n", 1);
    if (sign_host) {
        sb_puts(&cr, "host:");
        append_trimmed(&cr, req->host);
        sb_append(&cr, "\n", 1);
    }
    if (sign_date) {
        sb_puts(&cr, "x-sdk-date:");
        append_trimmed(&cr, req->sdk_date);
        sb_append(&cr, "\n", 1);
    }
    sb_append(&cr, "\n", 1);
    sb_puts(&cr, signed_headers);
    sb_append(&cr, "\n", 1);
    uint8_t digest[32];
    char hex[65];
    sha256(req->body, req->body ? req->body_len : 0, digest);
    sb_puts(&cr, hex_encode(digest, sizeof digest, hex));

    sha256(cr.data, cr.len, digest);
    hex_encode(digest, sizeof digest, hex);
    free(cr.data);
    char *sts = xasprintf(SDKSIGN_ALGORITHM "\n%s\n%s", req->sdk_date ? req->sdk_date : "", hex);
    uint8_t mac[32];
    hmac_sha256(sk, strlen(sk), sts, strlen(sts), mac);
    free(sts);
    hex_encode(mac, sizeof mac, out);
}

char *sdksign_authorization(const char *ak, const char *sk, const sdksign_request_t *req)
{
    char sig[65];
    compute_signature(sk, req, true, true, "host;x-sdk-date", sig);
    return xasprintf(SDKSIGN_ALGORITHM " Access=%s, SignedHeaders=host;x-sdk-date, Signature=%s",
                     ak, sig);
}

/* Find "name=" among the comma-separated fields of s; value copied up to the next ','. */
static char *auth_field(const char *s, const char *name)
{
    size_t name_len = strlen(name);
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            size_t vlen = n - name_len - 1;
            while (vlen > 0 && p[name_len + 1 + vlen - 1] == ' ')
                vlen--;
            return xstrndup(p + name_len + 1, vlen);
        }
        if (!end)
            break;
        p = end + 1;
    }
    return NULL;
}

bool sdksign_verify(const char *authorization, const char *ak, const char *sk,
                    const sdksign_request_t *req)
{
    static const char prefix[] = SDKSIGN_ALGORITHM " ";
    if (!authorization || !ak || !sk || !req ||
        strncmp(authorization, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *fields = authorization + sizeof prefix - 1;
    char *access = auth_field(fields, "Access");
    char *headers = auth_field(fields, "SignedHeaders");
    char *signature = auth_field(fields, "Signature");
    bool ok = false;
    if (!access || !headers || !signature || strcmp(access, ak) != 0)
        goto done;
    /* Only the two headers we know how to reproduce, in sorted order, each at most once. */
    bool sign_host = false, sign_date = false;
    if (strcmp(headers, "host;x-sdk-date") == 0)
        sign_host = sign_date = true;
    else if (strcmp(headers, "x-sdk-date") == 0)
        sign_date = true;
    else if (strcmp(headers, "host") == 0)
        sign_host = true;
    else
        goto done;
    char expected[65];
    compute_signature(sk, req, sign_host, sign_date, headers, expected);
    ok = hex_equal_ci(expected, signature);
done:
    free(access);
    free(headers);
    free(signature);
    return ok;
}

void sdksign_date_now(char out[17])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}
