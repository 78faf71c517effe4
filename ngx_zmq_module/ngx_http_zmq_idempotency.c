
/*
 * ngx_http_zmq_module: idempotency keys. A REST channel with
 * "idempotency": true honours the request header Idempotency-Key: the
 * first request with a key publishes, and its answer (status and body) is
 * kept in Redis for the channel's idempotency_ttl; a repeat with the same
 * key and the same body gets that answer again without publishing.
 *
 * One Redis key per channel and key, "zmq:idem:<channel length>:<channel>:
 * <key>", holding either "P<sha256 of the body><owner>" (in flight: set
 * with SET NX, so that one request of several concurrent ones wins, and
 * with a TTL so that a worker that dies leaves no key locked for good;
 * <owner> is 32 random hex digits of this request's) or
 * "D<sha256><status, 3 digits><body>" (done). One command decides: SET
 * key P... NX GET EX n answers nil when this request owns the key, else
 * what the key holds.
 *
 * The outcome replaces the marker only while the key still holds this
 * request's own marker (a compare-and-set, one EVAL): a publish settled
 * after its marker expired and another request took the key does not
 * overwrite that request's marker or answer. The marker lasts as long as
 * the longest wait of the request (the confirm, and an rpc or invoke
 * service's reply) plus NGX_HTTP_ZMQ_IDEM_INFLIGHT.
 *
 *     the key is new              the request publishes; its answer is
 *                                 kept (2xx, 4xx) or the key deleted (5xx:
 *                                 the client may retry and publish)
 *     done, same body             the kept answer, Idempotent-Replayed: true
 *     in flight, same body        409 in_progress, Retry-After: 1
 *     another body                422 idempotency_mismatch
 *     Redis unreachable, slow     503 idempotency_unavailable, Retry-After
 *
 * The Redis is zmq_idempotency_redis, else zmq_config's; every worker
 * keeps one connection to it (the module's asynchronous client).
 *
 * An answer is kept as it goes out, by the header and body filters. Two
 * ways a client leaves before its answer, and how its outcome is kept all
 * the same:
 *
 *     the answer cannot be sent   (an HTTP/2 stream reset or connection
 *                                 closed: the header filter fails) the
 *                                 body that follows is still seen and
 *                                 kept, and the error reported after it
 *     the request is ended while  (NGINX terminates it: a worker's
 *     its publish waits           shutdown timeout, an error) the publish
 *                                 is taken over by an orphan, a record of
 *                                 its own (ngx_alloc()ed, on the worker's
 *                                 list) that keeps the answer the client
 *                                 would have had once the broker settles
 *                                 it, and is freed then or at the
 *                                 worker's exit
 *
 * An exiting worker (a reload) is kept while its orphans' outcomes are
 * being stored (a non-cancelable timer, bounded), so that they reach Redis.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "zgw_err.h"
#include "zgw_redis_url.h"
#include "ngx_zmq_redis.h"
#include "ngx_http_zmq_module.h"


#define NGX_HTTP_ZMQ_IDEM_HEADER     "Idempotency-Key"
#define NGX_HTTP_ZMQ_IDEM_KEY_MAX    255
#define NGX_HTTP_ZMQ_IDEM_HASH       64          /* hex SHA-256 */
#define NGX_HTTP_ZMQ_IDEM_OWNER      32          /* hex, random */
#define NGX_HTTP_ZMQ_IDEM_MARKER     (1 + NGX_HTTP_ZMQ_IDEM_HASH          \
                                      + NGX_HTTP_ZMQ_IDEM_OWNER)
#define NGX_HTTP_ZMQ_IDEM_KEEP_MAX   (16 * 1024 * 1024)
#define NGX_HTTP_ZMQ_IDEM_TIMEOUT    2000        /* per Redis command */
#define NGX_HTTP_ZMQ_IDEM_INFLIGHT   30          /* s, past the waits */
/* zmq_confirm_timeout 0 (no limit): the wait the marker covers, ms */
#define NGX_HTTP_ZMQ_IDEM_UNLIMITED  60000
/* the marker's longest TTL, s (a year): Redis refuses an EX past its range */
#define NGX_HTTP_ZMQ_IDEM_MARKER_MAX 31536000
/* an exiting worker waits this long for its orphans' stores: past the
   Redis client's own timeout, which fails them first */
#define NGX_HTTP_ZMQ_IDEM_WAIT       (NGX_HTTP_ZMQ_IDEM_TIMEOUT + 1000)

#define NGX_HTTP_ZMQ_IDEM_ASKING     1           /* SET NX GET sent */
#define NGX_HTTP_ZMQ_IDEM_OWNED      2           /* publishing */
#define NGX_HTTP_ZMQ_IDEM_KEEPING    3           /* the answer goes by */
#define NGX_HTTP_ZMQ_IDEM_DONE       4


/* zmq_idempotency_redis, or zmq_config's Redis */
typedef struct {
    ngx_addr_t                    *addr;
    ngx_str_t                      username;
    ngx_str_t                      password;
    ngx_int_t                      db;
    ngx_zmq_tls_ctx_t             *tls;         /* rediss:// */
    ngx_str_t                      tls_name;
    ngx_addr_t                    *sentinels;   /* zmq_config's, when it is
                                                   redis-sentinel:// */
    ngx_uint_t                     nsentinels;
    ngx_str_t                      master_name;
} ngx_http_zmq_idem_conf_t;


/* a request's wait: ngx_alloc()ed, freed by whichever comes last */
typedef struct {
    ngx_http_request_t            *request;     /* NULL: it went away */
    ngx_http_zmq_ctx_t            *ctx;
    ngx_str_t                      key;         /* the Redis key */
    u_char                         marker[NGX_HTTP_ZMQ_IDEM_MARKER];
                                                /* P<hash><owner> */
    ngx_uint_t                     ttl;         /* seconds */
    ngx_uint_t                     state;
    ngx_uint_t                     status;      /* the answer's */
    u_char                        *keep;        /* its body, r->pool */
    size_t                         keep_len;
    size_t                         keep_size;
    unsigned                       pending:1;   /* a reply is awaited */
    unsigned                       too_large:1;
    unsigned                       unsent:1;    /* the header failed */
} ngx_http_zmq_idem_t;


/*
 * A publish whose request went away: ngx_alloc()ed with the key and the
 * message id after it; freed once the broker's answer is handed to Redis,
 * or at the worker's exit
 */
typedef struct {
    ngx_queue_t                    queue;       /* the worker's orphans */
    ngx_http_zmq_pub_t            *pub;
    ngx_str_t                      key;
    ngx_str_t                      message_id;
    u_char                         marker[NGX_HTTP_ZMQ_IDEM_MARKER];
    ngx_uint_t                     ttl;
} ngx_http_zmq_idem_orphan_t;


static ngx_zmq_redis_t *ngx_http_zmq_idem_redis(void);
static ngx_int_t ngx_http_zmq_idem_hash(ngx_http_request_t *r, u_char *out);
static void ngx_http_zmq_idem_reply(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data);
static ngx_int_t ngx_http_zmq_idem_existing(ngx_http_request_t *r,
    ngx_http_zmq_idem_t *idem, u_char *v, size_t len);
static void ngx_http_zmq_idem_cleanup(void *data);
static void ngx_http_zmq_idem_leave(void *data);
static void ngx_http_zmq_idem_orphan_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result);
static ngx_msec_t ngx_http_zmq_idem_wait(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx);
static void ngx_http_zmq_idem_settled(ngx_str_t *key, u_char *marker,
    ngx_uint_t ttl, ngx_http_zmq_pub_result_e result, ngx_str_t *message_id,
    ngx_log_t *log);
static void ngx_http_zmq_idem_wait_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_zmq_idem_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_zmq_idem_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_zmq_idem_keep(ngx_http_request_t *r,
    ngx_http_zmq_idem_t *idem);
static void ngx_http_zmq_idem_store(ngx_str_t *key, u_char *marker,
    ngx_uint_t ttl, ngx_uint_t status, u_char *body, size_t len,
    ngx_uint_t orphan, ngx_log_t *log);
static void ngx_http_zmq_idem_kept(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data);


static ngx_http_output_header_filter_pt  ngx_http_zmq_idem_next_header;
static ngx_http_output_body_filter_pt    ngx_http_zmq_idem_next_body;


/* zmq_idempotency_redis redis://[user:password@]host[:port][/db]; */

char *
ngx_http_zmq_idempotency_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    char                      *url, shown[128];
    ngx_str_t                 *value, host, shown_str;
    ngx_url_t                  u;
    zgw_errors_t               errs;
    zgw_redis_addr_t           ra;
    ngx_http_zmq_idem_conf_t  *ic;

    if (zmcf->idem != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    url = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (url == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_memcpy(url, value[1].data, value[1].len);
    url[value[1].len] = '\0';

    zgw_errors_init(&errs);

    if (zgw_redis_addr_parse(&ra, url, &errs) != ZGW_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_idempotency_redis "
                           "\"%s\": %s",
                           zgw_url_redact(url, shown, sizeof(shown)),
                           zgw_errors_first(&errs));
        ngx_explicit_memzero(url, value[1].len);
        zgw_errors_free(&errs);
        return NGX_CONF_ERROR;
    }

    zgw_errors_free(&errs);

    /* what messages show, before the URL (and its password) is zeroed */
    shown_str.data = (u_char *) zgw_url_redact(url, shown, sizeof(shown));
    shown_str.len = ngx_strlen(shown_str.data);

    ngx_explicit_memzero(url, value[1].len);

    ic = ngx_pcalloc(cf->pool, sizeof(ngx_http_zmq_idem_conf_t));
    if (ic == NULL) {
        ngx_explicit_memzero(ra.password, sizeof(ra.password));
        return NGX_CONF_ERROR;
    }

    if (ra.tls) {
        if (ngx_http_zmq_redis_tls_conf(cf, &ra, "zmq_idempotency_redis",
                                        &shown_str, &ic->tls, &ic->tls_name)
            != NGX_OK)
        {
            ngx_explicit_memzero(ra.password, sizeof(ra.password));
            return NGX_CONF_ERROR;
        }
    }

    /* resolved now, never in a worker */

    ngx_memzero(&u, sizeof(ngx_url_t));
    host.len = ngx_strlen(ra.host);
    host.data = ngx_pnalloc(cf->pool, host.len + 2);
    if (host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_strchr(ra.host, ':') != NULL) {
        host.len = ngx_sprintf(host.data, "[%s]", ra.host) - host.data;

    } else {
        ngx_memcpy(host.data, ra.host, host.len);
    }

    u.url = host;
    u.default_port = (in_port_t) ra.port;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_explicit_memzero(ra.password, sizeof(ra.password));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_idempotency_redis: %s",
                           u.err ? u.err : "cannot resolve the host");
        return NGX_CONF_ERROR;
    }

    ic->addr = &u.addrs[0];
    ic->db = ra.db;

    ic->username.len = ngx_strlen(ra.username);
    ic->username.data = ngx_pnalloc(cf->pool, ic->username.len + 1);
    ic->password.len = ngx_strlen(ra.password);
    ic->password.data = ngx_pnalloc(cf->pool, ic->password.len + 1);

    if (ic->username.data == NULL || ic->password.data == NULL) {
        ngx_explicit_memzero(ra.password, sizeof(ra.password));
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(ic->username.data, ra.username, ic->username.len + 1);
    ngx_memcpy(ic->password.data, ra.password, ic->password.len + 1);
    ngx_explicit_memzero(ra.password, sizeof(ra.password));

    zmcf->idem = ic;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_zmq_idem_init(ngx_conf_t *cf)
{
    ngx_http_zmq_idem_next_header = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_zmq_idem_header_filter;

    ngx_http_zmq_idem_next_body = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_zmq_idem_body_filter;

    return NGX_OK;
}


/* the worker's connection, opened at its start when there is a Redis */

void
ngx_http_zmq_idem_init_process(ngx_cycle_t *cycle)
{
    ngx_zmq_redis_conf_t       rc;
    ngx_http_zmq_worker_t     *w;
    ngx_http_zmq_idem_conf_t  *ic, own;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_zmq_module);
    w = ngx_http_zmq_worker();

    /* w->idem_orphans: initialised with w, in ngx_http_zmq_init_process() */

    w->idem_wait.handler = ngx_http_zmq_idem_wait_handler;
    w->idem_wait.data = w;
    w->idem_wait.log = cycle->log;
    w->idem_wait.cancelable = 0;     /* what keeps an exiting worker */

    ic = zmcf->idem;

    if (ic == NULL) {
        if (zmcf->type != NGX_HTTP_ZMQ_SOURCE_REDIS
            || (zmcf->redis_addr == NULL && zmcf->redis.nsentinels == 0))
        {
            return;
        }

        ngx_memzero(&own, sizeof(ngx_http_zmq_idem_conf_t));
        own.addr = zmcf->redis_addr;            /* NULL with sentinels */
        own.sentinels = zmcf->redis_sentinels;
        own.nsentinels = zmcf->redis.nsentinels;
        own.master_name.data = (u_char *) zmcf->redis.master_name;
        own.master_name.len = ngx_strlen(zmcf->redis.master_name);
        own.db = zmcf->redis.db;
        own.username.data = (u_char *) zmcf->redis.username;
        own.username.len = ngx_strlen(zmcf->redis.username);
        own.password.data = (u_char *) zmcf->redis.password;
        own.password.len = ngx_strlen(zmcf->redis.password);
        own.tls = zmcf->redis_tls;
        own.tls_name = zmcf->redis_tls_name;
        ic = &own;
    }

    ngx_memzero(&rc, sizeof(ngx_zmq_redis_conf_t));
    rc.addr = ic->addr;
    rc.username = ic->username;
    rc.password = ic->password;
    rc.db = ic->db;
    rc.tls = ic->tls;
    rc.tls_name = ic->tls_name;
    rc.sentinels = ic->sentinels;
    rc.nsentinels = ic->nsentinels;
    rc.master_name = ic->master_name;
    rc.timeout = NGX_HTTP_ZMQ_IDEM_TIMEOUT;
    rc.name = "idempotency";
    rc.log = cycle->log;

    w->idem = ngx_zmq_redis_create(&rc);

    if (w->idem != NULL) {
        ngx_zmq_redis_start(w->idem);
    }
}


void
ngx_http_zmq_idem_exit(void)
{
    ngx_queue_t                 *q;
    ngx_http_zmq_worker_t       *w;
    ngx_http_zmq_idem_orphan_t  *o;

    w = ngx_http_zmq_worker();

    if (w == NULL) {
        return;
    }

    /*
     * Publishes still unsettled: their keys stay in flight until the TTL.
     * Their pubs are still valid (they live in their broker connection's
     * pool, which the exit does not destroy: the AMQP exit only closes the
     * sockets, without callbacks), and each still names its orphan: it is
     * detached before its orphan is freed, so that nothing can reach the
     * freed record through it.
     */

    while (!ngx_queue_empty(&w->idem_orphans)) {
        q = ngx_queue_head(&w->idem_orphans);
        ngx_queue_remove(q);
        o = ngx_queue_data(q, ngx_http_zmq_idem_orphan_t, queue);

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "zmq: the outcome of idempotency key \"%V\" is not "
                      "kept: the worker exits before the broker answered "
                      "(the key stays in flight until its TTL)", &o->key);

        ngx_zmq_amqp_detach(o->pub);
        o->pub->done = NULL;
        ngx_free(o);
    }

    if (w->idem_wait.timer_set) {
        ngx_del_timer(&w->idem_wait);
    }

    if (w->idem != NULL) {
        ngx_zmq_redis_destroy(w->idem);
        w->idem = NULL;
    }
}


static ngx_zmq_redis_t *
ngx_http_zmq_idem_redis(void)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    if (w == NULL || w->idem == NULL || !ngx_zmq_redis_connected(w->idem)) {
        return NULL;
    }

    return w->idem;
}


/* SHA-256 of the request line and body, in hex; the body is not consumed */

static ngx_int_t
ngx_http_zmq_idem_hash(ngx_http_request_t *r, u_char *out)
{
    u_char         buf[16384], md[EVP_MAX_MD_SIZE];
    off_t          pos;
    size_t         n;
    ssize_t        got;
    ngx_buf_t     *b;
    ngx_chain_t   *cl;
    unsigned int   mdlen;
    EVP_MD_CTX    *md_ctx;

    md_ctx = EVP_MD_CTX_new();
    if (md_ctx == NULL || EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL) != 1)
    {
        EVP_MD_CTX_free(md_ctx);
        return NGX_ERROR;
    }

    /*
     * The method and the URI as sent, then the body: the path's parameters
     * and the query (which a channel's routing key may use) are part of
     * the request, so the same key and body to /orders/a and /orders/b is
     * a mismatch, never a replay of the other one's answer
     */
    if (EVP_DigestUpdate(md_ctx, r->method_name.data, r->method_name.len)
        != 1
        || EVP_DigestUpdate(md_ctx, " ", 1) != 1
        || EVP_DigestUpdate(md_ctx, r->unparsed_uri.data,
                            r->unparsed_uri.len)
           != 1
        || EVP_DigestUpdate(md_ctx, "\n", 1) != 1)
    {
        goto failed;
    }

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl;
         cl = cl->next)
    {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            if (b->last > b->pos
                && EVP_DigestUpdate(md_ctx, b->pos, b->last - b->pos) != 1)
            {
                goto failed;
            }
            continue;
        }

        if (b->file == NULL) {
            continue;
        }

        for (pos = b->file_pos; pos < b->file_last; pos += n) {
            n = (size_t) ngx_min((off_t) sizeof(buf), b->file_last - pos);

            got = ngx_read_file(b->file, buf, n, pos);
            if (got != (ssize_t) n
                || EVP_DigestUpdate(md_ctx, buf, n) != 1)
            {
                goto failed;
            }
        }
    }

    if (EVP_DigestFinal_ex(md_ctx, md, &mdlen) != 1 || mdlen != 32) {
        goto failed;
    }

    EVP_MD_CTX_free(md_ctx);
    ngx_hex_dump(out, md, 32);

    return NGX_OK;

failed:

    EVP_MD_CTX_free(md_ctx);
    return NGX_ERROR;
}


/*
 * Before the publish: NGX_DECLINED when the request has no key to honour
 * (the publish goes on), NGX_DONE when Redis answers first (the request
 * is then published or answered from there), else the status of an answer
 * given now.
 */

ngx_int_t
ngx_http_zmq_idem_start(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx)
{
    u_char                   *p, ttl[NGX_INT_T_LEN];
    u_char                    owner[NGX_HTTP_ZMQ_IDEM_OWNER / 2];
    size_t                    argvlen[7];
    ngx_int_t                 rc;
    ngx_str_t                *key;
    ngx_uint_t                i, secs;
    const char               *argv[7];
    ngx_list_part_t          *part;
    ngx_table_elt_t          *h;
    ngx_zmq_redis_t          *rd;
    ngx_pool_cleanup_t       *cln;
    ngx_http_zmq_idem_t      *idem;
    ngx_http_zmq_route_t     *route;

    route = ctx->route;

    if (route == NULL || !route->idempotency) {
        return NGX_DECLINED;
    }

    key = NULL;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof(NGX_HTTP_ZMQ_IDEM_HEADER) - 1
            && ngx_strncasecmp(h[i].key.data,
                               (u_char *) NGX_HTTP_ZMQ_IDEM_HEADER,
                               h[i].key.len) == 0)
        {
            if (key != NULL) {
                return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST,
                                          "bad_header", "header "
                                          "Idempotency-Key: is given twice",
                                          0);
            }

            key = &h[i].value;
        }
    }

    if (key == NULL) {
        return NGX_DECLINED;
    }

    if (key->len < 1 || key->len > NGX_HTTP_ZMQ_IDEM_KEY_MAX) {
        goto bad_key;
    }

    for (i = 0; i < key->len; i++) {
        if (key->data[i] < 0x21 || key->data[i] > 0x7e) {
            goto bad_key;
        }
    }

    rd = ngx_http_zmq_idem_redis();
    if (rd == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "zmq: Idempotency-Key refused: no connection to the "
                      "idempotency Redis");
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "idempotency_unavailable", "the store of "
                                  "idempotency keys is not reachable; try "
                                  "again later", 1);
    }

    idem = ngx_alloc(sizeof(ngx_http_zmq_idem_t), r->connection->log);
    if (idem == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(idem, sizeof(ngx_http_zmq_idem_t));

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_free(idem);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_zmq_idem_cleanup;
    cln->data = idem;

    idem->request = r;
    idem->ctx = ctx;
    idem->ttl = route->idempotency_ttl;

    /* P<hash><owner>: the owner is what the outcome's store compares */

    idem->marker[0] = 'P';

    if (ngx_http_zmq_idem_hash(r, idem->marker + 1) != NGX_OK
        || RAND_bytes(owner, sizeof(owner)) != 1)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_hex_dump(idem->marker + 1 + NGX_HTTP_ZMQ_IDEM_HASH, owner,
                 sizeof(owner));

    /* zmq:idem:<len>:<channel>:<key>: no two channels' keys meet */

    idem->key.data = ngx_pnalloc(r->pool, sizeof("zmq:idem::") + NGX_INT_T_LEN
                                          + route->name.len + 1 + key->len);
    if (idem->key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(idem->key.data, "zmq:idem:%uz:%V:%V", route->name.len,
                    &route->name, key);
    idem->key.len = p - idem->key.data;

    argv[0] = "SET";
    argv[1] = (char *) idem->key.data;
    argv[2] = (char *) idem->marker;
    argv[3] = "NX";
    argv[4] = "GET";
    argv[5] = "EX";
    argv[6] = (char *) ttl;

    argvlen[0] = 3;
    argvlen[1] = idem->key.len;
    argvlen[2] = NGX_HTTP_ZMQ_IDEM_MARKER;
    argvlen[3] = 2;
    argvlen[4] = 3;
    argvlen[5] = 2;
    secs = ngx_http_zmq_idem_wait(r, ctx) / 1000 + NGX_HTTP_ZMQ_IDEM_INFLIGHT;
    secs = ngx_min(secs, NGX_HTTP_ZMQ_IDEM_MARKER_MAX);

    argvlen[6] = ngx_sprintf(ttl, "%ui", secs) - ttl;

    rc = ngx_zmq_redis_command(rd, 7, argv, argvlen,
                               ngx_http_zmq_idem_reply, idem);
    if (rc != NGX_OK) {
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "idempotency_unavailable", "the store of "
                                  "idempotency keys is not reachable; try "
                                  "again later", 1);
    }

    idem->pending = 1;
    idem->state = NGX_HTTP_ZMQ_IDEM_ASKING;
    ctx->idem = idem;

    return NGX_DONE;

bad_key:

    return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_header",
                              "header Idempotency-Key: must be 1-255 "
                              "printable ASCII characters", 0);
}


/*
 * How long the request may wait for its outcome: the confirm (NGX_HTTP_
 * ZMQ_IDEM_UNLIMITED when zmq_confirm_timeout is 0), and then the reply of
 * an rpc or invoke service. The in-flight marker lasts that long and
 * NGX_HTTP_ZMQ_IDEM_INFLIGHT more.
 */

static ngx_msec_t
ngx_http_zmq_idem_wait(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx)
{
    ngx_msec_t                wait;
    ngx_http_zmq_service_t   *svc;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    wait = zlcf->confirm_timeout ? zlcf->confirm_timeout
                                 : NGX_HTTP_ZMQ_IDEM_UNLIMITED;

    svc = ngx_http_zmq_runtime_service(&ctx->service);

    if (svc != NULL && (svc->type == NGX_HTTP_ZMQ_SVC_RPC
                        || svc->type == NGX_HTTP_ZMQ_SVC_INVOKE))
    {
        wait += svc->timeout ? svc->timeout : NGX_HTTP_ZMQ_IDEM_UNLIMITED;
    }

    return wait;
}


static void
ngx_http_zmq_idem_reply(ngx_zmq_redis_t *rd, redisReply *reply, void *data)
{
    ngx_http_zmq_idem_t *idem = data;

    char                 shown[ZGW_SHOW_SIZE];
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    idem->pending = 0;
    r = idem->request;

    if (r == NULL) {
        ngx_free(idem);
        return;
    }

    c = r->connection;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "zmq: idempotency Redis: %s",
                      reply == NULL ? "no answer"
                                    : zgw_show(shown, sizeof(shown),
                                               reply->str, reply->len));
        idem->state = NGX_HTTP_ZMQ_IDEM_DONE;
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "idempotency_unavailable", "the store of "
                                "idempotency keys did not answer; try again "
                                "later", 1);

    } else if (reply->type == REDIS_REPLY_NIL) {
        /* the key is this request's: publish */
        idem->state = NGX_HTTP_ZMQ_IDEM_OWNED;

        /*
         * The publish's request cleanup calls it before it detaches the
         * publish, whatever the order of the pool's cleanups
         */
        idem->ctx->leave = ngx_http_zmq_idem_leave;
        idem->ctx->leave_data = idem;

        rc = ngx_http_zmq_body_publish(r, idem->ctx);

    } else if (reply->type == REDIS_REPLY_STRING) {
        idem->state = NGX_HTTP_ZMQ_IDEM_DONE;
        rc = ngx_http_zmq_idem_existing(r, idem, (u_char *) reply->str,
                                        reply->len);

    } else {
        /* not what SET NX GET answers: the store is not one to trust */
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "zmq: idempotency Redis: SET NX GET answered a reply "
                      "of type %d, not a string or nil", reply->type);
        idem->state = NGX_HTTP_ZMQ_IDEM_DONE;
        rc = ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "idempotency_unavailable", "the store of "
                                "idempotency keys gave an unexpected "
                                "answer; try again later", 1);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    ngx_http_run_posted_requests(c);
}


/* what the key holds: in flight, or an answer to give again */

static ngx_int_t
ngx_http_zmq_idem_existing(ngx_http_request_t *r, ngx_http_zmq_idem_t *idem,
    u_char *v, size_t len)
{
    u_char     *body;
    ngx_int_t   status;
    ngx_str_t   yes;

    if (len < 1 + NGX_HTTP_ZMQ_IDEM_HASH
        || (v[0] != 'P' && v[0] != 'D')
        || (v[0] == 'D' && len < 1 + NGX_HTTP_ZMQ_IDEM_HASH + 3))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "zmq: idempotency key \"%V\" holds no value of ours",
                      &idem->key);
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "idempotency_unavailable", "the stored "
                                  "outcome of this key is unreadable", 1);
    }

    if (ngx_memcmp(v + 1, idem->marker + 1, NGX_HTTP_ZMQ_IDEM_HASH) != 0) {
        return ngx_http_zmq_error(r, 422, "idempotency_mismatch",
                                  "this Idempotency-Key was used with "
                                  "another body", 0);
    }

    if (v[0] == 'P') {
        return ngx_http_zmq_error(r, NGX_HTTP_CONFLICT, "in_progress",
                                  "a request with this Idempotency-Key is "
                                  "still being published", 1);
    }

    v += 1 + NGX_HTTP_ZMQ_IDEM_HASH;
    len -= 1 + NGX_HTTP_ZMQ_IDEM_HASH;

    status = ngx_atoi(v, 3);
    if (status < 200 || status > 499) {
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "idempotency_unavailable", "the stored "
                                  "outcome of this key is unreadable", 1);
    }

    body = ngx_pnalloc(r->pool, len - 3 + 1);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(body, v + 3, len - 3);

    ngx_str_set(&yes, "true");
    if (ngx_http_zmq_add_header(r, "Idempotent-Replayed", &yes) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_zmq_send_json(r, status, body, len - 3);
}


static void
ngx_http_zmq_idem_cleanup(void *data)
{
    ngx_http_zmq_idem_t *idem = data;

    if (idem->ctx->leave != NULL && idem->ctx->leave_data == idem) {
        /*
         * The publish's request cleanup has not run yet (or is none): the
         * hook is called here, and never again
         */
        idem->ctx->leave = NULL;
        idem->ctx->leave_data = NULL;
        ngx_http_zmq_idem_leave(idem);
    }

    if (idem->state == NGX_HTTP_ZMQ_IDEM_OWNED) {
        /* not answered, nor taken over (a batch, rpc, STOMP) */
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "zmq: the request with idempotency key \"%V\" "
                      "ended before its answer; the key stays in flight "
                      "until its TTL", &idem->key);
        idem->state = NGX_HTTP_ZMQ_IDEM_DONE;
    }

    if (idem->ctx->idem == idem) {
        idem->ctx->idem = NULL;
    }

    if (idem->pending) {
        /* the reply frees it */
        idem->request = NULL;
        return;
    }

    ngx_free(idem);
}


/*
 * ctx->leave, from the publish's request cleanup: the request is freed
 * before it was answered, NGINX ended it while its publish waited (a
 * worker's shutdown timeout closing connections, an error finalizing
 * it). A single publish waiting for the broker is taken over by an
 * orphan, which keeps the answer the client would have had; a publish
 * settled but not yet answered (in the answers queue) is kept at once.
 * Batches, rpc and STOMP publishes are not taken over: their keys stay in
 * flight until the marker's TTL (ngx_http_zmq_idem_cleanup() says so).
 */

static void
ngx_http_zmq_idem_leave(void *data)
{
    ngx_http_zmq_idem_t *idem = data;

    u_char                      *p;
    ngx_http_zmq_ctx_t          *ctx;
    ngx_http_zmq_worker_t       *w;
    ngx_http_zmq_idem_orphan_t  *o;

    ctx = idem->ctx;

    if (idem->state != NGX_HTTP_ZMQ_IDEM_OWNED
        || ctx->batch != NULL || ctx->rpc != NULL || ctx->stomp)
    {
        return;                 /* answered, being answered, or not ours */
    }

    if (ctx->queued) {
        /* settled: the answer waited for its turn */
        idem->state = NGX_HTTP_ZMQ_IDEM_DONE;
        ngx_http_zmq_idem_settled(&idem->key, idem->marker, idem->ttl,
                                  ctx->result, &ctx->message_id,
                                  ngx_cycle->log);
        return;
    }

    if (ctx->pub == NULL) {
        return;
    }

    w = ngx_http_zmq_worker();

    o = ngx_alloc(sizeof(ngx_http_zmq_idem_orphan_t) + idem->key.len
                  + ctx->message_id.len, ngx_cycle->log);
    if (o == NULL) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "zmq: the outcome of idempotency key \"%V\" is not "
                      "kept: no memory (the key stays in flight until its "
                      "TTL)", &idem->key);
        return;
    }

    p = (u_char *) (o + 1);
    o->key.data = p;
    o->key.len = idem->key.len;
    p = ngx_cpymem(p, idem->key.data, idem->key.len);
    o->message_id.data = p;
    o->message_id.len = ctx->message_id.len;
    ngx_memcpy(p, ctx->message_id.data, ctx->message_id.len);
    ngx_memcpy(o->marker, idem->marker, NGX_HTTP_ZMQ_IDEM_MARKER);
    o->ttl = idem->ttl;

    /* the publish answers the orphan, no longer the request */

    o->pub = ctx->pub;

    if (ngx_http_zmq_publish_takeover(ctx, ngx_http_zmq_idem_orphan_done, o)
        != NGX_OK)
    {
        /* already answered (its answer dropped with the request) */
        ngx_free(o);
        return;
    }

    idem->state = NGX_HTTP_ZMQ_IDEM_DONE;
    ngx_queue_insert_tail(&w->idem_orphans, &o->queue);

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "zmq: the request with idempotency key \"%V\" ended "
                  "before the broker answered; its outcome will be kept",
                  &o->key);
}


static void
ngx_http_zmq_idem_orphan_done(ngx_http_zmq_pub_t *pub,
    ngx_http_zmq_pub_result_e result)
{
    ngx_http_zmq_idem_orphan_t *o = pub->data;

    ngx_zmq_amqp_detach(pub);
    pub->done = NULL;
    ngx_queue_remove(&o->queue);

    ngx_http_zmq_idem_settled(&o->key, o->marker, o->ttl, result,
                              &o->message_id, ngx_cycle->log);

    /* Redis has its own copy of the command */
    ngx_free(o);
}


/*
 * The answer a settled publish gets, as ngx_http_zmq_answer() in
 * ngx_http_zmq_publish.c gives it (AMQP publishes only, the same
 * ngx_http_zmq_publish_settled()), kept as if it had gone out: 202 and
 * 422 kept, 5xx deleted.
 */

static void
ngx_http_zmq_idem_settled(ngx_str_t *key, u_char *marker, ngx_uint_t ttl,
    ngx_http_zmq_pub_result_e result, ngx_str_t *message_id, ngx_log_t *log)
{
    ngx_str_t    body;
    ngx_uint_t   status;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        /* no memory: the marker stays, rather than a retry republishing */
        ngx_http_zmq_idem_store(key, marker, ttl, 0, NULL, 0, 1, log);
        return;
    }

    status = ngx_http_zmq_publish_settled(pool, result, message_id, &body);

    if (status < 500 && body.len == 0) {
        status = 0;                                 /* no memory */
    }

    ngx_http_zmq_idem_store(key, marker, ttl, status, body.data, body.len, 1,
                            log);

    /* the command was copied into the connection's buffer */
    ngx_destroy_pool(pool);
}


/*
 * The wait of an exiting worker for its orphans' stores is over: Redis
 * did not answer them in time (its client fails them first, so this is
 * seldom reached). The worker may exit.
 */

static void
ngx_http_zmq_idem_wait_handler(ngx_event_t *ev)
{
    ngx_http_zmq_worker_t *w = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "zmq: %ui idempotency outcome(s) of requests that went "
                  "away not confirmed by Redis in time", w->idem_storing);
}


/* the owner's answer, as it goes to the client, is kept */

static ngx_int_t
ngx_http_zmq_idem_header_filter(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_zmq_ctx_t   *ctx;
    ngx_http_zmq_idem_t  *idem;

    if (r != r->main) {
        return ngx_http_zmq_idem_next_header(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (ctx == NULL || ctx->idem == NULL) {
        return ngx_http_zmq_idem_next_header(r);
    }

    idem = ctx->idem;

    if (idem->state != NGX_HTTP_ZMQ_IDEM_OWNED) {
        return ngx_http_zmq_idem_next_header(r);
    }

    idem->state = NGX_HTTP_ZMQ_IDEM_KEEPING;
    idem->status = r->headers_out.status;

    if (r->header_only) {
        ngx_http_zmq_idem_keep(r, idem);
    }

    rc = ngx_http_zmq_idem_next_header(r);

    if (rc == NGX_ERROR && idem->state == NGX_HTTP_ZMQ_IDEM_KEEPING) {
        /*
         * The header cannot go out: the client is gone (an HTTP/2 stream
         * reset or its connection closed, a broken connection). The answer
         * is what the client would have had: its body is still taken, and
         * the body filter reports the error once it has it.
         */
        if (idem->status >= 200 && idem->status <= 499) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "zmq: the answer for idempotency key \"%V\" "
                          "cannot be sent; it is kept for the retry (unless "
                          "its body is too large to keep)", &idem->key);

        } else {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "zmq: the %ui answer for idempotency key \"%V\" "
                          "cannot be sent; the key is deleted, so that a "
                          "retry publishes", idem->status, &idem->key);
        }

        idem->unsent = 1;
        return NGX_OK;
    }

    return rc;
}


static ngx_int_t
ngx_http_zmq_idem_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    u_char               *p;
    size_t                n, size;
    ngx_chain_t          *cl;
    ngx_http_zmq_ctx_t   *ctx;
    ngx_http_zmq_idem_t  *idem;

    if (r != r->main || in == NULL) {
        return ngx_http_zmq_idem_next_body(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (ctx == NULL || ctx->idem == NULL) {
        return ngx_http_zmq_idem_next_body(r, in);
    }

    idem = ctx->idem;

    if (idem->state != NGX_HTTP_ZMQ_IDEM_KEEPING) {
        return idem->unsent ? NGX_ERROR : ngx_http_zmq_idem_next_body(r, in);
    }

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf) && !idem->too_large) {
            n = cl->buf->last - cl->buf->pos;

            if (idem->keep_len + n > NGX_HTTP_ZMQ_IDEM_KEEP_MAX) {
                idem->too_large = 1;

            } else if (idem->keep_len + n > idem->keep_size) {
                size = ngx_max(idem->keep_size * 2, idem->keep_len + n);
                size = ngx_max(size, 1024);

                p = ngx_pnalloc(r->pool, size);
                if (p == NULL) {
                    idem->too_large = 1;

                } else {
                    if (idem->keep_len) {
                        ngx_memcpy(p, idem->keep, idem->keep_len);
                    }
                    idem->keep = p;
                    idem->keep_size = size;
                }
            }

            if (!idem->too_large && n) {
                ngx_memcpy(idem->keep + idem->keep_len, cl->buf->pos, n);
                idem->keep_len += n;
            }

        } else if (!ngx_buf_special(cl->buf)) {
            /* a file part: not ours, not kept */
            idem->too_large = 1;
        }

        if (cl->buf->last_buf) {
            ngx_http_zmq_idem_keep(r, idem);
            break;
        }
    }

    if (idem->unsent) {
        /*
         * Nothing goes out: the parts are taken as if sent until the last
         * one, and then the header's error is reported, now that the
         * whole answer is kept
         */
        for (cl = in; cl; cl = cl->next) {
            if (ngx_buf_in_memory(cl->buf)) {
                cl->buf->pos = cl->buf->last;
            }
            if (cl->buf->in_file) {
                cl->buf->file_pos = cl->buf->file_last;
            }
        }

        return idem->state == NGX_HTTP_ZMQ_IDEM_KEEPING ? NGX_OK : NGX_ERROR;
    }

    return ngx_http_zmq_idem_next_body(r, in);
}


/*
 * 2xx and 4xx answers are kept for the channel's TTL; after a 5xx (the
 * broker unavailable or slow, an internal error) the key is deleted, so
 * that the client's retry publishes.
 */

static void
ngx_http_zmq_idem_keep(ngx_http_request_t *r, ngx_http_zmq_idem_t *idem)
{
    idem->state = NGX_HTTP_ZMQ_IDEM_DONE;

    ngx_http_zmq_idem_store(&idem->key, idem->marker, idem->ttl,
                            idem->too_large ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                            : idem->status,
                            idem->keep, idem->keep_len, 0,
                            r->connection->log);
}


/*
 * The outcome replaces this request's marker, only while the key still
 * holds that marker: KEYS[1] the key, ARGV[1] the marker, ARGV[2] the
 * outcome (D<hash><status><body>; empty: delete the key), ARGV[3] its TTL.
 * 1: done; 0: the key is no longer this request's (its marker expired, and
 * it is gone or another request's).
 */

static const char  ngx_http_zmq_idem_cas[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if ARGV[2] == '' then redis.call('DEL', KEYS[1]) "
    "else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end "
    "return 1";


/*
 * A 2xx or 4xx outcome is kept (D<hash><status><body> for the TTL), a 5xx
 * one deletes the key; status 0 (no memory for it) leaves the marker to
 * its TTL, so that a retry cannot publish again meanwhile. An orphan's
 * store (its request gone) is counted until Redis answers it, and a
 * non-cancelable timer keeps an exiting worker that long (bounded).
 */

static void
ngx_http_zmq_idem_store(ngx_str_t *key, u_char *marker, ngx_uint_t ttl,
    ngx_uint_t status, u_char *body, size_t len, ngx_uint_t orphan,
    ngx_log_t *log)
{
    u_char                 *v, ttl_text[NGX_INT_T_LEN];
    size_t                  argvlen[7], vlen;
    ngx_int_t               rc;
    const char             *argv[7];
    ngx_zmq_redis_t        *rd;
    ngx_http_zmq_worker_t  *w;

    rd = ngx_http_zmq_idem_redis();
    if (rd == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "zmq: the outcome of idempotency key \"%V\" is not "
                      "kept: no connection to Redis (the key stays in "
                      "flight until its TTL)", key);
        return;
    }

    v = NULL;
    vlen = 0;

    if (status >= 200 && status <= 499) {
        vlen = 1 + NGX_HTTP_ZMQ_IDEM_HASH + 3 + len;
        v = ngx_alloc(vlen, log);
        if (v == NULL) {
            status = 0;
        }
    }

    if (status == 0) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "zmq: the outcome of idempotency key \"%V\" is not "
                      "kept: no memory (the key stays in flight until its "
                      "TTL)", key);
        return;
    }

    if (v != NULL) {
        v[0] = 'D';
        ngx_memcpy(v + 1, marker + 1, NGX_HTTP_ZMQ_IDEM_HASH);
        (void) ngx_sprintf(v + 1 + NGX_HTTP_ZMQ_IDEM_HASH, "%03ui", status);
        if (len) {
            ngx_memcpy(v + 1 + NGX_HTTP_ZMQ_IDEM_HASH + 3, body, len);
        }
    }

    /* an orphan's store: the kept handler's data is the worker */
    w = orphan ? ngx_http_zmq_worker() : NULL;

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_zmq_idem_cas;
    argvlen[1] = sizeof(ngx_http_zmq_idem_cas) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (char *) key->data;
    argvlen[3] = key->len;
    argv[4] = (char *) marker;
    argvlen[4] = NGX_HTTP_ZMQ_IDEM_MARKER;
    argv[5] = v ? (char *) v : "";
    argvlen[5] = vlen;
    argv[6] = (char *) ttl_text;
    argvlen[6] = ngx_sprintf(ttl_text, "%ui", ttl) - ttl_text;

    /* the command is copied into the connection's buffer */
    rc = ngx_zmq_redis_command(rd, 7, argv, argvlen, ngx_http_zmq_idem_kept,
                               w);

    if (v != NULL) {
        ngx_free(v);
    }

    if (rc == NGX_OK && w != NULL) {
        w->idem_storing++;
        ngx_add_timer(&w->idem_wait, NGX_HTTP_ZMQ_IDEM_WAIT);
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "zmq: the outcome of idempotency key \"%V\" could "
                      "not be kept (the key stays in flight until its TTL)",
                      key);
    }
}


/* the reply to keeping (or deleting) an outcome: nobody waits for it */

static void
ngx_http_zmq_idem_kept(ngx_zmq_redis_t *rd, redisReply *reply, void *data)
{
    ngx_http_zmq_worker_t *w = data;

    char  shown[ZGW_SHOW_SIZE];

    if (w != NULL && w->idem_storing > 0 && --w->idem_storing == 0
        && w->idem_wait.timer_set)
    {
        /* every orphan's store answered: an exiting worker may go */
        ngx_del_timer(&w->idem_wait);
    }

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "zmq: an idempotency outcome was not kept: %s "
                      "(its key stays in flight until its TTL)",
                      reply == NULL ? "no answer"
                                    : zgw_show(shown, sizeof(shown),
                                               reply->str, reply->len));

    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "zmq: an idempotency outcome was not kept: its "
                      "in-flight marker had expired, and the key is gone "
                      "or another request's");
    }
}
