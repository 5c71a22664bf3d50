/*
 * save: turning a saved file into exactly one API request, and never
 * losing it.
 *
 * Owns the rules of a save (what an update sends, when a new file is a
 * create, an upsert or still a draft, what is refused locally), the
 * journal of saves the server has not yet taken (kept in the cache, retried
 * by a background thread with backoff, replayed after a crash or remount),
 * and the texts that were refused, shown under .klipy/rejected/.
 */
#ifndef KLIPYFS_SAVE_H
#define KLIPYFS_SAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "store.h"

struct save;

/* What the delivery thread tells the file system about queued work. */
enum save_event {
	SAVE_CREATED,		/* a queued create made record @id */
	SAVE_CREATE_REFUSED,	/* a queued create was refused (@id NULL) */
	SAVE_DELETE_REFUSED,	/* the server would not delete record @id */
};

typedef void (*save_event_fn)(void *arg, enum save_event ev, enum coll c,
			      const char *name, const char *id);

/* Set up saving over @store; nothing is delivered before save_start. */
int save_new(struct store *store, save_event_fn event, void *arg,
	     struct save **out);

/* Start the thread that delivers the journal, now and after failures. */
int save_start(struct save *sv);

/*
 * Stop the delivery thread after trying, for at most @grace_s seconds, to
 * deliver what is pending; log how many saves remain queued.
 */
void save_free(struct save *sv, int grace_s);

struct save_req {
	enum coll coll;
	const char *name;	/* file name in the collection, e.g. "x.json" */
	const char *id;		/* record to update, NULL to create */
	const char *base;	/* text the edit started from (update) */
	size_t base_len;
	const char *text;	/* what the user saved */
	size_t len;
};

struct save_result {
	char *id;		/* the record the save created, malloc'd */
	bool draft;		/* a new file with nothing to send yet */
	bool pending;		/* queued: the server could not be reached */
	bool unchanged;		/* nothing differed: no request was made */
};

/*
 * Save @req.  Returns 0 when the server took it, when it was queued, or when
 * there was nothing to send; otherwise -errno (EINVAL, EACCES, EFBIG,
 * EEXIST, ESTALE, EPERM, ENOENT) after logging one line and keeping the
 * text under .klipy/rejected/.
 */
int save_commit(struct save *sv, const struct save_req *req,
		struct save_result *res);

void save_result_release(struct save_result *res);

/*
 * Delete a record (unlink).  The DELETE waits in the journal for
 * @delay_ms first: a tool replacing a file from another file system (mv,
 * install) unlinks it and creates it again at once, and that must stay an
 * update of the same record, not a new one.
 */
int save_delete(struct save *sv, enum coll c, const char *id,
		int64_t delay_ms);

/* Take back a queued create of @name (the user removed the new file). */
void save_cancel_create(struct save *sv, enum coll c, const char *name);

/* Take back a delete still waiting; false when it already went out. */
bool save_cancel_delete(struct save *sv, enum coll c, const char *id);

/*
 * Call @fn for every queued create (POST or PUT), so the names they were
 * saved under show their texts again after a remount.
 */
void save_queued_creates(struct save *sv,
			 void (*fn)(void *arg, enum coll c, const char *name,
				    const char *text),
			 void *arg);

/* The queue and the refusals, as JSON arrays for .klipy/status. */
cJSON *save_pending_json(struct save *sv);
cJSON *save_rejected_json(struct save *sv);

/* Names under .klipy/rejected/<coll>/ (malloc'd array of malloc'd names). */
int save_rejected_names(struct save *sv, enum coll c, char ***names,
			size_t *n);

/* The text kept for a refused save of <coll>/<name>. */
int save_rejected_text(struct save *sv, enum coll c, const char *name,
		       char **text, size_t *len);

/* Forget a refused save (the user deleted it). */
int save_rejected_remove(struct save *sv, enum coll c, const char *name);

#endif
