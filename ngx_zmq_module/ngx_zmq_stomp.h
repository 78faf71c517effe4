
/*
 * ngx_zmq: a STOMP 1.2 publisher driven by the NGINX event loop.
 *
 * The same shape as the AMQP client (ngx_zmq_amqp.h): one connection per
 * worker and stomp_outconn, opened from the runtime, retired on a
 * configuration change, counted in shared memory. Every SEND carries a
 * receipt header; the broker's RECEIPT is the confirm, an ERROR naming
 * the receipt is a refusal, any other ERROR ends the connection. A
 * stomp_def with tls is reached over TLS (ngx_zmq_tls.h) between the TCP
 * connect and CONNECT.
 */


#ifndef _NGX_ZMQ_STOMP_H_INCLUDED_
#define _NGX_ZMQ_STOMP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_zmq_amqp.h"
#include "ngx_zmq_tls.h"


/* the states, as zmq_status names them (ngx_zmq_amqp_state_name) */
#define NGX_ZMQ_STOMP_IDLE           NGX_ZMQ_AMQP_IDLE
#define NGX_ZMQ_STOMP_CONNECTING     NGX_ZMQ_AMQP_CONNECTING
#define NGX_ZMQ_STOMP_READY          NGX_ZMQ_AMQP_READY
#define NGX_ZMQ_STOMP_BACKOFF        NGX_ZMQ_AMQP_BACKOFF

/* what the broker may send: a head (command and headers), a body */
#define NGX_ZMQ_STOMP_HEAD_MAX       16384
#define NGX_ZMQ_STOMP_HEADERS_MAX    64
#define NGX_ZMQ_STOMP_BODY_MAX       (1024 * 1024)


/* a stomp_outconn with its stomp_def, as the runtime built it */
typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    def_name;
    ngx_flag_t                   active;

    ngx_addr_t                  *addrs;
    ngx_uint_t                   naddrs;

    ngx_str_t                    vhost;         /* CONNECT's host header */
    ngx_str_t                    login;         /* empty: none */
    ngx_str_t                    passcode;      /* empty: none */
    ngx_uint_t                   heartbeat;     /* seconds, 0: none */
    ngx_flag_t                   use_jms;

    /* message defaults */
    ngx_flag_t                   persistent;
    ngx_int_t                    priority;      /* -1: not set */
    ngx_int_t                    expires;       /* ms from now, -1: not set */
    ngx_str_t                    content_type;
    ngx_uint_t                   max_inflight;

    /*
     * TLS (the def's tls), as ngx_http_zmq_outconn_conf_t has it:
     * tls_ctx is a reference held by whoever holds this configuration;
     * NULL with tls set: it could not be made, tls_error says why (the
     * connection then stays idle). The name checked is server_name, else
     * tls_hosts[i], the host address i was configured as.
     */
    ngx_flag_t                   tls;
    ngx_zmq_tls_ctx_t           *tls_ctx;
    ngx_str_t                    tls_error;
    ngx_str_t                    server_name;
    ngx_str_t                   *tls_hosts;
} ngx_zmq_stomp_conf_t;


typedef struct ngx_zmq_stomp_conn_s      ngx_zmq_stomp_conn_t;
typedef struct ngx_zmq_stomp_pub_s       ngx_zmq_stomp_pub_t;

typedef void (*ngx_zmq_stomp_done_pt)(ngx_zmq_stomp_pub_t *pub,
    ngx_http_zmq_pub_result_e result);


/* one SEND between publish and its RECEIPT (or ERROR, loss, timeout) */
struct ngx_zmq_stomp_pub_s {
    uint64_t                     seq;           /* its receipt id */
    ngx_zmq_stomp_conn_t        *conn;
    void                        *data;          /* NULL: detached */
    ngx_zmq_stomp_done_pt        done;
    ngx_event_t                  timer;
    ngx_zmq_stomp_pub_t         *next;          /* in the free list */
    unsigned                     answered:1;
};


/* what a request asks to send */
typedef struct {
    ngx_str_t                    destination;
    ngx_keyval_t                *headers;       /* raw values: escaped
                                                   here */
    ngx_uint_t                   nheaders;
    ngx_chain_t                 *body;          /* memory or file buffers */
    off_t                        body_len;
    ngx_msec_t                   timeout;
    void                        *data;
    ngx_zmq_stomp_done_pt        done;
} ngx_zmq_stomp_msg_t;


/* a worker's STOMP connections (in the worker's struct) */
typedef struct {
    ngx_queue_t                  all;
    ngx_uint_t                   inited;
    ngx_uint_t                   generation;
    ngx_msec_t                   connect_timeout;
    size_t                       buffer_limit;
} ngx_zmq_stomp_worker_t;


void ngx_zmq_stomp_configure(ngx_zmq_stomp_worker_t *w,
    ngx_msec_t connect_timeout, size_t buffer_limit);

/* opens one connection (and keeps it open); conf is copied */
ngx_zmq_stomp_conn_t *ngx_zmq_stomp_open(ngx_zmq_stomp_worker_t *w,
    ngx_zmq_stomp_conf_t *conf, ngx_zmq_amqp_stats_t *stats,
    ngx_log_t *log);

/* takes no new messages; frees itself once what it holds is settled */
void ngx_zmq_stomp_retire(ngx_zmq_stomp_conn_t *conn);

void ngx_zmq_stomp_exit_process(ngx_zmq_stomp_worker_t *w,
    ngx_cycle_t *cycle);

/*
 * Queues one SEND. On NGX_OK *pub is pending: its done() is called exactly
 * once, from the event loop, unless ngx_zmq_stomp_detach() comes first.
 * Otherwise an NGX_HTTP_ZMQ_* code (ngx_zmq_amqp.h) says why nothing was
 * sent, NGX_DECLINED that a header or the destination is unfit (*bad
 * says why), and *retry_after is a suggested delay in seconds.
 */
ngx_int_t ngx_zmq_stomp_publish(ngx_zmq_stomp_conn_t *conn,
    ngx_zmq_stomp_msg_t *msg, ngx_zmq_stomp_pub_t **pub,
    time_t *retry_after, const char **bad, ngx_log_t *log);

void ngx_zmq_stomp_detach(ngx_zmq_stomp_pub_t *pub);

/*
 * A probe (the admin API's ping): one fresh connection, CONNECT up to
 * CONNECTED (then DISCONNECT, and closed); never reconnected. Addresses
 * are tried in order until a broker answers, the whole attempt bounded
 * by the worker's connect_timeout; an ERROR (a login refused) is the
 * answer. done() is called exactly once, from the event loop (never from
 * inside ngx_zmq_stomp_probe()), unless ngx_zmq_stomp_probe_cancel()
 * came first; the result's strings last only as long as the call.
 */

typedef struct {
    ngx_int_t                    rc;            /* NGX_OK or NGX_ERROR */
    ngx_str_t                    error;         /* not NGX_OK: why */
    ngx_str_t                    server;        /* CONNECTED's server
                                                   header (printable
                                                   ASCII), or empty */
    ngx_str_t                    address;       /* the last one tried */
    ngx_str_t                    tls;           /* "TLSv1.3"; empty: none */
    ngx_flag_t                   verified;      /* TLS: the certificate */
} ngx_zmq_stomp_probe_result_t;

typedef void (*ngx_zmq_stomp_probe_pt)(void *data,
    ngx_zmq_stomp_probe_result_t *result);

ngx_zmq_stomp_conn_t *ngx_zmq_stomp_probe(ngx_zmq_stomp_worker_t *w,
    ngx_zmq_stomp_conf_t *conf, ngx_zmq_stomp_probe_pt done, void *data,
    ngx_log_t *log);

/* the caller went away: closes the probe, frees it, calls nothing back */
void ngx_zmq_stomp_probe_cancel(ngx_zmq_stomp_conn_t *conn);

/* a header name or value a SEND may carry: NULL, or why not */
const char *ngx_zmq_stomp_value_check(u_char *p, size_t len);

/* 1: a content type ActiveMQ should see as a TextMessage */
ngx_uint_t ngx_zmq_stomp_is_text(ngx_str_t *content_type);


#endif /* _NGX_ZMQ_STOMP_H_INCLUDED_ */
