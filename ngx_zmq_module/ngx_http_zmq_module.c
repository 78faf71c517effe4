
/*
 * ngx_http_zmq_module: the NGINX side of ngx_zmq.
 *
 * Directives:
 *     zmq_config file:PATH;       where the configuration comes from
 *     zmq_status;                 a location answering the module's state
 *                                 as JSON
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "zgw_model.h"


typedef struct {
    ngx_str_t        source;        /* as written: "file:/etc/..." */
    ngx_str_t        path;          /* the file, resolved */
    zgw_config_t    *cfg;
    time_t           mtime;
    time_t           loaded;
} ngx_http_zmq_main_conf_t;


static ngx_int_t ngx_http_zmq_status_handler(ngx_http_request_t *r);
static char *ngx_http_zmq_config(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_zmq_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_zmq_config_cleanup(void *data);
static void *ngx_http_zmq_create_main_conf(ngx_conf_t *cf);


static ngx_command_t  ngx_http_zmq_commands[] = {

    { ngx_string("zmq_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_zmq_config,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("zmq_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_zmq_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_zmq_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_zmq_create_main_conf,         /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_zmq_module = {
    NGX_MODULE_V1,
    &ngx_http_zmq_module_ctx,              /* module context */
    ngx_http_zmq_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_zmq_status_handler(ngx_http_request_t *r)
{
    int                        k;
    char                      *text;
    size_t                     len;
    json_t                    *doc, *cfg, *objs;
    ngx_buf_t                 *b;
    ngx_int_t                  rc;
    ngx_chain_t                out;
    ngx_http_zmq_main_conf_t  *zmcf;

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

    if (zmcf->cfg != NULL) {
        cfg = json_object();
        objs = json_object();

        json_object_set_new(cfg, "source",
                            json_stringn((char *) zmcf->source.data,
                                         zmcf->source.len));
        json_object_set_new(cfg, "path",
                            json_stringn((char *) zmcf->path.data,
                                         zmcf->path.len));
        json_object_set_new(cfg, "state", json_string("loaded"));
        json_object_set_new(cfg, "version", json_integer(zmcf->mtime));
        json_object_set_new(cfg, "loaded_at", json_integer(zmcf->loaded));

        for (k = 0; k < ZGW_KIND_MAX; k++) {
            json_object_set_new(objs, zgw_kind_name(k),
                                json_integer(zgw_config_count(zmcf->cfg,
                                                              k)));
        }

        json_object_set_new(cfg, "objects", objs);
        json_object_set_new(doc, "config", cfg);

    } else {
        json_object_set_new(doc, "config", json_null());
    }

    text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, text, len);
    *b->last++ = '\n';
    free(text);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
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


static char *
ngx_http_zmq_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    char               *path;
    size_t              i;
    ngx_str_t          *value;
    zgw_errors_t        errs;
    ngx_file_info_t     fi;
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

    return NGX_CONF_OK;
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
     *     zmcf->cfg = NULL;
     */

    return zmcf;
}
