/*
 * zmqd: blocking rabbitmq-c connections, every call with a timeout.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp_tcp_socket.h>

#include "zmqd.h"


const char *
zmqd_amqp_reply_error(amqp_rpc_reply_t r, char *buf, size_t len)
{
    amqp_connection_close_t  *cc;
    amqp_channel_close_t     *ch;

    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(buf, len, "ok");
        break;
    case AMQP_RESPONSE_NONE:
        snprintf(buf, len, "no reply");
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(buf, len, "%s", amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            cc = r.reply.decoded;
            snprintf(buf, len, "connection closed by the broker: %d %.*s",
                     cc->reply_code, (int) cc->reply_text.len,
                     (char *) cc->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            ch = r.reply.decoded;
            snprintf(buf, len, "channel closed by the broker: %d %.*s",
                     ch->reply_code, (int) ch->reply_text.len,
                     (char *) ch->reply_text.bytes);
        } else {
            snprintf(buf, len, "broker error (method 0x%08x)", r.reply.id);
        }
        break;
    }

    return buf;
}


zmqd_amqp_t *
zmqd_amqp_open(const json_t *def, const zgw_key_t *key, int confirm,
    char *err, size_t errlen)
{
    int               status;
    char             *password, rbuf[256];
    zmqd_amqp_t      *a;
    zgw_errors_t      errs;
    amqp_socket_t    *sock;
    struct timeval    tv;
    amqp_rpc_reply_t  r;
    const char       *host;
    int               port;

    a = calloc(1, sizeof(zmqd_amqp_t));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    host = json_string_value(json_object_get(def, "host"));
    port = (int) json_integer_value(json_object_get(def, "port"));
    snprintf(a->peer, sizeof(a->peer), "%s:%d", host, port);

    zgw_errors_init(&errs);
    password = json_object_get(def, "password")
               ? zgw_object_secret(ZGW_KIND_AMQP_DEF, def, "password", key,
                                   &errs)
               : strdup("");
    if (password == NULL) {
        snprintf(err, errlen, "%s", zgw_errors_first(&errs));
        zgw_errors_free(&errs);
        free(a);
        return NULL;
    }

    a->conn = amqp_new_connection();
    sock = amqp_tcp_socket_new(a->conn);
    tv.tv_sec = ZMQD_TIMEOUT_MS / 1000;
    tv.tv_usec = 0;

    if (sock == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    (void) amqp_set_handshake_timeout(a->conn, &tv);
    (void) amqp_set_rpc_timeout(a->conn, &tv);

    status = amqp_socket_open_noblock(sock, host, port, &tv);
    if (status != AMQP_STATUS_OK) {
        snprintf(err, errlen, "cannot connect to %s: %s", a->peer,
                 amqp_error_string2(status));
        goto failed;
    }

    r = amqp_login(a->conn,
                   json_string_value(json_object_get(def, "vhost")), 0,
                   (int) json_integer_value(json_object_get(def,
                                                            "frame_max")),
                   (int) json_integer_value(json_object_get(def,
                                                            "heartbeat")),
                   AMQP_SASL_METHOD_PLAIN,
                   json_string_value(json_object_get(def, "username")),
                   password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        snprintf(err, errlen, "login to %s failed: %s", a->peer,
                 zmqd_amqp_reply_error(r, rbuf, sizeof(rbuf)));
        goto failed;
    }

    if (amqp_channel_open(a->conn, 1) == NULL) {
        snprintf(err, errlen, "channel.open on %s failed: %s", a->peer,
                 zmqd_amqp_reply_error(amqp_get_rpc_reply(a->conn), rbuf,
                                       sizeof(rbuf)));
        goto failed;
    }

    if (confirm) {
        if (amqp_confirm_select(a->conn, 1) == NULL) {
            snprintf(err, errlen, "confirm.select on %s failed", a->peer);
            goto failed;
        }
        a->confirm = 1;
        a->next_tag = 1;
    }

    memset(password, 0, strlen(password));
    free(password);
    return a;

failed:

    memset(password, 0, strlen(password));
    free(password);
    amqp_destroy_connection(a->conn);
    free(a);
    return NULL;
}


void
zmqd_amqp_close(zmqd_amqp_t *a)
{
    if (a == NULL) {
        return;
    }

    (void) amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(a->conn);
    free(a);
}


int
zmqd_amqp_publish(zmqd_amqp_t *a, const char *exchange,
    const char *routing_key, int mandatory, amqp_basic_properties_t *props,
    amqp_bytes_t body, char *err, size_t errlen)
{
    int                status, returned;
    double             deadline, left;
    uint64_t           tag;
    amqp_frame_t       frame;
    struct timeval     tv;
    amqp_basic_ack_t  *ack;

    status = amqp_basic_publish(a->conn, 1, amqp_cstring_bytes(exchange),
                                amqp_cstring_bytes(routing_key), mandatory,
                                0, props, body);
    if (status != AMQP_STATUS_OK) {
        snprintf(err, errlen, "publish to %s: %s", a->peer,
                 amqp_error_string2(status));
        return -1;
    }

    tag = a->next_tag++;
    returned = 0;

    /* one bound for the whole wait, however many frames come first */
    deadline = zmqd_now() + ZMQD_TIMEOUT_MS / 1000.0;

    for ( ;; ) {
        left = deadline - zmqd_now();
        if (left <= 0) {
            snprintf(err, errlen, "no confirm from %s within %d ms",
                     a->peer, ZMQD_TIMEOUT_MS);
            return -1;
        }

        tv.tv_sec = (time_t) left;
        tv.tv_usec = (suseconds_t) ((left - (double) tv.tv_sec) * 1e6);

        status = amqp_simple_wait_frame_noblock(a->conn, &frame, &tv);
        if (status != AMQP_STATUS_OK) {
            snprintf(err, errlen, "no confirm from %s: %s", a->peer,
                     amqp_error_string2(status));
            return -1;
        }

        if (frame.frame_type != AMQP_FRAME_METHOD) {
            continue;                   /* a returned message's content */
        }

        switch (frame.payload.method.id) {

        case AMQP_BASIC_RETURN_METHOD:
            returned = 1;
            break;

        case AMQP_BASIC_ACK_METHOD:
            ack = frame.payload.method.decoded;
            if (ack->delivery_tag < tag) {
                break;
            }
            if (returned) {
                snprintf(err, errlen, "unroutable: no queue for "
                         "exchange '%s' routing key '%s'", exchange,
                         routing_key);
                return -1;
            }
            return 0;

        case AMQP_BASIC_NACK_METHOD:
            snprintf(err, errlen, "the broker refused the message");
            return -1;

        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            snprintf(err, errlen, "the broker closed the publishing "
                     "channel");
            return -1;

        default:
            break;
        }
    }
}
