
/*
 * ngx_zmq: an AMQP 0-9-1 publisher driven by the NGINX event loop.
 *
 * NGINX owns the socket (ngx_event_connect_peer, edge-triggered events,
 * timers); rabbitmq-c only encodes methods and properties and decodes
 * frames (amqp_handle_input on a state without a socket). Nothing here
 * blocks: writes that do not fit the socket stay in an output buffer and
 * are resumed on the write event.
 *
 * Handshake: protocol header, start/start-ok (PLAIN), tune/tune-ok,
 * connection.open, channel.open (channel 1), confirm.select. Every publish
 * takes the next delivery tag; basic.ack/nack (with "multiple") resolve
 * them in a ring of max_inflight slots, basic.return marks a mandatory
 * message as unroutable (matched by message_id, which is always set).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_http_zmq_amqp.h"


#define NGX_HTTP_ZMQ_CHANNEL          1
#define NGX_HTTP_ZMQ_IN_SIZE          65536
#define NGX_HTTP_ZMQ_BACKOFF_MIN      100
#define NGX_HTTP_ZMQ_BACKOFF_MAX      10000
#define NGX_HTTP_ZMQ_METHOD_MAX       1024   /* a publish method frame */
#ifndef NGX_HTTP_ZMQ_AMQP_EARLY_SEND
#define NGX_HTTP_ZMQ_AMQP_EARLY_SEND  4096
#endif


typedef enum {
    NGX_HTTP_ZMQ_HS_START = 0,
    NGX_HTTP_ZMQ_HS_TUNE,
    NGX_HTTP_ZMQ_HS_OPEN,
    NGX_HTTP_ZMQ_HS_CHANNEL,
    NGX_HTTP_ZMQ_HS_CONFIRM,
    NGX_HTTP_ZMQ_HS_DONE
} ngx_http_zmq_hs_e;


struct ngx_http_zmq_amqp_conn_s {
    ngx_pool_t                   *pool;
    ngx_queue_t                   queue;       /* all connections */
    ngx_event_t                   free_ev;
    unsigned                      retired:1;
    ngx_http_zmq_outconn_conf_t  *conf;
    ngx_http_zmq_amqp_stats_t    *stats;
    ngx_http_zmq_amqp_stats_t     local_stats;
    ngx_log_t                    *log;

    ngx_uint_t                    state;
    ngx_uint_t                    hs;
    ngx_connection_t             *c;
    amqp_connection_state_t       codec;
    ngx_str_t                     peer;

    u_char                       *out_start;
    u_char                       *out_pos;
    u_char                       *out_last;
    u_char                       *out_end;
    uint64_t                      queued;      /* bytes ever queued */
    uint64_t                      sent;        /* bytes ever sent */

    u_char                       *in;
    unsigned                      got_bytes:1;
    unsigned                      returning:1;
    uint64_t                      return_left;

    ngx_http_zmq_pub_t           *pubs;
    uint64_t                      next_tag;
    uint64_t                      head_tag;
    uint64_t                      written_tag;

    ngx_uint_t                    frame_max;
    ngx_uint_t                    heartbeat;
    ngx_msec_t                    last_recv;
    ngx_msec_t                    last_send;

    ngx_event_t                   timer;       /* handshake or backoff */
    ngx_event_t                   hb;
    ngx_msec_t                    backoff;
    ngx_msec_t                    next_attempt;
    ngx_uint_t                    addr;
};


static void ngx_http_zmq_amqp_connect(ngx_http_zmq_amqp_conn_t *conn);
static void ngx_http_zmq_amqp_close(ngx_http_zmq_amqp_conn_t *conn,
    ngx_uint_t level, const char *reason);
static void ngx_http_zmq_amqp_timer_handler(ngx_event_t *ev);
static void ngx_http_zmq_amqp_hb_handler(ngx_event_t *ev);
static void ngx_http_zmq_amqp_read_handler(ngx_event_t *ev);
static void ngx_http_zmq_amqp_write_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_zmq_amqp_send(ngx_http_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_http_zmq_amqp_flush(ngx_http_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_http_zmq_amqp_frame(ngx_http_zmq_amqp_conn_t *conn,
    amqp_frame_t *frame);
static ngx_int_t ngx_http_zmq_amqp_method(ngx_http_zmq_amqp_conn_t *conn,
    amqp_channel_t channel, amqp_method_number_t id, void *decoded);
static ngx_int_t ngx_http_zmq_amqp_reserve(ngx_http_zmq_amqp_conn_t *conn,
    size_t size);
static void ngx_http_zmq_amqp_resolve(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_http_zmq_amqp_pub_timeout(ngx_event_t *ev);


static void ngx_http_zmq_amqp_free_handler(ngx_event_t *ev);
static void ngx_http_zmq_amqp_release(ngx_http_zmq_amqp_conn_t *conn);
static void ngx_http_zmq_amqp_check_retired(ngx_http_zmq_amqp_conn_t *conn);


static ngx_queue_t   ngx_http_zmq_amqp_all;
static ngx_uint_t    ngx_http_zmq_amqp_inited;
static ngx_uint_t    ngx_http_zmq_amqp_generation;  /* connections opened */
static ngx_msec_t    ngx_http_zmq_amqp_connect_timeout = 5000;
static size_t        ngx_http_zmq_amqp_buffer_limit = 16 * 1024 * 1024;

static const char  *ngx_http_zmq_amqp_states[] = {
    "idle", "connecting", "ready", "blocked", "backoff"
};


const char *
ngx_http_zmq_amqp_state_name(ngx_uint_t state)
{
    if (state >= sizeof(ngx_http_zmq_amqp_states) / sizeof(char *)) {
        return "unknown";
    }

    return ngx_http_zmq_amqp_states[state];
}


static void
ngx_http_zmq_amqp_set_state(ngx_http_zmq_amqp_conn_t *conn, ngx_uint_t state)
{
    conn->state = state;
    conn->stats->state = state;
}


void
ngx_http_zmq_amqp_configure(ngx_msec_t connect_timeout, size_t buffer_limit)
{
    ngx_http_zmq_amqp_connect_timeout = connect_timeout;
    ngx_http_zmq_amqp_buffer_limit = buffer_limit;
}


static ngx_int_t
ngx_http_zmq_amqp_copy_str(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t *src)
{
    dst->len = src->len;
    dst->data = NULL;

    if (src->len == 0) {
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(pool, src->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    return NGX_OK;
}


ngx_http_zmq_amqp_conn_t *
ngx_http_zmq_amqp_open(ngx_http_zmq_outconn_conf_t *src,
    ngx_http_zmq_amqp_stats_t *stats, ngx_log_t *log)
{
    ngx_uint_t                    i;
    ngx_pool_t                   *pool;
    ngx_http_zmq_amqp_conn_t     *conn;
    ngx_http_zmq_outconn_conf_t  *oc;

    if (!ngx_http_zmq_amqp_inited) {
        ngx_queue_init(&ngx_http_zmq_amqp_all);
        ngx_http_zmq_amqp_inited = 1;
    }

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NULL;
    }

    conn = ngx_pcalloc(pool, sizeof(ngx_http_zmq_amqp_conn_t));
    oc = ngx_pcalloc(pool, sizeof(ngx_http_zmq_outconn_conf_t));
    if (conn == NULL || oc == NULL) {
        goto failed;
    }

    /* a copy that lives as long as the connection */

    *oc = *src;

    if (ngx_http_zmq_amqp_copy_str(pool, &oc->name, &src->name) != NGX_OK
        || ngx_http_zmq_amqp_copy_str(pool, &oc->def_name, &src->def_name)
           != NGX_OK
        || ngx_http_zmq_amqp_copy_str(pool, &oc->vhost, &src->vhost)
           != NGX_OK
        || ngx_http_zmq_amqp_copy_str(pool, &oc->username, &src->username)
           != NGX_OK
        || ngx_http_zmq_amqp_copy_str(pool, &oc->password, &src->password)
           != NGX_OK)
    {
        goto failed;
    }

    oc->addrs = ngx_palloc(pool, src->naddrs * sizeof(ngx_addr_t));
    if (oc->addrs == NULL) {
        goto failed;
    }

    for (i = 0; i < src->naddrs; i++) {
        oc->addrs[i].socklen = src->addrs[i].socklen;
        oc->addrs[i].sockaddr = ngx_palloc(pool, src->addrs[i].socklen);
        if (oc->addrs[i].sockaddr == NULL
            || ngx_http_zmq_amqp_copy_str(pool, &oc->addrs[i].name,
                                          &src->addrs[i].name)
               != NGX_OK)
        {
            goto failed;
        }
        ngx_memcpy(oc->addrs[i].sockaddr, src->addrs[i].sockaddr,
                   src->addrs[i].socklen);
    }

    conn->pool = pool;
    conn->conf = oc;
    conn->log = log;
    conn->stats = stats ? stats : &conn->local_stats;
    conn->stats->pid = ngx_pid;
    conn->stats->used = 1;
    conn->stats->generation = ++ngx_http_zmq_amqp_generation;
    ngx_cpystrn(conn->stats->name, oc->name.data,
                ngx_min(oc->name.len + 1, NGX_HTTP_ZMQ_NAME_LEN));

    conn->pubs = ngx_pcalloc(pool, oc->max_inflight
                                   * sizeof(ngx_http_zmq_pub_t));
    conn->in = ngx_palloc(pool, NGX_HTTP_ZMQ_IN_SIZE);
    if (conn->pubs == NULL || conn->in == NULL) {
        goto failed;
    }

    conn->timer.handler = ngx_http_zmq_amqp_timer_handler;
    conn->timer.data = conn;
    conn->timer.log = log;
    conn->timer.cancelable = 1;

    conn->hb.handler = ngx_http_zmq_amqp_hb_handler;
    conn->hb.data = conn;
    conn->hb.log = log;
    conn->hb.cancelable = 1;

    conn->free_ev.handler = ngx_http_zmq_amqp_free_handler;
    conn->free_ev.data = conn;
    conn->free_ev.log = log;

    conn->backoff = NGX_HTTP_ZMQ_BACKOFF_MIN;
    conn->addr = oc->naddrs ? ngx_random() % oc->naddrs : 0;

    ngx_queue_insert_tail(&ngx_http_zmq_amqp_all, &conn->queue);

    if (!oc->active || oc->naddrs == 0) {
        ngx_http_zmq_amqp_set_state(conn, NGX_HTTP_ZMQ_AMQP_IDLE);
        return conn;
    }

    ngx_http_zmq_amqp_connect(conn);
    return conn;

failed:

    ngx_destroy_pool(pool);
    return NULL;
}


void
ngx_http_zmq_amqp_retire(ngx_http_zmq_amqp_conn_t *conn)
{
    conn->retired = 1;
    conn->stats->draining = 1;

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq amqp \"%V\": retired by a configuration change; "
                  "%uL message(s) to drain", &conn->conf->name,
                  conn->next_tag - conn->head_tag);

    ngx_http_zmq_amqp_check_retired(conn);
}


static void
ngx_http_zmq_amqp_check_retired(ngx_http_zmq_amqp_conn_t *conn)
{
    if (!conn->retired || conn->head_tag < conn->next_tag
        || conn->free_ev.posted)
    {
        return;
    }

    /* freed from the event loop, never under a caller's feet */
    ngx_post_event(&conn->free_ev, &ngx_posted_events);
}


/* the socket and the codec of one connection attempt */
static void
ngx_http_zmq_amqp_release(ngx_http_zmq_amqp_conn_t *conn)
{
    if (conn->c != NULL) {
        ngx_close_connection(conn->c);
        conn->c = NULL;
    }

    if (conn->codec != NULL) {
        amqp_destroy_connection(conn->codec);
        conn->codec = NULL;
    }
}


static void
ngx_http_zmq_amqp_destroy(ngx_http_zmq_amqp_conn_t *conn)
{
    ngx_http_zmq_amqp_release(conn);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->hb.timer_set) {
        ngx_del_timer(&conn->hb);
    }

    if (conn->free_ev.posted) {
        ngx_delete_posted_event(&conn->free_ev);
    }

    ngx_free(conn->out_start);
    conn->out_start = NULL;

    ngx_memzero(conn->stats, sizeof(ngx_http_zmq_amqp_stats_t));
    ngx_queue_remove(&conn->queue);
    ngx_destroy_pool(conn->pool);
}


static void
ngx_http_zmq_amqp_free_handler(ngx_event_t *ev)
{
    ngx_http_zmq_amqp_conn_t  *conn = ev->data;

    if (conn->head_tag < conn->next_tag) {
        return;                 /* a message came in after all */
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq amqp \"%V\": drained and closed", &conn->conf->name);

    ngx_http_zmq_amqp_destroy(conn);
}


void
ngx_http_zmq_amqp_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t               *q;
    ngx_http_zmq_amqp_conn_t  *conn;

    if (!ngx_http_zmq_amqp_inited) {
        return;
    }

    for (q = ngx_queue_head(&ngx_http_zmq_amqp_all);
         q != ngx_queue_sentinel(&ngx_http_zmq_amqp_all);
         q = ngx_queue_next(q))
    {
        conn = ngx_queue_data(q, ngx_http_zmq_amqp_conn_t, queue);

        if (conn->c != NULL) {
            ngx_close_connection(conn->c);
            conn->c = NULL;
        }

        if (conn->codec != NULL) {
            amqp_destroy_connection(conn->codec);
            conn->codec = NULL;
        }
    }
}


/* big-endian writers */

static u_char *
ngx_http_zmq_put16(u_char *p, uint16_t v)
{
    *p++ = (u_char) (v >> 8);
    *p++ = (u_char) v;
    return p;
}


static u_char *
ngx_http_zmq_put32(u_char *p, uint32_t v)
{
    *p++ = (u_char) (v >> 24);
    *p++ = (u_char) (v >> 16);
    *p++ = (u_char) (v >> 8);
    *p++ = (u_char) v;
    return p;
}


static u_char *
ngx_http_zmq_put64(u_char *p, uint64_t v)
{
    p = ngx_http_zmq_put32(p, (uint32_t) (v >> 32));
    return ngx_http_zmq_put32(p, (uint32_t) v);
}


static ngx_int_t
ngx_http_zmq_amqp_reserve(ngx_http_zmq_amqp_conn_t *conn, size_t size)
{
    size_t   used, cap;
    u_char  *p;

    if ((size_t) (conn->out_end - conn->out_last) >= size) {
        return NGX_OK;
    }

    used = conn->out_last - conn->out_pos;

    if (conn->out_pos != conn->out_start
        && (size_t) (conn->out_end - conn->out_start) >= used + size)
    {
        ngx_memmove(conn->out_start, conn->out_pos, used);
        conn->out_pos = conn->out_start;
        conn->out_last = conn->out_start + used;
        return NGX_OK;
    }

    cap = conn->out_end - conn->out_start;
    cap = ngx_max(cap * 2, used + size);
    cap = ngx_max(cap, 16384);

    p = ngx_alloc(cap, conn->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (used) {
        ngx_memcpy(p, conn->out_pos, used);
    }

    ngx_free(conn->out_start);

    conn->out_start = p;
    conn->out_pos = p;
    conn->out_last = p + used;
    conn->out_end = p + cap;

    return NGX_OK;
}


/* appends one method frame; the caller has reserved room */
static ngx_int_t
ngx_http_zmq_amqp_put_method(ngx_http_zmq_amqp_conn_t *conn,
    amqp_channel_t channel, amqp_method_number_t id, void *decoded,
    size_t room)
{
    int            n;
    u_char        *p;
    amqp_bytes_t   enc;

    p = conn->out_last;
    enc.bytes = p + 7 + 4;
    enc.len = room - 8 - 4;

    n = amqp_encode_method(id, decoded, enc);
    if (n < 0) {
        ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                      "zmq amqp \"%V\": cannot encode method 0x%08xD: %s",
                      &conn->conf->name, (uint32_t) id,
                      amqp_error_string2(n));
        return NGX_ERROR;
    }

    *p++ = AMQP_FRAME_METHOD;
    p = ngx_http_zmq_put16(p, channel);
    p = ngx_http_zmq_put32(p, (uint32_t) (4 + n));
    p = ngx_http_zmq_put32(p, id);
    p += n;
    *p++ = AMQP_FRAME_END;

    conn->queued += p - conn->out_last;
    conn->out_last = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_amqp_method(ngx_http_zmq_amqp_conn_t *conn,
    amqp_channel_t channel, amqp_method_number_t id, void *decoded)
{
    size_t  room;

    room = ngx_max(conn->frame_max, AMQP_FRAME_MIN_SIZE);

    if (ngx_http_zmq_amqp_reserve(conn, room) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_zmq_amqp_put_method(conn, channel, id, decoded, room);
}


static ngx_msec_t
ngx_http_zmq_amqp_jitter(ngx_msec_t delay)
{
    /* 75% .. 125% of the delay */
    return delay * 3 / 4 + (ngx_msec_t) (ngx_random() % (delay / 2 + 1));
}


static void
ngx_http_zmq_amqp_backoff(ngx_http_zmq_amqp_conn_t *conn)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_terminate || ngx_quit || conn->retired) {
        ngx_http_zmq_amqp_set_state(conn, NGX_HTTP_ZMQ_AMQP_IDLE);
        ngx_http_zmq_amqp_check_retired(conn);
        return;
    }

    delay = ngx_http_zmq_amqp_jitter(conn->backoff);
    conn->backoff = ngx_min(conn->backoff * 2, NGX_HTTP_ZMQ_BACKOFF_MAX);
    conn->next_attempt = ngx_current_msec + delay;

    ngx_http_zmq_amqp_set_state(conn, NGX_HTTP_ZMQ_AMQP_BACKOFF);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_add_timer(&conn->timer, delay);
}


static void
ngx_http_zmq_amqp_connect(ngx_http_zmq_amqp_conn_t *conn)
{
    int                           tcp_nodelay;
    ngx_int_t                     rc;
    ngx_addr_t                   *addr;
    amqp_frame_t                  frame;
    amqp_bytes_t                  hdr;
    ngx_connection_t             *c;
    ngx_peer_connection_t         pc;
    ngx_http_zmq_outconn_conf_t  *oc;
    static u_char                 header[] = "AMQP\x00\x00\x09\x01";

    oc = conn->conf;
    addr = &oc->addrs[conn->addr++ % oc->naddrs];
    conn->peer = addr->name;

    ngx_memzero(&pc, sizeof(ngx_peer_connection_t));
    pc.sockaddr = addr->sockaddr;
    pc.socklen = addr->socklen;
    pc.name = &addr->name;
    pc.get = ngx_event_get_peer;
    pc.log = conn->log;
    pc.log_error = NGX_ERROR_ERR;

    ngx_http_zmq_amqp_set_state(conn, NGX_HTTP_ZMQ_AMQP_CONNECTING);

    rc = ngx_event_connect_peer(&pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (pc.connection != NULL) {
            ngx_close_connection(pc.connection);
        }

        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": cannot connect to %V", &oc->name,
                      &addr->name);
        conn->stats->reconnects++;
        ngx_http_zmq_amqp_backoff(conn);
        return;
    }

    c = pc.connection;

    /* frames are small and confirms are awaited: no Nagle delays */
    tcp_nodelay = 1;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY,
                   (const void *) &tcp_nodelay, sizeof(int)) == -1)
    {
        ngx_log_error(NGX_LOG_WARN, conn->log, ngx_socket_errno,
                      "zmq amqp \"%V\": setsockopt(TCP_NODELAY) failed",
                      &oc->name);
    }

    c->data = conn;
    c->read->handler = ngx_http_zmq_amqp_read_handler;
    c->write->handler = ngx_http_zmq_amqp_write_handler;
    c->log = conn->log;
    c->read->log = conn->log;
    c->write->log = conn->log;

    conn->c = c;
    conn->hs = NGX_HTTP_ZMQ_HS_START;
    conn->got_bytes = 0;
    conn->returning = 0;
    conn->frame_max = AMQP_FRAME_MIN_SIZE;
    conn->heartbeat = 0;
    conn->out_pos = conn->out_start;
    conn->out_last = conn->out_start;
    conn->last_recv = ngx_current_msec;
    conn->last_send = ngx_current_msec;

    conn->codec = amqp_new_connection();
    if (conn->codec == NULL) {
        ngx_http_zmq_amqp_close(conn, NGX_LOG_ALERT, "out of memory");
        return;
    }

    /*
     * A fresh codec expects the server's protocol header first; the server
     * answers ours with connection.start instead. Feeding it a protocol
     * header puts it in the state between frames.
     */
    hdr.bytes = header;
    hdr.len = 8;
    (void) amqp_handle_input(conn->codec, hdr, &frame);

    if (ngx_http_zmq_amqp_reserve(conn, 8) != NGX_OK) {
        ngx_http_zmq_amqp_close(conn, NGX_LOG_ALERT, "out of memory");
        return;
    }

    conn->out_last = ngx_cpymem(conn->out_last, header, 8);
    conn->queued = 8;
    conn->sent = 0;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_add_timer(&conn->timer, ngx_http_zmq_amqp_connect_timeout);

    if (rc == NGX_OK) {
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


static void
ngx_http_zmq_amqp_close(ngx_http_zmq_amqp_conn_t *conn, ngx_uint_t level,
    const char *reason)
{
    uint64_t             tag;
    ngx_http_zmq_pub_t  *pub;

    ngx_log_error(level, conn->log, 0,
                  "zmq amqp \"%V\": connection to %V closed: %s",
                  &conn->conf->name, &conn->peer, reason);

    ngx_http_zmq_amqp_release(conn);

    if (conn->hb.timer_set) {
        ngx_del_timer(&conn->hb);
    }

    conn->out_pos = conn->out_start;
    conn->out_last = conn->out_start;

    /* every message not yet confirmed is lost to this connection */
    for (tag = conn->head_tag; tag < conn->next_tag; tag++) {
        pub = &conn->pubs[tag % conn->conf->max_inflight];
        if (pub->in_use && pub->tag == tag) {
            ngx_http_zmq_amqp_resolve(pub, NGX_HTTP_ZMQ_PUB_LOST);
        }
    }

    conn->head_tag = conn->next_tag;
    conn->written_tag = conn->next_tag;

    conn->stats->reconnects++;
    ngx_http_zmq_amqp_backoff(conn);
}


static void
ngx_http_zmq_amqp_timer_handler(ngx_event_t *ev)
{
    ngx_http_zmq_amqp_conn_t  *conn = ev->data;

    if (conn->state == NGX_HTTP_ZMQ_AMQP_BACKOFF) {
        ngx_http_zmq_amqp_connect(conn);
        return;
    }

    if (conn->state == NGX_HTTP_ZMQ_AMQP_CONNECTING) {
        ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR,
                                conn->sent > 0 ? "handshake timed out"
                                               : "connect timed out");
    }
}


static void
ngx_http_zmq_amqp_hb_handler(ngx_event_t *ev)
{
    u_char                    *p;
    ngx_msec_t                 interval;
    ngx_http_zmq_amqp_conn_t  *conn = ev->data;

    if (conn->c == NULL || conn->heartbeat == 0) {
        return;
    }

    interval = conn->heartbeat * 1000 / 2;

    if (ngx_current_msec - conn->last_recv > conn->heartbeat * 2000) {
        ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR,
                                "no heartbeat from the broker");
        return;
    }

    if (ngx_current_msec - conn->last_send >= interval
        && conn->out_pos == conn->out_last)
    {
        if (ngx_http_zmq_amqp_reserve(conn, 8) != NGX_OK) {
            ngx_http_zmq_amqp_close(conn, NGX_LOG_ALERT, "out of memory");
            return;
        }

        p = conn->out_last;
        *p++ = AMQP_FRAME_HEARTBEAT;
        p = ngx_http_zmq_put16(p, 0);
        p = ngx_http_zmq_put32(p, 0);
        *p++ = AMQP_FRAME_END;
        conn->queued += 8;
        conn->out_last = p;

        if (ngx_http_zmq_amqp_flush(conn) != NGX_OK) {
            ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR, "write failed");
            return;
        }
    }

    ngx_add_timer(&conn->hb, interval);
}


static void
ngx_http_zmq_amqp_write_handler(ngx_event_t *wev)
{
    ngx_connection_t          *c = wev->data;
    ngx_http_zmq_amqp_conn_t  *conn = c->data;

    if (ngx_http_zmq_amqp_flush(conn) != NGX_OK) {
        ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR,
                                conn->sent > 0 ? "write failed"
                                               : "connection refused");
    }
}


/*
 * Writes what the socket takes, and nothing else: no callbacks run, so a
 * publish may call it before it returns.
 */

static ngx_int_t
ngx_http_zmq_amqp_send(ngx_http_zmq_amqp_conn_t *conn)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = conn->c;

    while (conn->out_pos < conn->out_last) {
        n = c->send(c, conn->out_pos, conn->out_last - conn->out_pos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        conn->out_pos += n;
        conn->sent += n;
        conn->last_send = ngx_current_msec;
    }

    if (conn->out_pos == conn->out_last) {
        conn->out_pos = conn->out_start;
        conn->out_last = conn->out_start;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_amqp_flush(ngx_http_zmq_amqp_conn_t *conn)
{
    ngx_connection_t    *c;
    ngx_http_zmq_pub_t  *pub;

    c = conn->c;

    if (ngx_http_zmq_amqp_send(conn) != NGX_OK) {
        return NGX_ERROR;
    }

    /* messages that wait for nothing but their frames being written */
    while (conn->written_tag < conn->next_tag) {
        pub = &conn->pubs[conn->written_tag % conn->conf->max_inflight];

        if (pub->in_use && pub->tag == conn->written_tag) {
            if (pub->end > conn->sent) {
                break;
            }

            if (!pub->wait_confirm && !pub->answered) {
                if (pub->timer.timer_set) {
                    ngx_del_timer(&pub->timer);
                }
                pub->answered = 1;
                if (pub->data != NULL && pub->done != NULL) {
                    pub->done(pub, NGX_HTTP_ZMQ_PUB_WRITTEN);
                }
            }
        }

        conn->written_tag++;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_zmq_amqp_read_handler(ngx_event_t *rev)
{
    int                        rc;
    u_char                    *p;
    ssize_t                    n;
    amqp_frame_t               frame;
    amqp_bytes_t               data;
    ngx_connection_t          *c = rev->data;
    ngx_http_zmq_amqp_conn_t  *conn = c->data;

    for ( ;; ) {
        n = c->recv(c, conn->in, NGX_HTTP_ZMQ_IN_SIZE);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR, "event error");
            }
            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR,
                                    n == 0 ? "closed by the broker"
                                           : "read failed");
            return;
        }

        conn->last_recv = ngx_current_msec;
        p = conn->in;

        if (!conn->got_bytes) {
            conn->got_bytes = 1;

            if (p[0] == 'A') {
                ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR,
                                        "the broker does not speak "
                                        "AMQP 0-9-1");
                return;
            }
        }

        while (n > 0) {
            data.bytes = p;
            data.len = n;

            rc = amqp_handle_input(conn->codec, data, &frame);
            if (rc < 0) {
                ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                              "zmq amqp \"%V\": bad data from the broker: "
                              "%s", &conn->conf->name,
                              amqp_error_string2(rc));
                ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR, "protocol error");
                return;
            }

            p += rc;
            n -= rc;

            if (frame.frame_type == 0) {
                continue;
            }

            if (ngx_http_zmq_amqp_frame(conn, &frame) != NGX_OK) {
                return;     /* the connection is closed */
            }

            amqp_maybe_release_buffers_on_channel(conn->codec,
                                                  frame.channel);
        }

        if (conn->out_pos < conn->out_last) {
            if (ngx_http_zmq_amqp_flush(conn) != NGX_OK) {
                ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR, "write failed");
                return;
            }
        }
    }
}


static ngx_int_t
ngx_http_zmq_amqp_start_ok(ngx_http_zmq_amqp_conn_t *conn, void *start)
{
    u_char                       *resp, *p;
    ngx_uint_t                    i;
    amqp_table_t                  props, caps;
    amqp_table_entry_t            pe[4], ce[4];
    amqp_connection_start_ok_t    m;
    ngx_http_zmq_outconn_conf_t  *oc;

    oc = conn->conf;

    ce[0].key = amqp_cstring_bytes("publisher_confirms");
    ce[1].key = amqp_cstring_bytes("connection.blocked");
    ce[2].key = amqp_cstring_bytes("basic.nack");
    ce[3].key = amqp_cstring_bytes("authentication_failure_close");
    for (i = 0; i < 4; i++) {
        ce[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
        ce[i].value.value.boolean = 1;
    }
    caps.num_entries = 4;
    caps.entries = ce;

    pe[0].key = amqp_cstring_bytes("product");
    pe[0].value.kind = AMQP_FIELD_KIND_UTF8;
    pe[0].value.value.bytes = amqp_cstring_bytes("ngx_zmq");
    pe[1].key = amqp_cstring_bytes("platform");
    pe[1].value.kind = AMQP_FIELD_KIND_UTF8;
    pe[1].value.value.bytes = amqp_cstring_bytes("nginx");
    pe[2].key = amqp_cstring_bytes("connection_name");
    pe[2].value.kind = AMQP_FIELD_KIND_UTF8;
    pe[2].value.value.bytes.bytes = oc->name.data;
    pe[2].value.value.bytes.len = oc->name.len;
    pe[3].key = amqp_cstring_bytes("capabilities");
    pe[3].value.kind = AMQP_FIELD_KIND_TABLE;
    pe[3].value.value.table = caps;
    props.num_entries = 4;
    props.entries = pe;

    /* PLAIN: \0 username \0 password */
    resp = ngx_alloc(oc->username.len + oc->password.len + 2, conn->log);
    if (resp == NULL) {
        return NGX_ERROR;
    }

    p = resp;
    *p++ = '\0';
    p = ngx_cpymem(p, oc->username.data, oc->username.len);
    *p++ = '\0';
    p = ngx_cpymem(p, oc->password.data, oc->password.len);

    m.client_properties = props;
    m.mechanism = amqp_cstring_bytes("PLAIN");
    m.response.bytes = resp;
    m.response.len = p - resp;
    m.locale = amqp_cstring_bytes("en_US");

    if (ngx_http_zmq_amqp_method(conn, 0, AMQP_CONNECTION_START_OK_METHOD, &m)
        != NGX_OK)
    {
        ngx_explicit_memzero(resp, p - resp);
        ngx_free(resp);
        return NGX_ERROR;
    }

    ngx_explicit_memzero(resp, p - resp);
    ngx_free(resp);
    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_amqp_tune(ngx_http_zmq_amqp_conn_t *conn, void *tune)
{
    amqp_connection_tune_t  *t = tune;

    ngx_uint_t                    frame_max, heartbeat;
    amqp_connection_open_t        open;
    amqp_connection_tune_ok_t     ok;
    ngx_http_zmq_outconn_conf_t  *oc;

    oc = conn->conf;

    frame_max = oc->frame_max;
    if (t->frame_max != 0 && t->frame_max < frame_max) {
        frame_max = t->frame_max;
    }

    heartbeat = oc->heartbeat;
    if (t->heartbeat != 0 && t->heartbeat < heartbeat) {
        heartbeat = t->heartbeat;
    }

    /* the codec is between frames here, as amqp_tune_connection() needs */
    if (amqp_tune_connection(conn->codec, 1, (int) frame_max, 0)
        != AMQP_STATUS_OK)
    {
        return NGX_ERROR;
    }

    ok.channel_max = 1;
    ok.frame_max = (uint32_t) frame_max;
    ok.heartbeat = (uint16_t) heartbeat;

    if (ngx_http_zmq_amqp_method(conn, 0, AMQP_CONNECTION_TUNE_OK_METHOD, &ok)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    conn->frame_max = frame_max;
    conn->heartbeat = heartbeat;

    open.virtual_host.bytes = oc->vhost.data;
    open.virtual_host.len = oc->vhost.len;
    open.capabilities = amqp_empty_bytes;
    open.insist = 0;

    return ngx_http_zmq_amqp_method(conn, 0, AMQP_CONNECTION_OPEN_METHOD,
                                    &open);
}


static ngx_int_t
ngx_http_zmq_amqp_channel_open(ngx_http_zmq_amqp_conn_t *conn, void *open_ok)
{
    amqp_channel_open_t  chopen;

    chopen.out_of_band = amqp_empty_bytes;

    return ngx_http_zmq_amqp_method(conn, NGX_HTTP_ZMQ_CHANNEL,
                                    AMQP_CHANNEL_OPEN_METHOD, &chopen);
}


static ngx_int_t
ngx_http_zmq_amqp_confirm_select(ngx_http_zmq_amqp_conn_t *conn,
    void *channel_open_ok)
{
    amqp_confirm_select_t  confirm;

    confirm.nowait = 0;

    return ngx_http_zmq_amqp_method(conn, NGX_HTTP_ZMQ_CHANNEL,
                                    AMQP_CONFIRM_SELECT_METHOD, &confirm);
}


static ngx_int_t
ngx_http_zmq_amqp_ready(ngx_http_zmq_amqp_conn_t *conn, void *select_ok)
{
    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    conn->hs = NGX_HTTP_ZMQ_HS_DONE;
    conn->backoff = NGX_HTTP_ZMQ_BACKOFF_MIN;
    conn->next_tag = 1;
    conn->head_tag = 1;
    conn->written_tag = 1;

    ngx_http_zmq_amqp_set_state(conn, NGX_HTTP_ZMQ_AMQP_READY);

    if (conn->heartbeat) {
        ngx_add_timer(&conn->hb, conn->heartbeat * 1000 / 2);
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq amqp \"%V\": ready on %V (frame_max %ui, "
                  "heartbeat %uis)", &conn->conf->name, &conn->peer,
                  conn->frame_max, conn->heartbeat);

    return NGX_OK;
}


static void
ngx_http_zmq_amqp_ack(ngx_http_zmq_amqp_conn_t *conn, uint64_t tag,
    ngx_flag_t multiple, ngx_http_zmq_pub_result_e result)
{
    uint64_t             t, from;
    ngx_http_zmq_pub_t  *pub;

    if (tag >= conn->next_tag || tag == 0) {
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": confirm for unknown delivery tag "
                      "%uL", &conn->conf->name, tag);
        return;
    }

    from = multiple ? conn->head_tag : tag;

    for (t = from; t <= tag; t++) {
        pub = &conn->pubs[t % conn->conf->max_inflight];
        if (pub->in_use && pub->tag == t) {
            ngx_http_zmq_amqp_resolve(pub, result);
        }
    }

    while (conn->head_tag < conn->next_tag) {
        pub = &conn->pubs[conn->head_tag % conn->conf->max_inflight];
        if (pub->in_use && pub->tag == conn->head_tag) {
            break;
        }
        conn->head_tag++;
    }
}


static void
ngx_http_zmq_amqp_returned(ngx_http_zmq_amqp_conn_t *conn,
    amqp_basic_properties_t *props)
{
    uint64_t             t;
    ngx_http_zmq_pub_t  *pub;

    if (!(props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)) {
        return;
    }

    for (t = conn->head_tag; t < conn->next_tag; t++) {
        pub = &conn->pubs[t % conn->conf->max_inflight];

        if (pub->in_use && pub->tag == t && !pub->returned
            && pub->message_id != NULL
            && pub->message_id_len == props->message_id.len
            && ngx_memcmp(pub->message_id, props->message_id.bytes,
                          pub->message_id_len) == 0)
        {
            pub->returned = 1;
            return;
        }
    }
}


typedef struct {
    amqp_method_number_t   method;
    ngx_int_t            (*handler)(ngx_http_zmq_amqp_conn_t *conn,
                                    void *decoded);
    const char            *failed;
} ngx_http_zmq_amqp_step_t;


/* indexed by the handshake state that expects the method */
static ngx_http_zmq_amqp_step_t  ngx_http_zmq_amqp_steps[] = {
    { AMQP_CONNECTION_START_METHOD, ngx_http_zmq_amqp_start_ok,
      "start-ok failed" },
    { AMQP_CONNECTION_TUNE_METHOD, ngx_http_zmq_amqp_tune,
      "tune failed" },
    { AMQP_CONNECTION_OPEN_OK_METHOD, ngx_http_zmq_amqp_channel_open,
      "channel.open failed" },
    { AMQP_CHANNEL_OPEN_OK_METHOD, ngx_http_zmq_amqp_confirm_select,
      "confirm.select failed" },
    { AMQP_CONFIRM_SELECT_OK_METHOD, ngx_http_zmq_amqp_ready,
      "ready failed" },
};


static ngx_int_t
ngx_http_zmq_amqp_frame(ngx_http_zmq_amqp_conn_t *conn, amqp_frame_t *frame)
{
    u_char                     text[256];
    ngx_uint_t                 i;
    amqp_method_t             *m;
    amqp_basic_ack_t          *ack;
    amqp_basic_nack_t         *nack;
    amqp_channel_close_t      *chclose;
    amqp_connection_close_t   *close;
    amqp_connection_blocked_t *blocked;
    amqp_connection_close_ok_t close_ok;

    switch (frame->frame_type) {

    case AMQP_FRAME_HEARTBEAT:
        return NGX_OK;

    case AMQP_FRAME_HEADER:
        if (conn->returning) {
            ngx_http_zmq_amqp_returned(conn,
                                       frame->payload.properties.decoded);
            conn->return_left = frame->payload.properties.body_size;
            conn->returning = conn->return_left > 0;
        }
        return NGX_OK;

    case AMQP_FRAME_BODY:
        if (conn->returning) {
            conn->return_left -= ngx_min(conn->return_left,
                                     frame->payload.body_fragment.len);
            conn->returning = conn->return_left > 0;
        }
        return NGX_OK;

    case AMQP_FRAME_METHOD:
        break;

    default:
        return NGX_OK;
    }

    m = &frame->payload.method;

    /* the handshake: the method each step expects, answered by its handler */

    for (i = 0; i < NGX_HTTP_ZMQ_HS_DONE; i++) {
        if (ngx_http_zmq_amqp_steps[i].method != m->id) {
            continue;
        }

        if (conn->hs != i) {
            ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR, "unexpected method");
            return NGX_ERROR;
        }

        conn->hs = i + 1;

        if (ngx_http_zmq_amqp_steps[i].handler(conn, m->decoded) != NGX_OK) {
            ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR,
                                    ngx_http_zmq_amqp_steps[i].failed);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    switch (m->id) {

    case AMQP_BASIC_ACK_METHOD:
        ack = m->decoded;
        ngx_http_zmq_amqp_ack(conn, ack->delivery_tag, ack->multiple,
                              NGX_HTTP_ZMQ_PUB_ACKED);
        return NGX_OK;

    case AMQP_BASIC_NACK_METHOD:
        nack = m->decoded;
        ngx_http_zmq_amqp_ack(conn, nack->delivery_tag, nack->multiple,
                              NGX_HTTP_ZMQ_PUB_NACKED);
        return NGX_OK;

    case AMQP_BASIC_RETURN_METHOD:
        /* the header frame that follows carries the message_id */
        conn->returning = 1;
        conn->return_left = 0;
        return NGX_OK;

    case AMQP_CONNECTION_BLOCKED_METHOD:
        blocked = m->decoded;
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": the broker blocked publishing: %*s",
                      &conn->conf->name, (size_t) blocked->reason.len,
                      blocked->reason.bytes);
        if (conn->state == NGX_HTTP_ZMQ_AMQP_READY) {
            ngx_http_zmq_amqp_set_state(conn, NGX_HTTP_ZMQ_AMQP_BLOCKED);
        }
        return NGX_OK;

    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": the broker unblocked publishing",
                      &conn->conf->name);
        if (conn->state == NGX_HTTP_ZMQ_AMQP_BLOCKED) {
            ngx_http_zmq_amqp_set_state(conn, NGX_HTTP_ZMQ_AMQP_READY);
        }
        return NGX_OK;

    case AMQP_CONNECTION_CLOSE_METHOD:
        close = m->decoded;
        close_ok.dummy = 0;
        ngx_snprintf(text, sizeof(text) - 1, "the broker closed the "
                     "connection: %d %*s%Z", (int) close->reply_code,
                     ngx_min(close->reply_text.len, 200),
                     close->reply_text.bytes);
        text[sizeof(text) - 1] = '\0';
        (void) ngx_http_zmq_amqp_method(conn, 0,
                                        AMQP_CONNECTION_CLOSE_OK_METHOD,
                                        &close_ok);
        (void) ngx_http_zmq_amqp_flush(conn);
        ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) text);
        return NGX_ERROR;

    case AMQP_CHANNEL_CLOSE_METHOD:
        chclose = m->decoded;
        ngx_snprintf(text, sizeof(text) - 1, "the broker closed the "
                     "channel: %d %*s%Z", (int) chclose->reply_code,
                     ngx_min(chclose->reply_text.len, 200),
                     chclose->reply_text.bytes);
        text[sizeof(text) - 1] = '\0';
        ngx_http_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) text);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_zmq_amqp_resolve(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_http_zmq_amqp_conn_t  *conn;

    conn = pub->conn;

    if (pub->timer.timer_set) {
        ngx_del_timer(&pub->timer);
    }

    if (result == NGX_HTTP_ZMQ_PUB_ACKED && pub->returned) {
        result = NGX_HTTP_ZMQ_PUB_RETURNED;
    }

    switch (result) {
    case NGX_HTTP_ZMQ_PUB_ACKED:
        conn->stats->confirmed++;
        break;
    case NGX_HTTP_ZMQ_PUB_RETURNED:
        conn->stats->returned++;
        break;
    case NGX_HTTP_ZMQ_PUB_NACKED:
        conn->stats->nacked++;
        break;
    default:
        conn->stats->lost++;
        break;
    }

    pub->in_use = 0;
    conn->stats->inflight--;

    if (!pub->answered) {
        pub->answered = 1;
        if (pub->data != NULL && pub->done != NULL) {
            pub->done(pub, result);
        }
    }

    pub->data = NULL;

    if (pub->message_id != NULL) {
        ngx_free(pub->message_id);
        pub->message_id = NULL;
    }

    if (conn->retired) {
        /* head_tag moves after the caller's loop; look from the event loop */
        if (!conn->free_ev.posted) {
            ngx_post_event(&conn->free_ev, &ngx_posted_events);
        }
    }
}


static void
ngx_http_zmq_amqp_pub_timeout(ngx_event_t *ev)
{
    ngx_http_zmq_pub_t  *pub = ev->data;

    /* the slot stays taken until the broker answers or the link drops */
    pub->conn->stats->timed_out++;

    if (!pub->answered) {
        pub->answered = 1;
        if (pub->data != NULL && pub->done != NULL) {
            pub->done(pub, NGX_HTTP_ZMQ_PUB_TIMEDOUT);
        }
    }

    pub->data = NULL;
}


void
ngx_http_zmq_amqp_detach(ngx_http_zmq_pub_t *pub)
{
    pub->data = NULL;
}


/* forgets what a publish that failed half way had queued */
static void
ngx_http_zmq_amqp_rollback(ngx_http_zmq_amqp_conn_t *conn, u_char *start)
{
    conn->queued -= conn->out_last - start;
    conn->out_last = start;
}


ngx_int_t
ngx_http_zmq_amqp_publish(ngx_http_zmq_amqp_conn_t *conn,
    ngx_http_zmq_publish_t *msg, ngx_http_zmq_pub_t **pubp,
    time_t *retry_after, ngx_log_t *log)
{
    int                     n;
    u_char                 *p, *start, *size_pos;
    size_t                  need, chunk, len, left, room;
    ssize_t                 rd;
    ngx_buf_t              *b;
    ngx_uint_t              nframes;
    ngx_chain_t            *cl;
    amqp_bytes_t            enc;
    ngx_http_zmq_pub_t     *pub;
    amqp_basic_publish_t    m;

    if (conn->state != NGX_HTTP_ZMQ_AMQP_READY || conn->retired) {
        conn->stats->rejected++;

        if (conn->state == NGX_HTTP_ZMQ_AMQP_BLOCKED) {
            *retry_after = 5;
            return NGX_HTTP_ZMQ_BLOCKED;
        }

        *retry_after = 1;
        if (conn->state == NGX_HTTP_ZMQ_AMQP_BACKOFF
            && conn->next_attempt > ngx_current_msec)
        {
            *retry_after = (conn->next_attempt - ngx_current_msec + 999)
                           / 1000;
        }
        return NGX_HTTP_ZMQ_UNAVAILABLE;
    }

    if (conn->next_tag - conn->head_tag >= conn->conf->max_inflight) {
        conn->stats->rejected++;
        *retry_after = 1;
        return NGX_HTTP_ZMQ_OVERLOADED;
    }

    chunk = conn->frame_max - 8;
    nframes = (msg->body_len + chunk - 1) / chunk;
    room = conn->frame_max;
    need = NGX_HTTP_ZMQ_METHOD_MAX + room + msg->body_len + 8 * nframes;

    if (conn->out_last > conn->out_pos
        && (size_t) (conn->out_last - conn->out_pos) + need
           > ngx_http_zmq_amqp_buffer_limit)
    {
        conn->stats->rejected++;
        *retry_after = 1;
        return NGX_HTTP_ZMQ_OVERLOADED;
    }

    if (ngx_http_zmq_amqp_reserve(conn, need) != NGX_OK) {
        return NGX_ERROR;
    }

    start = conn->out_last;

    /* basic.publish */

    m.ticket = 0;
    m.exchange.bytes = msg->exchange.data;
    m.exchange.len = msg->exchange.len;
    m.routing_key.bytes = msg->routing_key.data;
    m.routing_key.len = msg->routing_key.len;
    m.mandatory = msg->mandatory ? 1 : 0;
    m.immediate = 0;

    if (ngx_http_zmq_amqp_put_method(conn, NGX_HTTP_ZMQ_CHANNEL,
                                     AMQP_BASIC_PUBLISH_METHOD, &m,
                                     NGX_HTTP_ZMQ_METHOD_MAX)
        != NGX_OK)
    {
        ngx_http_zmq_amqp_rollback(conn, start);
        return NGX_HTTP_ZMQ_TOO_LARGE;
    }

    /* the content header */

    p = conn->out_last;
    *p++ = AMQP_FRAME_HEADER;
    p = ngx_http_zmq_put16(p, NGX_HTTP_ZMQ_CHANNEL);
    size_pos = p;
    p += 4;
    p = ngx_http_zmq_put16(p, AMQP_BASIC_CLASS);
    p = ngx_http_zmq_put16(p, 0);
    p = ngx_http_zmq_put64(p, (uint64_t) msg->body_len);

    enc.bytes = p;
    enc.len = room - 8 - 12;

    n = amqp_encode_properties(AMQP_BASIC_CLASS, msg->props, enc);
    if (n < 0) {
        ngx_http_zmq_amqp_rollback(conn, start);
        return NGX_HTTP_ZMQ_TOO_LARGE;
    }

    p += n;
    *p++ = AMQP_FRAME_END;
    (void) ngx_http_zmq_put32(size_pos, (uint32_t) (12 + n));

    /* the body, split by frame_max */

    cl = msg->body;
    b = cl ? cl->buf : NULL;
    left = msg->body_len;

    while (left > 0) {
        len = ngx_min(left, chunk);

        *p++ = AMQP_FRAME_BODY;
        p = ngx_http_zmq_put16(p, NGX_HTTP_ZMQ_CHANNEL);
        p = ngx_http_zmq_put32(p, (uint32_t) len);
        left -= len;

        while (len > 0) {
            while (b != NULL && ngx_buf_size(b) == 0) {
                cl = cl->next;
                b = cl ? cl->buf : NULL;
            }

            if (b == NULL) {
                ngx_log_error(NGX_LOG_ALERT, log, 0,
                              "zmq: request body shorter than its length");
                ngx_http_zmq_amqp_rollback(conn, start);
                return NGX_ERROR;
            }

            if (ngx_buf_in_memory(b)) {
                n = ngx_min((size_t) (b->last - b->pos), len);
                p = ngx_cpymem(p, b->pos, n);
                b->pos += n;

            } else {
                n = ngx_min((size_t) (b->file_last - b->file_pos), len);
                rd = ngx_read_file(b->file, p, n, b->file_pos);
                if (rd != n) {
                    ngx_http_zmq_amqp_rollback(conn, start);
                    return NGX_ERROR;
                }
                p += n;
                b->file_pos += n;
            }

            len -= n;
        }

        *p++ = AMQP_FRAME_END;
    }

    conn->queued += p - conn->out_last;
    conn->out_last = p;

    /* the pending message */

    pub = &conn->pubs[conn->next_tag % conn->conf->max_inflight];
    ngx_memzero(pub, sizeof(ngx_http_zmq_pub_t));

    pub->tag = conn->next_tag++;
    pub->conn = conn;
    pub->data = msg->data;
    pub->done = msg->done;
    pub->end = conn->queued;
    pub->in_use = 1;
    pub->wait_confirm = msg->confirm ? 1 : 0;

    /* only a mandatory message can come back in a basic.return */
    if (msg->mandatory && (msg->props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)) {
        pub->message_id = ngx_alloc(msg->props->message_id.len + 1, log);
        if (pub->message_id != NULL) {
            ngx_memcpy(pub->message_id, msg->props->message_id.bytes,
                       msg->props->message_id.len);
            pub->message_id_len = msg->props->message_id.len;
        }
    }

    pub->timer.handler = ngx_http_zmq_amqp_pub_timeout;
    pub->timer.data = pub;
    pub->timer.log = conn->log;

    if (msg->timeout) {
        /*
         * Not cancelable: a graceful shutdown waits for the confirm. Without
         * confirms it bounds the wait for the frames to be written.
         */
        ngx_add_timer(&pub->timer, msg->timeout);
    }

    conn->stats->published++;
    conn->stats->inflight++;

    *pubp = pub;

    /*
     * Write from the event loop, so that the publishes of one cycle go out
     * in few writes. A long cycle (hundreds of requests read in one go)
     * sends every NGX_HTTP_ZMQ_AMQP_EARLY_SEND bytes as well, so that the
     * broker starts on them while the worker reads the rest: the broker
     * otherwise idles for the length of the cycle. Errors and callbacks
     * are left to the posted write event.
     */
    ngx_post_event(conn->c->write, &ngx_posted_events);

    if (conn->out_last - conn->out_pos >= NGX_HTTP_ZMQ_AMQP_EARLY_SEND) {
        (void) ngx_http_zmq_amqp_send(conn);
    }

    return NGX_OK;
}
