
/*
 * ngx_http_zmq_module: publishing a request's body. The zmq_service and
 * zmq_router handlers read the body, check it (size, JSON), publish it
 * on the service's broker connection and answer once the broker has
 * confirmed; answers are paced, a pass of the event loop at a time.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "zgw_amqp_check.h"
#include "ngx_http_zmq_module.h"


/* requests answered per pass of the event loop, see the answers queue */
#ifndef NGX_HTTP_ZMQ_ANSWERS_PER_PASS
#define NGX_HTTP_ZMQ_ANSWERS_PER_PASS  64
#endif

/* file parts of a body are read back this much at a time */
#define NGX_HTTP_ZMQ_BODY_READ  16384


typedef struct {
    ngx_chain_t                   *cl;         /* the buffer being read */
    off_t                          offset;     /* read of it so far */
    u_char                        *pos;        /* unread bytes */
    u_char                        *last;
    u_char                        *buf;        /* for file parts */
    ngx_pool_t                    *pool;
    ngx_log_t                     *log;
    unsigned                       failed:1;
} ngx_http_zmq_body_reader_t;


static ngx_int_t ngx_http_zmq_start(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx);
static void ngx_http_zmq_body_timeout_handler(ngx_http_request_t *r);
static size_t ngx_http_zmq_body_read(void *buffer, size_t size, void *data);
static ngx_int_t ngx_http_zmq_body_json_ok(ngx_http_request_t *r, off_t len);
static void ngx_http_zmq_body_handler(ngx_http_request_t *r);
static void ngx_http_zmq_publish_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_http_zmq_answer_handler(ngx_event_t *ev);
static void ngx_http_zmq_answer(ngx_http_zmq_ctx_t *ctx);
static void ngx_http_zmq_request_cleanup(void *data);
static ngx_int_t ngx_http_zmq_stomp_service(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_http_zmq_service_t *svc);
static void ngx_http_zmq_stomp_done(ngx_zmq_stomp_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_http_zmq_stomp_cleanup(void *data);
static ngx_int_t ngx_http_zmq_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_request_body_filter_pt  ngx_http_zmq_next_request_body_filter;


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

    /* the body filter counts what arrives against ctx->max_body */
    ctx->received = 0;
    ctx->limit_body = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_zmq_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    if (rc == NGX_AGAIN
#if (NGX_HTTP_V2)
        && r->stream == NULL
#endif
       )
    {
        /* the rest of the body arrives later: watch for its timeout */
        ctx->read_body = r->read_event_handler;
        r->read_event_handler = ngx_http_zmq_body_timeout_handler;
    }

    /*
     * The reference ngx_http_read_client_request_body() took keeps the
     * request alive until the body handler's answer finalizes it, which
     * for a publish is when the broker confirms.
     */
    return NGX_DONE;
}


ngx_int_t
ngx_http_zmq_service_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 allow;
    ngx_http_zmq_ctx_t       *ctx;
    ngx_http_zmq_service_t   *svc;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    svc = ngx_http_zmq_runtime_service(&zlcf->service);

    if (svc != NULL && svc->type == NGX_HTTP_ZMQ_SVC_PAGE) {
        ctx = ngx_http_zmq_get_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_zmq_page_handler(r, ctx, svc);
    }

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
    ctx->batch_ok = zlcf->batch ? 1 : 0;
    ctx->max_batch = zlcf->max_batch;
    ctx->batch_envelope = zlcf->batch_envelope ? 1 : 0;

    return ngx_http_zmq_start(r, ctx);
}


ngx_int_t
ngx_http_zmq_router_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 allow;
    ngx_http_zmq_ctx_t       *ctx;
    ngx_http_zmq_route_t     *route;
    ngx_http_zmq_service_t   *svc;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    ctx = ngx_http_zmq_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the access phase looked it up already when it found one */
    route = ctx->route;
    rc = NGX_OK;

    if (route == NULL) {
        rc = ngx_http_zmq_runtime_route(r, &route, ctx->params,
                                        &ctx->nparams, &allow);
    }

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

    if (route->security.len && ngx_http_zmq_auth_headers(r) == NULL) {
        /* cannot happen: the access phase checks every routed request */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "zmq: REST channel \"%V\" reached without its "
                      "security check", &route->name);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* zmq_metrics counts the request under the channel's name */
    ctx->route = route;

    svc = ngx_http_zmq_runtime_service(&route->service);

    if (svc != NULL && svc->type == NGX_HTTP_ZMQ_SVC_PAGE) {
        return ngx_http_zmq_page_handler(r, ctx, svc);
    }

    ctx->service.len = route->service.len;
    ctx->service.data = ngx_pstrdup(r->pool, &route->service);
    ctx->max_body = ngx_min(route->max_body, zlcf->max_body);
    ctx->data_format = route->data_format;
    ctx->batch_ok = route->batch ? 1 : 0;
    ctx->max_batch = route->max_batch;
    ctx->batch_envelope = route->batch_envelope ? 1 : 0;

    /* the params point into the URI, which lives as long as the request */

    return ngx_http_zmq_start(r, ctx);
}


/*
 * NGINX's own body reader closes the connection without an answer when
 * client_body_timeout expires; the client gets a JSON 408 instead. Until
 * the body is read, this handler stands in front of NGINX's; once it is,
 * NGINX replaces it.
 */

static void
ngx_http_zmq_body_timeout_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_zmq_ctx_t  *ctx;

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (!c->read->timedout) {
        ctx->read_body(r);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                  "zmq: client timed out while sending the body");

    /*
     * The rest of the body may still come: answer, then close after a
     * lingering read so that the answer is not lost to a reset.
     */
    c->read->timedout = 0;
    r->read_event_handler = ngx_http_block_reading;
    r->keepalive = 0;
    r->lingering_close = 1;

    rc = ngx_http_zmq_error(r, NGX_HTTP_REQUEST_TIME_OUT, "body_timeout",
                            "the body did not arrive in time", 0);
    ngx_http_finalize_request(r, rc);
}


/*
 * A request body, as NGINX hands it over, is a chain of buffers of any
 * shape: memory (read with the headers or after them), a temporary file
 * (a body larger than client_body_buffer_size, client_body_in_file_only),
 * and empty buffers (the end-of-body marker a chunked body ends with).
 * A buffer counts by what ngx_buf_size() counts, as the publish takes it:
 * its memory if it has any, else its file part. The reader walks the chain
 * without changing it, and reads file parts through a small buffer.
 */

off_t
ngx_http_zmq_request_body_length(ngx_http_request_t *r)
{
    off_t         len;
    ngx_chain_t  *cl;

    len = 0;

    if (r->request_body == NULL) {
        return 0;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    return len;
}


/* jansson's json_load_callback_t: the next bytes of the body, 0 at its end */

static size_t
ngx_http_zmq_body_read(void *buffer, size_t size, void *data)
{
    ngx_http_zmq_body_reader_t *rd = data;

    off_t       left;
    size_t      n;
    ssize_t     got;
    ngx_buf_t  *b;

    for ( ;; ) {

        if (rd->pos < rd->last) {
            n = ngx_min(size, (size_t) (rd->last - rd->pos));
            ngx_memcpy(buffer, rd->pos, n);
            rd->pos += n;
            return n;
        }

        if (rd->cl == NULL) {
            return 0;
        }

        b = rd->cl->buf;

        if (ngx_buf_in_memory(b)) {
            left = (b->last - b->pos) - rd->offset;

            if (left > 0) {
                rd->pos = b->pos + rd->offset;
                rd->last = b->last;
                rd->offset += left;
                continue;
            }

        } else if (b->file_last - b->file_pos - rd->offset > 0) {
            if (b->file == NULL) {
                ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                              "zmq: a body buffer with a size but no file");
                rd->failed = 1;
                return (size_t) -1;
            }

            if (rd->buf == NULL) {
                rd->buf = ngx_pnalloc(rd->pool, NGX_HTTP_ZMQ_BODY_READ);
                if (rd->buf == NULL) {
                    rd->failed = 1;
                    return (size_t) -1;
                }
            }

            n = (size_t) ngx_min((off_t) NGX_HTTP_ZMQ_BODY_READ,
                                 b->file_last - b->file_pos - rd->offset);

            got = ngx_read_file(b->file, rd->buf, n,
                                b->file_pos + rd->offset);
            if (got != (ssize_t) n) {
                ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                              "zmq: could not read the body back from "
                              "\"%V\"", &b->file->name);
                rd->failed = 1;
                return (size_t) -1;
            }

            rd->pos = rd->buf;
            rd->last = rd->buf + n;
            rd->offset += n;
            continue;
        }

        /* empty, or read: the next buffer */

        rd->cl = rd->cl->next;
        rd->offset = 0;
    }
}


/* 1: the body is one JSON value, 0: it is not, NGX_ERROR: unreadable */

static ngx_int_t
ngx_http_zmq_body_json_ok(ngx_http_request_t *r, off_t len)
{
    json_t                      *doc;
    json_error_t                 jerr;
    ngx_http_zmq_body_reader_t   rd;

    if (len == 0) {
        return 0;
    }

    ngx_memzero(&rd, sizeof(ngx_http_zmq_body_reader_t));
    rd.cl = r->request_body->bufs;
    rd.pool = r->pool;
    rd.log = r->connection->log;

    doc = json_load_callback(ngx_http_zmq_body_read, &rd, JSON_DECODE_ANY,
                             &jerr);

    if (rd.failed) {
        json_decref(doc);
        return NGX_ERROR;
    }

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
    off_t                     len;
    ngx_int_t                 rc;
    ngx_http_zmq_ctx_t       *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (r->connection->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    /* zmq_metrics: a publish's duration counts from here */
    ctx->read_us = ngx_http_zmq_metrics_now();
    NGX_HTTP_ZMQ_PROBE_MARK(ctx->probe, read);

    len = ngx_http_zmq_request_body_length(r);

    if (len > (off_t) ctx->max_body) {
        r->keepalive = 0;
        rc = ngx_http_zmq_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                "body_too_large", "the body is larger than "
                                "the service accepts", 0);
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* Idempotency-Key (ngx_http_zmq_idempotency.c): Redis decides */
    rc = ngx_http_zmq_idem_start(r, ctx);

    if (rc == NGX_DECLINED) {
        rc = ngx_http_zmq_body_publish(r, ctx);
    }

    if (rc == NGX_DONE) {
        /* the answer finalizes the request once the broker confirms */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


ngx_int_t
ngx_http_zmq_body_publish(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx)
{
    ngx_int_t                 rc;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    if (ngx_http_zmq_batch_detect(r, ctx)) {
        /* application/x-ndjson: ngx_http_zmq_batch.c checks each line */
        return ngx_http_zmq_batch_publish(r, ctx, zlcf->routing_key);
    }

    if (ctx->data_format == NGX_HTTP_ZMQ_FORMAT_JSON) {
        rc = ngx_http_zmq_body_json_ok(r,
                                       ngx_http_zmq_request_body_length(r));

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == 0) {
            return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST,
                                      "invalid_json",
                                      "the body is not valid JSON", 0);
        }
    }

    return ngx_http_zmq_publish_service(r, ctx, zlcf->routing_key);
}


/*
 * The request's body through the service ctx->service, as the
 * configuration running now has it: the properties from the service's
 * and outgoing connection's defaults and the request's headers, the
 * routing key from routing_key (zmq_routing_key) or the service's
 * template. Used by REST channels and the admin API's invoke.
 */

ngx_int_t
ngx_http_zmq_publish_service(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_http_complex_value_t *routing_key)
{
    ngx_int_t                      rc;
    ngx_str_t                      rk;
    const char                    *bad;
    ngx_http_zmq_publish_t         msg;
    amqp_basic_properties_t       *props;
    ngx_http_zmq_service_t        *svc;
    ngx_zmq_amqp_conn_t           *conn;
    ngx_http_zmq_outconn_conf_t   *oc;

    svc = ngx_http_zmq_runtime_service(&ctx->service);

    if (svc == NULL) {
        return ngx_http_zmq_error(r, NGX_HTTP_NOT_FOUND, "unknown_service",
                                  "the service does not exist", 0);
    }

    if (svc->type == NGX_HTTP_ZMQ_SVC_OTHER) {
        return ngx_http_zmq_error(r, NGX_HTTP_NOT_IMPLEMENTED,
                                  "service_kind_unsupported",
                                  "services of this kind run only in zmqd; "
                                  "NGINX invokes publish, rpc and invoke "
                                  "services", 0);
    }

    if (svc->stomp_outconn.len) {
        return ngx_http_zmq_stomp_service(r, ctx, svc);
    }

    oc = ngx_http_zmq_runtime_outconn(&svc->outconn);
    conn = ngx_http_zmq_runtime_conn(&svc->outconn);

    if (!svc->active || oc == NULL || !oc->active || conn == NULL) {
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_inactive", "the service or its "
                                  "outgoing connection is not active", 0);
    }

    if (svc->type != NGX_HTTP_ZMQ_SVC_PUBLISH) {
        return ngx_http_zmq_rpc_service(r, ctx, svc, oc, conn, routing_key);
    }

    props = ngx_pcalloc(r->pool, sizeof(amqp_basic_properties_t));
    if (props == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bad = NULL;
    rc = ngx_http_zmq_properties(r, svc, oc, props, &ctx->message_id, &bad);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header", bad,
                                  0);
    }

    if (routing_key != NULL) {
        rc = ngx_http_complex_value(r, routing_key, &rk);

    } else {
        rc = ngx_http_zmq_tmpl_eval(r, &svc->routing_key, ctx->params,
                                    ctx->nparams, &rk);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bad = zgw_amqp_routing_key_check((char *) svc->exchange.data,
                                     svc->exchange.len, (char *) rk.data,
                                     rk.len);
    if (bad != NULL) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_routing_key",
                                  bad, 0);
    }

    ngx_memzero(&msg, sizeof(ngx_http_zmq_publish_t));
    msg.exchange = svc->exchange;
    msg.routing_key = rk;
    msg.mandatory = svc->mandatory;
    msg.confirm = svc->confirm;
    msg.props = props;
    msg.body = r->request_body ? r->request_body->bufs : NULL;
    msg.body_len = ngx_http_zmq_request_body_length(r);

    ngx_http_zmq_metrics_start(ctx, &svc->outconn, 0);

    return ngx_http_zmq_publish_message(r, ctx, conn, &msg);
}


/*
 * Publishes msg (everything but its timeout and callback set) on conn for
 * the request, whose ctx->message_id names the message in the answer:
 * NGX_DONE when the answer comes later (the broker's confirm, or whatever
 * ends the message, finalizes the request), otherwise what to finalize the
 * request with now.
 */

ngx_int_t
ngx_http_zmq_publish_message(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_zmq_amqp_conn_t *conn, ngx_http_zmq_publish_t *msg)
{
    time_t                    retry;
    ngx_int_t                 rc;
    ngx_pool_cleanup_t       *cln;
    ngx_http_zmq_pub_t       *pub;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_zmq_request_cleanup;
    cln->data = ctx;

    msg->timeout = zlcf->confirm_timeout;
    msg->data = ctx;

    if (msg->done == NULL) {
        msg->done = ngx_http_zmq_publish_done;
    }

    retry = 1;
    pub = NULL;

    rc = ngx_zmq_amqp_publish(conn, msg, &pub, &retry, r->connection->log);

    switch (rc) {

    case NGX_OK:
        ctx->pub = pub;
        NGX_HTTP_ZMQ_PROBE_MARK(ctx->probe, pub);
        return NGX_DONE;

    case NGX_HTTP_ZMQ_UNAVAILABLE:
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "broker_unavailable", "the broker is not "
                                  "reachable; try again later", retry);

    case NGX_HTTP_ZMQ_BLOCKED:
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "broker_blocked", "the broker is not "
                                  "accepting messages (resource alarm); try "
                                  "again later", retry);

    case NGX_HTTP_ZMQ_OVERLOADED:
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "overloaded", "too many messages are "
                                  "waiting for the broker; try again later",
                                  retry);

    case NGX_HTTP_ZMQ_TOO_LARGE:
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header",
                                  "the message properties do not fit in one "
                                  "AMQP frame", 0);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/*
 * The broker confirms in batches: one basic.ack with "multiple" may settle
 * every message in flight, hundreds of requests. Answering them all in one
 * go keeps the worker from reading the requests those clients send next,
 * and the broker idles until the worker is done. So answers queue (the
 * worker's answers and answer_ev) and go out NGX_HTTP_ZMQ_ANSWERS_PER_PASS
 * at a time, each pass followed by a turn of the event loop that reads (and
 * publishes) whatever arrived.
 */


/*
 * zmq_max_body while the body arrives: a body without Content-Length
 * (chunked) is refused as soon as it passes the limit, not once it is
 * read whole. The handler checks Content-Length before reading. NGINX's
 * own client_max_body_size, whatever the operator made it, applies too.
 */

static ngx_int_t
ngx_http_zmq_request_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t         *cl;
    ngx_http_zmq_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (ctx != NULL && ctx->limit_body) {
        for (cl = in; cl; cl = cl->next) {
            ctx->received += ngx_buf_size(cl->buf);
        }

        if (ctx->received > (off_t) ctx->max_body) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "zmq: body larger than %uz bytes", ctx->max_body);
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }
    }

    return ngx_http_zmq_next_request_body_filter(r, in);
}


ngx_int_t
ngx_http_zmq_publish_init(ngx_conf_t *cf)
{
    ngx_http_zmq_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_zmq_request_body_filter;

    return NGX_OK;
}


void
ngx_http_zmq_publish_init_process(ngx_cycle_t *cycle)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    ngx_queue_init(&w->answers);
    w->answer_ev.handler = ngx_http_zmq_answer_handler;
    w->answer_ev.data = w;
    w->answer_ev.log = cycle->log;
}


static void
ngx_http_zmq_publish_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_http_zmq_ctx_t     *ctx = pub->data;

    ctx->pub = NULL;
    ctx->result = result;

    NGX_HTTP_ZMQ_PROBE_SET(ctx->probe, written, pub->probe.written);
    NGX_HTTP_ZMQ_PROBE_SET(ctx->probe, ackread, pub->probe.ackread);
    NGX_HTTP_ZMQ_PROBE_SET(ctx->probe, acked, pub->probe.acked);
    NGX_HTTP_ZMQ_PROBE_SET(ctx->probe, conn, (uintptr_t) pub->conn);

    ngx_http_zmq_metrics_observe(ctx);
    ngx_http_zmq_answer_post(ctx);
}


/* the request is answered from the queue, in its turn */

void
ngx_http_zmq_answer_post(ngx_http_zmq_ctx_t *ctx)
{
    ngx_http_zmq_worker_t  *w;

    if (ctx->queued) {
        return;
    }

    w = ngx_http_zmq_worker();

    ctx->queued = 1;
    ngx_queue_insert_tail(&w->answers, &ctx->answer);

    if (!w->answer_ev.posted) {
        ngx_post_event(&w->answer_ev, &ngx_posted_events);
    }
}


static void
ngx_http_zmq_answer_handler(ngx_event_t *ev)
{
    ngx_uint_t              n;
    ngx_queue_t            *q;
    ngx_http_zmq_ctx_t     *ctx;
    ngx_http_zmq_worker_t  *w = ev->data;

    for (n = 0; n < NGX_HTTP_ZMQ_ANSWERS_PER_PASS; n++) {
        if (ngx_queue_empty(&w->answers)) {
            return;
        }

        q = ngx_queue_head(&w->answers);
        ngx_queue_remove(q);
        ctx = ngx_queue_data(q, ngx_http_zmq_ctx_t, answer);
        ctx->queued = 0;

        ngx_http_zmq_answer(ctx);
    }

    if (!ngx_queue_empty(&w->answers)) {
        /* after the next epoll_wait(), which does not wait */
        ngx_post_event(ev, &ngx_posted_next_events);
    }
}


static void
ngx_http_zmq_answer(ngx_http_zmq_ctx_t *ctx)
{
    ngx_str_t             body;
    ngx_int_t             rc;
    ngx_uint_t            status;
    ngx_connection_t     *c;
    ngx_http_request_t   *r;

    r = ctx->request;
    c = r->connection;

    if (ctx->batch != NULL) {
        ngx_http_finalize_request(r, ngx_http_zmq_batch_answer(ctx));
        ngx_http_run_posted_requests(c);
        return;
    }

    if (ctx->rpc != NULL) {
        rc = ngx_http_zmq_rpc_answer(ctx);

        if (rc != NGX_DECLINED) {
            ngx_http_finalize_request(r, rc);
            ngx_http_run_posted_requests(c);
            return;
        }

        /* the publish failed: answered as a publish */
    }

#if (NGX_ZMQ_PROBE)
    {
        u_char           *p;
        ngx_table_elt_t  *h;

        /* the client's half of the probe: bench/latency_probe.lua */
        NGX_HTTP_ZMQ_PROBE_MARK(ctx->probe, answered);
        h = ngx_list_push(&r->headers_out.headers);
        p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN + 1);
        if (h != NULL && p != NULL) {
            h->hash = 1;
            ngx_str_set(&h->key, "X-Zmq-Probe");
            h->value.data = p;
            h->value.len = ngx_sprintf(p, "%uL %uL", ctx->probe.read,
                                       ctx->probe.answered) - p;
        }
    }
#endif

    switch (ctx->result) {

    case NGX_HTTP_ZMQ_PUB_ACKED:
    case NGX_HTTP_ZMQ_PUB_WRITTEN:
    case NGX_HTTP_ZMQ_PUB_RETURNED:
        /* 202, 422 unroutable: what an idempotency key keeps as well */
        status = ngx_http_zmq_publish_settled(r->pool, ctx->result,
                                              &ctx->message_id, &body);
        if (body.len == 0) {
            rc = NGX_ERROR;
            break;
        }
        rc = ngx_http_zmq_send_json(r, status, body.data, body.len);
        break;

    case NGX_HTTP_ZMQ_PUB_NACKED:
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "zmq: the broker refused message \"%V\"",
                      &ctx->message_id);

        if (ctx->stomp) {
            /* an ERROR frame naming the receipt: refused for good */
            rc = ngx_http_zmq_error(r, NGX_HTTP_BAD_GATEWAY, "nacked",
                                    "the broker refused the message", 0);
            break;
        }

        /*
         * basic.nack: RabbitMQ could not take it now (a quorum queue
         * electing a leader, a queue full under reject-publish, an
         * internal error of the queue): not taken, worth a retry
         */
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE, "nacked",
                                "the broker did not take the message "
                                "(basic.nack); try again", 1);
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

    NGX_HTTP_ZMQ_PROBE_KEEP(ctx->probe);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * The status and JSON body of a settled publish (ngx_http_zmq_module.h).
 * The body of the 422 is the one ngx_http_zmq_error() would give.
 */

ngx_uint_t
ngx_http_zmq_publish_settled(ngx_pool_t *pool,
    ngx_http_zmq_pub_result_e result, ngx_str_t *message_id, ngx_str_t *body)
{
    u_char  *p;
    size_t   len;

    static u_char  unroutable[] = "{\"error\":\"unroutable\",\"message\":"
                                  "\"no queue is bound for this message\"}\n";

    ngx_str_null(body);

    switch (result) {

    case NGX_HTTP_ZMQ_PUB_ACKED:
    case NGX_HTTP_ZMQ_PUB_WRITTEN:
        len = sizeof("{\"message_id\":\"\",\"confirmed\":false}\n") - 1
              + message_id->len
              + ngx_escape_json(NULL, message_id->data, message_id->len);

        body->data = ngx_pnalloc(pool, len);
        if (body->data == NULL) {
            return NGX_HTTP_ACCEPTED;
        }

        p = ngx_cpymem(body->data, "{\"message_id\":\"", 15);
        p = (u_char *) ngx_escape_json(p, message_id->data, message_id->len);
        p = ngx_sprintf(p, "\",\"confirmed\":%s}\n",
                        result == NGX_HTTP_ZMQ_PUB_ACKED ? "true" : "false");
        body->len = p - body->data;

        return NGX_HTTP_ACCEPTED;

    case NGX_HTTP_ZMQ_PUB_RETURNED:
        body->data = unroutable;
        body->len = sizeof(unroutable) - 1;
        return 422;

    case NGX_HTTP_ZMQ_PUB_TIMEDOUT:
        return NGX_HTTP_GATEWAY_TIME_OUT;

    default:
        /* nacked, lost (a STOMP nack is a 502 of ngx_http_zmq_answer()) */
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }
}


/*
 * The idempotency code's takeover (ctx->leave): the publish answers
 * done(data), no longer the request, if it is still a publish of
 * ngx_http_zmq_publish_message() waiting for the broker.
 */

ngx_int_t
ngx_http_zmq_publish_takeover(ngx_http_zmq_ctx_t *ctx,
    ngx_http_zmq_pub_done_pt done, void *data)
{
    if (ctx->pub == NULL
        || ngx_zmq_amqp_reattach(ctx->pub, ngx_http_zmq_publish_done, done,
                                 data)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ctx->pub = NULL;

    return NGX_OK;
}


static void
ngx_http_zmq_request_cleanup(void *data)
{
    ngx_http_zmq_ctx_t  *ctx = data;

    /*
     * Whatever the order of the pool's cleanups: an idempotency key's
     * hook may take the publish over before it is detached
     */
    if (ctx->leave != NULL) {
        ctx->leave(ctx->leave_data);
        ctx->leave = NULL;
    }

    if (ctx->pub != NULL) {
        ngx_zmq_amqp_detach(ctx->pub);
        ctx->pub = NULL;
    }

    if (ctx->queued) {
        ngx_queue_remove(&ctx->answer);
        ctx->queued = 0;
    }
}


/*
 * A publish service with a stomp_outconn: the body as one SEND to the
 * destination (a template, like routing_key), answered as an AMQP publish
 * is: 202 after the broker's RECEIPT, 502 on its ERROR, 503 when the
 * connection is down or full, 504 when no receipt comes in time.
 */

typedef struct {
    ngx_http_zmq_ctx_t            *ctx;
    ngx_zmq_stomp_pub_t           *pub;       /* NULL once answered */
} ngx_http_zmq_stomp_req_t;


static ngx_int_t
ngx_http_zmq_stomp_service(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_http_zmq_service_t *svc)
{
    time_t                     retry;
    ngx_int_t                  rc;
    ngx_array_t                headers;
    const char                *bad;
    ngx_pool_cleanup_t        *cln;
    ngx_zmq_stomp_msg_t        msg;
    ngx_zmq_stomp_conf_t      *sc;
    ngx_zmq_stomp_conn_t      *conn;
    ngx_http_zmq_stomp_req_t  *sr;
    ngx_http_zmq_loc_conf_t   *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);
    ctx->stomp = 1;

    sc = ngx_http_zmq_runtime_stomp_outconn(&svc->stomp_outconn);
    conn = ngx_http_zmq_runtime_stomp_conn(&svc->stomp_outconn);

    /* the model allows stomp_outconn on publish services only */

    if (!svc->active || sc == NULL || !sc->active || conn == NULL)
    {
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_inactive", "the service or its "
                                  "outgoing connection is not active", 0);
    }

    ngx_memzero(&msg, sizeof(ngx_zmq_stomp_msg_t));

    bad = NULL;
    rc = ngx_http_zmq_stomp_headers(r, svc, sc, &headers, &ctx->message_id,
                                    &bad);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header", bad,
                                  0);
    }

    if (ngx_http_zmq_tmpl_eval(r, &svc->destination, ctx->params,
                               ctx->nparams, &msg.destination)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (msg.destination.len == 0 || msg.destination.len > 1024
        || ngx_zmq_stomp_value_check(msg.destination.data,
                                     msg.destination.len) != NULL)
    {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_destination",
                                  "the destination must be 1-1024 bytes "
                                  "without NUL, CR or LF", 0);
    }

    sr = ngx_palloc(r->pool, sizeof(ngx_http_zmq_stomp_req_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (sr == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sr->ctx = ctx;
    sr->pub = NULL;
    cln->handler = ngx_http_zmq_stomp_cleanup;
    cln->data = sr;

    msg.headers = headers.elts;
    msg.nheaders = headers.nelts;
    msg.body = r->request_body ? r->request_body->bufs : NULL;
    msg.body_len = ngx_http_zmq_request_body_length(r);
    msg.timeout = zlcf->confirm_timeout;
    msg.data = sr;
    msg.done = ngx_http_zmq_stomp_done;

    retry = 1;

    ngx_http_zmq_metrics_start(ctx, &svc->stomp_outconn, 1);

    rc = ngx_zmq_stomp_publish(conn, &msg, &sr->pub, &retry, &bad,
                               r->connection->log);

    switch (rc) {

    case NGX_OK:
        return NGX_DONE;

    case NGX_DECLINED:
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header", bad,
                                  0);

    case NGX_HTTP_ZMQ_UNAVAILABLE:
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "broker_unavailable", "the broker is not "
                                  "reachable; try again later", retry);

    case NGX_HTTP_ZMQ_OVERLOADED:
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "overloaded", "too many messages are "
                                  "waiting for the broker; try again later",
                                  retry);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static void
ngx_http_zmq_stomp_done(ngx_zmq_stomp_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_http_zmq_stomp_req_t  *sr = pub->data;

    sr->pub = NULL;
    sr->ctx->result = result;

    ngx_http_zmq_metrics_observe(sr->ctx);

    ngx_http_zmq_answer_post(sr->ctx);
}


static void
ngx_http_zmq_stomp_cleanup(void *data)
{
    ngx_http_zmq_stomp_req_t  *sr = data;

    if (sr->pub != NULL) {
        ngx_zmq_stomp_detach(sr->pub);
        sr->pub = NULL;
    }

    if (sr->ctx->queued) {
        ngx_queue_remove(&sr->ctx->answer);
        sr->ctx->queued = 0;
    }
}
