/* save: see include/save.h */
#include "save.h"

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

/* The server refuses bodies over 1 MiB; no need to ask it. */
#define MAX_BODY (1024 * 1024)

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

struct save {
	struct store *store;
	struct cache *cache;
	struct api *api;
	save_event_fn event;
	void *event_arg;
	pthread_mutex_t send_lock;	/* a queued entry sent vs. changed */
	struct strmap *made;	/* "coll/name" -> id a queued create made */

	pthread_mutex_t lock;	/* guards the fields below and journal order */
	pthread_cond_t wake;
	pthread_t thread;
	bool started;
	bool stopping;
	int64_t deadline_ms;	/* when stopping: give up after this */
	uint64_t seq;		/* last journal key suffix handed out */
};

/* Refusals */

/* "coll/name": how rejected texts and made records are keyed. */
static void file_key(char *key, size_t size, enum coll c, const char *name)
{
	snprintf(key, size, "%s/%s", coll_name(c), name);
}

/* True when @key already holds exactly @val: that refusal was reported. */
static bool already_rejected(struct save *sv, const char *key,
			     const char *val)
{
	char *old = NULL;
	size_t len = 0;
	bool same;

	if (cache_blob_get(sv->cache, CACHE_REJECTED, key, &old, &len))
		return false;
	same = len == strlen(val) && !memcmp(old, val, len);
	free(old);
	return same;
}

/*
 * Keep the user's text under .klipy/rejected/ and say why in one line.
 * The same text refused again for the same reason (the kernel retries a
 * rename that failed with ESTALE) is not reported twice.  Returns @err
 * for the caller to pass on.
 */
static int reject(struct save *sv, enum coll c, const char *name,
		  const char *text, int err, const char *why)
{
	char key[512], *val;
	cJSON *o = cJSON_CreateObject();

	file_key(key, sizeof(key), c, name);
	cJSON_AddStringToObject(o, "reason", why);
	cJSON_AddStringToObject(o, "errno", strerror(-err));
	cJSON_AddItemToObject(o, "text", cJSON_CreateString(text));
	val = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (val && already_rejected(sv, key, val)) {
		free(val);
		return err;
	}
	if (val && !cache_blob_put(sv->cache, CACHE_REJECTED, key, val,
				   strlen(val)))
		log_err("cannot save '%s/%s': %s; the text is kept in "
			".klipy/rejected/%s", coll_name(c), name, why, key);
	else
		log_err("cannot save '%s/%s': %s; keeping the text failed too",
			coll_name(c), name, why);
	free(val);
	return err;
}

static int reject_api(struct save *sv, enum coll c, const char *name,
		      const char *text, int err, const struct api_error *ae)
{
	char why[1024];

	api_error_describe(ae, why, sizeof(why));
	return reject(sv, c, name, text, err, why);
}

/* Refuse the save @req. */
static int refuse(struct save *sv, const struct save_req *req, int err,
		  const char *why)
{
	return reject(sv, req->coll, req->name, req->text, err, why);
}

static int refuse_api(struct save *sv, const struct save_req *req, int err,
		      const struct api_error *ae)
{
	return reject_api(sv, req->coll, req->name, req->text, err, ae);
}

/* Journal */

static void journal_key(struct save *sv, char *key, size_t size)
{
	pthread_mutex_lock(&sv->lock);
	snprintf(key, size, "%020" PRId64 "-%06" PRIu64, store_now_ms(),
		 ++sv->seq % 1000000);
	pthread_mutex_unlock(&sv->lock);
}

static int journal_put(struct save *sv, const char *key, const cJSON *entry)
{
	char *val = cJSON_PrintUnformatted(entry);
	int err;

	if (!val)
		return -ENOMEM;
	err = cache_blob_put(sv->cache, CACHE_JOURNAL, key, val, strlen(val));
	free(val);
	return err;
}

/* A field of a journal entry, or NULL. */
static const char *str_of(const cJSON *e, const char *field)
{
	return cJSON_GetStringValue(cJSON_GetObjectItem(e, field));
}

static int collect_entry(void *arg, const char *key, const char *val,
			 size_t len)
{
	cJSON *list = arg, *e = cJSON_ParseWithLength(val, len);

	if (!e)
		e = cJSON_CreateObject();	/* damaged: deliver() drops it */
	cJSON_AddStringToObject(e, "_key", key);
	cJSON_AddItemToArray(list, e);
	return 0;
}

/*
 * The journal in order, as an array of entries each with its key in
 * "_key".  A copy: the walk runs in a read transaction, and callers write.
 */
static cJSON *journal_list(struct save *sv)
{
	cJSON *list = cJSON_CreateArray();

	cache_blob_foreach(sv->cache, CACHE_JOURNAL, "", collect_entry, list);
	return list;
}

/*
 * Queue a save the server could not take.  The entry holds what to send
 * and the user's text, so a refusal later can still show it.
 */
static int enqueue(struct save *sv, const char *method, enum coll c,
		   const char *name, const char *id, const cJSON *body,
		   const char *text, int64_t not_before, bool maybe_applied)
{
	cJSON *e = cJSON_CreateObject();
	char key[64];
	int err;

	cJSON_AddStringToObject(e, "method", method);
	cJSON_AddStringToObject(e, "coll", coll_name(c));
	cJSON_AddStringToObject(e, "name", name ? name : "");
	if (id)
		cJSON_AddStringToObject(e, "id", id);
	if (body)
		cJSON_AddItemToObject(e, "body", cJSON_Duplicate(body, true));
	cJSON_AddStringToObject(e, "text", text ? text : "");
	cJSON_AddNumberToObject(e, "attempts", 0);
	if (not_before)
		cJSON_AddNumberToObject(e, "not_before", (double)not_before);
	if (maybe_applied)
		cJSON_AddTrueToObject(e, "maybe_applied");
	journal_key(sv, key, sizeof(key));
	err = journal_put(sv, key, e);
	cJSON_Delete(e);
	if (err) {
		log_err("cannot queue the save of '%s/%s': %s", coll_name(c),
			name, strerror(-err));
		return err;
	}
	if (!not_before && api_offline(sv->api))
		log_info("offline: '%s %s/%s' is queued for the next online "
			 "mount", method, coll_name(c), name);
	else if (!not_before)
		log_warn("the API is unreachable: '%s %s/%s' is queued and "
			 "will be retried", method, coll_name(c), name);
	pthread_mutex_lock(&sv->lock);
	pthread_cond_signal(&sv->wake);
	pthread_mutex_unlock(&sv->lock);
	return 0;
}

/* A search of the journal; NULL fields match anything. */
struct queued {
	const char *coll;
	const char *id;
	const char *name;
	bool (*method)(const char *method);
	char *key;		/* out: the first match, malloc'd */
	cJSON *entry;		/* out: its entry */
};

static bool is_create(const char *method)
{
	return !strcmp(method, "POST") || !strcmp(method, "PUT");
}

static bool is_delete(const char *method)
{
	return !strcmp(method, "DELETE");
}

static bool field_is(const cJSON *e, const char *field, const char *want)
{
	const char *v = str_of(e, field);

	return !want || (v && !strcmp(v, want));
}

static bool queued_matches(const struct queued *q, const cJSON *e)
{
	const char *m = str_of(e, "method");

	return m && (!q->method || q->method(m)) &&
	       field_is(e, "coll", q->coll) && field_is(e, "id", q->id) &&
	       field_is(e, "name", q->name);
}

/* Look @q up in the journal: true when found (free with queued_release). */
static bool find_queued(struct save *sv, struct queued *q)
{
	cJSON *list = journal_list(sv), *e;

	cJSON_ArrayForEach(e, list) {
		if (!queued_matches(q, e))
			continue;
		q->key = strdup(str_of(e, "_key"));
		q->entry = cJSON_DetachItemViaPointer(list, e);
		cJSON_DeleteItemFromObject(q->entry, "_key");
		break;
	}
	cJSON_Delete(list);
	return q->key != NULL;
}

static void queued_release(struct queued *q)
{
	free(q->key);
	cJSON_Delete(q->entry);
}

/* True when an earlier save of the record still waits in the journal. */
static bool queued_behind(struct save *sv, enum coll c, const char *id)
{
	struct queued q = { .coll = coll_name(c), .id = id };
	bool found = find_queued(sv, &q);

	queued_release(&q);
	return found;
}

/* Creates */

/* What a create sends: the user's object without server-owned fields. */
static cJSON *create_body(enum coll c, const char *name, cJSON *edited)
{
	cJSON *body = cJSON_CreateObject();
	const cJSON *f;
	size_t stem;

	cJSON_ArrayForEach(f, edited) {
		if (f->string && !record_field_readonly(f->string))
			cJSON_AddItemToObject(body, f->string,
					      cJSON_Duplicate(f, true));
	}
	stem = strlen(name) - strlen(".json");
	if (c == COLL_PEOPLE && memchr(name, '@', stem) &&
	    !cJSON_GetObjectItemCaseSensitive(body, "email")) {
		char *email = strndup(name, stem);

		cJSON_AddStringToObject(body, "email", email);
		free(email);
	}
	return body;
}

static bool is_upsert(enum coll c, const char *name)
{
	return c == COLL_PEOPLE && strchr(name, '@');
}

/*
 * A create retried after an answer was lost may find that the first try
 * made the record: the server's 409 names it, and it is ours.  (Records
 * with no unique field, such as a company without a domain, cannot be
 * told apart this way.)
 */
static int adopt_created(struct save *sv, enum coll c, const char *name,
			 const char *existing, char **id)
{
	struct cache_record rec;
	int err;

	err = store_refresh(sv->store, c, existing, &rec);
	if (err)
		return err;
	cache_record_release(&rec);
	*id = strdup(existing);
	log_info("created '%s/%s.json' from '%s/%s' (found after a lost "
		 "answer)", coll_name(c), existing, coll_name(c), name);
	return 0;
}

/*
 * Send a create and cache the record it made.  An interaction create
 * answers only {id, isDuplicate}, so the record is fetched after it.
 */
static int send_create(struct save *sv, enum coll c, const char *name,
		       const cJSON *body, bool retry, char **id,
		       struct api_error *ae, bool *maybe_applied)
{
	struct api_result res = { 0 };
	const char *new_id;
	int err;

	if (is_upsert(c, name))
		err = api_upsert(sv->api, coll_name(c), body, &res);
	else
		err = api_create(sv->api, coll_name(c), body, &res);
	*ae = res.err;
	if (maybe_applied)
		*maybe_applied = res.maybe_applied;
	if (err == -EEXIST && retry && store_plausible_id(ae->detail))
		return adopt_created(sv, c, name, ae->detail, id);
	if (err)
		goto out;
	new_id = record_id(res.data);
	if (!new_id || !store_plausible_id(new_id)) {
		log_err("the server created '%s/%s' but answered no usable id",
			coll_name(c), name);
		err = -EIO;
		goto out;
	}
	*id = strdup(new_id);
	if (c == COLL_INTERACTIONS) {
		struct cache_record rec;

		if (!store_refresh(sv->store, c, new_id, &rec))
			cache_record_release(&rec);
	} else {
		store_put(sv->store, c, res.data, NULL);
	}
	log_info("created '%s/%s.json' from '%s/%s'", coll_name(c), *id,
		 coll_name(c), name);
out:
	api_result_release(&res);
	return err;
}

static bool blank(const char *text, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!strchr(" \t\r\n", text[i]))
			return false;
	return true;
}

/*
 * Rewrite the queued create of @name, if there is one: 1 if so, 0 if
 * there is none, -errno when the journal could not be written.  When the
 * queued create went out meanwhile, *made is the record it made
 * (malloc'd): the save is an update of it.
 */
static int requeue_create(struct save *sv, enum coll c, const char *name,
			  const cJSON *body, const char *text, char **made)
{
	struct queued q = { .coll = coll_name(c), .name = name,
			    .method = is_create };
	char key[512];
	const char *id;
	int ret = 0;

	*made = NULL;
	file_key(key, sizeof(key), c, name);
	pthread_mutex_lock(&sv->send_lock);
	if (find_queued(sv, &q)) {
		cJSON_ReplaceItemInObject(q.entry, "body",
					  cJSON_Duplicate(body, true));
		cJSON_ReplaceItemInObject(q.entry, "text",
					  cJSON_CreateString(text));
		ret = journal_put(sv, q.key, q.entry);
		ret = ret ? ret : 1;
	} else if ((id = strmap_get(sv->made, key))) {
		*made = strdup(id);
		ret = *made ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&sv->send_lock);
	queued_release(&q);
	return ret;
}

static int commit_update(struct save *sv, const struct save_req *req,
			 struct save_result *res);

/* A save of a new file whose queued create has just made record @made. */
static int update_made(struct save *sv, const struct save_req *req,
		       char *made, struct save_result *res)
{
	struct save_req up = *req;
	int err;

	up.id = made;
	up.base = NULL;
	up.base_len = 0;
	err = commit_update(sv, &up, res);
	if (!err)
		res->id = made;
	else
		free(made);
	return err;
}

static int commit_create(struct save *sv, const struct save_req *req,
			 struct save_result *res)
{
	char *made = NULL;
	bool maybe = false;
	struct api_error ae = { 0 };
	cJSON *edited = NULL, *body;
	int err;

	/* An empty or half-written new file is a draft, kept locally. */
	if (blank(req->text, req->len) ||
	    record_parse(req->text, req->len, &edited)) {
		res->draft = true;
		return 0;
	}
	body = create_body(req->coll, req->name, edited);
	cJSON_Delete(edited);

	err = requeue_create(sv, req->coll, req->name, body, req->text,
			     &made);
	if (err || made)
		cJSON_Delete(body);
	if (err < 0)
		return refuse(sv, req, err, "the write journal could not be "
			      "updated");
	if (made)
		return update_made(sv, req, made, res);
	if (err) {
		res->pending = true;	/* the queued create takes this text */
		return 0;
	}
	err = send_create(sv, req->coll, req->name, body, false, &res->id,
			  &ae, &maybe);
	if (err == -EAGAIN) {
		err = enqueue(sv, is_upsert(req->coll, req->name) ? "PUT" :
			      "POST", req->coll, req->name, NULL, body,
			      req->text, 0, maybe);
		res->pending = !err;
	} else if (err) {
		err = refuse_api(sv, req, err, &ae);
	}
	cJSON_Delete(body);
	return err;
}

/* Updates */

/*
 * The version an edit started from: the one whose updatedTime the text
 * still carries, if this mount handed it out (an editor keeps the text it
 * read, across its own saves and other people's), else the version the
 * file showed when it was opened.  NULL when neither is known.
 */
static cJSON *edit_base(struct save *sv, const struct save_req *req,
			const cJSON *edited)
{
	const char *updated = record_updated(edited);
	cJSON *base = NULL;
	char *text;
	size_t len;

	if (updated) {
		text = store_version(sv->store, req->coll, req->id, updated,
				     &len);
		if (text && !record_parse(text, len, &base)) {
			free(text);
			return base;
		}
		free(text);
	}
	if (req->base && !record_parse(req->base, req->base_len, &base))
		return base;
	return NULL;
}

/*
 * The record as the server has it now: the cached copy while fresh, else
 * fetched (so a version older than the TTL is checked against the
 * server).  *current stays NULL when the server cannot be reached: the
 * PATCH will find out and queue.
 */
static int current_version(struct save *sv, const struct save_req *req,
			   cJSON **current, bool *pending)
{
	struct cache_record rec;
	int err;

	*current = NULL;
	err = store_get(sv->store, req->coll, req->id, false, true, &rec);
	if (err == -ENOENT)
		return refuse(sv, req, -ENOENT,
			      "the record was deleted on the server");
	if (err)
		return 0;
	*pending = rec.flags & CACHE_REC_PENDING;
	record_parse(rec.text, rec.len, current);
	cache_record_release(&rec);
	return 0;
}

/*
 * Refuse the save when the server changed a field the user changed too,
 * to another value, since the version the user started from.  Values
 * this mount wrote itself do not count (an editor saving the same field
 * twice from one buffer), nor does the server's copy of a save still
 * queued here: both are the user's own text.
 */
static int check_conflict(struct save *sv, const struct save_req *req,
			  const cJSON *base, const cJSON *current,
			  bool pending, const cJSON *ours)
{
	const char *field;
	cJSON *theirs;
	char why[512];
	int err = 0;

	if (!base->child || !current || pending)
		return 0;
	theirs = record_diff(base, current, true);
	if (theirs)
		store_drop_own(sv->store, req->coll, req->id, theirs);
	field = theirs ? record_patch_conflict(ours, theirs) : NULL;
	if (field) {
		snprintf(why, sizeof(why), "CONFLICT field '%s' was changed "
			 "on the server since this version was read", field);
		err = refuse(sv, req, -ESTALE, why);
	}
	cJSON_Delete(theirs);
	return err;
}

static int send_patch(struct save *sv, const struct save_req *req,
		      const cJSON *patch)
{
	struct api_result res = { 0 };
	int err;

	if (queued_behind(sv, req->coll, req->id)) {
		err = -EAGAIN;
	} else {
		err = api_patch(sv->api, coll_name(req->coll), req->id, patch,
				&res);
		if (!err)
			store_note_written(sv->store, req->coll, req->id,
					   patch);
		if (!err && cJSON_IsObject(res.data))
			err = store_put(sv->store, req->coll, res.data, NULL);
	}
	if (err == -EAGAIN) {
		err = enqueue(sv, "PATCH", req->coll, req->name, req->id,
			      patch, req->text, 0, false);
		if (!err)
			store_put_pending(sv->store, req->coll, req->id,
					  req->text, req->len);
	} else if (err) {
		if (err == -ENOENT)
			store_forget(sv->store, req->coll, req->id);
		err = refuse_api(sv, req, err, &res.err);
	}
	api_result_release(&res);
	return err;
}

/*
 * A text saved under the name a record was created from may still be the
 * copy of another record it was made from (vim's :saveas, emacs's
 * write-file): its read-only fields are that record's, dropped as at the
 * create.  Under the record's own name a different id is a change.
 */
static bool foreign_copy(const struct save_req *req, const cJSON *edited)
{
	const char *id = record_id(edited);
	size_t n = strlen(req->id);

	if (!id || !strcmp(id, req->id))
		return false;
	return strncmp(req->name, req->id, n) || strcmp(req->name + n, ".json");
}

/*
 * "updatedTime" when the text carries the updatedTime of a version of
 * this record the mount handed out (an editor's buffer from before its
 * own saves): that is not a change of a read-only field.
 */
static const char *older_version(struct save *sv, const struct save_req *req,
				 const cJSON *edited)
{
	const char *updated = record_updated(edited);

	if (updated && store_version_seen(sv->store, req->coll, req->id,
					  updated))
		return "updatedTime";
	return NULL;
}

/*
 * An update sends the top-level fields the user changed from the version
 * the edit started from, less those the server already holds.  A text
 * without updatedTime is a partial record (say, the text a record was
 * created from): the fields it leaves out are left alone, not cleared.
 */
static int commit_update(struct save *sv, const struct save_req *req,
			 struct save_result *res)
{
	cJSON *edited = NULL, *base = NULL, *patch = NULL, *current = NULL;
	bool pending = false;
	const char *field;
	char why[256];
	int err;

	if (req->coll == COLL_INTERACTIONS)
		return refuse(sv, req, -EPERM, "interactions cannot be changed");
	if (!record_utf8_valid(req->text, req->len))
		return refuse(sv, req, -EINVAL, "the text is not valid UTF-8 "
			      "(nothing was sent)");
	if (record_has_escaped_nul(req->text, req->len))
		return refuse(sv, req, -EINVAL, "a string holds \\u0000, "
			      "which cannot be sent (nothing was sent)");
	if (record_parse(req->text, req->len, &edited))
		return refuse(sv, req, -EINVAL,
			      "the text is not one JSON object "
			      "(nothing was sent)");
	if (foreign_copy(req, edited))
		record_drop_readonly(edited);
	base = edit_base(sv, req, edited);
	if (!base)
		base = cJSON_CreateObject();	/* unknown: send every field */

	field = base->child ? record_readonly_change(base, edited,
						     older_version(sv, req,
								   edited)) :
			      NULL;
	if (field) {
		snprintf(why, sizeof(why), "field '%s' is read-only (nothing "
			 "was sent)", field);
		err = refuse(sv, req, -EINVAL, why);
		goto out;
	}
	patch = record_diff(base, edited, record_updated(edited) != NULL);
	if (!patch) {
		err = -ENOMEM;
		goto out;
	}
	err = current_version(sv, req, &current, &pending);
	if (!err)
		err = check_conflict(sv, req, base, current, pending, patch);
	if (err)
		goto out;
	if (current && record_updated(edited))
		store_add_own_reverts(sv->store, req->coll, req->id, edited,
				      current, patch);
	if (current)
		record_patch_prune(patch, current);
	if (!patch->child) {
		res->unchanged = true;
		goto out;
	}
	err = send_patch(sv, req, patch);
	res->pending = !err && queued_behind(sv, req->coll, req->id);
out:
	cJSON_Delete(current);
	cJSON_Delete(patch);
	cJSON_Delete(base);
	cJSON_Delete(edited);
	return err;
}

int save_commit(struct save *sv, const struct save_req *req,
		struct save_result *res)
{
	memset(res, 0, sizeof(*res));
	if (req->len > MAX_BODY)
		return refuse(sv, req, -EFBIG,
			      "the text is over the API's limit of 1 MiB "
			      "(nothing was sent)");
	if (!req->id)
		return commit_create(sv, req, res);
	return commit_update(sv, req, res);
}

void save_result_release(struct save_result *res)
{
	free(res->id);
	memset(res, 0, sizeof(*res));
}

int save_delete(struct save *sv, enum coll c, const char *id,
		int64_t delay_ms)
{
	char name[300];

	if (c == COLL_INTERACTIONS)
		return -EPERM;
	snprintf(name, sizeof(name), "%s.json", id);
	return enqueue(sv, "DELETE", c, name, id, NULL, NULL,
		       store_now_ms() + delay_ms, false);
}

/* Remember, for this mount, which record a queued create of @name made. */
static void note_made(struct save *sv, enum coll c, const char *name,
		      const char *id)
{
	char key[512], *copy = strdup(id);
	void *old = NULL;

	file_key(key, sizeof(key), c, name);
	if (copy && !strmap_put(sv->made, key, copy, &old))
		free(old);
	else
		free(copy);
}

/*
 * A queued create goes out as it stands when its turn comes: a later save
 * of the same new file rewrites the entry (see requeue_create) instead of
 * queueing a second create.
 */
static int deliver_create(struct save *sv, const char *key, cJSON *queued,
			  enum coll c, const char *name, char **new_id,
			  struct api_error *ae)
{
	bool was, maybe = false;
	cJSON *e = NULL;
	char *val;
	size_t len;
	int err = 0;

	pthread_mutex_lock(&sv->send_lock);
	if (!cache_blob_get(sv->cache, CACHE_JOURNAL, key, &val, &len)) {
		e = cJSON_ParseWithLength(val, len);
		free(val);
		was = cJSON_IsTrue(cJSON_GetObjectItem(e, "maybe_applied"));
		err = send_create(sv, c, name, cJSON_GetObjectItem(e, "body"),
				  was, new_id, ae, &maybe);
		if (!err)
			note_made(sv, c, name, *new_id);
		if (!err && sv->event)
			sv->event(sv->event_arg, SAVE_CREATED, c, name,
				  *new_id);
		/*
		 * Lost again: the next try must know this one may count
		 * (note_failure carries the mark into the journal).
		 */
		if (err == -EAGAIN && maybe && !was)
			cJSON_AddTrueToObject(queued, "maybe_applied");
		/*
		 * Done with (made or refused): gone before the lock is let
		 * go, so a save of the same file cannot rewrite an entry
		 * that is about to be dropped.
		 */
		if (err != -EAGAIN)
			cache_blob_del(sv->cache, CACHE_JOURNAL, key);
	}
	pthread_mutex_unlock(&sv->send_lock);
	cJSON_Delete(e);
	return err;
}

void save_cancel_create(struct save *sv, enum coll c, const char *name)
{
	struct queued q = { .coll = coll_name(c), .name = name,
			    .method = is_create };

	pthread_mutex_lock(&sv->send_lock);
	if (find_queued(sv, &q))
		cache_blob_del(sv->cache, CACHE_JOURNAL, q.key);
	pthread_mutex_unlock(&sv->send_lock);
	queued_release(&q);
}

bool save_cancel_delete(struct save *sv, enum coll c, const char *id)
{
	struct queued q = { .coll = coll_name(c), .id = id,
			    .method = is_delete };
	bool found;

	pthread_mutex_lock(&sv->send_lock);
	found = find_queued(sv, &q);
	if (found)
		cache_blob_del(sv->cache, CACHE_JOURNAL, q.key);
	pthread_mutex_unlock(&sv->send_lock);
	queued_release(&q);
	if (found)
		log_debug("'%s/%s.json' was written again: not deleting it",
			  coll_name(c), id);
	return found;
}

/*
 * A DELETE goes out only if it was not taken back meanwhile; the lock
 * keeps a create of the same name from slipping between the check and
 * the request.
 */
static int deliver_delete(struct save *sv, const char *key, enum coll c,
			  const char *id, struct api_error *ae)
{
	struct api_result res = { 0 };
	char *val;
	size_t len;
	int err = 0;

	pthread_mutex_lock(&sv->send_lock);
	if (!cache_blob_get(sv->cache, CACHE_JOURNAL, key, &val, &len)) {
		free(val);
		err = api_delete(sv->api, coll_name(c), id, &res);
		if (!err || err == -ENOENT) {
			store_forget(sv->store, c, id);
			err = 0;
		}
		/* Gone while locked: a create now cannot take it back. */
		if (err != -EAGAIN)
			cache_blob_del(sv->cache, CACHE_JOURNAL, key);
		*ae = res.err;
	}
	pthread_mutex_unlock(&sv->send_lock);
	api_result_release(&res);
	return err;
}

/* Delivery of the journal */

/*
 * Send one queued entry; 0 when it is done with (delivered or refused).
 * NEEDSWORK: a queued PATCH is not checked for fields the server changed
 * while it waited (it still sends only the user's fields), and a create
 * whose answer was lost to a crash before the entry was removed is sent
 * again: the API has no idempotency key to make that safe.
 */
static int deliver(struct save *sv, const char *key, cJSON *e)
{
	const char *method = str_of(e, "method");
	const char *cname = str_of(e, "coll");
	const char *name = str_of(e, "name");
	const char *id = str_of(e, "id");
	const char *text = str_of(e, "text");
	const cJSON *body = cJSON_GetObjectItem(e, "body");
	struct api_result res = { 0 };
	struct api_error ae = { 0 };
	int c = cname ? coll_lookup(cname, strlen(cname)) : -1;
	char *new_id = NULL, why[1024];
	int err;

	if (c < 0 || !method || !name) {
		log_err("dropping a damaged entry from the write journal");
		return 0;
	}
	if (!strcmp(method, "PATCH") && id) {
		err = api_patch(sv->api, cname, id, body, &res);
		if (!err)
			store_note_written(sv->store, c, id, body);
		if (!err && cJSON_IsObject(res.data))
			store_put(sv->store, c, res.data, NULL);
		ae = res.err;
	} else if (!strcmp(method, "DELETE") && id) {
		err = deliver_delete(sv, key, c, id, &ae);
	} else {
		err = deliver_create(sv, key, e, c, name, &new_id, &ae);
	}
	api_result_release(&res);

	if (!err)
		log_debug("delivered the queued '%s %s/%s'", method, cname,
			  name);
	if (err && err != -EAGAIN && !strcmp(method, "DELETE")) {
		api_error_describe(&ae, why, sizeof(why));
		log_err("cannot delete '%s/%s': %s; it shows again", cname,
			name, why);
		if (sv->event)
			sv->event(sv->event_arg, SAVE_DELETE_REFUSED, c, name,
				  id);
		err = 0;
	} else if (err && err != -EAGAIN) {
		if (id && !strcmp(method, "PATCH"))
			cache_record_del(sv->cache, cname, id);
		if (!id && sv->event)
			sv->event(sv->event_arg, SAVE_CREATE_REFUSED, c, name,
				  NULL);
		reject_api(sv, c, name, text ? text : "", err, &ae);
		err = 0;
	}
	free(new_id);
	return err;
}

/*
 * Record a failed try in the entry as the journal holds it now, not in
 * the round's copy: meanwhile the entry may have been taken back (rm of a
 * queued create) or rewritten (a new save of the same new file).
 */
static void note_failure(struct save *sv, const char *key, const cJSON *sent)
{
	bool offline = api_offline(sv->api);
	cJSON *e = NULL, *attempts;
	char *val;
	size_t len;

	pthread_mutex_lock(&sv->send_lock);
	if (!cache_blob_get(sv->cache, CACHE_JOURNAL, key, &val, &len)) {
		e = cJSON_ParseWithLength(val, len);
		free(val);
	}
	if (e) {
		/* Offline, nothing went out: not an attempt. */
		attempts = offline ? NULL : cJSON_GetObjectItem(e, "attempts");
		if (attempts)
			cJSON_SetNumberValue(attempts,
					     attempts->valuedouble + 1);
		if (cJSON_IsTrue(cJSON_GetObjectItem(sent, "maybe_applied")) &&
		    !cJSON_GetObjectItem(e, "maybe_applied"))
			cJSON_AddTrueToObject(e, "maybe_applied");
		cJSON_DeleteItemFromObject(e, "last_error");
		cJSON_AddStringToObject(e, "last_error", offline ?
			"offline: sent at the next online mount" :
			"the API is unreachable");
		journal_put(sv, key, e);
	}
	pthread_mutex_unlock(&sv->send_lock);
	cJSON_Delete(e);
}

/* When an entry may go out (deletes wait a moment), 0 for at once. */
static int64_t not_before(const cJSON *e)
{
	const cJSON *nb = cJSON_GetObjectItem(e, "not_before");

	return cJSON_IsNumber(nb) ? (int64_t)nb->valuedouble : 0;
}

struct round {
	size_t left;		/* entries still queued */
	bool failed;		/* the server could not be reached */
	int64_t next_at;	/* a waiting entry's time, else 0 */
};

/*
 * One delivery round over a copy of the journal (the walk itself runs in a
 * read transaction, and delivering writes to the cache).  Entries go in
 * order and the round stops at the first that cannot go yet: a later save
 * of a record must not overtake an earlier one.  When stopping, nothing
 * waits for its time.
 */
static struct round deliver_round(struct save *sv, bool stopping)
{
	cJSON *list = journal_list(sv), *e;
	struct round r = { 0 };

	r.left = cJSON_GetArraySize(list);
	cJSON_ArrayForEach(e, list) {
		char *key = strdup(str_of(e, "_key"));

		cJSON_DeleteItemFromObject(e, "_key");
		if (!stopping && not_before(e) > store_now_ms()) {
			r.next_at = not_before(e);
			free(key);
			break;
		}
		if (deliver(sv, key, e)) {
			note_failure(sv, key, e);
			free(key);
			r.failed = true;
			break;
		}
		cache_blob_del(sv->cache, CACHE_JOURNAL, key);
		free(key);
		r.left--;
	}
	cJSON_Delete(list);
	return r;
}

static void *delivery_thread(void *arg)
{
	struct save *sv = arg;
	int64_t wait_ms = RETRY_MIN_MS;
	bool stopping = false;

	for (;;) {
		struct round r = deliver_round(sv, stopping);
		struct timespec until;
		int64_t at;

		/* Offline, nothing can be delivered: no grace period either. */
		pthread_mutex_lock(&sv->lock);
		if (sv->stopping && (r.left == 0 || api_offline(sv->api) ||
				     store_now_ms() >= sv->deadline_ms)) {
			pthread_mutex_unlock(&sv->lock);
			break;
		}
		wait_ms = !r.failed ? RETRY_MIN_MS :
			  wait_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS :
			  wait_ms * 2;
		at = store_now_ms() + (r.failed ? wait_ms : 60000);
		if (r.next_at && r.next_at < at)
			at = r.next_at;
		if (sv->stopping && at > sv->deadline_ms)
			at = sv->deadline_ms;
		until.tv_sec = at / 1000;
		until.tv_nsec = (at % 1000) * 1000000;
		if (!sv->stopping || r.failed)
			pthread_cond_timedwait(&sv->wake, &sv->lock, &until);
		stopping = sv->stopping;
		pthread_mutex_unlock(&sv->lock);
	}
	return NULL;
}

int save_new(struct store *store, save_event_fn event, void *arg,
	     struct save **out)
{
	struct save *sv = calloc(1, sizeof(*sv));
	pthread_condattr_t ca;

	if (!sv)
		return -ENOMEM;
	sv->store = store;
	sv->cache = store_cache(store);
	sv->api = store_api(store);
	sv->event = event;
	sv->event_arg = arg;
	sv->made = strmap_new();
	if (!sv->made) {
		free(sv);
		return -ENOMEM;
	}
	pthread_mutex_init(&sv->lock, NULL);
	pthread_mutex_init(&sv->send_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_REALTIME);
	pthread_cond_init(&sv->wake, &ca);
	pthread_condattr_destroy(&ca);
	*out = sv;
	return 0;
}

int save_start(struct save *sv)
{
	if (pthread_create(&sv->thread, NULL, delivery_thread, sv))
		return -EAGAIN;
	sv->started = true;
	return 0;
}

void save_free(struct save *sv, int grace_s)
{
	cJSON *left;
	int n;

	if (!sv)
		return;
	pthread_mutex_lock(&sv->lock);
	sv->stopping = true;
	sv->deadline_ms = store_now_ms() + (int64_t)grace_s * 1000;
	pthread_cond_signal(&sv->wake);
	pthread_mutex_unlock(&sv->lock);
	if (sv->started)
		pthread_join(sv->thread, NULL);

	left = save_pending_json(sv);
	n = cJSON_GetArraySize(left);
	cJSON_Delete(left);
	if (n)
		log_warn("%d saves could not be delivered and stay queued; "
			 "they are retried at the next mount", n);
	pthread_cond_destroy(&sv->wake);
	pthread_mutex_destroy(&sv->lock);
	pthread_mutex_destroy(&sv->send_lock);
	strmap_free(sv->made, free);
	free(sv);
}

/* Status and .klipy/rejected */

cJSON *save_pending_json(struct save *sv)
{
	cJSON *list = journal_list(sv), *out = cJSON_CreateArray(), *e;
	char file[512];

	cJSON_ArrayForEach(e, list) {
		cJSON *item = cJSON_CreateObject();

		snprintf(file, sizeof(file), "%s/%s", str_of(e, "coll") ?: "?",
			 str_of(e, "name") ?: "?");
		cJSON_AddStringToObject(item, "file", file);
		cJSON_AddStringToObject(item, "method",
					str_of(e, "method") ?: "?");
		cJSON_AddItemToObject(item, "attempts", cJSON_Duplicate(
			cJSON_GetObjectItem(e, "attempts"), true));
		if (str_of(e, "last_error"))
			cJSON_AddStringToObject(item, "last_error",
						str_of(e, "last_error"));
		cJSON_AddItemToArray(out, item);
	}
	cJSON_Delete(list);
	return out;
}

static int add_rejected(void *arg, const char *key, const char *val,
			size_t len)
{
	cJSON *list = arg, *e = cJSON_ParseWithLength(val, len), *item;

	item = cJSON_CreateObject();
	cJSON_AddStringToObject(item, "file", key);
	cJSON_AddStringToObject(item, "reason",
		str_of(e, "reason") ?: "");
	cJSON_AddItemToArray(list, item);
	cJSON_Delete(e);
	return 0;
}

cJSON *save_rejected_json(struct save *sv)
{
	cJSON *list = cJSON_CreateArray();

	cache_blob_foreach(sv->cache, CACHE_REJECTED, "", add_rejected, list);
	return list;
}

struct names {
	size_t skip;
	char **names;
	size_t n;
};

static int add_name(void *arg, const char *key, const char *val, size_t len)
{
	struct names *nl = arg;
	char **p = realloc(nl->names, (nl->n + 1) * sizeof(*p));

	(void)val;
	(void)len;
	if (!p)
		return -ENOMEM;
	nl->names = p;
	nl->names[nl->n] = strdup(key + nl->skip);
	return nl->names[nl->n++] ? 0 : -ENOMEM;
}

int save_rejected_names(struct save *sv, enum coll c, char ***names,
			size_t *n)
{
	struct names nl = { 0 };
	char prefix[64];
	int err;

	snprintf(prefix, sizeof(prefix), "%s/", coll_name(c));
	nl.skip = strlen(prefix);
	err = cache_blob_foreach(sv->cache, CACHE_REJECTED, prefix, add_name,
				 &nl);
	*names = nl.names;
	*n = nl.n;
	return err;
}

int save_rejected_text(struct save *sv, enum coll c, const char *name,
		       char **text, size_t *len)
{
	char key[512], *val;
	size_t vlen;
	cJSON *e;
	const char *t;
	int err;

	file_key(key, sizeof(key), c, name);
	err = cache_blob_get(sv->cache, CACHE_REJECTED, key, &val, &vlen);
	if (err)
		return err;
	e = cJSON_ParseWithLength(val, vlen);
	free(val);
	t = str_of(e, "text");
	*text = strdup(t ? t : "");
	*len = strlen(*text);
	cJSON_Delete(e);
	return 0;
}

int save_rejected_remove(struct save *sv, enum coll c, const char *name)
{
	char key[512];

	file_key(key, sizeof(key), c, name);
	return cache_blob_del(sv->cache, CACHE_REJECTED, key);
}

void save_queued_creates(struct save *sv,
			 void (*fn)(void *arg, enum coll c, const char *name,
				    const char *text),
			 void *arg)
{
	struct queued q = { .method = is_create };
	cJSON *list = journal_list(sv), *e;

	cJSON_ArrayForEach(e, list) {
		const char *c = str_of(e, "coll");
		int coll = c ? coll_lookup(c, strlen(c)) : -1;

		if (queued_matches(&q, e) && coll >= 0 && str_of(e, "name") &&
		    str_of(e, "text"))
			fn(arg, coll, str_of(e, "name"), str_of(e, "text"));
	}
	cJSON_Delete(list);
}
