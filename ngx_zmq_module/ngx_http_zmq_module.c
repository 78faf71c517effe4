
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
 *     zmq_service NAME;           publish the request body (service kind
 *                                 "publish") and answer once confirmed
 *     zmq_routing_key VALUE;      overrides the service's routing key
 *     zmq_confirm_timeout TIME;   how long to wait for the confirm
 *     zmq_max_body SIZE;          larger bodies get 413
 *     zmq_data_format none|json;  json: an invalid body gets 400
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "zgw_crypto.h"
#include "zgw_model.h"
#include "zgw_redis_url.h"
#include "ngx_http_zmq_amqp.h"
#include "ngx_http_zmq_follow.h"
#include "ngx_http_zmq_runtime.h"


#define NGX_HTTP_ZMQ_FORMAT_NONE  0
#define NGX_HTTP_ZMQ_FORMAT_JSON  1

#define NGX_HTTP_ZMQ_SLOTS_MAX    64

/* requests answered per pass of the event loop, see ngx_http_zmq_answers */
#ifndef NGX_HTTP_ZMQ_ANSWERS_PER_PASS
#define NGX_HTTP_ZMQ_ANSWERS_PER_PASS  64
#endif

#define NGX_HTTP_ZMQ_SOURCE_FILE  1
#define NGX_HTTP_ZMQ_SOURCE_REDIS 2


typedef struct {
    ngx_uint_t                     type;       /* file or redis */
    ngx_str_t                      source;     /* as written */
    ngx_str_t                      path;       /* the file, resolved */
    ngx_str_t                      key_file;
    zgw_key_t                      key;
    ngx_flag_t                     has_key;
    zgw_config_t                  *cfg;        /* read at start */
    time_t                         mtime;
    time_t                         loaded;

    ngx_addr_t                    *redis_addr;
    zgw_redis_addr_t               redis;
    ngx_path_t                    *cache_dir;
    ngx_str_t                      cache_file;
    ngx_msec_t                     poll;

    ngx_array_t                    resolved;   /* ngx_http_zmq_resolved_t */

    ngx_msec_t                     connect_timeout;
    size_t                         buffer_limit;

    ngx_shm_zone_t                *shm;
    ngx_http_zmq_worker_stats_t   *stats;      /* in the zone */
    ngx_uint_t                     slots;      /* workers in the zone */
} ngx_http_zmq_main_conf_t;


typedef struct {
    ngx_str_t                      service;    /* zmq_service NAME */
    ngx_flag_t                     router;
    ngx_http_complex_value_t      *routing_key;
    ngx_msec_t                     confirm_timeout;
    size_t                         max_body;
    ngx_uint_t                     data_format;
} ngx_http_zmq_loc_conf_t;


typedef struct {
    ngx_http_request_t            *request;
    ngx_http_zmq_pub_t            *pub;        /* NULL once answered */
    ngx_str_t                      message_id;
    ngx_str_t                      service;
    size_t                         max_body;
    ngx_uint_t                     data_format;
    ngx_http_zmq_param_t           params[NGX_HTTP_ZMQ_PARAMS_MAX];
    ngx_uint_t                     nparams;
    ngx_chain_t                   *json;       /* replaces an nginx page */
    ngx_queue_t                    answer;     /* in ngx_http_zmq_answers */
    ngx_http_zmq_pub_result_e      result;
    unsigned                       own:1;      /* a response of ours */
    unsigned                       replaced:1;
    unsigned                       queued:1;   /* waits in the answers */
} ngx_http_zmq_ctx_t;


static ngx_int_t ngx_http_zmq_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_zmq_service_handler(ngx_http_request_t *r);
static void ngx_http_zmq_body_handler(ngx_http_request_t *r);
static void ngx_http_zmq_publish_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_http_zmq_answer_handler(ngx_event_t *ev);
static void ngx_http_zmq_answer(ngx_http_zmq_ctx_t *ctx);
static void ngx_http_zmq_request_cleanup(void *data);
static ngx_int_t ngx_http_zmq_send_json(ngx_http_request_t *r,
    ngx_uint_t status, u_char *body, size_t len);
static ngx_int_t ngx_http_zmq_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, time_t retry_after);
static ngx_int_t ngx_http_zmq_properties(ngx_http_request_t *r,
    ngx_http_zmq_service_t *svc, ngx_http_zmq_outconn_conf_t *oc,
    amqp_basic_properties_t *props, ngx_str_t *message_id,
    const char **bad);
static ngx_int_t ngx_http_zmq_router_handler(ngx_http_request_t *r);
static char *ngx_http_zmq_router(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static char *ngx_http_zmq_config(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_zmq_prepare(ngx_conf_t *cf,
    ngx_http_zmq_main_conf_t *zmcf);
static char *ngx_http_zmq_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_zmq_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_zmq_service(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_zmq_init_shm(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_zmq_config_cleanup(void *data);
static void *ngx_http_zmq_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_zmq_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_zmq_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_zmq_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_zmq_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_zmq_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_zmq_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
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


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* ------------------------------------------------------------ responses */


static ngx_http_zmq_ctx_t *
ngx_http_zmq_get_ctx(ngx_http_request_t *r)
{
    ngx_http_zmq_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);
    if (ctx != NULL) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_zmq_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_zmq_module);

    return ctx;
}


static ngx_int_t
ngx_http_zmq_send_json(ngx_http_request_t *r, ngx_uint_t status, u_char *body,
    size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_zmq_ctx_t  *ctx;

    ctx = ngx_http_zmq_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->own = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_zmq_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


/* {"error": code, "message": message}; code and message are plain ASCII */
static ngx_int_t
ngx_http_zmq_error(ngx_http_request_t *r, ngx_uint_t status, const char *code,
    const char *message, time_t retry_after)
{
    u_char     *body, *p;
    size_t      len;
    uintptr_t   esc;
    ngx_str_t   value;

    esc = ngx_escape_json(NULL, (u_char *) message, ngx_strlen(message));
    len = sizeof("{\"error\":\"\",\"message\":\"\"}\n") - 1
          + ngx_strlen(code) + ngx_strlen(message) + esc;

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(body, "{\"error\":\"%s\",\"message\":\"", code);
    p = (u_char *) ngx_escape_json(p, (u_char *) message,
                                   ngx_strlen(message));
    p = ngx_cpymem(p, "\"}\n", 3);

    if (retry_after > 0) {
        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            return NGX_ERROR;
        }
        value.len = ngx_sprintf(value.data, "%T", retry_after) - value.data;
        if (ngx_http_zmq_add_header(r, "Retry-After", &value) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_zmq_send_json(r, status, body, p - body);
}


/* --------------------------------------------------------------- status */


static char *
ngx_http_zmq_draining_name(ngx_http_request_t *r,
    ngx_http_zmq_amqp_stats_t *st)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_HTTP_ZMQ_NAME_LEN + 32);
    if (p == NULL) {
        return (char *) st->name;
    }

    ngx_snprintf(p, NGX_HTTP_ZMQ_NAME_LEN + 32, "%s (draining %p)%Z",
                 st->name, st);
    return (char *) p;
}



static const char *
ngx_http_zmq_source_state(ngx_uint_t state)
{
    switch (state) {
    case NGX_HTTP_ZMQ_SRC_LOADED:
        return "connected";
    case NGX_HTTP_ZMQ_SRC_STALE:
        return "stale";
    case NGX_HTTP_ZMQ_SRC_WAITING:
        return "waiting";
    default:
        return "none";
    }
}


static ngx_int_t
ngx_http_zmq_status_handler(ngx_http_request_t *r)
{
    int                            k;
    char                          *text;
    u_char                        *body;
    size_t                         len;
    json_t                        *doc, *cfg, *objs, *workers, *w, *ocs,
                                  *o;
    ngx_int_t                      rc;
    ngx_uint_t                     i, s;
    ngx_http_zmq_main_conf_t      *zmcf;
    ngx_http_zmq_amqp_stats_t     *st;
    ngx_http_zmq_worker_stats_t   *ws;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);

    doc = json_object();
    if (doc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(doc, "module", json_string("ngx_zmq"));
    json_object_set_new(doc, "version", json_string(ZGW_VERSION));
    json_object_set_new(doc, "pid", json_integer(ngx_pid));

    if (zmcf->type == 0) {
        json_object_set_new(doc, "config", json_null());
        goto send;
    }

    cfg = json_object();
    objs = json_object();

    json_object_set_new(cfg, "source", json_stringn((char *) zmcf->source.data,
                                                    zmcf->source.len));

    if (zmcf->type == NGX_HTTP_ZMQ_SOURCE_FILE) {
        json_object_set_new(cfg, "path", json_stringn((char *) zmcf->path.data,
                                                      zmcf->path.len));
        json_object_set_new(cfg, "state", json_string("loaded"));
        json_object_set_new(cfg, "version", json_integer(zmcf->mtime));
        json_object_set_new(cfg, "loaded_at", json_integer(zmcf->loaded));

        for (k = 0; k < ZGW_KIND_MAX; k++) {
            json_object_set_new(objs, zgw_kind_name(k),
                                json_integer(zgw_config_count(zmcf->cfg, k)));
        }

        json_object_set_new(cfg, "objects", objs);

    } else {
        json_decref(objs);
    }

    json_object_set_new(doc, "config", cfg);

    /* per worker: its configuration and its outgoing connections */

    workers = json_array();

    for (s = 0; zmcf->stats != NULL && s < zmcf->slots; s++) {
        ws = &zmcf->stats[s];

        if (ws->pid == 0) {
            continue;
        }

        w = json_object();
        ocs = json_object();
        json_object_set_new(w, "worker", json_integer(s));
        json_object_set_new(w, "pid", json_integer(ws->pid));
        json_object_set_new(w, "config_version",
                            json_integer((json_int_t) ws->version));

        if (zmcf->type == NGX_HTTP_ZMQ_SOURCE_REDIS) {
            json_object_set_new(w, "source_state",
                                json_string(ngx_http_zmq_source_state(
                                                ws->state)));
            json_object_set_new(w, "since",
                                json_integer((json_int_t) ws->since));
            if (ws->error[0]) {
                json_object_set_new(w, "error",
                                    json_string((char *) ws->error));
            }
        }

        for (i = 0; i < NGX_HTTP_ZMQ_OUTCONNS_MAX; i++) {
            st = &ws->outconns[i];
            if (!st->used) {
                continue;
            }

            o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                          "state",
                          st->draining ? "draining"
                          : ngx_http_zmq_amqp_state_name(st->state),
                          "inflight", (json_int_t) st->inflight,
                          "published", (json_int_t) st->published,
                          "confirmed", (json_int_t) st->confirmed,
                          "nacked", (json_int_t) st->nacked,
                          "returned", (json_int_t) st->returned,
                          "timed_out", (json_int_t) st->timed_out,
                          "lost", (json_int_t) st->lost,
                          "rejected", (json_int_t) st->rejected,
                          "reconnects", (json_int_t) st->reconnects);

            if (st->draining) {
                /* a replaced connection finishing its confirms */
                json_object_set_new(ocs, ngx_http_zmq_draining_name(r, st),
                                    o);
            } else {
                json_object_set_new(ocs, (char *) st->name, o);
            }
        }

        json_object_set_new(w, "outconns", ocs);
        json_array_append_new(workers, w);
    }

    json_object_set_new(doc, "workers", workers);

send:

    text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    body = ngx_pnalloc(r->pool, len + 1);
    if (body == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(body, text, len);
    body[len] = '\n';
    free(text);

    return ngx_http_zmq_send_json(r, NGX_HTTP_OK, body, len + 1);
}


/* -------------------------------------------------------------- publish */


static ngx_int_t
ngx_http_zmq_start(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (r->headers_in.content_length_n > (off_t) ctx->max_body) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "zmq: body of %O bytes is larger than %uz",
                      r->headers_in.content_length_n, ctx->max_body);

        r->keepalive = 0;
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_zmq_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "body_too_large",
                                  "the body is larger than the service "
                                  "accepts", 0);
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_zmq_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /*
     * The reference ngx_http_read_client_request_body() took keeps the
     * request alive until the body handler's answer finalizes it, which
     * for a publish is when the broker confirms.
     */
    return NGX_DONE;
}


static ngx_int_t
ngx_http_zmq_service_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 allow;
    ngx_http_zmq_ctx_t       *ctx;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT))) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_str_set(&allow, "POST, PUT");
        if (ngx_http_zmq_add_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_zmq_error(r, NGX_HTTP_NOT_ALLOWED,
                                  "method_not_allowed",
                                  "use POST or PUT", 0);
    }

    ctx = ngx_http_zmq_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->service = zlcf->service;
    ctx->max_body = zlcf->max_body;
    ctx->data_format = zlcf->data_format;

    return ngx_http_zmq_start(r, ctx);
}


static ngx_int_t
ngx_http_zmq_router_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 allow;
    ngx_http_zmq_ctx_t       *ctx;
    ngx_http_zmq_route_t     *route;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    ctx = ngx_http_zmq_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    route = NULL;
    rc = ngx_http_zmq_runtime_route(r, &route, ctx->params, &ctx->nparams,
                                    &allow);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        if (rc == NGX_DECLINED) {
            return ngx_http_zmq_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "no REST channel serves this path", 0);
        }

        if (ngx_http_zmq_add_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_zmq_error(r, NGX_HTTP_NOT_ALLOWED,
                                  "method_not_allowed",
                                  "the REST channel does not accept this "
                                  "method", 0);
    }

    if (route->secured) {
        /* deny rather than serve a channel whose security is not checked */
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_http_zmq_error(r, NGX_HTTP_NOT_IMPLEMENTED,
                                  "security_unsupported",
                                  "this REST channel has a security "
                                  "definition, which the gateway does not "
                                  "check yet", 0);
    }

    ctx->service.len = route->service.len;
    ctx->service.data = ngx_pstrdup(r->pool, &route->service);
    ctx->max_body = ngx_min(route->max_body, zlcf->max_body);
    ctx->data_format = route->data_format;

    /* the params point into the URI, which lives as long as the request */

    return ngx_http_zmq_start(r, ctx);
}


static ngx_int_t
ngx_http_zmq_body_json_ok(ngx_http_request_t *r, off_t len)
{
    u_char        *buf, *p;
    ssize_t        n;
    json_t        *doc;
    ngx_buf_t     *b;
    ngx_chain_t   *cl;
    json_error_t   jerr;

    if (len == 0) {
        return 0;
    }

    buf = ngx_pnalloc(r->pool, (size_t) len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);

        } else {
            n = ngx_read_file(b->file, p, (size_t) (b->file_last
                                                    - b->file_pos),
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }
            p += n;
        }
    }

    doc = json_loadb((char *) buf, (size_t) len,
                     JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK * 0, &jerr);
    if (doc == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "zmq: invalid JSON body at %d:%d: %s", jerr.line,
                      jerr.column, jerr.text);
        return 0;
    }

    json_decref(doc);
    return 1;
}


static void
ngx_http_zmq_body_handler(ngx_http_request_t *r)
{
    off_t                          len;
    time_t                         retry;
    ngx_int_t                      rc;
    ngx_str_t                      rk;
    ngx_chain_t                   *cl;
    const char                    *bad;
    ngx_pool_cleanup_t            *cln;
    ngx_http_zmq_ctx_t            *ctx;
    ngx_http_zmq_pub_t            *pub;
    ngx_http_zmq_publish_t         msg;
    amqp_basic_properties_t       *props;
    ngx_http_zmq_service_t        *svc;
    ngx_http_zmq_loc_conf_t       *zlcf;
    ngx_http_zmq_amqp_conn_t      *conn;
    ngx_http_zmq_outconn_conf_t   *oc;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (r->connection->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    len = 0;
    if (r->request_body != NULL) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            len += ngx_buf_size(cl->buf);
        }
    }

    if (len > (off_t) ctx->max_body) {
        r->keepalive = 0;
        rc = ngx_http_zmq_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                "body_too_large", "the body is larger than "
                                "the service accepts", 0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (ctx->data_format == NGX_HTTP_ZMQ_FORMAT_JSON) {
        rc = ngx_http_zmq_body_json_ok(r, len);

        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        if (rc == 0) {
            rc = ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                    "the body is not valid JSON", 0);
            ngx_http_finalize_request(r, rc);
            return;
        }
    }

    /* the service as the configuration running now has it */

    svc = ngx_http_zmq_runtime_service(&ctx->service);

    if (svc == NULL) {
        rc = ngx_http_zmq_error(r, NGX_HTTP_NOT_FOUND, "unknown_service",
                                "the service does not exist", 0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (svc->kind.len != 7 || ngx_strncmp(svc->kind.data, "publish", 7) != 0)
    {
        rc = ngx_http_zmq_error(r, NGX_HTTP_NOT_IMPLEMENTED,
                                "service_kind_unsupported",
                                "only services of kind 'publish' can be "
                                "invoked from NGINX yet", 0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    oc = ngx_http_zmq_runtime_outconn(&svc->outconn);
    conn = ngx_http_zmq_runtime_conn(&svc->outconn);

    if (!svc->active || oc == NULL || !oc->active || conn == NULL) {
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "service_inactive", "the service or its "
                                "outgoing connection is not active", 0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    props = ngx_pcalloc(r->pool, sizeof(amqp_basic_properties_t));
    if (props == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    bad = NULL;
    rc = ngx_http_zmq_properties(r, svc, oc, props, &ctx->message_id, &bad);
    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header", bad,
                                0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (zlcf->routing_key != NULL) {
        rc = ngx_http_complex_value(r, zlcf->routing_key, &rk);

    } else {
        rc = ngx_http_zmq_tmpl_eval(r, &svc->routing_key, ctx->params,
                                    ctx->nparams, &rk);
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rk.len > 255) {
        rc = ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_routing_key",
                                "the routing key is longer than 255 bytes",
                                0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_zmq_request_cleanup;
    cln->data = ctx;

    ngx_memzero(&msg, sizeof(ngx_http_zmq_publish_t));
    msg.exchange = svc->exchange;
    msg.routing_key = rk;
    msg.mandatory = svc->mandatory;
    msg.confirm = svc->confirm;
    msg.props = props;
    msg.body = r->request_body ? r->request_body->bufs : NULL;
    msg.body_len = len;
    msg.timeout = zlcf->confirm_timeout;
    msg.data = ctx;
    msg.done = ngx_http_zmq_publish_done;

    retry = 1;
    pub = NULL;

    rc = ngx_http_zmq_amqp_publish(conn, &msg, &pub, &retry,
                                   r->connection->log);

    switch (rc) {

    case NGX_OK:
        ctx->pub = pub;
        return;

    case NGX_HTTP_ZMQ_UNAVAILABLE:
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "broker_unavailable", "the broker is not "
                                "reachable; try again later", retry);
        break;

    case NGX_HTTP_ZMQ_BLOCKED:
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "broker_blocked", "the broker is not "
                                "accepting messages (resource alarm); try "
                                "again later", retry);
        break;

    case NGX_HTTP_ZMQ_OVERLOADED:
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "overloaded", "too many messages are waiting "
                                "for the broker; try again later", retry);
        break;

    case NGX_HTTP_ZMQ_TOO_LARGE:
        rc = ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header",
                                "the message properties do not fit in one "
                                "AMQP frame", 0);
        break;

    default:
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        break;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * The broker confirms in batches: one basic.ack with "multiple" may settle
 * every message in flight, hundreds of requests. Answering them all in one
 * go keeps the worker from reading the requests those clients send next,
 * and the broker idles until the worker is done. So answers queue here and
 * go out NGX_HTTP_ZMQ_ANSWERS_PER_PASS at a time, each pass followed by a
 * turn of the event loop that reads (and publishes) whatever arrived.
 */

static ngx_queue_t  ngx_http_zmq_answers;
static ngx_event_t  ngx_http_zmq_answer_ev;


static void
ngx_http_zmq_publish_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_http_zmq_ctx_t  *ctx = pub->data;

    ctx->pub = NULL;
    ctx->result = result;
    ctx->queued = 1;
    ngx_queue_insert_tail(&ngx_http_zmq_answers, &ctx->answer);

    if (!ngx_http_zmq_answer_ev.posted) {
        ngx_post_event(&ngx_http_zmq_answer_ev, &ngx_posted_events);
    }
}


static void
ngx_http_zmq_answer_handler(ngx_event_t *ev)
{
    ngx_uint_t           n;
    ngx_queue_t         *q;
    ngx_http_zmq_ctx_t  *ctx;

    for (n = 0; n < NGX_HTTP_ZMQ_ANSWERS_PER_PASS; n++) {
        if (ngx_queue_empty(&ngx_http_zmq_answers)) {
            return;
        }

        q = ngx_queue_head(&ngx_http_zmq_answers);
        ngx_queue_remove(q);
        ctx = ngx_queue_data(q, ngx_http_zmq_ctx_t, answer);
        ctx->queued = 0;

        ngx_http_zmq_answer(ctx);
    }

    if (!ngx_queue_empty(&ngx_http_zmq_answers)) {
        /* after the next epoll_wait(), which does not wait */
        ngx_post_event(ev, &ngx_posted_next_events);
    }
}


static void
ngx_http_zmq_answer(ngx_http_zmq_ctx_t *ctx)
{
    u_char               *body, *p;
    size_t                len;
    ngx_int_t             rc;
    ngx_connection_t     *c;
    ngx_http_request_t   *r;

    r = ctx->request;
    c = r->connection;

    switch (ctx->result) {

    case NGX_HTTP_ZMQ_PUB_ACKED:
    case NGX_HTTP_ZMQ_PUB_WRITTEN:
        len = sizeof("{\"message_id\":\"\",\"confirmed\":false}\n") - 1
              + ctx->message_id.len
              + ngx_escape_json(NULL, ctx->message_id.data,
                                ctx->message_id.len);
        body = ngx_pnalloc(r->pool, len);
        if (body == NULL) {
            rc = NGX_ERROR;
            break;
        }
        p = ngx_cpymem(body, "{\"message_id\":\"", 15);
        p = (u_char *) ngx_escape_json(p, ctx->message_id.data,
                                       ctx->message_id.len);
        p = ngx_sprintf(p, "\",\"confirmed\":%s}\n",
                        ctx->result == NGX_HTTP_ZMQ_PUB_ACKED ? "true"
                                                              : "false");
        rc = ngx_http_zmq_send_json(r, NGX_HTTP_ACCEPTED, body, p - body);
        break;

    case NGX_HTTP_ZMQ_PUB_NACKED:
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "zmq: the broker refused message \"%V\"",
                      &ctx->message_id);
        rc = ngx_http_zmq_error(r, NGX_HTTP_BAD_GATEWAY, "nacked",
                                "the broker refused the message", 0);
        break;

    case NGX_HTTP_ZMQ_PUB_RETURNED:
        rc = ngx_http_zmq_error(r, 422, "unroutable",
                                "no queue is bound for this message", 0);
        break;

    case NGX_HTTP_ZMQ_PUB_LOST:
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "broker_unavailable", "the connection to the "
                                "broker was lost before it confirmed the "
                                "message; it may or may not have been "
                                "delivered", 1);
        break;

    default: /* NGX_HTTP_ZMQ_PUB_TIMEDOUT */
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "zmq: no confirm for message \"%V\" in time",
                      &ctx->message_id);
        rc = ngx_http_zmq_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                                "confirm_timeout", "the broker did not "
                                "confirm the message in time", 0);
        break;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_zmq_request_cleanup(void *data)
{
    ngx_http_zmq_ctx_t  *ctx = data;

    if (ctx->pub != NULL) {
        ngx_http_zmq_amqp_detach(ctx->pub);
        ctx->pub = NULL;
    }

    if (ctx->queued) {
        ngx_queue_remove(&ctx->answer);
        ctx->queued = 0;
    }
}


/*
 * Message ids: random bytes drawn from OpenSSL in bulk. RAND_bytes checks
 * for a fork with getpid() and looks its parameters up on every call; once
 * per 256 ids is cheap. The pool belongs to the process that filled it, so
 * a worker never reuses bytes the master drew before fork().
 */

static ngx_int_t
ngx_http_zmq_uuid4(u_char *out)
{
    static u_char     pool[4096];
    static size_t     used = sizeof(pool);
    static ngx_pid_t  owner;

    if (used == sizeof(pool) || owner != ngx_pid) {
        if (RAND_bytes(pool, sizeof(pool)) != 1) {
            return NGX_ERROR;
        }
        used = 0;
        owner = ngx_pid;
    }

    zgw_uuid4_format(&pool[used], (char *) out);
    used += 16;

    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_short(ngx_str_t *v, amqp_bytes_t *out, const char **bad,
    const char *msg)
{
    if (v->len > 255) {
        *bad = msg;
        return NGX_DECLINED;
    }

    out->bytes = v->data;
    out->len = v->len;
    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_properties(ngx_http_request_t *r, ngx_http_zmq_service_t *svc,
    ngx_http_zmq_outconn_conf_t *oc, amqp_basic_properties_t *props,
    ngx_str_t *message_id, const char **bad)
{
    u_char                        *id;
    ngx_int_t                      n;
    ngx_uint_t                     i, j, nh;
    ngx_list_part_t               *part;
    ngx_keyval_t                  *kv;
    ngx_table_elt_t               *h;
    amqp_table_entry_t            *entries;

    /* the outgoing connection's defaults, then the service's */

    props->_flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    props->delivery_mode = (uint8_t) (svc->delivery_mode >= 0
                                      ? svc->delivery_mode
                                      : oc->delivery_mode);
    props->timestamp = (uint64_t) ngx_time();

    n = svc->priority >= 0 ? svc->priority : oc->priority;
    if (n >= 0) {
        props->_flags |= AMQP_BASIC_PRIORITY_FLAG;
        props->priority = (uint8_t) n;
    }

    n = svc->expiration >= 0 ? svc->expiration : oc->expiration;
    if (n >= 0) {
        props->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
        props->expiration.bytes = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (props->expiration.bytes == NULL) {
            return NGX_ERROR;
        }
        props->expiration.len = ngx_sprintf(props->expiration.bytes, "%i", n)
                                - (u_char *) props->expiration.bytes;
    }

    if (svc->content_type.len || oc->content_type.len) {
        props->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        props->content_type.bytes = svc->content_type.len
                                    ? svc->content_type.data
                                    : oc->content_type.data;
        props->content_type.len = svc->content_type.len
                                  ? svc->content_type.len
                                  : oc->content_type.len;
    }

    if (oc->content_encoding.len) {
        props->_flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
        props->content_encoding.bytes = oc->content_encoding.data;
        props->content_encoding.len = oc->content_encoding.len;
    }

    if (oc->user_id.len) {
        props->_flags |= AMQP_BASIC_USER_ID_FLAG;
        props->user_id.bytes = oc->user_id.data;
        props->user_id.len = oc->user_id.len;
    }

    if (oc->app_id.len) {
        props->_flags |= AMQP_BASIC_APP_ID_FLAG;
        props->app_id.bytes = oc->app_id.data;
        props->app_id.len = oc->app_id.len;
    }

    /* the request's headers */

    nh = svc->headers.nelts;
    part = &r->headers_in.headers.part;

    for ( ;; ) {
        nh += part->nelts;
        if (part->next == NULL) {
            break;
        }
        part = part->next;
    }

    entries = ngx_palloc(r->pool, (nh + 1) * sizeof(amqp_table_entry_t));
    if (entries == NULL) {
        return NGX_ERROR;
    }

    j = 0;
    kv = svc->headers.elts;

    for (i = 0; i < svc->headers.nelts; i++) {
        entries[j].key.bytes = kv[i].key.data;
        entries[j].key.len = kv[i].key.len;
        entries[j].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[j].value.value.bytes.bytes = kv[i].value.data;
        entries[j].value.value.bytes.len = kv[i].value.len;
        j++;
    }

    ngx_str_null(message_id);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Content-Type") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Content-Type",
                               h[i].key.len) == 0)
        {
            if (ngx_http_zmq_short(&h[i].value, &props->content_type, bad,
                                   "Content-Type is longer than 255 bytes")
                != NGX_OK)
            {
                return NGX_DECLINED;
            }
            props->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;

        } else if (h[i].key.len == sizeof("Content-Encoding") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "Content-Encoding",
                                      h[i].key.len) == 0)
        {
            if (ngx_http_zmq_short(&h[i].value, &props->content_encoding,
                                   bad, "Content-Encoding is longer than "
                                   "255 bytes")
                != NGX_OK)
            {
                return NGX_DECLINED;
            }
            props->_flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;

        } else if (h[i].key.len == sizeof("X-Message-Id") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "X-Message-Id",
                                      h[i].key.len) == 0)
        {
            if (h[i].value.len == 0 || h[i].value.len > 255) {
                *bad = "X-Message-Id must be 1-255 bytes";
                return NGX_DECLINED;
            }
            *message_id = h[i].value;

        } else if (h[i].key.len == sizeof("X-Correlation-Id") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "X-Correlation-Id",
                                      h[i].key.len) == 0)
        {
            if (ngx_http_zmq_short(&h[i].value, &props->correlation_id, bad,
                                   "X-Correlation-Id is longer than 255 "
                                   "bytes")
                != NGX_OK)
            {
                return NGX_DECLINED;
            }
            props->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;

        } else if (h[i].key.len == sizeof("X-Reply-To") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Reply-To",
                                      h[i].key.len) == 0)
        {
            if (ngx_http_zmq_short(&h[i].value, &props->reply_to, bad,
                                   "X-Reply-To is longer than 255 bytes")
                != NGX_OK)
            {
                return NGX_DECLINED;
            }
            props->_flags |= AMQP_BASIC_REPLY_TO_FLAG;

        } else if (h[i].key.len == sizeof("X-Priority") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Priority",
                                      h[i].key.len) == 0)
        {
            n = ngx_atoi(h[i].value.data, h[i].value.len);
            if (n == NGX_ERROR || n > 9) {
                *bad = "X-Priority must be an integer 0-9";
                return NGX_DECLINED;
            }
            props->_flags |= AMQP_BASIC_PRIORITY_FLAG;
            props->priority = (uint8_t) n;

        } else if (h[i].key.len == sizeof("X-Expiration") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "X-Expiration",
                                      h[i].key.len) == 0)
        {
            n = ngx_atoi(h[i].value.data, h[i].value.len);
            if (n == NGX_ERROR || n > 2147483647) {
                *bad = "X-Expiration must be a number of milliseconds";
                return NGX_DECLINED;
            }
            props->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
            props->expiration.bytes = h[i].value.data;
            props->expiration.len = h[i].value.len;

        } else if (h[i].key.len == sizeof("X-Delivery-Mode") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "X-Delivery-Mode",
                                      h[i].key.len) == 0)
        {
            if ((h[i].value.len == 1 && h[i].value.data[0] == '1')
                || (h[i].value.len == 9
                    && ngx_strncasecmp(h[i].value.data,
                                       (u_char *) "transient", 9) == 0))
            {
                props->delivery_mode = 1;

            } else if ((h[i].value.len == 1 && h[i].value.data[0] == '2')
                       || (h[i].value.len == 10
                           && ngx_strncasecmp(h[i].value.data,
                                              (u_char *) "persistent", 10)
                              == 0))
            {
                props->delivery_mode = 2;

            } else {
                *bad = "X-Delivery-Mode must be 1, 2, transient or "
                       "persistent";
                return NGX_DECLINED;
            }

        } else if (h[i].key.len > sizeof("X-Zmq-Header-") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "X-Zmq-Header-",
                                      sizeof("X-Zmq-Header-") - 1) == 0)
        {
            entries[j].key.bytes = h[i].key.data
                                   + sizeof("X-Zmq-Header-") - 1;
            entries[j].key.len = h[i].key.len - (sizeof("X-Zmq-Header-") - 1);
            entries[j].value.kind = AMQP_FIELD_KIND_UTF8;
            entries[j].value.value.bytes.bytes = h[i].value.data;
            entries[j].value.value.bytes.len = h[i].value.len;
            j++;
        }
    }

    if (j > 0) {
        props->_flags |= AMQP_BASIC_HEADERS_FLAG;
        props->headers.num_entries = (int) j;
        props->headers.entries = entries;
    }

    if (message_id->len == 0) {
        id = ngx_pnalloc(r->pool, ZGW_UUID_LEN + 1);
        if (id == NULL || ngx_http_zmq_uuid4(id) != NGX_OK) {
            return NGX_ERROR;
        }
        message_id->data = id;
        message_id->len = ZGW_UUID_LEN;
    }

    props->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    props->message_id.bytes = message_id->data;
    props->message_id.len = message_id->len;

    return NGX_OK;
}


/* ------------------------------------------------------ error responses */


/*
 * Errors that NGINX itself answers in a zmq_service location (a body over
 * zmq_max_body, a malformed chunked body, a body timeout, an internal
 * error) get the same JSON error body as the module's own answers.
 */
static ngx_int_t
ngx_http_zmq_header_filter(ngx_http_request_t *r)
{
    u_char                   *body, *p;
    ngx_buf_t                *b;
    ngx_uint_t                status;
    const char               *code, *message;
    ngx_http_zmq_ctx_t       *ctx;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);
    status = r->headers_out.status;

    if (zlcf == NULL || (zlcf->service.len == 0 && !zlcf->router)
        || status < 400 || r != r->main)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);
    if (ctx != NULL && ctx->own) {
        return ngx_http_next_header_filter(r);
    }

    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        code = "bad_request";
        message = "the request is malformed";
        break;
    case NGX_HTTP_REQUEST_TIME_OUT:
        code = "body_timeout";
        message = "the body did not arrive in time";
        break;
    case NGX_HTTP_LENGTH_REQUIRED:
        code = "length_required";
        message = "the request needs a Content-Length";
        break;
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "body_too_large";
        message = "the body is larger than the service accepts";
        break;
    default:
        code = "internal_error";
        message = "the gateway failed to handle the request";
        break;
    }

    ctx = ngx_http_zmq_get_ctx(r);
    body = ngx_pnalloc(r->pool, 256);
    b = ngx_calloc_buf(r->pool);
    if (ctx == NULL || body == NULL || b == NULL) {
        return NGX_ERROR;
    }

    ctx->json = ngx_alloc_chain_link(r->pool);
    if (ctx->json == NULL) {
        return NGX_ERROR;
    }

    p = ngx_snprintf(body, 256, "{\"error\":\"%s\",\"message\":\"%s\"}\n",
                     code, message);

    b->pos = body;
    b->last = p;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;
    ctx->json->buf = b;
    ctx->json->next = NULL;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = p - body;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_zmq_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t         *cl;
    ngx_http_zmq_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (ctx == NULL || ctx->json == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* swallow NGINX's page, send the JSON once */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->replaced) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->replaced = 1;

    return ngx_http_next_body_filter(r, ctx->json);
}


static ngx_int_t
ngx_http_zmq_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_zmq_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_zmq_body_filter;

    return NGX_OK;
}


/* -------------------------------------------------------- configuration */


static ngx_int_t
ngx_http_zmq_load_cache(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf)
{
    size_t        i;
    json_t       *doc;
    json_error_t  jerr;
    zgw_errors_t  errs;

    doc = json_load_file((char *) zmcf->cache_file.data, 0, &jerr);
    if (doc == NULL) {
        if (ngx_file_info(zmcf->cache_file.data, &(ngx_file_info_t) { 0 })
            != NGX_FILE_ERROR)
        {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "zmq_config: the cache \"%V\" is unreadable "
                               "(%s); starting without it",
                               &zmcf->cache_file, jerr.text);
        }
        return NGX_DECLINED;
    }

    zgw_errors_init(&errs);

    if (zgw_config_load_doc(zmcf->cfg, json_object_get(doc, "config"), 0,
                            &errs)
        != ZGW_OK)
    {
        for (i = 0; i < errs.n; i++) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "zmq_config: the cache \"%V\" is not a valid "
                               "configuration: %s", &zmcf->cache_file,
                               errs.msgs[i]);
        }

        zgw_errors_free(&errs);
        json_decref(doc);
        zgw_config_free(zmcf->cfg);
        zmcf->cfg = zgw_config_new();
        return NGX_DECLINED;
    }

    zmcf->cfg->version = json_integer_value(json_object_get(doc, "version"));
    zgw_errors_free(&errs);
    json_decref(doc);

    ngx_conf_log_error(NGX_LOG_INFO, cf, 0,
                       "zmq_config: starting from the cached configuration "
                       "version %L", zmcf->cfg->version);
    return NGX_OK;
}


static char *
ngx_http_zmq_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    char                *path;
    size_t               i;
    ngx_url_t            u;
    ngx_str_t           *value, url;
    zgw_errors_t         errs;
    ngx_file_info_t      fi;
    ngx_pool_cleanup_t  *cln;

    if (zmcf->source.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    zmcf->source = value[1];

    zmcf->cfg = zgw_config_new();
    if (zmcf->cfg == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        zgw_config_free(zmcf->cfg);
        zmcf->cfg = NULL;
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_zmq_config_cleanup;
    cln->data = zmcf;

    zgw_errors_init(&errs);

    if (value[1].len > 8
        && ngx_strncmp(value[1].data, "redis://", 8) == 0)
    {
        zmcf->type = NGX_HTTP_ZMQ_SOURCE_REDIS;

        path = ngx_pnalloc(cf->pool, value[1].len + 1);
        if (path == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_memcpy(path, value[1].data, value[1].len);
        path[value[1].len] = '\0';

        if (zgw_redis_addr_parse(&zmcf->redis, path, &errs) != ZGW_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                               zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            return NGX_CONF_ERROR;
        }

        /* the Redis host is resolved now, never in a worker */

        ngx_memzero(&u, sizeof(ngx_url_t));
        url.data = (u_char *) zmcf->redis.host;
        url.len = ngx_strlen(zmcf->redis.host);
        u.url = url;
        u.default_port = (in_port_t) zmcf->redis.port;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_config \"%V\": %s", &value[1],
                               u.err ? u.err : "cannot resolve the host");
            return NGX_CONF_ERROR;
        }

        zmcf->redis_addr = &u.addrs[0];
        return NGX_CONF_OK;
    }

    if (value[1].len <= 5 || ngx_strncmp(value[1].data, "file:", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_config \"%V\": expected file:PATH or "
                           "redis://host:port/db", &value[1]);
        return NGX_CONF_ERROR;
    }

    zmcf->type = NGX_HTTP_ZMQ_SOURCE_FILE;
    zmcf->path.data = value[1].data + 5;
    zmcf->path.len = value[1].len - 5;

    if (ngx_conf_full_name(cf->cycle, &zmcf->path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    path = ngx_pnalloc(cf->pool, zmcf->path.len + 1);
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(path, zmcf->path.data, zmcf->path.len);
    path[zmcf->path.len] = '\0';

    if (zgw_config_load_file(zmcf->cfg, path, 0, &errs) != ZGW_OK) {
        for (i = 0; i < errs.n; i++) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                               errs.msgs[i]);
        }

        zgw_errors_free(&errs);
        return NGX_CONF_ERROR;
    }

    zgw_errors_free(&errs);

    if (ngx_file_info(path, &fi) != NGX_FILE_ERROR) {
        zmcf->mtime = ngx_file_mtime(&fi);
    }

    /* a file's version is its modification time */
    zmcf->cfg->version = zmcf->mtime;

    zmcf->loaded = ngx_time();

    return ngx_http_zmq_prepare(cf, zmcf);
}


static ngx_int_t
ngx_http_zmq_resolve(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf,
    const char *host, in_port_t port)
{
    ngx_url_t                 u;
    ngx_uint_t                i;
    ngx_addr_t                addr;
    ngx_http_zmq_resolved_t  *res;

    if (ngx_parse_addr(cf->pool, &addr, (u_char *) host, ngx_strlen(host))
        == NGX_OK || ngx_strcmp(host, "localhost") == 0)
    {
        return NGX_OK;                  /* needs no resolving */
    }

    res = zmcf->resolved.elts;
    for (i = 0; i < zmcf->resolved.nelts; i++) {
        if (res[i].port == port && res[i].host.len == ngx_strlen(host)
            && ngx_strncmp(res[i].host.data, host, res[i].host.len) == 0)
        {
            return NGX_OK;
        }
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url.data = (u_char *) host;
    u.url.len = ngx_strlen(host);
    u.default_port = port;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_config: host \"%s\": %s", host,
                           u.err ? u.err : "cannot resolve");
        return NGX_ERROR;
    }

    res = ngx_array_push(&zmcf->resolved);
    if (res == NULL) {
        return NGX_ERROR;
    }

    res->host.len = ngx_strlen(host);
    res->host.data = ngx_pnalloc(cf->pool, res->host.len);
    if (res->host.data == NULL) {
        return NGX_ERROR;
    }
    ngx_memcpy(res->host.data, host, res->host.len);
    res->port = port;
    res->addrs = u.addrs;
    res->naddrs = u.naddrs;

    return NGX_OK;
}


/*
 * What the workers need from the configuration read at start: names
 * resolved (never in a worker), secrets that open with the key, and the
 * shared memory for the status counters.
 */
static char *
ngx_http_zmq_prepare(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf)
{
    char                     *secret, *copy, *colon;
    size_t                    i;
    json_t                   *def, *h;
    in_port_t                 port, hport;
    const char               *name;
    zgw_errors_t              errs;
    ngx_http_zmq_runtime_t   *rt;

    zgw_errors_init(&errs);

    json_object_foreach(zmcf->cfg->objs[ZGW_KIND_AMQP_DEF], name, def) {
        port = (in_port_t) json_integer_value(json_object_get(def, "port"));

        if (ngx_http_zmq_resolve(cf, zmcf,
                                 json_string_value(json_object_get(def,
                                                                   "host")),
                                 port)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        json_array_foreach(json_object_get(def, "hosts"), i, h) {
            copy = strdup(json_string_value(h));
            if (copy == NULL) {
                return NGX_CONF_ERROR;
            }

            hport = port;
            colon = strrchr(copy, ':');
            if (colon != NULL && strchr(copy, ']') < colon) {
                *colon = '\0';
                hport = (in_port_t) atoi(colon + 1);
            }

            if (copy[0] != '['
                && ngx_http_zmq_resolve(cf, zmcf, copy, hport) != NGX_OK)
            {
                free(copy);
                return NGX_CONF_ERROR;
            }

            free(copy);
        }

        /* a sealed password must open with the key, now */

        if (json_is_object(json_object_get(def, "password"))) {
            if (!zmcf->has_key) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zmq_config: amqp_def '%s': the password "
                                   "is sealed; set zmq_key_file before "
                                   "zmq_config", name);
                return NGX_CONF_ERROR;
            }

            secret = zgw_object_secret(ZGW_KIND_AMQP_DEF, def, "password",
                                       &zmcf->key, &errs);
            if (secret == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                                   zgw_errors_first(&errs));
                zgw_errors_free(&errs);
                return NGX_CONF_ERROR;
            }

            ngx_explicit_memzero(secret, ngx_strlen(secret));
            free(secret);
        }
    }

    /* a trial build reports what a worker would refuse, at nginx -t */

    rt = ngx_http_zmq_runtime_build(zmcf->cfg,
                                    zmcf->has_key ? &zmcf->key : NULL,
                                    &zmcf->resolved, cf->log, &errs);
    if (rt == NULL || errs.n) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                           zgw_errors_first(&errs));
        zgw_errors_free(&errs);
        if (rt != NULL) {
            ngx_destroy_pool(rt->pool);
        }
        return NGX_CONF_ERROR;
    }

    ngx_destroy_pool(rt->pool);
    zgw_errors_free(&errs);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_zmq_init_shm(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    zmcf->stats = ngx_slab_calloc(shpool, zmcf->slots
                                  * sizeof(ngx_http_zmq_worker_stats_t));
    if (zmcf->stats == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_zmq_config_cleanup(void *data)
{
    ngx_http_zmq_main_conf_t  *zmcf = data;

    zgw_config_free(zmcf->cfg);
    zmcf->cfg = NULL;
    ngx_explicit_memzero(&zmcf->key, sizeof(zgw_key_t));
}


static char *
ngx_http_zmq_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    char          path[NGX_MAX_PATH];
    ngx_str_t    *value;
    zgw_errors_t  errs;

    if (zmcf->key_file.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    zmcf->key_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &zmcf->key_file, 1) != NGX_OK
        || zmcf->key_file.len >= sizeof(path))
    {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(path, zmcf->key_file.data, zmcf->key_file.len);
    path[zmcf->key_file.len] = '\0';

    zgw_errors_init(&errs);

    if (zgw_key_load(&zmcf->key, path, &errs) != ZGW_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_key_file: %s",
                           zgw_errors_first(&errs));
        zgw_errors_free(&errs);
        return NGX_CONF_ERROR;
    }

    zmcf->has_key = 1;
    return NGX_CONF_OK;
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

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_zmq_router_handler;

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

        if (ngx_strcmp(kind, "publish") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_service \"%V\": service of kind '%s' "
                               "cannot be invoked from a location yet; "
                               "only 'publish'", &value[1], kind);
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
    zmcf->buffer_limit = NGX_CONF_UNSET_SIZE;
    zmcf->poll = NGX_CONF_UNSET_MSEC;

    return zmcf;
}


static char *
ngx_http_zmq_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    u_char            *p;
    ngx_str_t          name;
    ngx_core_conf_t   *ccf;

    ngx_conf_init_msec_value(zmcf->connect_timeout, 5000);
    ngx_conf_init_size_value(zmcf->buffer_limit, 16 * 1024 * 1024);
    ngx_conf_init_msec_value(zmcf->poll, 1000);

    if (zmcf->type == 0) {
        return NGX_CONF_OK;
    }

    if (zmcf->type == NGX_HTTP_ZMQ_SOURCE_REDIS) {
        /*
         * The directory of the snapshot cache is made (and given to the
         * worker user) by NGINX, like its temporary paths.
         */
        if (zmcf->cache_dir == NULL) {
            zmcf->cache_dir = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
            if (zmcf->cache_dir == NULL) {
                return NGX_CONF_ERROR;
            }
            ngx_str_set(&zmcf->cache_dir->name, "zmq_cache");
            if (ngx_conf_full_name(cf->cycle, &zmcf->cache_dir->name, 0)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
            if (ngx_add_path(cf, &zmcf->cache_dir) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
        }

        zmcf->cache_file.len = zmcf->cache_dir->name.len
                               + sizeof("/config.json") - 1;
        zmcf->cache_file.data = ngx_pnalloc(cf->pool,
                                            zmcf->cache_file.len + 1);
        if (zmcf->cache_file.data == NULL) {
            return NGX_CONF_ERROR;
        }
        p = ngx_cpymem(zmcf->cache_file.data, zmcf->cache_dir->name.data,
                       zmcf->cache_dir->name.len);
        ngx_memcpy(p, "/config.json", sizeof("/config.json"));

        if (ngx_http_zmq_load_cache(cf, zmcf) == NGX_OK
            && ngx_http_zmq_prepare(cf, zmcf) != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    /* counters per worker, for zmq_status */

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);
    zmcf->slots = (ccf->worker_processes != NGX_CONF_UNSET
                   && ccf->worker_processes > 0)
                  ? (ngx_uint_t) ccf->worker_processes
                  : NGX_HTTP_ZMQ_SLOTS_MAX;

    ngx_str_set(&name, "ngx_zmq_status");
    zmcf->shm = ngx_shared_memory_add(cf, &name,
                                      8 * ngx_pagesize + zmcf->slots
                                      * sizeof(ngx_http_zmq_worker_stats_t),
                                      &ngx_http_zmq_module);
    if (zmcf->shm == NULL) {
        return NGX_CONF_ERROR;
    }

    zmcf->shm->init = ngx_http_zmq_init_shm;
    zmcf->shm->data = zmcf;
    zmcf->shm->noreuse = 1;

    return NGX_CONF_OK;
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
    ngx_conf_merge_uint_value(conf->data_format, prev->data_format,
                              NGX_HTTP_ZMQ_FORMAT_NONE);

    if (conf->service.len || conf->router) {
        /*
         * zmq_max_body is the location's client_max_body_size, and bodies
         * up to it are read into memory: the message is copied into the
         * AMQP output buffer anyway, so no temporary file is written.
         */
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->client_max_body_size = conf->max_body;
        clcf->client_body_buffer_size = ngx_max(conf->max_body, 1);
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
    if (zmcf == NULL || zmcf->type == 0) {
        return NGX_OK;
    }

    ngx_http_zmq_amqp_configure(zmcf->connect_timeout, zmcf->buffer_limit);

    ngx_queue_init(&ngx_http_zmq_answers);
    ngx_http_zmq_answer_ev.handler = ngx_http_zmq_answer_handler;
    ngx_http_zmq_answer_ev.log = cycle->log;

    ws = NULL;
    if (zmcf->stats != NULL && ngx_worker < zmcf->slots) {
        ws = &zmcf->stats[ngx_worker];
        ngx_memzero(ws, sizeof(ngx_http_zmq_worker_stats_t));
        ws->pid = ngx_pid;
        ws->since = ngx_time();
        ws->state = zmcf->type == NGX_HTTP_ZMQ_SOURCE_FILE
                    ? NGX_HTTP_ZMQ_SRC_LOADED : NGX_HTTP_ZMQ_SRC_WAITING;
    }

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

    if (zmcf->type != NGX_HTTP_ZMQ_SOURCE_REDIS) {
        return NGX_OK;
    }

    ngx_memzero(&fc, sizeof(ngx_http_zmq_follow_conf_t));
    fc.addr = zmcf->redis_addr;
    fc.password.data = (u_char *) zmcf->redis.password;
    fc.password.len = ngx_strlen(zmcf->redis.password);
    fc.db = zmcf->redis.db;
    fc.timeout = 5000;
    fc.poll = zmcf->poll;
    fc.key = zmcf->has_key ? &zmcf->key : NULL;
    fc.resolved = &zmcf->resolved;
    fc.stats = ws;
    fc.cache = zmcf->cache_file;
    fc.log = cycle->log;

    return ngx_http_zmq_follow_start(&fc);
}


static void
ngx_http_zmq_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_zmq_follow_stop();
    ngx_http_zmq_amqp_exit_process(cycle);
    ngx_http_zmq_runtime_exit();
}
