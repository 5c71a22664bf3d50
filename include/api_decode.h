/*
 * api_decode: the pure half of the API client.
 *
 * Which base URLs may carry the key, what an HTTP status means as an errno,
 * how to read the rate-limit headers, and how to take apart every answer
 * shape the service is known to use (see "Tolerance" in klipy-api.md).
 * Nothing here does I/O or keeps state, so all of it is unit-tested without
 * a server; fs/api.c owns the transport and calls these.
 */
#ifndef KLIPYFS_API_DECODE_H
#define KLIPYFS_API_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"

/*
 * The errno for an HTTP status, as listed in api.h: 0 for 2xx, -EAGAIN for
 * 429 and 5xx, -EIO for anything that is neither success nor a 4xx/5xx.
 */
int api_status_errno(int status);

/* True for localhost, 127.0.0.0/8 and ::1 (brackets allowed). */
bool api_host_is_loopback(const char *host);

/*
 * 0 when @url may carry the key: https:// to any host, or http:// to a
 * loopback host.  Else -EINVAL, with @why (if given) saying what is wrong.
 */
int api_check_base_url(const char *url, char *why, size_t why_size);

/*
 * Milliseconds to wait for a Retry-After value given at Unix time @now:
 * seconds from now (fractions allowed), a Unix time when the number is
 * above 10^9, or an HTTP date.  Never negative; -1 when unreadable.
 */
long api_parse_retry_after(const char *value, int64_t now);

/*
 * The Unix time (seconds) an X-RateLimit-Reset value names: seconds from
 * @now, or a Unix time when the number is above 10^9.  -1 when unreadable.
 */
int64_t api_parse_reset(const char *value, int64_t now);

/*
 * Take apart a 2xx body into @res: data (an array when @list, even when the
 * server nested it in an object) and next_cursor (NULL on the last page).
 * An empty body gives data NULL (or an empty array for lists).  Returns 0,
 * -EIO when the body is not JSON or not a shape we know, or -ENOMEM.
 */
int api_decode_success(const char *body, size_t len, bool list,
		       struct api_result *res);

/*
 * Fill @err from an error body of any known shape.  A body that is not JSON
 * still gives a code named after @status, so every refusal can be described.
 */
void api_decode_error(const char *body, size_t len, int status,
		      struct api_error *err);

/*
 * The organization in an authenticate answer's data: *@name from name,
 * team_name, organization.name or team.name; *@id from id, organization.id,
 * team.id or org_id, else a copy of the name.  Both malloc'd.  Returns 0,
 * -EIO when neither is present, or -ENOMEM.
 */
int api_decode_org(const cJSON *data, char **id, char **name);

#endif
