
/*
 * ngx_zmq: what the AMQP and Redis clients share on the NGINX event loop:
 * one connection to a peer (ngx_event_connect_peer), its output buffer
 * written until EAGAIN, its input read until drained, and the backoff
 * between connection attempts. Nothing here blocks and nothing here
 * knows a protocol; the timers (connect timeout, backoff) stay with the
 * client, which shares them with its other deadlines.
 */


#ifndef _NGX_ZMQ_SOCKET_H_INCLUDED_
#define _NGX_ZMQ_SOCKET_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


typedef struct {
    ngx_connection_t             *connection;  /* NULL: not connected */
    ngx_log_t                    *log;

    /* what is queued and not yet written: out_pos .. out_last */
    u_char                       *out_start;
    u_char                       *out_pos;
    u_char                       *out_last;
    u_char                       *out_end;
    size_t                        out_min;     /* the smallest allocation */

    uint64_t                      sent;        /* bytes this connection */
} ngx_zmq_socket_t;


/* takes a chunk read; NGX_OK goes on, anything else stops the read */
typedef ngx_int_t (*ngx_zmq_socket_input_pt)(void *data, u_char *buf,
    size_t n);


typedef struct {
    ngx_msec_t                    min;
    ngx_msec_t                    max;
    ngx_msec_t                    delay;       /* the next one, unjittered */
    ngx_uint_t                    jitter;      /* 75% .. 125% of it */
} ngx_zmq_backoff_t;


/*
 * NGX_OK: connected, NGX_AGAIN: in progress (the write event tells),
 * NGX_DECLINED: no socket (logged by NGINX at NGX_LOG_ERR). The output
 * buffer is emptied and the byte count reset.
 */
ngx_int_t ngx_zmq_socket_connect(ngx_zmq_socket_t *s, ngx_addr_t *addr,
    ngx_event_handler_pt read, ngx_event_handler_pt write, void *data);
/* a TLS connection is shut down (close_notify) and freed by ngx_zmq_tls */
void ngx_zmq_socket_close(ngx_zmq_socket_t *s);
/* after the connect's write event: 0, or why it failed (SO_ERROR) */
ngx_err_t ngx_zmq_socket_error(ngx_zmq_socket_t *s);

/* room for size more bytes at out_last (moved or grown; NGX_ERROR: ENOMEM) */
ngx_int_t ngx_zmq_socket_reserve(ngx_zmq_socket_t *s, size_t size);
void ngx_zmq_socket_discard(ngx_zmq_socket_t *s);
void ngx_zmq_socket_free(ngx_zmq_socket_t *s);

/* writes what the socket takes; no callbacks run, the write event not armed */
ngx_int_t ngx_zmq_socket_send(ngx_zmq_socket_t *s);
/* send, then the write event armed for the rest */
ngx_int_t ngx_zmq_socket_flush(ngx_zmq_socket_t *s);

/*
 * Reads chunks into buf until EAGAIN (NGX_OK; the read event is for the
 * caller to arm) or, with max, until max bytes were read in this call
 * (NGX_AGAIN: the read event is posted to the next turn of the loop).
 * NGX_DONE: closed by the peer; NGX_ERROR: the read failed; NGX_ABORT:
 * input stopped it, or closed the connection.
 */
ngx_int_t ngx_zmq_socket_read(ngx_zmq_socket_t *s, u_char *buf,
    size_t size, size_t max, ngx_zmq_socket_input_pt input, void *data);


void ngx_zmq_backoff_init(ngx_zmq_backoff_t *b, ngx_msec_t min,
    ngx_msec_t max, ngx_uint_t jitter);
/* the delay before the next attempt; each one doubles, up to max */
ngx_msec_t ngx_zmq_backoff_next(ngx_zmq_backoff_t *b);
void ngx_zmq_backoff_reset(ngx_zmq_backoff_t *b);


#endif /* _NGX_ZMQ_SOCKET_H_INCLUDED_ */
