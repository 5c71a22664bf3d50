/*
 * node: a file that lives in the daemon's memory.
 *
 * Scratch files (swap files, backups, temporaries), symlinks such as
 * emacs's lock, drafts of new records, and records being written all keep
 * their bytes in a node until they are saved.  A node also marks a record
 * name renamed away (hidden) or a name that stands for a record created
 * through it (alias).  Nodes are reference counted; their fields are
 * guarded by the owner of the table that holds them.
 */
#ifndef KLIPYFS_NODE_H
#define KLIPYFS_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

enum node_kind {
	NODE_FILE,	/* bytes in buf */
	NODE_SYMLINK,	/* target in link */
	NODE_HIDDEN,	/* record @id renamed away: the name shows nothing */
	NODE_ALIAS,	/* the name shows record @id */
};

struct node {
	unsigned refs;		/* atomic: see node_unref */
	enum node_kind kind;
	char *path;		/* where the node is in the table */
	char *link;		/* symlink target */

	char *buf;
	size_t len, cap;
	mode_t mode;
	struct timespec mtime;
	unsigned writers;	/* open handles that may write */
	bool dirty;		/* written since the last save */

	bool scratch;		/* never saved to the server */
	bool draft;		/* a new record nothing was sent for yet */
	char *id;		/* record this name saves to, NULL: create */
	char *base;		/* record text the edit started from */
	size_t base_len;
	int error;		/* the last save's refusal, not yet reported */
	bool deleting;		/* hidden: its DELETE is waiting to go out */
};

/* A new node with one reference, or NULL. */
struct node *node_new(enum node_kind kind, const char *path);

void node_ref(struct node *n);
void node_unref(struct node *n);

/* Replace a string field (path, link, id) with a copy of @s (may be NULL). */
int node_set_str(char **field, const char *s);

/* Replace the content with @len bytes of @text. */
int node_set_text(struct node *n, const char *text, size_t len);

/* Remember @text as the version an edit starts from. */
int node_set_base(struct node *n, const char *text, size_t len);

/* POSIX write and truncate on the content; 0 or -errno. */
int node_write(struct node *n, const char *data, size_t size, off_t off);
int node_truncate(struct node *n, off_t size);

/* Copy up to @size bytes at @off into @out; returns the count. */
size_t node_read(const struct node *n, char *out, size_t size, off_t off);

#endif
