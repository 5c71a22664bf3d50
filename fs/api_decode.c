/* api_decode: see include/api_decode.h */
#include "api_decode.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

/* Numbers above this in a time header are Unix times, not durations. */
#define UNIX_TIME_FLOOR 1000000000.0

int api_status_errno(int status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 409:
		return -EEXIST;
	case 413:
		return -EFBIG;
	case 429:
		return -EAGAIN;
	}
	if (status >= 400 && status < 500)
		return -EINVAL;
	if (status >= 500 && status < 600)
		return -EAGAIN;
	/* A redirect or an informational answer: the base URL is wrong. */
	return -EIO;
}

bool api_host_is_loopback(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;
	char buf[INET6_ADDRSTRLEN + 2];
	size_t len;

	if (!host || !*host)
		return false;
	if (strcasecmp(host, "localhost") == 0 ||
	    strcasecmp(host, "localhost.") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;

	len = strlen(host);
	if (host[0] == '[' && len > 2 && host[len - 1] == ']') {
		if (len - 2 >= sizeof(buf))
			return false;
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET6, host, &a6) != 1)
		return false;
	if (IN6_IS_ADDR_LOOPBACK(&a6))
		return true;
	/* ::ffff:127.x.x.x is the IPv4 loopback spelled for an IPv6 socket. */
	return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/*
 * Parse with libcurl's own URL parser, so the host we judge is the host
 * curl will connect to.
 */
int api_check_base_url(const char *url, char *why, size_t why_size)
{
	char *scheme = NULL, *host = NULL;
	const char *reason = NULL;
	CURLU *u;

	u = curl_url();
	if (!u)
		return -ENOMEM;
	if (!url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		reason = "not a URL";
		goto out;
	}
	if (strcasecmp(scheme, "https") == 0)
		goto out;
	if (strcasecmp(scheme, "http") != 0) {
		reason = "scheme must be https";
		goto out;
	}
	if (!api_host_is_loopback(host))
		reason = "plain http is only allowed to a loopback host; "
			 "use https";
out:
	if (reason && why && why_size)
		snprintf(why, why_size, "%s", reason);
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return reason ? -EINVAL : 0;
}

/* A decimal number filling all of @value but blanks; false otherwise. */
static bool parse_number(const char *value, double *out)
{
	char *end;
	double v;

	while (isspace((unsigned char)*value))
		value++;
	if (!isdigit((unsigned char)*value))
		return false;
	errno = 0;
	v = strtod(value, &end);
	if (errno || !isfinite(v))
		return false;
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return false;
	*out = v;
	return true;
}

long api_parse_retry_after(const char *value, int64_t now)
{
	double secs;
	time_t when;

	if (!value)
		return -1;
	if (!parse_number(value, &secs)) {
		/* RFC 9110 also allows an HTTP date. */
		when = curl_getdate(value, NULL);
		if (when == -1)
			return -1;
		secs = (double)when - (double)now;
	} else if (secs > UNIX_TIME_FLOOR) {
		secs -= (double)now;
	}
	if (secs <= 0)
		return 0;
	if (secs > 86400.0 * 365)
		secs = 86400.0 * 365;
	return (long)(secs * 1000.0 + 0.5);
}

int64_t api_parse_reset(const char *value, int64_t now)
{
	double v;

	if (!value || !parse_number(value, &v))
		return -1;
	if (v > UNIX_TIME_FLOOR)
		return (int64_t)v;
	return now + (int64_t)ceil(v);
}

/* The first member of @obj among @names (NULL-terminated) that exists. */
static cJSON *first_item(const cJSON *obj, const char *const *names)
{
	cJSON *it;

	if (!cJSON_IsObject(obj))
		return NULL;
	for (; *names; names++) {
		it = cJSON_GetObjectItemCaseSensitive(obj, *names);
		if (it && !cJSON_IsNull(it))
			return it;
	}
	return NULL;
}

static const char *first_string(const cJSON *obj, const char *const *names)
{
	const cJSON *it;

	for (; *names; names++) {
		const char *one[] = { *names, NULL };

		it = first_item(obj, one);
		if (cJSON_IsString(it) && it->valuestring[0])
			return it->valuestring;
	}
	return NULL;
}

/*
 * The array of records inside a list answer's data: data itself, a known
 * member (data.people, ...), or the only array member of data.
 */
static cJSON *list_in(cJSON *data)
{
	static const char *const known[] = { "people", "interactions",
		"companies", "items", "results", "records", NULL };
	cJSON *it, *found = NULL;
	int arrays = 0;

	if (cJSON_IsArray(data))
		return data;
	if (!cJSON_IsObject(data))
		return NULL;
	it = first_item(data, known);
	if (cJSON_IsArray(it))
		return it;
	cJSON_ArrayForEach(it, data) {
		if (cJSON_IsArray(it)) {
			found = it;
			arrays++;
		}
	}
	return arrays == 1 ? found : NULL;
}

/* page_info beside data, inside meta, or inside data; any spelling. */
static const cJSON *page_info_in(const cJSON *root, const cJSON *data)
{
	static const char *const names[] = { "page_info", "pageInfo",
		"pagination", NULL };
	const cJSON *pi;

	pi = first_item(root, names);
	if (!pi)
		pi = first_item(first_item(root, (const char *const[]){
			"meta", NULL }), names);
	if (!pi)
		pi = first_item(data, names);
	return cJSON_IsObject(pi) ? pi : NULL;
}

/* The cursor of the next page, or NULL on the last (or only) page. */
static const char *next_cursor_in(const cJSON *pi)
{
	static const char *const cursors[] = { "next_cursor", "end_cursor",
		"nextCursor", "endCursor", "cursor", NULL };
	static const char *const more[] = { "has_more", "has_next_page",
		"hasMore", "hasNextPage", NULL };
	const cJSON *flag;

	if (!pi)
		return NULL;
	flag = first_item(pi, more);
	/* has_more: false wins over a cursor the server left in place. */
	if (flag && cJSON_IsFalse(flag))
		return NULL;
	return first_string(pi, cursors);
}

/* An object that says it is a failure even though the status was 2xx. */
static bool says_failure(const cJSON *root)
{
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "object");
	const cJSON *ok = cJSON_GetObjectItemCaseSensitive(root, "success");

	if (cJSON_IsString(obj) && strcmp(obj->valuestring, "error") == 0)
		return true;
	return cJSON_IsFalse(ok);
}

int api_decode_success(const char *body, size_t len, bool list,
		       struct api_result *res)
{
	cJSON *root, *data, *items;
	const char *cursor;
	int rc = 0;

	res->data = NULL;
	res->next_cursor = NULL;
	if (!body || len == 0 || strspn(body, " \t\r\n") == len) {
		if (list && !(res->data = cJSON_CreateArray()))
			return -ENOMEM;
		return 0;
	}
	root = cJSON_ParseWithLength(body, len);
	if (!root)
		return -EIO;
	if (!cJSON_IsObject(root) && !cJSON_IsArray(root)) {
		rc = -EIO;
		goto out;
	}
	if (cJSON_IsObject(root) && says_failure(root)) {
		rc = -EIO;
		goto out;
	}

	/* No data member: an unwrapped answer, the body is the payload. */
	data = cJSON_IsObject(root) ?
		cJSON_GetObjectItemCaseSensitive(root, "data") : root;
	if (!data)
		data = root;

	if (!list) {
		if (cJSON_IsNull(data))
			goto out;
		res->data = data == root ? root : cJSON_DetachItemViaPointer(
			root, data);
		if (data == root)
			root = NULL;
		goto out;
	}

	cursor = next_cursor_in(page_info_in(root, data));
	if (cJSON_IsNull(data)) {
		items = NULL;
	} else if (!(items = list_in(data))) {
		rc = -EIO;
		goto out;
	}
	if (cursor && !(res->next_cursor = strdup(cursor))) {
		rc = -ENOMEM;
		goto out;
	}
	if (!items)
		res->data = cJSON_CreateArray();
	else if (items == root)
		res->data = root, root = NULL;
	else
		res->data = cJSON_DetachItemViaPointer(items == data ? root :
						       data, items);
	if (!res->data)
		rc = -ENOMEM;
out:
	cJSON_Delete(root);
	if (rc) {
		cJSON_Delete(res->data);
		free(res->next_cursor);
		res->data = NULL;
		res->next_cursor = NULL;
	}
	return rc;
}

/* The code the contract gives each status, for bodies that carry none. */
static const char *status_code_name(int status)
{
	switch (status) {
	case 400: return "VALIDATION_ERROR";
	case 401: return "INVALID_API_KEY";
	case 403: return "INSUFFICIENT_SCOPE";
	case 404: return "NOT_FOUND";
	case 409: return "CONFLICT";
	case 413: return "PAYLOAD_TOO_LARGE";
	case 429: return "RATE_LIMITED";
	case 500: return "INTERNAL_ERROR";
	case 502:
	case 503:
	case 504: return "UNAVAILABLE";
	}
	return NULL;
}

static void copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

/* A plain-text body, squeezed onto one line, as the message. */
static void text_message(struct api_error *err, const char *body, size_t len)
{
	size_t i, n = 0;
	bool blank = false;

	if (!body || len == 0 || body[0] == '<')
		return;
	for (i = 0; i < len && n + 1 < sizeof(err->message); i++) {
		unsigned char c = (unsigned char)body[i];

		if (isspace(c) || c < 0x20) {
			blank = n > 0;
			continue;
		}
		if (blank && n + 2 < sizeof(err->message))
			err->message[n++] = ' ';
		blank = false;
		err->message[n++] = (char)c;
	}
	err->message[n] = '\0';
}

/*
 * details.existingId, .required_scope or .field, however it is spelled;
 * the id of an existing record first, since a 409 may name the field too.
 */
static void decode_detail(struct api_error *err, const cJSON *details)
{
	static const char *const names[] = { "existingId", "existing_id",
		"required_scope", "requiredScope", "scope", "field", NULL };
	const char *s;

	if (cJSON_IsString(details)) {
		copy_str(err->detail, sizeof(err->detail),
			 details->valuestring);
		return;
	}
	/* A list of per-field problems: the first one names the field. */
	if (cJSON_IsArray(details))
		details = cJSON_GetArrayItem(details, 0);
	s = first_string(details, names);
	if (s)
		copy_str(err->detail, sizeof(err->detail), s);
}

void api_decode_error(const char *body, size_t len, int status,
		      struct api_error *err)
{
	static const char *const code_names[] = { "code", "error_code",
		"errorCode", "type", NULL };
	static const char *const msg_names[] = { "message", "error_description",
		"detail", NULL };
	const cJSON *where, *error;
	const char *s;
	cJSON *root;

	memset(err, 0, sizeof(*err));
	err->http_status = status;
	copy_str(err->code, sizeof(err->code), status_code_name(status));

	root = body && len ? cJSON_ParseWithLength(body, len) : NULL;
	if (!cJSON_IsObject(root)) {
		text_message(err, body, len);
		goto out;
	}

	/* {error: {code, message, details}} or the same members at the top. */
	error = cJSON_GetObjectItemCaseSensitive(root, "error");
	where = cJSON_IsObject(error) ? error : root;
	s = first_string(where, code_names);
	if (s)
		copy_str(err->code, sizeof(err->code), s);
	s = first_string(where, msg_names);
	if (!s && cJSON_IsString(error))
		s = error->valuestring;
	if (!s && where != root)
		s = first_string(root, msg_names);
	if (s)
		copy_str(err->message, sizeof(err->message), s);
	decode_detail(err, first_item(where, (const char *const[]){
		"details", "detail", "errors", NULL }));
out:
	if (!err->code[0])
		snprintf(err->code, sizeof(err->code), "HTTP_%d", status);
	cJSON_Delete(root);
}

/* A member as text: ids may come as numbers. */
static char *item_text(const cJSON *it)
{
	char buf[64];

	if (cJSON_IsString(it) && it->valuestring[0])
		return strdup(it->valuestring);
	if (cJSON_IsNumber(it)) {
		snprintf(buf, sizeof(buf), "%.17g", it->valuedouble);
		return strdup(buf);
	}
	return NULL;
}

int api_decode_org(const cJSON *data, char **id, char **name)
{
	static const char *const name_names[] = { "name", "team_name",
		"teamName", "organization_name", "organizationName", NULL };
	static const char *const id_names[] = { "id", "org_id", "orgId",
		"organization_id", "organizationId", "team_id", "teamId",
		NULL };
	static const char *const nests[] = { "organization", "team", "org",
		NULL };
	const char *const *nest;
	const cJSON *sub;
	char *i = NULL, *n = NULL;

	*id = NULL;
	*name = NULL;
	n = item_text(first_item(data, name_names));
	i = item_text(first_item(data, id_names));
	for (nest = nests; *nest && (!n || !i); nest++) {
		sub = cJSON_GetObjectItemCaseSensitive(data, *nest);
		if (!n)
			n = item_text(first_item(sub, name_names));
		if (!i)
			i = item_text(first_item(sub, id_names));
	}
	if (!n && !i)
		return -EIO;
	if (!i)
		i = strdup(n);
	if (!n)
		n = strdup(i);
	if (!i || !n) {
		free(i);
		free(n);
		return -ENOMEM;
	}
	*id = i;
	*name = n;
	return 0;
}
