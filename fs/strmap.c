/* strmap: see include/strmap.h */
#include "strmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *next;
	uint64_t hash;
	void *value;
	char key[];
};

struct strmap {
	struct entry **buckets;
	size_t nbuckets;
	size_t count;
};

/* FNV-1a: short keys, no adversary. */
static uint64_t hash_key(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct strmap *strmap_new(void)
{
	struct strmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->nbuckets = 64;
	m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
	if (!m->buckets) {
		free(m);
		return NULL;
	}
	return m;
}

void strmap_free(struct strmap *m, void (*free_value)(void *))
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->nbuckets; i++) {
		struct entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			if (free_value)
				free_value(e->value);
			free(e);
		}
	}
	free(m->buckets);
	free(m);
}

static struct entry **find_slot(const struct strmap *m, const char *key,
				uint64_t h)
{
	struct entry **slot = &m->buckets[h % m->nbuckets];

	for (; *slot; slot = &(*slot)->next)
		if ((*slot)->hash == h && !strcmp((*slot)->key, key))
			break;
	return slot;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	struct entry *e = *find_slot(m, key, hash_key(key));

	return e ? e->value : NULL;
}

static void grow(struct strmap *m)
{
	size_t n = m->nbuckets * 4, i;
	struct entry **b = calloc(n, sizeof(*b));

	if (!b)
		return;		/* still correct, only slower */
	for (i = 0; i < m->nbuckets; i++) {
		struct entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash % n];
			b[e->hash % n] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

int strmap_put(struct strmap *m, const char *key, void *value, void **old)
{
	uint64_t h = hash_key(key);
	struct entry **slot = find_slot(m, key, h);
	size_t klen;

	if (old)
		*old = NULL;
	if (*slot) {
		if (old)
			*old = (*slot)->value;
		(*slot)->value = value;
		return 0;
	}
	klen = strlen(key) + 1;
	*slot = malloc(sizeof(**slot) + klen);
	if (!*slot)
		return -ENOMEM;
	(*slot)->next = NULL;
	(*slot)->hash = h;
	(*slot)->value = value;
	memcpy((*slot)->key, key, klen);
	if (++m->count > m->nbuckets * 2)
		grow(m);
	return 0;
}

void *strmap_del(struct strmap *m, const char *key)
{
	struct entry **slot = find_slot(m, key, hash_key(key));
	struct entry *e = *slot;
	void *value;

	if (!e)
		return NULL;
	*slot = e->next;
	value = e->value;
	free(e);
	m->count--;
	return value;
}

size_t strmap_count(const struct strmap *m)
{
	return m->count;
}

int strmap_foreach(const struct strmap *m,
		   int (*fn)(void *arg, const char *key, void *value),
		   void *arg)
{
	size_t i;
	int ret;

	for (i = 0; i < m->nbuckets; i++) {
		struct entry *e;

		for (e = m->buckets[i]; e; e = e->next) {
			ret = fn(arg, e->key, e->value);
			if (ret)
				return ret;
		}
	}
	return 0;
}
