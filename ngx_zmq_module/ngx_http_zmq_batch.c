
/*
 * ngx_http_zmq_module: batch publishing. A REST channel with "batch": true
 * (or a zmq_service location with zmq_batch on) takes a body of
 * Content-Type application/x-ndjson: one JSON value per line, each line
 * one message with the properties the request's headers give them all.
 * With batch_envelope each line is an object {"body": ..., "message_id":
 * ..., "headers": {...}} instead.
 *
 * The whole body is checked first (a bad line: 400 naming it, nothing
 * published; more lines than max_batch: 413), then every message is
 * published back-to-back on the service's connection (the publishes of one
 * event-loop cycle go out in few writes, and the broker's multiple acks
 * settle them together), and the request is answered once every message
 * is settled: 200 {"results": [...]}, one result per line in line order.
 *
 * Messages that do not fit (max_inflight or zmq_amqp_buffer_limit reached,
 * the connection down) are not published and not queued: their lines are
 * answered 503 at once, and the answer carries Retry-After.
 *
 * Each message's handle is the batch's item, in r->pool; the request's
 * cleanup detaches every message still in flight, so that a client that
 * leaves leaves no pointer into its pool behind in the connection's ring.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "zgw_amqp_check.h"
#include "ngx_http_zmq_module.h"


#define NGX_HTTP_ZMQ_NDJSON  "application/x-ndjson"

/*
 * An envelope's headers: each is compared with those before it, so their
 * number is bounded (a line of 60,000 kept the worker busy for seconds)
 */
#define NGX_HTTP_ZMQ_BATCH_HEADERS_MAX  256


typedef struct ngx_http_zmq_batch_s  ngx_http_zmq_batch_t;

typedef struct {
    ngx_http_zmq_batch_t          *batch;
    ngx_http_zmq_pub_t            *pub;         /* NULL once settled */
    ngx_str_t                      message_id;
    ngx_str_t                      body;
    amqp_table_entry_t            *headers;     /* NULL: the request's */
    int                            nheaders;
    ngx_uint_t                     status;      /* 0: in flight */
    const char                    *error;
} ngx_http_zmq_batch_item_t;

/* why a line was refused (400) */
typedef struct {
    const char                    *code;
    const char                    *message;
} ngx_http_zmq_batch_err_t;

struct ngx_http_zmq_batch_s {
    ngx_http_zmq_ctx_t            *ctx;
    ngx_http_zmq_batch_item_t     *items;
    ngx_uint_t                     n;
    ngx_uint_t                     pending;
    time_t                         retry;       /* a 503: Retry-After */
};


static ngx_int_t ngx_http_zmq_batch_has_header(ngx_http_request_t *r,
    const char *name, size_t len);
static u_char *ngx_http_zmq_batch_body(ngx_http_request_t *r, size_t *len);
static ngx_int_t ngx_http_zmq_batch_refuse(ngx_http_request_t *r,
    ngx_http_zmq_batch_err_t *err, const char *code, ngx_uint_t line,
    const char *what, const char *why);
static ngx_int_t ngx_http_zmq_batch_line(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_http_zmq_batch_item_t *item, u_char *p,
    size_t len, ngx_uint_t line, amqp_basic_properties_t *props,
    ngx_http_zmq_batch_err_t *err);
static ngx_int_t ngx_http_zmq_batch_envelope(ngx_http_request_t *r,
    ngx_http_zmq_batch_item_t *item, json_t *doc, ngx_uint_t line,
    amqp_basic_properties_t *props, ngx_http_zmq_batch_err_t *err);
static void ngx_http_zmq_batch_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_http_zmq_batch_cleanup(void *data);
static ngx_int_t ngx_http_zmq_batch_send(ngx_http_request_t *r,
    ngx_http_zmq_batch_t *batch);


/*
 * 1 when the request is a batch: the location or channel allows batches
 * and the body's media type is application/x-ndjson (any parameters and
 * case); 0 when it is a single message.
 */

ngx_int_t
ngx_http_zmq_batch_detect(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx)
{
    size_t            len;
    ngx_table_elt_t  *ct;

    if (!ctx->batch_ok) {
        return 0;
    }

    ct = r->headers_in.content_type;
    if (ct == NULL) {
        return 0;
    }

    len = sizeof(NGX_HTTP_ZMQ_NDJSON) - 1;

    if (ct->value.len < len
        || ngx_strncasecmp(ct->value.data, (u_char *) NGX_HTTP_ZMQ_NDJSON,
                           len) != 0)
    {
        return 0;
    }

    if (ct->value.len > len && ct->value.data[len] != ';'
        && ct->value.data[len] != ' ' && ct->value.data[len] != '\t')
    {
        return 0;
    }

    ctx->is_batch = 1;
    return 1;
}


static ngx_int_t
ngx_http_zmq_batch_has_header(ngx_http_request_t *r, const char *name,
    size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return 1;
        }
    }
}


/* the whole body in one piece of r->pool (at most max_body bytes) */

static u_char *
ngx_http_zmq_batch_body(ngx_http_request_t *r, size_t *len)
{
    off_t         size;
    u_char       *body, *p;
    size_t        n;
    ssize_t       got;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    size = ngx_http_zmq_request_body_length(r);

    body = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (body == NULL) {
        return NULL;
    }

    p = body;

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl;
         cl = cl->next)
    {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        n = (size_t) (b->file_last - b->file_pos);

        if (n == 0) {
            continue;
        }

        if (b->file == NULL || (off_t) (p - body) + (off_t) n > size) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "zmq: a body buffer of a file part without a "
                          "file, or longer than the body");
            return NULL;
        }

        got = ngx_read_file(b->file, p, n, b->file_pos);
        if (got != (ssize_t) n) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "zmq: could not read the body back from \"%V\"",
                          &b->file->name);
            return NULL;
        }

        p += n;
    }

    *len = p - body;
    *p = '\0';

    return body;
}


/*
 * "line N: <what>: <why>" (what may be NULL) as the request's error, sent
 * by ngx_http_zmq_batch_publish(): NGX_DECLINED, or NGX_ERROR
 */

static ngx_int_t
ngx_http_zmq_batch_refuse(ngx_http_request_t *r, ngx_http_zmq_batch_err_t *err,
    const char *code, ngx_uint_t line, const char *what, const char *why)
{
    u_char  *msg;
    size_t   len;

    len = sizeof("line : : ") + NGX_INT_T_LEN + ngx_strlen(why)
          + (what != NULL ? ngx_strlen(what) : 0);

    msg = ngx_pnalloc(r->pool, len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    if (what != NULL) {
        ngx_sprintf(msg, "line %ui: %s: %s%Z", line, what, why);

    } else {
        ngx_sprintf(msg, "line %ui: %s%Z", line, why);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "zmq: batch refused: %s", msg);

    err->code = code;
    err->message = (char *) msg;

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_zmq_batch_publish(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_http_complex_value_t *routing_key)
{
    u_char                        *body, *p, *last, *nl, *e;
    size_t                         len;
    time_t                         retry;
    ngx_int_t                      rc, stop;
    ngx_str_t                      rk, ct, mid;
    ngx_buf_t                      buf;
    ngx_uint_t                     i, lines;
    ngx_chain_t                    chain;
    const char                    *bad, *code;
    ngx_pool_cleanup_t            *cln;
    ngx_zmq_amqp_conn_t           *conn;
    ngx_http_zmq_batch_t          *batch;
    ngx_http_zmq_publish_t         msg;
    ngx_http_zmq_service_t        *svc;
    ngx_http_zmq_loc_conf_t       *zlcf;
    amqp_basic_properties_t       *props, one;
    ngx_http_zmq_batch_err_t       err;
    ngx_http_zmq_batch_item_t     *item;
    ngx_http_zmq_outconn_conf_t   *oc;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    svc = ngx_http_zmq_runtime_service(&ctx->service);

    if (svc == NULL) {
        return ngx_http_zmq_error(r, NGX_HTTP_NOT_FOUND, "unknown_service",
                                  "the service does not exist", 0);
    }

    if (svc->type != NGX_HTTP_ZMQ_SVC_PUBLISH || svc->stomp_outconn.len) {
        return ngx_http_zmq_error(r, NGX_HTTP_NOT_IMPLEMENTED,
                                  "batch_unsupported", "batches are published "
                                  "by publish services on an amqp_outconn "
                                  "only", 0);
    }

    oc = ngx_http_zmq_runtime_outconn(&svc->outconn);
    conn = ngx_http_zmq_runtime_conn(&svc->outconn);

    if (!svc->active || oc == NULL || !oc->active || conn == NULL) {
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_inactive", "the service or its "
                                  "outgoing connection is not active", 0);
    }

    if (oc->use_jms) {
        return ngx_http_zmq_error(r, NGX_HTTP_NOT_IMPLEMENTED,
                                  "batch_unsupported", "batches are not "
                                  "published on use_jms connections", 0);
    }

    if (ngx_http_zmq_batch_has_header(r, "X-Message-Id", 12)) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header",
                                  "header X-Message-Id: a batch gives each "
                                  "message its own id (batch_envelope's "
                                  "message_id, else a new one)", 0);
    }

    /* what every message shares: the properties, the routing key */

    props = ngx_pcalloc(r->pool, sizeof(amqp_basic_properties_t));
    if (props == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bad = NULL;
    rc = ngx_http_zmq_properties(r, svc, oc, props, &mid, &bad);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header", bad,
                                  0);
    }

    /* Content-Type describes the batch: each line is JSON */

    ct = svc->content_type.len ? svc->content_type : oc->content_type;
    if (ct.len == 0) {
        ngx_str_set(&ct, "application/json");
    }

    props->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    props->content_type.bytes = ct.data;
    props->content_type.len = ct.len;

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

    /* the lines: counted before anything is parsed */

    body = ngx_http_zmq_batch_body(r, &len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = body + len;
    lines = 0;

    for (p = body; p < last; p = nl + 1) {
        nl = ngx_strlchr(p, last, '\n');
        if (nl == NULL) {
            nl = last;
        }

        if (++lines > ctx->max_batch) {
            p = ngx_pnalloc(r->pool, sizeof("the batch has more than  lines "
                                            "(max_batch)") + NGX_INT_T_LEN);
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_sprintf(p, "the batch has more than %ui lines (max_batch)%Z",
                        ctx->max_batch);

            return ngx_http_zmq_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      "batch_too_large", (char *) p, 0);
        }
    }

    if (lines == 0) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_batch",
                                  "the batch has no lines", 0);
    }

    batch = ngx_pcalloc(r->pool, sizeof(ngx_http_zmq_batch_t));
    if (batch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    batch->items = ngx_pcalloc(r->pool,
                               lines * sizeof(ngx_http_zmq_batch_item_t));
    if (batch->items == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    batch->ctx = ctx;
    batch->n = lines;

    /* every line checked before any is published */

    for (i = 0, p = body; i < lines; i++, p = nl + 1) {
        nl = ngx_strlchr(p, last, '\n');
        if (nl == NULL) {
            nl = last;
        }

        e = nl;
        if (e > p && e[-1] == '\r') {
            e--;
        }

        item = &batch->items[i];
        item->batch = batch;

        rc = ngx_http_zmq_batch_line(r, ctx, item, p, e - p, i + 1, props,
                                     &err);
        if (rc == NGX_DECLINED) {
            return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, err.code,
                                      err.message, 0);
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* published back-to-back; the answer waits for every settlement */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_zmq_batch_cleanup;
    cln->data = batch;
    ctx->batch = batch;

    ngx_http_zmq_metrics_start(ctx, &svc->outconn, 0);

    ngx_memzero(&msg, sizeof(ngx_http_zmq_publish_t));
    msg.exchange = svc->exchange;
    msg.routing_key = rk;
    msg.mandatory = svc->mandatory;
    msg.confirm = svc->confirm;
    msg.props = &one;
    msg.body = &chain;
    msg.timeout = zlcf->confirm_timeout;
    msg.done = ngx_http_zmq_batch_done;

    chain.buf = &buf;
    chain.next = NULL;

    stop = 0;
    code = NULL;

    for (i = 0; i < lines; i++) {
        item = &batch->items[i];

        if (stop) {
            item->status = NGX_HTTP_SERVICE_UNAVAILABLE;
            item->error = code;
            continue;
        }

        one = *props;
        one.message_id.bytes = item->message_id.data;
        one.message_id.len = item->message_id.len;

        if (item->headers != NULL) {
            one._flags |= AMQP_BASIC_HEADERS_FLAG;
            one.headers.entries = item->headers;
            one.headers.num_entries = item->nheaders;
        }

        /* the publish copies the body into the connection's buffer */
        ngx_memzero(&buf, sizeof(ngx_buf_t));
        buf.pos = item->body.data;
        buf.last = item->body.data + item->body.len;
        buf.start = buf.pos;
        buf.end = buf.last;
        buf.memory = 1;

        msg.body_len = item->body.len;
        msg.data = item;

        retry = 1;

        rc = ngx_zmq_amqp_publish(conn, &msg, &item->pub, &retry,
                                  r->connection->log);

        switch (rc) {

        case NGX_OK:
            batch->pending++;
            continue;

        case NGX_HTTP_ZMQ_TOO_LARGE:
            /* this line's properties; the next may fit */
            item->pub = NULL;
            item->status = NGX_HTTP_BAD_REQUEST;
            item->error = "bad_header";
            continue;

        case NGX_HTTP_ZMQ_UNAVAILABLE:
            code = "broker_unavailable";
            break;

        case NGX_HTTP_ZMQ_BLOCKED:
            code = "broker_blocked";
            break;

        case NGX_HTTP_ZMQ_OVERLOADED:
            code = "overloaded";
            break;

        default:
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "zmq: batch line %ui could not be published",
                          i + 1);
            code = "internal_error";
            break;
        }

        /* nothing after it fits either: not published, not queued */

        item->pub = NULL;
        item->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        item->error = code;
        batch->retry = ngx_max(batch->retry, retry);
        stop = 1;

        if (i + 1 < lines) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "zmq: batch: lines %ui-%ui of %ui not published: "
                          "%s", i + 1, lines, lines, code);
        }
    }

    if (batch->pending > 0) {
        /* the answer finalizes the request once every message settled */
        return NGX_DONE;
    }

    ngx_http_zmq_metrics_observe(ctx);

    return ngx_http_zmq_batch_send(r, batch);
}


/* one line: a JSON value, or (batch_envelope) an envelope */

static ngx_int_t
ngx_http_zmq_batch_line(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_http_zmq_batch_item_t *item, u_char *p, size_t len, ngx_uint_t line,
    amqp_basic_properties_t *props, ngx_http_zmq_batch_err_t *err)
{
    char          echo[160];
    json_t       *doc;
    u_char       *msg;
    ngx_int_t     rc;
    ngx_uint_t    i;
    json_error_t  jerr;

    for (i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t') {
            break;
        }
    }

    if (i == len) {
        return ngx_http_zmq_batch_refuse(r, err,
                                         "invalid_json", line, NULL,
                                         "the line is empty");
    }

    doc = json_loadb((char *) p, len, JSON_DECODE_ANY, &jerr);

    if (doc == NULL) {
        zgw_amqp_echo(echo, sizeof(echo), jerr.text, ngx_strlen(jerr.text),
                      120);

        msg = ngx_pnalloc(r->pool, sizeof("column : ") + NGX_INT_T_LEN
                                   + sizeof(echo));
        if (msg == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "column %i: %s%Z", (ngx_int_t) jerr.column, echo);

        return ngx_http_zmq_batch_refuse(r, err,
                                         "invalid_json", line,
                                         "not JSON", (char *) msg);
    }

    if (ctx->batch_envelope) {
        rc = ngx_http_zmq_batch_envelope(r, item, doc, line, props, err);
        json_decref(doc);

        if (rc != NGX_OK) {
            return rc;
        }

    } else {
        json_decref(doc);

        /* the line's bytes as sent */
        item->body.data = p;
        item->body.len = len;
    }

    if (item->message_id.len == 0
        && ngx_http_zmq_message_id(r->pool, &item->message_id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * {"body": <any JSON value>, "message_id": "<id>", "headers": {...}}:
 * body is required (a string is published as its text, any other value as
 * its compact JSON); message_id and headers are checked as X-Message-Id
 * and X-Zmq-Header-<name> are; no other key.
 */

static ngx_int_t
ngx_http_zmq_batch_envelope(ngx_http_request_t *r,
    ngx_http_zmq_batch_item_t *item, json_t *doc, ngx_uint_t line,
    amqp_basic_properties_t *props, ngx_http_zmq_batch_err_t *err)
{
    char                 echo[80], *dump;
    size_t               len, nlen;
    json_t              *v, *hv, *body;
    ngx_uint_t           k, nbase, n;
    const char          *key, *hkey, *why, *s;
    amqp_table_entry_t  *entries;

    if (!json_is_object(doc)) {
        return ngx_http_zmq_batch_refuse(r, err,
                                         "invalid_envelope", line, NULL,
                                         "must be an object {\"body\": ..., "
                                         "\"message_id\": ..., \"headers\": "
                                         "{...}}");
    }

    body = NULL;

    json_object_foreach(doc, key, v) {

        if (ngx_strcmp(key, "body") == 0) {
            body = v;

        } else if (ngx_strcmp(key, "message_id") == 0) {
            if (!json_is_string(v)) {
                return ngx_http_zmq_batch_refuse(r, err,
                                                 "invalid_envelope", line,
                                                 "message_id",
                                                 "must be a string");
            }

            s = json_string_value(v);
            len = json_string_length(v);

            why = (len < 1 || len > 255)
                  ? "must be 1-255 bytes"
                  : zgw_amqp_header_value_check(s, len);

            if (why != NULL) {
                return ngx_http_zmq_batch_refuse(r, err,
                                                 "bad_header", line,
                                                 "message_id", why);
            }

            item->message_id.data = ngx_pnalloc(r->pool, len);
            if (item->message_id.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(item->message_id.data, s, len);
            item->message_id.len = len;

        } else if (ngx_strcmp(key, "headers") == 0) {
            if (!json_is_object(v)) {
                return ngx_http_zmq_batch_refuse(r, err,
                                                 "invalid_envelope", line,
                                                 "headers",
                                                 "must be an object of "
                                                 "strings");
            }

            if (json_object_size(v) > NGX_HTTP_ZMQ_BATCH_HEADERS_MAX) {
                return ngx_http_zmq_batch_refuse(r, err,
                                                 "bad_header", line,
                                                 "headers",
                                                 "more than 256 headers");
            }

            nbase = (props->_flags & AMQP_BASIC_HEADERS_FLAG)
                    ? (ngx_uint_t) props->headers.num_entries : 0;

            entries = ngx_palloc(r->pool, (nbase + json_object_size(v) + 1)
                                          * sizeof(amqp_table_entry_t));
            if (entries == NULL) {
                return NGX_ERROR;
            }

            if (nbase) {
                ngx_memcpy(entries, props->headers.entries,
                           nbase * sizeof(amqp_table_entry_t));
            }

            n = nbase;

            json_object_foreach(v, hkey, hv) {
                nlen = ngx_strlen(hkey);

                why = zgw_amqp_header_name_check(hkey, nlen);

                if (why == NULL && !json_is_string(hv)) {
                    why = "must be a string";
                }

                if (why == NULL) {
                    why = zgw_amqp_header_value_check(json_string_value(hv),
                                                      json_string_length(hv));
                }

                /* a name the service, the gateway or the request set */
                for (k = 0; why == NULL && k < n; k++) {
                    if (entries[k].key.len == nlen
                        && ngx_strncasecmp(entries[k].key.bytes,
                                           (u_char *) hkey, nlen) == 0)
                    {
                        why = k < nbase ? "the service, the gateway or the "
                                          "request's X-Zmq-Header- sets this "
                                          "header"
                                        : "is given twice";
                    }
                }

                if (why != NULL) {
                    zgw_amqp_echo(echo, sizeof(echo), hkey, nlen, 64);

                    dump = (char *) ngx_pnalloc(r->pool, sizeof("headers ")
                                                         + sizeof(echo));
                    if (dump == NULL) {
                        return NGX_ERROR;
                    }

                    ngx_sprintf((u_char *) dump, "headers %s%Z", echo);

                    return ngx_http_zmq_batch_refuse(r, err,
                                                     "bad_header", line, dump,
                                                     why);
                }

                /* jansson's strings die with the document: copies */

                entries[n].key.bytes = ngx_pnalloc(r->pool, nlen + 1);
                len = json_string_length(hv);
                entries[n].value.value.bytes.bytes = ngx_pnalloc(r->pool,
                                                                 len + 1);
                if (entries[n].key.bytes == NULL
                    || entries[n].value.value.bytes.bytes == NULL)
                {
                    return NGX_ERROR;
                }

                ngx_memcpy(entries[n].key.bytes, hkey, nlen);
                entries[n].key.len = nlen;
                entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
                ngx_memcpy(entries[n].value.value.bytes.bytes,
                           json_string_value(hv), len);
                entries[n].value.value.bytes.len = len;
                n++;
            }

            if (n > nbase) {
                item->headers = entries;
                item->nheaders = (int) n;
            }

        } else {
            zgw_amqp_echo(echo, sizeof(echo), key, ngx_strlen(key), 64);

            dump = (char *) ngx_pnalloc(r->pool, sizeof("unknown key ''")
                                                 + sizeof(echo));
            if (dump == NULL) {
                return NGX_ERROR;
            }

            ngx_sprintf((u_char *) dump, "unknown key '%s'%Z", echo);

            return ngx_http_zmq_batch_refuse(r, err,
                                             "invalid_envelope", line, NULL,
                                             dump);
        }
    }

    if (body == NULL) {
        return ngx_http_zmq_batch_refuse(r, err,
                                         "invalid_envelope", line, NULL,
                                         "\"body\" is required");
    }

    if (json_is_string(body)) {
        s = json_string_value(body);
        len = json_string_length(body);

        item->body.data = ngx_pnalloc(r->pool, len + 1);
        if (item->body.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(item->body.data, s, len);
        item->body.len = len;

        return NGX_OK;
    }

    dump = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY
                            | JSON_PRESERVE_ORDER);
    if (dump == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(dump);
    item->body.data = ngx_pnalloc(r->pool, len + 1);

    if (item->body.data != NULL) {
        ngx_memcpy(item->body.data, dump, len);
        item->body.len = len;
    }

    free(dump);

    return item->body.data != NULL ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_zmq_batch_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_http_zmq_batch_t       *batch;
    ngx_http_zmq_batch_item_t  *item = pub->data;

    batch = item->batch;
    item->pub = NULL;

    switch (result) {

    case NGX_HTTP_ZMQ_PUB_ACKED:
    case NGX_HTTP_ZMQ_PUB_WRITTEN:
        item->status = NGX_HTTP_ACCEPTED;
        break;

    case NGX_HTTP_ZMQ_PUB_NACKED:
        item->status = NGX_HTTP_SERVICE_UNAVAILABLE;    /* basic.nack */
        item->error = "nacked";
        batch->retry = ngx_max(batch->retry, 1);
        break;

    case NGX_HTTP_ZMQ_PUB_RETURNED:
        item->status = 422;
        item->error = "unroutable";
        break;

    case NGX_HTTP_ZMQ_PUB_LOST:
        item->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        item->error = "broker_unavailable";
        batch->retry = ngx_max(batch->retry, 1);
        break;

    default: /* NGX_HTTP_ZMQ_PUB_TIMEDOUT */
        item->status = NGX_HTTP_GATEWAY_TIME_OUT;
        item->error = "confirm_timeout";
        break;
    }

    if (--batch->pending == 0) {
        ngx_http_zmq_metrics_observe(batch->ctx);
        ngx_http_zmq_answer_post(batch->ctx);
    }
}


/* the request goes away: its messages stay accounted, nothing calls back */

static void
ngx_http_zmq_batch_cleanup(void *data)
{
    ngx_http_zmq_batch_t  *batch = data;

    ngx_uint_t  i;

    for (i = 0; i < batch->n && batch->pending > 0; i++) {
        if (batch->items[i].pub != NULL) {
            ngx_zmq_amqp_detach(batch->items[i].pub);
            batch->items[i].pub = NULL;
            batch->pending--;
        }
    }

    if (batch->ctx->queued) {
        ngx_queue_remove(&batch->ctx->answer);
        batch->ctx->queued = 0;
    }

    batch->ctx->batch = NULL;
}


/* from the answers queue (ngx_http_zmq_publish.c) once all settled */

ngx_int_t
ngx_http_zmq_batch_answer(ngx_http_zmq_ctx_t *ctx)
{
    return ngx_http_zmq_batch_send(ctx->request, ctx->batch);
}


/*
 * 200 {"results": [{"message_id": "...", "status": 202}, {"message_id":
 * "...", "status": 422, "error": "unroutable"}, ...]}, in line order
 */

static ngx_int_t
ngx_http_zmq_batch_send(ngx_http_request_t *r, ngx_http_zmq_batch_t *batch)
{
    json_t                     *doc, *results, *one;
    ngx_str_t                   value;
    ngx_uint_t                  i;
    ngx_http_zmq_batch_item_t  *item;

    doc = json_object();
    results = json_array();

    if (doc == NULL || results == NULL
        || json_object_set_new(doc, "results", results) != 0)
    {
        json_decref(doc);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < batch->n; i++) {
        item = &batch->items[i];

        one = json_object();

        if (one == NULL
            || json_array_append_new(results, one) != 0
            || json_object_set_new(one, "message_id",
                                   json_stringn((char *) item->message_id.data,
                                                item->message_id.len))
               != 0
            || json_object_set_new(one, "status",
                                   json_integer((json_int_t) item->status))
               != 0
            || (item->error != NULL
                && json_object_set_new(one, "error",
                                       json_string(item->error))
                   != 0))
        {
            json_decref(doc);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (batch->retry > 0) {
        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            json_decref(doc);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        value.len = ngx_sprintf(value.data, "%T", batch->retry) - value.data;

        if (ngx_http_zmq_add_header(r, "Retry-After", &value) != NGX_OK) {
            json_decref(doc);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_zmq_send_doc(r, NGX_HTTP_OK, doc);
}
