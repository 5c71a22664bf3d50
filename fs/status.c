/* status: see include/status.h */
#include "status.h"

#include "record.h"

static cJSON *cache_section(const struct status_source *src)
{
	cJSON *o = cJSON_CreateObject();
	uint64_t bytes = 0, records = 0, hits, misses;

	cache_usage(store_cache(src->store), &bytes, &records);
	store_counters(src->store, &hits, &misses);
	cJSON_AddStringToObject(o, "dir", src->cache_dir);
	cJSON_AddNumberToObject(o, "bytes", (double)bytes);
	cJSON_AddNumberToObject(o, "records", (double)records);
	cJSON_AddNumberToObject(o, "hits", (double)hits);
	cJSON_AddNumberToObject(o, "misses", (double)misses);
	cJSON_AddNumberToObject(o, "ttl_seconds",
				(double)store_ttl_ms(src->store) / 1000);
	return o;
}

char *status_text(const struct status_source *src, size_t *len)
{
	cJSON *o = cJSON_CreateObject(), *org;
	char *text;

	org = cJSON_AddObjectToObject(o, "organization");
	cJSON_AddStringToObject(org, "id", src->org_id);
	cJSON_AddStringToObject(org, "name", src->org_name);
	cJSON_AddItemToObject(o, "cache", cache_section(src));
	cJSON_AddItemToObject(o, "api", api_stats(store_api(src->store)));
	cJSON_AddItemToObject(o, "pending", save_pending_json(src->save));
	cJSON_AddItemToObject(o, "rejected", save_rejected_json(src->save));
	text = record_format(o, len);
	cJSON_Delete(o);
	return text;
}
