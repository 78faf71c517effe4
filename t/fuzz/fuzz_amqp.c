
/*
 * libFuzzer target: the module's AMQP client as a broker (or anything
 * between) would drive it: the frame reader and the handshake state
 * machine, confirms, returns, closes, heartbeats, a socket that stalls,
 * hangs up or fails, and timers, while the gateway publishes; and rpc
 * requests, whose replies (basic.consume-ok, basic.deliver with a content
 * header and bodies) come from the same bytes. An rpc request's
 * correlation id is "c-<n>", n its publish's index in the input.
 *
 * The input is a program of operations; most feed the next bytes to the
 * connection's read handler, exactly as they would arrive from the socket
 * (any split). What must hold whatever the broker does: no crash, no
 * [alert], every publish that was accepted is answered exactly once, every
 * rpc that was accepted and not cancelled gets exactly one reply (or is
 * told the connection was lost), with a body within the limit, every
 * frame the gateway writes is well-formed AMQP, and once the connection is
 * retired nothing is left (timers, posted events, sockets, memory).
 */


#include "ngx_fuzz.h"

#define ngx_event_connect_peer  ngx_fuzz_connect_peer
#define ngx_close_connection    ngx_fuzz_close_connection
#define ngx_palloc              ngx_fuzz_palloc
#define ngx_pnalloc             ngx_fuzz_palloc
#define ngx_pcalloc             ngx_fuzz_pcalloc

#include "ngx_zmq_amqp.c"
#include "ngx_zmq_socket.c"          /* opens and closes the socket */

#undef ngx_palloc
#undef ngx_pnalloc
#undef ngx_pcalloc


#define FUZZ_PUBS_MAX  64


typedef struct {
    ngx_uint_t                   answers;
    ngx_uint_t                   detached;
    ngx_http_zmq_pub_t          *pub;
    ngx_http_zmq_pub_result_e    result;

    ngx_zmq_amqp_rpc_t           rpc;
    u_char                       cid[16];
    ngx_uint_t                   waits;       /* rpc: a reply awaited */
    ngx_uint_t                   replies;
    ngx_uint_t                   cancelled;
} fuzz_pub_t;


static void fuzz_broker_reset(void);


static fuzz_pub_t                fuzz_pubs[FUZZ_PUBS_MAX];
static ngx_uint_t                fuzz_npubs;
static amqp_connection_state_t   fuzz_broker;     /* decodes what we send */
static size_t                    fuzz_sent_total;
static ngx_zmq_amqp_worker_t     fuzz_worker;
static ngx_uint_t                fuzz_sent_conn;  /* connection decoded */
static u_char                    fuzz_header[8];
static u_char                    fuzz_body[16384];
static volatile u_char           fuzz_sink;


static void
fuzz_done(ngx_http_zmq_pub_t *pub, ngx_http_zmq_pub_result_e result)
{
    fuzz_pub_t  *fp = pub->data;

    if (fp < fuzz_pubs || fp > fuzz_pubs + fuzz_npubs) {
        ngx_fuzz_fail("done() with data that is no request's");
    }

    if (fp->detached) {
        ngx_fuzz_fail("done() after detach");
    }

    if (fp->answers++) {
        ngx_fuzz_fail("a publish answered twice (%d after %d)",
                      (int) result, (int) fp->result);
    }

    fp->result = result;
}


static void
fuzz_replied(ngx_zmq_amqp_rpc_t *rpc, ngx_zmq_amqp_reply_t *reply)
{
    size_t       n;
    fuzz_pub_t  *fp = rpc->data;

    if (fp < fuzz_pubs || fp > fuzz_pubs + fuzz_npubs || !fp->waits) {
        ngx_fuzz_fail("a reply for no rpc");
    }

    if (fp->cancelled) {
        ngx_fuzz_fail("a reply after the rpc was cancelled");
    }

    if (fp->replies++) {
        ngx_fuzz_fail("an rpc answered twice");
    }

    if (rpc->conn != NULL || rpc->in_tree) {
        ngx_fuzz_fail("a reply to an rpc that still waits");
    }

    ngx_log_error(NGX_LOG_INFO, ngx_fuzz_log, 0, "fuzz: rpc %ui: reply "
                  "%d, status %ui, %uz bytes", (ngx_uint_t) (fp - fuzz_pubs),
                  (int) reply->result, reply->status, reply->len);

    if (reply->result > NGX_ZMQ_AMQP_REPLY_BAD_TYPE) {
        ngx_fuzz_fail("a reply with result %d", (int) reply->result);
    }

    if (reply->result == NGX_ZMQ_AMQP_REPLY_OK) {
        if (reply->status < 200 || reply->status > 599
            || reply->len > NGX_ZMQ_AMQP_REPLY_MAX
            || (reply->len > 0 && reply->body == NULL)
            || reply->content_type.len > 255)
        {
            ngx_fuzz_fail("a reply out of bounds: status %ui, %uz bytes",
                          reply->status, reply->len);
        }

        /* the body is ours to read whole: every byte (ASan checks) */
        for (n = 0; n < reply->len; n++) {
            fuzz_sink ^= reply->body[n];
        }
    }
}


/*
 * What the gateway writes, decoded as a broker would: a frame that does
 * not decode means the broker would close the connection on every
 * message in flight.
 */

static void
fuzz_sent(const u_char *p, size_t n)
{
    int           rc;
    size_t        skip;
    amqp_frame_t  frame;
    amqp_bytes_t  data;

    if (fuzz_sent_conn != ngx_fuzz_peer.connects) {
        /* a new connection starts with its protocol header */
        fuzz_broker_reset();
        fuzz_sent_conn = ngx_fuzz_peer.connects;
    }

    if (fuzz_sent_total < 8) {
        skip = ngx_min(n, 8 - fuzz_sent_total);
        ngx_memcpy(fuzz_header + fuzz_sent_total, p, skip);
        fuzz_sent_total += skip;
        p += skip;
        n -= skip;

        if (fuzz_sent_total == 8
            && ngx_memcmp(fuzz_header, "AMQP\x00\x00\x09\x01", 8) != 0)
        {
            ngx_fuzz_fail("the gateway did not start with the protocol "
                          "header");
        }
    }

    fuzz_sent_total += n;

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

        if (frame.frame_type != 0) {
            amqp_maybe_release_buffers(fuzz_broker);
        }
    }
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

    /* past the protocol header, as the module does with its own codec */
    hdr.bytes = "AMQP\x00\x00\x09\x01";
    hdr.len = 8;
    (void) amqp_handle_input(fuzz_broker, hdr, &frame);

    /* a new codec takes frames up to 131072 bytes, the most used here */

    fuzz_sent_total = 0;
}


static void
fuzz_publish(ngx_zmq_amqp_conn_t *conn, u_char flags, size_t len)
{
    u_char                    id[32];
    time_t                    retry_after;
    ngx_buf_t                 b;
    ngx_int_t                 rc;
    ngx_chain_t               cl;
    fuzz_pub_t               *fp;
    ngx_http_zmq_pub_t       *pub;
    ngx_http_zmq_publish_t    msg;
    amqp_basic_properties_t   props;

    if (fuzz_npubs == FUZZ_PUBS_MAX) {
        return;
    }

    fp = &fuzz_pubs[fuzz_npubs];
    ngx_memzero(fp, sizeof(fuzz_pub_t));

    ngx_memzero(&props, sizeof(amqp_basic_properties_t));
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = 2;

    if (flags & 0x08) {
        /* two requests may carry the same id: the client chooses it */
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id.bytes = id;
        props.message_id.len = ngx_sprintf(id, "m-%ui", fuzz_npubs % 3)
                               - id;
    }

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.pos = fuzz_body;
    b.last = fuzz_body + len;
    b.start = b.pos;
    b.end = b.last;
    b.memory = 1;
    b.last_buf = 1;
    cl.buf = &b;
    cl.next = NULL;

    ngx_memzero(&msg, sizeof(ngx_http_zmq_publish_t));
    ngx_str_set(&msg.exchange, "");
    ngx_str_set(&msg.routing_key, "q");
    msg.mandatory = (flags & 0x01) ? 1 : 0;
    msg.confirm = (flags & 0x02) ? 0 : 1;
    msg.props = &props;
    msg.body = &cl;
    msg.body_len = len;
    msg.timeout = (flags & 0x04) ? 1000 : 0;
    msg.data = fp;
    msg.done = fuzz_done;

    if (flags & 0x10) {
        /* an rpc: correlation id "c-<n>" */
        fp->rpc.sn.str.data = fp->cid;
        fp->rpc.sn.str.len = ngx_sprintf(fp->cid, "c-%ui", fuzz_npubs)
                             - fp->cid;
        fp->rpc.handler = fuzz_replied;
        fp->rpc.data = fp;
        fp->rpc.timeout = 2000;
        msg.rpc = &fp->rpc;
    }

    pub = NULL;
    retry_after = 0;

    rc = ngx_zmq_amqp_publish(conn, &msg, &pub, &retry_after,
                              ngx_fuzz_log);

    if (rc == NGX_OK) {
        if (pub == NULL) {
            ngx_fuzz_fail("publish() accepted without a pending message");
        }

        if (msg.rpc != NULL && (fp->rpc.conn != conn || !fp->rpc.in_tree)) {
            ngx_fuzz_fail("an rpc accepted that does not wait");
        }

        fp->pub = pub;
        fp->waits = msg.rpc != NULL;
        fuzz_npubs++;
        return;
    }

    if (fp->rpc.conn != NULL) {
        ngx_fuzz_fail("an rpc refused (%d) that waits", (int) rc);
    }

    if ((rc == NGX_HTTP_ZMQ_UNAVAILABLE || rc == NGX_HTTP_ZMQ_BLOCKED
         || rc == NGX_HTTP_ZMQ_OVERLOADED)
        && retry_after <= 0)
    {
        ngx_fuzz_fail("publish() refused (%d) without a Retry-After",
                      (int) rc);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                        n;
    u_char                        op, arg;
    ngx_uint_t                    i;
    struct sockaddr_in            sin;
    ngx_addr_t                    addr;
    ngx_zmq_amqp_conn_t          *conn;
    ngx_http_zmq_outconn_conf_t   oc;

    if (size < 3) {
        return 0;
    }

    ngx_fuzz_start_input();
    ngx_fuzz_check_quiet("before the input");
    ngx_fuzz_peer.sent = fuzz_sent;
    fuzz_sent_conn = 0;
    fuzz_npubs = 0;

    /* the outgoing connection: heartbeat, frame_max, max_inflight */

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
    oc.heartbeat = data[0] % 4;
    oc.frame_max = (data[1] & 1) ? 131072 : 4096;
    oc.max_inflight = 1 + data[1] % 9;
    oc.delivery_mode = 2;
    oc.priority = -1;
    oc.expiration = -1;

    ngx_fuzz_peer.connect_rc = (data[2] & 1) ? NGX_OK : NGX_AGAIN;
    ngx_zmq_amqp_configure(&fuzz_worker, 5000, 64 * 1024);

    data += 3;
    size -= 3;

    conn = ngx_zmq_amqp_open(&fuzz_worker, &oc, NULL, ngx_fuzz_log);
    if (conn == NULL) {
        ngx_fuzz_fail("open() failed");
    }

    ngx_fuzz_run_posted();

    while (size > 0) {
        op = data[0];
        arg = size > 1 ? data[1] : 0;
        data += size > 1 ? 2 : 1;
        size -= size > 1 ? 2 : 1;

        switch (op & 0x0f) {

        case 5:
            /* the socket takes arg * 64 bytes more (or all of them) */
            ngx_fuzz_writable((size_t) arg * 64, op & 0x80);
            break;

        case 6:
            /* body sizes up to 7 x 1000 + 255: several frames */
            fuzz_publish(conn, arg, (size_t) ((op >> 4) & 7) * 1000 + arg);
            break;

        case 7:
            ngx_fuzz_advance((ngx_msec_t) arg * 100);
            break;

        case 8:
            /* the client goes away while its message is in flight */
            if (fuzz_npubs > 0) {
                i = arg % fuzz_npubs;
                if (!fuzz_pubs[i].answers && !fuzz_pubs[i].detached) {
                    fuzz_pubs[i].detached = 1;
                    ngx_zmq_amqp_detach(fuzz_pubs[i].pub);
                }
            }
            break;

        case 10:
            /* an rpc times out, or its client goes away */
            if (fuzz_npubs > 0) {
                i = arg % fuzz_npubs;
                if (fuzz_pubs[i].waits && !fuzz_pubs[i].replies
                    && !fuzz_pubs[i].cancelled)
                {
                    fuzz_pubs[i].cancelled = 1;
                    ngx_zmq_amqp_rpc_cancel(&fuzz_pubs[i].rpc,
                                            (op & 0x80)
                                            ? NGX_ZMQ_AMQP_RPC_TIMEDOUT
                                            : NGX_ZMQ_AMQP_RPC_DONE);
                    if (fuzz_pubs[i].rpc.conn != NULL
                        || fuzz_pubs[i].rpc.in_tree)
                    {
                        ngx_fuzz_fail("an rpc still waits once cancelled");
                    }
                }
            }
            break;

        case 9:
            if (op & 0x80) {
                /* the next connect is refused */
                ngx_fuzz_peer.connect_rc = NGX_ERROR;
            } else if (op & 0x40) {
                ngx_fuzz_peer.connect_rc = (arg & 1) ? NGX_OK : NGX_AGAIN;
            } else {
                ngx_fuzz_hangup(arg & 1);
            }
            break;

        default:
            /* bytes from the broker: arg + 1, or arg x 16 + 1 */
            n = (op & 0x80) ? (size_t) arg * 16 + 1 : (size_t) arg + 1;
            n = ngx_min(n, size);
            ngx_fuzz_feed(data, n);
            data += n;
            size -= n;
            break;
        }

        ngx_fuzz_run_posted();
    }

    /* a configuration change retires it; then the broker goes away */

    ngx_zmq_amqp_retire(conn);
    ngx_fuzz_run_posted();
    ngx_fuzz_hangup(0);
    ngx_fuzz_run_posted();

    for (i = 0; i < fuzz_npubs; i++) {
        if (!fuzz_pubs[i].detached && fuzz_pubs[i].answers != 1) {
            ngx_fuzz_fail("publish %ui was never answered", i);
        }

        if (fuzz_pubs[i].waits && !fuzz_pubs[i].cancelled
            && fuzz_pubs[i].replies != 1)
        {
            ngx_fuzz_fail("rpc %ui never had its reply", i);
        }
    }

    ngx_fuzz_check_quiet("after the connection was retired");

    /* what one input allocates it frees: libFuzzer looks for leaks then */
    if (fuzz_broker != NULL) {
        amqp_destroy_connection(fuzz_broker);
        fuzz_broker = NULL;
    }

    return 0;
}
