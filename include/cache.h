/*
 * cache: the persistent LMDB store behind a mount.
 *
 * One LMDB environment per organization directory (0700, files 0600) holds
 * record texts with their freshness, and small opaque blobs in named tables
 * (listing pages, known companies, the write journal, rejected texts, meta).
 * The cache keeps bytes; what they mean belongs to the callers.  It never
 * stores the API key.  All functions are thread safe and return 0 or -errno
 * (-ENOENT for a missing key, -EIO for a damaged store, -ENOSPC when full).
 */
#ifndef KLIPYFS_CACHE_H
#define KLIPYFS_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct cache;

/* Set on a record whose text is a local write the server has not yet taken. */
#define CACHE_REC_PENDING 0x1u

struct cache_record {
	char *text;		/* NUL-terminated, malloc'd by getters */
	size_t len;		/* bytes of text, without the NUL */
	int64_t mtime;		/* st_mtime, milliseconds since the epoch */
	int64_t fetched_ms;	/* when the text came from the server (ms) */
	unsigned flags;		/* CACHE_REC_* */
};

enum cache_table {
	CACHE_PAGES,		/* listing pages, keyed "<coll>/<index>" */
	CACHE_COMPANIES,	/* known company ids, value empty */
	CACHE_JOURNAL,		/* pending writes, keyed by a sortable sequence */
	CACHE_REJECTED,		/* texts the server or we refused */
	CACHE_META,		/* organization name and the like */
};
/* Blob keys are 1 to 511 bytes; those starting with 0x01 are the cache's. */

/* Open (creating it and its parents) the store in @dir. */
int cache_open(const char *dir, struct cache **out);
void cache_close(struct cache *c);

/* Read a record; rec->text is malloc'd. */
int cache_record_get(struct cache *c, const char *coll, const char *id,
		     struct cache_record *rec);

/* Like cache_record_get, without copying the text (rec->text is NULL). */
int cache_record_stat(struct cache *c, const char *coll, const char *id,
		      struct cache_record *rec);

/*
 * Store one record, replacing any earlier version.  A record with
 * CACHE_REC_PENDING reaches the disk before returning, like the journal.
 */
int cache_record_put(struct cache *c, const char *coll, const char *id,
		     const struct cache_record *rec);

/*
 * Store @n records in one transaction.  A record already stored with
 * CACHE_REC_PENDING is left alone: a server copy never hides a local write
 * that has not been delivered.
 */
int cache_records_put(struct cache *c, const char *coll,
		      const char *const *ids, const struct cache_record *recs,
		      size_t n);

int cache_record_del(struct cache *c, const char *coll, const char *id);

/* Free rec->text and zero it. */
void cache_record_release(struct cache_record *rec);

/*
 * Blobs.  Writes to CACHE_JOURNAL and CACHE_REJECTED reach the disk
 * (mdb_env_sync) before returning: they hold what the user wrote.
 * Values are returned malloc'd and NUL-terminated.
 */
int cache_blob_get(struct cache *c, enum cache_table t, const char *key,
		   char **val, size_t *len);
int cache_blob_put(struct cache *c, enum cache_table t, const char *key,
		   const void *val, size_t len);
int cache_blob_del(struct cache *c, enum cache_table t, const char *key);

/*
 * Call @fn for every key starting with @prefix, in key order, inside one
 * read transaction (so @fn must not write to the cache).  A non-zero return
 * from @fn stops the walk and is returned.  @key and @val are NUL-terminated
 * and valid only during the call.
 */
typedef int (*cache_blob_fn)(void *arg, const char *key, const char *val,
			     size_t len);
int cache_blob_foreach(struct cache *c, enum cache_table t,
		       const char *prefix, cache_blob_fn fn, void *arg);

/* Bytes in use by the store and the number of records in it. */
int cache_usage(struct cache *c, uint64_t *bytes, uint64_t *records);

#endif
