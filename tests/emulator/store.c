/*
 * store: organizations, API keys and records of the emulator.
 *
 * Records are cJSON objects kept in creation order per collection, with a
 * hash index by id and one by unique key. Deleted records stay in the order
 * array as tombstones so that cursors (positions in that array) never move.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emu.h"

struct store store = {
	.lock = PTHREAD_RWLOCK_INITIALIZER,
};

uint64_t emu_hash(const char *s, uint64_t seed)
{
	uint64_t h = 1469598103934665603ULL ^ seed;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t rng_below(uint64_t *state, uint64_t n)
{
	return n ? rng_next(state) % n : 0;
}

void htab_init(struct htab *h)
{
	h->nb = 64;
	h->n = 0;
	h->b = calloc(h->nb, sizeof(*h->b));
	if (!h->b)
		abort();
}

void htab_free(struct htab *h)
{
	for (size_t i = 0; i < h->nb; i++) {
		struct htab_ent *e = h->b[i];

		while (e) {
			struct htab_ent *next = e->next;

			free(e->key);
			free(e);
			e = next;
		}
	}
	free(h->b);
	h->b = NULL;
	h->nb = h->n = 0;
}

static void htab_grow(struct htab *h)
{
	size_t nb = h->nb * 2;
	struct htab_ent **b = calloc(nb, sizeof(*b));

	if (!b)
		abort();
	for (size_t i = 0; i < h->nb; i++) {
		struct htab_ent *e = h->b[i];

		while (e) {
			struct htab_ent *next = e->next;
			size_t j = emu_hash(e->key, 0) & (nb - 1);

			e->next = b[j];
			b[j] = e;
			e = next;
		}
	}
	free(h->b);
	h->b = b;
	h->nb = nb;
}

void *htab_get(const struct htab *h, const char *key)
{
	struct htab_ent *e = h->b[emu_hash(key, 0) & (h->nb - 1)];

	for (; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->val;
	return NULL;
}

void htab_put(struct htab *h, const char *key, void *val)
{
	size_t i = emu_hash(key, 0) & (h->nb - 1);
	struct htab_ent *e;

	for (e = h->b[i]; e; e = e->next) {
		if (strcmp(e->key, key) == 0) {
			e->val = val;
			return;
		}
	}
	e = malloc(sizeof(*e));
	if (!e || !(e->key = strdup(key)))
		abort();
	e->val = val;
	e->next = h->b[i];
	h->b[i] = e;
	if (++h->n > h->nb)
		htab_grow(h);
}

void htab_del(struct htab *h, const char *key)
{
	struct htab_ent **p = &h->b[emu_hash(key, 0) & (h->nb - 1)];

	for (; *p; p = &(*p)->next) {
		struct htab_ent *e = *p;

		if (strcmp(e->key, key) == 0) {
			*p = e->next;
			free(e->key);
			free(e);
			h->n--;
			return;
		}
	}
}

int64_t emu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t emu_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void emu_iso(int64_t ms, char buf[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

void emu_iso_seconds(int64_t ms, char buf[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int emu_parse_iso(const char *s, int64_t *ms)
{
	struct tm tm = { 0 };
	int n = 0, frac = 0, digits = 0;
	const char *p;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return -1;
	p = s + n;
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p); p++, digits++)
			if (digits < 3)
				frac = frac * 10 + (*p - '0');
		while (digits > 0 && digits < 3)
			frac *= 10, digits++;
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*ms = (int64_t)timegm(&tm) * 1000 + frac;
	return 0;
}

int64_t store_stamp(void)
{
	int64_t now = emu_now_ms();

	if (now <= store.last_stamp)
		now = store.last_stamp + 1;
	store.last_stamp = now;
	return now;
}

char *store_norm_key(const char *s)
{
	size_t len;
	char *out;

	while (isspace((unsigned char)*s))
		s++;
	len = strlen(s);
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	out = strndup(s, len);
	if (!out)
		abort();
	for (char *p = out; *p; p++)
		*p = tolower((unsigned char)*p);
	return out;
}

static void coll_init(struct coll *c, enum coll_kind kind)
{
	c->kind = kind;
	c->v = NULL;
	c->n = c->cap = 0;
	htab_init(&c->by_id);
	htab_init(&c->by_key);
}

struct org *store_org_add(const char *id, const char *name, uint64_t seed)
{
	struct org *o = calloc(1, sizeof(*o));

	if (!o || !(o->id = strdup(id)) || !(o->name = strdup(name)))
		abort();
	o->rng = seed ^ emu_hash(id, 0x6b6c697079ULL);
	for (int k = 0; k < COLL_COUNT; k++)
		coll_init(&o->c[k], k);
	o->next = store.orgs;
	store.orgs = o;
	return o;
}

struct org *store_org_find(const char *id)
{
	for (struct org *o = store.orgs; o; o = o->next)
		if (strcmp(o->id, id) == 0)
			return o;
	return NULL;
}

void store_new_id(struct org *o, enum coll_kind kind, char buf[32])
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	static const char *const prefix[] = { "", "cmp_", "int_" };
	static const int len[] = { 8, 6, 8 };

	do {
		size_t p = strlen(prefix[kind]);

		memcpy(buf, prefix[kind], p);
		for (int i = 0; i < len[kind]; i++)
			buf[p + i] = alnum[rng_below(&o->rng, 36)];
		buf[p + len[kind]] = '\0';
	} while (htab_get(&o->c[kind].by_id, buf));
}

void store_refresh(enum coll_kind kind, struct rec *r)
{
	const cJSON *v;

	if (kind == COLL_PEOPLE) {
		v = cJSON_GetObjectItemCaseSensitive(r->json, "companyId");
		r->company = cJSON_IsString(v) ? v->valuestring : NULL;
	} else if (kind == COLL_INTERACTIONS) {
		r->companies = cJSON_GetObjectItemCaseSensitive(r->json,
								"companies");
		r->contacts = cJSON_GetObjectItemCaseSensitive(r->json,
							       "contacts");
	}
}

struct rec *store_append(struct org *o, enum coll_kind kind, const char *id,
			 int64_t ctime, cJSON *json, const char *key)
{
	struct coll *c = &o->c[kind];
	struct rec *r = calloc(1, sizeof(*r));

	if (!r)
		abort();
	snprintf(r->id, sizeof(r->id), "%s", id);
	r->ctime = ctime;
	r->json = json;
	store_refresh(kind, r);
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		if (!c->v)
			abort();
	}
	c->v[c->n++] = r;
	htab_put(&c->by_id, r->id, r);
	if (key && *key) {
		char *k = kind == COLL_INTERACTIONS ? strdup(key)
						    : store_norm_key(key);

		htab_put(&c->by_key, k, r);
		free(k);
	}
	if (ctime > store.last_stamp)
		store.last_stamp = ctime;
	return r;
}

struct rec *store_find(struct org *o, enum coll_kind kind, const char *id)
{
	struct rec *r = htab_get(&o->c[kind].by_id, id);

	return r && !r->deleted ? r : NULL;
}

void store_delete(struct org *o, enum coll_kind kind, struct rec *r,
		  const char *key)
{
	struct coll *c = &o->c[kind];

	if (key && *key) {
		char *k = store_norm_key(key);

		if (htab_get(&c->by_key, k) == r)
			htab_del(&c->by_key, k);
		free(k);
	}
	htab_del(&c->by_id, r->id);
	r->deleted = true;
	cJSON_Delete(r->json);
	r->json = NULL;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct rec *x = *(struct rec *const *)a;
	const struct rec *y = *(struct rec *const *)b;

	if (x->ctime != y->ctime)
		return x->ctime < y->ctime ? -1 : 1;
	return strcmp(x->id, y->id);
}

void store_sort(struct org *o)
{
	for (int k = 0; k < COLL_COUNT; k++) {
		struct coll *c = &o->c[k];

		if (c->n > 1)
			qsort(c->v, c->n, sizeof(*c->v), rec_cmp);
	}
}

static const struct {
	const char *name;
	unsigned bit;
} scope_names[] = {
	{ "ALL", SCOPE_ALL },
	{ "people:read", SCOPE_PEOPLE_READ },
	{ "people:write", SCOPE_PEOPLE_WRITE },
	{ "companies:read", SCOPE_COMPANIES_READ },
	{ "companies:write", SCOPE_COMPANIES_WRITE },
	{ "companies:remove", SCOPE_COMPANIES_REMOVE },
	{ "interactions:read", SCOPE_INTERACTIONS_READ },
	{ "interactions:write", SCOPE_INTERACTIONS_WRITE },
};

static int scope_parse(const char *s, unsigned *bit)
{
	for (size_t i = 0; i < sizeof(scope_names) / sizeof(*scope_names); i++) {
		if (strcmp(scope_names[i].name, s) == 0) {
			*bit = scope_names[i].bit;
			return 0;
		}
	}
	return -1;
}

const char *scope_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof(scope_names) / sizeof(*scope_names); i++)
		if (scope_names[i].bit == bit)
			return scope_names[i].name;
	return "ALL";
}

static struct key *key_add(const char *k, unsigned scopes, struct org *o)
{
	struct key *key = calloc(1, sizeof(*key));

	if (!key || !(key->key = strdup(k)))
		abort();
	key->scopes = scopes;
	key->org = o;
	if (!store.default_org)
		store.default_org = o;
	key->next = store.keys;
	store.keys = key;
	return key;
}

void store_default_key(void)
{
	struct org *o = store_org_find("org_demo");

	if (!o)
		o = store_org_add("org_demo", "Demo Organization", 0);
	key_add("klipy_api_demo", SCOPE_ALL, o);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	do {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 131072;
			buf = realloc(buf, cap + 1);
			if (!buf)
				abort();
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

cJSON *store_read_json(const char *path)
{
	char *text = read_file(path);
	cJSON *j;

	if (!text) {
		fprintf(stderr, "klipy-emulator: cannot read '%s': %s\n", path,
			strerror(errno));
		return NULL;
	}
	j = cJSON_Parse(text);
	free(text);
	if (!j)
		fprintf(stderr, "klipy-emulator: '%s' is not valid JSON\n",
			path);
	return j;
}

static int key_from_json(const cJSON *e, const char *path)
{
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, "key");
	const cJSON *sc = cJSON_GetObjectItemCaseSensitive(e, "scopes");
	const cJSON *org = cJSON_GetObjectItemCaseSensitive(e, "org");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "orgName");
	const char *org_id = cJSON_IsString(org) ? org->valuestring : "org_demo";
	unsigned scopes = 0;
	const cJSON *s;
	struct org *o;
	struct key *key;

	if (!cJSON_IsString(k) || !*k->valuestring) {
		fprintf(stderr, "klipy-emulator: '%s': a key needs \"key\"\n",
			path);
		return -1;
	}
	if (sc && !cJSON_IsArray(sc)) {
		fprintf(stderr, "klipy-emulator: '%s': scopes must be an array\n",
			path);
		return -1;
	}
	cJSON_ArrayForEach(s, sc) {
		unsigned bit;

		if (!cJSON_IsString(s) || scope_parse(s->valuestring, &bit)) {
			fprintf(stderr, "klipy-emulator: '%s': unknown scope\n",
				path);
			return -1;
		}
		scopes |= bit;
	}
	if (!sc)
		scopes = SCOPE_ALL;
	o = store_org_find(org_id);
	if (!o) {
		const char *n = cJSON_IsString(name) ? name->valuestring
			: strcmp(org_id, "org_demo") == 0 ? "Demo Organization"
			: org_id;

		o = store_org_add(org_id, n, 0);
	}
	key = key_add(k->valuestring, scopes, o);
	key->expired = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e,
								     "expired"));
	key->revoked = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e,
								     "revoked"));
	return 0;
}

int store_load_keys(const char *path)
{
	cJSON *doc = store_read_json(path);
	const cJSON *e;
	int ret = -1;

	if (!doc)
		return -1;
	if (!cJSON_IsArray(doc) || cJSON_GetArraySize(doc) == 0) {
		fprintf(stderr, "klipy-emulator: '%s' must be a non-empty array\n",
			path);
		goto out;
	}
	cJSON_ArrayForEach(e, doc) {
		if (!cJSON_IsObject(e) || key_from_json(e, path))
			goto out;
	}
	ret = 0;
out:
	cJSON_Delete(doc);
	return ret;
}

struct key *store_key_find(const char *k)
{
	for (struct key *key = store.keys; key; key = key->next)
		if (strcmp(key->key, k) == 0)
			return key;
	return NULL;
}

static void coll_free(struct coll *c)
{
	for (size_t i = 0; i < c->n; i++) {
		cJSON_Delete(c->v[i]->json);
		free(c->v[i]);
	}
	free(c->v);
	htab_free(&c->by_id);
	htab_free(&c->by_key);
}

void store_free(void)
{
	while (store.orgs) {
		struct org *o = store.orgs;

		store.orgs = o->next;
		for (int k = 0; k < COLL_COUNT; k++)
			coll_free(&o->c[k]);
		free(o->id);
		free(o->name);
		free(o);
	}
	while (store.keys) {
		struct key *k = store.keys;

		store.keys = k->next;
		free(k->key);
		free(k);
	}
}

const char *coll_name(enum coll_kind kind)
{
	static const char *const names[] = { "people", "companies",
					     "interactions" };

	return names[kind];
}

int coll_from_name(const char *name)
{
	for (int k = 0; k < COLL_COUNT; k++)
		if (strcmp(coll_name(k), name) == 0)
			return k;
	return -1;
}
