
/*
 * ngx_http_zmq_module: redis_page services, Django's pagination of a
 * Redis list or sorted set over HTTP.
 *
 * GET ?page=N&per_page=M[&min=&max=] answers one page exactly as Django
 * 3.2's Paginator.page(N) (not get_page(): a page that is not an integer
 * is 400 page_not_an_integer, one out of range 404 empty_page; "last" is
 * the last page, as Django's ListView reads it). Redis is asked twice in
 * one pipeline on the worker's connection for the service's Redis: the
 * count (LLEN, ZCARD or ZCOUNT) and the range (LRANGE, ZRANGE, ZREVRANGE,
 * or for a score range a script that reads it by rank, else
 * ZRANGEBYSCORE or ZREVRANGEBYSCORE with LIMIT), which reads at most
 * per_page + orphans items; page=last asks the count first. The answer is
 * written directly; an item that is JSON is checked and copied as it is.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <limits.h>
#include <math.h>
#include <jansson.h>

#include "ngx_http_zmq_module.h"
#include "ngx_zmq_redis.h"
#include "zgw_err.h"
#include "zgw_redis_url.h"


#define NGX_HTTP_ZMQ_PAGE_CONNS_MAX   16
#define NGX_HTTP_ZMQ_PAGE_TIMEOUT     5000
#define NGX_HTTP_ZMQ_PAGE_KEY_MAX     4096
#define NGX_HTTP_ZMQ_PAGE_ARG_MAX     64
#define NGX_HTTP_ZMQ_PAGE_LAST        -1


typedef struct {
    ngx_flag_t                  zset;
    ngx_array_t                 key;           /* tmpl parts */
    ngx_int_t                   per_page;
    ngx_int_t                   max_per_page;
    ngx_int_t                   orphans;
    ngx_flag_t                  allow_empty;
    ngx_flag_t                  reverse;
    ngx_flag_t                  withscores;
    ngx_str_t                   score_min;
    ngx_str_t                   score_max;
    ngx_addr_t                 *addr;
    ngx_str_t                   username;
    ngx_str_t                   password;
    ngx_int_t                   db;
    ngx_zmq_tls_ctx_t          *tls;           /* rediss://: held by the
                                                  runtime's (or the
                                                  cycle's) pool */
    ngx_str_t                   tls_name;
    ngx_str_t                   id;            /* the connection it uses */
    const char                 *error;         /* unusable: why */
} ngx_http_zmq_page_conf_t;


typedef struct {
    u_char                     *id;            /* ngx_alloc()ed, with the
                                                  user and password */
    size_t                      id_len;
    ngx_addr_t                  addr;
    ngx_sockaddr_t              sockaddr;
    u_char                      name[NGX_SOCKADDR_STRLEN];
    ngx_zmq_redis_t            *rd;
    ngx_flag_t                  used;
    ngx_flag_t                  noscript;      /* EVAL refused */
} ngx_http_zmq_page_conn_t;


typedef struct {
    ngx_http_zmq_page_conn_t    conns[NGX_HTTP_ZMQ_PAGE_CONNS_MAX];
} ngx_http_zmq_page_worker_t;


/* a request's wait for Redis: the request's cleanup clears request */
typedef struct {
    ngx_http_request_t         *request;
    ngx_uint_t                  pending;       /* replies still due */
    long long                   count;         /* -1: not known */
    long long                   number;        /* or ..._PAGE_LAST */
    long long                   per_page;
    long long                   orphans;
    long long                   fetched_from;  /* offset of items */
    long long                   fetched_n;     /* and how many asked */
    ngx_str_t                  *items;         /* the range read, each
                                                  item's JSON text, in the
                                                  request's pool */
    size_t                      nitems;
    ngx_uint_t                  status;        /* an error to answer */
    const char                 *code;
    const char                 *message;
    ngx_flag_t                  huge;          /* page past any count */
    ngx_flag_t                  allow_empty;
    ngx_flag_t                  zset;
    ngx_flag_t                  whole;
    ngx_flag_t                  reverse;
    ngx_flag_t                  withscores;
    ngx_flag_t                  scripted;      /* the range by EVAL */
    ngx_flag_t                  plain;         /* the script failed */
    ngx_http_zmq_page_conn_t   *conn;
    ngx_str_t                   key;
    ngx_str_t                   min;
    ngx_str_t                   max;
} ngx_http_zmq_page_req_t;


static ngx_int_t ngx_http_zmq_page_addr(ngx_pool_t *pool,
    ngx_http_zmq_page_conf_t *pc, json_t *obj, const zgw_key_t *key,
    ngx_log_t *log);
static ngx_int_t ngx_http_zmq_page_tls(ngx_pool_t *pool,
    ngx_http_zmq_page_conf_t *pc, zgw_redis_addr_t *ra, ngx_log_t *log);
static ngx_http_zmq_page_worker_t *ngx_http_zmq_page_worker(void);
static ngx_http_zmq_page_conn_t *ngx_http_zmq_page_conn(ngx_str_t *id);
static ngx_int_t ngx_http_zmq_page_arg(ngx_http_request_t *r, char *name,
    size_t len, ngx_str_t *value);
static ngx_int_t ngx_http_zmq_page_int(ngx_str_t *s, long long *n);
static ngx_int_t ngx_http_zmq_page_bound(ngx_pool_t *pool, ngx_str_t *s);
static ngx_int_t ngx_http_zmq_page_count_cmd(ngx_zmq_redis_t *rd,
    ngx_http_zmq_page_req_t *h);
static ngx_int_t ngx_http_zmq_page_range_cmd(ngx_zmq_redis_t *rd,
    ngx_http_zmq_page_req_t *h, long long offset, long long n);
static void ngx_http_zmq_page_count_done(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_page_range_done(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_page_fail(ngx_http_zmq_page_req_t *h,
    redisReply *reply);
static void ngx_http_zmq_page_finish(ngx_zmq_redis_t *rd,
    ngx_http_zmq_page_req_t *h);
static ngx_int_t ngx_http_zmq_page_answer(ngx_http_request_t *r,
    ngx_http_zmq_page_req_t *h);
static u_char *ngx_http_zmq_page_json(u_char *p, u_char *end,
    u_char **stop);
static ngx_int_t ngx_http_zmq_page_hex4(u_char *p, u_char *end,
    ngx_uint_t *cp);
static ngx_int_t ngx_http_zmq_page_finite(u_char *p, size_t len);
static size_t ngx_http_zmq_page_string(u_char *dst, u_char *s, size_t len);
static u_char *ngx_http_zmq_page_real(u_char *p, double d);
static ngx_flag_t ngx_http_zmq_page_utf8(u_char *p, size_t n);
static void ngx_http_zmq_page_cleanup(void *data);
static void ngx_http_zmq_page_free(ngx_http_zmq_page_req_t *h);


void *
ngx_http_zmq_page_build(ngx_pool_t *pool, json_t *obj, const zgw_key_t *key,
    ngx_log_t *log)
{
    json_t                    *v;
    ngx_int_t                  rc;
    ngx_str_t                  text;
    const char                *s;
    ngx_http_zmq_page_conf_t  *pc;

    pc = ngx_pcalloc(pool, sizeof(ngx_http_zmq_page_conf_t));
    if (pc == NULL) {
        return NULL;
    }

    s = json_string_value(json_object_get(obj, "source"));
    pc->zset = (s != NULL && ngx_strcmp(s, "zset") == 0);

    s = json_string_value(json_object_get(obj, "key"));
    text.data = (u_char *) (s ? s : "");
    text.len = ngx_strlen(text.data);
    text.data = ngx_pstrdup(pool, &text);
    if (text.data == NULL && text.len) {
        return NULL;
    }

    if (ngx_http_zmq_tmpl_compile(pool, &text, &pc->key) != NGX_OK) {
        return NULL;
    }

    /* the model's defaults and ranges; a snapshot may not have had them */

    v = json_object_get(obj, "per_page");
    pc->per_page = json_is_integer(v) ? json_integer_value(v) : 20;
    v = json_object_get(obj, "max_per_page");
    pc->max_per_page = json_is_integer(v) ? json_integer_value(v) : 100;
    v = json_object_get(obj, "orphans");
    pc->orphans = json_is_integer(v) ? json_integer_value(v) : 0;

    if (pc->max_per_page < 1 || pc->max_per_page > 10000) {
        pc->max_per_page = 100;
    }

    if (pc->per_page < 1 || pc->per_page > pc->max_per_page) {
        pc->per_page = ngx_min(20, pc->max_per_page);
    }

    if (pc->orphans < 0 || pc->orphans > 10000) {
        pc->orphans = 0;
    }

    pc->allow_empty = !json_is_false(json_object_get(obj,
                                                     "allow_empty_first_page"));
    pc->reverse = json_is_true(json_object_get(obj, "reverse"));
    pc->withscores = json_is_true(json_object_get(obj, "withscores"));

    s = json_string_value(json_object_get(obj, "score_min"));
    pc->score_min.data = (u_char *) (s ? s : "-inf");
    pc->score_min.len = ngx_strlen(pc->score_min.data);
    s = json_string_value(json_object_get(obj, "score_max"));
    pc->score_max.data = (u_char *) (s ? s : "+inf");
    pc->score_max.len = ngx_strlen(pc->score_max.data);

    if (ngx_http_zmq_page_bound(pool, &pc->score_min) != NGX_OK
        || ngx_http_zmq_page_bound(pool, &pc->score_max) != NGX_OK)
    {
        pc->error = "a score bound is not a number";
        ngx_str_set(&pc->score_min, "-inf");
        ngx_str_set(&pc->score_max, "+inf");
    }

    rc = ngx_http_zmq_page_addr(pool, pc, obj, key, log);
    if (rc == NGX_ERROR) {
        return NULL;
    }

    if (pc->error != NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "zmq: redis_page service \"%s\": %s; it answers 503",
                      json_string_value(json_object_get(obj, "name")),
                      pc->error);
    }

    return pc;
}


/* the service's Redis: its url (and password), or zmq_config's Redis */
static ngx_int_t
ngx_http_zmq_page_addr(ngx_pool_t *pool, ngx_http_zmq_page_conf_t *pc,
    json_t *obj, const zgw_key_t *key, ngx_log_t *log)
{
    u_char                    *p;
    char                      *secret;
    size_t                     len;
    const char                *url, *host;
    ngx_addr_t                 a;
    zgw_errors_t               errs;
    zgw_redis_addr_t           ra;
    ngx_http_zmq_main_conf_t  *zmcf;

    url = json_string_value(json_object_get(obj, "url"));

    if (url == NULL) {
        zmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_http_zmq_module);

        if (zmcf == NULL || zmcf->type != NGX_HTTP_ZMQ_SOURCE_REDIS) {
            pc->error = "no url, and zmq_config does not name a Redis";
            return NGX_OK;
        }

        if (zmcf->redis_addr == NULL) {
            pc->error = "no url, and zmq_config is a redis-sentinel:// "
                        "store: give the service a url";
            return NGX_OK;
        }

        pc->addr = zmcf->redis_addr;
        pc->db = zmcf->redis.db;
        pc->tls = zmcf->redis_tls;          /* rediss:// as the follower */
        pc->tls_name = zmcf->redis_tls_name;
        pc->username.data = (u_char *) zmcf->redis.username;
        pc->username.len = ngx_strlen(zmcf->redis.username);
        pc->password.data = (u_char *) zmcf->redis.password;
        pc->password.len = ngx_strlen(zmcf->redis.password);

    } else {
        zgw_errors_init(&errs);

        if (zgw_redis_addr_parse(&ra, url, &errs) != ZGW_OK) {
            zgw_errors_free(&errs);
            pc->error = "its url is not a Redis URL";
            return NGX_OK;
        }

        ngx_explicit_memzero(ra.password, sizeof(ra.password));

        if (ra.tls && ngx_http_zmq_page_tls(pool, pc, &ra, log) != NGX_OK) {
            zgw_errors_free(&errs);
            return pc->error != NULL ? NGX_OK : NGX_ERROR;
        }

        host = ra.host;
        if (ngx_strcmp(host, "localhost") == 0) {
            host = "127.0.0.1";
        }

        if (ngx_parse_addr(pool, &a, (u_char *) host, ngx_strlen(host))
            != NGX_OK)
        {
            zgw_errors_free(&errs);
            pc->error = "the host of its url is not an IP address, and "
                        "names are never resolved in a worker";
            return NGX_OK;
        }

        ngx_inet_set_port(a.sockaddr, (in_port_t) ra.port);

        pc->addr = ngx_palloc(pool, sizeof(ngx_addr_t));
        p = ngx_pnalloc(pool, NGX_SOCKADDR_STRLEN);
        if (pc->addr == NULL || p == NULL) {
            zgw_errors_free(&errs);
            return NGX_ERROR;
        }

        *pc->addr = a;
        pc->addr->name.data = p;
        pc->addr->name.len = ngx_sock_ntop(a.sockaddr, a.socklen, p,
                                           NGX_SOCKADDR_STRLEN, 1);
        pc->db = ra.db;
        pc->username.len = ngx_strlen(ra.username);
        pc->username.data = ngx_pnalloc(pool, pc->username.len + 1);
        if (pc->username.data == NULL) {
            zgw_errors_free(&errs);
            return NGX_ERROR;
        }
        ngx_memcpy(pc->username.data, ra.username, pc->username.len + 1);

        if (json_object_get(obj, "password") != NULL) {
            secret = NULL;

            if (!json_is_object(json_object_get(obj, "password"))
                || key != NULL)
            {
                secret = zgw_object_secret(ZGW_KIND_SERVICE, obj,
                                           "password", key, &errs);
            }

            if (secret == NULL) {
                zgw_errors_free(&errs);
                pc->error = "its password cannot be opened (no "
                            "zmq_key_file, or another key)";
                return NGX_OK;
            }

            pc->password.len = ngx_strlen(secret);
            pc->password.data = ngx_pnalloc(pool, pc->password.len + 1);
            if (pc->password.data == NULL) {
                ngx_explicit_memzero(secret, pc->password.len);
                free(secret);
                zgw_errors_free(&errs);
                return NGX_ERROR;
            }

            ngx_memcpy(pc->password.data, secret, pc->password.len + 1);
            ngx_explicit_memzero(secret, pc->password.len);
            free(secret);
        }

        zgw_errors_free(&errs);
    }

    /* the connection: one per worker for each address, db and user */

    len = pc->addr->name.len + NGX_INT_T_LEN + pc->username.len
          + pc->password.len + 3 + NGX_PTR_SIZE * 2 + 8 + pc->tls_name.len;
    pc->id.data = ngx_pnalloc(pool, len);
    if (pc->id.data == NULL) {
        return NGX_ERROR;
    }

    /* over TLS: the context (one per option set) and the name checked */
    pc->id.len = ngx_snprintf(pc->id.data, len, "%V/%i\n%V\n%V\n%p %V",
                              &pc->addr->name, pc->db, &pc->username,
                              &pc->password, pc->tls, &pc->tls_name)
                 - pc->id.data;

    return NGX_OK;
}


/* a rediss:// url's options: its context, held by the runtime's pool */
static ngx_int_t
ngx_http_zmq_page_tls(ngx_pool_t *pool, ngx_http_zmq_page_conf_t *pc,
    zgw_redis_addr_t *ra, ngx_log_t *log)
{
    u_char              err[NGX_ZMQ_TLS_ERROR_LEN], *p;
    size_t              len;
    const char         *name;
    ngx_zmq_tls_opts_t  opts;

    ngx_memzero(&opts, sizeof(ngx_zmq_tls_opts_t));

    opts.ca_file.data = (u_char *) ra->ca_file;
    opts.ca_file.len = ngx_strlen(ra->ca_file);
    opts.cert_file.data = (u_char *) ra->cert_file;
    opts.cert_file.len = ngx_strlen(ra->cert_file);
    opts.key_file.data = (u_char *) ra->key_file;
    opts.key_file.len = ngx_strlen(ra->key_file);
    opts.verify = ra->verify ? 1 : 0;

    pc->tls = ngx_zmq_tls_ctx_get(&opts, log, err, sizeof(err));

    if (pc->tls == NULL) {
        len = sizeof("its url's TLS: ") - 1 + ngx_strlen(err) + 1;
        p = ngx_pnalloc(pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }
        ngx_sprintf(p, "its url's TLS: %s%Z", err);
        pc->error = (char *) p;
        return NGX_DECLINED;
    }

    if (ngx_zmq_tls_ctx_hold(pool, pc->tls) != NGX_OK) {
        ngx_zmq_tls_ctx_put(pc->tls);
        pc->tls = NULL;
        return NGX_ERROR;
    }

    ngx_zmq_tls_ctx_put(pc->tls);

    name = ra->server_name[0] ? ra->server_name : ra->host;

    pc->tls_name.len = ngx_strlen(name);
    pc->tls_name.data = ngx_pnalloc(pool, pc->tls_name.len + 1);
    if (pc->tls_name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(pc->tls_name.data, name, pc->tls_name.len + 1);

    return NGX_OK;
}


static ngx_http_zmq_page_worker_t *
ngx_http_zmq_page_worker(void)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();
    if (w == NULL) {
        return NULL;
    }

    if (w->page == NULL) {
        w->page = ngx_calloc(sizeof(ngx_http_zmq_page_worker_t),
                             ngx_cycle->log);
    }

    return w->page;
}


void
ngx_http_zmq_page_applied(ngx_http_zmq_runtime_t *rt, ngx_log_t *log)
{
    u_char                      *p;
    ngx_uint_t                   i, s;
    ngx_zmq_redis_conf_t         rc;
    ngx_http_zmq_service_t      *svc;
    ngx_http_zmq_page_conn_t    *c;
    ngx_http_zmq_page_conf_t    *pc;
    ngx_http_zmq_page_worker_t  *pw;

    pw = ngx_http_zmq_page_worker();
    if (pw == NULL) {
        return;
    }

    for (s = 0; s < NGX_HTTP_ZMQ_PAGE_CONNS_MAX; s++) {
        pw->conns[s].used = 0;
    }

    svc = rt->services.elts;

    for (i = 0; i < rt->services.nelts; i++) {
        if (svc[i].type != NGX_HTTP_ZMQ_SVC_PAGE) {
            continue;
        }

        pc = svc[i].page;
        if (pc->error != NULL) {
            continue;
        }

        for (s = 0; s < NGX_HTTP_ZMQ_PAGE_CONNS_MAX; s++) {
            c = &pw->conns[s];
            if (c->rd != NULL && c->id_len == pc->id.len
                && ngx_memcmp(c->id, pc->id.data, pc->id.len) == 0)
            {
                c->used = 1;
                break;
            }
        }

        if (s < NGX_HTTP_ZMQ_PAGE_CONNS_MAX) {
            continue;
        }

        for (s = 0; s < NGX_HTTP_ZMQ_PAGE_CONNS_MAX; s++) {
            if (pw->conns[s].rd == NULL) {
                break;
            }
        }

        if (s == NGX_HTTP_ZMQ_PAGE_CONNS_MAX) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "zmq: redis_page service \"%V\": more than %d "
                          "Redis connections; it answers 503", &svc[i].name,
                          NGX_HTTP_ZMQ_PAGE_CONNS_MAX);
            continue;
        }

        c = &pw->conns[s];

        /* the id, then the user and password the connection points to */
        c->id = ngx_alloc(pc->id.len + pc->username.len
                          + pc->password.len + 2, log);
        if (c->id == NULL) {
            continue;
        }

        c->id_len = pc->id.len;
        p = ngx_cpymem(c->id, pc->id.data, pc->id.len);

        ngx_memzero(&rc, sizeof(ngx_zmq_redis_conf_t));
        rc.username.data = p;
        rc.username.len = pc->username.len;
        if (pc->username.len) {
            p = ngx_cpymem(p, pc->username.data, pc->username.len);
        }
        *p++ = '\0';
        rc.password.data = p;
        rc.password.len = pc->password.len;
        if (pc->password.len) {
            p = ngx_cpymem(p, pc->password.data, pc->password.len);
        }
        *p = '\0';

        ngx_memcpy(&c->sockaddr, pc->addr->sockaddr, pc->addr->socklen);
        c->addr.sockaddr = &c->sockaddr.sockaddr;
        c->addr.socklen = pc->addr->socklen;
        c->addr.name.data = c->name;
        c->addr.name.len = ngx_min(pc->addr->name.len, NGX_SOCKADDR_STRLEN);
        ngx_memcpy(c->name, pc->addr->name.data, c->addr.name.len);

        rc.addr = &c->addr;
        rc.db = pc->db;
        rc.tls = pc->tls;
        rc.tls_name = pc->tls_name;
        rc.timeout = NGX_HTTP_ZMQ_PAGE_TIMEOUT;
        rc.log = ngx_cycle->log;
        rc.name = "page";

        c->rd = ngx_zmq_redis_create(&rc);
        if (c->rd == NULL) {
            ngx_explicit_memzero(c->id, c->id_len);
            ngx_free(c->id);
            ngx_memzero(c, sizeof(ngx_http_zmq_page_conn_t));
            continue;
        }

        c->used = 1;
        ngx_zmq_redis_start(c->rd);
    }

    /* the connections no page uses any more: their waits get 503 */

    for (s = 0; s < NGX_HTTP_ZMQ_PAGE_CONNS_MAX; s++) {
        c = &pw->conns[s];

        if (c->rd == NULL || c->used) {
            continue;
        }

        ngx_zmq_redis_destroy(c->rd);
        ngx_explicit_memzero(c->id, c->id_len);
        ngx_free(c->id);
        ngx_memzero(c, sizeof(ngx_http_zmq_page_conn_t));
    }
}


void
ngx_http_zmq_page_exit(void)
{
    ngx_uint_t                   s;
    ngx_http_zmq_worker_t       *w;
    ngx_http_zmq_page_conn_t    *c;
    ngx_http_zmq_page_worker_t  *pw;

    w = ngx_http_zmq_worker();
    if (w == NULL || w->page == NULL) {
        return;
    }

    pw = w->page;

    for (s = 0; s < NGX_HTTP_ZMQ_PAGE_CONNS_MAX; s++) {
        c = &pw->conns[s];

        if (c->rd == NULL) {
            continue;
        }

        ngx_zmq_redis_destroy(c->rd);
        ngx_explicit_memzero(c->id, c->id_len);
        ngx_free(c->id);
    }

    ngx_free(pw);
    w->page = NULL;
}


static ngx_http_zmq_page_conn_t *
ngx_http_zmq_page_conn(ngx_str_t *id)
{
    ngx_uint_t                   s;
    ngx_http_zmq_page_conn_t    *c;
    ngx_http_zmq_page_worker_t  *pw;

    pw = ngx_http_zmq_page_worker();
    if (pw == NULL) {
        return NULL;
    }

    for (s = 0; s < NGX_HTTP_ZMQ_PAGE_CONNS_MAX; s++) {
        c = &pw->conns[s];
        if (c->rd != NULL && c->id_len == id->len
            && ngx_memcmp(c->id, id->data, id->len) == 0)
        {
            return c;
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_zmq_page_handler(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_http_zmq_service_t *svc)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  allow, arg, key, min, max;
    long long                  number, per_page, offset;
    ngx_zmq_redis_t           *rd;
    ngx_pool_cleanup_t        *cln;
    ngx_http_zmq_page_req_t   *h;
    ngx_http_zmq_page_conf_t  *pc;
    ngx_http_zmq_page_conn_t  *conn;

    pc = svc->page;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_str_set(&allow, "GET, HEAD");
        if (ngx_http_zmq_add_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_zmq_error(r, NGX_HTTP_NOT_ALLOWED,
                                  "method_not_allowed",
                                  "a redis_page service answers GET and "
                                  "HEAD", 0);
    }

    /* page: Django's validate_number(), and "last" as ListView reads it */

    rc = ngx_http_zmq_page_arg(r, "page", 4, &arg);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        number = 1;

    } else if (arg.len == 4 && ngx_strncmp(arg.data, "last", 4) == 0) {
        number = NGX_HTTP_ZMQ_PAGE_LAST;

    } else {
        rc = ngx_http_zmq_page_int(&arg, &number);

        if (rc == NGX_DECLINED) {
            return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST,
                                      "page_not_an_integer",
                                      "That page number is not an integer",
                                      0);
        }

        if (number < 1) {
            return ngx_http_zmq_error(r, NGX_HTTP_NOT_FOUND, "empty_page",
                                      "That page number is less than 1", 0);
        }
    }

    /* per_page: a positive integer, at most max_per_page */

    per_page = pc->per_page;

    rc = ngx_http_zmq_page_arg(r, "per_page", 8, &arg);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        if (ngx_http_zmq_page_int(&arg, &per_page) != NGX_OK
            || per_page < 1)
        {
            return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST,
                                      "bad_per_page", "per_page must be a "
                                      "positive integer", 0);
        }

        if (per_page > pc->max_per_page) {
            per_page = pc->max_per_page;
        }
    }

    /* min, max: score bounds, sorted sets only */

    min = pc->score_min;
    max = pc->score_max;

    rc = ngx_http_zmq_page_arg(r, "min", 3, &arg);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rc == NGX_OK) {
        min = arg;
    }

    rc = ngx_http_zmq_page_arg(r, "max", 3, &arg);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rc == NGX_OK) {
        max = arg;
    }

    if ((min.data != pc->score_min.data || max.data != pc->score_max.data)
        && !pc->zset)
    {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_score",
                                  "min and max apply to sorted sets only", 0);
    }

    if (ngx_http_zmq_page_bound(r->pool, &min) != NGX_OK
        || ngx_http_zmq_page_bound(r->pool, &max) != NGX_OK)
    {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_score",
                                  "min and max must be numbers, '(' and a "
                                  "number, '-inf' or '+inf'", 0);
    }

    if (!svc->active) {
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_inactive",
                                  "the service is not active", 0);
    }

    if (pc->error != NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "zmq: redis_page service \"%V\": %s", &svc->name,
                      pc->error);
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable",
                                  "the service's Redis is not usable", 30);
    }

    if (ngx_http_zmq_tmpl_eval(r, &pc->key, ctx->params, ctx->nparams, &key)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (key.len == 0 || key.len > NGX_HTTP_ZMQ_PAGE_KEY_MAX) {
        return ngx_http_zmq_error(r, NGX_HTTP_BAD_REQUEST, "bad_key",
                                  "the key is empty or longer than 4096 "
                                  "bytes", 0);
    }

    conn = ngx_http_zmq_page_conn(&pc->id);
    rd = conn != NULL ? conn->rd : NULL;

    if (rd == NULL || !ngx_zmq_redis_connected(rd)) {
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable",
                                  "Redis cannot be reached", 1);
    }

    /* the wait outlives the request if Redis answers after it is gone */

    h = ngx_calloc(sizeof(ngx_http_zmq_page_req_t) + key.len + min.len
                   + max.len, r->connection->log);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = (u_char *) (h + 1);
    h->key.data = p;
    h->key.len = key.len;
    p = ngx_cpymem(p, key.data, key.len);
    h->min.data = p;
    h->min.len = min.len;
    p = ngx_cpymem(p, min.data, min.len);
    h->max.data = p;
    h->max.len = max.len;
    ngx_memcpy(p, max.data, max.len);

    h->count = -1;
    h->number = number;
    h->per_page = per_page;
    h->orphans = pc->orphans;
    h->allow_empty = pc->allow_empty;
    h->zset = pc->zset;
    h->reverse = pc->reverse;
    h->withscores = pc->withscores && pc->zset;
    h->conn = conn;
    h->whole = min.len == 4 && ngx_strncmp(min.data, "-inf", 4) == 0
               && max.len == 4 && ngx_strncmp(max.data, "+inf", 4) == 0;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_free(h);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_zmq_page_cleanup;
    cln->data = h;
    h->request = r;

    if (ngx_http_zmq_page_count_cmd(rd, h) != NGX_OK) {
        return ngx_http_zmq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable",
                                  "Redis has too many commands waiting", 1);
    }

    if (number != NGX_HTTP_ZMQ_PAGE_LAST) {
        /* a page whose offset does not fit cannot exist: count only */
        if (number - 1 > (LLONG_MAX / 2 - h->orphans) / per_page) {
            h->huge = 1;

        } else {
            offset = (number - 1) * per_page;
            if (ngx_http_zmq_page_range_cmd(rd, h, offset,
                                            per_page + h->orphans)
                != NGX_OK)
            {
                /* the count's reply will find the wait failed */
                h->status = NGX_HTTP_SERVICE_UNAVAILABLE;
                h->code = "store_unavailable";
                h->message = "Redis has too many commands waiting";
            }
        }
    }

    r->main->count++;
    return NGX_DONE;
}


/* the query argument name, decoded ('+' is a space); NGX_DECLINED: none */
static ngx_int_t
ngx_http_zmq_page_arg(ngx_http_request_t *r, char *name, size_t len,
    ngx_str_t *value)
{
    u_char     *dst, *src;
    size_t      i;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, len, &raw) != NGX_OK) {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, raw.len + 1);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    /* a form's '+' is a space */
    src = ngx_pnalloc(r->pool, raw.len + 1);
    if (src == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < raw.len; i++) {
        src[i] = raw.data[i] == '+' ? ' ' : raw.data[i];
    }

    raw.data = src;

    value->data = dst;
    src = raw.data;
    ngx_unescape_uri(&dst, &src, raw.len, 0);
    value->len = dst - value->data;

    return NGX_OK;
}


/*
 * An integer as Python's int() reads a string: white space around it, a
 * sign, digits with single underscores between them. NGX_DECLINED: not
 * one; a number too large for 63 bits is clamped (it is past any page).
 */
static ngx_int_t
ngx_http_zmq_page_int(ngx_str_t *s, long long *n)
{
    u_char     *p, *end;
    ngx_int_t   neg, digits;
    long long   v;

    p = s->data;
    end = p + s->len;

    while (p < end && (*p == ' ' || (*p >= '\t' && *p <= '\r'))) {
        p++;
    }

    while (end > p && (end[-1] == ' ' || (end[-1] >= '\t' && end[-1] <= '\r')))
    {
        end--;
    }

    neg = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        neg = (*p == '-');
        p++;
    }

    v = 0;
    digits = 0;

    for ( /* void */ ; p < end; p++) {
        if (*p == '_') {
            if (digits == 0 || p + 1 == end || p[1] < '0' || p[1] > '9') {
                return NGX_DECLINED;
            }
            continue;
        }

        if (*p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        digits++;

        if (v > (LLONG_MAX - 9) / 10) {
            v = LLONG_MAX;
            continue;
        }

        v = v * 10 + (*p - '0');
    }

    if (digits == 0) {
        return NGX_DECLINED;
    }

    *n = neg ? -v : v;
    return NGX_OK;
}


/* a score bound as Redis takes it (see zgw_score_bound_ok), normalized */
static ngx_int_t
ngx_http_zmq_page_bound(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p, *end;

    if (!zgw_score_bound_ok((char *) s->data, s->len)) {
        return NGX_DECLINED;
    }

    p = s->data;
    end = p + s->len;

    while (p < end && (*p == ' ' || (*p >= '\t' && *p <= '\r'))) {
        p++;
    }

    while (end > p && (end[-1] == ' ' || (end[-1] >= '\t' && end[-1] <= '\r')))
    {
        end--;
    }

    if ((end - p == 4 && ngx_strncasecmp(p, (u_char *) "+inf", 4) == 0)
        || (end - p == 3 && ngx_strncasecmp(p, (u_char *) "inf", 3) == 0))
    {
        ngx_str_set(s, "+inf");
        return NGX_OK;
    }

    if (end - p == 4 && ngx_strncasecmp(p, (u_char *) "-inf", 4) == 0) {
        ngx_str_set(s, "-inf");
        return NGX_OK;
    }

    s->len = end - p;
    s->data = ngx_pnalloc(pool, s->len);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, p, s->len);
    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_page_count_cmd(ngx_zmq_redis_t *rd, ngx_http_zmq_page_req_t *h)
{
    int          argc;
    size_t       len[4];
    ngx_int_t    rc;
    const char  *argv[4];

    argv[1] = (char *) h->key.data;
    len[1] = h->key.len;

    if (!h->zset) {
        argv[0] = "LLEN";
        argc = 2;

    } else if (h->whole) {
        argv[0] = "ZCARD";
        argc = 2;

    } else {
        argv[0] = "ZCOUNT";
        argv[2] = (char *) h->min.data;
        len[2] = h->min.len;
        argv[3] = (char *) h->max.data;
        len[3] = h->max.len;
        argc = 4;
    }

    len[0] = ngx_strlen(argv[0]);

    rc = ngx_zmq_redis_command(rd, argc, argv, len,
                               ngx_http_zmq_page_count_done, h);
    if (rc == NGX_OK) {
        h->pending++;
    }

    return rc;
}


/*
 * A score range's page by rank: ZRANGEBYSCORE ... LIMIT offset count walks
 * the offset members in Redis (O(offset)); the script counts the members
 * before the range and the range (ZCOUNT is O(log N)), then reads the page
 * by rank, all in one atomic step: the same members in the same order, in
 * O(log N + count). ARGV: the bounds of what comes before the range (in
 * the order read), the range's bounds, offset, count, ZRANGE or
 * ZREVRANGE, WITHSCORES or empty.
 */
static char  ngx_http_zmq_page_script[] =
    "local k = KEYS[1] "
    "local before = redis.call('ZCOUNT', k, ARGV[1], ARGV[2]) "
    "local count = redis.call('ZCOUNT', k, ARGV[3], ARGV[4]) "
    "local off = tonumber(ARGV[5]) "
    "if off >= count then return {} end "
    "local last = math.min(off + tonumber(ARGV[6]), count) - 1 "
    "if ARGV[8] == '' then "
    "return redis.call(ARGV[7], k, before + off, before + last) end "
    "return redis.call(ARGV[7], k, before + off, before + last, "
    "'WITHSCORES')";


static ngx_int_t
ngx_http_zmq_page_range_cmd(ngx_zmq_redis_t *rd, ngx_http_zmq_page_req_t *h,
    long long offset, long long n)
{
    int          argc;
    u_char       a[NGX_INT64_LEN], b[NGX_INT64_LEN];
    u_char       lo[NGX_HTTP_ZMQ_PAGE_ARG_MAX + 1];
    size_t       len[12];
    ngx_int_t    rc;
    ngx_str_t   *bound;
    const char  *argv[12];

    argv[1] = (char *) h->key.data;
    len[1] = h->key.len;
    h->fetched_from = offset;
    h->fetched_n = n;
    h->scripted = 0;

    if (!h->zset || h->whole) {
        argv[0] = !h->zset ? "LRANGE" : h->reverse ? "ZREVRANGE" : "ZRANGE";
        argv[2] = (char *) a;
        len[2] = ngx_sprintf(a, "%L", (int64_t) offset) - a;
        argv[3] = (char *) b;
        len[3] = ngx_sprintf(b, "%L", (int64_t) (offset + n - 1)) - b;
        argc = 4;

        if (h->withscores) {
            argv[4] = "WITHSCORES";
            len[4] = 10;
            argc = 5;
        }

    } else if (!h->conn->noscript && !h->plain
               && h->min.len < NGX_HTTP_ZMQ_PAGE_ARG_MAX
               && h->max.len < NGX_HTTP_ZMQ_PAGE_ARG_MAX)
    {
        /*
         * before the range: below min (ascending) or above max
         * (descending); "(x" excludes x from the range, so x comes before
         */

        bound = h->reverse ? &h->max : &h->min;

        if (bound->len && bound->data[0] == '(') {
            len[4] = bound->len - 1;
            ngx_memcpy(lo, bound->data + 1, len[4]);

        } else {
            lo[0] = '(';
            ngx_memcpy(lo + 1, bound->data, bound->len);
            len[4] = bound->len + 1;
        }

        argv[1] = ngx_http_zmq_page_script;
        len[1] = sizeof(ngx_http_zmq_page_script) - 1;
        argv[2] = "1";
        len[2] = 1;
        argv[3] = (char *) h->key.data;
        len[3] = h->key.len;

        if (h->reverse) {
            argv[4] = (char *) lo;
            argv[5] = "+inf";
            len[5] = 4;

        } else {
            argv[4] = "-inf";
            len[5] = len[4];
            len[4] = 4;
            argv[5] = (char *) lo;
        }

        argv[6] = (char *) h->min.data;
        len[6] = h->min.len;
        argv[7] = (char *) h->max.data;
        len[7] = h->max.len;
        argv[8] = (char *) a;
        len[8] = ngx_sprintf(a, "%L", (int64_t) offset) - a;
        argv[9] = (char *) b;
        len[9] = ngx_sprintf(b, "%L", (int64_t) n) - b;
        argv[10] = h->reverse ? "ZREVRANGE" : "ZRANGE";
        len[10] = h->reverse ? 9 : 6;
        argv[11] = h->withscores ? "WITHSCORES" : "";
        len[11] = h->withscores ? 10 : 0;
        argc = 12;
        h->scripted = 1;

    } else {
        argv[0] = h->reverse ? "ZREVRANGEBYSCORE" : "ZRANGEBYSCORE";
        argv[2] = (char *) (h->reverse ? h->max.data : h->min.data);
        len[2] = h->reverse ? h->max.len : h->min.len;
        argv[3] = (char *) (h->reverse ? h->min.data : h->max.data);
        len[3] = h->reverse ? h->min.len : h->max.len;
        argc = 4;

        if (h->withscores) {
            argv[4] = "WITHSCORES";
            len[4] = 10;
            argc = 5;
        }

        argv[argc] = "LIMIT";
        len[argc++] = 5;
        argv[argc] = (char *) a;
        len[argc++] = ngx_sprintf(a, "%L", (int64_t) offset) - a;
        argv[argc] = (char *) b;
        len[argc++] = ngx_sprintf(b, "%L", (int64_t) n) - b;
    }

    if (h->scripted) {
        argv[0] = "EVAL";
    }

    len[0] = ngx_strlen(argv[0]);

    rc = ngx_zmq_redis_command(rd, argc, argv, len,
                               ngx_http_zmq_page_range_done, h);
    if (rc == NGX_OK) {
        h->pending++;
    }

    return rc;
}


static void
ngx_http_zmq_page_count_done(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    ngx_http_zmq_page_req_t  *h = data;

    h->pending--;

    if (h->request == NULL) {
        if (h->pending == 0) {
            ngx_http_zmq_page_free(h);
        }
        return;
    }

    if (h->status == 0) {
        if (reply != NULL && reply->type == REDIS_REPLY_INTEGER
            && reply->integer >= 0)
        {
            h->count = reply->integer;

        } else {
            ngx_http_zmq_page_fail(h, reply);
        }
    }

    if (h->pending == 0) {
        ngx_http_zmq_page_finish(rd, h);
    }
}


static void
ngx_http_zmq_page_range_done(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    u_char                   *buf, *p, *start;
    char                      shown[ZGW_SHOW_SIZE];
    size_t                    n, k, step, size;
    double                    d;
    ngx_str_t                *items;
    redisReply               *e, *s;
    ngx_http_request_t       *r;
    ngx_http_zmq_page_req_t  *h = data;
    u_char                    score[64];

    h->pending--;

    if (h->request == NULL) {
        if (h->pending == 0) {
            ngx_http_zmq_page_free(h);
        }
        return;
    }

    if (h->status != 0) {
        goto done;
    }

    r = h->request;
    step = h->withscores ? 2 : 1;

    if (h->scripted && reply != NULL && reply->type == REDIS_REPLY_ERROR
        && !(reply->len >= 9 && ngx_strncmp(reply->str, "WRONGTYPE", 9) == 0))
    {
        /*
         * the script failed: this page is read as ZRANGEBYSCORE ... LIMIT
         * (which answers a wrong type in its own words); when scripts are
         * refused (an ACL without @scripting, EVAL renamed away), every
         * page on this connection from now on
         */

        if ((reply->len >= 6 && ngx_strncmp(reply->str, "NOPERM", 6) == 0)
            || (reply->len >= 15
                && ngx_strncmp(reply->str, "ERR unknown com", 15) == 0))
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "zmq: redis_page: Redis refused EVAL (%s); score "
                          "ranges are read with ZRANGEBYSCORE ... LIMIT on "
                          "this connection",
                          zgw_show(shown, sizeof(shown), reply->str,
                                   reply->len));

            h->conn->noscript = 1;
        }

        h->plain = 1;

        if (ngx_http_zmq_page_range_cmd(rd, h, h->fetched_from, h->fetched_n)
            == NGX_OK)
        {
            return;
        }

        h->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        h->code = "store_unavailable";
        h->message = "Redis has too many commands waiting";
        goto done;
    }

    /* untrusted: an array of at most the items asked for, strings only */

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements % step != 0
        || reply->elements / step > (size_t) (h->per_page + h->orphans))
    {
        ngx_http_zmq_page_fail(h, reply);
        goto done;
    }

    n = reply->elements / step;

    items = ngx_palloc(r->pool, (n ? n : 1) * sizeof(ngx_str_t));
    if (items == NULL) {
        goto nomem;
    }

    /*
     * Each item's JSON text, in two passes over the reply: the sizes (an
     * item that is JSON is only checked, and copied as it is), then the
     * text, in one buffer of the request's pool.
     */

    size = 0;

    for (k = 0; k < n; k++) {
        e = reply->element[k * step];

        if (e == NULL || e->type != REDIS_REPLY_STRING) {
            ngx_http_zmq_page_fail(h, e != NULL ? e : reply);
            goto done;
        }

        /* data: the JSON value within the item, or NULL: a string */
        items[k].data = ngx_http_zmq_page_json((u_char *) e->str,
                                               (u_char *) e->str + e->len,
                                               &p);
        items[k].len = items[k].data != NULL
                       ? (size_t) (p - items[k].data)
                       : ngx_http_zmq_page_string(NULL, (u_char *) e->str,
                                                  e->len);
        size += items[k].len;

        if (step == 2) {
            s = reply->element[k * step + 1];
            d = NAN;

            if (s != NULL && s->type == REDIS_REPLY_STRING && s->len > 0
                && s->len < 64)
            {
                char  *end;

                ngx_memcpy(score, s->str, s->len);
                score[s->len] = '\0';
                d = strtod((char *) score, &end);
                if (end != (char *) score + s->len) {
                    d = NAN;
                }
            }

            if (isnan(d)) {
                ngx_http_zmq_page_fail(h, s != NULL ? s : reply);
                goto done;
            }

            /* {"member":,"score":} and a real of at most 32 bytes */
            size += sizeof("{\"member\":,\"score\":}") - 1 + 32;
        }
    }

    buf = ngx_pnalloc(r->pool, size ? size : 1);
    if (buf == NULL) {
        goto nomem;
    }

    p = buf;

    for (k = 0; k < n; k++) {
        e = reply->element[k * step];
        start = p;

        if (step == 2) {
            p = ngx_cpymem(p, "{\"member\":", sizeof("{\"member\":") - 1);
        }

        if (items[k].data != NULL) {
            p = ngx_cpymem(p, items[k].data, items[k].len);

        } else {
            p += ngx_http_zmq_page_string(p, (u_char *) e->str, e->len);
        }

        if (step == 2) {
            s = reply->element[k * step + 1];
            ngx_memcpy(score, s->str, s->len);
            score[s->len] = '\0';
            d = strtod((char *) score, NULL);

            p = ngx_cpymem(p, ",\"score\":", sizeof(",\"score\":") - 1);
            p = ngx_http_zmq_page_real(p, d);
            *p++ = '}';
        }

        items[k].data = start;
        items[k].len = p - start;
    }

    h->items = items;
    h->nitems = n;
    goto done;

nomem:

    h->status = NGX_HTTP_INTERNAL_SERVER_ERROR;

done:

    if (h->pending == 0) {
        ngx_http_zmq_page_finish(rd, h);
    }
}


static void
ngx_http_zmq_page_fail(ngx_http_zmq_page_req_t *h, redisReply *reply)
{
    char                 shown[ZGW_SHOW_SIZE];
    ngx_http_request_t  *r;

    r = h->request;

    if (reply == NULL) {
        h->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        h->code = "store_unavailable";
        h->message = "Redis did not answer";
        return;
    }

    h->status = NGX_HTTP_BAD_GATEWAY;
    h->code = "store_error";

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "zmq: redis_page: Redis refused the command on key "
                      "\"%V\": %s", &h->key,
                      zgw_show(shown, sizeof(shown), reply->str,
                               reply->len));

        h->message = (reply->len >= 9
                      && ngx_strncmp(reply->str, "WRONGTYPE", 9) == 0)
                     ? (h->zset ? "the key does not hold a sorted set"
                                : "the key does not hold a list")
                     : "Redis refused the command";
        return;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "zmq: redis_page: unexpected reply of type %d from Redis "
                  "on key \"%V\"", reply->type, &h->key);
    h->message = "Redis answered what a page cannot hold";
}


/* every reply is in: ask for the last page's range, or answer */
static void
ngx_http_zmq_page_finish(ngx_zmq_redis_t *rd, ngx_http_zmq_page_req_t *h)
{
    ngx_int_t            rc;
    long long            hits, pages, bottom, top;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = h->request;
    c = r->connection;

    if (h->status == 0 && h->number == NGX_HTTP_ZMQ_PAGE_LAST) {
        hits = ngx_max(1, h->count - h->orphans);
        pages = (h->count == 0 && !h->allow_empty)
                ? 0 : (hits + h->per_page - 1) / h->per_page;
        h->number = pages;

        if (pages >= 1) {
            bottom = (pages - 1) * h->per_page;
            top = h->count;

            if (top > bottom) {
                if (ngx_http_zmq_page_range_cmd(rd, h, bottom, top - bottom)
                    == NGX_OK)
                {
                    return;
                }

                h->status = NGX_HTTP_SERVICE_UNAVAILABLE;
                h->code = "store_unavailable";
                h->message = "Redis has too many commands waiting";
            }
        }
    }

    if (h->status == NGX_HTTP_INTERNAL_SERVER_ERROR) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (h->status != 0) {
        rc = ngx_http_zmq_error(r, h->status, h->code, h->message,
                                h->status == NGX_HTTP_SERVICE_UNAVAILABLE
                                ? 1 : 0);

    } else {
        rc = ngx_http_zmq_page_answer(r, h);
    }

    /* the request's cleanup frees h */
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_zmq_page_answer(ngx_http_request_t *r, ngx_http_zmq_page_req_t *h)
{
    u_char     *body, *p;
    size_t      len, skip, n, k, keep;
    long long   count, number, pages, hits, bottom, top, start, end;

    count = h->count;
    number = h->number;
    hits = ngx_max(1, count - h->orphans);
    pages = (count == 0 && !h->allow_empty)
            ? 0 : (hits + h->per_page - 1) / h->per_page;

    if (number < 1) {
        return ngx_http_zmq_error(r, NGX_HTTP_NOT_FOUND, "empty_page",
                                  "That page number is less than 1", 0);
    }

    if (h->huge || (number > pages && !(number == 1 && h->allow_empty))) {
        return ngx_http_zmq_error(r, NGX_HTTP_NOT_FOUND, "empty_page",
                                  "That page contains no results", 0);
    }

    bottom = (number - 1) * h->per_page;
    top = bottom + h->per_page;
    if (top + h->orphans >= count) {
        top = count;
    }

    /* the items read from fetched_from on: keep [bottom, top) */

    skip = 0;
    keep = 0;

    if (h->items != NULL && top > bottom && bottom >= h->fetched_from) {
        skip = (size_t) (bottom - h->fetched_from);

        if (skip < h->nitems) {
            keep = ngx_min(h->nitems - skip, (size_t) (top - bottom));
        }
    }

    start = count == 0 ? 0 : h->per_page * (number - 1) + 1;
    end = number == pages ? count : number * h->per_page;

    /*
     * The answer as compact JSON with its keys in order (as
     * ngx_http_zmq_send_doc() writes a document), and a newline; the items
     * are JSON texts already
     */

    len = sizeof("{\"count\":,\"end_index\":,\"has_next\":false,"
                 "\"has_previous\":false,\"num_pages\":,\"number\":,"
                 "\"object_list\":[],\"per_page\":,\"start_index\":}\n")
          + 6 * NGX_INT64_LEN;

    for (k = skip; k < skip + keep; k++) {
        len += h->items[k].len + 1;
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body, "{\"count\":%L,\"end_index\":%L,\"has_next\":%s,"
                    "\"has_previous\":%s,\"num_pages\":%L,\"number\":%L,"
                    "\"object_list\":[",
                    (int64_t) count, (int64_t) end,
                    number < pages ? "true" : "false",
                    number > 1 ? "true" : "false",
                    (int64_t) pages, (int64_t) number);

    for (n = 0, k = skip; k < skip + keep; k++, n++) {
        if (n) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, h->items[k].data, h->items[k].len);
    }

    p = ngx_sprintf(p, "],\"per_page\":%L,\"start_index\":%L}\n",
                    (int64_t) h->per_page, (int64_t) start);

    return ngx_http_zmq_send_json(r, NGX_HTTP_OK, body, p - body);
}


#define NGX_HTTP_ZMQ_PAGE_DEPTH_MAX  2048

#define ngx_http_zmq_page_ws(c)                                               \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')


/*
 * Is [p, end) one JSON value, as jansson's json_loadb() reads one (RFC
 * 8259 in UTF-8, white space around it, and jansson's limits: no \u0000,
 * no lone surrogate, integers within 64 bits, reals that do not overflow,
 * at most 2048 values deep)? The value without the white space around it:
 * returned, and *stop its end; NULL: not JSON (the item is a string).
 *
 * Checked, never parsed: an item that is JSON is copied as it is.
 */
static u_char *
ngx_http_zmq_page_json(u_char *p, u_char *end, u_char **stop)
{
    u_char      *start, *q, *limit;
    size_t       nest, n;
    ngx_uint_t   cp, lo;
    ngx_flag_t   key;
    uint32_t     objects[NGX_HTTP_ZMQ_PAGE_DEPTH_MAX / 32];

    while (p < end && ngx_http_zmq_page_ws(*p)) {
        p++;
    }

    while (end > p && ngx_http_zmq_page_ws(end[-1])) {
        end--;
    }

    start = p;
    nest = 0;                   /* containers open; objects[]: which kind */
    key = 0;

value:

    if (p == end || nest >= NGX_HTTP_ZMQ_PAGE_DEPTH_MAX) {
        return NULL;
    }

    switch (*p) {

    case '{':
    case '[':
        if (*p == '{') {
            objects[nest / 32] |= (uint32_t) 1 << (nest % 32);

        } else {
            objects[nest / 32] &= ~((uint32_t) 1 << (nest % 32));
        }

        nest++;
        p++;

        while (p < end && ngx_http_zmq_page_ws(*p)) {
            p++;
        }

        if (p < end
            && *p == ((objects[(nest - 1) / 32] >> ((nest - 1) % 32)) & 1
                      ? '}' : ']'))
        {
            nest--;
            p++;
            goto next;
        }

        if ((objects[(nest - 1) / 32] >> ((nest - 1) % 32)) & 1) {
            goto object_key;
        }

        goto value;

    case '"':
        goto string;

    case 't':
        if (end - p >= 4 && ngx_strncmp(p, "true", 4) == 0) {
            p += 4;
            goto next;
        }
        return NULL;

    case 'f':
        if (end - p >= 5 && ngx_strncmp(p, "false", 5) == 0) {
            p += 5;
            goto next;
        }
        return NULL;

    case 'n':
        if (end - p >= 4 && ngx_strncmp(p, "null", 4) == 0) {
            p += 4;
            goto next;
        }
        return NULL;

    default:
        goto number;
    }

object_key:

    if (p == end || *p != '"') {
        return NULL;
    }

    /* a key is a string, then a colon, then a value */
    key = 1;

string:

    for (p++; /* void */; p++) {
        if (p == end) {
            return NULL;
        }

        if (*p == '"') {
            p++;
            break;
        }

        if (*p < 0x20) {
            return NULL;
        }

        if (*p == '\\') {
            if (++p == end) {
                return NULL;
            }

            switch (*p) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                continue;

            case 'u':
                if (ngx_http_zmq_page_hex4(p + 1, end, &cp) != NGX_OK
                    || cp == 0 || (cp >= 0xdc00 && cp <= 0xdfff))
                {
                    return NULL;
                }

                p += 4;

                if (cp >= 0xd800 && cp <= 0xdbff) {
                    /* a high surrogate: a low one must follow */
                    if (end - p < 3 || p[1] != '\\' || p[2] != 'u'
                        || ngx_http_zmq_page_hex4(p + 3, end, &lo) != NGX_OK
                        || lo < 0xdc00 || lo > 0xdfff)
                    {
                        return NULL;
                    }

                    p += 6;
                }

                continue;

            default:
                return NULL;
            }
        }

        if (*p >= 0x80) {
            n = (*p & 0xe0) == 0xc0 ? 2
                : (*p & 0xf0) == 0xe0 ? 3
                : (*p & 0xf8) == 0xf0 ? 4 : 0;

            if (n == 0 || (size_t) (end - p) < n
                || !ngx_http_zmq_page_utf8(p, n))
            {
                return NULL;
            }

            p += n - 1;
        }
    }

    if (key) {
        key = 0;

        while (p < end && ngx_http_zmq_page_ws(*p)) {
            p++;
        }

        if (p == end || *p != ':') {
            return NULL;
        }

        p++;

        while (p < end && ngx_http_zmq_page_ws(*p)) {
            p++;
        }

        goto value;
    }

    goto next;

number:

    q = p;

    if (*p == '-') {
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        return NULL;
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) {
        if (*p == '.') {
            p++;

            if (p == end || *p < '0' || *p > '9') {
                return NULL;
            }

            while (p < end && *p >= '0' && *p <= '9') {
                p++;
            }
        }

        if (p < end && (*p == 'e' || *p == 'E')) {
            p++;

            if (p < end && (*p == '+' || *p == '-')) {
                p++;
            }

            if (p == end || *p < '0' || *p > '9') {
                return NULL;
            }

            while (p < end && *p >= '0' && *p <= '9') {
                p++;
            }
        }

        if (ngx_http_zmq_page_finite(q, p - q) != NGX_OK) {
            return NULL;
        }

        goto next;
    }

    /* an integer: within 64 bits */

    n = p - q - (*q == '-');
    limit = (u_char *) (*q == '-' ? "9223372036854775808"
                                  : "9223372036854775807");

    if (n > 19 || (n == 19 && ngx_memcmp(p - 19, limit, 19) > 0)) {
        return NULL;
    }

next:

    /* after a value: the end, or a comma or the close of its container */

    while (p < end && ngx_http_zmq_page_ws(*p)) {
        p++;
    }

    if (nest == 0) {
        if (p != end) {
            return NULL;
        }

        *stop = end;
        return start;
    }

    if (p == end) {
        return NULL;
    }

    if ((objects[(nest - 1) / 32] >> ((nest - 1) % 32)) & 1) {
        if (*p == '}') {
            nest--;
            p++;
            goto next;
        }

        if (*p != ',') {
            return NULL;
        }

        p++;

        while (p < end && ngx_http_zmq_page_ws(*p)) {
            p++;
        }

        goto object_key;
    }

    if (*p == ']') {
        nest--;
        p++;
        goto next;
    }

    if (*p != ',') {
        return NULL;
    }

    p++;

    while (p < end && ngx_http_zmq_page_ws(*p)) {
        p++;
    }

    goto value;
}


/* four hex digits at p: a UTF-16 code unit */
static ngx_int_t
ngx_http_zmq_page_hex4(u_char *p, u_char *end, ngx_uint_t *cp)
{
    u_char      c;
    ngx_uint_t  i, v;

    if (end - p < 4) {
        return NGX_DECLINED;
    }

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            v = v * 16 + (c - '0');

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v = v * 16 + ((c | 0x20) - 'a' + 10);

        } else {
            return NGX_DECLINED;
        }
    }

    *cp = v;
    return NGX_OK;
}


/* a JSON real (checked already) that does not overflow a double */
static ngx_int_t
ngx_http_zmq_page_finite(u_char *p, size_t len)
{
    char    *buf;
    double   d;
    u_char   small[64];

    buf = (char *) small;

    if (len >= sizeof(small)) {
        buf = ngx_alloc(len + 1, ngx_cycle->log);
        if (buf == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_memcpy(buf, p, len);
    buf[len] = '\0';

    d = strtod(buf, NULL);

    if (buf != (char *) small) {
        ngx_free(buf);
    }

    return isinf(d) ? NGX_DECLINED : NGX_OK;
}


/*
 * An item that is not JSON as a JSON string: its bytes when they are
 * UTF-8 (a NUL as \u0000), else what is valid with one U+FFFD for each bad
 * byte (and for a NUL). Written to dst, or with dst NULL only measured.
 */
static size_t
ngx_http_zmq_page_string(u_char *dst, u_char *s, size_t len)
{
    u_char      c, *p, *end;
    size_t      size, n;
    ngx_flag_t  utf8;

    static u_char  hex[] = "0123456789abcdef";

    utf8 = 1;

    if (ngx_strlchr(s, s + len, '\0') != NULL) {
        for (p = s, end = s + len; p < end; p += n) {
            n = *p < 0x80 ? 1
                : (*p & 0xe0) == 0xc0 ? 2
                : (*p & 0xf0) == 0xe0 ? 3
                : (*p & 0xf8) == 0xf0 ? 4 : 0;

            if (n == 0 || (size_t) (end - p) < n
                || !ngx_http_zmq_page_utf8(p, n))
            {
                utf8 = 0;
                break;
            }
        }
    }

    size = 2;
    p = dst;

    if (p) {
        *p++ = '"';
    }

    for (end = s + len; s < end; s += n) {
        c = *s;
        n = 1;

        if (c >= 0x80) {
            n = (c & 0xe0) == 0xc0 ? 2
                : (c & 0xf0) == 0xe0 ? 3
                : (c & 0xf8) == 0xf0 ? 4 : 0;

            if (n == 0 || (size_t) (end - s) < n
                || !ngx_http_zmq_page_utf8(s, n))
            {
                n = 1;
                goto bad;
            }

            size += n;
            if (p) {
                p = ngx_cpymem(p, s, n);
            }
            continue;
        }

        if (c == '\0' && !utf8) {
            goto bad;
        }

        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n'
            || c == '\r' || c == '\t')
        {
            size += 2;
            if (p) {
                *p++ = '\\';
                *p++ = c == '\b' ? 'b' : c == '\f' ? 'f' : c == '\n' ? 'n'
                       : c == '\r' ? 'r' : c == '\t' ? 't' : c;
            }
            continue;
        }

        if (c < 0x20) {
            size += 6;
            if (p) {
                p = ngx_cpymem(p, "\\u00", 4);
                *p++ = hex[c >> 4];
                *p++ = hex[c & 0xf];
            }
            continue;
        }

        size++;
        if (p) {
            *p++ = c;
        }
        continue;

    bad:

        size += 3;
        if (p) {
            p = ngx_cpymem(p, "\xef\xbf\xbd", 3);
        }
    }

    if (p) {
        *p = '"';
    }

    return size;
}


/* a score as jansson writes a real ("%.17g", never read as an integer) */
static u_char *
ngx_http_zmq_page_real(u_char *p, double d)
{
    int     len;
    char    buf[40], *e, *s, *t;

    if (isinf(d)) {
        return d > 0 ? ngx_cpymem(p, "\"inf\"", 5)
                     : ngx_cpymem(p, "\"-inf\"", 6);
    }

    len = snprintf(buf, sizeof(buf) - 3, "%.17g", d);
    if (len < 0 || len >= (int) sizeof(buf) - 3) {
        return ngx_cpymem(p, "0.0", 3);
    }

    if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
        buf[len++] = '.';
        buf[len++] = '0';
        buf[len] = '\0';
    }

    /* no '+' nor leading zeros in the exponent */
    e = strchr(buf, 'e');
    if (e != NULL) {
        s = e + 1;
        if (*s == '-') {
            s++;
        }
        t = s;
        while (*t == '+' || (*t == '0' && t[1] != '\0')) {
            t++;
        }
        if (t != s) {
            memmove(s, t, buf + len + 1 - t);
            len -= t - s;
        }
    }

    return ngx_cpymem(p, buf, len);
}


/* is the n-byte sequence at p one well-formed UTF-8 character */
static ngx_flag_t
ngx_http_zmq_page_utf8(u_char *p, size_t n)
{
    size_t  i;

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }

    switch (n) {
    case 1:
        return 1;
    case 2:
        return p[0] >= 0xc2;
    case 3:
        return !(p[0] == 0xe0 && p[1] < 0xa0)
               && !(p[0] == 0xed && p[1] >= 0xa0);
    default:
        return p[0] <= 0xf4 && !(p[0] == 0xf0 && p[1] < 0x90)
               && !(p[0] == 0xf4 && p[1] >= 0x90);
    }
}


static void
ngx_http_zmq_page_cleanup(void *data)
{
    ngx_http_zmq_page_req_t  *h = data;

    h->request = NULL;

    if (h->pending == 0) {
        ngx_http_zmq_page_free(h);
    }
}


static void
ngx_http_zmq_page_free(ngx_http_zmq_page_req_t *h)
{
    ngx_free(h);
}
