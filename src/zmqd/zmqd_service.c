/*
 * zmqd: the services a channel invokes, and the data formats.
 *
 *   http     POST (or the service's method) to an http_outconn with libcurl
 *   publish  to another outgoing connection, with publisher confirms (an
 *            amqp_outconn), or as a STOMP SEND with a receipt (a
 *            stomp_outconn: zmqd_stomp_publish.c)
 *   rpc      publish with reply_to amq.rabbitmq.reply-to and wait for the
 *            reply (the service's timeout), on the publishing connection
 *   redis    RPUSH/LPUSH with an optional length cap, or ZADD
 *   fanout   several services; success when all succeed
 *   invoke   publish an invocation for zmqd to run (zmqd_invoke.c)
 *
 * zmqd_service_call() also returns what the service answered: the http
 * endpoint's status, content type and body (at most ZMQD_RESP_MAX bytes),
 * the rpc reply, 202 {"accepted": true, "cid"} for an invocation handed
 * off, else 200 {"ok": true}. A status other than 2xx is a failure.
 *
 * A redis connection that saw any error (an error reply, an I/O error or
 * timeout, a reply of an unexpected type, a failed AUTH or SELECT) is
 * closed: a reply left unread would be read by the next message's command.
 * Message properties become HTTP headers only when they cannot end the
 * header line; otherwise the message is refused as ZMQD_PERMANENT.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libxml/parser.h>

#include "zgw_redis_url.h"
#include "zgw_resp_limit.h"
#include "zmqd.h"
#include "zmqd_stomp_client.h"


#define ZMQD_CACHE_MAX  32


typedef struct {
    const char     *kind;          /* "http" or "redis" */
    char           *key;           /* http_outconn name or redis url */
    CURL           *curl;
    zgw_redis_conn_t  *redis;      /* plain or TLS (rediss://) */
} zmqd_cached_t;


/* a pipelined redis command, and the reply that means success */
typedef struct {
    const char     *what;          /* for errors: "RPUSH", "SELECT 99" */
    int             type;          /* REDIS_REPLY_INTEGER, or _STATUS "OK" */
} zmqd_redis_cmd_t;


static zmqd_cached_t  zmqd_cache[ZMQD_CACHE_MAX];


void
zmqd_services_reset(void)
{
    int  i;

    for (i = 0; i < ZMQD_CACHE_MAX; i++) {
        if (zmqd_cache[i].curl) {
            curl_easy_cleanup(zmqd_cache[i].curl);
        }
        zgw_redis_close(zmqd_cache[i].redis);
        free(zmqd_cache[i].key);
    }

    memset(zmqd_cache, 0, sizeof(zmqd_cache));
}


static zmqd_cached_t *
zmqd_cached(const char *kind, const char *key)
{
    int  i, free_slot;

    free_slot = -1;

    for (i = 0; i < ZMQD_CACHE_MAX; i++) {
        if (zmqd_cache[i].key != NULL && zmqd_cache[i].kind == kind
            && strcmp(zmqd_cache[i].key, key) == 0)
        {
            return &zmqd_cache[i];
        }
        if (zmqd_cache[i].key == NULL && free_slot < 0) {
            free_slot = i;
        }
    }

    if (free_slot < 0) {
        return NULL;
    }

    zmqd_cache[free_slot].key = strdup(key);
    if (zmqd_cache[free_slot].key == NULL) {
        return NULL;
    }

    zmqd_cache[free_slot].kind = kind;
    return &zmqd_cache[free_slot];
}


int
zmqd_format_check(const char *format, const amqp_bytes_t *body, char *err,
    size_t errlen)
{
    json_t        *doc;
    xmlDocPtr      xml;
    json_error_t   jerr;

    if (format == NULL || strcmp(format, "none") == 0) {
        return 0;
    }

    if (strcmp(format, "json") == 0) {
        doc = json_loadb(body->bytes, body->len, JSON_DECODE_ANY, &jerr);
        if (doc == NULL) {
            snprintf(err, errlen, "invalid JSON at %d:%d: %s", jerr.line,
                     jerr.column, jerr.text);
            return -1;
        }
        json_decref(doc);
        return 0;
    }

    xml = xmlReadMemory(body->bytes, (int) body->len, "message.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR
                        | XML_PARSE_NOWARNING);
    if (xml == NULL) {
        snprintf(err, errlen, "invalid XML: not well-formed");
        return -1;
    }

    xmlFreeDoc(xml);
    return 0;
}


/* ----------------------------------------------------------------- http */


static size_t
zmqd_curl_discard(char *ptr, size_t size, size_t n, void *data)
{
    (void) ptr;
    (void) data;
    return size * n;
}


/* the answer's body, at most ZMQD_RESP_MAX bytes (more fails the call) */
static size_t
zmqd_curl_keep(char *ptr, size_t size, size_t n, void *data)
{
    char         *b;
    size_t        len, cap;
    zmqd_resp_t  *r = data;

    len = size * n;

    if (len > ZMQD_RESP_MAX - r->len) {
        return 0;
    }

    /* the capacity is the next power of two of the length */
    cap = 64;
    while (cap < r->len + len + 1) {
        cap *= 2;
    }

    b = realloc(r->body, cap);
    if (b == NULL) {
        return 0;
    }
    r->body = b;

    memcpy(r->body + r->len, ptr, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}


/* RFC 7230 tchar: what a header name is made of */
static int
zmqd_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z')
           || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}


/* a header name for an error message: printable ASCII, the rest escaped */
static void
zmqd_shown(char *out, size_t size, const char *prefix,
    const unsigned char *name, size_t nlen)
{
    size_t  i, o;

    o = (size_t) snprintf(out, size, "%s", prefix);
    if (o >= size) {
        return;
    }

    for (i = 0; i < nlen && o + 8 < size; i++) {
        if (name[i] > 0x20 && name[i] < 0x7f && name[i] != '\'') {
            out[o++] = (char) name[i];
        } else {
            o += (size_t) snprintf(out + o, size - o, "\\x%02x", name[i]);
        }
    }

    if (i < nlen) {
        snprintf(out + o, size - o, "...");
    } else {
        out[o] = '\0';
    }
}


/*
 * Appends "<prefix><name>: <value>" to the list. The name must be an RFC
 * 7230 token; the value may hold any byte but the controls other than HTAB
 * (a CR or LF would end the header line and start another, a NUL would cut
 * it). Returns 0; ZMQD_PERMANENT with err saying which header and which
 * byte (never the value, which may be a secret); -1 when out of memory.
 */
static int
zmqd_header(struct curl_slist **list, const char *prefix, const void *name,
    size_t nlen, const void *value, size_t vlen, char *err, size_t errlen)
{
    char                 *line, shown[100];
    size_t                plen, i;
    unsigned char         c;
    struct curl_slist    *l;
    const unsigned char  *n, *v;

    n = name;
    v = value;
    plen = strlen(prefix);

    c = '\0';

    for (i = 0; i < plen + nlen; i++) {
        c = i < plen ? (unsigned char) prefix[i] : n[i - plen];
        if (!zmqd_tchar(c)) {
            break;
        }
    }

    if (i < plen + nlen || plen + nlen == 0) {
        zmqd_shown(shown, sizeof(shown), prefix, n, nlen);
        if (plen + nlen == 0) {
            snprintf(err, errlen, "an empty name is not allowed in an HTTP "
                     "header");
        } else {
            snprintf(err, errlen, "header name '%s': byte 0x%02x is not "
                     "allowed in an HTTP header name", shown, c);
        }
        return ZMQD_PERMANENT;
    }

    for (i = 0; i < vlen; i++) {
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f) {
            zmqd_shown(shown, sizeof(shown), prefix, n, nlen);
            snprintf(err, errlen, "header '%s': byte 0x%02x at offset %zu "
                     "of the value is not allowed in an HTTP header", shown,
                     v[i], i);
            return ZMQD_PERMANENT;
        }
    }

    /* "name;" is how libcurl sends a header with an empty value */
    for (i = 0; i < vlen && (v[i] == ' ' || v[i] == '\t'); i++) {
        /* void */
    }

    line = malloc(plen + nlen + vlen + 3);
    if (line == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    memcpy(line, prefix, plen);
    memcpy(line + plen, n, nlen);

    if (i == vlen) {
        memcpy(line + plen + nlen, ";", 2);
    } else {
        memcpy(line + plen + nlen, ": ", 2);
        memcpy(line + plen + nlen + 2, v, vlen);
        line[plen + nlen + 2 + vlen] = '\0';
    }

    l = curl_slist_append(*list, line);
    free(line);

    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    *list = l;
    return 0;
}


/*
 * The message's properties and headers as HTTP headers. Trace context
 * (zmqd_trace_get) goes as the W3C headers traceparent and tracestate, and
 * as X-Zmq-Header-<name> like any header, only when valid: a malformed
 * traceparent (and its tracestate), an invalid tracestate, is left out of
 * both, never refused.
 */
static int
zmqd_http_headers(const zmqd_msg_t *msg, struct curl_slist **hdrs, char *err,
    size_t errlen)
{
    int                             i, rc, k;
    zmqd_trace_t                    tc;
    struct curl_slist              *l;
    const amqp_table_t             *t;
    const amqp_field_value_t       *v;
    const amqp_basic_properties_t  *p;

    p = msg->props;
    zmqd_trace_get(p, &tc);

    l = curl_slist_append(*hdrs, "Expect:");
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *hdrs = l;

    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
        rc = zmqd_header(hdrs, "", "Content-Type", 12, p->content_type.bytes,
                         p->content_type.len, err, errlen);
    } else {
        l = curl_slist_append(*hdrs, "Content-Type:");
        rc = l == NULL ? -1 : 0;
        if (l == NULL) {
            snprintf(err, errlen, "out of memory");
        } else {
            *hdrs = l;
        }
    }
    if (rc != 0) {
        return rc;
    }

    if (p->_flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) {
        rc = zmqd_header(hdrs, "", "Content-Encoding", 16,
                         p->content_encoding.bytes, p->content_encoding.len,
                         err, errlen);
        if (rc != 0) {
            return rc;
        }
    }

    rc = zmqd_header(hdrs, "", "X-Message-Id", 12, msg->message_id,
                     strlen(msg->message_id), err, errlen);
    if (rc != 0) {
        return rc;
    }

    rc = zmqd_header(hdrs, "", "X-Zmq-Channel", 13, msg->channel,
                     strlen(msg->channel), err, errlen);
    if (rc != 0) {
        return rc;
    }

    if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        rc = zmqd_header(hdrs, "", "X-Correlation-Id", 16,
                         p->correlation_id.bytes, p->correlation_id.len,
                         err, errlen);
        if (rc != 0) {
            return rc;
        }
    }

    if (p->_flags & AMQP_BASIC_REPLY_TO_FLAG) {
        rc = zmqd_header(hdrs, "", "X-Reply-To", 10, p->reply_to.bytes,
                         p->reply_to.len, err, errlen);
        if (rc != 0) {
            return rc;
        }
    }

    if (tc.traceparent.len > 0) {
        rc = zmqd_header(hdrs, "", "traceparent", 11, tc.traceparent.bytes,
                         tc.traceparent.len, err, errlen);
        if (rc != 0) {
            return rc;
        }
    }

    if (tc.tracestate.len > 0) {
        rc = zmqd_header(hdrs, "", "tracestate", 10, tc.tracestate.bytes,
                         tc.tracestate.len, err, errlen);
        if (rc != 0) {
            return rc;
        }
    }

    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) {
        return 0;
    }

    t = &p->headers;

    for (i = 0; i < t->num_entries; i++) {
        v = &t->entries[i].value;
        if (v->kind != AMQP_FIELD_KIND_UTF8
            && v->kind != AMQP_FIELD_KIND_BYTES)
        {
            continue;
        }

        /* trace context only when it is valid (the one valid entry) */
        k = zmqd_trace_name(t->entries[i].key.bytes, t->entries[i].key.len);
        if ((k == ZMQD_TRACE_PARENT && tc.traceparent.len == 0)
            || (k == ZMQD_TRACE_STATE && tc.tracestate.len == 0))
        {
            continue;
        }

        rc = zmqd_header(hdrs, "X-Zmq-Header-", t->entries[i].key.bytes,
                         t->entries[i].key.len, v->value.bytes.bytes,
                         v->value.bytes.len, err, errlen);
        if (rc != 0) {
            return rc;
        }
    }

    return 0;
}


static int
zmqd_service_http(const zmqd_env_t *env, const json_t *svc,
    const zmqd_msg_t *msg, zmqd_resp_t *resp, char *err, size_t errlen)
{
    int                 rc;
    char                url[4096], *secret, shown[ZGW_URL_SHOW_MAX];
    long                status;
    char               *ctype;
    json_t             *oc, *sec;
    json_int_t          timeout;
    CURLcode            cc;
    zgw_errors_t        errs;
    zmqd_cached_t      *cached;
    const char         *ocname, *type, *method, *hname;
    struct curl_slist  *hdrs;

    ocname = json_string_value(json_object_get(svc, "outconn"));
    oc = zgw_config_get(env->cfg, ZGW_KIND_HTTP_OUTCONN, ocname);
    if (oc == NULL) {
        snprintf(err, errlen, "http_outconn '%s' does not exist", ocname);
        return -1;
    }

    snprintf(url, sizeof(url), "%s%s",
             json_string_value(json_object_get(oc, "url")),
             json_string_value(json_object_get(svc, "path")));

    /* refused before anything is sent: retrying cannot fix a message */
    hdrs = NULL;
    rc = zmqd_http_headers(msg, &hdrs, err, errlen);
    if (rc != 0) {
        curl_slist_free_all(hdrs);
        return rc;
    }

    cached = zmqd_cached("http", ocname);
    if (cached == NULL) {
        snprintf(err, errlen, "too many http_outconns");
        curl_slist_free_all(hdrs);
        return -1;
    }

    if (cached->curl == NULL) {
        cached->curl = curl_easy_init();
        if (cached->curl == NULL) {
            snprintf(err, errlen, "curl_easy_init failed");
            curl_slist_free_all(hdrs);
            return -1;
        }
    }

    curl_easy_reset(cached->curl);
    curl_easy_setopt(cached->curl, CURLOPT_URL, url);
    curl_easy_setopt(cached->curl, CURLOPT_NOSIGNAL, 1L);
    /* never longer than the broker lets a delivery wait for its ack */
    timeout = json_integer_value(json_object_get(oc, "timeout"));
    curl_easy_setopt(cached->curl, CURLOPT_TIMEOUT_MS,
                     (long) (timeout > 0 && timeout < ZMQD_SERVICE_MAX_MS
                             ? timeout : ZMQD_SERVICE_MAX_MS));
    if (resp != NULL) {
        curl_easy_setopt(cached->curl, CURLOPT_WRITEFUNCTION, zmqd_curl_keep);
        curl_easy_setopt(cached->curl, CURLOPT_WRITEDATA, resp);
    } else {
        curl_easy_setopt(cached->curl, CURLOPT_WRITEFUNCTION,
                         zmqd_curl_discard);
    }
    curl_easy_setopt(cached->curl, CURLOPT_SSL_VERIFYPEER,
                     json_is_true(json_object_get(oc, "tls")) ? 1L : 0L);
    curl_easy_setopt(cached->curl, CURLOPT_SSL_VERIFYHOST,
                     json_is_true(json_object_get(oc, "tls")) ? 2L : 0L);

    method = json_string_value(json_object_get(svc, "method"));
    curl_easy_setopt(cached->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(cached->curl, CURLOPT_POSTFIELDS, msg->body->bytes);
    curl_easy_setopt(cached->curl, CURLOPT_POSTFIELDSIZE,
                     (long) msg->body->len);

    /* credentials of the outgoing security definition */

    secret = NULL;
    sec = zgw_config_get(env->cfg, ZGW_KIND_SECURITY,
                         json_string_value(json_object_get(oc, "security")));
    if (sec != NULL) {
        zgw_errors_init(&errs);
        type = json_string_value(json_object_get(sec, "type"));

        if (strcmp(type, "jwt") == 0) {
            snprintf(err, errlen, "http_outconn '%s': jwt credentials are "
                     "not supported yet", ocname);
            curl_slist_free_all(hdrs);
            return -1;
        }

        secret = zgw_object_secret(ZGW_KIND_SECURITY, sec,
                                   strcmp(type, "basic_auth") == 0
                                   ? "password" : "key",
                                   env->key, &errs);
        if (secret == NULL) {
            snprintf(err, errlen, "%s", zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            curl_slist_free_all(hdrs);
            return -1;
        }

        if (strcmp(type, "basic_auth") == 0) {
            curl_easy_setopt(cached->curl, CURLOPT_HTTPAUTH,
                             (long) CURLAUTH_BASIC);
            curl_easy_setopt(cached->curl, CURLOPT_USERNAME,
                             json_string_value(json_object_get(sec,
                                                               "username")));
            curl_easy_setopt(cached->curl, CURLOPT_PASSWORD, secret);
        } else {
            hname = json_string_value(json_object_get(sec, "header"));
            if (hname == NULL) {
                hname = "X-API-Key";
            }
            rc = zmqd_header(&hdrs, "", hname, strlen(hname), secret,
                             strlen(secret), err, errlen);
            if (rc != 0) {
                /* the configuration's fault, not the message's */
                memset(secret, 0, strlen(secret));
                free(secret);
                curl_slist_free_all(hdrs);
                return -1;
            }
        }
    }

    curl_easy_setopt(cached->curl, CURLOPT_HTTPHEADER, hdrs);

    cc = curl_easy_perform(cached->curl);
    status = 0;
    curl_easy_getinfo(cached->curl, CURLINFO_RESPONSE_CODE, &status);

    if (resp != NULL) {
        ctype = NULL;
        curl_easy_getinfo(cached->curl, CURLINFO_CONTENT_TYPE, &ctype);
        snprintf(resp->content_type, sizeof(resp->content_type), "%s",
                 ctype ? ctype : "");
        resp->status = cc == CURLE_OK && status >= 100 && status <= 599
                       ? (int) status : 0;
    }

    curl_easy_setopt(cached->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);

    if (secret != NULL) {
        memset(secret, 0, strlen(secret));
        free(secret);
    }

    /* errors go into logs and dead letters: no credentials of the url */
    if (cc == CURLE_WRITE_ERROR && resp != NULL) {
        snprintf(err, errlen, "http %s: the response is larger than %d "
                 "bytes", zgw_url_redact(url, shown, sizeof(shown)),
                 ZMQD_RESP_MAX);
        zmqd_resp_free(resp);
        return -1;
    }

    if (cc != CURLE_OK) {
        snprintf(err, errlen, "http %s: %s",
                 zgw_url_redact(url, shown, sizeof(shown)),
                 curl_easy_strerror(cc));
        zmqd_resp_free(resp);
        return -1;
    }

    rc = status >= 200 && status < 300 ? 0 : -1;
    if (rc != 0) {
        snprintf(err, errlen, "http %s: status %ld",
                 zgw_url_redact(url, shown, sizeof(shown)), status);
    }

    return rc;
}


/* -------------------------------------------------------------- publish */


static int
zmqd_service_publish(const zmqd_env_t *env, const json_t *svc,
    const zmqd_msg_t *msg, char *err, size_t errlen)
{
    int            rc;
    char           expiration[32];
    json_t        *oc, *v;
    zmqd_amqp_t   *a;
    const char    *def;
    zmqd_props_t   props;

    if (json_object_get(svc, "stomp_outconn") != NULL) {
        return zmqd_stomp_publish(env, svc, msg, err, errlen);
    }

    oc = zgw_config_get(env->cfg, ZGW_KIND_AMQP_OUTCONN,
                        json_string_value(json_object_get(svc, "outconn")));
    if (oc == NULL) {
        snprintf(err, errlen, "the outgoing connection does not exist");
        return -1;
    }

    def = json_string_value(json_object_get(oc, "def"));
    a = zmqd_publisher(env, def, err, errlen);
    if (a == NULL) {
        return -1;
    }

    /*
     * the message's own properties, with the service's (or else the
     * outconn's) delivery_mode and expiration where it has none; a
     * user_id the broker would refuse moves to a header
     */
    if (zmqd_props_init(&props, msg->props, 1) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    v = json_object_get(svc, "delivery_mode");
    if (v == NULL) {
        v = json_object_get(oc, "delivery_mode");
    }
    if (!(props.props._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && v != NULL) {
        props.props._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        props.props.delivery_mode = (uint8_t) json_integer_value(v);
    }

    v = json_object_get(svc, "expiration");
    if (v == NULL) {
        v = json_object_get(oc, "expiration");
    }
    if (!(props.props._flags & AMQP_BASIC_EXPIRATION_FLAG) && v != NULL) {
        snprintf(expiration, sizeof(expiration), "%lld",
                 (long long) json_integer_value(v));
        props.props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        props.props.expiration = amqp_cstring_bytes(expiration);
    }

    zmqd_props_user_id(&props, a->user);

    rc = zmqd_amqp_publish(a,
                           json_string_value(json_object_get(svc,
                                                             "exchange")),
                           json_string_value(json_object_get(svc,
                                                             "routing_key")),
                           json_is_true(json_object_get(svc, "mandatory")),
                           &props.props, *msg->body, err, errlen);
    zmqd_props_free(&props);

    if (rc != 0 && strstr(err, "unroutable") == NULL
        && strstr(err, "refused") == NULL)
    {
        zmqd_publisher_close(env->publishers, def);
    }

    return rc;
}


/* ---------------------------------------------------------------- redis */


static void
zmqd_redis_drop(zmqd_cached_t *cached)
{
    zgw_redis_close(cached->redis);
    cached->redis = NULL;
}


/*
 * Reads the replies of n pipelined commands, each one even after an error
 * reply, and checks each against the reply that means success. 0, or -1
 * with err filled from the first failure; after an I/O error or a timeout
 * nothing more can be read: the caller drops the connection on any -1.
 */
static int
zmqd_redis_replies(zgw_redis_conn_t *c, const char *where,
    const zmqd_redis_cmd_t *cmds, int n, char *err, size_t errlen)
{
    int          i, rc;
    char         shown[ZGW_SHOW_SIZE];
    redisReply  *r;

    rc = 0;

    for (i = 0; i < n; i++) {
        r = NULL;

        if (zgw_redis_get_reply(c, &r) != ZGW_OK || r == NULL) {
            if (rc != 0) {
                return -1;
            }
            snprintf(err, errlen, "%s: %s: %s", where, cmds[i].what,
                     zgw_redis_error(c) ? zgw_redis_error(c) : "no reply");
            return -1;
        }

        if (rc == 0) {
            if (r->type == REDIS_REPLY_ERROR) {
                snprintf(err, errlen, "%s: %s failed: %s", where,
                         cmds[i].what,
                         zgw_show(shown, sizeof(shown), r->str, r->len));
                rc = -1;

            } else if (r->type != cmds[i].type
                       || (r->type == REDIS_REPLY_STATUS
                           && strcmp(r->str, "OK") != 0))
            {
                snprintf(err, errlen, "%s: %s: unexpected reply (type %d)",
                         where, cmds[i].what, r->type);
                rc = -1;
            }
        }

        freeReplyObject(r);
    }

    return rc;
}


/*
 * The cached connection of a redis url: connected, authenticated and on
 * its database, or NULL with err filled. The password is the service's
 * sealed "password" field (a url in an object holds none) or, for the
 * configuration's Redis, the one in its url. where gets the address as
 * errors print it: never with credentials.
 */
static zmqd_cached_t *
zmqd_redis(const zmqd_env_t *env, const json_t *svc, const char *url,
    char *where, size_t wlen, char *err, size_t errlen)
{
    int                n;
    char               select[32], ckey[2048], cerr[1024], *secret;
    json_t            *sealed;
    const char        *stext;
    zgw_errors_t       errs;
    zmqd_cached_t     *cached;
    zgw_redis_addr_t   addr;
    zmqd_redis_cmd_t   cmds[2];

    zgw_errors_init(&errs);
    /* a url of a service is redis:// (the model); zmqd's own store may be
       redis-sentinel:// */
    if (zgw_redis_addr_parse_ex(&addr, url, ZGW_REDIS_SENTINEL, &errs)
        != ZGW_OK)
    {
        snprintf(err, errlen, "%s", zgw_errors_first(&errs));
        zgw_errors_free(&errs);
        return NULL;
    }

    snprintf(where, wlen, "redis %s%s%s:%d/%d", addr.ipv6 ? "[" : "",
             addr.host, addr.ipv6 ? "]" : "", addr.port, addr.db);

    /*
     * One connection per url and password: the sealed text (or, from a
     * configuration file, the clear one) tells passwords apart; the key
     * stays in memory and is never printed.
     */
    sealed = json_object_get(svc, "password");
    stext = json_is_string(sealed)
            ? json_string_value(sealed)
            : json_string_value(json_object_get(sealed, "$sealed"));
    snprintf(ckey, sizeof(ckey), "%s\n%s", url, stext ? stext : "");

    cached = zmqd_cached("redis", ckey);
    if (cached == NULL) {
        snprintf(err, errlen, "too many redis connections");
        goto failed;
    }

    if (cached->redis != NULL && !zgw_redis_error(cached->redis)) {
        goto done;
    }

    zmqd_redis_drop(cached);

    if (sealed != NULL) {
        secret = zgw_object_secret(ZGW_KIND_SERVICE, svc, "password",
                                   env->key, &errs);
        if (secret == NULL) {
            snprintf(err, errlen, "%s", zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            goto failed;
        }

        n = snprintf(addr.password, sizeof(addr.password), "%s", secret);
        memset(secret, 0, strlen(secret));
        free(secret);

        if (n < 0 || (size_t) n >= sizeof(addr.password)) {
            snprintf(err, errlen, "%s: the password is longer than %zu "
                     "bytes", where, sizeof(addr.password) - 1);
            goto failed;
        }
    }

    /* TCP, and TLS for rediss://; every wait bounded by the timeout */
    cached->redis = zgw_redis_open(&addr, ZMQD_TIMEOUT_MS, cerr,
                                   sizeof(cerr));
    if (cached->redis == NULL) {
        snprintf(err, errlen, "%s: %s", where, cerr);
        goto failed;
    }

    /* a failed AUTH or SELECT fails the connection, never ignored */
    n = 0;

    if (addr.username[0]) {
        /* a Redis 6 ACL user */
        zgw_redis_append(cached->redis, "AUTH %s %b", addr.username,
                         addr.password, strlen(addr.password));
        cmds[n].what = "AUTH";
        cmds[n++].type = REDIS_REPLY_STATUS;

    } else if (addr.password[0]) {
        zgw_redis_append(cached->redis, "AUTH %b", addr.password,
                         strlen(addr.password));
        cmds[n].what = "AUTH";
        cmds[n++].type = REDIS_REPLY_STATUS;
    }

    if (addr.db) {
        zgw_redis_append(cached->redis, "SELECT %d", addr.db);
        snprintf(select, sizeof(select), "SELECT %d", addr.db);
        cmds[n].what = select;
        cmds[n++].type = REDIS_REPLY_STATUS;
    }

    if (zmqd_redis_replies(cached->redis, where, cmds, n, err, errlen) != 0)
    {
        zmqd_redis_drop(cached);
        goto failed;
    }

done:

    memset(addr.password, 0, sizeof(addr.password));
    return cached;

failed:

    memset(addr.password, 0, sizeof(addr.password));
    return NULL;
}


static int
zmqd_service_redis(const zmqd_env_t *env, const json_t *svc,
    const zmqd_msg_t *msg, char *err, size_t errlen)
{
    int                n;
    char               where[300];
    double             score;
    json_t            *doc, *f;
    json_int_t         max_len;
    const char        *url, *op, *key, *field;
    zgw_redis_conn_t  *rc;
    zmqd_cached_t     *cached;
    zmqd_redis_cmd_t   cmds[2];

    url = json_string_value(json_object_get(svc, "url"));
    if (url == NULL) {
        url = env->redis_url;
    }

    op = json_string_value(json_object_get(svc, "op"));
    key = json_string_value(json_object_get(svc, "key"));
    max_len = json_integer_value(json_object_get(svc, "max_len"));
    field = json_string_value(json_object_get(svc, "score_field"));
    score = 0;

    if (strcmp(op, "zadd") == 0) {

        if (field != NULL) {
            doc = json_loadb(msg->body->bytes, msg->body->len, 0, NULL);
            f = json_object_get(doc, field);
            if (!json_is_number(f)) {
                json_decref(doc);
                snprintf(err, errlen, "score field '%s' is not a number in "
                         "the message", field);
                return ZMQD_PERMANENT;
            }
            score = json_number_value(f);
            json_decref(doc);

        } else if (msg->props->_flags & AMQP_BASIC_TIMESTAMP_FLAG) {
            score = (double) msg->props->timestamp;

        } else {
            score = (double) time(NULL);
        }
    }

    /* a service's own password goes with its own url only */
    cached = zmqd_redis(env, json_object_get(svc, "url") ? svc : NULL, url,
                        where, sizeof(where), err, errlen);
    if (cached == NULL) {
        return -1;
    }

    rc = cached->redis;

    if (strcmp(op, "zadd") == 0) {
        n = zgw_redis_append(rc, "ZADD %s %f %b", key, score,
                             msg->body->bytes, msg->body->len) == ZGW_OK;
        cmds[0].what = "ZADD";
        cmds[0].type = REDIS_REPLY_INTEGER;

    } else {
        n = zgw_redis_append(rc, "%s %s %b",
                             strcmp(op, "lpush") == 0 ? "LPUSH" : "RPUSH",
                             key, msg->body->bytes, msg->body->len)
            == ZGW_OK;
        cmds[0].what = strcmp(op, "lpush") == 0 ? "LPUSH" : "RPUSH";
        cmds[0].type = REDIS_REPLY_INTEGER;

        if (n && max_len > 0) {
            if (strcmp(op, "lpush") == 0) {
                n = zgw_redis_append(rc, "LTRIM %s 0 %lld", key,
                                     (long long) max_len - 1) == ZGW_OK;
            } else {
                n = zgw_redis_append(rc, "LTRIM %s %lld -1", key,
                                     -(long long) max_len) == ZGW_OK;
            }
            n = n ? 2 : 0;
            cmds[1].what = "LTRIM";
            cmds[1].type = REDIS_REPLY_STATUS;
        }
    }

    if (n == 0) {
        snprintf(err, errlen, "%s: out of memory", where);
        zmqd_redis_drop(cached);
        return -1;
    }

    /* every reply is read; any failure closes the connection */
    if (zmqd_redis_replies(rc, where, cmds, n, err, errlen) != 0) {
        zmqd_redis_drop(cached);
        return -1;
    }

    return 0;
}


/* ------------------------------------------------------------------ rpc */


/*
 * The message's properties (as the publish service keeps them), the
 * service's (else the outconn's) where it sets them, its headers, and
 * reply_to amq.rabbitmq.reply-to with a fresh correlation_id (= the
 * message_id): blocking, bounded by the service's timeout.
 */
static int
zmqd_service_rpc(const zmqd_env_t *env, const json_t *svc,
    const zmqd_msg_t *msg, zmqd_resp_t *resp, char *err, size_t errlen)
{
    int            rc, n;
    char           expiration[32], cid[40];
    json_t        *oc, *v, *hdrs;
    json_int_t     timeout;
    zmqd_amqp_t   *a;
    const char    *def, *key, *ct;
    zmqd_props_t   props;

    oc = zgw_config_get(env->cfg, ZGW_KIND_AMQP_OUTCONN,
                        json_string_value(json_object_get(svc, "outconn")));
    if (oc == NULL) {
        snprintf(err, errlen, "the outgoing connection does not exist");
        return -1;
    }

    if (zgw_uuid4(cid) != ZGW_OK) {
        snprintf(err, errlen, "no random bytes for a correlation id");
        return -1;
    }

    def = json_string_value(json_object_get(oc, "def"));
    a = zmqd_publisher(env, def, err, errlen);
    if (a == NULL) {
        return -1;
    }

    hdrs = json_object_get(svc, "headers");
    n = (int) json_object_size(hdrs);

    if (zmqd_props_init(&props, msg->props, n + 1) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    props.props._flags |= AMQP_BASIC_REPLY_TO_FLAG
                          | AMQP_BASIC_CORRELATION_ID_FLAG
                          | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.props.reply_to = amqp_cstring_bytes("amq.rabbitmq.reply-to");
    props.props.correlation_id = amqp_cstring_bytes(cid);
    props.props.message_id = amqp_cstring_bytes(cid);

    v = json_object_get(svc, "delivery_mode");
    if (v == NULL) {
        v = json_object_get(oc, "delivery_mode");
    }
    if (v != NULL) {
        props.props._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        props.props.delivery_mode = (uint8_t) json_integer_value(v);
    }

    v = json_object_get(svc, "priority");
    if (v == NULL) {
        v = json_object_get(oc, "priority");
    }
    if (v != NULL) {
        props.props._flags |= AMQP_BASIC_PRIORITY_FLAG;
        props.props.priority = (uint8_t) json_integer_value(v);
    }

    v = json_object_get(svc, "expiration");
    if (v == NULL) {
        v = json_object_get(oc, "expiration");
    }
    if (v != NULL) {
        snprintf(expiration, sizeof(expiration), "%lld",
                 (long long) json_integer_value(v));
        props.props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        props.props.expiration = amqp_cstring_bytes(expiration);
    }

    ct = json_string_value(json_object_get(svc, "content_type"));
    if (ct == NULL && !(props.props._flags & AMQP_BASIC_CONTENT_TYPE_FLAG)) {
        ct = json_string_value(json_object_get(oc, "content_type"));
    }
    if (ct != NULL) {
        props.props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        props.props.content_type = amqp_cstring_bytes(ct);
    }

    json_object_foreach(hdrs, key, v) {
        zmqd_props_string(&props, key,
                          amqp_cstring_bytes(json_string_value(v)));
    }

    zmqd_props_user_id(&props, a->user);

    timeout = json_integer_value(json_object_get(svc, "timeout"));
    if (timeout <= 0 || timeout > ZMQD_SERVICE_MAX_MS) {
        timeout = ZMQD_SERVICE_MAX_MS;
    }

    rc = zmqd_amqp_rpc(a,
                       json_string_value(json_object_get(svc, "exchange")),
                       json_string_value(json_object_get(svc, "routing_key")),
                       json_is_true(json_object_get(svc, "mandatory")),
                       &props.props, *msg->body, (int) timeout, resp, err,
                       errlen);
    zmqd_props_free(&props);

    if (rc != 0 && strstr(err, "unroutable") == NULL
        && strstr(err, "refused") == NULL && strncmp(err, "no reply", 8) != 0)
    {
        zmqd_publisher_close(env->publishers, def);
    }

    return rc;
}


/* ------------------------------------------------------------- dispatch */


static const char  zmqd_ok[] = "{\"ok\":true}";


int
zmqd_service_invoke(const zmqd_env_t *env, const char *name,
    const zmqd_msg_t *msg, char *err, size_t errlen)
{
    return zmqd_service_call(env, name, msg, NULL, err, errlen);
}


int
zmqd_service_call(const zmqd_env_t *env, const char *name,
    const zmqd_msg_t *msg, zmqd_resp_t *resp, char *err, size_t errlen)
{
    int           rc;
    size_t        i;
    json_t       *svc, *item;
    const char   *kind;
    char          sub[512];
    zmqd_resp_t   mine;

    if (resp != NULL) {
        memset(resp, 0, sizeof(zmqd_resp_t));
    }

    svc = zgw_config_get(env->cfg, ZGW_KIND_SERVICE, name);
    if (svc == NULL) {
        snprintf(err, errlen, "service '%s' does not exist", name);
        return -1;
    }

    if (!json_is_true(json_object_get(svc, "is_active"))) {
        snprintf(err, errlen, "service '%s' is not active", name);
        return -1;
    }

    kind = json_string_value(json_object_get(svc, "kind"));

    if (strcmp(kind, "http") == 0) {
        return zmqd_service_http(env, svc, msg, resp, err, errlen);
    }

    if (strcmp(kind, "rpc") == 0 || strcmp(kind, "invoke") == 0) {
        /* the reply is wanted to tell its status, even when not kept */
        memset(&mine, 0, sizeof(mine));

        rc = strcmp(kind, "rpc") == 0
             ? zmqd_service_rpc(env, svc, msg, &mine, err, errlen)
             : zmqd_invocation_publish(env, name, svc, msg, &mine, err,
                                       errlen);

        if (rc == 0 && (mine.status < 200 || mine.status > 299)) {
            snprintf(err, errlen, "service '%s': the reply's status is %d",
                     name, mine.status);
            rc = -1;
        }

        if (resp != NULL) {
            *resp = mine;
        } else {
            zmqd_resp_free(&mine);
        }
        return rc;
    }

    if (strcmp(kind, "publish") == 0) {
        rc = zmqd_service_publish(env, svc, msg, err, errlen);

    } else if (strcmp(kind, "redis") == 0) {
        rc = zmqd_service_redis(env, svc, msg, err, errlen);

    } else if (strcmp(kind, "fanout") == 0) {
        rc = 0;
        json_array_foreach(json_object_get(svc, "services"), i, item) {
            rc = zmqd_service_call(env, json_string_value(item), msg, NULL,
                                   sub, sizeof(sub));
            if (rc != 0) {
                snprintf(err, errlen, "fanout '%s': %s", name, sub);
                break;
            }
        }

    } else {
        snprintf(err, errlen, "service '%s': kind '%s' cannot be invoked by "
                 "zmqd", name, kind);
        return -1;
    }

    if (rc == 0 && resp != NULL
        && zmqd_resp_set(resp, 200, "application/json", zmqd_ok,
                         sizeof(zmqd_ok) - 1) != 0)
    {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    return rc;
}
