/*
 * ops: the FUSE operations, the file-system view of a Klipy organization.
 *
 * Owns the name space (which path is a record, a scratch file, a draft, an
 * alias or part of .klipy/), the table of in-memory nodes, open file
 * handles, and the translation of editors' system-call sequences into
 * saves.  Everything it asks of the server goes through store and save.
 */
#ifndef KLIPYFS_OPS_H
#define KLIPYFS_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse3/fuse.h>

#include "save.h"
#include "store.h"

struct fs_config {
	uid_t uid;
	gid_t gid;
	double ttl_s;		/* kernel entry and attribute timeouts */
	int grace_s;		/* unmount: time to deliver pending saves */
	const char *org_id;
	const char *org_name;
	const char *cache_dir;
};

struct fs;

/* The mount's state; starts delivering queued saves at once. */
int fs_new(struct store *store, const struct fs_config *cfg, struct fs **out);

/* Stop (delivering what it can within the grace period) and free. */
void fs_free(struct fs *fs);

/* The operations table; pass the struct fs as fuse private data. */
const struct fuse_operations *fs_operations(void);

#endif
