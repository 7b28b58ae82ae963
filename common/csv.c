#include "csv.h"

#include <string.h>

bool csv_is_formula(const char *s)
{
    return s && s[0] && strchr("=+-@\t\r", s[0]) != NULL;
}

bool csv_is_decimal(const char *s)
{
    if (!s)
        return false;
    if (*s == '-')
        s++;
    size_t whole = strspn(s, "0123456789");
    if (whole == 0)
        return false;
    s += whole;
    if (*s == '.') {
        size_t frac = strspn(s + 1, "0123456789");
        if (frac == 0)
            return false;
        s += 1 + frac;
    }
    return *s == '\0';
}

void csv_text(csv_write_fn write, void *sink, const char *s, bool last)
{
    s = s ? s : "";
    bool formula = csv_is_formula(s);
    if (formula || strpbrk(s, ",\"\r\n")) {
        write(sink, formula ? "\"'" : "\"", formula ? 2 : 1);
        /* Runs between quotes at once, each quote doubled. */
        for (const char *p = s;;) {
            const char *q = strchr(p, '"');
            if (!q) {
                write(sink, p, strlen(p));
                break;
            }
            write(sink, p, (size_t)(q - p) + 1);
            write(sink, "\"", 1);
            p = q + 1;
        }
        write(sink, "\"", 1);
    } else {
        write(sink, s, strlen(s));
    }
    write(sink, last ? "\r\n" : ",", last ? 2 : 1);
}

void csv_number(csv_write_fn write, void *sink, const char *s, bool last)
{
    if (!s || !*s || csv_is_decimal(s)) {
        if (s)
            write(sink, s, strlen(s));
        write(sink, last ? "\r\n" : ",", last ? 2 : 1);
        return;
    }
    csv_text(write, sink, s, last);
}
