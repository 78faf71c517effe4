
/*
 * ngx_http_zmq_module: the types the module's files share (main and
 * location configuration, request context) and the functions one file
 * offers another.
 */


#ifndef _NGX_HTTP_ZMQ_MODULE_H_INCLUDED_
#define _NGX_HTTP_ZMQ_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "zgw_crypto.h"
#include "zgw_model.h"
#include "zgw_redis_url.h"
#include "ngx_zmq_amqp.h"
#include "ngx_http_zmq_runtime.h"
#include "ngx_http_zmq_auth.h"


#define NGX_HTTP_ZMQ_FORMAT_NONE  0
#define NGX_HTTP_ZMQ_FORMAT_JSON  1

#define NGX_HTTP_ZMQ_SOURCE_FILE  1
#define NGX_HTTP_ZMQ_SOURCE_REDIS 2


/*
 * zmq_status names each outgoing connection by its whole name, from the
 * fixed-size field in shared memory: a name cut short could collide.
 */
#if (NGX_HTTP_ZMQ_NAME_LEN <= ZGW_NAME_MAX)
#error "NGX_HTTP_ZMQ_NAME_LEN must hold a name of ZGW_NAME_MAX bytes"
#endif


typedef struct ngx_http_zmq_follow_s  ngx_http_zmq_follow_t;


/*
 * zmq_metrics (ngx_http_zmq_metrics.c): what zmq_status does not count,
 * per worker in the zone "ngx_zmq_metrics". Each worker writes only its
 * own slot (plain increments, no locks); the handler sums the slots.
 *
 * Requests per channel (a REST channel's name, or the location of a
 * zmq_service) and status code: at most NGX_HTTP_ZMQ_METRICS_CHANNELS
 * channels per worker (more are counted as channel "_overflow"), and the
 * codes of ngx_http_zmq_metrics_codes[] plus one class ("1xx" to "5xx")
 * per hundred for any other code.
 */
#define NGX_HTTP_ZMQ_METRICS_CHANNELS  64
#define NGX_HTTP_ZMQ_METRICS_CODES     33      /* 28 codes, 5 classes */
#define NGX_HTTP_ZMQ_METRICS_BUCKETS   15      /* 14 bounds and +Inf */

typedef struct {
    ngx_atomic_t                   used;       /* set after the name */
    ngx_atomic_t                   len;
    u_char                         name[NGX_HTTP_ZMQ_NAME_LEN];
    ngx_atomic_t                   codes[NGX_HTTP_ZMQ_METRICS_CODES];
} ngx_http_zmq_metrics_channel_t;

/*
 * Durations per outgoing connection, request read to answer: of publishes
 * (hists; stomp: the transport), and of rpc and invoke requests
 * (rpc_hists; stomp: 1 for an invoke service's)
 */
typedef struct {
    ngx_atomic_t                   used;       /* set after the name */
    ngx_atomic_t                   stomp;
    ngx_atomic_t                   len;
    u_char                         name[NGX_HTTP_ZMQ_NAME_LEN];
    ngx_atomic_t                   buckets[NGX_HTTP_ZMQ_METRICS_BUCKETS];
                                               /* not cumulative here */
    ngx_atomic_t                   sum_us;
} ngx_http_zmq_metrics_hist_t;

typedef struct {
    ngx_atomic_t                   pid;
    ngx_http_zmq_metrics_channel_t channels[NGX_HTTP_ZMQ_METRICS_CHANNELS];
    ngx_atomic_t                   overflow[NGX_HTTP_ZMQ_METRICS_CODES];
    ngx_http_zmq_metrics_hist_t    hists[2 * NGX_HTTP_ZMQ_OUTCONNS_MAX];
    ngx_http_zmq_metrics_hist_t    rpc_hists[2 * NGX_HTTP_ZMQ_OUTCONNS_MAX];
} ngx_http_zmq_metrics_worker_t;


/* what one worker process has (zmcf->worker, from init_process) */
typedef struct {
    /* ngx_http_zmq_publish.c: answers paced through the event loop */
    ngx_queue_t                    answers;
    ngx_event_t                    answer_ev;

    /* ngx_http_zmq_runtime.c: the configuration it runs, its connections */
    ngx_http_zmq_runtime_t        *rt;
    ngx_http_zmq_conn_slot_t       slots[NGX_HTTP_ZMQ_OUTCONNS_MAX];

    /* ngx_http_zmq_follow.c: following Redis */
    ngx_http_zmq_follow_t         *follower;

    /* ngx_http_zmq_page.c: Redis connections of redis_page services */
    void                          *page;

    /* ngx_http_zmq_props.c: random bytes for message ids */
    u_char                         ids[4096];
    size_t                         ids_used;
    ngx_pid_t                      ids_owner;

    /* ngx_zmq_amqp.c: its connections */
    ngx_zmq_amqp_worker_t          amqp;

    /* ngx_zmq_stomp.c, ngx_http_zmq_runtime.c: its STOMP connections */
    ngx_zmq_stomp_worker_t         stomp;
    ngx_http_zmq_stomp_slot_t      stomp_slots[NGX_HTTP_ZMQ_OUTCONNS_MAX];

    /* ngx_http_zmq_auth.c: verified credentials, failed attempts */
    ngx_http_zmq_auth_worker_t     auth;

    /* ngx_http_zmq_admin_write.c: admin writes go to Redis one at a time */
    ngx_queue_t                    writes;         /* waiting their turn */
    ngx_uint_t                     nwrites;
    void                          *write;          /* the one at Redis */
    ngx_event_t                    write_ev;       /* starts the next */

    /*
     * ngx_http_zmq_idempotency.c: its Redis connection, the publishes
     * whose requests went away (orphans), and while their outcomes are
     * being stored a timer that keeps an exiting worker until Redis has
     * them
     */
    void                          *idem;
    ngx_queue_t                    idem_orphans;
    ngx_uint_t                     idem_storing;
    ngx_event_t                    idem_wait;

    /* ngx_http_zmq_metrics.c: this worker's slot in the metrics zone */
    ngx_http_zmq_metrics_worker_t *metrics;
} ngx_http_zmq_worker_t;


typedef struct {
    ngx_uint_t                     type;       /* file or redis */
    ngx_str_t                      source;     /* as written, without
                                                  a password */
    ngx_str_t                      path;       /* the file, resolved */
    ngx_str_t                      key_file;
    zgw_key_t                      key;
    ngx_flag_t                     has_key;
    zgw_config_t                  *cfg;        /* read at start */
    time_t                         mtime;
    time_t                         loaded;

    ngx_addr_t                    *redis_addr;    /* NULL: Sentinel */
    ngx_addr_t                    *redis_sentinels; /* redis.nsentinels */
    zgw_redis_addr_t               redis;
    ngx_zmq_tls_ctx_t             *redis_tls;     /* rediss://: held by the
                                                     cycle's pool */
    ngx_str_t                      redis_tls_name;  /* server_name, or the
                                                       host */
    ngx_path_t                    *cache_dir;
    ngx_str_t                      cache_file;
    ngx_msec_t                     poll;
    ngx_str_t                      instance;   /* zmq_instance, or empty */
    ngx_msec_t                     fleet_interval; /* 0: not reported */

    ngx_array_t                    resolved;   /* ngx_http_zmq_resolved_t */

    ngx_msec_t                     connect_timeout;
    size_t                         buffer_limit;

    ngx_shm_zone_t                *shm;
    ngx_http_zmq_worker_stats_t   *stats;      /* in the zone */
    ngx_uint_t                     slots;      /* workers in the zone */

    ngx_shm_zone_t                *metrics_shm;
    ngx_http_zmq_metrics_worker_t *metrics;    /* in that zone, by slot */

    ngx_http_zmq_worker_t         *worker;     /* in worker processes */

    ngx_msec_t                     auth_cache_ttl;
    ngx_uint_t                     auth_fail_rate;
    ngx_str_t                      auth_pool_name;
    ngx_flag_t                     auth_used;  /* zmq_security, zmq_router */
    void                          *idem;       /* zmq_idempotency_redis */
} ngx_http_zmq_main_conf_t;


typedef struct {
    ngx_str_t                      service;    /* zmq_service NAME */
    ngx_flag_t                     router;
    ngx_http_complex_value_t      *routing_key;
    ngx_msec_t                     confirm_timeout;
    size_t                         max_body;
    ngx_uint_t                     data_format;
    ngx_flag_t                     json_errors;
    ngx_str_t                      security;   /* zmq_security NAME */
    ngx_flag_t                     admin;      /* zmq_admin */
    ngx_flag_t                     admin_auth; /* zmq_admin_auth */
    ngx_flag_t                     batch;      /* zmq_batch */
    ngx_uint_t                     max_batch;  /* zmq_max_batch */
    ngx_flag_t                     batch_envelope;
    ngx_flag_t                     trace;      /* zmq_trace */
} ngx_http_zmq_loc_conf_t;


/* ctx->leave: the request is freed, its publish not yet detached */
typedef void (*ngx_http_zmq_leave_pt)(void *data);


typedef struct {
    ngx_http_request_t            *request;
    ngx_http_zmq_pub_t            *pub;        /* NULL once answered */
    void                          *rpc;        /* rpc, invoke: the wait */
    ngx_str_t                      message_id;
    ngx_str_t                      service;
    size_t                         max_body;
    ngx_uint_t                     data_format;
    ngx_http_zmq_route_t          *route;      /* zmq_router: r->pool */
    ngx_http_zmq_auth_t           *auth;       /* NULL: not checked */
    void                          *admin;      /* zmq_admin: the route */
    ngx_http_zmq_param_t           params[NGX_HTTP_ZMQ_PARAMS_MAX];
    ngx_uint_t                     nparams;
    ngx_http_event_handler_pt      read_body;  /* NGINX's body reader */
    ngx_chain_t                   *json;       /* replaces an nginx page */
    ngx_queue_t                    answer;     /* in ngx_http_zmq_answers */
    ngx_http_zmq_pub_result_e      result;
    off_t                          received;   /* body bytes so far */
    ngx_http_zmq_metrics_hist_t   *hist;       /* zmq_metrics: where the
                                                  publish's duration goes */
    uint64_t                       read_us;    /* the body was read */
    void                          *batch;      /* ngx_http_zmq_batch.c */
    void                          *idem;       /* ..._idempotency.c */
    ngx_http_zmq_leave_pt          leave;      /* called by the request's
                                                  cleanup before it
                                                  detaches ctx->pub */
    void                          *leave_data;
    ngx_uint_t                     max_batch;
    unsigned                       batch_ok:1;     /* may be a batch */
    unsigned                       batch_envelope:1;
    unsigned                       is_batch:1;     /* x-ndjson: it is */
    unsigned                       limit_body:1;  /* count them */
    unsigned                       own:1;      /* a response of ours */
    unsigned                       replaced:1;
    unsigned                       queued:1;   /* waits in the answers */
    unsigned                       stomp:1;    /* published through STOMP */
    NGX_HTTP_ZMQ_PROBE_FIELD
} ngx_http_zmq_ctx_t;


extern ngx_module_t  ngx_http_zmq_module;


/* ngx_http_zmq_module.c: this process's zmcf->worker */
ngx_http_zmq_worker_t *ngx_http_zmq_worker(void);


/* ngx_http_zmq_conf.c: where the configuration comes from */
char *ngx_http_zmq_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_zmq_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_zmq_conf_init(ngx_conf_t *cf, ngx_http_zmq_main_conf_t *zmcf);

/* ngx_http_zmq_publish.c: publishing a request's body */
ngx_int_t ngx_http_zmq_service_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_zmq_router_handler(ngx_http_request_t *r);
void ngx_http_zmq_publish_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_zmq_publish_init(ngx_conf_t *cf);
/*
 * Both return NGX_DONE when the broker's answer finalizes the request
 * later (the caller then holds a reference on it), else a status to
 * finalize it with now (an error answered already, or 500).
 */
ngx_int_t ngx_http_zmq_publish_service(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_http_complex_value_t *routing_key);
ngx_int_t ngx_http_zmq_publish_message(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_zmq_amqp_conn_t *conn,
    ngx_http_zmq_publish_t *msg);
off_t ngx_http_zmq_request_body_length(ngx_http_request_t *r);
/* the body read and checked for size: batch, JSON check, publish */
ngx_int_t ngx_http_zmq_body_publish(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx);
/* queues the request's answer (ngx_http_zmq_rpc_answer for an rpc) */
void ngx_http_zmq_answer_post(ngx_http_zmq_ctx_t *ctx);
/*
 * The answer of a settled AMQP publish: its status, and its JSON body
 * from pool for a 202 or a 422 (empty for a 5xx, and on no memory); what
 * ngx_http_zmq_answer() sends and what an idempotency key keeps of a
 * request that went away
 */
ngx_uint_t ngx_http_zmq_publish_settled(ngx_pool_t *pool,
    ngx_http_zmq_pub_result_e result, ngx_str_t *message_id,
    ngx_str_t *body);
/* from ctx->leave: done(data) takes over ctx->pub still waiting (NGX_OK) */
ngx_int_t ngx_http_zmq_publish_takeover(ngx_http_zmq_ctx_t *ctx,
    ngx_http_zmq_pub_done_pt done, void *data);

/* ngx_http_zmq_rpc.c: rpc and invoke services */
ngx_int_t ngx_http_zmq_rpc_service(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_http_zmq_service_t *svc,
    ngx_http_zmq_outconn_conf_t *oc, ngx_zmq_amqp_conn_t *conn,
    ngx_http_complex_value_t *routing_key);
ngx_int_t ngx_http_zmq_rpc_answer(ngx_http_zmq_ctx_t *ctx);

/* ngx_http_zmq_page.c: a page of a redis_page service (GET, HEAD) */
ngx_int_t ngx_http_zmq_page_handler(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_http_zmq_service_t *svc);

/* ngx_http_zmq_props.c: request headers to AMQP properties */
ngx_int_t ngx_http_zmq_properties(ngx_http_request_t *r,
    ngx_http_zmq_service_t *svc, ngx_http_zmq_outconn_conf_t *oc,
    amqp_basic_properties_t *props, ngx_str_t *message_id,
    const char **bad);
ngx_int_t ngx_http_zmq_props_defaults(ngx_pool_t *pool,
    ngx_http_zmq_service_t *svc, ngx_http_zmq_outconn_conf_t *oc,
    amqp_basic_properties_t *props);
ngx_int_t ngx_http_zmq_message_id(ngx_pool_t *pool, ngx_str_t *id);
/* the same for a STOMP SEND: out is an array of ngx_keyval_t */
ngx_int_t ngx_http_zmq_stomp_headers(ngx_http_request_t *r,
    ngx_http_zmq_service_t *svc, ngx_zmq_stomp_conf_t *sc, ngx_array_t *out,
    ngx_str_t *message_id, const char **bad);

/* ngx_http_zmq_batch.c: application/x-ndjson, one message per line */
ngx_int_t ngx_http_zmq_batch_detect(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx);
ngx_int_t ngx_http_zmq_batch_publish(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_http_complex_value_t *routing_key);
ngx_int_t ngx_http_zmq_batch_answer(ngx_http_zmq_ctx_t *ctx);

/* ngx_http_zmq_trace.c: W3C trace context into the headers table */
#define NGX_HTTP_ZMQ_TRACE_HEADERS  2
ngx_int_t ngx_http_zmq_trace_headers(ngx_http_request_t *r,
    amqp_table_entry_t *entries, ngx_uint_t *n, const char **bad);

/* ngx_http_zmq_idempotency.c: Idempotency-Key on REST channels */
char *ngx_http_zmq_idempotency_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_zmq_idem_init(ngx_conf_t *cf);
void ngx_http_zmq_idem_init_process(ngx_cycle_t *cycle);
void ngx_http_zmq_idem_exit(void);
/* NGX_DECLINED: no key to honour; NGX_DONE: Redis answers first */
ngx_int_t ngx_http_zmq_idem_start(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx);

/* ngx_http_zmq_status.c: zmq_status */
ngx_int_t ngx_http_zmq_status_handler(ngx_http_request_t *r);
json_t *ngx_http_zmq_status_doc(ngx_http_request_t *r);
const char *ngx_http_zmq_source_state(ngx_uint_t state);
ngx_int_t ngx_http_zmq_redis_tls_conf(ngx_conf_t *cf,
    const zgw_redis_addr_t *ra, const char *directive, ngx_str_t *shown,
    ngx_zmq_tls_ctx_t **ctx, ngx_str_t *name);

/* ngx_http_zmq_metrics.c: zmq_metrics, the Prometheus exposition */
char *ngx_http_zmq_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_zmq_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_zmq_main_conf_t *zmcf);
ngx_int_t ngx_http_zmq_metrics_init(ngx_conf_t *cf);
void ngx_http_zmq_metrics_init_process(ngx_http_zmq_main_conf_t *zmcf);
uint64_t ngx_http_zmq_metrics_now(void);
/* a publish on outconn starts (the body was read at ctx->read_us) */
void ngx_http_zmq_metrics_start(ngx_http_zmq_ctx_t *ctx, ngx_str_t *outconn,
    ngx_uint_t stomp);
/* an rpc or invoke (invoke 1) request on outconn starts */
void ngx_http_zmq_metrics_start_rpc(ngx_http_zmq_ctx_t *ctx,
    ngx_str_t *outconn, ngx_uint_t invoke);
/* and ends, whatever its result: one bucket and the sum */
void ngx_http_zmq_metrics_observe(ngx_http_zmq_ctx_t *ctx);

/* ngx_http_zmq_admin.c: the admin REST API (zmq_admin) */
char *ngx_http_zmq_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_zmq_admin_merge(ngx_conf_t *cf,
    ngx_http_zmq_loc_conf_t *prev, ngx_http_zmq_loc_conf_t *conf);

/* ngx_http_zmq_filter.c: JSON answers and JSON error pages */
ngx_http_zmq_ctx_t *ngx_http_zmq_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_zmq_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len);
/* doc (then released) as compact JSON: the admin API and zmq_status */
ngx_int_t ngx_http_zmq_send_doc(ngx_http_request_t *r, ngx_uint_t status,
    json_t *doc);
ngx_int_t ngx_http_zmq_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_zmq_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, time_t retry_after);
ngx_int_t ngx_http_zmq_filter_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_ZMQ_MODULE_H_INCLUDED_ */
