
/*
 * ngx_zmq: security definitions on REST channels and zmq_security
 * locations (basic_auth, apikey, jwt), checked in the access phase.
 */


#ifndef _NGX_HTTP_ZMQ_AUTH_H_INCLUDED_
#define _NGX_HTTP_ZMQ_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "zgw_crypto.h"
#include "zgw_jwt.h"


#define NGX_HTTP_ZMQ_SEC_BASIC    1
#define NGX_HTTP_ZMQ_SEC_APIKEY   2
#define NGX_HTTP_ZMQ_SEC_JWT      3

#define NGX_HTTP_ZMQ_DIGEST_LEN   32          /* SHA-256 */

/* what a client a definition passed may do in the admin API */
#define NGX_HTTP_ZMQ_ROLE_ADMIN   1
#define NGX_HTTP_ZMQ_ROLE_VIEWER  2


typedef struct {
    ngx_str_t                    id;
    u_char                       digest[NGX_HTTP_ZMQ_DIGEST_LEN];
} ngx_http_zmq_apikey_t;


/* a security definition as a worker runs it (in the runtime's pool) */
typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   type;
    ngx_flag_t                   active;
    ngx_flag_t                   broken;     /* could not be built */
    ngx_uint_t                   role;       /* NGX_HTTP_ZMQ_ROLE_* */
    u_char                       fingerprint[NGX_HTTP_ZMQ_DIGEST_LEN];

    /* basic_auth */
    ngx_str_t                    username;
    ngx_str_t                    hash;       /* pbkdf2-sha256$... */
    ngx_str_t                    clear;      /* a file: configuration's */
    ngx_str_t                    realm;

    /* apikey */
    ngx_str_t                    header;
    ngx_array_t                  keys;       /* ngx_http_zmq_apikey_t */

    /* jwt */
    zgw_jwt_verifier_t          *jwt;
    ngx_array_t                  claims;     /* ngx_str_t, claim names */
    long long                    leeway;
    long long                    max_age;
} ngx_http_zmq_security_t;


/* what a request proved (in r->pool) */
typedef struct ngx_http_zmq_auth_s  ngx_http_zmq_auth_t;


/* ngx_http_zmq_auth.c */
ngx_int_t ngx_http_zmq_auth_init(ngx_conf_t *cf);
ngx_int_t ngx_http_zmq_auth_init_process(ngx_cycle_t *cycle);
void ngx_http_zmq_auth_exit_process(void);
ngx_int_t ngx_http_zmq_auth_build(ngx_pool_t *pool, ngx_array_t *secs,
    json_t *obj, const zgw_key_t *key, ngx_log_t *log);
/* a configuration was applied: forget what changed definitions proved */
void ngx_http_zmq_auth_applied(ngx_array_t *secs);
/* the AMQP headers the request's identity adds: ngx_keyval_t, or NULL */
ngx_array_t *ngx_http_zmq_auth_headers(ngx_http_request_t *r);
/* the role of the definition the request passed, or NGX_DECLINED */
ngx_int_t ngx_http_zmq_auth_role(ngx_http_request_t *r);
/* "definition:principal" of the request that passed, or NULL */
ngx_str_t *ngx_http_zmq_auth_principal(ngx_http_request_t *r);


/* ngx_http_zmq_auth_table.c: bounded tables of 32-byte keys */

typedef struct {
    ngx_rbtree_node_t            node;       /* key: first bytes of id */
    ngx_queue_t                  queue;      /* least recently used last */
    u_char                       id[NGX_HTTP_ZMQ_DIGEST_LEN];
    u_char                       fingerprint[NGX_HTTP_ZMQ_DIGEST_LEN];
    ngx_msec_t                   expires;
    ngx_uint_t                   count;
    ngx_str_t                    principal;  /* ngx_alloc()ed */
    json_t                      *claims;     /* or NULL */
    ngx_queue_t                  waiters;    /* inflight: auth_t queue */
} ngx_http_zmq_auth_entry_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  lru;
    ngx_uint_t                   n;
    ngx_uint_t                   max;
} ngx_http_zmq_auth_table_t;


void ngx_http_zmq_auth_table_init(ngx_http_zmq_auth_table_t *t,
    ngx_uint_t max);
/* the live entry of id (expired ones are removed), or NULL */
ngx_http_zmq_auth_entry_t *ngx_http_zmq_auth_table_find(
    ngx_http_zmq_auth_table_t *t, u_char *id);
/* a new entry for id (the oldest one evicted when full), or NULL */
ngx_http_zmq_auth_entry_t *ngx_http_zmq_auth_table_add(
    ngx_http_zmq_auth_table_t *t, u_char *id, ngx_log_t *log);
void ngx_http_zmq_auth_table_remove(ngx_http_zmq_auth_table_t *t,
    ngx_http_zmq_auth_entry_t *e);
void ngx_http_zmq_auth_table_clear(ngx_http_zmq_auth_table_t *t);



/* what one worker keeps (in ngx_http_zmq_worker_t) */
typedef struct {
    u_char                       key[32];    /* of the keyed hashes */
    EVP_MAC                     *mac;
    ngx_http_zmq_auth_table_t    cache;      /* credentials that passed */
    ngx_http_zmq_auth_table_t    fails;      /* per client address */
    ngx_http_zmq_auth_table_t    inflight;   /* checks in threads, by id */
    ngx_uint_t                   pending;    /* checks in threads */
    ngx_uint_t                   budget;     /* of failing checks, 1/1000 */
    ngx_msec_t                   budget_at;
    ngx_flag_t                   budget_set;
    void                        *pool;       /* ngx_thread_pool_t */
    ngx_flag_t                   ready;
} ngx_http_zmq_auth_worker_t;


#endif /* _NGX_HTTP_ZMQ_AUTH_H_INCLUDED_ */
