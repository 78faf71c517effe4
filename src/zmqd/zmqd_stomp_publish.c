/*
 * zmqd: a publish service with a stomp_outconn (issue 16): the message as
 * one STOMP 1.2 SEND to the service's destination, through the publishing
 * connection of the outconn's stomp_def (zmqd_publisher.c), with a receipt
 * awaited (5 s): the service succeeds only after the RECEIPT, so the
 * consumed message is acked only then.
 *
 * The headers follow the gateway's STOMP publisher (ngx_http_zmq_props.c,
 * ngx_zmq_stomp.c), the message's properties taking the place of the
 * request's headers:
 *
 *   content-type      the message's, else the service's, else the outconn's
 *   content-encoding  the message's
 *   persistent        the message's delivery_mode (2: true), else the
 *                     service's delivery_mode, else the outconn's
 *                     persistent (default true)
 *   priority          the message's (over 9: 9), else the service's, else
 *                     the outconn's
 *   expires           now (ms) + the message's expiration, else + the
 *                     service's expiration, else + the outconn's expires
 *   correlation-id, reply-to, type   the message's
 *   amqp-message-id   the message's id (zmq_message_id with use_jms)
 *   headers           the message's headers (strings as they are, integers
 *                     in decimal, booleans true/false; other types left
 *                     out), then the service's headers, which win; a name
 *                     zmqd sets (destination, receipt, content-length, ...,
 *                     type: zgw_stomp_reserved(), the gateway's list) is
 *                     left out of a message's headers and refused in a
 *                     service's
 *
 * use_jms on the stomp_def (ActiveMQ's conventions): a body of a textual
 * content type that is UTF-8 goes without content-length in Java's
 * modified UTF-8 (a TextMessage); any other body with content-length (a
 * BytesMessage). amq-msg-type is never sent. The destination is used as
 * written (zmqd has no request variables).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "zgw_stomp_headers.h"
#include "zmqd.h"
#include "zmqd_stomp_client.h"


#define ZMQD_SP_HEADERS_MAX  256


typedef struct {
    const char  *name;
    size_t       nlen;
    const char  *value;
    size_t       vlen;
    char         num[32];           /* a number's text */
} zmqd_sp_header_t;


/* a property or header that can be a STOMP header (no NUL), or a refusal */
static int
zmqd_sp_nul(const char *what, const void *p, size_t len, char *err,
    size_t errlen)
{
    if (memchr(p, '\0', len) != NULL) {
        snprintf(err, errlen, "%s has a NUL byte, which a STOMP header "
                 "cannot carry", what);
        return ZMQD_PERMANENT;
    }

    return 0;
}


static void
zmqd_sp_prop(zmqd_stomp_out_t *o, const char *name, amqp_bytes_t v)
{
    zmqd_stomp_out_headern(o, name, strlen(name), v.bytes, v.len, 0);
}


/* a message's header as text; 0 when its type has no STOMP form */
static int
zmqd_sp_value(const amqp_field_value_t *v, zmqd_sp_header_t *h)
{
    long long  n;

    switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        h->value = v->value.bytes.bytes;
        h->vlen = v->value.bytes.len;
        return 1;
    case AMQP_FIELD_KIND_BOOLEAN:
        h->value = v->value.boolean ? "true" : "false";
        h->vlen = strlen(h->value);
        return 1;
    case AMQP_FIELD_KIND_I8:  n = v->value.i8; break;
    case AMQP_FIELD_KIND_U8:  n = v->value.u8; break;
    case AMQP_FIELD_KIND_I16: n = v->value.i16; break;
    case AMQP_FIELD_KIND_U16: n = v->value.u16; break;
    case AMQP_FIELD_KIND_I32: n = v->value.i32; break;
    case AMQP_FIELD_KIND_U32: n = v->value.u32; break;
    case AMQP_FIELD_KIND_I64: n = v->value.i64; break;
    case AMQP_FIELD_KIND_U64:
        snprintf(h->num, sizeof(h->num), "%llu",
                 (unsigned long long) v->value.u64);
        h->value = h->num;
        h->vlen = strlen(h->num);
        return 1;
    default:
        return 0;
    }

    snprintf(h->num, sizeof(h->num), "%lld", n);
    h->value = h->num;
    h->vlen = strlen(h->num);
    return 1;
}


/* the message's headers, then the service's (which win); n of them */
static int
zmqd_sp_headers(const json_t *svc, const zmqd_msg_t *msg,
    zmqd_sp_header_t *hs, int *nh, char *err, size_t errlen)
{
    int                            i, j, n, rc;
    char                           what[300];
    json_t                        *shdrs, *v;
    const char                    *key;
    const amqp_table_entry_t      *e;
    const amqp_basic_properties_t *p;

    n = 0;
    p = msg->props;
    shdrs = json_object_get(svc, "headers");

    json_object_foreach(shdrs, key, v) {
        if (zgw_stomp_reserved(key, strlen(key), 1)) {
            snprintf(err, errlen, "service header '%s' is a STOMP header "
                     "zmqd sets", key);
            return -1;
        }
        if (n == ZMQD_SP_HEADERS_MAX) {
            break;
        }
        hs[n].name = key;
        hs[n].nlen = strlen(key);
        hs[n].value = json_string_value(v);
        hs[n].vlen = hs[n].value ? strlen(hs[n].value) : 0;
        if (hs[n].value == NULL) {
            hs[n].value = "";
        }
        n++;
    }

    for (i = 0; (p->_flags & AMQP_BASIC_HEADERS_FLAG)
                && i < p->headers.num_entries && n < ZMQD_SP_HEADERS_MAX;
         i++)
    {
        e = &p->headers.entries[i];

        if (e->key.len == 0
            || zgw_stomp_reserved(e->key.bytes, e->key.len, 1))
        {
            continue;
        }

        snprintf(what, sizeof(what), "header '%.*s'",
                 (int) (e->key.len > 200 ? 200 : e->key.len),
                 (char *) e->key.bytes);
        rc = zmqd_sp_nul(what, e->key.bytes, e->key.len, err, errlen);
        if (rc != 0) {
            return rc;
        }

        /* the first of a name: the service's, or the message's first */
        for (j = 0; j < n; j++) {
            if (hs[j].nlen == e->key.len
                && memcmp(hs[j].name, e->key.bytes, e->key.len) == 0)
            {
                break;
            }
        }
        if (j < n) {
            continue;
        }

        memset(&hs[n], 0, sizeof(zmqd_sp_header_t));
        if (!zmqd_sp_value(&e->value, &hs[n])) {
            continue;
        }

        rc = zmqd_sp_nul(what, hs[n].value, hs[n].vlen, err, errlen);
        if (rc != 0) {
            return rc;
        }

        hs[n].name = e->key.bytes;
        hs[n].nlen = e->key.len;
        n++;
    }

    *nh = n;
    return 0;
}


/* digits only, at most 18 of them; -1 otherwise */
static long long
zmqd_sp_ms(amqp_bytes_t v)
{
    size_t       i;
    long long    n;
    const char  *s;

    s = v.bytes;
    if (v.len == 0 || v.len > 18) {
        return -1;
    }

    for (n = 0, i = 0; i < v.len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        n = n * 10 + (s[i] - '0');
    }

    return n;
}


int
zmqd_stomp_publish(const zmqd_env_t *env, const json_t *svc,
    const zmqd_msg_t *msg, char *err, size_t errlen)
{
    int                            i, n, rc, use_jms, persistent;
    char                           id[64], num[32], e[1024];
    json_t                        *oc, *def, *v;
    long long                      ms, prio;
    const char                    *ocname, *defname, *dest, *ct;
    zmqd_stomp_t                  *conn;
    zmqd_sp_header_t              *hs;
    zmqd_stomp_out_t               o;
    struct timespec                now;
    const amqp_basic_properties_t *p;

    p = msg->props;
    ocname = json_string_value(json_object_get(svc, "stomp_outconn"));
    oc = zgw_config_get(env->cfg, ZGW_KIND_STOMP_OUTCONN, ocname);
    if (oc == NULL) {
        snprintf(err, errlen, "stomp_outconn '%s' does not exist", ocname);
        return -1;
    }

    if (!json_is_true(json_object_get(oc, "is_active"))) {
        snprintf(err, errlen, "stomp_outconn '%s' is not active", ocname);
        return -1;
    }

    defname = json_string_value(json_object_get(oc, "def"));
    def = zgw_config_get(env->cfg, ZGW_KIND_STOMP_DEF, defname);
    use_jms = json_is_true(json_object_get(def, "use_jms"));
    dest = json_string_value(json_object_get(svc, "destination"));

    if (dest == NULL || *dest == '\0') {
        snprintf(err, errlen, "service has no destination");
        return -1;
    }

    /* what cannot be a STOMP header: a retry cannot change it */

#define ZMQD_SP_CHECK(flag, field, what)                                     \
    if ((p->_flags & flag)                                                  \
        && (rc = zmqd_sp_nul(what, p->field.bytes, p->field.len, err,       \
                             errlen)) != 0)                                 \
    {                                                                       \
        return rc;                                                          \
    }

    ZMQD_SP_CHECK(AMQP_BASIC_CONTENT_TYPE_FLAG, content_type, "content_type");
    ZMQD_SP_CHECK(AMQP_BASIC_CONTENT_ENCODING_FLAG, content_encoding,
                  "content_encoding");
    ZMQD_SP_CHECK(AMQP_BASIC_CORRELATION_ID_FLAG, correlation_id,
                  "correlation_id");
    ZMQD_SP_CHECK(AMQP_BASIC_REPLY_TO_FLAG, reply_to, "reply_to");
    ZMQD_SP_CHECK(AMQP_BASIC_TYPE_FLAG, type, "type");
    ZMQD_SP_CHECK(AMQP_BASIC_MESSAGE_ID_FLAG, message_id, "message_id");

#undef ZMQD_SP_CHECK

    hs = calloc(ZMQD_SP_HEADERS_MAX, sizeof(zmqd_sp_header_t));
    if (hs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    rc = zmqd_sp_headers(svc, msg, hs, &n, err, errlen);
    if (rc != 0) {
        free(hs);
        return rc;
    }

    conn = zmqd_stomp_publisher(env, defname, e, sizeof(e));
    if (conn == NULL) {
        snprintf(err, errlen, "stomp_outconn '%s': %s", ocname, e);
        free(hs);
        return -1;
    }

    zmqd_stomp_receipt_id(conn, "pub", id, sizeof(id));

    memset(&o, 0, sizeof(o));
    zmqd_stomp_out_command(&o, "SEND");
    zmqd_stomp_out_header(&o, "destination", dest, 0);
    zmqd_stomp_out_header(&o, "receipt", id, 0);

    ct = NULL;
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
        zmqd_sp_prop(&o, "content-type", p->content_type);
    } else {
        ct = json_string_value(json_object_get(svc, "content_type"));
        if (ct == NULL) {
            ct = json_string_value(json_object_get(oc, "content_type"));
        }
        if (ct != NULL) {
            zmqd_stomp_out_header(&o, "content-type", ct, 0);
        }
    }

    if (p->_flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) {
        zmqd_sp_prop(&o, "content-encoding", p->content_encoding);
    }

    if (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) {
        persistent = p->delivery_mode == 2;
    } else if ((v = json_object_get(svc, "delivery_mode")) != NULL) {
        persistent = json_integer_value(v) == 2;
    } else {
        v = json_object_get(oc, "persistent");
        persistent = v == NULL || json_is_true(v);
    }
    zmqd_stomp_out_header(&o, "persistent", persistent ? "true" : "false", 0);

    prio = -1;
    if (p->_flags & AMQP_BASIC_PRIORITY_FLAG) {
        prio = p->priority > 9 ? 9 : p->priority;
    } else if ((v = json_object_get(svc, "priority")) != NULL
               || (v = json_object_get(oc, "priority")) != NULL)
    {
        prio = json_integer_value(v);
    }
    if (prio >= 0) {
        snprintf(num, sizeof(num), "%lld", prio);
        zmqd_stomp_out_header(&o, "priority", num, 0);
    }

    ms = -1;
    if (p->_flags & AMQP_BASIC_EXPIRATION_FLAG) {
        ms = zmqd_sp_ms(p->expiration);
    }
    if (ms < 0 && ((v = json_object_get(svc, "expiration")) != NULL
                   || (v = json_object_get(oc, "expires")) != NULL))
    {
        ms = json_integer_value(v);
    }
    if (ms >= 0) {
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(num, sizeof(num), "%lld",
                 (long long) now.tv_sec * 1000 + now.tv_nsec / 1000000 + ms);
        zmqd_stomp_out_header(&o, "expires", num, 0);
    }

    if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        zmqd_sp_prop(&o, "correlation-id", p->correlation_id);
    }
    if (p->_flags & AMQP_BASIC_REPLY_TO_FLAG) {
        zmqd_sp_prop(&o, "reply-to", p->reply_to);
    }
    if (p->_flags & AMQP_BASIC_TYPE_FLAG) {
        zmqd_sp_prop(&o, "type", p->type);
    }
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        zmqd_sp_prop(&o, use_jms ? "zmq_message_id" : "amqp-message-id",
                     p->message_id);
    }

    for (i = 0; i < n; i++) {
        zmqd_stomp_out_headern(&o, hs[i].name, hs[i].nlen, hs[i].value,
                               hs[i].vlen, 0);
    }
    free(hs);

    if (ct == NULL && (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)) {
        /* the message's content type, as a C string for the check */
        snprintf(e, sizeof(e), "%.*s",
                 (int) (p->content_type.len < sizeof(e) - 1
                        ? p->content_type.len : sizeof(e) - 1),
                 (char *) p->content_type.bytes);
        ct = e;
    }

    if (use_jms && zmqd_stomp_is_text(ct)) {
        (void) zmqd_stomp_out_text(&o, msg->body->bytes, msg->body->len);
    } else {
        zmqd_stomp_out_body(&o, msg->body->bytes, msg->body->len, 1);
    }

    rc = zmqd_stomp_request(conn, &o, id, e, sizeof(e));
    zmqd_stomp_out_free(&o);

    if (rc != 0) {
        snprintf(err, errlen, "stomp_outconn '%s': SEND to '%s' on %s: %s",
                 ocname, dest, zmqd_stomp_peer(conn), e);
        zmqd_stomp_publisher_close(env->publishers, defname);
        return -1;
    }

    return 0;
}
