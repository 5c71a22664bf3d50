/*
 * emu: shared declarations of klipy-emulator, the stand-in Klipy API server
 * used by tests, benchmarks and the demo.
 *
 * store.c owns organizations, keys and records (all behind store.lock);
 * gen.c fills an organization with deterministic data; api.c implements the
 * endpoints of klipy-api.md on top of the store; http.c speaks HTTP through
 * libmicrohttpd and adds what is not about records (auth, rate limits,
 * envelope, knobs, introspection); delay.c holds answers back for the
 * latency knob; main.c reads the command line.
 */
#ifndef KLIPYFS_EMU_H
#define KLIPYFS_EMU_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define EMU_MAX_BODY (1024 * 1024)

enum coll_kind {
	COLL_PEOPLE,
	COLL_COMPANIES,
	COLL_INTERACTIONS,
	COLL_COUNT
};

/* Scope bits; SCOPE_ALL grants everything. */
enum {
	SCOPE_PEOPLE_READ = 1 << 0,
	SCOPE_PEOPLE_WRITE = 1 << 1,
	SCOPE_COMPANIES_READ = 1 << 2,
	SCOPE_COMPANIES_WRITE = 1 << 3,
	SCOPE_COMPANIES_REMOVE = 1 << 4,
	SCOPE_INTERACTIONS_READ = 1 << 5,
	SCOPE_INTERACTIONS_WRITE = 1 << 6,
	SCOPE_ALL = (1 << 7) - 1,
};

struct htab_ent {
	char *key;
	void *val;
	struct htab_ent *next;
};

/* A string-keyed chained hash table; keys are copied. */
struct htab {
	struct htab_ent **b;
	size_t nb;
	size_t n;
};

struct rec {
	char id[32];
	int64_t ctime;		/* creation time, ms, for ordering */
	bool deleted;		/* tombstones keep cursor positions stable */
	cJSON *json;		/* NULL once deleted */
	/* pointers into json for query filters, refreshed on every change */
	const char *company;	/* people: companyId or NULL */
	const cJSON *companies;	/* interactions */
	const cJSON *contacts;	/* interactions */
};

/*
 * One collection in creation order. by_key maps the unique key (people:
 * lowercased trimmed email, companies: lowercased domain, interactions:
 * primaryId) to the record.
 */
struct coll {
	enum coll_kind kind;
	struct rec **v;
	size_t n;
	size_t cap;
	struct htab by_id;
	struct htab by_key;
};

/* A fixed 60-second rate-limit window that starts at its first request. */
struct rate_window {
	int64_t start;
	long count;
};

struct org {
	char *id;
	char *name;
	uint64_t rng;
	struct coll c[COLL_COUNT];
	struct rate_window rw;
	struct org *next;
};

struct key {
	char *key;
	unsigned scopes;
	bool expired;
	bool revoked;
	struct org *org;
	struct rate_window rw;
	struct key *next;
};

struct store {
	pthread_rwlock_t lock;
	struct org *orgs;
	struct key *keys;
	int64_t last_stamp;	/* last time handed out by store_stamp */
	struct org *default_org;	/* that of the first key */
};

extern struct store store;

struct gen_opts {
	long people;
	long companies;
	long interactions;
	uint64_t seed;
	const char *data_file;
};

/* hash tables (store.c) */
void htab_init(struct htab *h);
void htab_free(struct htab *h);
void *htab_get(const struct htab *h, const char *key);
void htab_put(struct htab *h, const char *key, void *val);
void htab_del(struct htab *h, const char *key);
uint64_t emu_hash(const char *s, uint64_t seed);

/* deterministic pseudo-random numbers (splitmix64) */
uint64_t rng_next(uint64_t *state);
uint64_t rng_below(uint64_t *state, uint64_t n);

/* times */
int64_t emu_now_ms(void);
/* Monotonic microseconds, for durations. */
int64_t emu_mono_us(void);
void emu_iso(int64_t ms, char buf[32]);
void emu_iso_seconds(int64_t ms, char buf[32]);
/* Parse ISO-8601 UTC ("2026-04-01T10:00:01Z", optional fraction); 0 or -1. */
int emu_parse_iso(const char *s, int64_t *ms);

/*
 * Return a time in ms that is strictly later than any returned before and
 * than any record time loaded; callers hold the write lock.
 */
int64_t store_stamp(void);

/* Normalize a unique key: trim, lowercase ASCII. Result is malloc'd. */
char *store_norm_key(const char *s);

/* Create an organization (records empty) and link it into the store. */
struct org *store_org_add(const char *id, const char *name, uint64_t seed);
struct org *store_org_find(const char *id);

/* Make a fresh unused id for a record of kind in org, into buf[32]. */
void store_new_id(struct org *o, enum coll_kind kind, char buf[32]);

/* Append json (owned) as a new record; key may be NULL. */
struct rec *store_append(struct org *o, enum coll_kind kind, const char *id,
			 int64_t ctime, cJSON *json, const char *key);

/* Refresh the filter pointers of r after its json changed. */
void store_refresh(enum coll_kind kind, struct rec *r);

/* The live record with this id, or NULL. */
struct rec *store_find(struct org *o, enum coll_kind kind, const char *id);

/* Mark a record deleted and drop it from the indexes. */
void store_delete(struct org *o, enum coll_kind kind, struct rec *r,
		  const char *key);

/* Sort every collection of o by creation time, then id, and re-index. */
void store_sort(struct org *o);

/* Load keys from a JSON file; creates organizations. 0 or -1 (printed). */
int store_load_keys(const char *path);

/* Add the default key klipy_api_demo (scope ALL) in org_demo. */
void store_default_key(void);

struct key *store_key_find(const char *k);

/* The name of a single scope bit ("people:read"). */
const char *scope_name(unsigned bit);

void store_free(void);

/* Parse a whole JSON file; NULL (printed) on error. */
cJSON *store_read_json(const char *path);

const char *coll_name(enum coll_kind kind);
int coll_from_name(const char *name);

/* Fill an organization with records (gen.c); 0 or -1 (printed). */
int gen_org(struct org *o, const struct gen_opts *opts);

/* Load records from a JSON document file into o (gen.c); 0 or -1. */
int gen_load_file(struct org *o, const char *path);

/* The answer of an API endpoint, before it is put in an envelope. */
struct api_resp {
	int status;
	cJSON *data;		/* owned; may hold references into the store */
	bool is_list;
	enum coll_kind list_kind;
	char *next_cursor;	/* malloc'd or NULL */
	bool has_more;
	/* errors */
	const char *code;
	char message[512];
	cJSON *details;		/* owned or NULL */
};

struct api_req {
	const char *method;
	const char *path;	/* below /api/v1 */
	const char *id;		/* the {id} of the route, or NULL */
	const struct api_route *route;
	cJSON *body;		/* parsed JSON object or NULL */
	struct org *org;
	bool legacy;
};

struct api_req;
typedef void (*api_fn)(struct api_req *rq, struct api_resp *rs);

struct api_route {
	const char *method;
	const char *pattern;	/* "/people/{id}" */
	const char *name;	/* "GET /people/{id}" */
	enum coll_kind kind;	/* the collection the route is about */
	unsigned scope;		/* 0: any valid key */
	bool write;		/* takes the write lock */
	bool body;		/* expects a JSON body */
	api_fn fn;
};

extern const struct api_route api_routes[];
extern const size_t api_route_count;

/*
 * Match method and path against the routes. Returns the route index, or -1
 * with allow set to the methods the path takes ("" when there is no such
 * path). id gets the {id} segment.
 */
int api_match(const char *method, const char *path, char *id, size_t idlen,
	      char *allow, size_t allowlen);

/* Fill rs as an error answer; details (owned) may be NULL. */
void api_error(struct api_resp *rs, int status, const char *code,
	       cJSON *details, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* A 400 VALIDATION_ERROR naming field in details.field. */
void api_invalid(struct api_resp *rs, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Per-process secret that makes cursors unforgeable by accident. */
extern uint64_t api_cursor_secret;

/* http.c */
struct emu_config {
	long rate_limit;
	long org_rate_limit;
	long latency_ms;
	double fail_rate;
	int fail_status;
	bool legacy;
	bool verbose;
	uint64_t seed;
	long log_size;
};

extern struct emu_config emu_cfg;

/* Start serving; returns the daemon handle or NULL. *port gets the port. */
struct MHD_Daemon *http_start(const char *bind_addr, int *port);
void http_stop(struct MHD_Daemon *d);

/* delay.c */
struct MHD_Connection;

/* Start the thread that resumes held connections; 0 or -1 (printed). */
int delay_start(void);

/*
 * From the access handler: suspend conn and resume it in ms milliseconds,
 * when libmicrohttpd calls the handler again. False once delay_stop has
 * begun: then nothing is held and the caller answers at once.
 */
bool delay_hold(struct MHD_Connection *conn, long ms);

/* Resume every held connection and end the timer thread. */
void delay_stop(void);

#endif
