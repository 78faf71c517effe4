
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
#include "zgw_err.h"
#include "zgw_resp_limit.h"
#include "zgw_sentinel.h"


#define NGX_ZMQ_REDIS_PENDING_MAX        1024
#define NGX_ZMQ_REDIS_BACKOFF_MIN        100
#define NGX_ZMQ_REDIS_BACKOFF_MAX        5000
#define NGX_ZMQ_REDIS_SENTINEL_TIMEOUT   1000


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

    /* redis-sentinel:// */
    ngx_uint_t                    next;           /* the sentinel to ask */
    ngx_uint_t                    tried;          /* sentinels, this round */
    ngx_flag_t                    asking;         /* connected to a sentinel
                                                     to ask for the master */
    ngx_flag_t                    have_master;    /* named: connect to it */
    ngx_flag_t                    confirmed;      /* ROLE said master */
    ngx_flag_t                    moving;         /* closing to go on */
    ngx_flag_t                    restart;        /* closing to ask again */
    ngx_addr_t                    master;
    ngx_sockaddr_t                master_sa;
    u_char                        master_text[NGX_SOCKADDR_STRLEN];
    u_char                        master_name[256];
    u_char                        reasons[640];   /* this round's, shown */
    size_t                        nreasons;
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
static ngx_int_t ngx_zmq_redis_send(ngx_zmq_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen,
    ngx_zmq_redis_reply_pt handler, void *data);
static void ngx_zmq_redis_retry(ngx_zmq_redis_t *rd, const char *reason);
static void ngx_zmq_redis_master_named(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_zmq_redis_role(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data);


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

    if (conf->nsentinels) {
        /* log lines name the peer of the moment: a sentinel first */
        rd->conf.addr = &conf->sentinels[0];
        rd->conf.master_name.len = ngx_min(conf->master_name.len,
                                           sizeof(rd->master_name) - 1);
        ngx_memcpy(rd->master_name, conf->master_name.data,
                   rd->conf.master_name.len);
        rd->master_name[rd->conf.master_name.len] = '\0';
        rd->conf.master_name.data = rd->master_name;
        rd->master.sockaddr = &rd->master_sa.sockaddr;
        rd->master.name.data = rd->master_text;
    }

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
    return rd->sock.connection != NULL && rd->ready && !rd->asking;
}


ngx_flag_t
ngx_zmq_redis_on_master(ngx_zmq_redis_t *rd, const char *ip,
    ngx_uint_t port)
{
    socklen_t       len;
    ngx_sockaddr_t  sa;

    if (rd->sock.connection == NULL || !rd->confirmed
        || rd->conf.addr != &rd->master)
    {
        return 0;
    }

    ngx_memzero(&sa, sizeof(ngx_sockaddr_t));

    if (inet_pton(AF_INET, ip, &sa.sockaddr_in.sin_addr) == 1) {
        sa.sockaddr_in.sin_family = AF_INET;
        len = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (inet_pton(AF_INET6, ip, &sa.sockaddr_in6.sin6_addr) == 1) {
        sa.sockaddr_in6.sin6_family = AF_INET6;
        len = sizeof(struct sockaddr_in6);
#endif

    } else {
        return 0;
    }

    ngx_inet_set_port(&sa.sockaddr, (in_port_t) port);

    return ngx_cmp_sockaddr(&sa.sockaddr, len, rd->master.sockaddr,
                            rd->master.socklen, 1)
           == NGX_OK;
}


void
ngx_zmq_redis_reconnect(ngx_zmq_redis_t *rd, const char *reason)
{
    if (rd->destroyed) {
        return;
    }

    rd->have_master = 0;
    ngx_zmq_backoff_reset(&rd->backoff);

    if (rd->sock.connection != NULL) {
        rd->restart = 1;
        ngx_zmq_redis_close(rd, reason);
        return;
    }

    /* waiting out a backoff: no more */
    rd->tried = 0;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    ngx_add_timer(&rd->timer, 1);
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

    if (rd->conf.nsentinels) {
        if (rd->tried == 0) {
            rd->nreasons = 0;           /* a new round */
        }

        rd->confirmed = 0;

        if (rd->have_master && !rd->conf.to_sentinel) {
            /* the address a sentinel just named */
            rd->have_master = 0;
            rd->asking = 0;
            rd->conf.addr = &rd->master;

        } else {
            rd->asking = !rd->conf.to_sentinel;
            rd->conf.addr = &rd->conf.sentinels[rd->next
                                                % rd->conf.nsentinels];
        }
    }

    rc = ngx_zmq_socket_connect(&rd->sock, rd->conf.addr,
                                ngx_zmq_redis_read_handler,
                                ngx_zmq_redis_write_handler, rd);

    if (rc == NGX_DECLINED) {
        ngx_snprintf((u_char *) rd->error, sizeof(rd->error) - 1,
                     "cannot connect to %V%Z", &rd->conf.addr->name);
        ngx_zmq_redis_retry(rd, rd->error);
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

    /* the connect itself has the command timeout (a sentinel's: 1 s) */
    ngx_add_timer(&rd->timer, rd->asking
                              ? ngx_min(rd->conf.timeout,
                                        NGX_ZMQ_REDIS_SENTINEL_TIMEOUT)
                              : rd->conf.timeout);

    if (rc == NGX_OK) {
        ngx_post_event(rd->sock.connection->write, &ngx_posted_events);
    }
}


static void
ngx_zmq_redis_close(ngx_zmq_redis_t *rd, const char *reason)
{
    ngx_uint_t                     n, level;
    ngx_zmq_redis_pending_t        p;

    /* a step of asking a sentinel is not a loss: said once per round */
    level = rd->moving ? 0
            : (rd->conf.nsentinels && !rd->conf.to_sentinel
               && !rd->confirmed && !rd->restart) ? NGX_LOG_INFO
            : NGX_LOG_WARN;

    if (!rd->destroyed && level) {
        ngx_log_error(level, rd->conf.log, 0,
                      "zmq redis %V (%s): connection closed: %s",
                      &rd->conf.addr->name, rd->conf.name, reason);
    }

    if (!rd->moving) {
        ngx_cpystrn((u_char *) rd->error, (u_char *) reason,
                    sizeof(rd->error));
    }

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

    ngx_zmq_redis_retry(rd, reason);
}


/*
 * After a failed or lost connection: when to connect again, and whether
 * the user hears of it. With Sentinel, a sentinel that did not lead to a
 * master (no answer, an unknown name, not an IP, a dead server, a
 * replica) sends us to the next one at once; the round fails, and the
 * user is told, when none did.
 */
static void
ngx_zmq_redis_retry(ngx_zmq_redis_t *rd, const char *reason)
{
    u_char      *p, *last;
    ngx_msec_t   delay;
    ngx_flag_t   tell;
    ngx_addr_t  *s;

    if (rd->destroyed) {
        return;
    }

    delay = 0;
    tell = 1;

    if (rd->restart) {
        /* +switch-master: ask again, now */
        rd->restart = 0;
        rd->moving = 0;
        rd->tried = 0;
        delay = 1;

    } else if (rd->moving) {
        /* a sentinel named the master: connect to it */
        rd->moving = 0;
        delay = 1;
        tell = 0;

    } else if (rd->conf.nsentinels && rd->conf.to_sentinel) {
        rd->next = (rd->next + 1) % rd->conf.nsentinels;

    } else if (rd->conf.nsentinels && !rd->confirmed) {
        s = &rd->conf.sentinels[rd->next % rd->conf.nsentinels];

        p = rd->reasons + rd->nreasons;
        last = rd->reasons + sizeof(rd->reasons) - 1;

        if (rd->conf.addr == &rd->master) {
            p = ngx_slprintf(p, last, "%s%V: master %V: %s",
                             rd->nreasons ? "; " : "", &s->name,
                             &rd->master.name, reason);
        } else {
            p = ngx_slprintf(p, last, "%s%V: %s", rd->nreasons ? "; " : "",
                             &s->name, reason);
        }

        rd->nreasons = p - rd->reasons;
        rd->reasons[rd->nreasons] = '\0';

        rd->next = (rd->next + 1) % rd->conf.nsentinels;

        if (++rd->tried < rd->conf.nsentinels) {
            delay = 1;
            tell = 0;

        } else {
            rd->tried = 0;

            p = ngx_snprintf((u_char *) rd->error, sizeof(rd->error) - 1,
                             "no master for '%V' (sentinels: %s)",
                             &rd->conf.master_name, rd->reasons);
            *p = '\0';

            ngx_log_error(NGX_LOG_WARN, rd->conf.log, 0,
                          "zmq redis (%s): no master for '%V' (sentinels: "
                          "%s)", rd->conf.name, &rd->conf.master_name,
                          rd->reasons);
        }
    }

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    ngx_add_timer(&rd->timer, delay ? delay
                                    : ngx_zmq_backoff_next(&rd->backoff));

    if (tell && rd->conf.disconnected) {
        rd->conf.disconnected(rd, rd->conf.data);
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
    if (rd->asking) {
        return NGX_DECLINED;    /* a sentinel, not the store */
    }

    /*
     * not until connected (TCP, TLS): AUTH, SELECT and ROLE are queued
     * first, by ngx_zmq_redis_established(), so no caller's command can
     * go out before them, whenever it checked ngx_zmq_redis_connected()
     */
    if (!rd->ready) {
        return NGX_DECLINED;
    }

    return ngx_zmq_redis_send(rd, argc, argv, argvlen, handler, data);
}


static ngx_int_t
ngx_zmq_redis_send(ngx_zmq_redis_t *rd, int argc, const char **argv,
    const size_t *argvlen, ngx_zmq_redis_reply_pt handler, void *data)
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
        p->deadline = ngx_current_msec
                      + (rd->asking ? ngx_min(rd->conf.timeout,
                                              NGX_ZMQ_REDIS_SENTINEL_TIMEOUT)
                                    : rd->conf.timeout);
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
    char     reason[sizeof(rd->error)], shown[ZGW_SHOW_SIZE];

    if (reply == NULL
        || (reply->type == REDIS_REPLY_STATUS && reply->len == 2
            && ngx_strncmp(reply->str, "OK", 2) == 0))
    {
        return;
    }

    /* one line: whatever the server said, printable and cut */
    p = ngx_snprintf((u_char *) reason, sizeof(reason) - 1, "%s failed: %s",
                     (char *) data,
                     zgw_show(shown, sizeof(shown), reply->str,
                              reply->type == REDIS_REPLY_ERROR
                              || reply->type == REDIS_REPLY_STATUS
                              ? reply->len : 0));
    *p = '\0';

    ngx_zmq_redis_close(rd, reason);
}


static void
ngx_zmq_redis_established(ngx_zmq_redis_t *rd)
{
    u_char       db[NGX_INT_T_LEN];
    size_t       len[3];
    const char  *argv[3];

    rd->ready = 1;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    if (rd->asking) {
        /* a sentinel: no AUTH (the credentials are the master's) */
        argv[0] = "SENTINEL";
        len[0] = 8;
        argv[1] = "get-master-addr-by-name";
        len[1] = sizeof("get-master-addr-by-name") - 1;
        argv[2] = (char *) rd->conf.master_name.data;
        len[2] = rd->conf.master_name.len;

        if (ngx_zmq_redis_send(rd, 3, argv, len, ngx_zmq_redis_master_named,
                               NULL)
            != NGX_OK)
        {
            ngx_zmq_redis_close(rd, "out of memory");
            return;
        }

        ngx_zmq_redis_arm(rd);
        return;
    }

    /* with Sentinel, once ROLE says master */
    if (rd->conf.nsentinels == 0 || rd->conf.to_sentinel) {
        ngx_zmq_backoff_reset(&rd->backoff);
    }

    rd->error[0] = '\0';

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

    if (rd->conf.nsentinels && !rd->conf.to_sentinel) {
        /*
         * the master a sentinel named must say so before any other reply
         * is taken (replies come in order): a stale answer, a replica
         */
        argv[0] = "ROLE";
        (void) ngx_zmq_redis_command(rd, 1, argv, NULL, ngx_zmq_redis_role,
                                     NULL);
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


/* a sentinel's answer: the master's address, as an IP */
static void
ngx_zmq_redis_master_named(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    int          port, ipv6;
    char         ip[ZGW_SENTINEL_IP_MAX], why[200];
    ngx_addr_t   a;
    ngx_pool_t  *pool;

    if (reply == NULL) {
        return;                 /* the close says why */
    }

    if (zgw_sentinel_master_reply(reply, (char *) rd->master_name, ip,
                                  sizeof(ip), &port, &ipv6, why,
                                  sizeof(why))
        != 0)
    {
        ngx_zmq_redis_close(rd, why);
        return;
    }

    /* an address (checked above): no resolver */
    pool = ngx_create_pool(NGX_MIN_POOL_SIZE, rd->conf.log);
    if (pool == NULL) {
        ngx_zmq_redis_close(rd, "out of memory");
        return;
    }

    if (ngx_parse_addr(pool, &a, (u_char *) ip, ngx_strlen(ip)) != NGX_OK
        || a.socklen > sizeof(ngx_sockaddr_t))
    {
        ngx_destroy_pool(pool);
        ngx_zmq_redis_close(rd, "named a master that is not an IP "
                                "address");
        return;
    }

    ngx_memcpy(&rd->master_sa, a.sockaddr, a.socklen);
    ngx_destroy_pool(pool);

    rd->master.socklen = a.socklen;
    ngx_inet_set_port(rd->master.sockaddr, (in_port_t) port);
    rd->master.name.len = ngx_sock_ntop(rd->master.sockaddr,
                                        rd->master.socklen, rd->master_text,
                                        sizeof(rd->master_text), 1);

    ngx_log_error(NGX_LOG_INFO, rd->conf.log, 0,
                  "zmq redis %V (%s): the master of '%V' is %V",
                  &rd->conf.addr->name, rd->conf.name,
                  &rd->conf.master_name, &rd->master.name);

    rd->have_master = 1;
    rd->moving = 1;
    ngx_zmq_redis_close(rd, "asked");
}


/* the master a sentinel named says it is one, or it is not used */
static void
ngx_zmq_redis_role(ngx_zmq_redis_t *rd, redisReply *reply, void *data)
{
    char  why[200];

    if (reply == NULL) {
        return;
    }

    if (!zgw_sentinel_is_master(reply, why, sizeof(why))) {
        ngx_zmq_redis_close(rd, why);
        return;
    }

    rd->confirmed = 1;
    rd->tried = 0;
    ngx_zmq_backoff_reset(&rd->backoff);

    ngx_log_error(NGX_LOG_NOTICE, rd->conf.log, 0,
                  "zmq redis %V (%s): the master of '%V', named by sentinel "
                  "%V", &rd->conf.addr->name, rd->conf.name,
                  &rd->conf.master_name,
                  &rd->conf.sentinels[rd->next % rd->conf.nsentinels].name);
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
    char  shown[ZGW_SHOW_SIZE];

    rd->ping_pending = 0;

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->conf.log, 0,
                      "zmq redis %V (%s): PING: %s", &rd->conf.addr->name,
                      rd->conf.name,
                      zgw_show(shown, sizeof(shown), reply->str,
                               reply->len));
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
    char              why[256];
    ngx_zmq_redis_t  *rd = data;

    if (redisReaderFeed(rd->reader, (char *) buf, n) != REDIS_OK) {
        ngx_zmq_redis_close(rd, "out of memory");
        return NGX_ERROR;
    }

    /* a string without end, announced or not (zgw_resp_limit.h) */
    if (!zgw_resp_buffer_ok(rd->reader, &rd->budget, why, sizeof(why))) {
        ngx_zmq_redis_close(rd, why);
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
    ngx_flag_t                     demoted;
    u_char                         buf[16384];
    ngx_connection_t              *c = rev->data;
    ngx_zmq_redis_t               *rd = c->data;
    ngx_zmq_redis_pending_t        p;

    if (!rd->ready) {
        /* a refused connect may be told by the read event first */
        rc = ngx_zmq_socket_error(&rd->sock);
        if (rc) {
            ngx_snprintf((u_char *) rd->error, sizeof(rd->error) - 1,
                         "cannot connect: %s%Z", strerror((int) rc));
            ngx_zmq_redis_close(rd, rd->error);
            return;
        }
    }

    /* parsed after each 1 MiB at most: what the reader holds unparsed
       stays small, however long the reply (zgw_resp_limit.h) */
    rc = ngx_zmq_socket_read(&rd->sock, buf, sizeof(buf), 1024 * 1024,
                             ngx_zmq_redis_input, rd);

    if (rc == NGX_ABORT) {
        return;
    }

    if (rc != NGX_OK && rc != NGX_AGAIN) {
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
            if (!zgw_resp_buffer_ok(rd->reader, &rd->budget, reason,
                                    sizeof(reason)))
            {
                ngx_zmq_redis_close(rd, reason);
                return;
            }

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

            /* a master demoted under us: ask the sentinels again */
            demoted = rd->conf.nsentinels && !rd->conf.to_sentinel
                      && zgw_redis_is_readonly(reply);

            p.handler(rd, reply, p.data);

            if (demoted && rd->sock.connection != NULL) {
                freeReplyObject(reply);
                ngx_zmq_redis_close(rd, "READONLY: the master changed "
                                        "(failover in progress)");
                return;
            }

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
