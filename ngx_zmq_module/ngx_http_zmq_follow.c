
/*
 * ngx_zmq: each worker follows the configuration in Redis.
 *
 * Two connections: one SUBSCRIBEs to zmq:events (and PINGs, so that a
 * silent peer is noticed), the other loads snapshots (one EVAL, so a
 * snapshot is consistent) and polls GET zmq:version. A snapshot is loaded
 * at start, after every reconnect of either connection (pub/sub is lossy),
 * on an event for a version not seen yet, and when the poll sees one.
 * Loads never overlap; an event during a load asks for one more.
 *
 * A snapshot is applied when its version is at least the running one. A
 * lower version means the store lost its data (a restart without
 * persistence, FLUSHALL, a failover to an empty replica, an old backup):
 * the worker keeps running what it has, says "regressed" in zmq_status and
 * the log, and goes on following until the store is at its version again
 * ("zmqctl restore" from a cache or an export; "zmqctl wipe" empties it on
 * purpose at a higher version). A snapshot that does not validate is
 * refused whole: the worker keeps running the last good one.
 *
 * Worker 0 alone writes the snapshot cache, on NGINX's thread pool
 * "default", once per version.
 *
 * With redis-sentinel://, both connections ask a sentinel for the master
 * each time they connect (ngx_zmq_redis.c), and a third connection, to
 * the sentinels in turn, SUBSCRIBEs to +switch-master: a failover of our
 * master closes both connections at once, so they ask again, reach the new
 * master and reload the snapshot (as after any reconnect). While no
 * master is known the worker runs its last snapshot ("stale").
 *
 * A sentinel is a peer like any other: +switch-master naming the master
 * both connections are on already is ignored, and after one reconnect on
 * +switch-master the next waits for a hold (1 s, doubling to 8 s while
 * messages keep coming, back to 1 s after a quiet hold): messages during
 * a hold are followed once, when it ends. A flood of +switch-master
 * costs a few reconnects, and a real failover is followed within a hold.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include <jansson.h>

#include "zgw_err.h"
#include "zgw_sentinel.h"
#include "zgw_store.h"
#include "ngx_http_zmq_module.h"
#include "ngx_http_zmq_follow.h"
#include "ngx_zmq_redis.h"


#define NGX_HTTP_ZMQ_PING_MIN         1000
#define NGX_HTTP_ZMQ_SWITCH_HOLD      1000    /* ms between reconnects */
#define NGX_HTTP_ZMQ_SWITCH_HOLD_MAX  8000    /* ... in a flood */


typedef struct ngx_http_zmq_cache_job_s  ngx_http_zmq_cache_job_t;


/* one write of the cache: everything the writing thread touches */
struct ngx_http_zmq_cache_job_s {
#if (NGX_THREADS)
    ngx_thread_task_t             task;
#endif
    long long                     version;
    char                         *text;          /* json_dumps() */
    size_t                        len;
    u_char                        path[NGX_MAX_PATH];
    u_char                        tmp[NGX_MAX_PATH];
    const char                   *failed;        /* NULL: written */
    ngx_err_t                     err;
    ngx_log_t                    *log;
};


struct ngx_http_zmq_follow_s {
    ngx_http_zmq_follow_conf_t    conf;
    ngx_zmq_redis_t              *cmd;
    ngx_zmq_redis_t              *sub;
    ngx_zmq_redis_t              *watch;         /* a sentinel, or NULL */
    ngx_event_t                   poll;

    /* +switch-master: one reconnect per hold */
    ngx_event_t                   hold;
    ngx_msec_t                    hold_time;
    ngx_uint_t                    held;          /* messages in it */
    int                           held_port;     /* the last one's, */
    char                          held_ip[ZGW_SENTINEL_IP_MAX]; /* or "" */
    ngx_uint_t                    ignored;       /* already on it */
    ngx_msec_t                    ignored_said;
    ngx_flag_t                    loading;
    ngx_flag_t                    again;
    ngx_uint_t                    state;
    long long                     version;       /* running */
    long long                     seen;          /* store, last loaded */
    long long                     warned;        /* regressed, logged */

    long long                     cache_version; /* written or queued */
    ngx_flag_t                    cache_busy;    /* a write in a thread */
    ngx_http_zmq_cache_job_t     *cache_next;    /* waits for it */
#if (NGX_THREADS)
    ngx_thread_pool_t            *pool;
#endif
};


static void ngx_http_zmq_follow_state(ngx_http_zmq_follow_t *f,
    ngx_uint_t state, const char *error);
static void ngx_http_zmq_follow_regressed(ngx_http_zmq_follow_t *f,
    long long store);
static void ngx_http_zmq_follow_load(ngx_http_zmq_follow_t *f);
static void ngx_http_zmq_follow_snapshot(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_follow_version(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_follow_poll(ngx_event_t *ev);
static void ngx_http_zmq_follow_connected(ngx_zmq_redis_t *rd,
    void *data);
static void ngx_http_zmq_follow_subscribed(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_follow_disconnected(ngx_zmq_redis_t *rd,
    void *data);
static void ngx_http_zmq_follow_event(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_follow_watching(ngx_zmq_redis_t *rd,
    void *data);
static void ngx_http_zmq_follow_watched(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_follow_switched(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_follow_switch(ngx_http_zmq_follow_t *f);
static void ngx_http_zmq_follow_hold_end(ngx_event_t *ev);

static void ngx_http_zmq_cache_save(ngx_http_zmq_follow_t *f,
    zgw_config_t *cfg);
static void ngx_http_zmq_cache_post(ngx_http_zmq_follow_t *f,
    ngx_http_zmq_cache_job_t *job);
static void ngx_http_zmq_cache_write(void *data, ngx_log_t *log);
static void ngx_http_zmq_cache_report(ngx_http_zmq_cache_job_t *job);
static void ngx_http_zmq_cache_free(ngx_http_zmq_cache_job_t *job);
#if (NGX_THREADS)
static void ngx_http_zmq_cache_done(ngx_event_t *ev);
#endif


#if (NGX_THREADS)
static ngx_str_t  ngx_http_zmq_cache_pool = ngx_string("default");
#endif


ngx_int_t
ngx_http_zmq_follow_init_conf(ngx_conf_t *cf)
{
#if (NGX_THREADS)
    if (ngx_thread_pool_add(cf, &ngx_http_zmq_cache_pool) == NULL) {
        return NGX_ERROR;
    }
#endif

    return NGX_OK;
}


static void
ngx_http_zmq_follow_state(ngx_http_zmq_follow_t *f, ngx_uint_t state,
    const char *error)
{
    ngx_http_zmq_worker_stats_t  *st;

    f->state = state;

    st = f->conf.stats;
    if (st == NULL) {
        return;
    }

    if (st->state != state) {
        st->state = state;
        st->since = ngx_time();
    }

    if (error != NULL) {
        ngx_cpystrn(st->error, (u_char *) error, sizeof(st->error));

    } else if (state == NGX_HTTP_ZMQ_SRC_LOADED) {
        st->error[0] = '\0';
    }
}


static void
ngx_http_zmq_follow_regressed(ngx_http_zmq_follow_t *f, long long store)
{
    u_char  error[192];

    if (f->state != NGX_HTTP_ZMQ_SRC_REGRESSED || f->warned != store) {
        ngx_log_error(NGX_LOG_WARN, f->conf.log, 0,
                      "zmq: the configuration store is at version %L, "
                      "lower than version %L that this worker runs: "
                      "keeping version %L and following on. Redis lost "
                      "its data? Bring it back with \"zmqctl restore\" "
                      "(from a gateway's cache or an export); "
                      "\"zmqctl wipe\" empties it on purpose", store,
                      f->version, f->version);
        f->warned = store;
    }

    ngx_snprintf(error, sizeof(error) - 1,
                 "the store is at version %L, lower than the running "
                 "version %L: kept (zmqctl restore)%Z", store, f->version);

    ngx_http_zmq_follow_state(f, NGX_HTTP_ZMQ_SRC_REGRESSED,
                              (char *) error);
}


static void
ngx_http_zmq_follow_snapshot(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    size_t                   i;
    ngx_flag_t               valid;
    zgw_errors_t             errs;
    zgw_config_t            *cfg;
    ngx_http_zmq_follow_t   *f = data;
    ngx_http_zmq_runtime_t  *rt;

    f->loading = 0;

    if (reply == NULL) {
        ngx_http_zmq_follow_state(f, NGX_HTTP_ZMQ_SRC_STALE,
                                  ngx_zmq_redis_error(rd));
        return;
    }

    zgw_errors_init(&errs);

    cfg = zgw_config_new();
    if (cfg == NULL) {
        return;
    }

    cfg->version = -1;              /* set if the reply has one */

    valid = zgw_store_snapshot_parse(reply, cfg, &errs) == ZGW_OK
            && zgw_config_check_refs(cfg, &errs) == ZGW_OK;

    if (cfg->version >= 0) {
        f->seen = cfg->version;         /* not loaded again for it */

        if (f->conf.stats != NULL) {
            f->conf.stats->store_version = (ngx_atomic_uint_t) cfg->version;
        }

        if (cfg->version < f->version) {
            ngx_http_zmq_follow_regressed(f, cfg->version);
            goto done;
        }
    }

    if (!valid) {
        for (i = 0; i < errs.n; i++) {
            ngx_log_error(NGX_LOG_ERR, f->conf.log, 0,
                          "zmq: configuration version %L refused, keeping "
                          "version %L: %s", cfg->version, f->version,
                          errs.msgs[i]);
        }

        ngx_http_zmq_follow_state(f, NGX_HTTP_ZMQ_SRC_LOADED,
                                  zgw_errors_first(&errs));
        goto done;
    }

    if (f->state == NGX_HTTP_ZMQ_SRC_REGRESSED) {
        ngx_log_error(NGX_LOG_WARN, f->conf.log, 0,
                      "zmq: the configuration store is at version %L again "
                      "(running %L): following it", cfg->version,
                      f->version);
    }

    /*
     * Applied even at the same version: Redis may have been emptied and
     * refilled since. Connections whose objects did not change are kept.
     */

    rt = ngx_http_zmq_runtime_build(cfg, f->conf.key, f->conf.resolved,
                                    f->conf.log, &errs);
    if (rt == NULL) {
        ngx_log_error(NGX_LOG_ERR, f->conf.log, 0,
                      "zmq: configuration version %L not applied: %s",
                      cfg->version, zgw_errors_first(&errs));
        goto done;
    }

    for (i = 0; i < errs.n; i++) {
        ngx_log_error(NGX_LOG_ERR, f->conf.log, 0, "zmq: %s", errs.msgs[i]);
    }

    ngx_http_zmq_runtime_apply(rt, f->conf.stats, f->conf.log);
    f->version = cfg->version;
    ngx_http_zmq_follow_state(f, NGX_HTTP_ZMQ_SRC_LOADED,
                              errs.n ? errs.msgs[0] : NULL);

    ngx_http_zmq_cache_save(f, cfg);

done:

    zgw_errors_free(&errs);
    zgw_config_free(cfg);

    if (f->again) {
        f->again = 0;
        ngx_http_zmq_follow_load(f);
    }
}


static void
ngx_http_zmq_follow_load(ngx_http_zmq_follow_t *f)
{
    int          argc;
    const char  *argv[ZGW_SNAPSHOT_ARGC];

    if (f->loading) {
        f->again = 1;
        return;
    }

    if (!ngx_zmq_redis_connected(f->cmd)) {
        return;                 /* loaded when it connects */
    }

    argc = zgw_store_snapshot_argv(argv);

    if (ngx_zmq_redis_command(f->cmd, argc, argv, NULL,
                              ngx_http_zmq_follow_snapshot, f)
        == NGX_OK)
    {
        f->loading = 1;
    }
}


static void
ngx_http_zmq_follow_version(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    long long               v;
    ngx_http_zmq_follow_t  *f = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        return;
    }

    v = reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10)
                                          : 0;

    if (v != f->seen) {
        ngx_http_zmq_follow_load(f);
    }
}


static void
ngx_http_zmq_follow_poll(ngx_event_t *ev)
{
    ngx_http_zmq_follow_t  *f = ev->data;
    const char             *argv[2] = { "GET", ZGW_KEY_VERSION };

    if (ngx_zmq_redis_connected(f->cmd) && !f->loading) {
        (void) ngx_zmq_redis_command(f->cmd, 2, argv, NULL,
                                     ngx_http_zmq_follow_version, f);
    }

    ngx_add_timer(&f->poll, f->conf.poll);
}


static void
ngx_http_zmq_follow_connected(ngx_zmq_redis_t *rd, void *data)
{
    ngx_http_zmq_follow_t  *f = data;
    const char             *argv[2] = { "SUBSCRIBE", ZGW_KEY_EVENTS };

    if (rd == f->sub) {
        (void) ngx_zmq_redis_command(rd, 2, argv, NULL,
                                     ngx_http_zmq_follow_subscribed, f);

        if (f->state == NGX_HTTP_ZMQ_SRC_LOADED
            || f->state == NGX_HTTP_ZMQ_SRC_REGRESSED)
        {
            ngx_http_zmq_follow_load(f);   /* events may have been missed */
        }

        return;
    }

    ngx_http_zmq_follow_load(f);
}


static void
ngx_http_zmq_follow_subscribed(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    char                    shown[ZGW_SHOW_SIZE];
    ngx_http_zmq_follow_t  *f = data;

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, f->conf.log, 0,
                      "zmq: SUBSCRIBE " ZGW_KEY_EVENTS ": %s",
                      zgw_show(shown, sizeof(shown), reply->str,
                               reply->len));
    }
}


static void
ngx_http_zmq_follow_disconnected(ngx_zmq_redis_t *rd, void *data)
{
    ngx_http_zmq_follow_t  *f = data;

    if (rd == f->cmd) {
        f->loading = 0;
        ngx_http_zmq_follow_state(f, NGX_HTTP_ZMQ_SRC_STALE,
                                  ngx_zmq_redis_error(rd));
    }
}


static void
ngx_http_zmq_follow_event(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    json_t                 *ev;
    long long               v;
    ngx_http_zmq_follow_t  *f = data;

    /* ["message", "zmq:events", "{\"version\":N,...}"] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || ngx_strcmp(reply->element[0]->str, "message") != 0
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    ev = json_loadb(reply->element[2]->str, reply->element[2]->len, 0, NULL);
    v = json_integer_value(json_object_get(ev, "version"));
    json_decref(ev);

    if (v != f->seen) {
        ngx_http_zmq_follow_load(f);
    }
}


/* ------------------------------------------------------------- Sentinel */


static void
ngx_http_zmq_follow_watching(ngx_zmq_redis_t *rd, void *data)
{
    ngx_http_zmq_follow_t  *f = data;
    const char             *argv[2] = { "SUBSCRIBE", ZGW_SENTINEL_CHANNEL };

    (void) ngx_zmq_redis_command(rd, 2, argv, NULL,
                                 ngx_http_zmq_follow_watched, f);
}


static void
ngx_http_zmq_follow_watched(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    char                    shown[ZGW_SHOW_SIZE];
    ngx_http_zmq_follow_t  *f = data;

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, f->conf.log, 0,
                      "zmq: sentinel: SUBSCRIBE " ZGW_SENTINEL_CHANNEL
                      ": %s", zgw_show(shown, sizeof(shown), reply->str,
                                       reply->len));
    }
}


/* ["message", "+switch-master", "<name> <old ip> <old port> <ip> <port>"] */
static void
ngx_http_zmq_follow_switched(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    int                     port;
    char                    ip[ZGW_SENTINEL_IP_MAX], text[ZGW_SHOW_SIZE];
    redisReply             *msg;
    ngx_http_zmq_follow_t  *f = data;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    msg = reply->element[2];
    port = 0;

    if (!zgw_sentinel_switch_is_for(msg->str, msg->len,
                                    (char *) f->conf.master_name.data))
    {
        return;                 /* another master of these sentinels */
    }

    if (zgw_sentinel_switch_target(msg->str, msg->len,
                                   (char *) f->conf.master_name.data, ip,
                                   sizeof(ip), &port)
        != 0)
    {
        ip[0] = '\0';          /* followed, rate-limited like any */
    }

    /* where both connections are already: a repeat, nothing to do */
    if (ip[0] != '\0'
        && ngx_zmq_redis_on_master(f->cmd, ip, port)
        && ngx_zmq_redis_on_master(f->sub, ip, port))
    {
        f->ignored++;

        if (ngx_current_msec - f->ignored_said >= NGX_HTTP_ZMQ_SWITCH_HOLD) {
            ngx_log_error(NGX_LOG_INFO, f->conf.log, 0,
                          "zmq: sentinel: +switch-master %s: the master "
                          "this worker is on already, ignored (%ui such)",
                          zgw_show(text, sizeof(text), msg->str, msg->len),
                          f->ignored);
            f->ignored_said = ngx_current_msec;
        }

        return;
    }

    if (f->hold.timer_set) {
        f->held++;              /* followed when the hold ends */
        f->held_port = port;
        ngx_memcpy(f->held_ip, ip, sizeof(ip));
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, f->conf.log, 0,
                  "zmq: sentinel: +switch-master %s: following the new "
                  "master", zgw_show(text, sizeof(text), msg->str, msg->len));

    ngx_http_zmq_follow_switch(f);
}


/* both connections ask the sentinels again; the next waits for a hold */
static void
ngx_http_zmq_follow_switch(ngx_http_zmq_follow_t *f)
{
    ngx_zmq_redis_reconnect(f->cmd, "the master changed (+switch-master)");
    ngx_zmq_redis_reconnect(f->sub, "the master changed (+switch-master)");

    ngx_add_timer(&f->hold, f->hold_time);
}


static void
ngx_http_zmq_follow_hold_end(ngx_event_t *ev)
{
    ngx_uint_t              held;
    ngx_http_zmq_follow_t  *f = ev->data;

    if (f->held == 0) {
        f->hold_time = NGX_HTTP_ZMQ_SWITCH_HOLD;     /* quiet: prompt again */
        return;
    }

    held = f->held;
    f->held = 0;

    /* the last names where both connections got to meanwhile */
    if (f->held_ip[0] != '\0'
        && ngx_zmq_redis_on_master(f->cmd, f->held_ip, f->held_port)
        && ngx_zmq_redis_on_master(f->sub, f->held_ip, f->held_port))
    {
        ngx_log_error(NGX_LOG_INFO, f->conf.log, 0,
                      "zmq: sentinel: %ui more +switch-master in the last "
                      "%M ms, the last naming the master this worker is "
                      "on: nothing to do", held, f->hold_time);
        f->hold_time = NGX_HTTP_ZMQ_SWITCH_HOLD;
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, f->conf.log, 0,
                  "zmq: sentinel: %ui more +switch-master in the last %M ms: "
                  "following the master again", held, f->hold_time);

    /* messages keep coming: a longer hold after this one */
    f->hold_time = ngx_min(f->hold_time * 2, NGX_HTTP_ZMQ_SWITCH_HOLD_MAX);

    ngx_http_zmq_follow_switch(f);
}


/* ---------------------------------------------------- the snapshot cache */


/*
 * {"version": N, "config": {...}} with sealed secrets, serialized here and
 * written by a thread: the worker only pays for the serialization.
 */
static void
ngx_http_zmq_cache_save(ngx_http_zmq_follow_t *f, zgw_config_t *cfg)
{
    json_t                    *doc;
    ngx_str_t                 *path;
    ngx_http_zmq_cache_job_t  *job;

    path = &f->conf.cache;

    if (path->len == 0 || ngx_worker != 0
        || cfg->version == f->cache_version)
    {
        return;
    }

    if (path->len + 32 >= NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_ERR, f->conf.log, 0,
                      "zmq: the cache path \"%V\" is too long", path);
        return;
    }

    job = ngx_calloc(sizeof(ngx_http_zmq_cache_job_t), f->conf.log);
    if (job == NULL) {
        return;
    }

    doc = json_pack("{s:I,s:o}", "version", (json_int_t) cfg->version,
                    "config", zgw_config_export(cfg, ZGW_EXPORT_SEALED));
    if (doc != NULL) {
        job->text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(doc);
    }

    if (job->text == NULL) {
        ngx_log_error(NGX_LOG_ERR, f->conf.log, 0,
                      "zmq: cannot serialize configuration version %L for "
                      "the cache", cfg->version);
        ngx_free(job);
        return;
    }

    job->len = ngx_strlen(job->text);
    job->version = cfg->version;
    job->log = f->conf.log;
    ngx_snprintf(job->path, sizeof(job->path), "%V%Z", path);
    ngx_snprintf(job->tmp, sizeof(job->tmp), "%V.%P.tmp%Z", path, ngx_pid);

    f->cache_version = cfg->version;

    ngx_http_zmq_cache_post(f, job);
}


static void
ngx_http_zmq_cache_post(ngx_http_zmq_follow_t *f,
    ngx_http_zmq_cache_job_t *job)
{
#if (NGX_THREADS)

    if (f->pool != NULL) {
        if (f->cache_busy) {
            /* only the newest waiting version is worth writing */
            if (f->cache_next != NULL) {
                ngx_http_zmq_cache_free(f->cache_next);
            }
            f->cache_next = job;
            return;
        }

        job->task.ctx = job;
        job->task.handler = ngx_http_zmq_cache_write;
        job->task.event.handler = ngx_http_zmq_cache_done;
        job->task.event.data = job;
        job->task.event.log = f->conf.log;

        if (ngx_thread_task_post(f->pool, &job->task) == NGX_OK) {
            f->cache_busy = 1;
            return;
        }

        /* the pool's queue is full: write it here, once */
    }

#endif

    ngx_http_zmq_cache_write(job, f->conf.log);
    ngx_http_zmq_cache_report(job);
    ngx_http_zmq_cache_free(job);
}


/* in a thread of the pool: plain system calls, no NGINX state */
static void
ngx_http_zmq_cache_write(void *data, ngx_log_t *log)
{
    ngx_http_zmq_cache_job_t *job = data;

    size_t    off;
    ssize_t   n;
    ngx_fd_t  fd;

    fd = ngx_open_file(job->tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        job->err = ngx_errno;
        job->failed = "open";
        return;
    }

    for (off = 0; off < job->len; off += n) {
        n = ngx_write_fd(fd, job->text + off, job->len - off);
        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                n = 0;
                continue;
            }
            job->err = ngx_errno;
            job->failed = "write";
            break;
        }
    }

    /* what the rename makes visible must be on the disk */
    if (job->failed == NULL && fsync(fd) == -1) {
        job->err = ngx_errno;
        job->failed = "fsync";
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR && job->failed == NULL) {
        job->err = ngx_errno;
        job->failed = "close";
    }

    if (job->failed == NULL
        && ngx_rename_file(job->tmp, job->path) == NGX_FILE_ERROR)
    {
        job->err = ngx_errno;
        job->failed = "rename";
    }

    if (job->failed != NULL) {
        (void) ngx_delete_file(job->tmp);
    }
}


static void
ngx_http_zmq_cache_report(ngx_http_zmq_cache_job_t *job)
{
    if (job->failed != NULL) {
        ngx_log_error(NGX_LOG_ERR, job->log, job->err,
                      "zmq: configuration version %L not cached: %s \"%s\" "
                      "failed", job->version, job->failed, job->tmp);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, job->log, 0,
                  "zmq: configuration version %L cached in \"%s\" "
                  "(%uz bytes)", job->version, job->path, job->len);
}


static void
ngx_http_zmq_cache_free(ngx_http_zmq_cache_job_t *job)
{
    free(job->text);                /* jansson's allocator is malloc */
    ngx_free(job);
}


#if (NGX_THREADS)

/* back on the event loop */
static void
ngx_http_zmq_cache_done(ngx_event_t *ev)
{
    ngx_http_zmq_follow_t     *f;
    ngx_http_zmq_cache_job_t  *job, *next;

    job = ev->data;

    ngx_http_zmq_cache_report(job);
    ngx_http_zmq_cache_free(job);

    f = ngx_http_zmq_worker()->follower;
    if (f == NULL) {
        return;
    }

    f->cache_busy = 0;

    next = f->cache_next;
    if (next != NULL) {
        f->cache_next = NULL;
        ngx_http_zmq_cache_post(f, next);
    }
}

#endif


ngx_int_t
ngx_http_zmq_follow_start(ngx_http_zmq_follow_conf_t *conf)
{
    ngx_http_zmq_follow_t      *f;
    ngx_http_zmq_runtime_t     *rt;
    ngx_zmq_redis_conf_t        rc;

    f = ngx_calloc(sizeof(ngx_http_zmq_follow_t), conf->log);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->conf = *conf;
    f->state = NGX_HTTP_ZMQ_SRC_WAITING;
    f->seen = -1;
    f->warned = -1;

    /* what runs now: the disk cache (also what the cache holds), or none */
    rt = ngx_http_zmq_runtime_current();
    f->version = rt ? rt->version : -1;
    f->cache_version = f->version > 0 ? f->version : -1;

#if (NGX_THREADS)
    f->pool = ngx_thread_pool_get((ngx_cycle_t *) ngx_cycle,
                                  &ngx_http_zmq_cache_pool);
#endif

    ngx_memzero(&rc, sizeof(ngx_zmq_redis_conf_t));
    rc.addr = conf->addr;
    rc.username = conf->username;
    rc.password = conf->password;
    rc.db = conf->db;
    rc.tls = conf->tls;
    rc.tls_name = conf->tls_name;
    rc.sentinels = conf->sentinels;
    rc.nsentinels = conf->nsentinels;
    rc.master_name = conf->master_name;
    rc.timeout = conf->timeout;
    rc.connected = ngx_http_zmq_follow_connected;
    rc.disconnected = ngx_http_zmq_follow_disconnected;
    rc.data = f;
    rc.log = conf->log;
    rc.name = "config";

    f->cmd = ngx_zmq_redis_create(&rc);

    /* the subscriber only listens: its PINGs notice a silent peer */
    rc.subscriber = 1;
    rc.push = ngx_http_zmq_follow_event;
    rc.ping = ngx_max(conf->poll, NGX_HTTP_ZMQ_PING_MIN);
    rc.name = "events";
    f->sub = ngx_zmq_redis_create(&rc);

    if (f->cmd == NULL || f->sub == NULL) {
        return NGX_ERROR;
    }

    if (conf->nsentinels) {
        /* the sentinels themselves, in turn, without credentials */
        ngx_memzero(&rc, sizeof(ngx_zmq_redis_conf_t));
        rc.sentinels = conf->sentinels;
        rc.nsentinels = conf->nsentinels;
        rc.master_name = conf->master_name;
        rc.to_sentinel = 1;
        rc.subscriber = 1;
        rc.push = ngx_http_zmq_follow_switched;
        rc.connected = ngx_http_zmq_follow_watching;
        rc.ping = ngx_max(conf->poll, NGX_HTTP_ZMQ_PING_MIN);
        rc.timeout = conf->timeout;
        rc.data = f;
        rc.log = conf->log;
        rc.name = "sentinel";

        f->watch = ngx_zmq_redis_create(&rc);
        if (f->watch == NULL) {
            return NGX_ERROR;
        }
    }

    f->poll.handler = ngx_http_zmq_follow_poll;
    f->poll.data = f;
    f->poll.log = conf->log;
    f->poll.cancelable = 1;

    f->hold.handler = ngx_http_zmq_follow_hold_end;
    f->hold.data = f;
    f->hold.log = conf->log;
    f->hold.cancelable = 1;
    f->hold_time = NGX_HTTP_ZMQ_SWITCH_HOLD;

    ngx_http_zmq_worker()->follower = f;

    ngx_zmq_redis_start(f->cmd);
    ngx_zmq_redis_start(f->sub);

    if (f->watch != NULL) {
        ngx_zmq_redis_start(f->watch);
    }
    ngx_add_timer(&f->poll, conf->poll);

    return NGX_OK;
}


void
ngx_http_zmq_follow_stop(void)
{
    ngx_http_zmq_follow_t  *f = ngx_http_zmq_worker()->follower;

    if (f == NULL) {
        return;
    }

    if (f->poll.timer_set) {
        ngx_del_timer(&f->poll);
    }

    if (f->hold.timer_set) {
        ngx_del_timer(&f->hold);
    }

    /* a write in a thread finishes on its own; its job is not freed */
    if (f->cache_next != NULL) {
        ngx_http_zmq_cache_free(f->cache_next);
    }

    ngx_zmq_redis_destroy(f->cmd);
    ngx_zmq_redis_destroy(f->sub);

    if (f->watch != NULL) {
        ngx_zmq_redis_destroy(f->watch);
    }

    ngx_free(f);
    ngx_http_zmq_worker()->follower = NULL;
}


/* the follower's command connection (the admin API writes through it) */
ngx_zmq_redis_t *
ngx_http_zmq_follow_redis(void)
{
    ngx_http_zmq_follow_t  *f = ngx_http_zmq_worker()->follower;

    return f != NULL ? f->cmd : NULL;
}
