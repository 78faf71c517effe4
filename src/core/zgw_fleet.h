/*
 * ngx_zmq core: the fleet, every gateway and zmqd that follows one store.
 *
 * Each instance reports itself every few seconds, with a time to live:
 *
 *     zmq:fleet:<kind>:<instance>   its entry (JSON), SET with EX ttl
 *     zmq:fleet                     a sorted set of "<kind>:<instance>",
 *                                   scored by when the entry expires
 *
 * so an instance that stops reporting (stopped, killed, cut off from the
 * store) leaves the fleet once its entry expires, and an operator sees,
 * per instance, the configuration version it runs next to the store's.
 * The report script also drops members whose entries expired; reading is
 * one script, read-only, that works on a replica too.
 *
 * Entries are small JSON objects:
 *
 *   {"kind": "gateway"|"zmqd", "instance": "...", "host": "...", "pid": N,
 *    "software": "0.1.0", "version": V, "max_version": V2, "state": "...",
 *    "workers": N, "started": unix-seconds, "reported": unix-seconds,
 *    "interval": seconds}
 *
 * "version" is what the instance runs (a gateway: its slowest worker's),
 * "max_version" its fastest worker's; "reported" is the reporter's clock,
 * so "age" (the store's clock minus it) includes any skew between them.
 */

#ifndef ZGW_FLEET_H
#define ZGW_FLEET_H

#include <jansson.h>


#define ZGW_KEY_FLEET          "zmq:fleet"
#define ZGW_FLEET_INSTANCE_MAX 128          /* bytes of an instance name */
#define ZGW_FLEET_ENTRY_MAX    4096         /* bytes of one entry */
#define ZGW_FLEET_READ_MAX     1000         /* entries one read returns */


struct redisReply;


/*
 * EVAL zgw_fleet_report_lua 0 <kind>:<instance> <entry JSON> <ttl s>
 * Returns the store's time (unix seconds).
 */
extern const char  zgw_fleet_report_lua[];

/*
 * EVAL zgw_fleet_read_lua 0
 * Returns {now, zmq:version, {entry, ...}}: the live entries, at most
 * ZGW_FLEET_READ_MAX.
 */
extern const char  zgw_fleet_read_lua[];


/* 1 when name is a valid instance name: 1-127 of [A-Za-z0-9._:@/-] */
int zgw_fleet_name_ok(const char *name);

/*
 * The entry to report (json_dumps: free() it), or NULL (out of memory).
 * host and state may be NULL.
 */
char *zgw_fleet_entry(const char *kind, const char *instance,
    const char *host, long pid, long long version, long long max_version,
    const char *state, int workers, long long started, int interval);

/*
 * The reply to zgw_fleet_read_lua as a JSON object
 *
 *   {"store_version": V, "time": now, "instances": [entry + "lag" (the
 *    store's version minus the entry's version, 0 when not behind) +
 *    "age" (seconds since it reported), ...]}
 *
 * sorted by kind then instance. Entries that do not parse as such objects
 * are left out (the store is shared: its contents are not trusted); of
 * the others only the fields above are kept, each in its type (a text
 * that is not a short printable string is "?", an integer field that is
 * not an integer is left out). NULL when the reply does not have the
 * script's shape.
 */
json_t *zgw_fleet_parse(const struct redisReply *r);

#endif /* ZGW_FLEET_H */
