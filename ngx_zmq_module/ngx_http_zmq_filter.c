
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


typedef struct {
    ngx_uint_t                     status;
    const char                    *code;
    const char                    *message;
} ngx_http_zmq_error_page_t;


/* NGINX's error pages as JSON; unlisted: client_error or internal_error */
static ngx_http_zmq_error_page_t  ngx_http_zmq_error_pages[] = {
    { NGX_HTTP_BAD_REQUEST, "bad_request", "the request is malformed" },
    { NGX_HTTP_UNAUTHORIZED, "unauthorized",
      "the request needs authentication" },
    { NGX_HTTP_FORBIDDEN, "forbidden", "the request is not allowed" },
    { NGX_HTTP_NOT_FOUND, "not_found", "nothing is served at this path" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
      "the method is not allowed here" },
    { NGX_HTTP_REQUEST_TIME_OUT, "body_timeout",
      "the body did not arrive in time" },
    { NGX_HTTP_LENGTH_REQUIRED, "length_required",
      "the request needs a Content-Length" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "body_too_large",
      "the body is larger than the service accepts" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "uri_too_long",
      "the request line is too long" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "too_many_requests",
      "too many requests; try again later" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
      "the gateway failed to handle the request" },
    { NGX_HTTP_NOT_IMPLEMENTED, "not_implemented",
      "the request needs what the gateway does not implement (such as a "
      "Transfer-Encoding other than chunked)" },
    { NGX_HTTP_BAD_GATEWAY, "bad_gateway",
      "the gateway got an invalid answer upstream" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "service_unavailable",
      "the service is unavailable; try again later" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "gateway_timeout",
      "the gateway timed out upstream" },
    { NGX_HTTP_VERSION_NOT_SUPPORTED, "http_version_not_supported",
      "the HTTP version is not supported" },
    { 0, NULL, NULL }
};


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


/* doc (then released) as compact JSON with sorted keys and a newline */
ngx_int_t
ngx_http_zmq_send_doc(ngx_http_request_t *r, ngx_uint_t status,
    json_t *doc)
{
    char    *text;
    u_char  *body;
    size_t   len;

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

    return ngx_http_zmq_send_json(r, status, body, len + 1);
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
 * Errors that NGINX itself answers get the same JSON error body as the
 * module's own answers: always in a zmq_service or zmq_router location (a
 * body over zmq_max_body, a malformed chunked body, an internal error),
 * and wherever zmq_json_errors is on, which includes the errors NGINX
 * raises before it has chosen a location (a bad request line or header, an
 * unsupported Transfer-Encoding) when it is on in the server.
 */
static ngx_int_t
ngx_http_zmq_header_filter(ngx_http_request_t *r)
{
    u_char                   *body, *p;
    ngx_buf_t                *b;
    ngx_uint_t                status, i;
    const char               *code, *message;
    ngx_http_zmq_ctx_t       *ctx;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);
    status = r->headers_out.status;

    if (zlcf == NULL
        || (zlcf->service.len == 0 && !zlcf->router && zlcf->json_errors != 1)
        || status < 400 || r != r->main)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);
    if (ctx != NULL && ctx->own) {
        return ngx_http_next_header_filter(r);
    }

    if (status < 500) {
        code = "client_error";
        message = "the request was refused";

    } else {
        code = "internal_error";
        message = "the gateway failed to handle the request";
    }

    for (i = 0; ngx_http_zmq_error_pages[i].status; i++) {
        if (ngx_http_zmq_error_pages[i].status == status) {
            code = ngx_http_zmq_error_pages[i].code;
            message = ngx_http_zmq_error_pages[i].message;
            break;
        }
    }

    ctx = ngx_http_zmq_get_ctx(r);
    body = ngx_pnalloc(r->pool, 512);
    b = ngx_calloc_buf(r->pool);
    if (ctx == NULL || body == NULL || b == NULL) {
        return NGX_ERROR;
    }

    ctx->json = ngx_alloc_chain_link(r->pool);
    if (ctx->json == NULL) {
        return NGX_ERROR;
    }

    p = ngx_snprintf(body, 512, "{\"error\":\"%s\",\"message\":\"%s\"}\n",
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
