/*
 * klipyfs: mount a Klipy CRM organization as a file system.
 *
 * main parses the command line, finds the API key, checks it against the
 * server before anything is mounted, and then runs the FUSE loop.  The
 * cache and the client used by the mount are opened after the daemon has
 * forked into the background: LMDB environments and threads do not
 * survive fork().
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define FUSE_USE_VERSION 314
#include <fuse3/fuse.h>
#include <fuse3/fuse_lowlevel.h>

#include "api.h"
#include "cache.h"
#include "log.h"
#include "ops.h"
#include "store.h"

#define DEFAULT_BASE_URL "https://api.klipy.ai/api/v1"
#define DEFAULT_TTL_S 60
#define NEGATIVE_TTL_S 5
#define DEFAULT_GRACE_S 10
#define PAGE_SIZE 100

struct options {
	char *base_url;
	char *api_key_file;
	char *cache_dir;
	char *log_file;
	int cache_ttl;
	int rate_limit;
	int flush_timeout;
	int offline;
	int show_help;
	int show_version;
};

#define OPT(t, p) { t, offsetof(struct options, p), 1 }
static const struct fuse_opt option_spec[] = {
	OPT("--base-url=%s", base_url),
	OPT("--api-key-file=%s", api_key_file),
	OPT("--cache-dir=%s", cache_dir),
	OPT("--cache-ttl=%d", cache_ttl),
	OPT("--log-file=%s", log_file),
	OPT("--rate-limit=%d", rate_limit),
	OPT("--flush-timeout=%d", flush_timeout),
	OPT("--offline", offline),
	OPT("-h", show_help),
	OPT("--help", show_help),
	OPT("-V", show_version),
	OPT("--version", show_version),
	FUSE_OPT_END
};

static void usage(const char *prog)
{
	printf("usage: %s [options] <mountpoint>\n\n"
	       "Mounts a Klipy CRM organization: people/, companies/ and "
	       "interactions/\nhold one JSON file per record.\n\n"
	       "klipyfs options:\n"
	       "    --base-url=URL         API base URL (env KLIPY_BASE_URL,\n"
	       "                           default " DEFAULT_BASE_URL ")\n"
	       "    --api-key-file=PATH    file holding the API key (else env\n"
	       "                           KLIPY_API_KEY, else\n"
	       "                           ~/.config/klipyfs/api-key)\n"
	       "    --cache-dir=DIR        cache directory (default\n"
	       "                           $XDG_CACHE_HOME/klipyfs/<org id>)\n"
	       "    --cache-ttl=SECONDS    freshness of cached records and "
	       "listings (default %d)\n"
	       "    --offline              serve from the cache; queue saves\n"
	       "    --rate-limit=N         requests per minute to allow "
	       "ourselves (default 200)\n"
	       "    --flush-timeout=SECS   at unmount, time to deliver "
	       "queued saves (default %d)\n"
	       "    --log-file=PATH        append log lines to PATH (default:\n"
	       "                           stderr with -f, else syslog)\n\n",
	       prog, DEFAULT_TTL_S, DEFAULT_GRACE_S);
}

/* The key */

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	end = s + strlen(s);
	while (end > s && strchr(" \t\r\n", end[-1]))
		*--end = '\0';
	return s;
}

static char *read_key_file(const char *path)
{
	char buf[1024], *key = NULL;
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	if (*trim(buf))
		key = strdup(trim(buf));
	explicit_bzero(buf, sizeof(buf));
	return key;
}

/*
 * The variable is wiped in place as well as unset, so the key does not
 * linger in /proc/<pid>/environ for the life of the daemon.
 */
static char *take_key_from_env(void)
{
	extern char **environ;
	static const char name[] = "KLIPY_API_KEY=";
	char *key = NULL, **e;

	for (e = environ; *e; e++) {
		if (strncmp(*e, name, sizeof(name) - 1))
			continue;
		if (!key && *trim(*e + sizeof(name) - 1))
			key = strdup(trim(*e + sizeof(name) - 1));
		explicit_bzero(*e + sizeof(name) - 1,
			       strlen(*e + sizeof(name) - 1));
	}
	unsetenv("KLIPY_API_KEY");
	return key;
}

static char *home_path(const char *rel)
{
	const char *home = getenv("HOME");
	struct passwd *pw;
	char *path;

	if (!home || !*home) {
		pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/";
	}
	if (asprintf(&path, "%s/%s", home, rel) < 0)
		return NULL;
	return path;
}

static char *find_key(const struct options *o)
{
	char *key, *path;

	if (o->api_key_file) {
		key = read_key_file(o->api_key_file);
		if (!key)
			fprintf(stderr, "klipyfs: cannot read an API key from "
				"'%s': %s\n", o->api_key_file,
				errno ? strerror(errno) : "the file is empty");
		take_key_from_env();
		return key;
	}
	key = take_key_from_env();
	if (key)
		return key;
	path = home_path(".config/klipyfs/api-key");
	key = path ? read_key_file(path) : NULL;
	if (!key)
		fprintf(stderr, "klipyfs: no API key: use --api-key-file, set "
			"KLIPY_API_KEY, or write it to %s\n",
			path ? path : "~/.config/klipyfs/api-key");
	free(path);
	return key;
}

/* The cache directory */

static char *default_cache_root(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	char *path;

	if (xdg && *xdg && asprintf(&path, "%s/klipyfs", xdg) >= 0)
		return path;
	return home_path(".cache/klipyfs");
}

static char *cache_dir_for(const struct options *o, const char *org_id)
{
	char *root, *dir;

	if (o->cache_dir)
		return strdup(o->cache_dir);
	root = default_cache_root();
	if (!root || asprintf(&dir, "%s/%s", root, org_id) < 0)
		dir = NULL;
	free(root);
	return dir;
}

/* Identity of the organization */

struct org {
	char *id;
	char *name;
};

static int authenticate(const struct api_config *acfg, struct org *org)
{
	struct api_error ae = { 0 };
	struct api *api;
	char why[1024];
	int err;

	err = api_new(acfg, &api);
	if (err)
		return err;
	log_set_quiet(true);
	err = api_authenticate(api, &org->id, &org->name, &ae);
	log_set_quiet(false);
	api_free(api);
	if (!err)
		return 0;
	api_error_describe(&ae, why, sizeof(why));
	if (err == -EAGAIN)
		fprintf(stderr, "klipyfs: cannot reach the Klipy API at %s "
			"(%s); check --base-url, or mount with --offline\n",
			acfg->base_url, ae.message[0] ? ae.message :
			"no usable answer");
	else if (err == -EIO)
		fprintf(stderr, "klipyfs: %s does not answer like the Klipy "
			"API; check --base-url\n", acfg->base_url);
	else if (err == -EACCES)
		fprintf(stderr, "klipyfs: the Klipy API refused the key "
			"(HTTP %d %s)\n", ae.http_status, why);
	else
		fprintf(stderr, "klipyfs: %s/authenticate answered %s; check "
			"--base-url\n", acfg->base_url, why);
	return err;
}

/*
 * Offline, without --cache-dir, the cache to use is the only one under the
 * default root; with several organizations cached, the user must choose.
 */
static char *only_cache_dir(void)
{
	char *root = default_cache_root(), *found = NULL;
	struct dirent *de;
	int count = 0;
	DIR *d;

	d = root ? opendir(root) : NULL;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.' || de->d_type != DT_DIR)
			continue;
		free(found);
		if (asprintf(&found, "%s/%s", root, de->d_name) < 0)
			found = NULL;
		count++;
	}
	if (d)
		closedir(d);
	if (count != 1) {
		fprintf(stderr, "klipyfs: --offline needs --cache-dir=DIR: "
			"%s cached organizations under '%s'\n",
			count ? "several" : "no", root ? root : "~/.cache/klipyfs");
		free(found);
		found = NULL;
	}
	free(root);
	return found;
}

/* Offline, the organization is the one the cache remembers. */
static int offline_org(const char *dir, struct org *org)
{
	struct cache *cache;
	size_t len;
	int err;

	err = cache_open(dir, &cache);
	if (err)
		return err;
	if (cache_blob_get(cache, CACHE_META, "org_id", &org->id, &len) ||
	    cache_blob_get(cache, CACHE_META, "org_name", &org->name, &len)) {
		fprintf(stderr, "klipyfs: '%s' holds no organization yet: "
			"mount once online first\n", dir);
		err = -ENOENT;
	}
	cache_close(cache);
	return err;
}

static int remember_org(struct cache *cache, const struct org *org)
{
	int err;

	err = cache_blob_put(cache, CACHE_META, "org_id", org->id,
			     strlen(org->id));
	if (!err)
		err = cache_blob_put(cache, CACHE_META, "org_name", org->name,
				     strlen(org->name));
	return err;
}

/* Mounting */

struct mount {
	struct api_config acfg;
	struct fs_config fcfg;
	struct store_config scfg;
	bool offline;
	struct api *api;
	struct cache *cache;
	struct store *store;
	struct fs *fs;
};

/* Open what the mount uses; runs in the process that serves it. */
static int mount_open(struct mount *m, const struct org *org)
{
	int err;

	err = cache_open(m->fcfg.cache_dir, &m->cache);
	if (err) {
		log_err("cannot open the cache in '%s': %s", m->fcfg.cache_dir,
			strerror(-err));
		return err;
	}
	if (!m->offline)
		remember_org(m->cache, org);
	err = api_new(&m->acfg, &m->api);
	if (err)
		return err;
	api_set_offline(m->api, m->offline);
	err = store_new(m->api, m->cache, &m->scfg, &m->store);
	if (!err)
		err = fs_new(m->store, &m->fcfg, &m->fs);
	return err;
}

static void mount_close(struct mount *m)
{
	fs_free(m->fs);
	store_free(m->store);
	api_free(m->api);
	cache_close(m->cache);
}

/*
 * A mount point whose daemon died answers ENOTCONN; mounting on top of it
 * would hide the problem under a second mount.
 */
static bool mountpoint_usable(const char *path)
{
	struct statfs st;

	/* statfs, unlike stat, always reaches the daemon of a FUSE mount. */
	if (!statfs(path, &st))
		return true;
	if (errno == ENOTCONN)
		fprintf(stderr, "klipyfs: '%s' is still mounted by a daemon "
			"that is gone; run 'fusermount3 -u %s' first\n", path,
			path);
	else
		fprintf(stderr, "klipyfs: cannot use the mount point '%s': "
			"%s\n", path, strerror(errno));
	return false;
}

static int serve(struct fuse_args *args, struct mount *m,
		 const struct org *org)
{
	struct fuse_cmdline_opts opts = { 0 };
	struct fuse_loop_config *lc;
	struct fuse *fuse;
	int err = 1;

	if (fuse_parse_cmdline(args, &opts))
		return 1;	/* libfuse said why */
	if (!opts.mountpoint) {
		fprintf(stderr, "klipyfs: no mountpoint given (see --help)\n");
		return 1;
	}
	log_set_debug(opts.debug);
	if (!mountpoint_usable(opts.mountpoint))
		goto out;
	fuse = fuse_new(args, fs_operations(), sizeof(struct fuse_operations),
			&m->fs);
	if (!fuse)
		goto out;
	if (fuse_mount(fuse, opts.mountpoint))
		goto out_destroy;
	if (fuse_daemonize(opts.foreground) ||
	    fuse_set_signal_handlers(fuse_get_session(fuse)))
		goto out_unmount;
	log_start(opts.foreground);
	if (mount_open(m, org))
		goto out_signals;

	log_info("mounted '%s' (%s) at %s", org->name, org->id,
		 opts.mountpoint);
	if (opts.singlethread) {
		err = fuse_loop(fuse);
	} else {
		lc = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(lc, opts.clone_fd);
		/* libfuse marks an option not given with UINT_MAX. */
		if (opts.max_threads != UINT_MAX)
			fuse_loop_cfg_set_max_threads(lc, opts.max_threads);
		if (opts.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(lc,
						       opts.max_idle_threads);
		err = fuse_loop_mt(fuse, lc);
		fuse_loop_cfg_destroy(lc);
	}
	/* The loop reports the signal that ended it: that is a clean exit. */
	err = (err == 0 || err == SIGINT || err == SIGTERM || err == SIGHUP) ?
	      0 : 1;
out_signals:
	fuse_remove_signal_handlers(fuse_get_session(fuse));
out_unmount:
	fuse_unmount(fuse);
out_destroy:
	fuse_destroy(fuse);
	mount_close(m);
out:
	free(opts.mountpoint);
	return err;
}

static bool base_url_ok(const char *url)
{
	return !strncmp(url, "https://", 8) || !strncmp(url, "http://", 7);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = { .cache_ttl = DEFAULT_TTL_S,
			     .flush_timeout = DEFAULT_GRACE_S };
	struct org org = { 0 };
	struct mount m = { 0 };
	char *key = NULL;
	int ret = 1, err;

	if (fuse_opt_parse(&args, &o, option_spec, NULL))
		return 1;
	if (o.show_version) {
		printf("klipyfs %s (libfuse %s)\n", KLIPYFS_VERSION,
		       fuse_pkgversion());
		return 0;
	}
	if (o.show_help) {
		usage(argv[0]);
		printf("FUSE options:\n");
		fuse_cmdline_help();
		fuse_lib_help(&args);
		return 0;
	}
	if (o.cache_ttl < 0 || o.flush_timeout < 0 || o.rate_limit < 0) {
		fprintf(stderr, "klipyfs: --cache-ttl, --flush-timeout and "
			"--rate-limit take a number of zero or more\n");
		return 1;
	}
	if (!o.base_url)
		o.base_url = strdup(getenv("KLIPY_BASE_URL") ?: DEFAULT_BASE_URL);
	while (strlen(o.base_url) > 1 && o.base_url[strlen(o.base_url) - 1] == '/')
		o.base_url[strlen(o.base_url) - 1] = '\0';
	if (o.log_file && (err = log_open_file(o.log_file))) {
		fprintf(stderr, "klipyfs: cannot open the log file '%s': %s\n",
			o.log_file, strerror(-err));
		goto out;
	}
	if (!base_url_ok(o.base_url)) {
		fprintf(stderr, "klipyfs: the base URL must start with "
			"https:// ('%s')\n", o.base_url);
		goto out;
	}

	key = o.offline ? take_key_from_env() : find_key(&o);
	if (!key && !o.offline)
		goto out;
	m.acfg.base_url = o.base_url;
	m.acfg.api_key = key ? key : "";
	m.acfg.rate_limit = o.rate_limit;
	m.offline = o.offline;

	if (o.offline) {
		if (!o.cache_dir && !(o.cache_dir = only_cache_dir()))
			goto out;
		if (offline_org(o.cache_dir, &org))
			goto out;
	} else if (authenticate(&m.acfg, &org)) {
		goto out;
	}

	m.fcfg.uid = getuid();
	m.fcfg.gid = getgid();
	m.fcfg.ttl_s = o.cache_ttl;
	m.fcfg.grace_s = o.flush_timeout;
	m.fcfg.org_id = org.id;
	m.fcfg.org_name = org.name;
	m.fcfg.cache_dir = cache_dir_for(&o, org.id);
	m.scfg.ttl_ms = (int64_t)o.cache_ttl * 1000;
	m.scfg.negative_ttl_ms = (o.cache_ttl < NEGATIVE_TTL_S ?
				  o.cache_ttl : NEGATIVE_TTL_S) * 1000;
	m.scfg.page_size = PAGE_SIZE;
	if (!m.fcfg.cache_dir)
		goto out;

	ret = serve(&args, &m, &org);
out:
	if (key)
		explicit_bzero(key, strlen(key));
	free(key);
	free(org.id);
	free(org.name);
	free((char *)m.fcfg.cache_dir);
	free(o.base_url);
	free(o.api_key_file);
	free(o.cache_dir);
	free(o.log_file);
	fuse_opt_free_args(&args);
	return ret;
}
