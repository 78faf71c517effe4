/*
 * bench/consume_raw: the baseline for bench/consume. A plain rabbitmq-c
 * consumer that acks each message, draining COUNT messages.
 *
 *     consume_raw HOST PORT QUEUE COUNT PREFETCH
 *
 * Prints "rate=<msg/s> consumed=<n>".
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>


static double
now_s(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


int
main(int argc, char **argv)
{
    long                     count, n;
    double                   start;
    amqp_socket_t           *sock;
    amqp_envelope_t          env;
    amqp_rpc_reply_t         r;
    struct timeval           tv = { 10, 0 };
    amqp_connection_state_t  conn;

    if (argc != 6) {
        fprintf(stderr, "usage: consume_raw HOST PORT QUEUE COUNT "
                "PREFETCH\n");
        return 2;
    }

    count = atol(argv[4]);

    conn = amqp_new_connection();
    sock = amqp_tcp_socket_new(conn);
    if (sock == NULL || amqp_socket_open(sock, argv[1], atoi(argv[2])) != 0)
    {
        fprintf(stderr, "consume_raw: cannot connect\n");
        return 1;
    }

    r = amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
                   "guest");
    if (r.reply_type != AMQP_RESPONSE_NORMAL
        || amqp_channel_open(conn, 1) == NULL
        || amqp_basic_qos(conn, 1, 0, (uint16_t) atoi(argv[5]), 0) == NULL
        || amqp_basic_consume(conn, 1, amqp_cstring_bytes(argv[3]),
                              amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
           == NULL)
    {
        fprintf(stderr, "consume_raw: setup failed\n");
        return 1;
    }

    start = now_s();

    for (n = 0; n < count; n++) {
        amqp_maybe_release_buffers(conn);
        r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            break;
        }
        amqp_basic_ack(conn, env.channel, env.delivery_tag, 0);
        amqp_destroy_envelope(&env);
    }

    printf("rate=%.0f consumed=%ld\n", n / (now_s() - start), n);

    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return 0;
}
