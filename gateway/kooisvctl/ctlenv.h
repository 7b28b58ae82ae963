/* ctlenv: kooisvctl's settings: the process environment, or an env file (--env-file PATH,
 * KEY=VALUE lines as a shell reads them, e.g. the local runner's .state/kooisv.env) whose values
 * win over the environment. */
#ifndef KOOISV_CTLENV_H
#define KOOISV_CTLENV_H

/* Load the env file at path; 0, or -1 with the reason on stderr. */
int ctlenv_load(const char *path);
/* The non-empty value of name (env file first, then the environment), or NULL. Borrowed. */
const char *ctlenv_get(const char *name);
/* A secret: name's value, else the content of the file name_FILE names (trailing newlines
 * dropped). Caller frees with xfree_secret; NULL when neither is set or the file cannot be read
 * (then the reason is on stderr). */
char *ctlenv_secret(const char *name);
/* Content of the secret file at path, trailing newlines dropped; NULL with the reason on
 * stderr. Caller frees with xfree_secret. */
char *ctlenv_secret_file(const char *path, const char *what);

#endif
