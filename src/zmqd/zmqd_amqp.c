/*
 * zmqd: blocking rabbitmq-c connections, every call with a timeout, and
 * the heartbeat thread.
 *
 * rabbitmq-c 0.11 sends heartbeats only inside its own waits (wait_frame_
 * inner sends one when next_send_heartbeat has passed), so a connection
 * the main thread leaves alone while a service runs, or a publishing
 * connection nobody publishes on, goes silent and the broker closes it
 * after about two heartbeat intervals. The heartbeat thread sends a
 * heartbeat frame on each connection every heartbeat/2 seconds, holding
 * the connection's lock (the main thread holds it around every call);
 * when the lock is taken, the main thread is inside rabbitmq-c, which
 * heartbeats by itself, so the thread never waits for a lock.
 *
 * The receiving side needs nothing: rabbitmq-c moves its receive deadline
 * (next_recv_heartbeat, 2 x heartbeat) on every successful recv() and
 * checks it only when a recv() finds no data. After a long service the
 * broker's heartbeats wait in the socket, so the next call reads them and
 * goes on; only a broker that sent nothing for 2 x heartbeat is declared
 * lost, which is right.
 *
 * A definition with "tls": true connects through rabbitmq-c's SSL socket,
 * its context set up by zgw_tls.h (ca_file or the system store, the chain
 * and the name checked, server_name as SNI and the name checked, a client
 * certificate); a refused certificate fails the connect with OpenSSL's
 * reason, and the caller backs off as after any failed connect.
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include "zgw_tls.h"
#include "zmqd.h"


#define ZMQD_BEAT_TICK_MS  100


static int zmqd_amqp_publish_locked(zmqd_amqp_t *a, const char *exchange,
    const char *routing_key, int mandatory, amqp_basic_properties_t *props,
    amqp_bytes_t body, char *err, size_t errlen);


static pthread_mutex_t  zmqd_beat_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t   zmqd_beat_cond = PTHREAD_COND_INITIALIZER;
static zmqd_amqp_t     *zmqd_beat_list;
static pthread_t        zmqd_beat_thread;
static int              zmqd_beat_running;
static int              zmqd_beat_stop;


void
zmqd_amqp_lock(zmqd_amqp_t *a)
{
    (void) pthread_mutex_lock(&a->lock);
}


void
zmqd_amqp_unlock(zmqd_amqp_t *a)
{
    (void) pthread_mutex_unlock(&a->lock);
}


int
zmqd_amqp_broken(zmqd_amqp_t *a)
{
    int  broken;

    zmqd_amqp_lock(a);
    broken = a->broken;
    zmqd_amqp_unlock(a);

    return broken;
}


/* one heartbeat frame, unless the socket cannot take it right now */
static void
zmqd_beat(zmqd_amqp_t *a, double now)
{
    int            fd, rc;
    amqp_frame_t   hb;
    struct pollfd  pfd;

    fd = amqp_get_sockfd(a->conn);
    if (fd < 0) {
        return;
    }

    /*
     * A full socket buffer means the broker is not reading (it blocked
     * the connection, and then it does not count heartbeats): sending
     * would block this thread, so try again on the next tick.
     */
    pfd.fd = fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT)) {
        return;
    }

    memset(&hb, 0, sizeof(hb));
    hb.frame_type = AMQP_FRAME_HEARTBEAT;
    hb.channel = 0;

    rc = amqp_send_frame(a->conn, &hb);
    if (rc != AMQP_STATUS_OK) {
        /* said once; the main thread sees the error on its next call */
        zmqd_log("warn", "%s: cannot send a heartbeat: %s", a->peer,
                 amqp_error_string2(rc));
        a->broken = 1;
    }

    a->next_beat = now + a->heartbeat / 2;
}


static void *
zmqd_heartbeat_loop(void *arg)
{
    double            now;
    zmqd_amqp_t      *a;
    struct timespec   ts;

    (void) arg;

    (void) pthread_mutex_lock(&zmqd_beat_lock);

    while (!zmqd_beat_stop) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += ZMQD_BEAT_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void) pthread_cond_timedwait(&zmqd_beat_cond, &zmqd_beat_lock,
                                      &ts);

        now = zmqd_now();

        for (a = zmqd_beat_list; a != NULL && !zmqd_beat_stop; a = a->next)
        {
            if (a->heartbeat <= 0 || a->broken || now < a->next_beat) {
                continue;
            }

            /* taken: the main thread is inside rabbitmq-c, which beats */
            if (pthread_mutex_trylock(&a->lock) != 0) {
                continue;
            }

            zmqd_beat(a, now);
            (void) pthread_mutex_unlock(&a->lock);
        }
    }

    (void) pthread_mutex_unlock(&zmqd_beat_lock);
    return NULL;
}


int
zmqd_heartbeat_start(char *err, size_t errlen)
{
    int       rc;
    sigset_t  all, old;

    zmqd_beat_stop = 0;

    /* signals are for the main thread: the thread starts with them blocked */
    sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&zmqd_beat_thread, NULL, zmqd_heartbeat_loop, NULL);
    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        snprintf(err, errlen, "cannot start the heartbeat thread: %s",
                 strerror(rc));
        return -1;
    }

    zmqd_beat_running = 1;
    return 0;
}


void
zmqd_heartbeat_stop(void)
{
    if (!zmqd_beat_running) {
        return;
    }

    (void) pthread_mutex_lock(&zmqd_beat_lock);
    zmqd_beat_stop = 1;
    (void) pthread_cond_signal(&zmqd_beat_cond);
    (void) pthread_mutex_unlock(&zmqd_beat_lock);

    (void) pthread_join(zmqd_beat_thread, NULL);
    zmqd_beat_running = 0;
}


static void
zmqd_beat_add(zmqd_amqp_t *a)
{
    a->heartbeat = amqp_get_heartbeat(a->conn);
    a->next_beat = zmqd_now() + a->heartbeat / 2;

    (void) pthread_mutex_lock(&zmqd_beat_lock);
    a->next = zmqd_beat_list;
    zmqd_beat_list = a;
    (void) pthread_mutex_unlock(&zmqd_beat_lock);
}


static void
zmqd_beat_remove(zmqd_amqp_t *a)
{
    zmqd_amqp_t  **pp;

    (void) pthread_mutex_lock(&zmqd_beat_lock);

    for (pp = &zmqd_beat_list; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    }

    (void) pthread_mutex_unlock(&zmqd_beat_lock);
}


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


amqp_socket_t *
zmqd_amqp_tls_socket(amqp_connection_state_t conn, const json_t *def,
    const char *host, char *err, size_t errlen)
{
    amqp_socket_t   *sock;
    zgw_tls_opts_t   o;

    sock = amqp_ssl_socket_new(conn);
    if (sock == NULL) {
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }

    zgw_tls_opts_def(&o, def, host);

    if (zgw_tls_ctx_setup(amqp_ssl_socket_get_context(sock), &o, err, errlen)
        != 0)
    {
        return NULL;
    }

    /*
     * The chain and the name are checked by the context's verify callback
     * (the name: server_name, or an IP address as such); rabbitmq-c's own
     * check knows only DNS names and the host it connected to.
     */
    amqp_ssl_socket_set_verify_peer(sock, o.verify);
    amqp_ssl_socket_set_verify_hostname(sock, 0);

    return sock;
}


const char *
zmqd_amqp_tls_error(amqp_socket_t *sock, int status, char *buf, size_t len)
{
    char         why[512];
    SSL_CTX     *ctx;

    ctx = amqp_ssl_socket_get_context(sock);

    switch (status) {

    case AMQP_STATUS_SSL_ERROR:
    case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
    case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
    case AMQP_STATUS_SSL_CONNECTION_FAILED:
    case AMQP_STATUS_CONNECTION_CLOSED:
    case AMQP_STATUS_SOCKET_ERROR:
        if (zgw_tls_refused(ctx) || status != AMQP_STATUS_CONNECTION_CLOSED)
        {
            snprintf(buf, len, "TLS: %s",
                     zgw_tls_why(ctx, amqp_error_string2(status), why,
                                 sizeof(why)));
            break;
        }
        /* fall through */

    default:
        snprintf(buf, len, "%s", amqp_error_string2(status));
    }

    return buf;
}


const char *
zmqd_amqp_tls_info(amqp_socket_t *sock, const json_t *def, char *buf,
    size_t len)
{
    json_t      *v;
    const char  *version;

    version = zgw_tls_version(amqp_ssl_socket_get_context(sock));
    v = json_object_get(def, "verify");

    if (v != NULL && !json_is_true(v)) {
        snprintf(buf, len, "%s, certificate not verified (verify is false)",
                 version);

    } else {
        snprintf(buf, len, "%s, certificate verified",
                 version);
    }

    return buf;
}


zmqd_amqp_t *
zmqd_amqp_open(const json_t *def, const zgw_key_t *key, int confirm,
    char *err, size_t errlen)
{
    int               status, tls;
    char             *password, rbuf[256];
    int               rc;
    zmqd_amqp_t      *a;
    zgw_errors_t      errs;
    pthread_mutexattr_t  attr;
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

    if (pthread_mutexattr_init(&attr) != 0) {
        snprintf(err, errlen, "out of memory");
        free(a);
        return NULL;
    }

    (void) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    rc = pthread_mutex_init(&a->lock, &attr);
    (void) pthread_mutexattr_destroy(&attr);

    if (rc != 0) {
        snprintf(err, errlen, "cannot make a mutex: %s", strerror(rc));
        free(a);
        return NULL;
    }

    host = json_string_value(json_object_get(def, "host"));
    snprintf(a->user, sizeof(a->user), "%s",
             json_string_value(json_object_get(def, "username")));
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
        (void) pthread_mutex_destroy(&a->lock);
        free(a);
        return NULL;
    }

    tls = json_is_true(json_object_get(def, "tls"));
    a->conn = amqp_new_connection();
    sock = tls ? zmqd_amqp_tls_socket(a->conn, def, host, rbuf, sizeof(rbuf))
               : amqp_tcp_socket_new(a->conn);
    tv.tv_sec = ZMQD_TIMEOUT_MS / 1000;
    tv.tv_usec = 0;

    if (sock == NULL) {
        snprintf(err, errlen, "cannot connect to %s: %s", a->peer,
                 tls ? rbuf : "out of memory");
        goto failed;
    }

    (void) amqp_set_handshake_timeout(a->conn, &tv);
    (void) amqp_set_rpc_timeout(a->conn, &tv);

    status = amqp_socket_open_noblock(sock, host, port, &tv);
    if (status != AMQP_STATUS_OK) {
        snprintf(err, errlen, "cannot connect to %s: %s", a->peer,
                 tls ? zmqd_amqp_tls_error(sock, status, rbuf, sizeof(rbuf))
                     : amqp_error_string2(status));
        goto failed;
    }

    if (tls) {
        zmqd_amqp_tls_info(sock, def, a->tls, sizeof(a->tls));
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
        /* a broker that wants a client certificate says so now (TLS 1.3) */
        snprintf(err, errlen, "login to %s failed: %s", a->peer,
                 tls && r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                 ? zmqd_amqp_tls_error(sock, r.library_error, rbuf,
                                       sizeof(rbuf))
                 : zmqd_amqp_reply_error(r, rbuf, sizeof(rbuf)));
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

    zmqd_beat_add(a);
    return a;

failed:

    memset(password, 0, strlen(password));
    free(password);
    amqp_destroy_connection(a->conn);
    (void) pthread_mutex_destroy(&a->lock);
    free(a);
    return NULL;
}


void
zmqd_amqp_close(zmqd_amqp_t *a)
{
    if (a == NULL) {
        return;
    }

    /* out of the list first: then the heartbeat thread cannot hold it */
    zmqd_beat_remove(a);

    zmqd_amqp_lock(a);
    (void) amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(a->conn);
    zmqd_amqp_unlock(a);

    (void) pthread_mutex_destroy(&a->lock);
    free(a);
}


int
zmqd_amqp_publish(zmqd_amqp_t *a, const char *exchange,
    const char *routing_key, int mandatory, amqp_basic_properties_t *props,
    amqp_bytes_t body, char *err, size_t errlen)
{
    int  rc;

    zmqd_amqp_lock(a);
    rc = zmqd_amqp_publish_locked(a, exchange, routing_key, mandatory, props,
                                  body, err, errlen);
    zmqd_amqp_unlock(a);

    return rc;
}


static int
zmqd_amqp_publish_locked(zmqd_amqp_t *a, const char *exchange,
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


/*
 * rpc: the reply may come before the confirm (a persistent message's
 * confirm waits for the disk), deliveries of earlier requests that timed
 * out come too and are skipped; every frame's data is copied at once
 * (rabbitmq-c reuses its memory).
 */
int
zmqd_amqp_rpc(zmqd_amqp_t *a, const char *exchange, const char *routing_key,
    int mandatory, amqp_basic_properties_t *props, amqp_bytes_t body,
    int timeout_ms, zmqd_resp_t *resp, char *err, size_t errlen)
{
    int                       rc, status, returned, confirmed, replied;
    int                       content, mine, st;
    char                      rbuf[256];
    double                    now, deadline, confirm_by, left;
    size_t                    size, got, n;
    uint64_t                  tag;
    amqp_frame_t              frame;
    struct timeval            tv;
    amqp_basic_ack_t         *ack;
    amqp_basic_properties_t  *rp;
    zmqd_resp_t               r;

    enum { NONE = 0, DELIVERY, RETURNED };

    memset(&r, 0, sizeof(r));
    zmqd_amqp_lock(a);

    if (!a->replies) {
        amqp_maybe_release_buffers(a->conn);
        if (amqp_basic_consume(a->conn, 1,
                               amqp_cstring_bytes("amq.rabbitmq.reply-to"),
                               amqp_empty_bytes, 0, 1, 0, amqp_empty_table)
            == NULL)
        {
            snprintf(err, errlen, "cannot consume amq.rabbitmq.reply-to on "
                     "%s: %s", a->peer,
                     zmqd_amqp_reply_error(amqp_get_rpc_reply(a->conn), rbuf,
                                           sizeof(rbuf)));
            zmqd_amqp_unlock(a);
            return -1;
        }
        a->replies = 1;
    }

    status = amqp_basic_publish(a->conn, 1, amqp_cstring_bytes(exchange),
                                amqp_cstring_bytes(routing_key), mandatory,
                                0, props, body);
    if (status != AMQP_STATUS_OK) {
        snprintf(err, errlen, "publish to %s: %s", a->peer,
                 amqp_error_string2(status));
        zmqd_amqp_unlock(a);
        return -1;
    }

    tag = a->next_tag++;
    returned = confirmed = replied = 0;
    content = NONE;
    mine = 0;
    size = got = 0;
    rc = -1;

    now = zmqd_now();
    deadline = now + timeout_ms / 1000.0;
    confirm_by = now + ZMQD_TIMEOUT_MS / 1000.0;

    for ( ;; ) {
        if (confirmed && replied) {
            rc = 0;
            break;
        }

        now = zmqd_now();
        left = deadline - now;
        if (!confirmed && confirm_by - now < left) {
            left = confirm_by - now;
        }

        if (left <= 0) {
            if (!confirmed) {
                snprintf(err, errlen, "no confirm from %s within %d ms",
                         a->peer, ZMQD_TIMEOUT_MS);
            } else {
                snprintf(err, errlen, "no reply within %d ms", timeout_ms);
            }
            break;
        }

        tv.tv_sec = (time_t) left;
        tv.tv_usec = (suseconds_t) ((left - (double) tv.tv_sec) * 1e6);

        status = amqp_simple_wait_frame_noblock(a->conn, &frame, &tv);
        if (status == AMQP_STATUS_TIMEOUT) {
            continue;
        }
        if (status != AMQP_STATUS_OK) {
            snprintf(err, errlen, "waiting for a reply from %s: %s",
                     a->peer, amqp_error_string2(status));
            break;
        }

        if (frame.frame_type == AMQP_FRAME_HEADER) {
            if (content != DELIVERY) {
                continue;               /* a returned message's */
            }

            rp = frame.payload.properties.decoded;
            size = (size_t) frame.payload.properties.body_size;
            got = 0;

            mine = !replied
                   && (rp->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
                   && (props->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
                   && rp->correlation_id.len == props->correlation_id.len
                   && memcmp(rp->correlation_id.bytes,
                             props->correlation_id.bytes,
                             rp->correlation_id.len) == 0;

            if (mine) {
                if (size > ZMQD_RESP_MAX) {
                    snprintf(err, errlen, "the reply has %zu bytes, more "
                             "than %d", size, ZMQD_RESP_MAX);
                    break;
                }

                st = zmqd_reply_status(rp);
                r.status = st < 0 ? 502 : st;
                if (rp->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
                    n = rp->content_type.len < sizeof(r.content_type) - 1
                        ? rp->content_type.len : sizeof(r.content_type) - 1;
                    memcpy(r.content_type, rp->content_type.bytes, n);
                    r.content_type[n] = '\0';
                }

                r.body = malloc(size + 1);
                if (r.body == NULL) {
                    snprintf(err, errlen, "out of memory");
                    break;
                }
                r.body[0] = '\0';
                r.len = 0;
            }

            if (size == 0) {
                content = NONE;
                replied = replied || mine;
            }
            continue;
        }

        if (frame.frame_type == AMQP_FRAME_BODY) {
            if (content != DELIVERY) {
                continue;
            }

            n = frame.payload.body_fragment.len;
            if (n > size - got) {
                n = size - got;
            }
            if (mine) {
                memcpy(r.body + got, frame.payload.body_fragment.bytes, n);
                r.body[got + n] = '\0';
                r.len = got + n;
            }
            got += n;

            if (got >= size) {
                content = NONE;
                replied = replied || mine;
                mine = 0;
            }
            continue;
        }

        if (frame.frame_type != AMQP_FRAME_METHOD) {
            continue;
        }

        switch (frame.payload.method.id) {

        case AMQP_BASIC_DELIVER_METHOD:
            content = DELIVERY;
            mine = 0;
            break;

        case AMQP_BASIC_RETURN_METHOD:
            content = RETURNED;
            returned = 1;
            break;

        case AMQP_BASIC_ACK_METHOD:
            ack = frame.payload.method.decoded;
            if (ack->delivery_tag < tag) {
                break;
            }
            if (returned) {
                snprintf(err, errlen, "unroutable: no queue for exchange "
                         "'%s' routing key '%s'", exchange, routing_key);
                goto done;
            }
            confirmed = 1;
            break;

        case AMQP_BASIC_NACK_METHOD:
            snprintf(err, errlen, "the broker refused the message");
            goto done;

        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            snprintf(err, errlen, "the broker closed the publishing "
                     "channel");
            a->broken = 1;
            goto done;

        default:
            break;
        }
    }

done:

    zmqd_amqp_unlock(a);

    if (rc == 0 && resp != NULL) {
        *resp = r;
    } else {
        zmqd_resp_free(&r);
    }

    return rc;
}
