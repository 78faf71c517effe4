
/*
 * ngx_zmq: a STOMP 1.2 publisher driven by the NGINX event loop.
 *
 * NGINX owns the socket (ngx_zmq_socket.c); nothing here blocks. A
 * connection sends CONNECT (accept-version 1.2, host, login, passcode,
 * heart-beat) and waits for CONNECTED, whose heart-beat header sets the
 * intervals both ways. Every SEND carries "receipt:<n>", n counting the
 * connection's messages (and content-length, but for a use_jms text SEND:
 * see ngx_zmq_stomp_text); the in-flight ones sit in a ring indexed by n,
 * bounded by max_inflight. RECEIPT settles its message, ERROR with a
 * receipt-id refuses its message and any ERROR ends the connection
 * (STOMP 1.2: the server closes after ERROR); what is left in flight is
 * then lost, and the connection backs off and tries the next address.
 *
 * What the broker sends is read as an attacker could have written it: a
 * frame's head (command and headers) is collected up to
 * NGX_ZMQ_STOMP_HEAD_MAX bytes and NGX_ZMQ_STOMP_HEADERS_MAX headers, its
 * escapes checked, its content-length checked; a body is never buffered
 * (only its first bytes, for the log), and is bounded; a frame must end
 * with its NUL. Anything else closes the connection with a clear reason.
 *
 * A stomp_def with tls: after the TCP connect, the TLS handshake through
 * ngx_zmq_tls.h (as the AMQP client does it), the certificate verified
 * before a byte of STOMP (the passcode) is written; CONNECT waits in the
 * output buffer meanwhile. The handshake is bounded by the connection's
 * timer (zmq_amqp_connect_timeout); a refusal closes the connection with
 * its reason (the log, last_error) and backs off as any other failure.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_zmq_stomp.h"
#include "ngx_zmq_socket.h"


#define NGX_ZMQ_STOMP_IN_SIZE         65536
#define NGX_ZMQ_STOMP_IN_PER_EVENT    (16 * NGX_ZMQ_STOMP_IN_SIZE)
#define NGX_ZMQ_STOMP_BACKOFF_MIN     100
#define NGX_ZMQ_STOMP_BACKOFF_MAX     10000
#define NGX_ZMQ_STOMP_RING_MIN        16
#define NGX_ZMQ_STOMP_OUT_KEEP        (1024 * 1024)
#define NGX_ZMQ_STOMP_DRAIN_GRACE     5000
#define NGX_ZMQ_STOMP_DRAIN_DEFAULT   60000
#define NGX_ZMQ_STOMP_KEEP            200     /* an ERROR body, logged */
#define NGX_ZMQ_STOMP_EARLY_SEND      4096


/* the frame reader */
typedef enum {
    NGX_ZMQ_STOMP_R_IDLE = 0,         /* between frames: EOLs (heart-beats) */
    NGX_ZMQ_STOMP_R_IDLE_CR,          /* a CR, its LF expected */
    NGX_ZMQ_STOMP_R_HEAD,
    NGX_ZMQ_STOMP_R_BODY,             /* content-length bytes */
    NGX_ZMQ_STOMP_R_BODY_NUL,         /* up to the NUL */
    NGX_ZMQ_STOMP_R_NUL               /* the NUL after content-length */
} ngx_zmq_stomp_rstate_e;


typedef struct {
    ngx_str_t                     name;
    ngx_str_t                     value;
} ngx_zmq_stomp_hdr_t;


struct ngx_zmq_stomp_conn_s {
    ngx_pool_t                   *pool;
    ngx_zmq_stomp_worker_t       *worker;
    ngx_queue_t                   queue;
    ngx_event_t                   free_ev;
    ngx_event_t                   drain;
    ngx_msec_t                    longest;
    unsigned                      retired:1;
    unsigned                      connected:1;  /* CONNECTED came */
    unsigned                      heard:1;      /* the peer sent a byte */

    /* a probe (the admin API's ping): see ngx_zmq_stomp_probe() */
    unsigned                      probing:1;
    unsigned                      probe_done:1; /* the result is set */
    unsigned                      probe_cb:1;   /* in its done() */
    ngx_zmq_stomp_probe_pt        probe;
    void                         *probe_data;
    ngx_msec_t                    probe_deadline;
    ngx_int_t                     probe_rc;
    u_char                        probe_error[256];
    u_char                        server[64];   /* CONNECTED's, printable */

    ngx_zmq_stomp_conf_t         *conf;
    ngx_zmq_amqp_stats_t         *stats;
    ngx_zmq_amqp_stats_t          local_stats;
    ngx_log_t                    *log;

    ngx_uint_t                    state;
    ngx_zmq_socket_t              sock;
    ngx_str_t                     peer;
    u_char                       *in;

    /* the frame being read */
    ngx_uint_t                    rstate;
    u_char                       *head;         /* HEAD_MAX bytes */
    size_t                        head_len;
    size_t                        line_start;
    size_t                        body_left;
    size_t                        body_got;
    u_char                        keep[NGX_ZMQ_STOMP_KEEP];
    size_t                        keep_len;
    ngx_str_t                     command;
    ngx_zmq_stomp_hdr_t           hdrs[NGX_ZMQ_STOMP_HEADERS_MAX];
    ngx_uint_t                    nhdrs;

    /* messages in flight: ring[seq & (ring_size - 1)] */
    ngx_zmq_stomp_pub_t         **ring;
    ngx_uint_t                    ring_size;
    ngx_zmq_stomp_pub_t          *free_pubs;
    ngx_uint_t                    max_inflight;
    uint64_t                      next_seq;
    uint64_t                      head_seq;
    ngx_uint_t                    inflight;

    ngx_msec_t                    hb_out;       /* negotiated, ms; 0: none */
    ngx_msec_t                    hb_in;
    ngx_msec_t                    last_recv;
    ngx_msec_t                    last_send;

    ngx_event_t                   timer;        /* handshake or backoff */
    ngx_event_t                   hb;
    ngx_zmq_backoff_t             backoff;
    ngx_msec_t                    next_attempt;
    ngx_uint_t                    addr;
    ngx_uint_t                    cur;          /* the address connected */

    /* TLS: the TCP connect to finish first, then the handshake */
    unsigned                      tls_wait:1;
    unsigned                      tls_handshake:1;
    unsigned                      tls_verified:1;
    u_char                        tls_version[16];
};


static void ngx_zmq_stomp_connect(ngx_zmq_stomp_conn_t *conn);
static void ngx_zmq_stomp_close(ngx_zmq_stomp_conn_t *conn,
    ngx_uint_t level, const char *reason);
static void ngx_zmq_stomp_timer_handler(ngx_event_t *ev);
static void ngx_zmq_stomp_hb_handler(ngx_event_t *ev);
static void ngx_zmq_stomp_read_handler(ngx_event_t *ev);
static void ngx_zmq_stomp_write_handler(ngx_event_t *ev);
static ngx_int_t ngx_zmq_stomp_send(ngx_zmq_stomp_conn_t *conn);
static ngx_int_t ngx_zmq_stomp_flush(ngx_zmq_stomp_conn_t *conn);
static ngx_int_t ngx_zmq_stomp_chunk(void *data, u_char *buf, size_t n);
static ngx_int_t ngx_zmq_stomp_input(ngx_zmq_stomp_conn_t *conn,
    u_char *p, u_char *last);
static ngx_int_t ngx_zmq_stomp_head(ngx_zmq_stomp_conn_t *conn);
static ngx_int_t ngx_zmq_stomp_frame(ngx_zmq_stomp_conn_t *conn);
static ngx_int_t ngx_zmq_stomp_connected(ngx_zmq_stomp_conn_t *conn);
static void ngx_zmq_stomp_bad(ngx_zmq_stomp_conn_t *conn, const char *what);
static ngx_str_t *ngx_zmq_stomp_header(ngx_zmq_stomp_conn_t *conn,
    const char *name);
static u_char *ngx_zmq_stomp_escape_log(u_char *dst, size_t size,
    u_char *src, size_t len);
static ngx_int_t ngx_zmq_stomp_grow_ring(ngx_zmq_stomp_conn_t *conn);
static void ngx_zmq_stomp_resolve(ngx_zmq_stomp_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_zmq_stomp_pub_timeout(ngx_event_t *ev);
static void ngx_zmq_stomp_free_handler(ngx_event_t *ev);
static void ngx_zmq_stomp_drain_handler(ngx_event_t *ev);
static void ngx_zmq_stomp_check_retired(ngx_zmq_stomp_conn_t *conn);
static void ngx_zmq_stomp_destroy(ngx_zmq_stomp_conn_t *conn);
static void ngx_zmq_stomp_wipe(ngx_zmq_stomp_conn_t *conn);
static ngx_uint_t ngx_zmq_stomp_is_msg_type(ngx_str_t *name);
static u_char *ngx_zmq_stomp_text(u_char *typed, u_char *body, u_char *last);
static u_char *ngx_zmq_stomp_utf16(u_char *dst, uint32_t u);
static ngx_zmq_stomp_conn_t *ngx_zmq_stomp_create(ngx_zmq_stomp_worker_t *w,
    ngx_zmq_stomp_conf_t *src, ngx_zmq_amqp_stats_t *stats, ngx_log_t *log);
static void ngx_zmq_stomp_probe_next(ngx_zmq_stomp_conn_t *conn,
    const char *reason);
static void ngx_zmq_stomp_probe_finish(ngx_zmq_stomp_conn_t *conn,
    ngx_int_t rc, const char *error);
static void ngx_zmq_stomp_probe_report(ngx_zmq_stomp_conn_t *conn);
static ngx_int_t ngx_zmq_stomp_probe_ok(ngx_zmq_stomp_conn_t *conn);
static void ngx_zmq_stomp_sock_error(ngx_zmq_stomp_conn_t *conn,
    const char *what);
static void ngx_zmq_stomp_set_error(ngx_zmq_stomp_conn_t *conn,
    const char *text);
static void ngx_zmq_stomp_write_failed(ngx_zmq_stomp_conn_t *conn);
static void ngx_zmq_stomp_tls_start(ngx_zmq_stomp_conn_t *conn);
static void ngx_zmq_stomp_tls_done(ngx_connection_t *c);


static void
ngx_zmq_stomp_set_state(ngx_zmq_stomp_conn_t *conn, ngx_uint_t state)
{
    conn->state = state;
    conn->stats->state = state;
}


void
ngx_zmq_stomp_configure(ngx_zmq_stomp_worker_t *w,
    ngx_msec_t connect_timeout, size_t buffer_limit)
{
    w->connect_timeout = connect_timeout;
    w->buffer_limit = buffer_limit;
}


static ngx_int_t
ngx_zmq_stomp_copy_str(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t *src)
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


ngx_zmq_stomp_conn_t *
ngx_zmq_stomp_open(ngx_zmq_stomp_worker_t *w, ngx_zmq_stomp_conf_t *src,
    ngx_zmq_amqp_stats_t *stats, ngx_log_t *log)
{
    ngx_zmq_stomp_conn_t  *conn;

    conn = ngx_zmq_stomp_create(w, src, stats, log);
    if (conn == NULL) {
        return NULL;
    }

    if (!conn->conf->active || conn->conf->naddrs == 0) {
        return conn;
    }

    if (conn->conf->tls && conn->conf->tls_ctx == NULL) {
        /* logged when the configuration was built; status says why */
        ngx_zmq_stomp_set_error(conn, (char *) conn->conf->tls_error.data);
        return conn;
    }

    ngx_zmq_stomp_connect(conn);

    return conn;
}


/* status: why the last attempt or connection ended (another worker may
   read it meanwhile: always NUL-ended within the field) */
static void
ngx_zmq_stomp_set_error(ngx_zmq_stomp_conn_t *conn, const char *text)
{
    if (text == NULL) {
        conn->stats->last_error[0] = '\0';
        return;
    }

    ngx_cpystrn(conn->stats->last_error, (u_char *) text,
                sizeof(conn->stats->last_error));
}


/* a connection, not connected yet; stats NULL: its own (a probe's) */
static ngx_zmq_stomp_conn_t *
ngx_zmq_stomp_create(ngx_zmq_stomp_worker_t *w, ngx_zmq_stomp_conf_t *src,
    ngx_zmq_amqp_stats_t *stats, ngx_log_t *log)
{
    ngx_uint_t             i;
    ngx_pool_t            *pool;
    ngx_zmq_stomp_conn_t  *conn;
    ngx_zmq_stomp_conf_t  *oc;

    if (!w->inited) {
        ngx_queue_init(&w->all);
        w->inited = 1;
    }

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NULL;
    }

    conn = ngx_pcalloc(pool, sizeof(ngx_zmq_stomp_conn_t));
    oc = ngx_pcalloc(pool, sizeof(ngx_zmq_stomp_conf_t));
    if (conn == NULL || oc == NULL) {
        goto failed;
    }

    *oc = *src;
    oc->tls_ctx = NULL;             /* referenced below, once it is kept */

    if (ngx_zmq_stomp_copy_str(pool, &oc->name, &src->name) != NGX_OK
        || ngx_zmq_stomp_copy_str(pool, &oc->def_name, &src->def_name)
           != NGX_OK
        || ngx_zmq_stomp_copy_str(pool, &oc->vhost, &src->vhost) != NGX_OK
        || ngx_zmq_stomp_copy_str(pool, &oc->login, &src->login) != NGX_OK
        || ngx_zmq_stomp_copy_str(pool, &oc->passcode, &src->passcode)
           != NGX_OK
        || ngx_zmq_stomp_copy_str(pool, &oc->content_type,
                                  &src->content_type) != NGX_OK
        || ngx_zmq_stomp_copy_str(pool, &oc->server_name,
                                  &src->server_name) != NGX_OK)
    {
        goto failed;
    }

    /* NUL-ended: status shows it */
    oc->tls_error.len = src->tls_error.len;
    oc->tls_error.data = ngx_pnalloc(pool, src->tls_error.len + 1);
    if (oc->tls_error.data == NULL) {
        goto failed;
    }
    if (src->tls_error.len) {
        ngx_memcpy(oc->tls_error.data, src->tls_error.data,
                   src->tls_error.len);
    }
    oc->tls_error.data[oc->tls_error.len] = '\0';

    oc->tls_hosts = NULL;

    if (src->tls) {
        /* one name per address; an address without one has none */
        oc->tls_hosts = ngx_pcalloc(pool,
                                    (src->naddrs + 1) * sizeof(ngx_str_t));
        if (oc->tls_hosts == NULL) {
            goto failed;
        }

        for (i = 0; src->tls_hosts != NULL && i < src->naddrs; i++) {
            if (ngx_zmq_stomp_copy_str(pool, &oc->tls_hosts[i],
                                       &src->tls_hosts[i])
                != NGX_OK)
            {
                goto failed;
            }
        }
    }

    oc->addrs = ngx_palloc(pool, (src->naddrs + 1) * sizeof(ngx_addr_t));
    if (oc->addrs == NULL) {
        goto failed;
    }

    for (i = 0; i < src->naddrs; i++) {
        oc->addrs[i].socklen = src->addrs[i].socklen;
        oc->addrs[i].sockaddr = ngx_palloc(pool, src->addrs[i].socklen);
        if (oc->addrs[i].sockaddr == NULL
            || ngx_zmq_stomp_copy_str(pool, &oc->addrs[i].name,
                                      &src->addrs[i].name)
               != NGX_OK)
        {
            goto failed;
        }
        ngx_memcpy(oc->addrs[i].sockaddr, src->addrs[i].sockaddr,
                   src->addrs[i].socklen);
    }

    conn->pool = pool;
    conn->worker = w;
    conn->conf = oc;
    /* the context is held as long as the connection is */
    oc->tls_ctx = ngx_zmq_tls_ctx_ref(src->tls_ctx);
    conn->log = log;
    conn->stats = stats ? stats : &conn->local_stats;
    conn->stats->pid = ngx_pid;
    conn->stats->used = 1;
    if (stats != NULL) {
        conn->stats->generation = ++w->generation;
    }
    ngx_cpystrn(conn->stats->name, oc->name.data,
                ngx_min(oc->name.len + 1, NGX_HTTP_ZMQ_NAME_LEN));

    if (oc->max_inflight > NGX_HTTP_ZMQ_MAX_INFLIGHT) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "zmq stomp \"%V\": max_inflight %ui is above the "
                      "limit of %d; using %d", &oc->name, oc->max_inflight,
                      NGX_HTTP_ZMQ_MAX_INFLIGHT, NGX_HTTP_ZMQ_MAX_INFLIGHT);
        oc->max_inflight = NGX_HTTP_ZMQ_MAX_INFLIGHT;
    }

    if (oc->max_inflight == 0) {
        oc->max_inflight = 1;
    }

    if (oc->heartbeat > 3600) {
        oc->heartbeat = 3600;
    }

    conn->max_inflight = oc->max_inflight;

    conn->in = ngx_palloc(pool, NGX_ZMQ_STOMP_IN_SIZE);
    conn->head = ngx_palloc(pool, NGX_ZMQ_STOMP_HEAD_MAX);
    if (conn->in == NULL || conn->head == NULL
        || ngx_zmq_stomp_grow_ring(conn) != NGX_OK)
    {
        goto failed;
    }

    conn->timer.handler = ngx_zmq_stomp_timer_handler;
    conn->timer.data = conn;
    conn->timer.log = log;
    conn->timer.cancelable = 1;

    conn->hb.handler = ngx_zmq_stomp_hb_handler;
    conn->hb.data = conn;
    conn->hb.log = log;
    conn->hb.cancelable = 1;

    conn->free_ev.handler = ngx_zmq_stomp_free_handler;
    conn->free_ev.data = conn;
    conn->free_ev.log = log;

    conn->drain.handler = ngx_zmq_stomp_drain_handler;
    conn->drain.data = conn;
    conn->drain.log = log;
    conn->drain.cancelable = 1;

    conn->sock.log = log;
    conn->sock.out_min = 16384;
    ngx_zmq_backoff_init(&conn->backoff, NGX_ZMQ_STOMP_BACKOFF_MIN,
                         NGX_ZMQ_STOMP_BACKOFF_MAX, 1);
    conn->addr = oc->naddrs ? ngx_random() % oc->naddrs : 0;

    ngx_queue_insert_tail(&w->all, &conn->queue);
    ngx_zmq_stomp_set_state(conn, NGX_ZMQ_STOMP_IDLE);

    return conn;

failed:

    if (oc != NULL) {
        ngx_zmq_tls_ctx_put(oc->tls_ctx);
    }

    ngx_free(conn != NULL ? conn->ring : NULL);
    ngx_destroy_pool(pool);
    return NULL;
}


void
ngx_zmq_stomp_retire(ngx_zmq_stomp_conn_t *conn)
{
    conn->retired = 1;
    conn->stats->draining = 1;

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq stomp \"%V\": retired by a configuration change; "
                  "%ui message(s) to drain", &conn->conf->name,
                  conn->inflight);

    if (conn->inflight && !conn->drain.timer_set) {
        ngx_add_timer(&conn->drain,
                      (conn->longest ? conn->longest
                                     : NGX_ZMQ_STOMP_DRAIN_DEFAULT)
                      + NGX_ZMQ_STOMP_DRAIN_GRACE);
    }

    ngx_zmq_stomp_check_retired(conn);
}


static void
ngx_zmq_stomp_drain_handler(ngx_event_t *ev)
{
    ngx_zmq_stomp_conn_t  *conn = ev->data;

    if (conn->inflight == 0 || conn->sock.connection == NULL) {
        return;
    }

    ngx_zmq_stomp_close(conn, NGX_LOG_WARN, "retired, and messages still "
                        "without a receipt: given up as lost");
}


static void
ngx_zmq_stomp_check_retired(ngx_zmq_stomp_conn_t *conn)
{
    if (!conn->retired || conn->inflight || conn->free_ev.posted) {
        return;
    }

    ngx_post_event(&conn->free_ev, &ngx_posted_events);
}


static void
ngx_zmq_stomp_destroy(ngx_zmq_stomp_conn_t *conn)
{
    ngx_zmq_socket_close(&conn->sock);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->hb.timer_set) {
        ngx_del_timer(&conn->hb);
    }

    if (conn->free_ev.posted) {
        ngx_delete_posted_event(&conn->free_ev);
    }

    if (conn->drain.timer_set) {
        ngx_del_timer(&conn->drain);
    }

    ngx_zmq_stomp_wipe(conn);

    if (conn->conf->passcode.len) {
        ngx_explicit_memzero(conn->conf->passcode.data,
                             conn->conf->passcode.len);
    }

    ngx_zmq_socket_free(&conn->sock);
    ngx_free(conn->ring);
    conn->ring = NULL;

    ngx_memzero(conn->stats, sizeof(ngx_zmq_amqp_stats_t));
    ngx_queue_remove(&conn->queue);
    ngx_zmq_tls_ctx_put(conn->conf->tls_ctx);
    conn->conf->tls_ctx = NULL;
    ngx_destroy_pool(conn->pool);
}


/* the output buffer but what waits to be sent: zeroes (the passcode) */
static void
ngx_zmq_stomp_wipe(ngx_zmq_stomp_conn_t *conn)
{
    ngx_zmq_socket_t  *s;

    s = &conn->sock;

    if (s->out_start == NULL) {
        return;
    }

    ngx_explicit_memzero(s->out_start, s->out_pos - s->out_start);
    ngx_explicit_memzero(s->out_last, s->out_end - s->out_last);
}


static void
ngx_zmq_stomp_free_handler(ngx_event_t *ev)
{
    ngx_zmq_stomp_conn_t  *conn = ev->data;

    if (conn->probing) {
        ngx_zmq_stomp_probe_report(conn);
        return;
    }

    if (conn->inflight) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq stomp \"%V\": drained and closed", &conn->conf->name);

    ngx_zmq_stomp_destroy(conn);
}


void
ngx_zmq_stomp_exit_process(ngx_zmq_stomp_worker_t *w, ngx_cycle_t *cycle)
{
    ngx_queue_t           *q;
    ngx_zmq_stomp_conn_t  *conn;

    if (!w->inited) {
        return;
    }

    for (q = ngx_queue_head(&w->all);
         q != ngx_queue_sentinel(&w->all);
         q = ngx_queue_next(q))
    {
        conn = ngx_queue_data(q, ngx_zmq_stomp_conn_t, queue);
        ngx_zmq_socket_close(&conn->sock);
    }
}


static void
ngx_zmq_stomp_backoff(ngx_zmq_stomp_conn_t *conn)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_terminate || ngx_quit || conn->retired) {
        ngx_zmq_stomp_set_state(conn, NGX_ZMQ_STOMP_IDLE);
        ngx_zmq_stomp_check_retired(conn);
        return;
    }

    delay = ngx_zmq_backoff_next(&conn->backoff);
    conn->next_attempt = ngx_current_msec + delay;

    ngx_zmq_stomp_set_state(conn, NGX_ZMQ_STOMP_BACKOFF);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_add_timer(&conn->timer, delay);
}


/* a CONNECT header value: CONNECT frames are not escaped (STOMP 1.2) */
static ngx_uint_t
ngx_zmq_stomp_plain(ngx_str_t *v)
{
    size_t  i;

    for (i = 0; i < v->len; i++) {
        if (v->data[i] == '\0' || v->data[i] == '\r' || v->data[i] == '\n') {
            return 0;
        }
    }

    return 1;
}


static void
ngx_zmq_stomp_connect(ngx_zmq_stomp_conn_t *conn)
{
    int                    tcp_nodelay;
    u_char                *p;
    size_t                 need, n;
    ngx_int_t              rc;
    ngx_addr_t            *addr;
    ngx_connection_t      *c;
    ngx_zmq_stomp_conf_t  *oc;

    oc = conn->conf;
    conn->cur = conn->addr++ % oc->naddrs;
    addr = &oc->addrs[conn->cur];
    conn->peer = addr->name;

    if (!ngx_zmq_stomp_plain(&oc->vhost) || !ngx_zmq_stomp_plain(&oc->login)
        || !ngx_zmq_stomp_plain(&oc->passcode))
    {
        ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                      "zmq stomp \"%V\": the virtual host, login or passcode "
                      "of stomp_def \"%V\" has a line break or NUL, which "
                      "CONNECT cannot carry; not connecting", &oc->name,
                      &oc->def_name);

        if (conn->probing) {
            ngx_zmq_stomp_probe_finish(conn, NGX_ERROR, "the virtual host, "
                                       "login or passcode has a line break "
                                       "or NUL, which CONNECT cannot carry");
            return;
        }

        ngx_zmq_stomp_set_state(conn, NGX_ZMQ_STOMP_IDLE);
        return;
    }

    ngx_zmq_stomp_set_state(conn, NGX_ZMQ_STOMP_CONNECTING);

    rc = ngx_zmq_socket_connect(&conn->sock, addr,
                                ngx_zmq_stomp_read_handler,
                                ngx_zmq_stomp_write_handler, conn);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq stomp \"%V\": cannot connect to %V", &oc->name,
                      &addr->name);

        if (conn->probing) {
            ngx_zmq_stomp_probe_next(conn, "cannot connect (no socket; see "
                                     "the error log)");
            return;
        }

        conn->stats->reconnects++;
        ngx_zmq_stomp_backoff(conn);
        return;
    }

    c = conn->sock.connection;

    tcp_nodelay = 1;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY,
                   (const void *) &tcp_nodelay, sizeof(int)) == -1)
    {
        ngx_log_error(NGX_LOG_WARN, conn->log, ngx_socket_errno,
                      "zmq stomp \"%V\": setsockopt(TCP_NODELAY) failed",
                      &oc->name);
    }

    conn->connected = 0;
    conn->heard = 0;

    /* over TLS, CONNECT waits in the buffer for the handshake */
    conn->tls_wait = oc->tls ? 1 : 0;
    conn->tls_handshake = 0;
    conn->tls_verified = 0;
    conn->tls_version[0] = '\0';

    conn->rstate = NGX_ZMQ_STOMP_R_IDLE;
    conn->head_len = 0;
    conn->hb_in = 0;
    conn->hb_out = 0;
    conn->last_recv = ngx_current_msec;
    conn->last_send = ngx_current_msec;

    need = sizeof("CONNECT\naccept-version:1.2\nhost:\nlogin:\npasscode:\n"
                  "heart-beat:,\n\n") + oc->vhost.len + oc->login.len
           + oc->passcode.len + 2 * NGX_INT_T_LEN + oc->addrs[0].name.len
           + NGX_SOCKADDR_STRLEN;

    if (ngx_zmq_socket_reserve(&conn->sock, need) != NGX_OK) {
        ngx_zmq_stomp_close(conn, NGX_LOG_ALERT, "out of memory");
        return;
    }

    p = conn->sock.out_last;
    p = ngx_cpymem(p, "CONNECT\naccept-version:1.2\nhost:", 32);

    if (oc->vhost.len) {
        p = ngx_cpymem(p, oc->vhost.data, oc->vhost.len);

    } else {
        /* the host name without its port (the last colon's: "[::1]") */
        for (n = addr->name.len; n > 0 && addr->name.data[n - 1] != ':'; n--)
        {
            /* void */
        }

        p = ngx_cpymem(p, addr->name.data, n ? n - 1 : addr->name.len);
    }

    if (oc->login.len) {
        p = ngx_sprintf(p, "\nlogin:%V", &oc->login);
    }

    if (oc->passcode.len) {
        p = ngx_sprintf(p, "\npasscode:%V", &oc->passcode);
    }

    p = ngx_sprintf(p, "\nheart-beat:%ui,%ui\n\n",
                    oc->heartbeat * 1000, oc->heartbeat * 1000);
    *p++ = '\0';

    conn->sock.out_last = p;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->probing) {
        /* every address in turn, within the one bound */
        ngx_add_timer(&conn->timer,
                      (ngx_msec_int_t) (conn->probe_deadline
                                        - ngx_current_msec) > 0
                      ? conn->probe_deadline - ngx_current_msec : 1);

    } else {
        ngx_add_timer(&conn->timer, conn->worker->connect_timeout);
    }

    if (rc == NGX_OK) {
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


static void
ngx_zmq_stomp_close(ngx_zmq_stomp_conn_t *conn, ngx_uint_t level,
    const char *reason)
{
    uint64_t              seq;
    ngx_zmq_stomp_pub_t  *pub;

    if (conn->probing && level != NGX_LOG_ALERT) {
        level = NGX_LOG_INFO;           /* the ping's answer says why */
    }

    ngx_log_error(level, conn->log, 0,
                  "zmq stomp \"%V\": connection to %V closed: %s",
                  &conn->conf->name, &conn->peer, reason);

    ngx_zmq_stomp_set_error(conn, reason);
    conn->stats->tls[0] = '\0';
    conn->stats->verified = 0;
    conn->tls_wait = 0;
    conn->tls_handshake = 0;

    ngx_zmq_socket_close(&conn->sock);

    if (conn->hb.timer_set) {
        ngx_del_timer(&conn->hb);
    }

    ngx_zmq_socket_discard(&conn->sock);
    ngx_zmq_stomp_wipe(conn);

    /* every message without its receipt is lost to this connection */
    for (seq = conn->head_seq; seq < conn->next_seq; seq++) {
        pub = conn->ring[seq & (conn->ring_size - 1)];
        if (pub != NULL && pub->seq == seq) {
            ngx_zmq_stomp_resolve(pub, NGX_HTTP_ZMQ_PUB_LOST);
        }
    }

    conn->head_seq = conn->next_seq;
    conn->rstate = NGX_ZMQ_STOMP_R_IDLE;
    conn->head_len = 0;
    conn->connected = 0;

    if (conn->probing) {
        ngx_zmq_stomp_probe_next(conn, reason);
        return;
    }

    conn->stats->reconnects++;
    ngx_zmq_stomp_backoff(conn);
}


static void
ngx_zmq_stomp_timer_handler(ngx_event_t *ev)
{
    u_char                 text[128];
    ngx_zmq_stomp_conn_t  *conn = ev->data;

    if (conn->probing && conn->state == NGX_ZMQ_STOMP_CONNECTING) {
        ngx_snprintf(text, sizeof(text) - 1, "%s (no answer within "
                     "zmq_amqp_connect_timeout, %M ms)%Z",
                     conn->tls_handshake ? "the TLS handshake timed out"
                     : conn->sock.sent > 0 ? "no CONNECTED in time"
                                           : "connect timed out",
                     conn->worker->connect_timeout);
        text[sizeof(text) - 1] = '\0';
        ngx_zmq_stomp_close(conn, NGX_LOG_INFO, (char *) text);
        return;
    }

    if (conn->state == NGX_ZMQ_STOMP_BACKOFF) {
        ngx_zmq_stomp_connect(conn);
        return;
    }

    if (conn->state == NGX_ZMQ_STOMP_CONNECTING) {
        ngx_zmq_stomp_close(conn, NGX_LOG_ERR,
                            conn->tls_handshake ? "TLS handshake timed out"
                            : conn->sock.sent > 0 ? "no CONNECTED in time"
                                                  : "connect timed out");
    }
}


static void
ngx_zmq_stomp_hb_handler(ngx_event_t *ev)
{
    ngx_msec_t             next;
    ngx_zmq_stomp_conn_t  *conn = ev->data;

    if (conn->sock.connection == NULL || !conn->connected) {
        return;
    }

    /* a broker's beat may be late: allow it twice its interval */
    if (conn->hb_in && ngx_current_msec - conn->last_recv > 2 * conn->hb_in)
    {
        ngx_zmq_stomp_close(conn, NGX_LOG_ERR,
                            "no heart-beat from the broker");
        return;
    }

    if (conn->hb_out && ngx_current_msec - conn->last_send >= conn->hb_out
        && conn->sock.out_pos == conn->sock.out_last)
    {
        if (ngx_zmq_socket_reserve(&conn->sock, 1) != NGX_OK) {
            ngx_zmq_stomp_close(conn, NGX_LOG_ALERT, "out of memory");
            return;
        }

        *conn->sock.out_last++ = '\n';

        if (ngx_zmq_stomp_flush(conn) != NGX_OK) {
            ngx_zmq_stomp_write_failed(conn);
            return;
        }
    }

    next = 0;

    if (conn->hb_out) {
        next = conn->hb_out / 2;
    }

    if (conn->hb_in && (next == 0 || conn->hb_in / 2 < next)) {
        next = conn->hb_in / 2;
    }

    ngx_add_timer(&conn->hb, ngx_max(next, 1));
}


static void
ngx_zmq_stomp_write_handler(ngx_event_t *wev)
{
    ngx_connection_t      *c = wev->data;
    ngx_zmq_stomp_conn_t  *conn = c->data;

    if (conn->tls_wait) {
        ngx_zmq_stomp_tls_start(conn);
        return;
    }

    if (ngx_zmq_stomp_flush(conn) != NGX_OK) {
        ngx_zmq_stomp_write_failed(conn);
    }
}


/* a write failed: closed with why */
static void
ngx_zmq_stomp_write_failed(ngx_zmq_stomp_conn_t *conn)
{
    u_char             text[256];
    ngx_connection_t  *c;

    c = conn->sock.connection;

#if (NGX_SSL)
    if (c != NULL && c->ssl != NULL) {
        /* "write failed: the server sent the TLS alert ..." */
        (void) ngx_zmq_tls_failure(c, text, sizeof(text), "write failed");
        ngx_zmq_stomp_close(conn, NGX_LOG_ERR, (char *) text);
        return;
    }
#else
    (void) c;
    (void) text;
#endif

    if (conn->probing) {
        ngx_zmq_stomp_sock_error(conn, conn->sock.sent > 0 ? "write failed"
                                                           : "connect failed");
        return;
    }

    ngx_zmq_stomp_close(conn, NGX_LOG_ERR,
                        conn->sock.sent > 0 ? "write failed"
                                            : "connection refused");
}


/*
 * TLS: the TCP connect ended (the write event, or a read event first when
 * it failed): the handshake, with the connection timer still running.
 */
static void
ngx_zmq_stomp_tls_start(ngx_zmq_stomp_conn_t *conn)
{
    u_char            text[160], *p;
    size_t            n;
    ngx_err_t         err;
    ngx_int_t         rc;
    ngx_str_t         name;
    ngx_connection_t *c;

    c = conn->sock.connection;
    conn->tls_wait = 0;

    err = ngx_zmq_socket_error(&conn->sock);

    if (err) {
        p = ngx_cpymem(text, "connect() failed: ", 18);
        p = ngx_strerror(err, p, sizeof(text) - 19);
        *p = '\0';
        ngx_zmq_stomp_close(conn, NGX_LOG_ERR, (char *) text);
        return;
    }

    /*
     * The name checked: server_name, else the host this address was
     * configured as, else the address itself (without port or brackets)
     */

    if (conn->conf->server_name.len) {
        name = conn->conf->server_name;

    } else if (conn->conf->tls_hosts != NULL
               && conn->conf->tls_hosts[conn->cur].len)
    {
        name = conn->conf->tls_hosts[conn->cur];

    } else {
        name = conn->peer;

        for (n = name.len; n > 0 && name.data[n - 1] != ':'; n--) {
            /* void */
        }

        if (n > 0) {
            name.len = n - 1;
        }

        if (name.len >= 2 && name.data[0] == '['
            && name.data[name.len - 1] == ']')
        {
            name.data++;
            name.len -= 2;
        }
    }

    conn->tls_handshake = 1;

    rc = ngx_zmq_tls_start(conn->conf->tls_ctx, c, &name,
                           ngx_zmq_stomp_tls_done);

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_zmq_stomp_tls_done(c);
}


/* the handshake ended: verified, or closed with the reason */
static void
ngx_zmq_stomp_tls_done(ngx_connection_t *c)
{
    u_char                 why[NGX_ZMQ_TLS_ERROR_LEN];
    ngx_zmq_stomp_conn_t  *conn = c->data;

    conn->tls_handshake = 0;

    if (ngx_zmq_tls_result(c, why, sizeof(why)) != NGX_OK) {
        ngx_zmq_stomp_close(conn, NGX_LOG_ERR, (char *) why);
        return;
    }

    ngx_cpystrn(conn->tls_version, (u_char *) ngx_zmq_tls_version(c),
                sizeof(conn->tls_version));
    conn->tls_verified = ngx_zmq_tls_verified(c);
    ngx_cpystrn(conn->stats->tls, conn->tls_version,
                sizeof(conn->stats->tls));
    conn->stats->verified = conn->tls_verified;

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq stomp \"%V\": %s with %V (%s)", &conn->conf->name,
                  conn->tls_version, &conn->peer,
                  conn->tls_verified ? "certificate verified"
                                     : "certificate NOT verified: verify "
                                       "is off");

    /* NGINX's SSL layer had the handlers during the handshake */
    c->read->handler = ngx_zmq_stomp_read_handler;
    c->write->handler = ngx_zmq_stomp_write_handler;

    /* CONNECT, and whatever TLS has already read */
    ngx_post_event(c->read, &ngx_posted_events);
    ngx_zmq_stomp_write_handler(c->write);
}


/* a ping says why a socket call failed: "Connection refused", ... */
static void
ngx_zmq_stomp_sock_error(ngx_zmq_stomp_conn_t *conn, const char *what)
{
    u_char     text[160], *p;
    ngx_err_t  err;

    err = ngx_socket_errno;
    p = ngx_snprintf(text, 64, "%s: ", what);
    p = err ? ngx_strerror(err, p, sizeof(text) - 1 - (p - text))
            : ngx_cpymem(p, "unknown error", 13);
    *p = '\0';

    ngx_zmq_stomp_close(conn, NGX_LOG_INFO, (char *) text);
}


static ngx_int_t
ngx_zmq_stomp_send(ngx_zmq_stomp_conn_t *conn)
{
    uint64_t  sent;

    sent = conn->sock.sent;

    if (ngx_zmq_socket_send(&conn->sock) != NGX_OK) {
        return NGX_ERROR;
    }

    if (conn->sock.sent != sent) {
        conn->last_send = ngx_current_msec;
    }

    if (conn->sock.out_pos == conn->sock.out_last
        && (size_t) (conn->sock.out_end - conn->sock.out_start)
           > NGX_ZMQ_STOMP_OUT_KEEP)
    {
        ngx_zmq_socket_free(&conn->sock);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_zmq_stomp_flush(ngx_zmq_stomp_conn_t *conn)
{
    if (ngx_zmq_stomp_send(conn) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_handle_write_event(conn->sock.connection->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_zmq_stomp_read_handler(ngx_event_t *rev)
{
    u_char                 text[256];
    ngx_int_t              rc;
    ngx_connection_t      *c = rev->data;
    ngx_zmq_stomp_conn_t  *conn = c->data;

    if (conn->tls_wait) {
        /* the connect failed (or the peer spoke first): see what it was */
        ngx_zmq_stomp_tls_start(conn);
        return;
    }

    rc = ngx_zmq_socket_read(&conn->sock, conn->in, NGX_ZMQ_STOMP_IN_SIZE,
                             NGX_ZMQ_STOMP_IN_PER_EVENT,
                             ngx_zmq_stomp_chunk, conn);

#if (NGX_SSL)
    if (rc == NGX_ERROR && c->ssl != NULL) {
        /* "read failed: the server sent the TLS alert ..." */
        (void) ngx_zmq_tls_failure(c, text, sizeof(text), "read failed");
        ngx_zmq_stomp_close(conn, NGX_LOG_ERR, (char *) text);
        return;
    }
#endif

    if (rc == NGX_ERROR && conn->probing) {
        ngx_zmq_stomp_sock_error(conn, "read failed");
        return;
    }

    switch (rc) {

    case NGX_OK:
        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_zmq_stomp_close(conn, NGX_LOG_ERR, "event error");
        }
        return;

    case NGX_DONE:
    case NGX_ERROR:
        ngx_zmq_stomp_close(conn, NGX_LOG_ERR,
                            rc == NGX_DONE ? "closed by the broker"
                                           : "read failed");
        return;

    default:        /* NGX_AGAIN: posted; NGX_ABORT: closed */
        return;
    }
}


static ngx_int_t
ngx_zmq_stomp_chunk(void *data, u_char *buf, size_t n)
{
    ngx_zmq_stomp_conn_t  *conn = data;

    conn->last_recv = ngx_current_msec;
    conn->heard = 1;

    if (ngx_zmq_stomp_input(conn, buf, buf + n) != NGX_OK) {
        return NGX_ERROR;           /* the connection is closed */
    }

    if (conn->sock.connection != NULL
        && conn->sock.out_pos < conn->sock.out_last)
    {
        if (ngx_zmq_stomp_flush(conn) != NGX_OK) {
            ngx_zmq_stomp_write_failed(conn);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* closes the connection over something a broker must not send */
static void
ngx_zmq_stomp_bad(ngx_zmq_stomp_conn_t *conn, const char *what)
{
    u_char  text[256];

    ngx_snprintf(text, sizeof(text) - 1, "bad frame from the broker: %s%Z",
                 what);
    text[sizeof(text) - 1] = '\0';

    ngx_zmq_stomp_close(conn, NGX_LOG_ERR, (char *) text);
}


/*
 * The frame reader: bytes in any split. NGX_OK: all taken; NGX_ERROR: the
 * connection was closed (the rest is dropped).
 */
static ngx_int_t
ngx_zmq_stomp_input(ngx_zmq_stomp_conn_t *conn, u_char *p, u_char *last)
{
    u_char  ch;
    size_t  n, k;

    while (p < last) {

        switch (conn->rstate) {

        case NGX_ZMQ_STOMP_R_IDLE:
            ch = *p++;

            if (ch == '\n') {
                break;                          /* a heart-beat */
            }

            if (ch == '\r') {
                conn->rstate = NGX_ZMQ_STOMP_R_IDLE_CR;
                break;
            }

            conn->head[0] = ch;
            conn->head_len = 1;
            conn->line_start = 0;
            conn->rstate = NGX_ZMQ_STOMP_R_HEAD;

            if (ch == '\0') {
                ngx_zmq_stomp_bad(conn, "a NUL where a command should "
                                  "start");
                return NGX_ERROR;
            }

            break;

        case NGX_ZMQ_STOMP_R_IDLE_CR:
            if (*p++ != '\n') {
                ngx_zmq_stomp_bad(conn, "a CR without its LF between "
                                  "frames");
                return NGX_ERROR;
            }

            conn->rstate = NGX_ZMQ_STOMP_R_IDLE;
            break;

        case NGX_ZMQ_STOMP_R_HEAD:
            ch = *p++;

            if (ch == '\0') {
                ngx_zmq_stomp_bad(conn, "a NUL inside a frame's headers "
                                  "(no blank line before the body)");
                return NGX_ERROR;
            }

            if (conn->head_len == NGX_ZMQ_STOMP_HEAD_MAX) {
                ngx_zmq_stomp_bad(conn, "a frame's command and headers are "
                                  "longer than 16384 bytes");
                return NGX_ERROR;
            }

            conn->head[conn->head_len++] = ch;

            if (ch != '\n') {
                break;
            }

            k = conn->head_len - conn->line_start;   /* the line, its LF */

            if (k == 1 || (k == 2 && conn->head[conn->line_start] == '\r')) {
                /* the blank line: the head is whole */
                if (ngx_zmq_stomp_head(conn) != NGX_OK) {
                    return NGX_ERROR;
                }
                break;
            }

            conn->line_start = conn->head_len;
            break;

        case NGX_ZMQ_STOMP_R_BODY:
            n = ngx_min((size_t) (last - p), conn->body_left);

            if (conn->keep_len < NGX_ZMQ_STOMP_KEEP) {
                k = ngx_min(n, NGX_ZMQ_STOMP_KEEP - conn->keep_len);
                ngx_memcpy(conn->keep + conn->keep_len, p, k);
                conn->keep_len += k;
            }

            p += n;
            conn->body_left -= n;

            if (conn->body_left == 0) {
                conn->rstate = NGX_ZMQ_STOMP_R_NUL;
            }

            break;

        case NGX_ZMQ_STOMP_R_NUL:
            if (*p++ != '\0') {
                ngx_zmq_stomp_bad(conn, "no NUL after content-length bytes "
                                  "of body");
                return NGX_ERROR;
            }

            conn->rstate = NGX_ZMQ_STOMP_R_IDLE;

            if (ngx_zmq_stomp_frame(conn) != NGX_OK) {
                return NGX_ERROR;
            }

            break;

        default: /* NGX_ZMQ_STOMP_R_BODY_NUL */
            ch = *p++;

            if (ch == '\0') {
                conn->rstate = NGX_ZMQ_STOMP_R_IDLE;

                if (ngx_zmq_stomp_frame(conn) != NGX_OK) {
                    return NGX_ERROR;
                }

                break;
            }

            if (++conn->body_got > NGX_ZMQ_STOMP_BODY_MAX) {
                ngx_zmq_stomp_bad(conn, "a body without content-length "
                                  "and no NUL within 1 MB");
                return NGX_ERROR;
            }

            if (conn->keep_len < NGX_ZMQ_STOMP_KEEP) {
                conn->keep[conn->keep_len++] = ch;
            }

            break;
        }
    }

    return NGX_OK;
}


/* unescapes a header (STOMP 1.2) in place; NGX_ERROR: a bad escape */
static ngx_int_t
ngx_zmq_stomp_unescape(ngx_str_t *s)
{
    u_char  *p, *q, *end;

    p = s->data;
    q = s->data;
    end = s->data + s->len;

    while (p < end) {
        if (*p != '\\') {
            *q++ = *p++;
            continue;
        }

        if (p + 1 == end) {
            return NGX_ERROR;
        }

        switch (p[1]) {
        case 'n':
            *q++ = '\n';
            break;
        case 'r':
            *q++ = '\r';
            break;
        case 'c':
            *q++ = ':';
            break;
        case '\\':
            *q++ = '\\';
            break;
        default:
            return NGX_ERROR;
        }

        p += 2;
    }

    s->len = q - s->data;
    return NGX_OK;
}


/* the head is whole: command and headers split, the body's way set */
static ngx_int_t
ngx_zmq_stomp_head(ngx_zmq_stomp_conn_t *conn)
{
    u_char     *p, *end, *eol, *colon, *line_end;
    size_t      i;
    ngx_int_t   n;
    ngx_str_t  *cl;
    ngx_uint_t  escaped;

    p = conn->head;
    end = conn->head + conn->head_len;
    conn->nhdrs = 0;
    ngx_str_null(&conn->command);

    while (p < end) {
        eol = ngx_strlchr(p, end, '\n');      /* the head ends with one */
        if (eol == NULL) {
            eol = end;
        }

        line_end = eol;
        if (line_end > p && line_end[-1] == '\r') {
            line_end--;
        }

        if (conn->command.data == NULL) {
            conn->command.data = p;
            conn->command.len = line_end - p;

            for (i = 0; i < conn->command.len; i++) {
                if (p[i] < 'A' || p[i] > 'Z') {
                    ngx_zmq_stomp_bad(conn, "a command that is not "
                                      "upper-case letters (garbage?)");
                    return NGX_ERROR;
                }
            }

            if (conn->command.len == 0) {
                ngx_zmq_stomp_bad(conn, "an empty command");
                return NGX_ERROR;
            }

            p = eol + 1;
            continue;
        }

        if (line_end == p) {
            break;                              /* the blank line */
        }

        colon = ngx_strlchr(p, line_end, ':');
        if (colon == NULL) {
            ngx_zmq_stomp_bad(conn, "a header line without a colon");
            return NGX_ERROR;
        }

        if (conn->nhdrs == NGX_ZMQ_STOMP_HEADERS_MAX) {
            ngx_zmq_stomp_bad(conn, "more than 64 headers in one frame");
            return NGX_ERROR;
        }

        conn->hdrs[conn->nhdrs].name.data = p;
        conn->hdrs[conn->nhdrs].name.len = colon - p;
        conn->hdrs[conn->nhdrs].value.data = colon + 1;
        conn->hdrs[conn->nhdrs].value.len = line_end - colon - 1;
        conn->nhdrs++;

        p = eol + 1;
    }

    /* CONNECTED is not escaped (STOMP 1.2, "Value Encoding") */
    escaped = !(conn->command.len == 9
                && ngx_strncmp(conn->command.data, "CONNECTED", 9) == 0);

    for (i = 0; escaped && i < conn->nhdrs; i++) {
        if (ngx_zmq_stomp_unescape(&conn->hdrs[i].name) != NGX_OK
            || ngx_zmq_stomp_unescape(&conn->hdrs[i].value) != NGX_OK)
        {
            ngx_zmq_stomp_bad(conn, "an undefined escape sequence in a "
                              "header (only \\\\, \\c, \\n, \\r are)");
            return NGX_ERROR;
        }
    }

    conn->keep_len = 0;
    conn->body_got = 0;

    cl = ngx_zmq_stomp_header(conn, "content-length");

    if (cl == NULL) {
        conn->rstate = NGX_ZMQ_STOMP_R_BODY_NUL;
        return NGX_OK;
    }

    n = (cl->len > 0 && cl->len <= 8) ? ngx_atoi(cl->data, cl->len)
                                      : NGX_ERROR;

    if (n == NGX_ERROR || n > NGX_ZMQ_STOMP_BODY_MAX) {
        ngx_zmq_stomp_bad(conn, "a content-length that is not a number "
                          "of 0-1048576 bytes");
        return NGX_ERROR;
    }

    conn->body_left = (size_t) n;
    conn->rstate = n ? NGX_ZMQ_STOMP_R_BODY : NGX_ZMQ_STOMP_R_NUL;

    return NGX_OK;
}


/* a header's value (the first of its name, as STOMP 1.2 says) */
static ngx_str_t *
ngx_zmq_stomp_header(ngx_zmq_stomp_conn_t *conn, const char *name)
{
    size_t      len;
    ngx_uint_t  i;

    len = ngx_strlen(name);

    for (i = 0; i < conn->nhdrs; i++) {
        if (conn->hdrs[i].name.len == len
            && ngx_strncmp(conn->hdrs[i].name.data, name, len) == 0)
        {
            return &conn->hdrs[i].value;
        }
    }

    return NULL;
}


/* text from the broker, safe for one log line */
static u_char *
ngx_zmq_stomp_escape_log(u_char *dst, size_t size, u_char *src, size_t len)
{
    u_char  *p, *end;

    p = dst;
    end = dst + size - 1;

    while (len-- > 0 && end - p >= 4) {
        if (*src >= 0x20 && *src < 0x7f && *src != '\\') {
            *p++ = *src++;

        } else {
            p = ngx_sprintf(p, "\\x%02xd", (int) *src++);
        }
    }

    *p = '\0';
    return dst;
}


static ngx_int_t
ngx_zmq_stomp_receipt_seq(ngx_str_t *id, uint64_t *seq)
{
    size_t    i;
    uint64_t  n;

    if (id->len == 0 || id->len > 19) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < id->len; i++) {
        if (id->data[i] < '0' || id->data[i] > '9') {
            return NGX_ERROR;
        }
        n = n * 10 + (id->data[i] - '0');
    }

    *seq = n;
    return NGX_OK;
}


/* the pending message whose receipt id is id, or NULL */
static ngx_zmq_stomp_pub_t *
ngx_zmq_stomp_find(ngx_zmq_stomp_conn_t *conn, ngx_str_t *id)
{
    uint64_t              seq;
    ngx_zmq_stomp_pub_t  *pub;

    if (ngx_zmq_stomp_receipt_seq(id, &seq) != NGX_OK
        || seq < conn->head_seq || seq >= conn->next_seq)
    {
        return NULL;
    }

    pub = conn->ring[seq & (conn->ring_size - 1)];

    return (pub != NULL && pub->seq == seq) ? pub : NULL;
}


static ngx_int_t
ngx_zmq_stomp_frame(ngx_zmq_stomp_conn_t *conn)
{
    u_char                msg[256], body[NGX_ZMQ_STOMP_KEEP * 4 + 1];
    u_char                text[640], *p;
    size_t                n;
    ngx_str_t            *v, *id;
    ngx_zmq_stomp_pub_t  *pub;

#define ngx_zmq_stomp_is(s)                                                  \
    (conn->command.len == sizeof(s) - 1                                      \
     && ngx_strncmp(conn->command.data, s, sizeof(s) - 1) == 0)

    if (ngx_zmq_stomp_is("ERROR")) {
        v = ngx_zmq_stomp_header(conn, "message");
        ngx_zmq_stomp_escape_log(msg, sizeof(msg), v ? v->data : NULL,
                                 v ? v->len : 0);
        ngx_zmq_stomp_escape_log(body, sizeof(body), conn->keep,
                                 conn->keep_len);

        id = ngx_zmq_stomp_header(conn, "receipt-id");
        pub = id ? ngx_zmq_stomp_find(conn, id) : NULL;

        if (pub != NULL) {
            ngx_zmq_stomp_resolve(pub, NGX_HTTP_ZMQ_PUB_NACKED);
        }

        ngx_snprintf(text, sizeof(text) - 1, "ERROR from the broker%s: "
                     "\"%s\" %s%Z",
                     pub ? " refusing a message"
                         : conn->connected ? "" : " (login refused?)",
                     msg, body);
        text[sizeof(text) - 1] = '\0';

        if (conn->probing && !conn->connected) {
            /* the ping's answer: the broker's words, its body's 1st line */
            n = 0;
            while (n < conn->keep_len && conn->keep[n] != '\n'
                   && conn->keep[n] != '\r')
            {
                n++;
            }

            ngx_zmq_stomp_escape_log(body, sizeof(body), conn->keep, n);

            p = ngx_snprintf(conn->probe_error,
                             sizeof(conn->probe_error) - 1,
                             "the broker answered CONNECT with ERROR: "
                             "\"%s\"%s%s", msg, n ? " " : "", body);
            *p = '\0';
        }

        ngx_zmq_stomp_close(conn, NGX_LOG_ERR, (char *) text);
        return NGX_ERROR;
    }

    if (!conn->connected) {
        if (!ngx_zmq_stomp_is("CONNECTED")) {
            ngx_zmq_stomp_bad(conn, "a frame other than CONNECTED or ERROR "
                              "in answer to CONNECT");
            return NGX_ERROR;
        }

        return ngx_zmq_stomp_connected(conn);
    }

    if (ngx_zmq_stomp_is("RECEIPT")) {
        id = ngx_zmq_stomp_header(conn, "receipt-id");

        if (id == NULL) {
            ngx_zmq_stomp_bad(conn, "a RECEIPT without receipt-id");
            return NGX_ERROR;
        }

        pub = ngx_zmq_stomp_find(conn, id);

        if (pub == NULL) {
            ngx_zmq_stomp_escape_log(msg, sizeof(msg), id->data, id->len);
            ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                          "zmq stomp \"%V\": a RECEIPT \"%s\" for no message "
                          "in flight, ignored", &conn->conf->name, msg);
            return NGX_OK;
        }

        ngx_zmq_stomp_resolve(pub, NGX_HTTP_ZMQ_PUB_ACKED);
        return NGX_OK;
    }

    ngx_zmq_stomp_escape_log(msg, sizeof(msg), conn->command.data,
                             conn->command.len);
    ngx_snprintf(text, sizeof(text) - 1, "an unexpected %s frame "
                 "(a publisher subscribes to nothing)%Z", msg);
    text[sizeof(text) - 1] = '\0';
    ngx_zmq_stomp_bad(conn, (char *) text);

    return NGX_ERROR;

#undef ngx_zmq_stomp_is
}


/* "x,y" in ms, each 0-2^31 */
static ngx_int_t
ngx_zmq_stomp_heartbeat(ngx_str_t *v, ngx_msec_t *x, ngx_msec_t *y)
{
    u_char     *comma;
    ngx_int_t   a, b;

    comma = ngx_strlchr(v->data, v->data + v->len, ',');
    if (comma == NULL || comma == v->data
        || comma == v->data + v->len - 1
        || comma - v->data > 10 || v->data + v->len - comma - 1 > 10)
    {
        return NGX_ERROR;
    }

    a = ngx_atoi(v->data, comma - v->data);
    b = ngx_atoi(comma + 1, v->data + v->len - comma - 1);

    if (a == NGX_ERROR || b == NGX_ERROR || a > 0x7fffffff
        || b > 0x7fffffff)
    {
        return NGX_ERROR;
    }

    *x = (ngx_msec_t) a;
    *y = (ngx_msec_t) b;
    return NGX_OK;
}


static ngx_int_t
ngx_zmq_stomp_connected(ngx_zmq_stomp_conn_t *conn)
{
    u_char       text[64], why[128];
    ngx_str_t   *v;
    ngx_msec_t   sx, sy, mine;

    v = ngx_zmq_stomp_header(conn, "version");

    if (v == NULL || v->len != 3 || ngx_strncmp(v->data, "1.2", 3) != 0) {
        ngx_zmq_stomp_escape_log(text, 64, v ? v->data : (u_char *) "1.0",
                                 v ? v->len : 3);
        ngx_snprintf(why, sizeof(why) - 1, "the broker speaks STOMP %s, "
                     "not 1.2%Z", text);
        why[sizeof(why) - 1] = '\0';
        ngx_zmq_stomp_close(conn, NGX_LOG_ERR, (char *) why);
        return NGX_ERROR;
    }

    if (conn->probing) {
        return ngx_zmq_stomp_probe_ok(conn);
    }

    sx = 0;
    sy = 0;
    v = ngx_zmq_stomp_header(conn, "heart-beat");

    if (v != NULL && ngx_zmq_stomp_heartbeat(v, &sx, &sy) != NGX_OK) {
        ngx_zmq_stomp_bad(conn, "a heart-beat header that is not \"x,y\"");
        return NGX_ERROR;
    }

    /* STOMP 1.2 "Heart-beating": the larger of what each side asks */
    mine = conn->conf->heartbeat * 1000;
    conn->hb_out = (mine && sy) ? ngx_max(mine, sy) : 0;
    conn->hb_in = (mine && sx) ? ngx_max(mine, sx) : 0;

    /* the CONNECT frame (its passcode) was sent: zeroed in the buffer */
    ngx_zmq_stomp_wipe(conn);

    conn->connected = 1;
    ngx_zmq_stomp_set_state(conn, NGX_ZMQ_STOMP_READY);
    ngx_zmq_stomp_set_error(conn, NULL);
    ngx_zmq_backoff_reset(&conn->backoff);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->hb_in || conn->hb_out) {
        if (conn->hb.timer_set) {
            ngx_del_timer(&conn->hb);
        }
        ngx_add_timer(&conn->hb, 1000);
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq stomp \"%V\": connected to %V%s%s (heart-beats: %M "
                  "ms out, %M ms in)", &conn->conf->name, &conn->peer,
                  conn->tls_version[0] ? " over " : "",
                  conn->tls_version, conn->hb_out, conn->hb_in);

    return NGX_OK;
}


static ngx_int_t
ngx_zmq_stomp_grow_ring(ngx_zmq_stomp_conn_t *conn)
{
    uint64_t               s;
    ngx_uint_t             size;
    ngx_zmq_stomp_pub_t  **ring;

    size = conn->ring_size ? conn->ring_size * 2 : NGX_ZMQ_STOMP_RING_MIN;

    ring = ngx_alloc(size * sizeof(ngx_zmq_stomp_pub_t *), conn->log);
    if (ring == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ring, size * sizeof(ngx_zmq_stomp_pub_t *));

    for (s = conn->head_seq; s < conn->next_seq; s++) {
        ring[s & (size - 1)] = conn->ring[s & (conn->ring_size - 1)];
    }

    ngx_free(conn->ring);
    conn->ring = ring;
    conn->ring_size = size;

    return NGX_OK;
}


static void
ngx_zmq_stomp_resolve(ngx_zmq_stomp_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_zmq_stomp_conn_t  *conn;

    conn = pub->conn;

    if (pub->timer.timer_set) {
        ngx_del_timer(&pub->timer);
    }

    switch (result) {
    case NGX_HTTP_ZMQ_PUB_ACKED:
        conn->stats->confirmed++;
        break;
    case NGX_HTTP_ZMQ_PUB_NACKED:
        conn->stats->nacked++;
        break;
    default:
        conn->stats->lost++;
        break;
    }

    conn->stats->inflight--;
    conn->inflight--;

    if (!pub->answered) {
        pub->answered = 1;
        if (pub->data != NULL && pub->done != NULL) {
            pub->done(pub, result);
        }
    }

    pub->data = NULL;

    conn->ring[pub->seq & (conn->ring_size - 1)] = NULL;

    /* the oldest one still waiting */
    while (conn->head_seq < conn->next_seq
           && conn->ring[conn->head_seq & (conn->ring_size - 1)] == NULL)
    {
        conn->head_seq++;
    }

    pub->next = conn->free_pubs;
    conn->free_pubs = pub;

    if (conn->retired) {
        ngx_zmq_stomp_check_retired(conn);
    }
}


static void
ngx_zmq_stomp_pub_timeout(ngx_event_t *ev)
{
    ngx_zmq_stomp_pub_t  *pub = ev->data;

    /* the slot stays taken until the receipt comes or the link drops */
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
ngx_zmq_stomp_detach(ngx_zmq_stomp_pub_t *pub)
{
    pub->data = NULL;
}


const char *
ngx_zmq_stomp_value_check(u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n') {
            return "must not contain NUL, CR or LF";
        }
    }

    return NULL;
}


ngx_uint_t
ngx_zmq_stomp_is_text(ngx_str_t *ct)
{
    size_t   len;
    u_char  *semi;

    if (ct == NULL || ct->len == 0) {
        return 0;
    }

    semi = ngx_strlchr(ct->data, ct->data + ct->len, ';');
    len = semi ? (size_t) (semi - ct->data) : ct->len;

    while (len > 0 && ct->data[len - 1] == ' ') {
        len--;
    }

    if (len >= 5 && ngx_strncasecmp(ct->data, (u_char *) "text/", 5) == 0) {
        return 1;
    }

    if ((len == 16 && ngx_strncasecmp(ct->data,
                                      (u_char *) "application/json", 16) == 0)
        || (len == 15 && ngx_strncasecmp(ct->data,
                                         (u_char *) "application/xml", 15)
                         == 0))
    {
        return 1;
    }

    if (len >= 5 && (ngx_strncasecmp(ct->data + len - 5, (u_char *) "+json",
                                     5) == 0
                     || ngx_strncasecmp(ct->data + len - 4,
                                        (u_char *) "+xml", 4) == 0))
    {
        return 1;
    }

    return 0;
}


/* the escaped length of a header name or value (STOMP 1.2) */
static size_t
ngx_zmq_stomp_escaped_len(u_char *p, size_t len)
{
    size_t  i, n;

    n = len;

    for (i = 0; i < len; i++) {
        if (p[i] == '\\' || p[i] == ':' || p[i] == '\n' || p[i] == '\r') {
            n++;
        }
    }

    return n;
}


static u_char *
ngx_zmq_stomp_escape(u_char *dst, u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        switch (p[i]) {
        case '\\':
            *dst++ = '\\'; *dst++ = '\\';
            break;
        case ':':
            *dst++ = '\\'; *dst++ = 'c';
            break;
        case '\n':
            *dst++ = '\\'; *dst++ = 'n';
            break;
        case '\r':
            *dst++ = '\\'; *dst++ = 'r';
            break;
        default:
            *dst++ = p[i];
        }
    }

    return dst;
}


/* amq-msg-type: use_jms's mark of a textual content type (not sent) */
static ngx_uint_t
ngx_zmq_stomp_is_msg_type(ngx_str_t *name)
{
    return name->len == sizeof("amq-msg-type") - 1
           && ngx_strncmp(name->data, "amq-msg-type",
                          sizeof("amq-msg-type") - 1) == 0;
}


/*
 * use_jms, a textual content type: ActiveMQ makes a TextMessage of a SEND
 * without content-length, its body read as Java's modified UTF-8 (a NUL is
 * C0 80, a character beyond U+FFFF two 3-byte surrogates; a 4-byte UTF-8
 * sequence makes the JMS consumer's receive fail). A body in UTF-8 is
 * written in that form, with no content-length (it has no NUL left), so
 * that no STOMP header is left on the message as a property (ActiveMQ
 * keeps amq-msg-type and content-length as String properties of a
 * TextMessage; a stale content-length cuts the frame of a STOMP
 * subscriber the message is forwarded to). A body that is not UTF-8 stays
 * as it is, with content-length: a BytesMessage.
 *
 * typed: "content-length:N\n\n", then the body up to last; the frame
 * ends where this returns; there is room for twice the body after typed.
 */
static u_char *
ngx_zmq_stomp_text(u_char *typed, u_char *body, u_char *last)
{
    u_char    c, *src, *dst;
    size_t    n, extra, k;
    uint32_t  cp;

    extra = 0;

    for (src = body; src < last; src += n) {
        c = *src;
        n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
            : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;

        if (n == 0 || (size_t) (last - src) < n) {
            return last;                            /* not UTF-8: bytes */
        }

        for (k = 1; k < n; k++) {
            if ((src[k] & 0xc0) != 0x80) {
                return last;
            }
        }

        if (n == 4) {
            cp = ((uint32_t) (c & 0x07) << 18)
                 | ((uint32_t) (src[1] & 0x3f) << 12)
                 | ((uint32_t) (src[2] & 0x3f) << 6) | (src[3] & 0x3f);
            if (cp < 0x10000 || cp > 0x10ffff) {
                return last;
            }
            extra += 2;

        } else if (c == 0) {
            extra++;
        }
    }

    /* the body moves to typed + 1 + extra, then converts down to typed + 1 */

    n = last - body;
    src = typed + 1 + extra;
    ngx_memmove(src, body, n);
    *typed = '\n';
    dst = typed + 1;
    last = src + n;

    if (extra == 0) {
        return last;
    }

    while (src < last) {
        c = *src;

        if (c == 0) {
            src++;
            *dst++ = 0xc0;
            *dst++ = 0x80;

        } else if (c >= 0xf0) {
            cp = (((uint32_t) (c & 0x07) << 18)
                  | ((uint32_t) (src[1] & 0x3f) << 12)
                  | ((uint32_t) (src[2] & 0x3f) << 6) | (src[3] & 0x3f))
                 - 0x10000;
            src += 4;
            dst = ngx_zmq_stomp_utf16(dst, 0xd800 + (cp >> 10));
            dst = ngx_zmq_stomp_utf16(dst, 0xdc00 + (cp & 0x3ff));

        } else {
            *dst++ = *src++;
        }
    }

    return dst;
}


/* one UTF-16 unit (here a surrogate) as 3 bytes of modified UTF-8 */
static u_char *
ngx_zmq_stomp_utf16(u_char *dst, uint32_t u)
{
    *dst++ = (u_char) (0xe0 | (u >> 12));
    *dst++ = (u_char) (0x80 | ((u >> 6) & 0x3f));
    *dst++ = (u_char) (0x80 | (u & 0x3f));

    return dst;
}


ngx_int_t
ngx_zmq_stomp_publish(ngx_zmq_stomp_conn_t *conn, ngx_zmq_stomp_msg_t *msg,
    ngx_zmq_stomp_pub_t **pubp, time_t *retry_after, const char **bad,
    ngx_log_t *log)
{
    u_char               *p, *start, *body, *typed;
    off_t                 off;
    size_t                need, len, n;
    ssize_t               rd;
    uint64_t              seq;
    ngx_buf_t            *b;
    ngx_uint_t            i, text;
    ngx_chain_t          *cl;
    ngx_zmq_stomp_pub_t  *pub;

    if (conn->state != NGX_ZMQ_STOMP_READY || conn->retired) {
        conn->stats->rejected++;

        *retry_after = 1;
        if (conn->state == NGX_ZMQ_STOMP_BACKOFF
            && conn->next_attempt > ngx_current_msec)
        {
            *retry_after = (conn->next_attempt - ngx_current_msec + 999)
                           / 1000;
        }
        return NGX_HTTP_ZMQ_UNAVAILABLE;
    }

    if (conn->inflight >= conn->max_inflight
        || conn->next_seq - conn->head_seq >= NGX_HTTP_ZMQ_MAX_INFLIGHT)
    {
        conn->stats->rejected++;
        *retry_after = 1;
        return NGX_HTTP_ZMQ_OVERLOADED;
    }

    if (msg->body_len < 0) {
        return NGX_ERROR;
    }

    *bad = NULL;

    if (msg->destination.len == 0) {
        *bad = "the destination is empty";

    } else if (ngx_zmq_stomp_value_check(msg->destination.data,
                                         msg->destination.len) != NULL)
    {
        *bad = "the destination must not contain NUL, CR or LF";
    }

    need = sizeof("SEND\ndestination:\nreceipt:\ncontent-length:\n\n")
           + ngx_zmq_stomp_escaped_len(msg->destination.data,
                                       msg->destination.len)
           + 2 * NGX_INT64_LEN
           + (size_t) msg->body_len + 1;

    for (i = 0; *bad == NULL && i < msg->nheaders; i++) {
        if (msg->headers[i].key.len == 0
            || ngx_zmq_stomp_value_check(msg->headers[i].key.data,
                                         msg->headers[i].key.len) != NULL
            || ngx_zmq_stomp_value_check(msg->headers[i].value.data,
                                         msg->headers[i].value.len) != NULL)
        {
            *bad = "a header name or value is empty or has NUL, CR or LF";
            break;
        }

        need += ngx_zmq_stomp_escaped_len(msg->headers[i].key.data,
                                          msg->headers[i].key.len)
                + ngx_zmq_stomp_escaped_len(msg->headers[i].value.data,
                                            msg->headers[i].value.len)
                + 2;
    }

    if (*bad != NULL) {
        return NGX_DECLINED;
    }

    for (i = 0; i < msg->nheaders; i++) {
        if (ngx_zmq_stomp_is_msg_type(&msg->headers[i].key)) {
            need += (size_t) msg->body_len;     /* the text form, at most */
        }
    }

    if (conn->sock.out_last > conn->sock.out_pos
        && (size_t) (conn->sock.out_last - conn->sock.out_pos) + need
           > conn->worker->buffer_limit)
    {
        conn->stats->rejected++;
        *retry_after = 1;
        return NGX_HTTP_ZMQ_OVERLOADED;
    }

    if (conn->next_seq - conn->head_seq >= conn->ring_size
        && ngx_zmq_stomp_grow_ring(conn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    pub = conn->free_pubs;

    if (pub != NULL) {
        conn->free_pubs = pub->next;

    } else {
        pub = ngx_palloc(conn->pool, sizeof(ngx_zmq_stomp_pub_t));
        if (pub == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_zmq_socket_reserve(&conn->sock, need) != NGX_OK) {
        pub->next = conn->free_pubs;
        conn->free_pubs = pub;
        return NGX_ERROR;
    }

    seq = conn->next_seq;
    start = conn->sock.out_last;
    p = start;

    p = ngx_cpymem(p, "SEND\ndestination:", 17);
    p = ngx_zmq_stomp_escape(p, msg->destination.data, msg->destination.len);
    p = ngx_sprintf(p, "\nreceipt:%uL\n", seq);

    /*
     * amq-msg-type:text is not sent: it marks (use_jms) a body of a textual
     * content type, which goes in ActiveMQ's TextMessage form if it can
     * (see ngx_zmq_stomp_text()), else as bytes with content-length
     */

    text = 0;

    for (i = 0; i < msg->nheaders; i++) {
        if (ngx_zmq_stomp_is_msg_type(&msg->headers[i].key)) {
            text = (msg->headers[i].value.len == 4
                    && ngx_strncmp(msg->headers[i].value.data, "text", 4)
                       == 0);
            continue;
        }

        p = ngx_zmq_stomp_escape(p, msg->headers[i].key.data,
                                 msg->headers[i].key.len);
        *p++ = ':';
        p = ngx_zmq_stomp_escape(p, msg->headers[i].value.data,
                                 msg->headers[i].value.len);
        *p++ = '\n';
    }

    typed = p;
    p = ngx_sprintf(p, "content-length:%O\n\n", msg->body_len);
    body = p;

    /* the body, read without changing the request's buffers */

    len = (size_t) msg->body_len;

    for (cl = msg->body; cl != NULL && len > 0; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            n = ngx_min((size_t) (b->last - b->pos), len);
            p = ngx_cpymem(p, b->pos, n);
            len -= n;
            continue;
        }

        for (off = b->file_pos; off < b->file_last && len > 0; off += n) {
            n = ngx_min((size_t) (b->file_last - off), len);
            rd = ngx_read_file(b->file, p, n, off);
            if (rd != (ssize_t) n) {
                conn->sock.out_last = start;
                pub->next = conn->free_pubs;
                conn->free_pubs = pub;
                return NGX_ERROR;
            }
            p += n;
            len -= n;
        }
    }

    if (len > 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "zmq: request body shorter than its length");
        conn->sock.out_last = start;
        pub->next = conn->free_pubs;
        conn->free_pubs = pub;
        return NGX_ERROR;
    }

    if (text) {
        p = ngx_zmq_stomp_text(typed, body, p);
    }

    *p++ = '\0';
    conn->sock.out_last = p;

    ngx_memzero(pub, sizeof(ngx_zmq_stomp_pub_t));
    pub->seq = seq;
    pub->conn = conn;
    pub->data = msg->data;
    pub->done = msg->done;

    conn->ring[seq & (conn->ring_size - 1)] = pub;
    conn->next_seq++;
    conn->inflight++;

    pub->timer.handler = ngx_zmq_stomp_pub_timeout;
    pub->timer.data = pub;
    pub->timer.log = conn->log;

    if (msg->timeout) {
        ngx_add_timer(&pub->timer, msg->timeout);
        conn->longest = ngx_max(conn->longest, msg->timeout);
    }

    conn->stats->published++;
    conn->stats->inflight++;

    *pubp = pub;

    ngx_post_event(conn->sock.connection->write, &ngx_posted_events);

    if (conn->sock.out_last - conn->sock.out_pos
        >= NGX_ZMQ_STOMP_EARLY_SEND)
    {
        (void) ngx_zmq_stomp_send(conn);
    }

    return NGX_OK;
}


/*
 * Probes (the admin API's ping). A probe is a connection like the others,
 * with three differences: it tries its addresses in order, once each,
 * within one deadline (the worker's connect_timeout), and stops at the
 * first broker that answered anything (a login refused is the answer);
 * at CONNECTED it sends DISCONNECT and closes; and instead of backing off
 * it reports its result from free_ev (the event loop, never under the
 * caller's feet), then frees itself.
 */

ngx_zmq_stomp_conn_t *
ngx_zmq_stomp_probe(ngx_zmq_stomp_worker_t *w, ngx_zmq_stomp_conf_t *conf,
    ngx_zmq_stomp_probe_pt done, void *data, ngx_log_t *log)
{
    ngx_zmq_stomp_conn_t  *conn;

    conn = ngx_zmq_stomp_create(w, conf, NULL, log);
    if (conn == NULL) {
        return NULL;
    }

    /*
     * Not cancelable: a graceful shutdown waits for the probe's answer (a
     * request waits on it), which its deadline bounds.
     */
    conn->timer.cancelable = 0;

    conn->probing = 1;
    conn->probe = done;
    conn->probe_data = data;
    conn->addr = 0;
    conn->conf->heartbeat = 0;
    conn->probe_deadline = ngx_current_msec + w->connect_timeout;

    if (conn->conf->naddrs == 0) {
        ngx_zmq_stomp_probe_finish(conn, NGX_ERROR, "no address to connect "
                                   "to");
        return conn;
    }

    if (conn->conf->tls && conn->conf->tls_ctx == NULL) {
        ngx_zmq_stomp_probe_finish(conn, NGX_ERROR,
                                   (char *) conn->conf->tls_error.data);
        return conn;
    }

    ngx_zmq_stomp_connect(conn);
    return conn;
}


void
ngx_zmq_stomp_probe_cancel(ngx_zmq_stomp_conn_t *conn)
{
    conn->probe = NULL;
    conn->probe_data = NULL;

    if (conn->probe_cb) {
        return;                 /* freed once its done() returns */
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq stomp \"%V\": probe cancelled", &conn->conf->name);

    ngx_zmq_stomp_destroy(conn);
}


/* an attempt failed: the next address, or the end */
static void
ngx_zmq_stomp_probe_next(ngx_zmq_stomp_conn_t *conn, const char *reason)
{
    u_char  text[256], *p;

    if (conn->probe_done) {
        return;
    }

    if (conn->probe_error[0] == '\0' && !conn->heard
        && conn->addr < conn->conf->naddrs
        && (ngx_msec_int_t) (conn->probe_deadline - ngx_current_msec) > 0)
    {
        ngx_zmq_stomp_connect(conn);
        return;
    }

    if (conn->probe_error[0] != '\0') {
        ngx_zmq_stomp_probe_finish(conn, NGX_ERROR,
                                   (char *) conn->probe_error);
        return;
    }

    p = ngx_snprintf(text, sizeof(text) - 1, "%V: %s", &conn->peer, reason);
    *p = '\0';

    ngx_zmq_stomp_probe_finish(conn, NGX_ERROR, (char *) text);
}


static void
ngx_zmq_stomp_probe_finish(ngx_zmq_stomp_conn_t *conn, ngx_int_t rc,
    const char *error)
{
    size_t  len;

    conn->probe_done = 1;
    conn->probe_rc = rc;

    if (error != NULL && error != (char *) conn->probe_error) {
        len = ngx_min(ngx_strlen(error), sizeof(conn->probe_error) - 1);
        ngx_memcpy(conn->probe_error, error, len);
        conn->probe_error[len] = '\0';
    }

    ngx_zmq_socket_close(&conn->sock);
    ngx_zmq_socket_discard(&conn->sock);
    ngx_zmq_stomp_wipe(conn);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->hb.timer_set) {
        ngx_del_timer(&conn->hb);
    }

    ngx_zmq_stomp_set_state(conn, NGX_ZMQ_STOMP_IDLE);

    if (!conn->free_ev.posted) {
        ngx_post_event(&conn->free_ev, &ngx_posted_events);
    }
}


static void
ngx_zmq_stomp_probe_report(ngx_zmq_stomp_conn_t *conn)
{
    void                          *data;
    ngx_zmq_stomp_probe_pt         done;
    ngx_zmq_stomp_probe_result_t   res;

    done = conn->probe;
    data = conn->probe_data;
    conn->probe = NULL;
    conn->probe_data = NULL;

    res.rc = conn->probe_rc;
    res.error.data = conn->probe_error;
    res.error.len = res.rc == NGX_OK ? 0 : ngx_strlen(conn->probe_error);
    res.server.data = conn->server;
    res.server.len = ngx_strlen(conn->server);
    res.address = conn->peer;
    res.tls.data = conn->tls_version;
    res.tls.len = ngx_strlen(conn->tls_version);
    res.verified = conn->tls_verified;

    if (done != NULL) {
        conn->probe_cb = 1;
        done(data, &res);
        conn->probe_cb = 0;
    }

    ngx_zmq_stomp_destroy(conn);
}


/* CONNECTED: the broker took us; say goodbye and report */
static ngx_int_t
ngx_zmq_stomp_probe_ok(ngx_zmq_stomp_conn_t *conn)
{
    size_t      n;
    ngx_str_t  *v;

    v = ngx_zmq_stomp_header(conn, "server");

    for (n = 0; v != NULL && n < v->len && n < sizeof(conn->server) - 1;
         n++)
    {
        conn->server[n] = (v->data[n] >= 0x20 && v->data[n] < 0x7f)
                          ? v->data[n] : '?';
    }

    conn->server[n] = '\0';

    /* DISCONNECT, written if the socket takes it; no receipt awaited */

    if (ngx_zmq_socket_reserve(&conn->sock, sizeof("DISCONNECT\n\n"))
        == NGX_OK)
    {
        conn->sock.out_last = ngx_cpymem(conn->sock.out_last,
                                         "DISCONNECT\n\n",
                                         sizeof("DISCONNECT\n\n"));
        (void) ngx_zmq_stomp_send(conn);
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq stomp \"%V\": probe of %V: CONNECTED, closed",
                  &conn->conf->name, &conn->peer);

    ngx_zmq_stomp_probe_finish(conn, NGX_OK, NULL);

    return NGX_ERROR;               /* closed: stop reading */
}
