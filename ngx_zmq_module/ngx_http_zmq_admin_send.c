
/*
 * ngx_http_zmq_module: the admin API's send and invoke
 * (POST api/amqp_outconn/NAME/send, POST api/service/NAME/invoke).
 *
 * send publishes the message a JSON body describes through the broker
 * connection this worker runs for the outgoing connection:
 *
 *     {"exchange": "", "routing_key": "", "body": "text"
 *      | "body_base64": "...", "properties": {...}, "headers": {...},
 *      "mandatory": false}
 *
 * A send to a named exchange (not "") first checks that the exchange
 * exists, with a passive exchange.declare on a connection of its own (a
 * probe, ngx_zmq_amqp.c): RabbitMQ answers a publish to a missing exchange
 * by closing the channel, which would fail every other message in flight
 * on the shared connection, REST channels' included. A missing exchange is
 * answered 404 exchange_not_found with the broker's words; a check that
 * cannot reach the broker 503 broker_unavailable, as the publish would
 * be. The request waits (r->main->count++) for the check; a client that
 * leaves cancels it (the request's pool cleanup). The message is built
 * again, from the configuration then current, once the check says yes:
 * nothing of the runtime is kept across the wait. An exchange deleted
 * between the check and the publish still closes the shared channel.
 *
 * POST api/stomp_outconn/NAME/send takes the same body with destination
 * instead of exchange, routing_key and mandatory, and sends it as one
 * STOMP SEND with a receipt through the connection this worker runs for
 * the stomp_outconn (ngx_zmq_stomp.c): 202 only after the RECEIPT, 502 on
 * the broker's ERROR for it, 503 when the connection is down, lost or
 * full, 504 when no receipt comes in time. The properties map to STOMP
 * headers as a REST channel's request headers do (ngx_http_zmq_props.c).
 *
 * invoke runs a publish, rpc or invoke service on the request's body,
 * exactly as a REST channel bound to the service does (its properties
 * from the request's headers), and answers as that channel would: a
 * publish 202 once the broker confirmed (or, through a stomp_outconn,
 * once it sent the RECEIPT); an rpc (and a sync or sync_async
 * invocation) with the reply; an async invocation 202 {"accepted": true,
 * "cid": ...}; errors 422 unroutable, 503 nacked, 503, 504. Other kinds
 * run only in zmqd: 501 not_invokable.
 *
 * Both time the request from its body read, for zmq_metrics' duration
 * histograms, as REST channels do.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "zgw_amqp_check.h"
#include "zgw_stomp_headers.h"
#include "ngx_http_zmq_admin.h"


#define NGX_HTTP_ZMQ_SEND_SHORT       0     /* 0-255 bytes of text */
#define NGX_HTTP_ZMQ_SEND_ID          1     /* 1-255 bytes of text */
#define NGX_HTTP_ZMQ_SEND_REPLY_TO    2
#define NGX_HTTP_ZMQ_SEND_USER_ID     3     /* the connection's user */
#define NGX_HTTP_ZMQ_SEND_EXPIRATION  4
#define NGX_HTTP_ZMQ_SEND_MODE        5     /* delivery_mode */
#define NGX_HTTP_ZMQ_SEND_PRIORITY    6
#define NGX_HTTP_ZMQ_SEND_TIMESTAMP   7


/* in a function with err and size: the reason, and NGX_DECLINED */
#define ngx_http_zmq_send_bad(...)                                            \
    *ngx_snprintf(err, size - 1, __VA_ARGS__) = '\0';                         \
    return NGX_DECLINED


/* a send waiting for its exchange check */
typedef struct {
    ngx_http_request_t          *request;
    ngx_http_zmq_admin_req_t    *ar;
    json_t                      *doc;        /* released by the request */
    ngx_zmq_amqp_conn_t         *probe;      /* NULL once answered */
} ngx_http_zmq_send_check_t;


/* a STOMP send waiting for its receipt */
typedef struct {
    ngx_http_zmq_ctx_t          *ctx;
    ngx_zmq_stomp_pub_t         *pub;        /* NULL once answered */
} ngx_http_zmq_send_stomp_t;


/* one AMQP basic property the body's "properties" may set */
typedef struct {
    const char                  *name;
    ngx_uint_t                   type;
    amqp_flags_t                 flag;
    size_t                       offset;     /* of its amqp_bytes_t */
} ngx_http_zmq_send_prop_t;


static ngx_int_t ngx_http_zmq_admin_send_publish(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar, json_t *doc, ngx_flag_t check);
static ngx_int_t ngx_http_zmq_admin_send_check(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar, json_t *doc,
    ngx_http_zmq_outconn_conf_t *oc, ngx_str_t *exchange);
static void ngx_http_zmq_admin_send_checked(void *data,
    ngx_zmq_amqp_probe_result_t *res);
static void ngx_http_zmq_admin_check_cleanup(void *data);
static ngx_int_t ngx_http_zmq_admin_send_parse(ngx_http_request_t *r,
    json_t *doc, ngx_http_zmq_outconn_conf_t *oc, ngx_http_zmq_publish_t *msg,
    ngx_str_t *message_id, u_char *err, size_t size);
static ngx_int_t ngx_http_zmq_admin_send_body(ngx_http_request_t *r,
    json_t *doc, ngx_http_zmq_publish_t *msg, u_char *err, size_t size);
static ngx_int_t ngx_http_zmq_admin_send_props(ngx_http_request_t *r,
    json_t *props, ngx_http_zmq_outconn_conf_t *oc,
    amqp_basic_properties_t *p, u_char *err, size_t size);
static ngx_int_t ngx_http_zmq_admin_send_prop(ngx_pool_t *pool, json_t *v,
    ngx_http_zmq_send_prop_t *d, ngx_http_zmq_outconn_conf_t *oc,
    amqp_basic_properties_t *p, const char **why);
static ngx_int_t ngx_http_zmq_admin_send_headers(ngx_http_request_t *r,
    json_t *headers, amqp_basic_properties_t *p, u_char *err, size_t size);
static const char *ngx_http_zmq_admin_send_short(json_t *v, size_t min,
    amqp_bytes_t *out);
static ngx_int_t ngx_http_zmq_admin_base64(ngx_pool_t *pool, const char *s,
    size_t len, ngx_str_t *out);
static void ngx_http_zmq_admin_send_cleanup(void *data);
static ngx_int_t ngx_http_zmq_admin_send_stomp(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar, json_t *doc);
static ngx_int_t ngx_http_zmq_admin_stomp_parse(ngx_http_request_t *r,
    json_t *doc, ngx_zmq_stomp_conf_t *sc, ngx_zmq_stomp_msg_t *msg,
    ngx_str_t *message_id, u_char *err, size_t size);
static ngx_int_t ngx_http_zmq_admin_stomp_headers(ngx_http_request_t *r,
    ngx_zmq_stomp_conf_t *sc, amqp_basic_properties_t *props,
    ngx_str_t *message_id, ngx_array_t *out, u_char *err, size_t size);
static void ngx_http_zmq_admin_stomp_done(ngx_zmq_stomp_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_http_zmq_admin_stomp_cleanup(void *data);


static ngx_http_zmq_send_prop_t  ngx_http_zmq_send_props[] = {

    { "content_type", NGX_HTTP_ZMQ_SEND_SHORT, AMQP_BASIC_CONTENT_TYPE_FLAG,
      offsetof(amqp_basic_properties_t, content_type) },

    { "content_encoding", NGX_HTTP_ZMQ_SEND_SHORT,
      AMQP_BASIC_CONTENT_ENCODING_FLAG,
      offsetof(amqp_basic_properties_t, content_encoding) },

    { "delivery_mode", NGX_HTTP_ZMQ_SEND_MODE,
      AMQP_BASIC_DELIVERY_MODE_FLAG, 0 },

    { "priority", NGX_HTTP_ZMQ_SEND_PRIORITY, AMQP_BASIC_PRIORITY_FLAG, 0 },

    { "correlation_id", NGX_HTTP_ZMQ_SEND_SHORT,
      AMQP_BASIC_CORRELATION_ID_FLAG,
      offsetof(amqp_basic_properties_t, correlation_id) },

    { "reply_to", NGX_HTTP_ZMQ_SEND_REPLY_TO, AMQP_BASIC_REPLY_TO_FLAG,
      offsetof(amqp_basic_properties_t, reply_to) },

    { "expiration", NGX_HTTP_ZMQ_SEND_EXPIRATION, AMQP_BASIC_EXPIRATION_FLAG,
      offsetof(amqp_basic_properties_t, expiration) },

    { "message_id", NGX_HTTP_ZMQ_SEND_ID, AMQP_BASIC_MESSAGE_ID_FLAG,
      offsetof(amqp_basic_properties_t, message_id) },

    { "timestamp", NGX_HTTP_ZMQ_SEND_TIMESTAMP, AMQP_BASIC_TIMESTAMP_FLAG, 0 },

    { "type", NGX_HTTP_ZMQ_SEND_SHORT, AMQP_BASIC_TYPE_FLAG,
      offsetof(amqp_basic_properties_t, type) },

    { "user_id", NGX_HTTP_ZMQ_SEND_USER_ID, AMQP_BASIC_USER_ID_FLAG,
      offsetof(amqp_basic_properties_t, user_id) },

    { "app_id", NGX_HTTP_ZMQ_SEND_SHORT, AMQP_BASIC_APP_ID_FLAG,
      offsetof(amqp_basic_properties_t, app_id) },

    { NULL, 0, 0, 0 }
};


static const char  *ngx_http_zmq_send_fields[] = {
    "exchange", "routing_key", "body", "body_base64", "properties",
    "headers", "mandatory", NULL
};


static const char  *ngx_http_zmq_send_stomp_fields[] = {
    "destination", "body", "body_base64", "properties", "headers", NULL
};


/* the properties a STOMP SEND carries (as headers, see stomp_headers) */
static const char  *ngx_http_zmq_send_stomp_props[] = {
    "content_type", "content_encoding", "delivery_mode", "priority",
    "correlation_id", "reply_to", "expiration", "message_id", "type", NULL
};


ngx_int_t
ngx_http_zmq_admin_send(ngx_http_request_t *r, ngx_http_zmq_admin_req_t *ar)
{
    json_t                  *doc;
    ngx_int_t                rc;
    ngx_pool_cleanup_t      *cln;
    ngx_http_zmq_runtime_t  *rt;

    rt = ngx_http_zmq_runtime_current();

    if (rt == NULL || rt->cfg == NULL) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "service_unavailable", "this worker "
                                       "runs no configuration yet");
    }

    if (!zgw_name_valid(ar->name)
        || zgw_config_get(rt->cfg, ar->kind, ar->name) == NULL)
    {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "%s '%s' does not exist",
                                       zgw_kind_name(ar->kind),
                                       zgw_name_valid(ar->name) ? ar->name
                                                                : "?");
    }

    doc = ngx_http_zmq_admin_body_json(r, 0, &rc);
    if (doc == NULL) {
        return rc;
    }

    /* the message points into doc: it lives as long as the request */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(doc);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_zmq_admin_send_cleanup;
    cln->data = doc;

    ngx_http_zmq_get_ctx(r)->read_us = ngx_http_zmq_metrics_now();

    if (ar->kind == ZGW_KIND_STOMP_OUTCONN) {
        return ngx_http_zmq_admin_send_stomp(r, ar, doc);
    }

    return ngx_http_zmq_admin_send_publish(r, ar, doc, 1);
}


/*
 * The message doc describes, through the outgoing connection of the
 * configuration this worker runs now; check: a named exchange is checked
 * first (the answer then comes later)
 */
static ngx_int_t
ngx_http_zmq_admin_send_publish(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar, json_t *doc, ngx_flag_t check)
{
    u_char                        err[512];
    ngx_int_t                     rc;
    ngx_str_t                     name;
    ngx_http_zmq_ctx_t           *ctx;
    ngx_zmq_amqp_conn_t          *conn;
    ngx_http_zmq_publish_t        msg;
    ngx_http_zmq_outconn_conf_t  *oc;

    name.data = (u_char *) ar->name;
    name.len = ngx_strlen(ar->name);

    oc = ngx_http_zmq_runtime_outconn(&name);
    conn = ngx_http_zmq_runtime_conn(&name);

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    ngx_memzero(&msg, sizeof(ngx_http_zmq_publish_t));

    rc = ngx_http_zmq_admin_send_parse(r, doc, oc, &msg, &ctx->message_id,
                                       err, sizeof(err));
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  (char *) err, 0);
    }

    if (oc == NULL || !oc->active || conn == NULL) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "outconn_inactive", "amqp_outconn "
                                       "'%s' is not active", ar->name);
    }

    if (check && msg.exchange.len > 0) {
        return ngx_http_zmq_admin_send_check(r, ar, doc, oc, &msg.exchange);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "zmq admin: %V sends message \"%V\" through amqp_outconn "
                  "\"%s\"", &ar->principal, &ctx->message_id, ar->name);

    ngx_http_zmq_metrics_start(ctx, &name, 0);

    rc = ngx_http_zmq_publish_message(r, ctx, conn, &msg);

    if (rc == NGX_DONE) {
        /* the broker's answer finalizes the request */
        r->main->count++;
    }

    return rc;
}


/* a passive exchange.declare on a connection of its own; answers later */
static ngx_int_t
ngx_http_zmq_admin_send_check(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar, json_t *doc,
    ngx_http_zmq_outconn_conf_t *oc, ngx_str_t *exchange)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_zmq_worker_t        *w;
    ngx_http_zmq_send_check_t    *chk;
    ngx_http_zmq_outconn_conf_t   probe;

    chk = ngx_pcalloc(r->pool, sizeof(ngx_http_zmq_send_check_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (chk == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    chk->request = r;
    chk->ar = ar;
    chk->doc = doc;

    cln->handler = ngx_http_zmq_admin_check_cleanup;
    cln->data = chk;

    /* the outconn's definition (addresses, vhost, login); the probe copies */

    probe = *oc;
    probe.name.len = sizeof("check:") - 1 + oc->name.len;
    probe.name.data = ngx_pnalloc(r->pool, probe.name.len);
    if (probe.name.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_sprintf(probe.name.data, "check:%V", &oc->name);

    w = ngx_http_zmq_worker();

    chk->probe = ngx_zmq_amqp_probe_exchange(&w->amqp, &probe, exchange,
                                             ngx_http_zmq_admin_send_checked,
                                             chk, ngx_cycle->log);
    if (chk->probe == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    /* a client that goes away ends the request, and with it the check */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_http_zmq_admin_send_checked(void *data, ngx_zmq_amqp_probe_result_t *res)
{
    ngx_http_zmq_send_check_t  *chk = data;

    u_char               text[512];
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    chk->probe = NULL;              /* it frees itself once this returns */

    r = chk->request;
    c = r->connection;

    r->read_event_handler = ngx_http_block_reading;

    if (res->rc == NGX_OK) {
        rc = ngx_http_zmq_admin_send_publish(r, chk->ar, chk->doc, 0);

    } else if (res->rc == NGX_DECLINED) {
        /* the broker's words: "NOT_FOUND - no exchange 'x' in vhost '/'" */
        ngx_snprintf(text, sizeof(text) - 1, "%V%Z", &res->error);
        text[sizeof(text) - 1] = '\0';

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "zmq admin: %V sends through amqp_outconn \"%s\": "
                      "not sent, the broker refused the exchange: %s",
                      &chk->ar->principal, chk->ar->name, text);

        rc = res->reply_code == AMQP_NOT_FOUND
             ? ngx_http_zmq_error(r, NGX_HTTP_NOT_FOUND,
                                  "exchange_not_found", (char *) text, 0)
             : ngx_http_zmq_error(r, NGX_HTTP_BAD_GATEWAY,
                                  "exchange_refused", (char *) text, 0);

    } else {
        ngx_snprintf(text, sizeof(text) - 1, "the broker is not reachable; "
                     "try again later (checking the exchange: %V)%Z",
                     &res->error);
        text[sizeof(text) - 1] = '\0';

        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "broker_unavailable", (char *) text, 1);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_zmq_admin_check_cleanup(void *data)
{
    ngx_http_zmq_send_check_t  *chk = data;

    if (chk->probe != NULL) {
        ngx_zmq_amqp_probe_cancel(chk->probe);
        chk->probe = NULL;
    }
}


ngx_int_t
ngx_http_zmq_admin_invoke(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar)
{
    json_t                  *obj;
    ngx_int_t                rc;
    const char              *kind;
    ngx_http_zmq_ctx_t      *ctx;
    ngx_http_zmq_runtime_t  *rt;

    rt = ngx_http_zmq_runtime_current();

    if (rt == NULL || rt->cfg == NULL) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "service_unavailable", "this worker "
                                       "runs no configuration yet");
    }

    obj = NULL;

    if (zgw_name_valid(ar->name)) {
        obj = zgw_config_get(rt->cfg, ZGW_KIND_SERVICE, ar->name);
    }

    if (obj == NULL) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "service '%s' does not exist",
                                       zgw_name_valid(ar->name) ? ar->name
                                                                : "?");
    }

    kind = json_string_value(json_object_get(obj, "kind"));
    if (kind == NULL) {
        kind = "publish";                   /* the model's default */
    }

    if (ngx_strcmp(kind, "publish") != 0 && ngx_strcmp(kind, "rpc") != 0
        && ngx_strcmp(kind, "invoke") != 0)
    {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_IMPLEMENTED,
                                       "not_invokable", "invocation of %s "
                                       "services is not built into the "
                                       "gateway: they run only in zmqd "
                                       "(zmqctl invoke runs them); the "
                                       "gateway invokes publish, rpc and "
                                       "invoke services", kind);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);
    ctx->read_us = ngx_http_zmq_metrics_now();

    ctx->service.data = (u_char *) ar->name;
    ctx->service.len = ngx_strlen(ar->name);
    ctx->nparams = 0;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "zmq admin: %V invokes service \"%s\"", &ar->principal,
                  ar->name);

    rc = ngx_http_zmq_publish_service(r, ctx, NULL);

    if (rc == NGX_DONE) {
        /* the broker's answer finalizes the request */
        r->main->count++;
    }

    return rc;
}


/*
 * The message the body describes: NGX_OK, NGX_DECLINED with the reason
 * in err (naming the field), NGX_ERROR.
 */
static ngx_int_t
ngx_http_zmq_admin_send_parse(ngx_http_request_t *r, json_t *doc,
    ngx_http_zmq_outconn_conf_t *oc, ngx_http_zmq_publish_t *msg,
    ngx_str_t *message_id, u_char *err, size_t size)
{
    char                      echo[80];
    json_t                   *v;
    ngx_int_t                 rc;
    ngx_uint_t                i;
    const char               *key, *why;
    amqp_basic_properties_t  *props;

    json_object_foreach(doc, key, v) {
        for (i = 0; ngx_http_zmq_send_fields[i] != NULL; i++) {
            if (ngx_strcmp(key, ngx_http_zmq_send_fields[i]) == 0) {
                break;
            }
        }

        if (ngx_http_zmq_send_fields[i] == NULL) {
            zgw_amqp_echo(echo, sizeof(echo), key, ngx_strlen(key), 64);
            ngx_http_zmq_send_bad("unknown field \"%s\": a send takes "
                                  "exchange, routing_key, body or "
                                  "body_base64, properties, headers and "
                                  "mandatory", echo);
        }
    }

    /* exchange and routing_key: strings, "" when absent */

    ngx_str_set(&msg->exchange, "");
    ngx_str_set(&msg->routing_key, "");

    v = json_object_get(doc, "exchange");
    if (v != NULL) {
        if (!json_is_string(v)) {
            ngx_http_zmq_send_bad("exchange must be a string (\"\" is the "
                                  "default exchange)");
        }

        msg->exchange.data = (u_char *) json_string_value(v);
        msg->exchange.len = json_string_length(v);

        why = msg->exchange.len > ZGW_AMQP_SHORTSTR_MAX
              ? "is longer than 255 bytes"
              : zgw_amqp_header_value_check((char *) msg->exchange.data,
                                            msg->exchange.len);
        if (why != NULL) {
            ngx_http_zmq_send_bad("exchange: %s", why);
        }
    }

    v = json_object_get(doc, "routing_key");
    if (v != NULL) {
        if (!json_is_string(v)) {
            ngx_http_zmq_send_bad("routing_key must be a string");
        }

        msg->routing_key.data = (u_char *) json_string_value(v);
        msg->routing_key.len = json_string_length(v);

        why = zgw_amqp_header_value_check((char *) msg->routing_key.data,
                                          msg->routing_key.len);
        if (why != NULL) {
            ngx_http_zmq_send_bad("routing_key: %s", why);
        }
    }

    why = zgw_amqp_routing_key_check((char *) msg->exchange.data,
                                     msg->exchange.len,
                                     (char *) msg->routing_key.data,
                                     msg->routing_key.len);
    if (why != NULL) {
        ngx_http_zmq_send_bad("routing_key: %s", why);
    }

    v = json_object_get(doc, "mandatory");
    if (v != NULL && !json_is_boolean(v)) {
        ngx_http_zmq_send_bad("mandatory must be true or false");
    }

    msg->mandatory = json_is_true(v);
    msg->confirm = 1;                       /* 2xx means confirmed */

    rc = ngx_http_zmq_admin_send_body(r, doc, msg, err, size);
    if (rc != NGX_OK) {
        return rc;
    }

    /* properties: the outgoing connection's defaults, then the body's */

    props = ngx_pcalloc(r->pool, sizeof(amqp_basic_properties_t));
    if (props == NULL) {
        return NGX_ERROR;
    }

    msg->props = props;

    if (oc != NULL
        && ngx_http_zmq_props_defaults(r->pool, NULL, oc, props) != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = json_object_get(doc, "properties");
    if (v != NULL) {
        rc = ngx_http_zmq_admin_send_props(r, v, oc, props, err, size);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    rc = ngx_http_zmq_admin_send_headers(r, json_object_get(doc, "headers"),
                                         props, err, size);
    if (rc != NGX_OK) {
        return rc;
    }

    if (props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        message_id->data = props->message_id.bytes;
        message_id->len = props->message_id.len;

    } else {
        if (ngx_http_zmq_message_id(r->pool, message_id) != NGX_OK) {
            return NGX_ERROR;
        }

        props->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props->message_id.bytes = message_id->data;
        props->message_id.len = message_id->len;
    }

    return NGX_OK;
}


/* body (the string's UTF-8 bytes) or body_base64 (the bytes it encodes) */
static ngx_int_t
ngx_http_zmq_admin_send_body(ngx_http_request_t *r, json_t *doc,
    ngx_http_zmq_publish_t *msg, u_char *err, size_t size)
{
    json_t       *text, *b64;
    ngx_str_t     body;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    text = json_object_get(doc, "body");
    b64 = json_object_get(doc, "body_base64");

    if ((text == NULL) == (b64 == NULL)) {
        ngx_http_zmq_send_bad("give exactly one of body (a string) and "
                              "body_base64 (bytes in base64)");
    }

    if (text != NULL) {
        if (!json_is_string(text)) {
            ngx_http_zmq_send_bad("body must be a string (use body_base64 "
                                  "for bytes)");
        }

        body.data = (u_char *) json_string_value(text);
        body.len = json_string_length(text);

    } else {
        if (!json_is_string(b64)) {
            ngx_http_zmq_send_bad("body_base64 must be a string");
        }

        switch (ngx_http_zmq_admin_base64(r->pool, json_string_value(b64),
                                          json_string_length(b64), &body))
        {
        case NGX_OK:
            break;

        case NGX_DECLINED:
            ngx_http_zmq_send_bad("body_base64 is not valid base64 (RFC "
                                  "4648, with its padding)");

        default:
            return NGX_ERROR;
        }
    }

    msg->body_len = (off_t) body.len;

    if (body.len == 0) {
        msg->body = NULL;
        return NGX_OK;
    }

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    b->pos = body.data;
    b->last = body.data + body.len;
    b->memory = 1;
    b->last_buf = 1;

    cl->buf = b;
    cl->next = NULL;

    msg->body = cl;

    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_admin_send_props(ngx_http_request_t *r, json_t *props,
    ngx_http_zmq_outconn_conf_t *oc, amqp_basic_properties_t *p,
    u_char *err, size_t size)
{
    char                      echo[80];
    json_t                   *v;
    const char               *key, *why;
    ngx_http_zmq_send_prop_t  *d;

    if (!json_is_object(props)) {
        ngx_http_zmq_send_bad("properties must be an object of AMQP basic "
                              "properties");
    }

    json_object_foreach(props, key, v) {
        for (d = ngx_http_zmq_send_props; d->name != NULL; d++) {
            if (ngx_strcmp(key, d->name) == 0) {
                break;
            }
        }

        if (d->name == NULL) {
            zgw_amqp_echo(echo, sizeof(echo), key, ngx_strlen(key), 64);
            ngx_http_zmq_send_bad("properties: unknown property \"%s\": the "
                                  "AMQP basic properties are content_type, "
                                  "content_encoding, delivery_mode, "
                                  "priority, correlation_id, reply_to, "
                                  "expiration, message_id, timestamp, type, "
                                  "user_id and app_id", echo);
        }

        why = NULL;

        switch (ngx_http_zmq_admin_send_prop(r->pool, v, d, oc, p, &why)) {

        case NGX_OK:
            break;

        case NGX_DECLINED:
            ngx_http_zmq_send_bad("properties.%s: %s", d->name, why);

        default:
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* one property: NGX_OK, or NGX_DECLINED with why */
static ngx_int_t
ngx_http_zmq_admin_send_prop(ngx_pool_t *pool, json_t *v,
    ngx_http_zmq_send_prop_t *d, ngx_http_zmq_outconn_conf_t *oc,
    amqp_basic_properties_t *p, const char **why)
{
    json_int_t     n;
    const char    *s;
    amqp_bytes_t  *out;

    out = (amqp_bytes_t *) ((u_char *) p + d->offset);

    switch (d->type) {

    case NGX_HTTP_ZMQ_SEND_SHORT:
        *why = ngx_http_zmq_admin_send_short(v, 0, out);
        break;

    case NGX_HTTP_ZMQ_SEND_ID:
        *why = ngx_http_zmq_admin_send_short(v, 1, out);
        break;

    case NGX_HTTP_ZMQ_SEND_REPLY_TO:
        *why = ngx_http_zmq_admin_send_short(v, 0, out);
        if (*why == NULL) {
            *why = zgw_amqp_reply_to_check((char *) out->bytes, out->len);
        }
        break;

    case NGX_HTTP_ZMQ_SEND_USER_ID:
        *why = ngx_http_zmq_admin_send_short(v, 1, out);

        /* RabbitMQ closes the channel, and fails every message on it */
        if (*why == NULL && oc != NULL
            && (out->len != oc->username.len
                || ngx_memcmp(out->bytes, oc->username.data, out->len) != 0))
        {
            *why = "must be the user the outgoing connection logs in as "
                   "(RabbitMQ refuses any other)";
        }
        break;

    case NGX_HTTP_ZMQ_SEND_EXPIRATION:
        if (json_is_integer(v)) {
            n = json_integer_value(v);
            if (n < 0 || (unsigned long long) n > ZGW_AMQP_EXPIRATION_MAX) {
                *why = "must be 0-4294967295 (milliseconds)";
                break;
            }

            out->bytes = ngx_pnalloc(pool, NGX_INT64_LEN);
            if (out->bytes == NULL) {
                return NGX_ERROR;
            }

            out->len = ngx_sprintf(out->bytes, "%L", (int64_t) n)
                       - (u_char *) out->bytes;
            break;
        }

        *why = json_is_string(v)
               ? zgw_amqp_expiration_check(json_string_value(v),
                                           json_string_length(v), NULL)
               : "must be a number of milliseconds (a string or an "
                 "integer)";
        if (*why == NULL) {
            out->bytes = (void *) json_string_value(v);
            out->len = json_string_length(v);
        }
        break;

    case NGX_HTTP_ZMQ_SEND_MODE:
        s = json_string_value(v);

        if (json_is_integer(v) && (json_integer_value(v) == 1
                                   || json_integer_value(v) == 2))
        {
            p->delivery_mode = (uint8_t) json_integer_value(v);

        } else if (s != NULL && ngx_strcmp(s, "transient") == 0) {
            p->delivery_mode = 1;

        } else if (s != NULL && ngx_strcmp(s, "persistent") == 0) {
            p->delivery_mode = 2;

        } else {
            *why = "must be 1, 2, \"transient\" or \"persistent\"";
        }
        break;

    case NGX_HTTP_ZMQ_SEND_PRIORITY:
        if (!json_is_integer(v) || json_integer_value(v) < 0
            || json_integer_value(v) > 9)
        {
            *why = "must be an integer 0-9";
            break;
        }
        p->priority = (uint8_t) json_integer_value(v);
        break;

    default: /* NGX_HTTP_ZMQ_SEND_TIMESTAMP */
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            *why = "must be an integer, seconds since 1970-01-01 UTC";
            break;
        }
        p->timestamp = (uint64_t) json_integer_value(v);
        break;
    }

    if (*why != NULL) {
        return NGX_DECLINED;
    }

    p->_flags |= d->flag;

    return NGX_OK;
}


/*
 * headers: an object of AMQP table values (strings, integers, booleans),
 * after the ones the request's identity adds (x-zmq-auth and copied
 * claims), whose names it may not take
 */
static ngx_int_t
ngx_http_zmq_admin_send_headers(ngx_http_request_t *r, json_t *headers,
    amqp_basic_properties_t *p, u_char *err, size_t size)
{
    char                 echo[80];
    json_t              *v;
    size_t               len;
    ngx_uint_t           i, j, nauth;
    const char          *key, *why;
    ngx_array_t         *auth;
    ngx_keyval_t        *kv;
    amqp_table_entry_t  *entries, *e;

    if (headers != NULL && !json_is_object(headers)) {
        ngx_http_zmq_send_bad("headers must be an object of names and "
                              "values (strings, integers or booleans)");
    }

    auth = ngx_http_zmq_auth_headers(r);
    nauth = auth != NULL ? auth->nelts : 0;

    if (nauth + json_object_size(headers) == 0) {
        return NGX_OK;
    }

    entries = ngx_pcalloc(r->pool, (nauth + json_object_size(headers))
                                   * sizeof(amqp_table_entry_t));
    if (entries == NULL) {
        return NGX_ERROR;
    }

    j = 0;
    kv = auth != NULL ? auth->elts : NULL;

    for (i = 0; i < nauth; i++) {
        e = &entries[j++];
        e->key.bytes = kv[i].key.data;
        e->key.len = kv[i].key.len;
        e->value.kind = AMQP_FIELD_KIND_UTF8;
        e->value.value.bytes.bytes = kv[i].value.data;
        e->value.value.bytes.len = kv[i].value.len;
    }

    json_object_foreach(headers, key, v) {
        len = ngx_strlen(key);
        zgw_amqp_echo(echo, sizeof(echo), key, len, 64);

        why = zgw_amqp_header_name_check(key, len);

        for (i = 0; why == NULL && i < j; i++) {
            if (entries[i].key.len == len
                && ngx_strncasecmp(entries[i].key.bytes, (u_char *) key,
                                   len) == 0)
            {
                why = i < nauth ? "the gateway sets this header"
                                : "is given twice (names ignore case)";
            }
        }

        if (why != NULL) {
            ngx_http_zmq_send_bad("headers.%s: %s", echo, why);
        }

        e = &entries[j];
        e->key.bytes = (void *) key;
        e->key.len = len;

        if (json_is_string(v)) {
            why = zgw_amqp_header_value_check(json_string_value(v),
                                              json_string_length(v));
            if (why != NULL) {
                ngx_http_zmq_send_bad("headers.%s: %s", echo, why);
            }

            e->value.kind = AMQP_FIELD_KIND_UTF8;
            e->value.value.bytes.bytes = (void *) json_string_value(v);
            e->value.value.bytes.len = json_string_length(v);

        } else if (json_is_integer(v)) {
            e->value.kind = AMQP_FIELD_KIND_I64;
            e->value.value.i64 = (int64_t) json_integer_value(v);

        } else if (json_is_boolean(v)) {
            e->value.kind = AMQP_FIELD_KIND_BOOLEAN;
            e->value.value.boolean = json_is_true(v);

        } else {
            ngx_http_zmq_send_bad("headers.%s: must be a string, an integer "
                                  "or a boolean", echo);
        }

        j++;
    }

    p->_flags |= AMQP_BASIC_HEADERS_FLAG;
    p->headers.num_entries = (int) j;
    p->headers.entries = entries;

    return NGX_OK;
}


/* a short string property: min-255 bytes of text, NULL when it is one */
static const char *
ngx_http_zmq_admin_send_short(json_t *v, size_t min, amqp_bytes_t *out)
{
    size_t  len;

    if (!json_is_string(v)) {
        return "must be a string";
    }

    len = json_string_length(v);

    if (len < min || len > ZGW_AMQP_SHORTSTR_MAX) {
        return min ? "must be 1-255 bytes" : "is longer than 255 bytes";
    }

    out->bytes = (void *) json_string_value(v);
    out->len = len;

    return zgw_amqp_header_value_check(json_string_value(v), len);
}


/*
 * Standard base64 (RFC 4648 section 4) with its padding, as every
 * encoder writes it: NGX_DECLINED for anything else (ngx_decode_base64
 * alone would take what follows a "=" as the end of the input).
 */
static ngx_int_t
ngx_http_zmq_admin_base64(ngx_pool_t *pool, const char *s, size_t len,
    ngx_str_t *out)
{
    size_t     i, pad;
    ngx_str_t  src;
    u_char     c;

    if (len % 4 != 0) {
        return NGX_DECLINED;
    }

    pad = 0;

    for (i = 0; i < len; i++) {
        c = (u_char) s[i];

        if (c == '=') {
            pad++;
            continue;
        }

        if (pad != 0
            || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                 || (c >= '0' && c <= '9') || c == '+' || c == '/'))
        {
            return NGX_DECLINED;
        }
    }

    if (pad > 2) {
        return NGX_DECLINED;
    }

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    src.data = (u_char *) s;
    src.len = len;

    if (ngx_decode_base64(out, &src) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_zmq_admin_send_cleanup(void *data)
{
    json_decref(data);
}


/*
 * POST api/stomp_outconn/NAME/send: the message doc describes, as one SEND
 * through the worker's connection for the stomp_outconn; answered from
 * the worker's answer queue once the broker's RECEIPT (or ERROR, a loss,
 * the timeout) settles it.
 */
static ngx_int_t
ngx_http_zmq_admin_send_stomp(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar, json_t *doc)
{
    u_char                      err[512];
    time_t                      retry;
    ngx_int_t                   rc;
    ngx_str_t                   name;
    const char                 *bad;
    ngx_pool_cleanup_t         *cln;
    ngx_http_zmq_ctx_t         *ctx;
    ngx_zmq_stomp_msg_t         msg;
    ngx_zmq_stomp_conf_t       *sc;
    ngx_zmq_stomp_conn_t       *conn;
    ngx_http_zmq_loc_conf_t    *zlcf;
    ngx_http_zmq_send_stomp_t  *ss;

    name.data = (u_char *) ar->name;
    name.len = ngx_strlen(ar->name);

    sc = ngx_http_zmq_runtime_stomp_outconn(&name);
    conn = ngx_http_zmq_runtime_stomp_conn(&name);

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);
    ctx->stomp = 1;             /* an ERROR for it is a refusal: 502 */

    ngx_memzero(&msg, sizeof(ngx_zmq_stomp_msg_t));

    rc = ngx_http_zmq_admin_stomp_parse(r, doc, sc, &msg, &ctx->message_id,
                                        err, sizeof(err));
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  (char *) err, 0);
    }

    if (sc == NULL || !sc->active || conn == NULL) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "outconn_inactive", "stomp_outconn "
                                       "'%s' is not active", ar->name);
    }

    ss = ngx_palloc(r->pool, sizeof(ngx_http_zmq_send_stomp_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (ss == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the pending SEND reaches the request only through ss */

    ss->ctx = ctx;
    ss->pub = NULL;
    cln->handler = ngx_http_zmq_admin_stomp_cleanup;
    cln->data = ss;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    msg.timeout = zlcf->confirm_timeout;
    msg.data = ss;
    msg.done = ngx_http_zmq_admin_stomp_done;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "zmq admin: %V sends message \"%V\" through stomp_outconn "
                  "\"%s\"", &ar->principal, &ctx->message_id, ar->name);

    ngx_http_zmq_metrics_start(ctx, &name, 1);

    retry = 1;
    bad = NULL;

    rc = ngx_zmq_stomp_publish(conn, &msg, &ss->pub, &retry, &bad,
                               r->connection->log);

    switch (rc) {

    case NGX_OK:
        /* the broker's answer finalizes the request */
        r->main->count++;
        return NGX_DONE;

    case NGX_DECLINED:
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  bad, 0);

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
ngx_http_zmq_admin_stomp_done(ngx_zmq_stomp_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_http_zmq_send_stomp_t  *ss = pub->data;

    ss->pub = NULL;
    ss->ctx->result = result;

    ngx_http_zmq_metrics_observe(ss->ctx);
    ngx_http_zmq_answer_post(ss->ctx);
}


/* the request goes: its SEND stays counted, calls nothing back */
static void
ngx_http_zmq_admin_stomp_cleanup(void *data)
{
    ngx_http_zmq_send_stomp_t  *ss = data;

    if (ss->pub != NULL) {
        ngx_zmq_stomp_detach(ss->pub);
        ss->pub = NULL;
    }

    if (ss->ctx->queued) {
        ngx_queue_remove(&ss->ctx->answer);
        ss->ctx->queued = 0;
    }
}


/*
 * The SEND the body describes: destination, body or body_base64, the
 * properties a STOMP SEND carries, headers. NGX_OK, NGX_DECLINED with the
 * reason in err (naming the field), NGX_ERROR.
 */
static ngx_int_t
ngx_http_zmq_admin_stomp_parse(ngx_http_request_t *r, json_t *doc,
    ngx_zmq_stomp_conf_t *sc, ngx_zmq_stomp_msg_t *msg,
    ngx_str_t *message_id, u_char *err, size_t size)
{
    char                      echo[80];
    json_t                   *v, *props;
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_array_t               headers;
    const char               *key, *why;
    ngx_http_zmq_publish_t    body;
    amqp_basic_properties_t  *p;

    json_object_foreach(doc, key, v) {
        for (i = 0; ngx_http_zmq_send_stomp_fields[i] != NULL; i++) {
            if (ngx_strcmp(key, ngx_http_zmq_send_stomp_fields[i]) == 0) {
                break;
            }
        }

        if (ngx_http_zmq_send_stomp_fields[i] == NULL) {
            zgw_amqp_echo(echo, sizeof(echo), key, ngx_strlen(key), 64);
            ngx_http_zmq_send_bad("unknown field \"%s\": a send through a "
                                  "stomp_outconn takes destination, body or "
                                  "body_base64, properties and headers",
                                  echo);
        }
    }

    v = json_object_get(doc, "destination");

    if (!json_is_string(v) || json_string_length(v) == 0
        || json_string_length(v) > 1024)
    {
        ngx_http_zmq_send_bad("destination must be a string of 1-1024 "
                              "bytes, e.g. \"/queue/orders\"");
    }

    msg->destination.data = (u_char *) json_string_value(v);
    msg->destination.len = json_string_length(v);

    why = ngx_zmq_stomp_value_check(msg->destination.data,
                                    msg->destination.len);
    if (why != NULL) {
        ngx_http_zmq_send_bad("destination %s", why);
    }

    ngx_memzero(&body, sizeof(ngx_http_zmq_publish_t));

    rc = ngx_http_zmq_admin_send_body(r, doc, &body, err, size);
    if (rc != NGX_OK) {
        return rc;
    }

    msg->body = body.body;
    msg->body_len = body.body_len;

    /* properties: a STOMP SEND's, checked as an AMQP send's */

    p = ngx_pcalloc(r->pool, sizeof(amqp_basic_properties_t));
    if (p == NULL) {
        return NGX_ERROR;
    }

    props = json_object_get(doc, "properties");

    if (props != NULL) {
        if (!json_is_object(props)) {
            ngx_http_zmq_send_bad("properties must be an object");
        }

        json_object_foreach(props, key, v) {
            for (i = 0; ngx_http_zmq_send_stomp_props[i] != NULL; i++) {
                if (ngx_strcmp(key, ngx_http_zmq_send_stomp_props[i]) == 0) {
                    break;
                }
            }

            if (ngx_http_zmq_send_stomp_props[i] == NULL) {
                zgw_amqp_echo(echo, sizeof(echo), key, ngx_strlen(key), 64);
                ngx_http_zmq_send_bad("properties: \"%s\" is not sent over "
                                      "STOMP: the properties are "
                                      "content_type, content_encoding, "
                                      "delivery_mode, priority, "
                                      "correlation_id, reply_to, "
                                      "expiration, message_id and type",
                                      echo);
            }
        }

        rc = ngx_http_zmq_admin_send_props(r, props, NULL, p, err, size);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    rc = ngx_http_zmq_admin_send_headers(r, json_object_get(doc, "headers"),
                                         p, err, size);
    if (rc != NGX_OK) {
        return rc;
    }

    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        message_id->data = p->message_id.bytes;
        message_id->len = p->message_id.len;

    } else if (ngx_http_zmq_message_id(r->pool, message_id) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_zmq_admin_stomp_headers(r, sc, p, message_id, &headers,
                                          err, size);
    if (rc != NGX_OK) {
        return rc;
    }

    msg->headers = headers.elts;
    msg->nheaders = headers.nelts;

    return NGX_OK;
}


static ngx_keyval_t *
ngx_http_zmq_admin_stomp_push(ngx_array_t *a, const char *name,
    u_char *value, size_t len)
{
    ngx_keyval_t  *kv;

    kv = ngx_array_push(a);
    if (kv == NULL) {
        return NULL;
    }

    kv->key.data = (u_char *) name;
    kv->key.len = ngx_strlen(name);
    kv->value.data = value;
    kv->value.len = len;

    return kv;
}


/*
 * The SEND's headers from the properties, as a REST channel's (see
 * ngx_http_zmq_stomp_headers()): the stomp_outconn's defaults where a
 * property is not given; expiration becomes ActiveMQ's absolute expires;
 * the message id goes as amqp-message-id (zmq_message_id with use_jms).
 */
static ngx_int_t
ngx_http_zmq_admin_stomp_headers(ngx_http_request_t *r,
    ngx_zmq_stomp_conf_t *sc, amqp_basic_properties_t *p,
    ngx_str_t *message_id, ngx_array_t *out, u_char *err, size_t size)
{
    u_char              *v;
    int64_t              ms;
    ngx_int_t            i;
    ngx_str_t            ct;
    ngx_time_t          *tp;
    ngx_keyval_t        *kv;
    amqp_table_entry_t  *e;

    if (ngx_array_init(out, r->pool, 12 + p->headers.num_entries,
                       sizeof(ngx_keyval_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

#define ngx_http_zmq_admin_stomp_add(name, val, l)                            \
    if (ngx_http_zmq_admin_stomp_push(out, name, (u_char *) (val), l)         \
        == NULL)                                                              \
    {                                                                         \
        return NGX_ERROR;                                                     \
    }

    ct.len = 0;
    ct.data = NULL;

    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
        ct.data = p->content_type.bytes;
        ct.len = p->content_type.len;

    } else if (sc != NULL && sc->content_type.len) {
        ct = sc->content_type;
    }

    if (ct.len) {
        ngx_http_zmq_admin_stomp_add("content-type", ct.data, ct.len);
    }

    if (p->_flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) {
        ngx_http_zmq_admin_stomp_add("content-encoding",
                                     p->content_encoding.bytes,
                                     p->content_encoding.len);
    }

    if ((p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)
        ? p->delivery_mode == 2 : (sc == NULL || sc->persistent))
    {
        ngx_http_zmq_admin_stomp_add("persistent", "true", 4);

    } else {
        ngx_http_zmq_admin_stomp_add("persistent", "false", 5);
    }

    i = (p->_flags & AMQP_BASIC_PRIORITY_FLAG)
        ? (ngx_int_t) p->priority : (sc != NULL ? sc->priority : -1);

    if (i >= 0 && i <= 9) {
        v = ngx_pnalloc(r->pool, 1);
        if (v == NULL) {
            return NGX_ERROR;
        }
        *v = (u_char) ('0' + i);
        ngx_http_zmq_admin_stomp_add("priority", v, 1);
    }

    ms = -1;

    if (p->_flags & AMQP_BASIC_EXPIRATION_FLAG) {
        i = ngx_atoi(p->expiration.bytes, p->expiration.len);
        if (i == NGX_ERROR) {
            ngx_http_zmq_send_bad("properties.expiration: must be a number "
                                  "of milliseconds");
        }
        ms = i;

    } else if (sc != NULL && sc->expires > 0) {
        ms = sc->expires;
    }

    if (ms >= 0) {
        v = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (v == NULL) {
            return NGX_ERROR;
        }
        tp = ngx_timeofday();
        ngx_http_zmq_admin_stomp_add("expires", v,
                                     ngx_sprintf(v, "%uL",
                                                 (uint64_t) tp->sec * 1000
                                                 + tp->msec + (uint64_t) ms)
                                     - v);
    }

    if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        ngx_http_zmq_admin_stomp_add("correlation-id",
                                     p->correlation_id.bytes,
                                     p->correlation_id.len);
    }

    if (p->_flags & AMQP_BASIC_REPLY_TO_FLAG) {
        ngx_http_zmq_admin_stomp_add("reply-to", p->reply_to.bytes,
                                     p->reply_to.len);
    }

    if (p->_flags & AMQP_BASIC_TYPE_FLAG) {
        ngx_http_zmq_admin_stomp_add("type", p->type.bytes, p->type.len);
    }

    ngx_http_zmq_admin_stomp_add((sc != NULL && sc->use_jms)
                                 ? "zmq_message_id" : "amqp-message-id",
                                 message_id->data, message_id->len);

    if (sc != NULL && sc->use_jms && ngx_zmq_stomp_is_text(&ct)) {
        /* marks a textual body (not sent): see ngx_zmq_stomp_text() */
        ngx_http_zmq_admin_stomp_add("amq-msg-type", "text", 4);
    }

    /* the headers: strings, integers and booleans as text */

    e = p->headers.entries;

    for (i = 0; (p->_flags & AMQP_BASIC_HEADERS_FLAG)
                && i < p->headers.num_entries; i++)
    {
        /* the gateway's own headers, and "type", which properties sets */

        if (zgw_stomp_reserved(e[i].key.bytes, e[i].key.len, 1)) {
            ngx_http_zmq_send_bad("headers.%*s: names a STOMP header the "
                                  "gateway sets (or a property sets)",
                                  ngx_min(e[i].key.len, 64),
                                  e[i].key.bytes);
        }

        kv = ngx_array_push(out);
        if (kv == NULL) {
            return NGX_ERROR;
        }

        kv->key.data = e[i].key.bytes;
        kv->key.len = e[i].key.len;

        switch (e[i].value.kind) {

        case AMQP_FIELD_KIND_I64:
            kv->value.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
            if (kv->value.data == NULL) {
                return NGX_ERROR;
            }
            kv->value.len = ngx_sprintf(kv->value.data, "%L",
                                        e[i].value.value.i64)
                            - kv->value.data;
            break;

        case AMQP_FIELD_KIND_BOOLEAN:
            if (e[i].value.value.boolean) {
                ngx_str_set(&kv->value, "true");
            } else {
                ngx_str_set(&kv->value, "false");
            }
            break;

        default: /* AMQP_FIELD_KIND_UTF8 */
            kv->value.data = e[i].value.value.bytes.bytes;
            kv->value.len = e[i].value.value.bytes.len;
            break;
        }
    }

#undef ngx_http_zmq_admin_stomp_add

    return NGX_OK;
}
