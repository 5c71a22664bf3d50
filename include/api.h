/*
 * api: the Klipy REST API v1 client.
 *
 * Owns every HTTP exchange with the service: one libcurl connection pool
 * shared by all threads, timeouts, retries with backoff and jitter, waiting
 * out 429s, a client-side pacer that keeps under the per-key rate limit,
 * merging of identical concurrent reads into one request, and the tolerant
 * decoding of every answer shape the service is known to use.  It knows
 * nothing about FUSE, the cache or files.
 *
 * Every function returns 0 when the server answered 2xx and -errno otherwise:
 *   -EACCES  401 or 403 (err.code and err.detail say which scope is missing)
 *   -ENOENT  404
 *   -EEXIST  409 (err.detail holds details.existingId when given)
 *   -EFBIG   413
 *   -EINVAL  400 and any other 4xx (err.detail holds details.field)
 *   -EAGAIN  the server could not be reached, timed out, or kept answering
 *            5xx/429 past the retry budget: the caller may try again later
 *   -EIO     the server answered 2xx with a body that is not JSON or not a
 *            known shape, or answered a redirect: retrying will not help
 *   -ENOMEM  out of memory
 */
#ifndef KLIPYFS_API_H
#define KLIPYFS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct api;

struct api_config {
	const char *base_url;	/* e.g. https://api.klipy.ai/api/v1, no slash at end */
	const char *api_key;	/* copied; never logged */
	int rate_limit;		/* requests per minute we allow ourselves, 0: 200 */
	int max_retries;	/* retries after the first attempt, 0: default (4) */
	long connect_timeout_ms; /* 0: default (2000) */
	long total_timeout_ms;	/* per attempt, 0: default (5000) */
};

/* What the server said when it refused a request. */
struct api_error {
	int http_status;	/* 0 when no answer came */
	char code[64];		/* error.code, e.g. VALIDATION_ERROR */
	char message[512];	/* error.message */
	char detail[256];	/* details.field, .required_scope or .existingId */
};

/* The decoded answer of one call. */
struct api_result {
	int http_status;
	cJSON *data;		/* the payload: a record object, or an array for lists */
	char *next_cursor;	/* lists only: NULL when this was the last page */
	struct api_error err;
	bool maybe_applied;	/* -EAGAIN on a write that may have happened */
};

/*
 * Create a client.  Fails with -EINVAL (and a log line) when the base URL is
 * neither https:// nor http:// to a loopback host.
 */
int api_new(const struct api_config *cfg, struct api **out);
void api_free(struct api *api);

/* Free what a call left in @res and zero it; safe on a zeroed result. */
void api_result_release(struct api_result *res);

/*
 * GET /authenticate.  On success *org_id and *org_name are malloc'd strings
 * (org_id may fall back to the name when the answer carries no id).
 * @err may be NULL.
 */
int api_authenticate(struct api *api, char **org_id, char **org_name,
		     struct api_error *err);

/* GET /<coll>/<id>; res->data is the record. */
int api_get(struct api *api, const char *coll, const char *id,
	    struct api_result *res);

/*
 * POST /<coll>/query with {cursor, limit}; res->data is an array of records,
 * res->next_cursor the cursor of the next page or NULL.
 */
int api_query(struct api *api, const char *coll, const char *cursor,
	      int limit, struct api_result *res);

/* POST /<coll>; res->data is the answer's data (a record, or {id, isDuplicate}). */
int api_create(struct api *api, const char *coll, const cJSON *body,
	       struct api_result *res);

/* PUT /<coll> (upsert by email); res->data is the record. */
int api_upsert(struct api *api, const char *coll, const cJSON *body,
	       struct api_result *res);

/* PATCH /<coll>/<id>; res->data is the whole record after the change. */
int api_patch(struct api *api, const char *coll, const char *id,
	      const cJSON *body, struct api_result *res);

/* DELETE /<coll>/<id>. */
int api_delete(struct api *api, const char *coll, const char *id,
	       struct api_result *res);

/*
 * While offline, every call fails at once with -EAGAIN and sends nothing.
 * Used for --offline.
 */
void api_set_offline(struct api *api, bool offline);

/* True after api_set_offline(api, true). */
bool api_offline(struct api *api);


/*
 * A JSON object describing the client for .klipy/status: requests made per
 * endpoint ("GET /people/{id}": n, ...), total requests, retries, 429s,
 * rate-limit state (limit, remaining, reset, paced waits) and reachability.
 * Caller frees with cJSON_Delete.
 */
cJSON *api_stats(struct api *api);

/* Human-readable form of a refusal: "CODE message (detail)". */
void api_error_describe(const struct api_error *err, char *buf, size_t size);

#endif
