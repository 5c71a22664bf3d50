/* ops: see include/ops.h */
#include "ops.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "node.h"
#include "path.h"
#include "record.h"
#include "status.h"
#include "strmap.h"

struct fs {
	struct store *store;
	struct save *save;
	struct fs_config cfg;

	pthread_mutex_t lock;	/* guards nodes, sizes and every node */
	struct strmap *nodes;	/* path -> struct node * */
	struct strmap *sizes;	/* path -> struct shown: what the kernel saw */
	struct strmap *served;	/* path -> struct cache_record last read */
	time_t mounted_at;	/* directories' times */
};

/* The size last handed to the kernel for a path. */
struct shown {
	size_t size;
};

/* An open file: a node, or a snapshot of a record or .klipy file. */
struct handle {
	struct node *node;
	bool writer;
	pid_t opener;		/* thread that opened it, for op_flush */
	char *snap;
	size_t snap_len;
	mode_t snap_mode;	/* what fstat shows of a snapshot */
	int64_t snap_mtime;	/* ms */
};

/* An open collection directory. */
struct dir_handle {
	int64_t gen;		/* listing generation, see store.h */
	char **ids;		/* companies/: the ids, taken at opendir */
	size_t nids;
	char **locals;		/* local files, taken when first reached */
	size_t nlocals;
	bool locals_taken;
};

static struct fs **get_fs_holder(void)
{
	return fuse_get_context()->private_data;
}

static struct fs *get_fs(void)
{
	return fuse_get_context()->private_data;
}

/* Attributes */

static void fill_dir(struct fs *fs, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR | 0755;
	st->st_mtime = st->st_ctime = st->st_atime = fs->mounted_at;
	st->st_nlink = 2;
	st->st_uid = fs->cfg.uid;
	st->st_gid = fs->cfg.gid;
}

static struct timespec ms_to_timespec(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	return ts;
}

static int64_t timespec_to_ms(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fill_file(struct fs *fs, struct stat *st, mode_t mode,
		      size_t size, int64_t mtime_ms)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
	st->st_uid = fs->cfg.uid;
	st->st_gid = fs->cfg.gid;
	st->st_size = size;
	st->st_blocks = (size + 511) / 512;
	st->st_mtim = ms_to_timespec(mtime_ms);
	st->st_ctim = st->st_atim = st->st_mtim;
}

static mode_t record_mode(enum coll c)
{
	return c == COLL_INTERACTIONS ? 0444 : 0644;
}

/* Remember what the kernel was told; caller holds fs->lock. */
static void note_shown(struct fs *fs, const char *path, size_t size)
{
	struct shown *s = strmap_get(fs->sizes, path);

	if (!s) {
		s = malloc(sizeof(*s));
		if (!s || strmap_put(fs->sizes, path, s, NULL)) {
			free(s);
			return;
		}
	}
	s->size = size;
}

static void free_record(void *rec)
{
	cache_record_release(rec);
	free(rec);
}

/*
 * Remember the version a reader was given: a later save of the path is a
 * change from that version, not from whatever the cache holds by then.
 * Caller holds fs->lock.
 */
static void note_served(struct fs *fs, const char *path,
			const struct cache_record *rec)
{
	struct cache_record *copy = calloc(1, sizeof(*copy));
	void *old = NULL;

	if (!copy)
		return;
	*copy = *rec;
	copy->text = strndup(rec->text, rec->len);
	if (!copy->text || strmap_put(fs->served, path, copy, &old)) {
		free_record(copy);
		return;
	}
	if (old)
		free_record(old);
}

/* Base an edit of @path on the version last served, else on @current. */
static int set_edit_base(struct fs *fs, struct node *n, const char *path,
			 const struct cache_record *current)
{
	const struct cache_record *base;
	int err;

	pthread_mutex_lock(&fs->lock);
	base = strmap_get(fs->served, path);
	if (!base)
		base = current;
	err = node_set_base(n, base->text, base->len);
	pthread_mutex_unlock(&fs->lock);
	return err;
}

static void fill_node(struct fs *fs, struct stat *st, const struct node *n)
{
	if (n->kind == NODE_SYMLINK) {
		fill_file(fs, st, 0777, strlen(n->link),
			  timespec_to_ms(n->mtime));
		st->st_mode = S_IFLNK | 0777;
		return;
	}
	fill_file(fs, st, n->mode & 07777, n->len, timespec_to_ms(n->mtime));
	st->st_mtim = n->mtime;
}

/* The record id a name stands for, following an alias; NULL if none. */
static char *resolve_id(struct fs *fs, const char *path,
			const struct fpath *fp, struct node **local)
{
	struct node *n = strmap_get(fs->nodes, path);

	*local = NULL;
	if (n && n->kind == NODE_ALIAS)
		return strdup(n->link);
	if (n) {
		node_ref(n);
		*local = n;
		return NULL;
	}
	if (!fp->record || !store_plausible_id(fp->stem))
		return NULL;
	return strdup(fp->stem);
}

static int stat_record(struct fs *fs, enum coll c, const char *id,
		       struct stat *st, struct cache_record *rec_out)
{
	struct cache_record rec;
	int err;

	err = store_get(fs->store, c, id, false, rec_out != NULL, &rec);
	if (err)
		return err;
	fill_file(fs, st, record_mode(c), rec.len, rec.mtime);
	if (rec_out)
		*rec_out = rec;
	else
		cache_record_release(&rec);
	return 0;
}

static int stat_entry(struct fs *fs, const char *path, const struct fpath *fp,
		      struct stat *st)
{
	struct node *n;
	char *id;
	int err;

	pthread_mutex_lock(&fs->lock);
	id = resolve_id(fs, path, fp, &n);
	if (n && n->kind != NODE_HIDDEN)
		fill_node(fs, st, n);
	if (n && n->kind == NODE_FILE)
		note_shown(fs, path, st->st_size);
	pthread_mutex_unlock(&fs->lock);
	if (n) {
		err = n->kind == NODE_HIDDEN ? -ENOENT : 0;
		node_unref(n);
		return err;
	}
	if (!id)
		return -ENOENT;
	err = stat_record(fs, fp->coll, id, st, NULL);
	free(id);
	if (!err) {
		pthread_mutex_lock(&fs->lock);
		note_shown(fs, path, st->st_size);
		pthread_mutex_unlock(&fs->lock);
	}
	return err;
}

static struct status_source status_of(struct fs *fs)
{
	struct status_source src = {
		.store = fs->store,
		.save = fs->save,
		.org_id = fs->cfg.org_id,
		.org_name = fs->cfg.org_name,
		.cache_dir = fs->cfg.cache_dir,
	};

	return src;
}

/*
 * The attributes of an open file whose name is gone (unlinked, or
 * replaced by a rename save while open): libfuse then passes a NULL path
 * with the handle.  NEEDSWORK: a stat without the handle (fstat(2)) of
 * such a file fails with ESTALE inside libfuse's high-level layer, which
 * has no path for it; only the low-level API could answer it.
 */
static int stat_handle(struct fs *fs, struct fuse_file_info *fi,
		       struct stat *st)
{
	struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;

	if (!h)
		return -ESTALE;
	if (h->node) {
		pthread_mutex_lock(&fs->lock);
		fill_node(fs, st, h->node);
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	fill_file(fs, st, h->snap_mode, h->snap_len, h->snap_mtime);
	return 0;
}

static int op_getattr(const char *path, struct stat *st,
		      struct fuse_file_info *fi)
{
	struct fs *fs = get_fs();
	struct status_source src;
	struct fpath fp;
	char *text;
	size_t len;

	if (!path)
		return stat_handle(fs, fi, st);
	path_parse(path, &fp);
	switch (fp.kind) {
	case P_ROOT:
	case P_COLL:
	case P_META:
	case P_REJ:
	case P_REJ_COLL:
		fill_dir(fs, st);
		return 0;
	case P_STATUS:
		src = status_of(fs);
		text = status_text(&src, &len);
		fill_file(fs, st, 0444, text ? len : 0, store_now_ms());
		free(text);
		return 0;
	case P_REJ_FILE:
		if (save_rejected_text(fs->save, fp.coll, fp.name, &text, &len))
			return -ENOENT;
		free(text);
		fill_file(fs, st, 0644, len, store_now_ms());
		return 0;
	case P_ENTRY:
		return stat_entry(fs, path, &fp, st);
	case P_TOOLONG:
		return -ENAMETOOLONG;
	default:
		return -ENOENT;
	}
}

/* Node table; callers hold fs->lock */

/* Put @n at @path, dropping whatever was there. */
static int table_put(struct fs *fs, const char *path, struct node *n)
{
	void *old = NULL;
	int err;

	err = node_set_str(&n->path, path);
	if (!err)
		err = strmap_put(fs->nodes, path, n, &old);
	if (err)
		return err;
	node_ref(n);
	node_unref(old);
	return 0;
}

static void table_del(struct fs *fs, const char *path)
{
	node_unref(strmap_del(fs->nodes, path));
}

/* Mark a record name as renamed away. */
static int table_hide(struct fs *fs, const char *path, const char *id)
{
	struct node *n = node_new(NODE_HIDDEN, path);
	int err;

	if (!n)
		return -ENOMEM;
	err = node_set_str(&n->id, id);
	if (!err)
		err = table_put(fs, path, n);
	node_unref(n);
	return err;
}

/*
 * The record a hidden name saves to when written again: one renamed away
 * is still there; a deleted one only while its DELETE can be taken back.
 */
static char *revive(struct fs *fs, enum coll c, char *id, bool deleting)
{
	if (id && deleting && !save_cancel_delete(fs->save, c, id)) {
		free(id);
		return NULL;
	}
	return id;
}

/* After a save: the name shows the record again, directly or as an alias. */
static void settle(struct fs *fs, struct node *n)
{
	const struct fpath *fp;
	struct fpath parsed;
	struct node *alias;

	/*
	 * A create the server refused stays as a local file holding the
	 * text: the kernel still knows the name, and the next save retries.
	 */
	if (strmap_get(fs->nodes, n->path) != n || n->writers || n->dirty ||
	    n->scratch || n->draft || !n->id)
		return;
	path_parse(n->path, &parsed);
	fp = &parsed;
	if (fp->record && !strcmp(fp->stem, n->id)) {
		table_del(fs, n->path);
		return;
	}
	alias = node_new(NODE_ALIAS, n->path);
	if (alias && !node_set_str(&alias->link, n->id))
		table_put(fs, n->path, alias);
	node_unref(alias);
}

/*
 * Make the kernel ask again for the attributes (and pages) of @path, after
 * its text changed under it.  Safe from open, flush, fsync and release;
 * never from setattr, rename or unlink of the same file, where the kernel
 * holds locks the invalidation needs.
 */
static void forget_attrs(const char *path)
{
	if (path)	/* NULL once the file was unlinked */
		fuse_invalidate_path(fuse_get_context()->fuse, path);
}

/* Saving */

/*
 * Send what @n holds to the server, unlocked; fs->lock is not held on
 * entry.  The node is marked clean first, so writes arriving meanwhile
 * make it dirty again and are saved by the next flush.
 */
static int commit(struct fs *fs, struct node *n)
{
	struct save_result res = { 0 };
	struct save_req req = { 0 };
	struct fpath fp;
	char *text, *id, *base, *path;
	int err;

	pthread_mutex_lock(&fs->lock);
	if (!n->dirty) {
		/* Another close of the same file is already saving it. */
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	text = malloc(n->len + 1);
	if (text) {
		memcpy(text, n->buf, n->len);
		text[n->len] = '\0';
	}
	req.len = n->len;
	id = n->id ? strdup(n->id) : NULL;
	base = n->base ? strdup(n->base) : NULL;
	req.base_len = n->base_len;
	path = strdup(n->path);
	if (!text || !path || (n->id && !id) || (n->base && !base)) {
		n->error = -ENOMEM;	/* still dirty: the next close retries */
		pthread_mutex_unlock(&fs->lock);
		err = -ENOMEM;
		goto out;
	}
	n->dirty = false;
	pthread_mutex_unlock(&fs->lock);

	path_parse(path, &fp);
	req.coll = fp.coll;
	req.name = fp.name;
	req.id = id;
	req.base = base;
	req.text = text;
	err = save_commit(fs->save, &req, &res);

	pthread_mutex_lock(&fs->lock);
	n->error = err;
	n->draft = !err && res.draft;
	if (!err && res.id)
		node_set_str(&n->id, res.id);
	if (!err && n->id && !res.draft) {
		struct cache_record rec;

		if (!cache_record_get(store_cache(fs->store), coll_name(fp.coll),
				      n->id, &rec)) {
			node_set_base(n, rec.text, rec.len);
			note_served(fs, path, &rec);
			n->mtime = ms_to_timespec(rec.mtime);
			cache_record_release(&rec);
		}
	}
	if (res.pending && !n->id)
		n->draft = true;	/* shown as written until delivered */
	settle(fs, n);
	pthread_mutex_unlock(&fs->lock);
	save_result_release(&res);
out:
	free(text);
	free(id);
	free(base);
	free(path);
	return err;
}

/*
 * A node for editing record @id at @path, holding its current text (or
 * nothing when @truncate).  Called without fs->lock.
 */
static int edit_node(struct fs *fs, const char *path, enum coll c,
		     const char *id, bool truncate, struct node **out)
{
	struct cache_record rec;
	struct node *n;
	int err;

	if (c == COLL_INTERACTIONS)
		return -EPERM;
	err = store_get(fs->store, c, id, false, true, &rec);
	if (err)
		return err;
	store_remember(fs->store, c, id, rec.text, rec.len);
	n = node_new(NODE_FILE, path);
	err = n ? node_set_str(&n->id, id) : -ENOMEM;
	if (!err)
		err = set_edit_base(fs, n, path, &rec);
	if (!err && !truncate)
		err = node_set_text(n, rec.text, rec.len);
	cache_record_release(&rec);
	if (err) {
		node_unref(n);
		return err;
	}
	n->mode = record_mode(c);
	*out = n;
	return 0;
}

/* Open and create */

/* A read-only handle on @text (taken over), shown with @mode and @mtime_ms. */
static int open_snapshot(struct fuse_file_info *fi, char *text, size_t len,
			 mode_t mode, int64_t mtime_ms, bool direct)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h) {
		free(text);
		return -ENOMEM;
	}
	h->snap = text;
	h->snap_len = len;
	h->snap_mode = mode;
	h->snap_mtime = mtime_ms;
	fi->fh = (uintptr_t)h;
	fi->direct_io = direct;
	/* Nothing to save at close: spare the kernel a FLUSH round trip. */
	fi->noflush = 1;
	return 0;
}

static int open_node(struct fuse_file_info *fi, struct node *n, bool writer)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	node_ref(n);
	h->node = n;
	h->writer = writer;
	h->opener = fuse_get_context()->pid;
	if (writer)
		n->writers++;
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	return 0;
}

static bool wants_write(const struct fuse_file_info *fi)
{
	return (fi->flags & O_ACCMODE) != O_RDONLY;
}

/*
 * Reading a record serves the text of one version.  The page cache is kept
 * only when the last reader was served exactly this text; when the size
 * the kernel last saw differs, reads bypass the cache, so a stale size can
 * never cut the text short.
 */
static int open_record_read(struct fs *fs, const char *path, enum coll c,
			    const char *id, struct fuse_file_info *fi)
{
	const struct cache_record *prev;
	struct cache_record rec;
	bool size_ok, same_text;
	struct shown *s;
	int err;

	err = store_get(fs->store, c, id, false, true, &rec);
	if (err)
		return err;
	pthread_mutex_lock(&fs->lock);
	s = strmap_get(fs->sizes, path);
	prev = strmap_get(fs->served, path);
	size_ok = s && s->size == rec.len;
	same_text = prev && prev->len == rec.len &&
		    !memcmp(prev->text, rec.text, rec.len);
	if (!same_text)
		note_served(fs, path, &rec);
	pthread_mutex_unlock(&fs->lock);
	if (!same_text)
		store_remember(fs->store, c, id, rec.text, rec.len);
	err = open_snapshot(fi, rec.text, rec.len, record_mode(c), rec.mtime,
			    !size_ok);
	if (!err)
		fi->keep_cache = size_ok && same_text;
	if (!err && !size_ok)
		forget_attrs(path);	/* let the next stat see this size */
	return err;
}

static int open_entry(struct fs *fs, const char *path, const struct fpath *fp,
		      struct fuse_file_info *fi)
{
	bool write = wants_write(fi), trunc = fi->flags & O_TRUNC;
	struct node *n, *mine = NULL;
	char *id;
	int err;

	pthread_mutex_lock(&fs->lock);
	id = resolve_id(fs, path, fp, &n);
	if (n && n->kind == NODE_FILE) {
		if (write && trunc) {
			node_truncate(n, 0);
			n->dirty = true;
		}
		err = open_node(fi, n, write);
	} else {
		err = n ? -ENOENT : 0;
	}
	pthread_mutex_unlock(&fs->lock);
	if (n) {
		node_unref(n);
		free(id);
		return err;
	}
	if (!id)
		return -ENOENT;
	if (!write) {
		err = open_record_read(fs, path, fp->coll, id, fi);
		free(id);
		return err;
	}

	err = edit_node(fs, path, fp->coll, id, trunc, &mine);
	free(id);
	if (err)
		return err;
	pthread_mutex_lock(&fs->lock);
	n = strmap_get(fs->nodes, path);
	if (!n || n->kind != NODE_FILE) {
		n = mine;
		err = table_put(fs, path, n);
	}
	if (!err) {
		if (trunc && n != mine) {
			node_truncate(n, 0);
			n->dirty = true;
		}
		mine->dirty = trunc;
		err = open_node(fi, n, true);
	}
	pthread_mutex_unlock(&fs->lock);
	node_unref(mine);
	return err;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs();
	struct status_source src;
	struct fpath fp;
	char *text;
	size_t len;
	int err;

	path_parse(path, &fp);
	switch (fp.kind) {
	case P_STATUS:
		if (wants_write(fi))
			return -EACCES;
		src = status_of(fs);
		text = status_text(&src, &len);
		return text ? open_snapshot(fi, text, len, 0444,
					    store_now_ms(), true) : -ENOMEM;
	case P_REJ_FILE:
		if (wants_write(fi))
			return -EACCES;
		err = save_rejected_text(fs->save, fp.coll, fp.name, &text,
					 &len);
		return err ? err : open_snapshot(fi, text, len, 0644,
						 store_now_ms(), true);
	case P_ENTRY:
		return open_entry(fs, path, &fp, fi);
	default:
		return -EISDIR;
	}
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs();
	struct cache_record rec = { 0 };
	struct node *n, *old;
	bool deleting;
	struct fpath fp;
	int err = 0;

	path_parse(path, &fp);
	if (fp.kind != P_ENTRY)
		return -EACCES;
	n = node_new(NODE_FILE, path);
	if (!n)
		return -ENOMEM;
	n->mode = mode & 07777;
	n->dirty = fp.record;
	n->scratch = !fp.record;
	n->draft = fp.record;

	/* A record renamed away (or just deleted) and written anew is an
	 * update of it. */
	pthread_mutex_lock(&fs->lock);
	old = strmap_get(fs->nodes, path);
	if (old && (old->kind == NODE_HIDDEN || old->kind == NODE_ALIAS))
		err = node_set_str(&n->id, old->kind == NODE_HIDDEN ?
				   old->id : old->link);
	deleting = old && old->kind == NODE_HIDDEN && old->deleting;
	pthread_mutex_unlock(&fs->lock);
	n->id = revive(fs, fp.coll, n->id, deleting);
	if (!err && n->id && fp.coll == COLL_INTERACTIONS)
		err = -EPERM;
	if (!err && n->id) {
		n->draft = false;
		n->mode = record_mode(fp.coll);
		if (!store_get(fs->store, fp.coll, n->id, true, true, &rec))
			err = set_edit_base(fs, n, path, &rec);
		cache_record_release(&rec);
	}

	pthread_mutex_lock(&fs->lock);
	if (!err)
		err = table_put(fs, path, n);
	if (!err)
		err = open_node(fi, n, true);
	pthread_mutex_unlock(&fs->lock);
	node_unref(n);
	return err;
}

/* Reading and writing */

static int op_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct fs *fs = get_fs();
	size_t n;

	(void)path;
	if (h->node) {
		pthread_mutex_lock(&fs->lock);
		n = node_read(h->node, buf, size, off);
		pthread_mutex_unlock(&fs->lock);
		return n;
	}
	if (off >= (off_t)h->snap_len)
		return 0;
	n = h->snap_len - off < size ? h->snap_len - off : size;
	memcpy(buf, h->snap + off, n);
	return n;
}

/*
 * A write or truncate through @n: the text is now the user's, and the
 * kernel takes the new size without asking.  Caller holds fs->lock.
 */
static void note_changed(struct fs *fs, struct node *n)
{
	n->dirty = true;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	note_shown(fs, n->path, n->len);
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct fs *fs = get_fs();
	int err;

	(void)path;
	if (!h->node || !h->writer)
		return -EBADF;
	pthread_mutex_lock(&fs->lock);
	err = node_write(h->node, buf, size, off);
	if (!err)
		note_changed(fs, h->node);
	pthread_mutex_unlock(&fs->lock);
	return err ? err : (int)size;
}

/* True when @n holds a save that should go out now. */
static bool due(struct fs *fs, struct node *n, bool last_writer_only)
{
	bool ret;

	pthread_mutex_lock(&fs->lock);
	ret = n->kind == NODE_FILE && n->dirty && !n->scratch &&
	      strmap_get(fs->nodes, n->path) == n &&
	      (!last_writer_only || n->writers <= 1);
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

/*
 * A refusal is reported once: at the fsync or close that saved the text,
 * or at the next close when an editor ignored it at fsync (emacs does).
 */
static int take_error(struct fs *fs, struct node *n)
{
	int err;

	pthread_mutex_lock(&fs->lock);
	err = n->dirty ? 0 : n->error;
	n->error = 0;
	pthread_mutex_unlock(&fs->lock);
	return err;
}

/*
 * close() reports what flush returns, so the save happens here, once the
 * last writer closes; a file still open elsewhere saves at its last close.
 * An empty file is not saved at a flush: the shell's `cmd > file` opens
 * with O_TRUNC and closes a duplicate of the descriptor before anything
 * is written.  Should it stay empty, release saves (and refuses) it.
 */
/* True when @n holds one whole JSON object. */
static bool holds_object(struct fs *fs, struct node *n)
{
	cJSON *v = NULL;
	bool ok;

	pthread_mutex_lock(&fs->lock);
	ok = !record_parse(n->buf ? n->buf : "", n->len, &v);
	pthread_mutex_unlock(&fs->lock);
	cJSON_Delete(v);
	return ok;
}

/* The process (thread group) of thread @tid, or @tid once it is gone. */
static pid_t tgid_of(pid_t tid)
{
	char path[64], line[128];
	int tgid = tid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return tid;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %d", &tgid) == 1)
			break;
	fclose(f);
	return tgid;
}

/* Whether threads @a and @b belong to one process; /proc only if they differ. */
static bool same_process(pid_t a, pid_t b)
{
	return a == b || tgid_of(a) == tgid_of(b);
}

static int op_flush(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct fs *fs = get_fs();
	bool empty;

	int err;

	if (!h->node || !h->writer)
		return 0;
	/*
	 * Another process closing its copy of the descriptor (a command the
	 * opening shell ran) may not have finished the text: unless it is a
	 * whole JSON object by now, the opener's close, an fsync or the
	 * release saves it.
	 */
	if (!same_process(fuse_get_context()->pid, h->opener) &&
	    !holds_object(fs, h->node))
		return 0;
	if (!due(fs, h->node, true))
		return take_error(fs, h->node);
	pthread_mutex_lock(&fs->lock);
	empty = h->node->len == 0;
	pthread_mutex_unlock(&fs->lock);
	if (empty)
		return 0;
	err = commit(fs, h->node);
	forget_attrs(path);
	if (err == -ENOMEM)
		return err;	/* not even tried: the text is still dirty */
	return err ? take_error(fs, h->node) : 0;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	int err;

	(void)datasync;
	if (!h->node || !due(get_fs(), h->node, false))
		return 0;
	err = commit(get_fs(), h->node);
	forget_attrs(path);
	return err;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct fs *fs = get_fs();
	struct node *n = h->node;
	bool leftover = false;

	if (n) {
		pthread_mutex_lock(&fs->lock);
		if (h->writer)
			n->writers--;
		leftover = !n->writers;
		pthread_mutex_unlock(&fs->lock);
		/*
		 * Saves that missed their flush go now: a writer raced it, or
		 * the file was renamed onto a record while open.
		 */
		if (leftover && due(fs, n, false)) {
			commit(fs, n);
			forget_attrs(path);
		}
		pthread_mutex_lock(&fs->lock);
		settle(fs, n);
		pthread_mutex_unlock(&fs->lock);
		node_unref(n);
	}
	free(h->snap);
	free(h);
	return 0;
}

/*
 * A truncate by name (truncate(1), or O_TRUNC without atomic support) is
 * a whole edit: the record is saved at once.
 */
static int truncate_record(struct fs *fs, const char *path,
			   const struct fpath *fp, off_t size)
{
	struct node *n, *local;
	char *id;
	int err;

	pthread_mutex_lock(&fs->lock);
	id = resolve_id(fs, path, fp, &local);
	if (local && local->kind == NODE_FILE) {
		err = node_truncate(local, size);
		local->dirty = !err;
	} else {
		err = local ? -ENOENT : 0;
	}
	pthread_mutex_unlock(&fs->lock);
	if (local) {
		if (!err && !local->writers && due(fs, local, false))
			err = commit(fs, local);
		node_unref(local);
		free(id);
		return err;
	}
	if (!id)
		return -ENOENT;
	err = edit_node(fs, path, fp->coll, id, false, &n);
	free(id);
	if (err)
		return err;
	err = node_truncate(n, size);
	n->dirty = true;
	pthread_mutex_lock(&fs->lock);
	if (!err)
		err = table_put(fs, path, n);
	pthread_mutex_unlock(&fs->lock);
	if (!err)
		err = commit(fs, n);
	pthread_mutex_lock(&fs->lock);
	if (strmap_get(fs->nodes, path) == n && !n->writers)
		table_del(fs, path);
	pthread_mutex_unlock(&fs->lock);
	node_unref(n);
	return err;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
	struct fs *fs = get_fs();
	struct fpath fp;
	int err;

	if (h && h->node) {
		pthread_mutex_lock(&fs->lock);
		err = node_truncate(h->node, size);
		if (!err)
			note_changed(fs, h->node);
		pthread_mutex_unlock(&fs->lock);
		return err;
	}
	if (!path)
		return -EBADF;	/* a read-only handle of a name now gone */
	path_parse(path, &fp);
	if (fp.kind != P_ENTRY)
		return -EACCES;
	return truncate_record(fs, path, &fp, size);
}

/* Metadata no-ops: records keep the server's mode and times. */

/*
 * Apply @fn (may be NULL) to a scratch file at @path; for anything else
 * succeed without effect if @path exists.
 */
static int with_local(const char *path, void (*fn)(struct node *, void *),
		      void *arg)
{
	struct fs *fs = get_fs();
	bool shown = false;
	struct stat st;
	struct node *n;

	if (!path)
		return 0;	/* through a handle whose name is gone */
	pthread_mutex_lock(&fs->lock);
	n = strmap_get(fs->nodes, path);
	if (n && n->kind == NODE_FILE && n->scratch && fn)
		fn(n, arg);
	shown = n && n->kind != NODE_HIDDEN;
	pthread_mutex_unlock(&fs->lock);
	if (shown)
		return 0;
	return op_getattr(path, &st, NULL);	/* exists, or why not */
}

static void set_mode(struct node *n, void *arg)
{
	n->mode = *(mode_t *)arg & 07777;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)fi;
	return with_local(path, set_mode, &mode);
}

static int op_chown(const char *path, uid_t uid, gid_t gid,
		    struct fuse_file_info *fi)
{
	(void)uid;
	(void)gid;
	(void)fi;
	return with_local(path, NULL, NULL);
}

static void set_mtime(struct node *n, void *arg)
{
	const struct timespec *tv = arg;

	if (tv[1].tv_nsec == UTIME_NOW)
		clock_gettime(CLOCK_REALTIME, &n->mtime);
	else if (tv[1].tv_nsec != UTIME_OMIT)
		n->mtime = tv[1];
}

static int op_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	struct timespec now[2] = { { 0, UTIME_NOW }, { 0, UTIME_NOW } };

	(void)fi;
	return with_local(path, set_mtime, tv ? (void *)tv : now);
}

/* Names: unlink, rename, symlink */

/*
 * How long a DELETE waits before it goes out: long enough for `mv` from
 * another file system, which unlinks the record and at once creates it
 * again, to turn out to be an update.
 */
#define DELETE_DELAY_MS 1500

struct alias_walk {
	const char *id;
	const char *prefix;	/* "/people/" */
	char **paths;
	size_t n;
};

static int find_alias(void *arg, const char *key, void *value)
{
	struct alias_walk *w = arg;
	struct node *n = value;
	char **p;

	if (n->kind != NODE_ALIAS || strcmp(n->link, w->id) ||
	    strncmp(key, w->prefix, strlen(w->prefix)))
		return 0;
	p = realloc(w->paths, (w->n + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	w->paths = p;
	p[w->n] = strdup(key);
	if (p[w->n])
		w->n++;
	return 0;
}

static void hide_one(struct fs *fs, const char *path, const char *id)
{
	if (!table_hide(fs, path, id))
		((struct node *)strmap_get(fs->nodes, path))->deleting = true;
}

/*
 * A deleted record disappears at once under the name it was removed by,
 * its id and every name that created it.
 */
static void hide_deleted(struct fs *fs, const char *unlinked, enum coll c,
			 const char *id)
{
	char prefix[64], path[512];
	struct alias_walk w = { id, prefix, NULL, 0 };
	size_t i;

	snprintf(prefix, sizeof(prefix), "/%s/", coll_name(c));
	snprintf(path, sizeof(path), "%s%s.json", prefix, id);
	pthread_mutex_lock(&fs->lock);
	strmap_foreach(fs->nodes, find_alias, &w);
	for (i = 0; i < w.n; i++)
		hide_one(fs, w.paths[i], id);
	hide_one(fs, path, id);
	hide_one(fs, unlinked, id);
	pthread_mutex_unlock(&fs->lock);

	/*
	 * The kernel may still hold attributes of the other names.  Only the
	 * inode being unlinked is off limits for an invalidation here.
	 */
	for (i = 0; i < w.n; i++) {
		if (strcmp(w.paths[i], unlinked))
			forget_attrs(w.paths[i]);
		free(w.paths[i]);
	}
	free(w.paths);
	if (strcmp(path, unlinked))
		forget_attrs(path);
}

static int unlink_record(struct fs *fs, const char *path, enum coll c,
			 const char *id)
{
	struct stat st;
	int err;

	if (c == COLL_INTERACTIONS)
		return -EPERM;
	err = stat_record(fs, c, id, &st, NULL);
	if (!err)
		err = save_delete(fs->save, c, id, DELETE_DELAY_MS);
	if (!err)
		hide_deleted(fs, path, c, id);
	return err;
}


/*
 * A new file whose create is still queued is removed with its create; if
 * the create went out meanwhile, the record it made is what to delete.
 */
static char *forget_create(struct fs *fs, const struct fpath *fp,
			   struct node *n)
{
	char *id = NULL;

	save_cancel_create(fs->save, fp->coll, fp->name);
	pthread_mutex_lock(&fs->lock);
	if (n->id)
		id = strdup(n->id);
	pthread_mutex_unlock(&fs->lock);
	return id;
}

static int op_unlink(const char *path)
{
	struct fs *fs = get_fs();
	struct node *n;
	struct fpath fp;
	char *id;
	int err;

	path_parse(path, &fp);
	if (fp.kind == P_REJ_FILE)
		return save_rejected_remove(fs->save, fp.coll, fp.name);
	if (fp.kind != P_ENTRY)
		return -EPERM;

	pthread_mutex_lock(&fs->lock);
	id = resolve_id(fs, path, &fp, &n);
	err = 0;
	if (n && n->kind == NODE_HIDDEN) {
		err = -ENOENT;
	} else if (n && (n->scratch || !n->id)) {
		table_del(fs, path);
	} else if (n) {
		id = strdup(n->id);	/* a record being edited */
	}
	pthread_mutex_unlock(&fs->lock);
	if (n && !id && !n->scratch && err != -ENOENT)
		id = forget_create(fs, &fp, n);
	if (n && !id) {
		node_unref(n);
		return err;
	}
	node_unref(n);
	if (!id)
		return -ENOENT;
	err = unlink_record(fs, path, fp.coll, id);
	free(id);
	return err;
}

/* Where a save onto @path goes: the record it names, or NULL (a create). */
static char *save_target(struct fs *fs, const char *path,
			 const struct fpath *fp)
{
	bool deleting = false;
	struct node *n;
	struct stat st;
	char *id;

	pthread_mutex_lock(&fs->lock);
	n = strmap_get(fs->nodes, path);
	if (n && n->kind == NODE_HIDDEN) {
		id = strdup(n->id);
		deleting = n->deleting;
	} else if (n && n->kind == NODE_ALIAS)
		id = strdup(n->link);
	else if (n && n->kind == NODE_FILE)
		id = n->id ? strdup(n->id) : NULL;
	else if (store_plausible_id(fp->stem))
		id = strdup(fp->stem);
	else
		id = NULL;
	pthread_mutex_unlock(&fs->lock);
	if (id && !n && stat_record(fs, fp->coll, id, &st, NULL)) {
		free(id);
		id = NULL;
	}
	return revive(fs, fp->coll, id, deleting);
}

/*
 * A local file renamed onto a record name is a save of that record.  When
 * no one has it open the save happens now and its result is rename's;
 * otherwise it happens at the last close.
 */
static int rename_save(struct fs *fs, struct node *src, const char *from,
		       const char *to, const struct fpath *tp)
{
	struct cache_record rec = { 0 };
	char *id = save_target(fs, to, tp);
	bool open = false;
	int err = 0;

	if (id && tp->coll == COLL_INTERACTIONS)
		err = -EPERM;
	else if (id && !store_get(fs->store, tp->coll, id, true, true, &rec))
		err = set_edit_base(fs, src, to, &rec);
	else
		err = node_set_base(src, NULL, 0);

	pthread_mutex_lock(&fs->lock);
	if (!err)
		err = node_set_str(&src->id, id);
	if (!err) {
		src->scratch = false;
		src->draft = !id;
		src->dirty = true;
		src->mode = record_mode(tp->coll);
		table_del(fs, from);
		err = table_put(fs, to, src);
		open = src->writers > 0;
	}
	pthread_mutex_unlock(&fs->lock);
	cache_record_release(&rec);
	free(id);
	if (!err && !open) {
		err = commit(fs, src);
		pthread_mutex_lock(&fs->lock);
		if (err) {
			/*
			 * Refused: the source keeps its name and text (commit
			 * may already have dropped it from the record name).
			 */
			if (strmap_get(fs->nodes, to) == src)
				table_del(fs, to);
			src->scratch = true;
			src->dirty = false;
			table_put(fs, from, src);
		}
		pthread_mutex_unlock(&fs->lock);
	}
	node_unref(src);
	return err;
}

/* A record renamed to a scratch name: a local copy; the server is untouched. */
static int rename_away(struct fs *fs, const char *from,
		       const struct fpath *fp, const char *to)
{
	struct cache_record rec;
	struct node *copy, *n;
	char *id;
	int err;

	pthread_mutex_lock(&fs->lock);
	id = resolve_id(fs, from, fp, &n);
	pthread_mutex_unlock(&fs->lock);
	if (n) {
		node_unref(n);
		free(id);
		return -ENOENT;
	}
	if (!id)
		return -ENOENT;
	err = store_get(fs->store, fp->coll, id, true, true, &rec);
	if (err) {
		free(id);
		return err;
	}
	copy = node_new(NODE_FILE, to);
	err = copy ? node_set_text(copy, rec.text, rec.len) : -ENOMEM;
	if (!err)
		copy->mtime = ms_to_timespec(rec.mtime);
	cache_record_release(&rec);
	if (!err) {
		copy->scratch = true;
		copy->mode = record_mode(fp->coll);
		pthread_mutex_lock(&fs->lock);
		err = table_put(fs, to, copy);
		if (!err)
			err = table_hide(fs, from, id);
		pthread_mutex_unlock(&fs->lock);
	}
	node_unref(copy);
	free(id);
	return err;
}

/* True when @n is a record being edited (not a scratch file or a draft). */
static bool is_record(struct fs *fs, struct node *n)
{
	bool ret;

	pthread_mutex_lock(&fs->lock);
	ret = n->kind == NODE_FILE && !n->scratch && n->id;
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

/*
 * Move a local file to a scratch name.  A record being edited becomes a
 * scratch file there (never sent) and its own name is hidden, as when a
 * record that is not open is renamed away.  Caller holds fs->lock.
 */
static int move_local(struct fs *fs, struct node *n, const char *from,
		      const char *to)
{
	char *id = NULL;
	int err;

	if (n->kind == NODE_FILE && !n->scratch && n->id &&
	    !(id = strdup(n->id)))
		return -ENOMEM;
	if (n->kind == NODE_FILE) {
		n->scratch = true;
		n->dirty = false;
		n->draft = false;
	}
	table_del(fs, from);
	err = table_put(fs, to, n);
	if (!err && id)
		err = table_hide(fs, from, id);
	free(id);
	return err;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	struct fs *fs = get_fs();
	struct fpath fp, tp;
	struct stat st;
	struct node *src;

	path_parse(from, &fp);
	path_parse(to, &tp);
	if (fp.kind != P_ENTRY || tp.kind != P_ENTRY)
		return -EPERM;
	if (flags & RENAME_EXCHANGE)
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && !op_getattr(to, &st, NULL))
		return -EEXIST;
	if (!strcmp(from, to))
		return 0;

	pthread_mutex_lock(&fs->lock);
	src = strmap_get(fs->nodes, from);
	if (src && src->kind != NODE_FILE && src->kind != NODE_SYMLINK)
		src = NULL;
	if (src)
		node_ref(src);
	pthread_mutex_unlock(&fs->lock);

	if (src && src->kind == NODE_FILE && tp.record && !is_record(fs, src))
		return rename_save(fs, src, from, to, &tp);
	if (src) {
		int err;

		if (tp.record) {
			node_unref(src);
			return -EPERM;	/* records keep their ids; symlinks */
		}
		pthread_mutex_lock(&fs->lock);
		err = move_local(fs, src, from, to);
		pthread_mutex_unlock(&fs->lock);
		node_unref(src);
		return err;
	}
	if (!tp.record)
		return rename_away(fs, from, &fp, to);
	log_info("cannot rename '%s' to '%s': records keep their names; copy "
		 "the file to make a new record", from + 1, to + 1);
	return -EPERM;
}

static int op_symlink(const char *target, const char *path)
{
	struct fs *fs = get_fs();
	struct fpath fp;
	struct node *n;
	int err;

	path_parse(path, &fp);
	if (fp.kind != P_ENTRY || fp.record)
		return -EPERM;
	n = node_new(NODE_SYMLINK, path);
	if (!n)
		return -ENOMEM;
	n->scratch = true;
	err = node_set_str(&n->link, target);
	pthread_mutex_lock(&fs->lock);
	if (!err && strmap_get(fs->nodes, path))
		err = -EEXIST;
	if (!err)
		err = table_put(fs, path, n);
	pthread_mutex_unlock(&fs->lock);
	node_unref(n);
	return err;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
	struct fs *fs = get_fs();
	struct node *n;
	int err = -EINVAL;

	pthread_mutex_lock(&fs->lock);
	n = strmap_get(fs->nodes, path);
	if (!n)
		err = -ENOENT;
	if (n && n->kind == NODE_SYMLINK && size) {
		snprintf(buf, size, "%s", n->link);
		err = 0;
	}
	pthread_mutex_unlock(&fs->lock);
	return err;
}

static int op_mkdir(const char *path, mode_t mode)
{
	(void)path;
	(void)mode;
	return -EPERM;
}

static int op_rmdir(const char *path)
{
	(void)path;
	return -EPERM;
}

static int op_link(const char *from, const char *to)
{
	(void)from;
	(void)to;
	return -EPERM;
}

static int op_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 4096;
	sv->f_blocks = sv->f_bfree = sv->f_bavail = 1 << 20;
	sv->f_files = sv->f_ffree = 1 << 20;
	sv->f_namemax = PATH_NAME_MAX;
	return 0;
}

/* Directories */

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs();
	struct dir_handle *d;
	struct fpath fp;
	int err = 0;

	path_parse(path, &fp);
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	if (fp.kind == P_COLL && fp.coll == COLL_COMPANIES)
		err = store_companies(fs->store, &d->ids, &d->nids);
	else if (fp.kind == P_COLL)
		err = store_list_begin(fs->store, fp.coll, &d->gen);
	if (err) {
		free(d);
		return err;
	}
	fi->fh = (uintptr_t)d;
	return 0;
}

static void free_names(char **names, size_t n)
{
	while (n > 0)
		free(names[--n]);
	free(names);
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;

	(void)path;
	if (d) {
		free_names(d->ids, d->nids);
		free_names(d->locals, d->nlocals);
		free(d);
	}
	return 0;
}

/*
 * Offsets of collection entries encode where the listing stands, so a
 * reader that stops early (ls -U | head) costs only the pages it reached:
 *   1, 2                    . and ..
 *   1<<40 | page<<20 | i+1  listing entries
 *   2<<40 | i+1             local files (scratch files, drafts)
 */
#define OFF_LIST (1LL << 40)
#define OFF_LOCAL (2LL << 40)
#define OFF_PAGE_SHIFT 20
#define OFF_POS_MASK ((1LL << OFF_PAGE_SHIFT) - 1)

struct lister {
	struct fs *fs;
	const char *dir;	/* "/people" */
	enum coll coll;
	void *buf;
	fuse_fill_dir_t filler;
};

/* Emit one record entry with its attributes; returns 1 when full. */
static int emit_record(struct lister *l, const char *id, off_t next)
{
	struct cache_record rec;
	char path[512], name[300];
	struct stat st;
	struct node *n;
	bool plus;

	snprintf(name, sizeof(name), "%s.json", id);
	snprintf(path, sizeof(path), "%s/%s", l->dir, name);
	plus = !cache_record_stat(store_cache(l->fs->store),
				  coll_name(l->coll), id, &rec);
	pthread_mutex_lock(&l->fs->lock);
	n = strmap_get(l->fs->nodes, path);
	if (n && n->kind == NODE_HIDDEN) {
		pthread_mutex_unlock(&l->fs->lock);
		return 0;
	}
	if (n && n->kind == NODE_FILE)
		fill_node(l->fs, &st, n);
	else if (plus)
		fill_file(l->fs, &st, record_mode(l->coll), rec.len, rec.mtime);
	else
		fill_file(l->fs, &st, record_mode(l->coll), 0, 0);
	plus = plus || (n && n->kind == NODE_FILE);
	if (plus)
		note_shown(l->fs, path, st.st_size);
	pthread_mutex_unlock(&l->fs->lock);
	return l->filler(l->buf, name, &st, next, plus ? FUSE_FILL_DIR_PLUS : 0);
}

/*
 * One reply never spans two pages: the kernel asks again for the rest, so
 * a reader that stops early never costs a page it did not reach.
 */
static int list_pages(struct lister *l, struct dir_handle *d, unsigned page,
		      size_t pos)
{
	struct store_page p;
	bool emitted = false;
	int err = 0;

	for (;; page++, pos = 0) {
		size_t i;

		if (emitted)
			return 1;
		err = store_list_page(l->fs->store, l->coll, d->gen, page, &p);
		if (err == -ENOENT)
			return 0;
		if (err)
			return err;
		for (i = pos; i < p.n; i++) {
			off_t next = OFF_LIST | ((off_t)page << OFF_PAGE_SHIFT) |
				     (i + 1);

			if (emit_record(l, p.ids[i], next)) {
				store_page_release(&p);
				return 1;
			}
			emitted = true;
		}
		if (p.last) {
			store_page_release(&p);
			return 0;
		}
		store_page_release(&p);
	}
}

static int list_companies(struct lister *l, struct dir_handle *d, size_t pos)
{
	size_t i;

	for (i = pos; i < d->nids; i++)
		if (emit_record(l, d->ids[i], OFF_LIST | (i + 1)))
			return 1;
	return 0;
}

struct local_walk {
	const char *prefix;	/* "/people/" */
	struct dir_handle *d;
};

static int take_local(void *arg, const char *key, void *value)
{
	struct local_walk *w = arg;
	struct node *n = value;
	const char *name = key + strlen(w->prefix);
	struct fpath fp;
	char **p;

	if (strncmp(key, w->prefix, strlen(w->prefix)) ||
	    (n->kind != NODE_FILE && n->kind != NODE_SYMLINK))
		return 0;
	/* A record being edited is already in the listing. */
	path_classify(&fp, name);
	if (n->id && fp.record && !strcmp(fp.stem, n->id))
		return 0;
	p = realloc(w->d->locals, (w->d->nlocals + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	w->d->locals = p;
	p[w->d->nlocals] = strdup(name);
	if (p[w->d->nlocals])
		w->d->nlocals++;
	return 0;
}

static int list_locals(struct lister *l, struct dir_handle *d, size_t pos)
{
	char prefix[64], path[512];
	struct local_walk w = { prefix, d };
	struct stat st;
	size_t i;

	snprintf(prefix, sizeof(prefix), "%s/", l->dir);
	if (!d->locals_taken) {
		pthread_mutex_lock(&l->fs->lock);
		strmap_foreach(l->fs->nodes, take_local, &w);
		pthread_mutex_unlock(&l->fs->lock);
		d->locals_taken = true;
	}
	for (i = pos; i < d->nlocals; i++) {
		snprintf(path, sizeof(path), "%s%s", prefix, d->locals[i]);
		if (op_getattr(path, &st, NULL))
			continue;
		if (l->filler(l->buf, d->locals[i], &st, OFF_LOCAL | (i + 1),
			      FUSE_FILL_DIR_PLUS))
			return 1;
	}
	return 0;
}

static int readdir_coll(struct fs *fs, const char *path, struct fpath *fp,
			void *buf, fuse_fill_dir_t filler, off_t off,
			struct dir_handle *d)
{
	struct lister l = { fs, path, fp->coll, buf, filler };
	struct stat st;
	int ret;

	fill_dir(fs, &st);
	if (off < 1 && filler(buf, ".", &st, 1, 0))
		return 0;
	if (off < 2 && filler(buf, "..", &st, 2, 0))
		return 0;
	if (off < OFF_LOCAL) {
		size_t pos = off >= OFF_LIST ? off & OFF_POS_MASK : 0;
		unsigned page = off >= OFF_LIST ?
				(off & (OFF_LIST - 1)) >> OFF_PAGE_SHIFT : 0;

		ret = fp->coll == COLL_COMPANIES ?
		      list_companies(&l, d, pos) :
		      list_pages(&l, d, page, pos);
		if (ret)
			return ret < 0 ? ret : 0;
		off = OFF_LOCAL;
	}
	ret = list_locals(&l, d, off > OFF_LOCAL ? off & OFF_POS_MASK : 0);
	return ret < 0 ? ret : 0;
}

/* Small fixed directories are listed whole, without offsets. */
static int readdir_fixed(struct fs *fs, struct fpath *fp, void *buf,
			 fuse_fill_dir_t filler)
{
	static const char *const root[] = { "people", "companies",
					     "interactions", PATH_META_DIR };
	char **names = NULL;
	size_t n = 0, i;
	struct stat st;
	int c;

	fill_dir(fs, &st);
	filler(buf, ".", &st, 0, 0);
	filler(buf, "..", &st, 0, 0);
	switch (fp->kind) {
	case P_ROOT:
		for (i = 0; i < 4; i++)
			filler(buf, root[i], &st, 0, 0);
		return 0;
	case P_META:
		filler(buf, "rejected", &st, 0, 0);
		fill_file(fs, &st, 0444, 0, store_now_ms());
		filler(buf, "status", &st, 0, 0);
		return 0;
	case P_REJ:
		for (c = 0; c < COLL_COUNT; c++)
			filler(buf, coll_name(c), &st, 0, 0);
		return 0;
	case P_REJ_COLL:
		if (save_rejected_names(fs->save, fp->coll, &names, &n))
			return -EIO;
		fill_file(fs, &st, 0644, 0, store_now_ms());
		for (i = 0; i < n; i++)
			filler(buf, names[i], &st, 0, 0);
		free_names(names, n);
		return 0;
	default:
		return -ENOTDIR;
	}
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		      off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	struct fs *fs = get_fs();
	struct fpath fp;

	(void)flags;
	path_parse(path, &fp);
	if (fp.kind == P_COLL)
		return readdir_coll(fs, path, &fp, buf, filler, off, d);
	return readdir_fixed(fs, &fp, buf, filler);
}

/* Lifecycle */

/* main hands over the address of its struct fs pointer, filled by now. */
static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct fs **holder = get_fs_holder();
	struct fs *fs = *holder;

	cfg->entry_timeout = fs->cfg.ttl_s;
	cfg->attr_timeout = fs->cfg.ttl_s;
	cfg->negative_timeout = 0;
	cfg->hard_remove = 1;
	cfg->use_ino = 0;
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;
	conn->want |= conn->capable & FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	/*
	 * Lookups of different names in one directory may run at once (the
	 * high-level library locks paths itself).  NEEDSWORK: libfuse before
	 * 3.16 never passes this on to the kernel, so there cold lookups in
	 * one directory still go one at a time.
	 */
	conn->want |= conn->capable & FUSE_CAP_PARALLEL_DIROPS;
	return fs;
}

/* Called when the file system is unmounted: pending saves get their chance. */
static void op_destroy(void *private_data)
{
	struct fs *fs = private_data;

	save_free(fs->save, fs->cfg.grace_s);
	fs->save = NULL;
}

static const struct fuse_operations operations = {
	.init = op_init,
	.destroy = op_destroy,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.chmod = op_chmod,
	.chown = op_chown,
	.truncate = op_truncate,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.statfs = op_statfs,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.create = op_create,
	.utimens = op_utimens,
};

const struct fuse_operations *fs_operations(void)
{
	return &operations;
}

/* The delivery thread's news about queued work. */
static void on_event(void *arg, enum save_event ev, enum coll c,
		     const char *name, const char *id)
{
	struct fs *fs = arg;
	char path[512];
	struct node *n;

	pthread_mutex_lock(&fs->lock);
	if (ev == SAVE_DELETE_REFUSED) {
		/* The record stays: its name shows it again. */
		snprintf(path, sizeof(path), "/%s/%s.json", coll_name(c), id);
		n = strmap_get(fs->nodes, path);
		if (n && n->kind == NODE_HIDDEN && n->deleting)
			table_del(fs, path);
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	/* A queued create made its record: the name now stands for it. */
	snprintf(path, sizeof(path), "/%s/%s", coll_name(c), name);
	n = strmap_get(fs->nodes, path);
	if (n && n->kind == NODE_FILE && !n->id) {
		n->draft = false;
		if (ev == SAVE_CREATED && !node_set_str(&n->id, id))
			settle(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
}

/* After a remount, new files whose create is still queued show again. */
static void restore_draft(void *arg, enum coll c, const char *name,
			  const char *text)
{
	struct fs *fs = arg;
	char path[512];
	struct node *n;

	snprintf(path, sizeof(path), "/%s/%s", coll_name(c), name);
	n = node_new(NODE_FILE, path);
	if (!n || node_set_text(n, text, strlen(text))) {
		node_unref(n);
		return;
	}
	n->draft = true;
	pthread_mutex_lock(&fs->lock);
	table_put(fs, path, n);
	pthread_mutex_unlock(&fs->lock);
	node_unref(n);
}

int fs_new(struct store *store, const struct fs_config *cfg, struct fs **out)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	int err;

	if (!fs)
		return -ENOMEM;
	fs->store = store;
	fs->cfg = *cfg;
	fs->mounted_at = time(NULL);
	pthread_mutex_init(&fs->lock, NULL);
	fs->nodes = strmap_new();
	fs->sizes = strmap_new();
	fs->served = strmap_new();
	if (!fs->nodes || !fs->sizes || !fs->served) {
		err = -ENOMEM;
		goto fail;
	}
	err = save_new(store, on_event, fs, &fs->save);
	if (err)
		goto fail;
	save_queued_creates(fs->save, restore_draft, fs);
	err = save_start(fs->save);
	if (err) {
		save_free(fs->save, 0);
		goto fail;
	}
	*out = fs;
	return 0;
fail:
	strmap_free(fs->nodes, NULL);
	strmap_free(fs->sizes, NULL);
	strmap_free(fs->served, NULL);
	free(fs);
	return err;
}

static void unref_value(void *v)
{
	node_unref(v);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	save_free(fs->save, fs->cfg.grace_s);
	strmap_free(fs->nodes, unref_value);
	strmap_free(fs->sizes, free);
	strmap_free(fs->served, free_record);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}
