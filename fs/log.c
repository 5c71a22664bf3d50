/* log: see include/log.h */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_log.h>

static bool debug_on;
static bool quiet;
static FILE *log_file;		/* --log-file, else NULL */

void log_set_quiet(bool on)
{
	quiet = on;
}

void log_set_debug(bool on)
{
	debug_on = on;
}

bool log_debug_enabled(void)
{
	return debug_on;
}

void log_msg(int level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if ((level >= LOG_DEBUG && !debug_on) || quiet)
		return;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fuse_log((enum fuse_log_level)level, "klipyfs: %s\n", line);
}

/* Lines to the log file start with the time, in UTC, to the second. */
static void to_file(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char stamp[32];
	struct tm tm;
	time_t now = time(NULL);

	(void)level;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ ", &tm);
	fputs(stamp, log_file);
	vfprintf(log_file, fmt, ap);
	fflush(log_file);
}

static void to_syslog(enum fuse_log_level level, const char *fmt, va_list ap)
{
	vsyslog((int)level, fmt, ap);
}

int log_open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	log_file = fdopen(fd, "a");
	if (!log_file) {
		close(fd);
		return -ENOMEM;
	}
	return 0;
}

void log_start(bool foreground)
{
	if (log_file) {
		fuse_set_log_func(to_file);
	} else if (!foreground) {
		openlog("klipyfs", LOG_PID, LOG_DAEMON);
		fuse_set_log_func(to_syslog);
	}
}
