/* path: see include/path.h */
#include "path.h"

#include <string.h>

/* Split "/a/b/c" into its components; -1 when there are more than @max. */
static int split(const char *path, const char **part, size_t *len, int max)
{
	int n = 0;

	while (*path) {
		const char *end;

		while (*path == '/')
			path++;
		if (!*path)
			break;
		if (n == max)
			return -1;
		end = strchrnul(path, '/');
		part[n] = path;
		len[n++] = end - path;
		path = end;
	}
	return n;
}

void path_classify(struct fpath *fp, const char *name)
{
	size_t len = strlen(name);

	fp->name = name;
	fp->record = name[0] != '.' && len > 5 && len - 5 < sizeof(fp->stem) &&
		     !strcmp(name + len - 5, ".json");
	if (fp->record) {
		memcpy(fp->stem, name, len - 5);
		fp->stem[len - 5] = '\0';
	}
}

static bool is(const char *part, size_t len, const char *word)
{
	return len == strlen(word) && !strncmp(part, word, len);
}

/* /.klipy, /.klipy/status, /.klipy/rejected[/<coll>[/<name>]] */
static void parse_meta(const char **part, size_t *len, int n,
		       struct fpath *fp)
{
	int c;

	if (n == 1) {
		fp->kind = P_META;
		return;
	}
	if (is(part[1], len[1], "status")) {
		fp->kind = n == 2 ? P_STATUS : P_NONE;
		return;
	}
	if (!is(part[1], len[1], "rejected"))
		return;
	if (n == 2) {
		fp->kind = P_REJ;
		return;
	}
	c = coll_lookup(part[2], len[2]);
	if (c < 0)
		return;
	fp->coll = c;
	fp->kind = n == 3 ? P_REJ_COLL : P_REJ_FILE;
	if (n == 4)
		fp->name = part[3];
}

void path_parse(const char *path, struct fpath *fp)
{
	const char *part[4];
	size_t len[4];
	int n = split(path, part, len, 4), c;

	memset(fp, 0, sizeof(*fp));
	fp->kind = P_NONE;
	if (n == 0) {
		fp->kind = P_ROOT;
		return;
	}
	if (n < 0)
		return;
	for (c = 0; c < n; c++) {
		if (len[c] > PATH_NAME_MAX) {
			fp->kind = P_TOOLONG;
			return;
		}
	}
	if (is(part[0], len[0], PATH_META_DIR)) {
		parse_meta(part, len, n, fp);
		return;
	}
	c = coll_lookup(part[0], len[0]);
	if (c < 0 || n > 2)
		return;
	fp->coll = c;
	fp->kind = n == 1 ? P_COLL : P_ENTRY;
	if (n == 2)
		path_classify(fp, part[1]);
}
