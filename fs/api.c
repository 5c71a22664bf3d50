/* api: see include/api.h; decoding lives in fs/api_decode.c */
#include "api.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "api_decode.h"
#include "log.h"

#ifndef KLIPYFS_VERSION
#define KLIPYFS_VERSION "dev"
#endif

#define DEFAULT_RATE_LIMIT 200
#define DEFAULT_MAX_RETRIES 4
#define DEFAULT_CONNECT_MS 2000L
#define DEFAULT_TOTAL_MS 5000L
#define UNREACHABLE_TIMEOUT_MS 1500L

#define BACKOFF_FIRST_MS 200L
#define BACKOFF_MAX_MS 1600L
#define MAX_429_WAITS 6
#define MAX_429_WAIT_MS 60000L
#define WINDOW_MS 60000L
/* A server reset further away than this is a bad header, not a plan. */
#define MAX_PACE_WAIT_MS 61000L
/* Answers bigger than this are not a Klipy answer. */
#define MAX_BODY (64u << 20)
#define MAX_ENDPOINTS 48

/* A request being made that identical reads may wait for. */
struct flight {
	struct flight *next;
	char *key;		/* method, path and body */
	int waiters;
	bool done;
	int rc;
	struct api_result res;
};

struct endpoint_count {
	char name[48];
	uint64_t n;
};

struct api {
	char *base_url;
	struct curl_slist *headers;	/* holds the key: zeroed at free */
	int rate_limit;
	int max_retries;
	long connect_ms;
	long total_ms;

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	CURL **pool;		/* idle easy handles, kept for reuse */
	size_t pool_len, pool_cap;

	/* Everything below is under lock. */
	pthread_mutex_t lock;
	pthread_cond_t pace_cond;	/* the pacer's state changed */
	int64_t pace_logged_until;	/* monotonic ms: a stall was logged */
	pthread_cond_t flight_cond;	/* a flight landed */
	int64_t *starts;	/* ring of request starts (monotonic ms) */
	int nstarts, start_head;
	int inflight;
	long srv_limit, srv_remaining;	/* -1 until the server said */
	int64_t srv_reset;		/* Unix seconds, -1 unknown */
	int64_t blocked_until;		/* monotonic ms, after a 429 */
	struct flight *flights;
	struct endpoint_count endpoints[MAX_ENDPOINTS];
	int nendpoints;
	uint64_t total, retries, rate_limited, paced_waits, merged;

	atomic_bool reachable;
	atomic_bool offline;
};

/* One HTTP exchange as it happened. */
struct exchange {
	CURLcode cc;
	long status;
	char *body;
	size_t len;
	bool too_big;
	char retry_after[64];
	char rl_limit[32], rl_remaining[32], rl_reset[32];
	char curl_err[CURL_ERROR_SIZE];
};

/* What one call asks for. */
struct call {
	const char *method;
	char *path;		/* below the base URL: /people/h7w8y2f1 */
	char *body;		/* NULL for none */
	const char *endpoint;	/* stats key, e.g. GET /people/{id} */
	bool list;		/* decode data as an array with a cursor */
	bool mergeable;		/* a read: identical reads share one */
	bool resend_ok;		/* may resend after a lost answer */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	/*
	 * Never undone: curl_global_cleanup is not thread safe and the
	 * process ends soon after the last client anyway.
	 */
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (ms > 0 && nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static struct timespec mono_deadline(int64_t at_ms)
{
	struct timespec ts = { at_ms / 1000, (at_ms % 1000) * 1000000L };

	return ts;
}

/* @ms spread by +-50%, so clients that failed together retry apart. */
static long jitter(long ms)
{
	static _Thread_local unsigned int seed;

	if (!seed)
		seed = (unsigned int)mono_ms() ^ (unsigned int)pthread_self();
	return ms / 2 + (long)(rand_r(&seed) % (unsigned int)(ms + 1));
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access acc,
		       void *user)
{
	struct api *api = user;

	(void)h;
	(void)acc;
	pthread_mutex_lock(&api->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *user)
{
	struct api *api = user;

	(void)h;
	pthread_mutex_unlock(&api->share_locks[data]);
}

/* The one place a CURLcode becomes an errno. */
static int curl_errno(CURLcode cc, bool *transport)
{
	*transport = false;
	switch (cc) {
	case CURLE_OK:
		return 0;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		/* Retrying will not fix a certificate; say so and give up. */
		return -EAGAIN;
	default:
		*transport = true;
		return -EAGAIN;
	}
}

/* Easy handles */

static CURL *handle_get(struct api *api)
{
	CURL *h = NULL;

	pthread_mutex_lock(&api->pool_lock);
	if (api->pool_len)
		h = api->pool[--api->pool_len];
	pthread_mutex_unlock(&api->pool_lock);
	if (h)
		curl_easy_reset(h);
	else
		h = curl_easy_init();
	return h;
}

static void handle_put(struct api *api, CURL *h)
{
	CURL **grown;

	pthread_mutex_lock(&api->pool_lock);
	if (api->pool_len == api->pool_cap) {
		grown = realloc(api->pool, (api->pool_cap * 2 + 8) *
				sizeof(*grown));
		if (!grown) {
			pthread_mutex_unlock(&api->pool_lock);
			curl_easy_cleanup(h);
			return;
		}
		api->pool = grown;
		api->pool_cap = api->pool_cap * 2 + 8;
	}
	api->pool[api->pool_len++] = h;
	pthread_mutex_unlock(&api->pool_lock);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct exchange *ex = user;
	size_t n = size * nmemb;
	char *grown;

	if (ex->len + n > MAX_BODY) {
		ex->too_big = true;
		return 0;
	}
	grown = realloc(ex->body, ex->len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + ex->len, ptr, n);
	ex->body = grown;
	ex->len += n;
	ex->body[ex->len] = '\0';
	return n;
}

/* Keep @line's value in @dst if it is header @name. */
static void take_header(const char *line, size_t len, const char *name,
			char *dst, size_t size)
{
	size_t nlen = strlen(name);

	if (len <= nlen || line[nlen] != ':' ||
	    strncasecmp(line, name, nlen) != 0)
		return;
	line += nlen + 1;
	len -= nlen + 1;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n' ||
		       line[len - 1] == ' '))
		len--;
	if (len >= size)
		len = size - 1;
	memcpy(dst, line, len);
	dst[len] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *user)
{
	struct exchange *ex = user;
	size_t n = size * nmemb;

	/* A new status line (after a 100 Continue): forget the old headers. */
	if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
		ex->retry_after[0] = ex->rl_limit[0] = '\0';
		ex->rl_remaining[0] = ex->rl_reset[0] = '\0';
	}
	take_header(line, n, "Retry-After", ex->retry_after,
		    sizeof(ex->retry_after));
	take_header(line, n, "X-RateLimit-Limit", ex->rl_limit,
		    sizeof(ex->rl_limit));
	take_header(line, n, "X-RateLimit-Remaining", ex->rl_remaining,
		    sizeof(ex->rl_remaining));
	take_header(line, n, "X-RateLimit-Reset", ex->rl_reset,
		    sizeof(ex->rl_reset));
	return n;
}

static void exchange_clear(struct exchange *ex)
{
	free(ex->body);
	memset(ex, 0, sizeof(*ex));
}

/* Send @c once and fill @ex; returns -ENOMEM when no handle could be had. */
static int exchange_once(struct api *api, const struct call *c,
			 struct exchange *ex)
{
	struct curl_slist *hdrs = api->headers;
	char *url;
	CURL *h;

	memset(ex, 0, sizeof(*ex));
	if (asprintf(&url, "%s%s", api->base_url, c->path) < 0)
		return -ENOMEM;
	h = handle_get(api);
	if (!h) {
		free(url);
		return -ENOMEM;
	}

	curl_easy_setopt(h, CURLOPT_SHARE, api->share);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_MAXCONNECTS, 64L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, api->connect_ms);
	/*
	 * While the server looks down, a stalled connection must not cost
	 * every file the full timeout: one short attempt tells.
	 */
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
			 atomic_load(&api->reachable) ? api->total_ms :
			 (api->total_ms < UNREACHABLE_TIMEOUT_MS ?
			  api->total_ms : UNREACHABLE_TIMEOUT_MS));
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	/* Never follow a redirect: it would carry the key elsewhere. */
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "klipyfs/" KLIPYFS_VERSION);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, ex);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, ex);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ex->curl_err);
	if (c->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE,
				 (long)strlen(c->body));
	} else if (strcmp(c->method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}

	ex->cc = curl_easy_perform(h);
	if (ex->cc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ex->status);
	else if (!ex->curl_err[0])
		snprintf(ex->curl_err, sizeof(ex->curl_err), "%s",
			 curl_easy_strerror(ex->cc));
	if (ex->too_big)
		snprintf(ex->curl_err, sizeof(ex->curl_err),
			 "answer larger than %u bytes", MAX_BODY);
	handle_put(api, h);
	free(url);
	return 0;
}

/* Pacer */

static void window_drop_old(struct api *api, int64_t now)
{
	while (api->nstarts &&
	       now - api->starts[api->start_head] >= WINDOW_MS) {
		api->start_head = (api->start_head + 1) % api->rate_limit;
		api->nstarts--;
	}
}

/* When the next request may start (monotonic ms); <= @now means now. */
static int64_t pace_ready_at(struct api *api, int64_t now)
{
	int64_t at = now, wall = time(NULL), srv;

	window_drop_old(api, now);
	if (api->nstarts >= api->rate_limit)
		at = api->starts[api->start_head] + WINDOW_MS;
	if (api->blocked_until > at)
		at = api->blocked_until;

	/* The server's count, less what we have sent since it answered. */
	if (api->srv_remaining >= 0 && api->srv_reset > wall &&
	    api->srv_remaining - api->inflight <= 0) {
		srv = now + (api->srv_reset - wall) * 1000;
		if (srv > now + MAX_PACE_WAIT_MS)
			srv = now + MAX_PACE_WAIT_MS;
		if (srv > at)
			at = srv;
	}
	return at;
}

/*
 * Say so when the budget is spent and file operations will stall: once per
 * stall of a second or more (not once per waiting request), and at debug
 * level every time.  Caller holds api->lock.
 */
static void pace_note(struct api *api, int64_t now, int64_t at)
{
	log_debug("pacing: waiting %lld ms for the rate limit",
		  (long long)(at - now));
	if (at - now < 1000 || now < api->pace_logged_until)
		return;
	api->pace_logged_until = at;
	log_info("the API's rate limit is spent: requests wait %lld s for "
		 "the next window (see .klipy/status)",
		 (long long)((at - now + 999) / 1000));
}

/*
 * Wait until a request may start under both limits, then count it as
 * started.  The wait is a timed condition wait, so the lock is free while
 * we sleep and every finished request wakes us to look again.
 */
static void pace_acquire(struct api *api)
{
	bool counted = false;
	struct timespec ts;
	int64_t now, at;

	pthread_mutex_lock(&api->lock);
	for (;;) {
		now = mono_ms();
		at = pace_ready_at(api, now);
		if (at <= now)
			break;
		if (!counted) {
			api->paced_waits++;
			counted = true;
			pace_note(api, now, at);
		}
		ts = mono_deadline(at);
		pthread_cond_timedwait(&api->pace_cond, &api->lock, &ts);
	}
	api->starts[(api->start_head + api->nstarts) % api->rate_limit] = now;
	api->nstarts++;
	api->inflight++;
	pthread_mutex_unlock(&api->lock);
}

/* A request ended: take the server's view of the limit and count it. */
static void pace_release(struct api *api, const struct call *c,
			 const struct exchange *ex)
{
	int64_t wall = time(NULL), reset;
	int i;

	pthread_mutex_lock(&api->lock);
	api->inflight--;
	if (ex->rl_limit[0])
		api->srv_limit = strtol(ex->rl_limit, NULL, 10);
	if (ex->rl_remaining[0])
		api->srv_remaining = strtol(ex->rl_remaining, NULL, 10);
	if (ex->rl_reset[0]) {
		reset = api_parse_reset(ex->rl_reset, wall);
		if (reset >= 0)
			api->srv_reset = reset;
	}

	api->total++;
	for (i = 0; i < api->nendpoints; i++)
		if (strcmp(api->endpoints[i].name, c->endpoint) == 0)
			break;
	if (i == api->nendpoints && i < MAX_ENDPOINTS) {
		snprintf(api->endpoints[i].name,
			 sizeof(api->endpoints[i].name), "%s", c->endpoint);
		api->nendpoints++;
	}
	if (i < api->nendpoints)
		api->endpoints[i].n++;
	pthread_cond_broadcast(&api->pace_cond);
	pthread_mutex_unlock(&api->lock);
}

static void count(struct api *api, uint64_t *counter)
{
	pthread_mutex_lock(&api->lock);
	(*counter)++;
	pthread_mutex_unlock(&api->lock);
}

static void set_reachable(struct api *api, bool up, const char *why)
{
	bool was = atomic_exchange(&api->reachable, up);

	if (was && !up)
		log_warn("cannot reach '%s': %s", api->base_url, why);
	else if (!was && up)
		log_info("reached '%s' again", api->base_url);
}

/* Hold every request back until a 429's Retry-After has passed. */
static void block_until(struct api *api, int64_t at)
{
	pthread_mutex_lock(&api->lock);
	if (at > api->blocked_until)
		api->blocked_until = at;
	pthread_mutex_unlock(&api->lock);
}

/* The answer of a request that was sent and answered: decode it. */
static int finish(const struct call *c, struct exchange *ex,
		  struct api_result *res)
{
	char desc[600];
	int rc;

	res->http_status = (int)ex->status;
	rc = api_status_errno((int)ex->status);
	if (rc) {
		api_decode_error(ex->body, ex->len, (int)ex->status, &res->err);
		if (rc == -EIO)
			log_err("unexpected answer %ld to %s %s", ex->status,
				c->method, c->path);
		return rc;
	}
	rc = api_decode_success(ex->body, ex->len, c->list, res);
	if (rc == -EIO) {
		/* A proxy page or a changed API: retrying will not help. */
		api_decode_error(ex->body, ex->len, (int)ex->status,
				 &res->err);
		api_error_describe(&res->err, desc, sizeof(desc));
		log_err("cannot decode the answer to %s %s: %s", c->method,
			c->path, desc);
	}
	return rc;
}

/* Send @c, retrying as the server's answers allow; fill @res. */
static int perform(struct api *api, const struct call *c,
		   struct api_result *res)
{
	int budget = atomic_load(&api->reachable) ? api->max_retries : 0;
	int attempt = 0, waits = 0, rc;
	long backoff = BACKOFF_FIRST_MS, wait;
	bool transport, maybe_applied = false;
	struct exchange ex;
	int64_t t0;

	for (;;) {
		pace_acquire(api);
		t0 = mono_ms();
		rc = exchange_once(api, c, &ex);
		pace_release(api, c, &ex);
		if (rc)
			return rc;

		if (ex.too_big) {
			log_err("cannot read the answer to %s %s: %s",
				c->method, c->path, ex.curl_err);
			rc = -EIO;
			goto out;
		}
		rc = curl_errno(ex.cc, &transport);
		if (rc) {
			log_debug("%s %s failed: %s (%lld ms)", c->method,
				  c->path, ex.curl_err,
				  (long long)(mono_ms() - t0));
			res->err.http_status = 0;
			snprintf(res->err.code, sizeof(res->err.code),
				 "UNREACHABLE");
			snprintf(res->err.message, sizeof(res->err.message),
				 "%s", ex.curl_err);
			if (!transport) {
				log_err("cannot %s '%s%s': %s", c->method,
					api->base_url, c->path, ex.curl_err);
				goto out;
			}
			set_reachable(api, false, ex.curl_err);
			if (ex.cc != CURLE_COULDNT_CONNECT &&
			    ex.cc != CURLE_COULDNT_RESOLVE_HOST)
				res->maybe_applied = true;
			/*
			 * Once the server is out of reach, one more try is
			 * all a call gets: a mount must not hang for the
			 * whole backoff on every file while it is down.
			 */
			if (budget > attempt + 1)
				budget = attempt + 1;
			if (!c->resend_ok && ex.cc != CURLE_COULDNT_CONNECT &&
			    ex.cc != CURLE_COULDNT_RESOLVE_HOST)
				goto out;
			if (attempt >= budget)
				goto out;
			if (ex.cc != CURLE_COULDNT_CONNECT &&
			    ex.cc != CURLE_COULDNT_RESOLVE_HOST)
				maybe_applied = true;
		} else {
			log_debug("%s %s %ld %lld ms", c->method, c->path,
				  ex.status, (long long)(mono_ms() - t0));
			if (ex.status < 500)
				set_reachable(api, true, NULL);
			if (ex.status == 429) {
				count(api, &api->rate_limited);
				if (++waits > MAX_429_WAITS) {
					api_decode_error(ex.body, ex.len, 429,
							 &res->err);
					res->http_status = 429;
					rc = -EAGAIN;
					goto out;
				}
				wait = api_parse_retry_after(ex.retry_after,
							     time(NULL));
				if (wait < 0)
					wait = jitter(backoff);
				if (wait > MAX_429_WAIT_MS)
					wait = MAX_429_WAIT_MS;
				log_warn("rate limited on %s %s, "
					 "waiting %ld ms", c->method, c->path,
					 wait);
				block_until(api, mono_ms() + wait);
				sleep_ms(wait);
				exchange_clear(&ex);
				continue;
			}
			/* A 500 may have half-done a create; a 502-504 not. */
			if (ex.status < 500 || attempt >= budget ||
			    (!c->resend_ok && ex.status == 500)) {
				/*
				 * A server that keeps failing is as good as
				 * unreachable: later calls get one try each.
				 */
				if (ex.status == 500)
					res->maybe_applied = true;
				if (ex.status >= 500 && attempt >= budget) {
					char why[64];

					snprintf(why, sizeof(why),
						 "it answers HTTP %ld", ex.status);
					set_reachable(api, false, why);
				}
				rc = finish(c, &ex, res);
				/* The first DELETE landed, its answer not. */
				if (rc == -ENOENT && maybe_applied &&
				    strcmp(c->method, "DELETE") == 0) {
					memset(&res->err, 0,
					       sizeof(res->err));
					rc = 0;
				}
				goto out;
			}
		}

		wait = jitter(backoff);
		if (ex.cc == CURLE_OK)
			log_warn("%s %s answered %ld, retry %d of %d in %ld ms",
				 c->method, c->path, ex.status, attempt + 1,
				 budget, wait);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
			  backoff * 2;
		attempt++;
		count(api, &api->retries);
		exchange_clear(&ex);
		sleep_ms(wait);
	}
out:
	exchange_clear(&ex);
	return rc;
}

/* Merging of identical reads */

static int result_copy(struct api_result *dst, const struct api_result *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->http_status = src->http_status;
	dst->err = src->err;
	if (src->data && !(dst->data = cJSON_Duplicate(src->data, true)))
		goto nomem;
	if (src->next_cursor && !(dst->next_cursor = strdup(src->next_cursor)))
		goto nomem;
	return 0;
nomem:
	api_result_release(dst);
	return -ENOMEM;
}

static void flight_free(struct flight *f)
{
	api_result_release(&f->res);
	free(f->key);
	free(f);
}

static void flight_unlink(struct api *api, struct flight *f)
{
	struct flight **p;

	for (p = &api->flights; *p; p = &(*p)->next) {
		if (*p == f) {
			*p = f->next;
			return;
		}
	}
}

/* Wait for the flight @f another caller is making; take a copy. */
static int flight_join(struct api *api, struct flight *f,
		       struct api_result *res)
{
	int rc;

	f->waiters++;
	api->merged++;
	while (!f->done)
		pthread_cond_wait(&api->flight_cond, &api->lock);
	rc = f->rc;
	if (result_copy(res, &f->res))
		rc = -ENOMEM;
	if (--f->waiters == 0)
		flight_free(f);
	pthread_mutex_unlock(&api->lock);
	return rc;
}

/*
 * Make a read, or wait for an identical one already on its way.  A request
 * that starts after the first has landed goes to the server again, so
 * nobody gets an answer older than their call.
 */
static int perform_merged(struct api *api, const struct call *c,
			  struct api_result *res)
{
	struct flight *f;
	char *key;
	int rc;

	if (asprintf(&key, "%s %s\n%s", c->method, c->path,
		     c->body ? c->body : "") < 0)
		return -ENOMEM;

	pthread_mutex_lock(&api->lock);
	for (f = api->flights; f; f = f->next) {
		if (strcmp(f->key, key) == 0) {
			free(key);
			return flight_join(api, f, res);
		}
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		pthread_mutex_unlock(&api->lock);
		free(key);
		return -ENOMEM;
	}
	f->key = key;
	f->next = api->flights;
	api->flights = f;
	pthread_mutex_unlock(&api->lock);

	rc = perform(api, c, &f->res);

	pthread_mutex_lock(&api->lock);
	flight_unlink(api, f);
	f->done = true;
	f->rc = rc;
	if (f->waiters == 0) {
		*res = f->res;
		memset(&f->res, 0, sizeof(f->res));
		flight_free(f);
	} else {
		if (result_copy(res, &f->res))
			rc = -ENOMEM;
		pthread_cond_broadcast(&api->flight_cond);
	}
	pthread_mutex_unlock(&api->lock);
	return rc;
}

static int call_run(struct api *api, const struct call *c,
		    struct api_result *res)
{
	memset(res, 0, sizeof(*res));
	if (atomic_load(&api->offline)) {
		snprintf(res->err.code, sizeof(res->err.code), "OFFLINE");
		return -EAGAIN;
	}
	if (c->mergeable)
		return perform_merged(api, c, res);
	return perform(api, c, res);
}

/* /<coll> or /<coll>/<id> with the id escaped, as c->path. */
static int call_path(struct call *c, const char *coll, const char *id,
		     const char *suffix)
{
	char *esc = NULL;
	int n;

	if (!coll || !*coll || strchr(coll, '/'))
		return -EINVAL;
	if (id) {
		if (!*id)
			return -EINVAL;
		esc = curl_easy_escape(NULL, id, 0);
		if (!esc)
			return -ENOMEM;
	}
	n = asprintf(&c->path, "/%s%s%s%s", coll, esc ? "/" : "",
		     esc ? esc : "", suffix ? suffix : "");
	curl_free(esc);
	if (n < 0) {
		c->path = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Build, run and free one call. */
static int call_simple(struct api *api, const char *method,
		       const char *coll, const char *id, const char *suffix,
		       const cJSON *body, bool list, struct api_result *res)
{
	struct call c = { .method = method, .list = list };
	char endpoint[48];
	int rc;

	memset(res, 0, sizeof(*res));
	rc = call_path(&c, coll, id, suffix);
	if (rc)
		return rc;
	snprintf(endpoint, sizeof(endpoint), "%s /%s%s%s", method, coll,
		 id ? "/{id}" : "", suffix ? suffix : "");
	c.endpoint = endpoint;
	if (body && !(c.body = cJSON_PrintUnformatted(body))) {
		rc = -ENOMEM;
		goto out;
	}
	/* Reads merge; a create must not be sent twice when unsure. */
	c.mergeable = strcmp(method, "GET") == 0 || (suffix &&
		      strcmp(suffix, "/query") == 0);
	c.resend_ok = !(strcmp(method, "POST") == 0 && !c.mergeable);
	rc = call_run(api, &c, res);
out:
	free(c.path);
	cJSON_free(c.body);
	return rc;
}

/* Exported functions */

int api_new(const struct api_config *cfg, struct api **out)
{
	pthread_condattr_t ca;
	char why[128], *key_hdr = NULL;
	struct curl_slist *l;
	struct api *api;
	size_t len;
	int i, rc;

	*out = NULL;
	if (!cfg->base_url || !cfg->api_key ||
	    strpbrk(cfg->api_key, "\r\n")) {
		log_err("cannot start the API client: no usable key or URL");
		return -EINVAL;
	}
	rc = api_check_base_url(cfg->base_url, why, sizeof(why));
	if (rc) {
		if (rc == -EINVAL)
			log_err("refusing base URL '%s': %s", cfg->base_url,
				why);
		return rc;
	}
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		log_err("cannot initialise libcurl: %s",
			curl_easy_strerror(global_rc));
		return -ENOMEM;
	}

	api = calloc(1, sizeof(*api));
	if (!api)
		return -ENOMEM;
	api->rate_limit = cfg->rate_limit > 0 ? cfg->rate_limit :
			  DEFAULT_RATE_LIMIT;
	api->max_retries = cfg->max_retries > 0 ? cfg->max_retries :
			   DEFAULT_MAX_RETRIES;
	api->connect_ms = cfg->connect_timeout_ms > 0 ?
			  cfg->connect_timeout_ms : DEFAULT_CONNECT_MS;
	api->total_ms = cfg->total_timeout_ms > 0 ? cfg->total_timeout_ms :
			DEFAULT_TOTAL_MS;
	api->srv_limit = api->srv_remaining = -1;
	api->srv_reset = -1;
	atomic_init(&api->reachable, true);
	atomic_init(&api->offline, false);

	pthread_mutex_init(&api->lock, NULL);
	pthread_mutex_init(&api->pool_lock, NULL);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&api->share_locks[i], NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&api->pace_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&api->flight_cond, NULL);

	api->base_url = strdup(cfg->base_url);
	api->starts = calloc((size_t)api->rate_limit, sizeof(*api->starts));
	api->share = curl_share_init();
	if (!api->base_url || !api->starts || !api->share)
		goto nomem;
	len = strlen(api->base_url);
	while (len && api->base_url[len - 1] == '/')
		api->base_url[--len] = '\0';

	curl_share_setopt(api->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(api->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(api->share, CURLSHOPT_USERDATA, api);
	curl_share_setopt(api->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(api->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(api->share, CURLSHOPT_SHARE,
			  CURL_LOCK_DATA_SSL_SESSION);

	if (asprintf(&key_hdr, "X-Klipy-Api-Key: %s", cfg->api_key) < 0) {
		key_hdr = NULL;
		goto nomem;
	}
	l = curl_slist_append(NULL, key_hdr);
	explicit_bzero(key_hdr, strlen(key_hdr));
	free(key_hdr);
	if (!l)
		goto nomem;
	api->headers = l;
	/* "Expect:" stops curl waiting for a 100 Continue on big bodies. */
	if (!(l = curl_slist_append(l, "Accept: application/json")) ||
	    !(l = curl_slist_append(l, "Content-Type: application/json")) ||
	    !(l = curl_slist_append(l, "Expect:")))
		goto nomem;

	*out = api;
	return 0;
nomem:
	api_free(api);
	return -ENOMEM;
}

void api_free(struct api *api)
{
	struct curl_slist *l;
	size_t i;

	if (!api)
		return;
	for (i = 0; i < api->pool_len; i++)
		curl_easy_cleanup(api->pool[i]);
	free(api->pool);
	if (api->share)
		curl_share_cleanup(api->share);
	for (l = api->headers; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(api->headers);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&api->share_locks[i]);
	pthread_mutex_destroy(&api->pool_lock);
	pthread_mutex_destroy(&api->lock);
	pthread_cond_destroy(&api->pace_cond);
	pthread_cond_destroy(&api->flight_cond);
	free(api->starts);
	free(api->base_url);
	free(api);
}

void api_result_release(struct api_result *res)
{
	if (!res)
		return;
	cJSON_Delete(res->data);
	free(res->next_cursor);
	memset(res, 0, sizeof(*res));
}

int api_authenticate(struct api *api, char **org_id, char **org_name,
		     struct api_error *err)
{
	struct api_result res;
	int rc;

	*org_id = NULL;
	*org_name = NULL;
	rc = call_simple(api, "GET", "authenticate", NULL, NULL, NULL, false,
			 &res);
	if (!rc) {
		rc = api_decode_org(res.data, org_id, org_name);
		if (rc == -EIO)
			log_err("the authenticate answer names no "
				"organization");
	}
	if (err)
		*err = res.err;
	api_result_release(&res);
	return rc;
}

int api_get(struct api *api, const char *coll, const char *id,
	    struct api_result *res)
{
	return call_simple(api, "GET", coll, id, NULL, NULL, false, res);
}

int api_query(struct api *api, const char *coll, const char *cursor,
	      int limit, struct api_result *res)
{
	cJSON *body;
	int rc;

	memset(res, 0, sizeof(*res));
	body = cJSON_CreateObject();
	if (!body ||
	    !(cursor ? cJSON_AddStringToObject(body, "cursor", cursor) :
		       cJSON_AddNullToObject(body, "cursor")) ||
	    !(limit > 0 ? cJSON_AddNumberToObject(body, "limit", limit) :
			  cJSON_AddNullToObject(body, "limit"))) {
		cJSON_Delete(body);
		return -ENOMEM;
	}
	rc = call_simple(api, "POST", coll, NULL, "/query", body, true, res);
	cJSON_Delete(body);
	return rc;
}

int api_create(struct api *api, const char *coll, const cJSON *body,
	       struct api_result *res)
{
	return call_simple(api, "POST", coll, NULL, NULL, body, false, res);
}

int api_upsert(struct api *api, const char *coll, const cJSON *body,
	       struct api_result *res)
{
	return call_simple(api, "PUT", coll, NULL, NULL, body, false, res);
}

int api_patch(struct api *api, const char *coll, const char *id,
	      const cJSON *body, struct api_result *res)
{
	return call_simple(api, "PATCH", coll, id, NULL, body, false, res);
}

int api_delete(struct api *api, const char *coll, const char *id,
	       struct api_result *res)
{
	return call_simple(api, "DELETE", coll, id, NULL, NULL, false, res);
}

bool api_offline(struct api *api)
{
	return atomic_load(&api->offline);
}

void api_set_offline(struct api *api, bool offline)
{
	atomic_store(&api->offline, offline);
}

/* Our own window's remaining starts, when the server has not said. */
static long window_remaining(struct api *api)
{
	window_drop_old(api, mono_ms());
	return api->rate_limit - api->nstarts;
}

cJSON *api_stats(struct api *api)
{
	cJSON *o, *per, *rl;
	bool srv_fresh;
	int i;

	o = cJSON_CreateObject();
	per = cJSON_AddObjectToObject(o, "requests");
	rl = cJSON_AddObjectToObject(o, "rate_limit");
	if (!o || !per || !rl) {
		cJSON_Delete(o);
		return NULL;
	}

	pthread_mutex_lock(&api->lock);
	for (i = 0; i < api->nendpoints; i++)
		cJSON_AddNumberToObject(per, api->endpoints[i].name,
					(double)api->endpoints[i].n);
	cJSON_AddNumberToObject(o, "total", (double)api->total);
	cJSON_AddNumberToObject(o, "retries", (double)api->retries);
	cJSON_AddNumberToObject(o, "rate_limited", (double)api->rate_limited);
	cJSON_AddNumberToObject(o, "paced_waits", (double)api->paced_waits);
	cJSON_AddNumberToObject(o, "merged", (double)api->merged);
	cJSON_AddNumberToObject(o, "in_flight", api->inflight);

	srv_fresh = api->srv_remaining >= 0 && api->srv_reset > time(NULL);
	cJSON_AddNumberToObject(rl, "limit", api->srv_limit > 0 ?
				api->srv_limit : api->rate_limit);
	cJSON_AddNumberToObject(rl, "client_limit", api->rate_limit);
	cJSON_AddNumberToObject(rl, "remaining", srv_fresh ?
				api->srv_remaining : window_remaining(api));
	if (api->srv_reset >= 0)
		cJSON_AddNumberToObject(rl, "reset", (double)api->srv_reset);
	else
		cJSON_AddNullToObject(rl, "reset");
	cJSON_AddNumberToObject(rl, "paced_waits", (double)api->paced_waits);
	pthread_mutex_unlock(&api->lock);

	cJSON_AddBoolToObject(o, "reachable", atomic_load(&api->reachable) &&
			      !atomic_load(&api->offline));
	cJSON_AddBoolToObject(o, "offline", atomic_load(&api->offline));
	return o;
}

void api_error_describe(const struct api_error *err, char *buf, size_t size)
{
	const char *code = err->code[0] ? err->code : "ERROR";

	if (err->detail[0])
		snprintf(buf, size, "%s %s (%s)", code, err->message,
			 err->detail);
	else if (err->message[0])
		snprintf(buf, size, "%s %s", code, err->message);
	else if (err->http_status)
		snprintf(buf, size, "%s (HTTP %d)", code, err->http_status);
	else
		snprintf(buf, size, "%s", code);
}
