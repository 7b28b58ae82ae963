/* ctlenv: kooisvctl's settings (see ctlenv.h). */
#include "ctlenv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "xmalloc.h"

typedef struct {
    char *name;
    char *value;
} setting_t;

static setting_t *file_settings;
static size_t n_file_settings;

const char *ctlenv_get(const char *name)
{
    /* Later lines win, as when the file is sourced by a shell. */
    for (size_t i = n_file_settings; i > 0; i--)
        if (strcmp(file_settings[i - 1].name, name) == 0 && *file_settings[i - 1].value)
            return file_settings[i - 1].value;
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int ctlenv_load(const char *path)
{
    char *text = config_read_file(path, NULL);
    if (!text) {
        fprintf(stderr, "kooisvctl: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    int lineno = 0, rc = 0;
    for (char *line = text, *next; line && rc == 0; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *name, *value;
        int kind = config_env_line(line, &name, &value);
        if (kind < 0) {
            fprintf(stderr, "kooisvctl: %s line %d: not NAME=VALUE as a shell reads it\n", path,
                    lineno);
            rc = -1;
        }
        if (kind <= 0)
            continue;
        file_settings = xrealloc(file_settings, (n_file_settings + 1) * sizeof *file_settings);
        file_settings[n_file_settings].name = xstrdup(name);
        file_settings[n_file_settings].value = xstrdup(value);
        n_file_settings++;
    }
    xfree_secret(text, strlen(text));
    return rc;
}

char *ctlenv_secret_file(const char *path, const char *what)
{
    char *text = config_read_file(path, NULL);
    if (!text) {
        fprintf(stderr, "kooisvctl: cannot read %s (%s): %s\n", what, path, strerror(errno));
        return NULL;
    }
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    return text;
}

char *ctlenv_secret(const char *name)
{
    const char *v = ctlenv_get(name);
    if (v)
        return xstrdup(v);
    char *file_var = xasprintf("%s_FILE", name);
    const char *path = ctlenv_get(file_var);
    char *value = path ? ctlenv_secret_file(path, file_var) : NULL;
    free(file_var);
    return value;
}
