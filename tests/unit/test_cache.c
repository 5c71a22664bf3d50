/*
 * Unit tests for the cache module: each test opens a store in a fresh
 * directory under one mkdtemp root, which is removed at the end.
 */
#include "cache.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "check.h"

static char root[] = "/tmp/klipyfs-test-cache-XXXXXX";


/* A new, not yet existing directory (two levels, to exercise mkdir -p). */
static char *store_dir(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s/org", root, name);
	return path;
}

static struct cache *open_store(const char *dir)
{
	struct cache *c = NULL;
	int ret;

	ret = cache_open(dir, &c);
	CHECK(ret == 0 && c);
	if (!c) {
		fprintf(stderr, "cannot open a store in %s: %s\n", dir,
			strerror(-ret));
		exit(1);
	}
	return c;
}

static struct cache_record make_rec(const char *text, int64_t mtime,
				    unsigned flags)
{
	struct cache_record rec = {
		.text = (char *)text,
		.len = strlen(text),
		.mtime = mtime,
		.fetched_ms = mtime * 1000 + 7,
		.flags = flags,
	};
	return rec;
}

static void test_record_put_get_stat_del(void)
{
	struct cache *c = open_store(store_dir("basic"));
	struct cache_record in = make_rec("{\n  \"id\": \"p1\"\n}\n", 1700, 0);
	struct cache_record out;

	CHECK(cache_record_get(c, "people", "p1", &out) == -ENOENT);
	CHECK(out.text == NULL);
	CHECK(cache_record_put(c, "people", "p1", &in) == 0);

	CHECK(cache_record_get(c, "people", "p1", &out) == 0);
	CHECK(out.len == in.len && strcmp(out.text, in.text) == 0);
	CHECK(out.mtime == 1700 && out.fetched_ms == 1700007);
	CHECK(out.flags == 0);
	cache_record_release(&out);
	CHECK(out.text == NULL && out.len == 0);

	/* Same id in another collection is another record. */
	CHECK(cache_record_get(c, "companies", "p1", &out) == -ENOENT);

	in = make_rec("{}\n", 1800, CACHE_REC_PENDING);
	CHECK(cache_record_put(c, "people", "p1", &in) == 0);
	CHECK(cache_record_stat(c, "people", "p1", &out) == 0);
	CHECK(out.text == NULL && out.len == 3 && out.mtime == 1800);
	CHECK(out.flags == CACHE_REC_PENDING);

	CHECK(cache_record_del(c, "people", "p1") == 0);
	CHECK(cache_record_stat(c, "people", "p1", &out) == -ENOENT);
	CHECK(cache_record_del(c, "people", "p1") == -ENOENT);

	/* An empty text is a valid record. */
	in = make_rec("", 1, 0);
	CHECK(cache_record_put(c, "people", "empty", &in) == 0);
	CHECK(cache_record_get(c, "people", "empty", &out) == 0);
	CHECK(out.len == 0 && out.text && out.text[0] == '\0');
	cache_record_release(&out);
	cache_close(c);
}

static void test_record_utf8_and_large_text(void)
{
	struct cache *c = open_store(store_dir("large"));
	const char *utf8 = "{\"name\": \"Zoë Ångström 日本語 🚀\"}\n";
	struct cache_record in = make_rec(utf8, 5, 0), out;
	size_t big = 1 << 20, i;
	char *text;

	CHECK(cache_record_put(c, "people", "u", &in) == 0);
	CHECK(cache_record_get(c, "people", "u", &out) == 0);
	CHECK(out.len == strlen(utf8) && memcmp(out.text, utf8, out.len) == 0);
	cache_record_release(&out);

	text = malloc(big + 1);
	for (i = 0; i < big; i++)
		text[i] = 'a' + i % 26;
	text[big] = '\0';
	in = make_rec(text, 6, 0);
	CHECK(cache_record_put(c, "people", "big", &in) == 0);
	CHECK(cache_record_get(c, "people", "big", &out) == 0);
	CHECK(out.len == big && memcmp(out.text, text, big) == 0);
	CHECK(out.text[big] == '\0');
	cache_record_release(&out);
	free(text);
	cache_close(c);
}

static void test_record_bad_keys(void)
{
	struct cache *c = open_store(store_dir("keys"));
	struct cache_record in = make_rec("x", 1, 0), out;
	char *longid = malloc(600);

	memset(longid, 'k', 599);
	longid[599] = '\0';
	CHECK(cache_record_put(c, "people", longid, &in) == -ENAMETOOLONG);
	CHECK(cache_record_get(c, "people", longid, &out) == -ENAMETOOLONG);
	CHECK(cache_record_put(c, "people", "", &in) == -EINVAL);
	CHECK(cache_blob_put(c, CACHE_META, longid, "v", 1) == -ENAMETOOLONG);
	CHECK(cache_blob_put(c, CACHE_META, "", "v", 1) == -EINVAL);
	CHECK(cache_blob_put(c, CACHE_META, "\x01" "format", "9", 1) ==
	      -EINVAL);
	free(longid);
	cache_close(c);
}

static void test_records_put_skips_pending(void)
{
	struct cache *c = open_store(store_dir("batch"));
	const char *ids[] = { "a", "b", "c" };
	struct cache_record recs[3], local, out;

	local = make_rec("local edit", 10, CACHE_REC_PENDING);
	CHECK(cache_record_put(c, "people", "b", &local) == 0);

	recs[0] = make_rec("server a", 20, 0);
	recs[1] = make_rec("server b", 20, 0);
	recs[2] = make_rec("server c", 20, 0);
	CHECK(cache_records_put(c, "people", ids, recs, 3) == 0);

	CHECK(cache_record_get(c, "people", "a", &out) == 0);
	CHECK(out.text && strcmp(out.text, "server a") == 0);
	cache_record_release(&out);
	CHECK(cache_record_get(c, "people", "b", &out) == 0);
	CHECK(out.text && strcmp(out.text, "local edit") == 0);
	CHECK(out.flags == CACHE_REC_PENDING && out.mtime == 10);
	cache_record_release(&out);
	CHECK(cache_record_get(c, "people", "c", &out) == 0);
	CHECK(out.text && strcmp(out.text, "server c") == 0);
	cache_record_release(&out);

	/* Once delivered (flag cleared), the server copy wins again. */
	local.flags = 0;
	CHECK(cache_record_put(c, "people", "b", &local) == 0);
	CHECK(cache_records_put(c, "people", ids, recs, 3) == 0);
	CHECK(cache_record_get(c, "people", "b", &out) == 0);
	CHECK(out.text && strcmp(out.text, "server b") == 0);
	cache_record_release(&out);

	CHECK(cache_records_put(c, "people", ids, recs, 0) == 0);
	cache_close(c);
}

static void test_blobs_in_every_table(void)
{
	static const enum cache_table tables[] = {
		CACHE_PAGES, CACHE_COMPANIES, CACHE_JOURNAL, CACHE_REJECTED,
		CACHE_META,
	};
	struct cache *c = open_store(store_dir("blobs"));
	char val[64], *got;
	size_t i, len;

	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		snprintf(val, sizeof(val), "value of table %zu", i);
		CHECK(cache_blob_put(c, tables[i], "k", val, strlen(val)) == 0);
	}
	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		snprintf(val, sizeof(val), "value of table %zu", i);
		CHECK(cache_blob_get(c, tables[i], "k", &got, &len) == 0);
		CHECK(got && len == strlen(val) && strcmp(got, val) == 0);
		free(got);
	}

	/* Empty values (known companies) and values with a NUL inside. */
	CHECK(cache_blob_put(c, CACHE_COMPANIES, "c1", NULL, 0) == 0);
	CHECK(cache_blob_get(c, CACHE_COMPANIES, "c1", &got, &len) == 0);
	CHECK(got && len == 0 && got[0] == '\0');
	free(got);
	CHECK(cache_blob_put(c, CACHE_PAGES, "bin", "a\0b", 3) == 0);
	CHECK(cache_blob_get(c, CACHE_PAGES, "bin", &got, NULL) == 0);
	CHECK(got && memcmp(got, "a\0b", 4) == 0);
	free(got);

	CHECK(cache_blob_del(c, CACHE_JOURNAL, "k") == 0);
	CHECK(cache_blob_get(c, CACHE_JOURNAL, "k", &got, &len) == -ENOENT);
	CHECK(got == NULL);
	CHECK(cache_blob_del(c, CACHE_JOURNAL, "k") == -ENOENT);
	CHECK(cache_blob_get(c, CACHE_REJECTED, "k", &got, &len) == 0);
	free(got);
	CHECK(cache_blob_put(c, (enum cache_table)42, "k", "v", 1) == -EINVAL);
	cache_close(c);
}

struct walk {
	char keys[2048];
	int calls;
	int stop_after;
};

static int walk_fn(void *arg, const char *key, const char *val, size_t len)
{
	struct walk *w = arg;

	if (strlen(val) != len)
		return -EBADMSG;
	strcat(w->keys, key);
	strcat(w->keys, "=");
	strcat(w->keys, val);
	strcat(w->keys, " ");
	if (++w->calls == w->stop_after)
		return 42;
	return 0;
}

static void test_blob_foreach_order_and_early_stop(void)
{
	static const char *const keys[] = {
		"people/2", "people/10", "companies/1", "people/1", "peoplex",
		"people/0003",
	};
	struct cache *c = open_store(store_dir("foreach"));
	struct walk w = { .stop_after = -1 };
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		CHECK(cache_blob_put(c, CACHE_PAGES, keys[i], keys[i],
				     strlen(keys[i])) == 0);

	CHECK(cache_blob_foreach(c, CACHE_PAGES, "people/", walk_fn, &w) == 0);
	CHECK(strcmp(w.keys, "people/0003=people/0003 people/1=people/1 "
		      "people/10=people/10 people/2=people/2 ") == 0);

	memset(&w, 0, sizeof(w));
	w.stop_after = 2;
	CHECK(cache_blob_foreach(c, CACHE_PAGES, "", walk_fn, &w) == 42);
	CHECK(w.calls == 2);
	CHECK(strcmp(w.keys, "companies/1=companies/1 people/0003=people/0003 "
		      ) == 0);

	memset(&w, 0, sizeof(w));
	CHECK(cache_blob_foreach(c, CACHE_PAGES, "zzz", walk_fn, &w) == 0);
	CHECK(w.calls == 0);
	CHECK(cache_blob_foreach(c, CACHE_JOURNAL, "", walk_fn, &w) == 0);
	CHECK(w.calls == 0);

	/* The store's own format marker is not shown to callers. */
	CHECK(cache_blob_put(c, CACHE_META, "org", "Acme", 4) == 0);
	memset(&w, 0, sizeof(w));
	w.stop_after = -1;
	CHECK(cache_blob_foreach(c, CACHE_META, "", walk_fn, &w) == 0);
	CHECK(strcmp(w.keys, "org=Acme ") == 0);
	cache_close(c);
}

static void test_reopen_keeps_everything(void)
{
	struct cache_record in = make_rec("persisted", 99, CACHE_REC_PENDING);
	struct cache_record out;
	struct cache *c = open_store(store_dir("reopen"));
	uint64_t bytes = 0, records = 0;
	char *got;

	CHECK(cache_record_put(c, "people", "p", &in) == 0);
	CHECK(cache_blob_put(c, CACHE_JOURNAL, "000001", "patch", 5) == 0);
	cache_close(c);

	c = open_store(store_dir("reopen"));
	CHECK(cache_record_get(c, "people", "p", &out) == 0);
	CHECK(out.text && strcmp(out.text, "persisted") == 0);
	CHECK(out.mtime == 99 && out.flags == CACHE_REC_PENDING);
	cache_record_release(&out);
	CHECK(cache_blob_get(c, CACHE_JOURNAL, "000001", &got, NULL) == 0);
	CHECK(got && strcmp(got, "patch") == 0);
	free(got);

	CHECK(cache_usage(c, &bytes, &records) == 0);
	CHECK(records == 1);
	CHECK(bytes >= 4096 && bytes < (1 << 20));
	cache_close(c);
}

static void test_store_permissions(void)
{
	char *dir = store_dir("perm"), path[600];
	struct cache *c;
	struct stat st;

	/* An existing, too open directory is tightened. */
	CHECK(mkdir(dir, 0755) == -1 && errno == ENOENT);
	snprintf(path, sizeof(path), "%s/perm", root);
	CHECK(mkdir(path, 0755) == 0);
	CHECK(mkdir(dir, 0755) == 0);

	c = open_store(dir);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	cache_close(c);

	/* Parents created on the way are private too. */
	snprintf(path, sizeof(path), "%s/perm2/a/b", root);
	c = open_store(path);
	snprintf(path, sizeof(path), "%s/perm2/a", root);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0700);
	cache_close(c);

	/* A file where the directory should be. */
	snprintf(path, sizeof(path), "%s/perm-file", root);
	fclose(fopen(path, "w"));
	c = (struct cache *)1;
	CHECK(cache_open(path, &c) == -ENOTDIR && c == NULL);
}

/* Write a foreign format marker straight into the store with LMDB. */
static void poke_format(const char *dir, const char *format)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 7, "\x01" "format" };
	MDB_val v = { strlen(format) + 1, (void *)format };

	CHECK(mdb_env_create(&env) == 0);
	CHECK(mdb_env_set_maxdbs(env, 8) == 0);
	CHECK(mdb_env_open(env, dir, 0, 0600) == 0);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
	CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
}

static void test_incompatible_format_starts_fresh(void)
{
	char *dir = store_dir("format");
	struct cache_record in = make_rec("old", 1, 0), out;
	struct cache *c = open_store(dir);
	char path[600];
	FILE *f;

	CHECK(cache_record_put(c, "people", "p", &in) == 0);
	cache_close(c);

	poke_format(dir, "0");
	c = open_store(dir);
	CHECK(cache_record_get(c, "people", "p", &out) == -ENOENT);
	CHECK(cache_record_put(c, "people", "p", &in) == 0);
	cache_close(c);

	/* The fresh store is in the current format: a reopen keeps it. */
	c = open_store(dir);
	CHECK(cache_record_stat(c, "people", "p", &out) == 0);
	cache_close(c);

	/* What LMDB cannot read at all is an error, not something to wipe. */
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	f = fopen(path, "w");
	for (int i = 0; i < 4096; i++)
		fputs("not lmdb", f);
	fclose(f);
	c = (struct cache *)1;
	CHECK(cache_open(dir, &c) == -EIO && c == NULL);
}

struct worker {
	struct cache *c;
	int n;
	int errors;
	long ops;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Each worker writes its own records and blobs and reads them back, and
 * reads the others' records, which must be whole whenever present.
 */
static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct cache_record in, out;
	char id[32], text[64], *got;
	double end = now_s() + 1.0;
	int i = 0, rc;

	while (now_s() < end) {
		snprintf(id, sizeof(id), "w%d-%d", w->n, i % 50);
		snprintf(text, sizeof(text), "text of w%d-%d", w->n, i % 50);
		in = make_rec(text, i, 0);
		if (cache_record_put(w->c, "people", id, &in) != 0)
			w->errors++;
		if (cache_record_get(w->c, "people", id, &out) != 0 ||
		    strcmp(out.text, text) != 0)
			w->errors++;
		cache_record_release(&out);

		snprintf(id, sizeof(id), "w%d-%d", (w->n + 1) % 4, i % 50);
		snprintf(text, sizeof(text), "text of %s", id);
		rc = cache_record_get(w->c, "people", id, &out);
		if (rc == 0 ? strcmp(out.text, text) != 0 : rc != -ENOENT)
			w->errors++;
		cache_record_release(&out);

		got = NULL;
		snprintf(id, sizeof(id), "w%d/%d", w->n, i % 10);
		if (cache_blob_put(w->c, CACHE_PAGES, id, id, strlen(id)) ||
		    cache_blob_get(w->c, CACHE_PAGES, id, &got, NULL) ||
		    strcmp(got, id) != 0)
			w->errors++;
		free(got);
		i++;
	}
	w->ops = i;
	return NULL;
}

static void test_concurrent_readers_and_writers(void)
{
	struct cache *c = open_store(store_dir("threads"));
	struct worker w[4];
	pthread_t th[4];
	int i;

	for (i = 0; i < 4; i++) {
		w[i] = (struct worker){ .c = c, .n = i };
		CHECK(pthread_create(&th[i], NULL, worker_run, &w[i]) == 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(w[i].errors == 0);
		CHECK(w[i].ops > 0);
	}
	cache_close(c);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}

	test_record_put_get_stat_del();
	test_record_utf8_and_large_text();
	test_record_bad_keys();
	test_records_put_skips_pending();
	test_blobs_in_every_table();
	test_blob_foreach_order_and_early_stop();
	test_reopen_keeps_everything();
	test_store_permissions();
	test_incompatible_format_starts_fresh();
	test_concurrent_readers_and_writers();

	nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (failures) {
		fprintf(stderr, "test_cache: %d checks failed\n", failures);
		return 1;
	}
	printf("test_cache: all checks passed\n");
	return 0;
}
