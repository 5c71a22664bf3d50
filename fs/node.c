/* node: see include/node.h */
#include "node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Files here are records and their scratch copies: keep them bounded. */
#define NODE_MAX_SIZE (64L * 1024 * 1024)

struct node *node_new(enum node_kind kind, const char *path)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->refs = 1;
	n->kind = kind;
	n->mode = 0644;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	if (node_set_str(&n->path, path)) {
		free(n);
		return NULL;
	}
	return n;
}

/*
 * References are taken under the file system's lock but dropped wherever
 * a handler is done with a node, locked or not: the count is atomic.
 */
void node_ref(struct node *n)
{
	__atomic_add_fetch(&n->refs, 1, __ATOMIC_RELAXED);
}

void node_unref(struct node *n)
{
	if (!n || __atomic_sub_fetch(&n->refs, 1, __ATOMIC_ACQ_REL))
		return;
	free(n->path);
	free(n->link);
	free(n->buf);
	free(n->id);
	free(n->base);
	free(n);
}

int node_set_str(char **field, const char *s)
{
	char *copy = NULL;

	if (s && !(copy = strdup(s)))
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

static int reserve(struct node *n, size_t size)
{
	size_t cap;
	char *p;

	if (size > NODE_MAX_SIZE)
		return -EFBIG;
	if (size <= n->cap)
		return 0;
	cap = n->cap ? n->cap : 4096;
	while (cap < size)
		cap *= 2;
	p = realloc(n->buf, cap);
	if (!p)
		return -ENOMEM;
	n->buf = p;
	n->cap = cap;
	return 0;
}

int node_set_text(struct node *n, const char *text, size_t len)
{
	int err = reserve(n, len);

	if (err)
		return err;
	memcpy(n->buf, text, len);
	n->len = len;
	return 0;
}

int node_set_base(struct node *n, const char *text, size_t len)
{
	char *copy = NULL;

	if (text) {
		copy = malloc(len + 1);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, text, len);
		copy[len] = '\0';
	}
	free(n->base);
	n->base = copy;
	n->base_len = text ? len : 0;
	return 0;
}

int node_write(struct node *n, const char *data, size_t size, off_t off)
{
	size_t end = (size_t)off + size;
	int err;

	if (off < 0)
		return -EINVAL;
	err = reserve(n, end);
	if (err)
		return err;
	if ((size_t)off > n->len)
		memset(n->buf + n->len, 0, off - n->len);
	memcpy(n->buf + off, data, size);
	if (end > n->len)
		n->len = end;
	return 0;
}

int node_truncate(struct node *n, off_t size)
{
	int err;

	if (size < 0)
		return -EINVAL;
	err = reserve(n, size);
	if (err)
		return err;
	if ((size_t)size > n->len)
		memset(n->buf + n->len, 0, size - n->len);
	n->len = size;
	return 0;
}

size_t node_read(const struct node *n, char *out, size_t size, off_t off)
{
	if (off < 0 || (size_t)off >= n->len)
		return 0;
	if (size > n->len - off)
		size = n->len - off;
	memcpy(out, n->buf + off, size);
	return size;
}
