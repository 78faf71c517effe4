
/*
 * ngx_http_zmq_module: the NGINX side of ngx_zmq.
 *
 * Directives:
 *     zmq_key_file PATH;          key that opens sealed secrets
 *     zmq_config file:PATH;       where the configuration comes from
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

#include "zgw_crypto.h"
#include "zgw_model.h"
#include "ngx_http_zmq_amqp.h"


#define NGX_HTTP_ZMQ_FORMAT_NONE  0
#define NGX_HTTP_ZMQ_FORMAT_JSON  1

#define NGX_HTTP_ZMQ_SLOTS_MAX    64


typedef struct {
    ngx_str_t                      name;
    ngx_flag_t                     active;
    ngx_http_zmq_outconn_conf_t   *outconn;
    ngx_str_t                      exchange;
    ngx_http_complex_value_t      *routing_key;
    ngx_flag_t                     mandatory;
    ngx_flag_t                     confirm;
    ngx_int_t                      delivery_mode;   /* -1: not set */
    ngx_int_t                      priority;
    ngx_int_t                      expiration;
    ngx_str_t                      content_type;
    ngx_array_t                    headers;         /* ngx_keyval_t */
} ngx_http_zmq_service_conf_t;


typedef struct {
    ngx_str_t                      source;     /* as written: "file:..." */
    ngx_str_t                      path;       /* the file, resolved */
    ngx_str_t                      key_file;
    zgw_config_t                  *cfg;
    time_t                         mtime;
    time_t                         loaded;

    ngx_array_t                    outconns;   /* outconn_conf_t */
    ngx_array_t                    services;   /* service_conf_t */

    ngx_msec_t                     connect_timeout;
    size_t                         buffer_limit;

    ngx_shm_zone_t                *shm;
    ngx_http_zmq_amqp_stats_t     *stats;      /* in the zone */
    ngx_uint_t                     slots;      /* workers in the zone */
} ngx_http_zmq_main_conf_t;


typedef struct {
    ngx_http_zmq_service_conf_t   *service;
    ngx_http_complex_value_t      *routing_key;
    ngx_msec_t                     confirm_timeout;
    size_t                         max_body;
    ngx_uint_t                     data_format;
} ngx_http_zmq_loc_conf_t;


typedef struct {
    ngx_http_request_t            *request;
    ngx_http_zmq_pub_t            *pub;        /* NULL once answered */
    ngx_str_t                      message_id;
    ngx_chain_t                   *json;       /* replaces an nginx page */
    unsigned                       own:1;      /* a response of ours */
    unsigned                       replaced:1;
} ngx_http_zmq_ctx_t;


static ngx_int_t ngx_http_zmq_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_zmq_service_handler(ngx_http_request_t *r);
static void ngx_http_zmq_body_handler(ngx_http_request_t *r);
static void ngx_http_zmq_publish_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_http_zmq_request_cleanup(void *data);
static ngx_int_t ngx_http_zmq_send_json(ngx_http_request_t *r,
    ngx_uint_t status, u_char *body, size_t len);
static ngx_int_t ngx_http_zmq_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, time_t retry_after);
static ngx_int_t ngx_http_zmq_properties(ngx_http_request_t *r,
    ngx_http_zmq_loc_conf_t *zlcf, amqp_basic_properties_t *props,
    ngx_str_t *message_id, const char **bad);

static char *ngx_http_zmq_config(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_zmq_compile(ngx_conf_t *cf,
    ngx_http_zmq_main_conf_t *zmcf);
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
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_zmq_main_conf_t, key_file),
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

    if (status == NGX_HTTP_NOT_ALLOWED) {
        ngx_str_set(&value, "POST, PUT");
        if (ngx_http_zmq_add_header(r, "Allow", &value) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_zmq_send_json(r, status, body, p - body);
}


/* --------------------------------------------------------------- status */


static ngx_int_t
ngx_http_zmq_status_handler(ngx_http_request_t *r)
{
    int                            k;
    char                          *text;
    size_t                         len;
    json_t                        *doc, *cfg, *objs, *workers, *w, *ocs,
                                  *o;
    ngx_int_t                      rc;
    ngx_uint_t                     i, s, n;
    ngx_http_zmq_main_conf_t      *zmcf;
    ngx_http_zmq_amqp_stats_t     *st;
    ngx_http_zmq_outconn_conf_t   *oc;

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

    if (zmcf->cfg == NULL) {
        json_object_set_new(doc, "config", json_null());
        goto send;
    }

    cfg = json_object();
    objs = json_object();

    json_object_set_new(cfg, "source", json_stringn((char *) zmcf->source.data,
                                                    zmcf->source.len));
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
    json_object_set_new(doc, "config", cfg);

    /* per worker and outgoing connection, from shared memory */

    workers = json_array();
    n = zmcf->outconns.nelts;
    oc = zmcf->outconns.elts;

    for (s = 0; zmcf->stats != NULL && s < zmcf->slots; s++) {
        st = zmcf->stats + s * n;

        if (n == 0 || st[0].pid == 0) {
            continue;
        }

        w = json_object();
        ocs = json_object();
        json_object_set_new(w, "worker", json_integer(s));
        json_object_set_new(w, "pid", json_integer(st[0].pid));

        for (i = 0; i < n; i++) {
            o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                          "state",
                          ngx_http_zmq_amqp_state_name(st[i].state),
                          "inflight", (json_int_t) st[i].inflight,
                          "published", (json_int_t) st[i].published,
                          "confirmed", (json_int_t) st[i].confirmed,
                          "nacked", (json_int_t) st[i].nacked,
                          "returned", (json_int_t) st[i].returned,
                          "timed_out", (json_int_t) st[i].timed_out,
                          "lost", (json_int_t) st[i].lost,
                          "rejected", (json_int_t) st[i].rejected,
                          "reconnects", (json_int_t) st[i].reconnects);
            json_object_set_new(ocs, (char *) oc[i].name.data, o);
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
    r->headers_out.content_length_n = len + 1;

    {
        u_char  *body;

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
}


/* -------------------------------------------------------------- publish */


static ngx_int_t
ngx_http_zmq_service_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT))) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_zmq_error(r, NGX_HTTP_NOT_ALLOWED,
                                  "method_not_allowed",
                                  "use POST or PUT", 0);
    }

    if (r->headers_in.content_length_n > (off_t) zlcf->max_body) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "zmq: body of %O bytes is larger than zmq_max_body "
                      "%uz", r->headers_in.content_length_n,
                      zlcf->max_body);

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
    ngx_http_zmq_loc_conf_t       *zlcf;
    ngx_http_zmq_amqp_conn_t      *conn;
    ngx_http_zmq_service_conf_t   *svc;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);
    svc = zlcf->service;

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

    if (len > (off_t) zlcf->max_body) {
        r->keepalive = 0;
        rc = ngx_http_zmq_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                "body_too_large", "the body is larger than "
                                "the service accepts", 0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (zlcf->data_format == NGX_HTTP_ZMQ_FORMAT_JSON) {
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

    if (!svc->active || !svc->outconn->active) {
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "service_inactive", "the service or its "
                                "outgoing connection is not active", 0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ctx = ngx_http_zmq_get_ctx(r);
    props = ngx_pcalloc(r->pool, sizeof(amqp_basic_properties_t));
    if (ctx == NULL || props == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    bad = NULL;
    rc = ngx_http_zmq_properties(r, zlcf, props, &ctx->message_id, &bad);
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
        if (ngx_http_complex_value(r, zlcf->routing_key, &rk) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

    } else if (svc->routing_key != NULL) {
        if (ngx_http_complex_value(r, svc->routing_key, &rk) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

    } else {
        ngx_str_null(&rk);
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

    conn = ngx_http_zmq_amqp_get(svc->outconn->index);
    if (conn == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

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


static void
ngx_http_zmq_publish_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    u_char               *body, *p;
    size_t                len;
    ngx_int_t             rc;
    ngx_connection_t     *c;
    ngx_http_request_t   *r;
    ngx_http_zmq_ctx_t   *ctx = pub->data;

    r = ctx->request;
    c = r->connection;
    ctx->pub = NULL;

    switch (result) {

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
                        result == NGX_HTTP_ZMQ_PUB_ACKED ? "true" : "false");
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
ngx_http_zmq_properties(ngx_http_request_t *r, ngx_http_zmq_loc_conf_t *zlcf,
    amqp_basic_properties_t *props, ngx_str_t *message_id, const char **bad)
{
    u_char                        *id;
    ngx_int_t                      n;
    ngx_uint_t                     i, j, nh;
    ngx_list_part_t               *part;
    ngx_keyval_t                  *kv;
    ngx_table_elt_t               *h;
    amqp_table_entry_t            *entries;
    ngx_http_zmq_service_conf_t   *svc;
    ngx_http_zmq_outconn_conf_t   *oc;

    svc = zlcf->service;
    oc = svc->outconn;

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
        if (id == NULL || zgw_uuid4((char *) id) != ZGW_OK) {
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

    if (zlcf == NULL || zlcf->service == NULL || status < 400
        || r != r->main)
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


static char *
ngx_http_zmq_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    char                *path;
    size_t               i;
    ngx_str_t           *value;
    zgw_errors_t         errs;
    ngx_file_info_t      fi;
    ngx_pool_cleanup_t  *cln;

    if (zmcf->source.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    zmcf->source = value[1];

    if (value[1].len > 8
        && ngx_strncmp(value[1].data, "redis://", 8) == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_config \"%V\": redis:// sources are not "
                           "supported by this version; use file:PATH",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[1].len <= 5 || ngx_strncmp(value[1].data, "file:", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_config \"%V\": expected file:PATH",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

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
    cln->data = zmcf->cfg;

    zgw_errors_init(&errs);

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

    zmcf->loaded = ngx_time();

    return ngx_http_zmq_compile(cf, zmcf);
}


static ngx_int_t
ngx_http_zmq_str(ngx_conf_t *cf, json_t *obj, const char *field,
    ngx_str_t *out)
{
    const char  *s;

    s = json_string_value(json_object_get(obj, field));
    if (s == NULL) {
        ngx_str_null(out);
        return NGX_OK;
    }

    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(cf->pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, out->len + 1);
    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_int(json_t *obj, const char *field, ngx_int_t def)
{
    json_t  *v;

    v = json_object_get(obj, field);
    return json_is_integer(v) ? (ngx_int_t) json_integer_value(v) : def;
}


static ngx_int_t
ngx_http_zmq_add_addr(ngx_conf_t *cf, ngx_array_t *addrs, const char *host,
    in_port_t port, ngx_str_t *outconn)
{
    ngx_url_t    u;
    ngx_uint_t   i;
    ngx_addr_t  *a;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url.data = (u_char *) host;
    u.url.len = ngx_strlen(host);
    u.default_port = port;

    /* names are resolved here, at configuration time, never in a worker */
    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_config: amqp_outconn '%V': host \"%s\": %s",
                           outconn, host, u.err ? u.err : "invalid");
        return NGX_ERROR;
    }

    for (i = 0; i < u.naddrs; i++) {
        a = ngx_array_push(addrs);
        if (a == NULL) {
            return NGX_ERROR;
        }
        *a = u.addrs[i];
    }

    return NGX_OK;
}


static char *
ngx_http_zmq_compile(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf)
{
    char                              *secret, keypath[NGX_MAX_PATH];
    size_t                             i;
    json_t                            *obj, *def, *hosts, *h, *hdrs;
    zgw_key_t                          key;
    ngx_str_t                          name;
    ngx_uint_t                         n, slots;
    ngx_array_t                        addrs;
    const char                        *oname, *kind, *hk;
    zgw_errors_t                       errs;
    ngx_keyval_t                      *kv;
    ngx_core_conf_t                   *ccf;
    ngx_http_zmq_service_conf_t       *svc;
    ngx_http_zmq_outconn_conf_t       *oc, *ocs;
    ngx_http_compile_complex_value_t   ccv;

    zgw_errors_init(&errs);

    if (zmcf->key_file.len) {
        if (ngx_conf_full_name(cf->cycle, &zmcf->key_file, 1) != NGX_OK
            || zmcf->key_file.len >= sizeof(keypath))
        {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(keypath, zmcf->key_file.data, zmcf->key_file.len);
        keypath[zmcf->key_file.len] = '\0';

        if (zgw_key_load(&key, keypath, &errs) != ZGW_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_key_file: %s",
                               zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            return NGX_CONF_ERROR;
        }
    }

    n = zgw_config_count(zmcf->cfg, ZGW_KIND_AMQP_OUTCONN);

    if (ngx_array_init(&zmcf->outconns, cf->pool, n ? n : 1,
                       sizeof(ngx_http_zmq_outconn_conf_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    json_object_foreach(zmcf->cfg->objs[ZGW_KIND_AMQP_OUTCONN], oname, obj) {
        oc = ngx_array_push(&zmcf->outconns);
        if (oc == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(oc, sizeof(ngx_http_zmq_outconn_conf_t));
        oc->index = zmcf->outconns.nelts - 1;

        def = zgw_config_get(zmcf->cfg, ZGW_KIND_AMQP_DEF,
                             json_string_value(json_object_get(obj, "def")));

        if (ngx_http_zmq_str(cf, obj, "name", &oc->name) != NGX_OK
            || ngx_http_zmq_str(cf, obj, "def", &oc->def_name) != NGX_OK
            || ngx_http_zmq_str(cf, def, "vhost", &oc->vhost) != NGX_OK
            || ngx_http_zmq_str(cf, def, "username", &oc->username) != NGX_OK
            || ngx_http_zmq_str(cf, obj, "content_type", &oc->content_type)
               != NGX_OK
            || ngx_http_zmq_str(cf, obj, "content_encoding",
                                &oc->content_encoding) != NGX_OK
            || ngx_http_zmq_str(cf, obj, "user_id", &oc->user_id) != NGX_OK
            || ngx_http_zmq_str(cf, obj, "app_id", &oc->app_id) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        oc->active = json_is_true(json_object_get(obj, "is_active"))
                     && json_is_true(json_object_get(def, "is_active"));
        oc->heartbeat = ngx_http_zmq_int(def, "heartbeat", 30);
        oc->frame_max = ngx_http_zmq_int(def, "frame_max", 131072);
        oc->delivery_mode = ngx_http_zmq_int(obj, "delivery_mode", 2);
        oc->priority = ngx_http_zmq_int(obj, "priority", -1);
        oc->expiration = ngx_http_zmq_int(obj, "expiration", -1);
        oc->max_inflight = ngx_http_zmq_int(obj, "max_inflight", 1024);

        if (json_is_true(json_object_get(def, "tls")) && oc->active) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "zmq_config: amqp_def '%V' asks for TLS, which "
                               "the gateway does not support yet; outgoing "
                               "connection '%V' stays inactive",
                               &oc->def_name, &oc->name);
            oc->active = 0;
        }

        /* the password: clear in a file, or sealed with the key file */

        if (json_is_object(json_object_get(def, "password"))
            && !zmcf->key_file.len)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_config: amqp_def '%V': the password is "
                               "sealed; set zmq_key_file before zmq_config",
                               &oc->def_name);
            return NGX_CONF_ERROR;
        }

        if (json_object_get(def, "password") != NULL) {
            secret = zgw_object_secret(ZGW_KIND_AMQP_DEF, def, "password",
                                       zmcf->key_file.len ? &key : NULL,
                                       &errs);
            if (secret == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                                   zgw_errors_first(&errs));
                zgw_errors_free(&errs);
                return NGX_CONF_ERROR;
            }

            oc->password.len = ngx_strlen(secret);
            oc->password.data = ngx_pnalloc(cf->pool, oc->password.len);
            if (oc->password.data == NULL) {
                free(secret);
                return NGX_CONF_ERROR;
            }
            ngx_memcpy(oc->password.data, secret, oc->password.len);
            ngx_explicit_memzero(secret, oc->password.len);
            free(secret);

        } else {
            /* a definition without a password cannot log in */
            ngx_str_set(&oc->password, "");
        }

        /* addresses: host, then the failover list */

        if (ngx_array_init(&addrs, cf->pool, 2, sizeof(ngx_addr_t))
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_zmq_add_addr(cf, &addrs,
                                  json_string_value(json_object_get(def,
                                                                    "host")),
                                  (in_port_t) ngx_http_zmq_int(def, "port",
                                                               5672),
                                  &oc->name)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        hosts = json_object_get(def, "hosts");
        json_array_foreach(hosts, i, h) {
            if (ngx_http_zmq_add_addr(cf, &addrs, json_string_value(h),
                                      (in_port_t) ngx_http_zmq_int(def,
                                                                   "port",
                                                                   5672),
                                      &oc->name)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
        }

        oc->addrs = addrs.elts;
        oc->naddrs = addrs.nelts;
    }

    if (zmcf->key_file.len) {
        ngx_explicit_memzero(&key, sizeof(key));
    }

    /* services of kind "publish" */

    n = zgw_config_count(zmcf->cfg, ZGW_KIND_SERVICE);

    if (ngx_array_init(&zmcf->services, cf->pool, n ? n : 1,
                       sizeof(ngx_http_zmq_service_conf_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ocs = zmcf->outconns.elts;

    json_object_foreach(zmcf->cfg->objs[ZGW_KIND_SERVICE], oname, obj) {
        kind = json_string_value(json_object_get(obj, "kind"));
        if (kind == NULL || ngx_strcmp(kind, "publish") != 0) {
            continue;
        }

        svc = ngx_array_push(&zmcf->services);
        if (svc == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(svc, sizeof(ngx_http_zmq_service_conf_t));

        if (ngx_http_zmq_str(cf, obj, "name", &svc->name) != NGX_OK
            || ngx_http_zmq_str(cf, obj, "exchange", &svc->exchange) != NGX_OK
            || ngx_http_zmq_str(cf, obj, "content_type", &svc->content_type)
               != NGX_OK
            || ngx_http_zmq_str(cf, obj, "outconn", &name) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < zmcf->outconns.nelts; i++) {
            if (ocs[i].name.len == name.len
                && ngx_strncmp(ocs[i].name.data, name.data, name.len) == 0)
            {
                svc->outconn = &ocs[i];
                break;
            }
        }

        if (svc->outconn == NULL) {
            return NGX_CONF_ERROR;      /* checked by the model already */
        }

        svc->active = json_is_true(json_object_get(obj, "is_active"));
        svc->mandatory = json_is_true(json_object_get(obj, "mandatory"));
        svc->confirm = !json_is_false(json_object_get(obj, "confirm"));
        svc->delivery_mode = ngx_http_zmq_int(obj, "delivery_mode", -1);
        svc->priority = ngx_http_zmq_int(obj, "priority", -1);
        svc->expiration = ngx_http_zmq_int(obj, "expiration", -1);

        /* a routing key with $variables is an NGINX complex value */
        if (ngx_http_zmq_str(cf, obj, "routing_key", &name) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        svc->routing_key = ngx_pcalloc(cf->pool,
                                       sizeof(ngx_http_complex_value_t));
        if (svc->routing_key == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = &name;
        ccv.complex_value = svc->routing_key;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_config: service '%V': routing_key "
                               "\"%V\" is not a valid NGINX value",
                               &svc->name, &name);
            return NGX_CONF_ERROR;
        }

        hdrs = json_object_get(obj, "headers");
        if (ngx_array_init(&svc->headers, cf->pool,
                           json_object_size(hdrs) ? json_object_size(hdrs)
                                                  : 1,
                           sizeof(ngx_keyval_t))
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        json_object_foreach(hdrs, hk, h) {
            kv = ngx_array_push(&svc->headers);
            if (kv == NULL) {
                return NGX_CONF_ERROR;
            }
            name.data = (u_char *) hk;
            name.len = ngx_strlen(hk);
            kv->key.len = name.len;
            kv->key.data = ngx_pstrdup(cf->pool, &name);
            if (kv->key.data == NULL
                || ngx_http_zmq_str(cf, hdrs, hk, &kv->value) != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
        }
    }

    /* counters per worker and outgoing connection, for zmq_status */

    if (zmcf->outconns.nelts) {
        ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                               ngx_core_module);
        slots = (ccf->worker_processes != NGX_CONF_UNSET
                 && ccf->worker_processes > 0)
                ? (ngx_uint_t) ccf->worker_processes : NGX_HTTP_ZMQ_SLOTS_MAX;
        zmcf->slots = slots;

        ngx_str_set(&name, "ngx_zmq_status");
        zmcf->shm = ngx_shared_memory_add(cf, &name,
                                          8 * ngx_pagesize + slots
                                          * zmcf->outconns.nelts
                                          * sizeof(ngx_http_zmq_amqp_stats_t),
                                          &ngx_http_zmq_module);
        if (zmcf->shm == NULL) {
            return NGX_CONF_ERROR;
        }

        zmcf->shm->init = ngx_http_zmq_init_shm;
        zmcf->shm->data = zmcf;
        zmcf->shm->noreuse = 1;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_zmq_init_shm(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    zmcf->stats = ngx_slab_calloc(shpool, zmcf->slots * zmcf->outconns.nelts
                                          * sizeof(ngx_http_zmq_amqp_stats_t));
    if (zmcf->stats == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_zmq_config_cleanup(void *data)
{
    zgw_config_free(data);
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
ngx_http_zmq_service(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_loc_conf_t *zlcf = conf;

    json_t                       *obj;
    ngx_str_t                    *value;
    ngx_uint_t                    i;
    const char                   *kind;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_zmq_main_conf_t     *zmcf;
    ngx_http_zmq_service_conf_t  *svc;

    if (zlcf->service != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    zmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_zmq_module);

    if (zmcf->cfg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_service \"%V\": no zmq_config before this "
                           "directive", &value[1]);
        return NGX_CONF_ERROR;
    }

    svc = zmcf->services.elts;

    for (i = 0; i < zmcf->services.nelts; i++) {
        if (svc[i].name.len == value[1].len
            && ngx_strncmp(svc[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            zlcf->service = &svc[i];
            break;
        }
    }

    if (zlcf->service == NULL) {
        obj = zgw_config_get(zmcf->cfg, ZGW_KIND_SERVICE,
                             (char *) value[1].data);
        kind = json_string_value(json_object_get(obj, "kind"));

        if (kind != NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_service \"%V\": service of kind '%s' "
                               "cannot be invoked from a location yet; "
                               "only 'publish'", &value[1], kind);
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_service \"%V\": no such service in %V",
                               &value[1], &zmcf->source);
        }

        return NGX_CONF_ERROR;
    }

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
     *     zmcf->source = { 0, NULL };
     *     zmcf->path = { 0, NULL };
     *     zmcf->key_file = { 0, NULL };
     *     zmcf->cfg = NULL;
     *     zmcf->shm = NULL;
     */

    zmcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    zmcf->buffer_limit = NGX_CONF_UNSET_SIZE;

    return zmcf;
}


static char *
ngx_http_zmq_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    ngx_conf_init_msec_value(zmcf->connect_timeout, 5000);
    ngx_conf_init_size_value(zmcf->buffer_limit, 16 * 1024 * 1024);

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
     *     zlcf->service = NULL;
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

    if (conf->service != NULL) {
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
    ngx_http_zmq_main_conf_t   *zmcf;
    ngx_http_zmq_amqp_stats_t  *stats;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    zmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_zmq_module);
    if (zmcf == NULL || zmcf->cfg == NULL) {
        return NGX_OK;
    }

    stats = NULL;
    if (zmcf->stats != NULL && ngx_worker < zmcf->slots) {
        stats = zmcf->stats + ngx_worker * zmcf->outconns.nelts;
    }

    return ngx_http_zmq_amqp_init_process(cycle, &zmcf->outconns, stats,
                                          zmcf->connect_timeout,
                                          zmcf->buffer_limit);
}


static void
ngx_http_zmq_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_zmq_amqp_exit_process(cycle);
}
