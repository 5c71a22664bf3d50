/* log: see include/log.h */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_log.h>

static bool debug_on;
static bool quiet;

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
