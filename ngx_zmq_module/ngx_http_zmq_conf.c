
/*
 * ngx_http_zmq_module: where the configuration comes from (zmq_config: a
 * file, or Redis with a disk cache of its last snapshot), the key that
 * opens sealed secrets, what the workers need resolved and checked before
 * they start, and the shared memory for zmq_status.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "zgw_hostport.h"
#include "ngx_http_zmq_module.h"
#include "ngx_http_zmq_follow.h"


#define NGX_HTTP_ZMQ_SLOTS_MAX    64


static ngx_int_t ngx_http_zmq_load_cache(ngx_conf_t *cf,
    ngx_http_zmq_main_conf_t *zmcf);
static ngx_int_t ngx_http_zmq_resolve(ngx_conf_t *cf,
    ngx_http_zmq_main_conf_t *zmcf, const char *host, in_port_t port);
static char *ngx_http_zmq_prepare(ngx_conf_t *cf,
    ngx_http_zmq_main_conf_t *zmcf);
static ngx_int_t ngx_http_zmq_init_shm(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_zmq_config_cleanup(void *data);
static ngx_addr_t *ngx_http_zmq_redis_resolve(ngx_conf_t *cf,
    ngx_http_zmq_main_conf_t *zmcf, const char *host, int port);


/*
 * rediss://: the TLS context now, when a bad ca_file or key is an error at
 * nginx -t; the workers inherit it, held by the cycle's pool. The name
 * sent and checked (server_name, else the host) is copied to the pool.
 */
ngx_int_t
ngx_http_zmq_redis_tls_conf(ngx_conf_t *cf, const zgw_redis_addr_t *ra,
    const char *directive, ngx_str_t *shown, ngx_zmq_tls_ctx_t **ctx,
    ngx_str_t *name)
{
    u_char              err[NGX_ZMQ_TLS_ERROR_LEN];
    const char         *n;
    ngx_zmq_tls_opts_t  opts;

    ngx_memzero(&opts, sizeof(ngx_zmq_tls_opts_t));

    opts.ca_file.data = (u_char *) ra->ca_file;
    opts.ca_file.len = ngx_strlen(ra->ca_file);
    opts.cert_file.data = (u_char *) ra->cert_file;
    opts.cert_file.len = ngx_strlen(ra->cert_file);
    opts.key_file.data = (u_char *) ra->key_file;
    opts.key_file.len = ngx_strlen(ra->key_file);
    opts.verify = ra->verify ? 1 : 0;

    *ctx = ngx_zmq_tls_ctx_get(&opts, cf->log, err, sizeof(err));

    if (*ctx == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s \"%V\": TLS: %s",
                           directive, shown, err);
        return NGX_ERROR;
    }

    if (ngx_zmq_tls_ctx_hold(cf->pool, *ctx) != NGX_OK) {
        ngx_zmq_tls_ctx_put(*ctx);
        *ctx = NULL;
        return NGX_ERROR;
    }

    ngx_zmq_tls_ctx_put(*ctx);

    n = ra->server_name[0] ? ra->server_name : ra->host;
    name->len = ngx_strlen(n);
    name->data = ngx_pnalloc(cf->pool, name->len + 1);
    if (name->data == NULL) {
        return NGX_ERROR;
    }
    ngx_memcpy(name->data, n, name->len + 1);

    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_load_cache(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf)
{
    size_t        i;
    json_t       *doc;
    json_error_t  jerr;
    zgw_errors_t  errs;

    doc = json_load_file((char *) zmcf->cache_file.data, 0, &jerr);
    if (doc == NULL) {
        if (ngx_file_info(zmcf->cache_file.data, &(ngx_file_info_t) { 0 })
            != NGX_FILE_ERROR)
        {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "zmq_config: the cache \"%V\" is unreadable "
                               "(%s); starting without it",
                               &zmcf->cache_file, jerr.text);
        }
        return NGX_DECLINED;
    }

    zgw_errors_init(&errs);

    if (zgw_config_load_doc(zmcf->cfg, json_object_get(doc, "config"), 0,
                            &errs)
        != ZGW_OK)
    {
        for (i = 0; i < errs.n; i++) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "zmq_config: the cache \"%V\" is not a valid "
                               "configuration: %s", &zmcf->cache_file,
                               errs.msgs[i]);
        }

        zgw_errors_free(&errs);
        json_decref(doc);
        zgw_config_free(zmcf->cfg);
        zmcf->cfg = zgw_config_new();
        return NGX_DECLINED;
    }

    zmcf->cfg->version = json_integer_value(json_object_get(doc, "version"));
    zgw_errors_free(&errs);
    json_decref(doc);

    ngx_conf_log_error(NGX_LOG_INFO, cf, 0,
                       "zmq_config: starting from the cached configuration "
                       "version %L", zmcf->cfg->version);
    return NGX_OK;
}


char *
ngx_http_zmq_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    char                *path, shown[ZGW_URL_SHOW_MAX];
    size_t               i;
    ngx_str_t           *value;
    ngx_addr_t          *a;
    zgw_errors_t         errs;
    ngx_file_info_t      fi;
    ngx_pool_cleanup_t  *cln;

    if (zmcf->source.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    zmcf->source = value[1];

    zmcf->cfg = zgw_config_new();
    if (zmcf->cfg == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        zgw_config_free(zmcf->cfg);
        zmcf->cfg = NULL;
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_zmq_config_cleanup;
    cln->data = zmcf;

    zgw_errors_init(&errs);

    if ((value[1].len > 8
         && ngx_strncmp(value[1].data, "redis://", 8) == 0)
        || (value[1].len > 9
            && ngx_strncmp(value[1].data, "rediss://", 9) == 0)
        || (value[1].len > 17
            && ngx_strncmp(value[1].data, "redis-sentinel://", 17) == 0))
    {
        zmcf->type = NGX_HTTP_ZMQ_SOURCE_REDIS;

        path = ngx_pnalloc(cf->pool, value[1].len + 1);
        if (path == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_memcpy(path, value[1].data, value[1].len);
        path[value[1].len] = '\0';

        /* status and every log line show the source without a password */
        zmcf->source.data = ngx_pnalloc(cf->pool, ZGW_URL_SHOW_MAX);
        if (zmcf->source.data == NULL) {
            return NGX_CONF_ERROR;
        }
        zgw_url_redact(path, (char *) zmcf->source.data, ZGW_URL_SHOW_MAX);
        zmcf->source.len = ngx_strlen(zmcf->source.data);

        if (zgw_redis_addr_parse_ex(&zmcf->redis, path, ZGW_REDIS_SENTINEL,
                                    &errs)
            != ZGW_OK)
        {
            ngx_explicit_memzero(path, value[1].len);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                               zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            return NGX_CONF_ERROR;
        }

        ngx_explicit_memzero(path, value[1].len);

        if (zmcf->redis.tls
            && ngx_http_zmq_redis_tls_conf(cf, &zmcf->redis, "zmq_config",
                                           &zmcf->source, &zmcf->redis_tls,
                                           &zmcf->redis_tls_name)
               != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (zmcf->redis.sentinel) {
            /*
             * the sentinels are resolved now, never in a worker; the
             * master's address comes from them, an IP. redis_addr stays
             * NULL: what would use zmq_config's Redis directly
             * (idempotency keys, redis_page services without a url)
             * needs its own redis:// URL.
             */
            zmcf->redis_sentinels = ngx_pcalloc(cf->pool,
                                                zmcf->redis.nsentinels
                                                * sizeof(ngx_addr_t));
            if (zmcf->redis_sentinels == NULL) {
                return NGX_CONF_ERROR;
            }

            for (i = 0; i < (size_t) zmcf->redis.nsentinels; i++) {
                a = ngx_http_zmq_redis_resolve(cf, zmcf,
                                               zmcf->redis.sentinels[i].host,
                                               zmcf->redis.sentinels[i].port);
                if (a == NULL) {
                    return NGX_CONF_ERROR;
                }

                zmcf->redis_sentinels[i] = *a;
            }

            return NGX_CONF_OK;
        }

        /* the Redis host is resolved now, never in a worker */

        zmcf->redis_addr = ngx_http_zmq_redis_resolve(cf, zmcf,
                                                      zmcf->redis.host,
                                                      zmcf->redis.port);

        return zmcf->redis_addr != NULL ? NGX_CONF_OK : NGX_CONF_ERROR;
    }

    if (value[1].len <= 5 || ngx_strncmp(value[1].data, "file:", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_config \"%s\": expected file:PATH, "
                           "redis://host:port/db, rediss://... or "
                           "redis-sentinel://host:port,.../master/db",
                           zgw_url_redact_len((char *) value[1].data,
                                              value[1].len, shown,
                                              sizeof(shown)));
        return NGX_CONF_ERROR;
    }

    zmcf->type = NGX_HTTP_ZMQ_SOURCE_FILE;
    zmcf->path.data = value[1].data + 5;
    zmcf->path.len = value[1].len - 5;

    if (ngx_conf_full_name(cf->cycle, &zmcf->path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    path = ngx_pnalloc(cf->pool, zmcf->path.len + 1);
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(path, zmcf->path.data, zmcf->path.len);
    path[zmcf->path.len] = '\0';

    if (zgw_config_load_file(zmcf->cfg, path, 0, &errs) != ZGW_OK) {
        for (i = 0; i < errs.n; i++) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                               errs.msgs[i]);
        }

        zgw_errors_free(&errs);
        return NGX_CONF_ERROR;
    }

    zgw_errors_free(&errs);

    if (ngx_file_info(path, &fi) != NGX_FILE_ERROR) {
        zmcf->mtime = ngx_file_mtime(&fi);
    }

    /* a file's version is its modification time */
    zmcf->cfg->version = zmcf->mtime;

    zmcf->loaded = ngx_time();

    return ngx_http_zmq_prepare(cf, zmcf);
}


/* a Redis host (or a sentinel), resolved when the configuration is read */
static ngx_addr_t *
ngx_http_zmq_redis_resolve(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf,
    const char *host, int port)
{
    ngx_url_t   u;
    ngx_str_t   url;

    ngx_memzero(&u, sizeof(ngx_url_t));
    url.len = ngx_strlen(host);
    url.data = ngx_pnalloc(cf->pool, url.len + 2);
    if (url.data == NULL) {
        return NULL;
    }

    if (ngx_strchr(host, ':') != NULL) {
        /* an IPv6 address, as ngx_parse_url() wants it */
        url.len = ngx_sprintf(url.data, "[%s]", host) - url.data;
    } else {
        ngx_memcpy(url.data, host, url.len);
    }

    u.url = url;
    u.default_port = (in_port_t) port;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_config \"%V\": %s%s%s", &zmcf->source,
                           u.err ? u.err : "cannot resolve the host",
                           zmcf->redis.sentinel ? " " : "",
                           zmcf->redis.sentinel ? host : "");
        return NULL;
    }

    return &u.addrs[0];
}


static ngx_int_t
ngx_http_zmq_resolve(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf,
    const char *host, in_port_t port)
{
    ngx_url_t                 u;
    ngx_uint_t                i;
    ngx_addr_t                addr;
    ngx_http_zmq_resolved_t  *res;

    if (ngx_parse_addr(cf->pool, &addr, (u_char *) host, ngx_strlen(host))
        == NGX_OK || ngx_strcmp(host, "localhost") == 0)
    {
        return NGX_OK;                  /* needs no resolving */
    }

    res = zmcf->resolved.elts;
    for (i = 0; i < zmcf->resolved.nelts; i++) {
        if (res[i].port == port && res[i].host.len == ngx_strlen(host)
            && ngx_strncmp(res[i].host.data, host, res[i].host.len) == 0)
        {
            return NGX_OK;
        }
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url.data = (u_char *) host;
    u.url.len = ngx_strlen(host);
    u.default_port = port;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_config: host \"%s\": %s", host,
                           u.err ? u.err : "cannot resolve");
        return NGX_ERROR;
    }

    res = ngx_array_push(&zmcf->resolved);
    if (res == NULL) {
        return NGX_ERROR;
    }

    res->host.len = ngx_strlen(host);
    res->host.data = ngx_pnalloc(cf->pool, res->host.len);
    if (res->host.data == NULL) {
        return NGX_ERROR;
    }
    ngx_memcpy(res->host.data, host, res->host.len);
    res->port = port;
    res->addrs = u.addrs;
    res->naddrs = u.naddrs;

    return NGX_OK;
}


/*
 * What the workers need from the configuration read at start: names
 * resolved (never in a worker), secrets that open with the key, and the
 * shared memory for the status counters.
 */
static char *
ngx_http_zmq_prepare(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf)
{
    char                     *secret;
    u_char                    who[ZGW_NAME_MAX + 64];
    size_t                    i;
    json_t                   *def, *h, *host;
    in_port_t                 port;
    zgw_hostport_t            hp;
    const char               *name;
    zgw_errors_t              errs;
    ngx_http_zmq_runtime_t   *rt;

    zgw_errors_init(&errs);

    json_object_foreach(zmcf->cfg->objs[ZGW_KIND_AMQP_DEF], name, def) {
        port = (in_port_t) json_integer_value(json_object_get(def, "port"));
        host = json_object_get(def, "host");

        /* the one host:port parser (validated by the model already) */

        *ngx_snprintf(who, sizeof(who) - 1, "amqp_def '%s': host",
                      name) = '\0';

        if (zgw_host_parse(&hp, json_string_value(host),
                           json_string_length(host), (char *) who, &errs)
            != ZGW_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                               zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            return NGX_CONF_ERROR;
        }

        if (hp.kind == ZGW_HOST_IS_NAME
            && ngx_http_zmq_resolve(cf, zmcf, hp.host, port) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        json_array_foreach(json_object_get(def, "hosts"), i, h) {
            *ngx_snprintf(who, sizeof(who) - 1, "amqp_def '%s': hosts[%uz]",
                          name, i) = '\0';

            if (zgw_hostport_parse(&hp, json_string_value(h),
                                   json_string_length(h), port, (char *) who,
                                   &errs)
                != ZGW_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                                   zgw_errors_first(&errs));
                zgw_errors_free(&errs);
                return NGX_CONF_ERROR;
            }

            if (hp.kind == ZGW_HOST_IS_NAME
                && ngx_http_zmq_resolve(cf, zmcf, hp.host,
                                        (in_port_t) hp.port)
                   != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
        }

        /* a sealed password must open with the key, now */

        if (json_is_object(json_object_get(def, "password"))) {
            if (!zmcf->has_key) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zmq_config: amqp_def '%s': the password "
                                   "is sealed; set zmq_key_file before "
                                   "zmq_config", name);
                return NGX_CONF_ERROR;
            }

            secret = zgw_object_secret(ZGW_KIND_AMQP_DEF, def, "password",
                                       &zmcf->key, &errs);
            if (secret == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                                   zgw_errors_first(&errs));
                zgw_errors_free(&errs);
                return NGX_CONF_ERROR;
            }

            ngx_explicit_memzero(secret, ngx_strlen(secret));
            free(secret);
        }
    }

    /* a trial build reports what a worker would refuse, at nginx -t */

    rt = ngx_http_zmq_runtime_build(zmcf->cfg,
                                    zmcf->has_key ? &zmcf->key : NULL,
                                    &zmcf->resolved, cf->log, &errs);
    if (rt == NULL || errs.n) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_config: %s",
                           zgw_errors_first(&errs));
        zgw_errors_free(&errs);
        if (rt != NULL) {
            ngx_destroy_pool(rt->pool);
        }
        return NGX_CONF_ERROR;
    }

    ngx_destroy_pool(rt->pool);
    zgw_errors_free(&errs);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_zmq_init_shm(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    zmcf->stats = ngx_slab_calloc(shpool, zmcf->slots
                                  * sizeof(ngx_http_zmq_worker_stats_t));
    if (zmcf->stats == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_zmq_config_cleanup(void *data)
{
    ngx_http_zmq_main_conf_t  *zmcf = data;

    zgw_config_free(zmcf->cfg);
    zmcf->cfg = NULL;
    ngx_explicit_memzero(&zmcf->key, sizeof(zgw_key_t));
}


char *
ngx_http_zmq_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_main_conf_t *zmcf = conf;

    char          path[NGX_MAX_PATH];
    ngx_str_t    *value;
    zgw_errors_t  errs;

    if (zmcf->key_file.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    zmcf->key_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &zmcf->key_file, 1) != NGX_OK
        || zmcf->key_file.len >= sizeof(path))
    {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(path, zmcf->key_file.data, zmcf->key_file.len);
    path[zmcf->key_file.len] = '\0';

    zgw_errors_init(&errs);

    if (zgw_key_load(&zmcf->key, path, &errs) != ZGW_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zmq_key_file: %s",
                           zgw_errors_first(&errs));
        zgw_errors_free(&errs);
        return NGX_CONF_ERROR;
    }

    zmcf->has_key = 1;
    return NGX_CONF_OK;
}


/*
 * After the http{} block is read: the Redis snapshot cache (and the
 * configuration it holds, checked as a file's is), and the shared memory
 * for the status counters.
 */
char *
ngx_http_zmq_conf_init(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf)
{
    u_char            *p;
    size_t             size;
    ngx_str_t          name;
    ngx_core_conf_t   *ccf;

    if (zmcf->type == NGX_HTTP_ZMQ_SOURCE_REDIS) {
        /*
         * The directory of the snapshot cache is made (and given to the
         * worker user) by NGINX, like its temporary paths.
         */
        if (zmcf->cache_dir == NULL) {
            zmcf->cache_dir = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
            if (zmcf->cache_dir == NULL) {
                return NGX_CONF_ERROR;
            }
            ngx_str_set(&zmcf->cache_dir->name, "zmq_cache");
            if (ngx_conf_full_name(cf->cycle, &zmcf->cache_dir->name, 0)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
            if (ngx_add_path(cf, &zmcf->cache_dir) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
        }

        zmcf->cache_file.len = zmcf->cache_dir->name.len
                               + sizeof("/config.json") - 1;
        zmcf->cache_file.data = ngx_pnalloc(cf->pool,
                                            zmcf->cache_file.len + 1);
        if (zmcf->cache_file.data == NULL) {
            return NGX_CONF_ERROR;
        }
        p = ngx_cpymem(zmcf->cache_file.data, zmcf->cache_dir->name.data,
                       zmcf->cache_dir->name.len);
        ngx_memcpy(p, "/config.json", sizeof("/config.json"));

        /* the cache is written by a thread */
        if (ngx_http_zmq_follow_init_conf(cf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_zmq_load_cache(cf, zmcf) == NGX_OK
            && ngx_http_zmq_prepare(cf, zmcf) != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    /* counters per worker, for zmq_status */

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);
    zmcf->slots = (ccf->worker_processes != NGX_CONF_UNSET
                   && ccf->worker_processes > 0)
                  ? (ngx_uint_t) ccf->worker_processes
                  : NGX_HTTP_ZMQ_SLOTS_MAX;

    /*
     * The slab pool keeps a descriptor per page in the zone itself: with
     * 64 slots (worker_processes unknown yet, or "auto" written after the
     * http block) the counters take hundreds of pages, whose descriptors
     * need more than a few spare pages (as the metrics zone).
     */
    size = zmcf->slots * sizeof(ngx_http_zmq_worker_stats_t);
    size += size / 8 + 8 * ngx_pagesize;

    ngx_str_set(&name, "ngx_zmq_status");
    zmcf->shm = ngx_shared_memory_add(cf, &name, size, &ngx_http_zmq_module);
    if (zmcf->shm == NULL) {
        return NGX_CONF_ERROR;
    }

    zmcf->shm->init = ngx_http_zmq_init_shm;
    zmcf->shm->data = zmcf;
    zmcf->shm->noreuse = 1;

    return NGX_CONF_OK;
}
