
/*
 * libFuzzer target: request bodies in every shape NGINX hands a handler
 * (ngx_http_zmq_publish.c and the body path of ngx_zmq_amqp.c).
 *
 * NGINX gives a body handler r->request_body->bufs: one memory buffer,
 * several (a chunked body), a temporary file (client_body_in_file_only, or
 * a body larger than client_body_buffer_size) followed by what stayed in
 * memory, empty buffers, and an empty last_buf that has neither memory nor
 * a file (the end of a chunked body). The input picks the body's bytes and
 * its shape; the target then runs the JSON check of zmq_data_format json
 * and publishes the body on an AMQP connection whose broker side is
 * decoded.
 *
 * What must hold: no crash; the JSON check agrees with jansson on the
 * body's bytes; the broker receives exactly the body, byte for byte, and
 * the publish is answered once.
 */


#include "ngx_fuzz.h"

#include <ngx_http.h>

#define ngx_event_connect_peer  ngx_fuzz_connect_peer
#define ngx_close_connection    ngx_fuzz_close_connection

#include "ngx_zmq_amqp.c"
#include "ngx_zmq_socket.c"          /* opens and closes the socket */
#include "ngx_http_zmq_publish.c"


#define FUZZ_PIECES_MAX  16


static amqp_connection_state_t   fuzz_broker;
static ngx_uint_t                fuzz_broker_conn;
static size_t                    fuzz_sent_total;
static u_char                   *fuzz_got;        /* the body received */
static size_t                    fuzz_got_len;
static size_t                    fuzz_got_cap;
static ngx_int_t                 fuzz_got_header; /* body_size announced */
static ngx_uint_t                fuzz_answers;
static ngx_http_zmq_pub_result_e fuzz_result;


/* the worker struct the module's code finds through the cycle */
static ngx_http_zmq_worker_t     fuzz_worker;
static ngx_http_zmq_main_conf_t  fuzz_zmcf;


static void
fuzz_worker_setup(void)
{
    fuzz_zmcf.worker = &fuzz_worker;
    ngx_fuzz_http_main_conf(&ngx_http_zmq_module, &fuzz_zmcf);
}


static void
fuzz_broker_reset(void)
{
    amqp_frame_t  frame;
    amqp_bytes_t  hdr;

    if (fuzz_broker != NULL) {
        amqp_destroy_connection(fuzz_broker);
    }

    fuzz_broker = amqp_new_connection();
    if (fuzz_broker == NULL) {
        ngx_fuzz_fail("amqp_new_connection() failed");
    }

    hdr.bytes = "AMQP\x00\x00\x09\x01";
    hdr.len = 8;
    (void) amqp_handle_input(fuzz_broker, hdr, &frame);

    fuzz_sent_total = 0;
}


/* what the gateway writes, decoded as the broker would */
static void
fuzz_sent(const u_char *p, size_t n)
{
    int            rc;
    size_t         skip;
    amqp_frame_t   frame;
    amqp_bytes_t   data, frag;

    if (fuzz_broker_conn != ngx_fuzz_peer.connects) {
        fuzz_broker_reset();
        fuzz_broker_conn = ngx_fuzz_peer.connects;
    }

    if (fuzz_sent_total < 8) {
        skip = ngx_min(n, 8 - fuzz_sent_total);
        fuzz_sent_total += skip;
        p += skip;
        n -= skip;
    }

    while (n > 0) {
        data.bytes = (void *) p;
        data.len = n;

        rc = amqp_handle_input(fuzz_broker, data, &frame);
        if (rc < 0) {
            ngx_fuzz_fail("the gateway sent a frame that does not decode: "
                          "%s", amqp_error_string2(rc));
        }

        p += rc;
        n -= rc;

        if (frame.frame_type == AMQP_FRAME_HEADER) {
            fuzz_got_header = (ngx_int_t) frame.payload.properties.body_size;

        } else if (frame.frame_type == AMQP_FRAME_BODY) {
            frag = frame.payload.body_fragment;

            if (fuzz_got_len + frag.len > fuzz_got_cap) {
                ngx_fuzz_fail("the broker got more than the body");
            }

            ngx_memcpy(fuzz_got + fuzz_got_len, frag.bytes, frag.len);
            fuzz_got_len += frag.len;
        }

        if (frame.frame_type != 0) {
            amqp_maybe_release_buffers(fuzz_broker);
        }
    }
}


static size_t
fuzz_method(u_char *buf, uint16_t channel, amqp_method_number_t id,
    void *m)
{
    int           n;
    u_char       *p;
    amqp_bytes_t  enc;

    enc.bytes = buf + 11;
    enc.len = 4096;

    n = amqp_encode_method(id, m, enc);
    if (n < 0) {
        ngx_fuzz_fail("cannot encode a broker method");
    }

    p = buf;
    *p++ = AMQP_FRAME_METHOD;
    p = ngx_http_zmq_put16(p, channel);
    p = ngx_http_zmq_put32(p, (uint32_t) (4 + n));
    p = ngx_http_zmq_put32(p, id);
    p += n;
    *p++ = AMQP_FRAME_END;

    return p - buf;
}


/* the broker's side of the handshake */
static void
fuzz_handshake(uint32_t frame_max)
{
    u_char                       buf[8192];
    amqp_table_t                 empty;
    amqp_basic_ack_t             ack;
    amqp_channel_open_ok_t       chok;
    amqp_confirm_select_ok_t     sok;
    amqp_connection_tune_t       tune;
    amqp_connection_start_t      start;
    amqp_connection_open_ok_t    ook;

    (void) ack;

    empty.num_entries = 0;
    empty.entries = NULL;

    ngx_memzero(&start, sizeof(start));
    start.version_major = 0;
    start.version_minor = 9;
    start.server_properties = empty;
    start.mechanisms = amqp_cstring_bytes("PLAIN");
    start.locales = amqp_cstring_bytes("en_US");
    ngx_fuzz_feed(buf, fuzz_method(buf, 0, AMQP_CONNECTION_START_METHOD,
                                   &start));
    ngx_fuzz_run_posted();

    tune.channel_max = 0;
    tune.frame_max = frame_max;
    tune.heartbeat = 0;
    ngx_fuzz_feed(buf, fuzz_method(buf, 0, AMQP_CONNECTION_TUNE_METHOD,
                                   &tune));
    ngx_fuzz_run_posted();

    ook.known_hosts = amqp_empty_bytes;
    ngx_fuzz_feed(buf, fuzz_method(buf, 0, AMQP_CONNECTION_OPEN_OK_METHOD,
                                   &ook));
    ngx_fuzz_run_posted();

    chok.channel_id = amqp_empty_bytes;
    ngx_fuzz_feed(buf, fuzz_method(buf, 1, AMQP_CHANNEL_OPEN_OK_METHOD,
                                   &chok));
    ngx_fuzz_run_posted();

    sok.dummy = 0;
    ngx_fuzz_feed(buf, fuzz_method(buf, 1, AMQP_CONFIRM_SELECT_OK_METHOD,
                                   &sok));
    ngx_fuzz_run_posted();
}


static void
fuzz_done(ngx_http_zmq_pub_t *pub, ngx_http_zmq_pub_result_e result)
{
    if (fuzz_answers++) {
        ngx_fuzz_fail("a publish answered twice");
    }

    fuzz_result = result;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       fd;
    u_char                    shape, buf[64], *body;
    off_t                     file_off;
    size_t                    len, cut[FUZZ_PIECES_MAX + 1], nsplits, i, n;
    json_t                   *doc;
    time_t                    retry_after;
    ngx_int_t                 rc, want;
    ngx_buf_t                *b;
    ngx_pool_t               *pool;
    ngx_file_t               *file;
    ngx_chain_t              *cl, **ll;
    json_error_t              jerr;
    ngx_connection_t          hc;
    struct sockaddr_in        sin;
    ngx_addr_t                addr;
    ngx_http_request_t        r;
    ngx_http_zmq_pub_t       *pub;
    ngx_http_zmq_publish_t    msg;
    ngx_http_request_body_t   rb;
    amqp_basic_ack_t          ack;
    amqp_basic_properties_t   props;
    ngx_zmq_amqp_conn_t *conn;
    ngx_http_zmq_outconn_conf_t  oc;

    if (size < 1) {
        return 0;
    }

    /*
     * shape: bits 0-2 the number of cuts, 3 an empty last_buf at the end,
     * 4 the first piece is in the temporary file, 5 every piece is, 6 an
     * empty memory buffer between pieces, 7 frame_max 4096 (not 131072)
     */
    shape = data[0];
    nsplits = ngx_min((size_t) (shape & 7), size - 1);
    body = (u_char *) data + 1 + nsplits;
    len = size - 1 - nsplits;

    cut[0] = 0;
    for (i = 0; i < nsplits; i++) {
        cut[i + 1] = (size_t) data[1 + i] * len / 256;
    }
    cut[nsplits + 1] = len;

    /* cuts in order */
    for (i = 1; i <= nsplits; i++) {
        for (n = i; n > 1 && cut[n - 1] > cut[n]; n--) {
            size_t t = cut[n];
            cut[n] = cut[n - 1];
            cut[n - 1] = t;
        }
    }

    ngx_fuzz_start_input();
    ngx_fuzz_check_quiet("before the input");

    pool = ngx_create_pool(4096, ngx_fuzz_log);
    if (pool == NULL) {
        ngx_fuzz_fail("out of memory");
    }

    ngx_memzero(&hc, sizeof(ngx_connection_t));
    hc.log = ngx_fuzz_log;
    ngx_memzero(&r, sizeof(ngx_http_request_t));
    r.pool = pool;
    r.connection = &hc;
    ngx_memzero(&rb, sizeof(ngx_http_request_body_t));
    r.request_body = &rb;

    /* the temporary file, as ngx_write_chain_to_temp_file() leaves it */

    file = NULL;
    fd = -1;

    if (shape & 0x30) {
        char  tmpl[] = "/tmp/ngx_zmq_fuzz_body.XXXXXX";

        fd = mkstemp(tmpl);
        if (fd == -1) {
            ngx_fuzz_fail("mkstemp() failed");
        }
        unlink(tmpl);

        file = ngx_pcalloc(pool, sizeof(ngx_file_t));
        if (file == NULL) {
            ngx_fuzz_fail("out of memory");
        }
        file->fd = fd;
        ngx_str_set(&file->name, "client_body_temp/0000000001");
        file->log = ngx_fuzz_log;
    }

    /* the chain */

    ll = &rb.bufs;
    file_off = 0;

    for (i = 0; i <= nsplits; i++) {
        n = cut[i + 1] - cut[i];

        if (i > 0 && (shape & 0x40)) {
            /* an empty memory buffer, as a chunked body may leave */
            b = ngx_calloc_buf(pool);
            cl = ngx_alloc_chain_link(pool);
            if (b == NULL || cl == NULL) {
                ngx_fuzz_fail("out of memory");
            }
            b->temporary = 1;
            b->start = b->pos = b->last = b->end = buf;
            cl->buf = b;
            *ll = cl;
            ll = &cl->next;
        }

        if (n == 0) {
            continue;
        }

        b = ngx_calloc_buf(pool);
        cl = ngx_alloc_chain_link(pool);
        if (b == NULL || cl == NULL) {
            ngx_fuzz_fail("out of memory");
        }

        if ((shape & 0x20) || ((shape & 0x10) && i == 0)) {
            if (pwrite(fd, body + cut[i], n, file_off) != (ssize_t) n) {
                ngx_fuzz_fail("pwrite() failed");
            }
            b->in_file = 1;
            b->file = file;
            b->file_pos = file_off;
            b->file_last = file_off + n;
            file_off += n;

        } else {
            /* a copy as large as the piece: ASan sees its bounds */
            b->start = ngx_fuzz_palloc(pool, n);
            if (b->start == NULL) {
                ngx_fuzz_fail("out of memory");
            }
            ngx_memcpy(b->start, body + cut[i], n);
            b->pos = b->start;
            b->last = b->start + n;
            b->end = b->last;
            b->temporary = 1;
        }

        cl->buf = b;
        *ll = cl;
        ll = &cl->next;
    }

    if (shape & 0x08) {
        /* the end of a chunked body: no memory, no file */
        b = ngx_calloc_buf(pool);
        cl = ngx_alloc_chain_link(pool);
        if (b == NULL || cl == NULL) {
            ngx_fuzz_fail("out of memory");
        }
        b->last_buf = 1;
        cl->buf = b;
        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    /* the JSON check agrees with jansson on the same bytes */

    rc = ngx_http_zmq_body_json_ok(&r, (off_t) len);

    if (len == 0) {
        want = 0;
    } else {
        doc = json_loadb((char *) body, len, JSON_DECODE_ANY, &jerr);
        want = doc != NULL;
        json_decref(doc);
    }

    if (rc != want) {
        ngx_fuzz_fail("the JSON check says %i for a body jansson %s",
                      rc, want ? "accepts" : "refuses");
    }

    /* published: the broker gets exactly the body */

    ngx_memzero(&sin, sizeof(struct sockaddr_in));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(5672);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sockaddr = (struct sockaddr *) &sin;
    addr.socklen = sizeof(struct sockaddr_in);
    ngx_str_set(&addr.name, "127.0.0.1:5672");

    ngx_memzero(&oc, sizeof(ngx_http_zmq_outconn_conf_t));
    ngx_str_set(&oc.name, "fuzz");
    ngx_str_set(&oc.def_name, "fuzz");
    oc.active = 1;
    oc.addrs = &addr;
    oc.naddrs = 1;
    ngx_str_set(&oc.vhost, "/");
    ngx_str_set(&oc.username, "guest");
    ngx_str_set(&oc.password, "guest");
    oc.frame_max = 131072;
    oc.max_inflight = 4;
    oc.delivery_mode = 2;
    oc.priority = -1;
    oc.expiration = -1;

    ngx_fuzz_peer.connect_rc = NGX_OK;
    ngx_fuzz_peer.sent = fuzz_sent;
    fuzz_broker_conn = 0;
    fuzz_got_len = 0;
    fuzz_got_cap = len;
    fuzz_got = malloc(len ? len : 1);
    fuzz_got_header = -1;
    fuzz_answers = 0;
    fuzz_worker_setup();
    ngx_zmq_amqp_configure(&fuzz_worker.amqp, 5000, 16 * 1024 * 1024);

    conn = ngx_zmq_amqp_open(&fuzz_worker.amqp, &oc, NULL, ngx_fuzz_log);
    if (conn == NULL || fuzz_got == NULL) {
        ngx_fuzz_fail("out of memory");
    }

    ngx_fuzz_run_posted();
    fuzz_handshake((shape & 0x80) ? 4096 : 131072);

    ngx_memzero(&props, sizeof(amqp_basic_properties_t));
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = 2;

    ngx_memzero(&msg, sizeof(ngx_http_zmq_publish_t));
    ngx_str_set(&msg.exchange, "");
    ngx_str_set(&msg.routing_key, "q");
    msg.confirm = 1;
    msg.props = &props;
    msg.body = rb.bufs;
    msg.body_len = (off_t) len;
    msg.data = &r;
    msg.done = fuzz_done;

    pub = NULL;
    rc = ngx_zmq_amqp_publish(conn, &msg, &pub, &retry_after,
                              ngx_fuzz_log);
    if (rc != NGX_OK) {
        ngx_fuzz_fail("publish() of a %uz byte body failed: %i", len, rc);
    }

    ngx_fuzz_run_posted();

    if (fuzz_got_header != (ngx_int_t) len || fuzz_got_len != len
        || (len && ngx_memcmp(fuzz_got, body, len) != 0))
    {
        ngx_fuzz_fail("the broker got %i announced, %uz bytes, %s, for a "
                      "body of %uz bytes", fuzz_got_header, fuzz_got_len,
                      fuzz_got_len == len ? "other bytes" : "",
                      len);
    }

    ack.delivery_tag = 1;
    ack.multiple = 0;
    ngx_fuzz_feed(buf, fuzz_method(buf, 1, AMQP_BASIC_ACK_METHOD, &ack));
    ngx_fuzz_run_posted();

    if (fuzz_answers != 1 || fuzz_result != NGX_HTTP_ZMQ_PUB_ACKED) {
        ngx_fuzz_fail("the confirmed publish was answered %ui times (%i)",
                      fuzz_answers, (ngx_int_t) fuzz_result);
    }

    ngx_zmq_amqp_retire(conn);
    ngx_fuzz_run_posted();
    ngx_fuzz_hangup(0);
    ngx_fuzz_run_posted();
    ngx_fuzz_check_quiet("after the connection was retired");

    amqp_destroy_connection(fuzz_broker);
    fuzz_broker = NULL;
    free(fuzz_got);
    if (fd != -1) {
        close(fd);
    }
    ngx_destroy_pool(pool);

    return 0;
}
