/* exportfmt: what a bill or detail export file holds and how it is written: the columns of each
 * kind, and rows rendered as CSV (RFC 4180, UTF-8, header row, formula cells neutralised:
 * common/csv.h) or JSON (an array, one object per line, numbers as JSON numbers, SQL NULL as
 * null) into a buffer the generator drains as chunks. Pure: no database, no I/O. */
#ifndef KOOISV_BILLING_EXPORTFMT_H
#define KOOISV_BILLING_EXPORTFMT_H
#include <stdbool.h>
#include <stddef.h>

typedef enum { EXPORT_BILL, EXPORT_DETAIL } export_kind_t;
typedef enum { EXPORT_CSV, EXPORT_JSON } export_format_t;
/* TEXT as it is; NUMBER a decimal (JSON number); TIME a timestamptz as PostgreSQL writes it in
 * a UTC session with DateStyle ISO ("2026-11-01 10:00:00[.ffffff]+00"), written as ISO-8601
 * ("2026-11-01T10:00:00[.ffffff]Z"): converting here is much cheaper than to_char. */
typedef enum { EXPORTFMT_TEXT, EXPORTFMT_NUMBER, EXPORTFMT_TIME } exportfmt_type_t;

typedef struct {
    const char *name;
    exportfmt_type_t type;
} exportfmt_col_t;

typedef struct exportfmt exportfmt_t;

/* "bill"/"detail" and "csv"/"json" into *out; false for anything else. */
bool exportfmt_kind_parse(const char *s, export_kind_t *out);
bool exportfmt_format_parse(const char *s, export_format_t *out);
const char *exportfmt_kind_name(export_kind_t kind);
const char *exportfmt_format_name(export_format_t format);
/* The columns of kind, in file order (*n of them); the generator's query returns them in this
 * order. Static. */
const exportfmt_col_t *exportfmt_columns(export_kind_t kind, size_t *n);

/* A writer of one file; its buffer starts with the header row (CSV) or "[" (JSON). Caller
 * destroys it. */
exportfmt_t *exportfmt_new(export_kind_t kind, export_format_t format);
void exportfmt_destroy(exportfmt_t **self_p);
/* Append one row: values[i] is column i's text (NULL = SQL NULL), as many as the kind has. */
void exportfmt_row(exportfmt_t *self, const char *const *values);
/* Append the end of the file (JSON: "]"). Call once, after the last row. */
void exportfmt_end(exportfmt_t *self);
/* The bytes written and not yet drained (*len of them); borrowed until the next call. */
const char *exportfmt_data(const exportfmt_t *self, size_t *len);
/* Forget the bytes written so far (they have been stored); the buffer is kept for reuse. */
void exportfmt_drain(exportfmt_t *self);
/* Rows appended so far. */
long long exportfmt_rows(const exportfmt_t *self);

#endif
