/*
 * status: the text of .klipy/status.
 *
 * A snapshot, as JSON, of what a user asks when something looks wrong: which
 * organization, how big the cache is and how often it answered, what the
 * API client did (requests per endpoint, retries, 429s, rate-limit state,
 * reachability), and which saves are pending or were refused.
 */
#ifndef KLIPYFS_STATUS_H
#define KLIPYFS_STATUS_H

#include <stddef.h>

#include "save.h"
#include "store.h"

struct status_source {
	struct store *store;
	struct save *save;
	const char *org_id;
	const char *org_name;
	const char *cache_dir;
};

/* The status text (two-space JSON, final newline); malloc'd. */
char *status_text(const struct status_source *src, size_t *len);

#endif
