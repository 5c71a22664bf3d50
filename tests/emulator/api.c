/*
 * api: the endpoints of klipy-api.md on top of the store.
 *
 * Handlers run with the store lock held (read or write, as the route says)
 * and answer with data that may reference records in the store; the caller
 * prints the answer before it lets go of the lock.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emu.h"

uint64_t api_cursor_secret;

enum ftype {
	F_RO,		/* read-only */
	F_SERVER,	/* set by the server */
	F_STR,		/* string or null */
	F_NAME,		/* non-empty string, required on create */
	F_EMAIL,	/* email address, required on create */
	F_DOMAIN,	/* string or null, unique when set */
	F_TAGS,		/* array of strings; null means empty */
	F_COMPANY,	/* id of an existing company, or null */
};

struct fspec {
	const char *name;
	enum ftype type;
};

static const struct fspec person_spec[] = {
	{ "id", F_RO }, { "firstName", F_STR }, { "lastName", F_STR },
	{ "email", F_EMAIL }, { "phone", F_STR }, { "title", F_STR },
	{ "linkedinUrl", F_STR }, { "companyId", F_COMPANY },
	{ "remarks", F_STR }, { "tags", F_TAGS }, { "createdBy", F_RO },
	{ "creationTime", F_RO }, { "updatedTime", F_RO }, { NULL, F_RO },
};

static const struct fspec company_spec[] = {
	{ "id", F_RO }, { "name", F_NAME }, { "domain", F_DOMAIN },
	{ "industry", F_STR }, { "size", F_STR }, { "website", F_STR },
	{ "linkedinUrl", F_STR }, { "description", F_STR },
	{ "createdBy", F_RO }, { "creationTime", F_RO },
	{ "updatedTime", F_RO }, { NULL, F_RO },
};

static const char *const interaction_types[] = {
	"DIRECT_MESSAGE", "EMAIL", "MEETING", "MEMO", "BOOKING_CREATED",
	"BOOKING_CANCELLED", "MANUAL", "API_EVENT", "VOICE_NOTE", NULL,
};

static const char *const interaction_directions[] = {
	"INBOUND", "OUTBOUND", "HYBRID", "INTERNAL", "EVENT", NULL,
};

static void api_verror(struct api_resp *rs, int status, const char *code,
		       cJSON *details, const char *fmt, va_list ap)
{
	rs->status = status;
	rs->code = code;
	vsnprintf(rs->message, sizeof(rs->message), fmt, ap);
	cJSON_Delete(rs->details);
	rs->details = details;
}

void api_error(struct api_resp *rs, int status, const char *code,
	       cJSON *details, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	api_verror(rs, status, code, details, fmt, ap);
	va_end(ap);
}

void api_invalid(struct api_resp *rs, const char *field, const char *fmt, ...)
{
	cJSON *details = cJSON_CreateObject();
	va_list ap;

	cJSON_AddStringToObject(details, "field", field);
	va_start(ap, fmt);
	api_verror(rs, 400, "VALIDATION_ERROR", details, fmt, ap);
	va_end(ap);
}

static const char *singular(enum coll_kind k)
{
	return k == COLL_PEOPLE ? "person"
	       : k == COLL_COMPANIES ? "company" : "interaction";
}

static void not_found(struct api_resp *rs, enum coll_kind k, const char *id)
{
	static const char *const id_field[] = { "personId", "companyId",
						"interactionId" };
	cJSON *details = cJSON_CreateObject();

	cJSON_AddStringToObject(details, id_field[k], id);
	api_error(rs, 404, "NOT_FOUND", details, "No %s with id %s",
		  singular(k), id);
}

static void conflict(struct api_resp *rs, const char *field,
		     const struct rec *existing)
{
	cJSON *details = cJSON_CreateObject();

	cJSON_AddStringToObject(details, "existingId", existing->id);
	cJSON_AddStringToObject(details, "field", field);
	api_error(rs, 409, "CONFLICT", details,
		  "A record with this %s already exists: %s", field,
		  existing->id);
}

/* A reference to a record, for answers printed under the store lock. */
static cJSON *ref(const struct rec *r)
{
	return cJSON_CreateObjectReference(r->json->child);
}

static void answer(struct api_resp *rs, int status, cJSON *data)
{
	rs->status = status;
	rs->data = data;
}

static void do_authenticate(struct api_req *rq, struct api_resp *rs)
{
	cJSON *d = cJSON_CreateObject();

	if (rq->legacy) {
		cJSON *team = cJSON_AddObjectToObject(d, "team");

		cJSON_AddStringToObject(team, "id", rq->org->id);
		cJSON_AddStringToObject(team, "name", rq->org->name);
	} else {
		cJSON_AddStringToObject(d, "name", rq->org->name);
		cJSON_AddStringToObject(d, "id", rq->org->id);
	}
	answer(rs, 200, d);
}

static void do_get(struct api_req *rq, struct api_resp *rs)
{
	struct rec *r = store_find(rq->org, rq->route->kind, rq->id);

	if (!r)
		return not_found(rs, rq->route->kind, rq->id);
	answer(rs, 200, ref(r));
}

static void base64url(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = in[i] << 16 | in[i + 1] << 8 | in[i + 2];

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
		out[o++] = tab[v & 63];
	}
	if (i < len) {
		unsigned v = in[i] << 16 | (i + 1 < len ? in[i + 1] << 8 : 0);

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		if (i + 1 < len)
			out[o++] = tab[v >> 6 & 63];
	}
	out[o] = '\0';
}

static int unbase64url(const char *in, char *out, size_t cap)
{
	unsigned v = 0;
	int bits = 0;
	size_t o = 0;

	for (; *in; in++) {
		const char c = *in;
		int d;

		if (c >= 'A' && c <= 'Z')
			d = c - 'A';
		else if (c >= 'a' && c <= 'z')
			d = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			d = c - '0' + 52;
		else if (c == '-')
			d = 62;
		else if (c == '_')
			d = 63;
		else
			return -1;
		v = v << 6 | d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o + 1 >= cap)
				return -1;
			out[o++] = (char)(v >> bits & 0xff);
		}
	}
	out[o] = '\0';
	return 0;
}

/*
 * A cursor is the position in the creation-ordered array, with the
 * collection and a check value so that a made-up or mangled cursor is
 * refused rather than read as some position.
 */
static char *cursor_encode(enum coll_kind k, size_t pos)
{
	char plain[64], sig[96], *out = malloc(128);

	if (!out)
		abort();
	snprintf(plain, sizeof(plain), "%c.%zu", coll_name(k)[0], pos);
	snprintf(sig, sizeof(sig), "%s.%08x", plain,
		 (unsigned)(emu_hash(plain, api_cursor_secret) & 0xffffffff));
	base64url((const unsigned char *)sig, strlen(sig), out);
	return out;
}

static int cursor_decode(enum coll_kind k, const char *cur, size_t n,
			 size_t *pos)
{
	char sig[96], plain[64], c;
	unsigned check;
	size_t p;
	int end = 0;

	if (strlen(cur) > 120 || unbase64url(cur, sig, sizeof(sig)) < 0)
		return -1;
	if (sscanf(sig, "%c.%zu.%8x%n", &c, &p, &check, &end) != 3 ||
	    sig[end] != '\0' || c != coll_name(k)[0] || p > n)
		return -1;
	snprintf(plain, sizeof(plain), "%c.%zu", c, p);
	if ((emu_hash(plain, api_cursor_secret) & 0xffffffff) != check)
		return -1;
	*pos = p;
	return 0;
}

struct query {
	size_t pos;
	long limit;
	const struct rec *email_match;	/* people filtered by email */
	bool by_email;
	const char *company;
	const char *contact;
};

static bool array_has(const cJSON *arr, const char *s)
{
	const cJSON *e;

	cJSON_ArrayForEach(e, arr)
		if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0)
			return true;
	return false;
}

static bool query_match(const struct query *q, enum coll_kind k,
			const struct rec *r)
{
	if (q->by_email && r != q->email_match)
		return false;
	if (q->company) {
		if (k == COLL_PEOPLE) {
			if (!r->company || strcmp(r->company, q->company) != 0)
				return false;
		} else if (!array_has(r->companies, q->company)) {
			return false;
		}
	}
	if (q->contact && !array_has(r->contacts, q->contact))
		return false;
	return true;
}

static int parse_filter(struct api_req *rq, struct api_resp *rs,
			const cJSON *f, struct query *q)
{
	enum coll_kind k = rq->route->kind;
	const cJSON *e;

	if (cJSON_IsNull(f))
		return 0;
	if (!cJSON_IsObject(f)) {
		api_invalid(rs, "filter", "'filter' must be an object");
		return -1;
	}
	cJSON_ArrayForEach(e, f) {
		const char *n = e->string;
		bool known = strcmp(n, "companyId") == 0 ||
			(k == COLL_PEOPLE && strcmp(n, "email") == 0) ||
			(k == COLL_INTERACTIONS && strcmp(n, "contactId") == 0);
		char field[160];

		snprintf(field, sizeof(field), "filter.%s", n);
		if (!known) {
			api_invalid(rs, field, "unknown filter '%s'", n);
			return -1;
		}
		if (cJSON_IsNull(e))
			continue;
		if (!cJSON_IsString(e)) {
			api_invalid(rs, field, "filter '%s' must be a string",
				    n);
			return -1;
		}
		if (strcmp(n, "email") == 0) {
			char *key = store_norm_key(e->valuestring);

			q->by_email = true;
			q->email_match = htab_get(&rq->org->c[k].by_key, key);
			free(key);
		} else if (strcmp(n, "companyId") == 0) {
			q->company = e->valuestring;
		} else {
			q->contact = e->valuestring;
		}
	}
	return 0;
}

static int parse_query(struct api_req *rq, struct api_resp *rs,
		       struct query *q)
{
	enum coll_kind k = rq->route->kind;
	const cJSON *e;

	memset(q, 0, sizeof(*q));
	q->limit = 20;
	cJSON_ArrayForEach(e, rq->body) {
		if (strcmp(e->string, "cursor") == 0) {
			if (cJSON_IsNull(e) || (cJSON_IsString(e) &&
						!*e->valuestring))
				continue;
			if (!cJSON_IsString(e) ||
			    cursor_decode(k, e->valuestring, rq->org->c[k].n,
					  &q->pos) < 0) {
				api_invalid(rs, "cursor",
					    "unknown or expired cursor");
				return -1;
			}
		} else if (strcmp(e->string, "limit") == 0) {
			if (cJSON_IsNull(e))
				continue;
			if (!cJSON_IsNumber(e) || e->valuedouble < 1 ||
			    e->valuedouble > 100 ||
			    e->valuedouble != (double)(long)e->valuedouble) {
				api_invalid(rs, "limit", "'limit' must be an "
					    "integer from 1 to 100");
				return -1;
			}
			q->limit = (long)e->valuedouble;
		} else if (strcmp(e->string, "filter") == 0) {
			if (parse_filter(rq, rs, e, q) < 0)
				return -1;
		} else {
			api_invalid(rs, e->string, "unknown field '%s'",
				    e->string);
			return -1;
		}
	}
	return 0;
}

static void do_query(struct api_req *rq, struct api_resp *rs)
{
	enum coll_kind k = rq->route->kind;
	const struct coll *c = &rq->org->c[k];
	cJSON *arr;
	struct query q;
	long count = 0;
	size_t i;

	if (parse_query(rq, rs, &q) < 0)
		return;
	arr = cJSON_CreateArray();
	for (i = q.pos; i < c->n; i++) {
		const struct rec *r = c->v[i];

		if (r->deleted || !query_match(&q, k, r))
			continue;
		if (count == q.limit) {
			rs->has_more = true;
			break;
		}
		cJSON_AddItemToArray(arr, ref(r));
		count++;
	}
	if (rs->has_more)
		rs->next_cursor = cursor_encode(k, i);
	rs->is_list = true;
	rs->list_kind = k;
	answer(rs, 200, arr);
}

static const struct fspec *spec_of(enum coll_kind k)
{
	return k == COLL_PEOPLE ? person_spec : company_spec;
}

static const struct fspec *spec_find(const struct fspec *spec,
				     const char *name)
{
	for (; spec->name; spec++)
		if (strcmp(spec->name, name) == 0)
			return spec;
	return NULL;
}

static bool valid_email(const char *s)
{
	char *t = store_norm_key(s);
	const char *at = strchr(t, '@');
	bool ok = at && at != t && at[1] && !strchr(at + 1, '@') &&
		  !strpbrk(t, " \t\r\n");

	free(t);
	return ok;
}

static int check_field(struct api_req *rq, struct api_resp *rs,
		       const struct fspec *f, const cJSON *v)
{
	const cJSON *e;

	switch (f->type) {
	case F_RO:
	case F_SERVER:
		api_invalid(rs, f->name, "field '%s' is read-only", f->name);
		return -1;
	case F_STR:
	case F_DOMAIN:
		if (cJSON_IsString(v) || cJSON_IsNull(v))
			return 0;
		api_invalid(rs, f->name, "'%s' must be a string or null",
			    f->name);
		return -1;
	case F_NAME:
		if (cJSON_IsString(v) && *v->valuestring)
			return 0;
		api_invalid(rs, f->name, "'%s' must be a non-empty string",
			    f->name);
		return -1;
	case F_EMAIL:
		if (cJSON_IsString(v) && valid_email(v->valuestring))
			return 0;
		api_invalid(rs, f->name, "'%s' is not a valid email address",
			    f->name);
		return -1;
	case F_TAGS:
		if (cJSON_IsNull(v))
			return 0;
		if (cJSON_IsArray(v)) {
			cJSON_ArrayForEach(e, v)
				if (!cJSON_IsString(e))
					break;
			if (!e)
				return 0;
		}
		api_invalid(rs, f->name, "'%s' must be an array of strings",
			    f->name);
		return -1;
	case F_COMPANY:
		if (cJSON_IsNull(v))
			return 0;
		if (!cJSON_IsString(v)) {
			api_invalid(rs, f->name, "'%s' must be a string or "
				    "null", f->name);
			return -1;
		}
		if (store_find(rq->org, COLL_COMPANIES, v->valuestring))
			return 0;
		api_invalid(rs, f->name, "No company with id %s",
			    v->valuestring);
		return -1;
	}
	return 0;
}

/* Check every field of the body; on create, also the required ones. */
static int check_fields(struct api_req *rq, struct api_resp *rs,
			enum coll_kind k, bool create)
{
	const struct fspec *spec = spec_of(k);
	const cJSON *e;

	cJSON_ArrayForEach(e, rq->body) {
		const struct fspec *f = spec_find(spec, e->string);

		if (!f) {
			api_invalid(rs, e->string, "unknown field '%s'",
				    e->string);
			return -1;
		}
		if (check_field(rq, rs, f, e) < 0)
			return -1;
	}
	if (!create)
		return 0;
	for (; spec->name; spec++) {
		if ((spec->type == F_NAME || spec->type == F_EMAIL) &&
		    !cJSON_GetObjectItemCaseSensitive(rq->body, spec->name)) {
			api_invalid(rs, spec->name, "missing required field "
				    "'%s'", spec->name);
			return -1;
		}
	}
	return 0;
}

static const char *unique_field(enum coll_kind k)
{
	return k == COLL_PEOPLE ? "email" : "domain";
}

/* The record holding the unique value v, or NULL. */
static struct rec *unique_owner(struct org *o, enum coll_kind k,
				const cJSON *v)
{
	struct rec *r;
	char *key;

	if (!cJSON_IsString(v) || !*v->valuestring)
		return NULL;
	key = store_norm_key(v->valuestring);
	r = htab_get(&o->c[k].by_key, key);
	free(key);
	return r;
}

/* 409 when the body would give self's unique value to another record. */
static int check_unique(struct api_req *rq, struct api_resp *rs,
			enum coll_kind k, const struct rec *self)
{
	const char *uf = unique_field(k);
	const struct rec *owner;

	owner = unique_owner(rq->org, k,
			     cJSON_GetObjectItemCaseSensitive(rq->body, uf));
	if (owner && owner != self) {
		conflict(rs, uf, owner);
		return -1;
	}
	return 0;
}

/* The value to store for field f given in the body. */
static cJSON *stored_value(const struct fspec *f, const cJSON *v)
{
	if (f->type == F_TAGS && cJSON_IsNull(v))
		return cJSON_CreateArray();
	if (f->type == F_EMAIL) {
		char *t = store_norm_key(v->valuestring);
		const char *s = v->valuestring;
		cJSON *out;

		/* keep the caller's case, drop the surrounding blanks */
		while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
			s++;
		out = cJSON_CreateString(s);
		out->valuestring[strlen(t)] = '\0';
		free(t);
		return out;
	}
	return cJSON_Duplicate(v, 1);
}

static void set_time(cJSON *json, const char *name, int64_t ms)
{
	char buf[32];

	emu_iso(ms, buf);
	cJSON_ReplaceItemInObjectCaseSensitive(json, name,
					       cJSON_CreateString(buf));
}

static struct rec *create_record(struct api_req *rq, enum coll_kind k)
{
	const struct fspec *f;
	cJSON *json = cJSON_CreateObject();
	const cJSON *uv;
	int64_t now = store_stamp();
	char id[32], t[32];

	store_new_id(rq->org, k, id);
	emu_iso(now, t);
	for (f = spec_of(k); f->name; f++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(rq->body,
								  f->name);

		if (strcmp(f->name, "id") == 0)
			cJSON_AddStringToObject(json, f->name, id);
		else if (strcmp(f->name, "createdBy") == 0)
			cJSON_AddStringToObject(json, f->name, "api");
		else if (f->type == F_RO)
			cJSON_AddStringToObject(json, f->name, t);
		else if (v)
			cJSON_AddItemToObject(json, f->name,
					      stored_value(f, v));
		else if (f->type == F_TAGS)
			cJSON_AddItemToObject(json, f->name,
					      cJSON_CreateArray());
		else
			cJSON_AddNullToObject(json, f->name);
	}
	uv = cJSON_GetObjectItemCaseSensitive(json, unique_field(k));
	return store_append(rq->org, k, id, now, json,
			    cJSON_IsString(uv) ? uv->valuestring : NULL);
}

static void update_record(struct api_req *rq, enum coll_kind k,
			  struct rec *r)
{
	struct coll *c = &rq->org->c[k];
	const char *uf = unique_field(k);
	const cJSON *nv = cJSON_GetObjectItemCaseSensitive(rq->body, uf);
	const cJSON *e;

	if (nv) {
		const cJSON *old = cJSON_GetObjectItemCaseSensitive(r->json,
								    uf);
		char *key;

		if (cJSON_IsString(old) && *old->valuestring) {
			key = store_norm_key(old->valuestring);
			htab_del(&c->by_key, key);
			free(key);
		}
		if (cJSON_IsString(nv) && *nv->valuestring) {
			key = store_norm_key(nv->valuestring);
			htab_put(&c->by_key, key, r);
			free(key);
		}
	}
	cJSON_ArrayForEach(e, rq->body) {
		const struct fspec *f = spec_find(spec_of(k), e->string);

		cJSON_ReplaceItemInObjectCaseSensitive(r->json, f->name,
						       stored_value(f, e));
	}
	set_time(r->json, "updatedTime", store_stamp());
	store_refresh(k, r);
}

static void do_create(struct api_req *rq, struct api_resp *rs)
{
	enum coll_kind k = rq->route->kind;

	if (check_fields(rq, rs, k, true) < 0 ||
	    check_unique(rq, rs, k, NULL) < 0)
		return;
	answer(rs, 201, ref(create_record(rq, k)));
}

static void do_upsert(struct api_req *rq, struct api_resp *rs)
{
	struct rec *r;

	if (check_fields(rq, rs, COLL_PEOPLE, true) < 0)
		return;
	r = unique_owner(rq->org, COLL_PEOPLE,
			 cJSON_GetObjectItemCaseSensitive(rq->body, "email"));
	if (!r)
		return answer(rs, 201, ref(create_record(rq, COLL_PEOPLE)));
	update_record(rq, COLL_PEOPLE, r);
	answer(rs, 200, ref(r));
}

static void do_patch(struct api_req *rq, struct api_resp *rs)
{
	enum coll_kind k = rq->route->kind;
	struct rec *r = store_find(rq->org, k, rq->id);

	if (!r)
		return not_found(rs, k, rq->id);
	if (check_fields(rq, rs, k, false) < 0 ||
	    check_unique(rq, rs, k, r) < 0)
		return;
	update_record(rq, k, r);
	answer(rs, 200, ref(r));
}

static void do_delete(struct api_req *rq, struct api_resp *rs)
{
	enum coll_kind k = rq->route->kind;
	struct rec *r = store_find(rq->org, k, rq->id);
	const cJSON *uv;
	cJSON *d;

	if (!r)
		return not_found(rs, k, rq->id);
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "id", r->id);
	cJSON_AddTrueToObject(d, "deleted");
	uv = cJSON_GetObjectItemCaseSensitive(r->json, unique_field(k));
	store_delete(rq->org, k, r,
		     cJSON_IsString(uv) ? uv->valuestring : NULL);
	answer(rs, 200, d);
}

static size_t utf8_len(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

static int check_enum(struct api_resp *rs, const cJSON *v, const char *name,
		      const char *const *list)
{
	if (!v) {
		api_invalid(rs, name, "missing required field '%s'", name);
		return -1;
	}
	if (!cJSON_IsString(v) || !in_list(v->valuestring, list)) {
		api_invalid(rs, name, "'%s' is not one of the allowed values",
			    name);
		return -1;
	}
	return 0;
}

static int check_text(struct api_resp *rs, const cJSON *v, const char *name,
		      size_t max, bool required)
{
	if (!v && required) {
		api_invalid(rs, name, "missing required field '%s'", name);
		return -1;
	}
	if (!v || (!required && cJSON_IsNull(v)))
		return 0;
	if (!cJSON_IsString(v) || (required && !*v->valuestring)) {
		api_invalid(rs, name, "'%s' must be a%s string", name,
			    required ? " non-empty" : "");
		return -1;
	}
	if (utf8_len(v->valuestring) > max) {
		api_invalid(rs, name, "'%s' is longer than %zu characters",
			    name, max);
		return -1;
	}
	return 0;
}

static const char *const interaction_in[] = {
	"type", "direction", "title", "summary", "interactionDate",
	"mainContact", "mainContactEmail", "primaryId", "secondaryId", NULL,
};

static const char *const interaction_ro[] = {
	"id", "companies", "contacts", "sentiment", "source", "createdBy",
	"creationTime", NULL,
};

static int check_interaction(struct api_resp *rs, const cJSON *b)
{
	const cJSON *e, *d;

	cJSON_ArrayForEach(e, b) {
		if (in_list(e->string, interaction_ro)) {
			api_invalid(rs, e->string, "field '%s' is read-only",
				    e->string);
			return -1;
		}
		if (!in_list(e->string, interaction_in)) {
			api_invalid(rs, e->string, "unknown field '%s'",
				    e->string);
			return -1;
		}
	}
	if (check_enum(rs, cJSON_GetObjectItemCaseSensitive(b, "type"), "type",
		       interaction_types) < 0 ||
	    check_enum(rs, cJSON_GetObjectItemCaseSensitive(b, "direction"),
		       "direction", interaction_directions) < 0 ||
	    check_text(rs, cJSON_GetObjectItemCaseSensitive(b, "title"),
		       "title", 1000, true) < 0 ||
	    check_text(rs, cJSON_GetObjectItemCaseSensitive(b, "summary"),
		       "summary", 10000, false) < 0 ||
	    check_text(rs, cJSON_GetObjectItemCaseSensitive(b, "primaryId"),
		       "primaryId", 1000, false) < 0 ||
	    check_text(rs, cJSON_GetObjectItemCaseSensitive(b, "secondaryId"),
		       "secondaryId", 1000, false) < 0)
		return -1;
	d = cJSON_GetObjectItemCaseSensitive(b, "interactionDate");
	if (d && !cJSON_IsNull(d) && (!cJSON_IsNumber(d) ||
				      d->valuedouble < 0 ||
				      d->valuedouble > 4102444800000.0)) {
		api_invalid(rs, "interactionDate", "'interactionDate' must be "
			    "Unix time in milliseconds");
		return -1;
	}
	return 0;
}

/* The person an interaction names, or NULL with rs filled. */
static struct rec *main_contact(struct api_req *rq, struct api_resp *rs)
{
	const cJSON *mc = cJSON_GetObjectItemCaseSensitive(rq->body,
							   "mainContact");
	const cJSON *me = cJSON_GetObjectItemCaseSensitive(rq->body,
							   "mainContactEmail");
	bool has_mc = mc && !cJSON_IsNull(mc), has_me = me && !cJSON_IsNull(me);
	struct rec *p;

	if (has_mc == has_me) {
		api_invalid(rs, "mainContact", "give exactly one of "
			    "'mainContact' and 'mainContactEmail'");
		return NULL;
	}
	if (has_mc) {
		if (!cJSON_IsString(mc)) {
			api_invalid(rs, "mainContact", "'mainContact' must "
				    "be a person id");
			return NULL;
		}
		p = store_find(rq->org, COLL_PEOPLE, mc->valuestring);
		if (!p)
			api_invalid(rs, "mainContact", "No person with id %s",
				    mc->valuestring);
		return p;
	}
	if (!cJSON_IsString(me)) {
		api_invalid(rs, "mainContactEmail", "'mainContactEmail' must "
			    "be a string");
		return NULL;
	}
	p = unique_owner(rq->org, COLL_PEOPLE, me);
	if (!p)
		api_invalid(rs, "mainContactEmail", "No person with email %s",
			    me->valuestring);
	return p;
}

static bool mentions_meeting(const cJSON *v)
{
	return cJSON_IsString(v) && strcasestr(v->valuestring, "meet");
}

static cJSON *interaction_record(struct api_req *rq, const struct rec *p,
				 const char *id, int64_t now)
{
	const cJSON *b = rq->body;
	const cJSON *title = cJSON_GetObjectItemCaseSensitive(b, "title");
	const cJSON *summary = cJSON_GetObjectItemCaseSensitive(b, "summary");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(b, "interactionDate");
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(p->json,
							    "companyId");
	cJSON *it = cJSON_CreateObject();
	cJSON *arr;
	char t[32];

	cJSON_AddStringToObject(it, "id", id);
	cJSON_AddItemToObject(it, "type", cJSON_Duplicate(
		cJSON_GetObjectItemCaseSensitive(b, "type"), 0));
	cJSON_AddItemToObject(it, "direction", cJSON_Duplicate(
		cJSON_GetObjectItemCaseSensitive(b, "direction"), 0));
	cJSON_AddItemToObject(it, "title", cJSON_Duplicate(title, 0));
	cJSON_AddItemToObject(it, "summary", summary ? cJSON_Duplicate(
		summary, 0) : cJSON_CreateNull());
	arr = cJSON_AddArrayToObject(it, "companies");
	if (cJSON_IsString(cid))
		cJSON_AddItemToArray(arr, cJSON_CreateString(cid->valuestring));
	arr = cJSON_AddArrayToObject(it, "contacts");
	cJSON_AddItemToArray(arr, cJSON_CreateString(p->id));
	if (mentions_meeting(title) || mentions_meeting(summary))
		cJSON_AddStringToObject(it, "sentiment", "MEETING_REQUESTED");
	else
		cJSON_AddNullToObject(it, "sentiment");
	cJSON_AddStringToObject(it, "source", "API");
	cJSON_AddStringToObject(it, "createdBy", "api");
	emu_iso(now, t);
	cJSON_AddStringToObject(it, "creationTime", t);
	if (cJSON_IsNumber(d))
		emu_iso((int64_t)d->valuedouble, t);
	cJSON_AddStringToObject(it, "interactionDate", t);
	return it;
}

static cJSON *created(const char *id, bool dup)
{
	cJSON *d = cJSON_CreateObject();

	cJSON_AddStringToObject(d, "id", id);
	cJSON_AddBoolToObject(d, "isDuplicate", dup);
	return d;
}

static void do_create_interaction(struct api_req *rq, struct api_resp *rs)
{
	const cJSON *pid = cJSON_GetObjectItemCaseSensitive(rq->body,
							    "primaryId");
	struct coll *c = &rq->org->c[COLL_INTERACTIONS];
	const struct rec *p, *dup = NULL;
	int64_t now;
	char id[32];

	if (check_interaction(rs, rq->body) < 0)
		return;
	p = main_contact(rq, rs);
	if (!p)
		return;
	if (cJSON_IsString(pid) && *pid->valuestring)
		dup = htab_get(&c->by_key, pid->valuestring);
	if (dup)
		return answer(rs, 200, created(dup->id, true));
	now = store_stamp();
	store_new_id(rq->org, COLL_INTERACTIONS, id);
	store_append(rq->org, COLL_INTERACTIONS, id, now,
		     interaction_record(rq, p, id, now),
		     cJSON_IsString(pid) ? pid->valuestring : NULL);
	answer(rs, 201, created(id, false));
}

#define R_READ false
#define R_WRITE true

const struct api_route api_routes[] = {
	{ "GET", "/authenticate", "GET /authenticate", COLL_PEOPLE, 0,
	  R_READ, false, do_authenticate },
	{ "GET", "/people/{id}", "GET /people/{id}", COLL_PEOPLE,
	  SCOPE_PEOPLE_READ, R_READ, false, do_get },
	{ "POST", "/people/query", "POST /people/query", COLL_PEOPLE,
	  SCOPE_PEOPLE_READ, R_READ, true, do_query },
	{ "POST", "/people", "POST /people", COLL_PEOPLE, SCOPE_PEOPLE_WRITE,
	  R_WRITE, true, do_create },
	{ "PUT", "/people", "PUT /people", COLL_PEOPLE, SCOPE_PEOPLE_WRITE,
	  R_WRITE, true, do_upsert },
	{ "PATCH", "/people/{id}", "PATCH /people/{id}", COLL_PEOPLE,
	  SCOPE_PEOPLE_WRITE, R_WRITE, true, do_patch },
	{ "DELETE", "/people/{id}", "DELETE /people/{id}", COLL_PEOPLE,
	  SCOPE_PEOPLE_WRITE, R_WRITE, false, do_delete },
	{ "GET", "/companies/{id}", "GET /companies/{id}", COLL_COMPANIES,
	  SCOPE_COMPANIES_READ, R_READ, false, do_get },
	{ "POST", "/companies", "POST /companies", COLL_COMPANIES,
	  SCOPE_COMPANIES_WRITE, R_WRITE, true, do_create },
	{ "PATCH", "/companies/{id}", "PATCH /companies/{id}", COLL_COMPANIES,
	  SCOPE_COMPANIES_WRITE, R_WRITE, true, do_patch },
	{ "DELETE", "/companies/{id}", "DELETE /companies/{id}",
	  COLL_COMPANIES, SCOPE_COMPANIES_REMOVE, R_WRITE, false, do_delete },
	{ "GET", "/interactions/{id}", "GET /interactions/{id}",
	  COLL_INTERACTIONS, SCOPE_INTERACTIONS_READ, R_READ, false, do_get },
	{ "POST", "/interactions/query", "POST /interactions/query",
	  COLL_INTERACTIONS, SCOPE_INTERACTIONS_READ, R_READ, true, do_query },
	{ "POST", "/interactions", "POST /interactions", COLL_INTERACTIONS,
	  SCOPE_INTERACTIONS_WRITE, R_WRITE, true, do_create_interaction },
};

const size_t api_route_count = sizeof(api_routes) / sizeof(*api_routes);

/* Does path fit pattern? A "{id}" segment takes one non-empty segment. */
static bool pattern_match(const char *pattern, const char *path, char *id,
			  size_t idlen)
{
	const char *brace = strstr(pattern, "{id}");
	size_t pre, seg;

	if (!brace)
		return strcmp(pattern, path) == 0;
	pre = brace - pattern;
	if (strncmp(pattern, path, pre) != 0)
		return false;
	path += pre;
	seg = strlen(path);
	if (seg == 0 || strchr(path, '/'))
		return false;
	snprintf(id, idlen, "%s", path);
	return true;
}

int api_match(const char *method, const char *path, char *id, size_t idlen,
	      char *allow, size_t allowlen)
{
	char tmp[128];

	/* exact routes first, so /people/query is not a person id */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < api_route_count; i++) {
			const struct api_route *r = &api_routes[i];
			bool templ = strstr(r->pattern, "{id}") != NULL;

			if (templ == (pass == 1) &&
			    strcmp(r->method, method) == 0 &&
			    pattern_match(r->pattern, path, id, idlen))
				return (int)i;
		}
	}
	allow[0] = '\0';
	for (size_t i = 0; i < api_route_count; i++) {
		const struct api_route *r = &api_routes[i];
		size_t used = strlen(allow);

		if (pattern_match(r->pattern, path, tmp, sizeof(tmp)))
			snprintf(allow + used, allowlen - used, "%s%s",
				 used ? ", " : "", r->method);
	}
	return -1;
}
