/*
 * http: the emulator's HTTP side on libmicrohttpd.
 *
 * Every /api/v1 request goes through the same steps: authenticate, count
 * against the rate limits, match the route, maybe fail on purpose, check
 * the scope and the body, run the endpoint under the store lock, wrap the
 * answer in the (current or legacy) envelope, hold it back for the
 * configured latency, log it and send it.
 * /_emulator/... are the test hooks: no key, no limits, no latency, not
 * logged.
 *
 * A small pool of threads serves every connection (epoll). The latency
 * never sleeps in a handler, which would stall the other connections of
 * its thread: the connection is suspended and delay.c resumes it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "emu.h"

#define API_PREFIX "/api/v1"

/* What X-RateLimit-Limit says for a limit that is off (see README.md). */
#define RATE_OFF_LIMIT 1000000000L

/*
 * Pool threads per CPU. One would do for CPU-bound work; the second lets
 * the other connections of a thread move on while one waits for the store's
 * write lock. 1, 2 and 4 measured the same (README.md).
 */
#define POOL_PER_CPU 2

struct emu_config emu_cfg = {
	.rate_limit = 200,
	.org_rate_limit = 1000,
	.fail_status = 503,
	.log_size = 20000,
};

static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Request log (a ring) and counters, behind log_lock. */
struct log_entry {
	char method[16];
	char *path;
	int status;
	char *body;		/* raw JSON text of a parsed body, or NULL */
};

static struct log_entry *log_ring;
static size_t log_cap, log_start, log_len;
static long stat_total;
static long stat_route[64];
static long stat_unmatched;
static uint64_t req_seq;

/* Rate-limit answer headers; limit < 0 means none to send. */
struct rate_info {
	long limit;
	long remaining;
	int64_t reset;
	int64_t retry_after;
};

struct out {
	int status;
	char *text;		/* malloc'd JSON */
	struct rate_info rate;
	char allow[64];
	char request_id[32];
};

/* One request: its body, and an /api/v1 answer made but held back. */
struct conn_ctx {
	char *body;
	size_t len;
	size_t cap;
	bool too_large;
	bool held;		/* out is made; send it when resumed */
	struct out out;
	int route;
	int64_t t0;		/* when the request was complete, emu_mono_us */
};

static struct emu_config config_snapshot(void)
{
	struct emu_config c;

	pthread_mutex_lock(&cfg_lock);
	c = emu_cfg;
	pthread_mutex_unlock(&cfg_lock);
	return c;
}

static cJSON *meta(const struct out *o)
{
	cJSON *m = cJSON_CreateObject();
	char ts[32];

	emu_iso_seconds(emu_now_ms(), ts);
	cJSON_AddStringToObject(m, "request_id", o->request_id);
	cJSON_AddStringToObject(m, "api_version", "1");
	cJSON_AddStringToObject(m, "timestamp", ts);
	return m;
}

static char *print(cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);

	if (!s)
		abort();
	cJSON_Delete(j);
	return s;
}

static void envelope_error(struct out *o, struct api_resp *rs, bool legacy)
{
	cJSON *env = cJSON_CreateObject();
	cJSON *err = env;

	if (legacy) {
		cJSON_AddFalseToObject(env, "success");
	} else {
		cJSON_AddStringToObject(env, "object", "error");
		err = cJSON_AddObjectToObject(env, "error");
	}
	cJSON_AddStringToObject(err, "code", rs->code);
	cJSON_AddStringToObject(err, "message", rs->message);
	if (rs->details) {
		cJSON_AddItemToObject(err, "details", rs->details);
		rs->details = NULL;
	}
	cJSON_AddItemToObject(env, "meta", meta(o));
	o->status = rs->status;
	o->text = print(env);
}

static cJSON *page_info(const struct api_resp *rs, bool legacy)
{
	cJSON *pi = cJSON_CreateObject();

	cJSON_AddItemToObject(pi, legacy ? "end_cursor" : "next_cursor",
			      rs->next_cursor
			      ? cJSON_CreateString(rs->next_cursor)
			      : cJSON_CreateNull());
	cJSON_AddBoolToObject(pi, legacy ? "has_next_page" : "has_more",
			      rs->has_more);
	return pi;
}

/* Print the answer of an endpoint; called with the store lock held. */
static void envelope(struct out *o, struct api_resp *rs, bool legacy)
{
	cJSON *env, *m;

	if (rs->code)
		return envelope_error(o, rs, legacy);
	env = cJSON_CreateObject();
	if (legacy) {
		cJSON_AddTrueToObject(env, "success");
		if (rs->is_list) {
			cJSON *d = cJSON_AddObjectToObject(env, "data");

			cJSON_AddItemToObject(d, coll_name(rs->list_kind),
					      rs->data);
		} else {
			cJSON_AddItemToObject(env, "data", rs->data);
		}
	} else {
		cJSON_AddStringToObject(env, "object", "success");
		cJSON_AddItemToObject(env, "data", rs->data);
		if (rs->is_list)
			cJSON_AddItemToObject(env, "page_info",
					      page_info(rs, false));
	}
	rs->data = NULL;
	m = meta(o);
	if (legacy && rs->is_list)
		cJSON_AddItemToObject(m, "page_info", page_info(rs, true));
	cJSON_AddItemToObject(env, "meta", m);
	o->status = rs->status;
	o->text = print(env);
}

static void resp_free(struct api_resp *rs)
{
	cJSON_Delete(rs->data);
	cJSON_Delete(rs->details);
	free(rs->next_cursor);
}

/* Answer with an error that does not come from an endpoint. */
static void fail(struct out *o, bool legacy, int status, const char *code,
		 cJSON *details, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void fail(struct out *o, bool legacy, int status, const char *code,
		 cJSON *details, const char *fmt, ...)
{
	struct api_resp rs = { 0 };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rs.message, sizeof(rs.message), fmt, ap);
	va_end(ap);
	rs.status = status;
	rs.code = code;
	rs.details = details;
	envelope_error(o, &rs, legacy);
	resp_free(&rs);
}

static cJSON *detail(const char *name, const char *value)
{
	cJSON *d = cJSON_CreateObject();

	cJSON_AddStringToObject(d, name, value);
	return d;
}

static struct key *find_key(struct MHD_Connection *c)
{
	const char *k = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    "X-Klipy-Api-Key");
	const char *auth;

	if (!k) {
		auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						   "Authorization");
		if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
			k = auth + 7;
			while (*k == ' ')
				k++;
		}
	}
	return k ? store_key_find(k) : NULL;
}

static void window_roll(struct rate_window *w, int64_t now)
{
	if (w->start == 0 || now >= w->start + 60) {
		w->start = now;
		w->count = 0;
	}
}

/*
 * The limit a window reports in the headers. A limit that is off reports
 * RATE_OFF_LIMIT, so that a client that stops at "Remaining: 0" never
 * stops, and one that reads "Limit: 0" as "no requests" is not misled.
 */
static long rate_report_limit(long configured)
{
	return configured > 0 ? configured : RATE_OFF_LIMIT;
}

/* Report the window, key or organization, that has fewer requests left. */
static void rate_report(const struct rate_window *kw,
			const struct rate_window *ow,
			const struct emu_config *cfg, struct rate_info *ri)
{
	long kl = rate_report_limit(cfg->rate_limit);
	long ol = rate_report_limit(cfg->org_rate_limit);
	long krem = kl - kw->count, orem = ol - ow->count;

	if (krem <= orem) {
		ri->limit = kl;
		ri->remaining = krem;
		ri->reset = kw->start + 60;
	} else {
		ri->limit = ol;
		ri->remaining = orem;
		ri->reset = ow->start + 60;
	}
	/* a limit lowered at run time can leave a count above it */
	if (ri->remaining < 0)
		ri->remaining = 0;
}

/*
 * Headers for an answer that counts against no window (401: no valid key,
 * so no window of its own): the configured limit, all of it left, and a
 * window that would start now.
 */
static void rate_report_uncounted(const struct emu_config *cfg,
				  struct rate_info *ri)
{
	struct rate_window fresh = { .start = time(NULL), .count = 0 };

	rate_report(&fresh, &fresh, cfg, ri);
}

/* Count the request; false when it is over a limit (and not counted). */
static bool rate_take(struct key *k, const struct emu_config *cfg,
		      struct rate_info *ri)
{
	struct rate_window *kw = &k->rw, *ow = &k->org->rw;
	int64_t now = time(NULL), reset;
	bool over_key, over_org;

	pthread_mutex_lock(&rate_lock);
	window_roll(kw, now);
	window_roll(ow, now);
	over_key = cfg->rate_limit > 0 && kw->count >= cfg->rate_limit;
	over_org = cfg->org_rate_limit > 0 && ow->count >= cfg->org_rate_limit;
	if (!over_key && !over_org) {
		/* windows count even with the limits off, for the headers */
		kw->count++;
		ow->count++;
	}
	rate_report(kw, ow, cfg, ri);
	if (over_key || over_org) {
		/* the window that refused decides when to come back */
		reset = over_key ? kw->start + 60 : ow->start + 60;
		if (over_key && over_org && ow->start + 60 > reset)
			reset = ow->start + 60;
		ri->reset = reset;
		ri->remaining = 0;
		ri->retry_after = reset - now > 0 ? reset - now : 1;
	}
	pthread_mutex_unlock(&rate_lock);
	return !over_key && !over_org;
}

static bool should_fail(const struct emu_config *cfg, uint64_t seq)
{
	uint64_t s = cfg->seed ^ (seq * 0x9e3779b97f4a7c15ULL);

	if (cfg->fail_rate <= 0)
		return false;
	return (double)(rng_next(&s) >> 11) / 9007199254740992.0 <
	       cfg->fail_rate;
}

static bool json_content_type(struct MHD_Connection *c)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     "Content-Type");
	size_t n = strlen("application/json");

	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	return strncasecmp(ct, "application/json", n) == 0 &&
	       (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static void log_request(const char *method, const char *url, int route,
			int status, const char *body)
{
	struct log_entry *e;

	pthread_mutex_lock(&log_lock);
	stat_total++;
	if (route >= 0)
		stat_route[route]++;
	else
		stat_unmatched++;
	if (log_len == log_cap) {
		e = &log_ring[log_start];
		free(e->path);
		free(e->body);
		log_start = (log_start + 1) % log_cap;
		log_len--;
	}
	e = &log_ring[(log_start + log_len) % log_cap];
	log_len++;
	snprintf(e->method, sizeof(e->method), "%s", method);
	e->path = strdup(url);
	e->status = status;
	e->body = body ? strdup(body) : NULL;
	pthread_mutex_unlock(&log_lock);
}

struct api_call {
	struct MHD_Connection *conn;
	const char *method;
	const char *url;
	struct conn_ctx *ctx;
	struct emu_config cfg;
	uint64_t seq;
	struct out *o;
	int route;
	cJSON *body;
};

static bool body_check(struct api_call *ac, const struct api_route *r)
{
	struct conn_ctx *ctx = ac->ctx;
	bool legacy = ac->cfg.legacy;

	if (ctx->too_large) {
		fail(ac->o, legacy, 413, "PAYLOAD_TOO_LARGE", NULL,
		     "The request body is larger than %d bytes", EMU_MAX_BODY);
		return false;
	}
	if (!r->body)
		return true;
	if (!json_content_type(ac->conn)) {
		fail(ac->o, legacy, 400, "VALIDATION_ERROR",
		     detail("field", "Content-Type"),
		     "Content-Type must be application/json");
		return false;
	}
	if (ctx->len == 0 && strstr(r->pattern, "/query"))
		ac->body = cJSON_CreateObject();
	else if (ctx->len)
		ac->body = cJSON_ParseWithLengthOpts(ctx->body, ctx->len + 1, NULL,
						     1);
	if (!ac->body) {
		fail(ac->o, legacy, 400, "VALIDATION_ERROR",
		     detail("field", "body"),
		     "The request body is not valid JSON");
		return false;
	}
	if (!cJSON_IsObject(ac->body)) {
		fail(ac->o, legacy, 400, "VALIDATION_ERROR",
		     detail("field", "body"),
		     "The request body must be a JSON object");
		return false;
	}
	return true;
}

/* Steps before the endpoint runs; false when they already answered. */
static bool precheck(struct api_call *ac, struct key **keyp, char *id,
		     size_t idlen)
{
	const char *path = ac->url + strlen(API_PREFIX);
	struct out *o = ac->o;
	bool legacy = ac->cfg.legacy;
	struct key *k = find_key(ac->conn);
	const struct api_route *r;

	ac->route = api_match(ac->method, path, id, idlen, o->allow,
			      sizeof(o->allow));
	if (!k || k->expired || k->revoked) {
		rate_report_uncounted(&ac->cfg, &o->rate);
		fail(o, legacy, 401, "INVALID_API_KEY", NULL, "%s",
		     !k ? "Missing or unknown API key"
		     : k->expired ? "API key expired" : "API key revoked");
		return false;
	}
	*keyp = k;
	if (!rate_take(k, &ac->cfg, &o->rate)) {
		fail(o, legacy, 429, "RATE_LIMITED", NULL,
		     "Rate limit exceeded, retry in %lld seconds",
		     (long long)o->rate.retry_after);
		return false;
	}
	if (ac->route < 0) {
		if (o->allow[0])
			fail(o, legacy, 405, "METHOD_NOT_ALLOWED", NULL,
			     "%s is not allowed on %s", ac->method, path);
		else
			fail(o, legacy, 404, "NOT_FOUND", NULL,
			     "No route %s %s", ac->method, path);
		return false;
	}
	if (should_fail(&ac->cfg, ac->seq)) {
		int st = ac->cfg.fail_status;

		fail(o, legacy, st, st == 500 ? "INTERNAL_ERROR" : "UNAVAILABLE",
		     NULL, "The service is unavailable, retry later");
		return false;
	}
	r = &api_routes[ac->route];
	if (r->scope && !(k->scopes & r->scope)) {
		fail(o, legacy, 403, "INSUFFICIENT_SCOPE",
		     detail("required_scope", scope_name(r->scope)),
		     "This API key lacks the scope %s", scope_name(r->scope));
		return false;
	}
	return body_check(ac, r);
}

static void api_handle(struct api_call *ac)
{
	struct api_resp rs = { 0 };
	struct api_req rq = { 0 };
	const struct api_route *r;
	struct key *k = NULL;
	char id[128];

	if (!precheck(ac, &k, id, sizeof(id)))
		return;
	r = &api_routes[ac->route];
	rq.method = ac->method;
	rq.path = ac->url + strlen(API_PREFIX);
	rq.id = id;
	rq.route = r;
	rq.body = ac->body;
	rq.org = k->org;
	rq.legacy = ac->cfg.legacy;
	if (r->write)
		pthread_rwlock_wrlock(&store.lock);
	else
		pthread_rwlock_rdlock(&store.lock);
	r->fn(&rq, &rs);
	envelope(ac->o, &rs, ac->cfg.legacy);
	pthread_rwlock_unlock(&store.lock);
	resp_free(&rs);
}

static void add_header(struct MHD_Response *resp, const char *name,
		       long long value)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", value);
	MHD_add_response_header(resp, name, buf);
}

static enum MHD_Result send_out(struct MHD_Connection *conn, struct out *o)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(o->text), o->text,
					       MHD_RESPMEM_MUST_FREE);
	o->text = NULL;
	MHD_add_response_header(resp, "Content-Type",
				"application/json; charset=utf-8");
	if (o->request_id[0])
		MHD_add_response_header(resp, "X-Request-Id", o->request_id);
	if (o->rate.limit >= 0) {
		add_header(resp, "X-RateLimit-Limit", o->rate.limit);
		add_header(resp, "X-RateLimit-Remaining", o->rate.remaining);
		add_header(resp, "X-RateLimit-Reset", o->rate.reset);
	}
	if (o->status == 429)
		add_header(resp, "Retry-After", o->rate.retry_after);
	if (o->status == 405)
		MHD_add_response_header(resp, "Allow", o->allow);
	ret = MHD_queue_response(conn, o->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Log an /api/v1 answer made earlier and send it. */
static enum MHD_Result api_answer(struct MHD_Connection *conn,
				  const char *method, const char *url,
				  struct conn_ctx *ctx)
{
	struct out *o = &ctx->out;

	ctx->held = false;
	log_request(method, url, ctx->route, o->status,
		    ctx->too_large ? NULL : ctx->body);
	if (emu_cfg.verbose)
		fprintf(stderr, "%s %s %d %lldms\n", method, url, o->status,
			(long long)(emu_mono_us() - ctx->t0) / 1000);
	return send_out(conn, o);
}

static enum MHD_Result serve_api(struct MHD_Connection *conn,
				 const char *method, const char *url,
				 struct conn_ctx *ctx)
{
	struct out *o = &ctx->out;
	struct api_call ac = {
		.conn = conn, .method = method, .url = url, .ctx = ctx,
		.o = o, .route = -1,
	};
	uint64_t h;

	ctx->t0 = emu_mono_us();
	ac.cfg = config_snapshot();
	ac.seq = __atomic_add_fetch(&req_seq, 1, __ATOMIC_RELAXED);
	h = ac.seq ^ ac.cfg.seed;
	snprintf(o->request_id, sizeof(o->request_id), "req_%016llx",
		 (unsigned long long)rng_next(&h));
	o->rate.limit = -1;
	api_handle(&ac);
	cJSON_Delete(ac.body);
	ctx->route = ac.route;
	if (ac.cfg.latency_ms > 0 && delay_hold(conn, ac.cfg.latency_ms)) {
		ctx->held = true;
		return MHD_YES;
	}
	return api_answer(conn, method, url, ctx);
}

static enum MHD_Result send_json(struct MHD_Connection *conn, int status,
				 cJSON *j)
{
	struct out o = { .status = status, .rate.limit = -1 };

	o.text = print(j);
	return send_out(conn, &o);
}

static enum MHD_Result control_error(struct MHD_Connection *conn,
				     int status, const char *msg)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "error", msg);
	return send_json(conn, status, j);
}

static cJSON *stats_json(void)
{
	cJSON *j = cJSON_CreateObject();
	cJSON *by;

	pthread_mutex_lock(&log_lock);
	cJSON_AddNumberToObject(j, "total", stat_total);
	by = cJSON_AddObjectToObject(j, "by_route");
	for (size_t i = 0; i < api_route_count; i++)
		if (stat_route[i])
			cJSON_AddNumberToObject(by, api_routes[i].name,
						stat_route[i]);
	if (stat_unmatched)
		cJSON_AddNumberToObject(by, "(unmatched)", stat_unmatched);
	pthread_mutex_unlock(&log_lock);
	return j;
}

static cJSON *requests_json(void)
{
	cJSON *arr = cJSON_CreateArray();

	pthread_mutex_lock(&log_lock);
	for (size_t i = 0; i < log_len; i++) {
		const struct log_entry *e = &log_ring[(log_start + i) % log_cap];
		cJSON *o = cJSON_CreateObject();
		cJSON *body = e->body ? cJSON_Parse(e->body) : NULL;

		cJSON_AddStringToObject(o, "method", e->method);
		cJSON_AddStringToObject(o, "path", e->path);
		cJSON_AddNumberToObject(o, "status", e->status);
		cJSON_AddItemToObject(o, "body",
				      body ? body : cJSON_CreateNull());
		cJSON_AddItemToArray(arr, o);
	}
	pthread_mutex_unlock(&log_lock);
	return arr;
}

static void log_reset(void)
{
	pthread_mutex_lock(&log_lock);
	for (size_t i = 0; i < log_len; i++) {
		struct log_entry *e = &log_ring[(log_start + i) % log_cap];

		free(e->path);
		free(e->body);
	}
	log_start = log_len = 0;
	stat_total = stat_unmatched = 0;
	memset(stat_route, 0, sizeof(stat_route));
	pthread_mutex_unlock(&log_lock);
}

static cJSON *config_json(void)
{
	struct emu_config c = config_snapshot();
	cJSON *j = cJSON_CreateObject();

	cJSON_AddNumberToObject(j, "fail_rate", c.fail_rate);
	cJSON_AddNumberToObject(j, "fail_status", c.fail_status);
	cJSON_AddNumberToObject(j, "latency_ms", c.latency_ms);
	cJSON_AddNumberToObject(j, "rate_limit", c.rate_limit);
	cJSON_AddNumberToObject(j, "org_rate_limit", c.org_rate_limit);
	cJSON_AddBoolToObject(j, "legacy_envelope", c.legacy);
	return j;
}

static void clear_rate_windows(void)
{
	pthread_mutex_lock(&rate_lock);
	for (struct key *k = store.keys; k; k = k->next)
		k->rw.start = k->rw.count = 0;
	for (struct org *o = store.orgs; o; o = o->next)
		o->rw.start = o->rw.count = 0;
	pthread_mutex_unlock(&rate_lock);
}

static bool num_in(const cJSON *v, double lo, double hi)
{
	return cJSON_IsNumber(v) && v->valuedouble >= lo &&
	       v->valuedouble <= hi;
}

/* Apply a config change; NULL or the name of the offending setting. */
static const char *config_apply(const cJSON *b)
{
	struct emu_config c = config_snapshot();
	const cJSON *e;

	cJSON_ArrayForEach(e, b) {
		const char *n = e->string;

		if (strcmp(n, "fail_rate") == 0 && num_in(e, 0, 1))
			c.fail_rate = e->valuedouble;
		else if (strcmp(n, "fail_status") == 0 && num_in(e, 500, 599))
			c.fail_status = (int)e->valuedouble;
		else if (strcmp(n, "latency_ms") == 0 && num_in(e, 0, 600000))
			c.latency_ms = (long)e->valuedouble;
		else if (strcmp(n, "rate_limit") == 0 && num_in(e, 0, 1e9))
			c.rate_limit = (long)e->valuedouble;
		else if (strcmp(n, "org_rate_limit") == 0 && num_in(e, 0, 1e9))
			c.org_rate_limit = (long)e->valuedouble;
		else if (strcmp(n, "legacy_envelope") == 0 && cJSON_IsBool(e))
			c.legacy = cJSON_IsTrue(e);
		else if (strcmp(n, "clear_rate_limits") == 0 && cJSON_IsBool(e))
			continue;
		else
			return n;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b,
							  "clear_rate_limits")))
		clear_rate_windows();
	pthread_mutex_lock(&cfg_lock);
	emu_cfg = c;
	pthread_mutex_unlock(&cfg_lock);
	return NULL;
}

static enum MHD_Result serve_config(struct MHD_Connection *conn,
				    struct conn_ctx *ctx)
{
	cJSON *b = ctx->len ? cJSON_ParseWithLength(ctx->body, ctx->len)
			    : NULL;
	const char *bad;
	char msg[160];

	if (!cJSON_IsObject(b)) {
		cJSON_Delete(b);
		return control_error(conn, 400, "body must be a JSON object");
	}
	bad = config_apply(b);
	if (bad) {
		snprintf(msg, sizeof(msg), "bad or unknown setting '%s'", bad);
		cJSON_Delete(b);
		return control_error(conn, 400, msg);
	}
	cJSON_Delete(b);
	return send_json(conn, 200, config_json());
}

static enum MHD_Result serve_records(struct MHD_Connection *conn,
				     const char *coll)
{
	const char *org_id = MHD_lookup_connection_value(
		conn, MHD_GET_ARGUMENT_KIND, "org");
	struct org *o = org_id ? store_org_find(org_id) : store.default_org;
	int k = coll_from_name(coll);
	enum MHD_Result ret;
	cJSON *arr;

	if (k < 0)
		return control_error(conn, 404, "no such collection");
	if (!o)
		return control_error(conn, 404, "no such organization");
	arr = cJSON_CreateArray();
	pthread_rwlock_rdlock(&store.lock);
	for (size_t i = 0; i < o->c[k].n; i++) {
		const struct rec *r = o->c[k].v[i];

		if (!r->deleted)
			cJSON_AddItemToArray(arr, cJSON_CreateObjectReference(
						     r->json->child));
	}
	ret = send_json(conn, 200, arr);
	pthread_rwlock_unlock(&store.lock);
	return ret;
}

static enum MHD_Result serve_control(struct MHD_Connection *conn,
				     const char *method, const char *url,
				     struct conn_ctx *ctx)
{
	const char *what = url + strlen("/_emulator/");
	bool get = strcmp(method, "GET") == 0;
	bool post = strcmp(method, "POST") == 0;

	if (get && strcmp(what, "stats") == 0)
		return send_json(conn, 200, stats_json());
	if (get && strcmp(what, "requests") == 0)
		return send_json(conn, 200, requests_json());
	if (get && strcmp(what, "config") == 0)
		return send_json(conn, 200, config_json());
	if (post && strcmp(what, "config") == 0)
		return serve_config(conn, ctx);
	if (post && strcmp(what, "reset") == 0) {
		log_reset();
		return send_json(conn, 200, cJSON_CreateObject());
	}
	if (get && strncmp(what, "records/", 8) == 0)
		return serve_records(conn, what + 8);
	if (get && strcmp(what, "health") == 0)
		return send_json(conn, 200, cJSON_CreateObject());
	return control_error(conn, 404, "no such emulator endpoint");
}

static void body_append(struct conn_ctx *ctx, const char *data, size_t n)
{
	if (ctx->too_large)
		return;
	if (ctx->len + n > EMU_MAX_BODY) {
		/* keep reading but stop buffering: the answer is a 413 */
		ctx->too_large = true;
		free(ctx->body);
		ctx->body = NULL;
		ctx->len = 0;
		return;
	}
	if (ctx->len + n + 1 > ctx->cap) {
		ctx->cap = (ctx->len + n + 1) * 2;
		ctx->body = realloc(ctx->body, ctx->cap);
		if (!ctx->body)
			abort();
	}
	memcpy(ctx->body + ctx->len, data, n);
	ctx->len += n;
	ctx->body[ctx->len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct conn_ctx *ctx = *con_cls;
	cJSON *err;

	(void)cls;
	(void)version;
	if (!ctx) {
		const char *cl = MHD_lookup_connection_value(
			conn, MHD_HEADER_KIND, "Content-Length");

		ctx = calloc(1, sizeof(*ctx));
		if (!ctx)
			return MHD_NO;
		if (cl && strtoull(cl, NULL, 10) > EMU_MAX_BODY)
			ctx->too_large = true;
		*con_cls = ctx;
		return MHD_YES;
	}
	if (*upload_size) {
		body_append(ctx, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (ctx->held)
		return api_answer(conn, method, url, ctx);
	if (strncmp(url, "/_emulator/", 11) == 0)
		return serve_control(conn, method, url, ctx);
	if (strcmp(url, API_PREFIX) == 0 ||
	    strncmp(url, API_PREFIX "/", strlen(API_PREFIX) + 1) == 0)
		return serve_api(conn, method, url, ctx);
	err = cJSON_CreateObject();
	cJSON_AddStringToObject(err, "object", "error");
	cJSON_AddItemToObject(err, "error", cJSON_CreateObject());
	cJSON_AddStringToObject(cJSON_GetObjectItem(err, "error"), "code",
				"NOT_FOUND");
	cJSON_AddStringToObject(cJSON_GetObjectItem(err, "error"), "message",
				"Not under " API_PREFIX);
	return send_json(conn, 404, err);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct conn_ctx *ctx = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (ctx) {
		free(ctx->body);
		free(ctx->out.text);
		free(ctx);
		*con_cls = NULL;
	}
}

static unsigned http_pool_size(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return (unsigned)((n > 0 ? n : 1) * POOL_PER_CPU);
}

struct MHD_Daemon *http_start(const char *bind_addr, int *port)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_ALLOW_SUSPEND_RESUME;
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	const union MHD_DaemonInfo *info;
	struct MHD_Daemon *d;

	if (inet_pton(AF_INET, bind_addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(*port);
	} else if (inet_pton(AF_INET6, bind_addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(*port);
		flags |= MHD_USE_IPv6;
	} else {
		fprintf(stderr, "klipy-emulator: bad bind address '%s'\n",
			bind_addr);
		return NULL;
	}
	if (emu_cfg.verbose)
		flags |= MHD_USE_ERROR_LOG;
	log_cap = emu_cfg.log_size > 0 ? (size_t)emu_cfg.log_size : 1;
	log_ring = calloc(log_cap, sizeof(*log_ring));
	if (!log_ring)
		abort();
	/* the timer first: a request may come in as soon as we listen */
	if (delay_start() < 0)
		return NULL;
	d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
			     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
			     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)4000,
			     MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
			     MHD_OPTION_THREAD_POOL_SIZE, http_pool_size(),
			     MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "klipy-emulator: cannot listen on %s:%d\n",
			bind_addr, *port);
		delay_stop();
		return NULL;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (info)
		*port = info->port;
	return d;
}

void http_stop(struct MHD_Daemon *d)
{
	delay_stop();
	MHD_stop_daemon(d);
	log_reset();
	free(log_ring);
	log_ring = NULL;
}
