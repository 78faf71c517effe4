
/*
 * ngx_zmq: one connection to a peer on the NGINX event loop, with an
 * output buffer and a backoff; shared by the AMQP and Redis clients.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_zmq_socket.h"
#include "ngx_zmq_tls.h"


ngx_int_t
ngx_zmq_socket_connect(ngx_zmq_socket_t *s, ngx_addr_t *addr,
    ngx_event_handler_pt read, ngx_event_handler_pt write, void *data)
{
    ngx_int_t               rc;
    ngx_connection_t       *c;
    ngx_peer_connection_t   pc;

    ngx_memzero(&pc, sizeof(ngx_peer_connection_t));
    pc.sockaddr = addr->sockaddr;
    pc.socklen = addr->socklen;
    pc.name = &addr->name;
    pc.get = ngx_event_get_peer;
    pc.log = s->log;
    pc.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (pc.connection != NULL) {
            ngx_close_connection(pc.connection);
        }

        return NGX_DECLINED;
    }

    c = pc.connection;
    c->data = data;
    c->read->handler = read;
    c->write->handler = write;
    c->log = s->log;
    c->read->log = s->log;
    c->write->log = s->log;

    s->connection = c;
    s->out_pos = s->out_start;
    s->out_last = s->out_start;
    s->sent = 0;

    return rc;
}


void
ngx_zmq_socket_close(ngx_zmq_socket_t *s)
{
    ngx_connection_t  *c;

    c = s->connection;

    if (c == NULL) {
        return;
    }

    s->connection = NULL;

    /* TLS, or its pool: closed (and freed) by the TLS layer */
#if (NGX_SSL)
    if (c->ssl != NULL || c->pool != NULL) {
#else
    if (c->pool != NULL) {
#endif
        ngx_zmq_tls_close(c);
        return;
    }

    ngx_close_connection(c);
}


/* the connect's outcome, once the write event says it ended: 0 or errno */
ngx_err_t
ngx_zmq_socket_error(ngx_zmq_socket_t *s)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(s->connection->fd, SOL_SOCKET, SO_ERROR, (void *) &err,
                   &len)
        == -1)
    {
        err = ngx_socket_errno;
    }

    return err;
}


ngx_int_t
ngx_zmq_socket_reserve(ngx_zmq_socket_t *s, size_t size)
{
    size_t   used, cap;
    u_char  *p;

    if ((size_t) (s->out_end - s->out_last) >= size) {
        return NGX_OK;
    }

    used = s->out_last - s->out_pos;

    if (s->out_pos != s->out_start
        && (size_t) (s->out_end - s->out_start) >= used + size)
    {
        ngx_memmove(s->out_start, s->out_pos, used);
        s->out_pos = s->out_start;
        s->out_last = s->out_start + used;
        return NGX_OK;
    }

    cap = s->out_end - s->out_start;
    cap = ngx_max(cap * 2, used + size);
    cap = ngx_max(cap, s->out_min);

    p = ngx_alloc(cap, s->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (used) {
        ngx_memcpy(p, s->out_pos, used);
    }

    ngx_free(s->out_start);

    s->out_start = p;
    s->out_pos = p;
    s->out_last = p + used;
    s->out_end = p + cap;

    return NGX_OK;
}


/* what is queued is dropped (the connection is gone) */
void
ngx_zmq_socket_discard(ngx_zmq_socket_t *s)
{
    s->out_pos = s->out_start;
    s->out_last = s->out_start;
}


void
ngx_zmq_socket_free(ngx_zmq_socket_t *s)
{
    ngx_free(s->out_start);
    s->out_start = NULL;
    s->out_pos = NULL;
    s->out_last = NULL;
    s->out_end = NULL;
}


ngx_int_t
ngx_zmq_socket_send(ngx_zmq_socket_t *s)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->connection;

    while (s->out_pos < s->out_last) {
        n = c->send(c, s->out_pos, s->out_last - s->out_pos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        s->out_pos += n;
        s->sent += n;
    }

    if (s->out_pos == s->out_last) {
        s->out_pos = s->out_start;
        s->out_last = s->out_start;
    }

    return NGX_OK;
}


ngx_int_t
ngx_zmq_socket_flush(ngx_zmq_socket_t *s)
{
    if (ngx_zmq_socket_send(s) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_handle_write_event(s->connection->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_zmq_socket_read(ngx_zmq_socket_t *s, u_char *buf, size_t size,
    size_t max, ngx_zmq_socket_input_pt input, void *data)
{
    size_t             total;
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->connection;

    for (total = 0; /* void */; total += n) {

        /*
         * A peer that sends without pause must not keep the worker from
         * its other connections: after max bytes, go on in the next turn
         * of the event loop, after what else is ready.
         */

        if (max && total >= max) {
            ngx_post_event(c->read, &ngx_posted_next_events);
            return NGX_AGAIN;
        }

        n = c->recv(c, buf, size);

        if (n == NGX_AGAIN) {
            return NGX_OK;
        }

        if (n == 0) {
            return NGX_DONE;
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (input(data, buf, n) != NGX_OK || s->connection == NULL) {
            return NGX_ABORT;
        }
    }
}


void
ngx_zmq_backoff_init(ngx_zmq_backoff_t *b, ngx_msec_t min, ngx_msec_t max,
    ngx_uint_t jitter)
{
    b->min = min;
    b->max = max;
    b->delay = min;
    b->jitter = jitter;
}


ngx_msec_t
ngx_zmq_backoff_next(ngx_zmq_backoff_t *b)
{
    ngx_msec_t  delay;

    delay = b->delay;

    if (b->jitter) {
        /* 75% .. 125% of the delay */
        delay = delay * 3 / 4 + (ngx_msec_t) (ngx_random() % (delay / 2 + 1));
    }

    b->delay = ngx_min(b->delay * 2, b->max);

    return delay;
}


void
ngx_zmq_backoff_reset(ngx_zmq_backoff_t *b)
{
    b->delay = b->min;
}
