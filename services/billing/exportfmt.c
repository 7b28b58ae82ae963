#include "exportfmt.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "xmalloc.h"

/* The bill: one row per instance with something in the period, then the totals of its product,
 * its tenant and all (line = instance | product | tenant | all). */
static const exportfmt_col_t bill_cols[] = {
    {"line", EXPORTFMT_TEXT},
    {"tenant_id", EXPORTFMT_TEXT},
    {"product_id", EXPORTFMT_TEXT},
    {"instance_id", EXPORTFMT_TEXT},
    {"sku_code", EXPORTFMT_TEXT},
    {"charging_mode", EXPORTFMT_TEXT},
    {"period_from", EXPORTFMT_TIME},
    {"period_to", EXPORTFMT_TIME},
    {"ledger_lines", EXPORTFMT_NUMBER},
    {"charged_amount", EXPORTFMT_NUMBER},
    {"refunded_amount", EXPORTFMT_NUMBER},
    {"net_amount", EXPORTFMT_NUMBER},
    {"usage_records", EXPORTFMT_NUMBER},
    {"usage_quantity", EXPORTFMT_NUMBER},
};

/* The detail: every ledger line, then every usage record. */
static const exportfmt_col_t detail_cols[] = {
    {"record_type", EXPORTFMT_TEXT},
    {"record_id", EXPORTFMT_NUMBER},
    {"occurred_at", EXPORTFMT_TIME},
    {"tenant_id", EXPORTFMT_TEXT},
    {"product_id", EXPORTFMT_TEXT},
    {"instance_id", EXPORTFMT_TEXT},
    {"kind", EXPORTFMT_TEXT},
    {"order_id", EXPORTFMT_TEXT},
    {"amount", EXPORTFMT_NUMBER},
    {"period_type", EXPORTFMT_TEXT},
    {"period_number", EXPORTFMT_NUMBER},
    {"quantity", EXPORTFMT_NUMBER},
    {"used_begin", EXPORTFMT_TIME},
    {"used_end", EXPORTFMT_TIME},
    {"bucket_start", EXPORTFMT_TIME},
    {"client_record_id", EXPORTFMT_TEXT},
    {"push_status", EXPORTFMT_TEXT},
    {"metering_sn", EXPORTFMT_TEXT},
};

struct exportfmt {
    export_kind_t kind;
    export_format_t format;
    const exportfmt_col_t *cols;
    size_t ncols;
    char *data;
    size_t len, cap;
    long long rows;
};

static const char *const kind_names[] = {[EXPORT_BILL] = "bill", [EXPORT_DETAIL] = "detail"};
static const char *const format_names[] = {[EXPORT_CSV] = "csv", [EXPORT_JSON] = "json"};

/* The index of s in names (two of them, indexed by their enum); -1 when s is neither or NULL. */
static int name_index(const char *const names[2], const char *s)
{
    for (int i = 0; s && i < 2; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

bool exportfmt_kind_parse(const char *s, export_kind_t *out)
{
    int i = name_index(kind_names, s);
    if (i >= 0)
        *out = (export_kind_t)i;
    return i >= 0;
}

bool exportfmt_format_parse(const char *s, export_format_t *out)
{
    int i = name_index(format_names, s);
    if (i >= 0)
        *out = (export_format_t)i;
    return i >= 0;
}

const char *exportfmt_kind_name(export_kind_t kind)
{
    return kind_names[kind == EXPORT_BILL ? EXPORT_BILL : EXPORT_DETAIL];
}

const char *exportfmt_format_name(export_format_t format)
{
    return format_names[format == EXPORT_CSV ? EXPORT_CSV : EXPORT_JSON];
}

const exportfmt_col_t *exportfmt_columns(export_kind_t kind, size_t *n)
{
    if (kind == EXPORT_BILL) {
        *n = sizeof bill_cols / sizeof *bill_cols;
        return bill_cols;
    }
    *n = sizeof detail_cols / sizeof *detail_cols;
    return detail_cols;
}

static void put(void *arg, const char *data, size_t len)
{
    exportfmt_t *self = arg;
    if (self->len + len > self->cap) {
        size_t cap = self->cap ? self->cap : 64 * 1024;
        while (cap < self->len + len)
            cap *= 2;
        self->data = xrealloc(self->data, cap);
        self->cap = cap;
    }
    memcpy(self->data + self->len, data, len);
    self->len += len;
}

static void put_str(exportfmt_t *self, const char *s)
{
    put(self, s, strlen(s));
}

/* s as a JSON string: quotes, backslashes and control characters escaped; UTF-8 as it is (the
 * database's text is valid UTF-8). */
static void put_json_string(exportfmt_t *self, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    put(self, "\"", 1);
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        put(self, run, (size_t)((const char *)p - run));
        char esc[7] = {'\\', (char)*p, 0};
        size_t n = 2;
        if (*p == '\n')
            esc[1] = 'n';
        else if (*p == '\r')
            esc[1] = 'r';
        else if (*p == '\t')
            esc[1] = 't';
        else if (*p < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        }
        put(self, esc, n);
        run = (const char *)p + 1;
    }
    put_str(self, run);
    put(self, "\"", 1);
}

exportfmt_t *exportfmt_new(export_kind_t kind, export_format_t format)
{
    exportfmt_t *self = xcalloc(1, sizeof *self);
    self->kind = kind;
    self->format = format;
    self->cols = exportfmt_columns(kind, &self->ncols);
    if (format == EXPORT_JSON) {
        put(self, "[", 1);
        return self;
    }
    for (size_t i = 0; i < self->ncols; i++)
        csv_text(put, self, self->cols[i].name, i + 1 == self->ncols);
    return self;
}

void exportfmt_destroy(exportfmt_t **self_p)
{
    assert(self_p);
    if (!*self_p)
        return;
    free((*self_p)->data);
    free(*self_p);
    *self_p = NULL;
}

/* v in ISO-8601 form into out (at least 40 bytes) when it is a UTC timestamptz as PostgreSQL
 * writes it; otherwise v itself. */
static const char *iso_time(const char *v, char *out)
{
    size_t n = v ? strlen(v) : 0;
    if (n < 22 || n > 38 || v[10] != ' ' || strcmp(v + n - 3, "+00") != 0)
        return v;
    memcpy(out, v, n - 3);
    out[10] = 'T';
    out[n - 3] = 'Z';
    out[n - 2] = '\0';
    return out;
}

void exportfmt_row(exportfmt_t *self, const char *const *values)
{
    char times[8][40];
    const char *row[64];
    assert(self->ncols <= sizeof row / sizeof *row);
    int t = 0;
    for (size_t i = 0; i < self->ncols; i++) {
        row[i] = values[i];
        if (self->cols[i].type == EXPORTFMT_TIME) {
            assert(t < 8);
            row[i] = iso_time(values[i], times[t++]);
        }
    }
    values = row;
    if (self->format == EXPORT_CSV) {
        for (size_t i = 0; i < self->ncols; i++) {
            bool last = i + 1 == self->ncols;
            if (self->cols[i].type == EXPORTFMT_NUMBER)
                csv_number(put, self, values[i], last);
            else
                csv_text(put, self, values[i], last);
        }
        self->rows++;
        return;
    }
    put_str(self, self->rows ? ",\n{" : "\n{");
    for (size_t i = 0; i < self->ncols; i++) {
        if (i)
            put(self, ",", 1);
        put(self, "\"", 1);
        put_str(self, self->cols[i].name);
        put(self, "\":", 2);
        const char *v = values[i];
        if (!v)
            put(self, "null", 4);
        else if (self->cols[i].type == EXPORTFMT_NUMBER && csv_is_decimal(v))
            put_str(self, v);
        else
            put_json_string(self, v);
    }
    put(self, "}", 1);
    self->rows++;
}

void exportfmt_end(exportfmt_t *self)
{
    if (self->format == EXPORT_JSON)
        put_str(self, "\n]\n");
}

const char *exportfmt_data(const exportfmt_t *self, size_t *len)
{
    *len = self->len;
    return self->data ? self->data : "";
}

void exportfmt_drain(exportfmt_t *self)
{
    self->len = 0;
}

long long exportfmt_rows(const exportfmt_t *self)
{
    return self->rows;
}
