/* record: see include/record.h */
#include "record.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A growing output buffer; on allocation failure it stays failed. */
struct sbuf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};

static void sb_grow(struct sbuf *sb, size_t more)
{
	size_t cap;
	char *p;

	if (sb->failed || sb->len + more + 1 <= sb->cap)
		return;
	cap = sb->cap ? sb->cap : 256;
	while (cap < sb->len + more + 1)
		cap *= 2;
	p = realloc(sb->data, cap);
	if (!p) {
		sb->failed = true;
		return;
	}
	sb->data = p;
	sb->cap = cap;
}

static void sb_add(struct sbuf *sb, const char *s, size_t n)
{
	sb_grow(sb, n);
	if (sb->failed)
		return;
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

static void sb_puts(struct sbuf *sb, const char *s)
{
	sb_add(sb, s, strlen(s));
}

static void sb_indent(struct sbuf *sb, int depth)
{
	static const char spaces[] = "                                ";

	while (depth > 0) {
		int n = depth > 16 ? 16 : depth;

		sb_add(sb, spaces, 2 * n);
		depth -= n;
	}
}

/* Escape as Python's json module does with ensure_ascii=False. */
static void put_string(struct sbuf *sb, const char *s)
{
	const char *run = s;
	char esc[8];

	sb_add(sb, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		const char *rep = NULL;

		switch (ch) {
		case '"': rep = "\\\""; break;
		case '\\': rep = "\\\\"; break;
		case '\n': rep = "\\n"; break;
		case '\r': rep = "\\r"; break;
		case '\t': rep = "\\t"; break;
		case '\b': rep = "\\b"; break;
		case '\f': rep = "\\f"; break;
		default:
			if (ch < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", ch);
				rep = esc;
			}
		}
		if (!rep)
			continue;
		sb_add(sb, run, s - run);
		sb_puts(sb, rep);
		run = s + 1;
	}
	sb_add(sb, run, s - run);
	sb_add(sb, "\"", 1);
}

/*
 * cJSON keeps numbers as doubles, so integers print as integers while they
 * are exact, and other values in the shortest form that reads back the same.
 * NEEDSWORK: integers beyond 2^53 lose digits; keeping the server's own
 * number text would need a parser that preserves it (no such field exists
 * in the API today).
 */
static void put_number(struct sbuf *sb, double v)
{
	char num[40];
	int prec;

	if (!isfinite(v)) {
		sb_puts(sb, "null");
		return;
	}
	if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(num, sizeof(num), "%.0f", v);
		sb_puts(sb, num);
		return;
	}
	for (prec = 15; prec <= 17; prec++) {
		snprintf(num, sizeof(num), "%.*g", prec, v);
		if (strtod(num, NULL) == v)
			break;
	}
	sb_puts(sb, num);
}

static void put_value(struct sbuf *sb, const cJSON *v, int depth);

static void put_container(struct sbuf *sb, const cJSON *v, int depth,
			  bool object)
{
	const cJSON *child = v->child;

	if (!child) {
		sb_puts(sb, object ? "{}" : "[]");
		return;
	}
	sb_puts(sb, object ? "{\n" : "[\n");
	for (; child; child = child->next) {
		sb_indent(sb, depth + 1);
		if (object) {
			put_string(sb, child->string ? child->string : "");
			sb_puts(sb, ": ");
		}
		put_value(sb, child, depth + 1);
		sb_puts(sb, child->next ? ",\n" : "\n");
	}
	sb_indent(sb, depth);
	sb_puts(sb, object ? "}" : "]");
}

static void put_value(struct sbuf *sb, const cJSON *v, int depth)
{
	if (cJSON_IsString(v))
		put_string(sb, v->valuestring ? v->valuestring : "");
	else if (cJSON_IsNumber(v))
		put_number(sb, v->valuedouble);
	else if (cJSON_IsTrue(v))
		sb_puts(sb, "true");
	else if (cJSON_IsFalse(v))
		sb_puts(sb, "false");
	else if (cJSON_IsObject(v))
		put_container(sb, v, depth, true);
	else if (cJSON_IsArray(v))
		put_container(sb, v, depth, false);
	else if (cJSON_IsRaw(v))
		sb_puts(sb, v->valuestring ? v->valuestring : "null");
	else
		sb_puts(sb, "null");
}

char *record_format(const cJSON *rec, size_t *len)
{
	struct sbuf sb = { 0 };

	put_value(&sb, rec, 0);
	sb_add(&sb, "\n", 1);
	if (sb.failed) {
		free(sb.data);
		return NULL;
	}
	*len = sb.len;
	return sb.data;
}

/* Bytes in the UTF-8 sequence led by @c and the least code point it may hold. */
static int utf8_seq(unsigned char c, uint32_t *cp, uint32_t *min)
{
	if (c < 0x80) {
		*cp = c;
		*min = 0;
		return 1;
	}
	if ((c & 0xe0) == 0xc0) {
		*cp = c & 0x1f;
		*min = 0x80;
		return 2;
	}
	if ((c & 0xf0) == 0xe0) {
		*cp = c & 0x0f;
		*min = 0x800;
		return 3;
	}
	if ((c & 0xf8) == 0xf0) {
		*cp = c & 0x07;
		*min = 0x10000;
		return 4;
	}
	return 0;
}

bool record_utf8_valid(const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	const unsigned char *end = p + len;

	while (p < end) {
		uint32_t cp, min;
		int i, n = utf8_seq(*p, &cp, &min);

		if (!n || end - p < n)
			return false;
		for (i = 1; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n;
	}
	return true;
}

bool record_has_escaped_nul(const char *text, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i++) {
		if (text[i] != '\\')
			continue;
		if (text[i + 1] == 'u' && len - i >= 6 &&
		    !memcmp(text + i + 2, "0000", 4))
			return true;
		i++;	/* whatever is escaped, it is not a backslash */
	}
	return false;
}

int record_parse(const char *text, size_t len, cJSON **out)
{
	const char *end = NULL;
	cJSON *v;

	*out = NULL;
	if (memchr(text, '\0', len) || !record_utf8_valid(text, len) ||
	    record_has_escaped_nul(text, len))
		return -EINVAL;
	v = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!v)
		return -EINVAL;
	while (end && end < text + len &&
	       (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
		end++;
	if (!cJSON_IsObject(v) || end != text + len) {
		cJSON_Delete(v);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

const char *record_id(const cJSON *rec)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");

	if (!cJSON_IsString(id) || !id->valuestring || !*id->valuestring)
		return NULL;
	return id->valuestring;
}

int64_t record_parse_time(const char *iso)
{
	struct tm tm = { 0 };
	int consumed = 0, off_h = 0, off_m = 0;
	const char *p;
	int64_t t;

	if (!iso || sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year,
			   &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
			   &tm.tm_sec, &consumed) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	p = iso + consumed;
	t = (int64_t)timegm(&tm) * 1000;
	if (*p == '.') {
		int scale = 100;

		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			t += (*p - '0') * scale;
	}
	if (*p == 'Z' || *p == '\0')
		return t;
	if ((*p == '+' || *p == '-') &&
	    sscanf(p + 1, "%2d:%2d", &off_h, &off_m) == 2) {
		int64_t off = (off_h * 3600 + off_m * 60) * 1000;

		return *p == '+' ? t - off : t + off;
	}
	return -1;
}

int64_t record_mtime(const cJSON *rec)
{
	static const char *const fields[] = { "updatedTime", "creationTime" };
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, fields[i]);
		int64_t t;

		if (!cJSON_IsString(v))
			continue;
		t = record_parse_time(v->valuestring);
		if (t >= 0)
			return t;
	}
	return 0;
}

bool record_text_updated(const char *text, size_t len, char *buf,
			 size_t size)
{
	static const char key[] = "\n  \"updatedTime\": \"";
	const char *at = memmem(text, len, key, sizeof(key) - 1), *end;

	if (!at)
		return false;
	at += sizeof(key) - 1;
	end = memchr(at, '"', text + len - at);
	if (!end || (size_t)(end - at) >= size || memchr(at, '\\', end - at))
		return false;
	memcpy(buf, at, end - at);
	buf[end - at] = '\0';
	return true;
}

const char *record_updated(const cJSON *rec)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "updatedTime");

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool record_field_readonly(const char *name)
{
	return !strcmp(name, "id") || !strcmp(name, "createdBy") ||
	       !strcmp(name, "creationTime") || !strcmp(name, "updatedTime");
}

const char *record_readonly_change(const cJSON *base, const cJSON *edited,
				   const char *skip)
{
	const cJSON *f;

	cJSON_ArrayForEach(f, edited) {
		const cJSON *old;

		if (!f->string || !record_field_readonly(f->string) ||
		    (skip && !strcmp(f->string, skip)))
			continue;
		old = cJSON_GetObjectItemCaseSensitive(base, f->string);
		if (!old || !cJSON_Compare(old, f, true))
			return f->string;
	}
	return NULL;
}

void record_drop_readonly(cJSON *rec)
{
	cJSON *f, *next;

	for (f = rec->child; f; f = next) {
		next = f->next;
		if (f->string && record_field_readonly(f->string))
			cJSON_Delete(cJSON_DetachItemViaPointer(rec, f));
	}
}

cJSON *record_diff(const cJSON *base, const cJSON *edited,
		   bool clear_removed)
{
	cJSON *patch = cJSON_CreateObject();
	const cJSON *f;

	if (!patch)
		return NULL;
	cJSON_ArrayForEach(f, edited) {
		const cJSON *old;

		if (!f->string || record_field_readonly(f->string))
			continue;
		old = cJSON_GetObjectItemCaseSensitive(base, f->string);
		if (old && cJSON_Compare(old, f, true))
			continue;
		if (!cJSON_AddItemToObject(patch, f->string,
					   cJSON_Duplicate(f, true)))
			goto fail;
	}
	cJSON_ArrayForEach(f, base) {
		if (!clear_removed)
			break;
		if (!f->string || record_field_readonly(f->string) ||
		    cJSON_IsNull(f) ||
		    cJSON_GetObjectItemCaseSensitive(edited, f->string))
			continue;
		if (!cJSON_AddNullToObject(patch, f->string))
			goto fail;
	}
	return patch;
fail:
	cJSON_Delete(patch);
	return NULL;
}

void record_patch_prune(cJSON *patch, const cJSON *current)
{
	cJSON *f = patch->child, *next;

	for (; f; f = next) {
		const cJSON *cur;

		next = f->next;
		cur = cJSON_GetObjectItemCaseSensitive(current, f->string);
		if ((cur && cJSON_Compare(cur, f, true)) ||
		    (cJSON_IsNull(f) && (!cur || cJSON_IsNull(cur))))
			cJSON_Delete(cJSON_DetachItemViaPointer(patch, f));
	}
}

const char *record_patch_conflict(const cJSON *ours, const cJSON *theirs)
{
	const cJSON *f;

	cJSON_ArrayForEach(f, ours) {
		const cJSON *t;

		t = cJSON_GetObjectItemCaseSensitive(theirs, f->string);
		if (t && !cJSON_Compare(t, f, true))
			return f->string;
	}
	return NULL;
}
