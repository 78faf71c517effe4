
/*
 * ngx_http_zmq_module: the admin API's send and invoke
 * (POST api/amqp_outconn/NAME/send, POST api/service/NAME/invoke).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_zmq_admin.h"


ngx_int_t
ngx_http_zmq_admin_send(ngx_http_request_t *r, ngx_http_zmq_admin_req_t *ar)
{
    return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_IMPLEMENTED,
                                   "not_implemented", "send is not built "
                                   "yet");
}


ngx_int_t
ngx_http_zmq_admin_invoke(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar)
{
    return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_IMPLEMENTED,
                                   "not_implemented", "invoke is not built "
                                   "yet");
}
