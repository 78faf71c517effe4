
/*
 * ngx_zmq: the configuration a worker runs, and its live replacement.
 *
 * A runtime is built from a validated zgw_config_t (a file read at start,
 * or a Redis snapshot) into its own pool. Applying a new runtime keeps the
 * broker connections whose outgoing connection and definition did not
 * change, opens the new ones, and retires the changed or removed ones
 * (they drain their confirms, then close). Requests never hold a runtime
 * across an event: they look services up by name when they need them.
 */


#ifndef _NGX_HTTP_ZMQ_RUNTIME_H_INCLUDED_
#define _NGX_HTTP_ZMQ_RUNTIME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "zgw_crypto.h"
#include "zgw_model.h"
#include "ngx_zmq_amqp.h"
#include "ngx_zmq_stomp.h"


#define NGX_HTTP_ZMQ_OUTCONNS_MAX     64
#define NGX_HTTP_ZMQ_PARAMS_MAX       ZGW_ROUTE_PARAMS_MAX

#define NGX_HTTP_ZMQ_SRC_NONE         0
#define NGX_HTTP_ZMQ_SRC_LOADED       1     /* file, or Redis connected */
#define NGX_HTTP_ZMQ_SRC_STALE        2     /* Redis unreachable */
#define NGX_HTTP_ZMQ_SRC_WAITING      3     /* Redis, no snapshot yet */
#define NGX_HTTP_ZMQ_SRC_REGRESSED    4     /* Redis below what runs */


/* a name resolved when the configuration was read */
typedef struct {
    ngx_str_t                    host;
    in_port_t                    port;
    ngx_addr_t                  *addrs;
    ngx_uint_t                   naddrs;
} ngx_http_zmq_resolved_t;


typedef struct {
    ngx_uint_t                   kind;      /* literal, variable, param */
    ngx_str_t                    value;
    ngx_uint_t                   key;
} ngx_http_zmq_tmpl_part_t;


/* a service's kind, as the gateway runs it */
#define NGX_HTTP_ZMQ_SVC_OTHER        0     /* runs only in zmqd */
#define NGX_HTTP_ZMQ_SVC_PUBLISH      1
#define NGX_HTTP_ZMQ_SVC_RPC          2
#define NGX_HTTP_ZMQ_SVC_INVOKE       3
#define NGX_HTTP_ZMQ_SVC_PAGE         4     /* redis_page: answered here */
#define NGX_HTTP_ZMQ_SVC_STOMP        5     /* publish via stomp_outconn */

/* an invoke service's mode */
#define NGX_HTTP_ZMQ_INVOKE_SYNC        0
#define NGX_HTTP_ZMQ_INVOKE_SYNC_ASYNC  1
#define NGX_HTTP_ZMQ_INVOKE_ASYNC       2


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    kind;
    ngx_uint_t                   type;           /* NGX_HTTP_ZMQ_SVC_* */
    ngx_flag_t                   active;
    ngx_str_t                    outconn;
    ngx_str_t                    stomp_outconn;  /* or this: STOMP */
    ngx_array_t                  destination;    /* tmpl parts */
    ngx_str_t                    exchange;
    ngx_array_t                  routing_key;    /* tmpl parts */
    ngx_flag_t                   mandatory;
    ngx_flag_t                   confirm;
    ngx_int_t                    delivery_mode;
    ngx_int_t                    priority;
    ngx_int_t                    expiration;
    ngx_str_t                    content_type;
    ngx_array_t                  headers;        /* ngx_keyval_t */
    ngx_msec_t                   timeout;        /* rpc, invoke: reply */
    ngx_str_t                    queue;          /* invoke */
    ngx_uint_t                   mode;           /* invoke */
    void                        *page;           /* redis_page: its conf */
} ngx_http_zmq_service_t;


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    url_path;
    ngx_array_t                  segments;       /* ngx_str_t; "{x}" */
    ngx_flag_t                   prefix;         /* ends with slash-star */
    ngx_uint_t                   method;         /* NGX_HTTP_*, 0: any */
    ngx_str_t                    service;
    ngx_flag_t                   active;
    ngx_str_t                    security;       /* a name, or empty */
    ngx_uint_t                   data_format;
    size_t                       max_body;
    ngx_flag_t                   batch;          /* ngx_http_zmq_batch.c */
    ngx_uint_t                   max_batch;
    ngx_flag_t                   batch_envelope;
    ngx_flag_t                   idempotency;    /* ..._idempotency.c */
    ngx_uint_t                   idempotency_ttl;    /* seconds */
} ngx_http_zmq_route_t;


typedef struct {
    ngx_pool_t                  *pool;
    long long                    version;
    ngx_array_t                  services;       /* ngx_http_zmq_service_t */
    ngx_array_t                  routes;         /* ngx_http_zmq_route_t */
    ngx_array_t                  outconns;       /* outconn_conf_t */
    ngx_array_t                  fingerprints;   /* ngx_str_t per outconn */
    ngx_array_t                  securities;     /* ..._security_t */
    ngx_array_t                  stomp_outconns; /* ngx_zmq_stomp_conf_t */
    ngx_array_t                  stomp_fingerprints;
    zgw_config_t                *cfg;            /* a copy: the admin API
                                                    reads it */
} ngx_http_zmq_runtime_t;


typedef struct {
    ngx_atomic_t                 pid;
    ngx_atomic_t                 version;
    ngx_atomic_t                 store_version;  /* Redis's, last seen */
    ngx_atomic_t                 state;
    ngx_atomic_t                 since;
    u_char                       error[192];
    ngx_zmq_amqp_stats_t         outconns[NGX_HTTP_ZMQ_OUTCONNS_MAX];
    ngx_zmq_amqp_stats_t         stomp[NGX_HTTP_ZMQ_OUTCONNS_MAX];
} ngx_http_zmq_worker_stats_t;


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    value;
} ngx_http_zmq_param_t;


/* this worker's broker connections, by outgoing connection */
typedef struct {
    u_char                      *name;       /* ngx_alloc()ed, NUL-ended */
    ngx_str_t                    fingerprint;
    ngx_zmq_amqp_conn_t         *conn;
} ngx_http_zmq_conn_slot_t;


/* this worker's STOMP connections, by stomp_outconn */
typedef struct {
    u_char                      *name;       /* ngx_alloc()ed, NUL-ended */
    ngx_str_t                    fingerprint;
    ngx_zmq_stomp_conn_t        *conn;
} ngx_http_zmq_stomp_slot_t;


/* a definition's TLS options, made into a context */
typedef struct {
    ngx_flag_t                   tls;
    ngx_zmq_tls_ctx_t           *ctx;        /* held by the pool; NULL with
                                                tls: error says why */
    ngx_str_t                    error;      /* NUL-ended */
    ngx_str_t                    server_name;  /* empty: the host */
} ngx_http_zmq_tls_conf_t;

ngx_int_t ngx_http_zmq_runtime_tls(ngx_pool_t *pool, json_t *def,
    ngx_http_zmq_tls_conf_t *tc, ngx_log_t *log);

ngx_http_zmq_runtime_t *ngx_http_zmq_runtime_build(zgw_config_t *cfg,
    const zgw_key_t *key, ngx_array_t *resolved, ngx_log_t *log,
    zgw_errors_t *errs);
void ngx_http_zmq_runtime_apply(ngx_http_zmq_runtime_t *rt,
    ngx_http_zmq_worker_stats_t *stats, ngx_log_t *log);
ngx_http_zmq_runtime_t *ngx_http_zmq_runtime_current(void);
void ngx_http_zmq_runtime_exit(void);

ngx_http_zmq_service_t *ngx_http_zmq_runtime_service(ngx_str_t *name);
ngx_zmq_amqp_conn_t *ngx_http_zmq_runtime_conn(ngx_str_t *outconn);
ngx_http_zmq_outconn_conf_t *ngx_http_zmq_runtime_outconn(ngx_str_t *name);
ngx_zmq_stomp_conn_t *ngx_http_zmq_runtime_stomp_conn(ngx_str_t *name);
ngx_zmq_stomp_conf_t *ngx_http_zmq_runtime_stomp_outconn(ngx_str_t *name);

/*
 * The route for uri and method: NGX_OK (route and params set),
 * NGX_DECLINED (no path matches), NGX_HTTP_NOT_ALLOWED (the path matches
 * but not the method; allow lists the methods that would), NGX_ERROR.
 * The route (without its segments) and the params' names are copies in
 * r->pool and the params' values point into r->uri: all stay valid for the
 * request's life, across any configuration applied meanwhile.
 */
ngx_int_t ngx_http_zmq_runtime_route(ngx_http_request_t *r,
    ngx_http_zmq_route_t **route, ngx_http_zmq_param_t *params,
    ngx_uint_t *nparams, ngx_str_t *allow);

/* ngx_http_zmq_page.c: a redis_page service as it runs; NULL: no memory */
void *ngx_http_zmq_page_build(ngx_pool_t *pool, json_t *obj,
    const zgw_key_t *key, ngx_log_t *log);
/* opens the Redis connections rt's pages need, closes the others */
void ngx_http_zmq_page_applied(ngx_http_zmq_runtime_t *rt, ngx_log_t *log);
void ngx_http_zmq_page_exit(void);

ngx_int_t ngx_http_zmq_tmpl_compile(ngx_pool_t *pool, ngx_str_t *text,
    ngx_array_t *parts);
ngx_int_t ngx_http_zmq_tmpl_eval(ngx_http_request_t *r, ngx_array_t *parts,
    ngx_http_zmq_param_t *params, ngx_uint_t nparams, ngx_str_t *out);


#endif /* _NGX_HTTP_ZMQ_RUNTIME_H_INCLUDED_ */
