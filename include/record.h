/*
 * record: what a record file looks like, and how two versions differ.
 *
 * Pure functions over cJSON, no I/O.  A record is an opaque JSON object from
 * the server; this module turns it into the text users see (two-space
 * indents, keys in the server's order, UTF-8 unescaped, final newline, the
 * same bytes as Python's json.dumps(rec, indent=2, ensure_ascii=False)),
 * reads its times, and computes the top-level patch between an old and a
 * new version.
 */
#ifndef KLIPYFS_RECORD_H
#define KLIPYFS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Format @rec as file text; malloc'd, NUL-terminated, length in *len. */
char *record_format(const cJSON *rec, size_t *len);

/*
 * Parse file text.  Returns 0 and the object in *out, or -EINVAL when the
 * text is not exactly one JSON object (whitespace around it is fine) in
 * valid UTF-8, or a string in it holds \u0000 (which cJSON cannot keep).
 */
int record_parse(const char *text, size_t len, cJSON **out);

/*
 * True when a string in @text holds \u0000: cJSON would cut the string
 * there, and the part after it would be lost without a word.
 */
bool record_has_escaped_nul(const char *text, size_t len);

/* True when @text is well-formed UTF-8 (no overlongs, no surrogates). */
bool record_utf8_valid(const char *text, size_t len);

/* The record's "id" when it is a non-empty string, else NULL. */
const char *record_id(const cJSON *rec);

/*
 * st_mtime in milliseconds: updatedTime, else creationTime, else 0
 * (ISO-8601, any offset).
 */
int64_t record_mtime(const cJSON *rec);

/*
 * Milliseconds since the epoch of an ISO-8601 time
 * ("2026-04-01T10:00:01.123Z", "...+02:00"); -1 if invalid.
 */
int64_t record_parse_time(const char *iso);

/*
 * The updatedTime of a record file's text as record_format wrote it (a
 * top-level string), copied into @buf; false when there is none.  Cheap:
 * no parsing, for the hot path of every open.
 */
bool record_text_updated(const char *text, size_t len, char *buf,
			 size_t size);

/* The record's updatedTime string, or NULL. */
const char *record_updated(const cJSON *rec);

/* True for the fields no client may write: id, createdBy, creationTime, updatedTime. */
bool record_field_readonly(const char *name);

/*
 * The first read-only field other than @skip (may be NULL) whose value
 * differs between @base and @edited (present in both, or added by the
 * edit), or NULL.  A read-only field the edit dropped is not a change: the
 * server keeps it either way.
 */
const char *record_readonly_change(const cJSON *base, const cJSON *edited,
				   const char *skip);

/* Remove every read-only field from @rec. */
void record_drop_readonly(cJSON *rec);

/*
 * The PATCH body that turns @base into @edited: every writable top-level
 * field that is new or whose value changed (nested values whole), and,
 * with @clear_removed, null for every writable field the edit removed.
 * Returns an empty object when nothing changed, NULL when out of memory.
 */
cJSON *record_diff(const cJSON *base, const cJSON *edited,
		   bool clear_removed);

/* Drop from @patch the fields @current already holds (null: absent too). */
void record_patch_prune(cJSON *patch, const cJSON *current);

/*
 * The first field that both patches set to different values, or NULL: the
 * edits conflict only when they disagree on the same field.
 */
const char *record_patch_conflict(const cJSON *ours, const cJSON *theirs);

#endif
