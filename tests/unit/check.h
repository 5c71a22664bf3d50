/*
 * check: the one assertion the C unit tests share.  A failed CHECK prints
 * where and what, counts the failure and lets the test go on, so one run
 * reports every broken check; main returns non-zero when any failed.
 */
#ifndef KLIPYFS_TEST_CHECK_H
#define KLIPYFS_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: %s: check failed: %s\n",     \
				__FILE__, __LINE__, __func__, #cond);        \
			failures++;                                          \
		}                                                            \
	} while (0)

#endif
