/* csv: RFC 4180 fields for the CSV files operators open in spreadsheets (audit and billing
 * exports). A field is quoted when it holds a comma, a double quote, CR or LF (quotes doubled).
 * A text field that begins with '=', '+', '-', '@', TAB or CR would be run as a formula by a
 * spreadsheet (CSV injection): it is neutralised by writing it quoted with a leading apostrophe
 * ("'=1+1"), which spreadsheets show as text and never evaluate; the apostrophe is visible to a
 * program reading the file, which is the price of safety. Number fields that are plain decimals
 * ("-12.5000") are written as they are: a spreadsheet reads them as numbers, not formulas. */
#ifndef KOOISV_CSV_H
#define KOOISV_CSV_H
#include <stdbool.h>
#include <stddef.h>

/* Where fields go: append len bytes of data to sink. */
typedef void (*csv_write_fn)(void *sink, const char *data, size_t len);

/* True when a text field s would be neutralised (it begins like a formula). */
bool csv_is_formula(const char *s);
/* True when s is a plain decimal: -?[0-9]+(.[0-9]+)? */
bool csv_is_decimal(const char *s);
/* Write text field s (NULL = empty), quoted and neutralised as needed, then "," or, when last,
 * CRLF. */
void csv_text(csv_write_fn write, void *sink, const char *s, bool last);
/* Write number field s: as it is when it is a plain decimal (or empty/NULL), else as csv_text. */
void csv_number(csv_write_fn write, void *sink, const char *s, bool last);

#endif
