
/*
 * ngx_zmq: an AMQP 0-9-1 publisher driven by the NGINX event loop.
 *
 * NGINX owns the socket; rabbitmq-c is only the codec. One connection per
 * worker and outgoing connection, with publisher confirms on channel 1,
 * and (once an rpc asks) a consumer of RabbitMQ's direct reply-to on the
 * same channel, whose replies are matched to their requests by
 * correlation id.
 */


#ifndef _NGX_ZMQ_AMQP_H_INCLUDED_
#define _NGX_ZMQ_AMQP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "ngx_zmq_tls.h"
#include "ngx_http_zmq_probe.h"


typedef enum {
    NGX_ZMQ_AMQP_IDLE = 0,          /* not started (inactive) */
    NGX_ZMQ_AMQP_CONNECTING,        /* TCP connect and handshake */
    NGX_ZMQ_AMQP_READY,
    NGX_ZMQ_AMQP_BLOCKED,           /* connection.blocked */
    NGX_ZMQ_AMQP_BACKOFF                 /* waiting to reconnect */
} ngx_zmq_amqp_state_e;


typedef enum {
    NGX_HTTP_ZMQ_PUB_ACKED = 0,          /* the broker has the message */
    NGX_HTTP_ZMQ_PUB_WRITTEN,            /* written; no confirm awaited */
    NGX_HTTP_ZMQ_PUB_NACKED,
    NGX_HTTP_ZMQ_PUB_RETURNED,           /* unroutable, mandatory */
    NGX_HTTP_ZMQ_PUB_LOST,               /* connection or channel lost */
    NGX_HTTP_ZMQ_PUB_TIMEDOUT
} ngx_http_zmq_pub_result_e;


/* holds any name the model accepts (ZGW_NAME_MAX) and its NUL, whole */
#define NGX_HTTP_ZMQ_NAME_LEN        256

/*
 * The most messages in flight on one connection, whatever max_inflight
 * says (a warning is logged): each in flight holds about 200 bytes.
 */
#define NGX_HTTP_ZMQ_MAX_INFLIGHT    65536


/* per worker and outgoing connection; kept in shared memory for status */
typedef struct {
    u_char                       name[NGX_HTTP_ZMQ_NAME_LEN];
    ngx_atomic_t                 used;
    ngx_atomic_t                 draining;
    ngx_atomic_t                 generation;   /* the worker's n-th open */
    ngx_atomic_t                 pid;
    ngx_atomic_t                 state;
    ngx_atomic_t                 inflight;
    ngx_atomic_t                 published;
    ngx_atomic_t                 confirmed;
    ngx_atomic_t                 nacked;
    ngx_atomic_t                 returned;
    ngx_atomic_t                 timed_out;
    ngx_atomic_t                 lost;
    ngx_atomic_t                 rejected;     /* 503 without publishing */
    ngx_atomic_t                 reconnects;
    ngx_atomic_t                 rpc_requests;  /* published, reply awaited */
    ngx_atomic_t                 rpc_waiting;   /* awaiting now */
    ngx_atomic_t                 rpc_replies;   /* matched and well-formed */
    ngx_atomic_t                 rpc_timeouts;  /* no reply in time */
    ngx_atomic_t                 rpc_late;      /* for no one waiting */
    ngx_atomic_t                 rpc_bad;       /* malformed, or too large */
    ngx_atomic_t                 rpc_lost;      /* the link closed first */
    ngx_atomic_t                 verified;      /* TLS: the certificate */
    u_char                       tls[16];       /* "TLSv1.3"; "": none */
    u_char                       last_error[192];  /* why the last attempt
                                                      or connection ended;
                                                      "" once ready */
} ngx_zmq_amqp_stats_t;


/* an outgoing connection as configured (from amqp_outconn + amqp_def) */
typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    def_name;
    ngx_flag_t                   active;

    ngx_addr_t                  *addrs;
    ngx_uint_t                   naddrs;

    ngx_str_t                    vhost;
    ngx_str_t                    username;
    ngx_str_t                    password;
    ngx_uint_t                   heartbeat;     /* seconds */
    ngx_uint_t                   frame_max;

    /* message defaults */
    ngx_int_t                    delivery_mode;
    ngx_int_t                    priority;      /* -1: not set */
    ngx_int_t                    expiration;    /* -1: not set */
    ngx_str_t                    content_type;
    ngx_str_t                    content_encoding;
    ngx_str_t                    user_id;
    ngx_str_t                    app_id;
    ngx_uint_t                   max_inflight;
    ngx_flag_t                   use_jms;       /* the def's: JMS headers */

    /*
     * TLS (the def's tls): tls_ctx is a reference held by whoever holds
     * this configuration; NULL with tls set: it could not be made, and
     * tls_error says why (the connection then stays idle).
     */
    ngx_flag_t                   tls;
    ngx_zmq_tls_ctx_t           *tls_ctx;
    ngx_str_t                    tls_error;
    ngx_str_t                    server_name;   /* empty: each address's */
    ngx_str_t                   *tls_hosts;     /* per address: the host
                                                   it was configured as */
} ngx_http_zmq_outconn_conf_t;


typedef struct ngx_zmq_amqp_conn_s       ngx_zmq_amqp_conn_t;
typedef struct ngx_http_zmq_pub_s        ngx_http_zmq_pub_t;
typedef struct ngx_zmq_amqp_rpc_s        ngx_zmq_amqp_rpc_t;

typedef void (*ngx_http_zmq_pub_done_pt)(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);


/* one message between publish and the broker's answer */
struct ngx_http_zmq_pub_s {
    uint64_t                     tag;
    ngx_zmq_amqp_conn_t         *conn;
    void                        *data;          /* the request's handle */
    ngx_http_zmq_pub_done_pt     done;
    ngx_event_t                  timer;
    uint64_t                     end;           /* stream offset after it */
    uint64_t                     body_len;
    ngx_http_zmq_pub_t          *next;          /* in the free list */
    unsigned                     in_use:1;
    unsigned                     wait_confirm:1;
    unsigned                     answered:1;
    unsigned                     returned:1;
    unsigned                     mandatory:1;
    NGX_HTTP_ZMQ_PROBE_FIELD
};


/*
 * Request/reply over RabbitMQ's direct reply-to. A reply's body is taken
 * up to NGX_ZMQ_AMQP_REPLY_MAX bytes; a larger one is read past, never
 * buffered, and its request told so.
 */

#define NGX_ZMQ_AMQP_REPLY_MAX       (16 * 1024 * 1024)
#define NGX_ZMQ_AMQP_REPLY_TO        "amq.rabbitmq.reply-to"
#define NGX_ZMQ_AMQP_STATUS_HEADER   "x-zmq-status"


typedef enum {
    NGX_ZMQ_AMQP_REPLY_OK = 0,
    NGX_ZMQ_AMQP_REPLY_LOST,             /* the connection closed first */
    NGX_ZMQ_AMQP_REPLY_TOO_LARGE,        /* over NGX_ZMQ_AMQP_REPLY_MAX */
    NGX_ZMQ_AMQP_REPLY_BAD_STATUS,       /* x-zmq-status not 200-599 */
    NGX_ZMQ_AMQP_REPLY_BAD_HEADERS,      /* a table the walker refused */
    NGX_ZMQ_AMQP_REPLY_BAD_TYPE          /* content_type unfit for HTTP */
} ngx_zmq_amqp_reply_e;


typedef struct {
    ngx_zmq_amqp_reply_e         result;
    ngx_uint_t                   status;        /* 200 when absent */
    ngx_str_t                    content_type;  /* empty: none given */
    u_char                      *body;          /* ngx_alloc()ed: the
                                                   handler may take it
                                                   (then sets it NULL) */
    size_t                       len;
} ngx_zmq_amqp_reply_t;


/* called once per waiter, from the event loop; reply's strings are lent */
typedef void (*ngx_zmq_amqp_reply_pt)(ngx_zmq_amqp_rpc_t *rpc,
    ngx_zmq_amqp_reply_t *reply);


/* a request waiting for its reply: the caller's memory, see rpc_cancel() */
struct ngx_zmq_amqp_rpc_s {
    ngx_str_node_t               sn;            /* sn.str: correlation id,
                                                   the caller's memory */
    ngx_zmq_amqp_conn_t         *conn;          /* NULL: not waiting */
    ngx_zmq_amqp_reply_pt        handler;
    void                        *data;
    ngx_msec_t                   timeout;       /* how long it may wait: a
                                                   retired connection
                                                   drains that long */
    uint64_t                     tag;           /* its publish's delivery
                                                   tag: a basic.return
                                                   finds it by its
                                                   correlation id */
    unsigned                     in_tree:1;
};


#define NGX_ZMQ_AMQP_RPC_DONE        0      /* answered otherwise */
#define NGX_ZMQ_AMQP_RPC_TIMEDOUT    1      /* counted as a timeout */


/* what a request asks to publish */
typedef struct {
    ngx_str_t                    exchange;
    ngx_str_t                    routing_key;
    ngx_flag_t                   mandatory;
    ngx_flag_t                   confirm;
    amqp_basic_properties_t     *props;
    ngx_chain_t                 *body;          /* memory or file buffers */
    off_t                        body_len;
    ngx_msec_t                   timeout;
    void                        *data;
    ngx_http_zmq_pub_done_pt     done;
    ngx_zmq_amqp_rpc_t          *rpc;           /* a reply is awaited: the
                                                   properties carry
                                                   reply_to and
                                                   correlation_id, rpc's
                                                   sn.str */
} ngx_http_zmq_publish_t;


/* publish() failures, before anything was written */
#define NGX_HTTP_ZMQ_UNAVAILABLE     -100   /* not connected, backoff */
#define NGX_HTTP_ZMQ_BLOCKED         -101   /* connection.blocked */
#define NGX_HTTP_ZMQ_OVERLOADED      -102   /* max_inflight or buffer */
#define NGX_HTTP_ZMQ_TOO_LARGE       -103   /* properties do not fit */


/* a worker's connections and settings (in the worker's struct) */
typedef struct {
    ngx_queue_t                   all;
    ngx_uint_t                    inited;
    ngx_uint_t                    generation;  /* connections opened */
    ngx_msec_t                    connect_timeout;
    size_t                        buffer_limit;
} ngx_zmq_amqp_worker_t;


void ngx_zmq_amqp_configure(ngx_zmq_amqp_worker_t *w,
    ngx_msec_t connect_timeout, size_t buffer_limit);

/*
 * Opens (and keeps reconnecting) one connection for an outgoing connection;
 * the configuration is copied. stats is this worker's slot for it.
 */
ngx_zmq_amqp_conn_t *ngx_zmq_amqp_open(ngx_zmq_amqp_worker_t *w,
    ngx_http_zmq_outconn_conf_t *oc, ngx_zmq_amqp_stats_t *stats,
    ngx_log_t *log);

/*
 * Takes no new messages; closes and frees itself once every message it
 * holds is confirmed (or the link is lost). Used when a configuration
 * change replaces or removes its outgoing connection.
 */
void ngx_zmq_amqp_retire(ngx_zmq_amqp_conn_t *conn);

/* at worker exit: close every connection */
void ngx_zmq_amqp_exit_process(ngx_zmq_amqp_worker_t *w,
    ngx_cycle_t *cycle);

/*
 * Queues one message. On NGX_OK *pub is the pending message whose done()
 * will be called exactly once (unless ngx_zmq_amqp_detach() is
 * called first). Otherwise an NGX_HTTP_ZMQ_* code says why nothing was
 * sent; *retry_after is then a suggested delay in seconds.
 */
ngx_int_t ngx_zmq_amqp_publish(ngx_zmq_amqp_conn_t *conn,
    ngx_http_zmq_publish_t *msg, ngx_http_zmq_pub_t **pub,
    time_t *retry_after, ngx_log_t *log);

/* the request went away: keep accounting, call nothing back */
void ngx_zmq_amqp_detach(ngx_http_zmq_pub_t *pub);

/*
 * The request went away and done(data) takes its publish over (an
 * idempotency key's outcome is kept): NGX_OK when pub still waits for the
 * broker on behalf of its publisher (attached, not answered, its done()
 * the one given to ngx_zmq_amqp_publish(), passed as publisher), else
 * NGX_DECLINED and nothing changes.
 */
ngx_int_t ngx_zmq_amqp_reattach(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_done_pt publisher, ngx_http_zmq_pub_done_pt done,
    void *data);

/*
 * With msg->rpc set, a successful publish also makes rpc wait on the
 * connection (the first one after each connect first starts the reply
 * consumer, pipelined before the publish): its handler is called exactly
 * once with the reply whose correlation id is rpc->sn.str, or with
 * NGX_ZMQ_AMQP_REPLY_LOST when the connection closes, unless
 * ngx_zmq_amqp_rpc_cancel() comes first. A reply that finds no one
 * waiting is dropped and counted (rpc_late).
 */
void ngx_zmq_amqp_rpc_cancel(ngx_zmq_amqp_rpc_t *rpc, ngx_uint_t why);

const char *ngx_zmq_amqp_state_name(ngx_uint_t state);


/*
 * A probe (the admin API's ping): one fresh connection, the handshake up to
 * channel.open, then closed; never reconnected. The whole attempt (every
 * address in turn) is bounded by the worker's connect_timeout. done() is
 * called exactly once, from the event loop (never from inside
 * ngx_zmq_amqp_probe()), unless ngx_zmq_amqp_probe_cancel() came first;
 * the result's strings are the probe's and last only as long as the call.
 */

typedef struct {
    ngx_int_t                    rc;           /* NGX_OK, NGX_ERROR, or
                                                  NGX_DECLINED: the broker
                                                  refused the exchange */
    ngx_uint_t                   reply_code;   /* NGX_DECLINED: 404, ... */
    ngx_str_t                    error;        /* not NGX_OK: why (the
                                                  broker's own text when
                                                  it said why) */
    ngx_str_t                    product;      /* the broker's, or empty */
    ngx_str_t                    version;
    ngx_str_t                    address;      /* the last one tried */
    ngx_str_t                    tls;          /* "TLSv1.3"; empty: none */
    ngx_flag_t                   verified;     /* TLS: the certificate */
} ngx_zmq_amqp_probe_result_t;

typedef void (*ngx_zmq_amqp_probe_pt)(void *data,
    ngx_zmq_amqp_probe_result_t *result);

ngx_zmq_amqp_conn_t *ngx_zmq_amqp_probe(ngx_zmq_amqp_worker_t *w,
    ngx_http_zmq_outconn_conf_t *oc, ngx_zmq_amqp_probe_pt done,
    void *data, ngx_log_t *log);

/*
 * The same, and then (exchange not empty) a passive exchange.declare on
 * the probe's channel: rc NGX_OK when the broker answers declare-ok,
 * NGX_DECLINED with its channel.close (reply_code 404 and error
 * "NOT_FOUND - no exchange 'x' in vhost '/'" for a missing one), and
 * NGX_ERROR when the probe could not ask (connect, login, timeout). The
 * whole check, the declare included, is bounded by connect_timeout.
 */
ngx_zmq_amqp_conn_t *ngx_zmq_amqp_probe_exchange(ngx_zmq_amqp_worker_t *w,
    ngx_http_zmq_outconn_conf_t *oc, ngx_str_t *exchange,
    ngx_zmq_amqp_probe_pt done, void *data, ngx_log_t *log);

/* the caller went away: closes the probe, frees it, calls nothing back */
void ngx_zmq_amqp_probe_cancel(ngx_zmq_amqp_conn_t *conn);


#endif /* _NGX_ZMQ_AMQP_H_INCLUDED_ */
