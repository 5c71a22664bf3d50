/*
 * klipy-emulator: a stand-in for the Klipy REST API v1 (klipy-api.md) for
 * tests, benchmarks and demos. See README.md beside this file.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "emu.h"

static const char usage[] =
"usage: klipy-emulator [options]\n"
"\n"
"Serve the Klipy API v1 under http://ADDR:PORT/api/v1 from generated or\n"
"loaded records. The first line on stdout is 'listening on http://ADDR:PORT'.\n"
"\n"
"  --port N             port to listen on (default 8080, 0 picks a free one)\n"
"  --bind ADDR          address to bind (default 127.0.0.1)\n"
"  --people N           people per organization (default 200)\n"
"  --companies N        companies per organization (default 40)\n"
"  --interactions N     interactions per organization (default 600)\n"
"  --seed S             seed of the generated data (default 1)\n"
"  --data FILE          load records from FILE instead of generating them:\n"
"                       {\"people\": [...], \"companies\": [...],\n"
"                        \"interactions\": [...]}\n"
"  --keys FILE          API keys, a JSON array of {\"key\", \"scopes\",\n"
"                       \"org\", \"orgName\", \"expired\", \"revoked\"}\n"
"                       (default: one key klipy_api_demo, scope ALL,\n"
"                       in org_demo)\n"
"  --rate-limit N       requests per minute per key (default 200, 0: off)\n"
"  --org-rate-limit N   requests per minute per organization (default 1000,\n"
"                       0: off)\n"
"  --latency-ms N       delay every /api/v1 answer by N ms (default 0)\n"
"  --fail-rate P        answer this fraction of /api/v1 requests with 503\n"
"  --fail-status N      status used by --fail-rate (default 503)\n"
"  --legacy-envelope    answer in the older {\"success\": true, ...} shape\n"
"  --log-size N         requests kept in the request log (default 20000)\n"
"  -v, --verbose        one line per request on stderr\n"
"  -h, --help           this text\n";

enum {
	OPT_PORT = 256, OPT_BIND, OPT_PEOPLE, OPT_COMPANIES, OPT_INTERACTIONS,
	OPT_SEED, OPT_DATA, OPT_KEYS, OPT_RATE, OPT_ORG_RATE, OPT_LATENCY,
	OPT_FAIL_RATE, OPT_FAIL_STATUS, OPT_LEGACY, OPT_LOG_SIZE,
};

static const struct option options[] = {
	{ "port", required_argument, NULL, OPT_PORT },
	{ "bind", required_argument, NULL, OPT_BIND },
	{ "people", required_argument, NULL, OPT_PEOPLE },
	{ "companies", required_argument, NULL, OPT_COMPANIES },
	{ "interactions", required_argument, NULL, OPT_INTERACTIONS },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "data", required_argument, NULL, OPT_DATA },
	{ "keys", required_argument, NULL, OPT_KEYS },
	{ "rate-limit", required_argument, NULL, OPT_RATE },
	{ "org-rate-limit", required_argument, NULL, OPT_ORG_RATE },
	{ "latency-ms", required_argument, NULL, OPT_LATENCY },
	{ "fail-rate", required_argument, NULL, OPT_FAIL_RATE },
	{ "fail-status", required_argument, NULL, OPT_FAIL_STATUS },
	{ "legacy-envelope", no_argument, NULL, OPT_LEGACY },
	{ "log-size", required_argument, NULL, OPT_LOG_SIZE },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct cli {
	int port;
	const char *bind;
	const char *keys;
	struct gen_opts gen;
};

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_option(int c, const char *arg, struct cli *cli)
{
	long v = 0;
	char *end;

	switch (c) {
	case OPT_BIND:
		cli->bind = arg;
		return 0;
	case OPT_DATA:
		cli->gen.data_file = arg;
		return 0;
	case OPT_KEYS:
		cli->keys = arg;
		return 0;
	case OPT_LEGACY:
		emu_cfg.legacy = true;
		return 0;
	case 'v':
		emu_cfg.verbose = true;
		return 0;
	case OPT_SEED:
		errno = 0;
		cli->gen.seed = strtoull(arg, &end, 0);
		return errno || end == arg || *end ? -1 : 0;
	case OPT_FAIL_RATE:
		errno = 0;
		emu_cfg.fail_rate = strtod(arg, &end);
		return errno || end == arg || *end || emu_cfg.fail_rate < 0 ||
		       emu_cfg.fail_rate > 1 ? -1 : 0;
	}
	if (parse_long(arg, 0, 1000000000L, &v) < 0)
		return -1;
	switch (c) {
	case OPT_PORT:
		if (v > 65535)
			return -1;
		cli->port = (int)v;
		break;
	case OPT_PEOPLE: cli->gen.people = v; break;
	case OPT_COMPANIES: cli->gen.companies = v; break;
	case OPT_INTERACTIONS: cli->gen.interactions = v; break;
	case OPT_RATE: emu_cfg.rate_limit = v; break;
	case OPT_ORG_RATE: emu_cfg.org_rate_limit = v; break;
	case OPT_LATENCY: emu_cfg.latency_ms = v; break;
	case OPT_LOG_SIZE: emu_cfg.log_size = v; break;
	case OPT_FAIL_STATUS:
		if (v < 500 || v > 599)
			return -1;
		emu_cfg.fail_status = (int)v;
		break;
	default:
		return -1;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct cli *cli)
{
	int c;

	while ((c = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage, stdout);
			exit(0);
		}
		if (c == '?')
			return -1;
		if (parse_option(c, optarg, cli) < 0) {
			fprintf(stderr, "klipy-emulator: bad value '%s' for "
				"--%s\n", optarg ? optarg : "",
				options[c - OPT_PORT].name);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "klipy-emulator: unexpected '%s'\n",
			argv[optind]);
		return -1;
	}
	return 0;
}

static int setup_store(const struct cli *cli)
{
	if (cli->keys) {
		if (store_load_keys(cli->keys) < 0)
			return -1;
	} else {
		store_default_key();
	}
	for (struct org *o = store.orgs; o; o = o->next)
		if (gen_org(o, &cli->gen) < 0)
			return -1;
	api_cursor_secret = cli->gen.seed * 0x2545f4914f6cdd1dULL + 0x6b6c;
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = {
		.port = 8080,
		.bind = "127.0.0.1",
		.gen = { .people = 200, .companies = 40, .interactions = 600,
			 .seed = 1 },
	};
	struct MHD_Daemon *d;
	sigset_t set;
	int sig;

	if (parse_args(argc, argv, &cli) < 0) {
		fputs(usage, stderr);
		return 2;
	}
	emu_cfg.seed = cli.gen.seed;
	if (setup_store(&cli) < 0)
		return 1;

	/* every thread inherits the mask; main alone waits for the signal */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	d = http_start(cli.bind, &cli.port);
	if (!d)
		return 1;
	printf("listening on http://%s%s%s:%d\n",
	       strchr(cli.bind, ':') ? "[" : "", cli.bind,
	       strchr(cli.bind, ':') ? "]" : "", cli.port);
	fflush(stdout);

	while (sigwait(&set, &sig) != 0)
		;
	http_stop(d);
	store_free();
	return 0;
}
