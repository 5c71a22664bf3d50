/*
 * gen: the emulator's records, either generated from a seed or loaded from
 * a JSON document file.
 *
 * Generated data is meant to break careless clients: names in many scripts
 * and with emoji, quotes, backslashes and slashes, newlines and HTML in free
 * text, null fields, empty and long tag arrays, and a few records at the size
 * limits of the API. The same seed and counts always give the same records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu.h"

#define N(a) (sizeof(a) / sizeof(*(a)))

/* 2023-01-01T00:00:00Z; generated records spread over about 2.4 years. */
#define GEN_BASE_MS 1672531200000LL
#define GEN_SPAN_MS 75000000000LL
#define DAY_MS 86400000LL

static const char *const first_names[] = {
	"Anna", "José", "Zoë", "Łukasz", "Søren", "François", "Nguyễn Văn",
	"王", "美咲", "Renée \"Rae\"", "Björn", "Ólafur", "Mohammed", "Priya",
	"Ana María", "Jürgen", "Siobhán", "Дмитрий", "Αλέξανδρος", "محمد",
	"Kai 🚀", "Tom", "Sarah", "Liam", "Emma", "Noah", "Olivia", "Chloé",
	"Back\\slash", "Ünal", "Maëlle", "Sven-Åke",
};

static const char *const last_names[] = {
	"García", "Müller", "O'Brien", "D'Angelo", "Smith", "Johnson",
	"Nakamura", "李", "van der Berg", "Øyelaran", "Kowalski", "Dubois",
	"Ivanov", "Schröder", "Brontë", "MacDonald", "Ng", "AC/DC",
	"\"The Rock\" Johnson", "Zhang 张", "Lefèvre", "Çelik", "Þórsson",
	"佐藤", "Smith-Jones", "de la Cruz", "Ñúñez", "🦄 Unicorn", "Brown",
	"Wilson", "<b>Bold</b>", "Taylor",
};

static const char *const titles[] = {
	"CEO", "CTO", "Head of Growth", "Ingénieure logicielle", "営業部長",
	"VP \"Revenue\"", "Founder & CEO", "Partner", "Angel investor",
	"Product <Manager>", "COO / CFO", "Директор",
};

static const char *const remarks[] = {
	"Met at Web Summit.\nFollow up in Q3.",
	"Prefers \"Bob\" over Robert; notes in C:\\Users\\bob\\notes.txt",
	"<p>Loves <b>HTML</b> &amp; <script>alert('x')</script></p>",
	"Tab\tseparated\tvalues\r\nand a CRLF line",
	"日本語のメモ：来週フォローアップ。",
	"🎉🎉 closed the deal 🎉🎉",
	"",
	"Line one\n\nLine three after a blank line\n",
	"Ünïcödé everywhere: ñ, ß, ø, ł, ğ, ž, œ",
	"JSON-looking {\"not\": \"a field\"} and a trailing backslash \\",
	"Control-ish: \x01 \x1f and a form feed \f",
	"-----BEGIN NOTE-----\n  indented\n\ttabbed\n-----END NOTE-----",
};

static const char *const tag_pool[] = {
	"vip", "investor", "customer", "prospect", "🔥 hot", "café",
	"needs follow-up", "a,b", "with \"quote\"", "東京", "partner",
	"churned", "back\\slash", "",
};

static const char *const company_names[] = {
	"Acme Robotics", "Globex", "Initech", "Umbrella", "Żabka Logistics",
	"Société Générale de Café", "北京科技", "Müller & Söhne",
	"\"Quotes\" Inc", "Back\\slash Labs", "<i>Italic</i> Media", "Nordlys",
	"Rocket 🚀", "O'Reilly Partners", "Ça Va Studio", "Tyrell/Wallace",
	"Stark Industries", "Wayne Enterprises", "Hooli", "Pied Piper",
	"Vandelay Import/Export", "Cyberdyne", "Soylent", "Massive Dynamic",
};

static const char *const company_suffixes[] = {
	"", " GmbH", " Ltd", " Inc.", " SAS", " 株式会社", " AB", " LLC",
};

static const char *const industries[] = {
	"Software", "Fintech", "Biotech", "Logistics", "Retail", "Media",
	"Venture Capital", "Énergie", "製造業",
};

static const char *const sizes[] = {
	"1-10", "11-50", "51-200", "201-500", "501-1000", "1000+",
};

static const char *const descriptions[] = {
	"We build robots.\nAnd sell them.",
	"<p>The <b>best</b> coffee &amp; croissants in town.</p>",
	"Seed-stage fund; tickets from €50k to €500k.",
	"Öko-zertifiziert, \"nachhaltig\", C:\\temp inklusive.",
	"東京とベルリンに拠点。",
	"",
};

static const char *const itypes[] = {
	"DIRECT_MESSAGE", "EMAIL", "MEETING", "MEMO", "BOOKING_CREATED",
	"BOOKING_CANCELLED", "MANUAL", "API_EVENT", "VOICE_NOTE",
};

static const char *const isources[] = {
	"LINKEDIN", "EMAIL", "CALENDAR", "MANUAL", "CALENDAR", "CALENDAR",
	"MANUAL", "API", "MANUAL",
};

static const char *const directions[] = {
	"INBOUND", "OUTBOUND", "HYBRID", "INTERNAL", "EVENT",
};

static const char *const ititles[] = {
	"Intro call with %s", "Re: pricing proposal for %s",
	"Follow-up: \"Q3 plan\" (%s)", "Meeting notes <b>draft</b> — %s",
	"Coffee ☕ with %s at Café Central", "Backslash \\ from %s",
	"Two lines\nabout %s", "%s 👋",
};

static const char *const summaries[] = {
	"<p>Discussed <b>pricing</b>.</p>\n<ul><li>Seats: 10</li>"
	"<li>Budget: €5k</li></ul>",
	"",
	"Plain text summary.\nSecond line.",
	"Email body:\n> quoted reply\n> with \"quotes\" and C:\\path\\file",
	"会議の要約：次のステップを確認。",
	"🎯 Goal reached",
	"<script>alert(\"xss\")</script> & <img src=x onerror=y>",
};

static const char *const sentiments[] = {
	NULL, NULL, NULL, "POSITIVE", "NEUTRAL", "NEGATIVE",
	"MEETING_REQUESTED",
};

static const char *const creators[] = {
	"founder@demo.example", "sales@demo.example", "ops@demo.example",
};

static const char *pick(uint64_t *rng, const char *const *a, size_t n)
{
	return a[rng_below(rng, n)];
}

/* ASCII letters and digits of s, lowercased, at most cap-1 of them. */
static void slug(const char *s, char *out, size_t cap, const char *dflt)
{
	size_t n = 0;

	for (; *s && n + 1 < cap; s++) {
		char c = *s;

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			out[n++] = c;
	}
	out[n] = '\0';
	if (n == 0)
		snprintf(out, cap, "%s", dflt);
}

static void add_str(cJSON *o, const char *name, const char *v)
{
	cJSON_AddItemToObject(o, name, v ? cJSON_CreateString(v)
					 : cJSON_CreateNull());
}

static void add_time(cJSON *o, const char *name, int64_t ms)
{
	char buf[32];

	emu_iso(ms, buf);
	cJSON_AddStringToObject(o, name, buf);
}

/* A string of exactly len ASCII characters that looks like prose. */
static char *long_text(size_t len, const char *unit)
{
	size_t ul = strlen(unit);
	char *s = malloc(len + 1);

	if (!s)
		abort();
	for (size_t i = 0; i < len; i++)
		s[i] = unit[i % ul];
	s[len] = '\0';
	return s;
}

static int64_t gen_ctime(uint64_t *rng, long i, long n)
{
	int64_t step = GEN_SPAN_MS / (n > 0 ? n : 1);

	return GEN_BASE_MS + i * step + (int64_t)rng_below(rng, step / 2 + 1);
}

static int64_t gen_utime(uint64_t *rng, int64_t ctime)
{
	if (rng_below(rng, 10) < 3)
		return ctime;
	return ctime + 1 + (int64_t)rng_below(rng, 90 * DAY_MS);
}

static void gen_company(struct org *o, uint64_t *rng, long i, long n)
{
	cJSON *c = cJSON_CreateObject();
	char id[32], name[256], sl[64], domain[128], url[192];
	int64_t ct = gen_ctime(rng, i, n);
	bool has_domain = i % 9 != 4;

	store_new_id(o, COLL_COMPANIES, id);
	snprintf(name, sizeof(name), "%s%s",
		 company_names[(size_t)i % N(company_names)],
		 pick(rng, company_suffixes, N(company_suffixes)));
	slug(name, sl, 40, "company");
	snprintf(domain, sizeof(domain), "%s-%ld.example", sl, i);
	cJSON_AddStringToObject(c, "id", id);
	cJSON_AddStringToObject(c, "name", name);
	add_str(c, "domain", has_domain ? domain : NULL);
	add_str(c, "industry", rng_below(rng, 5) ? pick(rng, industries,
						     N(industries)) : NULL);
	add_str(c, "size", rng_below(rng, 4) ? pick(rng, sizes, N(sizes))
					       : NULL);
	snprintf(url, sizeof(url), "https://www.%s/", domain);
	add_str(c, "website", has_domain && rng_below(rng, 3) ? url : NULL);
	snprintf(url, sizeof(url), "https://www.linkedin.com/company/%s-%ld",
		 sl, i);
	add_str(c, "linkedinUrl", rng_below(rng, 2) ? url : NULL);
	if (i % 37 == 11) {
		char *d = long_text(5000, "Long company description. ");

		add_str(c, "description", d);
		free(d);
	} else {
		add_str(c, "description", rng_below(rng, 3) ?
			pick(rng, descriptions, N(descriptions)) : NULL);
	}
	add_str(c, "createdBy", pick(rng, creators, N(creators)));
	add_time(c, "creationTime", ct);
	add_time(c, "updatedTime", gen_utime(rng, ct));
	store_append(o, COLL_COMPANIES, id, ct, c,
		     has_domain ? domain : NULL);
}

static cJSON *gen_tags(uint64_t *rng, long i)
{
	cJSON *tags = cJSON_CreateArray();
	long n;

	if (i % 53 == 7) {
		for (int k = 0; k < 80; k++) {
			char t[32];

			snprintf(t, sizeof(t), "tag-%03d", k);
			cJSON_AddItemToArray(tags, cJSON_CreateString(t));
		}
		return tags;
	}
	n = rng_below(rng, 10) < 3 ? 0 : 1 + (long)rng_below(rng, 4);
	for (long k = 0; k < n; k++)
		cJSON_AddItemToArray(tags, cJSON_CreateString(
			tag_pool[(rng_next(rng) + k) % N(tag_pool)]));
	return tags;
}

static void gen_remarks(cJSON *p, uint64_t *rng, long i)
{
	if (i % 250 == 13) {
		char *r = long_text(20000, "A very long remark.\n");

		add_str(p, "remarks", r);
		free(r);
		return;
	}
	add_str(p, "remarks", rng_below(rng, 3) ?
		pick(rng, remarks, N(remarks)) : NULL);
}

/* The person's company id (or NULL) is left in company_of[i]. */
static void gen_person(struct org *o, uint64_t *rng, long i, long n,
		       const char **company_of)
{
	struct coll *cs = &o->c[COLL_COMPANIES];
	cJSON *p = cJSON_CreateObject();
	const char *first, *last, *domain = "mail.example";
	char id[32], email[256], f[32], l[32], buf[128];
	struct rec *company = NULL;
	int64_t ct = gen_ctime(rng, i, n);

	first = (size_t)i < N(first_names) ? first_names[i]
		: pick(rng, first_names, N(first_names));
	last = (size_t)i < N(last_names) ? last_names[N(last_names) - 1 - i]
		: pick(rng, last_names, N(last_names));
	if (cs->n && rng_below(rng, 100) < 85)
		company = cs->v[rng_below(rng, cs->n)];
	if (company) {
		const cJSON *d = cJSON_GetObjectItem(company->json, "domain");

		if (cJSON_IsString(d))
			domain = d->valuestring;
	}
	slug(first, f, sizeof(f), "user");
	slug(last, l, sizeof(l), "x");
	snprintf(email, sizeof(email), "%s.%s.%ld@%s", f, l, i, domain);
	if (i % 11 == 3)
		email[0] -= 'a' - 'A';
	store_new_id(o, COLL_PEOPLE, id);
	cJSON_AddStringToObject(p, "id", id);
	cJSON_AddStringToObject(p, "firstName", first);
	cJSON_AddStringToObject(p, "lastName", last);
	cJSON_AddStringToObject(p, "email", email);
	snprintf(buf, sizeof(buf), "+1 555 01%02d %03d", (int)(i % 100),
		 (int)rng_below(rng, 1000));
	add_str(p, "phone", rng_below(rng, 2) ? buf : NULL);
	add_str(p, "title", rng_below(rng, 4) ? pick(rng, titles, N(titles))
						: NULL);
	snprintf(buf, sizeof(buf), "https://www.linkedin.com/in/%s-%s-%ld",
		 f, l, i);
	add_str(p, "linkedinUrl", rng_below(rng, 2) ? buf : NULL);
	add_str(p, "companyId", company ? company->id : NULL);
	gen_remarks(p, rng, i);
	cJSON_AddItemToObject(p, "tags", gen_tags(rng, i));
	add_str(p, "createdBy", pick(rng, creators, N(creators)));
	add_time(p, "creationTime", ct);
	add_time(p, "updatedTime", gen_utime(rng, ct));
	company_of[i] = company ? company->id : NULL;
	store_append(o, COLL_PEOPLE, id, ct, p, email);
}

static void gen_interaction(struct org *o, uint64_t *rng, long i, long n,
			    const char **company_of)
{
	struct coll *ps = &o->c[COLL_PEOPLE];
	cJSON *it = cJSON_CreateObject();
	cJSON *companies = cJSON_CreateArray();
	cJSON *contacts = cJSON_CreateArray();
	int64_t ct = gen_ctime(rng, i, n);
	size_t t = rng_below(rng, N(itypes));
	const char *who = "someone";
	char id[32], title[512];
	char *text = NULL;

	if (ps->n) {
		size_t k = rng_below(rng, ps->n);
		const cJSON *fn = cJSON_GetObjectItem(ps->v[k]->json,
						      "firstName");

		who = fn->valuestring;
		cJSON_AddItemToArray(contacts,
				     cJSON_CreateString(ps->v[k]->id));
		if (company_of[k])
			cJSON_AddItemToArray(companies,
					     cJSON_CreateString(company_of[k]));
	}
	store_new_id(o, COLL_INTERACTIONS, id);
	cJSON_AddStringToObject(it, "id", id);
	cJSON_AddStringToObject(it, "type", itypes[t]);
	cJSON_AddStringToObject(it, "direction",
				pick(rng, directions, N(directions)));
	if (i % 101 == 17) {
		text = long_text(1000, "Long title ");
		cJSON_AddStringToObject(it, "title", text);
		free(text);
	} else {
		snprintf(title, sizeof(title),
			 ititles[rng_below(rng, N(ititles))], who);
		cJSON_AddStringToObject(it, "title", title);
	}
	if (i % 97 == 5) {
		text = long_text(10000, "<p>Long summary paragraph.</p>\n");
		cJSON_AddStringToObject(it, "summary", text);
		free(text);
	} else {
		add_str(it, "summary", rng_below(rng, 8) ?
			pick(rng, summaries, N(summaries)) : NULL);
	}
	cJSON_AddItemToObject(it, "companies", companies);
	cJSON_AddItemToObject(it, "contacts", contacts);
	add_str(it, "sentiment", pick(rng, sentiments, N(sentiments)));
	add_str(it, "source", isources[t]);
	add_str(it, "createdBy", pick(rng, creators, N(creators)));
	add_time(it, "creationTime", ct);
	add_time(it, "interactionDate",
		 ct - (int64_t)rng_below(rng, 7 * DAY_MS));
	store_append(o, COLL_INTERACTIONS, id, ct, it, NULL);
}

int gen_org(struct org *o, const struct gen_opts *opts)
{
	uint64_t rng = opts->seed ^ emu_hash(o->id, 0x5eed);
	const char **company_of;

	o->rng = rng_next(&rng);
	if (opts->data_file)
		return gen_load_file(o, opts->data_file);
	company_of = calloc(opts->people + 1, sizeof(*company_of));
	if (!company_of)
		abort();
	for (long i = 0; i < opts->companies; i++)
		gen_company(o, &rng, i, opts->companies);
	for (long i = 0; i < opts->people; i++)
		gen_person(o, &rng, i, opts->people, company_of);
	for (long i = 0; i < opts->interactions; i++)
		gen_interaction(o, &rng, i, opts->interactions, company_of);
	free(company_of);
	return 0;
}

static const char *const person_fields[] = {
	"id", "firstName", "lastName", "email", "phone", "title",
	"linkedinUrl", "companyId", "remarks", "tags", "createdBy",
	"creationTime", "updatedTime", NULL,
};

static const char *const company_fields[] = {
	"id", "name", "domain", "industry", "size", "website", "linkedinUrl",
	"description", "createdBy", "creationTime", "updatedTime", NULL,
};

static const char *const interaction_fields[] = {
	"id", "type", "direction", "title", "summary", "companies",
	"contacts", "sentiment", "source", "createdBy", "creationTime",
	"interactionDate", NULL,
};

static const char *const *const record_fields[] = {
	person_fields, company_fields, interaction_fields,
};

static bool is_known(enum coll_kind kind, const char *name)
{
	for (const char *const *f = record_fields[kind]; *f; f++)
		if (strcmp(*f, name) == 0)
			return true;
	return false;
}

static cJSON *field_default(enum coll_kind kind, const char *name)
{
	if (strcmp(name, "tags") == 0 || strcmp(name, "companies") == 0 ||
	    strcmp(name, "contacts") == 0)
		return cJSON_CreateArray();
	if (strcmp(name, "createdBy") == 0)
		return cJSON_CreateString("import");
	(void)kind;
	return cJSON_CreateNull();
}

/*
 * Put a loaded record in the field order of klipy-api.md, filling absent
 * fields with defaults and keeping unknown ones at the end.
 */
static cJSON *normalize(enum coll_kind kind, const cJSON *in, long i,
			int64_t *ct)
{
	cJSON *out = cJSON_CreateObject();
	const cJSON *ctj = cJSON_GetObjectItemCaseSensitive(in,
							    "creationTime");
	const cJSON *it;

	*ct = GEN_BASE_MS + i * 1000;
	if (cJSON_IsString(ctj) && emu_parse_iso(ctj->valuestring, ct) < 0)
		*ct = GEN_BASE_MS + i * 1000;
	for (const char *const *f = record_fields[kind]; *f; f++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, *f);
		char buf[32];

		if (strcmp(*f, "creationTime") == 0 ||
		    (strcmp(*f, "updatedTime") == 0 && !cJSON_IsString(v))) {
			emu_iso(*ct, buf);
			cJSON_AddStringToObject(out, *f, buf);
		} else if (strcmp(*f, "interactionDate") == 0 &&
			   cJSON_IsNumber(v)) {
			emu_iso((int64_t)v->valuedouble, buf);
			cJSON_AddStringToObject(out, *f, buf);
		} else {
			cJSON_AddItemToObject(out, *f, v ? cJSON_Duplicate(v, 1)
					      : field_default(kind, *f));
		}
	}
	cJSON_ArrayForEach(it, in)
		if (it->string && !is_known(kind, it->string))
			cJSON_AddItemToObject(out, it->string,
					      cJSON_Duplicate(it, 1));
	return out;
}

static const char *unique_field(enum coll_kind kind)
{
	return kind == COLL_PEOPLE ? "email"
	       : kind == COLL_COMPANIES ? "domain" : NULL;
}

static bool key_taken(const struct coll *c, const cJSON *kj)
{
	char *k;
	bool taken;

	if (!cJSON_IsString(kj) || !*kj->valuestring)
		return false;
	k = store_norm_key(kj->valuestring);
	taken = htab_get(&c->by_key, k) != NULL;
	free(k);
	return taken;
}

static int load_one(struct org *o, enum coll_kind kind, const cJSON *in,
		    long i, const char *path)
{
	const char *uf = unique_field(kind);
	const cJSON *idj, *kj;
	cJSON *rec;
	char id[32];
	int64_t ct;

	if (!cJSON_IsObject(in)) {
		fprintf(stderr, "klipy-emulator: '%s': %s[%ld] is no object\n",
			path, coll_name(kind), i);
		return -1;
	}
	rec = normalize(kind, in, i, &ct);
	idj = cJSON_GetObjectItemCaseSensitive(rec, "id");
	if (cJSON_IsString(idj) && *idj->valuestring &&
	    strlen(idj->valuestring) < sizeof(id)) {
		snprintf(id, sizeof(id), "%s", idj->valuestring);
	} else {
		store_new_id(o, kind, id);
		cJSON_ReplaceItemInObjectCaseSensitive(rec, "id",
						       cJSON_CreateString(id));
	}
	kj = uf ? cJSON_GetObjectItemCaseSensitive(rec, uf) : NULL;
	if (htab_get(&o->c[kind].by_id, id) || key_taken(&o->c[kind], kj)) {
		fprintf(stderr, "klipy-emulator: '%s': duplicate %s record "
			"'%s'\n", path, coll_name(kind), id);
		cJSON_Delete(rec);
		return -1;
	}
	store_append(o, kind, id, ct, rec,
		     cJSON_IsString(kj) ? kj->valuestring : NULL);
	return 0;
}

int gen_load_file(struct org *o, const char *path)
{
	cJSON *doc = store_read_json(path);
	int ret = -1;

	if (!doc)
		return -1;
	if (!cJSON_IsObject(doc)) {
		fprintf(stderr, "klipy-emulator: '%s' must be an object\n",
			path);
		goto out;
	}
	for (int k = 0; k < COLL_COUNT; k++) {
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc,
								    coll_name(k));
		const cJSON *e;
		long i = 0;

		if (arr && !cJSON_IsArray(arr)) {
			fprintf(stderr, "klipy-emulator: '%s': %s must be an "
				"array\n", path, coll_name(k));
			goto out;
		}
		cJSON_ArrayForEach(e, arr)
			if (load_one(o, k, e, i++, path))
				goto out;
	}
	store_sort(o);
	ret = 0;
out:
	cJSON_Delete(doc);
	return ret;
}
