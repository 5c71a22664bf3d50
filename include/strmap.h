/*
 * strmap: a string-keyed hash map of pointers.
 *
 * Not thread safe: every owner guards its map with its own lock.  Keys are
 * copied; values belong to the caller.
 */
#ifndef KLIPYFS_STRMAP_H
#define KLIPYFS_STRMAP_H

#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void);

/* Free the map; @free_value (may be NULL) is called on every value. */
void strmap_free(struct strmap *m, void (*free_value)(void *));

void *strmap_get(const struct strmap *m, const char *key);

/* Set @key to @value; the previous value, if any, is returned in *old. */
int strmap_put(struct strmap *m, const char *key, void *value, void **old);

/* Remove @key and return its value (NULL if absent). */
void *strmap_del(struct strmap *m, const char *key);

size_t strmap_count(const struct strmap *m);

/*
 * Call @fn for every entry, in no particular order; @fn must not change the
 * map.  A non-zero return stops the walk and is returned.
 */
int strmap_foreach(const struct strmap *m,
		   int (*fn)(void *arg, const char *key, void *value),
		   void *arg);

#endif
