
/*
 * ngx_http_zmq_module: request/reply (rpc services) and invocations
 * (invoke services) from NGINX.
 *
 * An rpc request's body is published like a publish service's, with
 * reply_to "amq.rabbitmq.reply-to" (RabbitMQ's direct reply-to) and
 * correlation_id = message_id = a fresh UUID; the request then waits for
 * two things, in either order: the broker's confirm and the reply (the
 * AMQP client, ngx_zmq_amqp.c, matches replies to requests by correlation
 * id). Only once both are in is it answered with the reply: its status
 * (x-zmq-status, default 200), content type and body, and the header
 * X-Correlation-Id. A confirm that fails answers as a publish would (422
 * unroutable, 503 nacked, 503, 504 confirm_timeout); no reply within the
 * service's timeout: 504 reply_timeout; the connection lost while waiting:
 * 502 reply_lost; a reply the gateway cannot relay: 502 (bad_reply,
 * reply_too_large).
 *
 * An invoke service hands the body to zmqd: published to the service's
 * queue (exchange "", mandatory, persistent) with the headers
 * x-zmq-invoke, x-zmq-mode and x-zmq-req-ts; modes sync and sync_async
 * wait for zmqd's reply exactly as an rpc does; async answers 202
 * {"accepted": true, "cid": ...} once the broker confirmed.
 *
 * Nothing here keeps a request pointer across an event: the waiter, the
 * timer and the reply live in the request's pool, and the request's pool
 * cleanup takes them out of the connection and the timer tree.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "zgw_amqp_check.h"
#include "ngx_http_zmq_module.h"


#define NGX_HTTP_ZMQ_INVOKE_HEADERS  3


typedef struct {
    ngx_zmq_amqp_rpc_t             wait;       /* first: the handler's rpc */
    ngx_http_zmq_ctx_t            *ctx;
    ngx_event_t                    timer;
    ngx_msec_t                     timeout;
    ngx_uint_t                     type;       /* NGX_HTTP_ZMQ_SVC_* */
    ngx_http_zmq_pub_result_e      confirm;
    ngx_zmq_amqp_reply_t           reply;      /* body ngx_alloc()ed */
    u_char                         content_type[256];
    unsigned                       waits:1;    /* a reply is awaited */
    unsigned                       confirmed:1;
    unsigned                       replied:1;
    unsigned                       timed_out:1;
    unsigned                       posted:1;   /* its answer is queued */
} ngx_http_zmq_rpc_t;


static ngx_int_t ngx_http_zmq_rpc_props(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_http_zmq_service_t *svc,
    ngx_http_zmq_outconn_conf_t *oc, amqp_basic_properties_t *props,
    ngx_flag_t waits, ngx_int_t *answer);
static ngx_int_t ngx_http_zmq_rpc_invoke_headers(ngx_http_request_t *r,
    ngx_http_zmq_service_t *svc, amqp_basic_properties_t *props);
static ngx_int_t ngx_http_zmq_rpc_now(ngx_pool_t *pool, ngx_str_t *out);
static void ngx_http_zmq_rpc_confirmed(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_http_zmq_rpc_replied(ngx_zmq_amqp_rpc_t *wait,
    ngx_zmq_amqp_reply_t *reply);
static void ngx_http_zmq_rpc_timeout(ngx_event_t *ev);
static void ngx_http_zmq_rpc_post(ngx_http_zmq_rpc_t *rpc);
static ngx_int_t ngx_http_zmq_rpc_send(ngx_http_request_t *r,
    ngx_http_zmq_rpc_t *rpc);
static ngx_int_t ngx_http_zmq_rpc_fail(ngx_http_request_t *r,
    ngx_http_zmq_rpc_t *rpc, ngx_uint_t status, const char *code,
    const char *message);
static void ngx_http_zmq_rpc_cleanup(void *data);


static const char  *ngx_http_zmq_invoke_modes[] = {
    "sync", "sync_async", "async"
};


/*
 * Publishes the request's body through svc, an rpc or invoke service
 * whose outgoing connection (oc, conn) is active: NGX_DONE when the answer
 * comes later, else what to finalize the request with now.
 */

ngx_int_t
ngx_http_zmq_rpc_service(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_http_zmq_service_t *svc, ngx_http_zmq_outconn_conf_t *oc,
    ngx_zmq_amqp_conn_t *conn, ngx_http_complex_value_t *routing_key)
{
    ngx_int_t                  rc;
    ngx_str_t                  rk;
    ngx_flag_t                 waits;
    const char                *bad;
    ngx_pool_cleanup_t        *cln;
    ngx_http_zmq_rpc_t        *rpc;
    ngx_http_zmq_publish_t     msg;
    amqp_basic_properties_t   *props;

    waits = svc->type == NGX_HTTP_ZMQ_SVC_RPC
            || svc->mode != NGX_HTTP_ZMQ_INVOKE_ASYNC;

    props = ngx_pcalloc(r->pool, sizeof(amqp_basic_properties_t));
    rpc = ngx_pcalloc(r->pool, sizeof(ngx_http_zmq_rpc_t));
    if (props == NULL || rpc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_zmq_rpc_props(r, ctx, svc, oc, props, waits, &rc)
        != NGX_OK)
    {
        return rc;                      /* answered, or 500 */
    }

    if (svc->type == NGX_HTTP_ZMQ_SVC_INVOKE) {
        rk = svc->queue;

    } else {
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
                                         svc->exchange.len,
                                         (char *) rk.data, rk.len);
        if (bad != NULL) {
            return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST,
                                      "bad_routing_key", bad, 0);
        }
    }

    /* the waiter, its timer and the reply go with the request */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_zmq_rpc_cleanup;
    cln->data = rpc;

    rpc->ctx = ctx;
    rpc->type = svc->type;
    rpc->timeout = svc->timeout;
    rpc->waits = waits;
    rpc->wait.sn.str = ctx->message_id;
    rpc->wait.handler = ngx_http_zmq_rpc_replied;
    rpc->wait.data = rpc;
    rpc->wait.timeout = svc->timeout;

    rpc->timer.handler = ngx_http_zmq_rpc_timeout;
    rpc->timer.data = rpc;
    rpc->timer.log = r->connection->log;

    ctx->rpc = rpc;

    ngx_memzero(&msg, sizeof(ngx_http_zmq_publish_t));

    if (svc->type == NGX_HTTP_ZMQ_SVC_INVOKE) {
        ngx_str_set(&msg.exchange, "");
        msg.mandatory = 1;

    } else {
        msg.exchange = svc->exchange;
        msg.mandatory = svc->mandatory;
    }

    msg.routing_key = rk;
    msg.confirm = 1;                    /* 2xx means confirmed */
    msg.props = props;
    msg.body = r->request_body ? r->request_body->bufs : NULL;
    msg.body_len = ngx_http_zmq_request_body_length(r);
    msg.done = ngx_http_zmq_rpc_confirmed;
    msg.rpc = waits ? &rpc->wait : NULL;

    ngx_http_zmq_metrics_start_rpc(ctx, &svc->outconn,
                                   svc->type == NGX_HTTP_ZMQ_SVC_INVOKE);

    rc = ngx_http_zmq_publish_message(r, ctx, conn, &msg);

    if (rc != NGX_DONE) {
        ctx->rpc = NULL;                /* answered as a publish */
        return rc;
    }

    if (waits) {
        /*
         * Not cancelable: a graceful shutdown waits for the reply, which
         * the service's timeout bounds.
         */
        ngx_add_timer(&rpc->timer, rpc->timeout);
    }

    /* a client that goes away ends the request, and with it the wait */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


/*
 * The properties: as a publish service's, from the outgoing connection's
 * and the service's defaults and the request's headers; then what the
 * gateway sets itself: correlation_id = message_id = a fresh UUID, and
 * reply_to when a reply is awaited. A request may not set these.
 * NGX_OK, or NGX_DONE with *answer what to finalize the request with (an
 * error answered, or 500).
 */

static ngx_int_t
ngx_http_zmq_rpc_props(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_http_zmq_service_t *svc, ngx_http_zmq_outconn_conf_t *oc,
    amqp_basic_properties_t *props, ngx_flag_t waits, ngx_int_t *answer)
{
    ngx_int_t         rc;
    ngx_uint_t        i, k;
    const char       *bad;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    static ngx_str_t  reserved[] = {
        ngx_string("X-Message-Id"),
        ngx_string("X-Correlation-Id"),
        ngx_string("X-Reply-To")
    };

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

        for (k = 0; k < sizeof(reserved) / sizeof(ngx_str_t); k++) {
            if (h[i].key.len == reserved[k].len
                && ngx_strncasecmp(h[i].key.data, reserved[k].data,
                                   reserved[k].len) == 0)
            {
                *answer = ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST,
                                          "bad_header",
                                          k == 0
                                          ? "header X-Message-Id: the "
                                            "gateway sets the message id "
                                            "of an rpc or invoke request "
                                            "(its correlation id)"
                                          : k == 1
                                          ? "header X-Correlation-Id: the "
                                            "gateway sets the correlation "
                                            "id of an rpc or invoke "
                                            "request"
                                          : "header X-Reply-To: the "
                                            "gateway sets reply_to of an "
                                            "rpc or invoke request", 0);
                return NGX_DONE;
            }
        }
    }

    bad = NULL;
    rc = ngx_http_zmq_properties(r, svc, oc, props, &ctx->message_id, &bad);

    if (rc == NGX_ERROR) {
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DONE;
    }

    if (rc == NGX_DECLINED) {
        *answer = ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header",
                                     bad, 0);
        return NGX_DONE;
    }

    /* properties() made a fresh UUID: no X-Message-Id was given */

    props->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    props->correlation_id.bytes = ctx->message_id.data;
    props->correlation_id.len = ctx->message_id.len;

    if (waits) {
        props->_flags |= AMQP_BASIC_REPLY_TO_FLAG;
        props->reply_to = amqp_cstring_bytes(NGX_ZMQ_AMQP_REPLY_TO);
    }

    if (svc->type != NGX_HTTP_ZMQ_SVC_INVOKE) {
        return NGX_OK;
    }

    /* an invocation is persistent, whatever the request says */

    props->delivery_mode = 2;

    rc = ngx_http_zmq_rpc_invoke_headers(r, svc, props);

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    *answer = rc == NGX_DECLINED
              ? ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header",
                                   "the gateway sets the headers "
                                   "x-zmq-invoke, x-zmq-mode and "
                                   "x-zmq-req-ts of an invocation", 0)
              : NGX_HTTP_INTERNAL_SERVER_ERROR;

    return NGX_DONE;
}


/* x-zmq-invoke, x-zmq-mode, x-zmq-req-ts after the request's headers */

static ngx_int_t
ngx_http_zmq_rpc_invoke_headers(ngx_http_request_t *r,
    ngx_http_zmq_service_t *svc, amqp_basic_properties_t *props)
{
    int                  n, i, k;
    ngx_str_t            ts;
    amqp_table_entry_t  *entries, *e;

    static ngx_str_t  names[] = {
        ngx_string("x-zmq-invoke"),
        ngx_string("x-zmq-mode"),
        ngx_string("x-zmq-req-ts")
    };

    n = (props->_flags & AMQP_BASIC_HEADERS_FLAG) ? props->headers.num_entries
                                                  : 0;

    for (i = 0; i < n; i++) {
        e = &props->headers.entries[i];

        for (k = 0; k < NGX_HTTP_ZMQ_INVOKE_HEADERS; k++) {
            if (e->key.len == names[k].len
                && ngx_strncasecmp(e->key.bytes, names[k].data,
                                   names[k].len) == 0)
            {
                return NGX_DECLINED;
            }
        }
    }

    if (ngx_http_zmq_rpc_now(r->pool, &ts) != NGX_OK) {
        return NGX_ERROR;
    }

    entries = ngx_palloc(r->pool, (n + NGX_HTTP_ZMQ_INVOKE_HEADERS)
                                  * sizeof(amqp_table_entry_t));
    if (entries == NULL) {
        return NGX_ERROR;
    }

    if (n > 0) {
        ngx_memcpy(entries, props->headers.entries,
                   n * sizeof(amqp_table_entry_t));
    }

    for (k = 0; k < NGX_HTTP_ZMQ_INVOKE_HEADERS; k++) {
        e = &entries[n + k];
        e->key.bytes = names[k].data;
        e->key.len = names[k].len;
        e->value.kind = AMQP_FIELD_KIND_UTF8;
    }

    entries[n].value.value.bytes.bytes = svc->name.data;
    entries[n].value.value.bytes.len = svc->name.len;
    entries[n + 1].value.value.bytes =
        amqp_cstring_bytes((char *) ngx_http_zmq_invoke_modes[svc->mode]);
    entries[n + 2].value.value.bytes.bytes = ts.data;
    entries[n + 2].value.value.bytes.len = ts.len;

    props->_flags |= AMQP_BASIC_HEADERS_FLAG;
    props->headers.entries = entries;
    props->headers.num_entries = n + NGX_HTTP_ZMQ_INVOKE_HEADERS;

    return NGX_OK;
}


/* now, UTC, "YYYY-MM-DDTHH:MM:SS.ffffff" */

static ngx_int_t
ngx_http_zmq_rpc_now(ngx_pool_t *pool, ngx_str_t *out)
{
    ngx_tm_t        tm;
    struct timeval  tv;

    out->data = ngx_pnalloc(pool, sizeof("YYYY-MM-DDTHH:MM:SS.ffffff") - 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_gettimeofday(&tv);
    ngx_gmtime(tv.tv_sec, &tm);

    out->len = ngx_sprintf(out->data, "%4d-%02d-%02dT%02d:%02d:%02d.%06d",
                           tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                           tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                           (int) tv.tv_usec)
               - out->data;

    return NGX_OK;
}


/* the broker's answer to the publish */

static void
ngx_http_zmq_rpc_confirmed(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_http_zmq_ctx_t  *ctx = pub->data;
    ngx_http_zmq_rpc_t  *rpc;

    rpc = ctx->rpc;

    ctx->pub = NULL;
    rpc->confirmed = 1;
    rpc->confirm = result;

    if (result != NGX_HTTP_ZMQ_PUB_ACKED) {
        /* the publish failed: no reply is worth waiting for */
        ngx_zmq_amqp_rpc_cancel(&rpc->wait, NGX_ZMQ_AMQP_RPC_DONE);
        ngx_http_zmq_rpc_post(rpc);
        return;
    }

    if (!rpc->waits || rpc->replied) {
        ngx_http_zmq_rpc_post(rpc);
    }
}


/* the reply, or the connection lost (from the AMQP client) */

static void
ngx_http_zmq_rpc_replied(ngx_zmq_amqp_rpc_t *wait,
    ngx_zmq_amqp_reply_t *reply)
{
    ngx_http_zmq_rpc_t  *rpc = wait->data;

    rpc->replied = 1;
    rpc->reply = *reply;
    reply->body = NULL;                 /* the request's now */

    if (reply->content_type.len) {
        ngx_memcpy(rpc->content_type, reply->content_type.data,
                   ngx_min(reply->content_type.len,
                           sizeof(rpc->content_type)));
        rpc->reply.content_type.data = rpc->content_type;
        rpc->reply.content_type.len = ngx_min(reply->content_type.len,
                                              sizeof(rpc->content_type));
    }

    if (rpc->confirmed || reply->result == NGX_ZMQ_AMQP_REPLY_LOST) {
        ngx_http_zmq_rpc_post(rpc);
    }
}


static void
ngx_http_zmq_rpc_timeout(ngx_event_t *ev)
{
    ngx_http_zmq_rpc_t  *rpc = ev->data;

    ngx_http_zmq_ctx_t  *ctx;

    ctx = rpc->ctx;

    rpc->timed_out = 1;
    ngx_zmq_amqp_rpc_cancel(&rpc->wait, NGX_ZMQ_AMQP_RPC_TIMEDOUT);

    if (ctx->pub != NULL) {
        /* still unconfirmed: its confirm will find no one */
        ngx_zmq_amqp_detach(ctx->pub);
        ctx->pub = NULL;
    }

    ngx_http_zmq_rpc_post(rpc);
}


static void
ngx_http_zmq_rpc_post(ngx_http_zmq_rpc_t *rpc)
{
    if (rpc->posted) {
        return;
    }

    rpc->posted = 1;

    if (rpc->timer.timer_set) {
        ngx_del_timer(&rpc->timer);
    }

    ngx_http_zmq_answer_post(rpc->ctx);
}


/*
 * The answer, from the worker's answer queue: what to finalize the request
 * with, or NGX_DECLINED when the publish failed (ctx->result says how, and
 * the publish's answer is the answer).
 */

ngx_int_t
ngx_http_zmq_rpc_answer(ngx_http_zmq_ctx_t *ctx)
{
    u_char               *body, *p;
    ngx_http_request_t   *r;
    ngx_http_zmq_rpc_t   *rpc;

    rpc = ctx->rpc;
    r = ctx->request;

    /* zmq_rpc_duration_seconds: whatever the answer */
    ngx_http_zmq_metrics_observe(ctx);

    if (rpc->timed_out) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "zmq: no reply to \"%V\" within %M ms",
                      &ctx->message_id, rpc->timeout);

        body = ngx_pnalloc(r->pool, 128);
        if (body == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_snprintf(body, 127, "no reply came within the "
                            "service's timeout (%M ms)%Z", rpc->timeout);
        body[127] = '\0';

        return ngx_http_zmq_rpc_fail(r, rpc, NGX_HTTP_GATEWAY_TIME_OUT,
                                     "reply_timeout", (char *) body);
    }

    if (rpc->confirmed && rpc->confirm != NGX_HTTP_ZMQ_PUB_ACKED) {
        /* published: the answer names the request, whatever it says */
        if (ngx_http_zmq_add_header(r, "X-Correlation-Id", &ctx->message_id)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->result = rpc->confirm;
        return NGX_DECLINED;
    }

    /* confirmed, or the connection was lost with the reply (see replied) */

    if (!rpc->waits) {
        /* an async invocation: zmqd has it */

        body = ngx_pnalloc(r->pool, sizeof("{\"accepted\":true,\"cid\":\"\"}\n")
                                    + ctx->message_id.len);
        if (body == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(body, "{\"accepted\":true,\"cid\":\"%V\"}\n",
                        &ctx->message_id);

        if (ngx_http_zmq_add_header(r, "X-Correlation-Id", &ctx->message_id)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_zmq_send_json(r, NGX_HTTP_ACCEPTED, body, p - body);
    }

    switch (rpc->reply.result) {

    case NGX_ZMQ_AMQP_REPLY_OK:
        return ngx_http_zmq_rpc_send(r, rpc);

    case NGX_ZMQ_AMQP_REPLY_LOST:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "zmq: the broker connection closed while \"%V\" "
                      "waited for its reply", &ctx->message_id);
        return ngx_http_zmq_rpc_fail(r, rpc, NGX_HTTP_BAD_GATEWAY,
                                     "reply_lost", "the connection to the "
                                     "broker was lost while waiting for the "
                                     "reply; the request was delivered and "
                                     "may have been processed");

    case NGX_ZMQ_AMQP_REPLY_TOO_LARGE:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "zmq: the reply to \"%V\" is larger than %d bytes: "
                      "dropped", &ctx->message_id, NGX_ZMQ_AMQP_REPLY_MAX);
        return ngx_http_zmq_rpc_fail(r, rpc, NGX_HTTP_BAD_GATEWAY,
                                     "reply_too_large", "the reply is larger "
                                     "than the gateway relays (16 MiB)");

    case NGX_ZMQ_AMQP_REPLY_BAD_STATUS:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "zmq: the reply to \"%V\" has an invalid "
                      NGX_ZMQ_AMQP_STATUS_HEADER, &ctx->message_id);
        return ngx_http_zmq_rpc_fail(r, rpc, NGX_HTTP_BAD_GATEWAY,
                                     "bad_reply", "the reply's x-zmq-status "
                                     "is not an HTTP status 200-599 (an "
                                     "integer, or a string of digits)");

    case NGX_ZMQ_AMQP_REPLY_BAD_HEADERS:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "zmq: the reply to \"%V\" has a malformed or too "
                      "deeply nested headers table", &ctx->message_id);
        return ngx_http_zmq_rpc_fail(r, rpc, NGX_HTTP_BAD_GATEWAY,
                                     "bad_reply", "the reply's headers "
                                     "table is malformed or nested too "
                                     "deeply");

    default: /* NGX_ZMQ_AMQP_REPLY_BAD_TYPE */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "zmq: the reply to \"%V\" has a content_type that is "
                      "no HTTP header value", &ctx->message_id);
        return ngx_http_zmq_rpc_fail(r, rpc, NGX_HTTP_BAD_GATEWAY,
                                     "bad_reply", "the reply's content_type "
                                     "is not a valid HTTP header value");
    }
}


/* the reply as the answer: its status, content type and body */

static ngx_int_t
ngx_http_zmq_rpc_send(ngx_http_request_t *r, ngx_http_zmq_rpc_t *rpc)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_zmq_ctx_t  *ctx;

    ctx = rpc->ctx;
    ctx->own = 1;                       /* the responder's, whatever status */

    if (ngx_http_zmq_add_header(r, "X-Correlation-Id", &ctx->message_id)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = rpc->reply.status;
    r->headers_out.content_length_n = rpc->reply.len;

    if (rpc->reply.content_type.len) {
        r->headers_out.content_type = rpc->reply.content_type;

    } else {
        ngx_str_set(&r->headers_out.content_type,
                    "application/octet-stream");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    if (rpc->reply.len == 0) {
        return ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    /* the body stays the request's until its pool goes (the cleanup) */

    b->pos = rpc->reply.body;
    b->last = rpc->reply.body + rpc->reply.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_zmq_rpc_fail(ngx_http_request_t *r, ngx_http_zmq_rpc_t *rpc,
    ngx_uint_t status, const char *code, const char *message)
{
    if (ngx_http_zmq_add_header(r, "X-Correlation-Id",
                                &rpc->ctx->message_id)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_zmq_error(r, status, code, message, 0);
}


static void
ngx_http_zmq_rpc_cleanup(void *data)
{
    ngx_http_zmq_rpc_t  *rpc = data;

    /* a reply that comes now finds no one: dropped, counted as late */
    ngx_zmq_amqp_rpc_cancel(&rpc->wait, NGX_ZMQ_AMQP_RPC_DONE);

    if (rpc->timer.timer_set) {
        ngx_del_timer(&rpc->timer);
    }

    ngx_free(rpc->reply.body);
    rpc->reply.body = NULL;
}
