
/*
 * ngx_http_zmq_module: the admin API's OpenAPI document
 * (GET api/openapi.json).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_zmq_admin.h"


ngx_int_t
ngx_http_zmq_admin_openapi(ngx_http_request_t *r)
{
    return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_IMPLEMENTED,
                                   "not_implemented", "the OpenAPI "
                                   "document is not written yet");
}
