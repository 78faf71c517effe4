/*
 * zmqd: replies to requests, and invocations of invoke services (issue
 * 14, /work/PROTO14.md), the parts that need no loop (zmqctl links them).
 *
 * A reply goes to the default exchange with the request's reply_to as
 * routing key and its correlation_id; the header x-zmq-status carries the
 * status (absent = 200), the body and content_type the answer.
 *
 * An invocation is one persistent message on the invoke service's queue
 * (mandatory, confirmed): message_id = correlation_id = cid, headers
 * x-zmq-invoke (the service), x-zmq-mode (its mode now), x-zmq-req-ts
 * (UTC, microseconds), and the message's trace context (traceparent,
 * tracestate) when valid; reply_to amq.rabbitmq.reply-to when the caller
 * waits. The loop in zmqd.c runs it. A reply carries the request's trace
 * context too.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "zgw_crypto.h"
#include "zmqd.h"


static json_t *zmqd_json_text(const char *s, size_t len);


void
zmqd_resp_free(zmqd_resp_t *r)
{
    if (r == NULL) {
        return;
    }

    free(r->body);
    memset(r, 0, sizeof(zmqd_resp_t));
}


int
zmqd_resp_set(zmqd_resp_t *r, int status, const char *content_type,
    const void *body, size_t len)
{
    char  *b;

    b = malloc(len + 1);
    if (b == NULL) {
        return -1;
    }

    if (len > 0) {
        memcpy(b, body, len);
    }
    b[len] = '\0';

    free(r->body);
    r->body = b;
    r->len = len;
    r->status = status;
    snprintf(r->content_type, sizeof(r->content_type), "%s",
             content_type ? content_type : "");
    return 0;
}


int
zmqd_resp_error(zmqd_resp_t *r, int status, const char *code,
    const char *message)
{
    int      rc;
    char    *text;
    json_t  *doc;

    doc = json_pack("{s:s, s:s}", "error", code, "message", message);
    if (doc == NULL) {
        /* a message that is not UTF-8: said without it */
        doc = json_pack("{s:s, s:s}", "error", code, "message",
                        "(not UTF-8)");
    }

    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        return -1;
    }

    rc = zmqd_resp_set(r, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}


/* 202 {"accepted": true, "cid": cid}: cid escaped, whatever its bytes */
int
zmqd_resp_accepted(zmqd_resp_t *r, const char *cid)
{
    int      rc;
    char    *text;
    json_t  *doc;

    doc = json_pack("{s:b, s:o}", "accepted", 1,
                    "cid", zmqd_json_text(cid, strlen(cid)));

    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        return -1;
    }

    rc = zmqd_resp_set(r, 202, "application/json", text, strlen(text));
    free(text);
    return rc;
}


void
zmqd_utc_now(char *out, size_t size)
{
    char             ts[32];
    struct tm        tm;
    struct timespec  now;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%06ld", ts, now.tv_nsec / 1000);
}


static const amqp_field_value_t *
zmqd_header(const amqp_basic_properties_t *p, const char *key)
{
    int     i;
    size_t  len;

    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) {
        return NULL;
    }

    len = strlen(key);

    for (i = 0; i < p->headers.num_entries; i++) {
        if (p->headers.entries[i].key.len == len
            && memcmp(p->headers.entries[i].key.bytes, key, len) == 0)
        {
            return &p->headers.entries[i].value;
        }
    }

    return NULL;
}


const char *
zmqd_header_str(const amqp_basic_properties_t *p, const char *key,
    char *out, size_t size)
{
    const amqp_field_value_t  *v;

    v = zmqd_header(p, key);
    if (v == NULL || (v->kind != AMQP_FIELD_KIND_UTF8
                      && v->kind != AMQP_FIELD_KIND_BYTES)
        || v->value.bytes.len >= size
        || memchr(v->value.bytes.bytes, '\0', v->value.bytes.len) != NULL)
    {
        return NULL;
    }

    memcpy(out, v->value.bytes.bytes, v->value.bytes.len);
    out[v->value.bytes.len] = '\0';
    return out;
}


int
zmqd_reply_status(const amqp_basic_properties_t *p)
{
    size_t                     i;
    long long                  n;
    const char                *s;
    const amqp_field_value_t  *v;

    v = zmqd_header(p, "x-zmq-status");
    if (v == NULL) {
        return 200;
    }

    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:  n = v->value.i8; break;
    case AMQP_FIELD_KIND_U8:  n = v->value.u8; break;
    case AMQP_FIELD_KIND_I16: n = v->value.i16; break;
    case AMQP_FIELD_KIND_U16: n = v->value.u16; break;
    case AMQP_FIELD_KIND_I32: n = v->value.i32; break;
    case AMQP_FIELD_KIND_U32: n = v->value.u32; break;
    case AMQP_FIELD_KIND_I64: n = v->value.i64; break;
    case AMQP_FIELD_KIND_U64:
        n = v->value.u64 > 1000 ? 1000 : (long long) v->value.u64;
        break;

    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        s = v->value.bytes.bytes;
        if (v->value.bytes.len == 0 || v->value.bytes.len > 3) {
            return -1;
        }
        n = 0;
        for (i = 0; i < v->value.bytes.len; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return -1;
            }
            n = n * 10 + (s[i] - '0');
        }
        break;

    default:
        return -1;
    }

    return n >= 100 && n <= 599 ? (int) n : -1;
}


int
zmqd_reply(const zmqd_env_t *env, const char *def,
    const amqp_basic_properties_t *req, const zmqd_resp_t *resp, char *err,
    size_t errlen)
{
    int                       rc;
    char                      rk[256];
    zmqd_amqp_t              *a;
    amqp_bytes_t              body;
    amqp_table_entry_t        hdrs[3];
    amqp_basic_properties_t   props;

    if (!(req->_flags & AMQP_BASIC_REPLY_TO_FLAG)
        || req->reply_to.len == 0 || req->reply_to.len >= sizeof(rk)
        || memchr(req->reply_to.bytes, '\0', req->reply_to.len) != NULL)
    {
        snprintf(err, errlen, "reply_to is not a routing key");
        return -1;
    }

    memcpy(rk, req->reply_to.bytes, req->reply_to.len);
    rk[req->reply_to.len] = '\0';

    a = zmqd_publisher(env, def, err, errlen);
    if (a == NULL) {
        return -1;
    }

    memset(&props, 0, sizeof(props));

    if (req->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        props.correlation_id = req->correlation_id;
    }

    if (resp->content_type[0]) {
        props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        props.content_type = amqp_cstring_bytes(resp->content_type);
    }

    /* x-zmq-status, and the request's trace context when valid */
    hdrs[0].key = amqp_cstring_bytes("x-zmq-status");
    hdrs[0].value.kind = AMQP_FIELD_KIND_I32;
    hdrs[0].value.value.i32 = resp->status ? resp->status : 200;
    props._flags |= AMQP_BASIC_HEADERS_FLAG;
    props.headers.num_entries = 1 + zmqd_trace_entries(req, &hdrs[1]);
    props.headers.entries = hdrs;

    body.bytes = resp->body;
    body.len = resp->body ? resp->len : 0;

    /* nobody may consume it any more: not mandatory */
    rc = zmqd_amqp_publish(a, "", rk, 0, &props, body, err, errlen);
    if (rc != 0) {
        zmqd_publisher_close(env->publishers, def);
    }

    return rc;
}


int
zmqd_invoke_mode(const char *mode)
{
    if (mode == NULL) {
        return -1;
    }

    return strcmp(mode, "sync") == 0 ? ZMQD_SYNC
           : strcmp(mode, "sync_async") == 0 ? ZMQD_SYNC_ASYNC
           : strcmp(mode, "async") == 0 ? ZMQD_ASYNC
           : -1;
}


long
zmqd_invoke_hold(const json_t *svc)
{
    long  repeats, seconds;

    repeats = (long) json_integer_value(json_object_get(svc, "repeats"));
    seconds = (long) json_integer_value(json_object_get(svc, "seconds"));

    return repeats > 1 ? 2 * (repeats - 1) * seconds : 0;
}


/* "application/json", "application/problem+json; charset=utf-8" */
static int
zmqd_json_type(const char *ct)
{
    size_t  n;

    n = strcspn(ct, "; \t");

    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
           || (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}


/* a string of any bytes: invalid UTF-8 sequences become U+FFFD */
static json_t *
zmqd_json_text(const char *s, size_t len)
{
    char           *out;
    size_t          i, o, n, k;
    json_t         *v;
    unsigned char   c;

    v = json_stringn(s, len);
    if (v != NULL) {
        return v;
    }

    out = malloc(len * 3 + 1);
    if (out == NULL) {
        return NULL;
    }

    o = 0;

    for (i = 0; i < len; i += n) {
        c = (unsigned char) s[i];
        n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
            : (c & 0xf8) == 0xf0 ? 4 : 0;

        if (n > 0 && i + n <= len) {
            v = json_stringn(s + i, n);
            if (v != NULL) {
                json_decref(v);
                for (k = 0; k < n; k++) {
                    out[o++] = s[i + k];
                }
                continue;
            }
        }

        n = 1;
        out[o++] = (char) 0xef;
        out[o++] = (char) 0xbf;
        out[o++] = (char) 0xbd;
    }

    v = json_stringn(out, o);
    free(out);
    return v;
}


char *
zmqd_callback_doc(const json_t *svc, const char *source, int ok,
    const char *cid, const char *req_ts, const zmqd_resp_t *resp,
    const char *error)
{
    char     ts[64], *text;
    json_t  *doc, *response, *ctx;

    zmqd_utc_now(ts, sizeof(ts));

    if (ok) {
        response = NULL;
        if (resp->body != NULL && zmqd_json_type(resp->content_type)) {
            response = json_loadb(resp->body, resp->len, JSON_DECODE_ANY,
                                  NULL);
        }
        if (response == NULL) {
            response = zmqd_json_text(resp->body ? resp->body : "",
                                      resp->body ? resp->len : 0);
        }

    } else {
        response = json_pack("{s:s, s:o}", "error", "target_failed",
                             "message", zmqd_json_text(error,
                                                       strlen(error)));
    }

    ctx = json_object_get(svc, "context");

    /*
     * cid and req_ts come from the invocation's publisher: any bytes. As
     * text (invalid UTF-8 replaced), never a document json_pack() refuses:
     * a NULL document would make the invocation start over, forever.
     */
    doc = json_pack("{s:b, s:o, s:s, s:s, s:I, s:I, s:O, s:o, s:s, s:o}",
                    "ok", ok,
                    "cid", zmqd_json_text(cid, strlen(cid)),
                    "source", source,
                    "target", json_string_value(json_object_get(svc,
                                                                "target")),
                    "retry_seconds",
                    json_integer_value(json_object_get(svc, "seconds")),
                    "retry_repeats",
                    json_integer_value(json_object_get(svc, "repeats")),
                    "context", ctx ? ctx : json_null(),
                    "req_ts_utc", req_ts ? zmqd_json_text(req_ts,
                                                          strlen(req_ts))
                                         : json_null(),
                    "resp_ts_utc", ts,
                    "response", response ? response : json_null());
    if (doc == NULL) {
        return NULL;
    }

    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}


int
zmqd_invocation_publish(const zmqd_env_t *env, const char *name,
    const json_t *svc, const zmqd_msg_t *msg, zmqd_resp_t *resp, char *err,
    size_t errlen)
{
    int                       rc, mode, wait;
    char                      cid[40], ts[64], text[128];
    json_t                   *oc;
    zmqd_amqp_t              *a;
    const char               *def, *queue, *mname;
    amqp_table_entry_t        hdrs[5];
    amqp_basic_properties_t   props;

    oc = zgw_config_get(env->cfg, ZGW_KIND_AMQP_OUTCONN,
                        json_string_value(json_object_get(svc, "outconn")));
    if (oc == NULL) {
        snprintf(err, errlen, "the outgoing connection does not exist");
        return -1;
    }

    def = json_string_value(json_object_get(oc, "def"));
    queue = json_string_value(json_object_get(svc, "queue"));
    mname = json_string_value(json_object_get(svc, "mode"));
    mode = zmqd_invoke_mode(mname);
    if (mode < 0) {
        mode = ZMQD_SYNC;
        mname = "sync";
    }
    wait = env->wait_invocations && mode != ZMQD_ASYNC;

    if (zgw_uuid4(cid) != ZGW_OK) {
        snprintf(err, errlen, "no random bytes for a cid");
        return -1;
    }

    a = zmqd_publisher(env, def, err, errlen);
    if (a == NULL) {
        return -1;
    }

    zmqd_utc_now(ts, sizeof(ts));

    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG
                   | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props.message_id = amqp_cstring_bytes(cid);
    props.correlation_id = amqp_cstring_bytes(cid);
    props.delivery_mode = 2;

    if (msg->props->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
        props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        props.content_type = msg->props->content_type;
    }

    hdrs[0].key = amqp_cstring_bytes("x-zmq-invoke");
    hdrs[0].value.kind = AMQP_FIELD_KIND_UTF8;
    hdrs[0].value.value.bytes = amqp_cstring_bytes(name);
    hdrs[1].key = amqp_cstring_bytes("x-zmq-mode");
    hdrs[1].value.kind = AMQP_FIELD_KIND_UTF8;
    hdrs[1].value.value.bytes = amqp_cstring_bytes(mname);
    hdrs[2].key = amqp_cstring_bytes("x-zmq-req-ts");
    hdrs[2].value.kind = AMQP_FIELD_KIND_UTF8;
    hdrs[2].value.value.bytes = amqp_cstring_bytes(ts);
    /* the caller's trace goes on to the target and the callback */
    props.headers.num_entries = 3 + zmqd_trace_entries(msg->props, &hdrs[3]);
    props.headers.entries = hdrs;

    if (wait) {
        props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
        props.reply_to = amqp_cstring_bytes("amq.rabbitmq.reply-to");
        rc = zmqd_amqp_rpc(a, "", queue, 1, &props, *msg->body,
                           (int) json_integer_value(json_object_get(svc,
                                                                "timeout")),
                           resp, err, errlen);
    } else {
        rc = zmqd_amqp_publish(a, "", queue, 1, &props, *msg->body, err,
                               errlen);
        if (rc == 0 && resp != NULL) {
            snprintf(text, sizeof(text), "{\"accepted\":true,\"cid\":\"%s\"}",
                     cid);
            if (zmqd_resp_set(resp, 202, "application/json", text,
                              strlen(text)) != 0)
            {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
    }

    if (rc != 0 && strstr(err, "unroutable") == NULL
        && strstr(err, "refused") == NULL
        && strncmp(err, "no reply", 8) != 0)
    {
        zmqd_publisher_close(env->publishers, def);
    }

    if (rc != 0 && strstr(err, "unroutable") != NULL) {
        snprintf(err, errlen, "invocation of '%s': unroutable: no queue "
                 "'%s' (zmqd declares it when it consumes invocations)",
                 name, queue);
    }

    return rc;
}
