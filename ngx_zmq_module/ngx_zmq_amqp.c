
/*
 * ngx_zmq: an AMQP 0-9-1 publisher driven by the NGINX event loop.
 *
 * NGINX owns the socket (ngx_event_connect_peer, edge-triggered events,
 * timers); rabbitmq-c only encodes methods and properties and decodes the
 * few methods a broker sends. Nothing here blocks: writes that do not fit
 * the socket stay in an output buffer and are resumed on the write event.
 *
 * What the broker sends is read as an attacker could have written it: the
 * frames are split here, each size checked against the negotiated
 * frame_max before anything is allocated or copied; only the methods a
 * publisher expects, on the channels it opened, are decoded; tables are
 * walked here, with a bounded depth, before the codec sees them (its
 * decoder recurses without a limit); content bodies are skipped, never
 * buffered; text from the broker is escaped before it is logged.
 *
 * Handshake: protocol header, start/start-ok (PLAIN), tune/tune-ok,
 * connection.open, channel.open (channel 1), confirm.select. Every publish
 * takes the next delivery tag; basic.ack/nack (with "multiple") resolve
 * them in a ring that grows with the messages in flight, up to
 * max_inflight. basic.return marks a mandatory message as unroutable: every
 * mandatory message carries the header x-zmq-seq (its delivery tag, set by
 * the gateway), which the broker returns with it; except a request that
 * awaits a reply, whose correlation_id (the gateway's fresh UUID, unique)
 * finds its waiter and so its delivery tag: it goes without a headers
 * table when nothing else asks for one, which the broker would decode and
 * encode again for every request. RabbitMQ sends a message's basic.return
 * before its basic.ack, so the ack that follows finds it marked.
 *
 * Request/reply: the first rpc publish after each connect is preceded, in
 * the same write, by basic.consume of RabbitMQ's direct reply-to
 * (amq.rabbitmq.reply-to, no-ack) on channel 1. Replies arrive as
 * basic.deliver for that consumer; their content header is read here,
 * every length checked against the frame (content_type, the headers
 * table for x-zmq-status, correlation_id), and matched to the waiting
 * request in a red-black tree keyed by correlation id. Only a reply for
 * a request still waiting is buffered, up to NGX_ZMQ_AMQP_REPLY_MAX.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_zmq_amqp.h"
#include "ngx_zmq_socket.h"


#define NGX_HTTP_ZMQ_CHANNEL          1
#define NGX_HTTP_ZMQ_IN_SIZE          65536
#define NGX_HTTP_ZMQ_IN_PER_EVENT     (16 * NGX_HTTP_ZMQ_IN_SIZE)
#define NGX_HTTP_ZMQ_BACKOFF_MIN      100
#define NGX_HTTP_ZMQ_BACKOFF_MAX      10000
#define NGX_HTTP_ZMQ_METHOD_MAX       1024   /* a publish method frame */
#define NGX_HTTP_ZMQ_FRAME_MAX_LIMIT  2097152
#define NGX_HTTP_ZMQ_RING_MIN         16
#define NGX_HTTP_ZMQ_TABLE_DEPTH      16     /* nested tables and arrays */
#define NGX_HTTP_ZMQ_OUT_KEEP         (1024 * 1024)
#define NGX_HTTP_ZMQ_SEQ_HEADER       "x-zmq-seq"
#define NGX_HTTP_ZMQ_CONSUMER_TAG     "ngx_zmq.rpc"
#define NGX_HTTP_ZMQ_DRAIN_GRACE      5000
#define NGX_HTTP_ZMQ_DRAIN_DEFAULT    60000  /* no publish had a timeout */

/*
 * A connection whose broker has nacked every message for this long (no
 * ack since the first of those nacks) is closed and opened again, on the
 * next address. RabbitMQ 3.10 keeps refusing, on a channel whose first
 * publish to a quorum queue came while the queue had no leader (its
 * leader's node had just died), every later publish to that queue, until
 * that node is back; a fresh channel is accepted at once.
 */
#define NGX_HTTP_ZMQ_NACK_RESET       1000
#ifndef NGX_ZMQ_AMQP_EARLY_SEND
#define NGX_ZMQ_AMQP_EARLY_SEND       4096
#endif


/* what channel 1 expects after a basic.return or basic.deliver */
typedef enum {
    NGX_HTTP_ZMQ_CONTENT_NONE = 0,
    NGX_HTTP_ZMQ_CONTENT_HEADER,
    NGX_HTTP_ZMQ_CONTENT_BODY
} ngx_http_zmq_content_e;


/* the reply consumer on channel 1 */
typedef enum {
    NGX_HTTP_ZMQ_RPC_NONE = 0,
    NGX_HTTP_ZMQ_RPC_ASKED,             /* basic.consume written */
    NGX_HTTP_ZMQ_RPC_READY              /* basic.consume-ok came */
} ngx_http_zmq_rpc_e;


/* what a content header's headers table holds for us (depth 0 only) */
typedef struct {
    uint64_t                      seq;
    ngx_int_t                     status;      /* -1: absent, 0: invalid */
    unsigned                      has_seq:1;
} ngx_zmq_amqp_found_t;


typedef enum {
    NGX_HTTP_ZMQ_HS_START = 0,
    NGX_HTTP_ZMQ_HS_TUNE,
    NGX_HTTP_ZMQ_HS_OPEN,
    NGX_HTTP_ZMQ_HS_CHANNEL,
    NGX_HTTP_ZMQ_HS_CONFIRM,
    NGX_HTTP_ZMQ_HS_DONE
} ngx_http_zmq_hs_e;


struct ngx_zmq_amqp_conn_s {
    ngx_pool_t                   *pool;
    ngx_zmq_amqp_worker_t        *worker;
    ngx_queue_t                   queue;       /* all connections */
    ngx_event_t                   free_ev;
    ngx_event_t                   drain;       /* bounds a retired drain */
    ngx_msec_t                    longest;     /* longest publish timeout */
    unsigned                      retired:1;

    /* a probe: one attempt, its result reported from free_ev */
    unsigned                      probing:1;
    unsigned                      probe_done:1;  /* the result is set */
    unsigned                      probe_cb:1;    /* in its done() */
    unsigned                      probe_declaring:1;
    ngx_str_t                     probe_exchange; /* to check, or empty */
    ngx_uint_t                    probe_code;    /* channel.close's */
    ngx_zmq_amqp_probe_pt         probe;
    void                         *probe_data;
    ngx_msec_t                    probe_deadline;
    ngx_int_t                     probe_rc;
    u_char                        probe_error[256];
    u_char                        product[64];
    u_char                        version[64];

    ngx_http_zmq_outconn_conf_t  *conf;
    ngx_zmq_amqp_stats_t         *stats;
    ngx_zmq_amqp_stats_t          local_stats;
    ngx_log_t                    *log;

    ngx_uint_t                    state;
    ngx_uint_t                    hs;
    ngx_zmq_socket_t              sock;

    /* TLS: the TCP connect to finish first, then the handshake */
    unsigned                      tls_wait:1;
    unsigned                      tls_handshake:1;
    unsigned                      tls_verified:1;
    u_char                        tls_version[16];
    ngx_uint_t                    cur;         /* the address tried */
    ngx_str_t                     peer;
    u_char                        why[160];    /* a handler's failure */

    uint64_t                      queued;      /* bytes ever queued */

    u_char                       *in;
    unsigned                      got_bytes:1;

    /* the frame being read: its header, then its payload and end byte */
    u_char                        fhdr[7];
    size_t                        fhdr_len;
    ngx_uint_t                    ftype;
    ngx_uint_t                    fchannel;
    size_t                        fsize;
    size_t                        fgot;
    u_char                       *fbuf;        /* method, header payloads */
    size_t                        fbuf_size;
    amqp_pool_t                   decode_pool;

    /* a returned message being read */
    ngx_uint_t                    content;
    uint64_t                      content_left;
    ngx_uint_t                    return_code;
    u_char                        return_key[256];
    size_t                        return_key_len;

    /* replies (direct reply-to): who waits, and the one being read */
    ngx_uint_t                    rpc;         /* ngx_http_zmq_rpc_e */
    ngx_rbtree_t                  rpc_tree;
    ngx_rbtree_node_t             rpc_sentinel;
    ngx_uint_t                    rpc_waiting;
    unsigned                      delivering:1;
    ngx_zmq_amqp_rpc_t           *deliver_rpc; /* NULL: read past it */
    ngx_zmq_amqp_reply_t          reply;
    size_t                        reply_got;
    u_char                        reply_type[256];

    /* messages in flight: ring[tag & (ring_size - 1)], grown on demand */
    ngx_http_zmq_pub_t          **ring;
    ngx_uint_t                    ring_size;
    ngx_http_zmq_pub_t           *free_pubs;
    ngx_uint_t                    max_inflight;
    uint64_t                      next_tag;
    uint64_t                      head_tag;
    uint64_t                      written_tag;

    ngx_uint_t                    frame_max;
    ngx_uint_t                    in_frame_max;
    ngx_uint_t                    heartbeat;
    ngx_msec_t                    last_recv;
    ngx_msec_t                    last_send;

    ngx_event_t                   timer;       /* handshake or backoff */
    ngx_event_t                   hb;
    ngx_zmq_backoff_t             backoff;
    ngx_msec_t                    next_attempt;
    ngx_uint_t                    addr;

    /* nacks and no ack since nack_since: see NGX_HTTP_ZMQ_NACK_RESET */
    ngx_msec_t                    nack_since;
    unsigned                      nacking:1;
#if (NGX_ZMQ_PROBE)
    uint64_t                     probe_read;  /* this read event's start */
#endif
};


static void ngx_zmq_amqp_connect(ngx_zmq_amqp_conn_t *conn);
static void ngx_zmq_amqp_close(ngx_zmq_amqp_conn_t *conn,
    ngx_uint_t level, const char *reason);
static void ngx_zmq_amqp_timer_handler(ngx_event_t *ev);
static void ngx_zmq_amqp_hb_handler(ngx_event_t *ev);
static void ngx_zmq_amqp_read_handler(ngx_event_t *ev);
static void ngx_zmq_amqp_write_handler(ngx_event_t *ev);
static void ngx_zmq_amqp_tls_start(ngx_zmq_amqp_conn_t *conn);
static void ngx_zmq_amqp_tls_done(ngx_connection_t *c);
static void ngx_zmq_amqp_set_error(ngx_zmq_amqp_conn_t *conn,
    const char *text);
static ngx_int_t ngx_zmq_amqp_send(ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_flush(ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_input(ngx_zmq_amqp_conn_t *conn,
    u_char **pos, u_char *last);
static ngx_int_t ngx_zmq_amqp_chunk(void *data, u_char *buf, size_t n);
static ngx_int_t ngx_zmq_amqp_frame_start(
    ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_frame(ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_method_frame(
    ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_header_frame(
    ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_method_in(ngx_zmq_amqp_conn_t *conn,
    amqp_method_number_t id, void *decoded);
static ngx_int_t ngx_zmq_amqp_table(u_char **pos, u_char *last,
    ngx_uint_t depth, ngx_zmq_amqp_found_t *found);
static ngx_int_t ngx_zmq_amqp_status(u_char type, u_char *p, u_char *last);
static ngx_int_t ngx_zmq_amqp_shortstr(u_char **pos, u_char *last,
    ngx_str_t *out);
static ngx_int_t ngx_zmq_amqp_deliver_header(ngx_zmq_amqp_conn_t *conn);
static void ngx_zmq_amqp_delivered(ngx_zmq_amqp_conn_t *conn);
static void ngx_zmq_amqp_rpc_fail(ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_deliver(ngx_zmq_amqp_conn_t *conn,
    amqp_basic_deliver_t *d);
static ngx_int_t ngx_zmq_amqp_value(u_char type, u_char **pos,
    u_char *last, ngx_uint_t depth);
static void ngx_zmq_amqp_bad(ngx_zmq_amqp_conn_t *conn,
    const char *what, const char *detail);
static u_char *ngx_zmq_amqp_escape(u_char *dst, size_t size,
    u_char *src, size_t len);
static ngx_int_t ngx_zmq_amqp_grow_ring(ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_method(ngx_zmq_amqp_conn_t *conn,
    amqp_channel_t channel, amqp_method_number_t id, void *decoded);
static void ngx_zmq_amqp_resolve(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static void ngx_zmq_amqp_pub_timeout(ngx_event_t *ev);


static void ngx_zmq_amqp_free_handler(ngx_event_t *ev);
static void ngx_zmq_amqp_drain_handler(ngx_event_t *ev);
static void ngx_zmq_amqp_release(ngx_zmq_amqp_conn_t *conn);
static void ngx_zmq_amqp_check_retired(ngx_zmq_amqp_conn_t *conn);
static ngx_zmq_amqp_conn_t *ngx_zmq_amqp_create(ngx_zmq_amqp_worker_t *w,
    ngx_http_zmq_outconn_conf_t *src, ngx_zmq_amqp_stats_t *stats,
    ngx_log_t *log);
static void ngx_zmq_amqp_destroy(ngx_zmq_amqp_conn_t *conn);
static void ngx_zmq_amqp_wipe(ngx_zmq_amqp_conn_t *conn);
static void ngx_zmq_amqp_probe_next(ngx_zmq_amqp_conn_t *conn,
    const char *reason);
static void ngx_zmq_amqp_probe_finish(ngx_zmq_amqp_conn_t *conn,
    ngx_int_t rc, const char *error);
static void ngx_zmq_amqp_probe_report(ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_probe_ok(ngx_zmq_amqp_conn_t *conn);
static ngx_int_t ngx_zmq_amqp_probe_declare(ngx_zmq_amqp_conn_t *conn);
static void ngx_zmq_amqp_probe_bye(ngx_zmq_amqp_conn_t *conn,
    const char *text);
static void ngx_zmq_amqp_probe_server(ngx_zmq_amqp_conn_t *conn,
    amqp_table_t *props);


static const char  *ngx_zmq_amqp_states[] = {
    "idle", "connecting", "ready", "blocked", "backoff"
};


const char *
ngx_zmq_amqp_state_name(ngx_uint_t state)
{
    if (state >= sizeof(ngx_zmq_amqp_states) / sizeof(char *)) {
        return "unknown";
    }

    return ngx_zmq_amqp_states[state];
}


static void
ngx_zmq_amqp_set_state(ngx_zmq_amqp_conn_t *conn, ngx_uint_t state)
{
    conn->state = state;
    conn->stats->state = state;
}


void
ngx_zmq_amqp_configure(ngx_zmq_amqp_worker_t *w, ngx_msec_t connect_timeout,
    size_t buffer_limit)
{
    w->connect_timeout = connect_timeout;
    w->buffer_limit = buffer_limit;
}


static ngx_int_t
ngx_zmq_amqp_copy_str(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t *src)
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


ngx_zmq_amqp_conn_t *
ngx_zmq_amqp_open(ngx_zmq_amqp_worker_t *w, ngx_http_zmq_outconn_conf_t *src,
    ngx_zmq_amqp_stats_t *stats, ngx_log_t *log)
{
    ngx_zmq_amqp_conn_t  *conn;

    conn = ngx_zmq_amqp_create(w, src, stats, log);
    if (conn == NULL) {
        return NULL;
    }

    if (!conn->conf->active || conn->conf->naddrs == 0) {
        ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_IDLE);
        return conn;
    }

    if (conn->conf->tls && conn->conf->tls_ctx == NULL) {
        /* logged when the configuration was built; status says why */
        ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_IDLE);
        ngx_zmq_amqp_set_error(conn, (char *) conn->conf->tls_error.data);
        return conn;
    }

    ngx_zmq_amqp_connect(conn);
    return conn;
}


/* status: why the last attempt or connection ended (another worker may
   read it meanwhile: always NUL-ended within the field) */
static void
ngx_zmq_amqp_set_error(ngx_zmq_amqp_conn_t *conn, const char *text)
{
    if (text == NULL) {
        conn->stats->last_error[0] = '\0';
        return;
    }

    ngx_cpystrn(conn->stats->last_error, (u_char *) text,
                sizeof(conn->stats->last_error));
}


/* a connection, in the worker's list, not connected */
static ngx_zmq_amqp_conn_t *
ngx_zmq_amqp_create(ngx_zmq_amqp_worker_t *w,
    ngx_http_zmq_outconn_conf_t *src, ngx_zmq_amqp_stats_t *stats,
    ngx_log_t *log)
{
    ngx_uint_t                    i;
    ngx_pool_t                   *pool;
    ngx_zmq_amqp_conn_t          *conn;
    ngx_http_zmq_outconn_conf_t  *oc;

    if (!w->inited) {
        ngx_queue_init(&w->all);
        w->inited = 1;
    }

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NULL;
    }

    conn = ngx_pcalloc(pool, sizeof(ngx_zmq_amqp_conn_t));
    oc = ngx_pcalloc(pool, sizeof(ngx_http_zmq_outconn_conf_t));
    if (conn == NULL || oc == NULL) {
        goto failed;
    }

    /* a copy that lives as long as the connection */

    *oc = *src;
    oc->tls_ctx = NULL;             /* referenced below, once it is kept */

    if (ngx_zmq_amqp_copy_str(pool, &oc->name, &src->name) != NGX_OK
        || ngx_zmq_amqp_copy_str(pool, &oc->def_name, &src->def_name)
           != NGX_OK
        || ngx_zmq_amqp_copy_str(pool, &oc->vhost, &src->vhost)
           != NGX_OK
        || ngx_zmq_amqp_copy_str(pool, &oc->username, &src->username)
           != NGX_OK
        || ngx_zmq_amqp_copy_str(pool, &oc->password, &src->password)
           != NGX_OK
        || ngx_zmq_amqp_copy_str(pool, &oc->server_name, &src->server_name)
           != NGX_OK)
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
        oc->tls_hosts = ngx_pcalloc(pool, src->naddrs * sizeof(ngx_str_t));
        if (oc->tls_hosts == NULL) {
            goto failed;
        }

        for (i = 0; src->tls_hosts != NULL && i < src->naddrs; i++) {
            if (ngx_zmq_amqp_copy_str(pool, &oc->tls_hosts[i],
                                      &src->tls_hosts[i])
                != NGX_OK)
            {
                goto failed;
            }
        }
    }

    oc->addrs = ngx_palloc(pool, src->naddrs * sizeof(ngx_addr_t));
    if (oc->addrs == NULL) {
        goto failed;
    }

    for (i = 0; i < src->naddrs; i++) {
        oc->addrs[i].socklen = src->addrs[i].socklen;
        oc->addrs[i].sockaddr = ngx_palloc(pool, src->addrs[i].socklen);
        if (oc->addrs[i].sockaddr == NULL
            || ngx_zmq_amqp_copy_str(pool, &oc->addrs[i].name,
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
    conn->stats->generation = ++w->generation;
    ngx_cpystrn(conn->stats->name, oc->name.data,
                ngx_min(oc->name.len + 1, NGX_HTTP_ZMQ_NAME_LEN));

    /* the configuration is checked by the model; these are the hard caps */

    if (oc->max_inflight > NGX_HTTP_ZMQ_MAX_INFLIGHT) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "zmq amqp \"%V\": max_inflight %ui is above the limit "
                      "of %d; using %d", &oc->name, oc->max_inflight,
                      NGX_HTTP_ZMQ_MAX_INFLIGHT, NGX_HTTP_ZMQ_MAX_INFLIGHT);
        oc->max_inflight = NGX_HTTP_ZMQ_MAX_INFLIGHT;
    }

    if (oc->max_inflight == 0) {
        oc->max_inflight = 1;
    }

    if (oc->frame_max < AMQP_FRAME_MIN_SIZE
        || oc->frame_max > NGX_HTTP_ZMQ_FRAME_MAX_LIMIT)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "zmq amqp \"%V\": frame_max %ui is outside %d-%d; "
                      "using %d", &oc->name, oc->frame_max,
                      AMQP_FRAME_MIN_SIZE, NGX_HTTP_ZMQ_FRAME_MAX_LIMIT,
                      oc->frame_max < AMQP_FRAME_MIN_SIZE
                      ? AMQP_FRAME_MIN_SIZE : NGX_HTTP_ZMQ_FRAME_MAX_LIMIT);
        oc->frame_max = oc->frame_max < AMQP_FRAME_MIN_SIZE
                        ? AMQP_FRAME_MIN_SIZE : NGX_HTTP_ZMQ_FRAME_MAX_LIMIT;
    }

    if (oc->heartbeat > 65535) {
        oc->heartbeat = 65535;
    }

    conn->max_inflight = oc->max_inflight;

    conn->in = ngx_palloc(pool, NGX_HTTP_ZMQ_IN_SIZE);
    if (conn->in == NULL || ngx_zmq_amqp_grow_ring(conn) != NGX_OK) {
        goto failed;
    }

    init_amqp_pool(&conn->decode_pool, 4096);

    ngx_rbtree_init(&conn->rpc_tree, &conn->rpc_sentinel,
                    ngx_str_rbtree_insert_value);

    conn->timer.handler = ngx_zmq_amqp_timer_handler;
    conn->timer.data = conn;
    conn->timer.log = log;
    conn->timer.cancelable = 1;

    conn->hb.handler = ngx_zmq_amqp_hb_handler;
    conn->hb.data = conn;
    conn->hb.log = log;
    conn->hb.cancelable = 1;

    conn->free_ev.handler = ngx_zmq_amqp_free_handler;
    conn->free_ev.data = conn;
    conn->free_ev.log = log;

    conn->drain.handler = ngx_zmq_amqp_drain_handler;
    conn->drain.data = conn;
    conn->drain.log = log;
    conn->drain.cancelable = 1;

    conn->sock.log = log;
    conn->sock.out_min = 16384;
    ngx_zmq_backoff_init(&conn->backoff, NGX_HTTP_ZMQ_BACKOFF_MIN,
                         NGX_HTTP_ZMQ_BACKOFF_MAX, 1);

    /*
     * Worker N starts at address N (mod their number), so that the workers
     * of a gateway spread over a cluster's nodes, and goes round from there
     * on failure (connect() takes the next one each time).
     */
    conn->addr = oc->naddrs ? ngx_worker % oc->naddrs : 0;

    ngx_queue_insert_tail(&w->all, &conn->queue);
    ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_IDLE);

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
ngx_zmq_amqp_retire(ngx_zmq_amqp_conn_t *conn)
{
    conn->retired = 1;
    conn->stats->draining = 1;

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq amqp \"%V\": retired by a configuration change; "
                  "%uL message(s) to drain", &conn->conf->name,
                  conn->next_tag - conn->head_tag);

    /*
     * A broker that never confirms (and sends heartbeats, or has none
     * agreed) would keep it forever: once every request waiting on it has
     * had its answer (its confirm timeout), and a grace period, what is
     * still in flight is given up as lost.
     */

    if ((conn->head_tag < conn->next_tag || conn->rpc_waiting)
        && !conn->drain.timer_set)
    {
        ngx_add_timer(&conn->drain,
                      (conn->longest ? conn->longest
                                     : NGX_HTTP_ZMQ_DRAIN_DEFAULT)
                      + NGX_HTTP_ZMQ_DRAIN_GRACE);
    }

    ngx_zmq_amqp_check_retired(conn);
}


static void
ngx_zmq_amqp_drain_handler(ngx_event_t *ev)
{
    u_char                     text[128];
    ngx_zmq_amqp_conn_t       *conn = ev->data;

    if ((conn->head_tag >= conn->next_tag && conn->rpc_waiting == 0)
        || conn->sock.connection == NULL)
    {
        return;
    }

    ngx_snprintf(text, sizeof(text) - 1, "retired, and %uL message(s) "
                 "still unconfirmed%s after %M ms: given up as lost%Z",
                 conn->next_tag - conn->head_tag + conn->rpc_waiting,
                 conn->rpc_waiting ? " or awaiting a reply" : "",
                 (conn->longest ? conn->longest : NGX_HTTP_ZMQ_DRAIN_DEFAULT)
                 + NGX_HTTP_ZMQ_DRAIN_GRACE);
    text[sizeof(text) - 1] = '\0';

    ngx_zmq_amqp_close(conn, NGX_LOG_WARN, (char *) text);
}


static void
ngx_zmq_amqp_check_retired(ngx_zmq_amqp_conn_t *conn)
{
    if (!conn->retired || conn->head_tag < conn->next_tag
        || conn->rpc_waiting || conn->free_ev.posted)
    {
        return;
    }

    /* freed from the event loop, never under a caller's feet */
    ngx_post_event(&conn->free_ev, &ngx_posted_events);
}


/* the socket of one connection attempt */
static void
ngx_zmq_amqp_release(ngx_zmq_amqp_conn_t *conn)
{
    ngx_zmq_socket_close(&conn->sock);
}


static void
ngx_zmq_amqp_destroy(ngx_zmq_amqp_conn_t *conn)
{
    ngx_zmq_amqp_release(conn);

    /* nobody waits on a connection that is gone (none should by now) */
    ngx_zmq_amqp_rpc_fail(conn);

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

    /* the password, and the start-ok that carried it, leave no copy */
    ngx_zmq_amqp_wipe(conn);

    if (conn->conf->password.len) {
        ngx_explicit_memzero(conn->conf->password.data,
                             conn->conf->password.len);
    }

    ngx_zmq_socket_free(&conn->sock);
    ngx_free(conn->fbuf);
    conn->fbuf = NULL;
    ngx_free(conn->ring);
    conn->ring = NULL;
    empty_amqp_pool(&conn->decode_pool);

    ngx_memzero(conn->stats, sizeof(ngx_zmq_amqp_stats_t));
    ngx_queue_remove(&conn->queue);
    ngx_zmq_tls_ctx_put(conn->conf->tls_ctx);
    conn->conf->tls_ctx = NULL;
    ngx_destroy_pool(conn->pool);
}


/* what of the output buffer is not waiting to be sent: zeroes */
static void
ngx_zmq_amqp_wipe(ngx_zmq_amqp_conn_t *conn)
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
ngx_zmq_amqp_free_handler(ngx_event_t *ev)
{
    ngx_zmq_amqp_conn_t       *conn = ev->data;

    if (conn->probing) {
        ngx_zmq_amqp_probe_report(conn);
        return;
    }

    if (conn->head_tag < conn->next_tag || conn->rpc_waiting) {
        return;                 /* a message came in after all */
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq amqp \"%V\": drained and closed", &conn->conf->name);

    ngx_zmq_amqp_destroy(conn);
}


void
ngx_zmq_amqp_exit_process(ngx_zmq_amqp_worker_t *w, ngx_cycle_t *cycle)
{
    ngx_queue_t               *q;
    ngx_zmq_amqp_conn_t       *conn;

    if (!w->inited) {
        return;
    }

    for (q = ngx_queue_head(&w->all);
         q != ngx_queue_sentinel(&w->all);
         q = ngx_queue_next(q))
    {
        conn = ngx_queue_data(q, ngx_zmq_amqp_conn_t, queue);

        ngx_zmq_socket_close(&conn->sock);
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


/* appends one method frame; the caller has reserved room */
static ngx_int_t
ngx_zmq_amqp_put_method(ngx_zmq_amqp_conn_t *conn,
    amqp_channel_t channel, amqp_method_number_t id, void *decoded,
    size_t room)
{
    int            n;
    u_char        *p;
    amqp_bytes_t   enc;

    p = conn->sock.out_last;
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

    conn->queued += p - conn->sock.out_last;
    conn->sock.out_last = p;

    return NGX_OK;
}


static ngx_int_t
ngx_zmq_amqp_method(ngx_zmq_amqp_conn_t *conn,
    amqp_channel_t channel, amqp_method_number_t id, void *decoded)
{
    size_t  room;

    room = ngx_max(conn->frame_max, AMQP_FRAME_MIN_SIZE);

    if (ngx_zmq_socket_reserve(&conn->sock, room) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_zmq_amqp_put_method(conn, channel, id, decoded, room);
}


static void
ngx_zmq_amqp_backoff(ngx_zmq_amqp_conn_t *conn)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_terminate || ngx_quit || conn->retired) {
        ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_IDLE);
        ngx_zmq_amqp_check_retired(conn);
        return;
    }

    delay = ngx_zmq_backoff_next(&conn->backoff);
    conn->next_attempt = ngx_current_msec + delay;

    ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_BACKOFF);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_add_timer(&conn->timer, delay);
}


static void
ngx_zmq_amqp_connect(ngx_zmq_amqp_conn_t *conn)
{
    int                           tcp_nodelay;
    u_char                        text[128], *p;
    ngx_err_t                     err;
    ngx_int_t                     rc;
    ngx_msec_t                    timeout;
    ngx_addr_t                   *addr;
    ngx_connection_t             *c;
    ngx_http_zmq_outconn_conf_t  *oc;
    static u_char                 header[] = "AMQP\x00\x00\x09\x01";

    oc = conn->conf;
    conn->cur = conn->addr++ % oc->naddrs;
    addr = &oc->addrs[conn->cur];
    conn->peer = addr->name;

    ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_CONNECTING);

    rc = ngx_zmq_socket_connect(&conn->sock, addr, ngx_zmq_amqp_read_handler,
                                ngx_zmq_amqp_write_handler, conn);

    if (rc == NGX_DECLINED && conn->probing) {
        err = ngx_socket_errno;
        p = ngx_cpymem(text, "connect() failed: ", 18);
        p = err ? ngx_strerror(err, p, sizeof(text) - 19)
                : ngx_cpymem(p, "no socket", 9);
        *p = '\0';
        ngx_zmq_amqp_close(conn, NGX_LOG_INFO, (char *) text);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": cannot connect to %V", &oc->name,
                      &addr->name);
        conn->stats->reconnects++;
        ngx_zmq_amqp_backoff(conn);
        return;
    }

    c = conn->sock.connection;

    /* frames are small and confirms are awaited: no Nagle delays */
    tcp_nodelay = 1;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY,
                   (const void *) &tcp_nodelay, sizeof(int)) == -1)
    {
        ngx_log_error(NGX_LOG_WARN, conn->log, ngx_socket_errno,
                      "zmq amqp \"%V\": setsockopt(TCP_NODELAY) failed",
                      &oc->name);
    }

    conn->hs = NGX_HTTP_ZMQ_HS_START;
    conn->got_bytes = 0;

    /* over TLS the protocol header waits in the buffer for the handshake */
    conn->tls_wait = oc->tls ? 1 : 0;
    conn->tls_handshake = 0;
    conn->tls_verified = 0;
    conn->tls_version[0] = '\0';
    conn->fhdr_len = 0;
    conn->content = NGX_HTTP_ZMQ_CONTENT_NONE;
    conn->rpc = NGX_HTTP_ZMQ_RPC_NONE;
    conn->delivering = 0;
    conn->frame_max = AMQP_FRAME_MIN_SIZE;

    /*
     * Until tune, frames up to our own limit are taken (AMQP asks for at
     * least 4096; a broker's connection.start may be longer).
     */
    conn->in_frame_max = oc->frame_max;
    conn->heartbeat = 0;
    conn->last_recv = ngx_current_msec;
    conn->last_send = ngx_current_msec;

    if (ngx_zmq_socket_reserve(&conn->sock, 8) != NGX_OK) {
        ngx_zmq_amqp_close(conn, NGX_LOG_ALERT, "out of memory");
        return;
    }

    conn->sock.out_last = ngx_cpymem(conn->sock.out_last, header, 8);
    conn->queued = 8;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    timeout = conn->worker->connect_timeout;

    if (conn->probing) {
        /* every address in turn, within the one bound */
        timeout = (ngx_msec_int_t) (conn->probe_deadline - ngx_current_msec)
                  > 0 ? conn->probe_deadline - ngx_current_msec : 1;
    }

    ngx_add_timer(&conn->timer, timeout);

    if (rc == NGX_OK) {
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


static void
ngx_zmq_amqp_close(ngx_zmq_amqp_conn_t *conn, ngx_uint_t level,
    const char *reason)
{
    uint64_t             tag;
    ngx_http_zmq_pub_t  *pub;

    if (conn->probing && level != NGX_LOG_ALERT) {
        level = NGX_LOG_INFO;           /* the ping's answer says why */
    }

    ngx_log_error(level, conn->log, 0,
                  "zmq amqp \"%V\": connection to %V closed: %s",
                  &conn->conf->name, &conn->peer, reason);

    ngx_zmq_amqp_set_error(conn, reason);
    conn->stats->tls[0] = '\0';
    conn->stats->verified = 0;
    conn->tls_wait = 0;
    conn->tls_handshake = 0;

    ngx_zmq_amqp_release(conn);

    if (conn->hb.timer_set) {
        ngx_del_timer(&conn->hb);
    }

    ngx_zmq_socket_discard(&conn->sock);
    ngx_zmq_amqp_wipe(conn);

    /* every message not yet confirmed is lost to this connection */
    for (tag = conn->head_tag; tag < conn->next_tag; tag++) {
        pub = conn->ring[tag & (conn->ring_size - 1)];
        if (pub != NULL && pub->tag == tag) {
            ngx_zmq_amqp_resolve(pub, NGX_HTTP_ZMQ_PUB_LOST);
        }
    }

    conn->fhdr_len = 0;
    conn->content = NGX_HTTP_ZMQ_CONTENT_NONE;

    conn->head_tag = conn->next_tag;
    conn->written_tag = conn->next_tag;

    /* direct reply-to replies die with the channel */
    ngx_zmq_amqp_rpc_fail(conn);

    if (conn->probing) {
        ngx_zmq_amqp_probe_next(conn, reason);
        return;
    }

    conn->stats->reconnects++;
    ngx_zmq_amqp_backoff(conn);
}


static void
ngx_zmq_amqp_timer_handler(ngx_event_t *ev)
{
    u_char                     text[96];
    ngx_zmq_amqp_conn_t       *conn = ev->data;

    if (conn->probing && conn->state == NGX_ZMQ_AMQP_CONNECTING) {
        ngx_snprintf(text, sizeof(text) - 1, "%s timed out (no answer "
                     "within zmq_amqp_connect_timeout, %M ms)%Z",
                     conn->probe_declaring ? "the exchange check"
                     : conn->tls_handshake ? "the TLS handshake"
                     : conn->sock.sent > 0 ? "the AMQP handshake"
                                           : "connect",
                     conn->worker->connect_timeout);
        text[sizeof(text) - 1] = '\0';
        ngx_zmq_amqp_close(conn, NGX_LOG_INFO, (char *) text);
        return;
    }

    if (conn->state == NGX_ZMQ_AMQP_BACKOFF) {
        ngx_zmq_amqp_connect(conn);
        return;
    }

    if (conn->state == NGX_ZMQ_AMQP_CONNECTING) {
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR,
                           conn->tls_handshake ? "TLS handshake timed out"
                           : conn->sock.sent > 0 ? "handshake timed out"
                                                 : "connect timed out");
    }
}


static void
ngx_zmq_amqp_hb_handler(ngx_event_t *ev)
{
    u_char                    *p;
    ngx_msec_t                 interval;
    ngx_zmq_amqp_conn_t       *conn = ev->data;

    if (conn->sock.connection == NULL || conn->heartbeat == 0) {
        return;
    }

    interval = conn->heartbeat * 1000 / 2;

    if (ngx_current_msec - conn->last_recv > conn->heartbeat * 2000) {
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR,
                           "no heartbeat from the broker");
        return;
    }

    if (ngx_current_msec - conn->last_send >= interval
        && conn->sock.out_pos == conn->sock.out_last)
    {
        if (ngx_zmq_socket_reserve(&conn->sock, 8) != NGX_OK) {
            ngx_zmq_amqp_close(conn, NGX_LOG_ALERT, "out of memory");
            return;
        }

        p = conn->sock.out_last;
        *p++ = AMQP_FRAME_HEARTBEAT;
        p = ngx_http_zmq_put16(p, 0);
        p = ngx_http_zmq_put32(p, 0);
        *p++ = AMQP_FRAME_END;
        conn->queued += 8;
        conn->sock.out_last = p;

        if (ngx_zmq_amqp_flush(conn) != NGX_OK) {
            ngx_zmq_amqp_close(conn, NGX_LOG_ERR, "write failed");
            return;
        }
    }

    ngx_add_timer(&conn->hb, interval);
}


static void
ngx_zmq_amqp_write_handler(ngx_event_t *wev)
{
    u_char                     text[256];
    ngx_connection_t          *c = wev->data;
    ngx_zmq_amqp_conn_t       *conn = c->data;

    if (conn->tls_wait) {
        ngx_zmq_amqp_tls_start(conn);
        return;
    }

    if (ngx_zmq_amqp_flush(conn) == NGX_OK) {
        return;
    }

#if (NGX_SSL)
    if (c->ssl != NULL) {
        /* "write failed: the server sent the TLS alert ..." */
        (void) ngx_zmq_tls_failure(c, text, sizeof(text), "write failed");
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) text);
        return;
    }
#else
    (void) text;
#endif

    ngx_zmq_amqp_close(conn, NGX_LOG_ERR,
                       conn->sock.sent > 0 ? "write failed"
                                           : "connection refused");
}


/*
 * TLS: the TCP connect ended (the write event, or a read event first when
 * it failed): the handshake, with the connection timer still running.
 */
static void
ngx_zmq_amqp_tls_start(ngx_zmq_amqp_conn_t *conn)
{
    u_char            text[160], *p;
    ngx_err_t         err;
    ngx_int_t         rc;
    ngx_str_t        *name;
    ngx_connection_t *c;

    c = conn->sock.connection;
    conn->tls_wait = 0;

    err = ngx_zmq_socket_error(&conn->sock);

    if (err) {
        p = ngx_cpymem(text, "connect() failed: ", 18);
        p = ngx_strerror(err, p, sizeof(text) - 19);
        *p = '\0';
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) text);
        return;
    }

    /* the name checked: server_name, else the host this address is for */
    name = conn->conf->server_name.len ? &conn->conf->server_name
           : &conn->conf->tls_hosts[conn->cur];

    conn->tls_handshake = 1;

    rc = ngx_zmq_tls_start(conn->conf->tls_ctx, c, name,
                           ngx_zmq_amqp_tls_done);

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_zmq_amqp_tls_done(c);
}


/* the handshake ended: verified, or closed with the reason */
static void
ngx_zmq_amqp_tls_done(ngx_connection_t *c)
{
    u_char                 why[NGX_ZMQ_TLS_ERROR_LEN];
    ngx_zmq_amqp_conn_t   *conn = c->data;

    conn->tls_handshake = 0;

    if (ngx_zmq_tls_result(c, why, sizeof(why)) != NGX_OK) {
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) why);
        return;
    }

    ngx_cpystrn(conn->tls_version, (u_char *) ngx_zmq_tls_version(c),
                sizeof(conn->tls_version));
    conn->tls_verified = ngx_zmq_tls_verified(c);
    ngx_cpystrn(conn->stats->tls, conn->tls_version,
                sizeof(conn->stats->tls));
    conn->stats->verified = conn->tls_verified;

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq amqp \"%V\": %s with %V (%s)", &conn->conf->name,
                  conn->tls_version, &conn->peer,
                  conn->tls_verified ? "certificate verified"
                                     : "certificate NOT verified: verify "
                                       "is off");

    /* NGINX's SSL layer had the handlers during the handshake */
    c->read->handler = ngx_zmq_amqp_read_handler;
    c->write->handler = ngx_zmq_amqp_write_handler;

    /* the protocol header, and whatever TLS has already read */
    ngx_post_event(c->read, &ngx_posted_events);
    ngx_zmq_amqp_write_handler(c->write);
}


/*
 * Writes what the socket takes, and nothing else: no callbacks run, so a
 * publish may call it before it returns.
 */

static ngx_int_t
ngx_zmq_amqp_send(ngx_zmq_amqp_conn_t *conn)
{
    uint64_t  sent;

    sent = conn->sock.sent;

    if (ngx_zmq_socket_send(&conn->sock) != NGX_OK) {
        return NGX_ERROR;
    }

    if (conn->sock.sent != sent) {
        conn->last_send = ngx_current_msec;
    }

    /* a large message grew the buffer: give it back once it is out */
    if (conn->sock.out_pos == conn->sock.out_last
        && (size_t) (conn->sock.out_end - conn->sock.out_start)
           > NGX_HTTP_ZMQ_OUT_KEEP + 2 * conn->frame_max)
    {
        ngx_zmq_socket_free(&conn->sock);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_zmq_amqp_flush(ngx_zmq_amqp_conn_t *conn)
{
    ngx_connection_t    *c;
    ngx_http_zmq_pub_t  *pub;

    c = conn->sock.connection;

    if (ngx_zmq_amqp_send(conn) != NGX_OK) {
        return NGX_ERROR;
    }

    /* messages that wait for nothing but their frames being written */
    while (conn->written_tag < conn->next_tag) {
        pub = conn->ring[conn->written_tag & (conn->ring_size - 1)];

        if (pub != NULL && pub->tag == conn->written_tag) {
            if (pub->end > conn->sock.sent) {
                break;
            }

            NGX_HTTP_ZMQ_PROBE_MARK(pub->probe, written);

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
ngx_zmq_amqp_read_handler(ngx_event_t *rev)
{
    u_char                     text[256], *p;
    ngx_err_t                  err;
    ngx_int_t                  rc;
    ngx_connection_t          *c = rev->data;
    ngx_zmq_amqp_conn_t       *conn = c->data;

#if (NGX_ZMQ_PROBE)
    conn->probe_read = ngx_http_zmq_probe_now();
#endif

    if (conn->tls_wait) {
        /* the connect failed (or the peer spoke first): see what it was */
        ngx_zmq_amqp_tls_start(conn);
        return;
    }

    rc = ngx_zmq_socket_read(&conn->sock, conn->in, NGX_HTTP_ZMQ_IN_SIZE,
                             NGX_HTTP_ZMQ_IN_PER_EVENT, ngx_zmq_amqp_chunk,
                             conn);

#if (NGX_SSL)
    if (rc == NGX_ERROR && c->ssl != NULL) {
        /* "read failed: the server sent the TLS alert ..." */
        (void) ngx_zmq_tls_failure(c, text, sizeof(text), "read failed");
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) text);
        return;
    }
#endif

    if (rc == NGX_ERROR && conn->probing) {
        /* a ping says why: "Connection refused", "Connection reset" */
        err = ngx_socket_errno;
        p = ngx_cpymem(text, "read failed: ", 13);
        p = err ? ngx_strerror(err, p, sizeof(text) - 14)
                : ngx_cpymem(p, "unknown error", 13);
        *p = '\0';
        ngx_zmq_amqp_close(conn, NGX_LOG_INFO, (char *) text);
        return;
    }

    switch (rc) {

    case NGX_OK:
        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_zmq_amqp_close(conn, NGX_LOG_ERR, "event error");
        }
        return;

    case NGX_DONE:
    case NGX_ERROR:
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR,
                           rc == NGX_DONE ? "closed by the broker"
                           : "read failed");
        return;

    default:        /* NGX_AGAIN: posted; NGX_ABORT: closed */
        return;
    }
}


static ngx_int_t
ngx_zmq_amqp_chunk(void *data, u_char *buf, size_t n)
{
    u_char                    *p, *last;
    ngx_zmq_amqp_conn_t       *conn = data;

    conn->last_recv = ngx_current_msec;
    p = buf;
    last = p + n;

    while (p < last) {
        if (ngx_zmq_amqp_input(conn, &p, last) != NGX_OK) {
            return NGX_ERROR;       /* the connection is closed */
        }
    }

    if (conn->sock.out_pos < conn->sock.out_last) {
        if (ngx_zmq_amqp_flush(conn) != NGX_OK) {
            ngx_zmq_amqp_close(conn, NGX_LOG_ERR, "write failed");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* big-endian readers */

static ngx_uint_t
ngx_http_zmq_get16(u_char *p)
{
    return ((ngx_uint_t) p[0] << 8) | p[1];
}


static uint32_t
ngx_http_zmq_get32(u_char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}


static uint64_t
ngx_http_zmq_get64(u_char *p)
{
    return ((uint64_t) ngx_http_zmq_get32(p) << 32)
           | ngx_http_zmq_get32(p + 4);
}


/*
 * Consumes what it can of [*pos, last): the 7 bytes of a frame header, then
 * the payload and the end byte. Method and content-header payloads are
 * gathered in fbuf (at most in_frame_max bytes, checked before anything is
 * allocated); bodies are skipped. A whole frame is handled at once.
 */

static ngx_int_t
ngx_zmq_amqp_input(ngx_zmq_amqp_conn_t *conn, u_char **pos,
    u_char *last)
{
    u_char  *p;
    size_t   n, want, size;

    p = *pos;

    if (conn->fhdr_len < sizeof(conn->fhdr)) {
        n = ngx_min(sizeof(conn->fhdr) - conn->fhdr_len, (size_t) (last - p));
        ngx_memcpy(conn->fhdr + conn->fhdr_len, p, n);
        conn->fhdr_len += n;
        *pos = p + n;

        if (conn->fhdr_len < sizeof(conn->fhdr)) {
            return NGX_OK;
        }

        if (ngx_zmq_amqp_frame_start(conn) != NGX_OK) {
            return NGX_ERROR;
        }

        p = *pos;
    }

    /* the payload and the end byte */

    want = conn->fsize + 1 - conn->fgot;
    n = ngx_min(want, (size_t) (last - p));

    if (conn->ftype == AMQP_FRAME_METHOD || conn->ftype == AMQP_FRAME_HEADER) {
        ngx_memcpy(conn->fbuf + conn->fgot, p, n);

    } else if (n == want && p[n - 1] != AMQP_FRAME_END) {
        ngx_zmq_amqp_bad(conn, "frame", "no frame-end byte");
        return NGX_ERROR;

    } else if (conn->ftype == AMQP_FRAME_BODY && conn->reply.body != NULL
               && conn->fgot < conn->fsize)
    {
        /* a reply's body: within body_size, as frame_start checked */
        size = ngx_min(n, conn->fsize - conn->fgot);
        ngx_memcpy(conn->reply.body + conn->reply_got, p, size);
        conn->reply_got += size;
    }

    conn->fgot += n;
    *pos = p + n;

    if (conn->fgot <= conn->fsize) {
        return NGX_OK;
    }

    /* a whole frame */

    conn->fhdr_len = 0;

    if (conn->ftype == AMQP_FRAME_BODY) {
        if (conn->delivering && conn->content == NGX_HTTP_ZMQ_CONTENT_NONE) {
            ngx_zmq_amqp_delivered(conn);
        }

        return NGX_OK;
    }

    if (conn->ftype != AMQP_FRAME_METHOD && conn->ftype != AMQP_FRAME_HEADER) {
        return NGX_OK;
    }

    if (conn->fbuf[conn->fsize] != AMQP_FRAME_END) {
        ngx_zmq_amqp_bad(conn, "frame", "no frame-end byte");
        return NGX_ERROR;
    }

    return ngx_zmq_amqp_frame(conn);
}


/* a frame header is in: check it against what may come now */

static ngx_int_t
ngx_zmq_amqp_frame_start(ngx_zmq_amqp_conn_t *conn)
{
    u_char      *p;
    size_t       size;
    uint32_t     fsize;
    ngx_uint_t   type, channel;

    if (!conn->got_bytes) {
        conn->got_bytes = 1;

        if (conn->fhdr[0] == 'A') {
            ngx_zmq_amqp_close(conn, NGX_LOG_ERR,
                               "the broker does not speak AMQP 0-9-1");
            return NGX_ERROR;
        }
    }

    type = conn->fhdr[0];
    channel = ngx_http_zmq_get16(conn->fhdr + 1);
    fsize = ngx_http_zmq_get32(conn->fhdr + 3);

    /* the whole frame, 7 + size + 1, in 64 bits: no wrap */
    if ((uint64_t) fsize + 8 > conn->in_frame_max) {
        ngx_snprintf(conn->why, sizeof(conn->why) - 1,
                     "%uL bytes, frame_max is %ui%Z", (uint64_t) fsize + 8,
                     conn->in_frame_max);
        ngx_zmq_amqp_bad(conn, "frame", "larger than frame_max");
        return NGX_ERROR;
    }

    switch (type) {

    case AMQP_FRAME_METHOD:
        if (fsize < 4) {
            ngx_zmq_amqp_bad(conn, "frame",
                             "a method frame without a method id");
            return NGX_ERROR;
        }

        if (channel > NGX_HTTP_ZMQ_CHANNEL) {
            ngx_zmq_amqp_bad(conn, "frame", "on a channel never opened");
            return NGX_ERROR;
        }

        if (channel == NGX_HTTP_ZMQ_CHANNEL
            && conn->content != NGX_HTTP_ZMQ_CONTENT_NONE)
        {
            ngx_zmq_amqp_bad(conn, "frame", "a method inside a returned "
                             "or delivered message");
            return NGX_ERROR;
        }

        break;

    case AMQP_FRAME_HEADER:
        if (channel != NGX_HTTP_ZMQ_CHANNEL
            || conn->content != NGX_HTTP_ZMQ_CONTENT_HEADER)
        {
            ngx_zmq_amqp_bad(conn, "frame", "a content header without "
                             "basic.return or basic.deliver");
            return NGX_ERROR;
        }

        /* class, weight, body size, property flags */
        if (fsize < 14) {
            ngx_zmq_amqp_bad(conn, "frame",
                             "a content header shorter than 14 bytes");
            return NGX_ERROR;
        }

        break;

    case AMQP_FRAME_BODY:
        if (channel != NGX_HTTP_ZMQ_CHANNEL
            || conn->content != NGX_HTTP_ZMQ_CONTENT_BODY)
        {
            ngx_zmq_amqp_bad(conn, "frame",
                             "a content body without a header");
            return NGX_ERROR;
        }

        if (fsize > conn->content_left) {
            ngx_zmq_amqp_bad(conn, "frame", "a content body longer "
                             "than its header said");
            return NGX_ERROR;
        }

        conn->content_left -= fsize;
        if (conn->content_left == 0) {
            conn->content = NGX_HTTP_ZMQ_CONTENT_NONE;
        }

        break;

    case AMQP_FRAME_HEARTBEAT:
        if (channel != 0) {
            ngx_zmq_amqp_bad(conn, "frame", "a heartbeat on a channel");
            return NGX_ERROR;
        }

        break;

    default:
        ngx_snprintf(conn->why, sizeof(conn->why) - 1, "type %ui%Z", type);
        ngx_zmq_amqp_bad(conn, "frame", "an unknown frame type");
        return NGX_ERROR;
    }

    conn->ftype = type;
    conn->fchannel = channel;
    conn->fsize = fsize;
    conn->fgot = 0;

    if (type != AMQP_FRAME_METHOD && type != AMQP_FRAME_HEADER) {
        return NGX_OK;
    }

    /* room for the payload and the end byte, within in_frame_max */

    if (conn->fbuf_size < (size_t) fsize + 1) {
        size = ngx_max(conn->fbuf_size * 2, 512);
        size = ngx_max(size, (size_t) fsize + 1);
        size = ngx_min(size, conn->in_frame_max);

        p = ngx_alloc(size, conn->log);
        if (p == NULL) {
            ngx_zmq_amqp_close(conn, NGX_LOG_ERR, "out of memory");
            return NGX_ERROR;
        }

        ngx_free(conn->fbuf);
        conn->fbuf = p;
        conn->fbuf_size = size;
    }

    return NGX_OK;
}


/* closes the connection over something the broker must not send */

static void
ngx_zmq_amqp_bad(ngx_zmq_amqp_conn_t *conn, const char *what,
    const char *detail)
{
    u_char  text[256];

    if (conn->why[0]) {
        ngx_snprintf(text, sizeof(text) - 1, "bad %s from the broker: %s "
                     "(%s)%Z", what, detail, conn->why);

    } else {
        ngx_snprintf(text, sizeof(text) - 1, "bad %s from the broker: %s%Z",
                     what, detail);
    }

    text[sizeof(text) - 1] = '\0';
    conn->why[0] = '\0';
    ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) text);
}


/* text from the broker, safe for one log line */

static u_char *
ngx_zmq_amqp_escape(u_char *dst, size_t size, u_char *src, size_t len)
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


/*
 * Walks one field table ([*pos, last) starts with its 32-bit size): every
 * key and value in bounds, tables and arrays nested at most
 * NGX_HTTP_ZMQ_TABLE_DEPTH deep. At depth 0, with found, finds the
 * gateway's x-zmq-seq and a reply's x-zmq-status.
 */

static ngx_int_t
ngx_zmq_amqp_table(u_char **pos, u_char *last, ngx_uint_t depth,
    ngx_zmq_amqp_found_t *found)
{
    u_char    *p, *end, *key;
    size_t     klen;
    uint32_t   size;
    u_char     type;

    p = *pos;

    if (depth >= NGX_HTTP_ZMQ_TABLE_DEPTH || last - p < 4) {
        return NGX_ERROR;
    }

    size = ngx_http_zmq_get32(p);
    p += 4;

    if (size > (size_t) (last - p)) {
        return NGX_ERROR;
    }

    end = p + size;

    while (p < end) {
        klen = *p++;

        /* the key and its type byte */
        if (klen + 1 > (size_t) (end - p)) {
            return NGX_ERROR;
        }

        key = p;
        p += klen;
        type = *p++;

        if (found != NULL && klen == sizeof(NGX_HTTP_ZMQ_SEQ_HEADER) - 1
            && ngx_memcmp(key, NGX_HTTP_ZMQ_SEQ_HEADER, klen) == 0
            && type == 'l' && end - p >= 8)
        {
            found->seq = ngx_http_zmq_get64(p);
            found->has_seq = 1;
        }

        if (found != NULL
            && klen == sizeof(NGX_ZMQ_AMQP_STATUS_HEADER) - 1
            && ngx_strncasecmp(key, (u_char *) NGX_ZMQ_AMQP_STATUS_HEADER,
                               klen) == 0)
        {
            found->status = ngx_zmq_amqp_status(type, p, end);
        }

        if (ngx_zmq_amqp_value(type, &p, end, depth) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *pos = end;
    return NGX_OK;
}


static ngx_int_t
ngx_zmq_amqp_value(u_char type, u_char **pos, u_char *last,
    ngx_uint_t depth)
{
    u_char    *p, *end;
    size_t     n;
    uint32_t   size;

    p = *pos;

    switch (type) {

    case 'V':
        n = 0;
        break;

    case 't': case 'b': case 'B':
        n = 1;
        break;

    case 's': case 'u':
        n = 2;
        break;

    case 'I': case 'i': case 'f':
        n = 4;
        break;

    case 'D':
        n = 5;
        break;

    case 'l': case 'L': case 'd': case 'T':
        n = 8;
        break;

    case 'S': case 'x':
        if (last - p < 4) {
            return NGX_ERROR;
        }

        size = ngx_http_zmq_get32(p);
        p += 4;
        n = size;
        break;

    case 'F':
        return ngx_zmq_amqp_table(pos, last, depth + 1, NULL);

    case 'A':
        if (depth + 1 >= NGX_HTTP_ZMQ_TABLE_DEPTH || last - p < 4) {
            return NGX_ERROR;
        }

        size = ngx_http_zmq_get32(p);
        p += 4;

        if (size > (size_t) (last - p)) {
            return NGX_ERROR;
        }

        end = p + size;

        while (p < end) {
            type = *p++;
            if (ngx_zmq_amqp_value(type, &p, end, depth + 1) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        *pos = end;
        return NGX_OK;

    default:
        return NGX_ERROR;
    }

    if (n > (size_t) (last - p)) {
        return NGX_ERROR;
    }

    *pos = p + n;
    return NGX_OK;
}


/*
 * A reply's x-zmq-status: an AMQP integer of any width, or a string of
 * digits; 200-599 (an HTTP answer cannot be 1xx), else 0 (invalid). The
 * value is at p, of type type, and may not fit before last: the walker
 * refuses the table then.
 */

static ngx_int_t
ngx_zmq_amqp_status(u_char type, u_char *p, u_char *last)
{
    int64_t    v;
    uint32_t   size, i;

    switch (type) {

    case 'b':
        if (last - p < 1) {
            return 0;
        }
        v = (int8_t) p[0];
        break;

    case 'B':
        if (last - p < 1) {
            return 0;
        }
        v = p[0];
        break;

    case 's':
        if (last - p < 2) {
            return 0;
        }
        v = (int16_t) ngx_http_zmq_get16(p);
        break;

    case 'u':
        if (last - p < 2) {
            return 0;
        }
        v = (int64_t) ngx_http_zmq_get16(p);
        break;

    case 'I':
        if (last - p < 4) {
            return 0;
        }
        v = (int32_t) ngx_http_zmq_get32(p);
        break;

    case 'i':
        if (last - p < 4) {
            return 0;
        }
        v = (int64_t) ngx_http_zmq_get32(p);
        break;

    case 'l':
    case 'L':
        if (last - p < 8) {
            return 0;
        }
        if (type == 'L' && ngx_http_zmq_get64(p) > 1000) {
            return 0;
        }
        v = (int64_t) ngx_http_zmq_get64(p);
        break;

    case 'S':
    case 'x':
        if (last - p < 4) {
            return 0;
        }

        size = ngx_http_zmq_get32(p);
        p += 4;

        if (size == 0 || size > 3 || size > (size_t) (last - p)) {
            return 0;
        }

        v = 0;
        for (i = 0; i < size; i++) {
            if (p[i] < '0' || p[i] > '9') {
                return 0;
            }
            v = v * 10 + (p[i] - '0');
        }
        break;

    default:
        return 0;
    }

    if (v < 200 || v > 599) {
        return 0;
    }

    return (ngx_int_t) v;
}


/* a word in a space-separated list, such as connection.start mechanisms */

static ngx_uint_t
ngx_zmq_amqp_has_word(amqp_bytes_t *list, const char *word)
{
    u_char  *p, *last, *start;
    size_t   len;

    len = ngx_strlen(word);
    p = list->bytes;
    last = p + list->len;

    while (p < last) {
        while (p < last && *p == ' ') {
            p++;
        }

        start = p;

        while (p < last && *p != ' ') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_memcmp(start, word, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_zmq_amqp_start_ok(ngx_zmq_amqp_conn_t *conn, void *start)
{
    u_char                       *resp, *p;
    ngx_uint_t                    i;
    amqp_table_t                  props, caps;
    amqp_table_entry_t            pe[4], ce[4];
    amqp_connection_start_t      *st = start;
    amqp_connection_start_ok_t    m;
    ngx_http_zmq_outconn_conf_t  *oc;

    oc = conn->conf;

    if (conn->probing) {
        ngx_zmq_amqp_probe_server(conn, &st->server_properties);
    }

    if (st->version_major != 0 || st->version_minor != 9) {
        ngx_snprintf(conn->why, sizeof(conn->why) - 1, "the broker speaks "
                     "AMQP %d-%d, not 0-9-1%Z", (int) st->version_major,
                     (int) st->version_minor);
        return NGX_ERROR;
    }

    if (!ngx_zmq_amqp_has_word(&st->mechanisms, "PLAIN")) {
        ngx_snprintf(conn->why, sizeof(conn->why) - 1, "the broker does not "
                     "offer the PLAIN mechanism%Z");
        return NGX_ERROR;
    }

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
    /* an empty string may have no data: memcpy wants a pointer even
     * for 0 bytes */
    if (oc->username.len) {
        p = ngx_cpymem(p, oc->username.data, oc->username.len);
    }
    *p++ = '\0';
    if (oc->password.len) {
        p = ngx_cpymem(p, oc->password.data, oc->password.len);
    }

    m.client_properties = props;
    m.mechanism = amqp_cstring_bytes("PLAIN");
    m.response.bytes = resp;
    m.response.len = p - resp;
    m.locale = amqp_cstring_bytes("en_US");

    if (ngx_zmq_amqp_method(conn, 0, AMQP_CONNECTION_START_OK_METHOD, &m)
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
ngx_zmq_amqp_tune(ngx_zmq_amqp_conn_t *conn, void *tune)
{
    amqp_connection_tune_t  *t = tune;

    ngx_uint_t                    frame_max, heartbeat;
    amqp_connection_open_t        open;
    amqp_connection_tune_ok_t     ok;
    ngx_http_zmq_outconn_conf_t  *oc;

    oc = conn->conf;

    /* start-ok, with the password, is out: no copy stays in the buffer */
    ngx_zmq_amqp_wipe(conn);

    /*
     * AMQP 0-9-1: frame_max is at least 4096 (frame-min-size), 0 meaning
     * "no limit": then ours. Below 4096 the content arithmetic has no room
     * for a frame's own header: refuse the broker.
     */

    if (t->frame_max != 0 && t->frame_max < AMQP_FRAME_MIN_SIZE) {
        ngx_snprintf(conn->why, sizeof(conn->why) - 1, "the broker offered "
                     "frame_max %uD, below the AMQP minimum of %d%Z",
                     t->frame_max, AMQP_FRAME_MIN_SIZE);
        return NGX_ERROR;
    }

    frame_max = oc->frame_max;          /* 4096 .. 2 MB, see open() */
    if (t->frame_max != 0 && t->frame_max < frame_max) {
        frame_max = t->frame_max;
    }

    heartbeat = oc->heartbeat;          /* at most 65535, see open() */
    if (t->heartbeat != 0 && t->heartbeat < heartbeat) {
        heartbeat = t->heartbeat;
    }

    /* channel_max: 0 is "no limit", anything else allows our channel 1 */

    ok.channel_max = 1;
    ok.frame_max = (uint32_t) frame_max;
    ok.heartbeat = (uint16_t) heartbeat;

    if (ngx_zmq_amqp_method(conn, 0, AMQP_CONNECTION_TUNE_OK_METHOD, &ok)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    conn->frame_max = frame_max;
    conn->in_frame_max = frame_max;
    conn->heartbeat = heartbeat;

    open.virtual_host.bytes = oc->vhost.data;
    open.virtual_host.len = oc->vhost.len;
    open.capabilities = amqp_empty_bytes;
    open.insist = 0;

    return ngx_zmq_amqp_method(conn, 0, AMQP_CONNECTION_OPEN_METHOD,
                               &open);
}


static ngx_int_t
ngx_zmq_amqp_channel_open(ngx_zmq_amqp_conn_t *conn, void *open_ok)
{
    amqp_channel_open_t  chopen;

    chopen.out_of_band = amqp_empty_bytes;

    return ngx_zmq_amqp_method(conn, NGX_HTTP_ZMQ_CHANNEL,
                               AMQP_CHANNEL_OPEN_METHOD, &chopen);
}


static ngx_int_t
ngx_zmq_amqp_confirm_select(ngx_zmq_amqp_conn_t *conn,
    void *channel_open_ok)
{
    amqp_confirm_select_t  confirm;

    if (conn->probing) {
        return conn->probe_exchange.len ? ngx_zmq_amqp_probe_declare(conn)
                                        : ngx_zmq_amqp_probe_ok(conn);
    }

    confirm.nowait = 0;

    return ngx_zmq_amqp_method(conn, NGX_HTTP_ZMQ_CHANNEL,
                               AMQP_CONFIRM_SELECT_METHOD, &confirm);
}


static ngx_int_t
ngx_zmq_amqp_ready(ngx_zmq_amqp_conn_t *conn, void *select_ok)
{
    if (conn->probing) {
        /* a probe selects no confirms: a broker that answers anyway */
        ngx_snprintf(conn->why, sizeof(conn->why) - 1, "unexpected "
                     "confirm.select-ok%Z");
        return NGX_ERROR;
    }

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    conn->hs = NGX_HTTP_ZMQ_HS_DONE;
    conn->nacking = 0;
    ngx_zmq_backoff_reset(&conn->backoff);
    conn->next_tag = 1;
    conn->head_tag = 1;
    conn->written_tag = 1;

    ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_READY);
    ngx_zmq_amqp_set_error(conn, NULL);

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
ngx_zmq_amqp_ack(ngx_zmq_amqp_conn_t *conn, uint64_t tag,
    ngx_flag_t multiple, ngx_http_zmq_pub_result_e result)
{
    uint64_t             t, from;
    ngx_uint_t           mask;
    ngx_http_zmq_pub_t  *pub;

    if (tag >= conn->next_tag || tag == 0) {
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": confirm for unknown delivery tag "
                      "%uL", &conn->conf->name, tag);
        return;
    }

    /* at most the messages in flight: head_tag <= t <= tag < next_tag */

    from = multiple ? conn->head_tag : tag;
    mask = conn->ring_size - 1;

    for (t = from; t <= tag; t++) {
        pub = conn->ring[t & mask];
        if (pub != NULL && pub->tag == t) {
            ngx_zmq_amqp_resolve(pub, result);
        }
    }

    while (conn->head_tag < conn->next_tag
           && conn->ring[conn->head_tag & mask] == NULL)
    {
        conn->head_tag++;
    }
}


/* a returned message's content header: which message is it? */

static void
ngx_zmq_amqp_returned(ngx_zmq_amqp_conn_t *conn, uint64_t seq,
    ngx_uint_t has_seq, uint64_t body_size, ngx_str_t *cid)
{
    u_char               key[256 * 4];
    ngx_zmq_amqp_rpc_t  *rpc;
    ngx_http_zmq_pub_t  *pub;

    pub = NULL;

    if (!has_seq && cid->len) {
        /* a request awaiting a reply: its waiter knows its tag */

        rpc = (ngx_zmq_amqp_rpc_t *) ngx_str_rbtree_lookup(&conn->rpc_tree,
                                                    cid,
                                                    ngx_crc32_short(cid->data,
                                                                    cid->len));
        if (rpc != NULL) {
            has_seq = 1;
            seq = rpc->tag;
        }
    }

    if (has_seq && seq >= conn->head_tag && seq < conn->next_tag) {
        pub = conn->ring[seq & (conn->ring_size - 1)];
    }

    if (pub != NULL && pub->tag == seq && pub->mandatory && !pub->returned
        && pub->body_len == body_size)
    {
        pub->returned = 1;
        return;
    }

    /* not ours, or not any more: its ack or nack still settles it */

    (void) ngx_zmq_amqp_escape(key, sizeof(key), conn->return_key,
                               conn->return_key_len);

    if (has_seq) {
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": basic.return for no message in "
                      "flight (%ui, routing key \"%s\", "
                      NGX_HTTP_ZMQ_SEQ_HEADER " %uL): ignored",
                      &conn->conf->name, conn->return_code, key, seq);

    } else {
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": basic.return for no message in "
                      "flight (%ui, routing key \"%s\", without "
                      NGX_HTTP_ZMQ_SEQ_HEADER ", and no request waiting "
                      "for its correlation_id): ignored",
                      &conn->conf->name, conn->return_code, key);
    }
}


typedef struct {
    amqp_method_number_t   method;
    ngx_int_t            (*handler)(ngx_zmq_amqp_conn_t *conn,
                                    void *decoded);
    const char            *failed;
} ngx_zmq_amqp_step_t;


/* indexed by the handshake state that expects the method */
static ngx_zmq_amqp_step_t       ngx_zmq_amqp_steps[] = {
    { AMQP_CONNECTION_START_METHOD, ngx_zmq_amqp_start_ok,
      "start-ok failed" },
    { AMQP_CONNECTION_TUNE_METHOD, ngx_zmq_amqp_tune,
      "tune failed" },
    { AMQP_CONNECTION_OPEN_OK_METHOD, ngx_zmq_amqp_channel_open,
      "channel.open failed" },
    { AMQP_CHANNEL_OPEN_OK_METHOD, ngx_zmq_amqp_confirm_select,
      "confirm.select failed" },
    { AMQP_CONFIRM_SELECT_OK_METHOD, ngx_zmq_amqp_ready,
      "ready failed" },
};


/* what a broker may send a publisher, and on which channel */
typedef struct {
    amqp_method_number_t   method;
    ngx_uint_t             channel;
} ngx_zmq_amqp_allowed_t;


static ngx_zmq_amqp_allowed_t       ngx_zmq_amqp_allowed[] = {
    { AMQP_CONNECTION_START_METHOD, 0 },
    { AMQP_CONNECTION_TUNE_METHOD, 0 },
    { AMQP_CONNECTION_OPEN_OK_METHOD, 0 },
    { AMQP_CONNECTION_CLOSE_METHOD, 0 },
    { AMQP_CONNECTION_BLOCKED_METHOD, 0 },
    { AMQP_CONNECTION_UNBLOCKED_METHOD, 0 },
    { AMQP_CHANNEL_OPEN_OK_METHOD, NGX_HTTP_ZMQ_CHANNEL },
    { AMQP_CHANNEL_FLOW_METHOD, NGX_HTTP_ZMQ_CHANNEL },
    { AMQP_CHANNEL_CLOSE_METHOD, NGX_HTTP_ZMQ_CHANNEL },
    { AMQP_CHANNEL_CLOSE_OK_METHOD, NGX_HTTP_ZMQ_CHANNEL },
    { AMQP_CONFIRM_SELECT_OK_METHOD, NGX_HTTP_ZMQ_CHANNEL },
    { AMQP_EXCHANGE_DECLARE_OK_METHOD, NGX_HTTP_ZMQ_CHANNEL }, /* probe */
    { AMQP_BASIC_ACK_METHOD, NGX_HTTP_ZMQ_CHANNEL },
    { AMQP_BASIC_NACK_METHOD, NGX_HTTP_ZMQ_CHANNEL },
    { AMQP_BASIC_RETURN_METHOD, NGX_HTTP_ZMQ_CHANNEL },
    { AMQP_BASIC_CONSUME_OK_METHOD, NGX_HTTP_ZMQ_CHANNEL },    /* rpc */
    { AMQP_BASIC_DELIVER_METHOD, NGX_HTTP_ZMQ_CHANNEL },       /* rpc */
};


static ngx_int_t
ngx_zmq_amqp_frame(ngx_zmq_amqp_conn_t *conn)
{
    if (conn->ftype == AMQP_FRAME_HEADER) {
        return ngx_zmq_amqp_header_frame(conn);
    }

    return ngx_zmq_amqp_method_frame(conn);
}


/*
 * A returned message's properties: only the headers table (x-zmq-seq) and
 * correlation_id are read
 */

static ngx_int_t
ngx_zmq_amqp_header_frame(ngx_zmq_amqp_conn_t *conn)
{
    u_char                *p, *last;
    uint64_t               body_size;
    ngx_str_t              cid;
    ngx_uint_t             flags, f, n;
    ngx_zmq_amqp_found_t   found;

    if (conn->delivering) {
        return ngx_zmq_amqp_deliver_header(conn);
    }

    p = conn->fbuf;
    last = p + conn->fsize;             /* at least 14 bytes */

    if (ngx_http_zmq_get16(p) != AMQP_BASIC_CLASS) {
        ngx_zmq_amqp_bad(conn, "content header", "not of class basic");
        return NGX_ERROR;
    }

    body_size = ngx_http_zmq_get64(p + 4);
    flags = ngx_http_zmq_get16(p + 12);
    p += 14;

    if (flags & 1) {
        ngx_zmq_amqp_bad(conn, "content header",
                         "more than one property flag word");
        return NGX_ERROR;
    }

    /* content_type and content_encoding (short strings) come first */

    for (f = AMQP_BASIC_CONTENT_TYPE_FLAG;
         f >= AMQP_BASIC_CONTENT_ENCODING_FLAG;
         f >>= 1)
    {
        if (!(flags & f)) {
            continue;
        }

        if (p >= last || (size_t) *p >= (size_t) (last - p)) {
            ngx_zmq_amqp_bad(conn, "content header",
                             "a property longer than its frame");
            return NGX_ERROR;
        }

        p += 1 + *p;
    }

    ngx_memzero(&found, sizeof(ngx_zmq_amqp_found_t));

    if ((flags & AMQP_BASIC_HEADERS_FLAG)
        && ngx_zmq_amqp_table(&p, last, 0, &found) != NGX_OK)
    {
        ngx_zmq_amqp_bad(conn, "content header", "a malformed or too "
                         "deeply nested headers table");
        return NGX_ERROR;
    }

    for (n = 0; n < 2; n++) {           /* delivery_mode, priority */
        if (flags & (AMQP_BASIC_DELIVERY_MODE_FLAG >> n)) {
            if (p >= last) {
                goto overrun;
            }
            p++;
        }
    }

    ngx_str_null(&cid);

    if ((flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        && ngx_zmq_amqp_shortstr(&p, last, &cid) != NGX_OK)
    {
        goto overrun;
    }

    conn->content_left = body_size;
    conn->content = body_size ? NGX_HTTP_ZMQ_CONTENT_BODY
                              : NGX_HTTP_ZMQ_CONTENT_NONE;

    ngx_zmq_amqp_returned(conn, found.seq, found.has_seq, body_size, &cid);

    return NGX_OK;

overrun:

    ngx_zmq_amqp_bad(conn, "content header",
                     "a property longer than its frame");
    return NGX_ERROR;
}


static ngx_int_t
ngx_zmq_amqp_method_frame(ngx_zmq_amqp_conn_t *conn)
{
    int                          rc;
    u_char                      *p;
    ngx_int_t                    rv;
    ngx_uint_t                   i, channel;
    amqp_bytes_t                 encoded;
    amqp_method_number_t         id;
    void                        *decoded;

    id = ngx_http_zmq_get32(conn->fbuf);
    channel = conn->fchannel;

    for (i = 0; i < sizeof(ngx_zmq_amqp_allowed)
                    / sizeof(ngx_zmq_amqp_allowed_t); i++)
    {
        if (ngx_zmq_amqp_allowed[i].method == id
            && ngx_zmq_amqp_allowed[i].channel == channel)
        {
            break;
        }
    }

    if (i == sizeof(ngx_zmq_amqp_allowed)
        / sizeof(ngx_zmq_amqp_allowed_t))
    {
        ngx_snprintf(conn->why, sizeof(conn->why) - 1, "unexpected method "
                     "0x%08xD on channel %ui%Z", (uint32_t) id, channel);
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) conn->why);
        conn->why[0] = '\0';
        return NGX_ERROR;
    }

    /*
     * The codec's table decoder recurses without a bound: walk the one
     * table a broker sends (connection.start's server_properties, after
     * the two version bytes) first.
     */

    if (id == AMQP_CONNECTION_START_METHOD) {
        p = conn->fbuf + 4 + 2;

        if (conn->fsize < 4 + 2
            || ngx_zmq_amqp_table(&p, conn->fbuf + conn->fsize, 0, NULL)
               != NGX_OK)
        {
            ngx_zmq_amqp_bad(conn, "frame", "connection.start with a "
                             "malformed or too deeply nested table");
            return NGX_ERROR;
        }
    }

    encoded.bytes = conn->fbuf + 4;
    encoded.len = conn->fsize - 4;

    rc = amqp_decode_method(id, &conn->decode_pool, encoded, &decoded);
    if (rc < 0) {
        ngx_snprintf(conn->why, sizeof(conn->why) - 1, "method 0x%08xD: %s%Z",
                     (uint32_t) id, amqp_error_string2(rc));
        ngx_zmq_amqp_bad(conn, "frame", "a method that does not decode");
        recycle_amqp_pool(&conn->decode_pool);
        return NGX_ERROR;
    }

    rv = ngx_zmq_amqp_method_in(conn, id, decoded);

    recycle_amqp_pool(&conn->decode_pool);

    return rv;
}


static ngx_int_t
ngx_zmq_amqp_method_in(ngx_zmq_amqp_conn_t *conn,
    amqp_method_number_t id, void *decoded)
{
    u_char                      text[256], esc[200 * 4];
    ngx_int_t                   rc;
    ngx_uint_t                  i;
    amqp_basic_ack_t           *ack;
    amqp_basic_nack_t          *nack;
    amqp_basic_return_t        *ret;
    amqp_basic_consume_ok_t    *consume_ok;
    amqp_channel_close_t       *chclose;
    amqp_connection_close_t    *close;
    amqp_connection_blocked_t  *blocked;
    amqp_connection_close_ok_t  close_ok;

    /* the handshake: the method each step expects, answered by its handler */

    for (i = 0; i < NGX_HTTP_ZMQ_HS_DONE; i++) {
        if (ngx_zmq_amqp_steps[i].method != id) {
            continue;
        }

        if (conn->hs != i) {
            ngx_snprintf(conn->why, sizeof(conn->why) - 1, "unexpected "
                         "method 0x%08xD in the handshake%Z", (uint32_t) id);
            ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) conn->why);
            conn->why[0] = '\0';
            return NGX_ERROR;
        }

        conn->hs = i + 1;

        rc = ngx_zmq_amqp_steps[i].handler(conn, decoded);

        if (rc == NGX_DONE) {
            return NGX_ERROR;       /* a probe's end: closed, stop reading */
        }

        if (rc != NGX_OK) {
            ngx_zmq_amqp_close(conn, NGX_LOG_ERR,
                               conn->why[0]
                               ? (char *) conn->why
                               : ngx_zmq_amqp_steps[i].failed);
            conn->why[0] = '\0';
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    switch (id) {

    case AMQP_EXCHANGE_DECLARE_OK_METHOD:
        if (!conn->probe_declaring) {
            ngx_zmq_amqp_close(conn, NGX_LOG_ERR, "unexpected "
                               "exchange.declare-ok");
            return NGX_ERROR;
        }

        conn->probe_declaring = 0;
        (void) ngx_zmq_amqp_probe_ok(conn);
        return NGX_ERROR;           /* a probe's end: closed, stop reading */

    case AMQP_BASIC_ACK_METHOD:
        ack = decoded;
        conn->nacking = 0;
        ngx_zmq_amqp_ack(conn, ack->delivery_tag, ack->multiple,
                         NGX_HTTP_ZMQ_PUB_ACKED);
        return NGX_OK;

    case AMQP_BASIC_NACK_METHOD:
        nack = decoded;
        ngx_zmq_amqp_ack(conn, nack->delivery_tag, nack->multiple,
                         NGX_HTTP_ZMQ_PUB_NACKED);

        if (!conn->nacking) {
            conn->nacking = 1;
            conn->nack_since = ngx_current_msec;
            return NGX_OK;
        }

        if (ngx_current_msec - conn->nack_since < NGX_HTTP_ZMQ_NACK_RESET) {
            return NGX_OK;
        }

        ngx_snprintf(text, sizeof(text) - 1, "the broker has refused "
                     "(nacked) every message for %M ms: reconnecting%Z",
                     (ngx_msec_t) (ngx_current_msec - conn->nack_since));
        text[sizeof(text) - 1] = '\0';
        ngx_zmq_amqp_close(conn, NGX_LOG_WARN, (char *) text);
        return NGX_ERROR;

    case AMQP_BASIC_RETURN_METHOD:
        /* the content header that follows says which message it is */
        ret = decoded;
        conn->content = NGX_HTTP_ZMQ_CONTENT_HEADER;
        conn->return_code = ret->reply_code;
        conn->return_key_len = ngx_min(ret->routing_key.len,
                                       sizeof(conn->return_key));
        ngx_memcpy(conn->return_key, ret->routing_key.bytes,
                   conn->return_key_len);
        return NGX_OK;

    case AMQP_BASIC_CONSUME_OK_METHOD:
        consume_ok = decoded;
        if (conn->rpc != NGX_HTTP_ZMQ_RPC_ASKED
            || consume_ok->consumer_tag.len
               != sizeof(NGX_HTTP_ZMQ_CONSUMER_TAG) - 1
            || ngx_memcmp(consume_ok->consumer_tag.bytes,
                          NGX_HTTP_ZMQ_CONSUMER_TAG,
                          sizeof(NGX_HTTP_ZMQ_CONSUMER_TAG) - 1) != 0)
        {
            ngx_zmq_amqp_bad(conn, "frame", "a basic.consume-ok for no "
                             "consumer of ours");
            return NGX_ERROR;
        }
        conn->rpc = NGX_HTTP_ZMQ_RPC_READY;
        return NGX_OK;

    case AMQP_BASIC_DELIVER_METHOD:
        return ngx_zmq_amqp_deliver(conn, decoded);

    case AMQP_CONNECTION_BLOCKED_METHOD:
        blocked = decoded;
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": the broker blocked publishing: %s",
                      &conn->conf->name,
                      ngx_zmq_amqp_escape(esc, sizeof(esc),
                                          blocked->reason.bytes,
                                          ngx_min(blocked->reason.len,
                                                       200)));
        if (conn->state == NGX_ZMQ_AMQP_READY) {
            ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_BLOCKED);
        }
        return NGX_OK;

    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "zmq amqp \"%V\": the broker unblocked publishing",
                      &conn->conf->name);
        if (conn->state == NGX_ZMQ_AMQP_BLOCKED) {
            ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_READY);
        }
        return NGX_OK;

    case AMQP_CONNECTION_CLOSE_METHOD:
        close = decoded;
        close_ok.dummy = 0;
        ngx_snprintf(text, sizeof(text) - 1, "the broker closed the "
                     "connection: %d %s%Z", (int) close->reply_code,
                     ngx_zmq_amqp_escape(esc, 200,
                                         close->reply_text.bytes,
                                         close->reply_text.len));
        text[sizeof(text) - 1] = '\0';
        if (conn->probing) {
            /* the broker's own words: "ACCESS_REFUSED - ..." */
            (void) ngx_zmq_amqp_escape(conn->probe_error,
                                       sizeof(conn->probe_error),
                                       close->reply_text.bytes,
                                       close->reply_text.len);
        }
        (void) ngx_zmq_amqp_method(conn, 0,
                                   AMQP_CONNECTION_CLOSE_OK_METHOD,
                                   &close_ok);
        (void) ngx_zmq_amqp_flush(conn);
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) text);
        return NGX_ERROR;

    case AMQP_CHANNEL_CLOSE_METHOD:
        chclose = decoded;
        ngx_snprintf(text, sizeof(text) - 1, "the broker closed the "
                     "channel: %d %s%Z", (int) chclose->reply_code,
                     ngx_zmq_amqp_escape(esc, 200,
                                         chclose->reply_text.bytes,
                                         chclose->reply_text.len));
        text[sizeof(text) - 1] = '\0';
        if (conn->probing) {
            (void) ngx_zmq_amqp_escape(conn->probe_error,
                                       sizeof(conn->probe_error),
                                       chclose->reply_text.bytes,
                                       chclose->reply_text.len);
        }
        if (conn->probe_declaring) {
            /* the check's answer: "NOT_FOUND - no exchange ..." */
            conn->probe_declaring = 0;
            conn->probe_code = chclose->reply_code;
            ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                          "zmq amqp \"%V\": probe of %V: %s",
                          &conn->conf->name, &conn->peer, text);
            ngx_zmq_amqp_probe_bye(conn, "exchange check done");
            ngx_zmq_amqp_probe_finish(conn, NGX_DECLINED,
                                      (char *) conn->probe_error);
            return NGX_ERROR;
        }
        ngx_zmq_amqp_close(conn, NGX_LOG_ERR, (char *) text);
        return NGX_ERROR;
    }

    /* channel.flow, channel.close-ok: nothing to do */

    return NGX_OK;
}


static void
ngx_zmq_amqp_resolve(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_zmq_amqp_conn_t       *conn;

    conn = pub->conn;

#if (NGX_ZMQ_PROBE)
    pub->probe.ackread = conn->probe_read;
    NGX_HTTP_ZMQ_PROBE_MARK(pub->probe, acked);
#endif

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

    /* out of the ring, into the free list: the request no longer has it */

    if (conn->ring[pub->tag & (conn->ring_size - 1)] == pub) {
        conn->ring[pub->tag & (conn->ring_size - 1)] = NULL;
    }

    pub->next = conn->free_pubs;
    conn->free_pubs = pub;

    if (conn->retired) {
        /* head_tag moves after the caller's loop; look from the event loop */
        if (!conn->free_ev.posted) {
            ngx_post_event(&conn->free_ev, &ngx_posted_events);
        }
    }
}


static void
ngx_zmq_amqp_pub_timeout(ngx_event_t *ev)
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
ngx_zmq_amqp_detach(ngx_http_zmq_pub_t *pub)
{
    pub->data = NULL;
}


ngx_int_t
ngx_zmq_amqp_reattach(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_done_pt publisher, ngx_http_zmq_pub_done_pt done,
    void *data)
{
    if (!pub->in_use || pub->answered || pub->data == NULL
        || pub->done != publisher)
    {
        return NGX_DECLINED;
    }

    pub->data = data;
    pub->done = done;

    return NGX_OK;
}


/*
 * Replies. basic.deliver for the reply consumer: the content header that
 * follows says which request it answers.
 */

static ngx_int_t
ngx_zmq_amqp_deliver(ngx_zmq_amqp_conn_t *conn, amqp_basic_deliver_t *d)
{
    if (conn->rpc != NGX_HTTP_ZMQ_RPC_READY
        || d->consumer_tag.len != sizeof(NGX_HTTP_ZMQ_CONSUMER_TAG) - 1
        || ngx_memcmp(d->consumer_tag.bytes, NGX_HTTP_ZMQ_CONSUMER_TAG,
                      sizeof(NGX_HTTP_ZMQ_CONSUMER_TAG) - 1) != 0)
    {
        ngx_zmq_amqp_bad(conn, "frame", "a basic.deliver for no consumer "
                         "of ours");
        return NGX_ERROR;
    }

    conn->content = NGX_HTTP_ZMQ_CONTENT_HEADER;
    conn->delivering = 1;
    conn->deliver_rpc = NULL;
    conn->reply_got = 0;

    return NGX_OK;
}


/* a short string property at *pos, within last; NGX_ERROR: it overruns */

static ngx_int_t
ngx_zmq_amqp_shortstr(u_char **pos, u_char *last, ngx_str_t *out)
{
    u_char  *p;

    p = *pos;

    if (p >= last || (size_t) *p >= (size_t) (last - p)) {
        return NGX_ERROR;
    }

    if (out != NULL) {
        out->len = *p;
        out->data = p + 1;
    }

    *pos = p + 1 + *p;
    return NGX_OK;
}


/*
 * A reply's content header: its properties up to correlation_id, in the
 * order AMQP puts them (content_type, content_encoding, headers,
 * delivery_mode, priority, correlation_id), each checked against the
 * frame. A property that overruns the frame is a broker's error (the
 * connection closes); a headers table that is well bounded but malformed
 * or nested too deep inside, an x-zmq-status that is no HTTP status, a
 * content_type no HTTP header can carry or a body over the limit are the
 * responder's: its request is answered 502, the connection goes on.
 */

static ngx_int_t
ngx_zmq_amqp_deliver_header(ngx_zmq_amqp_conn_t *conn)
{
    u_char                *p, *last, *q;
    uint32_t               hsize;
    uint64_t               body_size;
    ngx_str_t              ct, cid;
    ngx_uint_t             flags, n, bad_headers;
    ngx_zmq_amqp_rpc_t    *rpc;
    ngx_zmq_amqp_found_t   found;

    p = conn->fbuf;
    last = p + conn->fsize;             /* at least 14 bytes */

    if (ngx_http_zmq_get16(p) != AMQP_BASIC_CLASS) {
        ngx_zmq_amqp_bad(conn, "content header", "not of class basic");
        return NGX_ERROR;
    }

    body_size = ngx_http_zmq_get64(p + 4);
    flags = ngx_http_zmq_get16(p + 12);
    p += 14;

    if (flags & 1) {
        ngx_zmq_amqp_bad(conn, "content header",
                         "more than one property flag word");
        return NGX_ERROR;
    }

    ngx_str_null(&ct);
    ngx_str_null(&cid);
    ngx_memzero(&found, sizeof(ngx_zmq_amqp_found_t));
    found.status = -1;
    bad_headers = 0;

    if ((flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        && ngx_zmq_amqp_shortstr(&p, last, &ct) != NGX_OK)
    {
        goto overrun;
    }

    if ((flags & AMQP_BASIC_CONTENT_ENCODING_FLAG)
        && ngx_zmq_amqp_shortstr(&p, last, NULL) != NGX_OK)
    {
        goto overrun;
    }

    if (flags & AMQP_BASIC_HEADERS_FLAG) {
        if (last - p < 4) {
            goto overrun;
        }

        hsize = ngx_http_zmq_get32(p);

        if (hsize > (size_t) (last - p) - 4) {
            goto overrun;
        }

        /* the table's own bounds hold: whatever is inside, skip it */

        q = p;
        if (ngx_zmq_amqp_table(&q, p + 4 + hsize, 0, &found) != NGX_OK) {
            bad_headers = 1;
        }

        p += 4 + hsize;
    }

    for (n = 0; n < 2; n++) {           /* delivery_mode, priority */
        if (flags & (AMQP_BASIC_DELIVERY_MODE_FLAG >> n)) {
            if (p >= last) {
                goto overrun;
            }
            p++;
        }
    }

    if ((flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        && ngx_zmq_amqp_shortstr(&p, last, &cid) != NGX_OK)
    {
        goto overrun;
    }

    /* the rest of the properties are not ours to read */

    conn->content_left = body_size;
    conn->content = body_size ? NGX_HTTP_ZMQ_CONTENT_BODY
                              : NGX_HTTP_ZMQ_CONTENT_NONE;

    rpc = NULL;

    if (cid.len) {
        rpc = (ngx_zmq_amqp_rpc_t *) ngx_str_rbtree_lookup(&conn->rpc_tree,
                                                    &cid,
                                                    ngx_crc32_short(cid.data,
                                                                    cid.len));
    }

    if (rpc == NULL) {
        if (cid.len) {
            conn->stats->rpc_late++;
            ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                          "zmq amqp \"%V\": a reply of %uL bytes for no "
                          "request waiting (late, or its client left): "
                          "dropped", &conn->conf->name, body_size);

        } else {
            conn->stats->rpc_bad++;
            ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                          "zmq amqp \"%V\": a reply without a "
                          "correlation_id: dropped", &conn->conf->name);
        }

        goto read_past;
    }

    /* one reply per request: it waits no more */

    ngx_rbtree_delete(&conn->rpc_tree, &rpc->sn.node);
    rpc->in_tree = 0;
    conn->deliver_rpc = rpc;

    ngx_memzero(&conn->reply, sizeof(ngx_zmq_amqp_reply_t));
    conn->reply.status = found.status == -1 ? 200 : (ngx_uint_t) found.status;

    if (bad_headers) {
        conn->reply.result = NGX_ZMQ_AMQP_REPLY_BAD_HEADERS;

    } else if (found.status == 0) {
        conn->reply.result = NGX_ZMQ_AMQP_REPLY_BAD_STATUS;

    } else if (body_size > NGX_ZMQ_AMQP_REPLY_MAX) {
        conn->reply.result = NGX_ZMQ_AMQP_REPLY_TOO_LARGE;

    } else {
        for (n = 0; n < ct.len; n++) {
            if (ct.data[n] < 0x20 || ct.data[n] >= 0x7f) {
                conn->reply.result = NGX_ZMQ_AMQP_REPLY_BAD_TYPE;
                break;
            }
        }
    }

    if (conn->reply.result == NGX_ZMQ_AMQP_REPLY_OK) {
        if (ct.len) {
            ngx_memcpy(conn->reply_type, ct.data, ct.len);
        }

        conn->reply.content_type.data = conn->reply_type;
        conn->reply.content_type.len = ct.len;

        if (body_size) {
            conn->reply.body = ngx_alloc((size_t) body_size, conn->log);
            if (conn->reply.body == NULL) {
                ngx_zmq_amqp_close(conn, NGX_LOG_ERR, "out of memory");
                return NGX_ERROR;
            }
        }
    }

read_past:

    if (body_size == 0) {
        ngx_zmq_amqp_delivered(conn);
    }

    return NGX_OK;

overrun:

    ngx_zmq_amqp_bad(conn, "content header",
                     "a property longer than its frame");
    return NGX_ERROR;
}


/* a reply read whole (or read past): its request has it */

static void
ngx_zmq_amqp_delivered(ngx_zmq_amqp_conn_t *conn)
{
    ngx_zmq_amqp_rpc_t  *rpc;

    rpc = conn->deliver_rpc;
    conn->deliver_rpc = NULL;
    conn->delivering = 0;

    if (rpc != NULL) {
        conn->reply.len = conn->reply_got;
        rpc->conn = NULL;
        conn->rpc_waiting--;
        conn->stats->rpc_waiting--;

        if (conn->reply.result == NGX_ZMQ_AMQP_REPLY_OK) {
            conn->stats->rpc_replies++;

        } else {
            conn->stats->rpc_bad++;
        }

        rpc->handler(rpc, &conn->reply);
    }

    ngx_free(conn->reply.body);
    ngx_memzero(&conn->reply, sizeof(ngx_zmq_amqp_reply_t));
    conn->reply_got = 0;

    ngx_zmq_amqp_check_retired(conn);
}


/* the connection closed: every request waiting is told, once */

static void
ngx_zmq_amqp_rpc_fail(ngx_zmq_amqp_conn_t *conn)
{
    ngx_rbtree_node_t     *node;
    ngx_zmq_amqp_rpc_t    *rpc;
    ngx_zmq_amqp_reply_t   lost;

    ngx_free(conn->reply.body);
    ngx_memzero(&conn->reply, sizeof(ngx_zmq_amqp_reply_t));
    conn->reply_got = 0;
    conn->delivering = 0;
    conn->rpc = NGX_HTTP_ZMQ_RPC_NONE;

    ngx_memzero(&lost, sizeof(ngx_zmq_amqp_reply_t));
    lost.result = NGX_ZMQ_AMQP_REPLY_LOST;

    for ( ;; ) {
        rpc = conn->deliver_rpc;
        conn->deliver_rpc = NULL;

        if (rpc == NULL) {
            if (conn->rpc_tree.root == conn->rpc_tree.sentinel) {
                break;
            }

            node = ngx_rbtree_min(conn->rpc_tree.root,
                                  conn->rpc_tree.sentinel);
            ngx_rbtree_delete(&conn->rpc_tree, node);
            rpc = (ngx_zmq_amqp_rpc_t *) node;
            rpc->in_tree = 0;
        }

        rpc->conn = NULL;
        conn->rpc_waiting--;
        conn->stats->rpc_waiting--;
        conn->stats->rpc_lost++;

        rpc->handler(rpc, &lost);
    }
}


void
ngx_zmq_amqp_rpc_cancel(ngx_zmq_amqp_rpc_t *rpc, ngx_uint_t why)
{
    ngx_zmq_amqp_conn_t  *conn;

    conn = rpc->conn;

    if (conn == NULL) {
        return;
    }

    if (rpc->in_tree) {
        ngx_rbtree_delete(&conn->rpc_tree, &rpc->sn.node);
        rpc->in_tree = 0;
    }

    if (conn->deliver_rpc == rpc) {
        /* its reply is being read: read past the rest */
        conn->deliver_rpc = NULL;
        ngx_free(conn->reply.body);
        conn->reply.body = NULL;
        conn->stats->rpc_late++;
    }

    rpc->conn = NULL;
    conn->rpc_waiting--;
    conn->stats->rpc_waiting--;

    if (why == NGX_ZMQ_AMQP_RPC_TIMEDOUT) {
        conn->stats->rpc_timeouts++;
    }

    ngx_zmq_amqp_check_retired(conn);
}


/*
 * The ring of messages in flight starts at NGX_HTTP_ZMQ_RING_MIN slots and
 * doubles as needed, up to the power of two that holds max_inflight: 8
 * bytes a slot. The messages themselves come from the connection's pool
 * and are reused, so memory follows the most messages ever in flight at
 * once, not the bound.
 */

static ngx_int_t
ngx_zmq_amqp_grow_ring(ngx_zmq_amqp_conn_t *conn)
{
    uint64_t              t;
    ngx_uint_t            size;
    ngx_http_zmq_pub_t  **ring;

    size = conn->ring_size ? conn->ring_size * 2 : NGX_HTTP_ZMQ_RING_MIN;

    ring = ngx_alloc(size * sizeof(ngx_http_zmq_pub_t *), conn->log);
    if (ring == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ring, size * sizeof(ngx_http_zmq_pub_t *));

    for (t = conn->head_tag; t < conn->next_tag; t++) {
        ring[t & (size - 1)] = conn->ring[t & (conn->ring_size - 1)];
    }

    ngx_free(conn->ring);
    conn->ring = ring;
    conn->ring_size = size;

    return NGX_OK;
}


/* forgets what a publish that failed half way had queued */
static void
ngx_zmq_amqp_rollback(ngx_zmq_amqp_conn_t *conn, u_char *start)
{
    conn->queued -= conn->sock.out_last - start;
    conn->sock.out_last = start;
}


/*
 * The properties of a mandatory message, with the header x-zmq-seq (the
 * message's delivery tag on this connection) first, by which a
 * basic.return is matched to its message: the message_id is the client's
 * and need not be unique. A client's header of the same name is dropped.
 * The table is the caller's to free.
 */

static ngx_int_t
ngx_zmq_amqp_seq_props(amqp_basic_properties_t *props, uint64_t tag,
    amqp_table_entry_t **table, ngx_log_t *log)
{
    int                  i, j, n;
    amqp_table_entry_t  *entries, *src;

    n = (props->_flags & AMQP_BASIC_HEADERS_FLAG) ? props->headers.num_entries
                                                  : 0;
    if (n < 0) {
        n = 0;
    }

    entries = ngx_alloc((n + 1) * sizeof(amqp_table_entry_t), log);
    if (entries == NULL) {
        return NGX_ERROR;
    }

    entries[0].key.bytes = NGX_HTTP_ZMQ_SEQ_HEADER;
    entries[0].key.len = sizeof(NGX_HTTP_ZMQ_SEQ_HEADER) - 1;
    entries[0].value.kind = AMQP_FIELD_KIND_I64;
    entries[0].value.value.i64 = (int64_t) tag;

    src = props->headers.entries;

    for (i = 0, j = 1; i < n; i++) {
        if (src[i].key.len == sizeof(NGX_HTTP_ZMQ_SEQ_HEADER) - 1
            && ngx_strncasecmp(src[i].key.bytes,
                               (u_char *) NGX_HTTP_ZMQ_SEQ_HEADER,
                               src[i].key.len)
               == 0)
        {
            continue;
        }

        entries[j++] = src[i];
    }

    props->_flags |= AMQP_BASIC_HEADERS_FLAG;
    props->headers.entries = entries;
    props->headers.num_entries = j;

    *table = entries;
    return NGX_OK;
}


ngx_int_t
ngx_zmq_amqp_publish(ngx_zmq_amqp_conn_t *conn,
    ngx_http_zmq_publish_t *msg, ngx_http_zmq_pub_t **pubp,
    time_t *retry_after, ngx_log_t *log)
{
    int                       n;
    u_char                   *p, *start, *size_pos;
    size_t                    need, chunk, len, left, room;
    ssize_t                   rd;
    uint64_t                  tag;
    ngx_int_t                 rc;
    ngx_buf_t                *b;
    ngx_uint_t                nframes;
    ngx_chain_t              *cl;
    amqp_bytes_t              enc;
    amqp_table_entry_t       *table;
    ngx_zmq_amqp_rpc_t       *rpc;
    ngx_http_zmq_pub_t       *pub;
    amqp_basic_publish_t      m;
    amqp_basic_consume_t      consume;
    amqp_basic_properties_t   props;

    if (conn->state != NGX_ZMQ_AMQP_READY || conn->retired
        || conn->frame_max < AMQP_FRAME_MIN_SIZE)
    {
        conn->stats->rejected++;

        if (conn->state == NGX_ZMQ_AMQP_BLOCKED) {
            *retry_after = 5;
            return NGX_HTTP_ZMQ_BLOCKED;
        }

        *retry_after = 1;
        if (conn->state == NGX_ZMQ_AMQP_BACKOFF
            && conn->next_attempt > ngx_current_msec)
        {
            *retry_after = (conn->next_attempt - ngx_current_msec + 999)
                           / 1000;
        }
        return NGX_HTTP_ZMQ_UNAVAILABLE;
    }

    if (conn->next_tag - conn->head_tag >= conn->max_inflight) {
        conn->stats->rejected++;
        *retry_after = 1;
        return NGX_HTTP_ZMQ_OVERLOADED;
    }

    if (msg->body_len < 0) {
        return NGX_ERROR;
    }

    /* frame_max >= 4096 (see tune): every frame has room for its 8 bytes */

    chunk = conn->frame_max - 8;
    nframes = ((size_t) msg->body_len + chunk - 1) / chunk;
    room = conn->frame_max;
    need = NGX_HTTP_ZMQ_METHOD_MAX + room + (size_t) msg->body_len
           + 8 * nframes;

    if (msg->rpc != NULL && conn->rpc == NGX_HTTP_ZMQ_RPC_NONE) {
        need += NGX_HTTP_ZMQ_METHOD_MAX;        /* basic.consume */
    }

    if (conn->sock.out_last > conn->sock.out_pos
        && (size_t) (conn->sock.out_last - conn->sock.out_pos) + need
           > conn->worker->buffer_limit)
    {
        conn->stats->rejected++;
        *retry_after = 1;
        return NGX_HTTP_ZMQ_OVERLOADED;
    }

    /* everything that can fail to allocate, before anything is queued */

    if (conn->next_tag - conn->head_tag >= conn->ring_size
        && ngx_zmq_amqp_grow_ring(conn) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "zmq amqp \"%V\": no memory for "
                      "%uL messages in flight", &conn->conf->name,
                      conn->next_tag - conn->head_tag + 1);
        return NGX_ERROR;
    }

    pub = conn->free_pubs;

    if (pub != NULL) {
        conn->free_pubs = pub->next;

    } else {
        pub = ngx_palloc(conn->pool, sizeof(ngx_http_zmq_pub_t));
        if (pub == NULL) {
            return NGX_ERROR;
        }
    }

    tag = conn->next_tag;
    props = *msg->props;
    table = NULL;

    /* a request awaiting a reply is found by its correlation_id instead */

    if (msg->mandatory && msg->rpc == NULL
        && ngx_zmq_amqp_seq_props(&props, tag, &table, log) != NGX_OK)
    {
        rc = NGX_ERROR;
        goto failed;
    }

    if (ngx_zmq_socket_reserve(&conn->sock, need) != NGX_OK) {
        rc = NGX_ERROR;
        goto failed;
    }

    start = conn->sock.out_last;

    /*
     * The reply consumer, once per connection, before the first publish
     * that wants a reply: the broker takes the channel's frames in order,
     * so the publish that follows finds it (RabbitMQ requires it).
     */

    if (msg->rpc != NULL && conn->rpc == NGX_HTTP_ZMQ_RPC_NONE) {
        ngx_memzero(&consume, sizeof(amqp_basic_consume_t));
        consume.queue = amqp_cstring_bytes(NGX_ZMQ_AMQP_REPLY_TO);
        consume.consumer_tag = amqp_cstring_bytes(NGX_HTTP_ZMQ_CONSUMER_TAG);
        consume.no_ack = 1;
        consume.arguments = amqp_empty_table;

        if (ngx_zmq_amqp_put_method(conn, NGX_HTTP_ZMQ_CHANNEL,
                                    AMQP_BASIC_CONSUME_METHOD, &consume,
                                    NGX_HTTP_ZMQ_METHOD_MAX)
            != NGX_OK)
        {
            rc = NGX_ERROR;
            goto rollback;
        }
    }

    /* basic.publish */

    m.ticket = 0;
    m.exchange.bytes = msg->exchange.data;
    m.exchange.len = msg->exchange.len;
    m.routing_key.bytes = msg->routing_key.data;
    m.routing_key.len = msg->routing_key.len;
    m.mandatory = msg->mandatory ? 1 : 0;
    m.immediate = 0;

    if (ngx_zmq_amqp_put_method(conn, NGX_HTTP_ZMQ_CHANNEL,
                                AMQP_BASIC_PUBLISH_METHOD, &m,
                                NGX_HTTP_ZMQ_METHOD_MAX)
        != NGX_OK)
    {
        rc = NGX_HTTP_ZMQ_TOO_LARGE;
        goto rollback;
    }

    /* the content header: its properties must fit one frame */

    p = conn->sock.out_last;
    *p++ = AMQP_FRAME_HEADER;
    p = ngx_http_zmq_put16(p, NGX_HTTP_ZMQ_CHANNEL);
    size_pos = p;
    p += 4;
    p = ngx_http_zmq_put16(p, AMQP_BASIC_CLASS);
    p = ngx_http_zmq_put16(p, 0);
    p = ngx_http_zmq_put64(p, (uint64_t) msg->body_len);

    enc.bytes = p;
    enc.len = room - 8 - 12;

    n = amqp_encode_properties(AMQP_BASIC_CLASS, &props, enc);
    if (n < 0) {
        rc = NGX_HTTP_ZMQ_TOO_LARGE;
        goto rollback;
    }

    ngx_free(table);
    table = NULL;

    p += n;
    *p++ = AMQP_FRAME_END;
    (void) ngx_http_zmq_put32(size_pos, (uint32_t) (12 + n));

    /* the body, split by frame_max */

    cl = msg->body;
    b = cl ? cl->buf : NULL;
    left = (size_t) msg->body_len;

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
                rc = NGX_ERROR;
                goto rollback;
            }

            if (ngx_buf_in_memory(b)) {
                n = ngx_min((size_t) (b->last - b->pos), len);
                p = ngx_cpymem(p, b->pos, n);
                b->pos += n;

            } else {
                n = ngx_min((size_t) (b->file_last - b->file_pos), len);
                rd = ngx_read_file(b->file, p, n, b->file_pos);
                if (rd != n) {
                    rc = NGX_ERROR;
                    goto rollback;
                }
                p += n;
                b->file_pos += n;
            }

            len -= n;
        }

        *p++ = AMQP_FRAME_END;
    }

    conn->queued += p - conn->sock.out_last;
    conn->sock.out_last = p;

    /* the pending message */

    ngx_memzero(pub, sizeof(ngx_http_zmq_pub_t));

    pub->tag = tag;
    pub->conn = conn;
    pub->data = msg->data;
    pub->done = msg->done;
    pub->end = conn->queued;
    pub->body_len = (uint64_t) msg->body_len;
    pub->in_use = 1;
    pub->wait_confirm = msg->confirm ? 1 : 0;
#if (NGX_ZMQ_PROBE)
    ngx_memzero(&pub->probe, sizeof(pub->probe));
#endif
    pub->mandatory = msg->mandatory ? 1 : 0;

    conn->ring[tag & (conn->ring_size - 1)] = pub;
    conn->next_tag++;

    pub->timer.handler = ngx_zmq_amqp_pub_timeout;
    pub->timer.data = pub;
    pub->timer.log = conn->log;

    if (msg->timeout) {
        /*
         * Not cancelable: a graceful shutdown waits for the confirm. Without
         * confirms it bounds the wait for the frames to be written.
         */
        ngx_add_timer(&pub->timer, msg->timeout);
        conn->longest = ngx_max(conn->longest, msg->timeout);
    }

    conn->stats->published++;
    conn->stats->inflight++;

    if (msg->rpc != NULL) {
        if (conn->rpc == NGX_HTTP_ZMQ_RPC_NONE) {
            conn->rpc = NGX_HTTP_ZMQ_RPC_ASKED;
        }

        /* waits from now: the reply may come before the confirm */

        rpc = msg->rpc;
        rpc->tag = tag;
        rpc->sn.node.key = ngx_crc32_short(rpc->sn.str.data,
                                           rpc->sn.str.len);
        ngx_rbtree_insert(&conn->rpc_tree, &rpc->sn.node);
        rpc->in_tree = 1;
        rpc->conn = conn;
        conn->longest = ngx_max(conn->longest, rpc->timeout);
        conn->rpc_waiting++;
        conn->stats->rpc_waiting++;
        conn->stats->rpc_requests++;
    }

    *pubp = pub;

    /*
     * Write from the event loop, so that the publishes of one cycle go out
     * in few writes. A long cycle (hundreds of requests read in one go)
     * sends every NGX_ZMQ_AMQP_EARLY_SEND bytes as well, so that the
     * broker starts on them while the worker reads the rest: the broker
     * otherwise idles for the length of the cycle. Errors and callbacks
     * are left to the posted write event.
     */
    ngx_post_event(conn->sock.connection->write, &ngx_posted_events);

    if (conn->sock.out_last - conn->sock.out_pos >= NGX_ZMQ_AMQP_EARLY_SEND) {
        (void) ngx_zmq_amqp_send(conn);
    }

    return NGX_OK;

rollback:

    ngx_zmq_amqp_rollback(conn, start);

failed:

    ngx_free(table);

    pub->next = conn->free_pubs;
    conn->free_pubs = pub;

    return rc;
}


/*
 * Probes (the admin API's ping, and its send's exchange check). A probe is
 * a connection like the others, with three differences: it connects to its
 * addresses in order, once each, within one deadline; at channel.open-ok
 * it closes instead of selecting confirms (or, checking an exchange, first
 * sends a passive exchange.declare and takes declare-ok or the broker's
 * channel.close as the answer); and instead of backing off it reports its
 * result, from free_ev (the event loop, never under a caller's feet), and
 * frees itself.
 */

ngx_zmq_amqp_conn_t *
ngx_zmq_amqp_probe(ngx_zmq_amqp_worker_t *w, ngx_http_zmq_outconn_conf_t *oc,
    ngx_zmq_amqp_probe_pt done, void *data, ngx_log_t *log)
{
    return ngx_zmq_amqp_probe_exchange(w, oc, NULL, done, data, log);
}


ngx_zmq_amqp_conn_t *
ngx_zmq_amqp_probe_exchange(ngx_zmq_amqp_worker_t *w,
    ngx_http_zmq_outconn_conf_t *oc, ngx_str_t *exchange,
    ngx_zmq_amqp_probe_pt done, void *data, ngx_log_t *log)
{
    ngx_zmq_amqp_conn_t  *conn;

    conn = ngx_zmq_amqp_create(w, oc, NULL, log);
    if (conn == NULL) {
        return NULL;
    }

    if (exchange != NULL
        && ngx_zmq_amqp_copy_str(conn->pool, &conn->probe_exchange,
                                 exchange)
           != NGX_OK)
    {
        ngx_zmq_amqp_destroy(conn);
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
    conn->probe_deadline = ngx_current_msec + w->connect_timeout;

    if (conn->conf->naddrs == 0) {
        ngx_zmq_amqp_probe_finish(conn, NGX_ERROR, "no address to connect "
                                  "to");
        return conn;
    }

    ngx_zmq_amqp_connect(conn);
    return conn;
}


void
ngx_zmq_amqp_probe_cancel(ngx_zmq_amqp_conn_t *conn)
{
    conn->probe = NULL;
    conn->probe_data = NULL;

    if (conn->probe_cb) {
        return;                 /* freed once its done() returns */
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "zmq amqp \"%V\": probe cancelled", &conn->conf->name);

    ngx_zmq_amqp_destroy(conn);
}


/* an attempt failed: the next address, or the end */
static void
ngx_zmq_amqp_probe_next(ngx_zmq_amqp_conn_t *conn, const char *reason)
{
    u_char  text[256];

    if (conn->probe_done) {
        return;
    }

    if (conn->probe_error[0] == '\0'
        && conn->addr < conn->conf->naddrs
        && (ngx_msec_int_t) (conn->probe_deadline - ngx_current_msec) > 0)
    {
        ngx_zmq_amqp_connect(conn);
        return;
    }

    if (conn->probe_error[0] != '\0') {
        ngx_zmq_amqp_probe_finish(conn, NGX_ERROR,
                                  (char *) conn->probe_error);
        return;
    }

    ngx_snprintf(text, sizeof(text) - 1, "%V: %s%Z", &conn->peer, reason);
    text[sizeof(text) - 1] = '\0';

    ngx_zmq_amqp_probe_finish(conn, NGX_ERROR, (char *) text);
}


static void
ngx_zmq_amqp_probe_finish(ngx_zmq_amqp_conn_t *conn, ngx_int_t rc,
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

    ngx_zmq_amqp_release(conn);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->hb.timer_set) {
        ngx_del_timer(&conn->hb);
    }

    ngx_zmq_amqp_set_state(conn, NGX_ZMQ_AMQP_IDLE);

    if (!conn->free_ev.posted) {
        ngx_post_event(&conn->free_ev, &ngx_posted_events);
    }
}


static void
ngx_zmq_amqp_probe_report(ngx_zmq_amqp_conn_t *conn)
{
    void                         *data;
    ngx_zmq_amqp_probe_pt         done;
    ngx_zmq_amqp_probe_result_t   res;

    done = conn->probe;
    data = conn->probe_data;
    conn->probe = NULL;
    conn->probe_data = NULL;

    res.rc = conn->probe_rc;
    res.reply_code = conn->probe_code;
    res.error.data = conn->probe_error;
    res.error.len = res.rc == NGX_OK ? 0 : ngx_strlen(conn->probe_error);
    res.product.data = conn->product;
    res.product.len = ngx_strlen(conn->product);
    res.version.data = conn->version;
    res.version.len = ngx_strlen(conn->version);
    res.address = conn->peer;
    res.tls.data = conn->tls_version;
    res.tls.len = ngx_strlen(conn->tls_version);
    res.verified = conn->tls_verified;

    if (done != NULL) {
        conn->probe_cb = 1;
        done(data, &res);
        conn->probe_cb = 0;
    }

    ngx_zmq_amqp_destroy(conn);
}


/*
 * channel.open-ok (or, checking an exchange, exchange.declare-ok): the
 * broker took us; say goodbye and report
 */
static ngx_int_t
ngx_zmq_amqp_probe_ok(ngx_zmq_amqp_conn_t *conn)
{
    if (conn->probe_exchange.len) {
        ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                      "zmq amqp \"%V\": probe of %V: exchange \"%V\" "
                      "exists, closed", &conn->conf->name, &conn->peer,
                      &conn->probe_exchange);
        ngx_zmq_amqp_probe_bye(conn, "exchange check done");

    } else {
        ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                      "zmq amqp \"%V\": probe of %V: channel open, closed",
                      &conn->conf->name, &conn->peer);
        ngx_zmq_amqp_probe_bye(conn, "ping done");
    }

    ngx_zmq_amqp_probe_finish(conn, NGX_OK, NULL);

    return NGX_DONE;
}


/* channel.open-ok: does the exchange exist? (passive: nothing created) */
static ngx_int_t
ngx_zmq_amqp_probe_declare(ngx_zmq_amqp_conn_t *conn)
{
    amqp_exchange_declare_t  decl;

    ngx_memzero(&decl, sizeof(amqp_exchange_declare_t));

    decl.exchange.bytes = conn->probe_exchange.data;
    decl.exchange.len = conn->probe_exchange.len;
    decl.type = amqp_empty_bytes;
    decl.passive = 1;
    decl.nowait = 0;
    decl.arguments = amqp_empty_table;

    conn->probe_declaring = 1;

    return ngx_zmq_amqp_method(conn, NGX_HTTP_ZMQ_CHANNEL,
                               AMQP_EXCHANGE_DECLARE_METHOD, &decl);
}


/* connection.close, written if the socket takes it; its -ok not awaited */
static void
ngx_zmq_amqp_probe_bye(ngx_zmq_amqp_conn_t *conn, const char *text)
{
    amqp_connection_close_t  close;

    close.reply_code = 200;
    close.reply_text = amqp_cstring_bytes((char *) text);
    close.class_id = 0;
    close.method_id = 0;

    if (ngx_zmq_amqp_method(conn, 0, AMQP_CONNECTION_CLOSE_METHOD, &close)
        == NGX_OK)
    {
        (void) ngx_zmq_amqp_send(conn);
    }
}


/* connection.start's product and version, printable ASCII only */
static void
ngx_zmq_amqp_probe_server(ngx_zmq_amqp_conn_t *conn, amqp_table_t *props)
{
    int                  i;
    u_char              *dst, *src;
    size_t               n, size;
    amqp_table_entry_t  *e;

    for (i = 0; i < props->num_entries; i++) {
        e = &props->entries[i];

        if (e->value.kind != AMQP_FIELD_KIND_UTF8
            && e->value.kind != AMQP_FIELD_KIND_BYTES)
        {
            continue;
        }

        if (e->key.len == 7 && ngx_memcmp(e->key.bytes, "product", 7) == 0) {
            dst = conn->product;
            size = sizeof(conn->product);

        } else if (e->key.len == 7
                   && ngx_memcmp(e->key.bytes, "version", 7) == 0)
        {
            dst = conn->version;
            size = sizeof(conn->version);

        } else {
            continue;
        }

        src = e->value.value.bytes.bytes;

        for (n = 0; n < e->value.value.bytes.len && n < size - 1; n++) {
            dst[n] = (src[n] >= 0x20 && src[n] < 0x7f) ? src[n] : '?';
        }

        dst[n] = '\0';
    }
}
