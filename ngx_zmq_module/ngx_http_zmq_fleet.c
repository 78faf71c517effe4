
/*
 * ngx_zmq: the fleet (see zgw_fleet.h).
 *
 * Every zmq_fleet_interval, worker 0 reports this gateway (its instance
 * name, host, master PID, the slowest and fastest worker's configuration
 * version, the source's state) with a time to live of three intervals,
 * and every worker reads the whole fleet back for zmq_status. Both go
 * over the follower's command connection, so they cost one EVAL each per
 * interval and nothing while Redis is away: a gateway that cannot reach
 * the store leaves the fleet when its entry expires, which is what an
 * operator should see.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "zgw_err.h"
#include "zgw_fleet.h"
#include "ngx_http_zmq_module.h"
#include "ngx_http_zmq_fleet.h"
#include "ngx_http_zmq_follow.h"
#include "ngx_zmq_redis.h"


#define NGX_HTTP_ZMQ_FLEET_FIRST  300     /* ms: the first report */


typedef struct {
    ngx_event_t                   timer;
    json_t                       *doc;         /* the last read */
    ngx_flag_t                    reporting;
    ngx_flag_t                    reading;
    ngx_flag_t                    running;
    ngx_flag_t                    warned;
    char                          id[ZGW_FLEET_INSTANCE_MAX + 16];
    char                          instance[ZGW_FLEET_INSTANCE_MAX];
    char                          ttl[16];
    time_t                        started;
    ngx_pid_t                     master;
    ngx_http_zmq_main_conf_t     *zmcf;
} ngx_http_zmq_fleet_t;


static void ngx_http_zmq_fleet_tick(ngx_event_t *ev);
static void ngx_http_zmq_fleet_report(ngx_http_zmq_fleet_t *fl,
    ngx_zmq_redis_t *rd);
static void ngx_http_zmq_fleet_reported(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_fleet_read(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data);


static ngx_http_zmq_fleet_t  ngx_http_zmq_fleet;


/* zmq_instance NAME */
char *
ngx_http_zmq_fleet_instance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    char       name[ZGW_FLEET_INSTANCE_MAX];
    ngx_str_t *value;

    if (zmcf->instance.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len >= sizeof(name)) {
        return "must be 1-127 characters";
    }

    ngx_memcpy(name, value[1].data, value[1].len);
    name[value[1].len] = '\0';

    if (!zgw_fleet_name_ok(name)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_instance \"%V\": "
                           "only letters, digits and . _ : @ / - are "
                           "allowed", &value[1]);
        return NGX_CONF_ERROR;
    }

    zmcf->instance = value[1];
    return NGX_CONF_OK;
}


void
ngx_http_zmq_fleet_start(ngx_cycle_t *cycle)
{
    size_t                     n;
    ngx_core_conf_t           *ccf;
    ngx_http_zmq_fleet_t      *fl;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_zmq_module);
    fl = &ngx_http_zmq_fleet;

    if (zmcf == NULL || zmcf->fleet_interval == 0) {
        return;
    }

    ngx_memzero(fl, sizeof(ngx_http_zmq_fleet_t));
    fl->zmcf = zmcf;
    fl->started = ngx_time();

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);
    fl->master = (ccf != NULL && ccf->master) ? getppid() : ngx_pid;

    if (zmcf->instance.len) {
        ngx_memcpy(fl->instance, zmcf->instance.data, zmcf->instance.len);
        fl->instance[zmcf->instance.len] = '\0';

    } else {
        /* the host name and the master's PID: unique, not stable */
        n = ngx_min(cycle->hostname.len, 100);
        ngx_snprintf((u_char *) fl->instance, sizeof(fl->instance) - 1,
                     "%*s/%P%Z", n, cycle->hostname.data, fl->master);

        if (!zgw_fleet_name_ok(fl->instance)) {
            ngx_snprintf((u_char *) fl->instance, sizeof(fl->instance) - 1,
                         "gateway/%P%Z", fl->master);
        }
    }

    ngx_snprintf((u_char *) fl->id, sizeof(fl->id) - 1, "gateway:%s%Z",
                 fl->instance);
    ngx_snprintf((u_char *) fl->ttl, sizeof(fl->ttl) - 1, "%M%Z",
                 ngx_max(3, 3 * ((zmcf->fleet_interval + 999) / 1000)));

    fl->timer.handler = ngx_http_zmq_fleet_tick;
    fl->timer.data = fl;
    fl->timer.log = cycle->log;
    fl->timer.cancelable = 1;
    fl->running = 1;

    ngx_add_timer(&fl->timer, NGX_HTTP_ZMQ_FLEET_FIRST);
}


void
ngx_http_zmq_fleet_stop(void)
{
    ngx_http_zmq_fleet_t  *fl = &ngx_http_zmq_fleet;

    fl->running = 0;

    if (fl->timer.timer_set) {
        ngx_del_timer(&fl->timer);
    }

    if (fl->doc != NULL) {
        json_decref(fl->doc);
        fl->doc = NULL;
    }
}


json_t *
ngx_http_zmq_fleet_doc(void)
{
    return ngx_http_zmq_fleet.doc ? json_incref(ngx_http_zmq_fleet.doc)
                                  : NULL;
}


static void
ngx_http_zmq_fleet_tick(ngx_event_t *ev)
{
    ngx_zmq_redis_t       *rd;
    ngx_http_zmq_fleet_t  *fl = ev->data;
    const char            *argv[3] = { "EVAL", zgw_fleet_read_lua, "0" };

    if (!fl->running) {
        return;
    }

    rd = ngx_http_zmq_follow_redis();

    if (rd != NULL && ngx_zmq_redis_connected(rd)) {
        if (ngx_worker == 0 && !fl->reporting) {
            ngx_http_zmq_fleet_report(fl, rd);
        }

        if (!fl->reading
            && ngx_zmq_redis_command(rd, 3, argv, NULL,
                                     ngx_http_zmq_fleet_read, fl)
               == NGX_OK)
        {
            fl->reading = 1;
        }
    }

    ngx_add_timer(&fl->timer, fl->zmcf->fleet_interval);
}


static void
ngx_http_zmq_fleet_report(ngx_http_zmq_fleet_t *fl, ngx_zmq_redis_t *rd)
{
    char                         *entry;
    char                          host[128];
    long long                     lo, hi, v;
    ngx_uint_t                    i, n;
    const char                   *argv[6];
    ngx_http_zmq_main_conf_t     *zmcf;
    ngx_http_zmq_worker_stats_t  *ws;

    zmcf = fl->zmcf;
    lo = -1;
    hi = -1;
    n = 0;

    /* every worker's version, from the shared zone */
    for (i = 0; zmcf->stats != NULL && i < zmcf->slots; i++) {
        ws = &zmcf->stats[i];
        if (ws->pid == 0) {
            continue;
        }
        v = (long long) ws->version;
        lo = (lo < 0 || v < lo) ? v : lo;
        hi = v > hi ? v : hi;
        n++;
    }

    ngx_snprintf((u_char *) host, sizeof(host) - 1, "%*s%Z",
                 ngx_min(ngx_cycle->hostname.len, sizeof(host) - 2),
                 ngx_cycle->hostname.data);

    entry = zgw_fleet_entry("gateway", fl->instance, host,
                            (long) fl->master, lo < 0 ? 0 : lo,
                            hi < 0 ? 0 : hi,
                            ngx_http_zmq_source_state(
                                zmcf->stats && ngx_worker < zmcf->slots
                                ? zmcf->stats[ngx_worker].state : 0),
                            (int) n, (long long) fl->started,
                            (int) (zmcf->fleet_interval / 1000));
    if (entry == NULL) {
        return;
    }

    argv[0] = "EVAL";
    argv[1] = zgw_fleet_report_lua;
    argv[2] = "0";
    argv[3] = fl->id;
    argv[4] = entry;
    argv[5] = fl->ttl;

    if (ngx_zmq_redis_command(rd, 6, argv, NULL,
                              ngx_http_zmq_fleet_reported, fl)
        == NGX_OK)
    {
        fl->reporting = 1;
    }

    free(entry);
}


static void
ngx_http_zmq_fleet_reported(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    char                   shown[ZGW_SHOW_SIZE];
    ngx_http_zmq_fleet_t  *fl = data;

    fl->reporting = 0;

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        if (!fl->warned) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "zmq: fleet: the store refused this gateway's "
                          "report: %s",
                          zgw_show(shown, sizeof(shown), reply->str,
                                   reply->len));
            fl->warned = 1;
        }
        return;
    }

    fl->warned = 0;
}


static void
ngx_http_zmq_fleet_read(ngx_zmq_redis_t *rd, redisReply *reply, void *data)
{
    json_t                *doc;
    ngx_http_zmq_fleet_t  *fl = data;

    fl->reading = 0;

    if (reply == NULL || !fl->running) {
        return;
    }

    doc = zgw_fleet_parse(reply);
    if (doc == NULL) {
        return;
    }

    if (fl->doc != NULL) {
        json_decref(fl->doc);
    }

    fl->doc = doc;
}

