/* Unit tests for fs/path.c: what each path inside the mount names. */
#include <string.h>

#include "path.h"

#include "check.h"

static struct fpath parse(const char *path)
{
	struct fpath fp;

	path_parse(path, &fp);
	return fp;
}

static void test_directories(void)
{
	CHECK(parse("/").kind == P_ROOT);
	CHECK(parse("/people").kind == P_COLL);
	CHECK(parse("/companies").coll == COLL_COMPANIES);
	CHECK(parse("/interactions").coll == COLL_INTERACTIONS);
	CHECK(parse("/.klipy").kind == P_META);
	CHECK(parse("/.klipy/rejected").kind == P_REJ);
	CHECK(parse("/.klipy/rejected/people").kind == P_REJ_COLL);
	CHECK(parse("/peoples").kind == P_NONE);
	CHECK(parse("/.klipy/rejected/robots").kind == P_NONE);
}

static void test_record_names_and_scratch_names(void)
{
	struct fpath fp = parse("/people/h7w8y2f1.json");

	CHECK(fp.kind == P_ENTRY && fp.coll == COLL_PEOPLE);
	CHECK(fp.record && !strcmp(fp.stem, "h7w8y2f1"));
	CHECK(!strcmp(fp.name, "h7w8y2f1.json"));
	CHECK(parse("/people/ann@example.com.json").record);
	CHECK(!parse("/people/.h7w8y2f1.json.swp").record);
	CHECK(!parse("/people/4913").record);
	CHECK(!parse("/people/h7w8y2f1.json~").record);
	CHECK(!parse("/people/#h7w8y2f1.json#").record);
	CHECK(!parse("/people/.#h7w8y2f1.json").record);
	CHECK(!parse("/people/.json").record);
	CHECK(!parse("/people/.x.json").record);
	CHECK(parse("/people/sedAb12Cd").kind == P_ENTRY);
}

static void test_meta_files(void)
{
	struct fpath fp = parse("/.klipy/rejected/companies/x.json");

	CHECK(parse("/.klipy/status").kind == P_STATUS);
	CHECK(parse("/.klipy/status/x").kind == P_NONE);
	CHECK(fp.kind == P_REJ_FILE && fp.coll == COLL_COMPANIES);
	CHECK(!strcmp(fp.name, "x.json"));
	CHECK(parse("/.klipy/other").kind == P_NONE);
}

static void test_deep_paths_name_nothing(void)
{
	CHECK(parse("/people/a/b").kind == P_NONE);
	CHECK(parse("/people/a/b/c/d").kind == P_NONE);
	CHECK(parse("/.klipy/rejected/people/x/y").kind == P_NONE);
}

static void test_long_names_are_too_long(void)
{
	char path[600] = "/people/";
	size_t at = strlen(path);

	memset(path + at, 'a', 251);
	strcpy(path + at + 251, ".json");	/* 256 bytes: one too many */
	CHECK(parse(path).kind == P_TOOLONG);
	path[at + 250] = '\0';
	strcat(path, ".json");			/* 255 bytes */
	CHECK(parse(path).kind == P_ENTRY);
	CHECK(parse(path).record);
}

int main(void)
{
	test_directories();
	test_record_names_and_scratch_names();
	test_meta_files();
	test_deep_paths_name_nothing();
	test_long_names_are_too_long();
	if (failures)
		fprintf(stderr, "%d checks failed\n", failures);
	return failures ? 1 : 0;
}
