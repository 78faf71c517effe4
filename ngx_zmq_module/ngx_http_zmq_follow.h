
/*
 * ngx_zmq: each worker follows the configuration in Redis.
 */


#ifndef _NGX_HTTP_ZMQ_FOLLOW_H_INCLUDED_
#define _NGX_HTTP_ZMQ_FOLLOW_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_zmq_runtime.h"
#include "ngx_zmq_redis.h"


typedef struct {
    ngx_addr_t                    *addr;
    ngx_str_t                      username;      /* ACL user, or empty */
    ngx_str_t                      password;
    ngx_int_t                      db;
    ngx_zmq_tls_ctx_t             *tls;           /* rediss://, or NULL */
    ngx_str_t                      tls_name;
    ngx_addr_t                    *sentinels;     /* redis-sentinel:// */
    ngx_uint_t                     nsentinels;
    ngx_str_t                      master_name;
    ngx_msec_t                     timeout;       /* per Redis command */
    ngx_msec_t                     poll;          /* GET zmq:version */
    const zgw_key_t               *key;
    ngx_array_t                   *resolved;
    ngx_http_zmq_worker_stats_t   *stats;
    ngx_str_t                      cache;         /* file, or empty */
    ngx_log_t                     *log;
} ngx_http_zmq_follow_conf_t;


/*
 * At configuration time, when the source is Redis: the thread pool that
 * writes the snapshot cache (NGINX's "default" pool) must be declared then.
 */
ngx_int_t ngx_http_zmq_follow_init_conf(ngx_conf_t *cf);

ngx_int_t ngx_http_zmq_follow_start(ngx_http_zmq_follow_conf_t *conf);
void ngx_http_zmq_follow_stop(void);
/* the command connection to the store, or NULL (no Redis source) */
ngx_zmq_redis_t *ngx_http_zmq_follow_redis(void);


#endif /* _NGX_HTTP_ZMQ_FOLLOW_H_INCLUDED_ */
