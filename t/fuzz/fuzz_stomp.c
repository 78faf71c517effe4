
/*
 * libFuzzer target: the module's STOMP client as a broker (or anything
 * between) would drive it: the frame reader (heads, escapes,
 * content-length, bodies up to their NUL), CONNECTED and its heart-beats,
 * RECEIPT and ERROR, a socket that stalls, hangs up or fails, and timers,
 * while the gateway publishes. Receipt ids are the connection's message
 * counter: "0", "1", ... so that short inputs find them.
 *
 * The input: 3 bytes of settings, then (op, arg) pairs as in
 * fuzz_amqp.c; op & 15: 5 writable, 6 publish, 7 time passes, 8 detach,
 * 9 hang up or set the next connect's result, else feed bytes. What must
 * hold: no crash, no [alert], every accepted publish answered exactly
 * once, every frame the gateway writes well-formed STOMP 1.2 with a
 * content-length, and once retired nothing left behind.
 */


#include "ngx_fuzz.h"

#define ngx_event_connect_peer  ngx_fuzz_connect_peer
#define ngx_close_connection    ngx_fuzz_close_connection
#define ngx_palloc              ngx_fuzz_palloc
#define ngx_pnalloc             ngx_fuzz_palloc
#define ngx_pcalloc             ngx_fuzz_pcalloc

#include "ngx_zmq_stomp.c"
#include "ngx_zmq_socket.c"

#undef ngx_palloc
#undef ngx_pnalloc
#undef ngx_pcalloc


#define FUZZ_PUBS_MAX   64
#define FUZZ_SENT_MAX   (256 * 1024)


typedef struct {
    ngx_uint_t                   answers;
    ngx_uint_t                   detached;
    ngx_zmq_stomp_pub_t         *pub;
    ngx_http_zmq_pub_result_e    result;
} fuzz_pub_t;


static fuzz_pub_t                fuzz_pubs[FUZZ_PUBS_MAX];
static ngx_uint_t                fuzz_npubs;
static ngx_zmq_stomp_worker_t    fuzz_worker;
static ngx_uint_t                fuzz_sent_conn;
static u_char                    fuzz_sent[FUZZ_SENT_MAX];
static size_t                    fuzz_sent_len;
static u_char                    fuzz_body[8192];


static void
fuzz_done(ngx_zmq_stomp_pub_t *pub, ngx_http_zmq_pub_result_e result)
{
    fuzz_pub_t  *fp = pub->data;

    if (fp < fuzz_pubs || fp >= fuzz_pubs + FUZZ_PUBS_MAX) {
        ngx_fuzz_fail("done() with data that is no request's");
    }

    if (fp->detached) {
        ngx_fuzz_fail("done() after detach");
    }

    if (fp->answers++) {
        ngx_fuzz_fail("a publish answered twice (%d after %d)",
                      (int) result, (int) fp->result);
    }

    if (result != NGX_HTTP_ZMQ_PUB_ACKED && result != NGX_HTTP_ZMQ_PUB_NACKED
        && result != NGX_HTTP_ZMQ_PUB_LOST
        && result != NGX_HTTP_ZMQ_PUB_TIMEDOUT)
    {
        ngx_fuzz_fail("a publish answered %d", (int) result);
    }

    fp->result = result;
}


/* one whole frame at the start of fuzz_sent: its length, 0: not yet */
static size_t
fuzz_frame(void)
{
    u_char  *p, *end, *head_end, *line, *eol, *colon;
    size_t   clen;
    ngx_int_t  n;
    ngx_uint_t  has_len, connect;

    p = fuzz_sent;
    end = fuzz_sent + fuzz_sent_len;

    head_end = NULL;
    for (line = p; line < end; line = eol + 1) {
        eol = ngx_strlchr(line, end, '\n');
        if (eol == NULL) {
            return 0;
        }
        if (eol == line) {
            head_end = eol + 1;
            break;
        }
    }

    if (head_end == NULL) {
        return 0;
    }

    connect = (ngx_strncmp(p, "CONNECT\n", 8) == 0);

    if (!connect && ngx_strncmp(p, "SEND\n", 5) != 0) {
        ngx_fuzz_fail("the gateway sent a frame other than CONNECT or SEND");
    }

    has_len = 0;
    clen = 0;

    for (line = ngx_strlchr(p, end, '\n') + 1; line < head_end - 1;
         line = eol + 1)
    {
        eol = ngx_strlchr(line, end, '\n');
        colon = ngx_strlchr(line, eol, ':');

        if (colon == NULL || colon == line) {
            ngx_fuzz_fail("the gateway sent a header line without a name");
        }

        if (!connect) {
            /* escaped: a backslash only before \, c, n, r */
            for (p = line; p < eol; p++) {
                if (*p == '\\') {
                    if (p + 1 == eol || (p[1] != '\\' && p[1] != 'c'
                                         && p[1] != 'n' && p[1] != 'r'))
                    {
                        ngx_fuzz_fail("the gateway sent a bad escape");
                    }
                    p++;
                }
                if (*p == '\r' || *p == '\0'
                    || (*p == ':' && p != colon))
                {
                    ngx_fuzz_fail("the gateway sent an unescaped byte");
                }
            }
        }

        if (colon - line == 14 && ngx_strncmp(line, "content-length", 14) == 0
            && !has_len)
        {
            n = ngx_atoi(colon + 1, eol - colon - 1);
            if (n == NGX_ERROR) {
                ngx_fuzz_fail("the gateway sent a bad content-length");
            }
            clen = (size_t) n;
            has_len = 1;
        }
    }

    if (!connect && !has_len) {
        ngx_fuzz_fail("the gateway sent a SEND without content-length");
    }

    if ((size_t) (end - head_end) < clen + 1) {
        return 0;
    }

    if (head_end[clen] != '\0') {
        ngx_fuzz_fail("the gateway's frame does not end with its NUL");
    }

    if (connect && clen != 0) {
        ngx_fuzz_fail("a CONNECT with a body");
    }

    return head_end + clen + 1 - fuzz_sent;
}


static void
fuzz_sent_check(const u_char *p, size_t n)
{
    size_t  len;

    if (fuzz_sent_conn != ngx_fuzz_peer.connects) {
        fuzz_sent_len = 0;
        fuzz_sent_conn = ngx_fuzz_peer.connects;
    }

    while (n > 0) {
        len = ngx_min(n, FUZZ_SENT_MAX - fuzz_sent_len);
        ngx_memcpy(fuzz_sent + fuzz_sent_len, p, len);
        fuzz_sent_len += len;
        p += len;
        n -= len;

        for ( ;; ) {
            /* heart-beats between frames */
            while (fuzz_sent_len > 0 && fuzz_sent[0] == '\n') {
                ngx_memmove(fuzz_sent, fuzz_sent + 1, --fuzz_sent_len);
            }

            len = fuzz_frame();
            if (len == 0) {
                break;
            }

            ngx_memmove(fuzz_sent, fuzz_sent + len, fuzz_sent_len - len);
            fuzz_sent_len -= len;
        }

        if (fuzz_sent_len == FUZZ_SENT_MAX) {
            ngx_fuzz_fail("the gateway sent a frame larger than the test's "
                          "buffer");
        }
    }
}


static void
fuzz_publish(ngx_zmq_stomp_conn_t *conn, u_char flags, size_t len)
{
    time_t                retry_after;
    ngx_buf_t             b;
    ngx_int_t             rc;
    ngx_chain_t           cl;
    const char           *bad;
    fuzz_pub_t           *fp;
    ngx_keyval_t          hdrs[2];
    ngx_zmq_stomp_pub_t  *pub;
    ngx_zmq_stomp_msg_t   msg;

    if (fuzz_npubs == FUZZ_PUBS_MAX) {
        return;
    }

    fp = &fuzz_pubs[fuzz_npubs];
    ngx_memzero(fp, sizeof(fuzz_pub_t));

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.pos = fuzz_body;
    b.last = fuzz_body + len;
    b.start = b.pos;
    b.end = b.last;
    b.memory = 1;
    b.last_buf = 1;
    cl.buf = &b;
    cl.next = NULL;

    ngx_str_set(&hdrs[0].key, "persistent");
    ngx_str_set(&hdrs[0].value, "true");
    ngx_str_set(&hdrs[1].key, "x:y\\z");          /* escaped */
    ngx_str_set(&hdrs[1].value, "a:b\\c");

    ngx_memzero(&msg, sizeof(ngx_zmq_stomp_msg_t));

    if (flags & 0x20) {
        ngx_str_set(&msg.destination, "/queue/bad\nline");
    } else {
        ngx_str_set(&msg.destination, "/queue/a:b");
    }

    msg.headers = hdrs;
    msg.nheaders = (flags & 0x08) ? 2 : 1;
    msg.body = &cl;
    msg.body_len = len;
    msg.timeout = (flags & 0x04) ? 1000 : 0;
    msg.data = fp;
    msg.done = fuzz_done;

    pub = NULL;
    retry_after = 0;
    bad = NULL;

    rc = ngx_zmq_stomp_publish(conn, &msg, &pub, &retry_after, &bad,
                               ngx_fuzz_log);

    if (rc == NGX_OK) {
        if (pub == NULL) {
            ngx_fuzz_fail("publish() accepted without a pending message");
        }
        fp->pub = pub;
        fuzz_npubs++;
        return;
    }

    if (rc == NGX_DECLINED && bad == NULL) {
        ngx_fuzz_fail("publish() declined without saying why");
    }

    if ((rc == NGX_HTTP_ZMQ_UNAVAILABLE || rc == NGX_HTTP_ZMQ_OVERLOADED)
        && retry_after <= 0)
    {
        ngx_fuzz_fail("publish() refused (%d) without a Retry-After",
                      (int) rc);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                 n;
    u_char                 op, arg;
    ngx_uint_t             i;
    struct sockaddr_in     sin;
    ngx_addr_t             addr;
    ngx_zmq_stomp_conf_t   oc;
    ngx_zmq_stomp_conn_t  *conn;

    if (size < 3) {
        return 0;
    }

    ngx_fuzz_start_input();
    ngx_fuzz_check_quiet("before the input");
    ngx_fuzz_peer.sent = fuzz_sent_check;
    fuzz_sent_conn = 0;
    fuzz_sent_len = 0;
    fuzz_npubs = 0;

    ngx_memzero(&sin, sizeof(struct sockaddr_in));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(61613);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sockaddr = (struct sockaddr *) &sin;
    addr.socklen = sizeof(struct sockaddr_in);
    ngx_str_set(&addr.name, "127.0.0.1:61613");

    ngx_memzero(&oc, sizeof(ngx_zmq_stomp_conf_t));
    ngx_str_set(&oc.name, "fuzz");
    ngx_str_set(&oc.def_name, "fuzz");
    oc.active = 1;
    oc.addrs = &addr;
    oc.naddrs = 1;
    ngx_str_set(&oc.vhost, "/");
    ngx_str_set(&oc.login, "guest");
    ngx_str_set(&oc.passcode, "guest");
    oc.heartbeat = data[0] % 4;
    oc.max_inflight = 1 + data[1] % 9;
    oc.persistent = 1;
    oc.priority = -1;
    oc.expires = -1;

    ngx_fuzz_peer.connect_rc = (data[2] & 1) ? NGX_OK : NGX_AGAIN;
    ngx_zmq_stomp_configure(&fuzz_worker, 5000, 64 * 1024);

    data += 3;
    size -= 3;

    conn = ngx_zmq_stomp_open(&fuzz_worker, &oc, NULL, ngx_fuzz_log);
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
            ngx_fuzz_writable((size_t) arg * 64, op & 0x80);
            break;

        case 6:
            fuzz_publish(conn, arg, (size_t) ((op >> 4) & 7) * 1000 + arg);
            break;

        case 7:
            ngx_fuzz_advance((ngx_msec_t) arg * 100);
            break;

        case 8:
            if (fuzz_npubs > 0) {
                i = arg % fuzz_npubs;
                if (!fuzz_pubs[i].answers && !fuzz_pubs[i].detached) {
                    fuzz_pubs[i].detached = 1;
                    ngx_zmq_stomp_detach(fuzz_pubs[i].pub);
                }
            }
            break;

        case 9:
            if (op & 0x80) {
                ngx_fuzz_peer.connect_rc = NGX_ERROR;
            } else if (op & 0x40) {
                ngx_fuzz_peer.connect_rc = (arg & 1) ? NGX_OK : NGX_AGAIN;
            } else {
                ngx_fuzz_hangup(arg & 1);
            }
            break;

        default:
            n = (op & 0x80) ? (size_t) arg * 16 + 1 : (size_t) arg + 1;
            n = ngx_min(n, size);
            ngx_fuzz_feed(data, n);
            data += n;
            size -= n;
            break;
        }

        ngx_fuzz_run_posted();
    }

    ngx_zmq_stomp_retire(conn);
    ngx_fuzz_run_posted();
    ngx_fuzz_hangup(0);
    ngx_fuzz_run_posted();

    for (i = 0; i < fuzz_npubs; i++) {
        if (!fuzz_pubs[i].detached && fuzz_pubs[i].answers != 1) {
            ngx_fuzz_fail("publish %ui was never answered", i);
        }
    }

    ngx_fuzz_check_quiet("after the connection was retired");

    return 0;
}
