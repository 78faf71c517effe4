
/*
 * ngx_http_zmq_module: the AMQP properties of a message, from the outgoing
 * connection's and the service's defaults and the request's headers; and
 * message ids.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "zgw_amqp_check.h"
#include "zgw_jms.h"
#include "zgw_stomp_headers.h"
#include "ngx_http_zmq_module.h"


#define NGX_HTTP_ZMQ_HEADER_PREFIX  "X-Zmq-Header-"


static ngx_int_t ngx_http_zmq_uuid4(u_char *out);
static ngx_int_t ngx_http_zmq_short(ngx_http_request_t *r,
    ngx_table_elt_t *h, size_t min, amqp_bytes_t *out, const char **bad);
static const char *ngx_http_zmq_bad_header(ngx_http_request_t *r,
    ngx_str_t *name, const char *why);
static ngx_int_t ngx_http_zmq_jms(ngx_http_request_t *r,
    amqp_basic_properties_t *props, amqp_table_entry_t *entries,
    ngx_uint_t *n);


/*
 * Message ids: random bytes drawn from OpenSSL in bulk. RAND_bytes checks
 * for a fork with getpid() and looks its parameters up on every call; once
 * per 256 ids is cheap. The pool belongs to the process that filled it, so
 * a worker never reuses bytes the master drew before fork().
 */

static ngx_int_t
ngx_http_zmq_uuid4(u_char *out)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    if (w->ids_used == sizeof(w->ids) || w->ids_owner != ngx_pid) {
        if (RAND_bytes(w->ids, sizeof(w->ids)) != 1) {
            return NGX_ERROR;
        }
        w->ids_used = 0;
        w->ids_owner = ngx_pid;
    }

    zgw_uuid4_format(&w->ids[w->ids_used], (char *) out);
    w->ids_used += 16;

    return NGX_OK;
}


/*
 * A short string property from a request header: min-255 bytes of UTF-8
 * without control characters (the answer echoes a message id in JSON, and
 * consumers such as zmqd's http services refuse control bytes)
 */
static ngx_int_t
ngx_http_zmq_short(ngx_http_request_t *r, ngx_table_elt_t *h, size_t min,
    amqp_bytes_t *out, const char **bad)
{
    const char  *why;

    if (h->value.len < min || h->value.len > 255) {
        why = min ? "must be 1-255 bytes" : "is longer than 255 bytes";

    } else {
        why = zgw_amqp_header_value_check((char *) h->value.data,
                                          h->value.len);
    }

    if (why != NULL) {
        *bad = ngx_http_zmq_bad_header(r, &h->key, why);
        return NGX_DECLINED;
    }

    out->bytes = h->value.data;
    out->len = h->value.len;
    return NGX_OK;
}


/* "header <name>: <why>" for the answer, the name made printable */
static const char *
ngx_http_zmq_bad_header(ngx_http_request_t *r, ngx_str_t *name,
    const char *why)
{
    char     echo[80];
    u_char  *msg;
    size_t   len;

    zgw_amqp_echo(echo, sizeof(echo), (char *) name->data, name->len, 64);

    len = sizeof("header : ") + ngx_strlen(echo) + ngx_strlen(why);

    msg = ngx_pnalloc(r->pool, len);
    if (msg == NULL) {
        return why;
    }

    ngx_sprintf(msg, "header %s: %s%Z", echo, why);

    return (const char *) msg;
}


ngx_int_t
ngx_http_zmq_properties(ngx_http_request_t *r, ngx_http_zmq_service_t *svc,
    ngx_http_zmq_outconn_conf_t *oc, amqp_basic_properties_t *props,
    ngx_str_t *message_id, const char **bad)
{
    ngx_int_t                      n;
    ngx_str_t                      name;
    ngx_uint_t                     i, j, k, nh;
    const char                    *why;
    ngx_list_part_t               *part;
    ngx_array_t                   *auth;
    ngx_keyval_t                  *kv;
    ngx_table_elt_t               *h;
    amqp_table_entry_t            *entries;

    if (ngx_http_zmq_props_defaults(r->pool, svc, oc, props) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the request's headers */

    nh = svc->headers.nelts + NGX_HTTP_ZMQ_TRACE_HEADERS;
    part = &r->headers_in.headers.part;

    for ( ;; ) {
        nh += part->nelts;
        if (part->next == NULL) {
            break;
        }
        part = part->next;
    }

    /* who the request proved to be: x-zmq-auth, and copied claims */
    auth = ngx_http_zmq_auth_headers(r);
    if (auth != NULL) {
        nh += auth->nelts;
    }

    entries = ngx_palloc(r->pool, (nh + 1 + ZGW_JMS_HEADERS_MAX)
                                  * sizeof(amqp_table_entry_t));
    if (entries == NULL) {
        return NGX_ERROR;
    }

    j = 0;

    for (k = 0; k < 2; k++) {
        if (k == 0) {
            kv = svc->headers.elts;
            n = svc->headers.nelts;

        } else if (auth != NULL) {
            kv = auth->elts;
            n = auth->nelts;

        } else {
            break;
        }

        for (i = 0; i < (ngx_uint_t) n; i++) {
            entries[j].key.bytes = kv[i].key.data;
            entries[j].key.len = kv[i].key.len;
            entries[j].value.kind = AMQP_FIELD_KIND_UTF8;
            entries[j].value.value.bytes.bytes = kv[i].value.data;
            entries[j].value.value.bytes.len = kv[i].value.len;
            j++;
        }
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
            if (ngx_http_zmq_short(r, &h[i], 0, &props->content_type, bad)
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
            if (ngx_http_zmq_short(r, &h[i], 0, &props->content_encoding,
                                   bad)
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
            if (ngx_http_zmq_short(r, &h[i], 1, &props->message_id, bad)
                != NGX_OK)
            {
                return NGX_DECLINED;
            }
            *message_id = h[i].value;

        } else if (h[i].key.len == sizeof("X-Correlation-Id") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "X-Correlation-Id",
                                      h[i].key.len) == 0)
        {
            if (ngx_http_zmq_short(r, &h[i], 0, &props->correlation_id, bad)
                != NGX_OK)
            {
                return NGX_DECLINED;
            }
            props->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;

        } else if (h[i].key.len == sizeof("X-Reply-To") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Reply-To",
                                      h[i].key.len) == 0)
        {
            why = zgw_amqp_header_value_check((char *) h[i].value.data,
                                              h[i].value.len);
            if (why == NULL) {
                why = zgw_amqp_reply_to_check((char *) h[i].value.data,
                                              h[i].value.len);
            }
            if (why != NULL) {
                *bad = ngx_http_zmq_bad_header(r, &h[i].key, why);
                return NGX_DECLINED;
            }
            props->_flags |= AMQP_BASIC_REPLY_TO_FLAG;
            props->reply_to.bytes = h[i].value.data;
            props->reply_to.len = h[i].value.len;

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
            why = zgw_amqp_expiration_check((char *) h[i].value.data,
                                            h[i].value.len, NULL);
            if (why != NULL) {
                *bad = ngx_http_zmq_bad_header(r, &h[i].key, why);
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

        } else if (h[i].key.len >= sizeof(NGX_HTTP_ZMQ_HEADER_PREFIX) - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) NGX_HTTP_ZMQ_HEADER_PREFIX,
                                      sizeof(NGX_HTTP_ZMQ_HEADER_PREFIX) - 1)
                      == 0)
        {
            /* nothing the broker would close the connection for */

            name.data = h[i].key.data
                        + sizeof(NGX_HTTP_ZMQ_HEADER_PREFIX) - 1;
            name.len = h[i].key.len - (sizeof(NGX_HTTP_ZMQ_HEADER_PREFIX) - 1);

            why = zgw_amqp_header_name_check((char *) name.data, name.len);
            if (why == NULL && oc->use_jms
                && zgw_jms_reserved(name.data, name.len))
            {
                why = "headers beginning with JMS or rmq. are the "
                      "gateway's on a use_jms connection";
            }
            if (why == NULL) {
                why = zgw_amqp_header_value_check((char *) h[i].value.data,
                                                  h[i].value.len);
            }

            /*
             * A header the service sets is the service's (a consumer may
             * trust it: a tenant, a route), and a name given twice would
             * be two entries of one key in the table
             */
            for (k = 0; why == NULL && k < j; k++) {
                if (entries[k].key.len == name.len
                    && ngx_strncasecmp(entries[k].key.bytes, name.data,
                                       name.len) == 0)
                {
                    why = k < svc->headers.nelts
                          ? "the service sets this header"
                          : (auth != NULL
                             && k < svc->headers.nelts + auth->nelts)
                            ? "the gateway sets this header"
                            : "is given twice";
                }
            }

            if (why != NULL) {
                *bad = ngx_http_zmq_bad_header(r, &h[i].key, why);
                return NGX_DECLINED;
            }

            entries[j].key.bytes = name.data;
            entries[j].key.len = name.len;
            entries[j].value.kind = AMQP_FIELD_KIND_UTF8;
            entries[j].value.value.bytes.bytes = h[i].value.data;
            entries[j].value.value.bytes.len = h[i].value.len;
            j++;
        }
    }

    /* W3C trace context (ngx_http_zmq_trace.c) */
    n = ngx_http_zmq_trace_headers(r, entries, &j, bad);
    if (n != NGX_OK) {
        return n;
    }

    if (message_id->len == 0
        && ngx_http_zmq_message_id(r->pool, message_id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    props->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    props->message_id.bytes = message_id->data;
    props->message_id.len = message_id->len;

    if (oc->use_jms && ngx_http_zmq_jms(r, props, entries, &j) != NGX_OK) {
        return NGX_ERROR;
    }

    if (j > 0) {
        props->_flags |= AMQP_BASIC_HEADERS_FLAG;
        props->headers.num_entries = (int) j;
        props->headers.entries = entries;
    }

    return NGX_OK;
}


/*
 * A use_jms connection: the headers RabbitMQ's JMS client reads from an
 * AMQP destination (src/core/zgw_jms.h), appended to the n entries; a
 * JMS header the service's configuration names gives way to them. The
 * AMQP timestamp and JMSTimestamp are the same instant.
 */
static ngx_int_t
ngx_http_zmq_jms(ngx_http_request_t *r, amqp_basic_properties_t *props,
    amqp_table_entry_t *entries, ngx_uint_t *n)
{
    char        *id;
    uint64_t     ms;
    ngx_uint_t   i, j;
    ngx_time_t  *tp;

    for (i = 0, j = 0; i < *n; i++) {
        if (!zgw_jms_reserved(entries[i].key.bytes, entries[i].key.len)) {
            entries[j++] = entries[i];
        }
    }

    id = ngx_pnalloc(r->pool, ZGW_JMS_ID_SIZE);
    if (id == NULL) {
        return NGX_ERROR;
    }

    tp = ngx_timeofday();
    ms = (uint64_t) tp->sec * 1000 + tp->msec;
    props->timestamp = (uint64_t) tp->sec;

    *n = j + (ngx_uint_t) zgw_jms_headers(props, ms, &entries[j], id);

    return NGX_OK;
}


/*
 * The outgoing connection's message defaults, then the service's (svc may
 * be NULL: the admin API's send has none), with a timestamp of now.
 */
ngx_int_t
ngx_http_zmq_props_defaults(ngx_pool_t *pool, ngx_http_zmq_service_t *svc,
    ngx_http_zmq_outconn_conf_t *oc, amqp_basic_properties_t *props)
{
    ngx_int_t  n;
    ngx_str_t  ct;

    props->_flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    props->delivery_mode = (uint8_t) (svc != NULL && svc->delivery_mode >= 0
                                      ? svc->delivery_mode
                                      : oc->delivery_mode);
    props->timestamp = (uint64_t) ngx_time();

    n = svc != NULL && svc->priority >= 0 ? svc->priority : oc->priority;
    if (n >= 0) {
        props->_flags |= AMQP_BASIC_PRIORITY_FLAG;
        props->priority = (uint8_t) n;
    }

    n = svc != NULL && svc->expiration >= 0 ? svc->expiration
                                            : oc->expiration;
    if (n >= 0) {
        props->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
        props->expiration.bytes = ngx_pnalloc(pool, NGX_INT_T_LEN);
        if (props->expiration.bytes == NULL) {
            return NGX_ERROR;
        }
        props->expiration.len = ngx_sprintf(props->expiration.bytes, "%i", n)
                                - (u_char *) props->expiration.bytes;
    }

    ct = svc != NULL && svc->content_type.len ? svc->content_type
                                              : oc->content_type;
    if (ct.len) {
        props->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        props->content_type.bytes = ct.data;
        props->content_type.len = ct.len;
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

    return NGX_OK;
}


/* a new message id: a UUID4 in pool */
ngx_int_t
ngx_http_zmq_message_id(ngx_pool_t *pool, ngx_str_t *id)
{
    u_char  *p;

    p = ngx_pnalloc(pool, ZGW_UUID_LEN + 1);
    if (p == NULL || ngx_http_zmq_uuid4(p) != NGX_OK) {
        return NGX_ERROR;
    }

    id->data = p;
    id->len = ZGW_UUID_LEN;

    return NGX_OK;
}


/*
 * STOMP: the same mapping as AMQP (the outgoing connection's defaults,
 * the service's, the request's headers, checked the same way), then
 * written as the headers of a SEND: content-type, content-encoding,
 * persistent, priority, expires (an absolute time in ms, as ActiveMQ
 * takes it: now + the relative expiration), correlation-id, reply-to, the
 * message id (amqp-message-id, which RabbitMQ's STOMP plugin maps to the
 * message_id property; zmq_message_id with use_jms), and every header of
 * the table by its name, none of which may be one the gateway sets
 * (zgw_stomp_reserved(): a 400). With use_jms, amq-msg-type:text marks
 * a textual content type, for ActiveMQ's TextMessage (ngx_zmq_stomp_publish
 * sends it only for a body with a NUL, and content-length only without it,
 * so that ActiveMQ leaves neither as a property); other bodies go with
 * content-length alone, ActiveMQ's BytesMessage.
 */

static ngx_keyval_t *
ngx_http_zmq_stomp_push(ngx_array_t *a, const char *name, u_char *value,
    size_t len)
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


ngx_int_t
ngx_http_zmq_stomp_headers(ngx_http_request_t *r, ngx_http_zmq_service_t *svc,
    ngx_zmq_stomp_conf_t *sc, ngx_array_t *out, ngx_str_t *message_id,
    const char **bad)
{
    int                           i;
    u_char                       *p;
    ngx_int_t                     rc, ms;
    ngx_str_t                     ct;
    ngx_time_t                   *tp;
    ngx_keyval_t                 *kv;
    amqp_table_entry_t           *e;
    amqp_basic_properties_t       props;
    ngx_http_zmq_outconn_conf_t   oc;

    ngx_memzero(&oc, sizeof(ngx_http_zmq_outconn_conf_t));
    ngx_memzero(&props, sizeof(amqp_basic_properties_t));

    oc.name = sc->name;
    oc.delivery_mode = sc->persistent ? 2 : 1;
    oc.priority = sc->priority;
    oc.expiration = sc->expires;
    oc.content_type = sc->content_type;

    rc = ngx_http_zmq_properties(r, svc, &oc, &props, message_id, bad);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_array_init(out, r->pool, 8 + props.headers.num_entries,
                       sizeof(ngx_keyval_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

#define ngx_http_zmq_stomp_add(name, v, l)                                   \
    if (ngx_http_zmq_stomp_push(out, name, (u_char *) (v), l) == NULL) {     \
        return NGX_ERROR;                                                    \
    }

    if (props._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
        ngx_http_zmq_stomp_add("content-type", props.content_type.bytes,
                               props.content_type.len);
    }

    if (props._flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) {
        ngx_http_zmq_stomp_add("content-encoding",
                               props.content_encoding.bytes,
                               props.content_encoding.len);
    }

    if (props.delivery_mode == 2) {
        ngx_http_zmq_stomp_add("persistent", "true", 4);

    } else {
        ngx_http_zmq_stomp_add("persistent", "false", 5);
    }

    if (props._flags & AMQP_BASIC_PRIORITY_FLAG) {
        p = ngx_pnalloc(r->pool, 1);
        if (p == NULL) {
            return NGX_ERROR;
        }
        *p = (u_char) ('0' + props.priority);
        ngx_http_zmq_stomp_add("priority", p, 1);
    }

    if (props._flags & AMQP_BASIC_EXPIRATION_FLAG) {
        ms = ngx_atoi(props.expiration.bytes, props.expiration.len);
        if (ms == NGX_ERROR) {
            *bad = "X-Expiration must be a number of milliseconds";
            return NGX_DECLINED;
        }

        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }
        tp = ngx_timeofday();
        ngx_http_zmq_stomp_add("expires", p,
                               ngx_sprintf(p, "%uL",
                                           (uint64_t) tp->sec * 1000
                                           + tp->msec + (uint64_t) ms) - p);
    }

    if (props._flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        ngx_http_zmq_stomp_add("correlation-id", props.correlation_id.bytes,
                               props.correlation_id.len);
    }

    if (props._flags & AMQP_BASIC_REPLY_TO_FLAG) {
        ngx_http_zmq_stomp_add("reply-to", props.reply_to.bytes,
                               props.reply_to.len);
    }

    ngx_http_zmq_stomp_add(sc->use_jms ? "zmq_message_id"
                                       : "amqp-message-id",
                           message_id->data, message_id->len);

    if (sc->use_jms) {
        ct.data = props.content_type.bytes;
        ct.len = (props._flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
                 ? props.content_type.len : 0;

        if (ngx_zmq_stomp_is_text(&ct)) {
            ngx_http_zmq_stomp_add("amq-msg-type", "text", 4);
        }
    }

    e = props.headers.entries;

    for (i = 0; (props._flags & AMQP_BASIC_HEADERS_FLAG)
                && i < props.headers.num_entries; i++)
    {
        if (zgw_stomp_reserved(e[i].key.bytes, e[i].key.len, 0)) {
            *bad = "an X-Zmq-Header- header names a STOMP header the "
                   "gateway sets";
            return NGX_DECLINED;
        }

        kv = ngx_array_push(out);
        if (kv == NULL) {
            return NGX_ERROR;
        }

        kv->key.data = e[i].key.bytes;
        kv->key.len = e[i].key.len;
        kv->value.data = e[i].value.value.bytes.bytes;
        kv->value.len = e[i].value.value.bytes.len;
    }

#undef ngx_http_zmq_stomp_add

    return NGX_OK;
}
