
/*
 * ngx_http_zmq_module: JSON answers, and the filters that turn the error
 * pages NGINX produces in a zmq location into JSON error bodies.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_zmq_module.h"


static ngx_int_t ngx_http_zmq_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_zmq_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_http_zmq_ctx_t *
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


ngx_int_t
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


ngx_int_t
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
ngx_int_t
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


ngx_int_t
ngx_http_zmq_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_zmq_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_zmq_body_filter;

    return NGX_OK;
}
