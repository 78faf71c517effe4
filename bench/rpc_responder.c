/*
 * bench/rpc_responder: the responder for bench/rpc. A plain rabbitmq-c
 * consumer (blocking API; a benchmark tool, not the gateway) that answers
 * every request at once: for each message on QUEUE it publishes, to
 * exchange "" with routing key = the request's reply_to, a reply with the
 * request's correlation_id, content_type and body (no x-zmq-status header:
 * status 200).
 *
 *     rpc_responder HOST PORT QUEUE [PREFETCH]
 *
 * It declares QUEUE (not durable: requests wait for an answer, nobody
 * wants them after a broker restart), consumes it with basic.qos PREFETCH
 * (default 500) and acks in batches: with multiple=1, whenever it has read
 * everything the broker sent so far, or PREFETCH / 2 messages since the
 * last ack. A request without reply_to is acked and not answered.
 *
 * Prints "ready" once it consumes, and at SIGTERM or SIGINT
 * "answered=<n> unanswerable=<n>" and exits 0.
 */

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>


static volatile sig_atomic_t  rpc_responder_stop;


static void
rpc_responder_signal(int signo)
{
    (void) signo;
    rpc_responder_stop = 1;
}


static void
rpc_responder_ack(amqp_connection_state_t conn, uint64_t *last,
    uint64_t *unacked)
{
    if (*unacked == 0) {
        return;
    }

    if (amqp_basic_ack(conn, 1, *last, 1) != AMQP_STATUS_OK) {
        fprintf(stderr, "rpc_responder: ack failed\n");
        exit(1);
    }

    *unacked = 0;
}


int
main(int argc, char **argv)
{
    int                       status;
    uint16_t                  prefetch;
    uint64_t                  answered, unanswerable, last, unacked;
    amqp_frame_t              frame;
    amqp_socket_t            *sock;
    amqp_envelope_t           env;
    amqp_rpc_reply_t          r;
    struct sigaction          sa;
    struct timeval            tv = { 0, 200000 };
    amqp_basic_properties_t  *req, props;
    amqp_connection_state_t   conn;

    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: rpc_responder HOST PORT QUEUE [PREFETCH]\n");
        return 2;
    }

    prefetch = (uint16_t) (argc == 5 ? atoi(argv[4]) : 500);
    if (prefetch == 0) {
        prefetch = 500;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = rpc_responder_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    conn = amqp_new_connection();
    sock = amqp_tcp_socket_new(conn);
    if (sock == NULL || amqp_socket_open(sock, argv[1], atoi(argv[2])) != 0)
    {
        fprintf(stderr, "rpc_responder: cannot connect\n");
        return 1;
    }

    r = amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
                   "guest");
    if (r.reply_type != AMQP_RESPONSE_NORMAL
        || amqp_channel_open(conn, 1) == NULL
        || amqp_queue_declare(conn, 1, amqp_cstring_bytes(argv[3]), 0, 0, 0,
                              0, amqp_empty_table) == NULL
        || amqp_basic_qos(conn, 1, 0, prefetch, 0) == NULL
        || amqp_basic_consume(conn, 1, amqp_cstring_bytes(argv[3]),
                              amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
           == NULL)
    {
        fprintf(stderr, "rpc_responder: setup failed\n");
        return 1;
    }

    printf("ready\n");
    fflush(stdout);

    answered = 0;
    unanswerable = 0;
    last = 0;
    unacked = 0;

    while (!rpc_responder_stop) {

        /* nothing more read yet: ack what was answered before waiting */
        if (!amqp_data_in_buffer(conn) && !amqp_frames_enqueued(conn)) {
            rpc_responder_ack(conn, &last, &unacked);
        }

        amqp_maybe_release_buffers(conn);
        r = amqp_consume_message(conn, &env, &tv, 0);

        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
            && r.library_error == AMQP_STATUS_TIMEOUT)
        {
            continue;
        }

        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
            && r.library_error == AMQP_STATUS_UNEXPECTED_STATE)
        {
            /* not a delivery: a channel or connection close ends us */
            if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK
                || (frame.frame_type == AMQP_FRAME_METHOD
                    && (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD
                        || frame.payload.method.id
                           == AMQP_CONNECTION_CLOSE_METHOD)))
            {
                fprintf(stderr, "rpc_responder: closed by the broker\n");
                return 1;
            }
            continue;
        }

        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            if (rpc_responder_stop) {
                break;
            }
            fprintf(stderr, "rpc_responder: read failed (%d, %s)\n",
                    r.reply_type, amqp_error_string2(r.library_error));
            return 1;
        }

        req = &env.message.properties;

        if ((req->_flags & AMQP_BASIC_REPLY_TO_FLAG) && req->reply_to.len) {
            memset(&props, 0, sizeof(props));
            props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
            props.delivery_mode = 1;

            if (req->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
                props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
                props.correlation_id = req->correlation_id;
            }

            if (req->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
                props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
                props.content_type = req->content_type;
            }

            status = amqp_basic_publish(conn, 1, amqp_empty_bytes,
                                        req->reply_to, 0, 0, &props,
                                        env.message.body);
            if (status != AMQP_STATUS_OK) {
                fprintf(stderr, "rpc_responder: publish: %s\n",
                        amqp_error_string2(status));
                return 1;
            }
            answered++;

        } else {
            unanswerable++;
        }

        last = env.delivery_tag;
        unacked++;
        amqp_destroy_envelope(&env);

        if (unacked >= (uint64_t) prefetch / 2) {
            rpc_responder_ack(conn, &last, &unacked);
        }
    }

    rpc_responder_ack(conn, &last, &unacked);

    printf("answered=%llu unanswerable=%llu\n", (unsigned long long) answered,
           (unsigned long long) unanswerable);
    fflush(stdout);

    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return 0;
}
