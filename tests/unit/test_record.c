/*
 * Unit tests for fs/record.c (the text of a record file and the patch
 * between two versions) and fs/strmap.c.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "record.h"
#include "strmap.h"



static char *format(const char *json)
{
	cJSON *v = cJSON_Parse(json);
	size_t len = 0;
	char *text;

	if (!v)
		return strdup("<unparsable test input>");
	text = record_format(v, &len);
	cJSON_Delete(v);
	if (text && strlen(text) != len)
		failures++;
	return text;
}

static void expect_format(const char *json, const char *want)
{
	char *got = format(json);

	if (!got || strcmp(got, want)) {
		fprintf(stderr, "format %s:\n got: [%s]\nwant: [%s]\n", json,
			got ? got : "(null)", want);
		failures++;
	}
	free(got);
}

static void test_format_matches_python_indent_2(void)
{
	expect_format("{}", "{}\n");
	expect_format("{\"b\":1,\"a\":[]}", "{\n  \"b\": 1,\n  \"a\": []\n}\n");
	expect_format("{\"a\":[1,{\"x\":null}],\"t\":true,\"f\":false}",
		      "{\n  \"a\": [\n    1,\n    {\n      \"x\": null\n"
		      "    }\n  ],\n  \"t\": true,\n  \"f\": false\n}\n");
	expect_format("{\"o\":{}}", "{\n  \"o\": {}\n}\n");
}

static void test_format_escapes_like_python_without_ascii(void)
{
	expect_format("{\"s\":\"a\\\"b\\\\c\\nd\\te\\u0001\"}",
		      "{\n  \"s\": \"a\\\"b\\\\c\\nd\\te\\u0001\"\n}\n");
	expect_format("{\"s\":\"Ren\\u00e9e \xe5\xa4\xa7 \xf0\x9f\x94\xa5 <b>/</b>\"}",
		      "{\n  \"s\": \"Ren\xc3\xa9" "e \xe5\xa4\xa7 \xf0\x9f\x94\xa5 <b>/</b>\"\n}\n");
}

static void test_format_numbers(void)
{
	expect_format("{\"n\":[0,-3,1712000000000,1.5,0.1,-2.25e-7]}",
		      "{\n  \"n\": [\n    0,\n    -3,\n    1712000000000,\n"
		      "    1.5,\n    0.1,\n    -2.25e-07\n  ]\n}\n");
}

static void test_parse_accepts_one_object_only(void)
{
	cJSON *v;

	CHECK(record_parse("{\"a\":1}\n", 8, &v) == 0 && v);
	cJSON_Delete(v);
	CHECK(record_parse("  {}  \n", 7, &v) == 0);
	cJSON_Delete(v);
	CHECK(record_parse("[]", 2, &v) == -EINVAL && !v);
	CHECK(record_parse("{\"a\":1} {}", 10, &v) == -EINVAL);
	CHECK(record_parse("{\"a\":", 5, &v) == -EINVAL);
	CHECK(record_parse("", 0, &v) == -EINVAL);
	CHECK(record_parse("{\"a\":1}\0", 8, &v) == -EINVAL);
}

static void test_times(void)
{
	cJSON *r = cJSON_Parse("{\"creationTime\":\"2026-04-01T10:00:01Z\"}");

	CHECK(record_parse_time("2026-04-01T10:00:01Z") == 1775037601000);
	CHECK(record_parse_time("2026-04-01T10:00:01.999Z") == 1775037601999);
	CHECK(record_parse_time("2026-04-01T10:00:01.5Z") == 1775037601500);
	CHECK(record_parse_time("2026-04-01T12:00:01+02:00") == 1775037601000);
	CHECK(record_parse_time("yesterday") == -1);
	CHECK(record_mtime(r) == 1775037601000);
	cJSON_AddStringToObject(r, "updatedTime", "2026-04-01T10:00:02.25Z");
	CHECK(record_mtime(r) == 1775037602250);
	cJSON_Delete(r);
}

static void test_diff_sends_changed_top_level_fields(void)
{
	cJSON *base = cJSON_Parse("{\"id\":\"x\",\"a\":1,\"b\":[1,2],"
				  "\"c\":\"keep\",\"d\":\"drop\",\"e\":null,"
				  "\"updatedTime\":\"t\"}");
	cJSON *edit = cJSON_Parse("{\"id\":\"x\",\"a\":1,\"b\":[1,3],"
				  "\"c\":\"keep\",\"n\":{\"k\":1}}");
	cJSON *patch = record_diff(base, edit, true);
	char *text = cJSON_PrintUnformatted(patch);

	CHECK(text && !strcmp(text, "{\"b\":[1,3],\"n\":{\"k\":1},\"d\":null}"));
	free(text);
	cJSON_Delete(patch);

	patch = record_diff(base, base, true);
	CHECK(patch && !patch->child);
	cJSON_Delete(patch);

	/* A partial text leaves out what it does not mention. */
	patch = record_diff(base, edit, false);
	text = cJSON_PrintUnformatted(patch);
	CHECK(text && !strcmp(text, "{\"b\":[1,3],\"n\":{\"k\":1}}"));
	free(text);

	/* What the server already holds is not sent again. */
	record_patch_prune(patch, edit);
	CHECK(patch && !patch->child);
	cJSON_Delete(patch);
	cJSON_Delete(edit);
	cJSON_Delete(base);
}

static void test_updated_time_is_read_from_text(void)
{
	cJSON *r = cJSON_Parse("{\"id\":\"x\",\"n\":{\"updatedTime\":\"no\"},"
			       "\"updatedTime\":\"2026-04-01T10:00:01.5Z\"}");
	char *text, buf[64];
	size_t len;

	text = record_format(r, &len);
	CHECK(record_text_updated(text, len, buf, sizeof(buf)));
	CHECK(!strcmp(buf, "2026-04-01T10:00:01.5Z"));
	CHECK(!strcmp(record_updated(r), buf));
	CHECK(!record_text_updated("{}\n", 3, buf, sizeof(buf)));
	free(text);
	cJSON_Delete(r);
}

static void test_readonly_changes_are_found(void)
{
	cJSON *base = cJSON_Parse("{\"id\":\"x\",\"createdBy\":\"u\",\"a\":1}");
	cJSON *same = cJSON_Parse("{\"id\":\"x\",\"a\":2}");
	cJSON *moved = cJSON_Parse("{\"id\":\"y\",\"a\":1}");
	cJSON *added = cJSON_Parse("{\"id\":\"x\",\"updatedTime\":\"z\"}");

	CHECK(record_readonly_change(base, same, NULL) == NULL);
	CHECK(!strcmp(record_readonly_change(base, moved, NULL) ?: "", "id"));
	CHECK(!strcmp(record_readonly_change(base, added, NULL) ?: "",
		      "updatedTime"));
	CHECK(record_readonly_change(base, added, "updatedTime") == NULL);
	CHECK(!strcmp(record_readonly_change(base, moved, "updatedTime") ?: "",
		      "id"));
	record_drop_readonly(moved);
	CHECK(!cJSON_GetObjectItem(moved, "id"));
	CHECK(cJSON_GetObjectItem(moved, "a") != NULL);
	cJSON_Delete(base);
	cJSON_Delete(same);
	cJSON_Delete(moved);
	cJSON_Delete(added);
}

static void test_conflict_only_on_same_field_with_different_values(void)
{
	cJSON *ours = cJSON_Parse("{\"a\":1,\"b\":2}");
	cJSON *other = cJSON_Parse("{\"c\":3}");
	cJSON *agree = cJSON_Parse("{\"a\":1}");
	cJSON *clash = cJSON_Parse("{\"b\":5}");

	CHECK(record_patch_conflict(ours, other) == NULL);
	CHECK(record_patch_conflict(ours, agree) == NULL);
	CHECK(!strcmp(record_patch_conflict(ours, clash) ?: "", "b"));
	cJSON_Delete(ours);
	cJSON_Delete(other);
	cJSON_Delete(agree);
	cJSON_Delete(clash);
}

static int count_entry(void *arg, const char *key, void *value)
{
	(void)key;
	(void)value;
	(*(int *)arg)++;
	return 0;
}

static void test_strmap_put_get_del_grow(void)
{
	struct strmap *m = strmap_new();
	char key[32];
	void *old;
	int i, n = 0;

	for (i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "people/%d.json", i);
		CHECK(strmap_put(m, key, (void *)(long)(i + 1), &old) == 0);
		CHECK(old == NULL);
	}
	CHECK(strmap_count(m) == 5000);
	CHECK(strmap_get(m, "people/4999.json") == (void *)5000L);
	CHECK(strmap_put(m, "people/7.json", (void *)1L, &old) == 0);
	CHECK(old == (void *)8L);
	CHECK(strmap_del(m, "people/7.json") == (void *)1L);
	CHECK(strmap_get(m, "people/7.json") == NULL);
	strmap_foreach(m, count_entry, &n);
	CHECK(n == 4999);
	strmap_free(m, NULL);
}

static void test_utf8_is_checked(void)
{
	static const char *good[] = {
		"plain", "caf\xc3\xa9", "\xe6\x9d\xb1\xe4\xba\xac",
		"\xf0\x9f\x98\x80", "",
	};
	static const char *bad[] = {
		"\xff\xfe", "caf\xc3", "\xc0\xaf",	/* overlong '/' */
		"\xed\xa0\x80",			/* surrogate */
		"\xf4\x90\x80\x80",		/* past U+10FFFF */
		"\xe6\x9d",				/* cut short */
	};
	cJSON *v = NULL;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(*good); i++)
		CHECK(record_utf8_valid(good[i], strlen(good[i])));
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK(!record_utf8_valid(bad[i], strlen(bad[i])));
	CHECK(record_parse("{\"a\":\"\xff\"}", 8, &v) == -EINVAL);
	CHECK(v == NULL);
	CHECK(record_parse("{\"a\":\"x\\u0000y\"}", 16, &v) == -EINVAL);
	CHECK(record_parse("{\"a\":\"x\\\\u0000y\"}", 17, &v) == 0);
	cJSON_Delete(v);
}

int main(void)
{
	test_format_matches_python_indent_2();
	test_format_escapes_like_python_without_ascii();
	test_format_numbers();
	test_parse_accepts_one_object_only();
	test_times();
	test_diff_sends_changed_top_level_fields();
	test_updated_time_is_read_from_text();
	test_readonly_changes_are_found();
	test_conflict_only_on_same_field_with_different_values();
	test_strmap_put_get_del_grow();
	test_utf8_is_checked();
	if (failures)
		fprintf(stderr, "%d checks failed\n", failures);
	return failures ? 1 : 0;
}
