/*
 * log: the daemon's only way to say something, on top of fuse_log.
 *
 * Lines are lowercase without a full stop and quote their subject:
 *   cannot patch 'people/h7w8y2f1.json': VALIDATION_ERROR email is not valid
 * Debug lines (one per API request, among others) appear only with -d.
 * Nothing logged may contain the API key.
 */
#ifndef KLIPYFS_LOG_H
#define KLIPYFS_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Turn debug lines on or off (they are off until asked for). */
void log_set_debug(bool on);
bool log_debug_enabled(void);

/*
 * Drop every line for a while: before mounting, main reports a failure
 * itself, in one line.
 */
void log_set_quiet(bool on);

/*
 * Where lines go.  log_open_file opens @path (appended to, mode 0600)
 * while the daemon still has its working directory; log_start, once the
 * daemon runs in the background or foreground for good, sends lines
 * there, else to syslog when in the background (its stderr is gone), else
 * leaves them on stderr.
 */
int log_open_file(const char *path);
void log_start(bool foreground);

void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                        \
	do {                                                                  \
		if (log_debug_enabled())                                      \
			log_msg(LOG_DEBUG, __VA_ARGS__);                      \
	} while (0)

#endif
