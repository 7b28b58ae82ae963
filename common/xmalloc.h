/* xmalloc: the one allocation wrapper. Out of memory is not recoverable here: log and abort. */
#ifndef KOOISV_XMALLOC_H
#define KOOISV_XMALLOC_H
#include <stddef.h>

/* Allocate size bytes; never returns NULL. Caller owns the memory. */
void *xmalloc(size_t size);
/* Allocate n zeroed elements; never returns NULL. Caller owns the memory. */
void *xcalloc(size_t n, size_t size);
/* Resize ptr; never returns NULL. */
void *xrealloc(void *ptr, size_t size);
/* Copy s (NULL gives NULL). Caller owns the copy. */
char *xstrdup(const char *s);
/* Copy at most n bytes of s and terminate. Caller owns the copy. */
char *xstrndup(const char *s, size_t n);
/* printf into a new string. Caller owns the result. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Overwrite len bytes with zeros in a way the compiler keeps, then free (for secrets). */
void xfree_secret(void *ptr, size_t len);

#endif
