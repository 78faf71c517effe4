
/*
 * ngx_http_zmq_module: the admin API's ping (POST api/KIND/NAME/ping).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_zmq_admin.h"


ngx_int_t
ngx_http_zmq_admin_ping(ngx_http_request_t *r, ngx_http_zmq_admin_req_t *ar)
{
    return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_IMPLEMENTED,
                                   "not_implemented", "ping is not built "
                                   "yet");
}
