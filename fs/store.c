/* store: see include/store.h */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "record.h"
#include "strmap.h"

struct store {
	struct api *api;
	struct cache *cache;
	struct store_config cfg;

	pthread_mutex_t lock;		/* guards missing and versions */
	/* One first-page fetch per collection at a time: store_list_begin. */
	pthread_mutex_t begin_lock[COLL_COUNT];
	struct strmap *missing;		/* "coll/id" -> int64_t expiry (ms) */
	struct strmap *versions;	/* "coll/id" -> struct versions */
	bool scope_logged[COLL_COUNT];
	int64_t down_until;		/* ms: stale copies serve until then */

	uint64_t hits;
	uint64_t misses;
};

static const char *const coll_names[COLL_COUNT] = {
	[COLL_PEOPLE] = "people",
	[COLL_COMPANIES] = "companies",
	[COLL_INTERACTIONS] = "interactions",
};

const char *coll_name(enum coll c)
{
	return coll_names[c];
}

int coll_lookup(const char *name, size_t len)
{
	int c;

	for (c = 0; c < COLL_COUNT; c++)
		if (strlen(coll_names[c]) == len &&
		    !strncmp(coll_names[c], name, len))
			return c;
	return -1;
}

const char *coll_read_scope(enum coll c)
{
	static const char *const scopes[COLL_COUNT] = {
		[COLL_PEOPLE] = "people:read",
		[COLL_COMPANIES] = "companies:read",
		[COLL_INTERACTIONS] = "interactions:read",
	};

	return scopes[c];
}

int64_t store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool store_plausible_id(const char *id)
{
	size_t n = 0;

	for (; id[n]; n++) {
		char ch = id[n];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return false;
	}
	return n > 0 && n <= 128;
}

/*
 * The last few versions of one record handed out, oldest overwritten, and
 * the updatedTime of every version handed out (up to SEEN of them).
 */
#define VERSIONS 8
#define SEEN 256

struct versions {
	char *updated[VERSIONS];
	char *text[VERSIONS];
	size_t len[VERSIONS];
	unsigned next;
	cJSON *seen;		/* array of updatedTime strings, oldest first */
	cJSON *written;		/* fields this mount last wrote, by name */
};

static void versions_free(void *p)
{
	struct versions *v = p;
	unsigned i;

	for (i = 0; i < VERSIONS; i++) {
		free(v->updated[i]);
		free(v->text[i]);
	}
	cJSON_Delete(v->seen);
	cJSON_Delete(v->written);
	free(v);
}

int store_new(struct api *api, struct cache *cache,
	      const struct store_config *cfg, struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	int i;

	if (!s)
		return -ENOMEM;
	s->missing = strmap_new();
	s->versions = strmap_new();
	if (!s->missing || !s->versions) {
		strmap_free(s->missing, NULL);
		strmap_free(s->versions, NULL);
		free(s);
		return -ENOMEM;
	}
	s->api = api;
	s->cache = cache;
	s->cfg = *cfg;
	pthread_mutex_init(&s->lock, NULL);
	for (i = 0; i < COLL_COUNT; i++)
		pthread_mutex_init(&s->begin_lock[i], NULL);
	*out = s;
	return 0;
}

void store_free(struct store *s)
{
	int i;

	if (!s)
		return;
	strmap_free(s->missing, free);
	strmap_free(s->versions, versions_free);
	for (i = 0; i < COLL_COUNT; i++)
		pthread_mutex_destroy(&s->begin_lock[i]);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

struct api *store_api(struct store *s)
{
	return s->api;
}

struct cache *store_cache(struct store *s)
{
	return s->cache;
}

int64_t store_ttl_ms(struct store *s)
{
	return s->cfg.ttl_ms;
}

void store_counters(struct store *s, uint64_t *hits, uint64_t *misses)
{
	*hits = __atomic_load_n(&s->hits, __ATOMIC_RELAXED);
	*misses = __atomic_load_n(&s->misses, __ATOMIC_RELAXED);
}

static void count(uint64_t *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* A refusal for lack of scope is logged once per collection. */
static void note_refusal(struct store *s, enum coll c, int err,
			 const struct api_error *ae)
{
	if (err != -EACCES || s->scope_logged[c])
		return;
	s->scope_logged[c] = true;
	log_err("cannot read '%s/': %s %s (the API key needs the %s scope)",
		coll_name(c), ae->code[0] ? ae->code : "forbidden", ae->message,
		ae->detail[0] ? ae->detail : coll_read_scope(c));
}

/* Negative lookups */

static void record_key(char *key, size_t size, enum coll c, const char *id)
{
	snprintf(key, size, "%s/%s", coll_name(c), id);
}

static void remember_missing(struct store *s, enum coll c, const char *id)
{
	int64_t *expiry = malloc(sizeof(*expiry));
	char key[300];
	void *old = NULL;

	if (!expiry)
		return;
	*expiry = store_now_ms() + s->cfg.negative_ttl_ms;
	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	if (strmap_put(s->missing, key, expiry, &old))
		free(expiry);
	pthread_mutex_unlock(&s->lock);
	free(old);
}

static void forget_missing(struct store *s, enum coll c, const char *id)
{
	char key[300];

	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	free(strmap_del(s->missing, key));
	pthread_mutex_unlock(&s->lock);
}

/* True when the server said @id does not exist, within the negative TTL. */
static bool known_missing(struct store *s, enum coll c, const char *id)
{
	char key[300];
	int64_t *expiry;
	bool missing = false;

	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	expiry = strmap_get(s->missing, key);
	if (expiry && *expiry > store_now_ms())
		missing = true;
	else if (expiry)
		free(strmap_del(s->missing, key));
	pthread_mutex_unlock(&s->lock);
	return missing;
}

/* Records */

/* Turn a server record into its cached form; rec->text is malloc'd. */
static int encode_record(const cJSON *record, int64_t now,
			 struct cache_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->text = record_format(record, &rec->len);
	if (!rec->text)
		return -ENOMEM;
	rec->mtime = record_mtime(record);
	rec->fetched_ms = now;
	return 0;
}

/*
 * Known companies: ids seen in records, with an empty value, or "gone"
 * once the server said the company does not exist (a person may still
 * name a deleted company; it must not come back in companies/).
 */
#define COMPANY_GONE "gone"

static void know_company(struct store *s, const char *id)
{
	char *val;
	size_t len;

	if (!store_plausible_id(id))
		return;
	if (!cache_blob_get(s->cache, CACHE_COMPANIES, id, &val, &len)) {
		free(val);	/* known, or known to be gone */
		return;
	}
	cache_blob_put(s->cache, CACHE_COMPANIES, id, "", 0);
}

static void learn_companies(struct store *s, enum coll c, const cJSON *record)
{
	const cJSON *v;

	if (c == COLL_COMPANIES) {
		const char *id = record_id(record);

		if (id)	/* it exists, whatever was known before */
			cache_blob_put(s->cache, CACHE_COMPANIES, id, "", 0);
		return;
	}
	if (c == COLL_PEOPLE) {
		v = cJSON_GetObjectItemCaseSensitive(record, "companyId");
		if (cJSON_IsString(v))
			know_company(s, v->valuestring);
		return;
	}
	cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(record,
							       "companies")) {
		if (cJSON_IsString(v))
			know_company(s, v->valuestring);
	}
}

static int fetch_record(struct store *s, enum coll c, const char *id,
			struct cache_record *rec)
{
	struct api_result res = { 0 };
	int err;

	count(&s->misses);
	err = api_get(s->api, coll_name(c), id, &res);
	if (err == -ENOENT) {
		store_forget(s, c, id);
		remember_missing(s, c, id);
	} else if (err) {
		note_refusal(s, c, err, &res.err);
	} else if (!cJSON_IsObject(res.data)) {
		log_err("unexpected answer for '%s/%s.json': not a record",
			coll_name(c), id);
		err = -EIO;
	} else {
		err = encode_record(res.data, store_now_ms(), rec);
		if (!err)
			err = cache_record_put(s->cache, coll_name(c), id, rec);
		if (!err)
			learn_companies(s, c, res.data);
		if (err)
			cache_record_release(rec);
	}
	api_result_release(&res);
	return err;
}

int store_refresh(struct store *s, enum coll c, const char *id,
		  struct cache_record *rec)
{
	return fetch_record(s, c, id, rec);
}

/*
 * After a refresh failed for want of a server, stale copies answer for a
 * few seconds without asking again: a stat, an open and a read of one
 * file would otherwise each wait for the server.
 */
#define DOWN_HOLD_MS 5000

static void note_server_down(struct store *s)
{
	__atomic_store_n(&s->down_until, store_now_ms() + DOWN_HOLD_MS,
			 __ATOMIC_RELAXED);
}

static bool server_down(struct store *s)
{
	return store_now_ms() < __atomic_load_n(&s->down_until,
						 __ATOMIC_RELAXED);
}

static bool fresh(struct store *s, const struct cache_record *rec)
{
	return store_now_ms() - rec->fetched_ms < s->cfg.ttl_ms;
}

int store_get(struct store *s, enum coll c, const char *id, bool any_age,
	      bool want_text, struct cache_record *rec)
{
	struct cache_record cached = { 0 };
	bool have;
	int err;

	memset(rec, 0, sizeof(*rec));
	if (known_missing(s, c, id))
		return -ENOENT;
	have = !cache_record_get(s->cache, coll_name(c), id, &cached);
	if (have && (any_age || fresh(s, &cached) ||
		     (cached.flags & CACHE_REC_PENDING) || server_down(s))) {
		count(&s->hits);
		goto use_cached;
	}

	err = fetch_record(s, c, id, rec);
	if (err == -EAGAIN)
		note_server_down(s);
	if (err == -EAGAIN && have) {
		count(&s->hits);
		goto use_cached;
	}
	cache_record_release(&cached);
	/*
	 * Offline by choice, a name the cache does not know is free, so new
	 * files can be made; when the server is only out of reach, whether
	 * the record exists is unknown: EIO.
	 */
	if (err == -EAGAIN)
		return api_offline(s->api) ? -ENOENT : -EIO;
	if (!err && !want_text) {
		free(rec->text);
		rec->text = NULL;
	}
	return err;

use_cached:
	*rec = cached;
	if (!want_text) {
		free(rec->text);
		rec->text = NULL;
	}
	return 0;
}

/* Listing pages */

static void page_key(char *key, size_t size, enum coll c, unsigned index)
{
	snprintf(key, size, "%s/%06u", coll_name(c), index);
}

/* A cached page as a cJSON object {gen, next, ids}, or NULL. */
static cJSON *load_page(struct store *s, enum coll c, unsigned index)
{
	char key[64], *val = NULL;
	size_t len;
	cJSON *page;

	page_key(key, sizeof(key), c, index);
	if (cache_blob_get(s->cache, CACHE_PAGES, key, &val, &len))
		return NULL;
	page = cJSON_ParseWithLength(val, len);
	free(val);
	if (page && !cJSON_IsArray(cJSON_GetObjectItem(page, "ids"))) {
		cJSON_Delete(page);
		page = NULL;
	}
	return page;
}

static int save_page(struct store *s, enum coll c, unsigned index,
		     const cJSON *page)
{
	char key[64], *val;
	int err;

	val = cJSON_PrintUnformatted(page);
	if (!val)
		return -ENOMEM;
	page_key(key, sizeof(key), c, index);
	err = cache_blob_put(s->cache, CACHE_PAGES, key, val, strlen(val));
	free(val);
	return err;
}

static int64_t page_gen(const cJSON *page)
{
	const cJSON *gen = cJSON_GetObjectItem(page, "gen");

	return cJSON_IsNumber(gen) ? (int64_t)gen->valuedouble : -1;
}

static const char *page_next(const cJSON *page)
{
	const cJSON *next = cJSON_GetObjectItem(page, "next");

	return cJSON_IsString(next) ? next->valuestring : NULL;
}

/* Store the records of one query answer in one transaction. */
static int cache_page_records(struct store *s, enum coll c, const cJSON *list,
			      cJSON *ids)
{
	int n = cJSON_GetArraySize(list), i = 0, err = 0;
	struct cache_record *recs = calloc(n ? n : 1, sizeof(*recs));
	const char **keys = calloc(n ? n : 1, sizeof(*keys));
	int64_t now = store_now_ms();
	const cJSON *record;

	if (!recs || !keys) {
		err = -ENOMEM;
		goto out;
	}
	cJSON_ArrayForEach(record, list) {
		const char *id = record_id(record);

		if (!id || !store_plausible_id(id)) {
			log_warn("skipping a record without a usable id in "
				 "the '%s' listing", coll_name(c));
			continue;
		}
		err = encode_record(record, now, &recs[i]);
		if (err)
			goto out;
		keys[i++] = id;
		cJSON_AddItemToArray(ids, cJSON_CreateString(id));
		learn_companies(s, c, record);
	}
	err = cache_records_put(s->cache, coll_name(c), keys, recs, i);
out:
	while (i > 0)
		cache_record_release(&recs[--i]);
	free(recs);
	free(keys);
	return err;
}

static int fetch_page(struct store *s, enum coll c, const char *cursor,
		      unsigned index, int64_t gen)
{
	struct api_result res = { 0 };
	cJSON *page = NULL, *ids;
	int err;

	count(&s->misses);
	err = api_query(s->api, coll_name(c), cursor, s->cfg.page_size, &res);
	if (err) {
		note_refusal(s, c, err, &res.err);
		goto out;
	}
	page = cJSON_CreateObject();
	ids = cJSON_AddArrayToObject(page, "ids");
	cJSON_AddNumberToObject(page, "gen", (double)gen);
	if (res.next_cursor)
		cJSON_AddStringToObject(page, "next", res.next_cursor);
	else
		cJSON_AddNullToObject(page, "next");
	/*
	 * Pages of older generations stay: a listing still walking them
	 * needs them, and newer listings do not take them (see
	 * store_list_page).
	 */
	err = cache_page_records(s, c, res.data, ids);
	if (!err)
		err = save_page(s, c, index, page);
out:
	cJSON_Delete(page);
	api_result_release(&res);
	return err;
}

/*
 * Listings that begin together must share one generation: the first page
 * is fetched by one of them while the others wait, then find it fresh.
 */
int store_list_begin(struct store *s, enum coll c, int64_t *gen)
{
	cJSON *first;
	int64_t now;
	int err;

	pthread_mutex_lock(&s->begin_lock[c]);
	first = load_page(s, c, 0);
	now = store_now_ms();
	if (first && now - page_gen(first) < s->cfg.ttl_ms) {
		pthread_mutex_unlock(&s->begin_lock[c]);
		count(&s->hits);
		*gen = page_gen(first);
		cJSON_Delete(first);
		return 0;
	}
	err = fetch_page(s, c, NULL, 0, now);
	pthread_mutex_unlock(&s->begin_lock[c]);
	if (!err) {
		*gen = now;
	} else if (err == -EAGAIN && first) {
		log_debug("listing '%s/' from the cache: the API is unreachable",
			  coll_name(c));
		*gen = page_gen(first);
		err = 0;
	} else if (err == -EAGAIN) {
		err = -EIO;
	}
	cJSON_Delete(first);
	return err;
}

static int page_to_result(const cJSON *page, struct store_page *out)
{
	const cJSON *ids = cJSON_GetObjectItem(page, "ids"), *id;
	size_t n = 0;

	out->ids = calloc(cJSON_GetArraySize(ids) + 1, sizeof(char *));
	if (!out->ids)
		return -ENOMEM;
	cJSON_ArrayForEach(id, ids) {
		if (cJSON_IsString(id))
			out->ids[n++] = strdup(id->valuestring);
	}
	out->n = n;
	out->last = page_next(page) == NULL;
	return 0;
}

/*
 * A page of this listing's generation or a newer one serves; otherwise
 * the page is fetched with the cursor of the page before it, whatever
 * generation that one is: a listing that began before the first page was
 * refetched carries on along the newer chain rather than stop short.
 */
int store_list_page(struct store *s, enum coll c, int64_t gen,
		    unsigned index, struct store_page *out)
{
	cJSON *page = load_page(s, c, index), *prev = NULL;
	int err;

	memset(out, 0, sizeof(*out));
	if (page && (index == 0 || page_gen(page) >= gen))
		goto found;
	if (index == 0)
		return -EIO;

	prev = load_page(s, c, index - 1);
	if (!prev) {
		err = -EIO;
		goto out;
	}
	if (!page_next(prev)) {
		err = -ENOENT;
		goto out;
	}
	if (page_gen(prev) > gen)
		gen = page_gen(prev);
	err = fetch_page(s, c, page_next(prev), index, gen);
	if (err == -EAGAIN && page)
		goto found;	/* an older copy beats nothing */
	if (err == -EAGAIN)
		err = -EIO;
	if (err)
		goto out;
	cJSON_Delete(page);
	page = load_page(s, c, index);
	if (!page) {
		err = -EIO;
		goto out;
	}
found:
	count(&s->hits);
	err = page_to_result(page, out);
out:
	cJSON_Delete(page);
	cJSON_Delete(prev);
	return err;
}

void store_page_release(struct store_page *page)
{
	size_t i;

	for (i = 0; page->ids && i < page->n; i++)
		free(page->ids[i]);
	free(page->ids);
	memset(page, 0, sizeof(*page));
}

/*
 * Keep the cached listing in step with our own writes, so a created record
 * shows at once and a deleted one goes.  Only a complete chain gains ids:
 * the pages still to come will bring them otherwise.
 */
static void listing_update(struct store *s, enum coll c, const char *id,
			   bool add)
{
	cJSON *first = load_page(s, c, 0), *page;
	int64_t gen = first ? page_gen(first) : -1;
	unsigned index;

	cJSON_Delete(first);
	for (index = 0; gen >= 0; index++) {
		cJSON *ids, *v;
		int i = 0, found = -1;

		page = load_page(s, c, index);
		if (!page || page_gen(page) != gen) {
			cJSON_Delete(page);
			return;
		}
		ids = cJSON_GetObjectItem(page, "ids");
		cJSON_ArrayForEach(v, ids) {
			if (cJSON_IsString(v) && !strcmp(v->valuestring, id))
				found = i;
			i++;
		}
		if (!add && found >= 0) {
			cJSON_DeleteItemFromArray(ids, found);
			save_page(s, c, index, page);
		} else if (add && found >= 0) {
			gen = -1;
		} else if (add && !page_next(page)) {
			cJSON_AddItemToArray(ids, cJSON_CreateString(id));
			save_page(s, c, index, page);
		}
		if (!page_next(page))
			gen = -1;
		cJSON_Delete(page);
	}
}

int store_put(struct store *s, enum coll c, const cJSON *record,
	      struct cache_record *out)
{
	const char *id = record_id(record);
	struct cache_record rec;
	int err;

	if (!id || !store_plausible_id(id)) {
		log_err("the server answered a '%s' record without a usable id",
			coll_name(c));
		return -EIO;
	}
	err = encode_record(record, store_now_ms(), &rec);
	if (err)
		return err;
	err = cache_record_put(s->cache, coll_name(c), id, &rec);
	if (err) {
		cache_record_release(&rec);
		return err;
	}
	forget_missing(s, c, id);
	learn_companies(s, c, record);
	listing_update(s, c, id, true);
	store_remember(s, c, id, rec.text, rec.len);
	if (out)
		*out = rec;
	else
		cache_record_release(&rec);
	return 0;
}

int store_put_pending(struct store *s, enum coll c, const char *id,
		      const char *text, size_t len)
{
	struct cache_record rec = { 0 }, old = { 0 };

	rec.text = (char *)text;
	rec.len = len;
	rec.flags = CACHE_REC_PENDING;
	rec.mtime = store_now_ms();
	if (!cache_record_stat(s->cache, coll_name(c), id, &old))
		rec.fetched_ms = old.fetched_ms;
	return cache_record_put(s->cache, coll_name(c), id, &rec);
}

void store_forget(struct store *s, enum coll c, const char *id)
{
	cache_record_del(s->cache, coll_name(c), id);
	listing_update(s, c, id, false);
	if (c == COLL_COMPANIES)
		cache_blob_put(s->cache, CACHE_COMPANIES, id, COMPANY_GONE,
			       strlen(COMPANY_GONE));
}

/* Companies */

struct id_list {
	char **ids;
	size_t n, cap;
};

static int collect_id(void *arg, const char *key, const char *val, size_t len)
{
	struct id_list *l = arg;

	(void)val;
	if (len)	/* COMPANY_GONE */
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **p = realloc(l->ids, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->ids = p;
		l->cap = cap;
	}
	l->ids[l->n] = strdup(key);
	return l->ids[l->n++] ? 0 : -ENOMEM;
}

/* Walk the people listing to its end, so every referenced company is known. */
static int walk_people(struct store *s)
{
	struct store_page page;
	unsigned index;
	int64_t gen;
	int err;

	err = store_list_begin(s, COLL_PEOPLE, &gen);
	for (index = 0; !err; index++) {
		err = store_list_page(s, COLL_PEOPLE, gen, index, &page);
		if (!err && page.last)
			err = -ENOENT;
		store_page_release(&page);
	}
	return err == -ENOENT ? 0 : err;
}

int store_companies(struct store *s, char ***ids, size_t *n)
{
	struct id_list l = { 0 };
	int err;

	err = walk_people(s);
	if (err && err != -EACCES)
		log_warn("companies/ may be incomplete: the people listing "
			 "could not be read (%s)", strerror(-err));
	err = cache_blob_foreach(s->cache, CACHE_COMPANIES, "", collect_id, &l);
	if (err) {
		while (l.n > 0)
			free(l.ids[--l.n]);
		free(l.ids);
		return err;
	}
	*ids = l.ids;
	*n = l.n;
	return 0;
}

/* Versions handed out */

static struct versions *versions_of(struct store *s, const char *key)
{
	struct versions *v = strmap_get(s->versions, key);

	if (v)
		return v;
	v = calloc(1, sizeof(*v));
	if (v && strmap_put(s->versions, key, v, NULL)) {
		free(v);
		v = NULL;
	}
	return v;
}

static void note_seen(struct versions *v, const char *updated)
{
	if (!v->seen)
		v->seen = cJSON_CreateArray();
	if (!v->seen)
		return;
	if (cJSON_GetArraySize(v->seen) >= SEEN)
		cJSON_DeleteItemFromArray(v->seen, 0);
	cJSON_AddItemToArray(v->seen, cJSON_CreateString(updated));
}

void store_remember(struct store *s, enum coll c, const char *id,
		    const char *text, size_t len)
{
	char key[300], updated[64];
	struct versions *v;
	unsigned i;

	if (!record_text_updated(text, len, updated, sizeof(updated)))
		return;
	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	v = versions_of(s, key);
	for (i = 0; v && i < VERSIONS; i++)
		if (v->updated[i] && !strcmp(v->updated[i], updated))
			v = NULL;
	if (v) {
		i = v->next++ % VERSIONS;
		free(v->updated[i]);
		free(v->text[i]);
		v->updated[i] = strdup(updated);
		v->text[i] = strndup(text, len);
		v->len[i] = v->text[i] ? len : 0;
		note_seen(v, updated);
	}
	pthread_mutex_unlock(&s->lock);
}

bool store_version_seen(struct store *s, enum coll c, const char *id,
			const char *updated)
{
	const cJSON *t, *list;
	struct versions *v;
	char key[300];
	bool seen = false;

	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	v = strmap_get(s->versions, key);
	list = v ? v->seen : NULL;
	cJSON_ArrayForEach(t, list)
		if (cJSON_IsString(t) && !strcmp(t->valuestring, updated))
			seen = true;
	pthread_mutex_unlock(&s->lock);
	return seen;
}

char *store_version(struct store *s, enum coll c, const char *id,
		    const char *updated, size_t *len)
{
	struct versions *v;
	char key[300], *text = NULL;
	unsigned i;

	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	v = strmap_get(s->versions, key);
	for (i = 0; v && !text && i < VERSIONS; i++) {
		if (v->updated[i] && v->text[i] &&
		    !strcmp(v->updated[i], updated)) {
			text = strndup(v->text[i], v->len[i]);
			*len = v->len[i];
		}
	}
	pthread_mutex_unlock(&s->lock);
	return text;
}

void store_note_written(struct store *s, enum coll c, const char *id,
			const cJSON *patch)
{
	struct versions *v;
	const cJSON *f;
	char key[300];

	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	v = versions_of(s, key);
	if (v && !v->written)
		v->written = cJSON_CreateObject();
	cJSON_ArrayForEach(f, patch) {
		cJSON *copy;

		if (!v || !v->written)
			break;
		copy = cJSON_Duplicate(f, true);
		if (!copy)
			break;
		cJSON_DeleteItemFromObjectCaseSensitive(v->written, f->string);
		cJSON_AddItemToObject(v->written, f->string, copy);
	}
	pthread_mutex_unlock(&s->lock);
}

void store_drop_own(struct store *s, enum coll c, const char *id,
		    cJSON *changes)
{
	struct versions *v;
	cJSON *f, *next;
	char key[300];

	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	v = strmap_get(s->versions, key);
	for (f = changes->child; v && v->written && f; f = next) {
		const cJSON *mine;

		next = f->next;
		mine = cJSON_GetObjectItemCaseSensitive(v->written, f->string);
		if (mine && cJSON_Compare(mine, f, true))
			cJSON_Delete(cJSON_DetachItemViaPointer(changes, f));
	}
	pthread_mutex_unlock(&s->lock);
}

void store_add_own_reverts(struct store *s, enum coll c, const char *id,
			   const cJSON *edited, const cJSON *current,
			   cJSON *patch)
{
	const cJSON *f, *mine, *now, *written;
	struct versions *v;
	char key[300];

	record_key(key, sizeof(key), c, id);
	pthread_mutex_lock(&s->lock);
	v = strmap_get(s->versions, key);
	written = v ? v->written : NULL;
	cJSON_ArrayForEach(f, written) {
		cJSON *want;

		if (cJSON_GetObjectItemCaseSensitive(patch, f->string))
			continue;
		mine = cJSON_GetObjectItemCaseSensitive(edited, f->string);
		now = cJSON_GetObjectItemCaseSensitive(current, f->string);
		if (mine ? now && cJSON_Compare(mine, now, true) :
			   !now || cJSON_IsNull(now))
			continue;
		want = mine ? cJSON_Duplicate(mine, true) : cJSON_CreateNull();
		if (want)
			cJSON_AddItemToObject(patch, f->string, want);
	}
	pthread_mutex_unlock(&s->lock);
}
