/*
 * store: records and collections, on top of the cache and the API client.
 *
 * Owns the freshness rules: a record or listing younger than the TTL comes
 * from the cache, an older one is fetched again, and when the server cannot
 * be reached the cache answers whatever its age.  Owns listings (pages of
 * ids fetched one at a time, as far as a reader goes), the set of known
 * companies, and the short-lived memory of ids the server said do not exist.
 */
#ifndef KLIPYFS_STORE_H
#define KLIPYFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "cache.h"

enum coll {
	COLL_PEOPLE,
	COLL_COMPANIES,
	COLL_INTERACTIONS,
	COLL_COUNT,
};

/* "people", "companies", "interactions". */
const char *coll_name(enum coll c);

/* The collection called @name (@len bytes), or -1. */
int coll_lookup(const char *name, size_t len);

/* The scope a key needs to read @c, for messages. */
const char *coll_read_scope(enum coll c);

struct store_config {
	int64_t ttl_ms;		/* freshness of records and listings */
	int64_t negative_ttl_ms; /* how long a 404 is believed */
	int page_size;		/* records per query page */
};

struct store;

int store_new(struct api *api, struct cache *cache,
	      const struct store_config *cfg, struct store **out);
void store_free(struct store *s);

struct api *store_api(struct store *s);
struct cache *store_cache(struct store *s);
int64_t store_ttl_ms(struct store *s);

/* Milliseconds since the epoch. */
int64_t store_now_ms(void);

/*
 * True when @id could be a record id: ids are short runs of letters,
 * digits, '_' and '-'.  Other names are never looked up on the server.
 */
bool store_plausible_id(const char *id);

/*
 * The record @id: from the cache when fresh, else fetched.  With
 * @any_age a cached copy of any age is good enough.  When the server cannot
 * be reached, a cached copy of any age answers; with none, -EIO.  A 404
 * drops the cached copy and is remembered for the negative TTL (-ENOENT).
 * With @want_text false, rec->text stays NULL.
 */
int store_get(struct store *s, enum coll c, const char *id, bool any_age,
	      bool want_text, struct cache_record *rec);

/* Fetch @id from the server now, whatever the cache holds. */
int store_refresh(struct store *s, enum coll c, const char *id,
		  struct cache_record *rec);

/*
 * Cache a record the server just returned (after a write) and return its
 * cached form in @rec (text included) when @rec is not NULL.  The record is
 * added to the current listing and its companies become known.
 */
int store_put(struct store *s, enum coll c, const cJSON *record,
	      struct cache_record *rec);

/* Cache a local text the server has not taken yet (CACHE_REC_PENDING). */
int store_put_pending(struct store *s, enum coll c, const char *id,
		      const char *text, size_t len);

/*
 * Forget a record the server deleted or does not have; a company is also
 * kept out of companies/ from then on, even while people still name it.
 */
void store_forget(struct store *s, enum coll c, const char *id);

/*
 * Listings.  A listing is a chain of pages; all pages of one chain share a
 * generation (the time its first page was fetched).  store_list_begin
 * returns the generation of a fresh chain, fetching the first page if the
 * cached one is stale; store_list_page returns page @index of that chain,
 * fetching it with the previous page's cursor when needed, -ENOENT past the
 * end.  page->ids is malloc'd; free with store_page_release.
 */
struct store_page {
	char **ids;
	size_t n;
	bool last;
};

int store_list_begin(struct store *s, enum coll c, int64_t *gen);
int store_list_page(struct store *s, enum coll c, int64_t gen,
		    unsigned index, struct store_page *page);
void store_page_release(struct store_page *page);

/*
 * Every company id known from people, interactions and creations, after
 * making sure the people listing is complete and fresh.  *ids is a
 * malloc'd array of malloc'd strings.
 */
int store_companies(struct store *s, char ***ids, size_t *n);

/*
 * Versions this mount has handed out, by updatedTime (a few per record,
 * in memory): an editor's buffer keeps the updatedTime of the version it
 * was read from, so a save can be judged against exactly that version.
 */
void store_remember(struct store *s, enum coll c, const char *id,
		    const char *text, size_t len);

/*
 * Whether this mount ever handed out the version of @id whose updatedTime
 * is @updated (its text may be forgotten by now).
 */
bool store_version_seen(struct store *s, enum coll c, const char *id,
			const char *updated);

/* The remembered text of @id whose updatedTime is @updated (malloc'd). */
char *store_version(struct store *s, enum coll c, const char *id,
		    const char *updated, size_t *len);

/*
 * The fields this mount wrote to @id, kept (in memory, merged over its
 * saves) so that a later save from a buffer older than those writes is
 * not taken for a conflict with them: the server holding exactly what
 * this mount wrote is the user's own change, as on a local disk.
 */
void store_note_written(struct store *s, enum coll c, const char *id,
			const cJSON *patch);

/* Remove from @changes every field whose value this mount wrote last. */
void store_drop_own(struct store *s, enum coll c, const char *id,
		    cJSON *changes);

/*
 * Within one mount the last save wins, as on a local disk: add to @patch
 * every field this mount wrote whose value in the full text @edited (a
 * missing field is null) differs from the server's @current, so that an
 * undo, a restored backup or an older buffer takes those fields back.
 * Fields changed elsewhere are left to the field-level rules.
 */
void store_add_own_reverts(struct store *s, enum coll c, const char *id,
			   const cJSON *edited, const cJSON *current,
			   cJSON *patch);

/* Counters for .klipy/status. */
void store_counters(struct store *s, uint64_t *hits, uint64_t *misses);

#endif
