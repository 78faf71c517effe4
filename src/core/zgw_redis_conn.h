/*
 * ngx_zmq core: a blocking Redis connection, plain (redis://) or TLS
 * (rediss://), for zmqd and zmqctl; never for an NGINX worker.
 *
 * hiredis 0.14 (Debian 12) has no TLS, so the socket is ours and hiredis
 * is only the codec: commands are written by redisvFormatCommand() /
 * redisFormatCommandArgv() and replies read by a redisReader bounded by
 * zgw_resp_limit(). Plain and TLS connections take the same path; only
 * the read and the write differ (recv/send or SSL_read/SSL_write).
 *
 * Every step is bounded as a whole, not each wait in it: the connect and
 * the TLS handshake each take at most the timeout, and so does each
 * command, from when it is sent to when its whole reply is read (a
 * pipeline: all its replies). A server that answers one byte at a time,
 * or streams a reply without end, fails the call at the timeout ("no
 * complete answer within 5000 ms (N bytes came)"), as a silent one does
 * ("no answer within 5000 ms"). A reply may not hold more than 64 MiB
 * unparsed, nor announce a longer string (zgw_resp_limit.h): "reply too
 * large: a bulk string of 999999999 bytes (the bound is 67108864)".
 *
 * The calls mirror hiredis' blocking API (redisCommand(), redisAppend-
 * Command(), redisGetReply(); replies are redisReply, freed with
 * freeReplyObject()). After an I/O or protocol error the connection is
 * broken for good: every later call fails with the same error; close it
 * and connect again.
 */

#ifndef ZGW_REDIS_CONN_H
#define ZGW_REDIS_CONN_H

#include <stdarg.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "zgw_redis_url.h"


typedef struct zgw_redis_conn_s  zgw_redis_conn_t;


/*
 * TCP connect (all addresses of the host within timeout_ms), the TLS
 * handshake for rediss:// (zgw_tls.h: CAs, verification, SNI, client
 * certificate), then AUTH (user and password, or password) and SELECT
 * when the address has them. NULL with err filled, without the address:
 * "cannot connect: Connection refused", "TLS handshake: certificate
 * verify failed: certificate has expired (...)", "AUTH: WRONGPASS ...".
 */
zgw_redis_conn_t *zgw_redis_connect(const zgw_redis_addr_t *addr,
    int timeout_ms, char *err, size_t errlen);
/*
 * redis-sentinel:// (addr->sentinel): each sentinel in turn is asked for
 * the master (SENTINEL get-master-addr-by-name, plain, no AUTH, at most
 * 1 s each); the master it names is connected to (AUTH, SELECT) and must
 * say it is the master (ROLE). A sentinel that does not answer, does not
 * know the name, names something that is not an IP address, or names a
 * replica or a dead server (a stale answer during a failover) sends us to
 * the next one; when none leads to a master: "no master for 'NAME'
 * (sentinels: HOST:PORT: why; ...)". Every call asks again.
 */

/* the same without AUTH and SELECT, for a caller that sends its own (with
   redis-sentinel://, the whole connect above: ROLE needs AUTH) */
zgw_redis_conn_t *zgw_redis_open(const zgw_redis_addr_t *addr,
    int timeout_ms, char *err, size_t errlen);
void zgw_redis_close(zgw_redis_conn_t *c);

/* one command and its reply, or NULL (zgw_redis_error() says why) */
redisReply *zgw_redis_command(zgw_redis_conn_t *c, const char *fmt, ...);
redisReply *zgw_redis_vcommand(zgw_redis_conn_t *c, const char *fmt,
    va_list ap);
redisReply *zgw_redis_command_argv(zgw_redis_conn_t *c, int argc,
    const char **argv, const size_t *argvlen);

/* pipelining: commands are queued, then sent by the first get_reply */
int zgw_redis_append(zgw_redis_conn_t *c, const char *fmt, ...);
int zgw_redis_append_argv(zgw_redis_conn_t *c, int argc, const char **argv,
    const size_t *argvlen);
/* ZGW_OK with the next reply, or ZGW_ERROR */
int zgw_redis_get_reply(zgw_redis_conn_t *c, redisReply **reply);

/* why the connection is broken, or NULL while it is usable */
const char *zgw_redis_error(const zgw_redis_conn_t *c);

/* "TLSv1.3" for a TLS connection, NULL for a plain one */
const char *zgw_redis_tls_version(const zgw_redis_conn_t *c);

/* the reply budget (zgw_resp_limit.h), for a test to lower */
void zgw_redis_set_max_slots(zgw_redis_conn_t *c, size_t max);
void zgw_redis_set_max_buffer(zgw_redis_conn_t *c, size_t max);

#endif /* ZGW_REDIS_CONN_H */
