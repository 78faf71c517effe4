
/*
 * libFuzzer target: request headers -> AMQP properties
 * (ngx_http_zmq_properties in ngx_http_zmq_props.c).
 *
 * The input is a request's header lines ("Name: value\n"), kept as NGINX
 * would keep them (names of letters, digits and '-', values without NUL,
 * CR or LF, spaces around the value trimmed), after two bytes that pick
 * the service's and the outgoing connection's defaults.
 *
 * What must hold when the headers are accepted: the properties encode, and
 * decode to the same values (a header table a broker reads differently
 * from what was meant would be a corrupt frame); and no single request
 * carries what RabbitMQ answers with a channel or connection error (a
 * reply-to of amq.rabbitmq.reply-to without its consumer, CC or BCC that
 * are not arrays; issue 9, defect 3). When refused, the reason is given.
 */


#include "ngx_fuzz.h"

#include <ngx_http.h>

#define ngx_palloc   ngx_fuzz_palloc
#define ngx_pnalloc  ngx_fuzz_palloc
#define ngx_pcalloc  ngx_fuzz_pcalloc

#include "ngx_http_zmq_props.c"

#undef ngx_palloc
#undef ngx_pnalloc
#undef ngx_pcalloc


static u_char  fuzz_frame[1024 * 1024];


/* the worker struct the module's code finds through the cycle */
static ngx_http_zmq_worker_t     fuzz_worker;
static ngx_http_zmq_main_conf_t  fuzz_zmcf;
static ngx_http_zmq_loc_conf_t   fuzz_zlcf;
static void                     *fuzz_loc_conf[1];


static void
fuzz_worker_setup(void)
{
    fuzz_zmcf.worker = &fuzz_worker;
    ngx_fuzz_http_main_conf(&ngx_http_zmq_module, &fuzz_zmcf);
}


static ngx_int_t
fuzz_header_name_ok(u_char *p, size_t len)
{
    size_t  i;

    if (len == 0) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')
              || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
fuzz_headers(ngx_http_request_t *r, const u_char *data, size_t size)
{
    u_char           *line, *end, *colon, *v, *ve;
    const u_char     *p, *last, *nl;
    ngx_table_elt_t  *h;

    if (ngx_list_init(&r->headers_in.headers, r->pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = data;
    last = data + size;

    while (p < last) {
        nl = memchr(p, '\n', last - p);
        if (nl == NULL) {
            nl = last;
        }

        /* a copy of its own, as big as it is: ASan sees its bounds */
        line = ngx_fuzz_palloc(r->pool, nl - p + 1);
        if (line == NULL) {
            return NGX_ERROR;
        }
        ngx_memcpy(line, p, nl - p);
        end = line + (nl - p);
        p = nl + 1;

        colon = memchr(line, ':', end - line);
        if (colon == NULL || !fuzz_header_name_ok(line, colon - line)
            || memchr(line, '\0', end - line) != NULL
            || memchr(line, '\r', end - line) != NULL)
        {
            continue;           /* NGINX would not have it */
        }

        v = colon + 1;
        ve = end;
        while (v < ve && (*v == ' ' || *v == '\t')) {
            v++;
        }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
            ve--;
        }

        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        h->key.data = line;
        h->key.len = colon - line;
        h->value.data = v;
        h->value.len = ve - v;
        h->lowcase_key = line;
    }

    return NGX_OK;
}


static ngx_int_t
fuzz_bytes_eq(amqp_bytes_t a, amqp_bytes_t b)
{
    return a.len == b.len
           && (a.len == 0 || ngx_memcmp(a.bytes, b.bytes, a.len) == 0);
}


static void
fuzz_check(ngx_pool_t *pool, amqp_basic_properties_t *props)
{
    int                        n, rc, i;
    amqp_bytes_t               enc;
    amqp_pool_t                apool;
    amqp_table_entry_t        *e, *d;
    amqp_basic_properties_t   *dec;

    enc.bytes = fuzz_frame;
    enc.len = sizeof(fuzz_frame);

    n = amqp_encode_properties(AMQP_BASIC_CLASS, props, enc);
    if (n < 0) {
        ngx_fuzz_fail("accepted properties do not encode: %s",
                      amqp_error_string2(n));
    }

    enc.len = n;
    init_amqp_pool(&apool, 4096);

    rc = amqp_decode_properties(AMQP_BASIC_CLASS, &apool, enc,
                                (void **) &dec);
    if (rc < 0) {
        ngx_fuzz_fail("accepted properties do not decode: %s",
                      amqp_error_string2(rc));
    }

    if (dec->_flags != props->_flags
        || !fuzz_bytes_eq(dec->message_id, props->message_id)
        || ((props->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
            && !fuzz_bytes_eq(dec->content_type, props->content_type))
        || ((props->_flags & AMQP_BASIC_REPLY_TO_FLAG)
            && !fuzz_bytes_eq(dec->reply_to, props->reply_to))
        || ((props->_flags & AMQP_BASIC_EXPIRATION_FLAG)
            && !fuzz_bytes_eq(dec->expiration, props->expiration)))
    {
        ngx_fuzz_fail("properties decode to other values than were meant");
    }

    if (props->_flags & AMQP_BASIC_HEADERS_FLAG) {
        if (dec->headers.num_entries != props->headers.num_entries) {
            ngx_fuzz_fail("the header table decodes to %d entries, not %d",
                          dec->headers.num_entries,
                          props->headers.num_entries);
        }

        for (i = 0; i < props->headers.num_entries; i++) {
            e = &props->headers.entries[i];
            d = &dec->headers.entries[i];

            if (!fuzz_bytes_eq(e->key, d->key) || d->value.kind != e->value.kind
                || !fuzz_bytes_eq(e->value.value.bytes, d->value.value.bytes))
            {
                ngx_fuzz_fail("header %d (a key of %uz bytes) decodes to "
                              "another key or value", i, e->key.len);
            }

            /* RabbitMQ closes the channel: CC and BCC must be arrays */
            if ((e->key.len == 2 && ngx_memcmp(e->key.bytes, "CC", 2) == 0)
                || (e->key.len == 3
                    && ngx_memcmp(e->key.bytes, "BCC", 3) == 0))
            {
                ngx_fuzz_fail("a %*s header that is not an array passed",
                              e->key.len, e->key.bytes);
            }
        }
    }

    /* RabbitMQ closes the channel: no consumer for the direct reply-to */
    if ((props->_flags & AMQP_BASIC_REPLY_TO_FLAG)
        && props->reply_to.len >= sizeof("amq.rabbitmq.reply-to") - 1
        && ngx_strncmp(props->reply_to.bytes, "amq.rabbitmq.reply-to",
                       sizeof("amq.rabbitmq.reply-to") - 1) == 0)
    {
        ngx_fuzz_fail("a reply-to of amq.rabbitmq.reply-to passed");
    }

    empty_amqp_pool(&apool);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                     rc;
    ngx_str_t                     message_id;
    ngx_pool_t                   *pool;
    ngx_keyval_t                 *kv;
    const char                   *bad;
    ngx_http_request_t            r;
    ngx_http_zmq_service_t        svc;
    amqp_basic_properties_t       props;
    ngx_http_zmq_outconn_conf_t   oc;

    if (size < 2) {
        return 0;
    }

    fuzz_worker_setup();

    pool = ngx_create_pool(1024, ngx_fuzz_log);
    if (pool == NULL) {
        ngx_fuzz_fail("out of memory");
    }

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    r.pool = pool;

    /*
     * The modules' request contexts, as NGINX gives every request (the
     * properties ask ngx_http_zmq_auth_headers() for the identity). The
     * module is not in an http{} block here, so it has no context index
     * of its own: it gets slot 0 of an array of one; no identity.
     */
    ngx_http_zmq_module.ctx_index = 0;
    r.ctx = ngx_pcalloc(pool, sizeof(void *));
    if (r.ctx == NULL) {
        ngx_fuzz_fail("out of memory");
    }

    /* the location's configuration: zmq_trace on or off (trace context) */
    fuzz_zlcf.trace = (data[1] & 32) ? 1 : 0;
    fuzz_loc_conf[0] = &fuzz_zlcf;
    r.loc_conf = fuzz_loc_conf;

    /* the defaults: outgoing connection, then service */

    ngx_memzero(&oc, sizeof(ngx_http_zmq_outconn_conf_t));
    oc.delivery_mode = 2;
    oc.priority = (data[0] & 1) ? 3 : -1;
    oc.expiration = (data[0] & 2) ? 60000 : -1;
    if (data[0] & 4) {
        ngx_str_set(&oc.content_type, "application/json");
    }
    if (data[0] & 8) {
        ngx_str_set(&oc.content_encoding, "utf-8");
    }
    if (data[0] & 16) {
        ngx_str_set(&oc.user_id, "guest");
    }
    ngx_str_set(&oc.app_id, "ngx_zmq");

    ngx_memzero(&svc, sizeof(ngx_http_zmq_service_t));
    svc.delivery_mode = (data[1] & 1) ? 1 : -1;
    svc.priority = (data[1] & 2) ? 9 : -1;
    svc.expiration = (data[1] & 4) ? 0 : -1;
    if (data[1] & 8) {
        ngx_str_set(&svc.content_type, "text/plain");
    }

    if (ngx_array_init(&svc.headers, pool, 2, sizeof(ngx_keyval_t))
        != NGX_OK)
    {
        ngx_fuzz_fail("out of memory");
    }

    if (data[1] & 16) {
        kv = ngx_array_push(&svc.headers);
        if (kv == NULL) {
            ngx_fuzz_fail("out of memory");
        }
        ngx_str_set(&kv->key, "from");
        ngx_str_set(&kv->value, "svc");
    }

    if (fuzz_headers(&r, data + 2, size - 2) != NGX_OK) {
        ngx_fuzz_fail("out of memory");
    }

    ngx_memzero(&props, sizeof(amqp_basic_properties_t));
    ngx_str_null(&message_id);
    bad = NULL;

    rc = ngx_http_zmq_properties(&r, &svc, &oc, &props, &message_id, &bad);

    if (rc == NGX_OK) {
        if (message_id.len == 0
            || !(props._flags & AMQP_BASIC_MESSAGE_ID_FLAG))
        {
            ngx_fuzz_fail("a message without a message id");
        }

        fuzz_check(pool, &props);

    } else if (rc == NGX_DECLINED) {
        if (bad == NULL || bad[0] == '\0') {
            ngx_fuzz_fail("headers refused without saying why");
        }

    } else {
        ngx_fuzz_fail("properties() failed (%d)", (int) rc);
    }

    ngx_destroy_pool(pool);

    return 0;
}
