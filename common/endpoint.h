/* endpoint: ZeroMQ endpoint lists. "tcp://host:port" entries separated by commas (or blanks); a
 * host name is expanded to every address it resolves to, one connection per replica, so a
 * scaled service is reached on all its replicas. ipc:// and inproc:// entries are kept as they
 * are. */
#ifndef KOOISV_ENDPOINT_H
#define KOOISV_ENDPOINT_H

/* Expand endpoints into one endpoint per resolved address, without duplicates. Caller owns the
 * array and its strings (endpoint_list_free). Returns the count, or -1 (*out NULL) if an entry
 * is malformed or a name does not resolve (logged). */
int endpoint_resolve(const char *endpoints, char ***out);
/* Free n entries of what endpoint_resolve returned, and the array. */
void endpoint_list_free(char **list, int n);

#endif
