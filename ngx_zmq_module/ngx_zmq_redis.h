
/*
 * ngx_zmq: a Redis client driven by the NGINX event loop.
 *
 * NGINX owns the socket; hiredis is only the codec (redisFormatCommandArgv
 * to encode, redisReader to decode). hiredis 0.14's own async API resolves
 * the host with getaddrinfo() when it connects, which a worker must not do:
 * here the address is resolved when the configuration is read.
 */


#ifndef _NGX_ZMQ_REDIS_H_INCLUDED_
#define _NGX_ZMQ_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>

#include "ngx_zmq_tls.h"


typedef struct ngx_zmq_redis_s       ngx_zmq_redis_t;

/* reply is NULL when the command failed (connection lost, timed out) */
typedef void (*ngx_zmq_redis_reply_pt)(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
typedef void (*ngx_zmq_redis_event_pt)(ngx_zmq_redis_t *rd,
    void *data);


typedef struct {
    ngx_addr_t                    *addr;
    ngx_str_t                      username;      /* ACL user, or empty */
    ngx_str_t                      password;
    ngx_int_t                      db;
    ngx_msec_t                     timeout;       /* per command */
    ngx_msec_t                     ping;          /* PING period, 0: none */
    ngx_flag_t                     subscriber;    /* messages are pushes */
    const char                    *name;          /* in log lines */
    ngx_zmq_redis_event_pt         connected;
    ngx_zmq_redis_event_pt         disconnected;
    ngx_zmq_redis_reply_pt         push;
    void                          *data;
    ngx_log_t                     *log;

    /* rediss://: the context (the client takes its own reference) and the
       name sent as SNI and checked (copied) */
    ngx_zmq_tls_ctx_t             *tls;
    ngx_str_t                      tls_name;

    /*
     * redis-sentinel:// (addr is then NULL): the sentinels, resolved when
     * the configuration was read (kept, not copied), and the master's name
     * (copied). Each connection first asks a sentinel for the master
     * (SENTINEL get-master-addr-by-name, no AUTH, 1 s), connects to the
     * address it names (an IP: ngx_parse_addr, no resolver), and checks
     * ROLE before any other reply is taken; a sentinel that does not
     * answer, does not know the name, or names something that is not an
     * IP, a dead server or a replica sends it to the next sentinel; when
     * none leads to a master the connection fails ("no master for 'NAME'
     * (sentinels: ...)") and is retried with backoff. Every reconnect
     * asks again, and so does a READONLY answer (a demoted master).
     * With to_sentinel, the connection is to the sentinels themselves,
     * each in turn (to SUBSCRIBE to their events).
     */
    ngx_addr_t                    *sentinels;
    ngx_uint_t                     nsentinels;
    ngx_str_t                      master_name;
    ngx_flag_t                     to_sentinel;
} ngx_zmq_redis_conf_t;


ngx_zmq_redis_t *ngx_zmq_redis_create(
    ngx_zmq_redis_conf_t *conf);
/*
 * Connects now, and after any loss with backoff (100 ms doubling to 5 s).
 * With conf.ping, a PING is sent every conf.ping ms and has the command
 * deadline like any command, so a peer that stops answering (host gone,
 * process stopped, a network that drops packets silently) is noticed even
 * on a connection that otherwise only listens. A subscriber's "message"
 * and "pmessage" replies go to conf.push; its other replies (to SUBSCRIBE
 * and PING) answer the commands in order, like any connection's.
 */
void ngx_zmq_redis_start(ngx_zmq_redis_t *rd);
/*
 * Queues a command: NGX_OK; NGX_DECLINED when the connection is not
 * ready (connecting, in its TLS handshake, asking a sentinel, closed) or
 * too many commands wait; NGX_ERROR (out of memory). The first commands
 * of a connection are always its AUTH, SELECT and ROLE.
 */
ngx_int_t ngx_zmq_redis_command(ngx_zmq_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen,
    ngx_zmq_redis_reply_pt handler, void *data);
ngx_flag_t ngx_zmq_redis_connected(ngx_zmq_redis_t *rd);
/*
 * With Sentinel: 1 when the connection is up to the master at ip
 * (an IPv4 or IPv6 address) and port, and ROLE said it is the master.
 */
ngx_flag_t ngx_zmq_redis_on_master(ngx_zmq_redis_t *rd, const char *ip,
    ngx_uint_t port);
/*
 * Closes the connection as lost (pending commands fail, disconnected is
 * called) and connects again at once: with Sentinel, asking for the
 * master again (on +switch-master).
 */
void ngx_zmq_redis_reconnect(ngx_zmq_redis_t *rd, const char *reason);
const char *ngx_zmq_redis_error(ngx_zmq_redis_t *rd);
void ngx_zmq_redis_destroy(ngx_zmq_redis_t *rd);


#endif /* _NGX_ZMQ_REDIS_H_INCLUDED_ */
