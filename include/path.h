/*
 * path: what a path inside the mount names.
 *
 * Pure string work, no state: the root, a collection directory, an entry
 * in one (and whether its name is a record name), or a part of .klipy/.
 */
#ifndef KLIPYFS_PATH_H
#define KLIPYFS_PATH_H

#include <stdbool.h>

#include "store.h"

#define PATH_META_DIR ".klipy"
#define PATH_NAME_MAX 255	/* bytes in one name, as statfs says */

enum path_kind {
	P_ROOT,
	P_COLL,		/* /people */
	P_ENTRY,	/* /people/<name> */
	P_META,		/* /.klipy */
	P_STATUS,	/* /.klipy/status */
	P_REJ,		/* /.klipy/rejected */
	P_REJ_COLL,	/* /.klipy/rejected/people */
	P_REJ_FILE,	/* /.klipy/rejected/people/<name> */
	P_TOOLONG,	/* a component longer than PATH_NAME_MAX */
	P_NONE,		/* nothing the mount has */
};

struct fpath {
	enum path_kind kind;
	enum coll coll;
	const char *name;	/* entries: the last component, inside the path */
	bool record;		/* a record name: <stem>.json, no leading dot */
	char stem[256];		/* record names: the name without .json */
};

/* Classify @path ("/people/x.json"); fp->name points into @path. */
void path_parse(const char *path, struct fpath *fp);

/*
 * Fill fp->name, fp->record and fp->stem for the entry name @name: a
 * record name does not start with '.', ends in ".json" and has a stem.
 */
void path_classify(struct fpath *fp, const char *name);

#endif
