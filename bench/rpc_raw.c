/*
 * bench/rpc_raw: the baseline for bench/rpc. A plain rabbitmq-c requester
 * (blocking API, one connection, one channel) using RabbitMQ's direct
 * reply-to, as /work/PROTO14.md describes it: basic.consume of
 * amq.rabbitmq.reply-to with no_ack on its channel, then requests published
 * with reply_to = amq.rabbitmq.reply-to and a correlation id, keeping up to
 * OUTSTANDING requests without their reply, for SECONDS (or COUNT requests).
 *
 *     rpc_raw HOST PORT QUEUE SECONDS SIZE OUTSTANDING [COUNT]
 *
 * Requests are the messages the gateway publishes for an rpc service:
 * exchange "", routing key QUEUE, mandatory, publisher confirms,
 * delivery_mode 1, content_type, timestamp, app_id, a 36-character
 * message_id = correlation_id unique per request; SIZE-byte bodies whose
 * first 16 bytes are the request's number in hex.
 *
 * A reply counts when its correlation id names a request still waiting and
 * its body is that request's body byte for byte; anything else is "bad".
 * After SECONDS it sends nothing more and waits up to 10 s for the replies
 * still due. Prints
 *
 *   rate=<replies/s> p50_ms=<x> p99_ms=<y> sent=<n> replied=<n> lost=<n>
 *   bad=<n> returned=<n>
 *
 * (one line) where rate counts the replies received within SECONDS (as wrk
 * counts answers within its duration), the latencies are from
 * basic.publish to the reply, and lost = requests sent that never got
 * their reply.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>


#define RPC_RAW_GRACE_MS  10000.0
#define RPC_RAW_REPLY_TO  "amq.rabbitmq.reply-to"


typedef struct {
    double    *sent_at;     /* by request number; 0: answered */
    double    *lat;
    uint64_t   cap;
    uint64_t   nlat;
} rpc_raw_book_t;


static double
rpc_raw_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


static int
rpc_raw_cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


static void
rpc_raw_grow(rpc_raw_book_t *b, uint64_t n)
{
    uint64_t  cap;

    if (n < b->cap) {
        return;
    }

    cap = b->cap ? b->cap * 2 : 1 << 16;
    while (cap <= n) {
        cap *= 2;
    }

    b->sent_at = realloc(b->sent_at, cap * sizeof(double));
    b->lat = realloc(b->lat, cap * sizeof(double));
    if (b->sent_at == NULL || b->lat == NULL) {
        fprintf(stderr, "rpc_raw: out of memory\n");
        exit(1);
    }

    memset(b->sent_at + b->cap, 0, (cap - b->cap) * sizeof(double));
    b->cap = cap;
}


static void
rpc_raw_body(char *body, size_t size, uint64_t n)
{
    char  head[17];

    snprintf(head, sizeof(head), "%016llx", (unsigned long long) n);
    memcpy(body, head, size < 16 ? size : 16);
}


/* the request number in a correlation id "00000000-0000-4000-8000-<12 hex>" */
static uint64_t
rpc_raw_cid_number(amqp_bytes_t cid)
{
    size_t          i;
    uint64_t        n;
    unsigned char  *p, c;

    if (cid.len != 36) {
        return 0;
    }

    p = cid.bytes;
    n = 0;

    for (i = 24; i < 36; i++) {
        c = p[i];
        if (c >= '0' && c <= '9') {
            n = n * 16 + (c - '0');
        } else if (c >= 'a' && c <= 'f') {
            n = n * 16 + (c - 'a' + 10);
        } else {
            return 0;
        }
    }

    return n;
}


int
main(int argc, char **argv)
{
    int                       port, status;
    char                     *body, *expect, cid[37];
    double                    start, deadline, t, t_end;
    size_t                    size, window;
    uint64_t                  next, limit, n, outstanding, replied, bad,
                              returned, in_time;
    amqp_frame_t              frame;
    amqp_socket_t            *sock;
    amqp_message_t            msg;
    amqp_envelope_t           env;
    rpc_raw_book_t            book;
    amqp_rpc_reply_t          r;
    struct timeval            zero = { 0, 0 }, wait = { 0, 100000 };
    amqp_bytes_t              payload;
    amqp_basic_properties_t   props;
    amqp_connection_state_t   conn;

    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: rpc_raw HOST PORT QUEUE SECONDS SIZE "
                "OUTSTANDING [COUNT]\n");
        return 2;
    }

    port = atoi(argv[2]);
    size = (size_t) atol(argv[5]);
    window = (size_t) atol(argv[6]);
    limit = argc == 8 ? (uint64_t) atoll(argv[7]) : UINT64_MAX;

    if (size < 16 || window == 0) {
        fprintf(stderr, "rpc_raw: SIZE must be at least 16, OUTSTANDING at "
                "least 1\n");
        return 2;
    }

    conn = amqp_new_connection();
    sock = amqp_tcp_socket_new(conn);
    if (sock == NULL || amqp_socket_open(sock, argv[1], port) != 0) {
        fprintf(stderr, "rpc_raw: cannot connect\n");
        return 1;
    }

    /* the reply-to consumer first, on the channel that publishes */
    r = amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
                   "guest");
    if (r.reply_type != AMQP_RESPONSE_NORMAL
        || amqp_channel_open(conn, 1) == NULL
        || amqp_basic_consume(conn, 1, amqp_cstring_bytes(RPC_RAW_REPLY_TO),
                              amqp_empty_bytes, 0, 1, 0, amqp_empty_table)
           == NULL
        || amqp_confirm_select(conn, 1) == NULL)
    {
        fprintf(stderr, "rpc_raw: setup failed\n");
        return 1;
    }

    body = malloc(size);
    expect = malloc(size);
    if (body == NULL || expect == NULL) {
        fprintf(stderr, "rpc_raw: out of memory\n");
        return 1;
    }
    memset(body, 'x', size);
    memset(expect, 'x', size);
    payload.bytes = body;
    payload.len = size;

    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG
                   | AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG
                   | AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG
                   | AMQP_BASIC_REPLY_TO_FLAG;
    props.delivery_mode = 1;
    props.content_type = amqp_cstring_bytes("text/plain");
    props.app_id = amqp_cstring_bytes("ngx_zmq");
    props.reply_to = amqp_cstring_bytes(RPC_RAW_REPLY_TO);
    props.message_id.bytes = cid;
    props.message_id.len = 36;
    props.correlation_id = props.message_id;

    memset(&book, 0, sizeof(book));
    next = 1;
    outstanding = 0;
    replied = 0;
    in_time = 0;
    bad = 0;
    returned = 0;

    start = rpc_raw_now_ms();
    deadline = start + atof(argv[4]) * 1000.0;
    t_end = deadline + RPC_RAW_GRACE_MS;

    for ( ;; ) {
        t = rpc_raw_now_ms();

        while (t < deadline && outstanding < window && next <= limit) {
            rpc_raw_grow(&book, next);
            snprintf(cid, sizeof(cid), "00000000-0000-4000-8000-%012llx",
                     (unsigned long long) next);
            rpc_raw_body(body, size, next);
            props.timestamp = (uint64_t) time(NULL);
            book.sent_at[next] = rpc_raw_now_ms();

            status = amqp_basic_publish(conn, 1, amqp_empty_bytes,
                                        amqp_cstring_bytes(argv[3]), 1, 0,
                                        &props, payload);
            if (status != AMQP_STATUS_OK) {
                fprintf(stderr, "rpc_raw: publish: %s\n",
                        amqp_error_string2(status));
                return 1;
            }

            next++;
            outstanding++;
        }

        if (outstanding == 0 && (t >= deadline || next > limit)) {
            break;
        }

        if (t >= t_end) {
            break;
        }

        amqp_maybe_release_buffers(conn);

        /* block (briefly) only when nothing more may be sent */
        r = amqp_consume_message(conn, &env,
                                 (outstanding >= window || t >= deadline
                                  || next > limit) ? &wait : &zero, 0);

        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            n = 0;
            if (env.message.properties._flags
                & AMQP_BASIC_CORRELATION_ID_FLAG)
            {
                n = rpc_raw_cid_number(env.message.properties.correlation_id);
            }

            if (n == 0 || n >= next || book.sent_at[n] == 0) {
                bad++;

            } else {
                rpc_raw_body(expect, size, n);

                if (env.message.body.len != size
                    || memcmp(env.message.body.bytes, expect, size) != 0)
                {
                    bad++;

                } else {
                    t = rpc_raw_now_ms();
                    book.lat[book.nlat++] = t - book.sent_at[n];
                    book.sent_at[n] = 0;
                    outstanding--;
                    replied++;
                    if (t <= deadline) {
                        in_time++;
                    }
                }
            }

            amqp_destroy_envelope(&env);
            continue;
        }

        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
            && r.library_error == AMQP_STATUS_TIMEOUT)
        {
            continue;
        }

        if (r.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION
            || r.library_error != AMQP_STATUS_UNEXPECTED_STATE)
        {
            fprintf(stderr, "rpc_raw: read failed (%d, %s)\n", r.reply_type,
                    amqp_error_string2(r.library_error));
            return 1;
        }

        /* not a delivery: confirms, returns, or the end */
        if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) {
            fprintf(stderr, "rpc_raw: read failed\n");
            return 1;
        }

        if (frame.frame_type != AMQP_FRAME_METHOD) {
            continue;
        }

        switch (frame.payload.method.id) {

        case AMQP_BASIC_ACK_METHOD:
            break;

        case AMQP_BASIC_RETURN_METHOD:
            /* unroutable: no queue QUEUE (the responder is not running) */
            if (amqp_read_message(conn, frame.channel, &msg, 0).reply_type
                != AMQP_RESPONSE_NORMAL)
            {
                fprintf(stderr, "rpc_raw: read of a returned message "
                        "failed\n");
                return 1;
            }
            n = rpc_raw_cid_number(msg.properties.correlation_id);
            if (n != 0 && n < next && book.sent_at[n] != 0) {
                book.sent_at[n] = 0;
                outstanding--;
            }
            returned++;
            amqp_destroy_message(&msg);
            break;

        case AMQP_BASIC_NACK_METHOD:
            fprintf(stderr, "rpc_raw: the broker nacked a request\n");
            return 1;

        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            fprintf(stderr, "rpc_raw: closed by the broker\n");
            return 1;

        default:
            break;
        }
    }

    /* with COUNT, the requests may all be answered before SECONDS */
    if (t > deadline) {
        t = deadline;
    }

    qsort(book.lat, book.nlat, sizeof(double), rpc_raw_cmp_double);

    printf("rate=%.0f p50_ms=%.2f p99_ms=%.2f sent=%llu replied=%llu "
           "lost=%llu bad=%llu returned=%llu\n",
           in_time / ((t - start) / 1000.0),
           book.nlat ? book.lat[book.nlat / 2] : 0.0,
           book.nlat ? book.lat[(size_t) (book.nlat * 0.99)] : 0.0,
           (unsigned long long) (next - 1), (unsigned long long) replied,
           (unsigned long long) (next - 1 - replied),
           (unsigned long long) bad, (unsigned long long) returned);

    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    free(body);
    free(expect);
    free(book.sent_at);
    free(book.lat);
    return 0;
}
