
/*
 * ngx_zmq: each worker follows the configuration in Redis.
 *
 * Two connections: one SUBSCRIBEs to zmq:events, the other loads
 * snapshots (one EVAL, so a snapshot is consistent) and polls
 * GET zmq:version. A snapshot is loaded at start, after every reconnect of
 * either connection (pub/sub is lossy), on an event newer than what runs,
 * and when the poll sees another version. Loads never overlap; an event
 * during a load asks for one more. A snapshot that does not validate is
 * refused whole: the worker keeps running the last good one.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "zgw_store.h"
#include "ngx_http_zmq_follow.h"
#include "ngx_http_zmq_redis.h"


typedef struct {
    ngx_http_zmq_follow_conf_t    conf;
    ngx_http_zmq_redis_t         *cmd;
    ngx_http_zmq_redis_t         *sub;
    ngx_event_t                   poll;
    ngx_flag_t                    loading;
    ngx_flag_t                    again;
    long long                     version;    /* running */
} ngx_http_zmq_follow_t;


static void ngx_http_zmq_follow_load(ngx_http_zmq_follow_t *f);


static ngx_http_zmq_follow_t  *ngx_http_zmq_follower;


static void
ngx_http_zmq_follow_state(ngx_http_zmq_follow_t *f, ngx_uint_t state,
    const char *error)
{
    ngx_http_zmq_worker_stats_t  *st;

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


ngx_int_t
ngx_http_zmq_cache_write(ngx_str_t *path, zgw_config_t *cfg, ngx_log_t *log)
{
    u_char     tmp[NGX_MAX_PATH], dst[NGX_MAX_PATH];
    json_t    *doc;
    ngx_int_t  rc;

    if (path->len == 0 || path->len + 32 >= NGX_MAX_PATH) {
        return NGX_DECLINED;
    }

    ngx_snprintf(dst, sizeof(dst), "%V%Z", path);
    ngx_snprintf(tmp, sizeof(tmp), "%V.%P.tmp%Z", path, ngx_pid);

    doc = json_pack("{s:I,s:o}", "version", (json_int_t) cfg->version,
                    "config", zgw_config_export(cfg, ZGW_EXPORT_SEALED));
    if (doc == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_OK;

    if (json_dump_file(doc, (char *) tmp, JSON_COMPACT | JSON_SORT_KEYS)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "zmq: cannot write the configuration cache \"%s\"",
                      tmp);
        rc = NGX_ERROR;

    } else if (ngx_rename_file(tmp, dst) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "zmq: cannot rename \"%s\" to \"%s\"", tmp, dst);
        (void) ngx_delete_file(tmp);
        rc = NGX_ERROR;
    }

    json_decref(doc);
    return rc;
}


static void
ngx_http_zmq_follow_snapshot(ngx_http_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    size_t                   i;
    zgw_errors_t             errs;
    zgw_config_t            *cfg;
    ngx_http_zmq_follow_t   *f = data;
    ngx_http_zmq_runtime_t  *rt;

    f->loading = 0;

    if (reply == NULL) {
        ngx_http_zmq_follow_state(f, NGX_HTTP_ZMQ_SRC_STALE,
                                  ngx_http_zmq_redis_error(rd));
        return;
    }

    zgw_errors_init(&errs);

    cfg = zgw_config_new();
    if (cfg == NULL) {
        return;
    }

    if (zgw_store_snapshot_parse(reply, cfg, &errs) != ZGW_OK
        || zgw_config_check_refs(cfg, &errs) != ZGW_OK)
    {
        for (i = 0; i < errs.n; i++) {
            ngx_log_error(NGX_LOG_ERR, f->conf.log, 0,
                          "zmq: configuration version %L refused, keeping "
                          "version %L: %s", cfg->version, f->version,
                          errs.msgs[i]);
        }

        ngx_http_zmq_follow_state(f, NGX_HTTP_ZMQ_SRC_LOADED,
                                  zgw_errors_first(&errs));
        f->version = cfg->version;      /* do not retry the same version */
        goto done;
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

    (void) ngx_http_zmq_cache_write(&f->conf.cache, cfg, f->conf.log);

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

    if (!ngx_http_zmq_redis_connected(f->cmd)) {
        return;                 /* loaded when it connects */
    }

    argc = zgw_store_snapshot_argv(argv);

    if (ngx_http_zmq_redis_command(f->cmd, argc, argv, NULL,
                                   ngx_http_zmq_follow_snapshot, f)
        == NGX_OK)
    {
        f->loading = 1;
    }
}


static void
ngx_http_zmq_follow_version(ngx_http_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    long long               v;
    ngx_http_zmq_follow_t  *f = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        return;
    }

    v = reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10)
                                          : 0;

    if (v != f->version) {
        ngx_http_zmq_follow_load(f);
    }
}


static void
ngx_http_zmq_follow_poll(ngx_event_t *ev)
{
    ngx_http_zmq_follow_t  *f = ev->data;
    const char             *argv[2] = { "GET", ZGW_KEY_VERSION };

    if (ngx_http_zmq_redis_connected(f->cmd) && !f->loading) {
        (void) ngx_http_zmq_redis_command(f->cmd, 2, argv, NULL,
                                          ngx_http_zmq_follow_version, f);
    }

    ngx_add_timer(&f->poll, f->conf.poll);
}


static void
ngx_http_zmq_follow_connected(ngx_http_zmq_redis_t *rd, void *data)
{
    ngx_http_zmq_follow_t  *f = data;
    const char             *argv[2] = { "SUBSCRIBE", ZGW_KEY_EVENTS };

    if (rd == f->sub) {
        (void) ngx_http_zmq_redis_command(rd, 2, argv, NULL, NULL, NULL);
        if (f->conf.stats && f->conf.stats->state == NGX_HTTP_ZMQ_SRC_LOADED) {
            ngx_http_zmq_follow_load(f);   /* events may have been missed */
        }
        return;
    }

    ngx_http_zmq_follow_load(f);
}


static void
ngx_http_zmq_follow_disconnected(ngx_http_zmq_redis_t *rd, void *data)
{
    ngx_http_zmq_follow_t  *f = data;

    if (rd == f->cmd) {
        f->loading = 0;
        ngx_http_zmq_follow_state(f, NGX_HTTP_ZMQ_SRC_STALE,
                                  ngx_http_zmq_redis_error(rd));
    }
}


static void
ngx_http_zmq_follow_event(ngx_http_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    json_t                 *ev;
    long long               v;
    ngx_http_zmq_follow_t  *f = data;

    /* ["message", "zmq:events", "{\"version\":N,...}"] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || ngx_strcmp(reply->element[0]->str, "message") != 0)
    {
        return;
    }

    ev = json_loadb(reply->element[2]->str, reply->element[2]->len, 0, NULL);
    v = json_integer_value(json_object_get(ev, "version"));
    json_decref(ev);

    if (v != f->version) {
        ngx_http_zmq_follow_load(f);
    }
}


ngx_int_t
ngx_http_zmq_follow_start(ngx_http_zmq_follow_conf_t *conf)
{
    ngx_http_zmq_follow_t      *f;
    ngx_http_zmq_redis_conf_t   rc;

    f = ngx_calloc(sizeof(ngx_http_zmq_follow_t), conf->log);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->conf = *conf;
    f->version = ngx_http_zmq_runtime_current()
                 ? ngx_http_zmq_runtime_current()->version : -1;

    ngx_memzero(&rc, sizeof(ngx_http_zmq_redis_conf_t));
    rc.addr = conf->addr;
    rc.password = conf->password;
    rc.db = conf->db;
    rc.timeout = conf->timeout;
    rc.connected = ngx_http_zmq_follow_connected;
    rc.disconnected = ngx_http_zmq_follow_disconnected;
    rc.data = f;
    rc.log = conf->log;

    f->cmd = ngx_http_zmq_redis_create(&rc);

    rc.subscriber = 1;
    rc.push = ngx_http_zmq_follow_event;
    f->sub = ngx_http_zmq_redis_create(&rc);

    if (f->cmd == NULL || f->sub == NULL) {
        return NGX_ERROR;
    }

    f->poll.handler = ngx_http_zmq_follow_poll;
    f->poll.data = f;
    f->poll.log = conf->log;
    f->poll.cancelable = 1;

    ngx_http_zmq_follower = f;

    ngx_http_zmq_redis_start(f->cmd);
    ngx_http_zmq_redis_start(f->sub);
    ngx_add_timer(&f->poll, conf->poll);

    return NGX_OK;
}


void
ngx_http_zmq_follow_stop(void)
{
    ngx_http_zmq_follow_t  *f = ngx_http_zmq_follower;

    if (f == NULL) {
        return;
    }

    if (f->poll.timer_set) {
        ngx_del_timer(&f->poll);
    }

    ngx_http_zmq_redis_destroy(f->cmd);
    ngx_http_zmq_redis_destroy(f->sub);
    ngx_free(f);
    ngx_http_zmq_follower = NULL;
}
