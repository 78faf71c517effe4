/*
 * bench/publish_raw: the baseline for bench/publish. A plain rabbitmq-c
 * publisher (blocking API, as a batch tool may use it) with publisher
 * confirms and a window of up to WINDOW unconfirmed messages in flight.
 *
 *     publish_raw [--tls CA_FILE] [--chunk N] HOST PORT QUEUE SECONDS SIZE
 *                 WINDOW [COUNT]
 *
 * With --tls it connects with rabbitmq-c's SSL socket, verifying the
 * broker's certificate (chain and host name) against CA_FILE (bench/tls).
 * With COUNT it stops after COUNT messages (used to preload a queue).
 * With --chunk N it refills its window N messages at a time, as N-line
 * batches would (bench/batch: a batch is published once the window has
 * room for all of it); without, one message per confirm.
 *
 * Prints "rate=<msg/s> p50_ms=<x> p99_ms=<y> confirmed=<n> p50c_ms=<x>
 * p99c_ms=<y>" where the latencies are from basic.publish to its
 * basic.ack. p50c/p99c are the same latencies with wrk's correction for
 * coordinated omission applied (corrected(), exactly as wrk 4 corrects
 * every latency it reports, a window slot counting as a connection), so
 * that bench/latency compares like with like: wrk's figures for the
 * gateway are always corrected.
 *
 * It publishes the messages the gateway publishes for the benchmark's
 * requests: persistent, with content_type, a 36-character message_id
 * unique per message, timestamp and app_id (the broker's cost per message
 * grows with its properties, so the comparison is like for like).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>


/*
 * wrk 4's stats_correct() on the microsecond samples: with expected the
 * interval between two messages of one window slot (the run's length
 * divided by messages per slot), a sample of x >= 2 * expected adds the
 * samples x - expected, x - 2 * expected, ... down to expected (those a
 * client sending at a steady rate would have seen waiting behind it).
 * Returns the p-th percentile of the corrected samples in ms.
 */

static double
corrected(const double *lat, size_t n, double run_ms, size_t window,
    double p)
{
    size_t     i, max;
    int64_t    expected, x, m;
    uint64_t  *hist, total, count, rank;

    if (n == 0 || n / window == 0) {
        return 0.0;
    }

    expected = (int64_t) (run_ms * 1000.0 / (double) (n / window));
    max = (size_t) (lat[n - 1] * 1000.0) + 1;

    hist = calloc(max + 1, sizeof(uint64_t));
    if (hist == NULL) {
        return 0.0;
    }

    total = 0;
    for (i = 0; i < n; i++) {
        hist[(size_t) (lat[i] * 1000.0)]++;
        total++;
    }

    for (x = 2 * expected; expected > 0 && x <= (int64_t) max; x++) {
        count = hist[x];
        for (m = x - expected; count && m > expected; m -= expected) {
            hist[m] += count;
            total += count;
        }
    }

    rank = (uint64_t) (p * (double) total);
    count = 0;
    for (i = 0; i <= max; i++) {
        count += hist[i];
        if (count > rank) {
            break;
        }
    }

    free(hist);
    return i / 1000.0;
}


static double
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


static void
die(const char *what, amqp_rpc_reply_t r)
{
    fprintf(stderr, "publish_raw: %s failed (%d)\n", what, r.reply_type);
    exit(1);
}


int
main(int argc, char **argv)
{
    int                      port, status;
    char                    *body, message_id[37];
    double                  *sent_at, *lat, start, deadline, t;
    size_t                   size, window, nlat, cap, chunk;
    int                      room;
    uint64_t                 next, acked_upto, tag, i, limit;
    amqp_frame_t             frame;
    amqp_socket_t           *sock;
    amqp_bytes_t             payload;
    struct timeval           zero = { 0, 0 };
    amqp_basic_ack_t        *ack;
    amqp_rpc_reply_t         r;
    amqp_connection_state_t  conn;
    amqp_basic_properties_t  props;
    const char              *ca;

    ca = NULL;
    chunk = 1;

    while (argc > 2 && strncmp(argv[1], "--", 2) == 0) {
        if (strcmp(argv[1], "--tls") == 0) {
            ca = argv[2];

        } else if (strcmp(argv[1], "--chunk") == 0) {
            chunk = (size_t) atol(argv[2]);
            if (chunk == 0) {
                chunk = 1;
            }

        } else {
            break;
        }

        argv += 2;
        argc -= 2;
    }

    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: publish_raw [--tls CA_FILE] [--chunk N] "
                "HOST PORT QUEUE SECONDS SIZE WINDOW [COUNT]\n");
        return 2;
    }

    limit = argc == 8 ? (uint64_t) atoll(argv[7]) : UINT64_MAX;

    port = atoi(argv[2]);
    size = (size_t) atol(argv[5]);
    window = (size_t) atol(argv[6]);

    conn = amqp_new_connection();

    if (ca != NULL) {
        sock = amqp_ssl_socket_new(conn);
        if (sock == NULL || amqp_ssl_socket_set_cacert(sock, ca) != 0) {
            fprintf(stderr, "publish_raw: cannot set up TLS with %s\n", ca);
            return 1;
        }
        amqp_ssl_socket_set_verify_peer(sock, 1);
        amqp_ssl_socket_set_verify_hostname(sock, 1);

    } else {
        sock = amqp_tcp_socket_new(conn);
    }

    if (sock == NULL || amqp_socket_open(sock, argv[1], port) != 0) {
        fprintf(stderr, "publish_raw: cannot connect\n");
        return 1;
    }

    r = amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
                   "guest");
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        die("login", r);
    }

    amqp_channel_open(conn, 1);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        die("channel.open", r);
    }

    amqp_confirm_select(conn, 1);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        die("confirm.select", r);
    }

    body = malloc(size);
    memset(body, 'x', size);
    payload.bytes = body;
    payload.len = size;

    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG
                   | AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG
                   | AMQP_BASIC_APP_ID_FLAG;
    props.delivery_mode = 2;
    props.content_type = amqp_cstring_bytes("text/plain");
    props.app_id = amqp_cstring_bytes("ngx_zmq");
    props.message_id.bytes = message_id;
    props.message_id.len = 36;

    cap = 1 << 24;
    sent_at = calloc(cap, sizeof(double));
    lat = calloc(cap, sizeof(double));
    nlat = 0;
    next = 1;
    acked_upto = 0;

    start = now_ms();
    deadline = start + atof(argv[4]) * 1000.0;

    for ( ;; ) {
        t = now_ms();

        /* in the middle of a chunk, or room for a whole one */
        room = (next - 1) % chunk != 0
               || next - 1 - acked_upto + chunk <= window;

        if (t < deadline && room && next < cap && next <= limit) {
            sent_at[next] = t;
            snprintf(message_id, sizeof(message_id),
                     "00000000-0000-4000-8000-%012llx",
                     (unsigned long long) next);
            props.timestamp = (uint64_t) time(NULL);
            status = amqp_basic_publish(conn, 1, amqp_empty_bytes,
                                        amqp_cstring_bytes(argv[3]), 0, 0,
                                        &props, payload);
            if (status != AMQP_STATUS_OK) {
                fprintf(stderr, "publish_raw: publish: %s\n",
                        amqp_error_string2(status));
                return 1;
            }
            next++;
        }

        if (acked_upto == next - 1 && (t >= deadline || next > limit)) {
            break;
        }

        /* read confirms: block only when the window is full or at the end */
        status = amqp_simple_wait_frame_noblock(
            conn, &frame,
            (!room || t >= deadline || next > limit) ? NULL : &zero);
        if (status == AMQP_STATUS_TIMEOUT) {
            continue;
        }

        if (status != AMQP_STATUS_OK) {
            fprintf(stderr, "publish_raw: read: %s\n",
                    amqp_error_string2(status));
            return 1;
        }

        if (frame.frame_type != AMQP_FRAME_METHOD
            || frame.payload.method.id != AMQP_BASIC_ACK_METHOD)
        {
            continue;
        }

        ack = frame.payload.method.decoded;
        tag = ack->delivery_tag;
        t = now_ms();

        for (i = ack->multiple ? acked_upto + 1 : tag; i <= tag; i++) {
            lat[nlat++] = t - sent_at[i];
        }

        if (ack->multiple || tag == acked_upto + 1) {
            acked_upto = tag;
        }
    }

    t = (now_ms() - start) / 1000.0;
    qsort(lat, nlat, sizeof(double), cmp_double);

    printf("rate=%.0f p50_ms=%.2f p99_ms=%.2f confirmed=%zu "
           "p50c_ms=%.2f p99c_ms=%.2f\n",
           nlat / t, nlat ? lat[nlat / 2] : 0.0,
           nlat ? lat[(size_t) (nlat * 0.99)] : 0.0, nlat,
           corrected(lat, nlat, t * 1000.0, window, 0.50),
           corrected(lat, nlat, t * 1000.0, window, 0.99));

    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    free(body);
    free(sent_at);
    free(lat);
    return 0;
}
