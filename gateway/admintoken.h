/* admintoken: the operators' bearer tokens of the admin API. The tokens file
 * (KOOISV_ADMIN_TOKENS_FILE) holds lines "name role sha256hex-of-token" ('#' starts a comment);
 * roles rank auditor < operator < admin; meter (the seller application reporting usage) is
 * outside that rank: it may call the usage intake and nothing else (adminroute_permits). Only the hashes are kept; a presented token is matched
 * by its SHA-256 in constant time. The file is re-read when it changes (checked at most once a
 * second); a broken new file keeps the tokens in force. One store per admin thread: not
 * thread-safe. */
#ifndef KOOISV_ADMINTOKEN_H
#define KOOISV_ADMINTOKEN_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    ROLE_NONE = 0,
    ROLE_AUDITOR,
    ROLE_OPERATOR,
    ROLE_ADMIN,
    ROLE_METER, /* not above admin: outside the rank */
} admintoken_role_t;

typedef struct {
    char name[65];
    admintoken_role_t role;
    uint8_t hash[32];
} admintoken_t;

typedef struct admintoken_store admintoken_store_t;

/* A store loaded from the tokens file at path. NULL (the problem logged, with the line) when the
 * file cannot be read or a line is malformed. Caller owns it. */
admintoken_store_t *admintoken_store_new(const char *path);
/* Destroy and set *self_p to NULL. */
void admintoken_store_destroy(admintoken_store_t **self_p);
/* Pick up a rotated tokens file (logged). Fails closed: a file that is gone, unreadable or no
 * longer parses leaves no token valid (logged as an error) until a good file is back. */
void admintoken_store_refresh(admintoken_store_t *self);
/* The token presented in an Authorization header value (NULL: none), or NULL with the reason
 * in *why. The result lives until the next refresh. */
const admintoken_t *admintoken_store_find(const admintoken_store_t *self, const char *authorization,
                                          const char **why);
/* The token itself (no "Bearer "), as find. */
const admintoken_t *admintoken_store_find_token(const admintoken_store_t *self, const char *token,
                                                const char **why);
/* The token in force whose SHA-256 is hash, or NULL (a browser session's token was removed). */
const admintoken_t *admintoken_store_find_hash(const admintoken_store_t *self,
                                               const uint8_t hash[32]);
/* Tokens in force. */
size_t admintoken_store_count(const admintoken_store_t *self);
/* Name of a role ("auditor"...; "none"). */
const char *admintoken_role_name(admintoken_role_t role);

#endif
