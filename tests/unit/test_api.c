/*
 * Unit tests for the pure half of the API client (fs/api_decode.c): every
 * answer shape the Tolerance section of klipy-api.md names, the status to
 * errno table of api.h, the time headers and the base URL rule.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "api.h"
#include "api_decode.h"



static bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* Decode @body as a list; return the number of records, -errno on error. */
static int decode_list(const char *body, struct api_result *res)
{
	int rc;

	memset(res, 0, sizeof(*res));
	rc = api_decode_success(body, strlen(body), true, res);
	if (rc)
		return rc;
	return cJSON_GetArraySize(res->data);
}

static void test_status_maps_to_errno_as_api_h_says(void)
{
	CHECK(api_status_errno(200) == 0);
	CHECK(api_status_errno(201) == 0);
	CHECK(api_status_errno(204) == 0);
	CHECK(api_status_errno(400) == -EINVAL);
	CHECK(api_status_errno(401) == -EACCES);
	CHECK(api_status_errno(403) == -EACCES);
	CHECK(api_status_errno(404) == -ENOENT);
	CHECK(api_status_errno(409) == -EEXIST);
	CHECK(api_status_errno(413) == -EFBIG);
	CHECK(api_status_errno(422) == -EINVAL);
	CHECK(api_status_errno(429) == -EAGAIN);
	CHECK(api_status_errno(500) == -EAGAIN);
	CHECK(api_status_errno(503) == -EAGAIN);
	CHECK(api_status_errno(302) == -EIO);
}

static void test_loopback_hosts_are_recognised(void)
{
	CHECK(api_host_is_loopback("localhost"));
	CHECK(api_host_is_loopback("LocalHost"));
	CHECK(api_host_is_loopback("127.0.0.1"));
	CHECK(api_host_is_loopback("127.1.2.3"));
	CHECK(api_host_is_loopback("::1"));
	CHECK(api_host_is_loopback("[::1]"));
	CHECK(api_host_is_loopback("::ffff:127.0.0.1"));
	CHECK(!api_host_is_loopback("128.0.0.1"));
	CHECK(!api_host_is_loopback("10.0.0.1"));
	CHECK(!api_host_is_loopback("localhost.example.com"));
	CHECK(!api_host_is_loopback("127.0.0.1.example.com"));
	CHECK(!api_host_is_loopback("::2"));
	CHECK(!api_host_is_loopback(""));
}

static void test_base_url_needs_https_unless_loopback(void)
{
	char why[128] = "";

	CHECK(api_check_base_url("https://api.klipy.ai/api/v1", NULL, 0) == 0);
	CHECK(api_check_base_url("HTTPS://api.klipy.ai/api/v1", NULL, 0) == 0);
	CHECK(api_check_base_url("http://127.0.0.1:8080/api/v1", NULL, 0) == 0);
	CHECK(api_check_base_url("http://localhost/api/v1", NULL, 0) == 0);
	CHECK(api_check_base_url("http://[::1]:9/api/v1", NULL, 0) == 0);
	CHECK(api_check_base_url("https://127.0.0.1/api/v1", NULL, 0) == 0);

	CHECK(api_check_base_url("http://api.klipy.ai/api/v1", why,
				 sizeof(why)) == -EINVAL);
	CHECK(strstr(why, "https") != NULL);
	CHECK(api_check_base_url("http://127.0.0.1.nip.io/x", NULL, 0) ==
	      -EINVAL);
	CHECK(api_check_base_url("http://127.0.0.1@evil.example/x", NULL, 0) ==
	      -EINVAL);
	CHECK(api_check_base_url("ftp://127.0.0.1/x", NULL, 0) == -EINVAL);
	CHECK(api_check_base_url("not a url", NULL, 0) == -EINVAL);
	CHECK(api_check_base_url(NULL, NULL, 0) == -EINVAL);
}

static void test_retry_after_reads_seconds_unix_time_and_dates(void)
{
	const int64_t now = 1775000000;

	CHECK(api_parse_retry_after("5", now) == 5000);
	CHECK(api_parse_retry_after(" 0 ", now) == 0);
	CHECK(api_parse_retry_after("1.5", now) == 1500);
	CHECK(api_parse_retry_after("1775000007", now) == 7000);
	/* A Unix time already past means: go now. */
	CHECK(api_parse_retry_after("1774999990", now) == 0);
	CHECK(api_parse_retry_after("Wed, 01 Apr 2026 00:00:10 GMT",
				    1775001620) == 0);
	CHECK(api_parse_retry_after("Wed, 01 Apr 2026 00:00:10 GMT",
				    1775001600) == 10000);
	CHECK(api_parse_retry_after("soon", now) == -1);
	CHECK(api_parse_retry_after("-3", now) == -1);
	CHECK(api_parse_retry_after("", now) == -1);
	CHECK(api_parse_retry_after(NULL, now) == -1);
}

static void test_reset_reads_seconds_and_unix_time(void)
{
	const int64_t now = 1775000000;

	CHECK(api_parse_reset("30", now) == now + 30);
	CHECK(api_parse_reset("0", now) == now);
	CHECK(api_parse_reset("1775000042", now) == 1775000042);
	CHECK(api_parse_reset("x", now) == -1);
	CHECK(api_parse_reset(NULL, now) == -1);
}

static void test_record_in_current_envelope(void)
{
	const char *body = "{\"object\":\"success\",\"data\":{\"id\":"
		"\"h7w8y2f1\",\"unknownField\":[1,2]},\"meta\":{}}";
	struct api_result res = { 0 };

	CHECK(api_decode_success(body, strlen(body), false, &res) == 0);
	CHECK(str_eq(cJSON_GetObjectItem(res.data, "id")->valuestring,
		    "h7w8y2f1"));
	/* Fields we do not know are kept. */
	CHECK(cJSON_GetObjectItem(res.data, "unknownField") != NULL);
	CHECK(res.next_cursor == NULL);
	api_result_release(&res);
}

static void test_record_in_older_envelope_and_unwrapped(void)
{
	const char *old = "{\"success\":true,\"data\":{\"id\":\"a\"}}";
	const char *bare = "{\"id\":\"b\",\"email\":null}";
	struct api_result res = { 0 };

	CHECK(api_decode_success(old, strlen(old), false, &res) == 0);
	CHECK(str_eq(cJSON_GetObjectItem(res.data, "id")->valuestring, "a"));
	api_result_release(&res);

	CHECK(api_decode_success(bare, strlen(bare), false, &res) == 0);
	CHECK(str_eq(cJSON_GetObjectItem(res.data, "id")->valuestring, "b"));
	api_result_release(&res);
}

static void test_non_json_success_is_eio(void)
{
	const char *html = "<html>captive portal</html>";
	const char *fail = "{\"success\":false,\"message\":\"nope\"}";
	struct api_result res = { 0 };

	CHECK(api_decode_success(html, strlen(html), false, &res) == -EIO);
	CHECK(res.data == NULL);
	CHECK(api_decode_success(fail, strlen(fail), false, &res) == -EIO);
	CHECK(decode_list("{\"data\":{\"a\":[],\"b\":[]}}", &res) == -EIO);
	CHECK(decode_list("\"text\"", &res) == -EIO);
}

static void test_empty_success_body(void)
{
	struct api_result res = { 0 };

	CHECK(api_decode_success("", 0, false, &res) == 0);
	CHECK(res.data == NULL);
	CHECK(decode_list("  \n", &res) == 0);
	CHECK(cJSON_IsArray(res.data));
	api_result_release(&res);
}

static void test_list_with_page_info_beside_data(void)
{
	struct api_result res;

	CHECK(decode_list("{\"object\":\"success\",\"data\":[{\"id\":\"a\"},"
			  "{\"id\":\"b\"}],\"page_info\":{\"next_cursor\":"
			  "\"b3Bh\",\"has_more\":true},\"meta\":{}}",
			  &res) == 2);
	CHECK(str_eq(res.next_cursor, "b3Bh"));
	api_result_release(&res);
}

static void test_has_more_false_ends_the_listing(void)
{
	struct api_result res;

	CHECK(decode_list("{\"data\":[{\"id\":\"a\"}],\"page_info\":{"
			  "\"next_cursor\":\"left\",\"has_more\":false}}",
			  &res) == 1);
	CHECK(res.next_cursor == NULL);
	api_result_release(&res);

	CHECK(decode_list("{\"data\":[],\"page_info\":{\"end_cursor\":\"x\","
			  "\"has_next_page\":false}}", &res) == 0);
	CHECK(res.next_cursor == NULL);
	api_result_release(&res);
}

static void test_no_page_info_is_a_single_page(void)
{
	struct api_result res;

	CHECK(decode_list("{\"object\":\"success\",\"data\":[{\"id\":\"a\"}]}",
			  &res) == 1);
	CHECK(res.next_cursor == NULL);
	api_result_release(&res);

	CHECK(decode_list("{\"data\":null}", &res) == 0);
	CHECK(cJSON_IsArray(res.data));
	api_result_release(&res);
}

static void test_page_info_in_meta_with_end_cursor(void)
{
	struct api_result res;

	CHECK(decode_list("{\"success\":true,\"data\":[{\"id\":\"a\"}],"
			  "\"meta\":{\"page_info\":{\"end_cursor\":\"c2\","
			  "\"has_next_page\":true}}}", &res) == 1);
	CHECK(str_eq(res.next_cursor, "c2"));
	api_result_release(&res);

	CHECK(decode_list("{\"data\":[{\"id\":\"a\"}],\"meta\":{\"pageInfo\":{"
			  "\"endCursor\":\"c3\",\"hasNextPage\":true}}}",
			  &res) == 1);
	CHECK(str_eq(res.next_cursor, "c3"));
	api_result_release(&res);
}

static void test_list_nested_in_data(void)
{
	struct api_result res;

	CHECK(decode_list("{\"success\":true,\"data\":{\"people\":[{\"id\":"
			  "\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}],\"page_info\":"
			  "{\"next_cursor\":\"n\",\"has_more\":true}}}",
			  &res) == 3);
	CHECK(str_eq(res.next_cursor, "n"));
	CHECK(str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(res.data, 2),
					"id")->valuestring, "c"));
	api_result_release(&res);

	CHECK(decode_list("{\"success\":true,\"data\":{\"interactions\":[{}],"
			  "\"total\":1}}", &res) == 1);
	api_result_release(&res);

	/* Any single array member will do. */
	CHECK(decode_list("{\"data\":{\"records\":[{},{}],\"count\":2}}",
			  &res) == 2);
	api_result_release(&res);
	CHECK(decode_list("{\"data\":{\"things\":[{}],\"count\":1}}",
			  &res) == 1);
	api_result_release(&res);

	/* A bare array with no envelope. */
	CHECK(decode_list("[{\"id\":\"a\"}]", &res) == 1);
	api_result_release(&res);
}

static void test_error_under_error_member(void)
{
	const char *body = "{\"object\":\"error\",\"error\":{\"code\":"
		"\"VALIDATION_ERROR\",\"message\":\"email is not valid\","
		"\"details\":{\"field\":\"email\"}},\"meta\":{}}";
	struct api_error err;
	char buf[700];

	api_decode_error(body, strlen(body), 400, &err);
	CHECK(err.http_status == 400);
	CHECK(str_eq(err.code, "VALIDATION_ERROR"));
	CHECK(str_eq(err.message, "email is not valid"));
	CHECK(str_eq(err.detail, "email"));
	api_error_describe(&err, buf, sizeof(buf));
	CHECK(str_eq(buf, "VALIDATION_ERROR email is not valid (email)"));
}

static void test_error_at_top_level_and_legacy(void)
{
	const char *top = "{\"code\":\"INSUFFICIENT_SCOPE\",\"message\":"
		"\"missing scope\",\"details\":{\"required_scope\":"
		"\"people:write\"}}";
	const char *legacy = "{\"success\":false,\"code\":\"CONFLICT\","
		"\"message\":\"exists\",\"details\":{\"existingId\":\"p9\"}}";
	const char *str = "{\"success\":false,\"error\":\"Invalid API key\"}";
	struct api_error err;

	api_decode_error(top, strlen(top), 403, &err);
	CHECK(str_eq(err.code, "INSUFFICIENT_SCOPE"));
	CHECK(str_eq(err.detail, "people:write"));

	api_decode_error(legacy, strlen(legacy), 409, &err);
	CHECK(str_eq(err.code, "CONFLICT"));
	CHECK(str_eq(err.message, "exists"));
	CHECK(str_eq(err.detail, "p9"));

	api_decode_error(str, strlen(str), 401, &err);
	CHECK(str_eq(err.code, "INVALID_API_KEY"));
	CHECK(str_eq(err.message, "Invalid API key"));
}

static void test_error_body_not_json_still_maps_by_status(void)
{
	const char *html = "<html><body>502 Bad Gateway</body></html>";
	const char *text = "upstream\n  timed out\n";
	struct api_error err;
	char buf[700];

	api_decode_error(html, strlen(html), 502, &err);
	CHECK(str_eq(err.code, "UNAVAILABLE"));
	CHECK(err.message[0] == '\0');
	api_error_describe(&err, buf, sizeof(buf));
	CHECK(str_eq(buf, "UNAVAILABLE (HTTP 502)"));

	api_decode_error(text, strlen(text), 404, &err);
	CHECK(str_eq(err.code, "NOT_FOUND"));
	CHECK(str_eq(err.message, "upstream timed out"));

	api_decode_error(NULL, 0, 418, &err);
	CHECK(str_eq(err.code, "HTTP_418"));
}

static void test_error_detail_list_names_first_field(void)
{
	const char *body = "{\"error\":{\"code\":\"VALIDATION_ERROR\","
		"\"message\":\"bad\",\"details\":[{\"field\":\"phone\"},"
		"{\"field\":\"email\"}]}}";
	struct api_error err;

	api_decode_error(body, strlen(body), 400, &err);
	CHECK(str_eq(err.detail, "phone"));
}

static void check_org(const char *data_text, const char *id,
		      const char *name)
{
	cJSON *data = cJSON_Parse(data_text);
	char *i = NULL, *n = NULL;

	CHECK(data != NULL);
	CHECK(api_decode_org(data, &i, &n) == 0);
	if (!str_eq(i, id) || !str_eq(n, name)) {
		fprintf(stderr, "org from %s: got id '%s' name '%s'\n",
			data_text, i ? i : "(null)", n ? n : "(null)");
		failures++;
	}
	free(i);
	free(n);
	cJSON_Delete(data);
}

static void test_authenticate_name_in_any_known_place(void)
{
	cJSON *empty = cJSON_Parse("{\"ok\":true}");
	char *i, *n;

	check_org("{\"name\":\"Acme\",\"id\":\"org_1\"}", "org_1", "Acme");
	check_org("{\"team_name\":\"Acme\",\"org_id\":\"org_2\"}", "org_2",
		  "Acme");
	check_org("{\"organization\":{\"name\":\"Acme\",\"id\":\"org_3\"}}",
		  "org_3", "Acme");
	check_org("{\"team\":{\"name\":\"Acme\",\"id\":7}}", "7", "Acme");
	check_org("{\"name\":\"Acme\"}", "Acme", "Acme");

	CHECK(api_decode_org(empty, &i, &n) == -EIO);
	CHECK(i == NULL && n == NULL);
	CHECK(api_decode_org(NULL, &i, &n) == -EIO);
	cJSON_Delete(empty);
}

static void test_release_is_safe_on_zeroed_result(void)
{
	struct api_result res = { 0 };

	api_result_release(&res);
	api_result_release(&res);
	api_result_release(NULL);
	CHECK(res.data == NULL);
}

int main(void)
{
	test_status_maps_to_errno_as_api_h_says();
	test_loopback_hosts_are_recognised();
	test_base_url_needs_https_unless_loopback();
	test_retry_after_reads_seconds_unix_time_and_dates();
	test_reset_reads_seconds_and_unix_time();
	test_record_in_current_envelope();
	test_record_in_older_envelope_and_unwrapped();
	test_non_json_success_is_eio();
	test_empty_success_body();
	test_list_with_page_info_beside_data();
	test_has_more_false_ends_the_listing();
	test_no_page_info_is_a_single_page();
	test_page_info_in_meta_with_end_cursor();
	test_list_nested_in_data();
	test_error_under_error_member();
	test_error_at_top_level_and_legacy();
	test_error_body_not_json_still_maps_by_status();
	test_error_detail_list_names_first_field();
	test_authenticate_name_in_any_known_place();
	test_release_is_safe_on_zeroed_result();

	if (failures) {
		fprintf(stderr, "test_api: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_api: all checks passed\n");
	return 0;
}
