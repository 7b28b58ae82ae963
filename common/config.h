/* config: settings from environment variables. A variable marked CONFIG_SECRET may instead be
 * given as NAME_FILE (path to a file holding the value, trailing newline stripped); its value is
 * never printed. Every binary declares its table once; --help prints it. */
#ifndef KOOISV_CONFIG_H
#define KOOISV_CONFIG_H
#include <stdbool.h>
#include <stddef.h>

enum {
    CONFIG_REQUIRED = 1u << 0, /* no default: refuse to start without it */
    CONFIG_SECRET = 1u << 1,   /* accepts NAME_FILE; never printed; strength-checked if KEY */
    CONFIG_KEY = 1u << 2,      /* a signing/encryption key: must pass config_key_is_strong() */
};

typedef struct {
    const char *name;    /* environment variable, e.g. "KOOISV_GATEWAY_LISTEN" */
    const char *def;     /* default value, or NULL for none */
    unsigned flags;      /* CONFIG_* bits */
    const char *help;    /* one line for --help */
} config_var_t;

/* Parse argv (--help/-h prints usage and the table, exits 0; --version exits 0; anything else
 * prints a one-line error and exits 2), then load every variable. On a missing required value or
 * a weak key, print one line "prog: NAME: reason" to stderr and exit 2. Returns only on success. */
void config_load(const char *prog, const char *summary, const config_var_t *vars, size_t n,
                 int argc, char **argv);
/* Refuse to start: one line "prog: <what>" on stderr (prog as given to config_load), exit 2. */
void config_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Value of a loaded variable ("" when unset without default). The table must list name. */
const char *config_get(const char *name);
/* Value parsed as a long within [min, max]; exits 2 with a one-line reason otherwise. */
long config_get_long(const char *name, long min, long max);
/* True for "1", "true", "yes", "on" (case-insensitive). */
bool config_get_bool(const char *name);
/* Read a whole file (secrets, keys, certificates). Caller owns the result; NULL + errno on error. */
char *config_read_file(const char *path, size_t *len_out);
/* Parse one line of an env file that a shell may also source ("[export ]NAME=VALUE", VALUE bare,
 * 'single-quoted' or "double-quoted" with \-escapes, segments concatenated as the shell does).
 * Modifies line in place; on success *name and *value point into it and 1 is returned. 0 for a
 * blank or comment line, -1 for a malformed one (no '=', empty name, unterminated quote, or an
 * unquoted space: the shell would split it). */
int config_env_line(char *line, char **name, char **value);
/* True when value is acceptable as a key: >= 16 bytes, >= 2 character classes, not a known
 * placeholder. On false, why says which rule failed. */
bool config_key_is_strong(const char *value, const char **why);
/* True when password is acceptable per spec §8: >= 8 chars, >= 2 classes, not equal to account. */
bool config_password_is_strong(const char *password, const char *account, const char **why);

#endif
