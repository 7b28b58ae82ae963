#include "orgtree.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

struct orgtree {
    orgtree_node_t *nodes;
    size_t n;
    long *parent; /* index of the parent node, -1 when "" or not in the list */
    bool *in_cycle;
    const char *duplicate;
    const char *cycle;
};

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const orgtree_node_t *)a)->code, ((const orgtree_node_t *)b)->code);
}

static long find(const orgtree_t *self, const char *code)
{
    if (!*code)
        return -1;
    orgtree_node_t key = {.code = code};
    const orgtree_node_t *hit = bsearch(&key, self->nodes, self->n, sizeof key, node_cmp);
    return hit ? (long)(hit - self->nodes) : -1;
}

/* Walk parent links from every node once (colouring: new, on the current path, done): a walk
 * that meets its own path has found a cycle. Linear in the number of nodes. */
static void mark_cycles(orgtree_t *self)
{
    unsigned char *state = xcalloc(self->n ? self->n : 1, 1);
    long *path = xmalloc((self->n ? self->n : 1) * sizeof *path);
    for (size_t i = 0; i < self->n; i++) {
        if (state[i])
            continue;
        size_t len = 0;
        long j = (long)i;
        while (j >= 0 && state[j] == 0) {
            state[j] = 1;
            path[len++] = j;
            j = self->parent[j];
        }
        if (j >= 0 && state[j] == 1) {
            /* j is on the current path: everything from j onwards is the cycle */
            if (!self->cycle)
                self->cycle = self->nodes[j].code;
            bool on = false;
            for (size_t k = 0; k < len; k++) {
                if (path[k] == j)
                    on = true;
                if (on)
                    self->in_cycle[path[k]] = true;
            }
        }
        for (size_t k = 0; k < len; k++)
            state[path[k]] = 2;
    }
    free(path);
    free(state);
}

orgtree_t *orgtree_new(const orgtree_node_t *nodes, size_t n)
{
    orgtree_t *self = xcalloc(1, sizeof *self);
    self->n = n;
    self->nodes = xmalloc((n ? n : 1) * sizeof *self->nodes);
    if (n)
        memcpy(self->nodes, nodes, n * sizeof *nodes);
    qsort(self->nodes, n, sizeof *self->nodes, node_cmp);
    for (size_t i = 1; i < n && !self->duplicate; i++)
        if (strcmp(self->nodes[i - 1].code, self->nodes[i].code) == 0)
            self->duplicate = self->nodes[i].code;
    self->parent = xmalloc((n ? n : 1) * sizeof *self->parent);
    self->in_cycle = xcalloc(n ? n : 1, sizeof *self->in_cycle);
    for (size_t i = 0; i < n; i++)
        self->parent[i] = find(self, self->nodes[i].parent);
    mark_cycles(self);
    return self;
}

void orgtree_destroy(orgtree_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    orgtree_t *self = *self_p;
    free(self->nodes);
    free(self->parent);
    free(self->in_cycle);
    free(self);
    *self_p = NULL;
}

const orgtree_node_t *orgtree_nodes(const orgtree_t *self, size_t *n)
{
    *n = self->n;
    return self->nodes;
}

const char *orgtree_duplicate(const orgtree_t *self)
{
    return self->duplicate;
}

const char *orgtree_cycle(const orgtree_t *self)
{
    return self->cycle;
}

json_t *orgtree_json(const orgtree_t *self)
{
    /* Built without recursion: a 10000-deep chain must not exhaust a worker's stack. Nodes are
     * visited in code order, so every children array ends up sorted by code. */
    json_t **obj = xmalloc((self->n ? self->n : 1) * sizeof *obj);
    for (size_t i = 0; i < self->n; i++) {
        const orgtree_node_t *o = &self->nodes[i];
        obj[i] = json_pack("{s:s,s:s,s:s,s:[]}", "orgCode", o->code, "orgName", o->name,
                           "parentCode", o->parent, "children");
    }
    json_t *roots = json_array();
    for (size_t i = 0; i < self->n; i++) {
        long p = self->parent[i];
        if (self->in_cycle[i]) {
            json_object_set_new(obj[i], "cycle", json_true());
            json_array_append(roots, obj[i]);
        } else if (p >= 0) {
            json_array_append(json_object_get(obj[p], "children"), obj[i]);
        } else {
            if (*self->nodes[i].parent)
                json_object_set_new(obj[i], "orphan", json_true());
            json_array_append(roots, obj[i]);
        }
    }
    for (size_t i = 0; i < self->n; i++)
        json_decref(obj[i]);
    free(obj);
    return roots;
}
