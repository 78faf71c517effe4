
/*
 * ngx_http_zmq_module: zmq_metrics, the module's counters in Prometheus'
 * text exposition format (version 0.0.4), summed over the workers from
 * shared memory: zmq_status' counters (ngx_http_zmq_worker_stats_t, per
 * worker and outgoing connection) and the zone "ngx_zmq_metrics" this
 * file keeps (requests per channel and code, publish durations).
 *
 * AMQP and STOMP outgoing connections share the families, told apart by
 * the label transport="amqp" or "stomp" (their names may be the same).
 * rpc and invoke requests (AMQP only) have a duration histogram of their
 * own, zmq_rpc_duration_seconds{outconn, kind="rpc"|"invoke"}: their time
 * includes the service's, which would blur the publishes' histogram.
 * A worker label appears only on gauges that are per worker by nature:
 * zmq_connection_up, zmq_config_version, zmq_config_source_up.
 *
 * Writers never lock: each worker increments only its own slots (the
 * counters of ngx_zmq_amqp.c and ngx_zmq_stomp.c, the channels and
 * histograms here), one plain increment per event; this handler reads
 * word-sized values another worker may be changing, as zmq_status does.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <time.h>

#include "ngx_http_zmq_module.h"


/* room left in the buffer before each line: a line is at most this */
#define NGX_HTTP_ZMQ_METRICS_LINE   (4 * NGX_HTTP_ZMQ_NAME_LEN + 512)
#define NGX_HTTP_ZMQ_METRICS_BUF    (64 * 1024)


typedef struct {
    ngx_http_request_t            *r;
    ngx_chain_t                   *first;
    ngx_chain_t                  **last;
    ngx_buf_t                     *b;
    unsigned                       failed:1;
} ngx_http_zmq_metrics_out_t;


/* an outgoing connection's counters, summed over the workers */
typedef struct {
    ngx_str_t                      name;
    ngx_uint_t                     stomp;
    ngx_uint_t                     has_stats;
    ngx_uint_t                     has_hist;
    uint64_t                       inflight;
    uint64_t                       confirmed;
    uint64_t                       nacked;
    uint64_t                       returned;
    uint64_t                       timed_out;
    uint64_t                       lost;
    uint64_t                       rejected;
    uint64_t                       reconnects;
    uint64_t                       rpc_requests;
    uint64_t                       rpc_waiting;
    uint64_t                       rpc_replies;
    uint64_t                       rpc_timeouts;
    uint64_t                       rpc_late;
    uint64_t                       rpc_bad;
    uint64_t                       rpc_lost;
    uint64_t                       buckets[NGX_HTTP_ZMQ_METRICS_BUCKETS];
    uint64_t                       sum_us;
    ngx_uint_t                     has_rpc_hist[2];     /* rpc, invoke */
    uint64_t                       rpc_buckets[2][NGX_HTTP_ZMQ_METRICS_BUCKETS];
    uint64_t                       rpc_sum_us[2];
} ngx_http_zmq_metrics_oc_t;


typedef struct {
    ngx_str_t                      name;
    uint64_t                       codes[NGX_HTTP_ZMQ_METRICS_CODES];
} ngx_http_zmq_metrics_ch_t;


static ngx_int_t ngx_http_zmq_init_metrics_shm(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_zmq_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_zmq_metrics_log_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_zmq_metrics_code_index(ngx_uint_t status);
static void ngx_http_zmq_metrics_code_label(ngx_uint_t i, u_char *buf);
static u_char *ngx_http_zmq_metrics_reserve(ngx_http_zmq_metrics_out_t *out);
static void ngx_http_zmq_metrics_printf(ngx_http_zmq_metrics_out_t *out,
    const char *fmt, ...);
static void ngx_http_zmq_metrics_family(ngx_http_zmq_metrics_out_t *out,
    const char *name, const char *type, const char *help);
static u_char *ngx_http_zmq_metrics_escape(u_char *p, ngx_str_t *s);
static ngx_int_t ngx_http_zmq_metrics_copy_name(ngx_pool_t *pool,
    volatile u_char *name, size_t len, ngx_str_t *out);
static ngx_http_zmq_metrics_oc_t *ngx_http_zmq_metrics_oc(
    ngx_http_request_t *r, ngx_array_t *ocs, ngx_str_t *name,
    ngx_uint_t stomp);
static ngx_int_t ngx_http_zmq_metrics_collect(ngx_http_request_t *r,
    ngx_http_zmq_main_conf_t *zmcf, ngx_array_t *ocs, ngx_array_t *chs);
static void ngx_http_zmq_metrics_render(ngx_http_zmq_metrics_out_t *out,
    ngx_http_zmq_main_conf_t *zmcf, ngx_array_t *ocs, ngx_array_t *chs);
static ngx_http_zmq_metrics_hist_t *ngx_http_zmq_metrics_claim(
    ngx_http_zmq_metrics_hist_t *hists, ngx_str_t *outconn,
    ngx_uint_t flag);
static void ngx_http_zmq_metrics_histogram(ngx_http_zmq_metrics_out_t *out,
    const char *family, ngx_str_t *name, const char *label,
    const char *value, uint64_t *buckets, uint64_t sum_us);


/* status codes with their own label value; any other is its class */
static ngx_uint_t  ngx_http_zmq_metrics_codes[] = {
    200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 406,
    408, 409, 411, 413, 414, 415, 422, 429, 499, 500, 501, 502, 503, 504
};

#define NGX_HTTP_ZMQ_METRICS_NCODES                                          \
    (sizeof(ngx_http_zmq_metrics_codes) / sizeof(ngx_uint_t))

#if (NGX_HTTP_ZMQ_METRICS_CODES != 28 + 5)
#error "NGX_HTTP_ZMQ_METRICS_CODES must be the codes plus five classes"
#endif


/* upper bounds of the publish duration buckets, in microseconds */
static uint64_t  ngx_http_zmq_metrics_bounds[] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};

static const char  *ngx_http_zmq_metrics_le[] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
};


char *
ngx_http_zmq_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_zmq_metrics_handler;

    return NGX_CONF_OK;
}


/* the zone, next to zmq_status' (zmcf->slots workers, known by now) */

char *
ngx_http_zmq_metrics_init_conf(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf)
{
    size_t     size;
    ngx_str_t  name;

    /*
     * The slab pool keeps a descriptor per page in the zone itself: with
     * 64 slots (worker_processes unknown yet) the counters take over 1,000
     * pages, whose descriptors alone need more than a few spare pages.
     */
    size = zmcf->slots * sizeof(ngx_http_zmq_metrics_worker_t);
    size += size / 8 + 8 * ngx_pagesize;

    ngx_str_set(&name, "ngx_zmq_metrics");
    zmcf->metrics_shm = ngx_shared_memory_add(cf, &name, size,
                                              &ngx_http_zmq_module);
    if (zmcf->metrics_shm == NULL) {
        return NGX_CONF_ERROR;
    }

    zmcf->metrics_shm->init = ngx_http_zmq_init_metrics_shm;
    zmcf->metrics_shm->data = zmcf;
    zmcf->metrics_shm->noreuse = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_zmq_init_metrics_shm(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    zmcf->metrics = ngx_slab_calloc(shpool, zmcf->slots
                                    * sizeof(ngx_http_zmq_metrics_worker_t));
    if (zmcf->metrics == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_zmq_metrics_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_zmq_metrics_log_handler;

    return NGX_OK;
}


void
ngx_http_zmq_metrics_init_process(ngx_http_zmq_main_conf_t *zmcf)
{
    ngx_http_zmq_metrics_worker_t  *mw;

    if (zmcf->metrics == NULL || zmcf->worker == NULL
        || ngx_worker >= zmcf->slots)
    {
        return;
    }

    mw = &zmcf->metrics[ngx_worker];
    ngx_memzero(mw, sizeof(ngx_http_zmq_metrics_worker_t));
    mw->pid = ngx_pid;

    zmcf->worker->metrics = mw;
}


uint64_t
ngx_http_zmq_metrics_now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


/* the histogram of outconn in this worker's slot, claimed on first use */

void
ngx_http_zmq_metrics_start(ngx_http_zmq_ctx_t *ctx, ngx_str_t *outconn,
    ngx_uint_t stomp)
{
    ngx_http_zmq_worker_t  *w;

    ctx->hist = NULL;

    w = ngx_http_zmq_worker();
    if (w == NULL || w->metrics == NULL || ctx->read_us == 0) {
        return;
    }

    ctx->hist = ngx_http_zmq_metrics_claim(w->metrics->hists, outconn,
                                           stomp);
}


void
ngx_http_zmq_metrics_start_rpc(ngx_http_zmq_ctx_t *ctx, ngx_str_t *outconn,
    ngx_uint_t invoke)
{
    ngx_http_zmq_worker_t  *w;

    ctx->hist = NULL;

    w = ngx_http_zmq_worker();
    if (w == NULL || w->metrics == NULL || ctx->read_us == 0) {
        return;
    }

    ctx->hist = ngx_http_zmq_metrics_claim(w->metrics->rpc_hists, outconn,
                                           invoke ? 1 : 0);
}


/* the histogram of (outconn, flag) in hists, claimed on first use */
static ngx_http_zmq_metrics_hist_t *
ngx_http_zmq_metrics_claim(ngx_http_zmq_metrics_hist_t *hists,
    ngx_str_t *outconn, ngx_uint_t flag)
{
    size_t                        len;
    ngx_uint_t                    i;
    ngx_http_zmq_metrics_hist_t  *h;

    len = ngx_min(outconn->len, NGX_HTTP_ZMQ_NAME_LEN - 1);

    for (i = 0; i < 2 * NGX_HTTP_ZMQ_OUTCONNS_MAX; i++) {
        h = &hists[i];

        if (!h->used) {
            ngx_memcpy((u_char *) h->name, outconn->data, len);
            h->len = len;
            h->stomp = flag;
            ngx_memory_barrier();
            h->used = 1;
            return h;
        }

        if (h->len == len && h->stomp == flag
            && ngx_memcmp((u_char *) h->name, outconn->data, len) == 0)
        {
            return h;
        }
    }

    /* full: more outgoing connections than a worker ever runs */
    return NULL;
}


void
ngx_http_zmq_metrics_observe(ngx_http_zmq_ctx_t *ctx)
{
    uint64_t                      us;
    ngx_uint_t                    i;
    ngx_http_zmq_metrics_hist_t  *h;

    h = ctx->hist;
    if (h == NULL) {
        return;
    }

    ctx->hist = NULL;

    us = ngx_http_zmq_metrics_now() - ctx->read_us;

    for (i = 0; i < NGX_HTTP_ZMQ_METRICS_BUCKETS - 1; i++) {
        if (us <= ngx_http_zmq_metrics_bounds[i]) {
            break;
        }
    }

    h->buckets[i]++;
    h->sum_us += us;
}


static ngx_uint_t
ngx_http_zmq_metrics_code_index(ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_ZMQ_METRICS_NCODES; i++) {
        if (ngx_http_zmq_metrics_codes[i] == status) {
            return i;
        }
    }

    if (status < 100 || status > 599) {
        status = 500;
    }

    return NGX_HTTP_ZMQ_METRICS_NCODES + status / 100 - 1;
}


/* buf: at least 4 bytes */

static void
ngx_http_zmq_metrics_code_label(ngx_uint_t i, u_char *buf)
{
    if (i < NGX_HTTP_ZMQ_METRICS_NCODES) {
        ngx_sprintf(buf, "%03ui%Z", ngx_http_zmq_metrics_codes[i]);
        return;
    }

    ngx_sprintf(buf, "%uixx%Z", i - NGX_HTTP_ZMQ_METRICS_NCODES + 1);
}


/*
 * Every request a zmq_service or zmq_router location answered, by
 * channel (the REST channel's name, or for a zmq_service location, and a
 * zmq_router request no channel matched, the location's name) and code.
 */

static ngx_int_t
ngx_http_zmq_metrics_log_handler(ngx_http_request_t *r)
{
    size_t                           len;
    u_char                          *name;
    ngx_uint_t                       i, code, status;
    ngx_http_zmq_ctx_t              *ctx;
    ngx_http_zmq_worker_t           *w;
    ngx_http_zmq_loc_conf_t         *zlcf;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_zmq_metrics_worker_t   *mw;
    ngx_http_zmq_metrics_channel_t  *ch;

    if (r != r->main) {
        return NGX_OK;
    }

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);
    if (zlcf == NULL || (!zlcf->router && zlcf->service.len == 0)) {
        return NGX_OK;
    }

    w = ngx_http_zmq_worker();
    if (w == NULL || w->metrics == NULL) {
        return NGX_OK;
    }

    mw = w->metrics;

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (zlcf->router && ctx != NULL && ctx->route != NULL) {
        name = ctx->route->name.data;
        len = ctx->route->name.len;

    } else {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        name = clcf->name.data;
        len = clcf->name.len;
    }

    len = ngx_min(len, NGX_HTTP_ZMQ_NAME_LEN - 1);

    status = r->err_status ? r->err_status : r->headers_out.status;
    if (r->connection->error && status == 0) {
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    code = ngx_http_zmq_metrics_code_index(status);

    for (i = 0; i < NGX_HTTP_ZMQ_METRICS_CHANNELS; i++) {
        ch = &mw->channels[i];

        if (!ch->used) {
            ngx_memcpy((u_char *) ch->name, name, len);
            ch->len = len;
            ngx_memory_barrier();
            ch->used = 1;
            ch->codes[code]++;
            return NGX_OK;
        }

        if (ch->len == len
            && ngx_memcmp((u_char *) ch->name, name, len) == 0)
        {
            ch->codes[code]++;
            return NGX_OK;
        }
    }

    mw->overflow[code]++;

    return NGX_OK;
}


/* ---------------------------------------------------------- the answer */


static ngx_int_t
ngx_http_zmq_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_array_t                  ocs, chs;
    ngx_chain_t                 *cl;
    ngx_http_zmq_main_conf_t    *zmcf;
    ngx_http_zmq_metrics_out_t   out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);

    if (ngx_array_init(&ocs, r->pool, 8, sizeof(ngx_http_zmq_metrics_oc_t))
        != NGX_OK
        || ngx_array_init(&chs, r->pool, 8, sizeof(ngx_http_zmq_metrics_ch_t))
           != NGX_OK
        || ngx_http_zmq_metrics_collect(r, zmcf, &ocs, &chs) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&out, sizeof(ngx_http_zmq_metrics_out_t));
    out.r = r;
    out.last = &out.first;

    ngx_http_zmq_metrics_render(&out, zmcf, &ocs, &chs);

    if (out.failed || ngx_http_zmq_metrics_reserve(&out) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.b->last_buf = (r == r->main) ? 1 : 0;
    out.b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = 0;

    for (cl = out.first; cl != NULL; cl = cl->next) {
        r->headers_out.content_length_n += ngx_buf_size(cl->buf);
    }

    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out.first);
}


/* room for one more line: the current buffer, or a new one */

static u_char *
ngx_http_zmq_metrics_reserve(ngx_http_zmq_metrics_out_t *out)
{
    ngx_chain_t  *cl;

    if (out->failed) {
        return NULL;
    }

    if (out->b != NULL
        && (size_t) (out->b->end - out->b->last)
           >= NGX_HTTP_ZMQ_METRICS_LINE)
    {
        return out->b->last;
    }

    out->b = ngx_create_temp_buf(out->r->pool, NGX_HTTP_ZMQ_METRICS_BUF);
    cl = ngx_alloc_chain_link(out->r->pool);
    if (out->b == NULL || cl == NULL) {
        out->failed = 1;
        return NULL;
    }

    cl->buf = out->b;
    cl->next = NULL;
    *out->last = cl;
    out->last = &cl->next;

    return out->b->last;
}


/* one line, at most NGX_HTTP_ZMQ_METRICS_LINE bytes; labels escaped */

static void
ngx_http_zmq_metrics_printf(ngx_http_zmq_metrics_out_t *out,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    p = ngx_http_zmq_metrics_reserve(out);
    if (p == NULL) {
        return;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(p, out->b->end, fmt, args);
    va_end(args);

    out->b->last = p;
}


static void
ngx_http_zmq_metrics_family(ngx_http_zmq_metrics_out_t *out,
    const char *name, const char *type, const char *help)
{
    ngx_http_zmq_metrics_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
                                name, help, name, type);
}


/* a label value: backslash, double quote and line feed escaped */

static u_char *
ngx_http_zmq_metrics_escape(u_char *p, ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        switch (s->data[i]) {
        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;
        case '"':
            *p++ = '\\';
            *p++ = '"';
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        default:
            *p++ = s->data[i];
        }
    }

    return p;
}


/* a name another worker may be rewriting: copied, bounded, escaped */

static ngx_int_t
ngx_http_zmq_metrics_copy_name(ngx_pool_t *pool, volatile u_char *name,
    size_t len, ngx_str_t *out)
{
    u_char     *copy, *p;
    size_t      i;
    ngx_str_t   raw;

    len = ngx_min(len, NGX_HTTP_ZMQ_NAME_LEN - 1);

    copy = ngx_pnalloc(pool, len + 1);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < len && name[i] != '\0'; i++) {
        copy[i] = name[i];
    }

    raw.data = copy;
    raw.len = i;

    /* escaped, at most twice as long */
    p = ngx_pnalloc(pool, 2 * raw.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = ngx_http_zmq_metrics_escape(p, &raw) - p;

    return NGX_OK;
}


static ngx_http_zmq_metrics_oc_t *
ngx_http_zmq_metrics_oc(ngx_http_request_t *r, ngx_array_t *ocs,
    ngx_str_t *name, ngx_uint_t stomp)
{
    ngx_uint_t                  i;
    ngx_http_zmq_metrics_oc_t  *oc;

    oc = ocs->elts;

    for (i = 0; i < ocs->nelts; i++) {
        if (oc[i].stomp == stomp && oc[i].name.len == name->len
            && ngx_memcmp(oc[i].name.data, name->data, name->len) == 0)
        {
            return &oc[i];
        }
    }

    oc = ngx_array_push(ocs);
    if (oc == NULL) {
        return NULL;
    }

    ngx_memzero(oc, sizeof(ngx_http_zmq_metrics_oc_t));
    oc->name = *name;
    oc->stomp = stomp;

    return oc;
}


static ngx_int_t
ngx_http_zmq_metrics_collect(ngx_http_request_t *r,
    ngx_http_zmq_main_conf_t *zmcf, ngx_array_t *ocs, ngx_array_t *chs)
{
    ngx_str_t                        name;
    ngx_uint_t                       s, i, k, stomp;
    ngx_zmq_amqp_stats_t            *st;
    ngx_http_zmq_metrics_oc_t       *oc;
    ngx_http_zmq_metrics_ch_t       *ch;
    ngx_http_zmq_worker_stats_t     *ws;
    ngx_http_zmq_metrics_hist_t     *h;
    ngx_http_zmq_metrics_worker_t   *mw;
    ngx_http_zmq_metrics_channel_t  *mc;

    for (s = 0; zmcf->stats != NULL && s < zmcf->slots; s++) {
        ws = &zmcf->stats[s];

        if (ws->pid == 0) {
            continue;
        }

        for (stomp = 0; stomp < 2; stomp++) {
            for (i = 0; i < NGX_HTTP_ZMQ_OUTCONNS_MAX; i++) {
                st = stomp ? &ws->stomp[i] : &ws->outconns[i];
                if (!st->used) {
                    continue;
                }

                if (ngx_http_zmq_metrics_copy_name(r->pool, st->name,
                                                   NGX_HTTP_ZMQ_NAME_LEN,
                                                   &name)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                oc = ngx_http_zmq_metrics_oc(r, ocs, &name, stomp);
                if (oc == NULL) {
                    return NGX_ERROR;
                }

                oc->has_stats = 1;
                oc->inflight += st->inflight;
                oc->confirmed += st->confirmed;
                oc->nacked += st->nacked;
                oc->returned += st->returned;
                oc->timed_out += st->timed_out;
                oc->lost += st->lost;
                oc->rejected += st->rejected;
                oc->reconnects += st->reconnects;
                oc->rpc_requests += st->rpc_requests;
                oc->rpc_waiting += st->rpc_waiting;
                oc->rpc_replies += st->rpc_replies;
                oc->rpc_timeouts += st->rpc_timeouts;
                oc->rpc_late += st->rpc_late;
                oc->rpc_bad += st->rpc_bad;
                oc->rpc_lost += st->rpc_lost;
            }
        }
    }

    for (s = 0; zmcf->metrics != NULL && s < zmcf->slots; s++) {
        mw = &zmcf->metrics[s];

        if (mw->pid == 0) {
            continue;
        }

        for (i = 0; i < 2 * NGX_HTTP_ZMQ_OUTCONNS_MAX; i++) {
            h = &mw->hists[i];
            if (!h->used) {
                break;
            }

            if (ngx_http_zmq_metrics_copy_name(r->pool, h->name, h->len,
                                               &name)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            oc = ngx_http_zmq_metrics_oc(r, ocs, &name, h->stomp ? 1 : 0);
            if (oc == NULL) {
                return NGX_ERROR;
            }

            oc->has_hist = 1;
            oc->sum_us += h->sum_us;
            for (k = 0; k < NGX_HTTP_ZMQ_METRICS_BUCKETS; k++) {
                oc->buckets[k] += h->buckets[k];
            }
        }

        for (i = 0; i < 2 * NGX_HTTP_ZMQ_OUTCONNS_MAX; i++) {
            h = &mw->rpc_hists[i];
            if (!h->used) {
                break;
            }

            if (ngx_http_zmq_metrics_copy_name(r->pool, h->name, h->len,
                                               &name)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            /* rpc and invoke services publish through AMQP */
            oc = ngx_http_zmq_metrics_oc(r, ocs, &name, 0);
            if (oc == NULL) {
                return NGX_ERROR;
            }

            stomp = h->stomp ? 1 : 0;           /* here: invoke */
            oc->has_rpc_hist[stomp] = 1;
            oc->rpc_sum_us[stomp] += h->sum_us;
            for (k = 0; k < NGX_HTTP_ZMQ_METRICS_BUCKETS; k++) {
                oc->rpc_buckets[stomp][k] += h->buckets[k];
            }
        }

        for (i = 0; i <= NGX_HTTP_ZMQ_METRICS_CHANNELS; i++) {

            if (i == NGX_HTTP_ZMQ_METRICS_CHANNELS) {
                ngx_str_set(&name, "_overflow");
                mc = NULL;

            } else {
                mc = &mw->channels[i];
                if (!mc->used) {
                    continue;
                }

                if (ngx_http_zmq_metrics_copy_name(r->pool, mc->name,
                                                   mc->len, &name)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            ch = chs->elts;
            for (k = 0; k < chs->nelts; k++) {
                if (ch[k].name.len == name.len
                    && ngx_memcmp(ch[k].name.data, name.data, name.len) == 0)
                {
                    break;
                }
            }

            if (k == chs->nelts) {
                ch = ngx_array_push(chs);
                if (ch == NULL) {
                    return NGX_ERROR;
                }

                ngx_memzero(ch, sizeof(ngx_http_zmq_metrics_ch_t));
                ch->name = name;

            } else {
                ch = &ch[k];
            }

            for (k = 0; k < NGX_HTTP_ZMQ_METRICS_CODES; k++) {
                ch->codes[k] += mc ? mc->codes[k] : mw->overflow[k];
            }
        }
    }

    return NGX_OK;
}


#define ngx_http_zmq_metrics_tr(oc)  ((oc)->stomp ? "stomp" : "amqp")


static void
ngx_http_zmq_metrics_render(ngx_http_zmq_metrics_out_t *out,
    ngx_http_zmq_main_conf_t *zmcf, ngx_array_t *ocs, ngx_array_t *chs)
{
    u_char                        code[8];
    ngx_uint_t                    s, i, k, stomp, up;
    ngx_str_t                     name;
    ngx_zmq_amqp_stats_t         *st;
    ngx_http_zmq_metrics_oc_t    *oc;
    ngx_http_zmq_metrics_ch_t    *ch;
    ngx_http_zmq_worker_stats_t  *ws;

    oc = ocs->elts;
    ch = chs->elts;

    ngx_http_zmq_metrics_family(out, "zmq_publish_total", "counter",
                                "Messages published, by how they ended "
                                "(rejected: 503 without publishing).");

    for (i = 0; i < ocs->nelts; i++) {
        if (!oc[i].has_stats) {
            continue;
        }

#define ngx_http_zmq_metrics_pub(result, v)                                  \
        ngx_http_zmq_metrics_printf(out, "zmq_publish_total{outconn=\"%V\"," \
                                    "transport=\"%s\",result=\"%s\"} %uL\n", \
                                    &oc[i].name,                            \
                                    ngx_http_zmq_metrics_tr(&oc[i]),        \
                                    result, (uint64_t) (v))

        ngx_http_zmq_metrics_pub("confirmed", oc[i].confirmed);
        ngx_http_zmq_metrics_pub("nacked", oc[i].nacked);
        if (!oc[i].stomp) {
            ngx_http_zmq_metrics_pub("returned", oc[i].returned);
        }
        ngx_http_zmq_metrics_pub("timed_out", oc[i].timed_out);
        ngx_http_zmq_metrics_pub("lost", oc[i].lost);
        ngx_http_zmq_metrics_pub("rejected", oc[i].rejected);

#undef ngx_http_zmq_metrics_pub
    }

    ngx_http_zmq_metrics_family(out, "zmq_inflight", "gauge",
                                "Messages written and not yet answered by "
                                "the broker.");

    for (i = 0; i < ocs->nelts; i++) {
        if (oc[i].has_stats) {
            ngx_http_zmq_metrics_printf(out, "zmq_inflight{outconn=\"%V\","
                                        "transport=\"%s\"} %uL\n",
                                        &oc[i].name,
                                        ngx_http_zmq_metrics_tr(&oc[i]),
                                        oc[i].inflight);
        }
    }

    ngx_http_zmq_metrics_family(out, "zmq_connection_reconnects_total",
                                "counter", "Connections made again after "
                                "one was lost.");

    for (i = 0; i < ocs->nelts; i++) {
        if (oc[i].has_stats) {
            ngx_http_zmq_metrics_printf(out, "zmq_connection_reconnects_total"
                                        "{outconn=\"%V\",transport=\"%s\"} "
                                        "%uL\n", &oc[i].name,
                                        ngx_http_zmq_metrics_tr(&oc[i]),
                                        oc[i].reconnects);
        }
    }

    ngx_http_zmq_metrics_family(out, "zmq_connection_up", "gauge",
                                "1 when the worker's connection is "
                                "established (ready or blocked), else 0.");

    for (s = 0; zmcf->stats != NULL && s < zmcf->slots; s++) {
        ws = &zmcf->stats[s];

        if (ws->pid == 0) {
            continue;
        }

        for (stomp = 0; stomp < 2; stomp++) {
            for (i = 0; i < NGX_HTTP_ZMQ_OUTCONNS_MAX; i++) {
                st = stomp ? &ws->stomp[i] : &ws->outconns[i];
                if (!st->used || st->draining) {
                    continue;
                }

                if (ngx_http_zmq_metrics_copy_name(out->r->pool, st->name,
                                                   NGX_HTTP_ZMQ_NAME_LEN,
                                                   &name)
                    != NGX_OK)
                {
                    out->failed = 1;
                    return;
                }

                up = (st->state == NGX_ZMQ_AMQP_READY
                      || st->state == NGX_ZMQ_AMQP_BLOCKED);

                ngx_http_zmq_metrics_printf(out, "zmq_connection_up"
                                            "{outconn=\"%V\",transport="
                                            "\"%s\",worker=\"%ui\"} %ui\n",
                                            &name,
                                            stomp ? "stomp" : "amqp", s, up);
            }
        }
    }

    ngx_http_zmq_metrics_family(out, "zmq_requests_total", "counter",
                                "Requests answered by zmq_service and "
                                "zmq_router locations, by REST channel (or "
                                "location) and status code.");

    for (i = 0; i < chs->nelts; i++) {
        for (k = 0; k < NGX_HTTP_ZMQ_METRICS_CODES; k++) {
            if (ch[i].codes[k] == 0) {
                continue;
            }

            ngx_http_zmq_metrics_code_label(k, code);
            ngx_http_zmq_metrics_printf(out, "zmq_requests_total{channel="
                                        "\"%V\",code=\"%s\"} %uL\n",
                                        &ch[i].name, code, ch[i].codes[k]);
        }
    }

    ngx_http_zmq_metrics_family(out, "zmq_publish_duration_seconds",
                                "histogram", "From the request's body read "
                                "to the broker's answer (confirm, nack, "
                                "return, loss or timeout).");

    for (i = 0; i < ocs->nelts; i++) {
        if (oc[i].has_hist) {
            ngx_http_zmq_metrics_histogram(out,
                                           "zmq_publish_duration_seconds",
                                           &oc[i].name, "transport",
                                           ngx_http_zmq_metrics_tr(&oc[i]),
                                           oc[i].buckets, oc[i].sum_us);
        }
    }

    ngx_http_zmq_metrics_family(out, "zmq_rpc_duration_seconds",
                                "histogram", "From an rpc or invoke "
                                "request's body read to its answer (the "
                                "reply, an async invocation's confirm, or "
                                "the error).");

    for (i = 0; i < ocs->nelts; i++) {
        for (k = 0; k < 2; k++) {
            if (oc[i].has_rpc_hist[k]) {
                ngx_http_zmq_metrics_histogram(out,
                                               "zmq_rpc_duration_seconds",
                                               &oc[i].name, "kind",
                                               k ? "invoke" : "rpc",
                                               oc[i].rpc_buckets[k],
                                               oc[i].rpc_sum_us[k]);
            }
        }
    }

    ngx_http_zmq_metrics_family(out, "zmq_rpc_requests_total", "counter",
                                "rpc and invoke requests published with a "
                                "reply awaited.");

    for (i = 0; i < ocs->nelts; i++) {
        if (oc[i].has_stats && !oc[i].stomp) {
            ngx_http_zmq_metrics_printf(out, "zmq_rpc_requests_total"
                                        "{outconn=\"%V\"} %uL\n",
                                        &oc[i].name, oc[i].rpc_requests);
        }
    }

    ngx_http_zmq_metrics_family(out, "zmq_rpc_total", "counter",
                                "Replies and what else ended rpc and "
                                "invoke requests.");

    for (i = 0; i < ocs->nelts; i++) {
        if (!oc[i].has_stats || oc[i].stomp) {
            continue;
        }

#define ngx_http_zmq_metrics_rpc(result, v)                                  \
        ngx_http_zmq_metrics_printf(out, "zmq_rpc_total{outconn=\"%V\","     \
                                    "result=\"%s\"} %uL\n", &oc[i].name,    \
                                    result, (uint64_t) (v))

        ngx_http_zmq_metrics_rpc("replied", oc[i].rpc_replies);
        ngx_http_zmq_metrics_rpc("timed_out", oc[i].rpc_timeouts);
        ngx_http_zmq_metrics_rpc("late", oc[i].rpc_late);
        ngx_http_zmq_metrics_rpc("bad", oc[i].rpc_bad);
        ngx_http_zmq_metrics_rpc("lost", oc[i].rpc_lost);

#undef ngx_http_zmq_metrics_rpc
    }

    ngx_http_zmq_metrics_family(out, "zmq_rpc_waiting", "gauge",
                                "rpc and invoke requests waiting for their "
                                "reply.");

    for (i = 0; i < ocs->nelts; i++) {
        if (oc[i].has_stats && !oc[i].stomp) {
            ngx_http_zmq_metrics_printf(out, "zmq_rpc_waiting{outconn=\"%V\"}"
                                        " %uL\n", &oc[i].name,
                                        oc[i].rpc_waiting);
        }
    }

    if (zmcf->type == 0) {
        return;
    }

    ngx_http_zmq_metrics_family(out, "zmq_config_version", "gauge",
                                "The configuration version the worker "
                                "runs.");

    for (s = 0; zmcf->stats != NULL && s < zmcf->slots; s++) {
        ws = &zmcf->stats[s];
        if (ws->pid != 0) {
            ngx_http_zmq_metrics_printf(out, "zmq_config_version{worker="
                                        "\"%ui\"} %uA\n", s,
                                        ws->version);
        }
    }

    ngx_http_zmq_metrics_family(out, "zmq_config_source_up", "gauge",
                                "1 when the worker reads its configuration "
                                "source (a file: always; Redis: connected), "
                                "else 0.");

    for (s = 0; zmcf->stats != NULL && s < zmcf->slots; s++) {
        ws = &zmcf->stats[s];
        if (ws->pid == 0) {
            continue;
        }

        up = zmcf->type == NGX_HTTP_ZMQ_SOURCE_FILE
             || ws->state == NGX_HTTP_ZMQ_SRC_LOADED
             || ws->state == NGX_HTTP_ZMQ_SRC_REGRESSED;

        ngx_http_zmq_metrics_printf(out, "zmq_config_source_up{worker="
                                    "\"%ui\"} %ui\n", s, up);
    }
}


/* one histogram's lines: family{outconn="name",label="value",le=...} */
static void
ngx_http_zmq_metrics_histogram(ngx_http_zmq_metrics_out_t *out,
    const char *family, ngx_str_t *name, const char *label,
    const char *value, uint64_t *buckets, uint64_t sum_us)
{
    uint64_t    cum;
    ngx_uint_t  k;

    cum = 0;

    for (k = 0; k < NGX_HTTP_ZMQ_METRICS_BUCKETS; k++) {
        cum += buckets[k];
        ngx_http_zmq_metrics_printf(out, "%s_bucket{outconn=\"%V\",%s="
                                    "\"%s\",le=\"%s\"} %uL\n", family, name,
                                    label, value, ngx_http_zmq_metrics_le[k],
                                    cum);
    }

    ngx_http_zmq_metrics_printf(out, "%s_sum{outconn=\"%V\",%s=\"%s\"} "
                                "%uL.%06uL\n", family, name, label, value,
                                sum_us / 1000000, sum_us % 1000000);
    ngx_http_zmq_metrics_printf(out, "%s_count{outconn=\"%V\",%s=\"%s\"} "
                                "%uL\n", family, name, label, value, cum);
}
