
/*
 * libFuzzer target: the module's Redis client (ngx_zmq_redis.c) as
 * Redis, or anything answering on its port, would drive it: replies in any
 * split, pushes on a subscriber connection, replies nobody asked for, a
 * socket that stalls, hangs up or fails, and timers, while the follower
 * sends commands.
 *
 * What must hold: no crash and no [alert]; every command with a handler is
 * answered exactly once (with a reply, or NULL when the connection is
 * lost); replies are well-formed trees; once the client is destroyed
 * nothing is left (timers, events, sockets, memory).
 *
 * The settings' high bits lower the bounds (zgw_resp_limit.h) so that the
 * fuzzer reaches them: the reply buffer (32 B to 4 KiB) and array slots,
 * and the bytes read per event (the 1 MiB of a worker: 8 B to 1 KiB, in
 * reads of a quarter of that, or of all of it), after which the read handler parses, posts itself to the next turn of
 * the event loop and returns NGX_AGAIN. There, also: the reader never
 * holds more than its bound once an event is handled, no reply has more
 * slots than the bound, and a connection that stays up reads everything
 * it was sent (a read cut short comes back in the next turn).
 */


#include "ngx_fuzz.h"

#define ngx_event_connect_peer  ngx_fuzz_connect_peer
#define ngx_close_connection    ngx_fuzz_close_connection

#include "ngx_zmq_socket.c"          /* opens and closes the socket */


/* the bytes read per event: the worker's 1 MiB, or what the input says;
   and (then) what one recv() hands out at most */
static size_t  fuzz_read_max;
static size_t  fuzz_recv_max;

#define ngx_zmq_socket_read(s, buf, size, max, input, data)                   \
    ngx_zmq_socket_read(s, buf, size, fuzz_read_max ? fuzz_read_max : (max),  \
                        input, data)

#include "ngx_zmq_redis.c"


#define FUZZ_CMDS_MAX  256


typedef struct {
    ngx_uint_t   answers;
} fuzz_cmd_t;


static fuzz_cmd_t   fuzz_cmds[FUZZ_CMDS_MAX];
static ngx_uint_t   fuzz_ncmds;
static ngx_uint_t   fuzz_connected;
static ngx_uint_t   fuzz_destroying;
static size_t       fuzz_max_slots;


static size_t  fuzz_slots;


static void
fuzz_walk(redisReply *r, ngx_uint_t depth)
{
    size_t  i;

    if (depth > 10000) {
        ngx_fuzz_fail("a reply nested deeper than 10000");
    }

    switch (r->type) {

    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        if (r->str == NULL || r->str[r->len] != '\0') {
            ngx_fuzz_fail("a string reply without its terminating NUL");
        }
        break;

    case REDIS_REPLY_ARRAY:
        fuzz_slots += r->elements;

        for (i = 0; i < r->elements; i++) {
            if (r->element[i] == NULL) {
                ngx_fuzz_fail("an array reply with a NULL element");
            }
            fuzz_walk(r->element[i], depth + 1);
        }
        break;

    case REDIS_REPLY_INTEGER:
    case REDIS_REPLY_NIL:
        break;

    default:
        ngx_fuzz_fail("a reply of unknown type %d", r->type);
    }
}


static void
fuzz_check_reply(redisReply *r)
{
    fuzz_slots = 0;
    fuzz_walk(r, 0);

    if (fuzz_max_slots && fuzz_slots > fuzz_max_slots) {
        ngx_fuzz_fail("a reply of %uz slots, over the bound of %uz",
                      fuzz_slots, fuzz_max_slots);
    }
}


static ngx_recv_pt  fuzz_recv_orig;


static ssize_t
fuzz_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    return fuzz_recv_orig(c, buf, ngx_min(size, fuzz_recv_max));
}


/*
 * Bytes from Redis, as the event loop hands them: a read handler that
 * stopped early (NGX_AGAIN, its event posted to the next turn) runs again
 * in the next turn, on what is left
 */
static void
fuzz_feed(ngx_zmq_redis_t *rd, const u_char *p, size_t n)
{
    size_t             held;
    ngx_uint_t         turns;
    ngx_connection_t  *c;

    c = ngx_fuzz_peer.c;
    if (c == NULL) {
        return;
    }

    ngx_fuzz_peer.in = p;
    ngx_fuzz_peer.in_len = n;

    /* reads smaller than the cap, so that a read is cut short by it */
    if (fuzz_read_max && c->recv != fuzz_recv) {
        fuzz_recv_orig = c->recv;
        c->recv = fuzz_recv;
    }

    c->read->ready = 1;
    c->read->handler(c->read);
    ngx_fuzz_run_posted();

    for (turns = 0; !ngx_queue_empty(&ngx_posted_next_events); turns++) {
        if (turns > n + 1) {
            ngx_fuzz_fail("a read that posts itself forever");
        }

        ngx_event_move_posted_next((ngx_cycle_t *) ngx_cycle);
        ngx_fuzz_run_posted();
    }

    if (ngx_fuzz_peer.c == c && ngx_fuzz_peer.in_len > 0) {
        ngx_fuzz_fail("%uz bytes sent are never read", ngx_fuzz_peer.in_len);
    }

    /* what the handler did not read is lost with the connection */
    ngx_fuzz_peer.in_len = 0;

    if (rd->reader != NULL) {
        held = rd->reader->len - rd->reader->pos;

        if (held > rd->budget.max_buffer) {
            ngx_fuzz_fail("the reader holds %uz bytes unparsed, over the "
                          "bound of %uz", held, rd->budget.max_buffer);
        }
    }
}


static void
fuzz_reply(ngx_zmq_redis_t *rd, redisReply *reply, void *data)
{
    fuzz_cmd_t  *cmd = data;

    if (cmd->answers++) {
        ngx_fuzz_fail("a command answered twice");
    }

    if (reply != NULL) {
        fuzz_check_reply(reply);
    }
}


static void
fuzz_push(ngx_zmq_redis_t *rd, redisReply *reply, void *data)
{
    if (reply == NULL) {
        ngx_fuzz_fail("a push without a reply");
    }

    fuzz_check_reply(reply);
}


static void
fuzz_up(ngx_zmq_redis_t *rd, void *data)
{
    fuzz_connected++;
}


static void
fuzz_down(ngx_zmq_redis_t *rd, void *data)
{
    if (fuzz_destroying) {
        ngx_fuzz_fail("disconnected() called while being destroyed");
    }
}


static void
fuzz_command(ngx_zmq_redis_t *rd, u_char arg)
{
    size_t       len[3];
    ngx_int_t    rc;
    fuzz_cmd_t  *cmd;
    const char  *argv[3];

    static const char  *names[] = { "GET", "EVALSHA", "SUBSCRIBE", "PING" };

    argv[0] = names[arg % 4];
    len[0] = ngx_strlen(argv[0]);
    argv[1] = "zmq:version";
    len[1] = 11;
    argv[2] = "zmq:events";
    len[2] = 10;

    if (arg & 0x80 || fuzz_ncmds == FUZZ_CMDS_MAX) {
        /* no handler: the reply is dropped */
        (void) ngx_zmq_redis_command(rd, 2 + (arg & 1), argv, len,
                                     NULL, NULL);
        return;
    }

    cmd = &fuzz_cmds[fuzz_ncmds];
    cmd->answers = 0;

    rc = ngx_zmq_redis_command(rd, 2 + (arg & 1), argv, len,
                               fuzz_reply, cmd);
    if (rc == NGX_OK) {
        fuzz_ncmds++;
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                      n, max_buffer;
    u_char                      op, arg;
    ngx_uint_t                  i;
    struct sockaddr_in          sin;
    ngx_addr_t                  addr;
    ngx_zmq_redis_t            *rd;
    ngx_zmq_redis_conf_t        conf;

    if (size < 2) {
        return 0;
    }

    ngx_fuzz_start_input();
    ngx_fuzz_check_quiet("before the input");
    fuzz_ncmds = 0;
    fuzz_connected = 0;
    fuzz_destroying = 0;

    ngx_memzero(&sin, sizeof(struct sockaddr_in));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(6379);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sockaddr = (struct sockaddr *) &sin;
    addr.socklen = sizeof(struct sockaddr_in);
    ngx_str_set(&addr.name, "127.0.0.1:6379");

    ngx_memzero(&conf, sizeof(ngx_zmq_redis_conf_t));
    conf.addr = &addr;
    if (data[0] & 1) {
        ngx_str_set(&conf.password, "secret");
    }
    conf.db = (data[0] >> 1) & 3;
    conf.timeout = 1000;
    conf.subscriber = (data[0] & 8) ? 1 : 0;
    conf.connected = fuzz_up;
    conf.disconnected = fuzz_down;
    conf.push = fuzz_push;
    conf.log = ngx_fuzz_log;

    ngx_fuzz_peer.connect_rc = (data[1] & 1) ? NGX_OK : NGX_AGAIN;

    /* the bounds lowered, so that the fuzzer reaches them */
    fuzz_read_max = (data[0] & 0xf0) ? (size_t) 8 << (data[0] >> 4 & 7) : 0;
    fuzz_recv_max = (data[0] & 0x80) ? fuzz_read_max : fuzz_read_max / 4;
    fuzz_max_slots = (data[1] & 2) ? (size_t) 1 << (data[1] >> 5) : 0;
    max_buffer = (data[1] & 2) ? (size_t) 32 << (data[1] >> 2 & 7) : 0;

    data += 2;
    size -= 2;

    rd = ngx_zmq_redis_create(&conf);
    if (rd == NULL) {
        ngx_fuzz_fail("create() failed");
    }

    /* zgw_resp_limit() keeps what is set (each connection's reader) */
    if (max_buffer) {
        rd->budget.max_buffer = max_buffer;
        rd->budget.max = fuzz_max_slots;
    }

    ngx_zmq_redis_start(rd);
    ngx_fuzz_run_posted();

    while (size > 0) {
        op = data[0];
        arg = size > 1 ? data[1] : 0;
        data += size > 1 ? 2 : 1;
        size -= size > 1 ? 2 : 1;

        switch (op & 0x0f) {

        case 5:
            ngx_fuzz_writable((size_t) arg * 8, op & 0x80);
            break;

        case 6:
            fuzz_command(rd, arg);
            break;

        case 7:
            ngx_fuzz_advance((ngx_msec_t) arg * 50);
            break;

        case 8:
            if (op & 0x80) {
                ngx_fuzz_peer.connect_rc = NGX_ERROR;
            } else if (op & 0x40) {
                ngx_fuzz_peer.connect_rc = (arg & 1) ? NGX_OK : NGX_AGAIN;
            } else {
                ngx_fuzz_hangup(arg & 1);
            }
            break;

        default:
            /* bytes from Redis: arg + 1, or arg x 64 + 1 */
            n = (op & 0x80) ? (size_t) arg * 64 + 1 : (size_t) arg + 1;
            n = ngx_min(n, size);
            fuzz_feed(rd, data, n);
            data += n;
            size -= n;
            break;
        }

        ngx_fuzz_run_posted();
    }

    fuzz_destroying = 1;
    ngx_zmq_redis_destroy(rd);
    ngx_fuzz_run_posted();

    for (i = 0; i < fuzz_ncmds; i++) {
        if (fuzz_cmds[i].answers != 1) {
            ngx_fuzz_fail("command %ui answered %ui times", i,
                          fuzz_cmds[i].answers);
        }
    }

    ngx_fuzz_check_quiet("after the client was destroyed");

    if (!ngx_queue_empty(&ngx_posted_next_events)) {
        ngx_fuzz_fail("after the client was destroyed: an event is posted "
                      "to the next turn");
    }

    return 0;
}
