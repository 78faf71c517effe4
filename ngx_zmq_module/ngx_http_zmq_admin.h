
/*
 * ngx_http_zmq_module: the admin REST API's parts (zmq_admin).
 *
 * ngx_http_zmq_admin.c routes a request (api/KIND[/NAME[/OP[/ID]]]),
 * checks the role and answers the reads; the other parts each own one
 * family of operations:
 *
 *     ngx_http_zmq_admin_write.c    POST/PUT/PATCH/DELETE of objects,
 *                                   import, password, apikey keys
 *     ngx_http_zmq_admin_ping.c     POST .../ping
 *     ngx_http_zmq_admin_send.c     POST amqp_outconn/NAME/send,
 *                                   POST service/NAME/invoke
 *     ngx_http_zmq_admin_openapi.c  GET api/openapi.json
 *
 * An operation is called as a content handler would be and returns what
 * one returns (an HTTP status, NGX_DONE after r->main->count++ when it
 * answers later, or what ngx_http_zmq_send_doc() returned); operations
 * that take a body are called once it has been read (r->request_body).
 */


#ifndef _NGX_HTTP_ZMQ_ADMIN_H_INCLUDED_
#define _NGX_HTTP_ZMQ_ADMIN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_zmq_module.h"


typedef struct {
    int                  kind;        /* ZGW_KIND_*, or -1 */
    char                 kind_name[32];
    char                *name;        /* a valid object name, or NULL */
    ngx_str_t            op;          /* ping, password, keys, send,
                                         invoke, or empty */
    char                *id;          /* DELETE .../keys/ID, or NULL */
    ngx_str_t            principal;   /* who asks, for the audit log */
    ngx_int_t            role;        /* NGX_HTTP_ZMQ_ROLE_* */
} ngx_http_zmq_admin_req_t;


/* ngx_http_zmq_admin.c */

/* answers the module's JSON error; the message is plain ASCII */
ngx_int_t ngx_http_zmq_admin_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...);
/*
 * The request body as JSON (a JSON object unless any is set): NULL after
 * answering 400 (*rc is then what to return).
 */
json_t *ngx_http_zmq_admin_body_json(ngx_http_request_t *r,
    ngx_flag_t any, ngx_int_t *rc);
/* the request body in one piece (r->pool), empty when there is none */
ngx_int_t ngx_http_zmq_admin_body_raw(ngx_http_request_t *r,
    ngx_str_t *body);
/* one object as the API shows it: secrets as {"$set": true} */
json_t *ngx_http_zmq_admin_object(int kind, json_t *obj);

/* ngx_http_zmq_admin_write.c */
ngx_int_t ngx_http_zmq_admin_write(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar);

/* ngx_http_zmq_admin_ping.c */
ngx_int_t ngx_http_zmq_admin_ping(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar);

/* ngx_http_zmq_admin_send.c */
ngx_int_t ngx_http_zmq_admin_send(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar);
ngx_int_t ngx_http_zmq_admin_invoke(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar);

/* ngx_http_zmq_admin_openapi.c */
ngx_int_t ngx_http_zmq_admin_openapi(ngx_http_request_t *r);


#endif /* _NGX_HTTP_ZMQ_ADMIN_H_INCLUDED_ */
