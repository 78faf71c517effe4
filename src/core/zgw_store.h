/*
 * ngx_zmq core: the configuration store in Redis (blocking client).
 *
 * Layout: zmq:obj:<kind>:<name> holds one object (JSON, secrets sealed),
 * zmq:index:<kind> the set of names, zmq:version a counter, zmq:objver a
 * hash "<kind>:<name>" -> the version at which that object was last
 * written (the admin API's ETag). Writes go
 * through one Lua script, so objects, indexes and the version change
 * atomically; every change is PUBLISHed on zmq:events as
 * {"version":N,"kind":"..","name":"..","op":"put|delete"}.
 *
 * This client blocks (with timeouts): it is for zmqctl, zmqd and tests,
 * never for an NGINX worker. redis:// and rediss:// (TLS) URLs, through
 * zgw_redis_conn.h.
 */

#ifndef ZGW_STORE_H
#define ZGW_STORE_H

#include "zgw_err.h"
#include "zgw_model.h"
#include "zgw_redis_conn.h"
#include "zgw_redis_url.h"


#define ZGW_KEY_VERSION   "zmq:version"
#define ZGW_KEY_EVENTS    "zmq:events"
#define ZGW_KEY_OBJ       "zmq:obj:"
#define ZGW_KEY_INDEX     "zmq:index:"


typedef struct zgw_store_s  zgw_store_t;


/* the Lua scripts, shared with the asynchronous followers */
extern const char  zgw_store_snapshot_lua[];
extern const char  zgw_store_apply_lua[];
extern const char  zgw_store_replace_lua[];


struct redisReply;

/* the command that reads a snapshot: argv needs ZGW_SNAPSHOT_ARGC slots */
#define ZGW_SNAPSHOT_ARGC  (3 + ZGW_KIND_MAX)
int zgw_store_snapshot_argv(const char **argv);

/*
 * Fills an empty cfg from the reply to zgw_store_snapshot_lua (as any
 * client, blocking or not, receives it). Objects that do not validate are
 * left out and reported by key; the return value is then ZGW_ERROR.
 */
int zgw_store_snapshot_parse(const struct redisReply *r, zgw_config_t *cfg,
    zgw_errors_t *errs);

zgw_store_t *zgw_store_connect(const char *url, int timeout_ms,
    zgw_errors_t *errs);
void zgw_store_close(zgw_store_t *st);
/*
 * The connection (AUTH and SELECT done, TLS for rediss://), for a caller's
 * own commands (zgw_redis_command(), zgw_redis_error()).
 */
zgw_redis_conn_t *zgw_store_context(zgw_store_t *st);

/*
 * Loads a consistent snapshot into an empty cfg and sets cfg->version.
 * Objects that do not validate are left out and reported (naming their
 * key); the return value is then ZGW_ERROR but cfg holds every good object.
 */
int zgw_store_load(zgw_store_t *st, zgw_config_t *cfg, zgw_errors_t *errs);
int zgw_store_version(zgw_store_t *st, long long *version,
    zgw_errors_t *errs);

/*
 * Writes the difference between prev (as loaded, prev->version is the
 * expected version) and next in one atomic step. Fails without writing
 * anything if the stored version moved since prev was loaded. With dry_run
 * it only counts the changes.
 */
int zgw_store_apply(zgw_store_t *st, const zgw_config_t *prev,
    const zgw_config_t *next, int dry_run, long long *version,
    size_t *changes, zgw_errors_t *errs);

/*
 * The command zgw_store_apply() sends (EVAL of zgw_store_apply_lua), for a
 * client that sends it itself (an NGINX worker): argv points into prev and
 * next, which must outlive it. changes counts the objects written; with
 * none there is nothing to send. Free it with zgw_store_argv_free().
 */
typedef struct {
    size_t        n;
    size_t        cap;
    const char  **argv;
    char        **owned;
    size_t        nowned;
} zgw_store_argv_t;

int zgw_store_apply_argv(const zgw_config_t *prev, const zgw_config_t *next,
    zgw_store_argv_t *a, size_t *changes);
void zgw_store_argv_free(zgw_store_argv_t *a);
/* for the store's own commands: one argument; (op, kind, name, value) per
 * object that differs between prev and next, counted in *n */
int zgw_store_argv_push(zgw_store_argv_t *a, const char *s, int owned);
int zgw_store_diff(zgw_store_argv_t *a, const zgw_config_t *prev,
    const zgw_config_t *next, size_t *n);

/*
 * Makes the store hold next exactly (the objects as they are: sealed
 * secrets stay sealed) in one atomic step that also sets the version to
 * the larger of the current version + 1 and floor, whatever changed, and
 * PUBLISHes one event {"version":N,"op":op}. Followers apply a snapshot
 * only at a version at least theirs: restoring a lost store needs a
 * version above what they run. Fails without writing anything if the
 * stored version moved since prev was loaded.
 */
int zgw_store_replace(zgw_store_t *st, const zgw_config_t *prev,
    const zgw_config_t *next, long long floor, const char *op,
    long long *version, size_t *changes, zgw_errors_t *errs);

#endif /* ZGW_STORE_H */
