
/*
 * ngx_http_zmq_module: the admin API's writes.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_zmq_admin.h"


ngx_int_t
ngx_http_zmq_admin_write(ngx_http_request_t *r, ngx_http_zmq_admin_req_t *ar)
{
    json_t     *body;
    ngx_int_t   rc;

    body = ngx_http_zmq_admin_body_json(r, 0, &rc);
    if (body == NULL) {
        return rc;
    }

    json_decref(body);

    return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_IMPLEMENTED,
                                   "not_implemented", "writes are not "
                                   "built yet");
}
