
/*
 * ngx_zmq: a Redis client driven by the NGINX event loop.
 *
 * Commands are pipelined and answered in order; every command has a
 * deadline, and a connection whose oldest command is overdue is closed, so
 * every pending handler is called (with NULL) and the connection is
 * retried with backoff. Reads are drained until EAGAIN on every event.
 * A connection with a PING period sends PING on a timer of its own; the
 * PING has the same deadline, which is what notices a peer that went
 * silent on a connection that would otherwise only wait (a subscriber).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_zmq_redis.h"
#include "ngx_zmq_socket.h"
#include "zgw_resp_limit.h"


#define NGX_ZMQ_REDIS_PENDING_MAX        1024
#define NGX_ZMQ_REDIS_BACKOFF_MIN        100
#define NGX_ZMQ_REDIS_BACKOFF_MAX        5000


typedef struct {
    ngx_zmq_redis_reply_pt        handler;
    void                         *data;
    ngx_msec_t                    deadline;
    char                          cmd[16];        /* for the log */
} ngx_zmq_redis_pending_t;


struct ngx_zmq_redis_s {
    ngx_zmq_redis_conf_t          conf;
    ngx_zmq_socket_t              sock;
    redisReader                  *reader;
    zgw_resp_budget_t             budget;
    ngx_flag_t                    ready;          /* TCP established */
    ngx_flag_t                    destroyed;
    ngx_flag_t                    handshaking;    /* TLS */
    u_char                        tls_name[256];

    ngx_zmq_redis_pending_t       pending[NGX_ZMQ_REDIS_PENDING_MAX];
    ngx_uint_t                    head;
    ngx_uint_t                    npending;

    ngx_event_t                   timer;
    ngx_zmq_backoff_t             backoff;
    ngx_event_t                   ping;
    ngx_flag_t                    ping_pending;
    char                          error[256];
};


static void ngx_zmq_redis_connect(ngx_zmq_redis_t *rd);
static void ngx_zmq_redis_close(ngx_zmq_redis_t *rd,
    const char *reason);
static void ngx_zmq_redis_timer_handler(ngx_event_t *ev);
static void ngx_zmq_redis_read_handler(ngx_event_t *rev);
static void ngx_zmq_redis_write_handler(ngx_event_t *wev);
static void ngx_zmq_redis_tls_start(ngx_zmq_redis_t *rd);
static void ngx_zmq_redis_tls_done(ngx_connection_t *c);
static ngx_int_t ngx_zmq_redis_input(void *data, u_char *buf, size_t n);
static void ngx_zmq_redis_arm(ngx_zmq_redis_t *rd);
static void ngx_zmq_redis_ping_handler(ngx_event_t *ev);
static void ngx_zmq_redis_pong(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static ngx_flag_t ngx_zmq_redis_is_push(redisReply *reply);


ngx_zmq_redis_t *
ngx_zmq_redis_create(ngx_zmq_redis_conf_t *conf)
{
    ngx_zmq_redis_t       *rd;

    rd = ngx_calloc(sizeof(ngx_zmq_redis_t), conf->log);
    if (rd == NULL) {
        return NULL;
    }

    rd->conf = *conf;
    rd->timer.handler = ngx_zmq_redis_timer_handler;
    rd->timer.data = rd;
    rd->timer.log = conf->log;
    rd->timer.cancelable = 1;
    rd->ping.handler = ngx_zmq_redis_ping_handler;
    rd->ping.data = rd;
    rd->ping.log = conf->log;
    rd->ping.cancelable = 1;
    rd->sock.log = conf->log;
    rd->sock.out_min = 4096;
    ngx_zmq_backoff_init(&rd->backoff, NGX_ZMQ_REDIS_BACKOFF_MIN,
                         NGX_ZMQ_REDIS_BACKOFF_MAX, 0);

    if (rd->conf.name == NULL) {
        rd->conf.name = "redis";
    }

    /* the caller's strings are not kept: the name is copied */
    rd->conf.tls_name.len = ngx_min(conf->tls_name.len,
                                    sizeof(rd->tls_name) - 1);
    if (rd->conf.tls_name.len) {
        ngx_memcpy(rd->tls_name, conf->tls_name.data,
                   rd->conf.tls_name.len);
    }
    rd->conf.tls_name.data = rd->tls_name;
    rd->conf.tls = ngx_zmq_tls_ctx_ref(conf->tls);

    ngx_cpystrn((u_char *) rd->error, (u_char *) "not connected yet",
                sizeof(rd->error));

    return rd;
}


void
ngx_zmq_redis_start(ngx_zmq_redis_t *rd)
{
    ngx_zmq_redis_connect(rd);
}


ngx_flag_t
ngx_zmq_redis_connected(ngx_zmq_redis_t *rd)
{
    return rd->sock.connection != NULL && rd->ready;
}


const char *
ngx_zmq_redis_error(ngx_zmq_redis_t *rd)
{
    return rd->error;
}


void
ngx_zmq_redis_destroy(ngx_zmq_redis_t *rd)
{
    rd->destroyed = 1;
    rd->conf.disconnected = NULL;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    if (rd->sock.connection != NULL) {
        ngx_zmq_redis_close(rd, "shutting down");
    }

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    if (rd->ping.timer_set) {
        ngx_del_timer(&rd->ping);
    }

    ngx_zmq_socket_free(&rd->sock);
    ngx_zmq_tls_ctx_put(rd->conf.tls);
    ngx_free(rd);
}


static void
ngx_zmq_redis_connect(ngx_zmq_redis_t *rd)
{
    int        tcp_nodelay;
    ngx_int_t  rc;

    rc = ngx_zmq_socket_connect(&rd->sock, rd->conf.addr,
                                ngx_zmq_redis_read_handler,
                                ngx_zmq_redis_write_handler, rd);

    if (rc == NGX_DECLINED) {
        ngx_snprintf((u_char *) rd->error, sizeof(rd->error) - 1,
                     "cannot connect to %V%Z", &rd->conf.addr->name);
        ngx_add_timer(&rd->timer, ngx_zmq_backoff_next(&rd->backoff));
        return;
    }

    /*
     * commands are small and their replies awaited: without this, Nagle
     * holds each write while the one before is unacknowledged, so the
     * commands of the next event loop turn wait for the previous replies
     * (as hiredis and redis-py, which set it too)
     */
    tcp_nodelay = 1;
    if (setsockopt(rd->sock.connection->fd, IPPROTO_TCP, TCP_NODELAY,
                   (const void *) &tcp_nodelay, sizeof(int)) == -1)
    {
        ngx_log_error(NGX_LOG_WARN, rd->conf.log, ngx_socket_errno,
                      "zmq redis %V (%s): setsockopt(TCP_NODELAY) failed",
                      &rd->conf.addr->name, rd->conf.name);
    }

    rd->ready = 0;

    rd->reader = redisReaderCreate();
    if (rd->reader == NULL) {
        ngx_zmq_redis_close(rd, "out of memory");
        return;
    }

    zgw_resp_limit(rd->reader, &rd->budget);

    /* the connect itself has the command timeout */
    ngx_add_timer(&rd->timer, rd->conf.timeout);

    if (rc == NGX_OK) {
        ngx_post_event(rd->sock.connection->write, &ngx_posted_events);
    }
}


static void
ngx_zmq_redis_close(ngx_zmq_redis_t *rd, const char *reason)
{
    ngx_uint_t                     n;
    ngx_zmq_redis_pending_t        p;

    if (!rd->destroyed) {
        ngx_log_error(NGX_LOG_WARN, rd->conf.log, 0,
                      "zmq redis %V (%s): connection closed: %s",
                      &rd->conf.addr->name, rd->conf.name, reason);
    }

    ngx_cpystrn((u_char *) rd->error, (u_char *) reason, sizeof(rd->error));

    ngx_zmq_socket_close(&rd->sock);

    if (rd->reader != NULL) {
        redisReaderFree(rd->reader);
        rd->reader = NULL;
    }

    rd->ready = 0;
    rd->handshaking = 0;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    if (rd->ping.timer_set) {
        ngx_del_timer(&rd->ping);
    }

    /* every pending command fails */
    for (n = rd->npending; n > 0; n--) {
        p = rd->pending[rd->head];
        rd->head = (rd->head + 1) % NGX_ZMQ_REDIS_PENDING_MAX;
        rd->npending--;
        p.handler(rd, NULL, p.data);
    }

    if (!rd->destroyed) {
        ngx_add_timer(&rd->timer, ngx_zmq_backoff_next(&rd->backoff));

        if (rd->conf.disconnected) {
            rd->conf.disconnected(rd, rd->conf.data);
        }
    }
}


static void
ngx_zmq_redis_timer_handler(ngx_event_t *ev)
{
    char                          reason[64];
    ngx_zmq_redis_t               *rd = ev->data;
    ngx_zmq_redis_pending_t       *p;

    if (rd->sock.connection == NULL) {
        ngx_zmq_redis_connect(rd);
        return;
    }

    if (!rd->ready) {
        ngx_zmq_redis_close(rd, rd->handshaking ? "TLS handshake timed out"
                                                : "connect timed out");
        return;
    }

    p = &rd->pending[rd->head];

    if (rd->npending
        && (ngx_msec_int_t) (p->deadline - ngx_current_msec) <= 0)
    {
        ngx_snprintf((u_char *) reason, sizeof(reason) - 1,
                     "%s timed out (no answer in %M ms)%Z", p->cmd,
                     rd->conf.timeout);
        ngx_zmq_redis_close(rd, reason);
        return;
    }

    ngx_zmq_redis_arm(rd);
}


/* the timer follows the oldest pending command's deadline */
static void
ngx_zmq_redis_arm(ngx_zmq_redis_t *rd)
{
    ngx_msec_int_t  left;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    if (rd->npending == 0) {
        return;
    }

    left = rd->pending[rd->head].deadline - ngx_current_msec;
    ngx_add_timer(&rd->timer, left > 0 ? (ngx_msec_t) left : 1);
}


ngx_int_t
ngx_zmq_redis_command(ngx_zmq_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen,
    ngx_zmq_redis_reply_pt handler, void *data)
{
    int                            len;
    char                          *cmd;
    ngx_zmq_redis_pending_t       *p;

    if (rd->sock.connection == NULL
        || rd->npending == NGX_ZMQ_REDIS_PENDING_MAX)
    {
        return NGX_DECLINED;
    }

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    if (ngx_zmq_socket_reserve(&rd->sock, len) != NGX_OK) {
        free(cmd);
        return NGX_ERROR;
    }

    rd->sock.out_last = ngx_cpymem(rd->sock.out_last, cmd, len);
    free(cmd);

    if (handler != NULL) {
        p = &rd->pending[(rd->head + rd->npending)
                         % NGX_ZMQ_REDIS_PENDING_MAX];
        p->handler = handler;
        p->data = data;
        p->deadline = ngx_current_msec + rd->conf.timeout;
        ngx_cpystrn((u_char *) p->cmd, (u_char *) argv[0], sizeof(p->cmd));
        rd->npending++;

        if (rd->npending == 1 && rd->ready) {
            ngx_zmq_redis_arm(rd);
        }
    }

    if (rd->ready) {
        ngx_post_event(rd->sock.connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * AUTH and SELECT: a refusal is a failed connection (with the reason in
 * status), never a connection that goes on as another user or in
 * database 0
 */
static void
ngx_zmq_redis_setup(ngx_zmq_redis_t *rd, redisReply *reply, void *data)
{
    u_char  *p;
    char     reason[sizeof(rd->error)];

    if (reply == NULL
        || (reply->type == REDIS_REPLY_STATUS && reply->len == 2
            && ngx_strncmp(reply->str, "OK", 2) == 0))
    {
        return;
    }

    p = ngx_snprintf((u_char *) reason, sizeof(reason) - 1, "%s failed: %*s",
                     (char *) data,
                     (size_t) (reply->type == REDIS_REPLY_ERROR
                               || reply->type == REDIS_REPLY_STATUS
                               ? reply->len : 0),
                     reply->str);
    *p = '\0';

    /* one line: whatever the server said */
    for (p = (u_char *) reason; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }

    ngx_zmq_redis_close(rd, reason);
}


static void
ngx_zmq_redis_established(ngx_zmq_redis_t *rd)
{
    u_char       db[NGX_INT_T_LEN];
    size_t       len[3];
    const char  *argv[3];

    rd->ready = 1;
    ngx_zmq_backoff_reset(&rd->backoff);
    rd->error[0] = '\0';

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    ngx_log_error(NGX_LOG_INFO, rd->conf.log, 0,
                  "zmq redis %V (%s): connected", &rd->conf.addr->name,
                  rd->conf.name);

    if (rd->conf.username.len) {
        /* a Redis 6 ACL user: AUTH user password */
        argv[0] = "AUTH";
        len[0] = 4;
        argv[1] = (char *) rd->conf.username.data;
        len[1] = rd->conf.username.len;
        argv[2] = (char *) rd->conf.password.data;
        len[2] = rd->conf.password.len;
        (void) ngx_zmq_redis_command(rd, 3, argv, len,
                                     ngx_zmq_redis_setup, "AUTH");

    } else if (rd->conf.password.len) {
        argv[0] = "AUTH";
        len[0] = 4;
        argv[1] = (char *) rd->conf.password.data;
        len[1] = rd->conf.password.len;
        (void) ngx_zmq_redis_command(rd, 2, argv, len,
                                     ngx_zmq_redis_setup, "AUTH");
    }

    if (rd->conf.db) {
        argv[0] = "SELECT";
        len[0] = 6;
        argv[1] = (char *) db;
        len[1] = ngx_sprintf(db, "%i", rd->conf.db) - db;
        (void) ngx_zmq_redis_command(rd, 2, argv, len,
                                     ngx_zmq_redis_setup, "SELECT");
    }

    if (rd->conf.connected) {
        rd->conf.connected(rd, rd->conf.data);
    }

    if (rd->sock.connection == NULL) {
        return;                 /* the callback closed it */
    }

    rd->ping_pending = 0;

    if (rd->conf.ping) {
        ngx_add_timer(&rd->ping, rd->conf.ping);
    }

    ngx_zmq_redis_arm(rd);
}


static void
ngx_zmq_redis_ping_handler(ngx_event_t *ev)
{
    ngx_zmq_redis_t       *rd = ev->data;
    const char            *argv[1] = { "PING" };

    if (!ngx_zmq_redis_connected(rd)) {
        return;                 /* armed again when connected */
    }

    /* one PING at a time: an unanswered one times out and closes */
    if (!rd->ping_pending
        && ngx_zmq_redis_command(rd, 1, argv, NULL,
                                 ngx_zmq_redis_pong, NULL)
           == NGX_OK)
    {
        rd->ping_pending = 1;
    }

    ngx_add_timer(&rd->ping, rd->conf.ping);
}


static void
ngx_zmq_redis_pong(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    rd->ping_pending = 0;

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->conf.log, 0,
                      "zmq redis %V (%s): PING: %s", &rd->conf.addr->name,
                      rd->conf.name, reply->str);
    }
}


/* a subscriber's message: ["message", channel, text] or "pmessage" */
static ngx_flag_t
ngx_zmq_redis_is_push(redisReply *reply)
{
    redisReply  *kind;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) {
        return 0;
    }

    kind = reply->element[0];

    return kind->type == REDIS_REPLY_STRING
           && ((kind->len == 7 && ngx_strncmp(kind->str, "message", 7) == 0)
               || (kind->len == 8
                   && ngx_strncmp(kind->str, "pmessage", 8) == 0));
}


static void
ngx_zmq_redis_write_handler(ngx_event_t *wev)
{
    int                    err;
    socklen_t              len;
    ngx_connection_t      *c = wev->data;
    ngx_zmq_redis_t       *rd = c->data;

    if (!rd->ready) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_snprintf((u_char *) rd->error, sizeof(rd->error) - 1,
                         "cannot connect: %s%Z", strerror(err));
            ngx_zmq_redis_close(rd, rd->error);
            return;
        }

        if (rd->conf.tls != NULL) {
            ngx_zmq_redis_tls_start(rd);
            return;
        }

        ngx_zmq_redis_established(rd);

        if (rd->sock.connection == NULL) {
            return;
        }
    }

    if (ngx_zmq_socket_flush(&rd->sock) != NGX_OK) {
        ngx_zmq_redis_close(rd, "write failed");
    }
}


/* rediss://: the handshake once TCP is up; then AUTH, SELECT, commands */
static void
ngx_zmq_redis_tls_start(ngx_zmq_redis_t *rd)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = rd->sock.connection;
    rd->handshaking = 1;

    rc = ngx_zmq_tls_start(rd->conf.tls, c, &rd->conf.tls_name,
                           ngx_zmq_redis_tls_done);

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_zmq_redis_tls_done(c);
}


static void
ngx_zmq_redis_tls_done(ngx_connection_t *c)
{
    u_char            why[NGX_ZMQ_TLS_ERROR_LEN];
    ngx_zmq_redis_t  *rd = c->data;

    rd->handshaking = 0;

    if (ngx_zmq_tls_result(c, why, sizeof(why)) != NGX_OK) {
        ngx_zmq_redis_close(rd, (char *) why);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rd->conf.log, 0,
                  "zmq redis %V (%s): %s, %s", &rd->conf.addr->name,
                  rd->conf.name, ngx_zmq_tls_version(c),
                  ngx_zmq_tls_verified(c) ? "certificate verified"
                  : "certificate NOT verified: verify is off");

    /* NGINX's SSL layer had the handlers during the handshake */
    c->read->handler = ngx_zmq_redis_read_handler;
    c->write->handler = ngx_zmq_redis_write_handler;

    ngx_zmq_redis_established(rd);

    if (rd->sock.connection != c) {
        return;                 /* a callback closed it */
    }

    ngx_post_event(c->read, &ngx_posted_events);

    if (ngx_zmq_socket_flush(&rd->sock) != NGX_OK) {
        ngx_zmq_redis_close(rd, "write failed");
    }
}


static ngx_int_t
ngx_zmq_redis_input(void *data, u_char *buf, size_t n)
{
    ngx_zmq_redis_t  *rd = data;

    if (redisReaderFeed(rd->reader, (char *) buf, n) != REDIS_OK) {
        ngx_zmq_redis_close(rd, "out of memory");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_zmq_redis_read_handler(ngx_event_t *rev)
{
    void                          *reply;
    char                           reason[256];
    ngx_int_t                      rc;
    u_char                         buf[16384];
    ngx_connection_t              *c = rev->data;
    ngx_zmq_redis_t               *rd = c->data;
    ngx_zmq_redis_pending_t        p;

    rc = ngx_zmq_socket_read(&rd->sock, buf, sizeof(buf), 0,
                             ngx_zmq_redis_input, rd);

    if (rc == NGX_ABORT) {
        return;
    }

    if (rc != NGX_OK) {
#if (NGX_SSL)
        if (rc == NGX_ERROR && c->ssl != NULL) {
            (void) ngx_zmq_tls_failure(c, (u_char *) reason, sizeof(reason),
                                       "read failed");
            ngx_zmq_redis_close(rd, reason);
            return;
        }
#endif
        ngx_zmq_redis_close(rd, rc == NGX_DONE ? "closed by redis"
                                               : "read failed");
        return;
    }

    for ( ;; ) {
        reply = NULL;

        if (redisReaderGetReply(rd->reader, &reply) != REDIS_OK) {
            ngx_zmq_redis_close(rd, "protocol error");
            return;
        }

        if (reply == NULL) {
            break;
        }

        if (rd->conf.subscriber
            && (rd->npending == 0 || ngx_zmq_redis_is_push(reply)))
        {
            rd->conf.push(rd, reply, rd->conf.data);

        } else if (rd->npending) {
            p = rd->pending[rd->head];
            rd->head = (rd->head + 1) % NGX_ZMQ_REDIS_PENDING_MAX;
            rd->npending--;
            p.handler(rd, reply, p.data);

        } else {
            ngx_log_error(NGX_LOG_WARN, rd->conf.log, 0,
                          "zmq redis %V (%s): a reply nobody asked for",
                          &rd->conf.addr->name, rd->conf.name);
        }

        freeReplyObject(reply);

        if (rd->sock.connection == NULL) {
            return;                 /* a handler closed it */
        }
    }

    ngx_zmq_redis_arm(rd);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_zmq_redis_close(rd, "event error");
    }
}
