
/*
 * ngx_http_zmq_module: the admin API's OpenAPI document
 * (GET api/openapi.json).
 *
 * The document is ngx_zmq_module/openapi.json, served byte for byte: make
 * turns it into ngx_http_zmq_openapi_json.h (scripts/openapi_h.sh), one C
 * string literal compiled into the module, so nothing is read from disk
 * and the answer is the same for every worker and every request.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_zmq_admin.h"
#include "ngx_http_zmq_openapi_json.h"


ngx_int_t
ngx_http_zmq_admin_openapi(ngx_http_request_t *r)
{
    /* static memory: the buffer is only read (b->memory) */
    return ngx_http_zmq_send_json(r, NGX_HTTP_OK,
                                  (u_char *) ngx_http_zmq_openapi_json,
                                  sizeof(ngx_http_zmq_openapi_json) - 1);
}
