
/*
 * ngx_http_zmq_module: the NGINX side of ngx_zmq.
 *
 * Directives:
 *     zmq_key_file PATH;          key that opens sealed secrets
 *     zmq_config file:PATH | redis://host:port/db;
 *                                 where the configuration comes from
 *     zmq_config_cache DIR;       last good Redis snapshot, for a start
 *                                 while Redis is down
 *     zmq_router;                 routes to rest_channel objects
 *     zmq_amqp_connect_timeout;   TCP connect plus AMQP handshake
 *     zmq_amqp_buffer_limit;      unsent bytes per connection before 503
 *     zmq_status;                 the module's state as JSON
 *     zmq_metrics;                the counters for Prometheus
 *                                 (ngx_http_zmq_metrics.c)
 *     zmq_service NAME;           publish the request body (service kind
 *                                 "publish") and answer once confirmed
 *     zmq_routing_key VALUE;      overrides the service's routing key
 *     zmq_confirm_timeout TIME;   how long to wait for the confirm
 *     zmq_max_body SIZE;          larger bodies get 413
 *     zmq_data_format none|json;  json: an invalid body gets 400
 *     zmq_json_errors on|off;     NGINX's error pages as JSON here too
 *                                 (always on in zmq_service/zmq_router)
 *     zmq_admin;                  the admin REST API (ngx_http_zmq_admin.c)
 *     zmq_admin_auth on|off;      off: zmq_admin without zmq_security
 *     zmq_batch on|off;           accept application/x-ndjson batches
 *     zmq_max_batch N;            lines per batch (ngx_http_zmq_batch.c)
 *     zmq_batch_envelope on|off;  each line {"body", "message_id", ...}
 *     zmq_trace on|off;           start a W3C trace when none comes
 *                                 (ngx_http_zmq_trace.c)
 *     zmq_idempotency_redis URL;  where Idempotency-Key outcomes are kept
 *                                 (ngx_http_zmq_idempotency.c)
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_zmq_follow.h"
#include "ngx_http_zmq_fleet.h"
#include "ngx_http_zmq_module.h"


static char *ngx_http_zmq_router(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_zmq_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_zmq_security(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_zmq_service(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_zmq_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_zmq_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_zmq_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_zmq_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_zmq_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_zmq_init_process(ngx_cycle_t *cycle);
static void ngx_http_zmq_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_zmq_data_formats[] = {
    { ngx_string("none"), NGX_HTTP_ZMQ_FORMAT_NONE },
    { ngx_string("json"), NGX_HTTP_ZMQ_FORMAT_JSON },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_zmq_commands[] = {

    { ngx_string("zmq_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_zmq_key_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_config_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_path_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, cache_dir),
      NULL },

    { ngx_string("zmq_config_poll"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, poll),
      NULL },

    { ngx_string("zmq_instance"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_zmq_fleet_instance,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_fleet_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, fleet_interval),
      NULL },

    { ngx_string("zmq_router"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_zmq_router,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_zmq_config,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_amqp_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, connect_timeout),
      NULL },

    { ngx_string("zmq_amqp_buffer_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, buffer_limit),
      NULL },

    { ngx_string("zmq_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_zmq_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_zmq_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_service"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_zmq_service,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_routing_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, routing_key),
      NULL },

    { ngx_string("zmq_confirm_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, confirm_timeout),
      NULL },

    { ngx_string("zmq_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, max_body),
      NULL },

    { ngx_string("zmq_data_format"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, data_format),
      &ngx_http_zmq_data_formats },

    { ngx_string("zmq_security"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_zmq_security,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_auth_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, auth_cache_ttl),
      NULL },

    { ngx_string("zmq_auth_fail_rate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, auth_fail_rate),
      NULL },

    { ngx_string("zmq_auth_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, auth_pool_name),
      NULL },

    { ngx_string("zmq_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_zmq_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_admin_auth"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, admin_auth),
      NULL },

    { ngx_string("zmq_batch"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, batch),
      NULL },

    { ngx_string("zmq_max_batch"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, max_batch),
      NULL },

    { ngx_string("zmq_batch_envelope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, batch_envelope),
      NULL },

    { ngx_string("zmq_trace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, trace),
      NULL },

    { ngx_string("zmq_idempotency_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_zmq_idempotency_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_json_errors"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_zmq_loc_conf_t, json_errors),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_zmq_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_zmq_postconfiguration,        /* postconfiguration */

    ngx_http_zmq_create_main_conf,         /* create main configuration */
    ngx_http_zmq_init_main_conf,           /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_zmq_create_loc_conf,          /* create location configuration */
    ngx_http_zmq_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_zmq_module = {
    NGX_MODULE_V1,
    &ngx_http_zmq_module_ctx,              /* module context */
    ngx_http_zmq_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_zmq_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_zmq_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_zmq_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_zmq_publish_init(cf) != NGX_OK
        || ngx_http_zmq_idem_init(cf) != NGX_OK
        || ngx_http_zmq_auth_init(cf) != NGX_OK
        || ngx_http_zmq_metrics_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_zmq_filter_init(cf);
}


static char *
ngx_http_zmq_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_zmq_status_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_zmq_router(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_loc_conf_t *zlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_zmq_main_conf_t  *zmcf;

    if (zlcf->router || zlcf->service.len) {
        return "is duplicate";
    }

    zmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_zmq_module);

    if (zmcf->type == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_router: no zmq_config before this directive");
        return NGX_CONF_ERROR;
    }

    zlcf->router = 1;
    zmcf->auth_used = 1;        /* routes may name security definitions */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_zmq_router_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_zmq_security(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_loc_conf_t *zlcf = conf;

    json_t                    *obj;
    ngx_str_t                 *value;
    const char                *dir;
    ngx_http_zmq_main_conf_t  *zmcf;

    if (zlcf->security.len) {
        return "is duplicate";
    }

    value = cf->args->elts;
    zmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_zmq_module);

    if (zmcf->type == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_security \"%V\": no zmq_config before this "
                           "directive", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 0 || !zgw_name_valid((char *) value[1].data)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_security \"%V\": not a valid object name",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (zmcf->type == NGX_HTTP_ZMQ_SOURCE_FILE) {
        /* a file is known now: check the name at nginx -t */
        obj = zgw_config_get(zmcf->cfg, ZGW_KIND_SECURITY,
                             (char *) value[1].data);
        dir = json_string_value(json_object_get(obj, "direction"));

        if (obj == NULL || (dir != NULL && ngx_strcmp(dir, "in") != 0)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_security \"%V\": no incoming security "
                               "definition of that name in %V", &value[1],
                               &zmcf->source);
            return NGX_CONF_ERROR;
        }
    }

    /* from Redis: checked per request; one that does not exist refuses */

    zlcf->security = value[1];
    zmcf->auth_used = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_zmq_service(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_loc_conf_t *zlcf = conf;

    json_t                    *obj;
    ngx_str_t                 *value;
    const char                *kind;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_zmq_main_conf_t  *zmcf;

    if (zlcf->service.len || zlcf->router) {
        return "is duplicate";
    }

    value = cf->args->elts;
    zmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_zmq_module);

    if (zmcf->type == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_service \"%V\": no zmq_config before this "
                           "directive", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (zmcf->type == NGX_HTTP_ZMQ_SOURCE_FILE) {
        /* a file is known now: check the name at nginx -t */
        obj = zgw_config_get(zmcf->cfg, ZGW_KIND_SERVICE,
                             (char *) value[1].data);
        kind = json_string_value(json_object_get(obj, "kind"));

        if (kind == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_service \"%V\": no such service in %V",
                               &value[1], &zmcf->source);
            return NGX_CONF_ERROR;
        }

        if (ngx_strcmp(kind, "publish") != 0
            && ngx_strcmp(kind, "rpc") != 0
            && ngx_strcmp(kind, "invoke") != 0
            && ngx_strcmp(kind, "redis_page") != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_service \"%V\": service of kind '%s' "
                               "cannot be invoked from a location: it runs "
                               "only in zmqd; a location invokes "
                               "'publish', 'rpc', 'invoke' and "
                               "'redis_page' services",
                               &value[1], kind);
            return NGX_CONF_ERROR;
        }
    }

    zlcf->service = value[1];

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_zmq_service_handler;

    return NGX_CONF_OK;
}


static void *
ngx_http_zmq_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_zmq_main_conf_t));
    if (zmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     zmcf->type = 0;
     *     zmcf->source = { 0, NULL };
     *     zmcf->cfg = NULL;
     *     zmcf->cache_dir = NULL;
     *     zmcf->shm = NULL;
     */

    if (ngx_array_init(&zmcf->resolved, cf->pool, 4,
                       sizeof(ngx_http_zmq_resolved_t))
        != NGX_OK)
    {
        return NULL;
    }

    zmcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    zmcf->auth_cache_ttl = NGX_CONF_UNSET_MSEC;
    zmcf->auth_fail_rate = NGX_CONF_UNSET_UINT;
    zmcf->buffer_limit = NGX_CONF_UNSET_SIZE;
    zmcf->poll = NGX_CONF_UNSET_MSEC;
    zmcf->fleet_interval = NGX_CONF_UNSET_MSEC;

    return zmcf;
}


static char *
ngx_http_zmq_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    ngx_conf_init_msec_value(zmcf->connect_timeout, 5000);
    ngx_conf_init_size_value(zmcf->buffer_limit, 16 * 1024 * 1024);
    ngx_conf_init_msec_value(zmcf->poll, 1000);
    ngx_conf_init_msec_value(zmcf->fleet_interval, 5000);

    if (zmcf->fleet_interval != 0 && zmcf->fleet_interval < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_fleet_interval must "
                           "be 0 (off) or at least 1s");
        return NGX_CONF_ERROR;
    }

    if (zmcf->type == 0) {
        return NGX_CONF_OK;
    }

    if (ngx_http_zmq_conf_init(cf, zmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_zmq_metrics_init_conf(cf, zmcf);
}


static void *
ngx_http_zmq_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_zmq_loc_conf_t));
    if (zlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     zlcf->service = { 0, NULL };
     *     zlcf->router = 0;
     */

    zlcf->routing_key = NGX_CONF_UNSET_PTR;
    zlcf->confirm_timeout = NGX_CONF_UNSET_MSEC;
    zlcf->max_body = NGX_CONF_UNSET_SIZE;
    zlcf->data_format = NGX_CONF_UNSET_UINT;
    zlcf->json_errors = NGX_CONF_UNSET;
    zlcf->admin_auth = NGX_CONF_UNSET;
    zlcf->batch = NGX_CONF_UNSET;
    zlcf->max_batch = NGX_CONF_UNSET_UINT;
    zlcf->batch_envelope = NGX_CONF_UNSET;
    zlcf->trace = NGX_CONF_UNSET;

    return zlcf;
}


static char *
ngx_http_zmq_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_zmq_loc_conf_t *prev = parent;
    ngx_http_zmq_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_ptr_value(conf->routing_key, prev->routing_key, NULL);
    ngx_conf_merge_msec_value(conf->confirm_timeout, prev->confirm_timeout,
                              10000);
    ngx_conf_merge_size_value(conf->max_body, prev->max_body, 1024 * 1024);

    /* a larger message makes RabbitMQ close the channel, and with it every
     * other message in flight on the connection */
    if (conf->max_body > ZGW_BODY_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_max_body %uz is larger than the largest "
                           "message RabbitMQ takes (%d bytes)",
                           conf->max_body, ZGW_BODY_MAX);
        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_uint_value(conf->data_format, prev->data_format,
                              NGX_HTTP_ZMQ_FORMAT_NONE);
    ngx_conf_merge_value(conf->json_errors, prev->json_errors, 0);
    ngx_conf_merge_value(conf->batch, prev->batch, 0);
    ngx_conf_merge_uint_value(conf->max_batch, prev->max_batch, 1000);
    ngx_conf_merge_value(conf->batch_envelope, prev->batch_envelope, 0);
    ngx_conf_merge_value(conf->trace, prev->trace, 0);

    if (conf->max_batch < 1 || conf->max_batch > 100000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_max_batch %ui is not in 1-100000",
                           conf->max_batch);
        return NGX_CONF_ERROR;
    }

    /*
     * Inherited like auth_basic: a nested location, and an "if" block
     * (which keeps its location's content handler), are protected by the
     * location's zmq_security, and an "if" block in a zmq_service or
     * zmq_router location still knows what it serves.
     */
    ngx_conf_merge_str_value(conf->security, prev->security, "");

    if (ngx_http_zmq_admin_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->service.len == 0 && !conf->router) {
        conf->service = prev->service;
        conf->router = prev->router;
    }

    if (!conf->service.len && !conf->router) {
        return NGX_CONF_OK;
    }

    /*
     * The module enforces zmq_max_body itself (Content-Length before the
     * body is read, the running total while it arrives) and leaves NGINX's
     * configuration alone: client_max_body_size (NGINX's default 1m unless
     * the operator sets it) applies too, and may be the smaller limit.
     */
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->client_max_body_size != 0
        && clcf->client_max_body_size < (off_t) conf->max_body)
    {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "location \"%V\": zmq_max_body %uz is larger than "
                      "client_max_body_size %O, which NGINX applies first: "
                      "bodies over %O bytes get 413; set "
                      "client_max_body_size to %uz or 0 there",
                      &clcf->name, conf->max_body,
                      clcf->client_max_body_size,
                      clcf->client_max_body_size, conf->max_body);
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_zmq_init_process(ngx_cycle_t *cycle)
{
    zgw_errors_t                  errs;
    ngx_http_zmq_runtime_t       *rt;
    ngx_http_zmq_main_conf_t     *zmcf;
    ngx_http_zmq_follow_conf_t    fc;
    ngx_http_zmq_worker_stats_t  *ws;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    zmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_zmq_module);
    if (zmcf == NULL) {
        return NGX_OK;
    }

    /* what was per-process globals: every worker has one */
    zmcf->worker = ngx_pcalloc(cycle->pool, sizeof(ngx_http_zmq_worker_t));
    if (zmcf->worker == NULL) {
        return NGX_ERROR;
    }

    /* before any return: ngx_http_zmq_idem_exit() walks it */
    ngx_queue_init(&zmcf->worker->idem_orphans);

    if (zmcf->type == 0) {
        return NGX_OK;
    }

    ngx_zmq_amqp_configure(&zmcf->worker->amqp, zmcf->connect_timeout,
                           zmcf->buffer_limit);
    ngx_zmq_stomp_configure(&zmcf->worker->stomp, zmcf->connect_timeout,
                            zmcf->buffer_limit);

    if (ngx_http_zmq_auth_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_zmq_publish_init_process(cycle);
    ngx_http_zmq_idem_init_process(cycle);

    ws = NULL;
    if (zmcf->stats != NULL && ngx_worker < zmcf->slots) {
        ws = &zmcf->stats[ngx_worker];
        /* the pid last (below): zmq_status in another worker shows a slot
         * only once its outgoing connections are in it */
        ngx_memzero(ws, sizeof(ngx_http_zmq_worker_stats_t));
        ws->since = ngx_time();
        ws->state = zmcf->type == NGX_HTTP_ZMQ_SOURCE_FILE
                    ? NGX_HTTP_ZMQ_SRC_LOADED : NGX_HTTP_ZMQ_SRC_WAITING;
    }

    ngx_http_zmq_metrics_init_process(zmcf);

    /* the configuration read at start: the file, or the Redis cache */

    zgw_errors_init(&errs);

    rt = ngx_http_zmq_runtime_build(zmcf->cfg,
                                    zmcf->has_key ? &zmcf->key : NULL,
                                    &zmcf->resolved, cycle->log, &errs);
    if (rt == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "zmq: %s",
                      zgw_errors_first(&errs));
        zgw_errors_free(&errs);
        return NGX_ERROR;
    }

    zgw_errors_free(&errs);
    ngx_http_zmq_runtime_apply(rt, ws, cycle->log);

    if (ws != NULL) {
        ngx_memory_barrier();
        ws->pid = ngx_pid;
    }

    if (zmcf->type != NGX_HTTP_ZMQ_SOURCE_REDIS) {
        return NGX_OK;
    }

    ngx_memzero(&fc, sizeof(ngx_http_zmq_follow_conf_t));
    fc.addr = zmcf->redis_addr;
    fc.sentinels = zmcf->redis_sentinels;
    fc.nsentinels = zmcf->redis.nsentinels;
    fc.master_name.data = (u_char *) zmcf->redis.master_name;
    fc.master_name.len = ngx_strlen(zmcf->redis.master_name);
    fc.username.data = (u_char *) zmcf->redis.username;
    fc.username.len = ngx_strlen(zmcf->redis.username);
    fc.password.data = (u_char *) zmcf->redis.password;
    fc.password.len = ngx_strlen(zmcf->redis.password);
    fc.db = zmcf->redis.db;
    fc.tls = zmcf->redis_tls;
    fc.tls_name = zmcf->redis_tls_name;
    fc.timeout = 5000;
    fc.poll = zmcf->poll;
    fc.key = zmcf->has_key ? &zmcf->key : NULL;
    fc.resolved = &zmcf->resolved;
    fc.stats = ws;
    fc.cache = zmcf->cache_file;
    fc.log = cycle->log;

    if (ngx_http_zmq_follow_start(&fc) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_zmq_fleet_start(cycle);

    return NGX_OK;
}


static void
ngx_http_zmq_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_zmq_module);
    if (zmcf == NULL || zmcf->worker == NULL) {
        return;
    }

    ngx_http_zmq_fleet_stop();
    ngx_http_zmq_follow_stop();
    ngx_zmq_amqp_exit_process(&zmcf->worker->amqp, cycle);
    NGX_HTTP_ZMQ_PROBE_FLUSH();
    ngx_zmq_stomp_exit_process(&zmcf->worker->stomp, cycle);
    ngx_http_zmq_runtime_exit();
    ngx_http_zmq_auth_exit_process();
    ngx_http_zmq_idem_exit();
}


ngx_http_zmq_worker_t *
ngx_http_zmq_worker(void)
{
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_zmq_module);

    return zmcf->worker;
}
