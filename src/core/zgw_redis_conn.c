/*
 * ngx_zmq core: a blocking Redis connection, plain or TLS (see
 * zgw_redis_conn.h).
 */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "zgw_err.h"
#include "zgw_net.h"
#include "zgw_redis_conn.h"
#include "zgw_resp_limit.h"
#include "zgw_sentinel.h"
#include "zgw_tls.h"


#define ZGW_REDIS_READ  16384             /* as hiredis reads */
#define ZGW_SENTINEL_TIMEOUT_MS  1000     /* each sentinel, at most */


struct zgw_redis_conn_s {
    int                 fd;
    int                 timeout;          /* ms, each command as a whole */
    double              deadline;         /* of the replies awaited, or 0 */
    size_t              pending;          /* commands not answered yet */
    size_t              got;              /* bytes read since the deadline */
    SSL_CTX            *ctx;
    SSL                *ssl;              /* NULL: plain */
    redisReader        *reader;
    zgw_resp_budget_t   budget;
    char               *obuf;             /* commands not sent yet */
    size_t              olen;
    size_t              ocap;
    int                 err;
    char                errstr[512];
};


static void zgw_redis_fail(zgw_redis_conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int zgw_redis_queue(zgw_redis_conn_t *c, char *cmd, int len);
static int zgw_redis_wait(zgw_redis_conn_t *c, short events,
    const char *what);
static int zgw_redis_flush(zgw_redis_conn_t *c);
static int zgw_redis_fill(zgw_redis_conn_t *c);
static int zgw_redis_auth(zgw_redis_conn_t *c, const zgw_redis_addr_t *a,
    char *err, size_t errlen);
static void zgw_redis_tls_fail(zgw_redis_conn_t *c, int e,
    const char *what);
static zgw_redis_conn_t *zgw_redis_sentinel(const zgw_redis_addr_t *addr,
    int timeout_ms, char *err, size_t errlen);


static void
zgw_redis_fail(zgw_redis_conn_t *c, const char *fmt, ...)
{
    va_list  ap;

    if (c->err) {
        return;                         /* the first reason stays */
    }

    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);

    c->err = 1;
}


zgw_redis_conn_t *
zgw_redis_connect(const zgw_redis_addr_t *addr, int timeout_ms, char *err,
    size_t errlen)
{
    zgw_redis_conn_t  *c;

    if (addr->sentinel) {
        return zgw_redis_sentinel(addr, timeout_ms, err, errlen);
    }

    c = zgw_redis_open(addr, timeout_ms, err, errlen);

    if (c != NULL && zgw_redis_auth(c, addr, err, errlen) != ZGW_OK) {
        zgw_redis_close(c);
        return NULL;
    }

    return c;
}


zgw_redis_conn_t *
zgw_redis_open(const zgw_redis_addr_t *addr, int timeout_ms, char *err,
    size_t errlen)
{
    char               why[512];
    zgw_tls_opts_t     o;
    zgw_redis_conn_t  *c;

    if (addr->sentinel) {
        /* the ROLE check needs AUTH: the whole connect */
        return zgw_redis_sentinel(addr, timeout_ms, err, errlen);
    }

    c = calloc(1, sizeof(zgw_redis_conn_t));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    c->fd = -1;
    c->timeout = timeout_ms > 0 ? timeout_ms : 1;

    c->reader = redisReaderCreate();
    if (c->reader == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    zgw_resp_limit(c->reader, &c->budget);

    c->fd = zgw_tcp_connect(addr->host, addr->port, c->timeout, why,
                            sizeof(why));
    if (c->fd == -1) {
        snprintf(err, errlen, "cannot connect: %s", why);
        goto failed;
    }

    if (addr->tls) {
        zgw_tls_opts_redis(&o, addr);

        c->ctx = zgw_tls_ctx_new(&o, err, errlen);
        if (c->ctx == NULL) {
            goto failed;
        }

        c->ssl = zgw_tls_connect(c->ctx, c->fd, c->timeout, err, errlen);
        if (c->ssl == NULL) {
            goto failed;
        }
    }

    return c;

failed:

    zgw_redis_close(c);
    return NULL;
}


/*
 * redis-sentinel://: each sentinel in turn is asked for the master (plain,
 * no AUTH, a short timeout); the master it names is connected to (AUTH,
 * SELECT) and must say it is the master (ROLE): a sentinel that does not
 * answer, does not know the name, or names a replica or a dead master (a
 * failover in progress, a stale answer) sends us to the next one.
 */
static zgw_redis_conn_t *
zgw_redis_sentinel(const zgw_redis_addr_t *addr, int timeout_ms, char *err,
    size_t errlen)
{
    int                 i, n, port, ipv6, stimeout;
    char                why[512], ip[ZGW_SENTINEL_IP_MAX], where[300];
    char                reasons[1024];
    size_t              len;
    redisReply         *r;
    zgw_redis_addr_t   *a;
    zgw_redis_conn_t   *s, *c;

    /* big: on the heap, and wiped (it holds the password) */
    a = malloc(sizeof(zgw_redis_addr_t));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    stimeout = timeout_ms < ZGW_SENTINEL_TIMEOUT_MS && timeout_ms > 0
               ? timeout_ms : ZGW_SENTINEL_TIMEOUT_MS;

    reasons[0] = '\0';
    len = 0;
    c = NULL;

    for (i = 0; i < addr->nsentinels && i < ZGW_SENTINELS_MAX; i++) {

        snprintf(where, sizeof(where), "%s%s%s:%d",
                 addr->sentinels[i].ipv6 ? "[" : "", addr->sentinels[i].host,
                 addr->sentinels[i].ipv6 ? "]" : "", addr->sentinels[i].port);

        /* the sentinel: plain, no credentials */
        memset(a, 0, sizeof(zgw_redis_addr_t));
        memcpy(a->host, addr->sentinels[i].host, sizeof(a->host));
        a->port = addr->sentinels[i].port;
        a->ipv6 = addr->sentinels[i].ipv6;

        s = zgw_redis_open(a, stimeout, why, sizeof(why));

        if (s != NULL) {
            r = zgw_redis_command(s, "SENTINEL get-master-addr-by-name %s",
                                  addr->master_name);
            if (r == NULL) {
                snprintf(why, sizeof(why), "%s", zgw_redis_error(s));

            } else {
                if (zgw_sentinel_master_reply(r, addr->master_name, ip,
                                              sizeof(ip), &port, &ipv6, why,
                                              sizeof(why))
                    != 0)
                {
                    freeReplyObject(r);
                    r = NULL;
                }
            }

            zgw_redis_close(s);

        } else {
            r = NULL;
        }

        if (r != NULL) {
            freeReplyObject(r);

            /* the master: as the URL says, at the address named */
            memcpy(a, addr, sizeof(zgw_redis_addr_t));
            a->sentinel = 0;
            a->tls = 0;
            snprintf(a->host, sizeof(a->host), "%s", ip);
            a->port = port;
            a->ipv6 = ipv6;

            c = zgw_redis_connect(a, timeout_ms, why, sizeof(why));

            if (c != NULL) {
                r = zgw_redis_command(c, "ROLE");
                n = zgw_sentinel_is_master(r, why, sizeof(why));
                if (r == NULL) {
                    snprintf(why, sizeof(why), "ROLE: %.400s",
                             zgw_redis_error(c));
                }
                if (r != NULL) {
                    freeReplyObject(r);
                }
                if (n) {
                    break;
                }
                zgw_redis_close(c);
                c = NULL;
            }

            /* "master 10.0.0.5:6379: a replica, not the master" */
            n = snprintf(reasons + len, sizeof(reasons) - len,
                         "%s%s: master %s%s%s:%d: %s", len ? "; " : "",
                         where, ipv6 ? "[" : "", ip, ipv6 ? "]" : "", port,
                         why);

        } else {
            n = snprintf(reasons + len, sizeof(reasons) - len, "%s%s: %s",
                         len ? "; " : "", where, why);
        }

        if (n > 0) {
            len += (size_t) n;
            if (len >= sizeof(reasons)) {
                len = sizeof(reasons) - 1;
            }
        }
    }

    OPENSSL_cleanse(a, sizeof(zgw_redis_addr_t));
    free(a);

    if (c == NULL) {
        snprintf(err, errlen, "no master for '%s' (sentinels: %s)",
                 addr->master_name, reasons);
    }

    return c;
}


/* AUTH and SELECT, pipelined */
static int
zgw_redis_auth(zgw_redis_conn_t *c, const zgw_redis_addr_t *a, char *err,
    size_t errlen)
{
    int           i, n;
    char          shown[ZGW_SHOW_SIZE];
    const char   *what[2];
    redisReply   *r;

    n = 0;

    if (a->username[0]) {
        what[n++] = "AUTH";
        (void) zgw_redis_append(c, "AUTH %s %s", a->username, a->password);

    } else if (a->password[0]) {
        what[n++] = "AUTH";
        (void) zgw_redis_append(c, "AUTH %s", a->password);
    }

    if (a->db) {
        what[n++] = "SELECT";
        (void) zgw_redis_append(c, "SELECT %d", a->db);
    }

    for (i = 0; i < n; i++) {
        if (zgw_redis_get_reply(c, &r) != ZGW_OK) {
            snprintf(err, errlen, "%s: %s", what[i], c->errstr);
            return ZGW_ERROR;
        }

        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "%s: %s", what[i],
                     zgw_show(shown, sizeof(shown), r->str, r->len));
            freeReplyObject(r);
            return ZGW_ERROR;
        }

        freeReplyObject(r);
    }

    /* the formatted AUTH held the password */
    if (c->obuf != NULL) {
        OPENSSL_cleanse(c->obuf, c->ocap);
    }

    return ZGW_OK;
}


void
zgw_redis_close(zgw_redis_conn_t *c)
{
    if (c == NULL) {
        return;
    }

    if (c->ssl != NULL) {
        /* close_notify, once: nothing waits for the server's */
        if (!c->err) {
            (void) SSL_shutdown(c->ssl);
        }
        SSL_free(c->ssl);
        ERR_clear_error();
    }

    SSL_CTX_free(c->ctx);

    if (c->fd != -1) {
        close(c->fd);
    }

    if (c->reader != NULL) {
        redisReaderFree(c->reader);
    }

    if (c->obuf != NULL) {
        OPENSSL_cleanse(c->obuf, c->ocap);
        free(c->obuf);
    }

    free(c);
}


const char *
zgw_redis_error(const zgw_redis_conn_t *c)
{
    return c->err ? c->errstr : NULL;
}


const char *
zgw_redis_tls_version(const zgw_redis_conn_t *c)
{
    return c->ssl != NULL ? SSL_get_version(c->ssl) : NULL;
}


void
zgw_redis_set_max_slots(zgw_redis_conn_t *c, size_t max)
{
    c->budget.max = max;
}


void
zgw_redis_set_max_buffer(zgw_redis_conn_t *c, size_t max)
{
    c->budget.max_buffer = max;
}


/* takes a command formatted by hiredis (malloc'd) into the output buffer */
static int
zgw_redis_queue(zgw_redis_conn_t *c, char *cmd, int len)
{
    char    *nb;
    size_t   cap;

    if (len < 0 || cmd == NULL) {
        zgw_redis_fail(c, "cannot format the command (out of memory?)");
        return ZGW_ERROR;
    }

    if (c->olen + (size_t) len > c->ocap) {
        cap = c->ocap ? c->ocap : 1024;
        while (cap < c->olen + (size_t) len) {
            cap *= 2;
        }

        nb = malloc(cap);
        if (nb == NULL) {
            OPENSSL_cleanse(cmd, (size_t) len);
            redisFreeCommand(cmd);
            zgw_redis_fail(c, "out of memory");
            return ZGW_ERROR;
        }

        if (c->obuf != NULL) {
            memcpy(nb, c->obuf, c->olen);
            OPENSSL_cleanse(c->obuf, c->ocap);
            free(c->obuf);
        }

        c->obuf = nb;
        c->ocap = cap;
    }

    memcpy(c->obuf + c->olen, cmd, (size_t) len);
    c->olen += (size_t) len;
    c->pending++;

    OPENSSL_cleanse(cmd, (size_t) len);
    redisFreeCommand(cmd);
    return ZGW_OK;
}


int
zgw_redis_append(zgw_redis_conn_t *c, const char *fmt, ...)
{
    int       len;
    char     *cmd;
    va_list   ap;

    if (c->err) {
        return ZGW_ERROR;
    }

    cmd = NULL;
    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);

    return zgw_redis_queue(c, cmd, len);
}


int
zgw_redis_append_argv(zgw_redis_conn_t *c, int argc, const char **argv,
    const size_t *argvlen)
{
    int    len;
    char  *cmd;

    if (c->err) {
        return ZGW_ERROR;
    }

    cmd = NULL;
    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);

    return zgw_redis_queue(c, cmd, len);
}


/*
 * A wait for the socket, until the deadline of the replies awaited (not
 * a timeout of its own: a server that sends a byte now and then must not
 * keep us forever): ZGW_OK when it is ready.
 */
static int
zgw_redis_wait(zgw_redis_conn_t *c, short events, const char *what)
{
    int  rc, left;

    left = c->deadline > 0 ? zgw_ms_left(c->deadline) : c->timeout;

    rc = left > 0 ? zgw_wait_fd(c->fd, events, left) : 0;

    if (rc > 0) {
        return ZGW_OK;
    }

    if (rc == 0 && c->got > 0) {
        zgw_redis_fail(c, "no complete %s within %d ms (%zu bytes came)",
                       what, c->timeout, c->got);

    } else if (rc == 0) {
        zgw_redis_fail(c, "no %s within %d ms", what, c->timeout);

    } else {
        zgw_redis_fail(c, "%s", strerror(errno));
    }

    return ZGW_ERROR;
}


/*
 * A TLS read or write failed. A server that refuses the connection after
 * the handshake (TLS 1.3: a client certificate it requires) sends an
 * alert and closes; a write of ours then fails with a reset while the
 * alert waits unread: one more read finds it, and its reason is the one
 * to give.
 */
static void
zgw_redis_tls_fail(zgw_redis_conn_t *c, int e, const char *what)
{
    int            err_no;
    char           why[512], first[512], b[256];
    unsigned long  code;

    err_no = errno;
    code = ERR_peek_last_error();

    if (code != 0 && !ERR_SYSTEM_ERROR(code)) {
        /* OpenSSL's own reason: an alert, a protocol error */
        zgw_redis_fail(c, "TLS: %s", zgw_tls_why(c->ctx, what, why,
                                                 sizeof(why)));
        ERR_clear_error();
        return;
    }

    if (e == SSL_ERROR_SYSCALL && code == 0) {
        snprintf(first, sizeof(first), "%s",
                 err_no ? strerror(err_no) : "Server closed the connection");
    } else {
        ERR_error_string_n(code, first, sizeof(first));
        if (ERR_reason_error_string(code) != NULL) {
            snprintf(first, sizeof(first), "%s",
                     ERR_reason_error_string(code));
        }
    }

    ERR_clear_error();
    (void) SSL_read(c->ssl, b, sizeof(b));
    code = ERR_peek_last_error();

    if (code != 0 && !ERR_SYSTEM_ERROR(code)) {
        zgw_redis_fail(c, "TLS: %s", zgw_tls_why(c->ctx, what, why,
                                                 sizeof(why)));

    } else if (zgw_tls_asked(c->ctx)) {
        ERR_clear_error();
        zgw_redis_fail(c, "TLS: %s (%s)",
                       zgw_tls_why(c->ctx, what, why, sizeof(why)), first);

    } else {
        zgw_redis_fail(c, "TLS: %s", first);
    }

    ERR_clear_error();
}


/* sends what is queued */
static int
zgw_redis_flush(zgw_redis_conn_t *c)
{
    int      e;
    size_t   off;
    ssize_t  n;

    off = 0;

    while (off < c->olen) {
        if (c->ssl != NULL) {
            ERR_clear_error();
            n = SSL_write(c->ssl, c->obuf + off, (int) (c->olen - off));

            if (n <= 0) {
                e = SSL_get_error(c->ssl, (int) n);

                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    if (zgw_redis_wait(c, e == SSL_ERROR_WANT_WRITE
                                          ? POLLOUT : POLLIN,
                                       "progress writing")
                        != ZGW_OK)
                    {
                        return ZGW_ERROR;
                    }
                    continue;
                }

                zgw_redis_tls_fail(c, e, "write failed");
                return ZGW_ERROR;
            }

        } else {
            n = send(c->fd, c->obuf + off, c->olen - off, MSG_NOSIGNAL);

            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }

                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    if (zgw_redis_wait(c, POLLOUT, "progress writing")
                        != ZGW_OK)
                    {
                        return ZGW_ERROR;
                    }
                    continue;
                }

                zgw_redis_fail(c, "%s", strerror(errno));
                return ZGW_ERROR;
            }
        }

        off += (size_t) n;
    }

    OPENSSL_cleanse(c->obuf, c->olen);
    c->olen = 0;
    return ZGW_OK;
}


/* reads what the server has sent (waiting for it) into the reader */
static int
zgw_redis_fill(zgw_redis_conn_t *c)
{
    int      e;
    char     buf[ZGW_REDIS_READ];
    ssize_t  n;

    for ( ;; ) {
        if (c->ssl != NULL) {
            ERR_clear_error();
            n = SSL_read(c->ssl, buf, sizeof(buf));

            if (n <= 0) {
                e = SSL_get_error(c->ssl, (int) n);

                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    if (zgw_redis_wait(c, e == SSL_ERROR_WANT_READ
                                          ? POLLIN : POLLOUT,
                                       "answer")
                        != ZGW_OK)
                    {
                        return ZGW_ERROR;
                    }
                    continue;
                }

                if (e == SSL_ERROR_ZERO_RETURN
                    || (e == SSL_ERROR_SYSCALL && errno == 0
                        && ERR_peek_last_error() == 0))
                {
                    zgw_redis_fail(c, "Server closed the connection");

                } else {
                    zgw_redis_tls_fail(c, e, "read failed");
                }

                return ZGW_ERROR;
            }

        } else {
            n = recv(c->fd, buf, sizeof(buf), 0);

            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }

                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    if (zgw_redis_wait(c, POLLIN, "answer") != ZGW_OK) {
                        return ZGW_ERROR;
                    }
                    continue;
                }

                zgw_redis_fail(c, "%s", strerror(errno));
                return ZGW_ERROR;
            }

            if (n == 0) {
                zgw_redis_fail(c, "Server closed the connection");
                return ZGW_ERROR;
            }
        }

        if (redisReaderFeed(c->reader, buf, (size_t) n) != REDIS_OK) {
            zgw_redis_fail(c, "%s", c->reader->errstr);
            return ZGW_ERROR;
        }

        c->got += (size_t) n;
        return ZGW_OK;
    }
}


int
zgw_redis_get_reply(zgw_redis_conn_t *c, redisReply **reply)
{
    char   why[256];
    void  *r;

    *reply = NULL;

    if (c->err) {
        return ZGW_ERROR;
    }

    r = NULL;

    /* a reply to an earlier command of a pipeline may be read already */
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
        zgw_redis_fail(c, "%s", c->reader->errstr);
        return ZGW_ERROR;
    }

    if (r == NULL && (c->olen > 0 || c->deadline == 0)) {
        /* commands go out: the timeout covers them and all the replies */
        c->deadline = zgw_now_ms() + c->timeout;
        c->got = 0;

        if (c->olen > 0 && zgw_redis_flush(c) != ZGW_OK) {
            return ZGW_ERROR;
        }
    }

    while (r == NULL) {
        /* a server that keeps sending is bounded too, not only a slow one */
        if (c->deadline > 0 && zgw_ms_left(c->deadline) == 0) {
            zgw_redis_fail(c, "no complete answer within %d ms (%zu bytes "
                           "came)", c->timeout, c->got);
            return ZGW_ERROR;
        }

        if (zgw_redis_fill(c) != ZGW_OK) {
            return ZGW_ERROR;
        }

        if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
            zgw_redis_fail(c, "%s", c->reader->errstr);
            return ZGW_ERROR;
        }

        /* a string without end, announced or not (parsed after each read:
           what is left unparsed is the element being read) */
        if (r == NULL
            && !zgw_resp_buffer_ok(c->reader, &c->budget, why, sizeof(why)))
        {
            zgw_redis_fail(c, "%s", why);
            return ZGW_ERROR;
        }
    }

    if (c->pending > 0) {
        c->pending--;
    }

    if (c->pending == 0) {
        c->deadline = 0;
    }

    *reply = r;
    return ZGW_OK;
}


redisReply *
zgw_redis_vcommand(zgw_redis_conn_t *c, const char *fmt, va_list ap)
{
    int          len;
    char        *cmd;
    redisReply  *r;

    if (c->err) {
        return NULL;
    }

    cmd = NULL;
    len = redisvFormatCommand(&cmd, fmt, ap);

    if (zgw_redis_queue(c, cmd, len) != ZGW_OK
        || zgw_redis_get_reply(c, &r) != ZGW_OK)
    {
        return NULL;
    }

    return r;
}


redisReply *
zgw_redis_command(zgw_redis_conn_t *c, const char *fmt, ...)
{
    va_list      ap;
    redisReply  *r;

    va_start(ap, fmt);
    r = zgw_redis_vcommand(c, fmt, ap);
    va_end(ap);

    return r;
}


redisReply *
zgw_redis_command_argv(zgw_redis_conn_t *c, int argc, const char **argv,
    const size_t *argvlen)
{
    redisReply  *r;

    if (zgw_redis_append_argv(c, argc, argv, argvlen) != ZGW_OK
        || zgw_redis_get_reply(c, &r) != ZGW_OK)
    {
        return NULL;
    }

    return r;
}
