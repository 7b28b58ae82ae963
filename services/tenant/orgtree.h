/* orgtree: an org list as a forest: parent links by code, cycle detection, and the nested JSON
 * operators read. Used to vet an allOrgSync list before it replaces a tree and to render
 * tenant.tree. Orgs whose parent is missing (children that arrived first) are roots, flagged. */
#ifndef KOOISV_ORGTREE_H
#define KOOISV_ORGTREE_H
#include <jansson.h>
#include <stddef.h>

typedef struct {
    const char *code;
    const char *name;
    const char *parent; /* "" = top level */
} orgtree_node_t;

typedef struct orgtree orgtree_t;

/* A forest over nodes (borrowed: the strings must outlive it; the array is copied and sorted
 * by code in byte order). */
orgtree_t *orgtree_new(const orgtree_node_t *nodes, size_t n);
/* Free and set *self_p to NULL. */
void orgtree_destroy(orgtree_t **self_p);
/* Nodes, sorted by code. */
const orgtree_node_t *orgtree_nodes(const orgtree_t *self, size_t *n);
/* Code appearing twice, or NULL. */
const char *orgtree_duplicate(const orgtree_t *self);
/* Code of an org on a parent cycle, or NULL when the forest is acyclic. */
const char *orgtree_cycle(const orgtree_t *self);
/* [{orgCode, orgName, parentCode, children:[...]}...] roots first by code; a root whose parent
 * is missing carries "orphan": true, an org on a cycle (moves stored in any order may leave
 * one) "cycle": true, as a root. Caller owns the result. */
json_t *orgtree_json(const orgtree_t *self);

#endif
